"""Each role's journey clicked through in a real Chromium: sign-in with TOTP, annotating with
keyboard and mouse (a span and a box), reviewing, the dashboard, an export requested and
approved, signing out; hostile item text shown as text; the annotator's own fetch calls
replayed with other ids; the watermark of the image rendition decoded. Screenshots go to
test-artifacts/."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from tests.browser.conftest import ARTIFACTS
from tests.integration.web.site import HOSTILE, SPAN_TEXT, Site, build_site
from tests.support.platform import ServerThread, TestUser, make_user, totp_now

from labelvault.platform import Platform
from labelvault.web.watermark import read_mark

pytestmark = pytest.mark.browser
TIMEOUT = 15_000


@dataclass
class Watch:
    """What a browser context did that the tests check afterwards."""

    documents: dict[str, str] = field(default_factory=dict)  # url → CSP header
    dialogs: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # console errors, CSP/TT violations


async def enrol_totp(server: ServerThread, user: TestUser) -> None:
    """Give a project member an authenticator (over the API), so the UI asks for a code."""
    async with server.client() as client:
        r = await client.post(
            "/api/v1/auth/login", json={"email": user.email, "password": user.password}
        )
        csrf = r.json()["csrf_token"]
        r = await client.post("/api/v1/auth/mfa/totp/begin", headers={"x-csrf-token": csrf})
        user.totp_secret = r.json()["secret"]
        r = await client.post(
            "/api/v1/auth/mfa/totp/confirm",
            headers={"x-csrf-token": csrf},
            json={"code": totp_now(user.totp_secret)},
        )
        assert r.status_code == 200, r.text


@pytest.fixture(scope="module")
async def site(platform: Platform, server: ServerThread) -> AsyncIterator[Site]:
    s = await build_site(platform, server, {"overlap": 2, "export_requires_approval": True})
    for name in ("annotator", "reviewer", "manager", "data_owner"):
        await enrol_totp(server, s.users[name])
    yield s
    await s.close()


async def open_context(browser: Any, server: ServerThread) -> tuple[Any, Any, Watch]:
    context = await browser.new_context(
        ignore_https_errors=True, base_url=server.url, viewport={"width": 1280, "height": 900}
    )
    context.set_default_timeout(TIMEOUT)
    watch = Watch()

    def on_response(response: Any) -> None:
        if response.request.resource_type == "document":
            watch.documents[response.url] = response.headers.get("content-security-policy", "")

    def on_console(message: Any) -> None:
        if message.type == "error" and not re.search(r"status of 40[134]", message.text):
            watch.problems.append(message.text)

    context.on("response", on_response)
    page = await context.new_page()
    page.on("console", on_console)
    page.on("pageerror", lambda error: watch.problems.append(f"page error: {error}"))

    async def on_dialog(dialog: Any) -> None:
        watch.dialogs.append(dialog.message)
        await dialog.dismiss()

    page.on("dialog", on_dialog)
    return context, page, watch


def check_watch(watch: Watch) -> None:
    assert watch.dialogs == []
    assert watch.problems == []
    assert watch.documents
    for url, csp in watch.documents.items():
        assert re.search(r"script-src 'nonce-[A-Za-z0-9_-]{24,}' 'strict-dynamic'", csp), url
        assert "require-trusted-types-for 'script'" in csp, url


async def ui_sign_in(page: Any, user: TestUser) -> None:
    await page.goto("/login")
    await page.fill("#password-step input[name=email]", user.email)
    await page.fill("#password-step input[name=password]", user.password)
    await page.click("#password-step button[type=submit]")
    await page.wait_for_selector("#code-step", state="visible")
    assert user.totp_secret
    await page.fill("#code-step input[name=code]", totp_now(user.totp_secret, offset_steps=1))
    await page.click("#code-step button[type=submit]")
    await page.wait_for_url(re.compile(r"/$"))
    await page.wait_for_selector("[data-testid=viewer]")


async def until(page: Any, js: str, arg: Any = None) -> None:
    """Poll a predicate (``wait_for_function`` evaluates strings, which this CSP refuses)."""
    for _ in range(TIMEOUT // 100):
        if await page.evaluate(js, arg):
            return
        await page.wait_for_timeout(100)
    raise AssertionError(f"timed out waiting for {js}")


async def until_url(page: Any, path: str) -> None:
    """Wait for a script's navigation (``wait_for_url`` trips over the logout's
    Clear-Site-Data aborting the first attempt)."""
    for _ in range(TIMEOUT // 100):
        if page.url.endswith(path):
            await page.wait_for_load_state()
            return
        await page.wait_for_timeout(100)
    raise AssertionError(f"still at {page.url}, not {path}")


async def text_of(page: Any) -> str:
    text: str = await page.text_content("[data-testid=item-text]")
    return text


async def test_sign_in_errors_are_clear(browser: Any, server: ServerThread, site: Site) -> None:
    context, page, watch = await open_context(browser, server)
    await page.goto("/login")
    await page.fill("#password-step input[name=email]", site.users["annotator2"].email)
    await page.fill("#password-step input[name=password]", "not the password at all")
    await page.click("#password-step button[type=submit]")
    error = page.locator("#login-error")
    await error.wait_for(state="visible")
    assert "password" in (await error.text_content() or "").lower()
    await context.close()
    check_watch(watch)


async def test_annotator_journey(browser: Any, server: ServerThread, site: Site) -> None:
    context, page, watch = await open_context(browser, server)
    await ui_sign_in(page, site.users["annotator"])
    text_project, span_project, box_project = (site.projects[k] for k in ("text", "spans", "boxes"))

    # -- three hostile items, classified with the keyboard, shown as text ------------------------
    await page.click(f"a[href='/projects/{text_project}/annotate']")
    seen: list[str] = []
    for n in range(3):
        await until(
            page,
            "prev => { const t = document.querySelector('[data-testid=item-text]');"
            " return t && t.textContent && !prev.includes(t.textContent); }",
            seen,
        )
        shown = await text_of(page)
        assert shown in HOSTILE
        seen.append(shown)
        assert await page.locator("#editor img, #editor script, #editor a").count() == 0
        if n == 0:
            await page.screenshot(path=str(ARTIFACTS / "annotator-text.png"), full_page=True)
        await page.keyboard.press(str(n % 2 + 1))
        pressed = f"[data-testid=label-{n % 2 + 1}]"
        assert await page.get_attribute(pressed, "aria-pressed") == "true"
        await page.keyboard.press("Enter")
        await until(
            page, f"() => document.querySelectorAll('[data-testid=history] li').length === {n + 1}"
        )
    await page.wait_for_selector("text=No task for you right now")
    assert sorted(seen) == sorted(HOSTILE)
    assert await page.evaluate("window.__pwned") is None
    # the light text watermark names the viewer
    history = await page.text_content("[data-testid=history]")
    assert history and "spam" in history and "ham" in history

    # -- another annotator's task, lists and exports: the page's own calls, other ids -------------
    other = await site.clients["annotator2"].post(site.api("text", "/tasks/next"))
    assert other.status_code == 200, other.text
    other_task = other.json()["task_id"]
    replays = await page.evaluate(
        """async ([base, other, orgId, foreign]) => {
          const csrf = document.querySelector('meta[name="csrf-token"]').content;
          const call = async (method, path, body) => {
            const r = await fetch(path, {method, headers: {'x-csrf-token': csrf,
              'content-type': 'application/json'}, body: body ? JSON.stringify(body) : undefined});
            return [method + ' ' + path.replace(base, ''), r.status];
          };
          return Promise.all([
            call('GET', `${base}/tasks/${other}`),
            call('GET', `${base}/tasks/${other}/image`),
            call('POST', `${base}/tasks/${other}/annotation`, {result: {labels: ['spam']}}),
            call('POST', `${base}/tasks/${other}/skip`),
            call('GET', `${base}/reviews`),
            call('POST', `${base}/reviews/next`),
            call('GET', `${base}/exports`),
            call('POST', `${base}/exports`, {format: 'jsonl'}),
            call('GET', `${base}/aggregates`),
            call('GET', `${base}/audit`),
            call('GET', `${base}/members`),
            call('GET', `/api/v1/orgs/${orgId}/users`),
            call('POST', `/api/v1/projects/${foreign}/tasks/next`),
          ]);
        }""",
        [f"/api/v1/projects/{text_project}", other_task, str(site.org_id), str(uuid.uuid4())],
    )
    statuses = dict(replays)
    assert statuses == {
        "GET /tasks/" + other_task: 404,
        f"GET /tasks/{other_task}/image": 404,
        f"POST /tasks/{other_task}/annotation": 404,
        f"POST /tasks/{other_task}/skip": 404,
        "GET /reviews": 403,
        "POST /reviews/next": 403,
        "GET /exports": 403,
        "POST /exports": 403,
        "GET /aggregates": 403,
        "GET /audit": 403,
        "GET /members": 403,
        f"GET /api/v1/orgs/{site.org_id}/users": 403,
        next(k for k in statuses if k.endswith("/tasks/next")): 404,
    }

    # -- an entity span selected with the mouse (after two astral characters) -------------------
    await page.goto("/")
    await page.click(f"a[href='/projects/{span_project}/annotate']")
    await until(
        page, "t => document.querySelector('[data-testid=item-text]')?.textContent === t", SPAN_TEXT
    )
    box = await page.evaluate(
        """word => {
          const body = document.querySelector('[data-testid=item-text]');
          const node = body.firstChild; const at = node.data.indexOf(word);
          const range = document.createRange(); range.setStart(node, at);
          range.setEnd(node, at + word.length); const r = range.getBoundingClientRect();
          return {left: r.left, right: r.right, y: r.top + r.height / 2};
        }""",
        "Alice",
    )
    await page.mouse.move(box["left"] + 1, box["y"])
    await page.mouse.down()
    await page.mouse.move(box["right"] - 1, box["y"], steps=5)
    await page.mouse.up()
    await page.keyboard.press("1")
    marks = page.locator("[data-testid=marks] li")
    await marks.first.wait_for()
    assert "PER: “Alice” [3–8]" in (await marks.first.text_content() or "")
    assert await page.locator("[data-testid=item-text] mark").text_content() == "Alice"
    await page.keyboard.press("Enter")
    await page.wait_for_selector("text=No task for you right now")

    # -- a box drawn on the canvas over the watermarked rendition --------------------------------
    await page.goto("/")
    async with page.expect_response(re.compile(r"/tasks/[0-9a-f-]+/image$")) as image_info:
        await page.click(f"a[href='/projects/{box_project}/annotate']")
    image = await image_info.value
    assert image.headers["cache-control"] == "no-store"
    # the bytes this viewer receives (fetched again by the page itself: a new rendition)
    png = await page.evaluate(
        """async url => {
          const r = await fetch(url, {headers: {accept: 'image/png'}});
          return Array.from(new Uint8Array(await r.arrayBuffer()));
        }""",
        image.url,
    )
    mark = read_mark(bytes(png))
    assert mark is not None
    assert mark["email"] == site.users["annotator"].email
    assert mark["viewer"] == str(site.users["annotator"].id)
    canvas = page.locator("[data-testid=image-canvas]")
    await canvas.wait_for()
    rect = await canvas.bounding_box()
    scale = rect["width"] / 320
    await page.mouse.move(rect["x"] + 40 * scale, rect["y"] + 40 * scale)
    await page.mouse.down()
    await page.mouse.move(rect["x"] + 120 * scale, rect["y"] + 120 * scale, steps=8)
    await page.mouse.up()
    await marks.first.wait_for()
    assert (await marks.first.text_content() or "").startswith("square: x ")
    assert await page.locator("[data-testid=watermark]").count() == 1
    await page.screenshot(path=str(ARTIFACTS / "annotator.png"), full_page=True)
    await page.keyboard.press("Enter")
    await page.wait_for_selector("text=No task for you right now")
    await context.close()
    check_watch(watch)

    mine = site.clients["annotator"]
    spans = (await mine.get(site.api("spans", "/my/annotations"))).json()[0]["result"]
    assert spans == {"spans": [{"start": 3, "end": 8, "label": "PER"}]}
    assert SPAN_TEXT[3:8] == "Alice"
    boxes = (await mine.get(site.api("boxes", "/my/annotations"))).json()[0]["result"]["boxes"]
    assert len(boxes) == 1 and boxes[0]["label"] == "square"
    for key, want in (("x", 40), ("y", 40), ("w", 80), ("h", 80)):
        assert abs(boxes[0][key] - want) <= 3, boxes


async def test_reviewer_journey(browser: Any, server: ServerThread, site: Site) -> None:
    context, page, watch = await open_context(browser, server)
    await ui_sign_in(page, site.users["reviewer"])
    await page.click(f"a[href='/projects/{site.projects['text']}/review']")
    await page.wait_for_selector("text=Annotation version 1")
    shown = await text_of(page)
    assert shown in HOSTILE
    assert await page.locator("#editor img, #editor script, #editor a").count() == 0
    assert await page.locator("button.label.on").count() == 1  # the annotation over its content
    await page.screenshot(path=str(ARTIFACTS / "reviewer.png"), full_page=True)
    await page.click("[data-testid=reject]")  # a rejection needs a comment
    await page.wait_for_selector("text=A rejection needs a comment")
    await page.click("[data-testid=accept]")
    await page.wait_for_selector("text=Review accepted.")
    assert await page.evaluate("window.__pwned") is None
    await context.close()
    check_watch(watch)


async def test_data_owner_imports_and_requests_an_export(
    browser: Any, server: ServerThread, site: Site
) -> None:
    context, page, watch = await open_context(browser, server)
    await ui_sign_in(page, site.users["data_owner"])
    await page.click(f"a[href='/projects/{site.projects['text']}/data']")
    await page.set_input_files(
        "[data-testid=import-file]",
        files=[{"name": "more.txt", "mimeType": "text/plain", "buffer": b"one more message\n"}],
    )
    await page.click("[data-testid=import-button]")
    await page.wait_for_selector("text=Imported: 1 item(s) added.")
    await page.click("[data-testid=request-export]")
    await page.wait_for_selector("text=Export requested.")
    await page.wait_for_selector("[data-testid=export-state]:has-text('pending_approval')")
    await page.wait_for_selector("text=waiting for a second person")
    await context.close()
    check_watch(watch)


async def test_manager_sees_the_dashboard_approves_and_signs_out(
    browser: Any, server: ServerThread, site: Site
) -> None:
    context, page, watch = await open_context(browser, server)
    await ui_sign_in(page, site.users["manager"])
    await page.click(f"a[href='/projects/{site.projects['text']}/dashboard']")
    await page.wait_for_selector("svg.bars")
    assert await page.locator("svg.bars").count() == 3
    html = await page.content()
    for marker in (*HOSTILE, "plain words", "onerror"):
        assert marker not in html
    await page.wait_for_selector("[data-testid=approve-export]")
    await page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
    await page.click("[data-testid=approve-export]")
    await page.wait_for_selector("text=Export approved.")
    await page.wait_for_selector("[data-testid=export-state]:not(:has-text('pending'))")
    state = await page.text_content("[data-testid=export-state]")
    assert state in ("approved", "building", "ready")
    await page.click("[data-action=sign-out]")
    await until_url(page, "/login")
    await page.goto("/")
    await page.wait_for_url(re.compile(r"/login$"))
    await context.close()
    check_watch(watch)


async def test_an_admin_enrols_reviews_access_and_signs_out_everywhere(
    browser: Any, server: ServerThread, site: Site, platform: Platform
) -> None:
    admin = await make_user(platform, site.org_id, org_admin=True)
    context, page, watch = await open_context(browser, server)
    await page.goto("/login")
    await page.fill("#password-step input[name=email]", admin.email)
    await page.fill("#password-step input[name=password]", admin.password)
    await page.click("#password-step button[type=submit]")
    secret = page.locator("[data-testid=totp-secret]")
    await secret.wait_for()
    admin.totp_secret = await secret.text_content()
    assert admin.totp_secret
    await page.fill("#enrol-step input[name=code]", totp_now(admin.totp_secret))
    await page.click("#enrol-step button[type=submit]")
    await page.wait_for_selector("#recovery-codes li")
    await page.click("#recovery-done")
    await page.wait_for_url(re.compile(r"/$"))
    await page.click("a[href$='/access-review']")
    table = page.locator("[data-testid=access-review]")
    await table.wait_for()
    text = await table.text_content() or ""
    assert site.users["annotator"].email in text and admin.email in text
    await page.click(".topnav a[href$='/audit']")
    await page.wait_for_selector("#audit-rows tr")
    await page.click("[data-action=sign-out-all]")
    await until_url(page, "/login")
    await context.close()
    check_watch(watch)

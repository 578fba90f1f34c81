"""The pages without a browser: headers on every page, no content where it does not belong,
the static allow-list, sign-in redirects, and the per-viewer image rendition."""

from __future__ import annotations

import contextlib
import io
import re
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from PIL import Image, ImageChops
from tests.integration.web.site import HOSTILE, IMAGE_SIZE, SPAN_TEXT, Site, build_site, sample_png
from tests.support.platform import ServerThread, sign_in

from labelvault.platform import Platform
from labelvault.web.pages import safe_next
from labelvault.web.watermark import read_mark

HTML = {"accept": "text/html,application/xhtml+xml"}
NONCE = re.compile(r"script-src 'nonce-([A-Za-z0-9_-]{24,})' 'strict-dynamic'")


@pytest.fixture(scope="module")
async def site(platform: Platform, server: ServerThread) -> AsyncIterator[Site]:
    s = await build_site(platform, server)
    yield s
    await s.close()


@contextlib.asynccontextmanager
async def browser_like(
    server: ServerThread, site: Site, who: str
) -> AsyncIterator[httpx.AsyncClient]:
    async with server.client(headers=HTML) as client:
        client.headers["x-csrf-token"] = await sign_in(client, site.users[who])
        yield client


def pages_of(site: Site, who: str) -> list[str]:
    text = site.projects["text"]
    common = ["/", "/account"]
    if who == "manager":
        return [
            *common,
            f"/projects/{text}/dashboard",
            f"/projects/{text}/data",
            f"/projects/{text}/audit",
        ]
    if who == "annotator":
        return [*common, f"/projects/{text}/annotate"]
    return [*common, f"/projects/{text}/review"]


def assert_page_headers(response: httpx.Response) -> str:
    assert response.status_code == 200, (response.request.url, response.text[:300])
    assert response.headers["content-type"].startswith("text/html")
    csp = response.headers["content-security-policy"]
    found = NONCE.search(csp)
    assert found, csp
    for directive in (
        "object-src 'none'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
        "require-trusted-types-for 'script'",
        "default-src 'none'",
    ):
        assert directive in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["x-content-type-options"] == "nosniff"
    nonce = found.group(1)
    # every script carries this response's nonce; no inline script, no inline handler
    scripts = re.findall(r"<script\b[^>]*>", response.text)
    assert all(f'nonce="{nonce}"' in s and "src=" in s for s in scripts)
    assert not re.search(r"\son[a-z]+\s*=", response.text)
    assert "style=" not in response.text
    return nonce


@pytest.mark.parametrize("who", ["manager", "annotator", "reviewer"])
async def test_every_page_has_a_fresh_nonce_csp_and_no_store(
    site: Site, server: ServerThread, who: str
) -> None:
    async with browser_like(server, site, who) as client:
        for path in pages_of(site, who):
            first = assert_page_headers(await client.get(path))
            second = assert_page_headers(await client.get(path))
            assert first != second, f"{path}: the nonce must change per response"
        anonymous = server.client(headers=HTML)
        async with anonymous:
            assert_page_headers(await anonymous.get("/login"))


async def test_no_page_carries_item_content(site: Site, server: ServerThread) -> None:
    markers = [*HOSTILE, SPAN_TEXT, "onerror", "plain words", "Zürich"]
    for who in ("manager", "data_owner", "annotator"):
        async with browser_like(server, site, who) as client:
            paths = [
                f"/projects/{pid}/{page}"
                for pid in site.projects.values()
                for page in ("dashboard", "data", "annotate")
            ]
            seen = 0
            for path in paths:
                r = await client.get(path)
                if r.status_code != 200:
                    continue
                seen += 1
                for marker in markers:
                    assert marker not in r.text, (who, path, marker)
            assert seen


async def test_a_page_navigation_without_a_session_goes_to_sign_in(
    site: Site, server: ServerThread
) -> None:
    path = f"/projects/{site.projects['text']}/annotate"
    async with server.client(headers=HTML) as browser:
        r = await browser.get(path)
        assert r.status_code == 303
        assert r.headers["location"] == f"/login?next={path}"
        r = await browser.get("/")
        assert r.status_code == 303 and r.headers["location"] == "/login"
        # back from SSO: the SameSite=Strict cookie is withheld on a cross-site chain
        r = await browser.get("/", headers={"sec-fetch-site": "cross-site"})
        assert_page_headers(r)
        assert '<meta http-equiv="refresh" content="0;url=/">' in r.text
    async with server.client() as api_client:  # an API client gets the API's answer
        r = await api_client.get(path)
        assert r.status_code == 401
        assert r.headers["content-type"].startswith("application/problem+json")


async def test_a_refused_page_is_an_html_page_with_the_same_status(
    site: Site, server: ServerThread
) -> None:
    async with browser_like(server, site, "annotator") as client:
        r = await client.get(f"/projects/{site.projects['text']}/dashboard")
        assert r.status_code == 403
        assert r.headers["content-type"].startswith("text/html")
        assert "content-security-policy" in r.headers
        r = await client.get(f"/projects/{uuid.uuid4()}/annotate")
        assert r.status_code == 404 and r.headers["content-type"].startswith("text/html")


async def test_static_files_come_from_the_allow_list_only(server: ServerThread) -> None:
    async with server.client() as client:
        r = await client.get("/static/app.css")
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/css")
        assert r.headers["x-content-type-options"] == "nosniff"
        r = await client.get("/static/annotate.js")
        assert r.headers["content-type"].startswith("text/javascript")
        for path in (
            "/static/../pyproject.toml",
            "/static/..%2Fpages.py",
            "/static/pages.py",
            "/static/%2e%2e%2fcsp.py",
            "/static/templates%2Fbase.html",
            "/static/..%5Cpages.py",
            "/static/__init__.py",
            "/static/",
        ):
            r = await client.get(path)
            assert r.status_code == 404, path
            assert "import" not in r.text and "{%" not in r.text


def test_the_next_path_after_sign_in_stays_on_this_site() -> None:
    assert safe_next("/projects/x/annotate") == "/projects/x/annotate"
    for hostile in (
        "//evil.example/",
        "https://evil.example/",
        "/\\evil.example",
        "javascript:alert(1)",
        "/x\r\nLocation: //evil",
        None,
        "",
    ):
        assert safe_next(hostile) == "/"


async def test_the_image_rendition_is_watermarked_for_its_viewer_and_audited(
    site: Site, server: ServerThread
) -> None:
    annotator, other = site.clients["annotator"], site.clients["annotator2"]
    r = await annotator.post(site.api("boxes", "/tasks/next"))
    assert r.status_code == 200, r.text
    task = r.json()
    assert task["image_url"] == f"tasks/{task['task_id']}/image"
    r = await annotator.get(site.api("boxes", f"/tasks/{task['task_id']}/image"))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/png"
    assert r.headers["cache-control"] == "no-store"
    mark = read_mark(r.content)
    assert mark is not None
    assert mark["viewer"] == str(site.users["annotator"].id)
    assert mark["email"] == site.users["annotator"].email
    assert len(mark["nonce"]) == 16
    rendered = Image.open(io.BytesIO(r.content)).convert("RGB")
    assert rendered.size == IMAGE_SIZE  # coordinates stay in image pixels
    original = Image.open(io.BytesIO(sample_png())).convert("RGB")
    assert ImageChops.difference(rendered, original).getbbox() is not None  # visible marks
    again = await annotator.get(site.api("boxes", f"/tasks/{task['task_id']}/image"))
    assert read_mark(again.content)["nonce"] != mark["nonce"]  # type: ignore[index]
    # someone else's task: not found, exactly like a task that does not exist
    r = await other.get(site.api("boxes", f"/tasks/{task['task_id']}/image"))
    assert r.status_code == 404
    r = await annotator.get(site.api("text", f"/tasks/{task['task_id']}/image"))
    assert r.status_code == 404
    r = await site.clients["manager"].get(
        site.api("boxes", "/audit"), params={"action": "item.image.render"}
    )
    assert r.status_code == 200, r.text
    nonces = {e["details"].get("mark") for e in r.json()["events"]}
    assert mark["nonce"] in nonces
    # give the task back so other tests start from an unleased queue
    r = await annotator.post(site.api("boxes", f"/tasks/{task['task_id']}/skip"))
    assert r.status_code == 204

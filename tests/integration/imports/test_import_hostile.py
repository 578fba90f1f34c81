"""Hostile uploads to ``POST /imports`` over HTTPS.

Generated malformed JSON Lines / CSV (skip-and-report or 422 with line numbers, never a 500,
never the row's content echoed: every bad row carries a random marker that must not come back),
a zip bomb, a 100 MB single line sent as a stream, non-UTF-8 bytes, SVG/HTML posing as images,
HTML inside text (accepted: it is data), an oversized upload (413). After every failure the
project's item count is unchanged.
"""

from __future__ import annotations

import csv
import io
import json
import secrets
import socket
import time
import zipfile
from collections.abc import Callable, Iterator
from typing import Any, Literal

import httpx
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import sql
from tests.integration.sdk.sdk_support import SdkTeam, build_sdk_team
from tests.support.platform import ServerThread

from labelvault.db.bootstrap import DatabaseTarget
from labelvault.db.names import project_schema
from labelvault.keys.values import project_cipher
from labelvault.platform import Platform

MiB = 1024 * 1024
PERMITTED = (201, 413, 422)


@pytest.fixture(scope="module")
async def team(platform: Platform, server: ServerThread) -> SdkTeam:
    return await build_sdk_team(platform, server)


@pytest.fixture(scope="module")
def zip_bomb() -> bytes:
    """300 MB of zeros as one deflated PNG-named entry (a few hundred KB), built once."""
    buf = io.BytesIO()
    zeros = bytes(MiB)
    with (
        zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf,
        zf.open("bomb.png", "w", force_zip64=True) as entry,
    ):
        for _ in range(300):
            entry.write(zeros)
    return buf.getvalue()


def _http(team: SdkTeam, role: str) -> httpx.Client:
    return httpx.Client(
        base_url=team.server.url,
        verify=team.server.client_context(),
        timeout=120,
        headers={"authorization": f"Bearer {team.tokens[role]}"},
    )


class Api:
    def __init__(self, team: SdkTeam) -> None:
        self.team = team
        self.owner = _http(team, "data_owner")
        self.manager = _http(team, "manager")

    @property
    def base(self) -> str:
        return f"/api/v1/projects/{self.team.project_id}"

    def items(self) -> int:
        r = self.manager.get(f"{self.base}/aggregates")
        assert r.status_code == 200, r.text
        return int(r.json()["items"])

    def post(
        self,
        content: bytes | Iterator[bytes],
        *,
        fmt: str | None,
        on_error: str,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        params = {"on_error": on_error}
        if fmt:
            params["format"] = fmt
        return self.owner.post(
            f"{self.base}/imports", params=params, content=content, headers=headers
        )

    def close(self) -> None:
        self.owner.close()
        self.manager.close()


@pytest.fixture(scope="module")
def api(team: SdkTeam) -> Iterator[Api]:
    a = Api(team)
    yield a
    a.close()


def _marker() -> str:
    return "MRK" + secrets.token_hex(8)


def _assert_clean(r: httpx.Response, markers: list[str]) -> None:
    assert r.status_code != 500 and r.status_code in PERMITTED, (r.status_code, r.text[:500])
    for m in markers:
        assert m not in r.text, f"row content echoed: {r.text[:500]}"
    if r.status_code >= 400:
        body = r.json()
        assert r.headers["content-type"].startswith("application/problem+json")
        assert body["detail"] and body["code"]


# -- generated malformed JSON Lines -------------------------------------------------------------

BAD_JSONL: list[Callable[[str], bytes]] = [
    lambda m: ('{"text": "' + m).encode(),  # truncated
    lambda m: json.dumps({"text": "x", m: 1}).encode(),  # unknown key
    lambda m: json.dumps([m]).encode(),  # not an object
    lambda m: ('{"text": "' + m + '", "text": "again"}').encode(),  # duplicate key
    lambda m: ('{"text": NaN, "metadata": {"k": "' + m + '"}}').encode(),  # NaN
    lambda m: json.dumps({"text": m + "\x00"}).encode(),  # NUL
    lambda m: json.dumps({"text": "x", "metadata": {"k": {"deep": m}}}).encode(),  # nested
    lambda m: json.dumps({"subject_id": m}).encode(),  # no text
    lambda m: json.dumps({"text": 12345, "id": m}).encode(),  # text not a str
    lambda m: json.dumps({"text": "x", "gold": m}).encode(),  # gold not object
    lambda m: ('{"text": "x", "metadata": {"' + m + '": 1e999}}').encode(),  # overflow
    lambda m: b'{"text": "' + m.encode() + b'\xc3\x28 \xff"}',  # not UTF-8
    lambda m: json.dumps({"text": "   ", "external_id": m}).encode(),  # blank text
    lambda m: ("[" * 5000 + m).encode(),  # deep nesting
]

NO_SURROGATES: tuple[Literal["Cs"]] = ("Cs",)
NO_CONTROLS: tuple[Literal["Cs"], Literal["Cc"]] = ("Cs", "Cc")
good_text = st.text(
    alphabet=st.characters(blacklist_categories=NO_SURROGATES, blacklist_characters="\x00"),
    max_size=60,
).map(lambda t: "g " + t)
good_row = st.builds(
    lambda text, subject, ascii_only: json.dumps(
        {"text": text, **({"subject_id": subject} if subject else {})}, ensure_ascii=ascii_only
    ).encode(),
    good_text,
    st.one_of(st.none(), st.text("abcdef0123", min_size=1, max_size=8)),
    st.booleans(),
)
row = st.one_of(
    st.tuples(st.just(False), good_row),
    st.tuples(st.just(True), st.integers(0, len(BAD_JSONL) - 1)),
)

SETTINGS = settings(
    max_examples=50,
    deadline=None,
    derandomize=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def _check_report(
    r: httpx.Response, on_error: str, bad_lines: list[int], good: int, before: int, api: Api
) -> None:
    after = api.items()
    if r.status_code == 422:
        assert after == before, "a rejected import left items behind"
        body = r.json()
        if bad_lines and on_error == "reject":
            assert body["code"] == "bad_rows", body
            lines = {e["line"] for e in body["report"]["errors"]}
            assert lines == set(bad_lines), (lines, bad_lines)
            assert str(bad_lines[0]) in body["detail"]
        else:
            assert body["code"] != "bad_rows" or bad_lines
        return
    assert r.status_code == 201, r.text
    report = r.json()
    if on_error == "reject":
        assert not bad_lines
    assert {e["line"] for e in report["errors"]} == set(bad_lines)
    assert report["rejected"] == len(bad_lines)
    assert report["items_added"] + report["duplicates"] == good
    assert after == before + report["items_added"]


@SETTINGS
@given(
    rows=st.lists(row, min_size=1, max_size=25),
    on_error=st.sampled_from(["reject", "skip"]),
    crlf=st.booleans(),
)
def test_generated_jsonl(api: Api, rows: list[tuple[bool, Any]], on_error: str, crlf: bool) -> None:
    markers: list[str] = []
    lines: list[bytes] = []
    bad_lines: list[int] = []
    for i, (bad, value) in enumerate(rows, start=1):
        if bad:
            m = _marker()
            markers.append(m)
            lines.append(BAD_JSONL[value](m))
            bad_lines.append(i)
        else:
            lines.append(value)
    body = (b"\r\n" if crlf else b"\n").join(lines) + b"\n"
    before = api.items()
    r = api.post(body, fmt="jsonl", on_error=on_error)
    _assert_clean(r, markers)
    _check_report(r, on_error, bad_lines, len(rows) - len(bad_lines), before, api)


# -- generated malformed CSV --------------------------------------------------------------------

BAD_CSV: list[Callable[[str], list[str] | bytes]] = [
    lambda m: [m, "a"],  # too few fields
    lambda m: ["t", "s", m, "extra"],  # too many fields
    lambda m: ["x\x00" + m, "", ""],  # NUL in text
    lambda m: ["", "", m],  # empty text
    lambda m: b"\xff\xfe" + m.encode() + b",,",  # not UTF-8 (not at the file start)
]
csv_cell = st.text(alphabet=st.characters(blacklist_categories=NO_CONTROLS), max_size=30)


def _csv_line(cells: list[str]) -> bytes:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(cells)
    return out.getvalue().encode()


@SETTINGS
@given(
    rows=st.lists(
        st.one_of(
            st.tuples(
                st.just(False), st.tuples(csv_cell.map(lambda t: "g" + t), csv_cell, csv_cell)
            ),
            st.tuples(st.just(True), st.integers(0, len(BAD_CSV) - 1)),
        ),
        min_size=1,
        max_size=25,
    ),
    on_error=st.sampled_from(["reject", "skip"]),
)
def test_generated_csv(api: Api, rows: list[tuple[bool, Any]], on_error: str) -> None:
    markers: list[str] = []
    parts = [b"text,subject_id,note\n"]
    bad_lines: list[int] = []
    line = 1
    for bad, value in rows:
        if bad:
            m = _marker()
            markers.append(m)
            made = BAD_CSV[value](m)
            encoded = made + b"\n" if isinstance(made, bytes) else _csv_line(made)
            bad_lines.append(line + 1)
        else:
            encoded = _csv_line(list(value))
        parts.append(encoded)
        line += encoded.count(b"\n")
    before = api.items()
    r = api.post(b"".join(parts), fmt="csv", on_error=on_error)
    _assert_clean(r, markers)
    good = len(rows) - len(bad_lines)
    _check_report(r, on_error, bad_lines, good, before, api)


@SETTINGS
@given(
    junk=st.binary(max_size=3000),
    at=st.integers(0, 3000),
    fmt=st.sampled_from(["jsonl", "csv", "tsv", "text", "zip", None]),
    on_error=st.sampled_from(["reject", "skip"]),
)
def test_random_bytes_never_500_never_echoed(
    api: Api, junk: bytes, at: int, fmt: str | None, on_error: str
) -> None:
    m = _marker()
    at = min(at, len(junk))
    body = junk[:at] + m.encode() + junk[at:]
    before = api.items()
    r = api.post(body, fmt=fmt, on_error=on_error)
    assert r.status_code in (201, 422), (r.status_code, r.text[:300])
    if r.status_code == 422:
        assert api.items() == before
    # the marker may be imported as text (it is data), never echoed in a report or error
    assert m not in r.text


# -- specific attacks ---------------------------------------------------------------------------


def test_zip_bomb_is_refused_quickly(api: Api, zip_bomb: bytes) -> None:
    assert len(zip_bomb) < 2 * MiB
    before = api.items()
    for on_error in ("reject", "skip"):
        started = time.monotonic()
        r = api.post(zip_bomb, fmt="zip", on_error=on_error)
        elapsed = time.monotonic() - started
        _assert_clean(r, [])
        assert r.status_code == 422, r.text
        assert "ratio" in r.json()["detail"] or "bomb" in r.json()["detail"]
        assert elapsed < 10, elapsed
    assert api.items() == before


def _long_line(marker: str, size: int, tail: bytes = b"") -> Iterator[bytes]:
    head = b'{"text": "' + marker.encode()
    yield head
    chunk = b"a" * MiB
    sent = len(head)
    while sent < size:
        piece = chunk[: min(MiB, size - sent)]
        sent += len(piece)
        yield piece
    yield b'"}\n' + tail


def test_100mb_single_line_streamed(api: Api) -> None:
    m = _marker()
    before = api.items()
    started = time.monotonic()
    r = api.post(_long_line(m, 100 * MiB), fmt="jsonl", on_error="reject")
    elapsed = time.monotonic() - started
    _assert_clean(r, [m])
    assert r.status_code in (413, 422), r.text
    if r.status_code == 422:
        assert [e["line"] for e in r.json()["report"]["errors"]] == [1]
    assert elapsed < 60, elapsed
    assert api.items() == before
    # skip mode: the long line is reported, the parser resynchronises on the next line
    r = api.post(
        _long_line(m, 100 * MiB, tail=b'{"text": "after the long line"}\n'),
        fmt="jsonl",
        on_error="skip",
    )
    _assert_clean(r, [m])
    if r.status_code == 201:
        body = r.json()
        assert (body["items_added"], body["rejected"]) == (1, 1)
        assert body["errors"][0]["line"] == 1
        assert api.items() == before + 1


def test_non_utf8_bytes(api: Api) -> None:
    m = _marker()
    before = api.items()
    latin1 = ('{"text": "ok"}\n{"text": "caf\xe9 ' + m + '"}\n').encode("latin-1")
    r = api.post(latin1, fmt="jsonl", on_error="reject")
    _assert_clean(r, [m])
    assert r.status_code == 422
    errors = r.json()["report"]["errors"]
    assert errors[0]["line"] == 2 and "UTF-8" in errors[0]["reason"]
    for fmt, body in (
        ("text", b"fine\n" + m.encode() + b"\xff\xfe\xfd\n"),
        ("csv", b"text\nfine\n" + m.encode() + b"\x80\n"),
    ):
        r = api.post(body, fmt=fmt, on_error="reject")
        _assert_clean(r, [m])
        assert r.status_code == 422
    # UTF-16 with a BOM: the whole file is refused
    r = api.post('{"text": "hello"}\n'.encode("utf-16"), fmt="jsonl", on_error="skip")
    _assert_clean(r, [])
    assert r.status_code == 422 and "UTF-16" in r.json()["detail"]
    assert api.items() == before


def _png() -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (4, 3), (200, 10, 10)).save(out, format="PNG")
    return out.getvalue()


def test_svg_and_html_posing_as_images_are_rejected(api: Api) -> None:
    m = _marker()
    svg = (
        f'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"><text>{m}</text>'
        "<script>alert(document.cookie)</script></svg>"
    ).encode()
    html = f"<html><body><script>fetch('/x?{m}')</script></body></html>".encode()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("picture.png", svg)
        zf.writestr("photo.jpg", html)
        zf.writestr("real.png", _png())
    archive = buf.getvalue()
    before = api.items()
    r = api.post(archive, fmt="zip", on_error="reject")
    _assert_clean(r, [m])
    assert r.status_code == 422
    assert [e["line"] for e in r.json()["report"]["errors"]] == [1, 2]
    assert api.items() == before
    r = api.post(archive, fmt="zip", on_error="skip")
    _assert_clean(r, [m])
    assert r.status_code == 201
    body = r.json()
    assert (body["items_added"], body["rejected"]) == (1, 2)
    assert api.items() == before + 1
    # a bare SVG posted as an image
    r = api.post(svg, fmt="image", on_error="skip")
    _assert_clean(r, [m])
    assert r.status_code == 422 or r.json()["items_added"] == 0
    assert api.items() == before + 1


async def test_html_and_svg_inside_text_are_just_text(team: SdkTeam) -> None:
    payload = (
        '<img src=x onerror="alert(1)"><svg onload=alert(2)><script>alert(3)</script>'
        "</svg>&lt;b&gt;"
    )
    rows = json.dumps({"text": payload}) + "\n"
    async with httpx.AsyncClient(
        base_url=team.server.url,
        verify=team.server.client_context(),
        headers={"authorization": f"Bearer {team.tokens['data_owner']}"},
    ) as owner:
        r = await owner.post(
            f"/api/v1/projects/{team.project_id}/imports",
            params={"format": "jsonl"},
            content=rows.encode(),
        )
        assert r.status_code == 201 and r.json()["items_added"] == 1, r.text
    async with team.aclient("annotator") as a1:
        seen = []
        while (task := await a1.next_task(team.project_id)) is not None:
            seen.append(task.text)
            await a1.skip(team.project_id, task.task_id)
    assert payload in seen  # stored and served exactly as written


def test_oversized_upload_is_413(api: Api) -> None:
    declared = 600 * MiB  # above the API's 512 MiB limit

    def body() -> Iterator[bytes]:
        chunk = b"x" * MiB
        for _ in range(declared // MiB):
            yield chunk

    before = api.items()
    started = time.monotonic()
    r = api.post(body(), fmt="text", on_error="skip", headers={"content-length": str(declared)})
    assert r.status_code == 413, r.text
    assert r.json()["code"] == "too_large"
    assert time.monotonic() - started < 30
    assert api.items() == before


async def test_file_names_in_a_report_are_sealed_at_rest(
    api: Api, platform: Platform, db_target: DatabaseTarget
) -> None:
    """The importer is told which entries failed, by name; the database keeps that report only
    sealed (a file name can be personal data: a scan named after its patient)."""
    m = _marker()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(f"scan-of-{m}.png", b"not an image at all")
        zf.writestr("real.png", _png())
    r = api.post(buf.getvalue(), fmt="zip", on_error="skip")
    assert r.status_code == 201, r.text
    body = r.json()
    assert m in body["errors"][0]["reason"]  # the importer learns which entry it was
    with psycopg.connect(db_target.owner_dsn) as conn:  # as a superuser sees it
        table = sql.Identifier(project_schema(api.team.project_id), "imports")
        stored = conn.execute(
            sql.SQL("SELECT report FROM {} WHERE id = %s").format(table), [body["import_id"]]
        ).fetchone()
        with conn.cursor().copy(sql.SQL("COPY {} TO STDOUT").format(table)) as copy:
            dump = b"".join(bytes(chunk) for chunk in copy)
    assert stored is not None and m.encode() not in stored[0] and m.encode() not in dump
    cipher = await project_cipher(platform.keys, api.team.project_id)
    assert cipher.decrypt_json("imports", body["import_id"], "report", stored[0]) == body["errors"]


def test_a_client_that_goes_away_mid_upload_leaves_nothing(api: Api) -> None:
    """The body is parsed while it arrives; a client that disconnects half-way leaves no items
    and no lock behind (the next import goes straight through)."""
    before = api.items()
    url = httpx.URL(api.team.server.url)
    host, port = url.host, url.port or 443
    lines = (json.dumps({"text": f"gone {i} " + "x" * 300}).encode() + b"\n" for i in range(3000))
    first = b"".join(lines)
    context = api.team.server.client_context()
    with (
        socket.create_connection((host, port), timeout=30) as raw,
        context.wrap_socket(raw, server_hostname=host) as tls,
    ):
        tls.sendall(
            (
                f"POST {api.base}/imports?format=jsonl&on_error=skip HTTP/1.1\r\n"
                f"Host: {host}:{port}\r\n"
                f"Authorization: Bearer {api.team.tokens['data_owner']}\r\n"
                "Content-Type: application/x-ndjson\r\n"
                "Transfer-Encoding: chunked\r\n\r\n"
            ).encode()
        )
        for start in range(0, len(first), 64 * 1024):
            part = first[start : start + 64 * 1024]
            tls.sendall(f"{len(part):x}\r\n".encode() + part + b"\r\n")
        time.sleep(0.5)  # parsing and inserting have begun; then the client is gone
    time.sleep(1.0)
    assert api.items() == before
    started = time.monotonic()
    r = api.post(b'{"text": "after the aborted upload"}\n', fmt="jsonl", on_error="reject")
    assert r.status_code == 201, r.text
    assert time.monotonic() - started < 10
    assert api.items() == before + 1


def test_a_long_run_of_bad_rows_does_not_end_a_skipping_import(api: Api) -> None:
    """More bad rows in a row than fit one batch, then good ones: every good row lands (a
    batch of nothing but errors is not the end of the file)."""
    bad = b"{not json\n" * 2_500
    good = b"".join(json.dumps({"text": f"after the run {n}"}).encode() + b"\n" for n in range(3))
    before = api.items()
    r = api.post(bad + good, fmt="jsonl", on_error="skip")
    assert r.status_code == 201, r.text
    body = r.json()
    assert (body["items_added"], body["rejected"]) == (3, 2_500)
    assert api.items() == before + 3


def test_concurrent_uploads_all_land(api: Api) -> None:
    """More uploads at once than a process holds bodies for: the others wait their turn."""
    from concurrent.futures import ThreadPoolExecutor

    def upload(n: int) -> httpx.Response:
        rows = b"".join(
            json.dumps({"text": f"concurrent {n} row {i}"}).encode() + b"\n" for i in range(50)
        )
        return api.post(rows, fmt="jsonl", on_error="reject")

    before = api.items()
    with ThreadPoolExecutor(5) as pool:
        responses = list(pool.map(upload, range(5)))
    assert [r.status_code for r in responses] == [201] * 5, [r.text for r in responses]
    assert api.items() == before + 250

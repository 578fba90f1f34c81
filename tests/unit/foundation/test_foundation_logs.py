"""JSON logs with redaction: secrets never reach the output, every line is one JSON object."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from labelvault.logs import REDACTED, configure_logging, get_logger, redact_text

TOKEN = "lv_" + "Ab3dEf6hIj9kLm2nOp5qRs8t"
SECRETS = {
    "password": "hunter2-Password!",
    "token": TOKEN,
    "bearer": "eyJhbGciOiJIUzI1NiJ9.bearer-secret",
    "basic": "dXNlcjpiYXNpYy1zZWNyZXQ=",
    "cookie": "sess-cookie-secret-42",
    "dsn_password": "dsn-Pa55word",
    "kv_password": "kv-pw-secret",
    "nested": "deeply-nested-secret",
    "api_key": "api-key-secret-99",
    "totp": "123456-totp-secret",
}


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """``configure_logging`` into a buffer; the global logging set-up is restored after."""
    saved = structlog.get_config()
    root = logging.getLogger()
    saved_root = (root.handlers[:], root.level)
    names = ("uvicorn", "uvicorn.error", "uvicorn.access", "pgserver", "alembic", "httpx")
    saved_named = {
        n: (
            logging.getLogger(n).handlers[:],
            logging.getLogger(n).propagate,
            logging.getLogger(n).level,
        )
        for n in names
    }
    buffer = io.StringIO()
    configure_logging("debug", stream=buffer)
    try:
        yield buffer
    finally:
        structlog.configure(**saved)
        root.handlers[:], _ = saved_root
        root.setLevel(saved_root[1])
        for n, (handlers, propagate, level) in saved_named.items():
            logger = logging.getLogger(n)
            logger.handlers[:] = handlers
            logger.propagate = propagate
            logger.setLevel(level)


def _lines(buffer: io.StringIO) -> list[dict[str, Any]]:
    text = buffer.getvalue()
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def _assert_no_secret(buffer: io.StringIO) -> None:
    text = buffer.getvalue()
    for name, secret in SECRETS.items():
        assert secret not in text, f"{name} leaked: {text}"


def test_structlog_keyword_secrets_are_redacted(captured: io.StringIO) -> None:
    log = get_logger("tests.logs")
    log.info(
        "sign in",
        password=SECRETS["password"],
        token=SECRETS["token"],
        authorization=f"Bearer {SECRETS['bearer']}",
        cookie=f"lv_session={SECRETS['cookie']}",
        dsn=f"postgresql://lv:{SECRETS['dsn_password']}@db.internal:5432/labelvault",
        database_url=f"postgresql://lv:{SECRETS['dsn_password']}@db/x",
        api_key=SECRETS["api_key"],
        totp_code=SECRETS["totp"],
        user="alice@example.test",
    )
    _assert_no_secret(captured)
    (line,) = _lines(captured)
    assert line["event"] == "sign in"
    assert line["user"] == "alice@example.test"  # not over-redacted
    assert line["level"] == "info"
    for key in ("password", "token", "authorization", "cookie", "dsn", "api_key", "totp_code"):
        assert line[key] == REDACTED, key


def test_headers_and_nested_secrets_are_redacted(captured: io.StringIO) -> None:
    log = get_logger("tests.logs")
    log.warning(
        "request",
        headers={
            "Authorization": f"Basic {SECRETS['basic']}",
            "Cookie": f"lv_session={SECRETS['cookie']}",
            "Set-Cookie": f"lv_session={SECRETS['cookie']}; HttpOnly",
            "X-Api-Key": SECRETS["api_key"],
            "User-Agent": "pytest",
        },
        context={
            "db": {"password": SECRETS["nested"], "host": "db"},
            "items": [
                {"secret": SECRETS["nested"]},
                f"postgresql://lv:{SECRETS['dsn_password']}@db/x",
                f"host=db password={SECRETS['kv_password']} dbname=x",
            ],
        },
        note=f"use token {SECRETS['token']} with Bearer {SECRETS['bearer']}",
    )
    _assert_no_secret(captured)
    (line,) = _lines(captured)
    assert line["headers"]["User-Agent"] == "pytest"
    assert line["headers"]["Authorization"] == REDACTED
    assert line["context"]["db"] == {"password": REDACTED, "host": "db"}
    assert "db" in line["context"]["items"][1]


def test_stdlib_records_are_redacted(captured: io.StringIO) -> None:
    stdlib = logging.getLogger("psycopg.tests")
    stdlib.warning(
        "connecting with postgresql://lv:%s@db/x and password=%s",
        SECRETS["dsn_password"],
        SECRETS["kv_password"],
        extra={"token": SECRETS["token"], "cookie": SECRETS["cookie"]},
    )
    logging.getLogger("uvicorn.error").error(
        "bad header Authorization: Bearer %s", SECRETS["bearer"]
    )
    try:
        raise ValueError(f"cannot use postgresql://lv:{SECRETS['dsn_password']}@db/x")
    except ValueError:
        stdlib.exception("failed with %s", TOKEN)
    _assert_no_secret(captured)
    lines = _lines(captured)
    assert len(lines) == 3
    assert lines[0]["level"] == "warning"
    assert lines[0]["token"] == REDACTED
    assert "ValueError" in lines[2]["exception"]


def test_header_lists_and_header_lines_are_redacted(captured: io.StringIO) -> None:
    """Headers as (name, value) pairs (httpx, Starlette, ASGI) and as raw text lines."""
    log = get_logger("tests.logs")
    log.info(
        "upstream call",
        sent=[
            ("Authorization", f"Basic {SECRETS['basic']}"),
            ("cookie", f"a=1; lv_session={SECRETS['cookie']}"),
            ("accept", "application/json"),
        ],
        raw=[(b"authorization", f"Bearer {SECRETS['bearer']}".encode())],
    )
    logging.getLogger("tests.stdlib").warning(
        "request dump:\nAuthorization: Basic %s\nCookie: lv_session=%s\nAccept: */*",
        SECRETS["basic"],
        SECRETS["cookie"],
    )
    _assert_no_secret(captured)
    first, second = _lines(captured)
    assert ["accept", "application/json"] in first["sent"]
    assert "Accept: */*" in second["event"]


def test_structlog_exceptions_are_redacted(captured: io.StringIO) -> None:
    log = get_logger("tests.logs")
    try:
        raise RuntimeError(f"connect postgresql://lv:{SECRETS['dsn_password']}@db/x failed")
    except RuntimeError:
        log.exception("database down")
    _assert_no_secret(captured)
    (line,) = _lines(captured)
    assert "RuntimeError" in line["exception"]


@pytest.mark.parametrize(
    "hostile",
    [
        'x"}\n{"level": "critical", "event": "forged"}',
        "line one\r\nline two",
        "nul\x00bell\x07esc\x1b[2Jdel\x7f",
        "unicode line separator\u2028and\u2029paragraph\x85next",
    ],
)
def test_values_cannot_forge_lines(captured: io.StringIO, hostile: str) -> None:
    get_logger("tests.logs").info(hostile, field=hostile, nested={"k": [hostile]})
    logging.getLogger("tests.stdlib").info("stdlib %s", hostile, extra={"field": hostile})
    raw = captured.getvalue()
    assert raw.count("\n") == 2
    lines = _lines(captured)
    assert len(lines) == 2
    assert lines[0]["event"] == hostile and lines[0]["field"] == hostile
    assert lines[0]["nested"] == {"k": [hostile]}
    assert lines[1]["event"] == f"stdlib {hostile}" and lines[1]["field"] == hostile
    assert all("forged" not in line.get("event", "")[:6] for line in lines)


def test_log_level_filters(captured: io.StringIO) -> None:
    configure_logging("warning", stream=captured)
    get_logger("tests.logs").info("hidden")
    logging.getLogger("tests.stdlib").info("hidden too")
    get_logger("tests.logs").warning("shown")
    assert [line["event"] for line in _lines(captured)] == ["shown"]


def test_redact_text_keeps_ordinary_text() -> None:
    text = "project p_0123 created by alice at https://example.test/path?x=1"
    assert redact_text(text) == text
    assert SECRETS["dsn_password"] not in redact_text(
        f"postgres://admin:{SECRETS['dsn_password']}@h:5432/db"
    )

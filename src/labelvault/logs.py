"""Structured JSON logs, with a redaction step every record passes through.

Redaction removes values of secret-looking keys (passwords, tokens, keys, cookies, authorization
headers, DSNs), passwords inside DSNs, and anything shaped like a LabelVault API token, wherever
it appears in a record. Control characters are escaped by the JSON encoder, so a log line cannot
be forged by a value that contains a newline.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any, TextIO

import structlog

REDACTED = "[redacted]"

_SECRET_KEY = re.compile(
    r"(pass(word|wd|phrase)?|secret|token|api[_-]?key|private[_-]?key|credential|authorization|"
    r"cookie|set-cookie|session[_-]?(id|secret)|dsn|database_url|totp|otp|recovery|kek|dek|"
    r"signing_key|csrf)",
    re.IGNORECASE,
)
_DSN_PASSWORD = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://[^:/@\s]+):(?P<pw>[^@\s]+)@", re.I)
_DSN_KV_PASSWORD = re.compile(r"(password\s*=\s*)('[^']*'|\"[^\"]*\"|\S+)", re.I)
_API_TOKEN = re.compile(r"\blv_[A-Za-z0-9_-]{16,}")
_BEARER = re.compile(r"(bearer\s+)\S+", re.I)
# a header line in free text ("Authorization: Basic ...", "Cookie: a=b; c=d"): the whole value
_SECRET_HEADER = re.compile(
    r"\b((?:proxy-)?authorization|(?:set-)?cookie|x-api-key)(\s*:\s*)[^\r\n]+", re.I
)


def redact_text(text: str) -> str:
    text = _DSN_PASSWORD.sub(lambda m: f"{m.group('scheme')}:{REDACTED}@", text)
    text = _DSN_KV_PASSWORD.sub(lambda m: f"{m.group(1)}{REDACTED}", text)
    text = _API_TOKEN.sub("lv_" + REDACTED, text)
    text = _SECRET_HEADER.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)
    return _BEARER.sub(lambda m: f"{m.group(1)}{REDACTED}", text)


def redact_value(key: str | None, value: Any) -> Any:
    if key is not None and _SECRET_KEY.search(key) and value not in (None, "", False):
        return REDACTED
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return {k: redact_value(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        if len(value) == 2 and isinstance(value[0], str | bytes):
            # a (name, value) pair, as in a list of headers
            name = value[0].decode("latin-1") if isinstance(value[0], bytes) else value[0]
            return [redact_value(None, value[0]), redact_value(name, value[1])]
        return [redact_value(None, v) for v in value]
    if isinstance(value, bytes | bytearray | memoryview):
        return f"<{len(value)} bytes>"
    return value


def _redact_processor(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    return {k: (v if k == "level" else redact_value(k, v)) for k, v in event_dict.items()}


def configure_logging(level: str = "info", stream: TextIO | None = None) -> None:
    """Route structlog and the standard library (uvicorn, psycopg) through one JSON renderer."""
    out = stream or sys.stderr
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        _redact_processor,
    ]
    structlog.configure(
        processors=[*shared, structlog.processors.JSONRenderer()],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared[:-1], structlog.stdlib.ExtraAdder()],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                _redact_processor,
                structlog.processors.JSONRenderer(),
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for quiet in ("pgserver", "alembic", "httpx", "httpcore", "botocore", "boto3"):
        logging.getLogger(quiet).setLevel(logging.WARNING)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)

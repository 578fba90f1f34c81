"""Audit events and their canonical byte encoding.

The body of an event is RFC 8785-style JSON (JCS): object keys sorted, no whitespace, UTF-8,
integers only (within the IEEE-754 exact range), no floats. Because every key is ASCII and
every string is free of control characters, Python's ``json.dumps`` with these options produces
exactly the JCS bytes. The body is stored exactly as hashed, so readers never re-encode.

Fields are bounded and log-injection safe: control characters, line/paragraph separators, bidi
overrides and lone surrogates are rejected in fields the application chooses, and escaped
(``\\xNN`` / ``\\uNNNN`` as visible text) in the two fields a client chooses (user agent, source
address). Error messages name the field, never its value.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final, Literal, get_args

from labelvault.kernel import Actor, ActorKind, InvalidInputError

FORMAT_VERSION: Final = 1
MAX_FIELD_CHARS: Final = 512
MAX_DETAILS: Final = 32
MAX_INT: Final = 2**53 - 1  # exact in every JSON reader (RFC 8785 / I-JSON)

ActorKindName = Literal["user", "token", "system"]
Outcome = Literal["success", "denied", "failure"]
DetailValue = str | int | bool | None

ACTOR_KINDS: Final[frozenset[str]] = frozenset(get_args(ActorKindName))
OUTCOMES: Final[frozenset[str]] = frozenset(get_args(Outcome))

_ACTION_RE: Final = re.compile(r"[a-z][a-z0-9_]*(\.[a-z0-9_]+)+")
_DETAIL_KEY_RE: Final = re.compile(r"[a-z][a-z0-9_]{0,63}")
# C0, DEL, C1, line/paragraph separators, bidi embeddings/overrides/isolates/marks, BOM,
# and lone surrogates (which cannot be encoded as UTF-8).
_UNSAFE_RE: Final = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069\ufeff\ud800-\udfff]"
)


class InvalidAuditEventError(InvalidInputError, ValueError):
    """An audit event (or a stored body) is not acceptable; the message names the field only."""


def _escape_char(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def sanitize_untrusted(value: str, limit: int = MAX_FIELD_CHARS) -> str:
    """Make a client-chosen string safe to record: escape unsafe characters, then truncate."""
    return _UNSAFE_RE.sub(_escape_char, value)[:limit]


def _check_text(name: str, value: object, *, optional: bool = True) -> None:
    if value is None:
        if optional:
            return
        raise InvalidAuditEventError(f"{name} is required", field=name)
    if not isinstance(value, str):
        raise InvalidAuditEventError(f"{name} must be a string", field=name)
    if not value:
        raise InvalidAuditEventError(f"{name} must not be empty", field=name)
    if len(value) > MAX_FIELD_CHARS:
        raise InvalidAuditEventError(f"{name} is longer than {MAX_FIELD_CHARS}", field=name)
    if _UNSAFE_RE.search(value):
        raise InvalidAuditEventError(f"{name} contains a control character", field=name)


def _check_details(details: Mapping[str, DetailValue]) -> None:
    if len(details) > MAX_DETAILS:
        raise InvalidAuditEventError(f"details has more than {MAX_DETAILS} keys", field="details")
    for key, value in details.items():
        if not isinstance(key, str) or not _DETAIL_KEY_RE.fullmatch(key):
            raise InvalidAuditEventError("details key is malformed", field="details")
        where = f"details.{key}"
        if value is None or isinstance(value, bool):
            continue
        if isinstance(value, int):
            if not -MAX_INT <= value <= MAX_INT:
                raise InvalidAuditEventError(f"{where} is out of range", field=where)
        elif isinstance(value, str):
            _check_text(where, value)
        else:  # floats included: their text form is not canonical across languages
            raise InvalidAuditEventError(f"{where} must be str, int, bool or null", field=where)


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One security-relevant action, as recorded. Never carries payload content or secrets."""

    action: str
    outcome: Outcome
    actor_kind: ActorKindName
    actor_id: str | None = None
    session_ref: str | None = None
    token_id: str | None = None
    source_address: str | None = None
    user_agent: str | None = None
    resource_type: str | None = None
    resource_id: str | None = None
    project_id: str | None = None
    org_id: str | None = None
    reason: str | None = None
    request_id: str | None = None
    privileged: bool = False
    details: Mapping[str, DetailValue] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.action, str) or not _ACTION_RE.fullmatch(self.action):
            raise InvalidAuditEventError("action is malformed", field="action")
        _check_text("action", self.action, optional=False)
        if not isinstance(self.outcome, str) or self.outcome not in OUTCOMES:
            raise InvalidAuditEventError("outcome is not known", field="outcome")
        if not isinstance(self.actor_kind, str) or self.actor_kind not in ACTOR_KINDS:
            raise InvalidAuditEventError("actor_kind is not known", field="actor_kind")
        if not isinstance(self.privileged, bool):
            raise InvalidAuditEventError("privileged must be a bool", field="privileged")
        for name in ("source_address", "user_agent"):
            value = getattr(self, name)
            if isinstance(value, str):
                object.__setattr__(self, name, sanitize_untrusted(value) or None)
        for name in _TEXT_FIELDS:
            _check_text(name, getattr(self, name))
        if self.privileged and self.reason is None:
            raise InvalidAuditEventError("a privileged action needs a reason", field="reason")
        if not isinstance(self.details, Mapping):
            raise InvalidAuditEventError("details must be a mapping", field="details")
        details = dict(self.details)
        _check_details(details)
        object.__setattr__(self, "details", MappingProxyType(details))

    @classmethod
    def for_actor(
        cls,
        actor: Actor,
        *,
        action: str,
        outcome: Outcome = "success",
        **fields: Any,
    ) -> AuditEvent:
        """Build an event for ``actor``, copying who/where from it (explicit fields win)."""
        kind: ActorKindName = actor.kind.value  # type: ignore[assignment]
        if actor.kind is ActorKind.SYSTEM:
            actor_id = actor.label or None
        else:
            actor_id = str(actor.user_id) if actor.user_id else None
        base: dict[str, Any] = {
            "actor_id": actor_id,
            "session_ref": actor.session_id,
            "token_id": str(actor.token_id) if actor.token_id else None,
            "source_address": actor.source_address,
            "user_agent": actor.user_agent,
            "org_id": str(actor.org_id) if actor.org_id else None,
            "request_id": actor.request_id,
        }
        base.update(fields)
        return cls(action=action, outcome=outcome, actor_kind=kind, **base)

    def to_dict(self) -> dict[str, Any]:
        """The JSON object that :func:`canonical_body` encodes (including ``"v"``)."""
        out: dict[str, Any] = {"v": FORMAT_VERSION}
        for name in _ALL_FIELDS:
            out[name] = getattr(self, name)
        out["details"] = dict(self.details)
        return out


_TEXT_FIELDS: Final = (
    "actor_id",
    "session_ref",
    "token_id",
    "source_address",
    "user_agent",
    "resource_type",
    "resource_id",
    "project_id",
    "org_id",
    "reason",
    "request_id",
)
_ALL_FIELDS: Final = (
    "action",
    "outcome",
    "actor_kind",
    *_TEXT_FIELDS,
    "privileged",
    "details",
)
_BODY_KEYS: Final = frozenset(("v", *_ALL_FIELDS))


def _encode(obj: Mapping[str, Any]) -> bytes:
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def canonical_body(event: AuditEvent) -> bytes:
    """The canonical bytes of ``event``: deterministic, and what gets hashed and stored."""
    return _encode(event.to_dict())


def leaf_hash(body: bytes) -> bytes:
    """RFC 9162 leaf hash: ``SHA-256(0x00 || body)``."""
    return hashlib.sha256(b"\x00" + body).digest()


def _reject_float(text: str) -> Any:
    raise InvalidAuditEventError("body contains a non-integer number", field="body")


def _reject_constant(text: str) -> Any:
    raise InvalidAuditEventError("body contains a non-JSON number", field="body")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise InvalidAuditEventError("body has a duplicate key", field="body")
        out[key] = value
    return out


def decode_event(body: bytes) -> AuditEvent:
    """Parse a stored body strictly back into an :class:`AuditEvent`.

    Rejects anything that is not exactly the canonical encoding of a valid event (bad UTF-8,
    duplicate keys, floats, unknown or missing keys, a different version, non-canonical bytes).
    """
    try:
        text = body.decode("utf-8")
        obj = json.loads(
            text,
            parse_float=_reject_float,
            parse_constant=_reject_constant,
            object_pairs_hook=_unique_keys,
        )
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise InvalidAuditEventError("body is not valid UTF-8 JSON", field="body") from None
    if not isinstance(obj, dict) or set(obj) != _BODY_KEYS:
        raise InvalidAuditEventError("body does not have the event keys", field="body")
    version = obj.pop("v")
    if type(version) is not int or version != FORMAT_VERSION:
        raise InvalidAuditEventError("body has an unknown format version", field="body")
    if not isinstance(obj["details"], dict):
        raise InvalidAuditEventError("details must be an object", field="details")
    event = AuditEvent(**obj)
    if canonical_body(event) != body:
        raise InvalidAuditEventError("body is not in canonical form", field="body")
    return event


def parse_body(body: bytes) -> dict[str, Any]:
    """Strictly parse a stored body (see :func:`decode_event`) into its JSON object."""
    return decode_event(body).to_dict()

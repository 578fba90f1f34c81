"""Audit events: validation, canonical bytes, strict parsing."""

from __future__ import annotations

import hashlib
import json
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from labelvault.audit import (
    AuditEvent,
    InvalidAuditEventError,
    canonical_body,
    decode_event,
    leaf_hash,
    parse_body,
)
from labelvault.kernel import Actor, ActorKind, InvalidInputError


def event(**kw: object) -> AuditEvent:
    base: dict[str, object] = {"action": "item.read", "outcome": "success", "actor_kind": "user"}
    base.update(kw)
    return AuditEvent(**base)  # type: ignore[arg-type]


def test_canonical_body_exact_bytes() -> None:
    body = canonical_body(event(actor_id="u1", details={"z": 1, "a": True, "m": None}))
    assert body == (
        b'{"action":"item.read","actor_id":"u1","actor_kind":"user","details":'
        b'{"a":true,"m":null,"z":1},"org_id":null,"outcome":"success","privileged":false,'
        b'"project_id":null,"reason":null,"request_id":null,"resource_id":null,'
        b'"resource_type":null,"session_ref":null,"source_address":null,"token_id":null,'
        b'"user_agent":null,"v":1}'
    )
    assert leaf_hash(body) == hashlib.sha256(b"\x00" + body).digest()


detail_values = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**53) + 1, 2**53 - 1), st.text(max_size=20)
)
detail_keys = st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True)


@given(st.dictionaries(detail_keys, detail_values, max_size=10), st.randoms())
def test_deterministic_under_dict_reordering(details: dict[str, object], rnd: object) -> None:
    safe = {
        k: v
        for k, v in details.items()
        if not isinstance(v, str) or (v and v.isprintable() and "\u2028" not in v)
    }
    items = list(safe.items())
    rnd.shuffle(items)  # type: ignore[attr-defined]
    a = canonical_body(event(details=safe))  # type: ignore[arg-type]
    b = canonical_body(event(details=dict(items)))  # type: ignore[arg-type]
    assert a == b
    assert decode_event(a) == event(details=safe)  # type: ignore[arg-type]
    assert parse_body(a)["details"] == safe


def test_unicode_is_utf8_not_escaped() -> None:
    body = canonical_body(event(reason="Überprüfung 检查 👩‍💻", privileged=True))
    assert "Überprüfung 检查 👩‍💻".encode() in body
    assert decode_event(body).reason == "Überprüfung 检查 👩‍💻"


@pytest.mark.parametrize("value", [1.5, 0.0, float("nan"), [1], {"a": 1}, 2**53, -(2**53)])
def test_rejects_floats_and_other_detail_values(value: object) -> None:
    with pytest.raises(InvalidAuditEventError):
        event(details={"x": value})


@pytest.mark.parametrize("bad", ["a\nb", "a\rb", "a\x00b", "a\x1bb", "\x85", "a\u2028b", "\u202e"])
def test_rejects_control_characters(bad: str) -> None:
    for name in ("actor_id", "resource_id", "reason", "request_id", "session_ref"):
        with pytest.raises(InvalidAuditEventError) as err:
            event(**{name: bad})
        assert bad not in str(err.value)  # messages never echo the value
    with pytest.raises(InvalidAuditEventError):
        event(details={"k": bad})


def test_untrusted_fields_are_escaped_and_truncated() -> None:
    e = event(user_agent="evil\r\nX-Injected: 1" + "a" * 1000, source_address="1.2.3.4\n")
    assert e.user_agent is not None and e.user_agent.startswith("evil\\x0d\\x0aX-Injected")
    assert len(e.user_agent) == 512
    assert e.source_address == "1.2.3.4\\x0a"
    assert b"\n" not in canonical_body(e)


@pytest.mark.parametrize(
    "action", ["item", "Item.read", "item.", ".read", "item..read", "item.read!", "1x.read", ""]
)
def test_rejects_bad_actions(action: str) -> None:
    with pytest.raises(InvalidAuditEventError):
        event(action=action)


def test_accepts_good_actions() -> None:
    for action in ("item.read", "auth.login.failed", "key_rotation.dek.v2"):
        assert event(action=action).action == action


def test_enums_lengths_and_privileged() -> None:
    with pytest.raises(InvalidAuditEventError):
        event(outcome="ok")
    with pytest.raises(InvalidAuditEventError):
        event(actor_kind="admin")
    with pytest.raises(InvalidAuditEventError):
        event(resource_id="x" * 513)
    with pytest.raises(InvalidAuditEventError):
        event(resource_id="")
    with pytest.raises(InvalidAuditEventError):
        event(details={f"k{i}": i for i in range(33)})
    with pytest.raises(InvalidAuditEventError):
        event(details={"Bad-Key": 1})
    with pytest.raises(ValueError, match="reason"):
        event(privileged=True)
    with pytest.raises(InvalidInputError):
        event(privileged=True)
    assert event(privileged=True, reason="ticket SEC-12").privileged


def test_event_is_immutable() -> None:
    e = event(details={"a": 1})
    with pytest.raises(TypeError):
        e.details["a"] = 2  # type: ignore[index]
    with pytest.raises(AttributeError):
        e.action = "x.y"  # type: ignore[misc]


def test_for_actor() -> None:
    uid, tid = uuid.uuid4(), uuid.uuid4()
    actor = Actor(
        kind=ActorKind.TOKEN,
        user_id=uid,
        token_id=tid,
        session_id=None,
        source_address="198.51.100.7",
        user_agent="cli/2",
        request_id="r-1",
    )
    e = AuditEvent.for_actor(actor, action="item.read", resource_id="i-1")
    assert (e.actor_kind, e.actor_id, e.token_id) == ("token", str(uid), str(tid))
    assert (e.source_address, e.user_agent, e.request_id) == ("198.51.100.7", "cli/2", "r-1")
    sys_event = AuditEvent.for_actor(Actor.system("retention-job"), action="retention.purge")
    assert (sys_event.actor_kind, sys_event.actor_id) == ("system", "retention-job")


def _body(**override: object) -> bytes:
    obj = json.loads(canonical_body(event()))
    obj.update(override)
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"\xff",
        b"[]",
        _body(v=2),
        _body(v=True),
        _body(extra=1),
        _body(details={"x": 1.0}),
        _body(privileged=1),
        _body(reason="a\nb"),
        canonical_body(event()).replace(b'"v":1}', b'"v":1,"v":1}'),
        canonical_body(event()).replace(b",", b", ", 1),
        canonical_body(event()) + b" ",
        b'{"v":NaN}',
    ],
)
def test_parse_body_is_strict(body: bytes) -> None:
    with pytest.raises(InvalidAuditEventError):
        parse_body(body)

"""C2SP signed-note / tlog-checkpoint signing and verification."""

from __future__ import annotations

import base64
import hashlib

import pytest
from audit_testchain import ORIGIN, SIGNER
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from labelvault.audit import (
    CheckpointError,
    Signer,
    chain_head_extension,
    key_id,
    parse_and_verify,
    parse_verifier_key,
    sign_checkpoint,
)

ROOT = hashlib.sha256(b"root").digest()
HEAD = hashlib.sha256(b"head").digest()
OTHER = Signer.from_seed("other-key", b"\x07" * 32)


def note(size: int = 10, signer: Signer = SIGNER, extra: tuple[str, ...] = ()) -> str:
    ext = [chain_head_extension(size, HEAD, 1_700_000_000_000_000), *extra]
    return sign_checkpoint(signer, ORIGIN, size, ROOT, ext)


def test_round_trip_and_exact_format() -> None:
    text = note(extra=("x-witness-hint abc",))
    body, sig = text.split("\n\n")
    assert body == (
        f"{ORIGIN}\n10\n{base64.b64encode(ROOT).decode()}\n"
        f"labelvault-chain-head 10 {base64.b64encode(HEAD).decode()} 1700000000000000\n"
        "x-witness-hint abc"
    )
    assert sig.startswith("\u2014 labelvault-audit-test ") and sig.endswith("\n")
    raw = base64.b64decode(sig.split(" ")[2])
    assert raw[:4] == SIGNER.key_id and len(raw) == 68
    Ed25519PublicKey.from_public_bytes(SIGNER.public_key_bytes).verify(
        raw[4:], (body + "\n").encode()
    )
    cp = parse_and_verify(text, [SIGNER.verifier_key()])
    assert (cp.origin, cp.size, cp.root) == (ORIGIN, 10, ROOT)
    assert (cp.chain_seq, cp.chain_head, cp.ts_us) == (10, HEAD, 1_700_000_000_000_000)
    assert cp.raw == text and cp.extensions == ("x-witness-hint abc",)
    assert cp.signed_by == ("labelvault-audit-test",)


def test_key_id_and_verifier_key_format() -> None:
    pub = SIGNER.public_key_bytes
    expected = hashlib.sha256(b"labelvault-audit-test\n\x01" + pub).digest()[:4]
    assert key_id("labelvault-audit-test", pub) == expected == SIGNER.key_id
    vk = SIGNER.verifier_key()
    name, hex_id, b64 = vk.split("+", 2)
    assert (name, hex_id) == ("labelvault-audit-test", expected.hex())
    assert base64.b64decode(b64) == b"\x01" + pub
    assert parse_verifier_key(vk).key_id == expected
    bad_id = f"{name}+{'0' * 8 if hex_id != '0' * 8 else '1' * 8}+{b64}"
    for bad in (bad_id, f"{name}+{hex_id}", f"a b+{hex_id}+{b64}", f"{name}+{hex_id}+!!"):
        with pytest.raises(CheckpointError):
            parse_verifier_key(bad)


def test_signer_does_not_leak_private_key() -> None:
    seed = b"\x42" * 32
    s = Signer.from_seed("k", seed)
    assert seed.hex() not in repr(s) and "42424242" not in repr(s)
    with pytest.raises(ValueError):
        Signer.from_seed("k", b"short")
    with pytest.raises(ValueError):
        Signer.from_seed("bad name", seed)


def test_wrong_key_and_unknown_key_only_rejected() -> None:
    text = note()
    with pytest.raises(CheckpointError, match="not signed by any known key"):
        parse_and_verify(text, [OTHER.verifier_key()])
    with pytest.raises(CheckpointError):
        parse_and_verify(text, [])
    # same name, different key: key ID differs -> treated as unknown -> rejected
    impostor = Signer.from_seed("labelvault-audit-test", b"\x09" * 32)
    with pytest.raises(CheckpointError):
        parse_and_verify(text, [impostor.verifier_key()])


def test_extra_unknown_signature_is_ignored_but_bad_known_signature_rejects() -> None:
    text = note()
    other_line = note(signer=OTHER).split("\n\n")[1]
    both = text + other_line
    assert parse_and_verify(both, [SIGNER.verifier_key()]).size == 10
    assert parse_and_verify(both, [SIGNER.verifier_key(), OTHER.verifier_key()]).signed_by == (
        "labelvault-audit-test",
        "other-key",
    )
    # OTHER's signature is over a different body? No: same body, so forge a failing one.
    body = text.split("\n\n")[0]
    forged = base64.b64encode(OTHER.key_id + b"\x00" * 64).decode()
    bad = f"{text}\u2014 other-key {forged}\n"
    assert body
    with pytest.raises(CheckpointError, match="does not verify"):
        parse_and_verify(bad, [SIGNER.verifier_key(), OTHER.verifier_key()])
    assert parse_and_verify(bad, [SIGNER.verifier_key()]).size == 10


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("\n10\n", "\n11\n"),  # altered size
        ("labelvault-chain-head 10", "labelvault-chain-head 11"),
        ("1700000000000000", "1700000000000001"),
        (ORIGIN, ORIGIN + "x"),
    ],
)
def test_altered_body_rejected(old: str, new: str) -> None:
    text = note()
    assert old in text
    with pytest.raises(CheckpointError):
        parse_and_verify(text.replace(old, new, 1), [SIGNER.verifier_key()])


def _resign(body: str, signer: Signer = SIGNER) -> str:
    sig = signer.sign(body.encode())
    return f"{body}\n\u2014 {signer.key_name} {base64.b64encode(signer.key_id + sig).decode()}\n"


def test_malformed_but_correctly_signed_notes_rejected() -> None:
    r = base64.b64encode(ROOT).decode()
    hd = base64.b64encode(HEAD).decode()
    head = f"labelvault-chain-head 5 {hd} 1\n"
    bodies = [
        f"{ORIGIN}\n5\n{r}\n",  # no chain head
        f"{ORIGIN}\n05\n{r}\n{head}",  # leading zero
        f"{ORIGIN}\n-5\n{r}\n{head}",
        f"{ORIGIN}\n5\n{r[:-1]}\n{head}",  # bad base64
        f"{ORIGIN}\n5\n{base64.b64encode(ROOT[:31]).decode()}\n{head}",
        f"{ORIGIN}\n6\n{r}\n{head}",  # chain seq != size
        f"{ORIGIN}\n5\n{r}\n{head}{head}",  # two chain heads
        f"{ORIGIN}\n5\n{r}\nlabelvault-chain-head 5 {hd}\n",
        f"\n5\n{r}\n{head}",  # empty origin
        f"{ORIGIN}\n5\n{r}\n\n{head}",  # blank line inside body
        f"{ORIGIN}\r\n5\n{r}\n{head}",  # control character
        f"{ORIGIN}\u202e\n5\n{r}\n{head}",  # bidi override
    ]
    for body in bodies:
        with pytest.raises(CheckpointError):
            parse_and_verify(_resign(body), [SIGNER.verifier_key()])
    good = _resign(f"{ORIGIN}\n5\n{r}\n{head}")
    assert parse_and_verify(good, [SIGNER.verifier_key()]).size == 5


def test_signature_line_format_enforced() -> None:
    text = note()
    keys = [SIGNER.verifier_key()]
    variants = [
        text.replace("\u2014", "-"),  # hyphen-minus
        text.replace("\u2014", "\u2013"),  # en dash
        text.replace("\u2014 ", "\u2014"),
        text.replace("\u2014 labelvault-audit-test ", "\u2014 labelvault-audit-test  "),
        text[:-1],  # no final newline
        text.replace("\n\n", "\n"),  # no separator
        text + "\n",  # trailing empty signature line
        text.split("\n\n")[0] + "\n\n",  # no signature
        text + "garbage\n",
        text.replace("\n\n", "\n\n\x00"),
    ]
    for v in variants:
        with pytest.raises(CheckpointError):
            parse_and_verify(v, keys)


def test_sign_checkpoint_refuses_invalid_input() -> None:
    with pytest.raises(CheckpointError):
        sign_checkpoint(SIGNER, ORIGIN, 3, ROOT, [])  # no chain head
    with pytest.raises(CheckpointError):
        sign_checkpoint(SIGNER, "bad\norigin", 3, ROOT, [chain_head_extension(3, HEAD, 1)])
    with pytest.raises(ValueError):
        sign_checkpoint(SIGNER, ORIGIN, 3, ROOT[:5], [chain_head_extension(3, HEAD, 1)])

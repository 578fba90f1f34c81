"""Signed checkpoints: C2SP tlog-checkpoint bodies in C2SP signed-note envelopes (Ed25519).

A LabelVault checkpoint note looks like::

    <origin>
    <tree size>
    <base64 Merkle root over the first <tree size> leaf hashes>
    labelvault-chain-head <seq = tree size> <base64 chain_hash of that event> <its ts_us>

    — <key name> <base64(key ID (4 bytes) || Ed25519 signature over the body)>

so one signature commits to both the RFC 9162 root and the hash-chain head. Verifiers ignore
signatures from unknown keys, reject the note if no known key signed it, and reject it if any
known key's signature fails (c2sp.org/signed-note).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from labelvault.kernel import InvalidInputError

ALG_ED25519: Final = b"\x01"
CHAIN_HEAD_KEYWORD: Final = "labelvault-chain-head"
SIG_PREFIX: Final = "\u2014 "  # EM DASH, space
MAX_NOTE_CHARS: Final = 64 * 1024
MAX_SIGNATURES: Final = 100
MAX_INT64: Final = 2**63 - 1

_DECIMAL_RE: Final = re.compile(r"0|[1-9][0-9]{0,18}")
_HEX_KEY_ID_RE: Final = re.compile(r"[0-9a-f]{8}")


class CheckpointError(InvalidInputError, ValueError):
    """A checkpoint note (or verifier key) is malformed, unsigned, or badly signed."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str, what: str) -> bytes:
    try:
        data = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise CheckpointError(f"{what} is not standard base64") from None
    if _b64(data) != text:
        raise CheckpointError(f"{what} is not canonical base64")
    return data


def _check_line(text: str, what: str) -> None:
    if not text or not text.isprintable():
        raise CheckpointError(f"{what} is empty or contains a control character")


def _check_key_name(name: str) -> None:
    _check_line(name, "key name")
    if "+" in name or any(c.isspace() for c in name):
        raise CheckpointError("key name must not contain whitespace or '+'")


def _parse_int(text: str, what: str) -> int:
    if not _DECIMAL_RE.fullmatch(text) or int(text) > MAX_INT64:
        raise CheckpointError(f"{what} is not a decimal 64-bit integer")
    return int(text)


def key_id(name: str, public_key: bytes) -> bytes:
    """signed-note Ed25519 key ID: ``SHA-256(name || 0x0A || 0x01 || public key)[:4]``."""
    return hashlib.sha256(name.encode("utf-8") + b"\n" + ALG_ED25519 + public_key).digest()[:4]


class Signer:
    """An Ed25519 checkpoint signing key with its signed-note key name."""

    __slots__ = ("_key", "key_id", "key_name", "public_key_bytes")

    def __init__(self, key_name: str, private_key: Ed25519PrivateKey) -> None:
        _check_key_name(key_name)
        self.key_name = key_name
        self._key = private_key
        self.public_key_bytes = private_key.public_key().public_bytes(
            Encoding.Raw, PublicFormat.Raw
        )
        self.key_id = key_id(key_name, self.public_key_bytes)

    @classmethod
    def from_seed(cls, key_name: str, seed: bytes) -> Signer:
        """From the raw 32-byte Ed25519 private key (seed)."""
        if len(seed) != 32:
            raise ValueError("an Ed25519 seed is 32 bytes")
        return cls(key_name, Ed25519PrivateKey.from_private_bytes(seed))

    @classmethod
    def generate(cls, key_name: str) -> Signer:
        return cls(key_name, Ed25519PrivateKey.generate())

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(message)

    def verifier_key(self) -> str:
        """``<name>+<hex key ID>+<base64(0x01 || public key)>``."""
        return f"{self.key_name}+{self.key_id.hex()}+{_b64(ALG_ED25519 + self.public_key_bytes)}"

    def __repr__(self) -> str:
        return f"Signer({self.key_name!r}, key_id={self.key_id.hex()})"


@dataclass(frozen=True, slots=True)
class VerifierKey:
    name: str
    key_id: bytes
    public_key: Ed25519PublicKey


def parse_verifier_key(text: str) -> VerifierKey:
    """Parse ``<name>+<hex key ID>+<base64(0x01 || public key)>``, checking the key ID."""
    parts = text.split("+", 2)
    if len(parts) != 3:
        raise CheckpointError("verifier key must be name+keyid+key")
    name, hex_id, b64_key = parts
    _check_key_name(name)
    if not _HEX_KEY_ID_RE.fullmatch(hex_id):
        raise CheckpointError("verifier key ID must be 8 lowercase hex digits")
    raw = _unb64(b64_key, "verifier key")
    if len(raw) != 33 or raw[:1] != ALG_ED25519:
        raise CheckpointError("verifier key is not an Ed25519 key")
    if key_id(name, raw[1:]) != bytes.fromhex(hex_id):
        raise CheckpointError("verifier key ID does not match the key")
    return VerifierKey(name, bytes.fromhex(hex_id), Ed25519PublicKey.from_public_bytes(raw[1:]))


def chain_head_extension(seq: int, chain_hash: bytes, ts_us: int) -> str:
    """The extension line committing a checkpoint to the chain head at ``seq``."""
    if not 0 <= seq <= MAX_INT64 or not 0 <= ts_us <= MAX_INT64 or len(chain_hash) != 32:
        raise ValueError("bad chain head")
    return f"{CHAIN_HEAD_KEYWORD} {seq} {_b64(chain_hash)} {ts_us}"


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A verified checkpoint. ``chain_seq == size``; ``raw`` is the full note text."""

    origin: str
    size: int
    root: bytes
    chain_seq: int
    chain_head: bytes
    ts_us: int
    raw: str
    extensions: tuple[str, ...] = ()  # other extension lines, uninterpreted
    signed_by: tuple[str, ...] = ()  # names of the known keys whose signatures verified


def checkpoint_body(origin: str, size: int, root: bytes, extensions: Sequence[str] = ()) -> str:
    _check_line(origin, "origin")
    if not 0 <= size <= MAX_INT64 or len(root) != 32:
        raise ValueError("bad tree size or root")
    for line in extensions:
        _check_line(line, "extension line")
    return "".join(f"{line}\n" for line in (origin, str(size), _b64(root), *extensions))


def sign_checkpoint(
    signer: Signer, origin: str, size: int, root: bytes, extensions: Sequence[str] = ()
) -> str:
    """Build and sign a checkpoint note.

    ``extensions`` must include exactly one :func:`chain_head_extension` line for ``seq ==
    size``; the note is parsed back before it is returned, so an invalid one is never emitted.
    """
    body = checkpoint_body(origin, size, root, extensions)
    sig = signer.sign(body.encode("utf-8"))
    note = f"{body}\n{SIG_PREFIX}{signer.key_name} {_b64(signer.key_id + sig)}\n"
    parse_and_verify(note, [signer.verifier_key()])
    return note


def _split_note(note: str) -> tuple[str, list[str]]:
    if not isinstance(note, str) or len(note) > MAX_NOTE_CHARS:
        raise CheckpointError("note is not a string or is too long")
    if not note.endswith("\n"):
        raise CheckpointError("note does not end with a newline")
    for line in note[:-1].split("\n"):
        if line and not line.isprintable():
            raise CheckpointError("note contains a control character")
    split = note.rfind("\n\n")
    if split < 0:
        raise CheckpointError("note has no signature block")
    body, sig_block = note[: split + 1], note[split + 2 :]
    sig_lines = sig_block[:-1].split("\n") if sig_block else []
    if not sig_lines or len(sig_lines) > MAX_SIGNATURES:
        raise CheckpointError("note has no or too many signature lines")
    return body, sig_lines


def _check_signatures(body: str, sig_lines: list[str], keys: Iterable[str]) -> tuple[str, ...]:
    known: dict[tuple[str, bytes], VerifierKey] = {}
    for text in keys:
        vk = parse_verifier_key(text)
        known[(vk.name, vk.key_id)] = vk
    message = body.encode("utf-8")
    verified: list[str] = []
    for line in sig_lines:
        if not line.startswith(SIG_PREFIX):
            raise CheckpointError("signature line does not start with an em dash")
        parts = line[len(SIG_PREFIX) :].split(" ")
        if len(parts) != 2:
            raise CheckpointError("signature line is malformed")
        name, b64_sig = parts
        _check_key_name(name)
        raw = _unb64(b64_sig, "signature")
        if len(raw) < 5:
            raise CheckpointError("signature is too short")
        key = known.get((name, raw[:4]))
        if key is None:
            continue  # signed-note: ignore signatures from unknown keys
        try:
            key.public_key.verify(raw[4:], message)
        except InvalidSignature:
            raise CheckpointError(f"signature by known key {name} does not verify") from None
        verified.append(name)
    if not verified:
        raise CheckpointError("note is not signed by any known key")
    return tuple(verified)


def parse_and_verify(note: str, verifier_keys: Iterable[str]) -> Checkpoint:
    """Verify the note's signatures against ``verifier_keys``, then parse the checkpoint."""
    body, sig_lines = _split_note(note)
    signed_by = _check_signatures(body, sig_lines, verifier_keys)
    lines = body[:-1].split("\n")
    if len(lines) < 4 or not all(lines):
        raise CheckpointError("checkpoint body must have origin, size, root and chain head")
    origin, size_text, root_text, *rest = lines
    size = _parse_int(size_text, "tree size")
    root = _unb64(root_text, "root hash")
    if len(root) != 32:
        raise CheckpointError("root hash is not 32 bytes")
    heads = [line for line in rest if line.split(" ", 1)[0] == CHAIN_HEAD_KEYWORD]
    if len(heads) != 1:
        raise CheckpointError("checkpoint needs exactly one chain-head extension line")
    fields = heads[0].split(" ")
    if len(fields) != 4:
        raise CheckpointError("chain-head extension line is malformed")
    chain_seq = _parse_int(fields[1], "chain seq")
    chain_head = _unb64(fields[2], "chain head")
    ts_us = _parse_int(fields[3], "chain head timestamp")
    if len(chain_head) != 32 or chain_seq != size:
        raise CheckpointError("chain head must be 32 bytes at seq == tree size")
    others = tuple(line for line in rest if line.split(" ", 1)[0] != CHAIN_HEAD_KEYWORD)
    return Checkpoint(origin, size, root, chain_seq, chain_head, ts_us, note, others, signed_by)

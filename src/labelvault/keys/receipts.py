"""Signed deletion receipts: what was destroyed when a project was deleted, by whom and why.

A receipt is a C2SP signed note (c2sp.org/signed-note) signed with the deployment's Ed25519
audit signing key (:func:`labelvault.audit.signing.load_signer`, the key that signs audit
checkpoints)::

    labelvault-deletion-receipt/v1
    {"blobs_purged":3,"deleted_at":"2025-01-01T00:00:00Z",...}

    — labelvault-<region> <base64(key ID (4 bytes) || Ed25519 signature over the body)>

The body is the origin line and one line of canonical JSON (keys sorted, no whitespace, ASCII
only), each ending in a newline; the signature covers exactly those bytes. Verify it with the
deployment's verifier key (``labelvault audit public-key`` / ``stored_verifier_keys``):
:func:`verify_receipt`. The same fields are recorded, flattened, in the ``project.delete``
control-plane audit event together with the signature, so the receipt can be rebuilt from the
audit trail (:meth:`DeletionReceipt.from_audit_event`) and verified again at any time.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Final

from cryptography.exceptions import InvalidSignature

from labelvault.audit.checkpoint import SIG_PREFIX, Signer, parse_verifier_key
from labelvault.kernel.errors import InvalidInputError

__all__ = [
    "RECEIPT_ORIGIN",
    "DeletionReceipt",
    "ReceiptError",
    "verify_receipt",
]

RECEIPT_ORIGIN: Final = "labelvault-deletion-receipt/v1"
RECEIPT_VERSION: Final = 1


class ReceiptError(InvalidInputError, ValueError):
    """A deletion receipt is malformed or its signature does not verify."""


@dataclass(frozen=True)
class DeletionReceipt:
    project_id: str
    org_id: str
    project_name: str
    region: str
    deleted_at: str
    deleted_by: str
    actor_kind: str
    reason: str
    key_provider: str
    key_versions_destroyed: list[int] = field(default_factory=list)
    provider_key_material_destroyed: bool = False
    blobs_purged: int = 0
    rows: dict[str, int] = field(default_factory=dict)
    rows_total: int = 0
    audit_chain_head: str | None = None
    schema_dropped: str = ""
    role_dropped: str = ""
    memberships_removed: int = 0
    credential_deleted: bool = False
    v: int = RECEIPT_VERSION
    signature: str | None = None  # "<key name> <base64>", not part of the signed body

    # -- encoding ------------------------------------------------------------------------------
    def content(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("signature")
        return out

    def canonical_json(self) -> str:
        return json.dumps(self.content(), sort_keys=True, separators=(",", ":"), ensure_ascii=True)

    def body(self) -> str:
        return f"{RECEIPT_ORIGIN}\n{self.canonical_json()}\n"

    def signed(self, signer: Signer) -> DeletionReceipt:
        sig = signer.sign(self.body().encode("utf-8"))
        b64 = base64.b64encode(signer.key_id + sig).decode("ascii")
        return _replace(self, signature=f"{signer.key_name} {b64}")

    @property
    def note(self) -> str:
        """The signed note (body, blank line, signature line)."""
        if self.signature is None:
            raise ReceiptError("the receipt is not signed")
        return f"{self.body()}\n{SIG_PREFIX}{self.signature}\n"

    def to_json(self) -> dict[str, Any]:
        """The receipt as shown to people: its fields, the signature and the signed note."""
        out = self.content()
        out["signature"] = self.signature
        out["signed_note"] = self.note if self.signature else None
        return out

    # -- the audit event -----------------------------------------------------------------------
    def audit_details(self) -> dict[str, str | int | bool | None]:
        """Flat details for the ``project.delete`` audit event (each value within its limits);
        the event itself carries project id, org id and reason."""
        return {
            "receipt_v": self.v,
            "project_name": self.project_name,
            "region": self.region,
            "deleted_at": self.deleted_at,
            "deleted_by": self.deleted_by,
            "actor_kind": self.actor_kind,
            "key_provider": self.key_provider,
            "key_versions": ",".join(str(v) for v in self.key_versions_destroyed),
            "kek_destroyed": self.provider_key_material_destroyed,
            "blobs_purged": self.blobs_purged,
            "rows": ",".join(f"{k}={n}" for k, n in sorted(self.rows.items())),
            "rows_total": self.rows_total,
            "audit_chain_head": self.audit_chain_head,
            "schema_dropped": self.schema_dropped,
            "role_dropped": self.role_dropped,
            "memberships_removed": self.memberships_removed,
            "credential_deleted": self.credential_deleted,
            "signature": self.signature,
        }

    @classmethod
    def from_audit_event(cls, event: Mapping[str, Any]) -> DeletionReceipt:
        """Rebuild the signed receipt from a decoded ``project.delete`` event (its JSON object)."""
        d = event.get("details") or {}
        try:
            rows: dict[str, int] = {}
            if d.get("rows"):
                for part in str(d["rows"]).split(","):
                    name, _, count = part.partition("=")
                    rows[name] = int(count)
            versions = [int(v) for v in str(d.get("key_versions") or "").split(",") if v]
            return cls(
                project_id=str(event["project_id"]),
                org_id=str(event["org_id"]),
                project_name=str(d["project_name"]),
                region=str(d["region"]),
                deleted_at=str(d["deleted_at"]),
                deleted_by=str(d["deleted_by"]),
                actor_kind=str(d["actor_kind"]),
                reason=str(event["reason"]),
                key_provider=str(d["key_provider"]),
                key_versions_destroyed=versions,
                provider_key_material_destroyed=bool(d["kek_destroyed"]),
                blobs_purged=int(d["blobs_purged"]),
                rows=rows,
                rows_total=int(d["rows_total"]),
                audit_chain_head=d.get("audit_chain_head"),
                schema_dropped=str(d["schema_dropped"]),
                role_dropped=str(d["role_dropped"]),
                memberships_removed=int(d["memberships_removed"]),
                credential_deleted=bool(d["credential_deleted"]),
                v=int(d["receipt_v"]),
                signature=d.get("signature"),
            )
        except (KeyError, TypeError, ValueError):
            raise ReceiptError("the audit event does not hold a deletion receipt") from None


def _replace(receipt: DeletionReceipt, **changes: Any) -> DeletionReceipt:
    data = asdict(receipt)
    data.update(changes)
    return DeletionReceipt(**data)


def verify_receipt(note: str, verifier_keys: Iterable[str]) -> DeletionReceipt:
    """Check the note's signature by one of ``verifier_keys`` (C2SP verifier-key strings) and
    return the receipt. Raises :class:`ReceiptError` when it is malformed, signed by no known key,
    or a known key's signature does not verify."""
    if not isinstance(note, str) or not note.endswith("\n") or "\n\n" not in note:
        raise ReceiptError("not a signed note")
    split = note.rfind("\n\n")
    body, sig_block = note[: split + 1], note[split + 2 : -1]
    lines = body[:-1].split("\n")
    if len(lines) != 2 or lines[0] != RECEIPT_ORIGIN:
        raise ReceiptError("not a LabelVault deletion receipt")
    known = {}
    for text in verifier_keys:
        vk = parse_verifier_key(text)
        known[(vk.name, vk.key_id)] = vk
    verified: list[str] = []
    for line in sig_block.split("\n"):
        if not line.startswith(SIG_PREFIX):
            raise ReceiptError("signature line does not start with an em dash")
        parts = line[len(SIG_PREFIX) :].split(" ")
        if len(parts) != 2:
            raise ReceiptError("signature line is malformed")
        name, b64 = parts
        try:
            raw = base64.b64decode(b64.encode("ascii"), validate=True)
        except (binascii.Error, UnicodeEncodeError):
            raise ReceiptError("signature is not base64") from None
        key = known.get((name, raw[:4]))
        if key is None:
            continue
        try:
            key.public_key.verify(raw[4:], body.encode("utf-8"))
        except InvalidSignature:
            raise ReceiptError(f"signature by {name} does not verify") from None
        verified.append(line[len(SIG_PREFIX) :])
    if not verified:
        raise ReceiptError("the receipt is not signed by any known key")
    try:
        data = json.loads(lines[1])
        receipt = DeletionReceipt(**data, signature=verified[0])
    except (json.JSONDecodeError, TypeError):
        raise ReceiptError("the receipt body is malformed") from None
    if receipt.canonical_json() != lines[1]:
        raise ReceiptError("the receipt body is not canonical")
    return receipt

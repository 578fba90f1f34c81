"""Tamper-evident audit log: events, hash chain, RFC 9162 Merkle trees, signed checkpoints.

Pure logic; the database layer appends rows and reads them back.

* :class:`AuditEvent` → :func:`canonical_body` (deterministic JSON bytes, stored as hashed) →
  :func:`leaf_hash` (``SHA-256(0x00 || body)``).
* The row's ``chain_hash = sha256(prev_hash || int8send(seq) || int8send(ts_us) || leaf)`` is
  computed by PostgreSQL under the chain-head lock; :func:`link_hash` is the same function in
  Python and :func:`genesis_hash` the ``prev_hash`` of seq 1.
* :func:`sign_checkpoint` / :func:`parse_and_verify`: C2SP tlog-checkpoint notes signed per
  C2SP signed-note (Ed25519), committing to the Merkle root and the chain head.
* :func:`verify_chain`: one streaming pass that reports every edit, deletion, insertion,
  reordering or truncation (the latter against checkpoints).
"""

from labelvault.audit.chain import StoredEvent, genesis_hash, link_hash
from labelvault.audit.checkpoint import (
    Checkpoint,
    CheckpointError,
    Signer,
    VerifierKey,
    chain_head_extension,
    key_id,
    parse_and_verify,
    parse_verifier_key,
    sign_checkpoint,
)
from labelvault.audit.events import (
    AuditEvent,
    InvalidAuditEventError,
    canonical_body,
    decode_event,
    leaf_hash,
    parse_body,
    sanitize_untrusted,
)
from labelvault.audit.merkle import (
    EMPTY_ROOT,
    MerkleAccumulator,
    consistency_proof,
    inclusion_proof,
    merkle_root,
    verify_consistency,
    verify_inclusion,
)
from labelvault.audit.verify import Problem, ProblemKind, VerificationReport, verify_chain

__all__ = [
    "EMPTY_ROOT",
    "AuditEvent",
    "Checkpoint",
    "CheckpointError",
    "InvalidAuditEventError",
    "MerkleAccumulator",
    "Problem",
    "ProblemKind",
    "Signer",
    "StoredEvent",
    "VerificationReport",
    "VerifierKey",
    "canonical_body",
    "chain_head_extension",
    "consistency_proof",
    "decode_event",
    "genesis_hash",
    "inclusion_proof",
    "key_id",
    "leaf_hash",
    "link_hash",
    "merkle_root",
    "parse_and_verify",
    "parse_body",
    "parse_verifier_key",
    "sanitize_untrusted",
    "sign_checkpoint",
    "verify_chain",
    "verify_consistency",
    "verify_inclusion",
]

"""Every encrypted column and blob of a project, in one place.

Re-encryption after a data-key rotation, the plaintext-leak tests and the crypto inventory all
read this list; a new encrypted column is added here in the same change that creates it.
Each value is bound (AEAD associated data) to (project, table, row id, column).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EncryptedColumn:
    table: str
    id_column: str
    column: str


PROJECT_COLUMNS: tuple[EncryptedColumn, ...] = (
    EncryptedColumn("settings", "id", "dedup_key"),
    EncryptedColumn("items", "id", "content"),
    EncryptedColumn("items", "id", "meta"),
    EncryptedColumn("gold_answers", "item_id", "result"),
    EncryptedColumn("annotations", "id", "result"),
    EncryptedColumn("reviews", "id", "comment"),
    EncryptedColumn("reviews", "id", "corrected_result"),
)

# Appended with project step 7: the rejected rows of an import (their reasons name files).
PROJECT_COLUMNS = (*PROJECT_COLUMNS, EncryptedColumn("imports", "id", "report"))

# Blobs (encrypted in chunks): (table, id column, blob-id column). Their context is
# (project, table, row id, "blob").
PROJECT_BLOBS: tuple[tuple[str, str, str], ...] = (
    ("items", "id", "blob_id"),
    ("exports", "id", "blob_id"),
)

CONTROL_COLUMNS: tuple[EncryptedColumn, ...] = (
    EncryptedColumn("project_credentials", "project_id", "secret"),
    EncryptedColumn("mfa_totp", "user_id", "secret"),
    EncryptedColumn("oidc_providers", "org_id", "client_secret"),
)

# Appended with key rotation: sealed SSO sign-in state (short-lived, but it must survive the
# retirement of an old control key version like every other sealed value).
CONTROL_COLUMNS = (*CONTROL_COLUMNS, EncryptedColumn("oidc_pending", "state_hash", "payload"))

"""Pure building blocks shared by every package: errors, ids, the acting principal.

Nothing here imports another labelvault package.
"""

from labelvault.kernel.actor import Actor, ActorKind
from labelvault.kernel.errors import (
    ConflictError,
    InvalidInputError,
    LabelVaultError,
    NotFoundError,
    PermissionDeniedError,
    UnauthenticatedError,
)
from labelvault.kernel.ids import new_id, parse_id

__all__ = [
    "Actor",
    "ActorKind",
    "ConflictError",
    "InvalidInputError",
    "LabelVaultError",
    "NotFoundError",
    "PermissionDeniedError",
    "UnauthenticatedError",
    "new_id",
    "parse_id",
]

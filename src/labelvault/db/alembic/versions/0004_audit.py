"""Control-plane audit chain, checkpoints and the checkpoint signing key.

Revision ID: 0004
Revises: 0003
"""

from alembic import op

from labelvault.db.audit_sql import control_audit_sql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.get_bind().exec_driver_sql(control_audit_sql())


def downgrade() -> None:
    raise NotImplementedError("LabelVault migrations are forward-only")

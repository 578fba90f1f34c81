"""Old sign-in failures are pruned through an index.

Revision ID: 0007
Revises: 0006

Every failed sign-in deletes the failures older than twice the lock window. Without an index on
``at`` that delete read the whole table: under a password-spraying attack (the very case the
table is for) each failure cost a scan of every failure of the last two hours, work the attacker
chose the amount of.
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.get_bind().exec_driver_sql(
        "CREATE INDEX auth_failures_at_idx ON lv_control.auth_failures (at)"
    )


def downgrade() -> None:
    raise NotImplementedError("LabelVault migrations are forward-only")

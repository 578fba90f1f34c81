"""Alembic environment: runs on the connection the migration runner hands over, as lv_owner."""

from __future__ import annotations

from alembic import context

from labelvault.db.names import CONTROL_SCHEMA

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    version_table_schema=CONTROL_SCHEMA,
    transaction_per_migration=True,
)
with context.begin_transaction():
    context.run_migrations()

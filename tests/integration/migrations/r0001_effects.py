"""A test schema: processed events, an outbox and one effect counter.

Revision ID: test_0001
Revises:
Create Date: 2026-11-25
"""

from alembic import op

from hone_common.idempotency import PROCESSED_EVENTS_DDL
from hone_common.outbox import OUTBOX_DDL

revision = "test_0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade(schema: str) -> None:
    op.execute(PROCESSED_EVENTS_DDL.format(schema=schema))
    for statement in OUTBOX_DDL.format(schema=schema).split(";"):
        op.execute(statement)
    op.execute(f"CREATE TABLE {schema}.effects (name text PRIMARY KEY, applied int NOT NULL)")
    op.execute(f"INSERT INTO {schema}.effects VALUES ('images', 0)")


def downgrade(schema: str) -> None:
    raise NotImplementedError

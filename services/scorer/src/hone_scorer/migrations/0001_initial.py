"""The scorer's tables: models, predictions per (image, model version), promotions.

Revision ID: scorer_0001
Revises:
Create Date: 2026-11-25
"""

from alembic import op

from hone_common.idempotency import PROCESSED_EVENTS_DDL
from hone_common.outbox import OUTBOX_DDL

revision = "scorer_0001"
down_revision = None
branch_labels = None
depends_on = None

TABLES = """
CREATE TABLE {schema}.models (
    model_version     text PRIMARY KEY,
    classes           text[] NOT NULL,
    first_answered_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE {schema}.predictions (
    image_id          uuid NOT NULL,
    model_version     text NOT NULL REFERENCES {schema}.models (model_version),
    label             text NOT NULL,
    confidence        real NOT NULL CHECK (confidence BETWEEN 0 AND 1),
    margin            real NOT NULL CHECK (margin BETWEEN 0 AND 1),
    entropy           real NOT NULL CHECK (entropy BETWEEN 0 AND 1),
    probabilities     real[] NOT NULL,
    received_event_id uuid NOT NULL,
    scored_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (image_id, model_version)
);
CREATE INDEX predictions_scored_at ON {schema}.predictions (scored_at);
CREATE TABLE {schema}.promotions (
    event_id          uuid PRIMARY KEY,
    model_version     text NOT NULL,
    previous_version  text,
    promoted_at       timestamptz NOT NULL,
    manual            boolean NOT NULL DEFAULT false,
    recorded_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX promotions_latest ON {schema}.promotions (promoted_at DESC)
"""


def upgrade(schema: str) -> None:
    # One statement per execute: the asyncpg driver prepares statements, one command each.
    for ddl in (TABLES, PROCESSED_EVENTS_DDL, OUTBOX_DDL):
        for statement in ddl.format(schema=schema).split(";"):
            if statement.strip():
                op.execute(statement)


def downgrade(schema: str) -> None:
    raise NotImplementedError("forward-only migrations")

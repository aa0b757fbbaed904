"""The gatekeeper's tables: the model registry, evaluations, decisions.

Revision ID: gatekeeper_0001
Revises:
Create Date: 2026-11-26
"""

from alembic import op

from hone_common.idempotency import PROCESSED_EVENTS_DDL
from hone_common.outbox import OUTBOX_DDL

revision = "gatekeeper_0001"
down_revision = None
branch_labels = None
depends_on = None

TABLES = """
CREATE TABLE {schema}.models (
    model_name         text NOT NULL,
    model_version      text NOT NULL,
    status             text NOT NULL
                       CHECK (status IN ('candidate', 'production', 'rejected', 'retired')),
    parent_version     text,
    artifact_uri       text,
    weakness_model_uri text,
    evaluation_set_uri text,
    classes            text[] NOT NULL DEFAULT '{{}}',
    offline_metrics    jsonb,
    snapshot           jsonb,
    first_seen_at      timestamptz NOT NULL DEFAULT now(),
    promoted_at        timestamptz,
    updated_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (model_name, model_version)
);
CREATE UNIQUE INDEX models_one_production ON {schema}.models (model_name)
    WHERE status = 'production';
CREATE TABLE {schema}.evaluations (
    evaluation_id      uuid PRIMARY KEY,
    model_name         text NOT NULL,
    candidate_version  text NOT NULL,
    production_version text,
    evaluation_set_uri text,
    examples           integer NOT NULL CHECK (examples >= 0),
    set_aside          jsonb NOT NULL DEFAULT '{{}}',
    summary            jsonb NOT NULL DEFAULT '{{}}',
    comparison         jsonb,
    duration_seconds   real NOT NULL,
    created_at         timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (model_name, candidate_version) REFERENCES {schema}.models
);
CREATE INDEX evaluations_by_version ON {schema}.evaluations
    (model_name, candidate_version, created_at DESC);
CREATE TABLE {schema}.decisions (
    decision_id        uuid PRIMARY KEY,
    model_name         text NOT NULL,
    model_version      text NOT NULL,
    previous_version   text,
    kind               text NOT NULL CHECK (kind IN ('promote', 'reject', 'rollback', 'manual')),
    reasons            text[] NOT NULL,
    summary            jsonb NOT NULL DEFAULT '{{}}',
    evaluation_id      uuid REFERENCES {schema}.evaluations,
    actor              text NOT NULL,
    candidate_event_id uuid,
    correlation_id     uuid,
    decided_at         timestamptz NOT NULL DEFAULT now(),
    applied_at         timestamptz,
    apply_error        text,
    FOREIGN KEY (model_name, model_version) REFERENCES {schema}.models
);
CREATE INDEX decisions_by_version ON {schema}.decisions (model_name, model_version, decided_at);
CREATE INDEX decisions_pending ON {schema}.decisions (model_name, decided_at)
    WHERE applied_at IS NULL
"""


def upgrade(schema: str) -> None:
    # One statement per execute: the asyncpg driver prepares statements, one command each.
    for ddl in (TABLES, PROCESSED_EVENTS_DDL, OUTBOX_DDL):
        for statement in ddl.format(schema=schema).split(";"):
            if statement.strip():
                op.execute(statement)


def downgrade(schema: str) -> None:
    raise NotImplementedError("forward-only migrations")

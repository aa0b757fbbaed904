"""The selector's tables: decisions (with their labels' outcomes), labelled-set statistics,
budget and threshold state, promoted models.

Revision ID: selector_0001
Revises:
Create Date: 2026-11-25
"""

from alembic import op

from hone_common.idempotency import PROCESSED_EVENTS_DDL
from hone_common.outbox import OUTBOX_DDL

revision = "selector_0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade(schema: str) -> None:
    op.execute(PROCESSED_EVENTS_DDL.format(schema=schema))
    for statement in OUTBOX_DDL.format(schema=schema).split(";"):
        op.execute(statement)
    # One row per (image, model version) scored: why it was or was not requested, and, once a
    # person answered, whether the production model was wrong (the lineage of every label).
    op.execute(f"""
        CREATE TABLE {schema}.decisions (
            image_id        uuid NOT NULL,
            model_version   text NOT NULL,
            event_id        uuid NOT NULL,
            uri             text NOT NULL,
            camera_id       text NOT NULL,
            object_id       text,
            captured_at     timestamptz NOT NULL,
            hour_bucket     smallint NOT NULL,
            predicted_label text NOT NULL,
            confidence      real NOT NULL,
            probabilities   real[] NOT NULL,
            priority        double precision NOT NULL,
            threshold       double precision,
            scores          jsonb NOT NULL,
            outcome         text NOT NULL,
            requested       boolean NOT NULL,
            strategies      text[] NOT NULL DEFAULT '{{}}',
            reasons         jsonb NOT NULL DEFAULT '[]',
            review_event_id uuid,
            decided_at      timestamptz NOT NULL DEFAULT now(),
            answered_at     timestamptz,
            verdict         text,
            human_label     text,
            labeler_id      text,
            model_wrong     boolean,
            PRIMARY KEY (image_id, model_version)
        )
    """)
    op.execute(
        f"CREATE INDEX decisions_requested_object ON {schema}.decisions (object_id, captured_at) "
        "WHERE requested AND object_id IS NOT NULL"
    )
    op.execute(
        f"CREATE INDEX decisions_requested_camera ON {schema}.decisions (camera_id, captured_at) "
        "WHERE requested"
    )
    op.execute(
        f"CREATE INDEX decisions_open ON {schema}.decisions (decided_at) "
        "WHERE requested AND answered_at IS NULL"
    )
    op.execute(f"CREATE INDEX decisions_decided_at ON {schema}.decisions (decided_at)")
    # The current label of every labelled image, and what it contributes to the counts below,
    # so a relabel moves its contribution instead of counting twice.
    op.execute(f"""
        CREATE TABLE {schema}.labels (
            image_id     uuid PRIMARY KEY,
            verdict      text NOT NULL,
            label        text,
            source       text NOT NULL,
            camera_id    text,
            hour_bucket  smallint,
            model_wrong  boolean,
            labelled_at  timestamptz NOT NULL DEFAULT now()
        )
    """)
    op.execute(f"""
        CREATE TABLE {schema}.class_counts (
            class     text PRIMARY KEY,
            labelled  bigint NOT NULL CHECK (labelled >= 0)
        )
    """)
    op.execute(f"""
        CREATE TABLE {schema}.slice_stats (
            camera_id    text NOT NULL,
            hour_bucket  smallint NOT NULL,
            labelled     bigint NOT NULL CHECK (labelled >= 0),
            wrong        bigint NOT NULL CHECK (wrong >= 0 AND wrong <= labelled),
            PRIMARY KEY (camera_id, hour_bucket)
        )
    """)
    op.execute(f"""
        CREATE TABLE {schema}.budget_buckets (
            name        text PRIMARY KEY,
            tokens      double precision NOT NULL,
            updated_at  double precision NOT NULL
        )
    """)
    # One row; every batch of decisions locks it first, so replicas decide one after another
    # against the same budget, threshold and duplicates.
    op.execute(f"""
        CREATE TABLE {schema}.threshold_state (
            id          smallint PRIMARY KEY CHECK (id = 1),
            histogram   double precision[] NOT NULL DEFAULT '{{}}',
            arrivals    double precision NOT NULL DEFAULT 0,
            started_at  double precision,
            updated_at  double precision,
            observed    bigint NOT NULL DEFAULT 0
        )
    """)
    op.execute(f"INSERT INTO {schema}.threshold_state (id) VALUES (1)")  # noqa: S608
    op.execute(f"""
        CREATE TABLE {schema}.models (
            model_version       text PRIMARY KEY,
            previous_version    text,
            promoted_at         timestamptz NOT NULL,
            event_id            uuid NOT NULL,
            weakness_model_uri  text,
            weakness_model      jsonb,
            weakness_error      text
        )
    """)


def downgrade(schema: str) -> None:
    raise NotImplementedError("forward-only migrations")

"""The trainer's tables: images and label events as received, the resolved dataset (splits and
examples), training runs with the exact examples each used, and the production model.

Revision ID: trainer_0001
Revises:
Create Date: 2026-11-26
"""

from alembic import op

from hone_common.idempotency import PROCESSED_EVENTS_DDL
from hone_common.outbox import OUTBOX_DDL

revision = "trainer_0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade(schema: str) -> None:
    op.execute(PROCESSED_EVENTS_DDL.format(schema=schema))
    for statement in OUTBOX_DDL.format(schema=schema).split(";"):
        op.execute(statement)
    # `captured_hour` keeps the hour of day in the capture time's own offset (timestamptz
    # forgets it), which is what the selector's hour features use.
    op.execute(f"""
        CREATE TABLE {schema}.images (
            image_id      uuid PRIMARY KEY,
            uri           text NOT NULL,
            sha256        text NOT NULL,
            width         integer NOT NULL,
            height        integer NOT NULL,
            camera_id     text NOT NULL,
            captured_at   timestamptz NOT NULL,
            captured_hour real NOT NULL CHECK (captured_hour >= 0 AND captured_hour < 24),
            object_id     text,
            metadata      jsonb NOT NULL DEFAULT '{{}}',
            brightness    real NOT NULL,
            contrast      real NOT NULL,
            sharpness     real NOT NULL,
            received_at   timestamptz NOT NULL DEFAULT now()
        )
    """)
    op.execute(
        f"CREATE INDEX images_object ON {schema}.images (object_id) WHERE object_id IS NOT NULL"
    )
    # Every answer, flag and propagated label ever received; the examples are derived from it.
    op.execute(f"""
        CREATE TABLE {schema}.label_events (
            seq             bigserial PRIMARY KEY,
            event_id        uuid NOT NULL UNIQUE,
            image_id        uuid NOT NULL,
            verdict         text NOT NULL CHECK (verdict IN ('label', 'ambiguous', 'wrong')),
            label           text,
            labeler_id      text NOT NULL,
            task_id         uuid,
            source          text NOT NULL CHECK (source IN ('human', 'propagated')),
            model_version   text,
            predicted_label text,
            reasons         jsonb NOT NULL DEFAULT '[]',
            occurred_at     timestamptz NOT NULL,
            received_at     timestamptz NOT NULL DEFAULT now()
        )
    """)
    op.execute(f"CREATE INDEX label_events_image ON {schema}.label_events (image_id)")
    # Assigned once, never updated: a test image stays a test image even if the shares change.
    op.execute(f"""
        CREATE TABLE {schema}.splits (
            image_id    uuid PRIMARY KEY,
            split       text NOT NULL CHECK (split IN ('train', 'weakness', 'test')),
            assigned_at timestamptz NOT NULL DEFAULT now()
        )
    """)
    # The resolved dataset: one row per image with a training label or kept out as ambiguous.
    # The database refuses a propagated label outside `train` as a second line of defence.
    op.execute(f"""
        CREATE TABLE {schema}.examples (
            image_id        uuid PRIMARY KEY,
            split           text NOT NULL CHECK (split IN ('train', 'weakness', 'test')),
            kind            text NOT NULL CHECK (kind IN ('human', 'propagated', 'ambiguous')),
            label           text,
            weight          real NOT NULL CHECK (weight >= 0),
            labeler_id      text,
            label_model_version text,
            reasons         jsonb NOT NULL DEFAULT '[]',
            label_event_id  uuid,
            propagated_from uuid,
            updated_at      timestamptz NOT NULL DEFAULT now(),
            CHECK (kind <> 'propagated' OR split = 'train'),
            CHECK ((kind = 'ambiguous') = (label IS NULL))
        )
    """)
    op.execute(f"CREATE INDEX examples_split ON {schema}.examples (split, kind)")
    op.execute(f"""
        CREATE TABLE {schema}.runs (
            run_id             uuid PRIMARY KEY,
            trigger            text NOT NULL,
            status             text NOT NULL
                               CHECK (status IN ('running', 'succeeded', 'failed', 'abandoned',
                                                 'skipped')),
            started_at         timestamptz NOT NULL DEFAULT now(),
            finished_at        timestamptz,
            label_seq          bigint NOT NULL,
            host               text,
            pid                integer,
            model_version      text,
            parent_version     text,
            warm_started       boolean,
            artifact_uri       text,
            evaluation_set_uri text,
            weakness_model_uri text,
            examples_sha256    text,
            counts             jsonb,
            metrics            jsonb,
            weakness           jsonb,
            seconds            real,
            error              text
        )
    """)
    op.execute(f"CREATE INDEX runs_started ON {schema}.runs (started_at DESC)")
    op.execute(f"""
        CREATE TABLE {schema}.run_examples (
            run_id   uuid NOT NULL REFERENCES {schema}.runs (run_id) ON DELETE CASCADE,
            image_id uuid NOT NULL,
            role     text NOT NULL CHECK (role IN ('train', 'weakness', 'flagged')),
            label    text NOT NULL,
            weight   real NOT NULL,
            kind     text NOT NULL,
            PRIMARY KEY (run_id, role, image_id)
        )
    """)
    op.execute(f"""
        CREATE TABLE {schema}.production (
            model_name    text PRIMARY KEY,
            model_version text NOT NULL,
            artifact_uri  text NOT NULL,
            classes       jsonb NOT NULL,
            promoted_at   timestamptz NOT NULL
        )
    """)


def downgrade(schema: str) -> None:
    raise NotImplementedError("forward-only migrations")

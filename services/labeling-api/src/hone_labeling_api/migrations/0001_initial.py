"""The labeling schema: label set, review queue (tasks), answers, user flags, scored images.

Revision ID: labeling_0001
Revises:
Create Date: 2026-11-26
"""

from alembic import op

from hone_common.idempotency import PROCESSED_EVENTS_DDL
from hone_common.outbox import OUTBOX_DDL

revision = "labeling_0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade(schema: str) -> None:
    op.execute(PROCESSED_EVENTS_DDL.format(schema=schema))
    for statement in OUTBOX_DDL.format(schema=schema).split(";"):
        if statement.strip():
            op.execute(statement)
    op.execute(f"""
        CREATE TABLE {schema}.label_set (
            id          smallint PRIMARY KEY DEFAULT 1 CHECK (id = 1),
            classes     jsonb NOT NULL,
            updated_at  timestamptz NOT NULL DEFAULT now(),
            updated_by  text
        )
    """)
    # One row per review; an image has at most one open task (the partial unique index), so a
    # repeated request for it merges into the open one. Leases are (leased_by, lease_expires_at):
    # a task whose lease has expired is simply claimable again, no sweeper needed.
    op.execute(f"""
        CREATE TABLE {schema}.tasks (
            task_id           uuid PRIMARY KEY,
            image_id          uuid NOT NULL,
            uri               text NOT NULL,
            priority          double precision NOT NULL,
            outside_budget    boolean NOT NULL DEFAULT false,
            reasons           jsonb NOT NULL,
            model_version     text,
            prediction        jsonb,
            camera_id         text,
            object_id         text,
            status            text NOT NULL DEFAULT 'open'
                              CHECK (status IN ('open', 'done', 'ambiguous')),
            leased_by         uuid,
            leased_at         timestamptz,
            lease_expires_at  timestamptz,
            label             text,
            resolved_at       timestamptz,
            requests          integer NOT NULL DEFAULT 1,
            created_at        timestamptz NOT NULL DEFAULT now()
        )
    """)
    op.execute(
        f"CREATE UNIQUE INDEX tasks_one_open_per_image ON {schema}.tasks (image_id) "
        "WHERE status = 'open'"
    )
    op.execute(
        f"CREATE INDEX tasks_queue ON {schema}.tasks "
        "(outside_budget DESC, priority DESC, created_at) WHERE status = 'open'"
    )
    op.execute(
        f"CREATE INDEX tasks_leased ON {schema}.tasks (leased_by) "
        "WHERE status = 'open' AND leased_by IS NOT NULL"
    )
    op.execute(f"""
        CREATE TABLE {schema}.answers (
            answer_id    uuid PRIMARY KEY,
            task_id      uuid NOT NULL REFERENCES {schema}.tasks (task_id),
            image_id     uuid NOT NULL,
            labeler_key  uuid NOT NULL,
            labeler_id   text NOT NULL,
            verdict      text NOT NULL CHECK (verdict IN ('label', 'ambiguous', 'skip')),
            label        text,
            elapsed_ms   integer,
            event_id     uuid,
            created_at   timestamptz NOT NULL DEFAULT now(),
            undone_at    timestamptz
        )
    """)
    op.execute(f"CREATE INDEX answers_by_task ON {schema}.answers (task_id)")
    op.execute(
        f"CREATE INDEX answers_by_labeler ON {schema}.answers (labeler_key, created_at DESC)"
    )
    op.execute(f"CREATE INDEX answers_by_time ON {schema}.answers (created_at)")
    op.execute(f"""
        CREATE TABLE {schema}.flags (
            flag_id     uuid PRIMARY KEY,
            image_id    uuid NOT NULL,
            app_key     uuid NOT NULL,
            app_id      text NOT NULL,
            label       text,
            comment     text NOT NULL DEFAULT '',
            created_at  timestamptz NOT NULL DEFAULT now()
        )
    """)
    op.execute(f"CREATE INDEX flags_by_image ON {schema}.flags (image_id)")
    # What the API knows of every scored image (from image.scored), so a user flag naming only
    # an image id can become a review request with the image's URI and the model's guess.
    op.execute(f"""
        CREATE TABLE {schema}.images (
            image_id       uuid PRIMARY KEY,
            uri            text NOT NULL,
            model_version  text NOT NULL,
            prediction     jsonb NOT NULL,
            camera_id      text,
            object_id      text,
            scored_at      timestamptz NOT NULL
        )
    """)
    op.execute(f"""
        CREATE TABLE {schema}.idempotency_keys (
            key_id           uuid NOT NULL,
            operation        text NOT NULL,
            idempotency_key  text NOT NULL,
            request_hash     text NOT NULL,
            status_code      integer,
            response         jsonb,
            created_at       timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (key_id, operation, idempotency_key)
        )
    """)
    op.execute(f"CREATE INDEX idempotency_keys_age ON {schema}.idempotency_keys (created_at)")


def downgrade(schema: str) -> None:
    raise NotImplementedError("forward-only migrations")

"""Ingest's schema: one row per distinct image content, plus processed events and the outbox.

Revision ID: ingest_0001
Revises:
Create Date: 2026-11-26
"""

from alembic import op

from hone_common.idempotency import PROCESSED_EVENTS_DDL
from hone_common.outbox import OUTBOX_DDL

revision = "ingest_0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade(schema: str) -> None:
    op.execute(f"""
        CREATE TABLE {schema}.images (
            image_id       uuid PRIMARY KEY,
            sha256         text NOT NULL UNIQUE CHECK (sha256 ~ '^[0-9a-f]{{64}}$'),
            uri            text NOT NULL,
            width          integer NOT NULL CHECK (width > 0),
            height         integer NOT NULL CHECK (height > 0),
            format         text NOT NULL CHECK (format IN ('PNG', 'JPEG', 'WEBP')),
            size_bytes     integer NOT NULL CHECK (size_bytes > 0),
            camera_id      text NOT NULL,
            captured_at    timestamptz NOT NULL,
            object_id      text,
            metadata       jsonb NOT NULL DEFAULT '{{}}',
            brightness     double precision NOT NULL,
            contrast       double precision NOT NULL,
            sharpness      double precision NOT NULL,
            source         text NOT NULL CHECK (source IN ('kafka', 'http')),
            frame_event_id uuid,
            received_at    timestamptz NOT NULL DEFAULT now()
        )
    """)
    op.execute(f"CREATE INDEX images_camera_captured ON {schema}.images (camera_id, captured_at)")
    op.execute(
        f"CREATE INDEX images_object ON {schema}.images (object_id) WHERE object_id IS NOT NULL"
    )
    op.execute(PROCESSED_EVENTS_DDL.format(schema=schema))
    for statement in OUTBOX_DDL.format(schema=schema).split(";"):
        op.execute(statement)


def downgrade(schema: str) -> None:
    raise NotImplementedError("forward-only migrations")

"""API keys with roles, stored hashed.

Revision ID: auth_0001
Revises:
Create Date: 2026-11-25
"""

from alembic import op

revision = "auth_0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade(schema: str) -> None:
    op.execute(f"""
        CREATE TABLE {schema}.api_keys (
            key_id      uuid PRIMARY KEY,
            name        text NOT NULL,
            role        text NOT NULL CHECK (role IN ('camera', 'app', 'labeler', 'admin')),
            key_hash    text NOT NULL UNIQUE,
            created_at  timestamptz NOT NULL DEFAULT now(),
            revoked_at  timestamptz,
            last_used_at timestamptz
        )
    """)


def downgrade(schema: str) -> None:
    raise NotImplementedError("forward-only migrations")

"""Schemathesis against the OpenAPI document: generated requests (valid and invalid, with an
admin key so they get past auth) never make the API answer with a 5xx, and every answer
matches what the document promises.

The API runs in a real uvicorn server on a free local port, in a thread with its own event
loop (`tests/live_api.py`: schemathesis calls it synchronously over HTTP), against the real
stack, in a schema of its own. The run is bounded and reproducible: 50 examples per
operation, a fixed seed.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
import schemathesis
from hypothesis import HealthCheck, seed, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from hone_common.auth import Role
from hone_common.topics import Topic
from hone_labeling_api.app import create_app
from tests.integration.labeling.conftest import CLASSES, make_settings
from tests.kafka_helpers import start_group_at_end
from tests.live_api import LiveApi, live


@pytest.fixture(scope="module")
async def live_api(pool: asyncpg.Pool[Any]) -> AsyncIterator[LiveApi]:
    unique = uuid.uuid4().hex[:10]
    config = make_settings(unique)
    await start_group_at_end(
        config.kafka.bootstrap_servers,
        config.labeling.consumer_group,
        [Topic.REVIEW_REQUESTED.value, Topic.IMAGE_SCORED.value],
    )
    try:
        async with live(create_app(config), pool, Role.ADMIN, start_seconds=60) as api:
            await _seed_tasks(pool, config.labeling.schema_name, 30)
            yield api
    finally:
        await pool.execute(f"DROP SCHEMA IF EXISTS {config.labeling.schema_name} CASCADE")


async def _seed_tasks(pool: asyncpg.Pool[Any], schema: str, count: int) -> None:
    """Open tasks, so claims return real tasks (images need not exist for this test)."""
    prediction = {"label": CLASSES[0], "confidence": 0.5, "classes": CLASSES,
                  "probabilities": [0.5] + [0.5 / 9] * 9}  # fmt: skip
    reasons = [{"strategy": "uncertainty", "score": 0.7, "detail": "<b>not html</b>"}]
    await pool.executemany(
        f"INSERT INTO {schema}.tasks (task_id, image_id, uri, priority, reasons, "
        "model_version, prediction) VALUES ($1, $2, $3, $4, $5, 'fuzz-v1', $6)",
        [
            (
                uuid.uuid4(),
                uuid.uuid4(),
                f"s3://hone-images/fuzz/{i}.png",
                i / count,
                reasons,
                prediction,
            )
            for i in range(count)
        ],
    )


# The document the running app serves, built from the same code (no server needed to read
# it); schemathesis' lazy fixture loader does not work with this pytest version.
schema = schemathesis.openapi.from_dict(create_app(make_settings("openapi")).openapi())


@schema.parametrize()
@settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
@seed(20261126)
def test_generated_requests_never_get_a_server_error(case: Any, live_api: LiveApi) -> None:
    case.call_and_validate(
        base_url=live_api.base_url,
        headers={"Authorization": f"Bearer {live_api.key}"},
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_headers_conformance,
            response_schema_conformance,
        ],
    )

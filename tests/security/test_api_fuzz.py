"""Property-based fuzzing of the ingest upload API and the selector's admin API with
schemathesis: generated requests, valid and invalid, with a key of the right role (so they get
past authentication), never get a 5xx, and every answer matches the OpenAPI document.

(The labeling API has its own run: tests/integration/labeling/test_openapi_fuzz.py. The
trainer's and gatekeeper's admin APIs are not fuzzed here: started on the shared stack they
would join its model topics and act on the shared TorchServe.)

Each API runs in a real uvicorn server in a thread (`tests/live_api.py`: schemathesis calls it
synchronously over HTTP), against the real stack: ingest with a consumer group of its own, the
selector in a schema of its own. Bounded and reproducible: a fixed number of examples, a fixed seed.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import pytest
import schemathesis
from hypothesis import HealthCheck, seed, settings

from hone_common.auth import Role
from hone_common.topics import Topic
from hone_ingest.app import create_app as create_ingest
from hone_ingest.settings import Settings as IngestSettings
from hone_selector.app import create_app as create_selector
from hone_selector.settings import Settings as SelectorSettings
from tests.kafka_helpers import start_group_at_end
from tests.live_api import LiveApi, live

CHECKS = [
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_schema_conformance,
]


def ingest_settings() -> IngestSettings:
    base = IngestSettings()
    group = f"fuzz-ingest-{uuid.uuid4().hex[:8]}"
    return base.model_copy(
        update={"ingest": base.ingest.model_copy(update={"consumer_group": group})}
    )


def selector_settings() -> SelectorSettings:
    base = SelectorSettings()
    unique = uuid.uuid4().hex[:8]
    knobs = {"schema_name": f"fuzz_selector_{unique}", "consumer_group": f"fuzz-selector-{unique}"}
    return base.model_copy(update={"selector": base.selector.model_copy(update=knobs)})


INGEST = ingest_settings()
SELECTOR = selector_settings()


@pytest.fixture(scope="module")
async def ingest_api(pool: asyncpg.Pool[Any]) -> AsyncIterator[LiveApi]:
    await start_group_at_end(
        INGEST.kafka.bootstrap_servers, INGEST.ingest.consumer_group, [Topic.CAMERA_FRAMES.value]
    )
    async with live(create_ingest(INGEST), pool, Role.CAMERA) as api:
        yield api


@pytest.fixture(scope="module")
async def selector_api(pool: asyncpg.Pool[Any]) -> AsyncIterator[LiveApi]:
    knobs = SELECTOR.selector
    await start_group_at_end(
        SELECTOR.kafka.bootstrap_servers,
        knobs.consumer_group,
        [Topic.IMAGE_SCORED.value, Topic.LABEL_SUBMITTED.value, Topic.MODEL_PROMOTED.value],
    )
    try:
        async with live(create_selector(SELECTOR), pool, Role.ADMIN) as api:
            yield api
    finally:
        await pool.execute(f"DROP SCHEMA IF EXISTS {knobs.schema_name} CASCADE")


def call(case: Any, api: LiveApi) -> None:
    case.call_and_validate(
        base_url=api.base_url, headers={"Authorization": f"Bearer {api.key}"}, checks=CHECKS
    )


def bounded(examples: int) -> Callable[[Any], Any]:
    def decorate(test: Any) -> Any:
        test = settings(
            max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck)
        )(test)
        return seed(20261125)(test)

    return decorate


# The documents the running apps serve, built from the same code (no server needed to read them).
ingest_schema = schemathesis.openapi.from_dict(create_ingest(INGEST).openapi())
selector_schema = schemathesis.openapi.from_dict(create_selector(SELECTOR).openapi())


@ingest_schema.parametrize()
@bounded(60)
def test_generated_uploads_never_get_a_server_error(case: Any, ingest_api: LiveApi) -> None:
    call(case, ingest_api)


@selector_schema.parametrize()
@bounded(40)
def test_generated_selector_requests_never_get_a_server_error(
    case: Any, selector_api: LiveApi
) -> None:
    call(case, selector_api)

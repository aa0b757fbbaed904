"""No secret in logs, events or ops endpoints: after every other scenario of the tier has run
(restarts, crashes, dead letters), the services' logs, every topic and what /metrics, /readyz
and /openapi.json answer hold none of the secrets the services were given or were sent."""

from __future__ import annotations

import asyncio
import io
import json
import re
import uuid
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from aiokafka.admin import AIOKafkaAdminClient
from PIL import Image

from tests.faults.conftest import STATE
from tests.faults.pipeline import read_topic
from tests.faults.stack import BIN, PrivateStack, ServiceProcess, clean_environment


async def issue_key(stack: PrivateStack, role: str) -> str:
    process = await asyncio.create_subprocess_exec(
        str(BIN / "hone-keys"),
        *("issue", "--role", role, "--name", f"faults-secrets-{uuid.uuid4().hex[:6]}", "-q"),
        env=clean_environment() | stack.env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    return out.decode().strip()


def read_text(path: Path) -> str:
    return path.read_text(errors="replace")


def png() -> bytes:
    pixels = np.random.default_rng().integers(0, 256, size=(28, 28), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


async def test_no_secret_appears_in_logs_events_or_ops_endpoints(
    stack: PrivateStack, services: dict[str, ServiceProcess]
) -> None:
    camera = await issue_key(stack, "camera")
    forged = f"hone_{uuid.uuid4().hex[:12]}_{uuid.uuid4().hex}{uuid.uuid4().hex}"
    async with httpx.AsyncClient(timeout=30) as http:
        upload = await http.post(
            f"{services['ingest'].url}/v1/images",
            headers={"Authorization": f"Bearer {camera}"},
            files={"file": ("x.png", png(), "image/png")},
            data={"metadata": json.dumps({"camera_id": "cam-secrets"})},
        )
        assert upload.status_code == 201, upload.text
        refused = await http.post(
            f"{services['ingest'].url}/v1/images", headers={"Authorization": f"Bearer {forged}"}
        )
        assert refused.status_code == 401
        wrong_role = await http.post(
            f"{services['labeling-api'].url}/v1/tasks/claim",
            headers={"Authorization": f"Bearer {camera}"},
            json={"count": 1},
        )
        assert wrong_role.status_code == 403
        ops = [
            (await http.get(f"{service.url}{path}")).text
            for service in services.values()
            for path in ("/metrics", "/readyz", "/openapi.json")
        ]

    env = stack.env
    torchserve_keys = json.loads(read_text(Path(env["HONE_TORCHSERVE__KEY_FILE"])))
    secrets = {
        "S3 secret key": env["HONE_S3__SECRET_KEY"],
        "PostgreSQL DSN": env["HONE_POSTGRES__DSN"].split("//", 1)[1].split("@", 1)[0] + "@",
        "API key": camera,
        "API key secret": camera.rsplit("_", 1)[1],
        "forged API key": forged.rsplit("_", 1)[1],
        **{f"TorchServe {kind} key": entry["key"] for kind, entry in torchserve_keys.items()},
    }
    logs = {p.name: read_text(p) for p in (STATE / "logs" / "services").iterdir()}
    topics = await all_topics(env["HONE_KAFKA__BOOTSTRAP_SERVERS"])
    found = [
        f"{what} in {where}"
        for what, secret in secrets.items()
        for where, text in [*logs.items(), *topics.items(), *enumerate(ops)]
        if secret in text
    ]
    # A presigned URL is a credential for its lifetime: no signature may be logged either.
    signed = re.compile(r"X-Amz-Signature(=|%3D)[0-9a-f]{16}", re.IGNORECASE)
    found += [f"a presigned URL in {name}" for name, text in logs.items() if signed.search(text)]
    assert logs, "no service logs to check"
    assert not found


async def all_topics(bootstrap: str) -> dict[str, str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        names = [t for t in await admin.list_topics() if not t.startswith("__")]
    finally:
        await admin.close()
    out: dict[str, Any] = {}
    for name in names:
        records = await read_topic(bootstrap, name)
        out[name] = "\n".join(
            (key or b"").decode(errors="replace") + " " + value.decode(errors="replace")
            for key, value in records
        )
    return out

"""TorchServe, as the stack runs it: every API on loopback only, the management and inference
APIs behind tokens, and models registered only from the model bucket (no SSRF through it)."""

from __future__ import annotations

import json
import re
import socket
import uuid
from pathlib import Path

import httpx
import pytest

from hone_common.settings import ServiceSettings
from hone_common.torchserve import TorchServeClient, TorchServeError
from tests.security.corpus import FOREIGN_URLS


def read_text(path: Path) -> str:
    return path.read_text()


def rendered_config(settings: ServiceSettings) -> dict[str, str]:
    assert settings.torchserve.key_file is not None, "HONE_TORCHSERVE__KEY_FILE is not set"
    path = Path(settings.torchserve.key_file).with_name("config.properties")
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {k.strip(): v.strip() for k, v in pairs if not k.lstrip().startswith("#")}


def listening_addresses(port: int) -> set[str]:
    """Local addresses with a socket listening on `port` (from /proc/net/tcp and tcp6)."""
    found = set()
    for table, family in (("/proc/net/tcp", socket.AF_INET), ("/proc/net/tcp6", socket.AF_INET6)):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            address, hex_port = fields[1].split(":")
            if fields[3] != "0A" or int(hex_port, 16) != port:  # 0A: LISTEN
                continue
            raw = bytes.fromhex(address)
            # The kernel prints each 32-bit word in host (little-endian) order.
            words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
            found.add(socket.inet_ntop(family, words))
    return found


def test_every_torchserve_api_listens_on_loopback_only(settings: ServiceSettings) -> None:
    config = rendered_config(settings)
    for name in ("inference_address", "management_address", "metrics_address"):
        assert re.match(r"^https?://127\.0\.0\.1:\d+$", config[name]), (name, config[name])
        port = int(config[name].rsplit(":", 1)[1])
        addresses = listening_addresses(port)
        assert addresses, f"nothing listens on {port}"
        assert addresses <= {"127.0.0.1", "::1", "::ffff:127.0.0.1"}, (name, addresses)
    for name in ("grpc_inference_address", "grpc_management_address"):
        assert config[name] == "127.0.0.1", (name, config[name])
    assert config["disable_token_authorization"] == "false"


def test_allowed_urls_admit_the_model_bucket_and_nothing_else(settings: ServiceSettings) -> None:
    # Java's regex dialect agrees with Python's on this subset; the file doubles backslashes.
    pattern = re.compile(rendered_config(settings)["allowed_urls"].replace("\\\\", "\\"))
    minio = f"http://{settings.s3.endpoint}"
    assert pattern.fullmatch(f"{minio}/{settings.s3.models_bucket}/hone/20260101.120000.mar")
    refused = [
        f"{minio}/{settings.s3.images_bucket}/images/x.mar",
        f"{minio}/{settings.s3.models_bucket}-evil/x.mar",
        f"http://127.0.0.1.evil.example:{settings.s3.endpoint.rsplit(':', 1)[1]}/hone-models/x",
        f"http://127x0x0x1:{settings.s3.endpoint.rsplit(':', 1)[1]}/hone-models/x.mar",
        *FOREIGN_URLS,
    ]
    assert [url for url in refused if pattern.fullmatch(url)] == []


async def test_the_management_api_wants_its_own_token(settings: ServiceSettings) -> None:
    ts = settings.torchserve
    keys = json.loads(read_text(Path(str(ts.key_file))))
    async with httpx.AsyncClient(base_url=ts.management_url, timeout=10) as http:
        assert (await http.get("/models")).status_code != 200
        wrong = {"Authorization": f"Bearer {keys['inference']['key']}"}
        assert (await http.get("/models", headers=wrong)).status_code != 200
        forged = {"Authorization": "Bearer 12345678"}
        assert (await http.get("/models", headers=forged)).status_code != 200
        right = {"Authorization": f"Bearer {keys['management']['key']}"}
        assert (await http.get("/models", headers=right)).status_code == 200
    async with httpx.AsyncClient(base_url=ts.inference_url, timeout=10) as http:
        assert (await http.post("/predictions/hone", content=b"x")).status_code != 200


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9000/hone-images/images/x.mar",
        *[u for u in FOREIGN_URLS if not u.startswith("//")],
    ],
)
async def test_registering_a_model_from_anywhere_but_the_model_bucket_is_refused(
    settings: ServiceSettings, url: str
) -> None:
    name = f"security-probe-{uuid.uuid4().hex[:8]}"
    client = TorchServeClient(settings.torchserve)
    try:
        # Refused: a URL outside `allowed_urls` is never downloaded. (TorchServe reads a
        # non-http "URL" as a path in its model store; it finds no model there either.)
        with pytest.raises(TorchServeError):
            await client.register(url, model=name)
        assert await client.describe(name) == []
    finally:
        await client.aclose()

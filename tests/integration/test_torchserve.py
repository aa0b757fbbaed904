"""TorchServe of the local stack answers its ping, and its management API needs the token."""

from __future__ import annotations

import httpx

from hone_common.settings import ServiceSettings
from hone_common.torchserve import TorchServeClient


async def test_torchserve_answers_ping(settings: ServiceSettings) -> None:
    client = TorchServeClient(settings.torchserve)
    try:
        assert await client.ping()
    finally:
        await client.aclose()


async def test_the_management_api_accepts_the_token_and_refuses_without_it(
    settings: ServiceSettings,
) -> None:
    token = settings.torchserve.token("management")
    assert token, "the stack must hand out TorchServe's management key"
    async with httpx.AsyncClient(base_url=settings.torchserve.management_url) as http:
        without = await http.get("/models")
        wrong = await http.get("/models", headers={"Authorization": "Bearer not-the-key"})
        with_token = await http.get("/models", headers={"Authorization": f"Bearer {token}"})
    assert without.status_code in (400, 401)
    assert wrong.status_code in (400, 401)
    assert with_token.status_code == 200
    assert "models" in with_token.json()

    client = TorchServeClient(settings.torchserve)
    try:
        assert isinstance(await client.list_models(), list)
    finally:
        await client.aclose()

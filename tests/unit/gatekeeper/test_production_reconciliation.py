"""TorchServe keeps no model across a restart: the gatekeeper serves production again on its
own, without waiting for the next candidate (scoring would stall until then)."""

from __future__ import annotations

import copy

from tests.unit.gatekeeper.conftest import MODEL, PRODUCTION, World

CANDIDATE = "20260102.000000"


async def test_production_lost_by_a_restart_is_served_again_without_a_candidate(
    world: World,
) -> None:
    await world.gatekeeper.on_candidate(world.candidate(CANDIDATE, "better"))
    world.torchserve.versions.clear()  # TorchServe restarted without its models
    world.torchserve.defaults.clear()

    assert await world.gatekeeper.ensure_production_served() == CANDIDATE

    assert world.torchserve.defaults[MODEL] == CANDIDATE
    assert CANDIDATE in world.torchserve.versions[MODEL]


async def test_a_served_production_is_left_alone(world: World) -> None:
    before = copy.deepcopy(world.torchserve.versions)

    assert await world.gatekeeper.ensure_production_served() == PRODUCTION

    assert world.torchserve.versions == before


async def test_without_any_production_nothing_is_served(empty_world: World) -> None:
    assert await empty_world.gatekeeper.ensure_production_served() is None
    assert MODEL not in empty_world.torchserve.defaults


async def test_a_bootstrapped_version_is_adopted_so_a_restart_cannot_lose_it(
    world: World,
) -> None:
    # `world` serves a version bootstrapped straight into TorchServe, unknown to the registry.
    assert await world.registry.production(MODEL) is None
    assert await world.gatekeeper.ensure_production_served() == PRODUCTION
    world.torchserve.versions.clear()
    world.torchserve.defaults.clear()

    assert await world.gatekeeper.ensure_production_served() == PRODUCTION
    assert world.torchserve.defaults[MODEL] == PRODUCTION

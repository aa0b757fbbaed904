"""The gatekeeper's use cases over fakes: judging candidates, idempotency, failures, and
promotion or rollback by hand."""

from __future__ import annotations

import httpx
import pytest

from hone_common.torchserve import TorchServeError
from hone_gatekeeper import metrics
from hone_gatekeeper.gatekeeper import GatekeeperError, UnknownVersion
from hone_gatekeeper.records import Decision
from tests.unit.gatekeeper.conftest import CLASSES, MODEL, PRODUCTION, World

CANDIDATE = "20260102.000000"
LATER = "20260103.000000"


def production_accuracy() -> dict[str, float]:
    return {
        sample.labels["model_version"]: sample.value
        for family in metrics.PRODUCTION_ACCURACY.collect()
        for sample in family.samples
    }


async def test_a_better_candidate_is_promoted_and_announced(world: World) -> None:
    event = world.candidate(CANDIDATE, "better")

    assert await world.gatekeeper.on_candidate(event) == "promote"

    assert world.torchserve.defaults[MODEL] == CANDIDATE
    (announcement,) = world.registry.outbox
    (decision,) = world.registry.decisions
    assert announcement.event_id == decision.decision_id
    assert announcement.correlation_id == event.event_id
    promotion = announcement.payload
    assert (promotion.model_version, promotion.previous_version) == (CANDIDATE, PRODUCTION)
    assert promotion.artifact_uri == event.payload.artifact_uri
    assert promotion.classes == CLASSES
    assert promotion.manual is False
    assert promotion.evaluation["examples"] == 400
    assert promotion.evaluation["candidate_accuracy"] == pytest.approx(0.95)
    assert promotion.evaluation["production_accuracy"] == pytest.approx(0.80)
    assert float(promotion.evaluation["p_value"] or 1) < 1e-6
    assert promotion.reasons == decision.reasons
    assert world.registry.models[(MODEL, CANDIDATE)].status == "production"
    assert world.registry.models[(MODEL, PRODUCTION)].status == "retired"
    assert production_accuracy() == {CANDIDATE: pytest.approx(0.95)}


async def test_both_models_are_scored_by_version_on_the_same_images(world: World) -> None:
    await world.gatekeeper.on_candidate(world.candidate(CANDIDATE, "better"))
    by_version: dict[str | None, int] = {}
    for version, images in world.torchserve.requests:
        by_version[version] = by_version.get(version, 0) + images
    assert by_version == {CANDIDATE: 400, PRODUCTION: 400}
    (evaluation,) = world.registry.evaluations.values()
    assert evaluation.comparison is not None
    assert evaluation.comparison["candidate_latency"]["requests"] == 13  # 400 / 32 per request


async def test_a_worse_candidate_is_rejected_unloaded_and_production_kept(world: World) -> None:
    assert await world.gatekeeper.on_candidate(world.candidate(CANDIDATE, "constant")) == "reject"

    assert world.torchserve.defaults[MODEL] == PRODUCTION
    assert CANDIDATE not in world.torchserve.versions[MODEL]
    assert world.torchserve.unregistered == [CANDIDATE]
    assert world.registry.outbox == []
    (decision,) = world.registry.decisions
    assert decision.kind == "reject"
    assert decision.applied_at is not None
    assert any("improvement not significant" in r for r in decision.reasons)
    assert world.registry.models[(MODEL, CANDIDATE)].status == "rejected"
    assert world.registry.models[(MODEL, PRODUCTION)].status == "production"
    assert production_accuracy() == {PRODUCTION: pytest.approx(0.80)}


async def test_a_redelivered_candidate_is_not_evaluated_or_registered_twice(world: World) -> None:
    event = world.candidate(CANDIDATE, "better")
    await world.gatekeeper.on_candidate(event)
    requests = len(world.torchserve.requests)

    assert await world.gatekeeper.on_candidate(event) == "duplicate"

    assert world.torchserve.registrations == [CANDIDATE]
    assert len(world.torchserve.requests) == requests
    assert len(world.registry.decisions) == 1
    assert len(world.registry.outbox) == 1


async def test_another_event_for_a_decided_version_is_skipped(world: World) -> None:
    await world.gatekeeper.on_candidate(world.candidate(CANDIDATE, "constant"))
    again = world.candidate(CANDIDATE, "better")
    assert await world.gatekeeper.on_candidate(again) == "duplicate"
    assert world.torchserve.defaults[MODEL] == PRODUCTION


async def test_another_models_candidate_is_ignored(world: World) -> None:
    event = world.candidate(CANDIDATE, "better", model="other-model")
    assert await world.gatekeeper.on_candidate(event) == "ignored"
    assert world.torchserve.registrations == []
    assert world.registry.decisions == []


async def test_a_candidate_whose_archive_is_missing_is_rejected_with_the_reason(
    world: World,
) -> None:
    event = world.candidate(CANDIDATE, "better")
    del world.store.objects[event.payload.artifact_uri]

    assert await world.gatekeeper.on_candidate(event) == "reject"

    (decision,) = world.registry.decisions
    assert decision.reasons == [f"the archive {event.payload.artifact_uri} does not exist"]
    assert world.torchserve.registrations == []


async def test_a_candidate_whose_evaluation_set_is_missing_is_rejected_before_loading(
    world: World,
) -> None:
    event = world.candidate(CANDIDATE, "better")
    assert event.payload.evaluation_set_uri is not None
    del world.store.objects[event.payload.evaluation_set_uri]

    assert await world.gatekeeper.on_candidate(event) == "reject"

    (decision,) = world.registry.decisions
    assert "cannot be read" in decision.reasons[0]
    assert world.torchserve.registrations == []


async def test_an_archive_torchserve_cannot_load_is_rejected(world: World) -> None:
    world.torchserve.refuse_register = TorchServeError(500, "Failed to load model")
    assert await world.gatekeeper.on_candidate(world.candidate(CANDIDATE)) == "reject"
    (decision,) = world.registry.decisions
    assert decision.reasons[0].startswith("TorchServe could not load the candidate")
    assert world.torchserve.defaults[MODEL] == PRODUCTION


async def test_while_torchserve_is_down_nothing_is_decided_and_a_retry_succeeds(
    world: World,
) -> None:
    event = world.candidate(CANDIDATE, "better")
    world.torchserve.down = True
    with pytest.raises(httpx.ConnectError):
        await world.gatekeeper.on_candidate(event)
    assert world.registry.decisions == []
    assert world.registry.processed == set()

    world.torchserve.down = False
    assert await world.gatekeeper.on_candidate(event) == "promote"


async def test_the_first_candidate_is_promoted_by_the_sanity_check(empty_world: World) -> None:
    world = empty_world
    assert await world.gatekeeper.on_candidate(world.candidate(CANDIDATE, "better")) == "promote"
    assert world.torchserve.defaults[MODEL] == CANDIDATE
    (announcement,) = world.registry.outbox
    assert announcement.payload.previous_version is None
    assert "no production version yet" in announcement.payload.reasons[0]


async def test_the_first_candidate_without_an_evaluation_set_is_promoted(
    empty_world: World,
) -> None:
    world = empty_world
    event = world.candidate(CANDIDATE, "better", evaluation=False)
    assert await world.gatekeeper.on_candidate(event) == "promote"
    assert any("no evaluation data yet" in r for r in world.registry.decisions[0].reasons)


async def test_a_first_candidate_no_better_than_chance_is_rejected_and_unloaded(
    empty_world: World,
) -> None:
    world = empty_world
    assert await world.gatekeeper.on_candidate(world.candidate(CANDIDATE, "constant")) == "reject"
    assert world.torchserve.versions[MODEL] == {}
    assert MODEL not in world.torchserve.defaults


async def test_without_an_evaluation_set_a_candidate_never_replaces_production(
    world: World,
) -> None:
    event = world.candidate(CANDIDATE, "better", evaluation=False)
    assert await world.gatekeeper.on_candidate(event) == "reject"
    assert world.torchserve.defaults[MODEL] == PRODUCTION


async def test_unreadable_images_are_left_out_for_both_models_and_counted(world: World) -> None:
    event = world.candidate(CANDIDATE, "better")
    world.store.put("s3://hone-images/eval/0.png", b"corrupt-bytes")
    del world.store.objects["s3://hone-images/eval/1.png"]

    assert await world.gatekeeper.on_candidate(event) == "promote"

    (evaluation,) = world.registry.evaluations.values()
    assert evaluation.examples == 398
    assert evaluation.set_aside == {
        "unreadable_lines": 0,
        "duplicates": 0,
        "missing": 1,
        "refused": 1,
    }
    assert any("images set aside" in r for r in world.registry.decisions[0].reasons)


async def test_an_interrupted_promotion_is_finished_before_the_next_decision(
    world: World,
) -> None:
    # Decided, stored, and then the process died before TorchServe was told.
    event = world.candidate(CANDIDATE, "better")
    await world.registry.record_candidate(MODEL, event.payload)
    await world.torchserve.register(
        f"http://minio/hone-models/{MODEL}/{CANDIDATE}.mar", model=MODEL
    )
    pending = Decision(
        model_name=MODEL,
        model_version=CANDIDATE,
        previous_version=PRODUCTION,
        kind="promote",
        reasons=["better"],
        actor="gatekeeper",
        candidate_event_id=event.event_id,
    )
    await world.registry.save_decision(pending, None, event)

    assert await world.gatekeeper.on_candidate(event) == "duplicate"

    assert world.torchserve.defaults[MODEL] == CANDIDATE
    (announcement,) = world.registry.outbox
    assert announcement.event_id == pending.decision_id
    assert world.registry.decisions[0].applied_at is not None


async def test_production_lost_by_torchserve_is_reloaded_and_still_compared_with(
    world: World,
) -> None:
    await world.gatekeeper.on_candidate(world.candidate(CANDIDATE, "better"))
    world.torchserve.versions.clear()  # TorchServe restarted without its models
    world.torchserve.defaults.clear()

    assert await world.gatekeeper.on_candidate(world.candidate(LATER, "better")) == "reject"

    assert world.torchserve.defaults[MODEL] == CANDIDATE
    assert world.registry.decisions[-1].previous_version == CANDIDATE
    assert set(world.torchserve.versions[MODEL]) == {CANDIDATE}


async def test_rollback_restores_the_previous_production_as_a_manual_promotion(
    world: World,
) -> None:
    await world.gatekeeper.on_candidate(world.candidate(CANDIDATE, "better"))

    decision = await world.gatekeeper.rollback(actor="cli:ann", note="drift at dusk")

    assert decision.kind == "rollback"
    assert world.torchserve.defaults[MODEL] == PRODUCTION
    announcement = world.registry.outbox[-1]
    assert announcement.payload.manual is True
    assert announcement.payload.model_version == PRODUCTION
    assert announcement.payload.previous_version == CANDIDATE
    assert announcement.payload.reasons == ["rolled back to by cli:ann", "drift at dusk"]
    assert world.registry.models[(MODEL, PRODUCTION)].status == "production"
    assert world.registry.models[(MODEL, CANDIDATE)].status == "retired"


async def test_rollback_registers_again_a_version_that_was_unloaded(world: World) -> None:
    await world.gatekeeper.on_candidate(world.candidate(CANDIDATE, "better"))
    await world.torchserve.unregister(PRODUCTION, model=MODEL)

    await world.gatekeeper.rollback(PRODUCTION, actor="cli:ann")

    assert world.torchserve.registrations[-1] == PRODUCTION
    assert world.torchserve.defaults[MODEL] == PRODUCTION


async def test_rollback_with_no_earlier_production_is_refused(empty_world: World) -> None:
    await empty_world.gatekeeper.on_candidate(empty_world.candidate(CANDIDATE, "better"))
    with pytest.raises(GatekeeperError, match="no earlier production version"):
        await empty_world.gatekeeper.rollback(actor="cli:ann")
    assert empty_world.torchserve.defaults[MODEL] == CANDIDATE


async def test_a_rejected_version_cannot_be_rolled_back_to_but_can_be_promoted_by_hand(
    world: World,
) -> None:
    await world.gatekeeper.on_candidate(world.candidate(CANDIDATE, "constant"))
    with pytest.raises(GatekeeperError, match="never production"):
        await world.gatekeeper.rollback(CANDIDATE, actor="cli:ann")

    decision = await world.gatekeeper.promote(CANDIDATE, actor="api:ops")

    assert decision.kind == "manual"
    assert world.torchserve.defaults[MODEL] == CANDIDATE
    assert world.registry.outbox[-1].payload.manual is True
    assert world.registry.outbox[-1].payload.reasons == ["promoted by hand by api:ops"]


async def test_promoting_an_unknown_version_is_refused(world: World) -> None:
    with pytest.raises(UnknownVersion):
        await world.gatekeeper.promote("20990101.000000", actor="cli:ann")


async def test_promoting_the_production_version_again_is_refused(world: World) -> None:
    await world.gatekeeper.on_candidate(world.candidate(CANDIDATE, "better"))
    with pytest.raises(GatekeeperError, match="production already"):
        await world.gatekeeper.promote(CANDIDATE, actor="cli:ann")


async def test_a_promotion_torchserve_refuses_is_closed_with_its_error(world: World) -> None:
    await world.gatekeeper.on_candidate(world.candidate(CANDIDATE, "constant"))
    del world.store.objects[f"s3://hone-models/{MODEL}/{CANDIDATE}.mar"]
    world.torchserve.refuse_register = TorchServeError(400, "Failed to download archive")

    with pytest.raises(GatekeeperError, match="could not make"):
        await world.gatekeeper.promote(CANDIDATE, actor="cli:ann")

    assert world.torchserve.defaults[MODEL] == PRODUCTION
    failed = world.registry.decisions[-1]
    assert failed.kind == "manual"
    assert failed.apply_error is not None
    assert world.registry.models[(MODEL, PRODUCTION)].status == "production"
    assert world.registry.outbox == []


async def test_older_retired_versions_are_unloaded_but_the_previous_one_is_kept(
    world: World,
) -> None:
    await world.gatekeeper.on_candidate(world.candidate(CANDIDATE, "better"))
    # A later candidate as good as the first cannot be significantly better: promote by hand.
    await world.gatekeeper.on_candidate(world.candidate(LATER, "better"))
    await world.gatekeeper.promote(LATER, actor="cli:ann")

    assert set(world.torchserve.versions[MODEL]) == {CANDIDATE, LATER}
    assert PRODUCTION in world.torchserve.unregistered

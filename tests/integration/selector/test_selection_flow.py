"""image.scored → decisions → review.requested → label.submitted → yields, on the real Kafka and
PostgreSQL, with the selector running in-process."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeAlias

from aiokafka import ConsumerRecord

from hone_common.events import ReviewRequest, ReviewRequested, decode
from hone_selector.settings import BudgetSettings, RandomSettings, ThresholdSettings
from tests.integration.selector.conftest import Running, SelectorFactory, TopicReader, eventually
from tests.integration.selector.world import World
from tests.unit.selector.builders import CLASSES, NOON, scored_event

COMMON = [c for c in CLASSES if c != "Shirt"]
# Every image with any signal competes for tokens; the threshold has its own test.
NO_THRESHOLD = ThresholdSettings(warmup_images=0, headroom=1e9)
# Enough tokens that other tests' images on the shared topics cannot use them all up.
AMPLE = BudgetSettings(reviews_per_hour=1e6)

Record: TypeAlias = "ConsumerRecord[bytes, bytes]"


def keyed_by(image_ids: set[uuid.UUID]) -> Callable[[Record], bool]:
    def keep(record: Record) -> bool:
        return record.key is not None and uuid.UUID(record.key.decode()) in image_ids

    return keep


def payloads(records: list[Record]) -> dict[uuid.UUID, ReviewRequest]:
    return {
        e.payload.image_id: e.payload for e in (decode(ReviewRequested, r.value) for r in records)
    }


async def class_total(running: Running, world: World) -> int:
    total = await running.pool.fetchval(
        f"SELECT coalesce(sum(labelled), 0) FROM {running.schema}.class_counts "
        "WHERE class = ANY($1)",
        world.classes,
    )
    return int(total)


async def test_uncertain_rare_and_random_images_are_requested_and_labels_become_yields(
    start_selector: SelectorFactory,
) -> None:
    world = World()
    settings: dict[str, Any] = {
        "threshold": NO_THRESHOLD,
        "random": RandomSettings(share=world.random_share, seed=world.seed),
        "budget": AMPLE,
    }
    async with start_selector(**settings) as running:
        # The labelled set: four labels of every class but Shirt, so Shirt is rare.
        await running.send(
            *(world.label(uuid.uuid4(), "label", c) for c in COMMON for _ in range(4))
        )

        async def counted() -> bool:
            return await class_total(running, world) == 36

        await eventually(counted, what="36 labels counted")

        background = [world.certain(COMMON[i % 9], camera=f"bg{i}") for i in range(10)]
        random_pick = world.certain("Bag", camera="cam-r", random_control=True)
        uncertain = world.scores("Trouser", 0.45, second="Pullover", runner_up=0.44, camera="cam-u")
        rare = world.certain("Shirt", camera="cam-rare")
        object_id = f"sku-{world.tag}"
        frames = [
            world.scores("Coat", 0.5, second="Pullover", runner_up=0.45, object_id=object_id,
                         camera=f"cam-o{n}", captured_at=NOON + timedelta(seconds=n))
            for n in range(2)
        ]  # fmt: skip
        sent = [*background, random_pick, uncertain, rare, *frames]
        ours = {s.image_id for s in sent}

        async with TopicReader.at_end(
            running.settings.kafka.bootstrap_servers, "review.requested"
        ) as reader:
            await running.send(*(scored_event(s) for s in sent))
            decided = await running.wait_decided(list(ours))
            records = await reader.read(keyed_by(ours), count=4)
            assert await reader.settle(keyed_by(ours), seconds=2.0) == 4

        outcome = {image_id: row["outcome"] for image_id, row in decided.items()}
        assert {outcome[s.image_id] for s in background} == {"no_signal"}
        assert outcome[random_pick.image_id] == "random"
        assert outcome[uncertain.image_id] == "requested"
        assert outcome[rare.image_id] == "requested"
        assert sorted(outcome[f.image_id] for f in frames) == ["duplicate:object", "requested"]

        reviews = payloads(records)
        frame = next(f for f in frames if outcome[f.image_id] == "requested")
        assert set(reviews) == {
            random_pick.image_id,
            uncertain.image_id,
            rare.image_id,
            frame.image_id,
        }
        assert [r.strategy for r in reviews[random_pick.image_id].reasons] == ["random"]
        assert reviews[random_pick.image_id].priority == 1.0
        assert reviews[uncertain.image_id].reasons[0].strategy == "uncertainty"
        assert "margin 0.01" in reviews[uncertain.image_id].reasons[0].detail
        assert [r.strategy for r in reviews[rare.image_id].reasons] == ["rarity"]
        assert reviews[rare.image_id].reasons[0].score > 0.7
        assert reviews[frame.image_id].object_id == object_id
        shown = reviews[uncertain.image_id]
        assert shown.prediction is not None
        assert shown.prediction.label == world.cls("Trouser")
        assert shown.prediction.classes == world.classes
        assert shown.prediction.probabilities == uncertain.probabilities
        assert (shown.model_version, shown.camera_id, shown.uri) == (
            "v1",
            world.camera("cam-u"),
            uncertain.uri,
        )

        # People answer: the uncertain and random picks were wrong, the rare one right, the
        # object was flagged wrong without a class.
        await running.send(
            world.label(uncertain.image_id, "label", "Pullover"),
            world.label(rare.image_id, "label", "Shirt"),
            world.label(random_pick.image_id, "label", "Sandal"),
            world.label(frame.image_id, "wrong"),
        )

        async def answered() -> dict[str, Any] | None:
            found = await running.stats()
            random_yield = next((y for y in found["yields"] if y["strategy"] == "random"), None)
            return found if random_yield and random_yield["labelled"] else None

        stats = await eventually(answered, what="the random pick's yield")
        rows = await running.wait_decided(list(ours))
        assert rows[uncertain.image_id]["model_wrong"] is True
        assert rows[rare.image_id]["model_wrong"] is False
        assert rows[frame.image_id]["model_wrong"] is True
        assert all(rows[i]["answered_at"] for i in reviews)

        yields = {y["strategy"]: y for y in stats["yields"]}
        # Other tests' images may be picked too (shared topics) but are never labelled here.
        assert (yields["uncertainty"]["labelled"], yields["uncertainty"]["wrong"]) == (2, 2)
        assert yields["uncertainty"]["yield"] == 1.0
        assert yields["uncertainty"]["lift"] == 1.0
        assert (yields["rarity"]["labelled"], yields["rarity"]["yield"]) == (1, 0.0)
        assert (yields["random"]["labelled"], yields["random"]["yield"]) == (1, 1.0)
        accuracy = stats["accuracy_per_camera"][world.camera("cam-r")]
        assert (accuracy["labelled"], accuracy["accuracy"]) == (1, 0.0)
        assert accuracy["interval"][0] == 0.0
        assert stats["class_counts"][world.cls("Shirt")] == 1
        assert stats["class_counts"][world.cls("Pullover")] == 5
        assert await class_total(running, world) == 39  # the flag without a class adds none
        slices = {(s["camera_id"], s["labelled"], s["wrong"]) for s in stats["slices"]}
        assert {
            (world.camera("cam-u"), 1, 1),
            (world.camera("cam-rare"), 1, 0),
            (world.camera("cam-r"), 1, 1),
            (frame.camera_id, 1, 1),
        } <= slices

        metrics = (await running.http.get("/metrics")).text
        assert 'hone_selector_strategy_yield{strategy="random"} 1.0' in metrics
        assert 'hone_selector_strategy_labelled{strategy="uncertainty"} 2.0' in metrics

        lineage = (await running.http.get(f"/v1/selector/decisions/{uncertain.image_id}")).json()
        assert len(lineage) == 1
        assert lineage[0]["outcome"] == "requested"
        assert (lineage[0]["human_label"], lineage[0]["model_wrong"]) == (
            world.cls("Pullover"),
            True,
        )
        assert lineage[0]["scores"]["uncertainty"]["score"] > 0.8
        assert lineage[0]["scores"]["weakness"]["abstained"] is True


async def test_the_budget_caps_requests_and_random_control_has_its_own_share(
    start_selector: SelectorFactory,
) -> None:
    world = World()
    settings: dict[str, Any] = {
        # 6 reviews/h with 50 minutes of burst: 4.5 strategic tokens and 1 random-control token,
        # and no noticeable refill during the test.
        "budget": BudgetSettings(reviews_per_hour=6, burst_minutes=50, random_share=0.1),
        "threshold": NO_THRESHOLD,
        "random": RandomSettings(share=world.random_share, seed=world.seed),
    }
    async with start_selector(**settings) as running:
        uncertain = [
            world.scores("Dress", 0.40 + n / 100, second="Coat", runner_up=0.35, camera=f"cam-{n}")
            for n in range(10)
        ]
        randoms = [world.certain("Bag", camera=f"cam-r{n}", random_control=True) for n in range(3)]
        ours = {s.image_id for s in [*uncertain, *randoms]}
        async with TopicReader.at_end(
            running.settings.kafka.bootstrap_servers, "review.requested"
        ) as reader:
            await running.send(*(scored_event(s) for s in [*uncertain, *randoms]))
            decided = await running.wait_decided(list(ours))
            requested = [i for i, row in decided.items() if row["requested"]]
            records = await reader.read(keyed_by(ours), count=len(requested))
            assert await reader.settle(keyed_by(ours), seconds=2.0) == len(requested)
        assert set(payloads(records)) == set(requested)

        # Whoever else published scored images meanwhile, the whole schema stays within budget.
        totals = dict(
            await running.pool.fetch(
                f"SELECT outcome, count(*) FROM {running.schema}.decisions "
                "WHERE outcome IN ('requested', 'random') GROUP BY outcome"
            )
        )
        assert totals["requested"] == 4
        assert totals.get("random", 0) <= 1
        ours_by_outcome = [decided[s.image_id]["outcome"] for s in uncertain]
        assert set(ours_by_outcome) <= {"requested", "budget:strategic"}
        assert ours_by_outcome.count("budget:strategic") >= 6
        random_outcomes = sorted(decided[s.image_id]["outcome"] for s in randoms)
        # One random token: the other control picks are certain, so nothing else asks for them.
        assert random_outcomes.count("random") <= 1
        assert set(random_outcomes) <= {"random", "no_signal"}

        stats = await running.stats()
        assert stats["budget"]["strategic"]["tokens"] < 1.0
        assert stats["budget"]["strategic"]["capacity"] == 4.5
        assert stats["open_reviews"] >= len(requested)
        assert stats["decisions_24h"]["budget"] >= 6

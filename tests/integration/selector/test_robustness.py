"""What the selector does with repeated, re-scored and broken input, and with its adaptive
threshold, against the real Kafka and PostgreSQL."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from aiokafka import ConsumerRecord

from hone_common.events import Scores, encode
from hone_common.kafka import DeadLetter
from hone_selector.selection import Decision, Selector
from hone_selector.settings import BudgetSettings, RandomSettings, ThresholdSettings
from tests.integration.selector.conftest import Running, SelectorFactory, TopicReader, eventually
from tests.integration.selector.world import World
from tests.unit.selector.builders import scored_event

NO_THRESHOLD = ThresholdSettings(warmup_images=0, headroom=1e9)


def private(world: World, **overrides: Any) -> dict[str, Any]:
    """This world's random sample and a budget other tests' images cannot use up."""
    return {
        "random": RandomSettings(share=world.random_share, seed=world.seed),
        "budget": BudgetSettings(reviews_per_hour=1e6),
        **overrides,
    }


async def count(running: Running, table: str, where: str, *args: Any) -> int:
    value = await running.pool.fetchval(
        f"SELECT count(*) FROM {running.schema}.{table} WHERE {where}", *args
    )
    return int(value)


async def test_a_redelivered_event_and_a_rescore_never_request_an_image_twice(
    start_selector: SelectorFactory,
) -> None:
    world = World()
    async with start_selector(**private(world, threshold=NO_THRESHOLD)) as running:
        first = scored_event(world.scores("Shirt", 0.4, second="Coat", runner_up=0.38))
        image_id = first.payload.image_id
        rescored = scored_event(first.payload.model_copy(update={"model_version": "v2"}))
        async with TopicReader.at_end(
            running.settings.kafka.bootstrap_servers, "review.requested"
        ) as reader:
            await running.send(first, first)  # at-least-once delivery: the same event twice
            await running.wait_decided([image_id])
            await running.send(rescored)

            async def both_versions() -> bool:
                return len(await running.decisions([image_id])) == 2

            await eventually(both_versions, what="the rescore's decision")
            keep = lambda r: r.key == str(image_id).encode()  # noqa: E731
            await reader.read(keep, count=1)
            assert await reader.settle(keep, seconds=2.0) == 1

        rows = {r["model_version"]: r for r in await running.decisions([image_id])}
        assert rows["v1"]["outcome"] == "requested"
        assert rows["v2"]["outcome"] == "duplicate:image"
        assert await count(running, "processed_events", "event_id = $1", first.event_id) == 1


async def test_labels_are_counted_once_and_a_relabel_moves_the_count(
    start_selector: SelectorFactory,
) -> None:
    world = World()
    async with start_selector(**private(world)) as running:
        image_id = uuid.uuid4()
        shirt = world.label(image_id, "label", "Shirt")
        await running.send(shirt, shirt)

        async def counts() -> dict[str, int]:
            rows = await running.pool.fetch(
                f"SELECT class, labelled FROM {running.schema}.class_counts WHERE class = ANY($1)",
                world.classes,
            )
            return {r["class"]: r["labelled"] for r in rows}

        await eventually(counts, what="the first label")
        await running.send(world.label(image_id, "label", "Coat"))

        async def moved() -> dict[str, int] | None:
            found = await counts()
            return found if found.get(world.cls("Coat")) == 1 else None

        assert await eventually(moved, what="the relabel") == {
            world.cls("Shirt"): 0,
            world.cls("Coat"): 1,
        }
        await running.send(world.label(image_id, "ambiguous"))

        async def withdrawn() -> dict[str, int] | None:
            found = await counts()
            return found if found.get(world.cls("Coat")) == 0 else None

        await eventually(withdrawn, what="the ambiguous verdict")


def ours(key: bytes) -> Callable[[ConsumerRecord[bytes, bytes]], bool]:
    """Dead letters of `key` written by the selector (not by other consumers of the topic)."""
    return lambda r: r.key == key and DeadLetter.model_validate_json(r.value).consumer == "selector"


async def test_broken_events_are_dead_lettered_and_the_stream_goes_on(
    start_selector: SelectorFactory,
) -> None:
    world = World()
    async with start_selector(**private(world, threshold=NO_THRESHOLD)) as running:
        bootstrap = running.settings.kafka.bootstrap_servers
        bad_key = f"broken-{world.tag}".encode()
        good = scored_event(world.scores("Shirt", 0.4, second="Coat", runner_up=0.38))
        label_key = f"bad-label-{world.tag}".encode()
        not_a_label = encode(world.label(uuid.uuid4(), "ambiguous")).replace(
            b'"ambiguous"', b'"maybe"'
        )
        async with (
            TopicReader.at_end(bootstrap, "image.scored.dlq") as scored_dlq,
            TopicReader.at_end(bootstrap, "label.submitted.dlq") as label_dlq,
        ):
            await running.broker.publish(b"\x00not json", "image.scored", key=bad_key)
            await running.broker.publish(not_a_label, "label.submitted", key=label_key)
            await running.send(good)
            await running.wait_decided([good.payload.image_id])
            # Other services consume these topics too and dead-letter the same messages.
            (letter,) = await scored_dlq.read(ours(bad_key), count=1)
            (label_letter,) = await label_dlq.read(ours(label_key), count=1)

        dead = DeadLetter.model_validate_json(letter.value)
        assert (dead.topic, dead.error_type) == ("image.scored", "ValidationError")
        assert base64.b64decode(dead.value) == b"\x00not json"
        assert "verdict" in DeadLetter.model_validate_json(label_letter.value).error
        assert (await running.decisions([good.payload.image_id]))[0]["outcome"] == "requested"


async def test_only_images_above_the_running_quantile_of_priorities_are_requested(
    start_selector: SelectorFactory,
) -> None:
    world = World()
    # 60 reviews/h against a stream of several images per second: only images in the top bin
    # of recent priorities may pass. (The warm-up is covered by the unit tests: images other
    # tests publish on the shared topics count towards it.)
    settings = private(
        world,
        threshold=ThresholdSettings(warmup_images=0),
        budget=BudgetSettings(reviews_per_hour=60, burst_minutes=10),
    )
    async with start_selector(**settings) as running:
        torn = [1 / len(world.classes)] * len(world.classes)  # priority 1: the highest possible
        best = world.scores("Trouser", probs=torn, camera="best")
        await running.send(scored_event(best))
        assert (await running.wait_decided([best.image_id]))[best.image_id][
            "outcome"
        ] == "requested"

        background = [
            world.scores("Trouser", 0.9 - n / 200, second="Coat", runner_up=0.05, camera=f"bg{n}")
            for n in range(29)
        ]
        middling = world.scores("Coat", 0.5, second="Trouser", runner_up=0.3, camera="mid")
        await running.send(*(scored_event(s) for s in [*background, middling]))
        decided = await running.wait_decided([s.image_id for s in [*background, middling]])
        assert {row["outcome"] for row in decided.values()} == {"below_threshold"}
        row = decided[middling.image_id]
        assert row["priority"] < row["threshold"]
        assert row["threshold"] > 0.99

        stats = await running.stats()
        assert stats["threshold"] > 0.99
        assert stats["stream_per_hour"] > 60
        observed = await running.pool.fetchval(
            f"SELECT observed FROM {running.schema}.threshold_state"
        )
        assert observed >= 31


async def test_an_image_the_selector_cannot_decide_on_is_dead_lettered_alone(
    start_selector: SelectorFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = World()
    poisoned = world.scores("Shirt", 0.4, second="Coat", runner_up=0.38, camera="poison")
    fine = world.scores("Shirt", 0.4, second="Coat", runner_up=0.38, camera="fine")
    decide = Selector.decide

    def failing_decide(self: Selector, scores: Scores, now: float) -> Decision:
        if scores.image_id == poisoned.image_id:  # stands in for a bug the input triggers
            raise RuntimeError("cannot decide on this one")
        return decide(self, scores, now)

    monkeypatch.setattr(Selector, "decide", failing_decide)
    async with start_selector(**private(world, threshold=NO_THRESHOLD)) as running:
        bad_event = scored_event(poisoned)
        async with TopicReader.at_end(
            running.settings.kafka.bootstrap_servers, "image.scored.dlq"
        ) as dlq:
            await running.send(bad_event, scored_event(fine))
            await running.wait_decided([fine.image_id])
            (record,) = await dlq.read(ours(str(poisoned.image_id).encode()), count=1)

        dead = DeadLetter.model_validate_json(record.value)
        assert (dead.error_type, dead.error) == ("RuntimeError", "cannot decide on this one")
        assert await running.decisions([poisoned.image_id]) == []
        # Unclaimed: replaying the dead letter once the bug is fixed decides the image.
        assert await count(running, "processed_events", "event_id = $1", bad_event.event_id) == 0

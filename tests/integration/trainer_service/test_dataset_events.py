"""The dataset built from real Kafka events in PostgreSQL: labels resolve, arrive in any order
and only once, ambiguous and flagged images stay out, labels propagate only into `train`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from hone_common.events import ModelPromoted, Promotion
from tests.integration.trainer_service.conftest import (
    CLASSES,
    Running,
    TrainerFactory,
    eventually,
    label_event,
    later,
)


async def test_a_label_that_arrives_before_its_image_becomes_an_example_once_the_image_does(
    start_trainer: TrainerFactory,
) -> None:
    async with start_trainer() as t:
        picture = await t.picture(0, seed=1)
        await t.send(label_event(picture.image_id, "top"))
        examples = await t.wait_examples([picture.image_id])
        assert examples[picture.image_id]["label"] == "top"
        joined = (
            f"SELECT e.image_id FROM {t.schema}.examples e JOIN {t.schema}.images USING (image_id) "
            "WHERE image_id = $1"
        )
        assert await t.pool.fetch(joined, picture.image_id) == []  # no image facts yet
        await t.send(picture.event)
        await t.wait_processed(picture.event)
        rows = await t.pool.fetch(joined, picture.image_id)
        assert [r["image_id"] for r in rows] == [picture.image_id]


async def test_a_redelivered_label_is_stored_once(start_trainer: TrainerFactory) -> None:
    async with start_trainer() as t:
        picture = await t.picture(1, seed=2)
        event = label_event(picture.image_id, "upper")
        await t.send(event, event, picture.event)
        await t.wait_processed(event, picture.event)
        await t.wait_examples([picture.image_id])
        count = await t.pool.fetchval(
            f"SELECT count(*) FROM {t.schema}.label_events WHERE image_id = $1", picture.image_id
        )
        assert count == 1


async def test_the_latest_answer_wins_and_ambiguous_and_flags_stay_out(
    start_trainer: TrainerFactory,
) -> None:
    async with start_trainer() as t:
        relabelled, ambiguous, flagged, corrected = [
            await t.picture(i % 4, seed=10 + i) for i in range(4)
        ]
        events = [
            *(p.event for p in (relabelled, ambiguous, flagged, corrected)),
            label_event(relabelled.image_id, "top", at=later(0)),
            label_event(relabelled.image_id, "lower", at=later(1)),
            label_event(ambiguous.image_id, "upper", at=later(0)),
            label_event(ambiguous.image_id, None, verdict="ambiguous", at=later(1)),
            label_event(flagged.image_id, None, verdict="wrong", predicted="top"),
            label_event(corrected.image_id, "bottom", verdict="wrong", predicted="top"),
        ]
        await t.send(*events)
        await t.wait_processed(*events)
        mine = [p.image_id for p in (relabelled, ambiguous, flagged, corrected)]
        rows = {
            r["image_id"]: r
            for r in await t.pool.fetch(
                f"SELECT * FROM {t.schema}.examples WHERE image_id = ANY($1)", mine
            )
        }
        assert rows[relabelled.image_id]["label"] == "lower"
        assert (rows[ambiguous.image_id]["kind"], rows[ambiguous.image_id]["label"]) == (
            "ambiguous",
            None,
        )
        assert flagged.image_id not in rows
        assert (rows[corrected.image_id]["kind"], rows[corrected.image_id]["label"]) == (
            "human",
            "bottom",
        )
        stats = (await t.http.get("/v1/trainer/dataset")).json()
        assert stats["ambiguous"] >= 1
        assert stats["flagged_images"] >= 1


async def _views(t: Running, count: int, object_id: str, seed: int) -> list:  # type: ignore[type-arg]
    at = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
    return [
        await t.picture(
            2, seed=seed + i, camera=f"cam-{i}", object_id=object_id, at=at + timedelta(seconds=i)
        )
        for i in range(count)
    ]


async def test_a_label_propagates_only_to_train_views_and_a_human_label_overrides_it(
    start_trainer: TrainerFactory,
) -> None:
    async with start_trainer() as t:
        views = await _views(t, 24, f"obj-{t.suffix}", seed=100)
        source, others = views[0], views[1:]
        label = label_event(source.image_id, "lower")
        await t.send(*(v.event for v in views), label)
        await t.wait_processed(label, *(v.event for v in views))
        touched = await t.touched_by_others([v.image_id for v in views])
        if source.image_id in touched:
            pytest.skip("another pipeline labelled the source view")
        others = [v for v in others if v.image_id not in touched]
        train_views = [v for v in others if t.split(v.image_id) == "train"]
        held_views = [v for v in others if t.split(v.image_id) != "train"]
        assert train_views, "the hash should put some views in train"
        assert held_views, "the hash should put some views outside train"
        examples = await t.wait_examples([source.image_id] + [v.image_id for v in train_views])
        foreign_classes = await t.pool.fetchval(
            f"SELECT count(*) FROM {t.schema}.label_events WHERE image_id = ANY($1) "
            "AND label IS NOT NULL AND label <> 'lower'",
            list(touched),
        )
        if foreign_classes:
            pytest.skip("another pipeline gave a view a different class: nothing propagates")
        for view in train_views:
            row = examples[view.image_id]
            assert (row["kind"], row["label"], row["weight"]) == ("propagated", "lower", 0.5)
            assert row["propagated_from"] == source.image_id
        held = await t.pool.fetch(
            f"SELECT image_id FROM {t.schema}.examples WHERE image_id = ANY($1)",
            [v.image_id for v in held_views],
        )
        assert held == []
        # Every stored split of a propagated view is train, and the database agrees.
        splits = await t.pool.fetch(
            f"SELECT DISTINCT s.split FROM {t.schema}.examples e JOIN {t.schema}.splits s "
            "USING (image_id) WHERE e.kind = 'propagated' AND image_id = ANY($1)",
            [v.image_id for v in views],
        )
        assert [r["split"] for r in splits] == ["train"]

        target = train_views[0]
        await t.send(label_event(target.image_id, "top", labeler="bob"))

        async def overridden() -> bool:
            row = await t.pool.fetchrow(
                f"SELECT kind, label FROM {t.schema}.examples WHERE image_id = $1", target.image_id
            )
            return row is not None and (row["kind"], row["label"]) == ("human", "top")

        await eventually(overridden, 30, "the human label to replace the propagated one")


async def test_only_promotions_of_its_own_model_set_the_production_version(
    start_trainer: TrainerFactory,
) -> None:
    async with start_trainer() as t:

        def promoted(model: str, version: str) -> ModelPromoted:
            return ModelPromoted(
                producer="trainer-it",
                payload=Promotion(
                    model_version=version,
                    artifact_uri=f"s3://hone-models/{model}/{version}.mar",
                    classes=CLASSES,
                ),
            )

        events = [
            promoted(t.model_name, "20260301.100000"),
            promoted("someone-else", "20260301.110000"),
        ]
        await t.send(*events)
        await t.wait_processed(*events)
        rows = await t.pool.fetch(f"SELECT model_name, model_version FROM {t.schema}.production")
        assert [(r["model_name"], r["model_version"]) for r in rows] == [
            (t.model_name, "20260301.100000")
        ]

"""Images and labels in, a scheduled run, `model.candidate` out: the archive, the evaluation
manifest and the weakness model exist in MinIO; the run's examples hold no test, ambiguous or
weakness image, and propagated labels stay in `train`. Training runs in a child process, as in
production."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from hone_common.events import ModelCandidate
from hone_common.storage import ObjectRef
from hone_common.topics import Topic
from hone_trainer.settings import ScheduleSettings
from tests.integration.trainer_service.conftest import (
    CLASSES,
    TrainerFactory,
    eventually,
    label_event,
)


async def test_labels_trigger_a_run_that_publishes_a_complete_candidate(
    start_trainer: TrainerFactory, kafka_tap: Any
) -> None:
    tap = await kafka_tap(Topic.MODEL_CANDIDATE.value)
    # 66 + 16 labels are sent: the run starts once the last of them is in.
    schedule = ScheduleSettings(every_labels=82, every_minutes=600, check_seconds=0.5)
    async with start_trainer(schedule=schedule, executor="process") as t:
        pictures = [await t.picture(i % 4, seed=1000 + i, camera=f"cam-{i % 3}") for i in range(72)]
        ambiguous = pictures[:6]
        labelled = pictures[6:]
        at = datetime(2026, 3, 1, 7, 0, tzinfo=UTC)
        # Objects seen by two cameras: the second view is never labelled by a person.
        views = [
            await t.picture(
                3, seed=5000 + i, camera="cam-side", object_id=f"o{i}-{t.suffix}", at=at
            )
            for i in range(16)
        ]
        firsts = [
            await t.picture(
                3, seed=6000 + i, camera="cam-front", object_id=f"o{i}-{t.suffix}", at=at
            )
            for i in range(16)
        ]
        events: list[Any] = [p.event for p in (*pictures, *views, *firsts)]
        events += [label_event(p.image_id, None, verdict="ambiguous") for p in ambiguous]
        events += [label_event(p.image_id, p.label) for p in labelled]
        # Fewer than N labels so far: no run yet.
        await t.send(*events)
        await t.wait_processed(*events)
        assert await t.pool.fetchval(f"SELECT count(*) FROM {t.schema}.runs") == 0
        last = [label_event(p.image_id, "bottom") for p in firsts]
        await t.send(*last)

        def ours(records: list[Any]) -> bool:
            return any(t.model_name in r.value.decode() for r in records)

        records = await tap.wait_for(ours, within=300)
        candidate = next(
            ModelCandidate.model_validate_json(r.value)
            for r in records
            if t.model_name in r.value.decode()
        ).payload

        run = (await t.http.get("/v1/trainer/runs")).json()[0]
        assert run["status"] == "succeeded", run.get("error")
        assert run["trigger"] == "schedule:labels"
        assert candidate.model_version == run["model_version"]
        assert candidate.parent_version is None
        assert candidate.classes == CLASSES

        # The artifacts exist where the candidate says.
        manifest_uri = candidate.evaluation_set_uri
        assert manifest_uri is not None
        for uri in (candidate.artifact_uri, manifest_uri):
            assert uri is not None
            assert await t.store.exists(ObjectRef.parse(uri))
        assert manifest_uri.endswith(f"{candidate.model_version}.evaluation.jsonl")
        if candidate.weakness_model_uri is not None:
            weakness = json.loads(await t.store.get(ObjectRef.parse(candidate.weakness_model_uri)))
            assert weakness["format"] == "hone-weakness-logreg"
            assert weakness["model_version"] == candidate.model_version
        assert "holdout" in run["weakness"] or "skipped" in run["weakness"]

        # The evaluation manifest is exactly the human-labelled test images (of this test: other
        # tests publish on the same topics).
        everyone = [*pictures, *views, *firsts]
        touched = await t.touched_by_others([p.image_id for p in everyone])
        our_ids = {p.image_id for p in everyone} - touched
        manifest = [
            line
            for line in map(
                json.loads,
                (await t.store.get(ObjectRef.parse(manifest_uri))).decode().splitlines(),
            )
            if uuid.UUID(line["image_id"]) in our_ids
        ]
        human = [p for p in (*labelled, *firsts) if p.image_id in our_ids]
        expected_test = {p.image_id: p for p in human if t.split(p.image_id) == "test"}
        assert {uuid.UUID(m["image_id"]) for m in manifest} == set(expected_test)
        for line in manifest:
            picture = expected_test[uuid.UUID(line["image_id"])]
            assert line["uri"] == picture.event.payload.uri
            assert line["camera_id"] == picture.event.payload.camera_id
        assert all(line["label"] in CLASSES for line in manifest)

        # What the run trained on: no test, no weakness split, no ambiguous image.
        trained = await t.pool.fetch(
            f"SELECT image_id, kind FROM {t.schema}.run_examples "
            "WHERE run_id = $1 AND role = 'train'",
            uuid.UUID(run["run_id"]),
        )
        used_ids = {r["image_id"] for r in trained}
        assert used_ids & our_ids
        assert not used_ids & {p.image_id for p in everyone if t.split(p.image_id) == "test"}
        assert not used_ids & {p.image_id for p in everyone if t.split(p.image_id) == "weakness"}
        assert not used_ids & {p.image_id for p in ambiguous} & our_ids
        propagated = {r["image_id"] for r in trained if r["kind"] == "propagated"} & our_ids
        expected_propagated = {
            v.image_id
            for v, first in zip(views, firsts, strict=True)
            if t.split(v.image_id) == "train" and {v.image_id, first.image_id} <= our_ids
        }
        assert propagated == expected_propagated

        # The snapshot describes that set.
        assert candidate.snapshot.examples == len(used_ids)
        kinds = Counter(r["kind"] for r in trained)
        assert candidate.snapshot.per_source == dict(kinds)
        assert candidate.snapshot.examples_sha256 == run["examples_sha256"]
        assert candidate.metrics.evaluated_on > 0
        assert set(candidate.metrics.per_camera) & {"cam-0", "cam-1", "cam-2", "cam-front"}


async def test_a_run_after_t_minutes_with_few_labels_is_skipped_and_recorded(
    start_trainer: TrainerFactory,
) -> None:
    schedule = ScheduleSettings(every_labels=1000, every_minutes=0.01, check_seconds=0.3)
    async with start_trainer(schedule=schedule, min_examples=50) as t:
        pictures = [await t.picture(i % 4, seed=9000 + i) for i in range(3)]
        events = [p.event for p in pictures] + [label_event(p.image_id, p.label) for p in pictures]
        await t.send(*events)

        async def skipped() -> Any:
            return await t.pool.fetchrow(
                f"SELECT * FROM {t.schema}.runs WHERE status = 'skipped' LIMIT 1"
            )

        run = await eventually(skipped, 60, "a skipped run")
        assert run["trigger"] == "schedule:time"
        assert "not enough to train on" in run["error"]
        assert await t.candidates_in_outbox() == 0

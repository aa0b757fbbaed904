"""The label set, the statistics and the metrics, against the real stack."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from hone_common.auth import Role
from tests.integration.labeling.conftest import CLASSES, LabelingHarness


@pytest.fixture
async def restore_classes(harness: LabelingHarness) -> AsyncIterator[None]:
    yield
    admin = await harness.key(Role.ADMIN)
    response = await harness.client.put(
        "/v1/classes", json={"classes": CLASSES}, headers=admin.headers
    )
    assert response.status_code == 200


async def test_the_label_set_starts_as_fashion_mnist_and_every_role_can_read_it(
    harness: LabelingHarness,
) -> None:
    for role in (Role.LABELER, Role.APP, Role.ADMIN):
        response = await harness.client.get(
            "/v1/classes", headers=(await harness.key(role)).headers
        )
        assert response.status_code == 200
        assert response.json()["classes"] == CLASSES


@pytest.mark.usefixtures("restore_classes")
async def test_admins_replace_the_label_set_and_answers_follow_it(
    harness: LabelingHarness,
) -> None:
    admin, ann = await harness.key(Role.ADMIN, name="ops"), await harness.key(Role.LABELER)
    await harness.queue(2)
    first, second = await harness.claim(ann, count=2)

    replaced = await harness.client.put(
        "/v1/classes", json={"classes": ["cat", "dog", "Coat"]}, headers=admin.headers
    )
    removed = await harness.answer(ann, first["task_id"], label="Shirt")
    kept = await harness.answer(ann, second["task_id"], label="dog")

    assert replaced.status_code == 200
    assert (replaced.json()["classes"], replaced.json()["updated_by"]) == (
        ["cat", "dog", "Coat"],
        "ops",
    )
    assert (removed.status_code, removed.json()["error"]["code"]) == (422, "unknown_class")
    assert kept.status_code == 200


@pytest.mark.parametrize(
    "classes",
    [
        ["only-one"],
        ["Coat", "coat"],
        ["Coat", "ambiguous"],
        ["Coat", "   "],
        ["Coat", "bad\u0000name"],
        ["Coat", "x" * 65],
    ],
)
@pytest.mark.usefixtures("restore_classes")
async def test_invalid_label_sets_are_422_and_change_nothing(
    harness: LabelingHarness, classes: list[str]
) -> None:
    admin = await harness.key(Role.ADMIN)

    response = await harness.client.put(
        "/v1/classes", json={"classes": classes}, headers=admin.headers
    )

    assert response.status_code == 422
    current = await harness.client.get("/v1/classes", headers=admin.headers)
    assert current.json()["classes"] == CLASSES


async def test_labelers_cannot_change_the_label_set_or_read_everyones_stats(
    harness: LabelingHarness,
) -> None:
    ann = await harness.key(Role.LABELER)

    put = await harness.client.put("/v1/classes", json={"classes": ["a", "b"]}, headers=ann.headers)
    stats = await harness.client.get("/v1/stats", headers=ann.headers)

    assert (put.status_code, stats.status_code) == (403, 403)


async def test_stats_count_the_queue_the_answers_per_labeler_and_the_classes(
    harness: LabelingHarness,
) -> None:
    await harness.queue(4)
    ann = await harness.key(Role.LABELER, name=f"ann-{harness.unique}")
    bob = await harness.key(Role.LABELER, name=f"bob-{harness.unique}")
    tasks = await harness.claim(ann, count=3)
    await harness.answer(ann, tasks[0]["task_id"], label="Shirt")  # the model's guess: right
    await harness.answer(ann, tasks[1]["task_id"], label="Coat")
    await harness.answer(ann, tasks[2]["task_id"], verdict="ambiguous")
    (held,) = await harness.claim(bob)
    admin = await harness.key(Role.ADMIN)

    stats = (await harness.client.get("/v1/stats", headers=admin.headers)).json()
    mine = (await harness.client.get("/v1/stats/me", headers=ann.headers)).json()
    bobs = (await harness.client.get("/v1/stats/me", headers=bob.headers)).json()

    assert stats["queue"] == {"open": 1, "waiting": 0, "leased": 1, "flagged": 0}
    by_name = {row["labeler_id"]: row for row in stats["labelers"]}
    assert by_name[ann.name]["answers"] == 3
    assert (by_name[ann.name]["labels"], by_name[ann.name]["ambiguous"]) == (2, 1)
    assert by_name[ann.name]["last_hour"] == 3
    assert bob.name not in by_name
    assert stats["class_counts"]["Shirt"] >= 1
    assert stats["class_counts"]["Coat"] >= 1
    assert 0 < stats["model_agreement_rate"] < 1
    assert mine["me"]["labeler_id"] == ann.name
    assert (mine["me"]["answers"], mine["me"]["labels"]) == (3, 2)
    assert bobs["me"]["answers"] == 0
    assert "labelers" not in mine  # a labeler sees only their own counts
    assert held["task_id"] not in {t["task_id"] for t in tasks}


async def test_metrics_report_queue_depth_answers_and_time_per_answer(
    harness: LabelingHarness,
) -> None:
    await harness.queue(2)
    ann = await harness.key(Role.LABELER)
    (task,) = await harness.claim(ann)
    await harness.client.post(
        f"/v1/tasks/{task['task_id']}/answer",
        json={"verdict": "label", "label": "Bag", "elapsed_ms": 1800},
        headers=ann.headers,
    )
    await harness.service.housekeeping()

    text = (await harness.client.get("/metrics")).text

    assert 'hone_labeling_queue_depth{state="waiting"} 1.0' in text
    assert 'hone_labeling_answers_total{verdict="label"}' in text
    assert 'hone_labeling_answer_seconds_bucket{le="2.0",verdict="label"}' in text
    assert 'hone_labeling_labels_published_total{verdict="label"}' in text

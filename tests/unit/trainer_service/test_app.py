"""The trainer's wiring, without servers: settings, subscriptions, routes, refused input."""

from __future__ import annotations

import pytest
from faststream.kafka import KafkaBroker, TestKafkaBroker

from hone_common.kafka import DeadLetter
from hone_common.service import Runtime
from hone_common.topics import Topic
from hone_trainer.app import create_app
from hone_trainer.settings import Settings, TrainerSettings


def test_settings_default_to_port_8004_schema_and_group_trainer() -> None:
    settings = Settings()
    assert settings.http.port == 8004
    assert settings.trainer.schema_name == "trainer"
    assert settings.trainer.consumer_group == "trainer"
    assert settings.model_name == settings.torchserve.model_name


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HONE_TRAINER__SCHEDULE__EVERY_LABELS", "250")
    monkeypatch.setenv("HONE_TRAINER__DATASET__SPLITS__TEST", "0.25")
    monkeypatch.setenv("HONE_TRAINER__DATASET__SPLITS__TRAIN", "0.65")
    monkeypatch.setenv("HONE_TRAINER__TRAIN__EPOCHS", "4")
    monkeypatch.setenv("HONE_TRAINER__MODEL_NAME", "shoes")
    settings = Settings()
    assert settings.trainer.schedule.every_labels == 250
    assert settings.trainer.dataset.splits.test == 0.25
    assert settings.trainer.train.epochs == 4
    assert settings.model_name == "shoes"


def test_a_schema_name_that_is_not_an_identifier_is_refused() -> None:
    with pytest.raises(ValueError, match="schema_name"):
        TrainerSettings(schema_name="trainer; DROP TABLE x")


def test_the_app_serves_the_admin_routes_and_subscribes_to_three_topics() -> None:
    app = create_app(Settings())
    paths = set(app.openapi()["paths"])
    assert {"/v1/trainer/runs", "/v1/trainer/runs/{run_id}", "/v1/trainer/dataset"} <= paths
    runtime: Runtime = app.state.runtime
    assert isinstance(runtime.broker, KafkaBroker)
    topics = {name for sub in runtime.broker.subscribers for name in sub.topic_names}  # type: ignore[attr-defined]
    assert topics == {
        Topic.IMAGE_RECEIVED.value,
        Topic.LABEL_SUBMITTED.value,
        Topic.MODEL_PROMOTED.value,
    }


@pytest.mark.parametrize(
    ("topic", "body"),
    [
        (Topic.LABEL_SUBMITTED, b'{"event_type": "label.submitted"}'),
        # A `label` verdict without a class is refused by the contract itself.
        (
            Topic.LABEL_SUBMITTED,
            b'{"event_type": "label.submitted", "producer": "x", "payload": {"image_id": '
            b'"6f0f2d0e-4d0b-4c1b-9d7e-3a4f5b6c7d8e", "verdict": "label", "labeler_id": "a"}}',
        ),
        (Topic.IMAGE_RECEIVED, b"not json"),
    ],
)
async def test_undecodable_events_go_to_the_dlq_without_reaching_a_handler(
    topic: Topic, body: bytes
) -> None:
    app = create_app(Settings())
    broker = app.state.runtime.broker
    letters: list[DeadLetter] = []

    @broker.subscriber(topic.dlq)  # type: ignore[untyped-decorator]
    async def on_dlq(letter: DeadLetter) -> None:
        letters.append(letter)

    async with TestKafkaBroker(broker) as br:
        # No database here: a message reaching the handler would fail, not dead-letter.
        await br.publish(body, topic.value)
    assert len(letters) == 1
    assert letters[0].error_type == "ValidationError"

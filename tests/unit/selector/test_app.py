"""The selector's wiring, without servers: settings, subscriptions, routes, refused input."""

from __future__ import annotations

import pytest
from faststream.kafka import KafkaBroker, TestKafkaBroker

from hone_common.kafka import DeadLetter
from hone_common.service import Runtime
from hone_common.topics import Topic
from hone_selector.app import create_app
from hone_selector.settings import SelectorSettings, Settings


def test_settings_default_to_port_8003_and_schema_selector() -> None:
    settings = Settings()
    assert settings.http.port == 8003
    assert settings.selector.schema_name == "selector"
    assert settings.selector.consumer_group == "selector"


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HONE_SELECTOR__BUDGET__REVIEWS_PER_HOUR", "300")
    monkeypatch.setenv("HONE_SELECTOR__BUDGET__CAMERA_SHARES", '{"cam-1": 0.5}')
    monkeypatch.setenv("HONE_SELECTOR__WEIGHTS__UNCERTAINTY", "3")
    settings = Settings()
    assert settings.selector.budget.reviews_per_hour == 300
    assert settings.selector.budget.camera_shares == {"cam-1": 0.5}
    assert settings.selector.weights.uncertainty == 3


def test_a_schema_name_that_is_not_an_identifier_is_refused() -> None:
    with pytest.raises(ValueError, match="schema_name"):
        SelectorSettings(schema_name="selector; DROP TABLE x")


def test_the_app_serves_the_admin_routes_and_subscribes_to_three_topics() -> None:
    app = create_app(Settings())
    paths = set(app.openapi()["paths"])
    assert {"/v1/selector/stats", "/v1/selector/decisions/{image_id}", "/readyz"} <= paths
    runtime: Runtime = app.state.runtime
    assert isinstance(runtime.broker, KafkaBroker)
    topics = {name for sub in runtime.broker.subscribers for name in sub.topic_names}  # type: ignore[attr-defined]
    assert topics == {
        Topic.IMAGE_SCORED.value,
        Topic.LABEL_SUBMITTED.value,
        Topic.MODEL_PROMOTED.value,
    }


async def test_an_undecodable_scored_event_goes_to_the_dlq_without_reaching_the_handler() -> None:
    app = create_app(Settings())
    broker = app.state.runtime.broker
    letters: list[DeadLetter] = []

    @broker.subscriber(Topic.IMAGE_SCORED.dlq)  # type: ignore[untyped-decorator]
    async def on_dlq(letter: DeadLetter) -> None:
        letters.append(letter)

    async with TestKafkaBroker(broker) as br:
        # No database here: a message reaching the handler would fail, not dead-letter.
        await br.publish(b'{"event_type": "image.scored"}', Topic.IMAGE_SCORED.value)
    assert len(letters) == 1
    assert letters[0].error_type == "ValidationError"

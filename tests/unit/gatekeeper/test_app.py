"""The gatekeeper's settings and its Kafka subscription, driven through TestKafkaBroker."""

from __future__ import annotations

import pytest
from faststream.kafka import KafkaBroker, TestKafkaBroker

from hone_common.events import encode
from hone_common.kafka import DeadLetter
from hone_common.settings import KafkaSettings
from hone_common.topics import Topic
from hone_gatekeeper.gatekeeper import Gatekeeper
from hone_gatekeeper.handlers import subscribe_handlers
from hone_gatekeeper.settings import GatekeeperSettings, Settings
from tests.unit.gatekeeper.conftest import CANDIDATE_VERSION, World


def test_the_settings_default_to_port_8005_and_read_nested_rules(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HONE_GATEKEEPER__RULES__ALPHA", "0.01")
    monkeypatch.setenv("HONE_GATEKEEPER__SCORING__IMAGES_PER_REQUEST", "8")
    settings = Settings()
    assert settings.http.port == 8005
    assert settings.gatekeeper.rules.alpha == 0.01
    assert settings.gatekeeper.scoring.images_per_request == 8


def test_settings_refuse_an_alpha_outside_zero_and_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HONE_GATEKEEPER__RULES__ALPHA", "1.5")
    with pytest.raises(ValueError, match="alpha"):
        Settings()


async def test_a_candidate_on_the_topic_is_judged(world: World) -> None:
    broker = KafkaBroker(KafkaSettings().bootstrap_servers)
    subscribe_handlers(broker, GatekeeperSettings(), KafkaSettings(), lambda: world.gatekeeper)
    event = world.candidate(CANDIDATE_VERSION, "better")
    async with TestKafkaBroker(broker) as br:
        await br.publish(encode(event), Topic.MODEL_CANDIDATE.value, key=event.key)
    assert [d.kind for d in world.registry.decisions] == ["promote"]


async def test_a_malformed_candidate_goes_to_the_dead_letter_topic(world: World) -> None:
    broker = KafkaBroker(KafkaSettings().bootstrap_servers)
    keeper: Gatekeeper = world.gatekeeper
    subscribe_handlers(broker, GatekeeperSettings(), KafkaSettings(), lambda: keeper)
    letters: list[DeadLetter] = []

    @broker.subscriber(Topic.MODEL_CANDIDATE.dlq)
    async def on_dlq(letter: DeadLetter) -> None:
        letters.append(letter)

    async with TestKafkaBroker(broker) as br:
        await br.publish(b'{"payload": {"model_version": "1"}}', Topic.MODEL_CANDIDATE.value)
    assert len(letters) == 1
    assert letters[0].error_type == "ValidationError"
    assert world.registry.decisions == []

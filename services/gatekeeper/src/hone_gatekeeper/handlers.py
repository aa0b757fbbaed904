"""The gatekeeper's Kafka handler: thin wiring from `model.candidate` to the use case."""

from __future__ import annotations

from collections.abc import Callable

from faststream.kafka import KafkaBroker

from hone_common.events import ModelCandidate
from hone_common.kafka import subscribe
from hone_common.settings import KafkaSettings
from hone_gatekeeper.gatekeeper import Gatekeeper
from hone_gatekeeper.settings import SERVICE, GatekeeperSettings


def subscribe_handlers(
    broker: KafkaBroker,
    settings: GatekeeperSettings,
    kafka: KafkaSettings,
    gatekeeper: Callable[[], Gatekeeper],
) -> None:
    """Declare the subscription; `gatekeeper` is called once the app has started."""

    @subscribe(
        broker,
        ModelCandidate,
        service=SERVICE,
        group_id=settings.consumer_group,
        auto_offset_reset=kafka.auto_offset_reset,
        retry_seconds=settings.retry_seconds,
        max_message_bytes=kafka.max_message_bytes,
    )
    async def on_model_candidate(event: ModelCandidate) -> None:
        """Tests a candidate against production through TorchServe; promotes it only if it
        is better, otherwise unloads it. Every decision is recorded with its reasons."""
        await gatekeeper().on_candidate(event)

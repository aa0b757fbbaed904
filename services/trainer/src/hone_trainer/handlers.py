"""Kafka handlers: store the event and its effect on the dataset in one transaction, claimed by
event id so a redelivered event changes nothing."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import asyncpg
import structlog

from hone_common.events import ImageReceived, LabelSubmitted, ModelPromoted
from hone_common.idempotency import claim
from hone_common.storage import ObjectRef
from hone_trainer.repository import Repository
from hone_trainer.settings import Settings

log = structlog.get_logger(__name__)


@dataclass
class Deps:
    pool: asyncpg.Pool[Any]
    settings: Settings
    repository: Repository = field(init=False)

    def __post_init__(self) -> None:
        self.repository = Repository(self.settings.trainer.schema_name)


async def on_image_received(event: ImageReceived, deps: Deps) -> None:
    """Keep the image's facts; a label waiting for them, or for another view of the same
    object, becomes a training example now."""
    repo, image = deps.repository, event.payload
    async with deps.pool.acquire() as conn, conn.transaction():
        if not await claim(conn, repo.schema, event):
            return
        await repo.insert_image(conn, image)
        await repo.refresh(conn, [image.image_id], deps.settings.trainer.dataset)


async def on_label_submitted(event: LabelSubmitted, deps: Deps) -> None:
    """Keep the answer and re-resolve the image's label (and its object's other views)."""
    repo, label = deps.repository, event.payload
    async with deps.pool.acquire() as conn, conn.transaction():
        if not await claim(conn, repo.schema, event):
            return
        await repo.insert_label(conn, event.event_id, label, event.occurred_at)
        await repo.refresh(conn, [label.image_id], deps.settings.trainer.dataset)


async def on_model_promoted(event: ModelPromoted, deps: Deps) -> None:
    """Remember the production version of our model: the parent and warm start of runs."""
    repo, promotion = deps.repository, event.payload
    model_name = deps.settings.model_name
    try:
        owner = ObjectRef.parse(promotion.artifact_uri).key.split("/", 1)[0]
    except ValueError:
        owner = None
    async with deps.pool.acquire() as conn, conn.transaction():
        if not await claim(conn, repo.schema, event):
            return
        if owner != model_name:
            log.info(
                "promotion_of_another_model",
                model_version=promotion.model_version,
                artifact_uri=promotion.artifact_uri,
            )
            return
        if await repo.record_promotion(conn, model_name, promotion, event.occurred_at):
            log.info("production_version", model_version=promotion.model_version)

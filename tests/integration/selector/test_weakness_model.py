"""model.promoted: the selector records the production version and loads the weakness model
announced with it from MinIO, or records why it could not."""

from __future__ import annotations

import json
import pickle
import uuid
from typing import Any

from hone_common.events import ModelPromoted, Promotion
from hone_common.storage import ObjectRef, ObjectStore
from hone_selector.settings import RandomSettings, ThresholdSettings
from tests.integration.selector.conftest import Running, SelectorFactory, eventually
from tests.integration.selector.world import World
from tests.unit.selector.builders import scored_event


def promotion(world: World, version: str, weakness_uri: str | None) -> ModelPromoted:
    return ModelPromoted(
        producer="gatekeeper",
        payload=Promotion(
            model_version=version,
            artifact_uri=f"s3://hone-models/hone/{version}.mar",
            weakness_model_uri=weakness_uri,
            classes=world.classes,
        ),
    )


async def put(running: Running, key: str, data: bytes) -> str:
    store = ObjectStore(running.settings.s3)
    bucket = running.settings.s3.models_bucket
    await store.ensure_bucket(bucket)
    return (await store.put(ObjectRef(bucket, key), data, "application/json")).uri


async def model_row(running: Running, version: str) -> dict[str, Any] | None:
    row = await running.pool.fetchrow(
        f"SELECT * FROM {running.schema}.models WHERE model_version = $1", version
    )
    return dict(row) if row else None


async def test_a_promoted_weakness_model_is_loaded_and_scores_images_of_its_version(
    start_selector: SelectorFactory,
) -> None:
    world = World()
    version = f"it-{world.tag}"
    dark = world.camera("dark")
    artifact = {
        "format": "hone-weakness-logreg", "format_version": 1, "model_version": version,
        "features": [f"camera={dark}", "brightness"], "coefficients": [5.0, -2.0],
        "intercept": -3.0,
    }  # fmt: skip
    settings = {
        "random": RandomSettings(share=world.random_share, seed=world.seed),
        "threshold": ThresholdSettings(warmup_images=0, headroom=1e9),
    }
    async with start_selector(**settings) as running:
        uri = await put(running, f"weakness/{version}.json", json.dumps(artifact).encode())
        await running.send(promotion(world, version, uri))

        async def loaded() -> dict[str, Any] | None:
            stats = await running.stats()
            model = stats["production_model"]
            return model if model and model["model_version"] == version else None

        model = await eventually(loaded, what="the promotion")
        assert model["weakness_model_loaded"] is True
        assert model["weakness_model_uri"] == uri
        assert model["weakness_error"] is None

        at_dark = world.scores("Shirt", 0.95, camera="dark", model_version=version, brightness=0.1)
        elsewhere = world.scores("Shirt", 0.95, camera="lit", model_version=version, brightness=0.8)
        older = world.scores("Shirt", 0.95, camera="dark", model_version="v0", brightness=0.1)
        await running.send(*(scored_event(s) for s in (at_dark, elsewhere, older)))
        rows = await running.wait_decided([at_dark.image_id, elsewhere.image_id, older.image_id])
        weakness = {i: r["scores"]["weakness"] for i, r in rows.items()}
        assert weakness[at_dark.image_id]["score"] > 0.85
        assert "camera=" in weakness[at_dark.image_id]["detail"]
        assert weakness[elsewhere.image_id]["score"] < 0.02
        assert weakness[older.image_id]["abstained"] is True
        assert rows[at_dark.image_id]["outcome"] == "requested"
        assert "weakness" in rows[at_dark.image_id]["strategies"]


async def test_an_unusable_weakness_model_is_recorded_and_the_strategy_abstains(
    start_selector: SelectorFactory,
) -> None:
    world = World()
    async with start_selector(random=RandomSettings(seed=world.seed)) as running:
        pickled = await put(running, f"weakness/{world.tag}.json", pickle.dumps({"x": 1}))
        cases = {
            f"bad-{world.tag}": pickled,
            f"missing-{world.tag}": f"s3://hone-models/weakness/{uuid.uuid4()}.json",
            f"elsewhere-{world.tag}": "s3://hone-images/weakness/model.json",
            f"none-{world.tag}": None,
        }
        await running.send(*(promotion(world, v, uri) for v, uri in cases.items()))

        async def recorded() -> dict[str, dict[str, Any]] | None:
            rows = {v: await model_row(running, v) for v in cases}
            return rows if all(rows.values()) else None  # type: ignore[return-value]

        rows = await eventually(recorded, what="four promotions")
        assert all(r["weakness_model"] is None for r in rows.values())
        assert "invalid weakness model" in rows[f"bad-{world.tag}"]["weakness_error"]
        assert "does not exist" in rows[f"missing-{world.tag}"]["weakness_error"]
        assert "hone-models bucket" in rows[f"elsewhere-{world.tag}"]["weakness_error"]
        assert rows[f"none-{world.tag}"]["weakness_error"] is None

        image = world.scores("Shirt", 0.6, model_version=f"bad-{world.tag}")
        await running.send(scored_event(image))
        row = (await running.wait_decided([image.image_id]))[image.image_id]
        assert row["scores"]["weakness"]["abstained"] is True
        assert row["outcome"] in ("requested", "below_threshold", "warming_up")


async def test_a_stored_weakness_model_that_no_longer_loads_makes_the_strategy_abstain(
    start_selector: SelectorFactory,
) -> None:
    world = World()
    version = f"edited-{world.tag}"
    async with start_selector(random=RandomSettings(seed=world.seed)) as running:
        await running.send(promotion(world, version, None))
        await eventually(lambda: model_row(running, version), what="the promotion")
        await running.pool.execute(
            f"UPDATE {running.schema}.models SET weakness_model = $1 WHERE model_version = $2",
            {"format": "something-else"},
            version,
        )
        image = world.scores("Shirt", 0.6, model_version=version)
        await running.send(scored_event(image))
        row = (await running.wait_decided([image.image_id]))[image.image_id]
        assert row["scores"]["weakness"]["abstained"] is True

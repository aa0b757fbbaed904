"""`hone-bootstrap`: train the first production model on a small labelled seed set.

Trains on the seed (.npz with `images`, `labels`, `classes`), archives the model, stores the
.mar in the model bucket, registers it in TorchServe and makes it the default version. It
refuses to replace a model that already has a production version unless told to.

    hone-bootstrap --seed-npz seed.npz [--architecture small-cnn] [--epochs 15]
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Protocol

import numpy as np
import numpy.typing as npt
import structlog
import typer

from hone_common.logging import configure_logging
from hone_common.settings import ServiceSettings
from hone_common.storage import ObjectStore
from hone_common.torchserve import TorchServeClient
from hone_trainer.model.archive import (
    ArchiveStore,
    allocate_version,
    build_archive,
    store_archive,
)
from hone_trainer.model.augmentation import AUGMENTATIONS
from hone_trainer.model.metrics import Metrics
from hone_trainer.model.serving import ArchiveSource, DefaultSetter, ServingOptions, deploy
from hone_trainer.model.training import TrainConfig, train

log = structlog.get_logger(__name__)


class Serving(DefaultSetter, Protocol):
    async def default_version(self, model: str | None = None) -> str | None: ...


class Storage(ArchiveStore, ArchiveSource, Protocol):
    pass


class BootstrapRefused(RuntimeError):
    """The model already serves a production version and replacing it was not asked for."""


@dataclass(frozen=True)
class SeedSet:
    images: npt.NDArray[Any]
    labels: npt.NDArray[Any]
    classes: list[str]


def load_seed(path: Path) -> SeedSet:
    """Read a seed .npz (`hone-sim export --split seed`); never unpickles anything."""
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = {"images", "labels", "classes"} - set(data.files)
            if missing:
                raise ValueError(f"{path} lacks {sorted(missing)}")
            return SeedSet(data["images"], data["labels"], [str(c) for c in data["classes"]])
    except ValueError as error:
        # numpy refuses object arrays without pickling: classes must be a string array.
        raise ValueError(f"cannot read seed set {path}: {error}") from error


@dataclass(frozen=True)
class BootstrapResult:
    model_name: str
    model_version: str
    artifact_uri: str
    examples: int
    train_seconds: float
    validation: Metrics | None

    def summary(self) -> dict[str, Any]:
        return {
            "model_name": self.model_name,
            "model_version": self.model_version,
            "artifact_uri": self.artifact_uri,
            "examples": self.examples,
            "train_seconds": round(self.train_seconds, 2),
            "validation_accuracy": self.validation.accuracy if self.validation else None,
            "validation_macro_f1": self.validation.macro_f1 if self.validation else None,
        }


async def bootstrap(
    seed: SeedSet,
    config: TrainConfig,
    *,
    client: Serving,
    store: Storage,
    bucket: str,
    model_name: str,
    serving: ServingOptions | None = None,
    replace_production: bool = False,
) -> BootstrapResult:
    """Train on the seed set and serve the result as `model_name`'s production version."""
    # Asked first, so an unreachable TorchServe or a refusal costs no training.
    current = await client.default_version(model_name)
    if current is not None and not replace_production:
        raise BootstrapRefused(
            f"model {model_name!r} already serves version {current}; promotions go through "
            "the gatekeeper (pass --replace-production to bootstrap anyway)"
        )
    trained = await asyncio.to_thread(train, seed.images, seed.labels, seed.classes, config)
    version = await allocate_version(store, bucket, model_name)
    with tempfile.TemporaryDirectory(prefix="hone-bootstrap-") as tmp:
        mar = await asyncio.to_thread(build_archive, trained, model_name, version, Path(tmp))
        artifact = await store_archive(store, mar, bucket, model_name, version)
    await deploy(
        client,
        store,
        artifact,
        model_name=model_name,
        model_version=version,
        make_default=True,
        options=serving,
    )
    result = BootstrapResult(
        model_name, version, artifact.uri, len(seed.labels), trained.seconds, trained.validation
    )
    log.info("bootstrap_finished", **result.summary())
    return result


async def _run(
    seed: SeedSet,
    config: TrainConfig,
    settings: ServiceSettings,
    model_name: str | None,
    serving: ServingOptions,
    replace_production: bool,
) -> BootstrapResult:
    client = TorchServeClient(settings.torchserve)
    try:
        return await bootstrap(
            seed,
            config,
            client=client,
            store=ObjectStore(settings.s3),
            bucket=settings.s3.models_bucket,
            model_name=model_name or settings.torchserve.model_name,
            serving=serving,
            replace_production=replace_production,
        )
    finally:
        await client.aclose()


app = typer.Typer(add_completion=False, help=__doc__)


@app.command()
def bootstrap_command(
    seed_npz: Annotated[
        Path, typer.Option("--seed-npz", exists=True, dir_okay=False, help="images/labels/classes")
    ],
    architecture: Annotated[str, typer.Option(help="small-cnn, resnet18, ...")] = "small-cnn",
    epochs: Annotated[int, typer.Option(min=1)] = 15,
    augmentation: Annotated[str, typer.Option(help=", ".join(AUGMENTATIONS))] = "fashion",
    seed: Annotated[int, typer.Option(help="Random seed of the run.")] = 0,
    threads: Annotated[int, typer.Option(min=1)] = 1,
    model_name: Annotated[
        str | None, typer.Option(help="TorchServe model name (default: settings)")
    ] = None,
    batch_size: Annotated[
        int, typer.Option(min=1, help="TorchServe batch size")
    ] = ServingOptions.batch_size,
    max_batch_delay_ms: Annotated[int, typer.Option(min=0)] = ServingOptions.max_batch_delay_ms,
    workers: Annotated[int, typer.Option(min=1)] = ServingOptions.workers,
    replace_production: Annotated[
        bool, typer.Option(help="Replace an existing production version.")
    ] = False,
    progress: Annotated[bool | None, typer.Option(help="Progress bars (default: on a TTY)")] = None,
) -> None:
    """Train, archive, store and serve the first production model."""
    settings = ServiceSettings()
    configure_logging("trainer", settings.log_level, settings.log_json)
    try:
        config = TrainConfig(
            architecture=architecture,
            epochs=epochs,
            augmentation=augmentation,  # type: ignore[arg-type]  # validated by pydantic
            seed=seed,
            threads=threads,
            progress=sys.stderr.isatty() if progress is None else progress,
        )
        serving = ServingOptions(batch_size, max_batch_delay_ms, workers)
        seed_set = load_seed(seed_npz)
        result = asyncio.run(
            _run(seed_set, config, settings, model_name, serving, replace_production)
        )
    except (BootstrapRefused, ValueError) as error:
        typer.echo(f"bootstrap refused: {error}", err=True)
        raise typer.Exit(2) from None
    except Exception as error:
        log.exception("bootstrap_failed")
        typer.echo(f"bootstrap failed: {error}", err=True)
        raise typer.Exit(1) from None
    typer.echo(json.dumps(result.summary(), indent=2))


def main() -> None:
    app()

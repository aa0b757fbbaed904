"""Training runs: one at a time (a PostgreSQL advisory lock, so replicas never overlap), from a
consistent snapshot of the dataset to a `model.candidate` in the outbox.

A run's life: take the lock, snapshot the examples and record the run as `running` (one
transaction); load the images; train, measure and build the weakness model off the event loop;
upload the .mar, the weakness model and the evaluation manifest; then, in one transaction, mark
the run succeeded, record exactly which examples it used and enqueue the candidate. A run that
fails or is cancelled is marked failed and enqueues nothing; one whose process died stays
`running` until the next start-up marks it abandoned. Uploaded objects of an unfinished run are
harmless: nothing points to them.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import shutil
import socket
import time
import uuid
import zipfile
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import asyncpg
import numpy as np
import structlog

from hone_common.events import Candidate, ModelCandidate, TrainingSnapshot
from hone_common.outbox import Outbox
from hone_common.storage import ObjectRef, ObjectStore
from hone_trainer import metrics
from hone_trainer.dataset import (
    Row,
    assert_no_test,
    choose_classes,
    examples_sha256,
    training_set,
)
from hone_trainer.executor import execute
from hone_trainer.images import ImageCache
from hone_trainer.job import ImageSet, TrainingJob, TrainingOutput, compute
from hone_trainer.model.archive import allocate_version, archive_ref, store_archive
from hone_trainer.model.handler import CONFIG_FILE, WEIGHTS_FILE, ModelConfig
from hone_trainer.repository import Repository
from hone_trainer.schedule import due
from hone_trainer.settings import SERVICE, Settings
from hone_trainer.weakness import Context

log = structlog.get_logger(__name__)

Compute = Callable[[TrainingJob], TrainingOutput]


class VersionSource(Protocol):
    """TorchServe's answer to "which version is the default" (`TorchServeClient`)."""

    async def default_version(self, model: str | None = None) -> str | None: ...


class RunBusy(RuntimeError):
    """Another run holds the lock (in this process or another replica)."""


@dataclass(frozen=True)
class Production:
    model_version: str
    artifact_uri: str
    classes: list[str]


@dataclass
class Snapshot:
    label_seq: int
    train: list[Row]
    weakness: list[Row]
    test: list[Row]
    flagged: list[Row]


@dataclass
class StartedRun:
    run_id: uuid.UUID
    task: asyncio.Task[dict[str, Any]]


@dataclass
class Prepared:
    """What the images of a run turned into, and what was left out."""

    job: TrainingJob
    used: dict[str, list[Row]] = field(default_factory=dict)
    left_out: dict[str, int] = field(default_factory=dict)


class Trainer:
    def __init__(
        self,
        pool: asyncpg.Pool[Any],
        store: ObjectStore,
        outbox: Outbox,
        settings: Settings,
        *,
        compute: Compute = compute,
        versions: VersionSource | None = None,
    ) -> None:
        self._pool = pool
        self._store = store
        self._outbox = outbox
        self._settings = settings
        self._config = settings.trainer
        self._compute = compute
        self._versions = versions
        self._repo = Repository(self._config.schema_name)
        self._lock_name = f"hone-trainer-run:{self._config.schema_name}"
        self._cache = ImageCache(store, self._config.cache_dir, self._config.fetch_concurrency)
        self._current: StartedRun | None = None

    @property
    def current(self) -> StartedRun | None:
        return self._current if self._current and not self._current.task.done() else None

    # --- start-up ---------------------------------------------------------------------------

    async def abandon_stale(self) -> list[uuid.UUID]:
        """Mark runs left `running` by a dead process as abandoned. Only when the run lock is
        free: a `running` row whose lock is held belongs to a live run elsewhere."""
        async with self._pool.acquire() as conn:
            if not await conn.fetchval(
                "SELECT pg_try_advisory_lock(hashtext($1))", self._lock_name
            ):
                return []
            try:
                abandoned = await self._repo.abandon_running(conn)
            finally:
                await conn.execute("SELECT pg_advisory_unlock(hashtext($1))", self._lock_name)
        for run_id in abandoned:
            metrics.RUNS.labels("abandoned").inc()
            log.warning("run_abandoned", run_id=str(run_id))
        return abandoned

    # --- starting a run -----------------------------------------------------------------------

    async def start(self, trigger: str, *, only_if_due: bool = False) -> StartedRun | None:
        """Start a run in the background; None if one is running (here or elsewhere) or, with
        `only_if_due`, if the schedule no longer asks for one once the lock is held."""
        if self.current is not None:
            return None
        conn: asyncpg.Connection[Any] = await self._pool.acquire()
        locked = False
        try:
            locked = bool(
                await conn.fetchval("SELECT pg_try_advisory_lock(hashtext($1))", self._lock_name)
            )
            if not locked:
                await self._pool.release(conn)
                return None
            # Re-checked under the lock: a replica that waited may find the work already done.
            if only_if_due:
                state = await self._repo.schedule_state(conn)
                if due(state, self._config.schedule, datetime.now(UTC)) is None:
                    await self._release(conn)
                    return None
            run_id = uuid.uuid4()
            snapshot = await self._snapshot(conn, run_id, trigger)
        except BaseException:
            if locked:
                await self._release(conn)
            else:
                await self._pool.release(conn)
            raise
        metrics.RUNNING.set(1)
        log.info(
            "run_started",
            run_id=str(run_id),
            trigger=trigger,
            train=len(snapshot.train),
            weakness=len(snapshot.weakness),
            test=len(snapshot.test),
            flagged=len(snapshot.flagged),
        )
        task = asyncio.create_task(self._execute(conn, run_id, snapshot), name=f"run-{run_id}")
        self._current = StartedRun(run_id, task)
        return self._current

    async def run(self, trigger: str) -> dict[str, Any]:
        """Run now and wait for the outcome; `RunBusy` if a run is in progress."""
        started = await self.start(trigger)
        if started is None:
            raise RunBusy("a training run is in progress")
        return await started.task

    async def stop(self) -> None:
        """Cancel the run in progress (it is marked failed); used when the service stops."""
        current = self.current
        if current is not None:
            current.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await current.task

    async def _snapshot(
        self, conn: asyncpg.Connection[Any], run_id: uuid.UUID, trigger: str
    ) -> Snapshot:
        async with conn.transaction(isolation="repeatable_read"):
            label_seq = await self._repo.label_watermark(conn)
            snapshot = Snapshot(
                label_seq,
                training_set(await self._repo.rows(conn, "train", ("human", "propagated"))),
                await self._repo.rows(conn, "weakness", ("human",)),
                await self._repo.rows(conn, "test", ("human",)),
                await self._repo.flagged_rows(conn),
            )
            await self._repo.start_run(
                conn, run_id, trigger, label_seq, socket.gethostname(), os.getpid()
            )
        return snapshot

    async def _release(self, conn: asyncpg.Connection[Any]) -> None:
        try:
            await conn.execute("SELECT pg_advisory_unlock(hashtext($1))", self._lock_name)
        finally:
            await self._pool.release(conn)

    # --- running it ---------------------------------------------------------------------------

    async def _execute(
        self, conn: asyncpg.Connection[Any], run_id: uuid.UUID, snapshot: Snapshot
    ) -> dict[str, Any]:
        work = self._config.work_dir / str(run_id)
        outcome = "failed"
        began = time.perf_counter()
        try:
            with structlog.contextvars.bound_contextvars(run_id=str(run_id)):
                outcome = await self._train(run_id, snapshot, work)
        except asyncio.CancelledError:
            await asyncio.shield(self._fail(run_id, "cancelled before it finished"))
            raise
        except Exception as error:
            log.exception("run_failed", run_id=str(run_id))
            await self._fail(run_id, f"{type(error).__name__}: {error}"[:4000])
        finally:
            metrics.RUNNING.set(0)
            metrics.RUN_SECONDS.observe(time.perf_counter() - began)
            await asyncio.shield(self._release(conn))
            await asyncio.to_thread(shutil.rmtree, work, True)
        record = await self._repo.run(self._pool, run_id)
        assert record is not None
        log.info("run_finished", run_id=str(run_id), status=record["status"], outcome=outcome)
        return record

    async def _fail(self, run_id: uuid.UUID, error: str) -> None:
        async with self._pool.acquire() as conn:
            if await self._repo.finish_run(conn, run_id, "failed", error=error):
                metrics.RUNS.labels("failed").inc()
                metrics.LAST_RUN.labels("failed").set_to_current_time()

    async def _skip(self, run_id: uuid.UUID, reason: str, counts: dict[str, Any]) -> str:
        async with self._pool.acquire() as conn:
            await self._repo.finish_run(conn, run_id, "skipped", error=reason, counts=counts)
        metrics.RUNS.labels("skipped").inc()
        metrics.LAST_RUN.labels("skipped").set_to_current_time()
        log.info("run_skipped", reason=reason)
        return "skipped"

    async def _train(self, run_id: uuid.UUID, snapshot: Snapshot, work: Path) -> str:
        settings, config = self._settings, self._config
        _export_dataset(snapshot)
        production = await self._production()
        classes = choose_classes(
            (r.label for r in snapshot.train),
            production.classes if production else None,
            config.dataset.classes,
        )
        known = set(classes)
        train_rows = [r for r in snapshot.train if r.label in known]
        counts: dict[str, Any] = {
            "train": len(train_rows),
            "weakness": len(snapshot.weakness),
            "test": sum(1 for r in snapshot.test if r.label in known),
            "flagged": len(snapshot.flagged),
            "unknown_class": len(snapshot.train) - len(train_rows),
        }
        present = {r.label for r in train_rows}
        if len(train_rows) < config.min_examples or len(present) < 2 or len(classes) < 2:
            reason = (
                f"not enough to train on: {len(train_rows)} examples of {len(present)} classes "
                f"(need {config.min_examples} examples of 2 classes or more)"
            )
            return await self._skip(run_id, reason, counts)

        model_name, bucket = settings.model_name, settings.s3.models_bucket
        version = await allocate_version(self._store, bucket, model_name)
        init_state = await self._parent_weights(production, classes)
        prepared = await self._prepare(run_id, snapshot, train_rows, classes, version, work)
        prepared.job.init_state = init_state
        counts["left_out"] = prepared.left_out
        if len(prepared.used["train"]) < config.min_examples:
            return await self._skip(run_id, "too few training images could be loaded", counts)
        log.info("training", model_version=version, examples=len(prepared.used["train"]))
        output = await execute(
            self._compute,
            prepared.job,
            config.executor,
            log_level=settings.log_level,
            log_json=settings.log_json,
        )
        metrics.TRAINING_SECONDS.observe(output.seconds)
        return await self._publish(
            run_id, snapshot, prepared, output, production, classes, version, counts, init_state
        )

    async def _prepare(
        self,
        run_id: uuid.UUID,
        snapshot: Snapshot,
        train_rows: list[Row],
        classes: list[str],
        version: str,
        work: Path,
    ) -> Prepared:
        config = self._config.train
        known = set(classes)
        roles = {
            "train": train_rows,
            "weakness": [r for r in snapshot.weakness if r.label in known],
            "flagged": [r for r in snapshot.flagged if r.label in known],
        }
        if not self._config.weakness.enabled:
            roles["weakness"], roles["flagged"] = [], []
        sets: dict[str, ImageSet] = {}
        used: dict[str, list[Row]] = {}
        left_out: dict[str, int] = {}
        for role, rows in roles.items():
            loaded = await self._cache.load(
                [(r.uri, r.sha256) for r in rows], config.spec.channels, config.size
            )
            kept = [r for r, ok in zip(rows, loaded.usable, strict=True) if ok]
            left_out[role] = len(rows) - len(kept)
            metrics.IMAGES_LEFT_OUT.inc(left_out[role])
            used[role] = kept
            sets[role] = ImageSet(
                [str(r.image_id) for r in kept],
                loaded.pixels,
                [r.label for r in kept],
                np.array([r.weight for r in kept], dtype=np.float32),
                np.array([r.kind == "human" for r in kept], dtype=bool),
                [_context(r) for r in kept],
            )
        assert_no_test(used["train"])
        job = TrainingJob(
            run_id=str(run_id),
            model_name=self._settings.model_name,
            model_version=version,
            classes=classes,
            config=config,
            weakness=self._config.weakness,
            train=sets["train"],
            weakness_split=sets["weakness"],
            flagged=sets["flagged"],
            work_dir=work,
            log_level=self._settings.log_level,
            log_json=self._settings.log_json,
        )
        return Prepared(job, used, left_out)

    async def _publish(
        self,
        run_id: uuid.UUID,
        snapshot: Snapshot,
        prepared: Prepared,
        output: TrainingOutput,
        production: Production | None,
        classes: list[str],
        version: str,
        counts: dict[str, Any],
        init_state: bytes | None,
    ) -> str:
        model_name, bucket = self._settings.model_name, self._settings.s3.models_bucket
        artifact = await store_archive(self._store, output.mar_path, bucket, model_name, version)
        evaluation = ObjectRef(bucket, f"{model_name}/{version}.evaluation.jsonl")
        await self._store.put(
            evaluation,
            # The gatekeeper can only score classes the candidate knows.
            evaluation_manifest([r for r in snapshot.test if r.label in set(classes)]),
            "application/x-ndjson",
        )
        weakness_uri = None
        if output.weakness.artifact is not None:
            ref = ObjectRef(bucket, f"{model_name}/{version}.weakness.json")
            body = json.dumps(output.weakness.artifact, indent=1).encode()
            await self._store.put(ref, body, "application/json")
            weakness_uri = ref.uri
        used = prepared.used["train"]
        snapshot_info = TrainingSnapshot(
            examples_sha256=examples_sha256(used),
            examples=len(used),
            per_class=dict(sorted(Counter(r.label for r in used).items())),
            per_source=dict(sorted(Counter(r.kind for r in used).items())),
        )
        candidate = ModelCandidate(
            producer=SERVICE,
            payload=Candidate(
                model_version=version,
                parent_version=production.model_version if production else None,
                artifact_uri=artifact.uri,
                weakness_model_uri=weakness_uri,
                evaluation_set_uri=evaluation.uri,
                classes=classes,
                snapshot=snapshot_info,
                metrics=output.metrics,
            ),
        )
        report = output.weakness.report
        async with self._pool.acquire() as conn, conn.transaction():
            finished = await self._repo.finish_run(
                conn,
                run_id,
                "succeeded",
                model_version=version,
                parent_version=production.model_version if production else None,
                warm_started=init_state is not None,
                artifact_uri=artifact.uri,
                evaluation_set_uri=evaluation.uri,
                weakness_model_uri=weakness_uri,
                examples_sha256=snapshot_info.examples_sha256,
                counts={
                    **counts,
                    "per_class": snapshot_info.per_class,
                    "per_source": snapshot_info.per_source,
                    "epochs_run": output.epochs_run,
                    "best_epoch": output.best_epoch,
                    "training_seconds": round(output.seconds, 2),
                },
                metrics={**output.metrics.model_dump(), "history": output.history},
                weakness=report,
            )
            if not finished:
                raise RuntimeError("the run is no longer `running` (marked abandoned meanwhile)")
            for role, rows in prepared.used.items():
                await self._repo.add_run_examples(conn, run_id, role, rows)
            await self._outbox.add(conn, candidate)
        self._outbox.notify()
        metrics.RUNS.labels("succeeded").inc()
        metrics.LAST_RUN.labels("succeeded").set_to_current_time()
        holdout = report.get("holdout", {}).get("at_0.5", {})
        for measure in ("precision", "recall"):
            if holdout.get(measure) is not None:
                metrics.WEAKNESS_HOLDOUT.labels(measure).set(holdout[measure])
        log.info(
            "candidate_enqueued",
            model_version=version,
            parent_version=candidate.payload.parent_version,
            accuracy=output.metrics.accuracy,
            macro_f1=output.metrics.macro_f1,
            evaluated_on=output.metrics.evaluated_on,
            weakness_model=weakness_uri,
            weakness_holdout=report.get("holdout"),
        )
        return "succeeded"

    # --- the production model -------------------------------------------------------------

    async def _production(self) -> Production | None:
        """The production model as announced by `model.promoted`; before any promotion, the
        default version TorchServe serves (e.g. the bootstrapped one), if it can tell."""
        model_name = self._settings.model_name
        row = await self._repo.production(self._pool, model_name)
        if row is not None:
            return Production(row["model_version"], row["artifact_uri"], list(row["classes"]))
        if self._versions is None:
            return None
        try:
            version = await asyncio.wait_for(self._versions.default_version(model_name), 10)
            if version is None:
                return None
            ref = archive_ref(self._settings.s3.models_bucket, model_name, version)
            config = _archive_config(await self._store.get(ref))
        except Exception as error:
            log.warning("production_version_unknown", error=str(error)[:300])
            return None
        return Production(version, ref.uri, config.classes)

    async def _parent_weights(
        self, production: Production | None, classes: Sequence[str]
    ) -> bytes | None:
        """The production model's weights to start from, if warm starts are on and it has the
        same architecture, input and classes; otherwise None (a cold start)."""
        if not self._config.warm_start or production is None:
            return None
        if list(production.classes) != list(classes):
            log.info("cold_start", why="the classes differ from production's")
            return None
        try:
            data = await self._store.get(ObjectRef.parse(production.artifact_uri))
            config, weights = await asyncio.to_thread(_archive_parts, data)
        except Exception as error:
            log.warning("cold_start", why=f"parent archive unusable: {error}"[:300])
            return None
        train = self._config.train
        if config.architecture != train.spec.name or tuple(config.input_size) != train.size:
            log.info("cold_start", why="the architecture or input size differs from production's")
            return None
        return weights


def _archive_parts(data: bytes) -> tuple[ModelConfig, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return (
            ModelConfig.from_json(archive.read(CONFIG_FILE).decode()),
            archive.read(WEIGHTS_FILE),
        )


def _archive_config(data: bytes) -> ModelConfig:
    return _archive_parts(data)[0]


def _context(row: Row) -> Context:
    return Context(
        str(row.image_id),
        row.camera_id,
        row.captured_hour,
        row.brightness,
        row.contrast,
        row.sharpness,
    )


def evaluation_manifest(rows: Sequence[Row]) -> bytes:
    """The frozen test split as JSON Lines (image_id, uri, label, camera_id), by image id."""
    assert all(r.split == "test" and r.kind == "human" for r in rows)
    lines = [
        json.dumps(
            {"image_id": str(r.image_id), "uri": r.uri, "label": r.label, "camera_id": r.camera_id}
        )
        for r in sorted(rows, key=lambda r: str(r.image_id))
    ]
    return ("\n".join(lines) + "\n").encode() if lines else b""


def _export_dataset(snapshot: Snapshot) -> None:
    for split, rows in (
        ("train", snapshot.train),
        ("weakness", snapshot.weakness),
        ("test", snapshot.test),
    ):
        by_kind = Counter(r.kind for r in rows)
        for source in ("human", "propagated"):
            metrics.DATASET.labels(split, source).set(by_kind.get(source, 0))

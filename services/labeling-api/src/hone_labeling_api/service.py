"""The labeling use cases: queue review requests, lease tasks, take answers, undo, take user
flags, report. Each runs in one transaction with the events it causes (outbox) and, when the
client sends an Idempotency-Key, the response it gave, so a retried request repeats nothing."""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import asyncpg
import structlog
from pydantic import BaseModel, ValidationError

from hone_common.auth import Principal, Role
from hone_common.events import (
    ImageScored,
    Label,
    LabelSubmitted,
    Prediction,
    Reason,
    ReviewRequest,
    ReviewRequested,
)
from hone_common.idempotency import claim_many
from hone_common.kafka import BatchFailures, PermanentError
from hone_common.outbox import Outbox
from hone_common.storage import ObjectNotFound, ObjectRef, ObjectStore
from hone_labeling_api import metrics
from hone_labeling_api.domain import (
    Conflict,
    Decision,
    Invalid,
    LabelingError,
    NotFound,
    decide,
    image_media_type,
    labeler_identifier,
    top_k,
)
from hone_labeling_api.repository import Conn, Repository, Row
from hone_labeling_api.schemas import (
    AnswerOut,
    AnswerRequest,
    ClaimResponse,
    ClassesIn,
    ClassesOut,
    ClassProbability,
    FeedbackOut,
    FeedbackRequest,
    ImageLinks,
    LabelerStats,
    MyStats,
    PredictionOut,
    QueueStats,
    ReasonOut,
    Stats,
    TaskOut,
    UndoResponse,
)
from hone_labeling_api.settings import SERVICE, LabelingSettings

log = structlog.get_logger(__name__)

M = TypeVar("M", bound=BaseModel)
TOP_K = 3


class Unavailable(LabelingError):
    status = 502


def fingerprint(operation: str, target: str, body: BaseModel | None) -> str:
    """What makes two requests "the same" for an Idempotency-Key: operation, target, body."""
    document = {
        "operation": operation,
        "target": target,
        "body": body.model_dump(mode="json") if body is not None else None,
    }
    return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()


class Labeling:
    """The labeling service layer; collaborators are handed in once at start-up."""

    def __init__(
        self,
        pool: asyncpg.Pool[Any],
        outbox: Outbox,
        store: ObjectStore,
        settings: LabelingSettings,
    ) -> None:
        self._pool = pool
        self._outbox = outbox
        self._store = store
        self.settings = settings
        self._repo = Repository(settings.schema_name)

    async def start(self) -> None:
        async with self._pool.acquire() as conn:
            await self._repo.seed_classes(conn, list(self.settings.default_classes))

    # --- consuming --------------------------------------------------------------------------

    async def record_review_requests(self, events: list[ReviewRequested]) -> BatchFailures:
        """Queue each request once; one open task per image (repeats merge into it)."""
        failures: dict[uuid.UUID, BaseException] = {}
        outcomes: list[str] = []
        async with self._pool.acquire() as conn, conn.transaction():
            new = await claim_many(conn, self.settings.schema_name, events)
            for event in events:
                if event.event_id not in new:
                    outcomes.append("duplicate")
                    continue
                new.discard(event.event_id)  # the same event twice in one batch counts once
                try:
                    ref = ObjectRef.parse(event.payload.uri)
                    # The API reads and presigns what a task names: an event naming another
                    # bucket (the models') must not turn a labeler into a download link.
                    if ref.bucket != self._store.settings.images_bucket:
                        raise ValueError(f"{ref.uri} is outside the image bucket")
                except ValueError as error:
                    failures[event.event_id] = PermanentError(str(error))
                    outcomes.append("refused")
                    continue
                created = await self._repo.add_review(conn, event.payload)
                outcomes.append("created" if created else "merged")
        for outcome in outcomes:
            metrics.REVIEW_REQUESTS.labels(outcome).inc()
        return failures

    async def record_scores(self, events: list[ImageScored]) -> None:
        """Remember where each scored image is and what the model said (for user flags).
        An upsert that keeps the newest score is idempotent without an event log."""
        usable = []
        for event in events:
            try:
                ObjectRef.parse(event.payload.uri)
            except ValueError:
                log.warning("scored_image_with_bad_uri", image_id=str(event.payload.image_id))
                continue
            usable.append((event.payload, event.occurred_at))
        if usable:
            async with self._pool.acquire() as conn:
                await self._repo.upsert_images(conn, usable)

    # --- tasks ------------------------------------------------------------------------------

    async def claim(self, who: Principal, count: int) -> ClaimResponse:
        count = min(count, self.settings.max_claim)
        lease = self.settings.lease_seconds
        async with self._pool.acquire() as conn, conn.transaction():
            await self._repo.lock_labeler(conn, who.key_id)
            rows = (await self._repo.renew_held(conn, who.key_id, lease))[:count]
            if len(rows) < count:
                rows += await self._repo.claim_new(conn, who.key_id, count - len(rows), lease)
        tasks = await asyncio.gather(*(self._view(row) for row in rows))
        return ClaimResponse(tasks=list(tasks), lease_seconds=lease)

    async def task(self, who: Principal, task_id: uuid.UUID) -> TaskOut:
        async with self._pool.acquire() as conn:
            row = await self._visible_task(conn, who, task_id)
        return await self._view(row)

    async def image(self, who: Principal, task_id: uuid.UUID) -> tuple[bytes, str]:
        async with self._pool.acquire() as conn:
            row = await self._visible_task(conn, who, task_id)
        try:
            data = await self._store.get(ObjectRef.parse(row["uri"]))
        except ObjectNotFound as error:
            log.warning("image_missing", task_id=str(task_id), uri=row["uri"])
            raise NotFound("image_missing", "the image is not in the object store") from error
        except Exception as error:
            log.warning("image_fetch_failed", task_id=str(task_id), error=str(error))
            raise Unavailable("image_unavailable", "the object store did not answer") from error
        media_type = image_media_type(data)
        if media_type is None:
            raise Unavailable("image_unrecognised", "the stored object is not a PNG/JPEG/WebP")
        return data, media_type

    async def _visible_task(self, conn: Conn, who: Principal, task_id: uuid.UUID) -> Row:
        row = await self._repo.task(conn, task_id)
        # Another labeler's task is "not found": its existence is none of this key's business.
        if row is None or (row["leased_by"] != who.key_id and who.role != Role.ADMIN):
            raise NotFound("task_not_found", "no task with this id is leased to you")
        return row

    async def _view(self, row: Row) -> TaskOut:
        presigned: str | None = None
        expires: datetime | None = None
        try:
            seconds = self.settings.presign_seconds
            presigned = await self._store.presign_get(ObjectRef.parse(row["uri"]), seconds)
            expires = datetime.now(UTC) + timedelta(seconds=seconds)
        except Exception as error:  # the streamed URL still works
            log.warning("presign_failed", task_id=str(row["task_id"]), error=str(error))
        prediction = None
        if row["prediction"] is not None:
            p = row["prediction"]
            ranked = top_k(p.get("classes", []), p.get("probabilities", []), TOP_K)
            prediction = PredictionOut(
                label=p["label"],
                confidence=p["confidence"],
                top_k=[ClassProbability(label=c, probability=q) for c, q in ranked],
            )
        return TaskOut(
            task_id=row["task_id"],
            image_id=row["image_id"],
            priority=row["priority"],
            outside_budget=row["outside_budget"],
            reasons=[ReasonOut(**r) for r in row["reasons"]],
            model_version=row["model_version"],
            prediction=prediction,
            camera_id=row["camera_id"],
            lease_expires_at=row["lease_expires_at"],
            image=ImageLinks(
                url=f"/v1/tasks/{row['task_id']}/image",
                presigned_url=presigned,
                presigned_expires_at=expires,
            ),
        )

    # --- answers ----------------------------------------------------------------------------

    async def answer(
        self, who: Principal, task_id: uuid.UUID, body: AnswerRequest, key: str | None
    ) -> tuple[AnswerOut, bool]:
        observed: list[tuple[str, float]] = []

        async def act(conn: Conn) -> AnswerOut:
            out, seconds = await self._answer(conn, who, task_id, body)
            observed.append((out.verdict, seconds))
            return out

        result, replayed = await self._once(who, "answer", str(task_id), body, key, AnswerOut, act)
        for verdict, seconds in observed:
            metrics.ANSWERS.labels(verdict).inc()
            metrics.ANSWER_SECONDS.labels(verdict).observe(seconds)
            if result.published:
                published = "label" if result.task_status == "done" else "ambiguous"
                metrics.LABELS_PUBLISHED.labels(published).inc()
        return result, replayed

    async def _answer(
        self, conn: Conn, who: Principal, task_id: uuid.UUID, body: AnswerRequest
    ) -> tuple[AnswerOut, float]:
        if body.verdict == "label":
            classes = (await self._repo.classes(conn))["classes"]
            if body.label not in classes:
                raise Invalid("unknown_class", f"{body.label!r} is not one of the classes")
        task = await self._repo.task(conn, task_id, for_update=True)
        if task is None:
            raise NotFound("task_not_found", "no task with this id")
        if task["status"] != "open":
            raise Conflict("task_closed", "the task is already settled")
        if task["leased_by"] != who.key_id:
            raise Conflict("task_not_leased", "the task is not leased to you; claim it first")
        labeler_id = labeler_identifier(who.name, who.key_id)
        row = await self._repo.add_answer(
            conn,
            task=task,
            key_id=who.key_id,
            labeler_id=labeler_id,
            verdict=body.verdict,
            label=body.label,
            elapsed_ms=body.elapsed_ms,
        )
        status = "open"
        published = False
        if body.verdict == "skip":
            await self._repo.release(conn, task_id)
        else:
            consensus = self.settings.consensus
            decision = decide(
                await self._repo.votes(conn, task_id),
                consensus,
                consensus + self.settings.max_extra_answers,
            )
            status = decision.status
            if decision.status == "open":
                await self._repo.release(conn, task_id)  # back in the queue for another labeler
            else:
                await self._repo.resolve(conn, task_id, decision.status, decision.label)
                event = label_event(task, decision, labeler_id)
                await self._outbox.add(conn, event)
                await self._repo.set_answer_event(conn, row["answer_id"], event.event_id)
                published = True
        seconds = (
            body.elapsed_ms / 1000 if body.elapsed_ms is not None else float(row["held_seconds"])
        )
        return self._answer_out(row, status, published), seconds

    def _answer_out(self, row: Row, status: str, published: bool) -> AnswerOut:
        return AnswerOut(
            answer_id=row["answer_id"],
            task_id=row["task_id"],
            image_id=row["image_id"],
            verdict=row["verdict"],
            label=row["label"],
            task_status=status,  # type: ignore[arg-type]
            published=published,
            answered_at=row["created_at"],
            undo_until=row["created_at"] + timedelta(seconds=self.settings.undo_seconds),
        )

    async def undo(self, who: Principal, key: str | None) -> tuple[UndoResponse, bool]:
        """Take back the labeler's newest answer: it stops counting, the task reopens and is
        leased to them again. Nothing is published now; the next answer to the task publishes
        a new label.submitted, which supersedes the earlier one (consumers keep the latest)."""
        rows: list[Row] = []

        async def act(conn: Conn) -> UndoResponse:
            last = await self._repo.last_answer(conn, who.key_id, self.settings.undo_seconds)
            if last is None:
                raise NotFound("nothing_to_undo", "you have no answer to undo")
            if not last["undoable"]:
                raise Conflict(
                    "undo_window_passed",
                    f"answers can be undone for {self.settings.undo_seconds:g} s",
                )
            task = await self._repo.task(conn, last["task_id"], for_update=True)
            assert task is not None
            if task["status"] == "open" and task["lease_live"] and task["leased_by"] != who.key_id:
                raise Conflict("task_taken", "another labeler holds this task now")
            if task["status"] != "open" and await self._repo.other_open_task(
                conn, task["image_id"], task["task_id"]
            ):
                raise Conflict("image_requeued", "the image is queued again as a new task")
            await self._repo.mark_undone(conn, last["answer_id"])
            leased = await self._repo.lease(
                conn, task["task_id"], who.key_id, self.settings.lease_seconds
            )
            rows.append(leased)
            return UndoResponse(
                undone=self._answer_out(last, "open", last["event_id"] is not None), task=None
            )

        result, replayed = await self._once(who, "undo", "", None, key, UndoResponse, act)
        if replayed:
            try:  # the task as it is now, if it is still theirs
                task = await self.task(who, result.undone.task_id)
            except NotFound:
                return result, True
            return result.model_copy(update={"task": task}), True
        metrics.UNDOS.inc()
        return result.model_copy(update={"task": await self._view(rows[0])}), False

    # --- user flags -------------------------------------------------------------------------

    async def feedback(
        self, who: Principal, body: FeedbackRequest, key: str | None
    ) -> tuple[FeedbackOut, bool]:
        async def act(conn: Conn) -> FeedbackOut:
            return await self._feedback(conn, who, body)

        result, replayed = await self._once(who, "feedback", "", body, key, FeedbackOut, act)
        if not replayed:
            metrics.FLAGS.inc()
        return result, replayed

    async def _feedback(self, conn: Conn, who: Principal, body: FeedbackRequest) -> FeedbackOut:
        image = await self._repo.image(conn, body.image_id)
        if image is None:
            raise NotFound("unknown_image", "no scored image has this id (yet)")
        prediction = image["prediction"]
        if body.label is not None:
            classes = (await self._repo.classes(conn))["classes"]
            if body.label not in classes:
                raise Invalid("unknown_class", f"{body.label!r} is not one of the classes")
            if body.label == prediction["label"]:
                raise Invalid(
                    "label_is_the_prediction", "the right class given is the model's own guess"
                )
        app_id = labeler_identifier(who.name, who.key_id)
        flag_id = await self._repo.add_flag(
            conn,
            image_id=body.image_id,
            app_key=who.key_id,
            app_id=app_id,
            label=body.label,
            comment=body.comment,
        )
        detail = f"flagged by {app_id}" + (f"; right class: {body.label}" if body.label else "")
        reason = Reason(strategy="user_flag", score=1.0, detail=detail[:256])
        try:
            review = ReviewRequested(
                producer=SERVICE,
                correlation_id=body.image_id,
                payload=ReviewRequest(
                    image_id=body.image_id,
                    uri=image["uri"],
                    reasons=[reason],
                    priority=self.settings.flag_priority,
                    model_version=image["model_version"],
                    prediction=Prediction(**prediction),
                    camera_id=image["camera_id"],
                    object_id=image["object_id"],
                    outside_budget=True,
                ),
            )
            wrong = LabelSubmitted(
                producer=SERVICE,
                correlation_id=body.image_id,
                payload=Label(
                    image_id=body.image_id,
                    verdict="wrong",
                    label=body.label,
                    labeler_id=app_id,
                    source="human",
                    model_version=image["model_version"],
                    predicted_label=prediction["label"],
                    reasons=[reason],
                ),
            )
        except ValidationError as error:  # stored data that no longer fits the contract
            raise Invalid("image_unusable", str(error)[:500]) from error
        await self._outbox.add(conn, review, wrong)
        return FeedbackOut(
            flag_id=flag_id, image_id=body.image_id, review_requested=True, label=body.label
        )

    # --- label set --------------------------------------------------------------------------

    async def classes(self) -> ClassesOut:
        async with self._pool.acquire() as conn:
            return ClassesOut(**dict(await self._repo.classes(conn)))

    async def replace_classes(self, who: Principal, body: ClassesIn) -> ClassesOut:
        by = labeler_identifier(who.name, who.key_id)
        async with self._pool.acquire() as conn:
            row = await self._repo.replace_classes(conn, list(body.classes), by)
        log.info("classes_replaced", by=by, classes=len(body.classes))
        return ClassesOut(**dict(row))

    # --- stats ------------------------------------------------------------------------------

    async def stats(self, window_hours: float) -> Stats:
        async with self._pool.acquire() as conn:
            queue = await self._repo.queue(conn)
            labelers = await self._repo.labelers(conn, window_hours)
            outcomes = await self._repo.outcomes(conn)
            agreement = await self._repo.agreement(conn)
            flags = await self._repo.flags_since(conn, window_hours)
        return Stats(
            window_hours=window_hours,
            queue=QueueStats(**dict(queue)),
            labelers=[_labeler_stats(r, window_hours) for r in labelers],
            class_counts={r["label"]: r["n"] for r in outcomes if r["status"] == "done"},
            ambiguous=sum(r["n"] for r in outcomes if r["status"] == "ambiguous"),
            agreement_rate=_share(agreement["agreed"], agreement["multi"]),
            model_agreement_rate=_share(agreement["model_right"], agreement["labelled"]),
            flags=flags,
        )

    async def my_stats(self, who: Principal, window_hours: float) -> MyStats:
        async with self._pool.acquire() as conn:
            queue = await self._repo.queue(conn)
            mine = await self._repo.labelers(conn, window_hours, who.key_id)
        me = (
            _labeler_stats(mine[0], window_hours)
            if mine
            else LabelerStats(
                labeler_id=labeler_identifier(who.name, who.key_id),
                answers=0,
                labels=0,
                ambiguous=0,
                skips=0,
                last_hour=0,
                per_hour=0.0,
            )
        )
        return MyStats(
            window_hours=window_hours,
            queue=QueueStats(**dict(queue)),
            me=me,
            undo_seconds=self.settings.undo_seconds,
        )

    async def housekeeping(self) -> None:
        """Refresh the queue gauges and forget old idempotency keys."""
        async with self._pool.acquire() as conn:
            queue = await self._repo.queue(conn)
            await self._repo.prune_idempotency_keys(conn, self.settings.idempotency_hours)
        metrics.QUEUE_DEPTH.labels("waiting").set(queue["waiting"])
        metrics.QUEUE_DEPTH.labels("leased").set(queue["leased"])

    # --- idempotency ------------------------------------------------------------------------

    async def _once(
        self,
        who: Principal,
        operation: str,
        target: str,
        body: BaseModel | None,
        key: str | None,
        model: type[M],
        action: Callable[[Conn], Awaitable[M]],
    ) -> tuple[M, bool]:
        """Run `action` in a transaction; with an Idempotency-Key, at most once: a repeat with
        the same request gets the stored response, a different request with the key a 422."""
        async with self._pool.acquire() as conn, conn.transaction():
            if key is not None:
                request_hash = fingerprint(operation, target, body)
                earlier = await self._repo.remember_request(
                    conn, who.key_id, operation, key, request_hash
                )
                if earlier is not None:
                    if earlier["request_hash"] != request_hash:
                        raise Invalid(
                            "idempotency_key_reused",
                            "this Idempotency-Key was used for a different request",
                        )
                    return model.model_validate(earlier["response"]), True
            result = await action(conn)
            if key is not None:
                await self._repo.store_response(
                    conn, who.key_id, operation, key, 200, result.model_dump(mode="json")
                )
        self._outbox.notify()
        return result, False


def label_event(task: Row, decision: Decision, labeler_id: str) -> LabelSubmitted:
    """The settled answer, with its lineage: who, which task, which model's guess, and why
    the image was chosen."""
    prediction = task["prediction"] or {}
    return LabelSubmitted(
        producer=SERVICE,
        correlation_id=task["image_id"],
        payload=Label(
            image_id=task["image_id"],
            verdict="label" if decision.status == "done" else "ambiguous",
            label=decision.label,
            labeler_id=labeler_id,
            task_id=task["task_id"],
            source="human",
            model_version=task["model_version"],
            predicted_label=prediction.get("label"),
            reasons=[Reason(**r) for r in task["reasons"]],
        ),
    )


def _labeler_stats(row: Row, window_hours: float) -> LabelerStats:
    return LabelerStats(
        labeler_id=row["labeler_id"],
        answers=row["answers"],
        labels=row["labels"],
        ambiguous=row["ambiguous"],
        skips=row["skips"],
        last_hour=row["last_hour"],
        per_hour=round(row["answers"] / window_hours, 3),
    )


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None

"""The gatekeeper's use cases: judge a candidate, promote or roll back by hand.

A candidate is examined (`examination.py`: registered in TorchServe as a non-default version,
scored with production on the frozen test split, judged by the rules) and the decision is
stored before TorchServe is changed. Applying a decision (set the default version, or unload
a rejected candidate) then marks it applied, and a promotion's `model.promoted` goes out with
that mark. A decision interrupted between the two steps is finished before the next one, so
TorchServe, the registry and Kafka end up agreeing after any crash.
"""

from __future__ import annotations

import structlog

from hone_common.events import ModelCandidate, ModelPromoted, Promotion
from hone_common.storage import ObjectRef
from hone_common.torchserve import TorchServeError, register_version, registered_versions
from hone_gatekeeper import metrics
from hone_gatekeeper.examination import MAX_REASON, Examiner
from hone_gatekeeper.ports import Registry, Serving, Store
from hone_gatekeeper.records import PROMOTING, Decision, DecisionKind, ModelVersion
from hone_gatekeeper.scoring import is_transient
from hone_gatekeeper.settings import SERVICE, Policy

log = structlog.get_logger(__name__)


class GatekeeperError(Exception):
    """A request the gatekeeper refuses; `code` is stable, the message says why."""

    status = 409
    code = "refused"


class UnknownVersion(GatekeeperError):
    status = 404
    code = "unknown_version"


class Gatekeeper:
    def __init__(self, registry: Registry, server: Serving, store: Store, policy: Policy) -> None:
        self._registry = registry
        self._server = server
        self._store = store
        self._policy = policy
        self._model = policy.model_name
        self._examiner = Examiner(server, store, policy)

    # --- candidates ---------------------------------------------------------------------

    async def on_candidate(self, event: ModelCandidate) -> str:
        """Judge a candidate once; returns the decision kind, `duplicate` or `ignored`."""
        candidate = event.payload
        if not self._is_ours(candidate.artifact_uri):
            log.info("candidate_of_another_model", version=candidate.model_version)
            metrics.CANDIDATES.labels("ignored").inc()
            return "ignored"
        version = candidate.model_version
        async with self._registry.lock(self._model):
            await self._apply_pending()
            if await self._registry.is_decided(self._model, version, event.event_id):
                log.info("candidate_already_decided", version=version)
                metrics.CANDIDATES.labels("duplicate").inc()
                return "duplicate"
            metrics.CANDIDATES.labels("evaluated").inc()
            await self._registry.record_candidate(self._model, candidate)
            production = await self._production(exclude=version)
            with metrics.EVALUATION_SECONDS.time():
                examination = await self._examiner.examine(candidate, production)
            verdict, evaluation = examination.verdict, examination.evaluation
            if production is not None and examination.production_classes:
                await self._registry.learn_classes(
                    self._model, production, examination.production_classes
                )
            decision = Decision(
                model_name=self._model,
                model_version=version,
                previous_version=production,
                kind="promote" if verdict.promote else "reject",
                reasons=[reason[:MAX_REASON] for reason in verdict.reasons],
                summary=evaluation.summary if evaluation else {},
                evaluation_id=evaluation.evaluation_id if evaluation else None,
                actor=SERVICE,
                candidate_event_id=event.event_id,
                correlation_id=event.correlation_id or event.event_id,
            )
            if not await self._registry.save_decision(decision, evaluation, event):
                metrics.CANDIDATES.labels("duplicate").inc()
                return "duplicate"
            log.info(
                "candidate_decided",
                version=version,
                production=production,
                decision=decision.kind,
                reasons=decision.reasons,
                examples=evaluation.examples if evaluation else 0,
                seconds=round(evaluation.duration_seconds, 2) if evaluation else None,
            )
            await self._apply(decision)
            return decision.kind

    def _is_ours(self, artifact_uri: str) -> bool:
        """Archives of this model live under `<model_name>/` (others belong to other models)."""
        try:
            return ObjectRef.parse(artifact_uri).key.startswith(f"{self._model}/")
        except ValueError:
            return False

    # --- production and decisions -------------------------------------------------------

    async def production_version(self) -> str | None:
        return await self._server.default_version(self._model)

    async def ensure_production_served(self) -> str | None:
        """Keep TorchServe and the registry agreeing on production: a served version the
        registry does not know yet is adopted, and a production TorchServe lost (it keeps no
        model across a restart) is loaded again from its archive; without this, scoring would
        wait for the next candidate. Returns the version served, None if there is none."""
        async with self._registry.lock(self._model):
            return await self._production()

    async def _production(self, exclude: str | None = None) -> str | None:
        """TorchServe's default version, recorded in the registry if it was not there yet.

        `exclude`: a candidate that is default only because it was the model's first version
        registered (TorchServe's rule) is not production."""
        default = await self._server.default_version(self._model)
        if default is None or default == exclude:
            return await self._restore_production(exclude)
        known = await self._registry.version(self._model, default)
        if known is None or known.status != "production":
            ref = ObjectRef(self._policy.models_bucket, f"{self._model}/{default}.mar")
            artifact = known.artifact_uri if known else None
            if artifact is None and await self._store.exists(ref):
                artifact = ref.uri
            log.warning("production_adopted_from_torchserve", version=default, artifact=artifact)
            await self._registry.adopt_production(self._model, default, artifact)
        return default

    async def _restore_production(self, exclude: str | None) -> str | None:
        """TorchServe lost the production version (it keeps no models across restarts here):
        load it again from its archive, so candidates are still compared with it."""
        known = await self._registry.production(self._model)
        if known is None or known.model_version == exclude or known.artifact_uri is None:
            return None
        version = known.model_version
        try:
            await register_version(
                self._server,
                self._store,
                ObjectRef.parse(known.artifact_uri),
                model_name=self._model,
                model_version=version,
                options=self._policy.serving,
            )
            await self._server.set_default(version, model=self._model)
        except TorchServeError as error:
            if is_transient(error):
                raise
            log.error("production_not_restored", version=version, error=str(error))
            return None
        log.warning("production_restored_in_torchserve", version=version)
        return version

    async def apply_pending(self) -> int:
        """Finish decisions that were stored but not applied (after a crash)."""
        async with self._registry.lock(self._model):
            return await self._apply_pending()

    async def _apply_pending(self) -> int:
        pending = await self._registry.pending(self._model)
        for decision in pending:
            log.warning("applying_interrupted_decision", decision_id=str(decision.decision_id))
            await self._apply(decision)
        return len(pending)

    async def _apply(self, decision: Decision) -> str | None:
        """Bring TorchServe in line with a stored decision; returns why it could not be."""
        if decision.kind not in PROMOTING:
            await self._unload(decision.model_version)
            await self._registry.complete(decision)
            self._count(decision)
            await self._measured_production(decision)
            return None
        row = await self._registry.version(self._model, decision.model_version)
        try:
            if row is None or row.artifact_uri is None or len(row.classes) < 2:
                raise GatekeeperError(f"{decision.model_version} has no archive or no classes")
            await register_version(
                self._server,
                self._store,
                ObjectRef.parse(row.artifact_uri),
                model_name=self._model,
                model_version=decision.model_version,
                options=self._policy.serving,
            )
            await self._server.set_default(decision.model_version, model=self._model)
        except (TorchServeError, GatekeeperError) as error:
            if isinstance(error, TorchServeError) and is_transient(error):
                raise
            # Retrying cannot help (the archive is gone, TorchServe refuses it): the decision
            # is closed with its error, and production stays what it was.
            message = f"could not make {decision.model_version} production: {error}"[:2000]
            log.error("decision_not_applied", decision_id=str(decision.decision_id), error=message)
            await self._registry.complete(decision, error=message)
            metrics.APPLY_FAILURES.inc()
            return message
        await self._registry.complete(decision, self._announcement(decision, row))
        self._count(decision)
        await self._measured_production(decision)
        if self._policy.keep_previous_registered:
            await self._unload_older(keep={decision.model_version, decision.previous_version})
        return None

    def _announcement(self, decision: Decision, row: ModelVersion) -> ModelPromoted:
        assert row.artifact_uri is not None
        return ModelPromoted(
            event_id=decision.decision_id,
            producer=SERVICE,
            correlation_id=decision.correlation_id,
            payload=Promotion(
                model_version=decision.model_version,
                previous_version=decision.previous_version,
                artifact_uri=row.artifact_uri,
                weakness_model_uri=row.weakness_model_uri,
                classes=row.classes,
                evaluation=decision.summary,
                reasons=decision.reasons,
                manual=decision.kind != "promote",
            ),
        )

    def _count(self, decision: Decision) -> None:
        metrics.DECISIONS.labels(decision.kind).inc()
        metrics.LAST_DECISION.labels(decision.kind).set_to_current_time()

    async def _measured_production(self, decision: Decision) -> None:
        """Keep the production accuracy gauge on the version now serving."""
        version = decision.model_version if decision.kind in PROMOTING else None
        version = version or decision.previous_version
        if version is None:
            metrics.PRODUCTION_ACCURACY.clear()
            return
        accuracy = await self._registry.latest_accuracy(self._model, version)
        metrics.PRODUCTION_ACCURACY.clear()
        if accuracy is not None:
            metrics.PRODUCTION_ACCURACY.labels(version).set(accuracy)

    async def refresh_production_accuracy(self) -> None:
        version = await self.production_version()
        metrics.PRODUCTION_ACCURACY.clear()
        if version is not None:
            accuracy = await self._registry.latest_accuracy(self._model, version)
            if accuracy is not None:
                metrics.PRODUCTION_ACCURACY.labels(version).set(accuracy)

    async def _unload(self, version: str) -> None:
        try:
            await self._server.unregister(version, model=self._model)
        except TorchServeError as error:
            if is_transient(error):
                raise
            if error.status != 404:
                log.warning("candidate_not_unloaded", version=version, error=str(error))

    async def _unload_older(self, keep: set[str | None]) -> None:
        """Unload retired and rejected versions TorchServe still holds, but the new production
        and the previous one (for an instant rollback); others' versions are left alone."""
        for version in await registered_versions(self._server, self._model):
            if version in keep:
                continue
            row = await self._registry.version(self._model, version)
            if row is not None and row.status in ("retired", "rejected"):
                await self._unload(version)

    # --- by hand --------------------------------------------------------------------------

    async def promote(self, version: str, *, actor: str, note: str | None = None) -> Decision:
        """Make any known version production, whatever the rules said of it."""
        return await self._by_hand("manual", version, actor, note)

    async def rollback(
        self, version: str | None = None, *, actor: str, note: str | None = None
    ) -> Decision:
        """Make an earlier production version production again (default: the latest one)."""
        return await self._by_hand("rollback", version, actor, note)

    async def _by_hand(
        self, kind: DecisionKind, version: str | None, actor: str, note: str | None
    ) -> Decision:
        async with self._registry.lock(self._model):
            await self._apply_pending()
            current = await self._production()
            target = await self._target(kind, version, current)
            if target.model_version == current:
                raise GatekeeperError(f"{target.model_version} is production already")
            if target.artifact_uri is None:
                raise GatekeeperError(f"no archive is known for {target.model_version}")
            if len(target.classes) < 2:
                raise GatekeeperError(f"the classes of {target.model_version} are not known")
            what = "rolled back to" if kind == "rollback" else "promoted by hand"
            reasons = [f"{what} by {actor}"[:MAX_REASON]] + ([note[:MAX_REASON]] if note else [])
            decision = Decision(
                model_name=self._model,
                model_version=target.model_version,
                previous_version=current,
                kind=kind,
                reasons=reasons,
                summary=await self._latest_summary(target.model_version),
                actor=actor,
            )
            await self._registry.save_decision(decision)
            log.info("decided_by_hand", kind=kind, version=target.model_version, actor=actor)
            error = await self._apply(decision)
            if error is not None:
                raise GatekeeperError(error)
            return decision

    async def _target(
        self, kind: DecisionKind, version: str | None, current: str | None
    ) -> ModelVersion:
        if version is None:
            if kind != "rollback":
                raise GatekeeperError("which version?")
            former = await self._registry.latest_former_production(self._model, current)
            if former is None:
                raise GatekeeperError("there is no earlier production version to roll back to")
            return former
        row = await self._registry.version(self._model, version)
        if row is None:
            raise UnknownVersion(f"the gatekeeper has never seen version {version}")
        if kind == "rollback" and row.promoted_at is None:
            raise GatekeeperError(
                f"{version} was never production; `promote` it to serve it anyway"
            )
        return row

    async def _latest_summary(self, version: str) -> dict[str, float | int | None]:
        accuracy = await self._registry.latest_accuracy(self._model, version)
        return {} if accuracy is None else {"accuracy": accuracy}

"""Examining a candidate: read its evaluation set, load it into TorchServe as a non-default
version, score it with production on the same images, and judge it by the rules.

A candidate that cannot be examined at all (its archive or evaluation set is missing,
TorchServe cannot load it) gets a rejection with the reason; a server that does not answer
raises, so the candidate is tried again later.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field

from hone_common.events import Candidate
from hone_common.storage import ObjectNotFound, ObjectRef
from hone_common.torchserve import TorchServeError, register_version
from hone_gatekeeper.evaluation import PairedPredictions, compare
from hone_gatekeeper.manifest import Manifest, parse_manifest
from hone_gatekeeper.ports import Serving, Store
from hone_gatekeeper.records import Evaluation
from hone_gatekeeper.rules import Verdict, judge
from hone_gatekeeper.scoring import EvaluationScorer, ScoringError, is_transient
from hone_gatekeeper.settings import Policy

MAX_REASON = 512
"""Longest reason `model.promoted` carries."""


@dataclass(frozen=True)
class Examination:
    verdict: Verdict
    evaluation: Evaluation | None = None
    production_classes: list[str] = field(default_factory=list)
    """The classes production answered with (learnt for versions found serving)."""


class _Rejected(Exception):
    """The candidate cannot be evaluated at all; the message is the decision's reason."""


class Examiner:
    def __init__(self, server: Serving, store: Store, policy: Policy) -> None:
        self._server = server
        self._store = store
        self._policy = policy
        self._model = policy.model_name
        scoring = policy.scoring
        self._scorer = EvaluationScorer(
            store,
            server,
            model_name=policy.model_name,
            images_per_request=scoring.images_per_request,
            fetch_concurrency=scoring.fetch_concurrency,
            attempts=scoring.attempts,
            backoff_seconds=scoring.backoff_seconds,
        )

    async def examine(self, candidate: Candidate, production: str | None) -> Examination:
        started = time.perf_counter()
        try:
            manifest = await self._manifest(candidate.evaluation_set_uri)
            await self._load_candidate(candidate)
        except _Rejected as refusal:
            return Examination(Verdict(False, [str(refusal)]))
        versions = [candidate.model_version] + ([production] if production else [])
        try:
            scored = await self._scorer.score(manifest.items if manifest else [], versions)
        except ScoringError as error:
            return Examination(Verdict(False, [f"the evaluation went wrong: {error}"]))
        except TorchServeError as error:
            if is_transient(error):
                raise
            return Examination(Verdict(False, [f"TorchServe refused to score: {error}"]))
        comparison = None
        if scored.items:
            candidate_answers = scored.answers[candidate.model_version]
            comparison = compare(
                PairedPredictions(
                    labels=[item.label for item in scored.items],
                    cameras=[item.camera_id for item in scored.items],
                    candidate=candidate_answers.predicted,
                    production=scored.answers[production].predicted if production else None,
                ),
                classes=len(candidate_answers.classes or candidate.classes),
                candidate_seconds=candidate_answers.seconds,
                production_seconds=scored.answers[production].seconds if production else (),
            )
        verdict = judge(comparison, self._policy.rules, production=production)
        set_aside = {
            "unreadable_lines": manifest.unreadable_lines if manifest else 0,
            "duplicates": manifest.duplicates if manifest else 0,
            "missing": scored.missing_images,
            "refused": scored.refused_images,
        }
        notes = _set_aside_note(set_aside, manifest)
        if production and scored.answers[production].classes not in ([], candidate.classes):
            notes.append("the candidate's classes differ from production's")
        evaluation = Evaluation(
            evaluation_id=uuid.uuid4(),
            model_name=self._model,
            candidate_version=candidate.model_version,
            production_version=production,
            evaluation_set_uri=candidate.evaluation_set_uri,
            examples=len(scored.items),
            set_aside=set_aside,
            summary=comparison.summary() if comparison else {"examples": 0},
            comparison=comparison.to_json() if comparison else None,
            duration_seconds=time.perf_counter() - started,
        )
        return Examination(
            Verdict(verdict.promote, verdict.reasons + notes),
            evaluation,
            scored.answers[production].classes if production else [],
        )

    async def _load_candidate(self, candidate: Candidate) -> None:
        """Register the candidate as a non-default version (unless it is registered)."""
        artifact = ObjectRef.parse(candidate.artifact_uri)
        if artifact.bucket != self._policy.models_bucket:
            raise _Rejected(
                f"the archive {artifact.uri} is not in the model bucket "
                f"{self._policy.models_bucket}, the only place TorchServe loads from"
            )
        if not await self._store.exists(artifact):
            raise _Rejected(f"the archive {artifact.uri} does not exist")
        try:
            await register_version(
                self._server,
                self._store,
                artifact,
                model_name=self._model,
                model_version=candidate.model_version,
                options=self._policy.serving,
            )
        except TorchServeError as error:
            if is_transient(error) and error.status != 500:
                raise
            # A 500 from registering is an archive TorchServe cannot load (a broken handler
            # or weights); retrying would fail the same way.
            raise _Rejected(f"TorchServe could not load the candidate: {error}") from error

    async def _manifest(self, uri: str | None) -> Manifest | None:
        if uri is None:
            return None
        try:
            ref = ObjectRef.parse(uri)
            data = await self._store.get(ref)
        except (ObjectNotFound, ValueError) as error:
            raise _Rejected(f"the evaluation set {uri} cannot be read: {error}") from error
        if len(data) > self._policy.scoring.max_manifest_bytes:
            raise _Rejected(f"the evaluation set {uri} is larger than the configured limit")
        return parse_manifest(data)


def _set_aside_note(set_aside: dict[str, int], manifest: Manifest | None) -> list[str]:
    if not any(set_aside.values()):
        return []
    parts = ", ".join(f"{why.replace('_', ' ')} {n}" for why, n in set_aside.items() if n)
    note = f"images set aside from the evaluation: {parts}"
    if manifest is not None and manifest.first_error:
        note += f" (first unreadable {manifest.first_error})"
    return [note[:MAX_REASON]]

"""Which model version is in production (from model.promoted) and which one is answering."""

from __future__ import annotations

from hone_scorer.metrics import MODEL_INFO


class ModelTracker:
    """Keeps both versions known and the `hone_scorer_model_info` gauge in step with them.

    Scoring always asks TorchServe's default version; the two differ only while a promotion
    is on its way (or when TorchServe was changed by hand), which the gauge makes visible.
    """

    def __init__(self) -> None:
        self._versions: dict[str, str | None] = {"production": None, "answering": None}

    @property
    def production(self) -> str | None:
        return self._versions["production"]

    @property
    def answering(self) -> str | None:
        return self._versions["answering"]

    def promoted(self, version: str | None) -> None:
        self._set("production", version)

    def answered(self, version: str) -> None:
        self._set("answering", version)

    def _set(self, role: str, version: str | None) -> None:
        previous = self._versions[role]
        if version == previous:
            return
        if previous is not None:
            MODEL_INFO.remove(previous, role)
        if version is not None:
            MODEL_INFO.labels(version, role).set(1)
        self._versions[role] = version

"""The gatekeeper's Prometheus metrics (the shared consumer metrics come from hone_common)."""

from prometheus_client import Counter, Gauge, Histogram

CANDIDATES = Counter(
    "hone_gatekeeper_candidates_total",
    "model.candidate events by outcome: evaluated, duplicate (decided before), ignored "
    "(another model's candidate).",
    ["outcome"],
)
DECISIONS = Counter(
    "hone_gatekeeper_decisions_total",
    "Decisions applied, by kind: promote, reject (by the rules), rollback, manual (by hand).",
    ["decision"],
)
LAST_DECISION = Gauge(
    "hone_gatekeeper_last_decision_timestamp_seconds",
    "When the last decision of each kind was applied (Unix time).",
    ["decision"],
)
EVALUATION_SECONDS = Histogram(
    "hone_gatekeeper_evaluation_seconds",
    "Time to evaluate one candidate: registering it, scoring the test split, judging.",
    buckets=(1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, 1200),
)
PRODUCTION_ACCURACY = Gauge(
    "hone_gatekeeper_production_accuracy",
    "Accuracy of the production version on the frozen test split, from its latest evaluation.",
    ["model_version"],
)
APPLY_FAILURES = Counter(
    "hone_gatekeeper_apply_failures_total",
    "Decisions TorchServe could not be brought in line with (production left unchanged).",
)

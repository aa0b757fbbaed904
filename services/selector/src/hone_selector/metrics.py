"""The selector's Prometheus metrics (the shared ones come from `hone_common.metrics`)."""

from prometheus_client import Counter, Gauge

DECISIONS = Counter(
    "hone_selector_decisions_total",
    "Scored images decided, by outcome (requested, random, below_threshold, no_signal, budget, "
    "duplicate, warming_up, already_decided).",
    ["outcome"],
)
STRATEGY_YIELD = Gauge(
    "hone_selector_strategy_yield",
    "Share of a strategy's labelled picks on which the production model was wrong.",
    ["strategy"],
)
STRATEGY_LABELLED = Gauge(
    "hone_selector_strategy_labelled",
    "Labelled picks a strategy's yield is measured on.",
    ["strategy"],
)
OPEN_REVIEWS = Gauge(
    "hone_selector_open_reviews", "Requests sent and not answered yet (the labelers' queue)."
)
THRESHOLD = Gauge("hone_selector_threshold", "Priority an image currently needs to be requested.")
REFILL_FACTOR = Gauge("hone_selector_refill_factor", "Budget refill speed after backpressure.")
BUDGET_TOKENS = Gauge("hone_selector_budget_tokens", "Tokens left per budget bucket.", ["bucket"])
LABELS = Counter(
    "hone_selector_labels_total",
    "Labels folded into the statistics, by what they say of the model (wrong, right, unknown).",
    ["outcome"],
)
PROMOTIONS = Counter(
    "hone_selector_promotions_total",
    "Promoted models seen, by weakness model outcome (loaded, absent, refused).",
    ["weakness_model"],
)

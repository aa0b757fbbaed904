"""The labeling API's Prometheus metrics (`hone_labeling_*`), beside the shared ones."""

from prometheus_client import Counter, Gauge, Histogram

QUEUE_DEPTH = Gauge(
    "hone_labeling_queue_depth",
    "Open review tasks: `waiting` (nobody holds them) or `leased`.",
    ["state"],
)
ANSWER_SECONDS = Histogram(
    "hone_labeling_answer_seconds",
    "Time a labeler spent per answer (as the page reports it, else since the task was leased).",
    ["verdict"],
    buckets=(0.5, 1, 1.5, 2, 3, 5, 8, 13, 20, 30, 60, 120, 300),
)
ANSWERS = Counter("hone_labeling_answers_total", "Answers stored, by verdict.", ["verdict"])
UNDOS = Counter("hone_labeling_undos_total", "Answers undone by their labeler.")
LABELS_PUBLISHED = Counter(
    "hone_labeling_labels_published_total",
    "label.submitted events written to the outbox, by verdict.",
    ["verdict"],
)
REVIEW_REQUESTS = Counter(
    "hone_labeling_review_requests_total",
    "review.requested events taken in: `created` a task, `merged` into an open one, "
    "`duplicate` (seen before) or `refused`.",
    ["outcome"],
)
FLAGS = Counter("hone_labeling_flags_total", "Predictions flagged as wrong by end users.")
RATE_LIMITED = Counter("hone_labeling_rate_limited_total", "Requests refused with 429.")

"""Prometheus metrics shared by every service; services add their own beside these."""

from prometheus_client import Counter, Gauge, Histogram

EVENTS_CONSUMED = Counter(
    "hone_events_consumed_total",
    "Events taken from Kafka, by outcome (processed, duplicate, dead_letter, retried).",
    ["service", "topic", "outcome"],
)
EVENTS_PUBLISHED = Counter(
    "hone_events_published_total", "Events published to Kafka.", ["service", "topic"]
)
DEAD_LETTERS = Counter(
    "hone_dead_letters_total",
    "Messages sent to a dead-letter topic.",
    ["service", "topic", "error"],
)
HANDLER_SECONDS = Histogram(
    "hone_handler_seconds",
    "Time to process one message (or one batch) including retries.",
    ["service", "topic"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
CONSUMER_LAG = Gauge(
    "hone_consumer_lag_messages",
    "Messages behind the end of the partition after the last processed one.",
    ["service", "topic", "partition"],
)
OUTBOX_PENDING = Gauge(
    "hone_outbox_pending_events", "Events stored but not yet published to Kafka.", ["service"]
)

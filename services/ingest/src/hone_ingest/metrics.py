"""Prometheus metrics of the ingest service (beside the shared `hone_*` ones)."""

from prometheus_client import Counter, Histogram

FRAMES_IN = Counter(
    "hone_ingest_images_in_total", "Images offered to ingest, by source.", ["source"]
)
BYTES_IN = Counter(
    "hone_ingest_bytes_in_total", "Bytes of the images offered to ingest, by source.", ["source"]
)
ACCEPTED = Counter(
    "hone_ingest_accepted_total", "New images stored and announced, by source.", ["source"]
)
DUPLICATES = Counter(
    "hone_ingest_duplicates_total",
    "Valid images already stored (same bytes): neither stored nor announced again.",
    ["source"],
)
REFUSED = Counter(
    "hone_ingest_refused_total", "Images refused, by source and reason.", ["source", "reason"]
)
PROCESSING_SECONDS = Histogram(
    "hone_ingest_processing_seconds",
    "Time from an image's arrival in ingest to its outcome (stored, duplicate or refused).",
    ["source"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
BATCH_SIZE = Histogram(
    "hone_ingest_batch_images",
    "Images handled together in one call of the ingest path.",
    ["source"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
)


def refused(source: str, reason: str) -> None:
    """An image refused before it reached the ingest path (its request or metadata)."""
    FRAMES_IN.labels(source).inc()
    REFUSED.labels(source, reason).inc()

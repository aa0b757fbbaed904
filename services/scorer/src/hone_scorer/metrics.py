"""The scorer's Prometheus metrics (the shared consumer metrics come from hone_common)."""

from prometheus_client import Counter, Gauge, Histogram

IMAGES = Counter(
    "hone_scorer_images_total",
    "Received images by outcome: scored, duplicate (already scored), or why they were "
    "dead-lettered (ImageMissing, ImageCorrupt, ImageRefused, InvalidPrediction).",
    ["outcome"],
)
IMAGES_SCORED = Counter(
    "hone_scorer_images_scored_total",
    "Images scored, by the model version that answered.",
    ["model_version"],
)
BATCH_SIZE = Histogram(
    "hone_scorer_batch_size",
    "image.received events handled as one batch.",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048),
)
IMAGES_PER_REQUEST = Histogram(
    "hone_scorer_torchserve_images_per_request",
    "Images sent in one TorchServe inference request.",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)
TORCHSERVE_SECONDS = Histogram(
    "hone_scorer_torchserve_request_seconds",
    "Duration of one TorchServe inference request, by outcome (ok, refused, error).",
    ["outcome"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
TORCHSERVE_ERRORS = Counter(
    "hone_scorer_torchserve_errors_total",
    "Failed TorchServe inference requests, by kind (HTTP status or exception type).",
    ["kind"],
)
END_TO_END_SECONDS = Histogram(
    "hone_scorer_end_to_end_seconds",
    "From an image.received event's occurred_at to its prediction being stored.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
MODEL_INFO = Gauge(
    "hone_scorer_model_info",
    "1 for the model version in each role: `production` (last model.promoted seen), "
    "`answering` (the version TorchServe last answered with).",
    ["model_version", "role"],
)

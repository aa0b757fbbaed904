"""The trainer's Prometheus metrics (the shared ones come from `hone_common.metrics`)."""

from prometheus_client import Counter, Gauge, Histogram

RUNS = Counter(
    "hone_trainer_runs_total",
    "Training runs by outcome (succeeded, failed, skipped, abandoned).",
    ["outcome"],
)
RUN_SECONDS = Histogram(
    "hone_trainer_run_seconds",
    "Wall time of a finished training run, from snapshot to candidate.",
    buckets=(5, 15, 30, 60, 120, 300, 600, 1200, 2400, 3600, 7200),
)
TRAINING_SECONDS = Histogram(
    "hone_trainer_training_seconds",
    "Compute time of a run (candidate, weakness folds and archive).",
    buckets=(5, 15, 30, 60, 120, 300, 600, 1200, 2400, 3600, 7200),
)
LAST_RUN = Gauge(
    "hone_trainer_last_run_timestamp_seconds",
    "When the last run of each outcome ended.",
    ["outcome"],
)
DATASET = Gauge(
    "hone_trainer_dataset_examples",
    "Examples in the dataset at the last run, by split and source (human, propagated).",
    ["split", "source"],
)
RUNNING = Gauge("hone_trainer_run_in_progress", "1 while this process runs a training run.")
IMAGES_LEFT_OUT = Counter(
    "hone_trainer_images_left_out_total",
    "Images a run could not use (gone from the bucket, undecodable, wrong content).",
)
WEAKNESS_HOLDOUT = Gauge(
    "hone_trainer_weakness_holdout",
    "The last weakness model's precision and recall at P>=0.5 on its hold-out rows.",
    ["measure"],
)

"""The labeling API and page: review queue, leases, answers, feedback."""

"""Validates camera frames and uploads, stores them in MinIO and announces image.received."""

"""Ingest's adapters: the PostgreSQL catalog of images and the image bucket in MinIO."""

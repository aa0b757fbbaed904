"""Shared contracts and plumbing of Hone: events, settings, Kafka, PostgreSQL, MinIO, auth."""

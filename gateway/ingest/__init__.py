"""Ingest: accept agency pushes, idempotently, with provenance."""

"""Shared plumbing: database, errors, crypto, telemetry, logging."""

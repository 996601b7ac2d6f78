"""Structured (JSON) logs carrying ids and counts only, never personal data."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

# Only these extra attributes reach the log line; anything else passed as `extra` is dropped,
# so a careless call cannot leak a name or an NHS number into the logs.
ALLOWED_EXTRA = frozenset({"request_id", "path_template", "status", "count", "client_id", "event"})


class JsonFormatter(logging.Formatter):
    """Format a record as one JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update({k: v for k, v in record.__dict__.items() if k in ALLOWED_EXTRA})
        if record.exc_info and record.exc_info[0] is not None:
            # The exception type only: messages and tracebacks may quote submitted values.
            line["exception"] = record.exc_info[0].__name__
        return json.dumps(line, default=str)


def uvicorn_log_config(level: str = "INFO") -> dict[str, Any]:
    """Return a logging config that makes uvicorn's own loggers write the same JSON lines.

    Without it, uvicorn prints plain text, and "Exception in ASGI application" tracebacks that
    may quote submitted values.
    """
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}},
        "loggers": {
            "uvicorn": {"handlers": ["stderr"], "level": level, "propagate": False},
            "uvicorn.error": {"handlers": ["stderr"], "level": level, "propagate": False},
            "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
        },
    }


def configure_logging(level: str = "INFO") -> None:
    """Send the gateway's logs to stderr as JSON lines."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger("gateway")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False

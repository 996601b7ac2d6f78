"""Logs are JSON lines that carry only allow-listed fields, never an exception's message."""

from __future__ import annotations

import json
import logging

from gateway.kit.logging import JsonFormatter


def test_only_allow_listed_extras_reach_the_line() -> None:
    record = logging.LogRecord("gateway.test", logging.INFO, __file__, 1, "push stored", None, None)
    record.request_id = "r-1"
    record.family_name = "Quillfeather"

    line = json.loads(JsonFormatter().format(record))

    assert line["message"] == "push stored" and line["request_id"] == "r-1"
    assert "family_name" not in line and "Quillfeather" not in json.dumps(line)


def test_exceptions_are_named_not_quoted() -> None:
    try:
        raise ValueError("NHS number 9434765919 is wrong")
    except ValueError:
        import sys

        record = logging.LogRecord("gateway.test", logging.ERROR, __file__, 1, "failed", None, sys.exc_info())

    line = JsonFormatter().format(record)

    assert json.loads(line)["exception"] == "ValueError"
    assert "9434765919" not in line

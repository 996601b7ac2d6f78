"""GET /fhir/R4/AuditEvent: a child's audit events as FHIR, with FHIR search's date prefixes."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from audit import AuditAction
from audit.fhir import to_fhir_bundle
from gateway.kit.auditor import Auditor
from gateway.kit.errors import InvalidQuery

from . import repository

# The most events one answer holds; a child with more is asked for by date ranges.
MAX_EVENTS = 1000
_DATE = re.compile(r"^(eq|ge|gt|le|lt)?(\d{4}-\d{2}-\d{2}(?:T[0-9:.]+(?:Z|[+-]\d{2}:\d{2}))?)$")


def search(
    session: Session, auditor: Auditor, *, patient: str | None, dates: list[str], source: str
) -> dict[str, Any]:
    """Return the searchset Bundle of a child's events in the date range; audit the search."""
    if patient is None:
        raise InvalidQuery("patient is required: Patient/<child id>")
    child_id = _patient(patient)
    since, until = _range(dates)
    events = repository.events_of_child(session, child_id, since=since, until=until, limit=MAX_EVENTS + 1)
    if len(events) > MAX_EVENTS:
        raise InvalidQuery(f"more than {MAX_EVENTS} events match: narrow the date range")
    auditor.record(
        AuditAction.IG_AUDIT_SEARCHED,
        child_id=child_id,
        detail={"filters": ["patient", *(["date"] if dates else [])], "returned": len(events), "format": "fhir"},
    )
    bundle = to_fhir_bundle(events, source=source, patient=child_id)
    bundle["total"] = len(bundle.get("entry", ()))
    return bundle


def _patient(value: str) -> uuid.UUID:
    reference = value.removeprefix("Patient/")
    try:
        return uuid.UUID(reference)
    except ValueError:
        raise InvalidQuery("patient must be Patient/<child id> or the child id (a UUID)") from None


def _range(values: list[str]) -> tuple[datetime | None, datetime | None]:
    since: datetime | None = None
    until: datetime | None = None
    for value in values:
        match = _DATE.match(value)
        if match is None:
            raise InvalidQuery("date must be a prefix (eq, ge, gt, le, lt) and a date or a date-time with a zone")
        prefix, text = match.group(1) or "eq", match.group(2)
        start, end = _instant_range(text)
        if prefix in ("ge", "gt", "eq"):
            low = end if prefix == "gt" else start
            since = low if since is None else max(since, low)
        if prefix in ("le", "lt", "eq"):
            high = start if prefix == "lt" else end
            until = high if until is None else min(until, high)
    return since, until


def _instant_range(text: str) -> tuple[datetime, datetime]:
    """Return the instants [start, end) a FHIR date or date-time covers, as far as its precision goes.

    FHIR search: `2026-11-24` is the whole (UTC) day, `2026-11-24T10:00:00Z` the whole second,
    `…T10:00:00.5Z` the whole tenth of a second.
    """
    try:
        if "T" in text:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)
            return moment, moment + _precision(text)
        day = date.fromisoformat(text)
    except ValueError:
        raise InvalidQuery("date is not a valid date or date-time") from None
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return start, start + timedelta(days=1)


def _precision(text: str) -> timedelta:
    clock = re.split(r"[Z+-]", text.split("T", 1)[1], maxsplit=1)[0]
    if ":" not in clock:
        return timedelta(hours=1)
    if clock.count(":") == 1:
        return timedelta(minutes=1)
    fraction = clock.partition(".")[2]
    # Finer than the microseconds the trail keeps is a microsecond.
    return max(timedelta(seconds=10.0 ** -len(fraction)), timedelta(microseconds=1)) if fraction else timedelta(seconds=1)

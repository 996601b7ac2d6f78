"""Queries of the audit trail and the review queue for IG officers (reads, and one guarded update)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, select, tuple_, update
from sqlalchemy.orm import Session

from audit import AuditEvent, ReviewReason
from gateway.models import ReviewEntry, ReviewOutcome, ReviewStatus


# The query parameter of each filter whose field name differs from it.
_PARAMETER = {"child_id": "child", "actor_id": "actor"}


@dataclass(frozen=True)
class EventFilters:
    """What an IG officer narrows the trail by; every field optional, all of them ANDed."""

    child_id: uuid.UUID | None = None
    actor_id: str | None = None
    agency: str | None = None
    action: str | None = None
    purpose: str | None = None
    outcome: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    trace_id: str | None = None

    def used(self) -> list[str]:
        """Return the query parameters given, as the caller named them (for the search's audit event: names, not values)."""
        return [_PARAMETER.get(name, name) for name, value in vars(self).items() if value is not None]

    def clauses(self) -> list[ColumnElement[bool]]:
        """Return the WHERE clauses of the filters given."""
        columns = {
            "child_id": AuditEvent.child_id,
            "actor_id": AuditEvent.actor_id,
            "agency": AuditEvent.actor_agency,
            "action": AuditEvent.action,
            "purpose": AuditEvent.purpose,
            "outcome": AuditEvent.outcome,
            "trace_id": AuditEvent.trace_id,
        }
        clauses: list[ColumnElement[bool]] = [
            column == getattr(self, name) for name, column in columns.items() if getattr(self, name) is not None
        ]
        if self.since is not None:
            clauses.append(AuditEvent.occurred_at >= self.since)
        if self.until is not None:
            clauses.append(AuditEvent.occurred_at < self.until)
        return clauses


def find_events(session: Session, filters: EventFilters, *, before: int | None, limit: int) -> list[AuditEvent]:
    """Return up to `limit` events matching the filters, newest first, with seq below `before`."""
    query = select(AuditEvent).where(*filters.clauses()).order_by(AuditEvent.seq.desc()).limit(limit)
    if before is not None:
        query = query.where(AuditEvent.seq < before)
    return list(session.scalars(query))


def get_event(session: Session, seq: int) -> AuditEvent | None:
    """Return one event by its seq."""
    return session.get(AuditEvent, seq)


def child_events(session: Session, child_id: uuid.UUID, *, actions: Sequence[str], outcome: str) -> list[AuditEvent]:
    """Return a child's events of the given actions and outcome, oldest first."""
    query = (
        select(AuditEvent)
        .where(AuditEvent.child_id == child_id, AuditEvent.action.in_(actions), AuditEvent.outcome == outcome)
        .order_by(AuditEvent.seq)
    )
    return list(session.scalars(query))


def events_of_child(
    session: Session, child_id: uuid.UUID, *, since: datetime | None, until: datetime | None, limit: int
) -> list[AuditEvent]:
    """Return up to `limit` events about a child in a time range, oldest first."""
    filters = EventFilters(child_id=child_id, since=since, until=until)
    return list(session.scalars(select(AuditEvent).where(*filters.clauses()).order_by(AuditEvent.seq).limit(limit)))


def review_entries(
    session: Session,
    *,
    status: ReviewStatus | None,
    reason: ReviewReason | None,
    after: tuple[int, str] | None,
    limit: int,
) -> list[ReviewEntry]:
    """Return up to `limit` review entries, in the order their events happened, after the cursor."""
    query = select(ReviewEntry).order_by(ReviewEntry.seq, ReviewEntry.reason).limit(limit)
    if status is not None:
        query = query.where(ReviewEntry.status == status)
    if reason is not None:
        query = query.where(ReviewEntry.reason == reason)
    if after is not None:
        query = query.where(tuple_(ReviewEntry.seq, ReviewEntry.reason) > tuple_(*after))
    return list(session.scalars(query))


def mark_reviewed(
    session: Session, entry_id: uuid.UUID, *, by: str, at: datetime, outcome: ReviewOutcome, note: str
) -> ReviewEntry | None:
    """Mark an open entry reviewed; return it, or None when it is not open (or does not exist).

    One guarded UPDATE: of two officers concluding at once, exactly one wins.
    """
    changed = session.execute(
        update(ReviewEntry)
        .where(ReviewEntry.id == entry_id, ReviewEntry.status == ReviewStatus.OPEN)
        .values(status=ReviewStatus.REVIEWED, reviewed_by=by, reviewed_at=at, outcome=outcome, note=note)
        .returning(ReviewEntry.id)
    ).first()
    if changed is None:
        return None
    entry = session.get(ReviewEntry, entry_id, populate_existing=True)
    return entry


def review_entry(session: Session, entry_id: uuid.UUID) -> ReviewEntry | None:
    """Return one review entry."""
    return session.get(ReviewEntry, entry_id)

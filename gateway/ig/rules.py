"""The review rules: which events an IG officer should look at, whatever feature recorded them.

- refused: a person was refused access (any event of theirs with outcome `denied`);
- out of hours: a person opened a child's view outside the partnership's working hours and
  days (local time; Monday to Friday, 08:00 to 18:00 unless the settings say otherwise);
- volume: a person opened more children's views in one working day than the partnership
  expects; every view past the threshold carries the flag, and the queue holds one entry per
  person and day.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, time
from zoneinfo import ZoneInfo

from sqlalchemy import Select, func, select, union
from sqlalchemy.orm import Session

from audit import ActorType, AuditAction, AuditEvent, AuditPending, AuditRecord, Outcome, ReviewReason
from gateway.models import ReviewEntry
from gateway.settings import Settings


@dataclass(frozen=True)
class PartnershipReviewRules:
    """The review rules with the partnership's working hours and daily threshold."""

    zone: ZoneInfo
    day_starts: time
    day_ends: time
    first_day: int
    last_day: int
    daily_children: int
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC), compare=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> PartnershipReviewRules:
        """Read the rules' parameters from the settings."""
        start, end = settings.review_working_hours.split("-")
        first_day, last_day = settings.review_working_days.split("-")
        return cls(
            zone=ZoneInfo(settings.review_timezone),
            day_starts=time.fromisoformat(start),
            day_ends=time.fromisoformat(end),
            first_day=int(first_day),
            last_day=int(last_day),
            daily_children=settings.review_daily_children,
        )

    def __call__(self, session: Session, entry: AuditRecord) -> AuditRecord:
        """Return the entry with the flags it earns added."""
        if entry.actor.type is not ActorType.USER:
            return entry
        earned: list[ReviewReason] = []
        detail = dict(entry.detail)
        if entry.outcome is Outcome.DENIED:
            earned.append(ReviewReason.REFUSED)
        if entry.action is AuditAction.STAFF_VIEW_OPENED and entry.outcome is Outcome.SUCCESS:
            local = self.clock().astimezone(self.zone)
            working_day = self.first_day <= local.isoweekday() <= self.last_day
            # Equal start and end: the working day has no hours off.
            in_hours = self.day_starts == self.day_ends or self.day_starts <= local.time() < self.day_ends
            if not working_day or not in_hours:
                earned.append(ReviewReason.OUT_OF_HOURS)
            others = self.children_opened_today(session, entry, local)
            if others is not None and others >= self.daily_children:
                earned.append(ReviewReason.VOLUME)
                detail["review_day"] = local.date().isoformat()
                detail["children_today"] = others + 1
        if not earned:
            return entry
        return dataclasses.replace(entry, review=(*entry.review, *earned), detail=detail)

    def children_opened_today(self, session: Session, entry: AuditRecord, local: datetime) -> int | None:
        """Return how many other children this person opened since local midnight (staged views too).

        None, without counting, when the count cannot have reached the threshold: this child was
        opened already today and the person is not on the queue for volume today. A view of a child
        seen today adds no child, so only a person already over the threshold needs the count
        (their repeat views carry the flag too); the count grows with the day's views, the two
        checks do not.
        """
        since = datetime.combine(local.date(), time(0), tzinfo=self.zone).astimezone(UTC)

        def views(table: type[AuditEvent] | type[AuditPending]) -> Select[uuid.UUID | None]:
            return select(table.child_id).where(
                table.actor_id == entry.actor.id,
                table.action == AuditAction.STAFF_VIEW_OPENED.value,
                table.outcome == Outcome.SUCCESS.value,
                table.occurred_at >= since,
            )

        seen_today = any(
            session.scalar(select(views(table).where(table.child_id == entry.child_id).exists()))
            for table in (AuditEvent, AuditPending)
        )
        over = session.scalar(
            select(ReviewEntry.id).where(ReviewEntry.dedupe_key == f"volume:{entry.actor.id}:{local.date().isoformat()}")
        )
        if seen_today and over is None:
            return None
        others = union(*(views(table).where(table.child_id != entry.child_id) for table in (AuditEvent, AuditPending)))
        return int(session.scalar(select(func.count()).select_from(others.subquery())) or 0)

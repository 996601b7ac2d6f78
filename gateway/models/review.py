"""The IG review queue: audit events that need a human look, and what the reviewer decided."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, Index, String, Text, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from audit import ReviewReason

from .base import Base, UUIDPrimaryKey, str_enum


class ReviewStatus(StrEnum):
    """Whether an IG officer has looked yet."""

    OPEN = "open"
    REVIEWED = "reviewed"


class ReviewOutcome(StrEnum):
    """What the IG officer concluded."""

    APPROPRIATE = "appropriate"
    INAPPROPRIATE = "inappropriate"
    ESCALATED = "escalated"


class ReviewEntry(UUIDPrimaryKey, Base):
    """One thing to review: a flagged audit event (or, for volume, a viewer's day), and its review.

    Made only by the auditor when it appends a flagged event (gateway/kit/auditor.py), once per
    `dedupe_key`; changed only by an IG officer marking it reviewed, which is itself audited.
    The note is the officer's own words and is never logged or put in an audit event.
    """

    __tablename__ = "review_entry"
    __table_args__ = (Index("ix_review_entry_status_flagged", "status", "flagged_at"),)

    dedupe_key: Mapped[str] = mapped_column(String(255), unique=True)
    seq: Mapped[int] = mapped_column(BigInteger, index=True)
    reason: Mapped[ReviewReason] = mapped_column(str_enum(ReviewReason, 32))
    actor_id: Mapped[str] = mapped_column(String(255))
    actor_agency: Mapped[str | None] = mapped_column(String(32))
    actor_role: Mapped[str | None] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64))
    # No foreign key, as in the trail: the entry outlives the erasure of the child.
    child_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, index=True)
    flagged_at: Mapped[datetime]
    status: Mapped[ReviewStatus] = mapped_column(str_enum(ReviewStatus, 16), default=ReviewStatus.OPEN)
    reviewed_by: Mapped[str | None] = mapped_column(String(255))
    reviewed_at: Mapped[datetime | None]
    outcome: Mapped[ReviewOutcome | None] = mapped_column(str_enum(ReviewOutcome, 32))
    note: Mapped[str | None] = mapped_column(Text)

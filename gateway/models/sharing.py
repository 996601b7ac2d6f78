"""Routes into a child's data beyond allocation: break-glass, and requests to see a withheld item.

- `BreakGlass`: a MACPT member without a legitimate relationship gains time-limited access to
  one child for child protection, with a stated reason; every view under it is flagged for IG.
- `SeeRequest`: a member asks to see one item withheld from them, with a justification; the
  originating agency's member of the allocated team, or the lead practitioner (never the
  requester), approves or declines. An approval discloses that item to that requester alone,
  for that purpose.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from policies import Agency, Purpose

from .base import Base, UUIDPrimaryKey, str_enum, utcnow


class BreakGlass(UUIDPrimaryKey, Base):
    """One member's time-limited access to one child without allocation."""

    __tablename__ = "break_glass"
    __table_args__ = (Index("ix_break_glass_subject_child", "subject", "child_id"),)

    child_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("child.id"), index=True)
    subject: Mapped[str] = mapped_column(String(255))
    agency: Mapped[Agency] = mapped_column(str_enum(Agency, 32))
    role: Mapped[str] = mapped_column(String(64))
    purpose: Mapped[Purpose] = mapped_column(str_enum(Purpose, 32))
    reason: Mapped[str] = mapped_column(Text)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]


class RequestStatus(StrEnum):
    """Where a request to see a withheld item stands."""

    PENDING = "pending"
    APPROVED = "approved"
    DECLINED = "declined"


class SeeRequest(UUIDPrimaryKey, Base):
    """A member's request to see one item withheld from them, and its answer."""

    __tablename__ = "see_request"
    __table_args__ = (
        Index("ix_see_request_requester_child", "requester", "child_id"),
        Index("ix_see_request_team_status", "team_id", "status"),
    )

    child_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("child.id"), index=True)
    item_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("item.id"), index=True)
    # The team allocated to the child when the request was made: its members answer it.
    team_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("team.id"))
    requester: Mapped[str] = mapped_column(String(255))
    requester_agency: Mapped[Agency] = mapped_column(str_enum(Agency, 32))
    requester_role: Mapped[str] = mapped_column(String(64))
    purpose: Mapped[Purpose] = mapped_column(str_enum(Purpose, 32))
    justification: Mapped[str] = mapped_column(Text)
    # The rule that withheld the item when it was asked for (what the approver is lifting).
    withheld_by: Mapped[str] = mapped_column(String(100))
    status: Mapped[RequestStatus] = mapped_column(str_enum(RequestStatus, 16), default=RequestStatus.PENDING)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    decided_by: Mapped[str | None] = mapped_column(String(255))
    decided_at: Mapped[datetime | None]
    decision_note: Mapped[str | None] = mapped_column(Text)

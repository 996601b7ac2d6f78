"""MACPT teams, their members, and the cases that allocate children to them."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from policies import Agency, CaseStatus

from .base import Base, UUIDPrimaryKey, str_enum, utcnow


class Team(UUIDPrimaryKey, Base):
    """A Multi-Agency Child Protection Team."""

    __tablename__ = "team"

    name: Mapped[str] = mapped_column(String(200))
    local_authority: Mapped[str] = mapped_column(String(200))
    # A team is deactivated, never deleted: its cases and the audit trail still name it.
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class TeamMember(UUIDPrimaryKey, Base):
    """A staff member (by their sign-in subject) on a team, with agency and role."""

    __tablename__ = "team_member"
    __table_args__ = (UniqueConstraint("team_id", "subject"),)

    team_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("team.id"), index=True)
    subject: Mapped[str] = mapped_column(String(255), index=True)
    display_name: Mapped[str] = mapped_column(String(200))
    agency: Mapped[Agency] = mapped_column(str_enum(Agency, 32))
    role: Mapped[str] = mapped_column(String(64))
    active: Mapped[bool] = mapped_column(default=True)
    added_at: Mapped[datetime] = mapped_column(default=utcnow)
    deactivated_at: Mapped[datetime | None]


class PlanCategory(StrEnum):
    """The category of a child protection plan (Working Together 2023; the CIN census's codes)."""

    NEGLECT = "neglect"
    PHYSICAL_ABUSE = "physical_abuse"
    SEXUAL_ABUSE = "sexual_abuse"
    EMOTIONAL_ABUSE = "emotional_abuse"
    MULTIPLE = "multiple"


class Case(UUIDPrimaryKey, Base):
    """A child allocated to a team: the legitimate relationship that opens the child's view."""

    __tablename__ = "case"

    child_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("child.id"), index=True)
    team_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("team.id"), index=True)
    status: Mapped[CaseStatus] = mapped_column(str_enum(CaseStatus, 16), default=CaseStatus.OPEN)
    lead_practitioner: Mapped[str | None] = mapped_column(String(255))
    opened_at: Mapped[datetime] = mapped_column(default=utcnow)
    closed_at: Mapped[datetime | None]
    opened_by: Mapped[str | None] = mapped_column(String(255))
    closed_by: Mapped[str | None] = mapped_column(String(255))
    close_reason: Mapped[str | None] = mapped_column(Text)
    # Key facts of the view: a child protection plan (start, category, end) and looked-after status.
    cp_plan_start: Mapped[date | None]
    cp_plan_category: Mapped[PlanCategory | None] = mapped_column(str_enum(PlanCategory, 32))
    cp_plan_end: Mapped[date | None]
    looked_after: Mapped[bool] = mapped_column(default=False)
    looked_after_since: Mapped[date | None]

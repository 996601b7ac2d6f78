"""Consent given or refused, and overrides to share without or against it."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import JSON, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from policies import ConsentStatus, Purpose

from .base import Base, UUIDPrimaryKey, str_enum, utcnow


class Consent(UUIDPrimaryKey, Base):
    """Who gave, refused or withdrew consent, for what scope and purpose, and when."""

    __tablename__ = "consent"

    child_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("child.id"), index=True)
    given_by: Mapped[str] = mapped_column(String(32))  # child | parental_responsibility
    status: Mapped[ConsentStatus] = mapped_column(str_enum(ConsentStatus, 16))
    purpose: Mapped[Purpose] = mapped_column(str_enum(Purpose, 32))
    agencies: Mapped[list[str]] = mapped_column(JSON, default=list)
    categories: Mapped[list[str]] = mapped_column(JSON, default=list)
    period_start: Mapped[datetime | None]
    period_end: Mapped[datetime | None]
    recorded_by: Mapped[str] = mapped_column(String(255))
    recorded_at: Mapped[datetime] = mapped_column(default=utcnow)


class Override(UUIDPrimaryKey, Base):
    """A recorded decision to share without or against consent, because asking would put the child at risk."""

    __tablename__ = "override"

    child_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("child.id"), index=True)
    agencies: Mapped[list[str]] = mapped_column(JSON, default=list)
    categories: Mapped[list[str]] = mapped_column(JSON, default=list)
    lawful_basis: Mapped[str] = mapped_column(String(64))
    justification: Mapped[str] = mapped_column(Text)
    decided_by: Mapped[str] = mapped_column(String(255))
    approved_by: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None]

"""Consent given or refused, and overrides to share without or against it."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import JSON, ForeignKey, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from policies import ConsentStatus, Purpose

from .base import Base, SealedRowMixin, UUIDPrimaryKey, str_enum, utcnow


class Consent(SealedRowMixin, UUIDPrimaryKey, Base):
    """Who gave, refused or withdrew consent, for what scope and purpose, and when.

    Rows are never updated: a withdrawal is a new row, so the history is the table and a view at
    time T reads the consent in force at T. A consent pushed by a health system as a FHIR Consent
    carries its source (client, record id, version), idempotent like every push.
    """

    __tablename__ = "consent"
    __table_args__ = (UniqueConstraint("client_id", "source_record_id", "source_version"),)

    child_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("child.id"), index=True)
    given_by: Mapped[str] = mapped_column(String(32))  # child | parental_responsibility
    # Who, in what capacity: "self" for a competent child, or the relationship ("mother", "special
    # guardian") of the person with parental responsibility.
    giver_relationship: Mapped[str | None] = mapped_column(String(100))
    # A free-text note (the family's stated wishes), sealed under the child's data key.
    sealed_note: Mapped[bytes | None] = mapped_column(LargeBinary)
    client_id: Mapped[str | None] = mapped_column(String(255))
    source_record_id: Mapped[str | None] = mapped_column(String(255))
    source_version: Mapped[str | None] = mapped_column(String(64))
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
    purpose: Mapped[Purpose] = mapped_column(str_enum(Purpose, 32), default=Purpose.FAMILY_HELP)
    agencies: Mapped[list[str]] = mapped_column(JSON, default=list)
    categories: Mapped[list[str]] = mapped_column(JSON, default=list)
    lawful_basis: Mapped[str] = mapped_column(String(64))
    justification: Mapped[str] = mapped_column(Text)
    decided_by: Mapped[str] = mapped_column(String(255))
    approved_by: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None]

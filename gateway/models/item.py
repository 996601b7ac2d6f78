"""Items: one shared fact each, normalised, with its original payload sealed."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlalchemy import JSON, ForeignKey, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from policies import Agency, RecordKind

from .base import Base, SealedRowMixin, SourceVersionedMixin, UUIDPrimaryKey, str_enum, utcnow


class ItemContent(BaseModel):
    """What an item's sealed content holds: the summary shown and the source's own payload."""

    model_config = ConfigDict(frozen=True)

    summary: str
    payload: dict[str, Any]


class PersonDetail(BaseModel):
    """Someone a record involves besides the child, as its source described them."""

    model_config = ConfigDict(frozen=True)

    role: str
    name: str
    birth_date: date | None = None
    relationship: str | None = None


class AlertDetail(BaseModel):
    """A CP-IS style flag a health record raises (adapters/ukcore.py): a key fact where disclosed."""

    model_config = ConfigDict(frozen=True)

    code: str
    active: bool
    start: date | None = None
    end: date | None = None


class ItemDetail(BaseModel):
    """What the view shows of an item besides its summary: who and where, its grading, its flag."""

    model_config = ConfigDict(frozen=True)

    people: tuple[PersonDetail, ...] = ()
    locations: tuple[str, ...] = ()
    grading: str | None = None
    alert: AlertDetail | None = None


class Item(SourceVersionedMixin, SealedRowMixin, UUIDPrimaryKey, Base):
    """One version of one source record about one child."""

    __tablename__ = "item"

    child_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("child.id"), index=True)
    identity_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("identity.id"))
    agency: Mapped[Agency] = mapped_column(str_enum(Agency, 32))
    kind: Mapped[RecordKind] = mapped_column(str_enum(RecordKind, 64))
    category: Mapped[str] = mapped_column(String(64))
    occurred_at: Mapped[datetime | None]
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    security_labels: Mapped[list[str]] = mapped_column(JSON, default=list)
    # 3x5x2 handling code (P or C), from the police adapter; None for other agencies.
    police_handling_code: Mapped[str | None] = mapped_column(String(1))
    # The source judged disclosure more detrimental to the child than not (Children Act 2004 s16LA).
    detrimental: Mapped[bool] = mapped_column(default=False)
    # Whom to ask about this record (an officer or unit, a school's DSL), named when it is withheld.
    contact: Mapped[str | None] = mapped_column(Text)
    # ItemContent, sealed under the child's data key.
    sealed_content: Mapped[bytes] = mapped_column(LargeBinary)
    # The summary alone (a JSON string) under the same key, context `item:<id>/summary`: the view
    # unseals only this. None on rows stored before migration 0003; their view reads sealed_content.
    sealed_summary: Mapped[bytes | None] = mapped_column(LargeBinary)
    # ItemDetail (people, locations, grading) under the same key, context `item:<id>/detail`, for
    # the records that carry any (police); shown only with the item.
    sealed_detail: Mapped[bytes | None] = mapped_column(LargeBinary)

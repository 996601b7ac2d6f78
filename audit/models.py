"""The one append-only table of the audit trail, on its own metadata (audit never imports gateway)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Text,
    TypeDecorator,
    Uuid,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class AuditBase(DeclarativeBase):
    """Base of the audit tables."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware datetime that comes back aware and in UTC on SQLite too (which stores it naive).

    Every table of the schema uses it (gateway/models/base.py imports it from here), so that no
    reader has to remember that SQLite forgets the zone.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are refused: say which time zone")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class EventContent:
    """What an event says (all but its place in the trail): the columns an event and a staged one share."""

    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime())
    actor_type: Mapped[str] = mapped_column(String(16))
    actor_id: Mapped[str] = mapped_column(String(255))
    actor_agency: Mapped[str | None] = mapped_column(String(32))
    actor_role: Mapped[str | None] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(16))
    # No foreign key: the trail must outlive the erasure of the child it speaks of.
    child_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    purpose: Mapped[str | None] = mapped_column(String(32))
    lawful_basis: Mapped[str | None] = mapped_column(String(255))
    policy_version: Mapped[str | None] = mapped_column(String(128))
    items: Mapped[list[dict[str, str]]] = mapped_column(JSON)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON)
    request_id: Mapped[str | None] = mapped_column(String(64))
    trace_id: Mapped[str | None] = mapped_column(String(64))


class AuditEvent(EventContent, AuditBase):
    """One event: a leaf of the Merkle tree and a link of the hash chain."""

    __tablename__ = "audit_event"
    __table_args__ = (
        Index("ix_audit_event_child_id", "child_id"),
        Index("ix_audit_event_actor_id", "actor_id"),
        Index("ix_audit_event_action", "action"),
        Index("ix_audit_event_occurred_at", "occurred_at"),
        Index("ix_audit_event_trace_id", "trace_id"),
        Index("ix_audit_event_actor_id_occurred_at", "actor_id", "occurred_at"),
    )

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)


class AuditNode(AuditBase):
    """A complete perfect subtree of the Merkle tree (level 1 and up; level 0 is the events' hashes).

    Derived from the events and checked against them by `verify`; kept so that appends and proofs
    cost O(log n) reads instead of a walk of the whole trail (audit/tree.py).
    """

    __tablename__ = "audit_node"

    level: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    position: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    hash: Mapped[bytes] = mapped_column(LargeBinary(32))


class AuditCheckpoint(AuditBase):
    """A signed checkpoint of the tree: its size, its root and the signed note, byte for byte."""

    __tablename__ = "audit_checkpoint"

    tree_size: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    root_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    note: Mapped[str] = mapped_column(Text)
    signed_at: Mapped[datetime] = mapped_column(UTCDateTime())


class AuditPending(EventContent, AuditBase):
    """An event kept by `audit.stage` in its request's transaction, waiting for `audit.integrate`.

    Its content, as the event will hold it; its id orders integration. Integration deletes it in
    the transaction that appends it to the trail.
    """

    __tablename__ = "audit_pending"

    # INTEGER on SQLite, where only an INTEGER PRIMARY KEY counts up by itself.
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)

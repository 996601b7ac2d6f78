"""Declarative base with a naming convention, so Alembic names every constraint predictably."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import DateTime, Enum, MetaData, TypeDecorator
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# One naming convention for the whole schema, the audit trail's tables included.
from audit.models import NAMING_CONVENTION


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware datetime that comes back aware and in UTC on SQLite too."""

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


def utcnow() -> datetime:
    """Return the current time, aware, in UTC."""
    return datetime.now(UTC)


class Base(DeclarativeBase):
    """Base of every gateway table (the audit log has its own, in `audit`)."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime()}


class UUIDPrimaryKey:
    """A random UUID primary key: never a sequence that reveals counts or order."""

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)


class SealedRowMixin:
    """A row holding personal data sealed under its child's key (kit.crypto.seal_value).

    The sealing context binds each ciphertext to its own row, so a sealed value copied into
    another row, or another table, does not decrypt.
    """

    __tablename__: str
    id: Mapped[uuid.UUID]

    @classmethod
    def context_for(cls, row_id: uuid.UUID) -> str:
        """Return `<table>:<id>`, the associated data of the ciphertexts of the row with that id."""
        return f"{cls.__tablename__}:{row_id}"

    @property
    def sealing_context(self) -> str:
        """Return this row's sealing context."""
        return self.context_for(self.id)


def str_enum(enum_type: type[StrEnum], length: int) -> Enum:
    """Map a StrEnum of the vocabulary to a VARCHAR holding its values (no database enum type)."""
    return Enum(
        enum_type,
        native_enum=False,
        create_constraint=False,
        length=length,
        values_callable=lambda members: [member.value for member in members],
        validate_strings=True,
    )

"""Declarative base with a naming convention, so Alembic names every constraint predictably."""

from __future__ import annotations

import uuid
from collections.abc import Collection
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Enum, ForeignKey, MetaData, Select, String, UniqueConstraint, Update
from sqlalchemy import or_, select, update
from sqlalchemy.orm import DeclarativeBase, Mapped, declared_attr, mapped_column

from gateway.kit.sql import one_of
from policies import RecordStatus

# One naming convention for the whole schema, the audit trail's tables included.
from audit.models import NAMING_CONVENTION, UTCDateTime



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
    def context_for(cls, row_id: uuid.UUID, part: str | None = None) -> str:
        """Return `<table>:<id>` (or `<table>:<id>/<part>`), the associated data of a row's ciphertext.

        A row holding more than one sealed value names each extra one (`part`), so that one
        cannot be swapped for another of the same row.
        """
        return f"{cls.__tablename__}:{row_id}" if part is None else f"{cls.__tablename__}:{row_id}/{part}"

    @property
    def sealing_context(self) -> str:
        """Return this row's sealing context."""
        return self.context_for(self.id)


class SourceVersionedMixin:
    """One version of a source system's record: pushes are idempotent on (client, record, version).

    Identities and items are both kept this way; a newer version supersedes the older ones.
    """

    source_record_id: Mapped[str] = mapped_column(String(255))
    source_version: Mapped[str] = mapped_column(String(64))

    @declared_attr
    def client_id(cls) -> Mapped[str]:
        """The source system that pushed this version."""
        # No index of its own: the unique (client_id, source_record_id, source_version) index leads
        # with it. A separate one misled the planner on a table growing under a large push (no
        # statistics yet): it scanned all of a client's rows for each chunk's records (migration 0006).
        return mapped_column(ForeignKey("client.id"))

    @declared_attr
    def status(cls) -> Mapped[RecordStatus]:
        """Whether this version is in force."""
        return mapped_column(str_enum(RecordStatus, 32), default=RecordStatus.CURRENT)

    @declared_attr.directive
    @classmethod
    def __table_args__(cls) -> tuple[UniqueConstraint]:
        return (UniqueConstraint("client_id", "source_record_id", "source_version"),)

    @classmethod
    def select_stored(
        cls, *columns: Any, client_id: str, versions: Collection[tuple[str, str]], dialect: str
    ) -> Select[Any]:
        """Select, of a client's records, these versions and every version in force of the same records.

        One query answers both questions a push asks of each record: was this version stored
        before, and is there an older version in force that a new one must supersede? Rows
        come as (source_record_id, source_version, status, *columns); a row of another record's
        version of the same name may come too, which the caller ignores.
        """
        return select(cls.source_record_id, cls.source_version, cls.status, *columns).where(
            cls.client_id == client_id,
            one_of(cls.source_record_id, {record_id for record_id, _ in versions}, dialect=dialect),
            or_(
                cls.status != RecordStatus.SUPERSEDED,
                one_of(cls.source_version, {version for _, version in versions}, dialect=dialect),
            ),
        )

    @classmethod
    def supersede(cls, *, client_id: str, source_record_ids: Collection[str], dialect: str) -> Update:
        """Return the statement that marks every version still in force of these records superseded."""
        return (
            update(cls)
            .where(
                cls.client_id == client_id,
                one_of(cls.source_record_id, source_record_ids, dialect=dialect),
                cls.status != RecordStatus.SUPERSEDED,
            )
            .values(status=RecordStatus.SUPERSEDED)
            .execution_options(synchronize_session=False)
        )


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

"""The child, the per-source identities claimed about it, and the links between them."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from policies import Agency

from .base import Base, SealedRowMixin, SourceVersionedMixin, UUIDPrimaryKey, str_enum, utcnow


class Child(UUIDPrimaryKey, Base):
    """The gateway's own subject: an opaque id and the wrapped key that encrypts its data."""

    __tablename__ = "child"

    # Destroying this key erases the child: every identity and item is sealed under it.
    wrapped_data_key: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ChildIdentifier(Base):
    """A blind-indexed identifier (NHS number, UPN) that belongs to exactly one child."""

    __tablename__ = "child_identifier"

    scheme: Mapped[str] = mapped_column(String(32), primary_key=True)
    blind_index: Mapped[str] = mapped_column(String(64), primary_key=True)
    child_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("child.id"), index=True)


class Identity(SourceVersionedMixin, SealedRowMixin, UUIDPrimaryKey, Base):
    """One source's claim about a child, kept per source and version, never overwritten."""

    __tablename__ = "identity"

    agency: Mapped[Agency] = mapped_column(str_enum(Agency, 32))
    nhs_number_index: Mapped[str | None] = mapped_column(String(64), index=True)
    # The claim itself (names, birth date, address…), sealed under the linked child's data key.
    sealed_claim: Mapped[bytes] = mapped_column(LargeBinary)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)


class LinkMethod(StrEnum):
    """How an identity came to be linked to a child (more methods come with scored matching)."""

    NHS_NUMBER = "nhs_number"


class LinkState(StrEnum):
    """Whether a link is in force (review and rejection come with the link review queue)."""

    LINKED = "linked"


class Link(UUIDPrimaryKey, Base):
    """Identity → child, with how, how sure, who and when; merges are links changing state."""

    __tablename__ = "link"

    identity_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("identity.id"), index=True)
    child_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("child.id"), index=True)
    method: Mapped[LinkMethod] = mapped_column(str_enum(LinkMethod, 32))
    score: Mapped[float | None]
    state: Mapped[LinkState] = mapped_column(str_enum(LinkState, 32))
    decided_by: Mapped[str] = mapped_column(String(255))
    decided_at: Mapped[datetime] = mapped_column(default=utcnow)

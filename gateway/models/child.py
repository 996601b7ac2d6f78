"""The child, the per-source identities claimed about it, and the links between them."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, LargeBinary, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from policies import Agency

from .base import Base, SealedRowMixin, SourceVersionedMixin, UUIDPrimaryKey, str_enum, utcnow


class Child(UUIDPrimaryKey, Base):
    """The gateway's own subject: an opaque id and the wrapped key that encrypts its data."""

    __tablename__ = "child"

    # Destroying this key erases the child: every identity and item is sealed under it.
    wrapped_data_key: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Set while this child's records are merged into another child (gateway.identity.merging).
    merged_into_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("child.id"))


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
    upn_index: Mapped[str | None] = mapped_column(String(64))
    # The claim itself (names, birth date, address…), sealed under the linked child's data key.
    sealed_claim: Mapped[bytes] = mapped_column(LargeBinary)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)


class LinkMethod(StrEnum):
    """How an identity came to be linked to a child."""

    NHS_NUMBER = "nhs_number"  # the same NHS number (Modulus 11 checked)
    UPN = "upn"  # the same Unique Pupil Number (check letter checked)
    SOURCE_RECORD = "source_record"  # a new version of a record the same client linked before
    SCORED = "scored"  # demographics scored above the upper threshold
    NEW = "new"  # no child matched: a new child was made for it
    MANUAL = "manual"  # a person confirmed it, or merged two children


class LinkState(StrEnum):
    """Whether a link is in force, waiting for a person, refused, or history."""

    LINKED = "linked"
    REVIEW = "review"  # a proposed link waiting on the review queue (the identity stays where it is)
    REJECTED = "rejected"  # a proposed link a person refused
    CONFIRMED = "confirmed"  # a proposed link a person accepted (the merge it made is the new link)
    MOVED = "moved"  # was in force until a merge or correction moved the identity to another child


class Link(UUIDPrimaryKey, Base):
    """Identity → child, with how, how sure, who and when; merges are links changing state.

    A link in state `review` proposes that its identity's child and `child_id` are one child;
    `candidate_identity_id` is the identity on that child it was compared with, and `reasons`
    the comparison field by field (levels and words, never the values compared).
    """

    __tablename__ = "link"
    # The review queue: proposed links only (a partial index, so that linking's lookups of links
    # in force never pick it, whatever the planner's statistics say).
    __table_args__ = (
        Index(
            "ix_link_review_child_id",
            "child_id",
            postgresql_where=text("state = 'review'"),
            sqlite_where=text("state = 'review'"),
        ),
    )

    identity_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("identity.id"), index=True)
    child_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("child.id"), index=True)
    method: Mapped[LinkMethod] = mapped_column(str_enum(LinkMethod, 32))
    score: Mapped[float | None]
    state: Mapped[LinkState] = mapped_column(str_enum(LinkState, 32))
    decided_by: Mapped[str] = mapped_column(String(255))
    decided_at: Mapped[datetime] = mapped_column(default=utcnow)
    candidate_identity_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("identity.id"))
    reasons: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Why the person who confirmed or rejected a proposed link decided so.
    note: Mapped[str | None] = mapped_column(Text)


class IdentityBlock(Base):
    """A blocking key of an identity: a keyed hash of, say, its birth date, so that linking finds
    plausible candidates through an index without the database ever holding the value."""

    __tablename__ = "identity_block"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    identity_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("identity.id"), primary_key=True)


class MergeKind(StrEnum):
    """A whole child merged into another, or one source record moved because its identifier changed."""

    MERGE = "merge"
    MOVE = "move"


class ChildMerge(UUIDPrimaryKey, Base):
    """What a merge (or move) took from one child to another, so that unmerge puts it all back.

    Records are named by source (client, record id), not by row: versions and items that arrive
    after the merge follow their record back on unmerge.
    """

    __tablename__ = "child_merge"

    kind: Mapped[MergeKind] = mapped_column(str_enum(MergeKind, 16))
    child_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("child.id"), index=True)
    into_child_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("child.id"), index=True)
    link_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("link.id"))
    source_records: Mapped[list[list[str]]] = mapped_column(JSON)
    identifiers: Mapped[list[list[str]]] = mapped_column(JSON)
    consent_ids: Mapped[list[str]] = mapped_column(JSON)
    override_ids: Mapped[list[str]] = mapped_column(JSON)
    # Proposed links the merge settled (confirmed) or pointed at the child it joined: unmerge
    # rejects the first and points the second back.
    settled_link_ids: Mapped[list[str]] = mapped_column(JSON, default=list)
    retargeted_link_ids: Mapped[list[str]] = mapped_column(JSON, default=list)
    reason: Mapped[str | None] = mapped_column(String(500))
    merged_by: Mapped[str] = mapped_column(String(255))
    merged_at: Mapped[datetime] = mapped_column(default=utcnow)
    unmerged_by: Mapped[str | None] = mapped_column(String(255))
    unmerged_at: Mapped[datetime | None]
    unmerge_reason: Mapped[str | None] = mapped_column(String(500))

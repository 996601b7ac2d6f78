"""What the IG endpoints answer and accept."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from gateway.models import ReviewOutcome, ReviewStatus


class ActorRead(BaseModel):
    """Who acted: a person or an agency system, with agency and role."""

    type: str
    id: str
    agency: str | None
    role: str | None


class ItemDecisionRead(BaseModel):
    """One item and what was decided about it, by which rule."""

    item: uuid.UUID
    decision: str
    rule: str


class EventRead(BaseModel):
    """An audit event as listed: everything but its items, which are counted by decision."""

    seq: int
    occurred_at: datetime
    actor: ActorRead
    action: str
    outcome: str
    child_id: uuid.UUID | None
    purpose: str | None
    lawful_basis: str | None
    policy_version: str | None
    item_counts: dict[str, int] = Field(description="How many items got each decision.")
    detail: dict[str, Any]
    request_id: str | None
    trace_id: str | None
    prev_hash: str
    hash: str


class EventDetailRead(EventRead):
    """One audit event in full, with the bytes its leaf hash covers."""

    items: list[ItemDecisionRead]
    canonical: str = Field(description="The event's canonical bytes, base64: SHA-256(0x00 ‖ these) is its leaf hash.")
    leaf_hash: str = Field(description="The event's RFC 9162 leaf hash, base64.")


class EventPage(BaseModel):
    """A page of events, newest first; `next` fetches the page after it."""

    events: list[EventRead]
    next: str | None


class InclusionProofRead(BaseModel):
    """RFC 9162 §2.1.3: the path from an event's leaf to the root of a checkpoint's tree (hashes in base64)."""

    leaf_index: int
    tree_size: int
    leaf_hash: str
    path: list[str]


class ConsistencyProofRead(BaseModel):
    """RFC 9162 §2.1.4: the hashes proving the tree of `first` events is a prefix of that of `second`."""

    first: int
    second: int
    path: list[str]


class ReviewEntryRead(BaseModel):
    """One thing to review, and its review when done."""

    id: uuid.UUID
    reason: str
    seq: int = Field(description="The audit event flagged (for volume: the first view past the threshold).")
    actor: ActorRead
    action: str
    child_id: uuid.UUID | None
    flagged_at: datetime
    status: ReviewStatus
    reviewed_by: str | None
    reviewed_at: datetime | None
    outcome: ReviewOutcome | None
    note: str | None


class ReviewPage(BaseModel):
    """A page of the review queue, oldest first; `next` fetches the page after it."""

    entries: list[ReviewEntryRead]
    next: str | None


class ReviewDecisionWrite(BaseModel):
    """An IG officer's conclusion on one entry."""

    model_config = {"extra": "forbid"}

    outcome: ReviewOutcome
    note: str = Field(min_length=1, max_length=4000, description="Why: what was checked, with whom.")


class DisclosureRead(BaseModel):
    """One disclosure of a child's information: to whom, when, why, on what basis, which items."""

    seq: int
    occurred_at: datetime
    to: ActorRead
    action: str
    purpose: str | None
    lawful_basis: str | None
    policy_version: str | None
    items: list[ItemDecisionRead]


class DisclosuresRead(BaseModel):
    """Every disclosure of one child's information, oldest first: the answer to a subject access request."""

    child_id: uuid.UUID
    count: int
    disclosures: list[DisclosureRead]

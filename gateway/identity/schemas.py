"""What the linking endpoints answer and accept."""

from __future__ import annotations

import uuid
from datetime import date, datetime

from pydantic import BaseModel, ConfigDict, Field


class SideRead(BaseModel):
    """One side of a proposed link: a source's claim, as that source sent it, and its child."""

    child_id: uuid.UUID
    identity_id: uuid.UUID | None = Field(description="None when the child has no current record to show.")
    agency: str | None
    source: str | None = Field(description="The client that sent it.")
    source_record_id: str | None
    received_at: datetime | None
    nhs_number: str | None
    upn: str | None
    given_names: list[str]
    family_name: str | None
    birth_date: date | None
    sex: str | None
    postcode: str | None
    address_lines: list[str]
    records: int = Field(description="How many source records are linked to this side's child.")


class ReasonRead(BaseModel):
    """How one field compared: its level, weight, and why (never the values themselves)."""

    field: str
    level: str
    weight: float
    reason: str


class ProposedLinkRead(BaseModel):
    """A pair waiting for a person: are these one child?"""

    link_id: uuid.UUID
    proposed_at: datetime
    score: float | None
    thresholds: dict[str, float] = Field(description="The scorer's lower and upper thresholds.")
    reasons: list[ReasonRead]
    record: SideRead = Field(description="The record that was scored, on the child it sits on now.")
    candidate: SideRead = Field(description="The child it would join, shown by its record most like it.")


class ReviewQueueRead(BaseModel):
    """The proposed links the caller may decide, oldest first."""

    links: list[ProposedLinkRead]
    total: int


class DecisionWrite(BaseModel):
    """Why the caller decided so: kept with the decision on the link (the audit event records that
    a note was given, not its words, which may name people)."""

    model_config = ConfigDict(extra="forbid")

    note: str | None = Field(default=None, max_length=2000)


class LinkDecisionRead(BaseModel):
    """What the decision did."""

    link_id: uuid.UUID
    state: str
    decided_by: str
    decided_at: datetime
    merge_id: uuid.UUID | None = Field(description="The merge a confirmation made; unmerge the child to undo it.")
    child_id: uuid.UUID = Field(description="The child the record is on now.")


class MergeWrite(BaseModel):
    """Merge `child_id` into `into_child_id`: one child, known by the second id from now on."""

    model_config = ConfigDict(extra="forbid")

    child_id: uuid.UUID
    into_child_id: uuid.UUID
    reason: str = Field(min_length=1, max_length=500, description="Why these are one child.")


class UnmergeWrite(BaseModel):
    """Undo the child's merge."""

    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=500, description="Why the merge was wrong.")


class MergeRead(BaseModel):
    """A merge or unmerge, as recorded."""

    merge_id: uuid.UUID
    child_id: uuid.UUID
    into_child_id: uuid.UUID
    source_records: int
    identifiers: int
    merged_by: str
    merged_at: datetime
    unmerged_by: str | None
    unmerged_at: datetime | None

"""Request and response bodies of overrides, break-glass and requests to see a withheld item."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from gateway.models import RequestStatus
from policies import CATEGORIES, Agency, Purpose

# A justification or reason: what an IG officer reads later. Blank is not a reason.
Reason = Field(min_length=1, max_length=2000)


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank")
    return value.strip()


def _known_categories(categories: list[str]) -> list[str]:
    unknown = sorted(set(categories) - CATEGORIES)
    if unknown:
        raise ValueError(f"unknown category {unknown[0]!r}; expected one of {sorted(CATEGORIES)}")
    return categories


class OverrideCreate(BaseModel):
    """Share without or against consent, because seeking or respecting it would place the child at risk."""

    model_config = ConfigDict(extra="forbid")

    purpose: Purpose
    agencies: list[Agency] = Field(default_factory=list, description="Agencies whose records it covers; empty for all.")
    categories: list[str] = Field(default_factory=list, description="Categories it covers; empty for all.")
    lawful_basis: str = Field(min_length=1, max_length=64, description="A key of the ISA's lawful_bases (not consent).")
    justification: str = Reason
    expires_at: AwareDatetime = Field(description="When it stops applying: at most GATEWAY_MAX_OVERRIDE_DAYS ahead.")

    _justification = field_validator("justification")(_not_blank)
    _categories = field_validator("categories")(_known_categories)


class OverrideRead(BaseModel):
    """A recorded override."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    child_id: uuid.UUID
    purpose: Purpose
    agencies: list[Agency]
    categories: list[str]
    lawful_basis: str
    justification: str
    decided_by: str
    created_at: datetime
    expires_at: datetime | None


class BreakGlassCreate(BaseModel):
    """Urgent access to a child without allocation, for child protection, with a reason."""

    model_config = ConfigDict(extra="forbid")

    reason: str = Reason
    purpose: Purpose = Field(description="child_protection: break-glass is never for family help.")

    _reason = field_validator("reason")(_not_blank)


class BreakGlassRead(BaseModel):
    """A break-glass grant: until when, and that it is reviewed."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    child_id: uuid.UUID
    purpose: Purpose
    started_at: datetime
    expires_at: datetime
    reviewed: bool = Field(default=True, description="Every view under break-glass goes to the IG review queue.")


class SeeRequestCreate(BaseModel):
    """Ask to see one item withheld from you."""

    model_config = ConfigDict(extra="forbid")

    item_id: uuid.UUID = Field(description="The id a withheld entry of the view lists.")
    purpose: Purpose = Field(default=Purpose.CHILD_PROTECTION, description="The purpose you need it for.")
    justification: str = Reason

    _justification = field_validator("justification")(_not_blank)


class SeeRequestDecision(BaseModel):
    """Approve or decline a request to see."""

    model_config = ConfigDict(extra="forbid")

    decision: Literal["approve", "decline"]
    note: str | None = Field(default=None, max_length=2000)


class SeeRequestRead(BaseModel):
    """A request to see a withheld item, and its answer."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    child_id: uuid.UUID
    item_id: uuid.UUID
    item_agency: Agency | None = None
    item_category: str | None = None
    requester: str
    requester_agency: Agency
    requester_role: str
    purpose: Purpose
    justification: str
    withheld_by: str
    status: RequestStatus
    created_at: datetime
    decided_by: str | None
    decided_at: datetime | None
    decision_note: str | None


class SeeRequestsRead(BaseModel):
    """Requests: those you may answer, or your own."""

    requests: list[SeeRequestRead]

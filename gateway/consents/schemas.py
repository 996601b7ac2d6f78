"""What the consent registry's endpoints accept and answer."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, ValidationInfo, field_validator

from policies import CATEGORIES, Agency, ConsentStatus, Purpose

# The relationship of a competent child deciding for themselves.
SELF = "self"

# One line of text: no control characters (PostgreSQL refuses NUL; the rest have no place in a relationship).
Relationship = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100, pattern=r"^[^\x00-\x1f\x7f]*$")
]
# Free text over several lines (sealed, but still text: tabs and line breaks only).
Note = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=4000, pattern=r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*$"),
]
_AGENCIES = sorted(agency.value for agency in Agency)
_CODE_LIKE = re.compile(r"[a-z][a-z0-9_.\-]{0,63}")


class GivenBy(StrEnum):
    """Who gave, refused or withdrew consent."""

    CHILD = "child"
    PARENTAL_RESPONSIBILITY = "parental_responsibility"


def _shown(value: str) -> str:
    # An unknown code is named back; anything that does not look like a code might be personal.
    return repr(value) if _CODE_LIKE.fullmatch(value) else "(not shown)"


def _in_utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("the time must lie between the years 1 and 9999 in UTC") from None


class ConsentCreate(BaseModel):
    """A consent decision to record: who decided, what, for which purpose, agencies and categories, and when."""

    model_config = ConfigDict(extra="forbid")

    status: ConsentStatus = Field(description="given, refused or withdrawn.")
    purpose: Purpose = Field(description="The purpose the decision was sought for.")
    given_by: GivenBy = Field(
        description="child (a competent child deciding for themselves) or parental_responsibility (a person with it)."
    )
    giver_relationship: Relationship = Field(
        description='"self" for a child; otherwise the relationship to the child, e.g. "mother" (never a name).'
    )
    agencies: list[str] = Field(
        default_factory=list, max_length=len(_AGENCIES), description=f"Agencies covered ({', '.join(_AGENCIES)}); none: all."
    )
    categories: list[str] = Field(
        default_factory=list,
        max_length=len(CATEGORIES),
        description="ISA categories covered (e.g. health.encounter); none: all.",
    )
    period_start: AwareDatetime | None = Field(default=None, description="When the decision applies from; default now.")
    period_end: AwareDatetime | None = Field(default=None, description="When it stops applying (after period_start); none: open-ended.")
    note: Note | None = Field(
        default=None,
        description="The family's stated wishes, in words (stored encrypted; shown to the allocated team, never audited).",
    )

    @field_validator("giver_relationship")
    @classmethod
    def _relationship_fits_giver(cls, value: str, info: ValidationInfo) -> str:
        given_by = info.data.get("given_by")
        if given_by is GivenBy.CHILD and value != SELF:
            raise ValueError(f"giver_relationship must be {SELF!r} when given_by is child")
        if given_by is GivenBy.PARENTAL_RESPONSIBILITY and value == SELF:
            raise ValueError("giver_relationship must name the relationship to the child (e.g. mother) when given_by is parental_responsibility")
        return value

    @field_validator("agencies")
    @classmethod
    def _known_agencies(cls, values: list[str]) -> list[str]:
        unknown = [value for value in values if value not in _AGENCIES]
        if unknown:
            raise ValueError(f"unknown agency {_shown(unknown[0])}; expected one of: {', '.join(_AGENCIES)}")
        return sorted(set(values))

    @field_validator("categories")
    @classmethod
    def _known_categories(cls, values: list[str]) -> list[str]:
        unknown = [value for value in values if value not in CATEGORIES]
        if unknown:
            raise ValueError(f"unknown category {_shown(unknown[0])}; expected one of the ISA's categories, e.g. health.encounter")
        return sorted(set(values))

    @field_validator("period_start")
    @classmethod
    def _start_in_utc(cls, value: datetime | None) -> datetime | None:
        return _in_utc(value)

    @field_validator("period_end")
    @classmethod
    def _end_after_start(cls, value: datetime | None, info: ValidationInfo) -> datetime | None:
        end = _in_utc(value)
        start = info.data.get("period_start")
        # Without a start the service compares with now, the default start.
        if end is not None and start is not None and end <= start:
            raise ValueError("period_end must be after period_start")
        return end


class ConsentSourceRead(BaseModel):
    """The source system record a consent was imported from (a FHIR Consent)."""

    client_id: str
    record_id: str
    version: str


class ConsentRead(BaseModel):
    """A recorded consent decision."""

    id: uuid.UUID
    status: ConsentStatus
    purpose: Purpose
    given_by: GivenBy
    giver_relationship: str | None
    agencies: list[Agency] = Field(description="Agencies covered; empty: all.")
    categories: list[str] = Field(description="Categories covered; empty: all.")
    period_start: datetime | None
    period_end: datetime | None
    note: str | None = Field(description="The family's stated wishes, if any were written down.")
    recorded_by: str = Field(description="The staff member who recorded it, or the source system it came from.")
    recorded_at: datetime
    source: ConsentSourceRead | None = Field(description="Set when the decision was imported from a source system.")


class ConsentRegistryRead(BaseModel):
    """A child's consent decisions: those in force now, and the whole history."""

    child_id: uuid.UUID
    current: list[ConsentRead] = Field(
        description="For each scope (purpose, agency, set of categories), the newest decision whose period covers now."
    )
    history: list[ConsentRead] = Field(description="Every decision, newest recorded first; none is ever changed.")


# The FHIR answer (GET …/consents?format=fhir), as the OpenAPI document describes it.
CONSENT_BUNDLE: dict[str, Any] = {
    "title": "Bundle (collection of Consent)",
    "type": "object",
    "required": ["resourceType", "type"],
    "properties": {
        "resourceType": {"const": "Bundle"},
        "type": {"const": "collection"},
        "entry": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "fullUrl": {"type": "string"},
                    "resource": {
                        "type": "object",
                        "required": ["resourceType", "status", "scope", "category", "patient"],
                        "properties": {"resourceType": {"const": "Consent"}},
                    },
                },
            },
        },
    },
}

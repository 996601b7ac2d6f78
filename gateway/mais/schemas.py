"""What the person-info-query endpoint accepts and answers, as the OpenAPI document describes them.

The bodies are FHIR Parameters, read and validated by the adapter (adapters/person_info_query.py,
with fhir.resources), not by pydantic models here; these JSON Schemas say enough of their shape
for an integrator, or a property-based tester, to build a request and check a response.

The lead practitioner's queue of referred queries (`/api/v1/person-queries`) is plain JSON:
its pydantic models are at the end.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from adapters.person_info_query import REFERENCE_SYSTEM
from gateway.ingest.schemas import fhir_response
from gateway.models import ReferralStatus
from policies import Agency

_PATIENT: dict[str, Any] = {
    "type": "object",
    "required": ["resourceType"],
    "properties": {
        "resourceType": {"const": "Patient"},
        "identifier": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "system": {"const": "https://fhir.nhs.uk/Id/nhs-number"},
                    "value": {"type": "string", "pattern": "^[0-9]{10}$"},
                },
            },
        },
        "name": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"family": {"type": "string"}, "given": {"type": "array", "items": {"type": "string"}}},
            },
        },
        "birthDate": {"type": "string", "format": "date"},
    },
}

PARAMETERS_REQUEST: dict[str, Any] = {
    "title": "Parameters (person-info-query)",
    "description": "`resource`: the Patient (an NHS number, or a family name and birth date; a given name narrows). "
    "`reason`: a valueUri naming the legislation the query is made under.",
    "type": "object",
    "required": ["resourceType", "parameter"],
    "properties": {
        "resourceType": {"const": "Parameters"},
        "parameter": {
            "type": "array",
            "items": {
                "oneOf": [
                    {
                        "type": "object",
                        "required": ["name", "resource"],
                        "properties": {"name": {"const": "resource"}, "resource": _PATIENT},
                    },
                    {
                        "type": "object",
                        "required": ["name", "valueUri"],
                        "properties": {"name": {"const": "reason"}, "valueUri": {"type": "string", "format": "uri"}},
                    },
                ]
            },
        },
    },
    "example": {
        "resourceType": "Parameters",
        "parameter": [
            {
                "name": "resource",
                "resource": {
                    "resourceType": "Patient",
                    "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9434765919"}],
                    "name": [{"family": "Smith", "given": ["Jane"]}],
                    "birthDate": "2015-05-01",
                },
            },
            {"name": "reason", "valueUri": "http://www.legislation.gov.uk/ukpga/1989/41/section/47"},
        ],
    },
}

PARAMETERS_RESPONSE: dict[str, Any] = {
    "title": "Parameters (person-info-query answer)",
    "type": "object",
    "required": ["resourceType", "parameter"],
    "properties": {
        "resourceType": {"const": "Parameters"},
        "parameter": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["name"],
                "properties": {
                    "name": {"enum": ["match", "contact", "outcome", "reference"]},
                    "valueBoolean": {"type": "boolean"},
                    "valueIdentifier": {"type": "object"},
                    "resource": {"type": "object"},
                },
            },
        },
    },
}

QUERY_ERRORS: dict[int | str, dict[str, Any]] = {
    400: fhir_response("The body is not valid FHIR, or not a Parameters."),
    401: fhir_response("No valid bearer token."),
    403: fhir_response(
        "Not an agency system's token; the client is not active or not registered to query; or the ISA does not "
        "permit queries from the client's agency for this reason (nothing was matched)."
    ),
    413: fhir_response("The body is over the limit (64 KiB)."),
    415: fhir_response("The Content-Type is not FHIR JSON or XML."),
    422: fhir_response(
        "The query cannot be answered: `reason` or `resource` missing, an invalid NHS number, or neither an NHS "
        "number nor a family name and birth date (each issue names its field)."
    ),
    503: fhir_response("The database is busy; retry after the Retry-After seconds."),
}


# ---------------------------------------------------------------- the lead practitioner's queue

# Free text over several lines (tabs and line breaks allowed, other control characters not).
Note = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=1, max_length=1000, pattern=r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*$"
    ),
]


class ReferralFilter(StrEnum):
    """Which referred queries to list: those waiting for a decision, or those decided."""

    PENDING = "pending"
    DECIDED = "decided"


class ReferralDecision(StrEnum):
    """What the lead practitioner decided about a referred query."""

    SHARE_CONTACT = "share_contact"  # the team's contact may be given to the querying agency
    DECLINE = "decline"  # the querying agency is not answered


class PersonQueryDecisionCreate(BaseModel):
    """Decide a referred query (once)."""

    model_config = ConfigDict(extra="forbid")

    decision: ReferralDecision = Field(
        description="share_contact: you will contact the querying agency (or may be contacted) about this child; "
        "decline: the query is not answered. Either way the gateway tells the agency nothing itself."
    )
    note: Note | None = Field(
        default=None,
        description="Why, for the team and IG (at most 1000 characters). Stored sealed under the child's data key; "
        "never in the audit trail.",
    )


class PersonQueryDecisionRead(BaseModel):
    """A referred query's decision: what, by whom, when, and its note."""

    decision: ReferralDecision
    decided_by: str = Field(description="The sign-in subject of the lead practitioner who decided.")
    decided_at: datetime
    note: str | None = Field(description="The decider's note; null when none was given (or the child was erased).")


class PersonQueryReferralRead(BaseModel):
    """A query another agency made about a child of one of your cases, referred to you by the ISA."""

    id: uuid.UUID = Field(description="The referral's id: decide it with POST /api/v1/person-queries/{id}/decision.")
    reference: str = Field(
        description=f"The reference the querying agency was given and will quote (a valueIdentifier of system "
        f"{REFERENCE_SYSTEM}); one query about a child open to two teams has one reference and two referrals."
    )
    client_id: str = Field(description="The querying agency system's client id.")
    client_name: str = Field(description="The querying agency system's registered name.")
    agency: Agency = Field(description="The querying agency.")
    reason: str = Field(description="The legislation URI the query was made under, as the agency sent it.")
    reason_label: str | None = Field(
        default=None, description="The reason in words, when it is a Children Act section the gateway knows."
    )
    asked_at: datetime = Field(description="When the query was made.")
    child_id: uuid.UUID = Field(description="The child it matched: your case's child (open the view for context).")
    case_id: uuid.UUID
    team_id: uuid.UUID
    team_name: str
    status: ReferralStatus = Field(description="pending, contact_shared or declined.")
    decision: PersonQueryDecisionRead | None = Field(default=None, description="The decision, once made.")


class PersonQueryReferralsRead(BaseModel):
    """Referred queries you may decide, newest first."""

    referrals: list[PersonQueryReferralRead]

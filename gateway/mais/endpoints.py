"""POST /fhir/R4/Patient/$person-info-query: another agency's query about a person (routes only);
and the lead practitioner's queue of queries referred for review (/api/v1/person-queries, staff).

A plain `def` endpoint: FastAPI runs it in its threadpool, so parsing, matching and the
database work never block the event loop. Only the body is read on the loop, asynchronously
and never past the limit; a wrong Content-Type or an oversized body is refused by the service,
so that the refusal is audited like any other.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import Response

from adapters.person_info_query import FHIR_JSON, MEDIA_TYPES
from gateway.auth.dependencies import CallerAuditor, ClientPrincipal, StaffPrincipal
from gateway.ingest.endpoints import FhirJSONResponse, FhirRoute
from gateway.ingest.http import media_type_of, read_limited
from gateway.ingest.schemas import fhir_request_body, fhir_response
from gateway.kit.context import ActivePolicy, Keyring
from gateway.kit.db import DbSession
from gateway.kit.errors import ProblemRoute, problem_openapi

from . import service
from .schemas import (
    PARAMETERS_REQUEST,
    PARAMETERS_RESPONSE,
    QUERY_ERRORS,
    PersonQueryDecisionCreate,
    PersonQueryReferralRead,
    PersonQueryReferralsRead,
    ReferralFilter,
)


async def read_query_body(request: Request) -> service.QueryBody:
    """Read a query's body up to the limit; leave refusing a wrong type or size to the service (audited)."""
    media_type = media_type_of(request.headers.get("content-type"), FHIR_JSON)
    if media_type not in MEDIA_TYPES:
        return service.QueryBody(media_type, b"")  # not read: refused as it stands
    # None past the limit: the service refuses it (audited).
    return service.QueryBody(media_type, await read_limited(request, service.QUERY_MAX_BYTES))


QueryBody = Annotated[service.QueryBody, Depends(read_query_body)]

router = APIRouter(prefix="/fhir/R4", tags=["fhir"], route_class=FhirRoute)

_OPENAPI: dict[str, Any] = fhir_request_body(PARAMETERS_REQUEST)


@router.post(
    "/Patient/$person-info-query",
    summary="Ask whether a person is open to a MACPT here, and whom to contact (MAIS person-info-query)",
    response_class=FhirJSONResponse,
    responses={
        200: fhir_response(
            "A Parameters: `match` and, when true, a `contact` Organization per allocated team (PERMIT); or, when "
            "the ISA refers the query for review, an `outcome` and a `reference` (no `match`).",
            PARAMETERS_RESPONSE,
        ),
        **QUERY_ERRORS,
    },
    openapi_extra=_OPENAPI,
)
def person_info_query(
    session: DbSession,
    principal: ClientPrincipal,
    auditor: CallerAuditor,
    keyring: Keyring,
    policy: ActivePolicy,
    body: QueryBody,
) -> Response:
    """Answer as the partnership's ISA decides for the reason stated; never with the child's records. Audited."""
    answer = service.query_person(session, principal, auditor=auditor, keyring=keyring, policy=policy, body=body)
    return FhirJSONResponse(answer)


referrals_router = APIRouter(prefix="/person-queries", tags=["person-queries"], route_class=ProblemRoute)

REFERRAL_ERRORS: dict[int | str, dict[str, Any]] = {
    401: problem_openapi("No valid bearer token."),
    422: problem_openapi("A parameter or the body is not valid: the problem names it. Nothing was stored."),
    503: problem_openapi("The database is busy; retry after the Retry-After seconds."),
}


@referrals_router.get(
    "",
    response_model=PersonQueryReferralsRead,
    summary="Other agencies' queries referred to you for review",
    responses=REFERRAL_ERRORS,
)
def list_referrals(
    session: DbSession,
    principal: StaffPrincipal,
    auditor: CallerAuditor,
    keyring: Keyring,
    status: Annotated[ReferralFilter | None, Query(description="pending or decided; both when omitted.")] = None,
    limit: Annotated[int, Query(ge=1, le=200, description="How many to show, newest first.")] = 50,
) -> PersonQueryReferralsRead:
    """The queries the ISA referred for review about children of open cases you lead (your team's lead
    practitioner, or the lead the case names): who asked, under which legislation, when, and any decision.
    Never the querying agency's search terms (they are not kept). Each listing is audited."""
    return service.list_referrals(session, principal, auditor=auditor, keyring=keyring, status=status, limit=limit)


@referrals_router.post(
    "/{referral_id}/decision",
    response_model=PersonQueryReferralRead,
    summary="Decide a referred query: share the team's contact, or decline",
    responses={
        **REFERRAL_ERRORS,
        404: problem_openapi("No referred query with this id that you may decide."),
        409: problem_openapi("Already decided: a referred query is decided once."),
        410: problem_openapi("The child's record has been erased: a note cannot be kept."),
    },
)
def decide_referral(
    session: DbSession,
    principal: StaffPrincipal,
    auditor: CallerAuditor,
    keyring: Keyring,
    referral_id: uuid.UUID,
    body: PersonQueryDecisionCreate,
) -> PersonQueryReferralRead:
    """Record your decision; the gateway does not tell the querying agency. With share_contact, contact
    the agency (the listing names its system and agency) quoting its reference. Audited; the note is sealed."""
    return service.decide_referral(
        session, principal, auditor=auditor, keyring=keyring, referral_id=referral_id, body=body
    )

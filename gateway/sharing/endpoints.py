"""Overrides, break-glass and requests to see a withheld item (routes only)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query

from gateway.auth.dependencies import CallerAuditor, StaffPrincipal
from gateway.kit.context import ActivePolicy, AppSettings
from gateway.kit.db import DbSession
from gateway.kit.errors import ProblemRoute, problem_openapi
from gateway.models import RequestStatus

from . import service
from .schemas import (
    BreakGlassCreate,
    BreakGlassRead,
    OverrideCreate,
    OverrideRead,
    SeeRequestCreate,
    SeeRequestDecision,
    SeeRequestRead,
    SeeRequestsRead,
)

ERRORS: dict[int | str, dict[str, Any]] = {
    401: problem_openapi("No valid bearer token."),
    422: problem_openapi("A field is missing or not valid: the problem names it. Nothing was stored."),
    503: problem_openapi("The database is busy; retry after the Retry-After seconds."),
}
NOT_ALLOCATED: dict[int | str, dict[str, Any]] = {
    403: problem_openapi("Not allowed (not on the allocated team, or not the role this needs); the refusal is recorded."),
}

router = APIRouter(prefix="/children", tags=["sharing"], route_class=ProblemRoute)
requests_router = APIRouter(prefix="/requests", tags=["sharing"], route_class=ProblemRoute)


@router.post(
    "/{child_id}/overrides",
    status_code=201,
    response_model=OverrideRead,
    summary="Record an override: share without or against consent",
    responses={**ERRORS, **NOT_ALLOCATED},
)
def record_override(
    session: DbSession,
    principal: StaffPrincipal,
    auditor: CallerAuditor,
    settings: AppSettings,
    policy: ActivePolicy,
    child_id: uuid.UUID,
    body: OverrideCreate,
) -> OverrideRead:
    """The allocated team's lead practitioner records that seeking or respecting consent would place the child
    at risk: the ISA's consent-based rules then share, on the stated lawful basis, until `expires_at`. Every
    override goes to the IG review queue."""
    return service.record_override(
        session, principal, auditor=auditor, settings=settings, policy=policy, child_id=child_id, body=body
    )


@router.post(
    "/{child_id}/break-glass",
    status_code=201,
    response_model=BreakGlassRead,
    summary="Break the glass: urgent, time-limited access to a child without allocation",
    responses={
        **ERRORS,
        403: problem_openapi("Not a MACPT member, or the ISA gives break-glass nothing for your agency; recorded."),
        404: problem_openapi("No child with this id."),
        409: problem_openapi("You already have access (allocation, or break-glass until a time the problem says)."),
    },
)
def break_glass(
    session: DbSession,
    principal: StaffPrincipal,
    auditor: CallerAuditor,
    settings: AppSettings,
    policy: ActivePolicy,
    child_id: uuid.UUID,
    body: BreakGlassCreate,
) -> BreakGlassRead:
    """For child protection only, with a reason: access for GATEWAY_BREAK_GLASS_MINUTES, decided by the ISA
    rules that name `break_glass`. The grant and every view under it go to the IG review queue."""
    return service.break_glass(
        session, principal, auditor=auditor, settings=settings, policy=policy, child_id=child_id, body=body
    )


@router.post(
    "/{child_id}/requests",
    status_code=201,
    response_model=SeeRequestRead,
    summary="Ask to see an item withheld from you",
    responses={**ERRORS, **NOT_ALLOCATED, 409: problem_openapi("You already have a pending request for it.")},
)
def create_request(
    session: DbSession,
    principal: StaffPrincipal,
    auditor: CallerAuditor,
    policy: ActivePolicy,
    child_id: uuid.UUID,
    body: SeeRequestCreate,
) -> SeeRequestRead:
    """Name an item id from the view's `withheld` entries whose `requestable` is true, with a justification.
    The item's agency's member of the allocated team, or the lead practitioner, answers."""
    return service.create_request(session, principal, auditor=auditor, policy=policy, child_id=child_id, body=body)


@requests_router.get(
    "",
    response_model=SeeRequestsRead,
    summary="Requests to see that you may answer (or your own)",
    responses=ERRORS,
)
def list_requests(
    session: DbSession,
    principal: StaffPrincipal,
    auditor: CallerAuditor,
    status: Annotated[RequestStatus | None, Query(description="pending, approved or declined.")] = None,
    mine: Annotated[bool, Query(description="Your own requests instead of those you may answer.")] = False,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> SeeRequestsRead:
    """Requests of your teams' members for items of your agency (all of them, for the lead practitioner),
    never your own; newest first."""
    return service.list_requests(session, principal, auditor=auditor, status=status, mine=mine, limit=limit)


@requests_router.post(
    "/{request_id}/decision",
    response_model=SeeRequestRead,
    summary="Approve or decline a request to see",
    responses={
        **ERRORS,
        403: problem_openapi("Your own request: another member must decide it."),
        404: problem_openapi("No request with this id that you may answer."),
        409: problem_openapi("Already decided."),
    },
)
def decide_request(
    session: DbSession,
    principal: StaffPrincipal,
    auditor: CallerAuditor,
    request_id: uuid.UUID,
    body: SeeRequestDecision,
) -> SeeRequestRead:
    """An approval discloses the item to the requester alone, for the purpose they asked for."""
    return service.decide_request(session, principal, auditor=auditor, request_id=request_id, body=body)

"""Inbox routes: Operation Encompass notices for schools, notifications for lead practitioners."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query

from gateway.auth.dependencies import CallerAuditor, StaffPrincipal
from gateway.kit.context import ActivePolicy, Keyring
from gateway.kit.db import DbSession
from gateway.kit.errors import ProblemRoute, problem_openapi

from . import service
from .schemas import AcknowledgedRead, EncompassInboxRead, NotificationsRead

ERRORS: dict[int | str, dict[str, Any]] = {
    401: problem_openapi("No valid bearer token."),
    422: problem_openapi("A parameter is not valid."),
    503: problem_openapi("The database is busy; retry after the Retry-After seconds."),
}
NOT_A_CONTACT: dict[int | str, dict[str, Any]] = {403: problem_openapi("Not registered as a school's (or the local authority's) safeguarding contact.")}
NOT_YOURS: dict[int | str, dict[str, Any]] = {404: problem_openapi("No such entry in your inbox.")}
Limit = Annotated[int, Query(ge=1, le=200, description="How many entries to show.")]

router = APIRouter(tags=["inboxes"], route_class=ProblemRoute)


@router.get(
    "/encompass/inbox",
    response_model=EncompassInboxRead,
    summary="Operation Encompass notices for a designated safeguarding lead",
    responses={**ERRORS, **NOT_A_CONTACT},
)
def get_encompass_inbox(
    session: DbSession,
    principal: StaffPrincipal,
    auditor: CallerAuditor,
    keyring: Keyring,
    policy: ActivePolicy,
    limit: Limit = 50,
) -> EncompassInboxRead:
    """The police's notices that a pupil was present at a domestic abuse incident, each with its deadline
    (the start of the next school day), unacknowledged first."""
    return service.encompass_inbox(session, principal, auditor=auditor, keyring=keyring, policy=policy, limit=limit)


@router.post(
    "/encompass/inbox/{entry_id}/acknowledge",
    response_model=AcknowledgedRead,
    summary="Acknowledge an Operation Encompass notice",
    responses={**ERRORS, **NOT_A_CONTACT, **NOT_YOURS},
)
def acknowledge_notice(
    session: DbSession, principal: StaffPrincipal, auditor: CallerAuditor, entry_id: uuid.UUID
) -> AcknowledgedRead:
    """Say that the school has the notice (audited; a repeat answers with the first acknowledgement)."""
    return service.acknowledge_notice(session, principal, auditor=auditor, entry_id=entry_id)


@router.get(
    "/notifications",
    response_model=NotificationsRead,
    summary="New information about the children of your cases",
    responses=ERRORS,
)
def get_notifications(
    session: DbSession, principal: StaffPrincipal, auditor: CallerAuditor, policy: ActivePolicy, limit: Limit = 50
) -> NotificationsRead:
    """New records of the kinds the ISA marks notifiable, for children of open cases you lead, and Encompass
    notices their schools did not acknowledge in time: which agency and kind, never more than the view would show."""
    return service.notifications(session, principal, auditor=auditor, policy=policy, limit=limit)


@router.post(
    "/notifications/{entry_id}/read",
    response_model=AcknowledgedRead,
    summary="Mark a notification read",
    responses={**ERRORS, **NOT_YOURS},
)
def mark_notification_read(
    session: DbSession, principal: StaffPrincipal, auditor: CallerAuditor, entry_id: uuid.UUID
) -> AcknowledgedRead:
    """Mark it read (audited; a repeat answers with the first)."""
    return service.mark_read(session, principal, auditor=auditor, entry_id=entry_id)

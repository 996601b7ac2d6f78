"""Teams, members and cases (routes only)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query

from gateway.auth.dependencies import CallerAuditor, StaffPrincipal
from gateway.kit.context import Keyring
from gateway.kit.db import DbSession
from gateway.kit.errors import ProblemRoute, problem_openapi
from policies import CaseStatus

from . import admin
from .schemas import (
    CaseClose,
    CaseCreate,
    CaseRead,
    CasesRead,
    CaseUpdate,
    MemberCreate,
    MemberRead,
    MemberUpdate,
    TeamCreate,
    TeamRead,
    TeamsRead,
    TeamUpdate,
)

Responses = dict[int | str, dict[str, Any]]
ERRORS: Responses = {
    401: problem_openapi("No valid bearer token."),
    422: problem_openapi("A parameter or the body is not valid; `errors` names each field at fault."),
    503: problem_openapi("The database is busy; retry after the Retry-After seconds."),
}
NOT_ADMIN: Responses = {403: problem_openapi("Not a partnership administrator (the refusal is audited).")}
NOT_MEMBER: Responses = {403: problem_openapi("Not an active member of the team (the refusal is audited).")}
NO_TEAM: Responses = {404: problem_openapi("No such team, or no such member of it.")}
CONFLICT: Responses = {409: problem_openapi("The request conflicts with the current state (named in `detail`).")}
CASE_403: Responses = {
    403: problem_openapi(
        "Not an active member of the team, or not its team manager or the case's lead practitioner "
        "(the refusal is audited)."
    )
}

teams_router = APIRouter(prefix="/teams", tags=["teams"], route_class=ProblemRoute)
cases_router = APIRouter(prefix="/cases", tags=["cases"], route_class=ProblemRoute)


@teams_router.post(
    "", status_code=201, response_model=TeamRead, summary="Create a team", responses={**ERRORS, **NOT_ADMIN}
)
def create_team(session: DbSession, principal: StaffPrincipal, auditor: CallerAuditor, body: TeamCreate) -> TeamRead:
    """Create a MACPT team (partnership administrators only)."""
    return admin.create_team(session, principal, auditor=auditor, data=body)


@teams_router.get("", response_model=TeamsRead, summary="Teams you may see", responses=ERRORS)
def get_teams(session: DbSession, principal: StaffPrincipal, auditor: CallerAuditor) -> TeamsRead:
    """Every team for a partnership administrator; the teams you are an active member of for anyone else."""
    return admin.get_teams(session, principal, auditor=auditor)


@teams_router.get(
    "/{team_id}",
    response_model=TeamRead,
    summary="A team and its members",
    responses={**ERRORS, **NOT_MEMBER, **NO_TEAM},
)
def get_team(session: DbSession, principal: StaffPrincipal, auditor: CallerAuditor, team_id: uuid.UUID) -> TeamRead:
    """For a partnership administrator or an active member of the team."""
    return admin.get_team(session, principal, auditor=auditor, team_id=team_id)


@teams_router.patch(
    "/{team_id}",
    response_model=TeamRead,
    summary="Change a team",
    responses={**ERRORS, **NOT_ADMIN, **NO_TEAM, **CONFLICT},
)
def update_team(
    session: DbSession, principal: StaffPrincipal, auditor: CallerAuditor, team_id: uuid.UUID, body: TeamUpdate
) -> TeamRead:
    """Rename it, move it to another local authority, deactivate (refused while it has open cases) or reactivate it."""
    return admin.update_team(session, principal, auditor=auditor, team_id=team_id, data=body)


@teams_router.post(
    "/{team_id}/members",
    status_code=201,
    response_model=MemberRead,
    summary="Put a staff member on a team",
    responses={**ERRORS, **NOT_ADMIN, **NO_TEAM, **CONFLICT},
)
def add_member(
    session: DbSession, principal: StaffPrincipal, auditor: CallerAuditor, team_id: uuid.UUID, body: MemberCreate
) -> MemberRead:
    """409 if they are already an active member; a deactivated member is reactivated with the new agency and role."""
    return admin.add_member(session, principal, auditor=auditor, team_id=team_id, data=body)


@teams_router.patch(
    "/{team_id}/members/{member_id}",
    response_model=MemberRead,
    summary="Change a member's role or display name",
    responses={**ERRORS, **NOT_ADMIN, **NO_TEAM, **CONFLICT},
)
def update_member(
    session: DbSession,
    principal: StaffPrincipal,
    auditor: CallerAuditor,
    team_id: uuid.UUID,
    member_id: uuid.UUID,
    body: MemberUpdate,
) -> MemberRead:
    """Only the fields given change."""
    return admin.update_member(session, principal, auditor=auditor, team_id=team_id, member_id=member_id, data=body)


@teams_router.post(
    "/{team_id}/members/{member_id}/deactivate",
    response_model=MemberRead,
    summary="Take a member off a team",
    responses={**ERRORS, **NOT_ADMIN, **NO_TEAM, **CONFLICT},
)
def deactivate_member(
    session: DbSession, principal: StaffPrincipal, auditor: CallerAuditor, team_id: uuid.UUID, member_id: uuid.UUID
) -> MemberRead:
    """From now on they open none of the team's children."""
    return admin.deactivate_member(session, principal, auditor=auditor, team_id=team_id, member_id=member_id)


@cases_router.post(
    "",
    status_code=201,
    response_model=CaseRead,
    summary="Open a case: allocate a child to a team",
    responses={
        **ERRORS,
        **CASE_403,
        404: problem_openapi("No such team, no such child, or no child with that NHS number."),
        409: problem_openapi(
            "The child already has an open case with the team, was merged, or the team is deactivated."
        ),
        410: problem_openapi("The child's record has been erased."),
    },
)
def open_case(
    session: DbSession, principal: StaffPrincipal, auditor: CallerAuditor, keyring: Keyring, body: CaseCreate
) -> CaseRead:
    """For the team's team manager or a lead practitioner on it. The team's members then open the child's view."""
    return admin.open_case(session, principal, auditor=auditor, keyring=keyring, data=body)


@cases_router.get("", response_model=CasesRead, summary="Cases of your teams", responses={**ERRORS, **NOT_MEMBER})
def get_cases(
    session: DbSession,
    principal: StaffPrincipal,
    auditor: CallerAuditor,
    team_id: Annotated[uuid.UUID | None, Query(description="Only this team's cases (you must be a member).")] = None,
    status: Annotated[CaseStatus | None, Query(description="Only open, or only closed, cases.")] = None,
    limit: Annotated[int, Query(ge=1, le=500, description="How many cases to show, newest first.")] = 100,
) -> CasesRead:
    """The cases of every team you are an active member of (each read is audited)."""
    return admin.get_cases(session, principal, auditor=auditor, team_id=team_id, status=status, limit=limit)


@cases_router.get("/{case_id}", response_model=CaseRead, summary="A case", responses={**ERRORS, **CASE_403})
def get_case(session: DbSession, principal: StaffPrincipal, auditor: CallerAuditor, case_id: uuid.UUID) -> CaseRead:
    """For an active member of the case's team."""
    return admin.get_case(session, principal, auditor=auditor, case_id=case_id)


@cases_router.patch(
    "/{case_id}", response_model=CaseRead, summary="Change a case", responses={**ERRORS, **CASE_403, **CONFLICT}
)
def update_case(
    session: DbSession, principal: StaffPrincipal, auditor: CallerAuditor, case_id: uuid.UUID, body: CaseUpdate
) -> CaseRead:
    """Lead practitioner, child protection plan, looked-after status (team manager or the case's lead practitioner)."""
    return admin.update_case(session, principal, auditor=auditor, case_id=case_id, data=body)


@cases_router.post(
    "/{case_id}/close", response_model=CaseRead, summary="Close a case", responses={**ERRORS, **CASE_403, **CONFLICT}
)
def close_case(
    session: DbSession, principal: StaffPrincipal, auditor: CallerAuditor, case_id: uuid.UUID, body: CaseClose
) -> CaseRead:
    """For the team manager or the case's lead practitioner; the team's members no longer open the child."""
    return admin.close_case(session, principal, auditor=auditor, case_id=case_id, data=body)

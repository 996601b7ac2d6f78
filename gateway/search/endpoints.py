"""Finding a child (routes only)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from gateway.auth.dependencies import CallerAuditor, StaffPrincipal
from gateway.kit.context import Keyring
from gateway.kit.db import DbSession
from gateway.kit.errors import ProblemRoute, problem_openapi

from . import service
from .schemas import ChildSearch, ChildSearchRead

ERRORS: dict[int | str, dict[str, Any]] = {
    401: problem_openapi("No valid bearer token."),
    403: problem_openapi("Not a staff token: agency systems may not search."),
    422: problem_openapi(
        "The terms cannot be searched: a field is not valid (named in the detail), or too few fields were given."
    ),
    503: problem_openapi("The database is busy; retry after the Retry-After seconds."),
}

router = APIRouter(prefix="/children", tags=["search"], route_class=ProblemRoute)


@router.post(
    "/search",
    response_model=ChildSearchRead,
    summary="Find a child by NHS number, or by two of name, birth date and postcode",
    responses=ERRORS,
)
def search_children(
    session: DbSession, principal: StaffPrincipal, auditor: CallerAuditor, keyring: Keyring, body: ChildSearch
) -> ChildSearchRead:
    """The children the terms find that you may open, how many others matched, and whom to ask for
    allocation; matched as identity linking matches. The search is audited, its terms only as a keyed hash."""
    return service.search(session, principal, auditor=auditor, keyring=keyring, body=body)

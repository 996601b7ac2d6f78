"""GET /api/v1/children/{child_id}/view (routes only)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Response

from gateway.auth.dependencies import CallerAuditor, StaffPrincipal
from gateway.kit.context import ActivePolicy, Keyring
from gateway.kit.db import DbSession
from gateway.kit.errors import ProblemRoute, problem_openapi
from policies import Purpose

from . import service
from .schemas import ChildViewRead


router = APIRouter(prefix="/children", tags=["children"], route_class=ProblemRoute)


@router.get(
    "/{child_id}/view",
    response_model=ChildViewRead,
    summary="The merged view of a child",
    responses={
        401: problem_openapi("No valid bearer token."),
        403: problem_openapi("Not a member of the team allocated to this child (the same whether or not it exists)."),
        410: problem_openapi("The child's record has been erased."),
        422: problem_openapi("The child id or purpose is not valid."),
        503: problem_openapi("The database is busy; retry after the Retry-After seconds."),
    },
)
def get_view(
    session: DbSession,
    principal: StaffPrincipal,
    auditor: CallerAuditor,
    keyring: Keyring,
    policy: ActivePolicy,
    child_id: uuid.UUID,
    purpose: Annotated[Purpose, Query(description="Why you are looking: child_protection or family_help.")],
) -> Response:
    """Return what the caller may see of a child for the stated purpose."""
    view = service.get(
        session, principal, auditor=auditor, keyring=keyring, policy=policy, child_id=child_id, purpose=purpose
    )
    # The service built the view from typed values: render it here, so that FastAPI does not check
    # it against response_model again (which still documents it above). by_alias, as FastAPI
    # renders: the bytes are the same (tests/gateway/child_view/test_service.py).
    return Response(view.model_dump_json(by_alias=True), media_type="application/json")

"""GET /api/v1/children/{child_id}/view (routes only)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Request

from gateway.auth.dependencies import StaffPrincipal
from gateway.kit.db import DbSession
from policies import Purpose

from . import service
from .schemas import ChildViewRead

router = APIRouter(prefix="/children", tags=["children"])


@router.get("/{child_id}/view", response_model=ChildViewRead, summary="The merged view of a child")
def get_view(
    request: Request,
    session: DbSession,
    principal: StaffPrincipal,
    child_id: uuid.UUID,
    purpose: Annotated[Purpose, Query(description="Why you are looking: child_protection or family_help.")],
) -> ChildViewRead:
    """Return what the caller may see of a child for the stated purpose."""
    return service.get(
        session,
        principal,
        keyring=request.app.state.keyring,
        policy=request.app.state.policy,
        child_id=child_id,
        purpose=purpose,
        request_id=request.state.request_id,
    )

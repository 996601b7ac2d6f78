"""Who may use the IG endpoints: staff whose role is `ig_officer`."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from audit import AuditAction
from gateway.auth.dependencies import CallerAuditor, StaffPrincipal
from gateway.auth.principal import Principal
from gateway.kit.errors import Forbidden

IG_OFFICER_ROLE = "ig_officer"


async def require_ig_officer(principal: StaffPrincipal, auditor: CallerAuditor) -> Principal:
    """Let only IG officers through; a refusal is audited (and so lands on the review queue)."""
    if principal.role != IG_OFFICER_ROLE:
        raise auditor.refuse(
            Forbidden(f"This endpoint is for information governance officers (role {IG_OFFICER_ROLE})."),
            AuditAction.IG_ACCESS_REFUSED,
        )
    return principal


IgOfficer = Annotated[Principal, Depends(require_ig_officer)]

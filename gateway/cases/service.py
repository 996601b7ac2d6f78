"""The one gate to a child's data: every read of it starts with require_child_access()."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from opentelemetry import trace
from sqlalchemy.orm import Session

from audit import AuditAction, AuditRecord, Outcome, record
from gateway.auth.principal import Principal
from gateway.kit.errors import AuditedRefusal
from gateway.models import Case, Team, TeamMember
from policies import Relationship

from . import repository

tracer = trace.get_tracer("gateway.cases")


@dataclass(frozen=True)
class ChildAccess:
    """Why this caller may open this child: the case, team and membership, and the relationship."""

    child_id: uuid.UUID
    relationship: Relationship
    case: Case
    team: Team
    member: TeamMember


def require_child_access(
    session: Session,
    principal: Principal,
    *,
    child_id: uuid.UUID,
    purpose: str,
    request_id: str | None = None,
) -> ChildAccess:
    """Return the caller's relationship to a child, or audit the refusal and raise 403."""
    with tracer.start_as_current_span("access"):
        allocation = repository.get_allocation(session, subject=principal.subject, child_id=child_id)
        # The token's agency must match the membership: a mismatch means one of them is wrong.
        if allocation is not None and allocation[2].agency == principal.agency:
            case, team, member = allocation
            return ChildAccess(child_id, Relationship.ALLOCATED_TEAM, case, team, member)
        record(
            session,
            AuditRecord(
                action=AuditAction.STAFF_VIEW_REFUSED,
                actor=principal.actor(),
                outcome=Outcome.DENIED,
                child_id=child_id,
                purpose=purpose,
                detail={"reason": "no_allocation"},
                request_id=request_id,
            ),
        )
        # The same answer whether or not the child exists, so a refusal reveals nothing.
        raise AuditedRefusal(
            403,
            "Forbidden",
            "You are not a member of the MACPT team allocated to this child. Ask the team's lead "
            "practitioner for allocation. This refusal has been recorded.",
        )

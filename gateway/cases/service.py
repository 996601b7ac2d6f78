"""The one gate to a child's data: every read of it starts with require_child_access()."""

from __future__ import annotations

import uuid

from opentelemetry import trace
from sqlalchemy.orm import Session

from audit import AuditAction
from gateway.auth.principal import Principal
from gateway.kit.auditor import Auditor
from gateway.kit.errors import Forbidden

from . import repository
from .access import ChildAccess

tracer = trace.get_tracer("gateway.cases")


def require_child_access(
    session: Session, principal: Principal, *, auditor: Auditor, child_id: uuid.UUID, purpose: str
) -> ChildAccess:
    """Return the caller's access to a child, or refuse with 403 (the refusal is audited)."""
    with tracer.start_as_current_span("access"):
        access = repository.get_child_access(session, principal, child_id=child_id)
        if access is not None:
            return access
        # The same answer whether or not the child exists, so a refusal reveals nothing.
        raise auditor.refuse(
            Forbidden(
                "You are not a member of the MACPT team allocated to this child. Ask the team's lead "
                "practitioner for allocation. This refusal has been recorded."
            ),
            AuditAction.STAFF_VIEW_REFUSED,
            child_id=child_id,
            purpose=purpose,
            detail={"reason": "no_allocation"},
        )

"""Overrides, break-glass and requests to see: the lawful routes past what the engine withholds.

Each takes the request's session, principal and auditor; each records its event in the same
transaction as its row, and a refusal stores nothing (problem+json names the field at fault).

- An override lets the ISA's consent-based rules share without or against consent while it is in
  force; only the allocated team's lead practitioner (or a role the ISA names) records one, and
  it always goes to the IG review queue.
- Break-glass gives a MACPT member without allocation access to one child, for child protection,
  for GATEWAY_BREAK_GLASS_MINUTES; the engine decides it under the rules that name `break_glass`,
  and every view under it goes to the IG review queue.
- A request to see asks for one item the engine withholds and says a request could open; the
  item's agency's member of the allocated team, or its lead practitioner, answers (never the
  requester). An approval discloses that item to that requester alone, for that purpose.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from audit import AuditAction, ReviewReason
from gateway.auth.principal import Principal
from gateway.cases import repository as cases_repository
from gateway.cases.access import AllocationGrant
from gateway.cases.service import require_child_access
from gateway.child_view.service import decide_one
from gateway.kit.auditor import Auditor
from gateway.kit.db import lock_all_for_transaction
from gateway.kit.errors import Conflict, ErrorDetail, Forbidden, NotFound, ValidationFailed
from gateway.models import BreakGlass, Child, Item, Override, RequestStatus, SeeRequest, Team, TeamMember, utcnow
from gateway.settings import Settings
from policies import DecisionKind, Policy, Purpose, Relationship

from . import repository
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

LEAD_PRACTITIONER_ROLE = "lead_practitioner"
CONSENT_BASIS = "consent"


def _invalid(location: str, message: str) -> ValidationFailed:
    return ValidationFailed(f"{location.removeprefix('body.')}: {message}", errors=[ErrorDetail(location, message)])


# ---------------------------------------------------------------- overrides


def record_override(
    session: Session,
    principal: Principal,
    *,
    auditor: Auditor,
    settings: Settings,
    policy: Policy,
    child_id: uuid.UUID,
    body: OverrideCreate,
) -> OverrideRead:
    """Record an override for a child (201), or refuse: not the lead practitioner (403), a bad field (422)."""
    access = require_child_access(session, principal, auditor=auditor, child_id=child_id, purpose=body.purpose)
    allowed = access.role == LEAD_PRACTITIONER_ROLE or access.role in policy.override_roles
    if not isinstance(access.grant, AllocationGrant) or not allowed:
        raise auditor.refuse(
            Forbidden(
                "Only the allocated team's lead practitioner"
                + (
                    f" (or a member whose role is one of {', '.join(policy.override_roles)})"
                    if policy.override_roles
                    else ""
                )
                + " may record an override. This refusal has been recorded."
            ),
            AuditAction.STAFF_OVERRIDE_REFUSED,
            child_id=child_id,
            purpose=body.purpose,
            detail={"reason": "not_lead_practitioner"},
        )
    now = utcnow()
    if body.lawful_basis not in policy.lawful_bases or body.lawful_basis == CONSENT_BASIS:
        bases = sorted(set(policy.lawful_bases) - {CONSENT_BASIS})
        raise _invalid("body.lawful_basis", f"must be one of the ISA's lawful bases other than consent: {bases}")
    if body.expires_at <= now:
        raise _invalid("body.expires_at", "must be in the future")
    if body.expires_at > now + timedelta(days=settings.max_override_days):
        raise _invalid("body.expires_at", f"must be at most {settings.max_override_days} days ahead")
    override = Override(
        child_id=child_id,
        purpose=body.purpose,
        agencies=sorted(set(body.agencies)),
        categories=sorted(set(body.categories)),
        lawful_basis=body.lawful_basis,
        justification=body.justification,
        decided_by=principal.subject,
        created_at=now,
        expires_at=body.expires_at,
    )
    session.add(override)
    session.flush()
    auditor.record(
        AuditAction.STAFF_OVERRIDE_RECORDED,
        child_id=child_id,
        purpose=body.purpose,
        lawful_basis=body.lawful_basis,
        policy_version=f"{policy.id}@{policy.version}",
        detail={"override_id": str(override.id), "expires_at": body.expires_at.isoformat()},
        review=[ReviewReason.OVERRIDE],
    )
    return OverrideRead.model_validate(override)


# ---------------------------------------------------------------- break-glass


def break_glass(
    session: Session,
    principal: Principal,
    *,
    auditor: Auditor,
    settings: Settings,
    policy: Policy,
    child_id: uuid.UUID,
    body: BreakGlassCreate,
) -> BreakGlassRead:
    """Grant a MACPT member time-limited access to a child they are not allocated (201), or refuse."""
    if body.purpose is not Purpose.CHILD_PROTECTION:
        raise _invalid(
            "body.purpose", "break-glass is for child protection only; family help relies on allocation and consent"
        )

    def refuse(message: str, reason: str) -> Forbidden:
        return auditor.refuse(
            Forbidden(message + " This refusal has been recorded."),
            AuditAction.STAFF_BREAK_GLASS_REFUSED,
            child_id=child_id,
            purpose=body.purpose,
            detail={"reason": reason},
        )

    if principal.role is None or not _is_macpt_member(session, principal):
        raise refuse("Break-glass is for members of a MACPT team.", "not_a_member")
    if not any(
        body.purpose in rule.purposes
        and principal.agency in rule.viewer_agencies
        and Relationship.BREAK_GLASS in rule.viewer_relationships
        for rule in policy.rules
    ):
        raise refuse(
            f"The ISA ({policy.id} v{policy.version}) gives break-glass no access for {principal.agency}.", "no_rule"
        )
    if session.get(Child, child_id) is None:
        raise NotFound("No child with this id.")
    # One grant at a time per member and child, even when two requests race.
    lock_all_for_transaction(session, [("break-glass", principal.subject, str(child_id))])
    existing = cases_repository.get_child_access(session, principal, child_id=child_id)
    if existing is not None:
        if isinstance(existing.grant, AllocationGrant):
            raise Conflict(
                "You are a member of the team allocated to this child: open the view; no break-glass is needed."
            )
        raise Conflict(
            f"You already have break-glass access to this child until {existing.grant.expires_at.isoformat()}."
        )
    now = utcnow()
    glass = BreakGlass(
        child_id=child_id,
        subject=principal.subject,
        agency=principal.agency,
        role=principal.role,
        purpose=body.purpose,
        reason=body.reason,
        started_at=now,
        expires_at=now + timedelta(minutes=settings.break_glass_minutes),
    )
    session.add(glass)
    session.flush()
    auditor.record(
        AuditAction.STAFF_BREAK_GLASS_STARTED,
        child_id=child_id,
        purpose=body.purpose,
        policy_version=f"{policy.id}@{policy.version}",
        detail={"break_glass_id": str(glass.id), "expires_at": glass.expires_at.isoformat()},
        review=[ReviewReason.BREAK_GLASS],
    )
    return BreakGlassRead.model_validate(glass)


def _is_macpt_member(session: Session, principal: Principal) -> bool:
    return (
        session.scalar(
            select(TeamMember.id)
            .join(Team, Team.id == TeamMember.team_id)
            .where(
                TeamMember.subject == principal.subject,
                TeamMember.agency == principal.agency,
                TeamMember.active.is_(True),
                Team.active.is_(True),
            )
            .limit(1)
        )
        is not None
    )


# ---------------------------------------------------------------- requests to see


def create_request(
    session: Session,
    principal: Principal,
    *,
    auditor: Auditor,
    policy: Policy,
    child_id: uuid.UUID,
    body: SeeRequestCreate,
) -> SeeRequestRead:
    """Ask to see one item the engine withholds from the caller and a request could open (201), or refuse."""
    access = require_child_access(session, principal, auditor=auditor, child_id=child_id, purpose=body.purpose)
    if not isinstance(access.grant, AllocationGrant):
        raise auditor.refuse(
            Forbidden(
                "Requests to see are answered by the allocated team: they are for its members, not under "
                "break-glass. This refusal has been recorded."
            ),
            AuditAction.STAFF_REQUEST_REFUSED,
            child_id=child_id,
            purpose=body.purpose,
            detail={"reason": "not_allocated"},
        )
    item = repository.get_current_item(session, access, item_id=body.item_id)
    decision = None if item is None else decide_one(session, access, policy=policy, purpose=body.purpose, item=item)
    # The same answer for an item of another child, one that does not exist, and one withheld
    # silently: a request reveals nothing the view does not.
    if item is None or decision is None or decision.kind is DecisionKind.WITHHOLD_SILENTLY:
        raise _invalid("body.item_id", "no item withheld from you with this id in this child's view")
    if decision.shown:
        raise _invalid(
            "body.item_id", f"this item is not withheld from you for {body.purpose.value}: it is in your view"
        )
    if not decision.requestable:
        raise _invalid(
            "body.item_id",
            f"this item is withheld by {decision.rule_id}, which a request cannot open ({decision.reason}) "
            f"Ask {decision.ask or 'the lead practitioner'}.",
        )
    # One pending request per member, item and purpose, even when two requests race.
    lock_all_for_transaction(session, [("see-request", access.subject, str(item.id), body.purpose.value)])
    if repository.get_pending_request(session, access, item_id=item.id, purpose=body.purpose) is not None:
        raise Conflict("You already have a pending request to see this item for this purpose.")
    request = SeeRequest(
        child_id=child_id,
        item_id=item.id,
        team_id=access.grant.team_id,
        requester=access.subject,
        requester_agency=access.agency,
        requester_role=access.role,
        purpose=body.purpose,
        justification=body.justification,
        withheld_by=decision.rule_id,
        status=RequestStatus.PENDING,
        created_at=utcnow(),
    )
    session.add(request)
    session.flush()
    auditor.record(
        AuditAction.STAFF_REQUEST_CREATED,
        child_id=child_id,
        purpose=body.purpose,
        policy_version=f"{policy.id}@{policy.version}",
        detail={"request_id": str(request.id), "item_id": str(item.id), "withheld_by": decision.rule_id},
    )
    return _read(request, item)


def list_requests(
    session: Session,
    principal: Principal,
    *,
    auditor: Auditor,
    status: RequestStatus | None,
    mine: bool,
    limit: int,
) -> SeeRequestsRead:
    """Return the requests the caller may answer (or, with `mine`, their own), newest first; audited."""
    if mine:
        rows = repository.select_own(session, subject=principal.subject, status=status, limit=limit)
    else:
        rows = repository.select_answerable(
            session,
            subject=principal.subject,
            agency=principal.agency,
            lead_role=LEAD_PRACTITIONER_ROLE,
            status=status,
            limit=limit,
        )
    auditor.record(
        AuditAction.STAFF_REQUESTS_LISTED,
        detail={"mine": mine, "status": None if status is None else status.value, "count": len(rows)},
    )
    return SeeRequestsRead(requests=[_read(request, item) for request, item in rows])


def decide_request(
    session: Session,
    principal: Principal,
    *,
    auditor: Auditor,
    request_id: uuid.UUID,
    body: SeeRequestDecision,
) -> SeeRequestRead:
    """Approve or decline a pending request (the item's agency's member of the team, or its lead practitioner)."""
    request = session.scalar(select(SeeRequest).where(SeeRequest.id == request_id).with_for_update())
    answerable = {
        r.id
        for r, _item in repository.select_answerable(
            session,
            subject=principal.subject,
            agency=principal.agency,
            lead_role=LEAD_PRACTITIONER_ROLE,
            status=None,
            limit=1,
            request_id=request_id,
        )
    }
    if request is None or (request.id not in answerable and request.requester != principal.subject):
        # Not found and not yours to answer look alike: a request id reveals nothing.
        raise auditor.refuse(
            NotFound("No request with this id that you may answer."),
            AuditAction.STAFF_REQUEST_REFUSED,
            detail={"reason": "not_an_approver", "request_id": str(request_id)},
        )
    if request.requester == principal.subject:
        raise auditor.refuse(
            Forbidden(
                "You cannot decide your own request: another member of the team must. This refusal has been recorded."
            ),
            AuditAction.STAFF_REQUEST_REFUSED,
            child_id=request.child_id,
            detail={"reason": "own_request", "request_id": str(request.id)},
        )
    if request.status is not RequestStatus.PENDING:
        raise Conflict(
            f"This request was already {request.status.value} by another member at {request.decided_at.isoformat() if request.decided_at else 'an earlier time'}."
        )
    approved = body.decision == "approve"
    request.status = RequestStatus.APPROVED if approved else RequestStatus.DECLINED
    request.decided_by = principal.subject
    request.decided_at = utcnow()
    request.decision_note = body.note
    session.flush()
    item = session.get_one(Item, request.item_id)
    auditor.record(
        AuditAction.STAFF_REQUEST_DECIDED,
        child_id=request.child_id,
        purpose=request.purpose,
        detail={"request_id": str(request.id), "item_id": str(request.item_id), "decision": request.status.value},
        review=[ReviewReason.REQUEST_APPROVED] if approved else (),
    )
    return _read(request, item)


def _read(request: SeeRequest, item: Item) -> SeeRequestRead:
    read = SeeRequestRead.model_validate(request)
    return read.model_copy(update={"item_agency": item.agency, "item_category": item.category})

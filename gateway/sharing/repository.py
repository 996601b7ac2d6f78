"""Queries of the sharing workflow: one child's items as the engine sees them, requests and who answers them."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway.cases.access import ChildAccess
from gateway.models import Case, Item, RequestStatus, SeeRequest, TeamMember
from policies import CaseStatus, Purpose, RecordStatus


def get_current_item(session: Session, access: ChildAccess, *, item_id: uuid.UUID) -> Item | None:
    """Return one current item of the child the access opens (None for another child's, or a retracted one)."""
    return session.scalar(
        select(Item).where(Item.id == item_id, Item.child_id == access.child_id, Item.status == RecordStatus.CURRENT)
    )


def get_pending_request(
    session: Session, access: ChildAccess, *, item_id: uuid.UUID, purpose: Purpose
) -> SeeRequest | None:
    """Return the caller's pending request for this item and purpose, if any."""
    return session.scalar(
        select(SeeRequest).where(
            SeeRequest.child_id == access.child_id,
            SeeRequest.requester == access.subject,
            SeeRequest.item_id == item_id,
            SeeRequest.purpose == purpose,
            SeeRequest.status == RequestStatus.PENDING,
        )
    )


def select_answerable(
    session: Session,
    *,
    subject: str,
    agency: str,
    lead_role: str,
    status: RequestStatus | None,
    limit: int,
    request_id: uuid.UUID | None = None,
) -> list[tuple[SeeRequest, Item]]:
    """Return requests the caller may answer, newest first: they are an active member of the request's
    team, the team's case for the child is still open, and they are of the item's agency or the team's
    lead practitioner; never their own requests."""
    query = (
        select(SeeRequest, Item)
        .join(Item, Item.id == SeeRequest.item_id)
        .join(TeamMember, TeamMember.team_id == SeeRequest.team_id)
        .join(Case, (Case.team_id == SeeRequest.team_id) & (Case.child_id == SeeRequest.child_id))
        .where(
            TeamMember.subject == subject,
            TeamMember.agency == agency,
            TeamMember.active.is_(True),
            Case.status == CaseStatus.OPEN,
            SeeRequest.requester != subject,
            (TeamMember.agency == Item.agency) | (TeamMember.role == lead_role),
        )
        .order_by(SeeRequest.created_at.desc())
        .limit(limit)
    )
    if status is not None:
        query = query.where(SeeRequest.status == status)
    if request_id is not None:
        query = query.where(SeeRequest.id == request_id)
    return [(request, item) for request, item in session.execute(query).unique()]


def select_own(
    session: Session, *, subject: str, status: RequestStatus | None, limit: int
) -> list[tuple[SeeRequest, Item]]:
    """Return the caller's own requests, newest first."""
    query = (
        select(SeeRequest, Item)
        .join(Item, Item.id == SeeRequest.item_id)
        .where(SeeRequest.requester == subject)
        .order_by(SeeRequest.created_at.desc())
        .limit(limit)
    )
    if status is not None:
        query = query.where(SeeRequest.status == status)
    return [(request, item) for request, item in session.execute(query)]

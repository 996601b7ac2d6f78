"""Queries for allocation: which children a staff member may open, and on what grant."""

from __future__ import annotations

import uuid

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from gateway.auth.principal import Principal
from gateway.models import Case, Team, TeamMember
from policies import CaseStatus, Relationship

from .access import AllocationGrant, ChildAccess


def select_accessible_children(principal: Principal) -> Select[uuid.UUID, uuid.UUID, uuid.UUID, uuid.UUID, str]:
    """Select (child id, case id, team id, member id, role) for every child the caller may open.

    The one definition of access (polar's `select_accessible_org_ids` pattern): search, views
    and every other read of a child's data are built on it. A membership counts only when the
    token's agency matches the membership's: a mismatch means one of them is wrong.
    """
    return (
        select(Case.child_id, Case.id, Team.id, TeamMember.id, TeamMember.role)
        .join(Team, Team.id == Case.team_id)
        .join(TeamMember, TeamMember.team_id == Team.id)
        .where(
            Case.status == CaseStatus.OPEN,
            TeamMember.subject == principal.subject,
            TeamMember.agency == principal.agency,
            TeamMember.active.is_(True),
        )
    )


def get_child_access(session: Session, principal: Principal, *, child_id: uuid.UUID) -> ChildAccess | None:
    """Return the caller's access to one child, if the access query grants any."""
    row = session.execute(
        select_accessible_children(principal).where(Case.child_id == child_id).order_by(Case.opened_at).limit(1)
    ).first()
    if row is None:
        return None
    _child, case_id, team_id, member_id, role = row
    return ChildAccess(
        child_id=child_id,
        subject=principal.subject,
        agency=principal.agency,
        role=role,
        relationship=Relationship.ALLOCATED_TEAM,
        grant=AllocationGrant(case_id=case_id, team_id=team_id, member_id=member_id),
    )


def get_allocation(session: Session, access: ChildAccess) -> tuple[Case, Team]:
    """Return the case and team of an allocation grant (key facts of the view)."""
    row = session.execute(
        select(Case, Team).join(Team, Team.id == Case.team_id).where(Case.id == access.grant.case_id)
    ).one()
    return row[0], row[1]

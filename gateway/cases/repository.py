"""Queries for allocation: which children a staff member may open, and on what grant."""

from __future__ import annotations

import uuid
from typing import NamedTuple
from collections.abc import Collection

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session, aliased

from gateway.auth.principal import Principal
from gateway.models import BreakGlass, Case, Child, ChildIdentifier, Team, TeamMember, utcnow
from policies import CaseStatus, Relationship

from .access import AllocationGrant, BreakGlassGrant, ChildAccess, Grant


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
    """Return the caller's access to one child, if the access query grants any.

    Allocation first; else a break-glass grant of the caller's, for this child, not yet expired.
    """
    row = session.execute(
        select_accessible_children(principal).where(Case.child_id == child_id).order_by(Case.opened_at).limit(1)
    ).first()
    grant: Grant
    if row is not None:
        _child, case_id, team_id, member_id, role = row
        relationship, grant = Relationship.ALLOCATED_TEAM, AllocationGrant(case_id, team_id, member_id)
    else:
        glass = get_live_break_glass(session, principal, child_id=child_id)
        if glass is None:
            return None
        # The role the member had when they broke the glass (the token's role then).
        role, relationship, grant = glass.role, Relationship.BREAK_GLASS, BreakGlassGrant(glass.id, glass.expires_at)
    return ChildAccess(
        child_id=child_id,
        subject=principal.subject,
        agency=principal.agency,
        role=role,
        relationship=relationship,
        grant=grant,
    )


def get_live_break_glass(session: Session, principal: Principal, *, child_id: uuid.UUID) -> BreakGlass | None:
    """Return the caller's newest unexpired break-glass grant for a child (same agency as when granted)."""
    return session.scalar(
        select(BreakGlass)
        .where(
            BreakGlass.subject == principal.subject,
            BreakGlass.agency == principal.agency,
            BreakGlass.child_id == child_id,
            BreakGlass.expires_at > utcnow(),
        )
        .order_by(BreakGlass.expires_at.desc())
        .limit(1)
    )


class Allocation(NamedTuple):
    """The case behind an access, its team, and the display name of the member it names as lead."""

    case: Case
    team: Team
    lead_name: str | None


def get_allocation(session: Session, access: ChildAccess) -> Allocation | None:
    """Return the case, team and lead's name behind the access (key facts of the view), in one query.

    Allocation: the case that grants it. Break-glass: the child's open case, if it has one (its
    oldest), else None: a child can need urgent protection before any team has its case. The lead's
    name is None when the case names no member of its team (older rows hold a display name).
    """
    lead = aliased(TeamMember)
    query = (
        select(Case, Team, lead.display_name)
        .join(Team, Team.id == Case.team_id)
        .outerjoin(lead, (lead.team_id == Case.team_id) & (lead.subject == Case.lead_practitioner))
    )
    if isinstance(access.grant, AllocationGrant):
        query = query.where(Case.id == access.grant.case_id)
    else:
        query = query.where(Case.child_id == access.child_id, Case.status == CaseStatus.OPEN).order_by(Case.opened_at)
    row = session.execute(query.limit(1)).first()
    return None if row is None else Allocation(row[0], row[1], row[2])


# -- teams, members and cases (the management API, cases/admin.py) -------------------------------


def get_team(session: Session, *, team_id: uuid.UUID, for_update: bool = False) -> Team | None:
    """Return a team (locked for the transaction's update when asked)."""
    statement = select(Team).where(Team.id == team_id).execution_options(populate_existing=True)
    return session.scalar(statement.with_for_update() if for_update else statement)


def get_teams(session: Session, *, member: Principal | None) -> list[Team]:
    """Return every team (member None), or the teams the caller is an active member of, by name."""
    statement = select(Team).order_by(Team.name, Team.id)
    if member is not None:
        statement = statement.where(
            Team.id.in_(
                select(TeamMember.team_id).where(
                    TeamMember.subject == member.subject,
                    TeamMember.agency == member.agency,
                    TeamMember.active.is_(True),
                )
            )
        )
    return list(session.scalars(statement))


def get_members(session: Session, *, team_ids: Collection[uuid.UUID]) -> dict[uuid.UUID, list[TeamMember]]:
    """Return the members (active and deactivated) of each team, in the order they were added."""
    members: dict[uuid.UUID, list[TeamMember]] = {team_id: [] for team_id in team_ids}
    if team_ids:
        rows = session.scalars(
            select(TeamMember)
            .where(TeamMember.team_id.in_(set(team_ids)))
            .order_by(TeamMember.added_at, TeamMember.id)
        )
        for member in rows:
            members[member.team_id].append(member)
    return members


def get_member(session: Session, *, team_id: uuid.UUID, member_id: uuid.UUID) -> TeamMember | None:
    """Return one member of a team, locked for the transaction's update."""
    return session.scalar(
        select(TeamMember)
        .where(TeamMember.id == member_id, TeamMember.team_id == team_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )


def get_member_by_subject(session: Session, *, team_id: uuid.UUID, subject: str) -> TeamMember | None:
    """Return the team's member (active or not) with a sign-in subject."""
    return session.scalar(
        select(TeamMember)
        .where(TeamMember.team_id == team_id, TeamMember.subject == subject)
        .execution_options(populate_existing=True)
    )


def get_membership(session: Session, principal: Principal, *, team_id: uuid.UUID) -> TeamMember | None:
    """Return the caller's active membership of a team, counted only when the token's agency matches it."""
    return session.scalar(
        select(TeamMember).where(
            TeamMember.team_id == team_id,
            TeamMember.subject == principal.subject,
            TeamMember.agency == principal.agency,
            TeamMember.active.is_(True),
        )
    )


def count_open_cases(session: Session, *, team_id: uuid.UUID, lead_practitioner: str | None = None) -> int:
    """Count a team's open cases (those one lead practitioner leads, when named)."""
    statement = select(func.count()).select_from(Case).where(Case.team_id == team_id, Case.status == CaseStatus.OPEN)
    if lead_practitioner is not None:
        statement = statement.where(Case.lead_practitioner == lead_practitioner)
    return session.scalar(statement) or 0


def get_case(session: Session, *, case_id: uuid.UUID, for_update: bool = False) -> Case | None:
    """Return a case (locked for the transaction's update when asked)."""
    statement = select(Case).where(Case.id == case_id).execution_options(populate_existing=True)
    return session.scalar(statement.with_for_update() if for_update else statement)


def get_open_case(session: Session, *, team_id: uuid.UUID, child_id: uuid.UUID) -> Case | None:
    """Return the child's open case with a team, if it has one."""
    return session.scalar(
        select(Case)
        .where(Case.team_id == team_id, Case.child_id == child_id, Case.status == CaseStatus.OPEN)
        .limit(1)
    )


def get_cases(
    session: Session, principal: Principal, *, team_id: uuid.UUID | None, status: CaseStatus | None, limit: int
) -> list[Case]:
    """Return the cases of the teams the caller is an active member of (one team's, when named), newest first."""
    statement = (
        select(Case)
        .join(TeamMember, TeamMember.team_id == Case.team_id)
        .where(
            TeamMember.subject == principal.subject,
            TeamMember.agency == principal.agency,
            TeamMember.active.is_(True),
        )
        .order_by(Case.opened_at.desc(), Case.id)
        .limit(limit)
    )
    if team_id is not None:
        statement = statement.where(Case.team_id == team_id)
    if status is not None:
        statement = statement.where(Case.status == status)
    return list(session.scalars(statement))


def get_child(session: Session, *, child_id: uuid.UUID) -> Child | None:
    """Return a child by id, to open a case on it (its data stays behind ChildAccess)."""
    return session.get(Child, child_id)


def get_child_id_by_identifier(session: Session, *, scheme: str, blind_index: str) -> uuid.UUID | None:
    """Return the child an identifier's blind index names, if any."""
    return session.scalar(
        select(ChildIdentifier.child_id).where(
            ChildIdentifier.scheme == scheme, ChildIdentifier.blind_index == blind_index
        )
    )

"""Queries for other agencies' person queries: the querying client, a child's allocations, the queue."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session, aliased

from gateway.auth.principal import Principal
from gateway.kit.db import insert_all
from gateway.models import Case, Client, PersonQueryReferral, ReferralStatus, Team, TeamMember, utcnow
from policies import Agency, CaseStatus

# The team role whose holder leads a case (notifications/routing.py names the same role).
LEAD_PRACTITIONER = "lead_practitioner"


@dataclass(frozen=True)
class OpenAllocation:
    """An open case of a child, its active team, and the display name of the team's lead practitioner."""

    case_id: uuid.UUID
    team_id: uuid.UUID
    team_name: str
    local_authority: str
    lead_name: str | None


def get_client(session: Session, *, client_id: str) -> Client | None:
    """Return a registered client by id."""
    return session.get(Client, client_id)


def get_open_allocations(session: Session, *, child_id: uuid.UUID) -> list[OpenAllocation]:
    """Return a child's open cases with active teams, oldest first, each with its lead's display name.

    The lead is the member the case names (by sign-in subject), else the team's active member
    with the lead practitioner role (the first by subject), else None. Only names are read.
    """
    named = aliased(TeamMember)
    rows = session.execute(
        select(Case.id, Team.id, Team.name, Team.local_authority, named.display_name)
        .join(Team, Team.id == Case.team_id)
        .outerjoin(
            named,
            and_(named.team_id == Case.team_id, named.subject == Case.lead_practitioner, named.active.is_(True)),
        )
        .where(Case.child_id == child_id, Case.status == CaseStatus.OPEN, Team.active.is_(True))
        .order_by(Case.opened_at, Case.id)
    ).all()
    unnamed = {team_id for _case, team_id, _name, _la, lead in rows if lead is None}
    leads: dict[uuid.UUID, str] = {}
    if unnamed:
        for team_id, display_name in session.execute(
            select(TeamMember.team_id, TeamMember.display_name)
            .where(
                TeamMember.team_id.in_(unnamed),
                TeamMember.role == LEAD_PRACTITIONER,
                TeamMember.active.is_(True),
            )
            .order_by(TeamMember.subject)
        ):
            leads.setdefault(team_id, display_name)
    return [
        OpenAllocation(case_id, team_id, name, local_authority, lead or leads.get(team_id))
        for case_id, team_id, name, local_authority, lead in rows
    ]


def create_referrals(
    session: Session,
    *,
    query_id: uuid.UUID,
    client_id: str,
    agency: Agency,
    reason: str,
    child_id: uuid.UUID,
    allocations: Sequence[OpenAllocation],
) -> None:
    """Put a referred query on the queue of each allocated team (one insert; no row is locked)."""
    now = utcnow()
    insert_all(
        session,
        PersonQueryReferral,
        [
            {
                "id": uuid.uuid4(),
                "query_id": query_id,
                "client_id": client_id,
                "agency": agency,
                "reason": reason,
                "child_id": child_id,
                "case_id": allocation.case_id,
                "team_id": allocation.team_id,
                "status": ReferralStatus.PENDING,
                "created_at": now,
            }
            for allocation in allocations
        ],
    )


@dataclass(frozen=True)
class DecidableReferral:
    """A referred query the caller may decide, with the querying client's name and the team's."""

    referral: PersonQueryReferral
    client_name: str
    team_name: str


def get_decidable(
    session: Session,
    principal: Principal,
    *,
    statuses: Collection[ReferralStatus] | None,
    limit: int,
    referral_id: uuid.UUID | None = None,
) -> list[DecidableReferral]:
    """Return the referred queries the caller may decide, newest first.

    The caller decides a referral when the case it waits on is open and they are an active
    member of the case's team (the token's agency matching the membership's) who is either the
    team's lead practitioner by role or the member the case names as its lead practitioner.
    """
    leads = (
        select(TeamMember.id)
        .where(
            TeamMember.team_id == PersonQueryReferral.team_id,
            TeamMember.subject == principal.subject,
            TeamMember.agency == principal.agency,
            TeamMember.active.is_(True),
            or_(TeamMember.role == LEAD_PRACTITIONER, TeamMember.subject == Case.lead_practitioner),
        )
        .exists()
    )
    query = (
        select(PersonQueryReferral, Client.name, Team.name)
        .join(Case, Case.id == PersonQueryReferral.case_id)
        .join(Client, Client.id == PersonQueryReferral.client_id)
        .join(Team, Team.id == PersonQueryReferral.team_id)
        .where(Case.status == CaseStatus.OPEN, leads)
        .order_by(PersonQueryReferral.created_at.desc(), PersonQueryReferral.id)
        .limit(limit)
    )
    if statuses is not None:
        query = query.where(PersonQueryReferral.status.in_(list(statuses)))
    if referral_id is not None:
        query = query.where(PersonQueryReferral.id == referral_id)
    return [DecidableReferral(referral, client_name, team_name) for referral, client_name, team_name in session.execute(query)]


def get_referral_for_update(session: Session, *, referral_id: uuid.UUID) -> PersonQueryReferral | None:
    """Return a referred query locked for this transaction's update (SELECT … FOR UPDATE), freshly read."""
    return session.scalar(
        select(PersonQueryReferral)
        .where(PersonQueryReferral.id == referral_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )

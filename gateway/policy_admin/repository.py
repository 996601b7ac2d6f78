"""Queries for policy versions, and for the population a policy is explained or compared over."""

from __future__ import annotations

import uuid
from typing import NamedTuple

from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway.cases.access import ChildAccess
from gateway.kit.db import insert_if_absent
from gateway.models import Case, Child, PolicyVersion, RequestStatus, SeeRequest, TeamMember
from policies import Agency, CaseStatus, Purpose


class MemberRow(NamedTuple):
    """An active member of a team: who they are to the policy engine."""

    team_id: uuid.UUID
    subject: str
    agency: Agency
    role: str


class OpenCase(NamedTuple):
    """A child's open case and the team it is allocated to."""

    child_id: uuid.UUID
    team_id: uuid.UUID


def add_version_if_new(session: Session, *, sha256: str, policy_id: str, version: str, text: str) -> bool:
    """Store an ISA text under its hash unless stored already; say whether this call stored it.

    INSERT … ON CONFLICT DO NOTHING: two workers starting at once with the same text meet at the
    unique index, and the second waits for the first, then stores nothing, instead of failing.
    """
    return insert_if_absent(
        session,
        PolicyVersion,
        {"sha256": sha256, "policy_id": policy_id, "version": version, "text": text},
        unique=["sha256"],
    )


def get_version(session: Session, *, sha256: str) -> PolicyVersion | None:
    """Return the stored ISA text with a hash."""
    return session.scalar(select(PolicyVersion).where(PolicyVersion.sha256 == sha256))


def child_exists(session: Session, *, child_id: uuid.UUID) -> bool:
    """Say whether the gateway knows a child id (its data stays behind ChildAccess)."""
    return session.scalar(select(Child.id).where(Child.id == child_id)) is not None


def get_open_case(session: Session, *, child_id: uuid.UUID) -> OpenCase | None:
    """Return the child's oldest open case (the one the view is opened through), if any."""
    row = session.execute(
        select(Case.child_id, Case.team_id)
        .where(Case.child_id == child_id, Case.status == CaseStatus.OPEN)
        .order_by(Case.opened_at, Case.id)
        .limit(1)
    ).first()
    return None if row is None else OpenCase(*row)


def get_open_cases(session: Session) -> list[OpenCase]:
    """Return every open case, one per child (its oldest), by child id."""
    rows = session.execute(
        select(Case.child_id, Case.team_id)
        .where(Case.status == CaseStatus.OPEN)
        .order_by(Case.child_id, Case.opened_at, Case.id)
    ).all()
    cases: dict[uuid.UUID, OpenCase] = {}
    for child_id, team_id in rows:
        cases.setdefault(child_id, OpenCase(child_id, team_id))
    return list(cases.values())


def get_membership_for_child(session: Session, *, child_id: uuid.UUID, subject: str) -> MemberRow | None:
    """Return a subject's active membership of a team with an open case on the child (the oldest case first)."""
    row = session.execute(
        select(TeamMember.team_id, TeamMember.subject, TeamMember.agency, TeamMember.role)
        .join(Case, Case.team_id == TeamMember.team_id)
        .where(
            Case.child_id == child_id,
            Case.status == CaseStatus.OPEN,
            TeamMember.subject == subject,
            TeamMember.active.is_(True),
        )
        .order_by(Case.opened_at, Case.id)
        .limit(1)
    ).first()
    return None if row is None else MemberRow(*row)


def get_any_membership(session: Session, *, subject: str) -> MemberRow | None:
    """Return one of a subject's active memberships of any team (their agency and role), if any."""
    row = session.execute(
        select(TeamMember.team_id, TeamMember.subject, TeamMember.agency, TeamMember.role)
        .where(TeamMember.subject == subject, TeamMember.active.is_(True))
        .order_by(TeamMember.added_at, TeamMember.id)
        .limit(1)
    ).first()
    return None if row is None else MemberRow(*row)


def get_active_members(session: Session, *, team_ids: set[uuid.UUID]) -> dict[uuid.UUID, list[MemberRow]]:
    """Return the active members of each team, by subject."""
    members: dict[uuid.UUID, list[MemberRow]] = {team_id: [] for team_id in team_ids}
    if not team_ids:
        return members
    rows = session.execute(
        select(TeamMember.team_id, TeamMember.subject, TeamMember.agency, TeamMember.role)
        .where(TeamMember.team_id.in_(team_ids), TeamMember.active.is_(True))
        .order_by(TeamMember.subject, TeamMember.id)
    )
    for row in rows:
        members[row.team_id].append(MemberRow(*row))
    return members


def get_approvals(session: Session, access: ChildAccess) -> dict[tuple[str, Agency, Purpose], dict[uuid.UUID, uuid.UUID]]:
    """Return every approved request to see about the child: (requester, agency, purpose) → item id → request id."""
    rows = session.execute(
        select(SeeRequest.requester, SeeRequest.requester_agency, SeeRequest.purpose, SeeRequest.item_id, SeeRequest.id)
        .where(SeeRequest.child_id == access.child_id, SeeRequest.status == RequestStatus.APPROVED)
        .order_by(SeeRequest.decided_at)
    )
    approvals: dict[tuple[str, Agency, Purpose], dict[uuid.UUID, uuid.UUID]] = {}
    for requester, agency, purpose, item_id, request_id in rows:
        approvals.setdefault((requester, agency, purpose), {})[item_id] = request_id
    return approvals

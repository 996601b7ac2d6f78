"""Queries for allocation: which open case links a staff member to a child."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway.models import Case, Team, TeamMember


def get_allocation(session: Session, *, subject: str, child_id: uuid.UUID) -> tuple[Case, Team, TeamMember] | None:
    """Return the open case, team and membership that give a staff member this child, if any."""
    row = session.execute(
        select(Case, Team, TeamMember)
        .join(Team, Team.id == Case.team_id)
        .join(TeamMember, TeamMember.team_id == Team.id)
        .where(
            Case.child_id == child_id,
            Case.status == "open",
            TeamMember.subject == subject,
            TeamMember.active.is_(True),
        )
        .limit(1)
    ).first()
    return None if row is None else (row[0], row[1], row[2])

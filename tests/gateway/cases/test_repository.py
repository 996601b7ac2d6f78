"""Access is one set-returning query: the children a caller may open, and nothing else."""

from __future__ import annotations

import uuid

from sqlalchemy.orm import Session

from gateway.auth.principal import Principal, PrincipalKind
from gateway.cases.access import AllocationGrant
from gateway.cases.repository import get_child_access, select_accessible_children
from gateway.models import Child, TeamMember
from policies import Agency, CaseStatus, Relationship
from tests.factories import add_member, allocate, make_team


def _child(session: Session) -> uuid.UUID:
    child = Child(wrapped_data_key=b"\x00" * 40)
    session.add(child)
    session.flush()
    return child.id


def _principal(member: TeamMember) -> Principal:
    return Principal(PrincipalKind.STAFF, member.subject, member.agency, member.role)


def test_the_set_is_the_open_cases_of_every_team_the_member_is_active_on(session: Session) -> None:
    north, west, south = make_team(session, name="North"), make_team(session, name="West"), make_team(session)
    subject = f"nurse.{uuid.uuid4().hex[:6]}@test.example"
    member = add_member(session, north, agency="health", role="designated_nurse", subject=subject)
    add_member(session, west, agency="health", role="designated_nurse", subject=subject)
    left = add_member(session, south, agency="health", role="designated_nurse", subject=subject)
    left.active = False
    on_north, on_west, closed, on_south, nobodys = (_child(session) for _ in range(5))
    allocate(session, child_id=on_north, team=north)
    allocate(session, child_id=on_west, team=west)
    allocate(session, child_id=closed, team=north).status = CaseStatus.CLOSED
    allocate(session, child_id=on_south, team=south)
    session.flush()

    rows = session.execute(select_accessible_children(_principal(member))).all()

    assert {row[0] for row in rows} == {on_north, on_west}
    assert nobodys not in {row[0] for row in rows}


def test_a_token_whose_agency_differs_from_the_membership_opens_nothing(session: Session) -> None:
    team = make_team(session)
    member = add_member(session, team, agency="police", role="police_officer")
    child_id = _child(session)
    allocate(session, child_id=child_id, team=team)
    impostor = Principal(PrincipalKind.STAFF, member.subject, Agency.HEALTH, member.role)

    assert session.execute(select_accessible_children(impostor)).all() == []
    assert get_child_access(session, impostor, child_id=child_id) is None


def test_one_childs_access_names_the_viewer_and_the_grant(session: Session) -> None:
    team = make_team(session)
    member = add_member(session, team, agency="education", role="designated_safeguarding_lead")
    child_id = _child(session)
    case = allocate(session, child_id=child_id, team=team)

    access = get_child_access(session, _principal(member), child_id=child_id)

    assert access is not None
    assert (access.child_id, access.subject, access.agency, access.role) == (
        child_id, member.subject, Agency.EDUCATION, "designated_safeguarding_lead"
    )
    assert access.relationship is Relationship.ALLOCATED_TEAM
    assert access.grant == AllocationGrant(case_id=case.id, team_id=team.id, member_id=member.id)
    assert get_child_access(session, _principal(member), child_id=_child(session)) is None

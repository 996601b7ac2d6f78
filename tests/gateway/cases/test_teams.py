"""Teams and their members over HTTP: only a partnership administrator manages them, every change
and refusal is audited, and a deactivated member stops opening the team's children."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from audit import AuditAction, AuditEvent
from gateway.auth.keys import SigningKeys
from gateway.auth.principal import Principal, PrincipalKind
from gateway.auth.tokens import mint_access_token
from gateway.kit.crypto import DataKeyring
from gateway.models import Team, TeamMember
from gateway.settings import Settings
from policies import Agency
from tests.factories import add_member, allocate, child_bundle, client_token, demo_child, make_client, make_team
from tests.gateway.helpers import child_id_for, get_view, last_event, push

PROBLEM_JSON = "application/problem+json"
ADMIN = Principal(PrincipalKind.STAFF, "partnership.admin@test.example", Agency.SOCIAL_CARE, "partnership_admin")

Caller = Principal | TeamMember


@dataclass(frozen=True)
class Api:
    """The app, and the keys to call it as anyone."""

    http: TestClient
    session: Session
    settings: Settings
    signing_keys: SigningKeys
    keyring: DataKeyring

    def token(self, caller: Caller) -> str:
        principal = (
            caller
            if isinstance(caller, Principal)
            else Principal(PrincipalKind.STAFF, caller.subject, caller.agency, caller.role)
        )
        return mint_access_token(
            self.signing_keys,
            issuer=self.settings.issuer,
            audience=self.settings.audience,
            principal=principal,
            ttl_seconds=300,
        )

    def call(self, method: str, path: str, caller: Caller, body: Any = None, **params: Any) -> Response:
        response: Response = self.http.request(
            method,
            f"/api/v1{path}",
            json=body,
            params=params,
            headers={"Authorization": f"Bearer {self.token(caller)}"},
        )
        return response

    def child(self) -> uuid.UUID:
        """Push a child with an NHS number as a health system; return its id."""
        source, _key = make_client(self.session)
        child = demo_child()
        pushed = push(self.http, client_token(self.signing_keys, self.settings, source), child_bundle(child))
        assert pushed.status_code == 200, pushed.text
        return child_id_for(self.session, self.keyring, child.nhs_number)


@pytest.fixture
def api(
    client: TestClient, session: Session, settings: Settings, signing_keys: SigningKeys, keyring: DataKeyring
) -> Api:
    return Api(client, session, settings, signing_keys, keyring)


def problem(response: Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    return body


def locations(response: Response) -> list[str]:
    return [error["location"] for error in problem(response, 422)["errors"]]


def count(session: Session, model: type[Any]) -> int:
    return session.scalar(select(func.count()).select_from(model)) or 0


def events(session: Session, action: str) -> list[AuditEvent]:
    return list(session.scalars(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.seq)))


def reread(session: Session, model: type[Any], row_id: uuid.UUID) -> Any:
    return session.get(model, row_id, populate_existing=True)


# Staff who are not partnership administrators: each kind of caller is refused the admin routes.
NOT_ADMINS = [
    pytest.param("team_manager", Agency.SOCIAL_CARE, id="team_manager"),
    pytest.param("lead_practitioner", Agency.SOCIAL_CARE, id="lead_practitioner"),
    pytest.param("police_officer", Agency.POLICE, id="police_officer"),
]


@pytest.fixture
def team(session: Session) -> Team:
    return make_team(session, name="Northshire MACPT")


# -- creating and changing teams -------------------------------------------------------------------


def test_a_partnership_administrator_creates_a_team_and_it_is_audited(api: Api, session: Session) -> None:
    response = api.call("POST", "/teams", ADMIN, {"name": " Westshire MACPT ", "local_authority": "Westshire Council"})

    assert response.status_code == 201, response.text
    body = response.json()
    assert body["name"] == "Westshire MACPT" and body["local_authority"] == "Westshire Council"
    assert body["active"] is True and body["members"] == []
    stored = reread(session, Team, uuid.UUID(body["id"]))
    assert stored is not None and stored.name == "Westshire MACPT"
    event = last_event(session, AuditAction.STAFF_TEAM_CREATED)
    assert event.outcome == "success" and event.actor_id == ADMIN.subject and event.actor_role == "partnership_admin"
    assert event.detail == {"team_id": body["id"]}


@pytest.mark.parametrize(("role", "agency"), NOT_ADMINS)
def test_anyone_else_is_refused_creating_a_team_audited_and_nothing_is_stored(
    api: Api, session: Session, team: Team, role: str, agency: Agency
) -> None:
    member = add_member(session, team, agency=agency, role=role)
    teams = count(session, Team)

    body = problem(api.call("POST", "/teams", member, {"name": "Rogue team", "local_authority": "Nowhere"}), 403)

    assert "partnership administrator" in body["detail"]
    assert count(session, Team) == teams
    assert events(session, AuditAction.STAFF_TEAM_CREATED) == []
    refusal = last_event(session, AuditAction.STAFF_ADMIN_REFUSED)
    assert refusal.outcome == "denied" and refusal.actor_id == member.subject
    assert refusal.detail["operation"] == "create_team"


@pytest.mark.parametrize(
    ("body", "location"),
    [
        ({"local_authority": "Westshire Council"}, "body.name"),
        ({"name": "   ", "local_authority": "Westshire Council"}, "body.name"),
        ({"name": "Westshire", "local_authority": "x" * 201}, "body.local_authority"),
        ({"name": "West\x00shire", "local_authority": "Westshire Council"}, "body.name"),
        ({"name": "Westshire", "local_authority": "Westshire Council", "active": False}, "body.active"),
    ],
    ids=["missing", "blank", "too_long", "control_character", "unknown_field"],
)
def test_a_bad_team_is_refused_naming_the_field_and_nothing_is_stored(
    api: Api, session: Session, body: dict[str, Any], location: str
) -> None:
    teams = count(session, Team)

    response = api.call("POST", "/teams", ADMIN, body)

    assert locations(response) == [location]
    assert count(session, Team) == teams
    assert events(session, AuditAction.STAFF_TEAM_CREATED) == []


def test_an_administrator_renames_and_deactivates_a_team_each_change_audited_by_field(
    api: Api, session: Session, team: Team
) -> None:
    renamed = api.call("PATCH", f"/teams/{team.id}", ADMIN, {"name": "North MACPT"})
    unchanged = api.call("PATCH", f"/teams/{team.id}", ADMIN, {"local_authority": team.local_authority})
    deactivated = api.call("PATCH", f"/teams/{team.id}", ADMIN, {"active": False})

    assert renamed.status_code == 200 and renamed.json()["name"] == "North MACPT"
    assert unchanged.status_code == 200
    assert deactivated.status_code == 200 and deactivated.json()["active"] is False
    assert reread(session, Team, team.id).active is False
    updates = events(session, AuditAction.STAFF_TEAM_UPDATED)
    # Nothing changed, nothing recorded: two events for the two real changes.
    assert [event.detail for event in updates] == [
        {"team_id": str(team.id), "fields": ["name"]},
        {"team_id": str(team.id), "fields": ["active"]},
    ]


def test_a_team_with_an_open_case_is_not_deactivated(api: Api, session: Session, team: Team) -> None:
    allocate(session, child_id=api.child(), team=team)

    body = problem(api.call("PATCH", f"/teams/{team.id}", ADMIN, {"active": False, "name": "Renamed"}), 409)

    assert "open case" in body["detail"]
    stored = reread(session, Team, team.id)
    assert stored.active is True and stored.name == "Northshire MACPT"
    assert events(session, AuditAction.STAFF_TEAM_UPDATED) == []


@pytest.mark.parametrize(
    ("body", "location"),
    [
        ({"name": None}, "body.name"),
        ({"active": None}, "body.active"),
        ({"name": ""}, "body.name"),
        ({"colour": "red"}, "body.colour"),
    ],
    ids=["null_name", "null_active", "empty_name", "unknown_field"],
)
def test_a_bad_team_change_is_refused_naming_the_field(
    api: Api, session: Session, team: Team, body: dict[str, Any], location: str
) -> None:
    assert locations(api.call("PATCH", f"/teams/{team.id}", ADMIN, body)) == [location]
    stored = reread(session, Team, team.id)
    assert stored.name == "Northshire MACPT" and stored.active is True
    assert events(session, AuditAction.STAFF_TEAM_UPDATED) == []


@pytest.mark.parametrize(("role", "agency"), NOT_ADMINS)
def test_only_an_administrator_changes_a_team_or_its_members(
    api: Api, session: Session, team: Team, role: str, agency: Agency
) -> None:
    member = add_member(session, team, agency=agency, role=role)
    other = add_member(session, team, agency="health", role="health_practitioner")
    attempts = [
        ("PATCH", f"/teams/{team.id}", {"name": "Mine now"}, "update_team"),
        (
            "POST",
            f"/teams/{team.id}/members",
            {"subject": "x@test.example", "display_name": "X", "agency": "police", "role": "police_officer"},
            "add_member",
        ),
        ("PATCH", f"/teams/{team.id}/members/{other.id}", {"role": "team_manager"}, "update_member"),
        ("POST", f"/teams/{team.id}/members/{other.id}/deactivate", None, "deactivate_member"),
        ("POST", f"/teams/{team.id}/members/{member.id}/deactivate", None, "deactivate_member"),
    ]
    members = count(session, TeamMember)

    for method, path, body, operation in attempts:
        problem(api.call(method, path, member, body), 403)
        refusal = last_event(session, AuditAction.STAFF_ADMIN_REFUSED)
        # Every refusal lands on the IG review queue as well.
        assert refusal.detail == {"operation": operation, "team_id": str(team.id), "review": ["refused"]}

    assert count(session, TeamMember) == members
    assert reread(session, Team, team.id).name == "Northshire MACPT"
    assert reread(session, TeamMember, other.id).role == "health_practitioner"
    assert reread(session, TeamMember, other.id).active and reread(session, TeamMember, member.id).active


def test_changing_a_team_that_does_not_exist_is_404(api: Api) -> None:
    problem(api.call("PATCH", f"/teams/{uuid.uuid4()}", ADMIN, {"name": "Ghost"}), 404)
    problem(api.call("GET", f"/teams/{uuid.uuid4()}", ADMIN), 404)
    problem(api.call("POST", f"/teams/{uuid.uuid4()}/members", ADMIN, _member_body()), 404)


# -- seeing teams ------------------------------------------------------------------------------------


def test_an_administrator_sees_every_team_and_a_member_only_their_own(api: Api, session: Session, team: Team) -> None:
    other = make_team(session, name="Southshire MACPT")
    left = make_team(session, name="Eastshire MACPT")
    member = add_member(session, team, agency="health", role="health_practitioner")
    gone = add_member(session, left, agency="health", role="health_practitioner", subject=member.subject)
    gone.active = False
    add_member(session, other, agency="police", role="police_officer")
    session.flush()

    as_admin = api.call("GET", "/teams", ADMIN)
    as_member = api.call("GET", "/teams", member)
    wrong_agency = api.call("GET", "/teams", Principal(PrincipalKind.STAFF, member.subject, Agency.POLICE, member.role))

    assert as_admin.status_code == 200
    assert {str(t.id) for t in (team, other, left)} <= {t["id"] for t in as_admin.json()["teams"]}
    assert as_member.status_code == 200
    [mine] = as_member.json()["teams"]
    assert mine["id"] == str(team.id)
    assert [m["subject"] for m in mine["members"]] == [member.subject]
    assert wrong_agency.json() == {"teams": []}
    listed = events(session, AuditAction.STAFF_TEAMS_LISTED)
    assert [(e.actor_id, e.detail["teams"]) for e in listed][1:] == [(member.subject, 1), (member.subject, 0)]
    assert listed[0].detail["as_admin"] is True


def test_a_team_is_shown_with_its_members_to_a_member_and_refused_to_anyone_else(
    api: Api, session: Session, team: Team
) -> None:
    member = add_member(session, team, agency="education", role="education_officer")
    outsider = add_member(session, make_team(session, name="Elsewhere"), agency="education", role="team_manager")

    shown = api.call("GET", f"/teams/{team.id}", member)
    refused = api.call("GET", f"/teams/{team.id}", outsider)
    unknown = api.call("GET", f"/teams/{uuid.uuid4()}", outsider)

    assert shown.status_code == 200
    assert shown.json()["members"][0] | {"added_at": None} == {
        "id": str(member.id),
        "subject": member.subject,
        "display_name": member.display_name,
        "agency": "education",
        "role": "education_officer",
        "active": True,
        "added_at": None,
        "deactivated_at": None,
    }
    # The same refusal whether or not the team exists.
    assert problem(refused, 403)["detail"] == problem(unknown, 403)["detail"]
    refusal = last_event(session, AuditAction.STAFF_ADMIN_REFUSED)
    assert refusal.actor_id == outsider.subject and refusal.detail["operation"] == "get_team"
    assert last_event(session, AuditAction.STAFF_TEAMS_LISTED).detail == {"team_id": str(team.id)}


# -- members -----------------------------------------------------------------------------------------


def _member_body(**fields: Any) -> dict[str, Any]:
    body = {
        "subject": f"dc.{uuid.uuid4().hex[:6]}@police.test.example",
        "display_name": "DC Test Officer",
        "agency": "police",
        "role": "police_officer",
    }
    return body | fields


def test_an_administrator_adds_a_member_audited_without_their_name(api: Api, session: Session, team: Team) -> None:
    body = _member_body()

    response = api.call("POST", f"/teams/{team.id}/members", ADMIN, body)

    assert response.status_code == 201, response.text
    added = response.json()
    assert {k: added[k] for k in body} == body and added["active"] is True and added["deactivated_at"] is None
    stored = reread(session, TeamMember, uuid.UUID(added["id"]))
    assert stored.team_id == team.id and stored.agency is Agency.POLICE
    event = last_event(session, AuditAction.STAFF_MEMBER_ADDED)
    assert event.detail == {
        "team_id": str(team.id),
        "member_id": added["id"],
        "agency": "police",
        "role": "police_officer",
        "reactivated": False,
    }
    assert body["display_name"] not in str(event.detail) and body["subject"] not in str(event.detail)


def test_an_active_member_added_again_is_409_and_a_deactivated_one_is_reactivated(
    api: Api, session: Session, team: Team
) -> None:
    member = add_member(session, team, agency="health", role="health_practitioner")

    again = api.call("POST", f"/teams/{team.id}/members", ADMIN, _member_body(subject=member.subject))
    assert "already an active member" in problem(again, 409)["detail"]
    assert count(session, TeamMember) == 1

    assert api.call("POST", f"/teams/{team.id}/members/{member.id}/deactivate", ADMIN).status_code == 200
    back = api.call(
        "POST",
        f"/teams/{team.id}/members",
        ADMIN,
        _member_body(subject=member.subject, agency="social_care", role="team_manager", display_name="Sam Manager"),
    )

    assert back.status_code == 201, back.text
    assert back.json()["id"] == str(member.id)
    stored = reread(session, TeamMember, member.id)
    assert (stored.active, stored.deactivated_at, stored.agency, stored.role, stored.display_name) == (
        True,
        None,
        Agency.SOCIAL_CARE,
        "team_manager",
        "Sam Manager",
    )
    assert count(session, TeamMember) == 1
    assert last_event(session, AuditAction.STAFF_MEMBER_ADDED).detail["reactivated"] is True


@pytest.mark.parametrize(
    ("fields", "location"),
    [
        ({"role": "Police_Officer"}, "body.role"),
        ({"role": "1st_officer"}, "body.role"),
        ({"role": "police officer"}, "body.role"),
        ({"role": "r" * 65}, "body.role"),
        ({"agency": "fire_service"}, "body.agency"),
        ({"subject": ""}, "body.subject"),
        ({"subject": "x" * 256}, "body.subject"),
        ({"display_name": "Line\nbreak"}, "body.display_name"),
        ({"team_id": str(uuid.uuid4())}, "body.team_id"),
    ],
    ids=[
        "uppercase",
        "leading_digit",
        "space",
        "too_long",
        "agency",
        "empty_subject",
        "long_subject",
        "newline",
        "unknown",
    ],
)
def test_a_bad_member_is_refused_naming_the_field_and_nothing_is_stored(
    api: Api, session: Session, team: Team, fields: dict[str, Any], location: str
) -> None:
    assert locations(api.call("POST", f"/teams/{team.id}/members", ADMIN, _member_body(**fields))) == [location]
    assert count(session, TeamMember) == 0
    assert events(session, AuditAction.STAFF_MEMBER_ADDED) == []


def test_a_role_of_64_characters_is_accepted(api: Api, team: Team) -> None:
    response = api.call("POST", f"/teams/{team.id}/members", ADMIN, _member_body(role="r" * 64))

    assert response.status_code == 201 and response.json()["role"] == "r" * 64


def test_an_administrator_changes_a_members_role_and_name(api: Api, session: Session, team: Team) -> None:
    member = add_member(session, team, agency="social_care", role="social_worker")

    response = api.call(
        "PATCH",
        f"/teams/{team.id}/members/{member.id}",
        ADMIN,
        {"role": "lead_practitioner", "display_name": "Jo Lead"},
    )

    assert response.status_code == 200, response.text
    assert (response.json()["role"], response.json()["display_name"]) == ("lead_practitioner", "Jo Lead")
    stored = reread(session, TeamMember, member.id)
    assert (stored.role, stored.display_name, stored.subject) == ("lead_practitioner", "Jo Lead", member.subject)
    event = last_event(session, AuditAction.STAFF_MEMBER_UPDATED)
    assert event.detail == {
        "team_id": str(team.id),
        "member_id": str(member.id),
        "fields": ["display_name", "role"],
        "role": "lead_practitioner",
    }


@pytest.mark.parametrize(
    ("body", "location"),
    [
        ({"role": None}, "body.role"),
        ({"role": "Lead"}, "body.role"),
        ({"display_name": None}, "body.display_name"),
        ({"agency": "police"}, "body.agency"),
    ],
    ids=["null_role", "bad_role", "null_name", "agency_is_not_changed_here"],
)
def test_a_bad_member_change_is_refused_naming_the_field(
    api: Api, session: Session, team: Team, body: dict[str, Any], location: str
) -> None:
    member = add_member(session, team, agency="social_care", role="social_worker")

    assert locations(api.call("PATCH", f"/teams/{team.id}/members/{member.id}", ADMIN, body)) == [location]
    stored = reread(session, TeamMember, member.id)
    assert (stored.role, stored.display_name, stored.agency) == (
        "social_worker",
        "Test social_worker",
        Agency.SOCIAL_CARE,
    )
    assert events(session, AuditAction.STAFF_MEMBER_UPDATED) == []


def test_a_member_is_found_only_on_their_own_team(api: Api, session: Session, team: Team) -> None:
    member = add_member(session, team, agency="police", role="police_officer")
    other = make_team(session, name="Other MACPT")

    problem(api.call("PATCH", f"/teams/{other.id}/members/{member.id}", ADMIN, {"role": "team_manager"}), 404)
    problem(api.call("POST", f"/teams/{other.id}/members/{member.id}/deactivate", ADMIN), 404)
    problem(api.call("POST", f"/teams/{team.id}/members/{uuid.uuid4()}/deactivate", ADMIN), 404)
    stored = reread(session, TeamMember, member.id)
    assert stored.active and stored.role == "police_officer"


def test_a_deactivated_member_loses_the_teams_children_and_is_not_deactivated_twice(
    api: Api, session: Session, team: Team
) -> None:
    child_id = api.child()
    case = allocate(session, child_id=child_id, team=team)
    member = add_member(session, team, agency="police", role="police_officer")
    lead = add_member(session, team, agency="social_care", role="lead_practitioner")
    case.lead_practitioner = lead.subject
    session.flush()
    assert get_view(api.http, api.token(member), child_id).status_code == 200

    response = api.call("POST", f"/teams/{team.id}/members/{member.id}/deactivate", ADMIN)

    assert response.status_code == 200, response.text
    assert response.json()["active"] is False and response.json()["deactivated_at"] is not None
    stored = reread(session, TeamMember, member.id)
    assert stored.active is False and stored.deactivated_at is not None
    assert get_view(api.http, api.token(member), child_id).status_code == 403
    assert get_view(api.http, api.token(lead), child_id).status_code == 200
    assert last_event(session, AuditAction.STAFF_VIEW_REFUSED).actor_id == member.subject
    assert last_event(session, AuditAction.STAFF_MEMBER_DEACTIVATED).detail == {
        "team_id": str(team.id),
        "member_id": str(member.id),
        "open_cases_led": 0,
    }
    # Their team is no longer theirs either.
    assert api.call("GET", "/teams", member).json() == {"teams": []}
    problem(api.call("GET", f"/teams/{team.id}", member), 403)

    again = api.call("POST", f"/teams/{team.id}/members/{member.id}/deactivate", ADMIN)
    assert "already deactivated" in problem(again, 409)["detail"]
    changed = api.call("PATCH", f"/teams/{team.id}/members/{member.id}", ADMIN, {"role": "team_manager"})
    assert problem(changed, 409)
    assert len(events(session, AuditAction.STAFF_MEMBER_DEACTIVATED)) == 1

    lead_leaves = api.call("POST", f"/teams/{team.id}/members/{lead.id}/deactivate", ADMIN)
    assert lead_leaves.status_code == 200
    assert last_event(session, AuditAction.STAFF_MEMBER_DEACTIVATED).detail["open_cases_led"] == 1

"""Cases over HTTP: who opens, changes, closes and reads them, what is checked, what is audited, and
what the child's view shows and who opens it as a result."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from audit import AuditAction
from gateway.auth.keys import SigningKeys
from gateway.auth.principal import Principal, PrincipalKind
from gateway.cases import admin
from gateway.cases.schemas import CaseCreate
from gateway.kit.auditor import Auditor
from gateway.kit.crypto import DataKeyring
from gateway.models import Case, Child, PlanCategory, Team, TeamMember
from gateway.settings import Settings
from policies import Agency, CaseStatus
from tests.factories import (
    add_member,
    allocate,
    child_bundle,
    client_token,
    demo_child,
    make_client,
    make_team,
    nhs_number,
)
from tests.gateway.cases.test_teams import ADMIN, Api, events, locations, problem, reread
from tests.gateway.helpers import child_id_for, get_view, last_event, push


@dataclass(frozen=True)
class Macpt:
    """A team with a manager, a lead practitioner and a police officer, and a child pushed by a health system."""

    team: Team
    manager: TeamMember
    lead: TeamMember
    officer: TeamMember
    child_id: uuid.UUID
    nhs_number: str


@pytest.fixture
def api(
    client: TestClient, session: Session, settings: Settings, signing_keys: SigningKeys, keyring: DataKeyring
) -> Api:
    return Api(client, session, settings, signing_keys, keyring)


@pytest.fixture
def macpt(api: Api, session: Session) -> Macpt:
    team = make_team(session, name="Northshire MACPT")
    manager = add_member(session, team, agency="social_care", role="team_manager")
    lead = add_member(session, team, agency="social_care", role="lead_practitioner")
    lead.display_name = "Jo Lead"
    officer = add_member(session, team, agency="police", role="police_officer")
    source, _key = make_client(session)
    child = demo_child()
    pushed = push(api.http, client_token(api.signing_keys, api.settings, source), child_bundle(child))
    assert pushed.status_code == 200, pushed.text
    return Macpt(team, manager, lead, officer, child_id_for(session, api.keyring, child.nhs_number), child.nhs_number)


def opening(macpt: Macpt, **fields: Any) -> dict[str, Any]:
    body = {"team_id": str(macpt.team.id), "child_id": str(macpt.child_id), "lead_practitioner": macpt.lead.subject}
    return {k: v for k, v in (body | fields).items() if v is not None}


def cases(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(Case)) or 0


def open_one(api: Api, macpt: Macpt, **fields: Any) -> dict[str, Any]:
    response = api.call("POST", "/cases", macpt.manager, opening(macpt, **fields))
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


# -- opening ---------------------------------------------------------------------------------------


def test_a_team_manager_opens_a_case_and_the_team_then_opens_the_childs_view(
    api: Api, session: Session, macpt: Macpt
) -> None:
    assert get_view(api.http, api.token(macpt.officer), macpt.child_id).status_code == 403

    body = open_one(api, macpt)

    assert body | {"id": None, "opened_at": None} == {
        "id": None,
        "child_id": str(macpt.child_id),
        "team_id": str(macpt.team.id),
        "status": "open",
        "lead_practitioner": macpt.lead.subject,
        "opened_at": None,
        "opened_by": macpt.manager.subject,
        "closed_at": None,
        "closed_by": None,
        "close_reason": None,
        "cp_plan": None,
        "looked_after": False,
        "looked_after_since": None,
    }
    stored = reread(session, Case, uuid.UUID(body["id"]))
    assert stored.status is CaseStatus.OPEN and stored.child_id == macpt.child_id
    event = last_event(session, AuditAction.STAFF_CASE_OPENED)
    assert event.child_id == macpt.child_id and event.actor_id == macpt.manager.subject
    assert event.detail == {"case_id": body["id"], "team_id": str(macpt.team.id), "found_by": "child_id", "fields": []}
    view = get_view(api.http, api.token(macpt.officer), macpt.child_id)
    assert view.status_code == 200, view.text
    facts = view.json()["key_facts"]
    assert facts["open_case"] is True and facts["allocated_team"]["id"] == str(macpt.team.id)
    # The case stores the lead's subject; the view shows their name.
    assert facts["lead_practitioner"] == "Jo Lead"
    assert (facts["child_protection_plan"], facts["looked_after"], facts["looked_after_since"]) == (None, False, None)


def test_a_lead_practitioner_opens_a_case_by_nhs_number_with_its_key_facts(
    api: Api, session: Session, macpt: Macpt
) -> None:
    spaced = f"{macpt.nhs_number[:3]} {macpt.nhs_number[3:6]} {macpt.nhs_number[6:]}"
    response = api.call(
        "POST",
        "/cases",
        macpt.lead,
        opening(
            macpt,
            child_id=None,
            nhs_number=spaced,
            cp_plan={"start": "2026-09-01", "category": "neglect"},
            looked_after=True,
            looked_after_since="2026-08-15",
        ),
    )

    assert response.status_code == 201, response.text
    body = response.json()
    assert body["child_id"] == str(macpt.child_id) and body["opened_by"] == macpt.lead.subject
    assert body["cp_plan"] == {"start": "2026-09-01", "category": "neglect", "end": None}
    assert (body["looked_after"], body["looked_after_since"]) == (True, "2026-08-15")
    stored = reread(session, Case, uuid.UUID(body["id"]))
    assert (stored.cp_plan_start, stored.cp_plan_category, stored.looked_after_since) == (
        date(2026, 9, 1),
        PlanCategory.NEGLECT,
        date(2026, 8, 15),
    )
    event = last_event(session, AuditAction.STAFF_CASE_OPENED)
    assert event.detail["found_by"] == "nhs_number"
    assert event.detail["fields"] == ["cp_plan", "looked_after", "looked_after_since"]
    assert macpt.nhs_number not in str(event.detail) and "neglect" not in str(event.detail)


def test_an_unknown_nhs_number_is_404_audited_without_the_number_and_nothing_is_stored(
    api: Api, session: Session, macpt: Macpt
) -> None:
    unknown = nhs_number()
    before = cases(session)

    response = api.call("POST", "/cases", macpt.manager, opening(macpt, child_id=None, nhs_number=unknown))

    assert problem(response, 404)["detail"] == "No child with that NHS number."
    assert cases(session) == before
    assert events(session, AuditAction.STAFF_CASE_OPENED) == []
    refusal = last_event(session, AuditAction.STAFF_CASE_REFUSED)
    assert refusal.outcome == "failure" and refusal.child_id is None
    assert refusal.detail["reason"] == "no_child_with_nhs_number" and unknown not in str(refusal.detail)


def test_an_unknown_child_is_404_and_nothing_is_stored(api: Api, session: Session, macpt: Macpt) -> None:
    before = cases(session)

    response = api.call("POST", "/cases", macpt.manager, opening(macpt, child_id=str(uuid.uuid4())))

    assert problem(response, 404)["detail"] == "No such child."
    assert cases(session) == before


@pytest.mark.parametrize(
    "caller",
    [
        "police_officer_of_the_team",
        "team_manager_of_another_team",
        "manager_with_another_agency",
        "partnership_admin",
        "deactivated_manager",
    ],
)
def test_only_an_active_manager_or_lead_of_the_team_opens_a_case_and_refusals_are_audited(
    api: Api, session: Session, macpt: Macpt, caller: str
) -> None:
    who: Principal | TeamMember
    if caller == "police_officer_of_the_team":
        who = macpt.officer
    elif caller == "team_manager_of_another_team":
        who = add_member(session, make_team(session, name="Southshire"), agency="social_care", role="team_manager")
    elif caller == "manager_with_another_agency":
        who = Principal(PrincipalKind.STAFF, macpt.manager.subject, Agency.HEALTH, "team_manager")
    elif caller == "partnership_admin":
        who = ADMIN
    else:
        macpt.manager.active = False
        session.flush()
        who = macpt.manager
    before = cases(session)

    response = api.call("POST", "/cases", who, opening(macpt))

    assert "team manager or a lead practitioner" in problem(response, 403)["detail"]
    assert cases(session) == before
    assert events(session, AuditAction.STAFF_CASE_OPENED) == []
    refusal = last_event(session, AuditAction.STAFF_CASE_REFUSED)
    assert refusal.outcome == "denied" and refusal.child_id == macpt.child_id
    assert refusal.detail["team_id"] == str(macpt.team.id)
    assert refusal.detail["reason"] == ("role" if caller == "police_officer_of_the_team" else "not_a_member")


def test_a_second_open_case_for_the_same_team_is_409_but_another_team_or_a_reopening_is_not(
    api: Api, session: Session, macpt: Macpt
) -> None:
    first = open_one(api, macpt)

    again = api.call("POST", "/cases", macpt.lead, opening(macpt))
    assert "already has an open case" in problem(again, 409)["detail"]
    assert cases(session) == 1

    south = make_team(session, name="Southshire MACPT")
    south_manager = add_member(session, south, agency="social_care", role="team_manager")
    south_lead = add_member(session, south, agency="social_care", role="lead_practitioner")
    elsewhere = api.call(
        "POST",
        "/cases",
        south_manager,
        {"team_id": str(south.id), "child_id": str(macpt.child_id), "lead_practitioner": south_lead.subject},
    )
    assert elsewhere.status_code == 201, elsewhere.text

    closed = api.call("POST", f"/cases/{first['id']}/close", macpt.manager, {"reason": "Plan ended"})
    assert closed.status_code == 200
    reopened = open_one(api, macpt)
    assert reopened["id"] != first["id"]
    assert cases(session) == 3


def test_a_merged_child_is_409_pointing_to_the_child_it_was_merged_into_without_ids(
    api: Api, session: Session, macpt: Macpt
) -> None:
    survivor = Child(wrapped_data_key=b"\x00" * 40)
    merged = Child(wrapped_data_key=b"\x00" * 40)
    session.add_all([survivor, merged])
    session.flush()
    merged.merged_into_id = survivor.id
    session.flush()

    response = api.call("POST", "/cases", macpt.manager, opening(macpt, child_id=str(merged.id)))

    detail = problem(response, 409)["detail"]
    assert detail == "This child was merged; open the case on the child it was merged into."
    assert str(survivor.id) not in response.text
    assert cases(session) == 0


def test_an_erased_child_is_410(api: Api, session: Session, macpt: Macpt) -> None:
    erased = Child(wrapped_data_key=None)
    session.add(erased)
    session.flush()

    problem(api.call("POST", "/cases", macpt.manager, opening(macpt, child_id=str(erased.id))), 410)
    assert cases(session) == 0


def test_no_case_is_opened_on_a_deactivated_team(api: Api, session: Session, macpt: Macpt) -> None:
    macpt.team.active = False
    session.flush()

    response = api.call("POST", "/cases", macpt.manager, opening(macpt))

    assert "deactivated" in problem(response, 409)["detail"]
    assert cases(session) == 0


@pytest.mark.parametrize(
    ("fields", "location"),
    [
        ({"nhs_number": "9434765919"}, "body.child_id"),  # both
        ({"child_id": None}, "body.child_id"),  # neither
        ({"child_id": None, "nhs_number": "9434765918"}, "body.nhs_number"),  # check digit wrong
        ({"child_id": "not-a-uuid"}, "body.child_id"),
        ({"team_id": None}, "body.team_id"),
        ({"lead_practitioner": None}, "body.lead_practitioner"),
        ({"lead_practitioner": "nobody@test.example"}, "body.lead_practitioner"),
        ({"lead_practitioner": "officer"}, "body.lead_practitioner"),  # a member, not a lead practitioner
        ({"lead_practitioner": "deactivated"}, "body.lead_practitioner"),
        ({"lead_practitioner": "of_another_team"}, "body.lead_practitioner"),
        ({"cp_plan": {"start": "2026-09-01", "category": "neglect", "end": "2026-08-31"}}, "body.cp_plan.end"),
        ({"cp_plan": {"start": "2026-09-01", "category": "bullying"}}, "body.cp_plan.category"),
        ({"cp_plan": {"category": "neglect"}}, "body.cp_plan.start"),
        ({"cp_plan": {"start": "2026-09-01", "category": "neglect", "review": "2027-01-01"}}, "body.cp_plan.review"),
        ({"looked_after_since": "2026-08-15"}, "body.looked_after_since"),
        ({"looked_after": "perhaps"}, "body.looked_after"),
        ({"status": "closed"}, "body.status"),
    ],
    ids=[
        "child_id_and_nhs_number",
        "neither",
        "bad_nhs_number",
        "bad_child_id",
        "no_team",
        "no_lead",
        "lead_unknown",
        "lead_not_a_lead",
        "lead_deactivated",
        "lead_of_another_team",
        "plan_ends_before_it_starts",
        "plan_category",
        "plan_without_start",
        "plan_unknown_field",
        "looked_after_since_without_looked_after",
        "looked_after_not_bool",
        "unknown_field",
    ],
)
def test_a_bad_case_is_refused_naming_the_field_and_nothing_is_stored(
    api: Api, session: Session, macpt: Macpt, fields: dict[str, Any], location: str
) -> None:
    gone = add_member(session, macpt.team, agency="social_care", role="lead_practitioner")
    gone.active = False
    stranger = add_member(session, make_team(session, name="Other"), agency="social_care", role="lead_practitioner")
    named = {"officer": macpt.officer.subject, "deactivated": gone.subject, "of_another_team": stranger.subject}
    if fields.get("lead_practitioner") in named:
        fields = fields | {"lead_practitioner": named[fields["lead_practitioner"]]}
    body = opening(macpt) | fields
    body = {k: v for k, v in body.items() if v is not None}
    before = cases(session)

    response = api.call("POST", "/cases", macpt.manager, body)

    assert location in locations(response)
    problem_body = response.json()
    if problem_body["detail"] != "The request failed validation.":
        # Checked by the service: the detail names the field itself.
        assert location.rsplit(".", 1)[-1] in problem_body["detail"]
    assert cases(session) == before
    assert events(session, AuditAction.STAFF_CASE_OPENED) == []


# -- changing and closing --------------------------------------------------------------------------


def test_a_change_of_plan_and_looked_after_status_appears_in_the_view_and_is_audited_by_field(
    api: Api, session: Session, macpt: Macpt
) -> None:
    case = open_one(api, macpt)

    response = api.call(
        "PATCH",
        f"/cases/{case['id']}",
        macpt.manager,
        {
            "cp_plan": {"start": "2026-10-01", "category": "emotional_abuse"},
            "looked_after": True,
            "looked_after_since": "2026-10-02",
        },
    )

    assert response.status_code == 200, response.text
    assert response.json()["cp_plan"] == {"start": "2026-10-01", "category": "emotional_abuse", "end": None}
    facts = get_view(api.http, api.token(macpt.officer), macpt.child_id).json()["key_facts"]
    assert facts["child_protection_plan"] == {"start": "2026-10-01", "category": "emotional_abuse", "end": None}
    assert (facts["looked_after"], facts["looked_after_since"]) == (True, "2026-10-02")
    event = last_event(session, AuditAction.STAFF_CASE_UPDATED)
    assert event.child_id == macpt.child_id and event.actor_id == macpt.manager.subject
    assert event.detail == {
        "case_id": case["id"],
        "team_id": str(macpt.team.id),
        "fields": ["cp_plan", "looked_after", "looked_after_since"],
    }
    assert "emotional" not in str(event.detail)

    ended = api.call(
        "PATCH",
        f"/cases/{case['id']}",
        macpt.lead,
        {"cp_plan": {"start": "2026-10-01", "category": "emotional_abuse", "end": "2027-04-01"}, "looked_after": False},
    )

    assert ended.status_code == 200, ended.text
    facts = get_view(api.http, api.token(macpt.officer), macpt.child_id).json()["key_facts"]
    assert facts["child_protection_plan"]["end"] == "2027-04-01"
    # No longer looked after: no "since" either.
    assert (facts["looked_after"], facts["looked_after_since"]) == (False, None)
    assert last_event(session, AuditAction.STAFF_CASE_UPDATED).detail["fields"] == [
        "cp_plan",
        "looked_after",
        "looked_after_since",
    ]

    removed = api.call("PATCH", f"/cases/{case['id']}", macpt.manager, {"cp_plan": None})
    assert removed.status_code == 200 and removed.json()["cp_plan"] is None
    assert (
        get_view(api.http, api.token(macpt.officer), macpt.child_id).json()["key_facts"]["child_protection_plan"]
        is None
    )


def test_a_new_lead_practitioner_is_shown_by_name_and_takes_over_the_case(
    api: Api, session: Session, macpt: Macpt
) -> None:
    case = open_one(api, macpt)
    successor = add_member(session, macpt.team, agency="social_care", role="lead_practitioner")
    successor.display_name = "Sam Successor"
    session.flush()

    response = api.call("PATCH", f"/cases/{case['id']}", macpt.lead, {"lead_practitioner": successor.subject})

    assert response.status_code == 200 and response.json()["lead_practitioner"] == successor.subject
    assert get_view(api.http, api.token(macpt.officer), macpt.child_id).json()["key_facts"]["lead_practitioner"] == (
        "Sam Successor"
    )
    assert last_event(session, AuditAction.STAFF_CASE_UPDATED).detail["fields"] == ["lead_practitioner"]
    # The former lead is no longer the case's lead: they may not change it now.
    problem(api.call("PATCH", f"/cases/{case['id']}", macpt.lead, {"looked_after": True}), 403)
    assert api.call("PATCH", f"/cases/{case['id']}", successor, {"looked_after": True}).status_code == 200


def test_a_case_stored_with_a_lead_practitioners_name_shows_that_name(api: Api, session: Session, macpt: Macpt) -> None:
    allocate(session, child_id=macpt.child_id, team=macpt.team)  # a demo-style row: lead_practitioner="Test lead"

    facts = get_view(api.http, api.token(macpt.officer), macpt.child_id).json()["key_facts"]

    assert facts["lead_practitioner"] == "Test lead"


@pytest.mark.parametrize(
    ("body", "location"),
    [
        ({"lead_practitioner": None}, "body.lead_practitioner"),
        ({"lead_practitioner": "officer"}, "body.lead_practitioner"),
        ({"looked_after": None}, "body.looked_after"),
        ({"looked_after_since": "2026-01-01"}, "body.looked_after_since"),  # not looked after
        ({"cp_plan": {"start": "2026-10-01", "category": "multiple", "end": "2026-09-30"}}, "body.cp_plan.end"),
        ({"cp_plan": {"start": "2026-10-01", "category": "Neglect"}}, "body.cp_plan.category"),
        ({"team_id": str(uuid.uuid4())}, "body.team_id"),
    ],
    ids=[
        "null_lead",
        "lead_not_a_lead",
        "null_looked_after",
        "since_without_looked_after",
        "plan_order",
        "category",
        "team_is_not_changed_here",
    ],
)
def test_a_bad_change_is_refused_naming_the_field_and_nothing_changes(
    api: Api, session: Session, macpt: Macpt, body: dict[str, Any], location: str
) -> None:
    case = open_one(api, macpt)
    if body.get("lead_practitioner") == "officer":
        body = {"lead_practitioner": macpt.officer.subject}

    response = api.call("PATCH", f"/cases/{case['id']}", macpt.manager, body)

    assert locations(response) == [location]
    stored = reread(session, Case, uuid.UUID(case["id"]))
    assert (stored.lead_practitioner, stored.cp_plan_start, stored.looked_after, stored.looked_after_since) == (
        macpt.lead.subject,
        None,
        False,
        None,
    )
    assert events(session, AuditAction.STAFF_CASE_UPDATED) == []


@pytest.mark.parametrize(
    "caller", ["police_officer_of_the_team", "another_lead_of_the_team", "manager_of_another_team"]
)
def test_only_the_team_manager_or_the_cases_lead_changes_or_closes_it_and_refusals_are_audited(
    api: Api, session: Session, macpt: Macpt, caller: str
) -> None:
    case = open_one(api, macpt)
    if caller == "police_officer_of_the_team":
        who = macpt.officer
    elif caller == "another_lead_of_the_team":
        who = add_member(session, macpt.team, agency="social_care", role="lead_practitioner")
    else:
        who = add_member(session, make_team(session, name="Southshire"), agency="social_care", role="team_manager")

    changed = api.call("PATCH", f"/cases/{case['id']}", who, {"looked_after": True})
    closed = api.call("POST", f"/cases/{case['id']}/close", who, {"reason": "Not mine to close"})

    problem(changed, 403)
    problem(closed, 403)
    stored = reread(session, Case, uuid.UUID(case["id"]))
    assert stored.status is CaseStatus.OPEN and stored.looked_after is False and stored.close_reason is None
    refusals = events(session, AuditAction.STAFF_CASE_REFUSED)
    assert [(r.actor_id, r.child_id, r.outcome) for r in refusals] == [(who.subject, macpt.child_id, "denied")] * 2
    assert {r.detail["reason"] for r in refusals} == {"not_a_member" if caller == "manager_of_another_team" else "role"}
    assert events(session, AuditAction.STAFF_CASE_UPDATED) == events(session, AuditAction.STAFF_CASE_CLOSED) == []


def test_closing_a_case_takes_the_child_away_from_the_team_and_is_not_done_twice(
    api: Api, session: Session, macpt: Macpt
) -> None:
    case = open_one(api, macpt)
    assert get_view(api.http, api.token(macpt.officer), macpt.child_id).status_code == 200

    response = api.call("POST", f"/cases/{case['id']}/close", macpt.lead, {"reason": "Family moved out of area"})

    assert response.status_code == 200, response.text
    closed = response.json()
    assert closed["status"] == "closed" and closed["closed_by"] == macpt.lead.subject
    assert closed["closed_at"] is not None and closed["close_reason"] == "Family moved out of area"
    for member in (macpt.officer, macpt.lead, macpt.manager):
        assert get_view(api.http, api.token(member), macpt.child_id).status_code == 403
    event = last_event(session, AuditAction.STAFF_CASE_CLOSED)
    assert event.child_id == macpt.child_id
    assert event.detail == {"case_id": case["id"], "team_id": str(macpt.team.id)}  # never the reason's words

    again = api.call("POST", f"/cases/{case['id']}/close", macpt.manager, {"reason": "Again"})
    changed = api.call("PATCH", f"/cases/{case['id']}", macpt.manager, {"looked_after": True})

    assert "closed" in problem(again, 409)["detail"]
    assert problem(changed, 409)
    stored = reread(session, Case, uuid.UUID(case["id"]))
    assert stored.close_reason == "Family moved out of area" and stored.looked_after is False
    assert len(events(session, AuditAction.STAFF_CASE_CLOSED)) == 1


@pytest.mark.parametrize(
    ("body", "location"),
    [
        ({}, "body.reason"),
        ({"reason": "  "}, "body.reason"),
        ({"reason": "x" * 2001}, "body.reason"),
        ({"reason": "ok", "when": "now"}, "body.when"),
    ],
    ids=["missing", "blank", "too_long", "unknown_field"],
)
def test_a_close_without_a_good_reason_is_refused_and_the_case_stays_open(
    api: Api, session: Session, macpt: Macpt, body: dict[str, Any], location: str
) -> None:
    case = open_one(api, macpt)

    assert locations(api.call("POST", f"/cases/{case['id']}/close", macpt.manager, body)) == [location]
    assert reread(session, Case, uuid.UUID(case["id"])).status is CaseStatus.OPEN
    assert events(session, AuditAction.STAFF_CASE_CLOSED) == []


# -- reading ---------------------------------------------------------------------------------------


def test_members_read_their_teams_cases_and_each_read_is_audited(api: Api, session: Session, macpt: Macpt) -> None:
    first = open_one(api, macpt)
    second_child = api.child()
    second = open_one(api, macpt, child_id=str(second_child))
    api.call("POST", f"/cases/{first['id']}/close", macpt.manager, {"reason": "Done"})
    elsewhere = make_team(session, name="Southshire")
    allocate(session, child_id=api.child(), team=elsewhere)

    listed = api.call("GET", "/cases", macpt.officer)
    open_only = api.call("GET", "/cases", macpt.officer, status="open", team_id=str(macpt.team.id))
    one = api.call("GET", f"/cases/{first['id']}", macpt.officer)

    assert listed.status_code == 200
    assert {c["id"] for c in listed.json()["cases"]} == {first["id"], second["id"]}
    assert [c["id"] for c in open_only.json()["cases"]] == [second["id"]]
    assert one.status_code == 200 and one.json()["status"] == "closed"
    reads = [(e.child_id, e.detail["case_id"]) for e in events(session, AuditAction.STAFF_CASES_LISTED)]
    assert sorted(reads[:2], key=str) == sorted([(macpt.child_id, first["id"]), (second_child, second["id"])], key=str)
    assert reads[2:] == [(second_child, second["id"]), (macpt.child_id, first["id"])]


def test_a_case_or_a_team_list_is_refused_to_a_non_member_whether_or_not_it_exists(
    api: Api, session: Session, macpt: Macpt
) -> None:
    case = open_one(api, macpt)
    outsider = add_member(session, make_team(session, name="Southshire"), agency="police", role="police_officer")

    refused = api.call("GET", f"/cases/{case['id']}", outsider)
    unknown = api.call("GET", f"/cases/{uuid.uuid4()}", outsider)
    team_list = api.call("GET", "/cases", outsider, team_id=str(macpt.team.id))
    own_list = api.call("GET", "/cases", outsider)

    assert problem(refused, 403)["detail"] == problem(unknown, 403)["detail"]
    problem(team_list, 403)
    assert own_list.json() == {"cases": []}
    refusals = events(session, AuditAction.STAFF_CASE_REFUSED)
    assert [(r.child_id, r.detail["reason"]) for r in refusals] == [
        (macpt.child_id, "not_a_member"),
        (None, "not_a_member"),
        (None, "not_a_member"),
    ]
    assert events(session, AuditAction.STAFF_CASES_LISTED) == []


# -- concurrency -----------------------------------------------------------------------------------


def test_opening_a_case_takes_the_team_and_child_lock_before_it_checks(
    session: Session, keyring: DataKeyring, macpt: Macpt
) -> None:
    """On PostgreSQL, two openings of the same child's case meet at an advisory lock (SQLite
    serialises writers instead): the lock is held, in the opening's transaction, once it returns."""
    if session.get_bind().dialect.name != "postgresql":
        pytest.skip("SQLite serialises writers; advisory locks are PostgreSQL's")
    principal = Principal(PrincipalKind.STAFF, macpt.manager.subject, macpt.manager.agency, "team_manager")
    auditor = Auditor(session, principal.actor())
    held = text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND granted")
    before = session.scalar(held)

    admin.open_case(
        session,
        principal,
        auditor=auditor,
        keyring=keyring,
        data=CaseCreate(team_id=macpt.team.id, child_id=macpt.child_id, lead_practitioner=macpt.lead.subject),
    )

    # The team's (shared) and the team and child's (exclusive).
    assert session.scalar(held) == (before or 0) + 2

"""POST /api/v1/children/search: by NHS number or by demographics, only children the caller may open."""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from httpx import Response
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from audit import AuditAction, AuditEvent
from gateway.auth.keys import SigningKeys
from gateway.demo.generator import DemoChild, patient_resource, transaction_bundle
from gateway.identity.matching import SEARCH_LIMIT
from gateway.kit.crypto import DataKeyring
from gateway.models import Child, Client, Team, TeamMember
from gateway.settings import Settings
from policies import Agency
from tests.factories import (
    add_member,
    allocate,
    child_bundle,
    client_token,
    demo_child,
    make_client,
    make_team,
    nhs_number,
    staff_token,
)
from tests.gateway.helpers import child_id_for, push

PROBLEM_JSON = "application/problem+json"
SEARCH = "/api/v1/children/search"
BIRTH_DATE = date(2016, 7, 2)


@dataclass(frozen=True)
class Caller:
    """The app and the keys to call it with."""

    http: TestClient
    session: Session
    settings: Settings
    signing_keys: SigningKeys
    keyring: DataKeyring

    def search(self, member: TeamMember, body: dict[str, Any]) -> Response:
        token = staff_token(self.signing_keys, self.settings, member)
        response: Response = self.http.post(SEARCH, json=body, headers={"Authorization": f"Bearer {token}"})
        return response

    def found(self, member: TeamMember, body: dict[str, Any]) -> dict[str, Any]:
        response = self.search(member, body)
        assert response.status_code == 200, response.text
        answer: dict[str, Any] = response.json()
        return answer

    def push(self, source: Client, bundle: dict[str, Any]) -> None:
        response = push(self.http, client_token(self.signing_keys, self.settings, source), bundle)
        assert response.status_code == 200, response.text
        statuses = [entry["response"]["status"] for entry in response.json()["entry"]]
        assert all(status.startswith(("200", "201")) for status in statuses), statuses

    def child(self, child: DemoChild, *, source: Client | None = None, patient_id: str = "p1") -> uuid.UUID:
        """Push a child's Patient from a health system; return the child it was linked to."""
        self.push(source or make_client(self.session)[0], child_bundle(child, patient_id=patient_id))
        return child_id_for(self.session, self.keyring, child.nhs_number)


@pytest.fixture
def caller(
    client: TestClient, session: Session, settings: Settings, signing_keys: SigningKeys, keyring: DataKeyring
) -> Caller:
    return Caller(client, session, settings, signing_keys, keyring)


@pytest.fixture
def team(session: Session) -> Team:
    return make_team(session, name="Northshire MACPT")


@pytest.fixture
def member(session: Session, team: Team) -> TeamMember:
    """A health member of the team the tests allocate children to."""
    return add_member(session, team, agency="health", role="designated_nurse")


def maisie(**overrides: Any) -> DemoChild:
    values: dict[str, Any] = {
        "given_names": ["Maisie", "Jo"],
        "family_name": "Okonkwo-Reid",
        "birth_date": BIRTH_DATE,
        "postcode": "ZZ99 3VZ",
    }
    values.update(overrides)
    return demo_child(**values)


def spaced(number: str) -> str:
    return f"{number[:3]} {number[3:6]} {number[6:]}"


def search_events(session: Session) -> list[AuditEvent]:
    return list(
        session.scalars(
            select(AuditEvent).where(AuditEvent.action == AuditAction.STAFF_SEARCH_PERFORMED).order_by(AuditEvent.seq)
        )
    )


def audit_count(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(AuditEvent)) or 0


def problem(response: Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    return body


def serialised(event: AuditEvent) -> str:
    return json.dumps({column.key: getattr(event, column.key) for column in AuditEvent.__table__.columns}, default=str)


# -- by NHS number ---------------------------------------------------------------------------------


def test_an_nhs_number_finds_an_allocated_child_and_the_search_is_audited(
    caller: Caller, session: Session, team: Team, member: TeamMember
) -> None:
    child = maisie()
    child_id = caller.child(child)
    allocate(session, child_id=child_id, team=team)

    answer = caller.found(member, {"nhs_number": spaced(child.nhs_number)})

    assert answer == {
        "children": [
            {
                "child_id": str(child_id),
                "match": "nhs_number",
                "fields_matched": ["nhs_number"],
                "display": {"family_name": "Okonkwo-Reid", "given_names": ["Maisie", "Jo"], "birth_date": "2016-07-02"},
            }
        ],
        "others_matched": 0,
        "how_to_ask": None,
        "limited": False,
    }
    (event,) = search_events(session)
    assert event.outcome == "success" and event.actor_id == member.subject
    assert event.detail == {
        "criteria": ["nhs_number"],
        "terms": caller.keyring.blind_index("search", f"nhs_number={child.nhs_number}"),
        "results": 1,
        "others_matched": 0,
        "children": [str(child_id)],
        "limited": False,
    }


def test_an_nhs_number_nobody_has_finds_nothing(caller: Caller, session: Session, member: TeamMember) -> None:
    answer = caller.found(member, {"nhs_number": nhs_number()})

    assert answer == {"children": [], "others_matched": 0, "how_to_ask": None, "limited": False}
    (event,) = search_events(session)
    assert (event.detail["results"], event.detail["others_matched"]) == (0, 0)


def _member_of_another_team(session: Session, team: Team) -> TeamMember:
    return add_member(session, make_team(session, name="Southshire MACPT"), agency="health", role="designated_nurse")


def _inactive_member(session: Session, team: Team) -> TeamMember:
    member = add_member(session, team, agency="police", role="police_officer")
    member.active = False
    session.flush()
    return member


def _staff_on_no_team(session: Session, team: Team) -> TeamMember:
    # Not stored: a staff token whose subject is on no team at all.
    return TeamMember(subject="education.nobody@test.example", agency=Agency.EDUCATION, role="education_lead")


def _member_with_another_agency(session: Session, team: Team) -> TeamMember:
    member = add_member(session, team, agency="education", role="education_lead")
    # The token says police: the membership does not count (select_accessible_children).
    return TeamMember(subject=member.subject, agency=Agency.POLICE, role="education_lead")


@pytest.mark.parametrize(
    "who", [_member_of_another_team, _inactive_member, _staff_on_no_team, _member_with_another_agency]
)
def test_a_caller_without_allocation_is_told_how_many_matched_and_whom_to_ask(
    caller: Caller, session: Session, team: Team, member: TeamMember, who: Any
) -> None:
    child = maisie()
    child_id = caller.child(child)
    allocate(session, child_id=child_id, team=team)
    outsider = who(session, team)

    response = caller.search(outsider, {"nhs_number": child.nhs_number})

    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["children"] == [] and answer["others_matched"] == 1
    assert answer["how_to_ask"].startswith("1 other child matched that you may not open.")
    assert "team manager or the lead practitioner" in answer["how_to_ask"]
    assert str(child_id) not in response.text
    (event,) = search_events(session)
    assert event.detail["results"] == 0 and event.detail["others_matched"] == 1 and event.detail["children"] == []


@pytest.mark.parametrize(("agency", "role"), [("health", "designated_nurse"), ("police", "police_officer"), ("education", "education_lead")])
def test_every_member_of_the_allocated_team_finds_the_child(
    caller: Caller, session: Session, team: Team, agency: str, role: str
) -> None:
    child = maisie()
    child_id = caller.child(child)
    allocate(session, child_id=child_id, team=team)

    answer = caller.found(add_member(session, team, agency=agency, role=role), {"nhs_number": child.nhs_number})

    assert [found["child_id"] for found in answer["children"]] == [str(child_id)]


def test_the_caller_sees_the_children_they_may_open_and_a_count_of_the_rest(
    caller: Caller, session: Session, team: Team, member: TeamMember
) -> None:
    ours = caller.child(maisie(given_names=["Maisie"]))
    theirs = caller.child(maisie(given_names=["Tobi"], postcode="LS1 4AB"))  # a twin: another child
    allocate(session, child_id=ours, team=team)
    allocate(session, child_id=theirs, team=make_team(session, name="Leeds MACPT"))

    response = caller.search(member, {"family_name": "Okonkwo-Reid", "birth_date": BIRTH_DATE.isoformat()})

    answer = response.json()
    assert [found["child_id"] for found in answer["children"]] == [str(ours)]
    assert answer["others_matched"] == 1 and answer["how_to_ask"] is not None
    assert str(theirs) not in response.text


# -- by demographics -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("terms", "fields"),
    [
        ({"family_name": "Okonkwo-Reid", "birth_date": "2016-07-02"}, ["family_name", "birth_date"]),
        ({"family_name": "okonkwo reid", "postcode": "zz993vz"}, ["family_name", "postcode"]),
        ({"birth_date": "2016-07-02", "postcode": " ZZ99  3VZ "}, ["birth_date", "postcode"]),
        ({"family_name": "Okonkwo-Réid", "given_name": "Maisie", "birth_date": "2016-07-02", "postcode": "ZZ99 3VZ"},
         ["family_name", "given_name", "birth_date", "postcode"]),
        # As linking compares names: one part of a double surname, a slip in the given name.
        ({"family_name": "Reid", "given_name": "Masie", "birth_date": "2016-07-02"}, ["family_name", "given_name", "birth_date"]),
        ({"family_name": "Okonkwo-Reed", "postcode": "ZZ99 3VZ"}, ["family_name", "postcode"]),
        # Day and month swapped, as linking allows.
        ({"family_name": "Okonkwo-Reid", "birth_date": "2016-02-07"}, ["family_name", "birth_date"]),
        # A given name with the two fields that count.
        ({"given_name": "maisie", "birth_date": "2016-07-02", "postcode": "ZZ99 3VZ"}, ["given_name", "birth_date", "postcode"]),
    ],
)
def test_two_of_name_birth_date_and_postcode_find_the_child(
    caller: Caller, session: Session, team: Team, member: TeamMember, terms: dict[str, Any], fields: list[str]
) -> None:
    child_id = caller.child(maisie())
    allocate(session, child_id=child_id, team=team)

    answer = caller.found(member, terms)

    assert answer["children"] == [
        {
            "child_id": str(child_id),
            "match": "demographics",
            "fields_matched": fields,
            "display": {"family_name": "Okonkwo-Reid", "given_names": ["Maisie", "Jo"], "birth_date": "2016-07-02"},
        }
    ]
    assert answer["others_matched"] == 0
    (event,) = search_events(session)
    assert event.detail["criteria"] == fields and event.detail["children"] == [str(child_id)]


@pytest.mark.parametrize(
    "terms",
    [
        {"family_name": "Okonkwo-Reid", "birth_date": "2016-07-03"},  # one digit off: not the same date
        {"family_name": "Okonkwo-Reid", "postcode": "ZZ99 3VY"},  # the next postcode
        {"family_name": "Smith", "birth_date": "2016-07-02"},
        {"family_name": "Okonkwo-Reid", "given_name": "Samuel", "birth_date": "2016-07-02"},
        {"family_name": "Okonkwo-Reid", "given_name": "M", "birth_date": "2016-07-02"},  # an initial is not a name
        {"birth_date": "2016-07-02", "postcode": "LS1 4AB"},
    ],
)
def test_a_child_is_found_only_when_every_field_given_agrees(
    caller: Caller, session: Session, team: Team, member: TeamMember, terms: dict[str, Any]
) -> None:
    allocate(session, child_id=caller.child(maisie()), team=team)

    answer = caller.found(member, terms)

    assert answer == {"children": [], "others_matched": 0, "how_to_ask": None, "limited": False}


def test_a_given_name_tells_twins_apart_and_a_surname_with_a_birth_date_finds_both(
    caller: Caller, session: Session, team: Team, member: TeamMember
) -> None:
    source = make_client(session)[0]
    first = caller.child(maisie(given_names=["Maisie"]), source=source, patient_id="twin-1")
    second = caller.child(maisie(given_names=["Tobi"]), source=source, patient_id="twin-2")
    assert first != second
    for child_id in (first, second):
        allocate(session, child_id=child_id, team=team)

    both = caller.found(member, {"family_name": "Okonkwo-Reid", "birth_date": "2016-07-02"})
    one = caller.found(member, {"family_name": "Okonkwo-Reid", "given_name": "Tobi", "birth_date": "2016-07-02"})

    assert [c["display"]["given_names"] for c in both["children"]] == [["Maisie"], ["Tobi"]]
    assert [c["child_id"] for c in one["children"]] == [str(second)]


def test_a_superseded_version_of_a_record_is_not_matched(
    caller: Caller, session: Session, team: Team, member: TeamMember
) -> None:
    source = make_client(session)[0]
    child = maisie()
    child_id = caller.child(child, source=source)
    allocate(session, child_id=child_id, team=team)
    renamed = maisie(nhs=child.nhs_number, family_name="Adebayo")
    caller.push(source, child_bundle(renamed))  # a new version of Patient p1: the old name is history

    old = caller.found(member, {"family_name": "Okonkwo-Reid", "birth_date": "2016-07-02"})
    new = caller.found(member, {"family_name": "Adebayo", "birth_date": "2016-07-02"})

    assert old["children"] == [] and old["others_matched"] == 0
    assert [c["child_id"] for c in new["children"]] == [str(child_id)]
    assert new["children"][0]["display"]["family_name"] == "Adebayo"


def test_an_erased_child_is_nobodys_match(caller: Caller, session: Session, team: Team, member: TeamMember) -> None:
    child = maisie()
    child_id = caller.child(child)
    allocate(session, child_id=child_id, team=team)
    erased = session.get(Child, child_id)
    assert erased is not None
    erased.wrapped_data_key = None
    session.flush()

    by_number = caller.found(member, {"nhs_number": child.nhs_number})
    by_name = caller.found(member, {"family_name": "Okonkwo-Reid", "birth_date": "2016-07-02"})

    assert by_number["children"] == by_name["children"] == []
    assert by_number["others_matched"] == by_name["others_matched"] == 0


def test_a_merged_child_resolves_to_the_child_it_was_merged_into(
    caller: Caller, session: Session, team: Team, member: TeamMember
) -> None:
    merged_child = maisie(given_names=["Maisie"], family_name="Okonkwo", postcode="LS1 4AB")
    merged = caller.child(merged_child)
    into = caller.child(maisie(given_names=["Maisie"], family_name="Reid", birth_date=date(2016, 7, 12)))
    officer = add_member(session, make_team(session, name="Linking unit"), agency="social_care", role="linking_officer")
    officer_token = staff_token(caller.signing_keys, caller.settings, officer)
    response = caller.http.post(
        "/api/v1/children/merge",
        json={"child_id": str(merged), "into_child_id": str(into), "reason": "one child"},
        headers={"Authorization": f"Bearer {officer_token}"},
    )
    assert response.status_code == 201, response.text
    allocate(session, child_id=into, team=team)

    by_number = caller.found(member, {"nhs_number": merged_child.nhs_number})
    by_name = caller.found(member, {"family_name": "Okonkwo", "postcode": "LS1 4AB"})

    for answer in (by_number, by_name):
        assert [c["child_id"] for c in answer["children"]] == [str(into)]
        assert answer["others_matched"] == 0
    assert by_name["children"][0]["fields_matched"] == ["family_name", "postcode"]


def test_at_most_fifty_candidate_children_are_compared(
    caller: Caller, session: Session, member: TeamMember
) -> None:
    crowd = [
        patient_resource(
            maisie(given_names=[f"Child{chr(65 + i // 26)}{chr(65 + i % 26)}"]), resource_id=f"c{i}", postcode="ZZ99 3VZ"
        )
        for i in range(SEARCH_LIMIT + 1)
    ]
    caller.push(make_client(session)[0], transaction_bundle(crowd))

    answer = caller.found(member, {"family_name": "Okonkwo-Reid", "birth_date": "2016-07-02"})

    assert SEARCH_LIMIT == 50
    assert answer["limited"] is True
    assert answer["children"] == [] and answer["others_matched"] == SEARCH_LIMIT
    (event,) = search_events(session)
    assert event.detail["limited"] is True


# -- what is refused -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({}, "this search gave nothing"),
        ({"family_name": "Okonkwo-Reid"}, "this search gave family_name"),
        ({"family_name": "Okonkwo-Reid", "given_name": "Maisie"}, "this search gave family_name, given_name"),
        ({"birth_date": "2016-07-02"}, "this search gave birth_date"),
        ({"postcode": "ZZ99 3VZ"}, "this search gave postcode"),
        ({"given_name": "Maisie", "birth_date": "2016-07-02"}, "given_name counts only with family_name"),
    ],
)
def test_fewer_than_two_fields_are_refused_saying_which_are_needed(
    caller: Caller, session: Session, member: TeamMember, body: dict[str, Any], named: str
) -> None:
    before = audit_count(session)

    body_ = problem(caller.search(member, body), 422)

    assert "at least two of family_name (with given_name if known), birth_date and postcode" in body_["detail"]
    assert "an nhs_number alone" in body_["detail"]
    assert named in body_["detail"]
    assert body_["errors"][0]["location"] == "body"
    assert audit_count(session) == before


@pytest.mark.parametrize(
    ("body", "field", "sent"),
    [
        ({"nhs_number": "943 476 5910"}, "nhs_number", "5910"),  # a wrong check digit
        ({"nhs_number": "12345"}, "nhs_number", "12345"),
        ({"nhs_number": "9434765919", "family_name": "Okonkwo-Reid"}, "nhs_number", "Okonkwo"),
        ({"family_name": "12345", "birth_date": "2016-07-02"}, "family_name", "12345"),
        ({"family_name": "Okonkwo-Reid", "given_name": "!!", "birth_date": "2016-07-02"}, "given_name", "!!"),
        ({"family_name": "Okonkwo-Reid", "postcode": "NOT A POSTCODE"}, "postcode", "NOT A POSTCODE"),
        ({"family_name": "Okonkwo-Reid", "birth_date": (date.today() + timedelta(days=2)).isoformat()}, "birth_date", None),
    ],
)
def test_a_field_that_cannot_be_searched_is_refused_by_name(
    caller: Caller, session: Session, member: TeamMember, body: dict[str, Any], field: str, sent: str | None
) -> None:
    before = audit_count(session)

    response = caller.search(member, body)

    refused = problem(response, 422)
    assert refused["detail"].startswith(field)
    assert [error["location"] for error in refused["errors"]] == [f"body.{field}"]
    if sent is not None:
        assert sent not in refused["detail"]
    assert audit_count(session) == before


def test_a_wrong_check_digit_is_refused_naming_nhs_number(caller: Caller, session: Session, member: TeamMember) -> None:
    valid = nhs_number()
    wrong = valid[:9] + str((int(valid[9]) + 1) % 10)
    before = audit_count(session)

    refused = problem(caller.search(member, {"nhs_number": wrong}), 422)

    assert refused["detail"] == (
        "nhs_number is not a valid NHS number: it must be 10 digits with a correct Modulus 11 check digit."
    )
    assert wrong not in json.dumps(refused)
    assert audit_count(session) == before


@pytest.mark.parametrize(
    ("body", "location"),
    [
        ({"family_name": "Okonkwo-Reid", "birth_date": "02/07/2016"}, "body.birth_date"),
        ({"family_name": "Okonkwo-Reid", "birth_date": "2016-07-02", "upn": "A123"}, "body.upn"),
        ({"family_name": "", "birth_date": "2016-07-02"}, "body.family_name"),
        ({"family_name": "x" * 101, "birth_date": "2016-07-02"}, "body.family_name"),
        ({"nhs_number": "9" * 17}, "body.nhs_number"),
    ],
)
def test_a_body_that_does_not_fit_the_schema_is_refused_by_field(
    caller: Caller, session: Session, member: TeamMember, body: dict[str, Any], location: str
) -> None:
    before = audit_count(session)

    refused = problem(caller.search(member, body), 422)

    assert [error["location"] for error in refused["errors"]] == [location]
    assert audit_count(session) == before


def test_an_agency_system_is_refused(caller: Caller, session: Session) -> None:
    child = maisie()
    source = make_client(session)[0]
    caller.child(child, source=source)
    token = client_token(caller.signing_keys, caller.settings, source)

    response = caller.http.post(SEARCH, json={"nhs_number": child.nhs_number}, headers={"Authorization": f"Bearer {token}"})

    assert problem(response, 403)["detail"] == "This endpoint is for MACPT staff, not agency systems."
    assert search_events(session) == []


def test_a_caller_without_a_token_is_refused(caller: Caller, session: Session) -> None:
    response = caller.http.post(SEARCH, json={"nhs_number": nhs_number()})

    problem(response, 401)
    assert search_events(session) == []


# -- no term in clear ------------------------------------------------------------------------------


def test_no_term_is_kept_in_clear_in_the_audit_trail_spans_or_logs(
    caller: Caller,
    session: Session,
    team: Team,
    member: TeamMember,
    span_exporter: InMemorySpanExporter,
    caplog: pytest.LogCaptureFixture,
) -> None:
    child = maisie()
    allocate(session, child_id=caller.child(child), team=team)
    span_exporter.clear()
    caplog.set_level(logging.DEBUG)
    terms = {"family_name": "okonkwo-reid", "given_name": "Maisie", "birth_date": "2016-07-02", "postcode": "zz99 3vz"}

    caller.found(member, {"nhs_number": spaced(child.nhs_number)})
    caller.found(member, terms)
    caller.found(member, {**terms, "family_name": "OKONKWO-REID", "postcode": "ZZ993VZ"})  # the same terms
    caller.found(member, {**terms, "given_name": "Maisy"})  # other terms

    events = search_events(session)
    assert len(events) == 4
    spans = json.dumps([{"name": s.name, "attributes": dict(s.attributes or {})} for s in span_exporter.get_finished_spans()])
    logged = caplog.text + json.dumps([record.__dict__ for record in caplog.records], default=str)
    personal = (
        child.nhs_number, spaced(child.nhs_number), "okonkwo", "Okonkwo", "OKONKWO", "maisie", "Maisie", "Maisy",
        "2016-07-02", "2016, 7, 2", "ZZ99", "zz99", "3VZ",
    )
    for text in [serialised(event) for event in events] + [spans, logged]:
        for term in personal:
            assert term not in text, term
    assert "search" in {s.name for s in span_exporter.get_finished_spans()}
    hashes = [event.detail["terms"] for event in events]
    assert hashes[1] == hashes[2] and len({hashes[0], hashes[1], hashes[3]}) == 3
    assert all(len(value) == 64 for value in hashes)
    assert events[1].detail["criteria"] == ["family_name", "given_name", "birth_date", "postcode"]


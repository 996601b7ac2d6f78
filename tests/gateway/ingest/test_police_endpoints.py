"""POST /police/v1/records and GET /schemas/police.json: pushed as a force pushes, read in the child's view.

Every test goes through the real app: a force's client token, the police/v1 batch, linking,
filing, routing and the view read back by a member of the allocated team.
"""

from __future__ import annotations

import copy
import json
import uuid
from datetime import date, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from audit import AuditAction
from gateway.auth.keys import SigningKeys
from gateway.auth.principal import Principal, PrincipalKind
from gateway.auth.tokens import mint_access_token
from gateway.kit.crypto import DataKeyring
from gateway.models import Client, Item, SchoolContact, SchoolContactRole
from gateway.settings import Settings
from policies import Agency, RecordStatus
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
from tests.gateway.helpers import child_id_for, get_view, last_event, push, stored_counts

FORCE_KINDS = ("identity", "incident", "domestic_abuse_notification", "missing_episode", "custody", "intelligence")
SCHOOL_KINDS = ("identity", "enrolment", "attendance", "exclusion", "safeguarding_concern", "education_notice")
JSON = "application/json"
PROBLEM = "application/problem+json"
CONTACT = {"officer": "DC Testy Officer", "unit": "Public Protection Unit", "phone": "01234 000111"}
HOME = {"lines": ["7 Nowhere Lane", "Testtown"], "postcode": "ZZ99 3VZ"}


# -- building a force's batch ---------------------------------------------------------------------


def _child(
    person_id: str,
    *,
    nhs: str | None = None,
    given: tuple[str, ...] = ("Jordan",),
    family: str = "Fakechild",
    birth_date: str = "2014-03-09",
    sex: str = "female",
    address: dict[str, Any] | None = None,
    role: str = "victim",
) -> dict[str, Any]:
    child: dict[str, Any] = {
        "person_id": person_id,
        "given_names": list(given),
        "family_name": family,
        "birth_date": birth_date,
        "sex": sex,
        "address": copy.deepcopy(address or HOME),
        "role": role,
    }
    if nhs is not None:
        child["nhs_number"] = nhs
    return child


def _details(kind: str) -> dict[str, Any]:
    details: dict[str, dict[str, Any]] = {
        "incident": {
            "occurrence_type": "assault",
            "summary": "Pushed over by an older pupil on the way home; a graze to one knee.",
        },
        "domestic_abuse_notification": {
            "incident_at": "2026-10-16T21:30:00Z",
            "child_present": True,
            "summary": "Officers attended an argument between the mother and her partner; the child was upstairs.",
            "school_notice": "Police attended a domestic abuse incident at the child's home last night; "
            "the child was in the house. Please check in with them today.",
        },
        "missing_episode": {
            "reported_missing_at": "2026-10-03T18:00:00Z",
            "found_at": "2026-10-04T09:15:00Z",
            "risk_level": "high",
            "summary": "Did not return home from school; found at a friend's flat in the next town.",
        },
        "custody": {
            "arrested_at": "2026-10-02T16:20:00Z",
            "offence": "criminal damage",
            "outcome": "released_under_investigation",
            "appropriate_adult": True,
        },
        "intelligence": {
            "text": "Seen most evenings at an address linked to older males selling drugs.",
            "grading": {"source_evaluation": "2", "intelligence_assessment": "B", "handling_code": "P"},
        },
    }
    return details[kind]


def _record(
    kind: str, record_id: str, child: dict[str, Any], *, version: str = "1", **fields: Any
) -> dict[str, Any]:
    record: dict[str, Any] = {
        "record_id": record_id,
        "version": version,
        "kind": kind,
        "occurred_at": "2026-10-01T16:05:00Z",
        "child": copy.deepcopy(child),
        "contact": dict(CONTACT),
        "details": _details(kind),
    }
    record.update(fields)
    return record


def _batch(*records: dict[str, Any], **envelope: Any) -> dict[str, Any]:
    return {"schema": "police/v1", "records": list(records), **envelope}


def _post(http: TestClient, headers: dict[str, str], body: dict[str, Any] | bytes) -> Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    response: Response = http.post("/police/v1/records", content=content, headers=headers)
    return response


def _statuses(response: Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [outcome["status"] for outcome in response.json()["outcomes"]]


def _errors(response: Response) -> list[dict[str, str]]:
    """The errors of the one rejected record of a batch."""
    assert response.status_code == 200, response.text
    (outcome,) = [o for o in response.json()["outcomes"] if o["status"] == "rejected"]
    errors: list[dict[str, str]] = outcome["errors"]
    return errors


def _child_of(session: Session, record_id: str) -> uuid.UUID:
    """Return the one child a source record (every version of it) was filed under."""
    session.expire_all()
    (child_id,) = set(session.scalars(select(Item.child_id).where(Item.source_record_id == record_id)))
    return child_id


def _reader(session: Session, settings: Settings, signing_keys: SigningKeys, child_id: uuid.UUID) -> str:
    """Allocate the child to a new team; return a token of the team's social worker."""
    team = make_team(session)
    allocate(session, child_id=child_id, team=team)
    return staff_token(signing_keys, settings, add_member(session, team, agency="social_care", role="social_worker"))


def _read(http: TestClient, token: str, child_id: uuid.UUID) -> dict[str, Any]:
    response = get_view(http, token, child_id)
    assert response.status_code == 200, response.text
    view: dict[str, Any] = response.json()
    return view


def _view(
    http: TestClient, session: Session, settings: Settings, signing_keys: SigningKeys, child_id: uuid.UUID
) -> dict[str, Any]:
    """Allocate the child to a new team and read its view as the team's social worker."""
    return _read(http, _reader(session, settings, signing_keys, child_id), child_id)


def _summaries(view: dict[str, Any]) -> list[str]:
    return [entry["summary"] for entry in view["timeline"]]


@pytest.fixture
def force(session: Session) -> Client:
    client, _key = make_client(session, agency=Agency.POLICE, kinds=FORCE_KINDS)
    return client


@pytest.fixture
def headers(force: Client, settings: Settings, signing_keys: SigningKeys) -> dict[str, str]:
    return {"Content-Type": JSON, "Authorization": f"Bearer {client_token(signing_keys, settings, force)}"}


# -- each kind, in the right child's view ----------------------------------------------------------


def test_every_kind_is_created_and_read_in_the_right_childs_view_with_people_places_and_grading(
    client: TestClient,
    session: Session,
    settings: Settings,
    signing_keys: SigningKeys,
    keyring: DataKeyring,
    headers: dict[str, str],
) -> None:
    jordan = _child("PER-T-100", nhs=nhs_number())
    casey = _child("PER-T-200", nhs=nhs_number(), given=("Casey",), family="Madeupname", birth_date="2011-08-21",
                   sex="male", address={"lines": ["9 Sample Road"], "postcode": "ZZ99 7AB"}, role="present")
    suspect = {"person_id": "PER-T-900", "given_names": ["Riley"], "family_name": "Fakeperson",
               "birth_date": "1988-02-01", "role": "suspect", "relationship_to_child": "mother's partner"}
    batch = _batch(
        _record("incident", "OCC-T-1", jordan, persons=[suspect],
                locations=[{"location_id": "LOC-T-1", "description": "footpath near the school",
                            "postcode": "ZZ99 4WX"}]),
        _record("domestic_abuse_notification", "OCC-T-2", casey,
                locations=[{"location_id": "LOC-T-2", "description": "child's home address",
                            "address": {"lines": ["9 Sample Road"], "postcode": "ZZ99 7AB"}}]),
        _record("missing_episode", "MIS-T-3", {**jordan, "role": "missing_person"}),
        _record("custody", "CUS-T-4", {**casey, "role": "detained"},
                objects=[{"type": "phone", "description": "mobile phone seized for examination"}]),
        _record("intelligence", "INT-T-5", {**jordan, "role": "subject"}),
    )

    response = _post(client, headers, batch)

    assert _statuses(response) == ["created"] * 5
    assert response.json()["summary"] == {"created": 5, "unchanged": 0, "rejected": 0}
    assert [o["record_id"] for o in response.json()["outcomes"]] == ["OCC-T-1", "OCC-T-2", "MIS-T-3", "CUS-T-4",
                                                                      "INT-T-5"]
    jordan_id = child_id_for(session, keyring, jordan["nhs_number"])
    casey_id = child_id_for(session, keyring, casey["nhs_number"])
    assert jordan_id != casey_id
    assert {_child_of(session, r) for r in ("OCC-T-1", "MIS-T-3", "INT-T-5")} == {jordan_id}
    assert {_child_of(session, r) for r in ("OCC-T-2", "CUS-T-4")} == {casey_id}

    jordans = _view(client, session, settings, signing_keys, jordan_id)
    by_kind = {entry["kind"]: entry for entry in jordans["timeline"]}
    assert sorted(by_kind) == ["incident", "intelligence", "missing_episode"]
    assert by_kind["incident"]["summary"] == (
        "Incident (assault), child a victim: Pushed over by an older pupil on the way home; a graze to one knee."
    )
    assert by_kind["missing_episode"]["summary"].startswith(
        "Missing episode (high risk): reported 3 Oct 2026 18:00, found 4 Oct 2026 09:15: Did not return home"
    )
    assert by_kind["intelligence"]["summary"] == (
        "Intelligence graded 2/B/P: Seen most evenings at an address linked to older males selling drugs."
    )
    assert by_kind["intelligence"]["grading"] == "2/B/P"
    assert by_kind["incident"]["grading"] is None
    assert {entry["source"]["agency"] for entry in jordans["timeline"]} == {"police"}
    assert jordans["people"] == [
        {"name": "Riley Fakeperson", "role": "suspect", "relationship": "mother's partner",
         "birth_date": "1988-02-01", "item_id": by_kind["incident"]["item_id"], "agency": "police"}
    ]
    assert [(loc["description"], loc["item_id"]) for loc in jordans["locations"]] == [
        ("footpath near the school (ZZ99)", by_kind["incident"]["item_id"])
    ]
    assert jordans["withheld"] == []

    caseys = _view(client, session, settings, signing_keys, casey_id)
    assert sorted(entry["kind"] for entry in caseys["timeline"]) == ["custody", "domestic_abuse_notification"]
    assert sorted(_summaries(caseys)) == [
        "Arrested 2 Oct 2026 for criminal damage; outcome: released under investigation; appropriate adult "
        "present; 1 object recorded",
        "Domestic abuse incident (child present), 16 Oct 2026 21:30: Officers attended an argument between the "
        "mother and her partner; the child was upstairs.",
    ]
    # The school's notice is for the school's DSL, not part of the record the team reads.
    assert "Please check in with them today" not in json.dumps(caseys)
    assert [loc["description"] for loc in caseys["locations"]] == ["child's home address (ZZ99)"]
    assert caseys["people"] == []


# -- what the view withholds -----------------------------------------------------------------------


def test_intelligence_with_handling_code_c_is_withheld_and_the_view_says_whom_to_ask(
    client: TestClient,
    session: Session,
    settings: Settings,
    signing_keys: SigningKeys,
    keyring: DataKeyring,
    headers: dict[str, str],
) -> None:
    child = _child("PER-T-300", nhs=nhs_number(), role="subject")
    conditional = _record(
        "intelligence", "INT-T-C", child,
        contact={"officer": "DS Sam Placeholder", "unit": "Child Exploitation Team"},
        details={
            "text": "Believed to be carrying items for an older male known to the force.",
            "grading": {"source_evaluation": "1", "intelligence_assessment": "A", "handling_code": "C",
                        "handling_conditions": "Not to be disclosed to the family."},
        },
    )
    shared = _record("incident", "OCC-T-P", {**child, "role": "victim"})

    assert _statuses(_post(client, headers, _batch(conditional, shared))) == ["created", "created"]

    view = _view(client, session, settings, signing_keys, child_id_for(session, keyring, child["nhs_number"]))
    assert [entry["kind"] for entry in view["timeline"]] == ["incident"]
    assert "carrying items" not in json.dumps(view) and "1/A/C" not in json.dumps(view)
    (withheld,) = view["withheld"]
    assert withheld["rule_id"] == "builtin.police-handling-c"
    assert withheld["agency"] == "police" and withheld["count"] == 1
    assert "the police member of the MACPT" in withheld["ask"]
    assert "DS Sam Placeholder" in withheld["ask"] and "Child Exploitation Team" in withheld["ask"]


def test_a_record_the_force_marks_detrimental_is_withheld_and_indicated(
    client: TestClient,
    session: Session,
    settings: Settings,
    signing_keys: SigningKeys,
    keyring: DataKeyring,
    headers: dict[str, str],
) -> None:
    child = _child("PER-T-400", nhs=nhs_number())

    response = _post(client, headers, _batch(_record("incident", "OCC-T-D", child, detrimental=True)))

    assert _statuses(response) == ["created"]
    view = _view(client, session, settings, signing_keys, child_id_for(session, keyring, child["nhs_number"]))
    assert view["timeline"] == [] and view["people"] == [] and view["locations"] == []
    (withheld,) = view["withheld"]
    assert withheld["rule_id"] == "builtin.detrimental" and withheld["agency"] == "police"
    assert "s16LA" in withheld["reason"]
    assert "the police member of the MACPT" in withheld["ask"] and "DC Testy Officer" in withheld["ask"]


# -- linking a child without an NHS number --------------------------------------------------------


def test_a_later_batch_about_the_same_force_person_lands_on_the_same_child_by_its_person_id(
    client: TestClient,
    session: Session,
    settings: Settings,
    signing_keys: SigningKeys,
    headers: dict[str, str],
) -> None:
    first = _child("PER-T-500", given=("Morgan",), family="Exampleson")
    # The force's person record changed (a new surname and address): another version of the same person,
    # which no demographic score would link; the person id does.
    moved = _child("PER-T-500", given=("Morgan",), family="Newsurname",
                   address={"lines": ["3 Other Street"], "postcode": "ZZ99 8QQ"})

    assert _statuses(_post(client, headers, _batch(_record("incident", "OCC-T-10", first)))) == ["created"]
    assert _statuses(_post(client, headers, _batch(_record("custody", "CUS-T-11", {**moved, "role": "detained"})))) \
        == ["created"]

    child_id = _child_of(session, "OCC-T-10")
    assert _child_of(session, "CUS-T-11") == child_id
    view = _view(client, session, settings, signing_keys, child_id)
    assert sorted(entry["kind"] for entry in view["timeline"]) == ["custody", "incident"]
    (identity,) = view["identities"]  # the person's current version, linked as a version of the first
    assert (identity["family_name"], identity["link_method"]) == ("Newsurname", "source_record")


@pytest.mark.parametrize("same_batch", [True, False], ids=["one-batch", "two-batches"])
def test_twins_without_nhs_numbers_land_on_two_children(
    client: TestClient, session: Session, headers: dict[str, str], same_batch: bool
) -> None:
    twin_a = _child("PER-T-601", given=("Ashley",), family="Twinnington", birth_date="2015-06-01")
    twin_b = _child("PER-T-602", given=("Bailey",), family="Twinnington", birth_date="2015-06-01")
    records = [_record("incident", "OCC-T-61", twin_a), _record("incident", "OCC-T-62", twin_b)]

    if same_batch:
        assert _statuses(_post(client, headers, _batch(*records))) == ["created", "created"]
    else:
        for record in records:
            assert _statuses(_post(client, headers, _batch(record))) == ["created"]

    assert _child_of(session, "OCC-T-61") != _child_of(session, "OCC-T-62")


def test_a_police_child_without_an_nhs_number_is_linked_by_score_to_the_health_child(
    client: TestClient,
    session: Session,
    settings: Settings,
    signing_keys: SigningKeys,
    keyring: DataKeyring,
    headers: dict[str, str],
) -> None:
    trust, _key = make_client(session)
    health_child = demo_child()  # Alex Testington, 2015-03-14, female, 1 Synthetic Street, ZZ99 3VZ
    assert push(client, client_token(signing_keys, settings, trust), child_bundle(health_child)).status_code == 200
    health_id = child_id_for(session, keyring, health_child.nhs_number)
    police_child = _child("PER-T-700", given=("Alex",), family="Testington", birth_date="2015-03-14",
                          sex="female", address={"lines": ["1 Synthetic Street"], "postcode": "ZZ99 3VZ"})

    assert _statuses(_post(client, headers, _batch(_record("incident", "OCC-T-70", police_child)))) == ["created"]

    assert _child_of(session, "OCC-T-70") == health_id
    view = _view(client, session, settings, signing_keys, health_id)
    assert sorted((i["source"]["agency"], i["link_method"]) for i in view["identities"]) == [
        ("health", "new"), ("police", "scored")
    ]
    assert [entry["kind"] for entry in view["timeline"]] == ["incident"]


# -- idempotency, new versions, retraction ---------------------------------------------------------


def test_the_same_batch_twice_is_stored_once(client: TestClient, session: Session, headers: dict[str, str]) -> None:
    child = _child("PER-T-800", nhs=nhs_number())
    batch = _batch(_record("incident", "OCC-T-80", child), _record("missing_episode", "MIS-T-81",
                                                                   {**child, "role": "missing_person"}))
    assert _statuses(_post(client, headers, batch)) == ["created", "created"]
    before = stored_counts(session)

    again = _post(client, headers, batch)

    assert _statuses(again) == ["unchanged", "unchanged"]
    assert again.json()["summary"] == {"created": 0, "unchanged": 2, "rejected": 0}
    assert stored_counts(session) == before


def test_a_new_version_of_a_record_supersedes_the_old_in_the_view(
    client: TestClient,
    session: Session,
    settings: Settings,
    signing_keys: SigningKeys,
    keyring: DataKeyring,
    headers: dict[str, str],
) -> None:
    child = _child("PER-T-810", nhs=nhs_number(), role="detained")
    first = _record("custody", "CUS-T-81", child)
    charged = _record("custody", "CUS-T-81", child, version="2",
                      details={**_details("custody"), "outcome": "charged"})
    assert _statuses(_post(client, headers, _batch(first))) == ["created"]

    assert _statuses(_post(client, headers, _batch(charged))) == ["created"]

    view = _view(client, session, settings, signing_keys, child_id_for(session, keyring, child["nhs_number"]))
    (entry,) = view["timeline"]
    assert "outcome: charged" in entry["summary"]
    assert "released under investigation" not in json.dumps(view)


def test_a_retraction_takes_the_record_out_of_the_view(
    client: TestClient,
    session: Session,
    settings: Settings,
    signing_keys: SigningKeys,
    keyring: DataKeyring,
    headers: dict[str, str],
) -> None:
    child = _child("PER-T-820", nhs=nhs_number())
    kept = _record("incident", "OCC-T-82", child)
    wrong = _record("incident", "OCC-T-83", child, details={"occurrence_type": "theft",
                                                             "summary": "Entered against the wrong child."})
    assert _statuses(_post(client, headers, _batch(kept, wrong))) == ["created", "created"]
    child_id = child_id_for(session, keyring, child["nhs_number"])
    token = _reader(session, settings, signing_keys, child_id)
    assert len(_read(client, token, child_id)["timeline"]) == 2

    retraction = {"record_id": "OCC-T-83", "version": "2", "kind": "incident", "child": child, "retracted": True}
    assert _statuses(_post(client, headers, _batch(retraction))) == ["created"]

    after = _read(client, token, child_id)
    assert _summaries(after) == [
        "Incident (assault), child a victim: Pushed over by an older pupil on the way home; a graze to one knee."
    ]
    assert "Entered against the wrong child" not in json.dumps(after)
    assert after["withheld"] == []  # a retraction is withheld silently


# -- bad input ----------------------------------------------------------------------------------------


def _in_the_future() -> str:
    return (date.today() + timedelta(days=400)).isoformat()


def _faulty(fault: str) -> tuple[dict[str, Any], str, str]:
    """Return a record with one fault, where the fault is, and its error code."""
    child = _child("PER-T-900", nhs=nhs_number())
    record = _record("incident", "OCC-T-90", child)
    if fault == "unknown-field":
        record["weather"] = "rain"
        return record, "records[0].weather", "structure"
    if fault == "unknown-child-field":
        record["child"]["shoe_size"] = 3
        return record, "records[0].child.shoe_size", "structure"
    if fault == "intelligence-without-handling-code":
        record = _record("intelligence", "INT-T-90", {**child, "role": "subject"})
        del record["details"]["grading"]["handling_code"]
        return record, "records[0].details.grading.handling_code", "required"
    if fault == "birth-date-in-the-future":
        record["child"]["birth_date"] = _in_the_future()
        return record, "records[0].child.birth_date", "value"
    assert fault == "source-identifier"
    record["details"]["summary"] = "Information from CHIS 1234 says the child was there."
    return record, "records[0].details.summary", "security"


@pytest.mark.parametrize(
    "fault",
    ["unknown-field", "unknown-child-field", "intelligence-without-handling-code", "birth-date-in-the-future",
     "source-identifier"],
)
def test_a_bad_record_is_rejected_at_its_field_and_nothing_of_it_is_stored(
    client: TestClient, session: Session, headers: dict[str, str], fault: str
) -> None:
    record, location, code = _faulty(fault)
    before = stored_counts(session)

    response = _post(client, headers, _batch(record))

    assert _statuses(response) == ["rejected"]
    assert response.json()["summary"] == {"created": 0, "unchanged": 0, "rejected": 1}
    errors = _errors(response)
    assert [(e["location"], e["code"]) for e in errors] == [(location, code)], errors
    assert all(e["message"] for e in errors)
    assert "CHIS 1234" not in response.text
    assert stored_counts(session) == before
    assert last_event(session, AuditAction.CLIENT_RECORDS_REJECTED).detail["issue_codes"] == [code]


def test_an_invalid_nhs_number_is_rejected_without_repeating_it(
    client: TestClient, session: Session, headers: dict[str, str]
) -> None:
    record = _record("incident", "OCC-T-91", _child("PER-T-910", nhs="9434765918"))  # fails Modulus 11
    before = stored_counts(session)

    response = _post(client, headers, _batch(record))

    (error,) = _errors(response)
    assert error["location"] == "records[0].child.nhs_number"
    assert "Modulus 11" in error["message"]
    assert "9434765918" not in response.text
    assert stored_counts(session) == before


def test_whole_payload_faults_are_rfc_9457_problems_and_store_nothing(
    client: TestClient, session: Session, headers: dict[str, str]
) -> None:
    good = _record("incident", "OCC-T-92", _child("PER-T-920", nhs=nhs_number()))
    before = stored_counts(session)

    unknown = _post(client, headers, {**_batch(good), "priority": "high"})
    not_json = _post(client, headers, b'{"schema": "police/v1", "records": [')
    wrong_type = client.post("/police/v1/records", content=json.dumps(_batch(good)),
                             headers={**headers, "Content-Type": "text/plain"})
    no_token = client.post("/police/v1/records", content=json.dumps(_batch(good)), headers={"Content-Type": JSON})

    assert (unknown.status_code, not_json.status_code, wrong_type.status_code, no_token.status_code) == (
        400, 400, 415, 401
    )
    for response in (unknown, not_json, wrong_type, no_token):
        assert response.headers["content-type"].startswith(PROBLEM), response.headers["content-type"]
        problem = response.json()
        assert problem["status"] == response.status_code and problem["title"] and problem["detail"]
    assert [(e["location"], e["code"]) for e in unknown.json()["errors"]] == [("priority", "structure")]
    assert not_json.json()["errors"][0]["code"] == "invalid"
    assert "application/json" in wrong_type.json()["detail"]
    assert no_token.headers["www-authenticate"].startswith("Bearer")
    assert stored_counts(session) == before


def test_a_bad_record_does_not_sink_the_good_one_unless_the_batch_is_atomic(
    client: TestClient, session: Session, headers: dict[str, str]
) -> None:
    bad, location, _code = _faulty("birth-date-in-the-future")
    good = _record("incident", "OCC-T-93", _child("PER-T-930", nhs=nhs_number(), given=("Robin",)))
    before = stored_counts(session)

    atomic = _post(client, headers, _batch(bad, good, atomic=True))

    assert atomic.status_code == 422
    assert atomic.headers["content-type"].startswith(PROBLEM)
    assert location in [e["location"] for e in atomic.json()["errors"]]
    assert stored_counts(session) == before
    assert last_event(session, AuditAction.CLIENT_RECORDS_REJECTED).outcome == "failure"

    mixed = _post(client, headers, _batch(bad, good))

    assert _statuses(mixed) == ["rejected", "created"]
    assert mixed.json()["atomic"] is False
    assert [e["location"] for e in _errors(mixed)] == [location]
    after = stored_counts(session)
    assert after["item"] == before["item"] + 1 and after["identity"] == before["identity"] + 1
    assert isinstance(_child_of(session, "OCC-T-93"), uuid.UUID)  # filed, on one child


def test_a_client_not_registered_for_intelligence_has_that_record_rejected_as_forbidden(
    client: TestClient, session: Session, settings: Settings, signing_keys: SigningKeys
) -> None:
    no_intelligence, _key = make_client(session, agency=Agency.POLICE, kinds=FORCE_KINDS[:-1])
    headers = {"Content-Type": JSON, "Authorization": f"Bearer {client_token(signing_keys, settings, no_intelligence)}"}
    child = _child("PER-T-940", nhs=nhs_number())
    before = stored_counts(session)

    response = _post(client, headers, _batch(_record("intelligence", "INT-T-94", {**child, "role": "subject"}),
                                             _record("incident", "OCC-T-95", child)))

    assert _statuses(response) == ["rejected", "created"]
    (error,) = _errors(response)
    assert (error["location"], error["code"]) == ("records[0]", "forbidden")
    assert "intelligence" in error["message"]
    assert stored_counts(session)["item"] == before["item"] + 1
    session.expire_all()
    assert session.scalar(select(Item.id).where(Item.source_record_id == "INT-T-94")) is None


def test_a_record_refused_as_forbidden_leaves_no_child_behind(
    client: TestClient, session: Session, settings: Settings, signing_keys: SigningKeys
) -> None:
    no_intelligence, _key = make_client(session, agency=Agency.POLICE, kinds=FORCE_KINDS[:-1])
    headers = {"Content-Type": JSON, "Authorization": f"Bearer {client_token(signing_keys, settings, no_intelligence)}"}
    record = _record("intelligence", "INT-T-97", _child("PER-T-970", nhs=nhs_number(), role="subject"))
    before = stored_counts(session)

    response = _post(client, headers, _batch(record))

    assert _statuses(response) == ["rejected"]
    assert stored_counts(session) == before


def test_a_contact_as_long_as_the_format_allows_is_stored(
    client: TestClient, session: Session, headers: dict[str, str]
) -> None:
    contact = {"officer": "DC " + "O" * 97, "unit": "U" * 100, "phone": "+44 1234 567 890 123 45",
               "email": "a" * 178 + "@" + "b" * 60 + ".police.invalid"}
    assert len(contact["email"]) <= 254
    before = stored_counts(session)

    response = _post(client, headers, _batch(_record("incident", "OCC-T-96", _child("PER-T-960", nhs=nhs_number()),
                                                     contact=contact)))

    assert _statuses(response) == ["created"]
    assert stored_counts(session)["item"] == before["item"] + 1


# -- Operation Encompass ------------------------------------------------------------------------------


def test_a_domestic_abuse_notice_reaches_the_dsl_of_the_childs_school_as_the_notice_only(
    client: TestClient,
    session: Session,
    settings: Settings,
    signing_keys: SigningKeys,
    headers: dict[str, str],
) -> None:
    urn = "999001"
    dsl = SchoolContact(urn=urn, subject="dsl.t1@school.test.example", display_name="Test DSL",
                        role=SchoolContactRole.DESIGNATED_SAFEGUARDING_LEAD)
    session.add(dsl)
    school, _key = make_client(session, agency=Agency.EDUCATION, kinds=SCHOOL_KINDS)
    nhs = nhs_number()
    enrolment = {
        "schema": "education/v1",
        "records": [{
            "record_id": "enrolment/T/1", "version": "1", "kind": "enrolment",
            "pupil": {"upn": "D801900126001", "nhs_number": nhs, "given_names": ["Jordan"], "family_name": "Fakechild",
                      "birth_date": "2014-03-09", "sex": "female"},
            "school": {"urn": urn, "name": "Example Primary School"},
            "details": {"year_group": "6", "start_date": "2026-09-03"},
        }],
    }
    enrolled = client.post("/education/v1/records", content=json.dumps(enrolment), headers={
        "Content-Type": JSON, "Authorization": f"Bearer {client_token(signing_keys, settings, school)}"})
    assert [o["status"] for o in enrolled.json()["outcomes"]] == ["created"], enrolled.text
    notice = _record("domestic_abuse_notification", "OCC-T-EN", _child("PER-T-EN", nhs=nhs, role="present"))

    assert _statuses(_post(client, headers, _batch(notice))) == ["created"]

    principal = Principal(PrincipalKind.STAFF, dsl.subject, Agency.EDUCATION, "designated_safeguarding_lead")
    token = mint_access_token(signing_keys, issuer=settings.issuer, audience=settings.audience, principal=principal,
                              ttl_seconds=300)
    inbox = client.get("/api/v1/encompass/inbox", headers={"Authorization": f"Bearer {token}"})
    assert inbox.status_code == 200, inbox.text
    (received,) = inbox.json()["notices"]
    assert received["notice"] == notice["details"]["school_notice"]
    assert received["school_urn"] == urn and received["withdrawn"] is False
    assert received["pupil"]["given_names"] == ["Jordan"]
    assert "Officers attended an argument" not in inbox.text  # the police record stays with the police
    assert received["deadline"] > received["received_at"]


# -- the published schema -------------------------------------------------------------------------------


def test_the_schema_is_public_and_its_examples_are_accepted_as_they_stand(
    client: TestClient, session: Session, headers: dict[str, str]
) -> None:
    response = client.get("/schemas/police.json")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/schema+json")
    schema = response.json()
    assert schema["$id"] == "urn:macpt-gateway:schema:police:v1"
    submission, retraction = schema["examples"]

    pushed = _post(client, headers, submission)

    assert _statuses(pushed) == ["created"] * len(submission["records"])
    assert {record["kind"] for record in submission["records"]} == {
        "incident", "domestic_abuse_notification", "missing_episode", "custody", "intelligence"
    }
    assert _statuses(_post(client, headers, retraction)) == ["created"]
    session.expire_all()
    versions = session.execute(
        select(Item.source_version, Item.status).where(Item.source_record_id == "OCC-2026-000101")
    ).all()
    assert sorted(versions) == [("1", RecordStatus.SUPERSEDED), ("2", RecordStatus.ENTERED_IN_ERROR)]

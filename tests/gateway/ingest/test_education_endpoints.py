"""POST /education/v1/records, POST /education/v1/records.csv and GET /schemas/education.json, end to end.

Every test goes through the real app: a school's client token, the education/v1 batch or a CSV
attendance extract, linking by UPN, filing, routing, and the child's view or the lead
practitioner's notifications read back over HTTP.
"""

from __future__ import annotations

import copy
import json
import random
import uuid
from datetime import date, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from gateway.auth.keys import SigningKeys
from gateway.demo.population import synthetic_upn
from gateway.kit.crypto import DataKeyring
from gateway.models import Client, Item
from gateway.settings import Settings
from policies import Agency
from tests.factories import add_member, allocate, client_token, make_client, make_team, nhs_number, staff_token
from tests.gateway.helpers import child_id_for, get_view, stored_counts

SCHOOL_KINDS = ("identity", "enrolment", "attendance", "exclusion", "safeguarding_concern", "education_notice")
JSON = "application/json"
CSV = "text/csv"
PROBLEM = "application/problem+json"
SCHOOL = {"urn": "999001", "name": "Example Test School"}
CHECK_LETTERS = "ABCDEFGHJKLMNPQRTUVWXYZ"  # the letters a UPN's check character may be (no I, O or S)


# -- building a school's batch ----------------------------------------------------------------------


def _upn(seed: int) -> str:
    return synthetic_upn(random.Random(seed))


def _pupil(
    upn: str,
    *,
    nhs: str | None = None,
    given: tuple[str, ...] = ("Alex",),
    family: str = "Testpupil",
    birth_date: str = "2016-05-04",
    sex: str = "female",
    postcode: str = "ZZ99 3VZ",
) -> dict[str, Any]:
    pupil: dict[str, Any] = {
        "upn": upn,
        "given_names": list(given),
        "family_name": family,
        "birth_date": birth_date,
        "sex": sex,
        "address": {"lines": ["4 Sample Street", "Testtown"], "postcode": postcode},
    }
    if nhs is not None:
        pupil["nhs_number"] = nhs
    return pupil


def _details(kind: str) -> dict[str, Any]:
    details: dict[str, dict[str, Any]] = {
        "enrolment": {"year_group": "5", "start_date": "2026-09-03"},
        "attendance": {
            "period_start": "2026-09-03",
            "period_end": "2026-10-23",
            "possible_sessions": 72,
            "attended_sessions": 60,
            "absences": {"I": 6, "N": 4, "O": 2},
        },
        "exclusion": {"type": "suspension", "start_date": "2026-10-14", "sessions": 4,
                      "reason": "verbal_abuse_against_adult"},
        "safeguarding_concern": {
            "logged_at": "2026-10-20T14:35:00+01:00",
            "category": "neglect",
            "summary": "Arrived hungry three mornings this week.",
            "action_taken": "Breakfast club place offered; parent invited to meet the DSL.",
        },
        "education_notice": {
            "type": "elective_home_education",
            "effective_date": "2026-10-01",
            "previous_school_urn": "999001",
            "summary": "Parent's written notice received.",
        },
    }
    return details[kind]


def _record(kind: str, record_id: str, pupil: dict[str, Any], *, version: str = "1", **fields: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "record_id": record_id,
        "version": version,
        "kind": kind,
        "pupil": copy.deepcopy(pupil),
        "details": _details(kind),
    }
    if kind != "education_notice":
        record["school"] = dict(SCHOOL)
    record.update(fields)
    return record


def _batch(*records: dict[str, Any], **envelope: Any) -> dict[str, Any]:
    return {"schema": "education/v1", "records": list(records), **envelope}


def _post(http: TestClient, headers: dict[str, str], body: dict[str, Any]) -> Response:
    response: Response = http.post("/education/v1/records", content=json.dumps(body), headers=headers)
    return response


def _post_csv(http: TestClient, headers: dict[str, str], text: str, *, atomic: bool | None = None) -> Response:
    params = {} if atomic is None else {"atomic": str(atomic).lower()}
    response: Response = http.post(
        "/education/v1/records.csv", content=text.encode(), params=params, headers={**headers, "Content-Type": CSV}
    )
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


def _view(
    http: TestClient, session: Session, settings: Settings, signing_keys: SigningKeys, child_id: uuid.UUID
) -> dict[str, Any]:
    """Allocate the child to a new team and read its view as the team's social worker."""
    team = make_team(session)
    allocate(session, child_id=child_id, team=team)
    member = add_member(session, team, agency="social_care", role="social_worker")
    response = get_view(http, staff_token(signing_keys, settings, member), child_id)
    assert response.status_code == 200, response.text
    view: dict[str, Any] = response.json()
    return view


def _school(session: Session, settings: Settings, signing_keys: SigningKeys) -> dict[str, str]:
    school, _key = make_client(session, agency=Agency.EDUCATION, kinds=SCHOOL_KINDS)
    return {"Content-Type": JSON, "Authorization": f"Bearer {client_token(signing_keys, settings, school)}"}


@pytest.fixture
def school(session: Session) -> Client:
    client, _key = make_client(session, agency=Agency.EDUCATION, kinds=SCHOOL_KINDS)
    return client


@pytest.fixture
def headers(school: Client, settings: Settings, signing_keys: SigningKeys) -> dict[str, str]:
    return {"Content-Type": JSON, "Authorization": f"Bearer {client_token(signing_keys, settings, school)}"}


# -- each kind, in the right child's view ----------------------------------------------------------


def test_every_kind_is_created_and_read_in_the_right_childs_view(
    client: TestClient,
    session: Session,
    settings: Settings,
    signing_keys: SigningKeys,
    keyring: DataKeyring,
    headers: dict[str, str],
) -> None:
    alex = _pupil(_upn(1), nhs=nhs_number())
    sam = _pupil(_upn(2), given=("Sam",), family="Specimen", birth_date="2013-11-02", sex="male",
                 postcode="ZZ99 4QW")
    batch = _batch(
        _record("enrolment", "enrol/T/1", alex, recorded_by="Admissions officer"),
        _record("exclusion", "excl/T/2", sam, recorded_by="Head of year 8"),
        _record("attendance", "att/T/3", alex),
        _record("safeguarding_concern", "concern/T/4", alex, recorded_by="Designated safeguarding lead"),
        _record("education_notice", "notice/T/5", sam),
    )

    response = _post(client, headers, batch)

    assert _statuses(response) == ["created"] * 5
    assert response.json()["summary"] == {"created": 5, "unchanged": 0, "rejected": 0}
    alex_id = child_id_for(session, keyring, alex["nhs_number"])
    sam_id = _child_of(session, "excl/T/2")
    assert alex_id != sam_id
    assert {_child_of(session, r) for r in ("enrol/T/1", "att/T/3", "concern/T/4")} == {alex_id}
    assert _child_of(session, "notice/T/5") == sam_id

    alexs = _view(client, session, settings, signing_keys, alex_id)
    by_kind = {entry["kind"]: entry["summary"] for entry in alexs["timeline"]}
    assert by_kind == {
        "enrolment": "On roll at Example Test School (URN 999001), year 5, since 3 Sep 2026",
        "attendance": "Attendance 3 Sep 2026 – 23 Oct 2026: 60 of 72 sessions (83.3%); unauthorised 6 (N 4, O 2); "
        "authorised 6 (I 6); persistent absence",
        "safeguarding_concern": "Safeguarding concern (neglect) logged 20 Oct 2026 at Example Test School "
        "(URN 999001): Arrived hungry three mornings this week. Action taken: Breakfast club place offered; "
        "parent invited to meet the DSL.",
    }
    assert {entry["source"]["agency"] for entry in alexs["timeline"]} == {"education"}
    (identity,) = alexs["identities"]
    assert identity["given_names"] == ["Alex"] and identity["postcode"] == "ZZ99 3VZ"

    sams = _view(client, session, settings, signing_keys, sam_id)
    assert {entry["kind"]: entry["summary"] for entry in sams["timeline"]} == {
        "exclusion": "Suspended from Example Test School (URN 999001) for 4 sessions from 14 Oct 2026: "
        "Verbal abuse or threatening behaviour against an adult",
        "education_notice": "Elective home education from 1 Oct 2026 (previously at school URN 999001): "
        "Parent's written notice received.",
    }


# -- linking by UPN --------------------------------------------------------------------------------


@pytest.mark.parametrize("sender", ["same-school", "next-school"])
def test_a_later_batch_with_the_same_upn_lands_on_the_same_child_whatever_the_spelling(
    client: TestClient,
    session: Session,
    settings: Settings,
    signing_keys: SigningKeys,
    keyring: DataKeyring,
    headers: dict[str, str],
    sender: str,
) -> None:
    upn = _upn(10)
    first = _pupil(upn, nhs=nhs_number(), given=("Katherine",), family="Testpupil-Smyth")
    respelt = _pupil(upn, given=("Catherine",), family="Testpupil Smith")  # no NHS number this time
    assert _statuses(_post(client, headers, _batch(_record("enrolment", "enrol/T/10", first)))) == ["created"]
    later = headers if sender == "same-school" else _school(session, settings, signing_keys)

    response = _post(client, later, _batch(_record("attendance", "att/T/11", respelt)))

    assert _statuses(response) == ["created"]
    child_id = child_id_for(session, keyring, first["nhs_number"])
    assert _child_of(session, "att/T/11") == child_id
    view = _view(client, session, settings, signing_keys, child_id)
    assert sorted(entry["kind"] for entry in view["timeline"]) == ["attendance", "enrolment"]
    linked = {tuple(identity["given_names"]): identity["link_method"] for identity in view["identities"]}
    assert linked[("Catherine",)] == "upn"


def test_a_upn_with_a_wrong_check_letter_is_rejected_without_repeating_it(
    client: TestClient, session: Session, headers: dict[str, str]
) -> None:
    upn = _upn(20)
    wrong = next(letter for letter in CHECK_LETTERS if letter != upn[0]) + upn[1:]
    before = stored_counts(session)

    response = _post(client, headers, _batch(_record("enrolment", "enrol/T/20", _pupil(wrong))))

    (error,) = _errors(response)
    assert (error["location"], error["code"]) == ("records[0].pupil.upn", "value")
    assert "check letter" in error["message"]
    assert wrong not in response.text and wrong[1:] not in response.text
    assert stored_counts(session) == before


# -- the CSV attendance extract ---------------------------------------------------------------------

GIVEN = ("Alex", "Bailey", "Charlie", "Devon", "Eden", "Frankie", "Gray", "Harper", "Indigo", "Jules",
         "Kit", "Lennox", "Marlow", "Noor", "Oakley", "Peyton", "Quinn", "Rowan", "Sasha", "Tatum")
FAMILY = ("Testwell", "Fakeley", "Sampleton", "Mockford", "Dummett", "Placeholt", "Notreal", "Madeupson",
          "Specimen", "Exampleby")
COLUMNS = ("record_id,version,upn,given_names,family_name,birth_date,sex,postcode,school_urn,period_start,"
           "period_end,possible_sessions,attended_sessions,absence_I,absence_N")


def _born(n: int) -> date:
    """The birth date of the nth pupil of an extract: 23 days apart, from 2008 to 2020 for 200 pupils."""
    return date(2008, 1, 5) + timedelta(days=23 * n)


def _csv_rows(count: int) -> list[str]:
    """Return `count` attendance rows about as many different pupils (distinct UPNs, names and birth dates)."""
    upns: list[str] = []
    seed = 1000
    while len(upns) < count:
        upn = _upn(seed)
        seed += 1
        if upn not in upns:
            upns.append(upn)
    rows = []
    for n, upn in enumerate(upns):
        born = _born(n)
        postcode = f"ZZ99 {n % 10}{'ABDEFGHJLN'[n % 10]}{'PQRSTUWXYZ'[n // 10 % 10]}"
        sex = ("female", "male")[n % 2]
        attended, ill, unexplained = 70 - n % 8, n % 8 // 2, n % 8 - n % 8 // 2
        rows.append(f"att/csv/{n:04d},1,{upn},{GIVEN[n % 20]},{FAMILY[n // 20]},{born.isoformat()},{sex},{postcode},"
                    f"999001,2026-09-03,2026-10-23,70,{attended},{ill or ''},{unexplained or ''}")
    return rows


def _csv(rows: list[str], header: str = COLUMNS) -> str:
    return "\r\n".join([header, *rows]) + "\r\n"


def test_a_200_row_extract_is_stored_row_by_row_and_a_repeat_stores_nothing(
    client: TestClient, session: Session, headers: dict[str, str]
) -> None:
    extract = _csv(_csv_rows(200))
    before = stored_counts(session)

    response = _post_csv(client, headers, extract)

    assert _statuses(response) == ["created"] * 200
    body = response.json()
    assert body["summary"] == {"created": 200, "unchanged": 0, "rejected": 0}
    assert body["outcomes"][0]["location"] == "row 2" and body["outcomes"][-1]["location"] == "row 201"
    assert body["outcomes"][0]["record_id"] == "att/csv/0000"
    after = stored_counts(session)
    assert after["item"] == before["item"] + 200
    assert after["child"] == before["child"] + 200  # 200 pupils, 200 children: none linked to another
    session.expire_all()
    filed = session.scalar(select(func.count(func.distinct(Item.child_id))).where(Item.source_record_id.like("att/csv/%")))
    assert filed == 200

    again = _post_csv(client, headers, extract)

    assert _statuses(again) == ["unchanged"] * 200
    assert stored_counts(session) == after


def test_a_bad_row_is_rejected_at_its_row_and_column_and_the_others_are_stored(
    client: TestClient, session: Session, headers: dict[str, str]
) -> None:
    rows = _csv_rows(4)
    rows[1] = rows[1].replace(f",{_born(1).isoformat()},", ",2008-02-30,")  # row 3: there is no 30 February
    assert ",2008-02-30," in rows[1]
    before = stored_counts(session)

    response = _post_csv(client, headers, _csv(rows))

    assert _statuses(response) == ["created", "rejected", "created", "created"]
    (error,) = _errors(response)
    assert error["location"] == "row 3, column birth_date"
    assert response.json()["outcomes"][1]["location"] == "row 3"
    assert "2008-02-30" not in response.text
    assert stored_counts(session)["item"] == before["item"] + 3


def test_an_atomic_extract_with_a_bad_row_stores_nothing(
    client: TestClient, session: Session, headers: dict[str, str]
) -> None:
    rows = _csv_rows(3)
    rows[2] = rows[2].replace(",999001,", ",99901,")  # a five-digit URN
    before = stored_counts(session)

    response = _post_csv(client, headers, _csv(rows), atomic=True)

    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    assert "row 4, column school_urn" in [e["location"] for e in response.json()["errors"]]
    assert stored_counts(session) == before


def test_an_extract_missing_a_required_column_is_refused_naming_it(
    client: TestClient, session: Session, headers: dict[str, str]
) -> None:
    dropped = COLUMNS.split(",").index("attended_sessions")
    header, *rows = [
        ",".join(cell for position, cell in enumerate(line.split(",")) if position != dropped)
        for line in (COLUMNS, *_csv_rows(2))
    ]
    before = stored_counts(session)

    response = _post_csv(client, headers, _csv(rows, header))

    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    assert "attended_sessions" in response.json()["errors"][-1]["message"]
    assert stored_counts(session) == before


def test_json_sent_to_the_csv_route_and_csv_to_the_json_route_are_refused_saying_which_route_takes_it(
    client: TestClient, session: Session, headers: dict[str, str]
) -> None:
    batch = json.dumps(_batch(_record("attendance", "att/T/30", _pupil(_upn(30)))))
    extract = _csv(_csv_rows(1))
    before = stored_counts(session)

    json_to_csv = client.post("/education/v1/records.csv", content=batch, headers=headers)
    csv_to_json = client.post("/education/v1/records", content=extract, headers={**headers, "Content-Type": CSV})
    mislabelled = client.post("/education/v1/records.csv", content=batch, headers={**headers, "Content-Type": CSV})

    assert json_to_csv.status_code == 400 and csv_to_json.status_code == 400, (json_to_csv.text, csv_to_json.text)
    assert "text/csv" in json_to_csv.json()["errors"][0]["message"]
    assert "/education/v1/records" in json_to_csv.json()["errors"][0]["message"]
    assert "application/json" in csv_to_json.json()["errors"][0]["message"]
    assert "/education/v1/records.csv" in csv_to_json.json()["errors"][0]["message"]
    assert mislabelled.status_code == 400
    assert "header row" in mislabelled.json()["errors"][0]["message"]
    assert stored_counts(session) == before


# -- bad input ----------------------------------------------------------------------------------------


def _in_the_future() -> str:
    return (date.today() + timedelta(days=400)).isoformat()


@pytest.mark.parametrize(
    ("fault", "location"),
    [
        ("unknown-field", "records[0].colour"),
        ("attended-more-than-possible", "records[0].details.attended_sessions"),
        ("unknown-absence-code", "records[0].details.absences.Z9"),
        ("birth-date-in-the-future", "records[0].pupil.birth_date"),
    ],
)
def test_a_bad_record_is_rejected_at_its_field_and_nothing_of_it_is_stored(
    client: TestClient, session: Session, headers: dict[str, str], fault: str, location: str
) -> None:
    record = _record("attendance", "att/T/40", _pupil(_upn(40), nhs=nhs_number()))
    if fault == "unknown-field":
        record["colour"] = "blue"
    elif fault == "attended-more-than-possible":
        record["details"].update(possible_sessions=60, attended_sessions=61, absences={})
    elif fault == "unknown-absence-code":
        record["details"]["absences"]["Z9"] = 1
    else:
        record["pupil"]["birth_date"] = _in_the_future()
    good = _record("enrolment", "enrol/T/41", _pupil(_upn(41), given=("Robin",), family="Goodrecord"))
    before = stored_counts(session)

    response = _post(client, headers, _batch(record, good))

    assert _statuses(response) == ["rejected", "created"]
    errors = _errors(response)
    assert location in [e["location"] for e in errors], errors
    assert all(e["code"] in ("structure", "value") and e["message"] for e in errors)
    assert stored_counts(session)["item"] == before["item"] + 1
    session.expire_all()
    assert session.scalar(select(Item.id).where(Item.source_record_id == "att/T/40")) is None


def test_a_birth_date_sent_as_a_number_is_refused(
    client: TestClient, session: Session, headers: dict[str, str]
) -> None:
    record = _record("enrolment", "enrol/T/42", _pupil(_upn(42)))
    record["pupil"]["birth_date"] = 1399939200  # midnight UTC, 13 May 2014: a mapping mistake, not a date

    response = _post(client, headers, _batch(record))

    assert _statuses(response) == ["rejected"]


# -- the published schema -------------------------------------------------------------------------------


def test_the_schema_is_public_and_its_examples_are_accepted_as_they_stand(
    client: TestClient, session: Session, headers: dict[str, str]
) -> None:
    response = client.get("/schemas/education.json")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/schema+json")
    schema = response.json()
    assert schema["$id"] == "urn:macpt-gateway:schema:education:v1"
    (example,) = schema["examples"]

    pushed = _post(client, headers, example)
    extract = _post_csv(client, headers, schema["x-csv"]["example"])

    assert _statuses(pushed) == ["created"] * len(example["records"])
    assert {record["kind"] for record in example["records"]} == {
        "enrolment", "attendance", "exclusion", "safeguarding_concern", "education_notice"
    }
    assert _statuses(extract) == ["created"] * 3
    # The CSV's first pupil is the JSON example's Alex (same UPN): one child.
    assert _child_of(session, "att/2026-a1/0001") == _child_of(session, "enrolment/2026/0001")


# -- notifications ------------------------------------------------------------------------------------


def test_an_exclusion_of_a_child_with_an_open_case_reaches_the_lead_practitioner(
    client: TestClient, session: Session, settings: Settings, signing_keys: SigningKeys, headers: dict[str, str]
) -> None:
    pupil = _pupil(_upn(50), given=("Sam",), family="Specimen", birth_date="2013-11-02", sex="male")
    assert _statuses(_post(client, headers, _batch(_record("enrolment", "enrol/T/50", pupil)))) == ["created"]
    child_id = _child_of(session, "enrol/T/50")
    team = make_team(session)
    allocate(session, child_id=child_id, team=team)
    lead = add_member(session, team, agency="social_care", role="lead_practitioner")
    lead_headers = {"Authorization": f"Bearer {staff_token(signing_keys, settings, lead)}"}
    assert client.get("/api/v1/notifications", headers=lead_headers).json()["notifications"] == []

    assert _statuses(_post(client, headers, _batch(_record("exclusion", "excl/T/51", pupil)))) == ["created"]

    listed = client.get("/api/v1/notifications", headers=lead_headers)
    assert listed.status_code == 200, listed.text
    (notification,) = listed.json()["notifications"]
    assert (notification["agency"], notification["record_kind"]) == ("education", "exclusion")
    assert notification["child_id"] == str(child_id) and notification["decision"] == "disclose"
    assert notification["category"] == "education.exclusion" and notification["read_at"] is None
    assert "Verbal abuse" not in listed.text  # which agency and kind, never the record itself
    assert listed.json()["unread"] == 1

"""GET /fhir/R4/AuditEvent: a child's audit events as a FHIR searchset, with FHIR date prefixes."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from fastapi.testclient import TestClient
from fhir.resources.R4B.bundle import Bundle
from httpx import Response
from sqlalchemy.orm import Session

from audit import AuditAction, AuditEvent
from gateway.auth.keys import SigningKeys
from gateway.kit.crypto import DataKeyring
from gateway.settings import Settings
from tests.factories import add_member, client_token, make_client, make_team, staff_token
from tests.gateway.helpers import last_event
from tests.gateway.ig.helpers import IG_SUBJECT, bearer, events, ig_token, member_token, partnership, view

AUDIT_EVENT = "/fhir/R4/AuditEvent"


@dataclass(frozen=True)
class Child:
    """A child with pushes, two views and a refusal; another child with events of its own."""

    child_id: uuid.UUID
    other_child: uuid.UUID
    first_view: AuditEvent
    second_view: AuditEvent
    token: str


@pytest.fixture
def child(
    client: TestClient, session: Session, settings: Settings, signing_keys: SigningKeys, keyring: DataKeyring
) -> Child:
    """Build the trail."""
    seeded = partnership(client, session, settings, signing_keys, keyring, children=2)
    child_id, other = seeded.children
    _police, police_token = member_token(session, settings, signing_keys, seeded.team, agency="police", role="officer")
    assert view(client, police_token, child_id).status_code == 200
    first_view = last_event(session, AuditAction.STAFF_VIEW_OPENED)
    assert view(client, police_token, other).status_code == 200
    outsider = add_member(session, make_team(session, name="Elsewhere"), agency="health", role="nurse")
    assert view(client, staff_token(signing_keys, settings, outsider), child_id).status_code == 403
    assert view(client, police_token, child_id, "family_help").status_code == 200
    second_view = last_event(session, AuditAction.STAFF_VIEW_OPENED)
    return Child(child_id, other, first_view, second_view, ig_token(signing_keys, settings))


def utc(moment: datetime) -> datetime:
    """Return a stored time as an aware UTC time."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def search(http: TestClient, token: str, params: list[tuple[str, str]]) -> Response:
    """Search AuditEvents."""
    response: Response = http.get(AUDIT_EVENT, params=params, headers=bearer(token))
    return response


def seqs_of(bundle: dict[str, Any]) -> list[int]:
    """Return the seqs of a Bundle's AuditEvents (their ids), in order."""
    return [int(entry["resource"]["id"]) for entry in bundle.get("entry", [])]


def expected(session: Session, child_id: uuid.UUID, since: datetime | None = None, until: datetime | None = None) -> list[int]:
    """Return the seqs of the child's events in [since, until), oldest first."""
    return [
        e.seq
        for e in events(session)
        if e.child_id == child_id
        and (since is None or utc(e.occurred_at) >= since)
        and (until is None or utc(e.occurred_at) < until)
    ]


def test_a_childs_events_come_as_a_valid_searchset_bundle(client: TestClient, session: Session, child: Child) -> None:
    want = expected(session, child.child_id)

    response = search(client, child.token, [("patient", f"Patient/{child.child_id}")])

    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/fhir+json"
    bundle = response.json()
    parsed = Bundle.model_validate(json.loads(response.text))
    assert parsed.type == "searchset"
    assert bundle["total"] == len(want) == len(bundle["entry"])
    assert seqs_of(bundle) == want
    # Its pushes, its link, two views and the refusal: five events, no other child's.
    assert [e.action for e in events(session) if e.seq in want] == [
        "identity:link:created",
        "client:records:pushed",
        "staff:view:opened",
        "staff:view:refused",
        "staff:view:opened",
    ]
    stored = {e.seq: e for e in events(session)}
    for entry in bundle["entry"]:
        resource = entry["resource"]
        assert resource["resourceType"] == "AuditEvent"
        assert entry["search"] == {"mode": "match"}
        references = [entity["what"].get("reference") for entity in resource["entity"]]
        assert f"Patient/{child.child_id}" in references
        assert f"Patient/{child.other_child}" not in references
        hashes = [d["valueString"] for entity in resource["entity"] for d in entity.get("detail", []) if d["type"] == "hash"]
        assert hashes == [stored[int(resource["id"])].hash]
    refused = next(e["resource"] for e in bundle["entry"] if e["resource"]["outcomeDesc"].startswith("staff:view:refused"))
    assert refused["outcome"] == "4"


def test_the_bare_id_finds_the_same_events(client: TestClient, session: Session, child: Child) -> None:
    want = expected(session, child.child_id)

    response = search(client, child.token, [("patient", str(child.child_id))])

    assert response.status_code == 200, response.text
    assert seqs_of(response.json()) == want


def test_the_search_is_audited_and_found_by_the_next_search(client: TestClient, session: Session, child: Child) -> None:
    first = search(client, child.token, [("patient", f"Patient/{child.child_id}")]).json()

    searched = last_event(session, AuditAction.IG_AUDIT_SEARCHED)
    assert (searched.actor_id, searched.child_id) == (IG_SUBJECT, child.child_id)
    assert searched.detail == {"filters": ["patient"], "returned": first["total"], "format": "fhir"}

    second = search(
        client, child.token, [("patient", f"Patient/{child.child_id}"), ("date", "ge2000-01-01")]
    ).json()
    assert seqs_of(second) == [*seqs_of(first), searched.seq]
    assert last_event(session, AuditAction.IG_AUDIT_SEARCHED).detail == {
        "filters": ["patient", "date"],
        "returned": first["total"] + 1,
        "format": "fhir",
    }


def test_a_child_with_no_events_gives_an_empty_bundle(client: TestClient, child: Child) -> None:
    response = search(client, child.token, [("patient", f"Patient/{uuid.uuid4()}")])

    assert response.status_code == 200
    assert response.json() == {"resourceType": "Bundle", "type": "searchset", "total": 0}


def test_date_prefixes_narrow_by_day_and_instant(client: TestClient, session: Session, child: Child) -> None:
    boundary = utc(child.second_view.occurred_at)
    today = boundary.date()
    tomorrow = today + timedelta(days=1)
    patient = ("patient", f"Patient/{child.child_id}")
    east = boundary.astimezone(timezone(timedelta(hours=5, minutes=30))).isoformat()
    west = boundary.astimezone(timezone(timedelta(hours=-8))).isoformat()
    exact = boundary.isoformat().replace("+00:00", "Z")
    start_of_day = datetime(today.year, today.month, today.day, tzinfo=UTC)
    start_of_tomorrow = start_of_day + timedelta(days=1)
    just_after = boundary + timedelta(microseconds=1)
    # Each search is itself an event about the child: what each should find is worked out just before it.
    cases: dict[str, tuple[list[str], datetime | None, datetime | None]] = {
        "the whole of today": ([f"ge{today}", f"lt{tomorrow}"], start_of_day, start_of_tomorrow),
        "today, by eq": ([f"eq{today}"], start_of_day, start_of_tomorrow),
        "from tomorrow": ([f"ge{tomorrow}"], start_of_tomorrow, None),
        "after today": ([f"gt{today}"], start_of_tomorrow, None),
        "until yesterday": ([f"le{today - timedelta(days=1)}"], None, start_of_day),
        "up to today, inclusive": ([f"le{today}"], None, start_of_tomorrow),
        "from the second view on": ([f"ge{east}"], boundary, None),
        "before the second view": ([f"lt{west}"], None, boundary),
        "after the second view": ([f"gt{exact}"], just_after, None),
        "at the second view": ([exact], boundary, just_after),
        "no room between": ([f"ge{east}", f"lt{west}"], boundary, boundary),
    }
    for name, (dates, since, until) in cases.items():
        want = expected(session, child.child_id, since, until)
        response = search(client, child.token, [patient, *[("date", d) for d in dates]])
        assert response.status_code == 200, (name, response.text)
        assert seqs_of(response.json()) == want, name
        if name == "at the second view":
            assert want == [child.second_view.seq]
        if name == "before the second view":
            assert child.first_view.seq in want and child.second_view.seq not in want
        if name in ("until yesterday", "no room between"):
            assert want == []


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ([("patient", "Patient/not-a-uuid")], "patient must be Patient/<child id> or the child id (a UUID)"),
        ([("patient", "Group/4c2b36b2-3b1b-4d1a-9b5e-0d5b2f1d1c11")], "patient must be Patient/<child id>"),
        ([("date", "yesterday")], "date must be a prefix (eq, ge, gt, le, lt) and a date"),
        ([("date", "sa2026-11-24")], "date must be a prefix"),
        ([("date", "ge2026-11-24T10:00:00")], "date must be a prefix"),  # a date-time needs a zone
        ([("date", "ge2026-13-01")], "date is not a valid date or date-time"),
        ([("date", "ge2026-11-24T25:00:00Z")], "date is not a valid date or date-time"),
    ],
)
def test_a_bad_patient_or_date_is_400_operation_outcome(
    client: TestClient, child: Child, params: list[tuple[str, str]], message: str
) -> None:
    if params[0][0] == "date":
        params = [("patient", f"Patient/{child.child_id}"), *params]

    response = search(client, child.token, params)

    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/fhir+json"
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    [issue] = body["issue"]
    assert (issue["severity"], issue["code"]) == ("error", "invalid")
    assert issue["diagnostics"].startswith(message)


def test_no_patient_is_refused(client: TestClient, child: Child) -> None:
    response = search(client, child.token, [])

    # FHIR search answers a search it cannot process with 400.
    assert response.status_code == 400, response.text
    assert response.json()["resourceType"] == "OperationOutcome"
    assert response.json()["issue"][0]["diagnostics"] == "patient is required: Patient/<child id>"


def test_only_ig_officers_may_search(
    client: TestClient, session: Session, settings: Settings, signing_keys: SigningKeys, child: Child
) -> None:
    member = add_member(session, make_team(session), agency="police", role="police_officer")
    system, _key = make_client(session)
    patient = [("patient", f"Patient/{child.child_id}")]

    as_member = search(client, staff_token(signing_keys, settings, member), patient)
    as_system = search(client, client_token(signing_keys, settings, system), patient)
    anonymous = client.get(AUDIT_EVENT, params=patient)

    assert as_member.status_code == 403
    assert as_member.json()["resourceType"] == "OperationOutcome"
    assert "ig_officer" in as_member.json()["issue"][0]["diagnostics"]
    refusal = last_event(session, AuditAction.IG_ACCESS_REFUSED)
    assert (refusal.actor_id, refusal.detail) == (member.subject, {"review": ["refused"]})
    assert as_system.status_code == 403
    assert as_system.json()["issue"][0]["code"] == "forbidden"
    assert anonymous.status_code == 401
    assert anonymous.json()["resourceType"] == "OperationOutcome"


def test_a_date_time_covers_the_whole_of_its_precision(client: TestClient, session: Session, child: Child) -> None:
    moment = utc(child.second_view.occurred_at)
    assert moment.microsecond != 0, "the view happened on a whole second: nothing to tell apart"
    second = moment.replace(microsecond=0)
    text = second.isoformat().replace("+00:00", "Z")
    patient = ("patient", f"Patient/{child.child_id}")

    want = expected(session, child.child_id, second, second + timedelta(seconds=1))
    found = seqs_of(search(client, child.token, [patient, ("date", f"eq{text}")]).json())

    assert child.second_view.seq in want
    assert found == want

"""A push costs a constant number of SQL statements, whatever its size, and stores what it did before.

The statements are counted on the test's connection, so they are exactly what a request sends
to the database; the SAVEPOINT and RELEASE that the suite's rolled-back test transaction adds
around each request are left out, because a real request does not send them.
"""

from __future__ import annotations

import copy
import json
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Connection, event, func, select
from sqlalchemy.orm import Session

from gateway.auth.keys import SigningKeys
from gateway.demo.generator import encounter_resource, patient_resource, transaction_bundle
from gateway.kit.crypto import DataKeyring
from gateway.models import Child, Client, Identity, Item
from gateway.settings import Settings
from policies import RecordStatus
from tests.factories import client_token, demo_child, encounter, make_client
from tests.gateway.helpers import FHIR_JSON, child_id_for, stored_counts

# The issue's bound: at most 0.2 statements per stored resource, so 20 for a 100-resource push.
MAX_STATEMENTS_PER_100 = 20


class StatementCounter:
    """Counts the statements sent on a connection while it is armed."""

    def __init__(self) -> None:
        self.statements: list[str] = []
        self.armed = False

    def __call__(self, _conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if self.armed and not statement.lstrip().upper().startswith(("SAVEPOINT", "RELEASE SAVEPOINT")):
            self.statements.append(statement)


@pytest.fixture
def counter(connection: Connection) -> Iterator[StatementCounter]:
    counting = StatementCounter()
    event.listen(connection, "before_cursor_execute", counting)
    yield counting
    event.remove(connection, "before_cursor_execute", counting)


@pytest.fixture
def source(session: Session) -> Client:
    client, _key = make_client(session)
    return client


@pytest.fixture
def headers(source: Client, settings: Settings, signing_keys: SigningKeys) -> dict[str, str]:
    return {**FHIR_JSON, "Authorization": f"Bearer {client_token(signing_keys, settings, source)}"}


def _bundle(patients: int, encounters_each: int, *, prefix: str) -> dict[str, Any]:
    resources: list[dict[str, Any]] = []
    start = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)
    for p in range(patients):
        child = demo_child()
        resources.append(patient_resource(child, resource_id=f"{prefix}-p{p}", postcode=child.postcode))
        for e in range(encounters_each):
            attendance = encounter(start=start + timedelta(days=e, minutes=p))
            resources.append(encounter_resource(attendance, patient_ref=f"Patient/{prefix}-p{p}"))
    return transaction_bundle(resources)


def _push(client: TestClient, headers: dict[str, str], counter: StatementCounter, bundle: dict[str, Any]) -> list[str]:
    body = json.dumps(bundle)
    counter.statements.clear()
    counter.armed = True
    try:
        response = client.post("/fhir/R4", content=body, headers=headers)
    finally:
        counter.armed = False
    assert response.status_code == 200, response.text
    return [entry["response"]["status"] for entry in response.json()["entry"]]


def test_a_new_push_of_100_resources_takes_a_constant_handful_of_statements(
    client: TestClient, session: Session, headers: dict[str, str], counter: StatementCounter
) -> None:
    bundle = _bundle(10, 9, prefix="new")

    statuses = _push(client, headers, counter, bundle)

    assert statuses == ["201 Created"] * 100
    assert len(counter.statements) <= MAX_STATEMENTS_PER_100, "\n".join(counter.statements)
    assert stored_counts(session) == {"child": 10, "identity": 10, "link": 10, "item": 90}


def test_a_push_ten_times_bigger_takes_no_more_statements(
    client: TestClient, headers: dict[str, str], counter: StatementCounter
) -> None:
    _push(client, headers, counter, _bundle(10, 9, prefix="small"))
    small = _without_audit_tree(counter.statements)

    statuses = _push(client, headers, counter, _bundle(100, 9, prefix="big"))

    assert statuses == ["201 Created"] * 1000
    # The audit tree's statements (reading its right edge, storing the nodes the push's event
    # completes) depend on the trail's size, not on the push's: at most two reads and one insert.
    assert len(_without_audit_tree(counter.statements)) == len(small), "\n".join(counter.statements)
    assert len(counter.statements) - len(_without_audit_tree(counter.statements)) <= 3


def _without_audit_tree(statements: list[str]) -> list[str]:
    return [statement for statement in statements if "audit_node" not in statement]


def test_a_repeated_push_and_a_push_of_new_versions_stay_within_the_bound(
    client: TestClient, session: Session, headers: dict[str, str], counter: StatementCounter
) -> None:
    bundle = _bundle(10, 9, prefix="again")
    _push(client, headers, counter, bundle)

    repeat = _push(client, headers, counter, bundle)
    assert repeat == ["200 OK"] * 100
    assert len(counter.statements) <= MAX_STATEMENTS_PER_100, "\n".join(counter.statements)

    changed = copy.deepcopy(bundle)
    for entry in changed["entry"]:
        if entry["resource"]["resourceType"] == "Encounter":
            entry["resource"]["status"] = "cancelled"
    updated = _push(client, headers, counter, changed)
    assert Counter(updated) == {"200 OK": 10, "201 Created": 90}
    assert len(counter.statements) <= MAX_STATEMENTS_PER_100, "\n".join(counter.statements)
    statuses = dict(
        session.execute(select(Item.status, func.count()).group_by(Item.status)).all()
    )
    assert statuses == {RecordStatus.CURRENT: 90, RecordStatus.SUPERSEDED: 90}


def test_the_same_version_twice_in_one_push_is_stored_once(
    client: TestClient, session: Session, headers: dict[str, str], counter: StatementCounter, keyring: DataKeyring
) -> None:
    child = demo_child()
    patient = patient_resource(child, resource_id="twice", postcode=child.postcode)
    attendance = encounter_resource(encounter(), patient_ref="Patient/twice")
    bundle = transaction_bundle([patient, attendance, copy.deepcopy(patient), copy.deepcopy(attendance)])

    statuses = _push(client, headers, counter, bundle)

    assert statuses == ["201 Created", "201 Created", "200 OK", "200 OK"]
    assert stored_counts(session) == {"child": 1, "identity": 1, "link": 1, "item": 1}
    child_id_for(session, keyring, child.nhs_number)


def test_of_two_new_versions_in_one_push_the_later_is_in_force(
    client: TestClient, session: Session, headers: dict[str, str], counter: StatementCounter
) -> None:
    child = demo_child()
    first = {**patient_resource(child, resource_id="moved", postcode=child.postcode), "meta": {"versionId": "1"}}
    second = {**patient_resource(child, resource_id="moved", postcode="ZZ99 9ZZ"), "meta": {"versionId": "2"}}
    visit = {**encounter_resource(encounter(), patient_ref="Patient/moved"), "meta": {"versionId": "1"}}
    revised = {**copy.deepcopy(visit), "status": "cancelled", "meta": {"versionId": "2"}}
    bundle = transaction_bundle([first, visit, second, revised])

    statuses = _push(client, headers, counter, bundle)

    assert statuses == ["201 Created"] * 4
    identities = dict(session.execute(select(Identity.source_version, Identity.status)).all())
    assert identities == {"1": RecordStatus.SUPERSEDED, "2": RecordStatus.CURRENT}
    items = dict(session.execute(select(Item.source_version, Item.status)).all())
    assert items == {"1": RecordStatus.SUPERSEDED, "2": RecordStatus.CURRENT}
    assert session.scalar(select(func.count()).select_from(Child)) == 1


def test_a_transaction_with_one_bad_record_stores_nothing_and_names_it(
    client: TestClient, session: Session, headers: dict[str, str]
) -> None:
    bundle = _bundle(2, 2, prefix="bad")
    bundle["entry"][4]["resource"]["subject"] = {"reference": f"Patient/{uuid.uuid4()}"}
    before = stored_counts(session)

    response = client.post("/fhir/R4", content=json.dumps(bundle), headers=headers)

    assert response.status_code == 422
    issues = response.json()["issue"]
    assert [issue["code"] for issue in issues] == ["not-found"]
    assert issues[0]["expression"] == ["Bundle.entry[4].resource.subject.reference"]
    assert stored_counts(session) == before

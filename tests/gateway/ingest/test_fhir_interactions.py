"""The FHIR R4 HTTP interactions an NHS integration engine uses: formats, versions, Prefer, DELETE, conditional references.

Through the real app, as an agency system: XML or JSON as the client negotiates (errors too), 201/200
with Location, ETag and Last-Modified, Prefer return=minimal|representation|OperationOutcome, DELETE
retracting a record (and refusing a Patient or a Consent), and subjects named by NHS number with a
FHIR conditional reference. The last test races a DELETE against a PUT on a real two-worker server.
"""

from __future__ import annotations

import copy
import json
import threading
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from fhir.resources.R4B import get_fhir_model_class
from httpx import Response
from lxml import etree
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from adapters.fhir_xml import to_xml
from audit import AuditAction, AuditEvent
from gateway.auth.keys import SigningKeys
from gateway.demo.generator import encounter_resource, patient_resource, transaction_bundle
from gateway.keys import KeyFolder
from gateway.kit.crypto import DataKeyring
from gateway.kit.db import build_engine, build_sessionmaker
from gateway.models import Client, Consent, Identity, Item
from gateway.settings import Settings
from policies import RecordStatus
from tests.factories import (
    add_member,
    allocate,
    child_bundle,
    client_token,
    demo_child,
    encounter,
    make_client,
    make_team,
    nhs_number,
    staff_token,
)
from tests.gateway.consents.helpers import fhir_consent
from tests.gateway.helpers import audit_actions, child_id_for, get_view, last_event, stored_counts
from tests.serving import gateway_env, log_tail, prepare, scratch_database, serve_gateway

FHIR_JSON = "application/fhir+json"
FHIR_XML = "application/fhir+xml"
NHS = "https://fhir.nhs.uk/Id/nhs-number"
# httpx sends "Accept: */*" unless told otherwise; an empty Accept is the same as none.
NO_ACCEPT = {"Accept": ""}


@pytest.fixture
def source(session: Session) -> Client:
    client, _key = make_client(session, kinds=("identity", "encounter", "consent"))
    return client


@pytest.fixture
def token(source: Client, settings: Settings, signing_keys: SigningKeys) -> str:
    return client_token(signing_keys, settings, source)


@pytest.fixture
def headers(token: str) -> dict[str, str]:
    return {"Content-Type": FHIR_JSON, "Authorization": f"Bearer {token}"}


def _read(response: Response) -> dict[str, Any]:
    """Return a FHIR answer as JSON-shaped data, read back with fhir.resources whichever its format (so: valid FHIR)."""
    media_type = response.headers["content-type"].split(";")[0]
    if media_type.endswith("xml"):
        root = etree.QName(etree.fromstring(response.content)).localname
        data: dict[str, Any] = get_fhir_model_class(root).model_validate_xml(response.content).model_dump(
            mode="json", exclude_none=True
        )
        return data
    body: dict[str, Any] = response.json()
    get_fhir_model_class(body["resourceType"]).model_validate(body)
    return body


def _media(response: Response) -> str:
    """Return the bare media type of a response (Starlette adds a charset to text/xml)."""
    return response.headers["content-type"].split(";")[0]


def _push(client: TestClient, headers: dict[str, str], bundle: dict[str, Any], **extra: str) -> Response:
    response: Response = client.post("/fhir/R4", content=json.dumps(bundle), headers={**headers, **extra})
    return response


def _put(client: TestClient, headers: dict[str, str], resource: dict[str, Any], **extra: str) -> Response:
    path = f"/fhir/R4/{resource['resourceType']}/{resource['id']}"
    response: Response = client.put(path, content=json.dumps(resource), headers={**headers, **extra})
    return response


def _statuses(response: Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [entry["response"]["status"] for entry in _read(response)["entry"]]


def _visit(resource_id: str, *, patient_ref: str = "Patient/p1", version: str | None = "1") -> dict[str, Any]:
    resource = encounter_resource({**encounter(), "id": resource_id}, patient_ref=patient_ref)
    if version is not None:
        resource["meta"] = {"versionId": version}
    return resource


def _patient(child: Any, resource_id: str = "p1", version: str | None = "1") -> dict[str, Any]:
    resource = patient_resource(child, resource_id=resource_id, postcode=child.postcode)
    if version is not None:
        resource["meta"] = {"versionId": version}
    return resource


def _conditional(number: str) -> str:
    return f"Patient?identifier={NHS}|{number}"


def _item(session: Session, client: Client, record_id: str, version: str) -> Item:
    item = session.scalar(
        select(Item).where(Item.client_id == client.id, Item.source_record_id == record_id, Item.source_version == version)
    )
    assert item is not None, f"{record_id} version {version} was not stored"
    session.refresh(item)
    return item


def _http_date(moment: datetime) -> str:
    return format_datetime(moment.astimezone(UTC), usegmt=True)


def _instant(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _same_instant(fhir_instant: str, moment: datetime) -> bool:
    parsed = datetime.fromisoformat(fhir_instant.replace("Z", "+00:00"))
    return abs((parsed - moment).total_seconds()) < 0.001


# -- 1. formats -------------------------------------------------------------------------------------


def test_an_xml_push_without_accept_is_answered_in_xml(client: TestClient, headers: dict[str, str]) -> None:
    bundle = child_bundle(demo_child(), encounters=[encounter()])

    response = client.post(
        "/fhir/R4", content=to_xml(bundle), headers={**headers, "Content-Type": FHIR_XML, **NO_ACCEPT}
    )

    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == FHIR_XML
    assert response.content.startswith(b"<?xml")
    answer = _read(response)
    assert answer["type"] == "transaction-response"
    assert [entry["response"]["status"] for entry in answer["entry"]] == ["201 Created", "201 Created"]


@pytest.mark.parametrize("accept", [FHIR_XML, "application/xml", "text/xml", "application/fhir+json;q=0.5, application/fhir+xml"])
def test_a_json_push_is_answered_in_the_xml_the_accept_header_asks_for(
    client: TestClient, headers: dict[str, str], accept: str
) -> None:
    response = _push(client, headers, child_bundle(demo_child()), Accept=accept)

    assert response.status_code == 200
    expected = accept if "," not in accept else FHIR_XML
    assert _media(response) == expected
    assert _read(response)["entry"][0]["response"]["status"] == "201 Created"


@pytest.mark.parametrize(
    ("named", "accept", "expected"),
    [
        ("xml", FHIR_JSON, FHIR_XML),
        ("application/fhir+xml", FHIR_JSON, FHIR_XML),
        ("application/fhir xml", FHIR_JSON, FHIR_XML),  # "+" unencoded in a query string reads as a space
        ("json", FHIR_XML, FHIR_JSON),
        ("application/json", FHIR_XML, "application/json"),
        ("text/xml", FHIR_JSON, "text/xml"),
    ],
)
def test_format_wins_over_accept(
    client: TestClient, headers: dict[str, str], named: str, accept: str, expected: str
) -> None:
    response = client.post(
        "/fhir/R4",
        params={"_format": named},
        content=json.dumps(child_bundle(demo_child())),
        headers={**headers, "Accept": accept},
    )

    assert response.status_code == 200, response.text
    assert _media(response) == expected
    assert _read(response)["type"] == "transaction-response"


def test_json_is_the_default_and_a_wildcard_accept_takes_it(client: TestClient, headers: dict[str, str]) -> None:
    plain = _push(client, headers, child_bundle(demo_child()), **NO_ACCEPT)
    wildcard = client.post(
        "/fhir/R4",
        content=to_xml(child_bundle(demo_child())),
        headers={**headers, "Content-Type": FHIR_XML, "Accept": "*/*"},
    )

    assert plain.headers["content-type"] == FHIR_JSON and plain.json()["type"] == "transaction-response"
    assert wildcard.status_code == 200 and wildcard.headers["content-type"] == FHIR_JSON


def test_the_capability_statement_comes_in_xml(client: TestClient) -> None:
    response = client.get("/fhir/R4/metadata", params={"_format": "xml"})

    assert response.status_code == 200 and response.headers["content-type"] == FHIR_XML
    statement = _read(response)
    assert statement["resourceType"] == "CapabilityStatement" and statement["fhirVersion"] == "4.0.1"


@pytest.mark.parametrize(
    ("accept", "named"),
    [("text/html", None), ("application/pdf, image/*", None), ("application/fhir+json;q=0, application/fhir+xml;q=0", None),
     ("application/fhir+json; fhirVersion=5.0", None), (None, "turtle")],
)
def test_a_client_accepting_no_format_we_write_gets_406_in_json_and_nothing_is_stored(
    client: TestClient, session: Session, headers: dict[str, str], accept: str | None, named: str | None
) -> None:
    before = stored_counts(session)

    response = client.post(
        "/fhir/R4",
        params={"_format": named} if named else {},
        content=json.dumps(child_bundle(demo_child(), encounters=[encounter()])),
        headers={**headers, "Accept": accept or FHIR_JSON},
    )

    assert response.status_code == 406
    assert response.headers["content-type"] == FHIR_JSON
    issue = _read(response)["issue"][0]
    assert issue["code"] == "not-supported" and "application/fhir+xml" in issue["diagnostics"]
    assert stored_counts(session) == before


def _bad_request(kind: str, client: TestClient, token: str, settings: Settings) -> Response:
    """Send a request each FHIR error answers, asking for XML."""
    auth = {"Authorization": f"Bearer {token}", "Accept": FHIR_XML}
    json_push = {**auth, "Content-Type": FHIR_JSON}
    method, content, sent = "POST", json.dumps(child_bundle(demo_child())).encode(), json_push
    if kind == "400":
        content = b"{not json"
    elif kind == "401":
        sent = {**json_push, "Authorization": "Bearer x"}
    elif kind == "405":
        method, content, sent = "GET", b"", auth
    elif kind == "413":
        content = b" " * (settings.max_body_bytes + 1)
    elif kind == "415":
        content, sent = b"hello", {**auth, "Content-Type": "text/plain"}
    else:
        assert kind == "422"
        bundle = child_bundle(demo_child(), encounters=[encounter()])
        bundle["entry"][1]["resource"]["subject"] = {"reference": "Patient/nobody"}
        content = json.dumps(bundle).encode()
    response: Response = client.request(method, "/fhir/R4", content=content, headers=sent)
    return response


@pytest.mark.parametrize(
    ("kind", "code"),
    [("400", "structure"), ("401", "login"), ("405", "not-supported"), ("413", "too-long"), ("415", "not-supported"),
     ("422", "not-found")],
)
def test_every_refusal_comes_in_xml_to_an_xml_client(
    client: TestClient, token: str, settings: Settings, kind: str, code: str
) -> None:
    response = _bad_request(kind, client, token, settings)

    assert response.status_code == int(kind), response.text
    assert response.headers["content-type"] == FHIR_XML
    outcome = _read(response)
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["severity"] == "error" and outcome["issue"][0]["code"] == code


def test_a_refusal_of_an_inactive_client_comes_in_xml(
    client: TestClient, session: Session, source: Client, headers: dict[str, str]
) -> None:
    source.active = False
    session.flush()

    response = _push(client, headers, child_bundle(demo_child()), Accept=FHIR_XML)

    assert response.status_code == 403 and response.headers["content-type"] == FHIR_XML
    assert _read(response)["issue"][0]["code"] == "forbidden"


def test_a_staff_token_is_refused_in_xml(
    client: TestClient, session: Session, settings: Settings, signing_keys: SigningKeys
) -> None:
    member = add_member(session, make_team(session), agency="health", role="health_practitioner")
    staff = {"Authorization": f"Bearer {staff_token(signing_keys, settings, member)}", "Content-Type": FHIR_JSON}

    response = client.delete("/fhir/R4/Encounter/e1", headers={**staff, "Accept": FHIR_XML})

    assert response.status_code == 403 and response.headers["content-type"] == FHIR_XML
    assert _read(response)["issue"][0]["code"] == "forbidden"


# -- 2. status codes, ETag and Last-Modified ----------------------------------------------------


def test_a_put_is_201_with_location_etag_and_last_modified_and_a_repeat_200_with_the_stored_ones(
    client: TestClient, session: Session, source: Client, headers: dict[str, str]
) -> None:
    child = demo_child()
    assert _put(client, headers, _patient(child)).status_code == 201
    visit = _visit("e1")

    created = _put(client, headers, visit)

    assert created.status_code == 201, created.text
    stored = _item(session, source, "Encounter/e1", "1")
    assert created.headers["location"] == "Encounter/e1/_history/1"
    assert created.headers["etag"] == 'W/"1"'
    assert created.headers["last-modified"] == _http_date(stored.received_at)
    # A repeat later answers with the stored version's time, not its own.
    earlier = datetime(2025, 6, 1, 8, 30, 15, tzinfo=UTC)
    session.execute(update(Item).where(Item.id == stored.id).values(received_at=earlier))
    session.flush()

    repeat = _put(client, headers, visit)

    assert repeat.status_code == 200
    assert repeat.headers["location"] == "Encounter/e1/_history/1"
    assert repeat.headers["etag"] == 'W/"1"'
    assert repeat.headers["last-modified"] == "Sun, 01 Jun 2025 08:30:15 GMT"
    assert parsedate_to_datetime(repeat.headers["last-modified"]) == earlier
    assert _read(repeat)["issue"][0]["diagnostics"].startswith("Already stored")


def test_a_patient_put_carries_its_identitys_stored_time(
    client: TestClient, session: Session, source: Client, headers: dict[str, str]
) -> None:
    response = _put(client, headers, _patient(demo_child(), "px", version="4"))

    identity = session.scalar(select(Identity).where(Identity.client_id == source.id, Identity.source_record_id == "Patient/px"))
    assert identity is not None
    assert response.status_code == 201
    assert (response.headers["etag"], response.headers["location"]) == ('W/"4"', "Patient/px/_history/4")
    assert response.headers["last-modified"] == _http_date(identity.received_at)


def test_bundle_entries_carry_etag_and_last_modified_for_stored_patients_records_and_consents(
    client: TestClient, session: Session, source: Client, headers: dict[str, str]
) -> None:
    child = demo_child()
    unversioned = _visit("e2", version=None)
    bundle = transaction_bundle([_patient(child), _visit("e1"), unversioned, fhir_consent(resource_id="c1", meta={"versionId": "7"})])

    first = _read(_push(client, headers, bundle))
    again = _read(_push(client, headers, bundle))

    identity = session.scalar(select(Identity).where(Identity.client_id == source.id, Identity.source_record_id == "Patient/p1"))
    consent = session.scalar(select(Consent).where(Consent.client_id == source.id, Consent.source_record_id == "Consent/c1"))
    assert identity is not None and consent is not None
    hashed = session.scalar(select(Item).where(Item.source_record_id == "Encounter/e2"))
    assert hashed is not None
    times = [identity.received_at, _item(session, source, "Encounter/e1", "1").received_at, hashed.received_at,
             consent.recorded_at]
    etags = ['W/"1"', 'W/"1"', f'W/"{hashed.source_version}"', 'W/"7"']
    for answer, status in ((first, "201 Created"), (again, "200 OK")):
        responses = [entry["response"] for entry in answer["entry"]]
        assert [r["status"] for r in responses] == [status] * 4
        assert [r["etag"] for r in responses] == etags
        assert all(_same_instant(r["lastModified"], when) for r, when in zip(responses, times, strict=True))
        assert responses[2]["location"] == f"Encounter/e2/_history/{hashed.source_version}"


def test_a_refused_entry_has_no_version_headers(client: TestClient, headers: dict[str, str]) -> None:
    bundle = child_bundle(demo_child(), encounters=[encounter()])
    bundle["type"] = "batch"
    bundle["entry"][1]["resource"]["subject"] = {"reference": "Patient/nobody"}

    responses = [entry["response"] for entry in _read(_push(client, headers, bundle))["entry"]]

    assert "etag" in responses[0] and "lastModified" in responses[0]
    assert responses[1]["status"].startswith("422")
    assert not {"etag", "lastModified", "location"} & set(responses[1])


# -- 3. Prefer ------------------------------------------------------------------------------------------


def test_prefer_minimal_puts_answer_with_headers_and_no_body(client: TestClient, headers: dict[str, str]) -> None:
    _put(client, headers, _patient(demo_child()))
    visit = _visit("e1")

    created = _put(client, headers, visit, Prefer="return=minimal")
    repeat = _put(client, headers, visit, Prefer="return=minimal")

    assert (created.status_code, repeat.status_code) == (201, 200)
    for response in (created, repeat):
        assert response.content == b""
        assert response.headers["etag"] == 'W/"1"' and response.headers["location"] == "Encounter/e1/_history/1"
        assert "last-modified" in response.headers
        assert response.headers["preference-applied"] == "return=minimal"


@pytest.mark.parametrize("accept", [FHIR_JSON, FHIR_XML])
def test_prefer_representation_answers_with_the_resource_as_stored(
    client: TestClient, session: Session, source: Client, headers: dict[str, str], accept: str
) -> None:
    _put(client, headers, _patient(demo_child()))
    visit = _visit("e1", version="3")

    created = _put(client, headers, visit, Prefer="return=representation", Accept=accept)
    repeat = _put(client, headers, visit, Prefer="return=representation", Accept=accept)

    stored = _item(session, source, "Encounter/e1", "3")
    assert (created.status_code, repeat.status_code) == (201, 200)
    for response in (created, repeat):
        assert response.headers["content-type"] == accept
        resource = _read(response)
        assert resource["resourceType"] == "Encounter" and resource["id"] == "e1"
        assert resource["meta"]["versionId"] == "3"
        assert _same_instant(resource["meta"]["lastUpdated"], stored.received_at)
        assert resource["subject"] == visit["subject"] and resource["period"]["start"].startswith("2026-10-01")


def test_representation_of_a_content_versioned_record_has_no_version_id_but_its_etag(
    client: TestClient, headers: dict[str, str]
) -> None:
    _put(client, headers, _patient(demo_child()))

    response = _put(client, headers, _visit("e1", version=None), Prefer="return=representation")

    resource = _read(response)
    assert response.headers["etag"].startswith('W/"sha256:')
    assert "versionId" not in resource["meta"] and "lastUpdated" in resource["meta"]


def test_prefer_operation_outcome_is_the_default_answer(client: TestClient, headers: dict[str, str]) -> None:
    _put(client, headers, _patient(demo_child()))

    asked = _put(client, headers, _visit("e1"), Prefer="return=OperationOutcome")
    unasked = _put(client, headers, _visit("e2"))

    assert _read(asked)["issue"][0]["diagnostics"] == "Stored." == _read(unasked)["issue"][0]["diagnostics"]
    assert asked.headers["preference-applied"] == "return=OperationOutcome"
    assert "preference-applied" not in unasked.headers


def test_prefer_shapes_bundle_entries(client: TestClient, headers: dict[str, str]) -> None:
    child = demo_child()
    bundle = transaction_bundle([_patient(child), _visit("e1")])
    bundle["type"] = "batch"
    bundle["entry"].append(copy.deepcopy(bundle["entry"][1]))
    bundle["entry"][2]["resource"]["id"] = "e9"
    bundle["entry"][2]["request"]["url"] = "Encounter/e9"
    bundle["entry"][2]["resource"]["subject"] = {"reference": "Patient/nobody"}

    represented = _read(_push(client, headers, bundle, Prefer="return=representation", Accept=FHIR_XML))
    minimal = _read(_push(client, headers, bundle, Prefer="return=minimal"))

    patient, visit, refused = represented["entry"]
    assert patient["resource"]["resourceType"] == "Patient" and patient["resource"]["meta"]["versionId"] == "1"
    assert patient["resource"]["identifier"] == [{"system": NHS, "value": child.nhs_number}]
    assert patient["resource"]["birthDate"] == child.birth_date.isoformat()
    assert visit["resource"]["id"] == "e1" and "lastUpdated" in visit["resource"]["meta"]
    assert "resource" not in refused and refused["response"]["outcome"]["issue"][0]["code"] == "not-found"
    assert [set(entry) for entry in minimal["entry"]] == [{"response"}] * 3
    assert "outcome" not in minimal["entry"][0]["response"]
    assert minimal["entry"][2]["response"]["outcome"]["issue"][0]["code"] == "not-found"  # a refusal always says why


# -- 4. DELETE ------------------------------------------------------------------------------------------


def _viewer(session: Session, settings: Settings, signing_keys: SigningKeys, child_id: uuid.UUID) -> str:
    team = make_team(session)
    member = add_member(session, team, agency="health", role="health_practitioner")
    allocate(session, child_id=child_id, team=team)
    return staff_token(signing_keys, settings, member)


def test_delete_retracts_the_record_from_the_view_and_audits_it(
    client: TestClient,
    session: Session,
    settings: Settings,
    signing_keys: SigningKeys,
    keyring: DataKeyring,
    source: Client,
    headers: dict[str, str],
) -> None:
    child = demo_child()
    assert _statuses(_push(client, headers, transaction_bundle([_patient(child), _visit("e1"), _visit("e2")]))) == [
        "201 Created"
    ] * 3
    child_id = child_id_for(session, keyring, child.nhs_number)
    viewer = _viewer(session, settings, signing_keys, child_id)
    assert len(get_view(client, viewer, child_id).json()["timeline"]) == 2
    retracted = _item(session, source, "Encounter/e1", "1")

    response = client.delete("/fhir/R4/Encounter/e1", headers=headers)

    assert response.status_code == 200, response.text
    assert _read(response)["issue"][0]["diagnostics"].startswith("Deleted")
    assert _item(session, source, "Encounter/e1", "1").status is RecordStatus.ENTERED_IN_ERROR
    assert _item(session, source, "Encounter/e2", "1").status is RecordStatus.CURRENT
    view = get_view(client, viewer, child_id).json()
    assert [entry["item_id"] for entry in view["timeline"]] == [str(_item(session, source, "Encounter/e2", "1").id)]
    assert view["withheld"] == []  # a retraction is withheld silently
    event = last_event(session, AuditAction.CLIENT_RECORDS_RETRACTED)
    assert event.child_id == child_id and event.outcome == "success"
    assert event.detail == {"source_record_id": "Encounter/e1", "item_id": str(retracted.id)}
    assert child.nhs_number not in json.dumps(event.detail) and child.family_name not in json.dumps(event.detail)


def test_a_repeated_delete_says_already_deleted_and_changes_nothing(
    client: TestClient, session: Session, source: Client, headers: dict[str, str]
) -> None:
    _push(client, headers, transaction_bundle([_patient(demo_child()), _visit("e1")]))
    assert client.delete("/fhir/R4/Encounter/e1", headers=headers).status_code == 200
    events = audit_actions(session).count(AuditAction.CLIENT_RECORDS_RETRACTED)

    again = client.delete("/fhir/R4/Encounter/e1", headers={**headers, "Accept": FHIR_XML})

    assert again.status_code == 200 and again.headers["content-type"] == FHIR_XML
    assert _read(again)["issue"][0]["diagnostics"].startswith("Already deleted")
    assert audit_actions(session).count(AuditAction.CLIENT_RECORDS_RETRACTED) == events == 1
    assert _item(session, source, "Encounter/e1", "1").status is RecordStatus.ENTERED_IN_ERROR


def test_a_delete_preferring_minimal_is_204(client: TestClient, session: Session, source: Client, headers: dict[str, str]) -> None:
    _push(client, headers, transaction_bundle([_patient(demo_child()), _visit("e1")]))

    response = client.delete("/fhir/R4/Encounter/e1", headers={**headers, "Prefer": "return=minimal"})

    assert response.status_code == 204 and response.content == b""
    assert _item(session, source, "Encounter/e1", "1").status is RecordStatus.ENTERED_IN_ERROR


def test_a_new_version_after_a_delete_is_in_force_again(
    client: TestClient, session: Session, source: Client, headers: dict[str, str]
) -> None:
    _push(client, headers, transaction_bundle([_patient(demo_child()), _visit("e1")]))
    client.delete("/fhir/R4/Encounter/e1", headers=headers)

    response = _put(client, headers, _visit("e1", version="2"))

    assert response.status_code == 201
    rows = dict(session.execute(select(Item.source_version, Item.status).where(Item.source_record_id == "Encounter/e1")).all())
    assert rows == {"1": RecordStatus.SUPERSEDED, "2": RecordStatus.CURRENT}


def test_an_unknown_record_and_another_clients_record_are_both_404_alike(
    client: TestClient, session: Session, settings: Settings, signing_keys: SigningKeys, source: Client,
    headers: dict[str, str],
) -> None:
    _push(client, headers, transaction_bundle([_patient(demo_child()), _visit("e1")]))
    other, _key = make_client(session)
    other_headers = {"Authorization": f"Bearer {client_token(signing_keys, settings, other)}"}

    theirs = client.delete("/fhir/R4/Encounter/e1", headers=other_headers)
    nobodys = client.delete("/fhir/R4/Encounter/e1", headers={**other_headers})
    unknown = client.delete("/fhir/R4/Encounter/never", headers=headers)

    assert theirs.status_code == nobodys.status_code == unknown.status_code == 404
    assert theirs.content == nobodys.content
    assert theirs.content.replace(b"Encounter/e1", b"X") == unknown.content.replace(b"Encounter/never", b"X")
    assert _read(theirs)["issue"][0]["code"] == "not-found"
    assert _item(session, source, "Encounter/e1", "1").status is RecordStatus.CURRENT
    assert last_event(session, AuditAction.CLIENT_RECORDS_REJECTED).detail == {"submission": "delete", "reason": "not_found"}


@pytest.mark.parametrize(("resource_type", "words"), [("Patient", "link review"), ("Consent", "corrected decision")])
def test_a_patient_or_a_consent_cannot_be_deleted(
    client: TestClient, session: Session, source: Client, headers: dict[str, str], resource_type: str, words: str
) -> None:
    child = demo_child()
    _push(client, headers, transaction_bundle([_patient(child), fhir_consent(resource_id="p1")]))
    before = stored_counts(session)
    consents = session.scalar(select(func.count()).select_from(Consent))

    response = client.delete(f"/fhir/R4/{resource_type}/p1", headers={**headers, "Accept": FHIR_XML})

    assert response.status_code == 405, response.text
    assert response.headers["allow"] == "PUT"
    issue = _read(response)["issue"][0]
    assert issue["code"] == "not-supported" and words in issue["diagnostics"]
    assert stored_counts(session) == before and session.scalar(select(func.count()).select_from(Consent)) == consents
    assert child.nhs_number not in response.text


def test_delete_refuses_a_client_not_registered_for_the_records_kind(
    client: TestClient, session: Session, source: Client, headers: dict[str, str]
) -> None:
    _push(client, headers, transaction_bundle([_patient(demo_child()), _visit("e1")]))
    source.allowed_kinds = ["identity"]
    session.flush()

    response = client.delete("/fhir/R4/Encounter/e1", headers=headers)

    assert response.status_code == 403 and "encounter" in _read(response)["issue"][0]["diagnostics"]
    assert _item(session, source, "Encounter/e1", "1").status is RecordStatus.CURRENT


def test_delete_refuses_an_inactive_client(client: TestClient, session: Session, source: Client, headers: dict[str, str]) -> None:
    _push(client, headers, transaction_bundle([_patient(demo_child()), _visit("e1")]))
    source.active = False
    session.flush()

    response = client.delete("/fhir/R4/Encounter/e1", headers=headers)

    assert response.status_code == 403
    assert _item(session, source, "Encounter/e1", "1").status is RecordStatus.CURRENT
    assert last_event(session, AuditAction.CLIENT_RECORDS_REJECTED).detail == {"reason": "client_inactive"}


# -- 5. conditional references --------------------------------------------------------------------------


def test_a_conditional_subject_names_the_patient_of_the_same_bundle(
    client: TestClient, session: Session, keyring: DataKeyring, source: Client, headers: dict[str, str]
) -> None:
    child = demo_child()
    bundle = transaction_bundle([_patient(child), _visit("e1", patient_ref=_conditional(child.nhs_number))])

    assert _statuses(_push(client, headers, bundle)) == ["201 Created", "201 Created"]

    identity = session.scalar(select(Identity).where(Identity.source_record_id == "Patient/p1"))
    item = _item(session, source, "Encounter/e1", "1")
    assert identity is not None and item.identity_id == identity.id
    assert item.child_id == child_id_for(session, keyring, child.nhs_number)


def test_a_conditional_subject_names_a_patient_this_client_pushed_before(
    client: TestClient, session: Session, keyring: DataKeyring, source: Client, headers: dict[str, str]
) -> None:
    child = demo_child()
    _put(client, headers, _patient(child))
    encoded = f"Patient?identifier=https%3A%2F%2Ffhir.nhs.uk%2FId%2Fnhs-number%7C{child.nhs_number}"

    by_put = _put(client, headers, _visit("e1", patient_ref=_conditional(child.nhs_number)))
    by_bundle = _push(client, headers, transaction_bundle([_visit("e2", patient_ref=encoded)]))

    assert by_put.status_code == 201, by_put.text
    assert _statuses(by_bundle) == ["201 Created"]
    child_id = child_id_for(session, keyring, child.nhs_number)
    assert _item(session, source, "Encounter/e1", "1").child_id == child_id == _item(session, source, "Encounter/e2", "1").child_id


def test_a_conditional_reference_to_a_patient_another_client_pushed_is_not_found(
    client: TestClient, session: Session, settings: Settings, signing_keys: SigningKeys, headers: dict[str, str]
) -> None:
    child = demo_child()
    _put(client, headers, _patient(child))
    other, _key = make_client(session)
    other_headers = {"Content-Type": FHIR_JSON, "Authorization": f"Bearer {client_token(signing_keys, settings, other)}"}
    before = stored_counts(session)

    response = _put(client, other_headers, _visit("e1", patient_ref=_conditional(child.nhs_number)))

    assert response.status_code == 422
    issue = _read(response)["issue"][0]
    assert issue["code"] == "not-found" and issue["expression"] == ["Encounter.subject.reference"]
    assert stored_counts(session) == before


def test_two_patients_of_the_bundle_with_the_nhs_number_refuse_the_transaction(
    client: TestClient, session: Session, headers: dict[str, str]
) -> None:
    child = demo_child()
    bundle = transaction_bundle([_patient(child, "p1"), _patient(child, "p2"), _visit("e1", patient_ref=_conditional(child.nhs_number))])
    before = stored_counts(session)

    response = _push(client, headers, bundle)

    assert response.status_code == 422
    issues = _read(response)["issue"]
    assert [(i["code"], i["expression"]) for i in issues] == [("multiple-matches", ["Bundle.entry[2].resource.subject.reference"])]
    assert child.nhs_number not in response.text
    assert stored_counts(session) == before


def test_two_earlier_patients_linked_to_different_children_refuse_the_record_and_the_consent(
    client: TestClient, session: Session, keyring: DataKeyring, source: Client, headers: dict[str, str]
) -> None:
    first, second = demo_child(), demo_child()
    _push(client, headers, transaction_bundle([_patient(first, "pa"), _patient(second, "pb")]))
    assert child_id_for(session, keyring, first.nhs_number) != child_id_for(session, keyring, second.nhs_number)
    # The second identity now carries the first's NHS number too (say the source corrected it and the
    # link is awaiting review): two of this client's Patients with the number, two children.
    session.execute(
        update(Identity)
        .where(Identity.client_id == source.id, Identity.source_record_id == "Patient/pb")
        .values(nhs_number_index=keyring.blind_index("nhs_number", first.nhs_number))
    )
    session.flush()
    before = stored_counts(session)

    record = _put(client, headers, _visit("e1", patient_ref=_conditional(first.nhs_number)))
    consent = _put(client, headers, fhir_consent(resource_id="c1", patient={"identifier": {"system": NHS, "value": first.nhs_number}}))

    assert record.status_code == consent.status_code == 422
    assert [(i["code"], i["expression"]) for i in _read(record)["issue"]] == [("multiple-matches", ["Encounter.subject.reference"])]
    assert [(i["code"], i["expression"]) for i in _read(consent)["issue"]] == [("multiple-matches", ["Consent.patient"])]
    assert first.nhs_number not in record.text + consent.text
    assert stored_counts(session) == before


@pytest.mark.parametrize(
    ("reference", "code", "hidden"),
    [
        (f"Patient?identifier={NHS}|9434765918", "value", "9434765918"),  # fails the Modulus 11 check
        ("Patient?name=Testington", "not-supported", "Testington"),
        ("Patient?identifier=urn:oid:2.16.840.1.113883.2.1.4.1|9434765919", "not-supported", "9434765919"),
        (f"Patient?identifier={NHS}|9434765919&birthdate=2015-03-14", "not-supported", "2015-03-14"),
        ("Patient?", "not-supported", None),
    ],
)
def test_a_conditional_reference_the_gateway_cannot_search_is_refused_specifically(
    client: TestClient, session: Session, headers: dict[str, str], reference: str, code: str, hidden: str | None
) -> None:
    bundle = transaction_bundle([_patient(demo_child()), _visit("e1", patient_ref=reference)])
    before = stored_counts(session)

    response = _push(client, headers, bundle, Accept=FHIR_XML)

    assert response.status_code == 422 and response.headers["content-type"] == FHIR_XML
    issues = _read(response)["issue"]
    assert [(i["code"], i["expression"]) for i in issues] == [(code, ["Bundle.entry[1].resource.subject.reference"])]
    assert "conditional reference" in issues[0]["diagnostics"]
    assert hidden is None or hidden not in response.text
    assert stored_counts(session) == before


def test_a_consent_names_its_patient_by_conditional_reference(
    client: TestClient, session: Session, keyring: DataKeyring, source: Client, headers: dict[str, str]
) -> None:
    child = demo_child()
    consent = fhir_consent(resource_id="c1", patient={"reference": _conditional(child.nhs_number)})

    assert _statuses(_push(client, headers, transaction_bundle([_patient(child), consent]))) == ["201 Created"] * 2

    stored = session.scalar(select(Consent).where(Consent.client_id == source.id, Consent.source_record_id == "Consent/c1"))
    assert stored is not None and stored.child_id == child_id_for(session, keyring, child.nhs_number)


def test_in_a_batch_a_bad_conditional_reference_refuses_its_entry_only(
    client: TestClient, session: Session, source: Client, headers: dict[str, str]
) -> None:
    child = demo_child()
    bundle = transaction_bundle([_patient(child), _visit("e1", patient_ref=_conditional(child.nhs_number)),
                                 _visit("e2", patient_ref="Patient?family=Testington")])
    bundle["type"] = "batch"

    statuses = _statuses(_push(client, headers, bundle))

    assert statuses == ["201 Created", "201 Created", "422 Unprocessable Entity"]
    assert _item(session, source, "Encounter/e1", "1").status is RecordStatus.CURRENT
    assert session.scalar(select(Item).where(Item.source_record_id == "Encounter/e2")) is None


# -- a DELETE racing a PUT on a real server (PostgreSQL) ------------------------------------------------

RACES = 24
REQUEST_TIMEOUT = 30.0
MAX_TRIES = 5


def _send(http: httpx.Client, method: str, path: str, *, headers: dict[str, str], body: bytes | None = None) -> int:
    """Send a request, retrying a 503 (Retry-After) a bounded number of times; return the final status."""
    status = 0
    for _ in range(MAX_TRIES):
        status = http.request(method, path, content=body, headers=headers).status_code
        if status != 503:
            return status
        time.sleep(0.5)
    return status


def test_a_delete_racing_a_put_of_the_same_record_leaves_exactly_one_version_in_force(
    database_url: str, tmp_path: Path
) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("PostgreSQL load test; the suite runs on SQLite (GATEWAY_TEST_DATABASE_URL is not PostgreSQL)")
    log_path = tmp_path / "gateway-serve.log"
    child = demo_child(nhs_number())
    with scratch_database(database_url, tmp_path, prefix="gw_delete_race") as url:
        keys_dir = tmp_path / "keys"
        env = gateway_env(url, keys_dir)
        prepare(env)
        engine = build_engine(url)
        try:
            with build_sessionmaker(engine)() as session:
                registered, _key = make_client(session, client_id="race-health")
                session.commit()
                token = client_token(KeyFolder(keys_dir).signing_keys(), Settings(database_url=url, keys_dir=keys_dir), registered)
        finally:
            engine.dispose()
        headers = {"Content-Type": FHIR_JSON, "Authorization": f"Bearer {token}"}
        first = transaction_bundle([_patient(child), *(_visit(f"e{n}") for n in range(RACES))])
        answers: list[tuple[str, int]] = []
        gate = threading.Barrier(RACES * 2, timeout=30)

        def race(base_url: str, method: str, n: int) -> None:
            body = json.dumps(_visit(f"e{n}", version="2")).encode() if method == "PUT" else None
            with httpx.Client(base_url=base_url, timeout=REQUEST_TIMEOUT) as http:
                gate.wait()
                answers.append((method, _send(http, method, f"/fhir/R4/Encounter/e{n}", headers=headers, body=body)))

        with serve_gateway(env, log_path=log_path, workers=2) as base_url:
            with httpx.Client(base_url=base_url, timeout=REQUEST_TIMEOUT) as http:
                assert http.post("/fhir/R4", content=json.dumps(first), headers=headers).status_code == 200
            threads = [
                threading.Thread(target=race, args=(base_url, method, n), daemon=True)
                for n in range(RACES)
                for method in ("DELETE", "PUT")
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=REQUEST_TIMEOUT * MAX_TRIES)
        engine = build_engine(url)
        try:
            with engine.connect() as connection:
                rows = connection.execute(select(Item.source_record_id, Item.source_version, Item.status)).all()
                retractions = connection.scalar(
                    select(func.count()).select_from(AuditEvent).where(AuditEvent.action == AuditAction.CLIENT_RECORDS_RETRACTED)
                )
        finally:
            engine.dispose()

    tail = log_tail(log_path)
    assert sorted(answers) == sorted([("DELETE", 200)] * RACES + [("PUT", 201)] * RACES), f"{answers}\n{tail}"
    by_record: dict[str, dict[str, str]] = {}
    for record_id, version, status in rows:
        by_record.setdefault(record_id, {})[version] = str(status)
    outcomes: Counter[str] = Counter()
    for n in range(RACES):
        versions = by_record[f"Encounter/e{n}"]
        in_force = [v for v, status in versions.items() if status != "superseded"]
        assert in_force == ["2"], f"e{n}: {versions}\n{tail}"  # exactly one version in force, the newer
        # The DELETE came second (it retracted version 2) or first (version 1 retracted, then superseded).
        assert versions["1"] == "superseded" and versions["2"] in ("current", "entered_in_error"), versions
        outcomes["delete last" if versions["2"] == "entered_in_error" else "put last"] += 1
    print(f"\nDELETE racing PUT, {RACES} records on 2 workers: {dict(outcomes)}")
    # Every DELETE found a version in force to retract (the first, or the new one): none was "already".
    assert retractions == RACES, f"{retractions} retraction events for {RACES} deletes\n{dict(outcomes)}"

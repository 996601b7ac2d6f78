"""POST /fhir/R4 and PUT /fhir/R4/{type}/{id}: bad input is named, and nothing from it is stored."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy.orm import Session

from audit import AuditAction
from gateway.auth.keys import SigningKeys
from gateway.demo.generator import patient_resource
from gateway.models import Client
from gateway.settings import Settings
from policies import Agency
from tests.factories import child_bundle, client_token, demo_child, encounter, make_client
from tests.gateway.helpers import FHIR_JSON, last_event, stored_counts


@pytest.fixture
def source(session: Session) -> Client:
    client, _key = make_client(session)
    return client


@pytest.fixture
def headers(source: Client, settings: Settings, signing_keys: SigningKeys) -> dict[str, str]:
    return {**FHIR_JSON, "Authorization": f"Bearer {client_token(signing_keys, settings, source)}"}


def _issues(response: Response) -> list[dict[str, Any]]:
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    issues: list[dict[str, Any]] = body["issue"]
    return issues


def test_body_that_is_not_json_is_refused(client: TestClient, session: Session, headers: dict[str, str]) -> None:
    before = stored_counts(session)

    response = client.post("/fhir/R4", content=b"{not json", headers=headers)

    assert response.status_code == 400
    assert response.headers["content-type"] == "application/fhir+json"
    assert _issues(response)[0]["severity"] == "error"
    assert stored_counts(session) == before


def test_bundle_that_is_not_valid_fhir_names_the_field(client: TestClient, session: Session, headers: dict[str, str]) -> None:
    bundle = child_bundle(demo_child())
    bundle["entry"][0]["resource"]["birthDate"] = "14/03/2015"
    before = stored_counts(session)

    response = client.post("/fhir/R4", content=json.dumps(bundle), headers=headers)

    assert response.status_code in (400, 422)
    locations = " ".join(" ".join(i.get("expression", [])) + i.get("diagnostics", "") for i in _issues(response))
    assert "birthDate" in locations
    assert "14/03/2015" not in response.text
    assert stored_counts(session) == before


def test_invalid_nhs_number_is_refused_without_echoing_it(client: TestClient, session: Session, headers: dict[str, str]) -> None:
    child = demo_child("9434765918")  # fails the Modulus 11 check
    before = stored_counts(session)

    response = client.post("/fhir/R4", content=json.dumps(child_bundle(child, encounters=[encounter()])), headers=headers)

    assert response.status_code == 422
    issues = _issues(response)
    assert any("identifier" in " ".join(i.get("expression", [])) for i in issues)
    assert "9434765918" not in response.text
    assert stored_counts(session) == before
    assert last_event(session, AuditAction.CLIENT_RECORDS_REJECTED).outcome == "failure"


def test_encounter_with_unknown_subject_rejects_the_whole_transaction(client: TestClient, session: Session, headers: dict[str, str]) -> None:
    bundle = child_bundle(demo_child(), encounters=[encounter()])
    bundle["entry"][1]["resource"]["subject"] = {"reference": "Patient/never-pushed"}
    bundle["entry"][1]["request"]["url"] = f"Encounter/{bundle['entry'][1]['resource']['id']}"
    before = stored_counts(session)

    response = client.post("/fhir/R4", content=json.dumps(bundle), headers=headers)

    assert response.status_code == 422
    issues = _issues(response)
    assert issues[0]["code"] == "not-found"
    assert issues[0]["expression"] == ["Bundle.entry[1].resource.subject.reference"]
    # The valid Patient in the same transaction was not stored either: all or nothing.
    assert stored_counts(session) == before


def test_batch_stores_the_good_entries_and_reports_the_bad(client: TestClient, session: Session, headers: dict[str, str]) -> None:
    bundle = child_bundle(demo_child(), encounters=[encounter()])
    bundle["type"] = "batch"
    orphan = json.loads(json.dumps(bundle["entry"][1]))
    orphan["resource"]["id"] = "orphan-1"
    orphan["resource"]["subject"] = {"reference": "Patient/never-pushed"}
    orphan["request"]["url"] = "Encounter/orphan-1"
    orphan["fullUrl"] = "urn:uuid:6f1c8a52-8e3c-4d07-9d8a-0f3a3c3b1a11"
    bundle["entry"].append(orphan)
    before = stored_counts(session)

    response = client.post("/fhir/R4", content=json.dumps(bundle), headers=headers)

    assert response.status_code == 200, response.text
    statuses = [e["response"]["status"] for e in response.json()["entry"]]
    assert statuses[:2] == ["201 Created", "201 Created"]
    assert statuses[2].startswith("422")
    after = stored_counts(session)
    assert after["item"] == before["item"] + 1
    assert after["identity"] == before["identity"] + 1


def test_patient_without_nhs_number_is_accepted_and_linked_by_demographics(
    client: TestClient, session: Session, headers: dict[str, str]
) -> None:
    bundle = child_bundle(demo_child())
    del bundle["entry"][0]["resource"]["identifier"]

    response = client.post("/fhir/R4", content=json.dumps(bundle), headers=headers)

    assert response.status_code == 200, response.text
    assert [entry["response"]["status"] for entry in response.json()["entry"]][0].startswith("201")


def test_patient_with_no_identifier_and_no_birth_date_is_refused_as_too_weak(
    client: TestClient, session: Session, headers: dict[str, str]
) -> None:
    bundle = child_bundle(demo_child())
    del bundle["entry"][0]["resource"]["identifier"]
    del bundle["entry"][0]["resource"]["birthDate"]
    before = stored_counts(session)

    response = client.post("/fhir/R4", content=json.dumps(bundle), headers=headers)

    assert response.status_code == 422
    diagnostics = _issues(response)[0]["diagnostics"]
    assert "too weak to link" in diagnostics and "a birth date" in diagnostics
    assert _issues(response)[0]["code"] == "required"
    assert stored_counts(session) == before


def test_client_may_push_only_its_registered_kinds(
    client: TestClient, session: Session, settings: Settings, signing_keys: SigningKeys
) -> None:
    identity_only, _ = make_client(session, kinds=("identity",))
    headers = {**FHIR_JSON, "Authorization": f"Bearer {client_token(signing_keys, settings, identity_only)}"}
    before = stored_counts(session)

    response = client.post("/fhir/R4", content=json.dumps(child_bundle(demo_child(), encounters=[encounter()])),
                           headers=headers)

    assert response.status_code == 422
    assert _issues(response)[0]["code"] == "forbidden"
    assert stored_counts(session) == before


def test_put_one_patient_then_repeat(client: TestClient, session: Session, headers: dict[str, str]) -> None:
    child = demo_child()
    body = json.dumps(patient_resource(child, resource_id="single-1", postcode=child.postcode))

    first = client.put("/fhir/R4/Patient/single-1", content=body, headers=headers)
    second = client.put("/fhir/R4/Patient/single-1", content=body, headers=headers)

    assert first.status_code == 201, first.text
    assert first.headers["location"].startswith("Patient/single-1/_history/")
    assert second.status_code == 200


@pytest.mark.parametrize(
    ("authorization", "fragment"),
    [
        (None, "Authorization"),
        ("Basic dXNlcjpwYXNz", "Authorization"),
        ("Bearer not-a-jwt", "malformed"),
        ("forged", "signature"),
    ],
)
def test_push_without_a_valid_token_is_refused(
    client: TestClient, session: Session, settings: Settings, authorization: str | None, fragment: str
) -> None:
    headers = dict(FHIR_JSON)
    if authorization == "forged":
        from joserfc.jwk import ECKey, KeySet

        other = ECKey.generate_key("P-384", private=True, auto_kid=True)
        forger = SigningKeys(private=other, verification=KeySet([other]))
        victim = Client(id="victim", name="v", agency=Agency.HEALTH, jwks={}, allowed_kinds=["identity"])
        authorization = f"Bearer {client_token(forger, settings, victim)}"
    if authorization:
        headers["Authorization"] = authorization
    before = stored_counts(session)

    response = client.post("/fhir/R4", content=json.dumps(child_bundle(demo_child())), headers=headers)

    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert fragment in " ".join(i["diagnostics"] for i in _issues(response))
    assert stored_counts(session) == before


def test_staff_token_cannot_push(
    client: TestClient, session: Session, settings: Settings, signing_keys: SigningKeys
) -> None:
    from tests.factories import add_member, make_team, staff_token

    member = add_member(session, make_team(session), agency="health", role="designated_nurse")
    headers = {**FHIR_JSON, "Authorization": f"Bearer {staff_token(signing_keys, settings, member)}"}

    response = client.post("/fhir/R4", content=json.dumps(child_bundle(demo_child())), headers=headers)

    assert response.status_code == 403


def test_capability_statement_is_public(client: TestClient) -> None:
    response = client.get("/fhir/R4/metadata")

    assert response.status_code == 200
    assert response.json()["resourceType"] == "CapabilityStatement"


def test_xml_bundle_from_the_uk_core_examples_is_stored(client: TestClient, session: Session, headers: dict[str, str]) -> None:
    from pathlib import Path

    examples = Path(__file__).resolve().parents[4] / "shared" / "conformance" / "ukcore-r4-examples"
    patient_xml = (examples / "UKCore-Patient-RichardSmith-Example.xml").read_text()
    encounter_xml = (examples / "UKCore-Encounter-InpatientEncounter-Example.xml").read_text()
    body = (
        '<Bundle xmlns="http://hl7.org/fhir"><type value="transaction"/>'
        + "".join(
            f"<entry><resource>{text[text.index('<' + kind):]}</resource>"
            f'<request><method value="POST"/><url value="{kind}"/></request></entry>'
            for kind, text in (("Patient", patient_xml), ("Encounter", encounter_xml))
        )
        + "</Bundle>"
    )
    before = stored_counts(session)

    response = client.post("/fhir/R4", content=body, headers={**headers, "Content-Type": "application/fhir+xml"})

    assert response.status_code == 200, response.text
    assert [e["response"]["status"] for e in response.json()["entry"]] == ["201 Created", "201 Created"]
    after = stored_counts(session)
    assert (after["identity"], after["item"]) == (before["identity"] + 1, before["item"] + 1)

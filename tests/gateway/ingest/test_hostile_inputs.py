"""POST /fhir/R4 under attack: deep nesting, leap seconds and DOCTYPEs get a clean answer, never a 500."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy.orm import Session

from gateway.auth.keys import SigningKeys
from gateway.settings import Settings
from tests.factories import child_bundle, client_token, demo_child, encounter, make_client
from tests.gateway.helpers import FHIR_JSON, stored_counts

FHIR_XML = {"Content-Type": "application/fhir+xml"}
EXAMPLES = Path(__file__).resolve().parents[4] / "shared" / "conformance" / "ukcore-r4-examples"


@pytest.fixture
def headers(session: Session, settings: Settings, signing_keys: SigningKeys) -> dict[str, str]:
    """Headers of a registered source system pushing FHIR JSON."""
    source, _key = make_client(session)
    return {**FHIR_JSON, "Authorization": f"Bearer {client_token(signing_keys, settings, source)}"}


def _outcome_issues(response: Response) -> list[dict[str, Any]]:
    assert response.headers["content-type"] == "application/fhir+json"
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    issues: list[dict[str, Any]] = body["issue"]
    return issues


def _uk_core_patient_xml(prolog: str, encoding: str = "utf-8") -> bytes:
    """A transaction holding UK Core's RichardSmith Patient, after `prolog` ("utf-16" adds a BOM)."""
    text = (EXAMPLES / "UKCore-Patient-RichardSmith-Example.xml").read_text()
    return (
        prolog
        + '<Bundle xmlns="http://hl7.org/fhir"><type value="transaction"/><entry><resource>'
        + text[text.index("<Patient"):]
        + '</resource><request><method value="POST"/><url value="Patient"/></request></entry></Bundle>'
    ).encode(encoding)


def test_hundred_thousand_nested_arrays_are_a_400_outcome(
    client: TestClient, session: Session, headers: dict[str, str]
) -> None:
    before = stored_counts(session)

    response = client.post("/fhir/R4", content=b"[" * 100_000 + b"]" * 100_000, headers=headers)

    assert response.status_code == 400, response.text
    issue = _outcome_issues(response)[0]
    assert (issue["severity"], issue["code"]) == ("error", "structure")
    assert "nests too deeply" in issue["diagnostics"]
    assert stored_counts(session) == before


def test_bundle_nesting_900_levels_inside_an_entry_is_a_400_outcome(
    client: TestClient, session: Session, headers: dict[str, str]
) -> None:
    bundle = child_bundle(demo_child())
    bundle["entry"][0]["resource"]["managingOrganization"] = "DEEP"
    # 900 levels of objects where FHIR does recurse (Reference.identifier.assigner): valid JSON,
    # built as text because json.dumps itself could not write it.
    deep = '{"identifier": {"assigner": ' * 450 + "{}" + "}}" * 450
    body = json.dumps(bundle).replace('"DEEP"', deep, 1)
    before = stored_counts(session)

    response = client.post("/fhir/R4", content=body, headers=headers)

    assert response.status_code == 400, response.text
    assert _outcome_issues(response)[0]["code"] == "structure"
    assert stored_counts(session) == before


def test_encounter_starting_on_a_leap_second_is_stored(
    client: TestClient, session: Session, headers: dict[str, str]
) -> None:
    bundle = child_bundle(demo_child(), encounters=[encounter()])
    bundle["entry"][1]["resource"]["period"] = {"start": "2016-12-31T23:59:60Z", "end": "2017-01-01T02:00:00Z"}
    before = stored_counts(session)

    response = client.post("/fhir/R4", content=json.dumps(bundle), headers=headers)

    assert response.status_code == 200, response.text
    assert [e["response"]["status"] for e in response.json()["entry"]] == ["201 Created", "201 Created"]
    assert stored_counts(session)["item"] == before["item"] + 1


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16"])
def test_xml_with_a_doctype_is_a_400_security_outcome(
    client: TestClient, session: Session, headers: dict[str, str], encoding: str
) -> None:
    doctype = '<!DOCTYPE Bundle [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
    body = _uk_core_patient_xml(doctype, encoding)
    before = stored_counts(session)

    response = client.post("/fhir/R4", content=body, headers={**headers, **FHIR_XML})

    assert response.status_code == 400, response.text
    issue = _outcome_issues(response)[0]
    assert (issue["severity"], issue["code"]) == ("error", "security")
    assert "DOCTYPE" in issue["diagnostics"]
    assert "root:" not in response.text
    assert stored_counts(session) == before


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16"])
def test_the_same_xml_without_a_doctype_is_stored(
    client: TestClient, session: Session, headers: dict[str, str], encoding: str
) -> None:
    before = stored_counts(session)

    response = client.post("/fhir/R4", content=_uk_core_patient_xml("", encoding), headers={**headers, **FHIR_XML})

    assert response.status_code == 200, response.text
    assert stored_counts(session)["identity"] == before["identity"] + 1


@pytest.mark.parametrize("start", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"])
def test_an_encounter_whose_start_leaves_the_calendar_in_utc_is_refused_by_name(
    client: TestClient, session: Session, headers: dict[str, str], start: str
) -> None:
    bundle = child_bundle(demo_child(), encounters=[encounter()])
    bundle["entry"][1]["resource"]["period"] = {"start": start}
    before = stored_counts(session)

    response = client.post("/fhir/R4", content=json.dumps(bundle), headers=headers)

    assert response.status_code == 422, response.text
    issue = _outcome_issues(response)[0]
    assert issue["code"] == "value" and issue["expression"] == ["Bundle.entry[1].resource.period.start"]
    assert stored_counts(session) == before

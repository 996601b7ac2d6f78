"""FHIR Consent out (the registry as a Bundle that validates) and in (a health system's push lands in the registry)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from fhir.resources.R4B import get_fhir_model_class
from httpx import Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from adapters import RecordEntry, RejectedEntry, parse_bundle
from adapters.fhir_consent import AGENCY_SYSTEM, CATEGORY_SYSTEM, PURPOSE_SYSTEM, InboundConsent
from audit import AuditAction, AuditEvent
from gateway.auth.keys import SigningKeys
from gateway.kit.crypto import DataKeyring
from gateway.models import Child
from gateway.settings import Settings
from tests.factories import child_bundle, client_token, demo_child, encounter, make_client, nhs_number, staff_token
from tests.gateway.helpers import audit_actions, child_id_for, get_view, last_event, push, stored_counts

from .helpers import FHIR_JSON, Allocated, allocated_child, consent_bundle, consent_rows, fhir_consent, stored_consents

CONFORMANCE = Path(__file__).resolve().parents[4] / "shared" / "conformance" / "ukcore-r4-examples"
NOTE = "Dad does not want police told about the hospital visit."


@pytest.fixture
def child(
    client: TestClient, session: Session, settings: Settings, signing_keys: SigningKeys, keyring: DataKeyring
) -> Allocated:
    return allocated_child(client, session, settings, signing_keys, keyring)


def _pushed(response: Response) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.text
    return [entry["response"] for entry in response.json()["entry"]]


def _registry(child: Allocated) -> dict[str, Any]:
    response = child.registry()
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


# -- out ----------------------------------------------------------------------------------------


def test_the_registry_exports_as_fhir_consents_that_validate(child: Allocated, session: Session) -> None:
    decisions: list[dict[str, Any]] = [
        {"status": "given", "purpose": "family_help", "given_by": "parental_responsibility", "giver_relationship": "father",
         "agencies": ["health", "police"], "categories": ["health.encounter"], "period_end": "2030-01-01T00:00:00Z",
         "note": NOTE},
        {"status": "refused", "purpose": "child_protection", "given_by": "child", "giver_relationship": "self"},
        {"status": "withdrawn", "purpose": "family_help", "given_by": "parental_responsibility", "giver_relationship": "father",
         "agencies": ["health", "police"], "categories": ["health.encounter"]},
    ]
    ids = []
    for decision in decisions:
        response = child.record(decision)
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])

    response = child.registry(format="fhir")

    assert response.status_code == 200 and response.headers["content-type"] == FHIR_JSON
    bundle = response.json()
    get_fhir_model_class("Bundle").model_validate(bundle)  # valid FHIR R4 (R4B models, as the adapters use)
    assert bundle["type"] == "collection"
    consents = {entry["resource"]["id"]: entry["resource"] for entry in bundle["entry"]}
    assert list(consents) == ids[::-1]  # newest first, as the history
    given, refused, withdrawn = (consents[i] for i in ids)
    assert [c["status"] for c in (given, refused, withdrawn)] == ["active", "rejected", "inactive"]
    assert [c["provision"]["type"] for c in (given, refused, withdrawn)] == ["permit", "deny", "deny"]
    for consent in consents.values():
        get_fhir_model_class("Consent").model_validate(consent)
        assert consent["patient"] == {"reference": f"Patient/{child.child_id}"}
        assert consent["scope"]["coding"][0]["code"] == "patient-privacy"
        assert consent["category"][0]["coding"][0] == {"system": "http://loinc.org", "code": "59284-0", "display": "Patient Consent"}
    assert given["performer"] == [{"type": "RelatedPerson", "display": "father"}]
    assert refused["performer"] == [{"reference": f"Patient/{child.child_id}", "display": "self"}]
    assert given["provision"]["purpose"] == [{"system": PURPOSE_SYSTEM, "code": "family_help"}]
    assert [a["reference"]["identifier"] for a in given["provision"]["actor"]] == [
        {"system": AGENCY_SYSTEM, "value": "health"}, {"system": AGENCY_SYSTEM, "value": "police"},
    ]
    assert given["provision"]["class"] == [{"system": CATEGORY_SYSTEM, "code": "health.encounter"}]
    assert given["provision"]["period"]["end"].startswith("2030-01-01T00:00:00")
    assert "actor" not in refused["provision"] and "class" not in refused["provision"]  # all agencies, all categories
    text = response.text
    assert "Dad" not in text and child.nhs_number not in text and "Testington" not in text
    listed = last_event(session, AuditAction.STAFF_CONSENTS_LISTED)
    assert listed.detail == {"format": "fhir", "returned": 3}


def test_an_empty_registry_exports_an_empty_bundle(child: Allocated) -> None:
    response = child.registry(format="fhir")

    assert response.status_code == 200
    assert response.json() == {"resourceType": "Bundle", "type": "collection"}
    get_fhir_model_class("Bundle").model_validate(response.json())


# -- in -----------------------------------------------------------------------------------------


def test_a_pushed_consent_lands_in_the_registry_and_a_repeat_changes_nothing(child: Allocated, session: Session) -> None:
    consent = fhir_consent(agencies=("health", "education"), categories=("health.encounter",),
                           provision={"period": {"start": "2026-11-01", "end": "2027-11-01"}})

    first = _pushed(child.push(consent_bundle(consent)))

    assert first[0]["status"] == "201 Created" and first[0]["location"].startswith("Consent/c1/_history/sha256:")
    (row,) = stored_consents(session, child.child_id)
    assert (row.status.value, row.purpose.value, row.given_by, row.giver_relationship) == (
        "given", "family_help", "parental_responsibility", "mother",
    )
    assert (row.agencies, row.categories) == (["education", "health"], ["health.encounter"])
    assert row.period_start is not None and row.period_start.isoformat() == "2026-11-01T00:00:00+00:00"
    assert row.period_end is not None and row.period_end.isoformat() == "2027-11-01T00:00:00+00:00"
    assert (row.client_id, row.source_record_id, row.recorded_by) == (child.source.id, "Consent/c1", child.source.id)
    assert row.sealed_note is None
    imported = last_event(session, AuditAction.CLIENT_CONSENT_IMPORTED)
    assert imported.child_id == child.child_id and imported.purpose == "family_help"
    assert imported.actor_id == child.source.id
    assert imported.detail == {
        "consent_id": str(row.id), "status": "given", "given_by": "parental_responsibility", "submission": "transaction",
    }
    assert "Testington" not in json.dumps(imported.detail) and "mother" not in json.dumps(imported.detail)
    (read,) = _registry(child)["current"]
    assert read["source"] == {"client_id": child.source.id, "record_id": "Consent/c1", "version": row.source_version}

    again = _pushed(child.push(consent_bundle(consent)))

    assert again[0]["status"] == "200 OK"
    assert consent_rows(session) == 1
    assert audit_actions(session).count(AuditAction.CLIENT_CONSENT_IMPORTED) == 1


@pytest.mark.parametrize("named_by", ["reference", "nhs_number"])
def test_a_consent_pushed_with_its_patient_lands_on_that_child(
    client: TestClient, session: Session, settings: Settings, signing_keys: SigningKeys, keyring: DataKeyring,
    named_by: str,
) -> None:
    source, _key = make_client(session, kinds=("identity", "consent"))
    kid = demo_child()
    bundle = child_bundle(kid, patient_id="pat-9")
    patient = (
        {"reference": "Patient/pat-9"}
        if named_by == "reference"
        else {"identifier": {"system": "https://fhir.nhs.uk/Id/nhs-number", "value": kid.nhs_number}}
    )
    bundle["entry"].append(consent_bundle(fhir_consent(patient=patient))["entry"][0])

    response = push(client, client_token(signing_keys, settings, source), bundle)

    assert [e["response"]["status"] for e in response.json()["entry"]] == ["201 Created", "201 Created"]
    (row,) = stored_consents(session, child_id_for(session, keyring, kid.nhs_number))
    assert row.source_record_id == "Consent/c1"


def test_a_consent_may_name_its_patient_by_nhs_number(child: Allocated, session: Session) -> None:
    by_nhs = fhir_consent(patient={"identifier": {"system": "https://fhir.nhs.uk/Id/nhs-number", "value": child.nhs_number}})

    response = _pushed(child.push(consent_bundle(by_nhs)))

    assert response[0]["status"] == "201 Created"
    assert len(stored_consents(session, child.child_id)) == 1


def test_an_nhs_number_this_client_never_pushed_is_not_found_and_says_nothing_more(
    child: Allocated, session: Session
) -> None:
    other_source, _key = make_client(session, kinds=("identity", "consent"))
    known_elsewhere = fhir_consent(patient={"identifier": {"system": "https://fhir.nhs.uk/Id/nhs-number", "value": child.nhs_number}})
    unknown = fhir_consent(patient={"identifier": {"system": "https://fhir.nhs.uk/Id/nhs-number", "value": nhs_number()}})

    answers = [child.push(consent_bundle(known_elsewhere), source=other_source), child.push(consent_bundle(unknown))]

    # The same answer whether or not another source told the gateway about that child.
    issues = [a.json()["issue"] for a in answers]
    assert [a.status_code for a in answers] == [422, 422] and issues[0] == issues[1]
    assert issues[0][0]["code"] == "not-found" and issues[0][0]["expression"] == ["Bundle.entry[0].resource.patient"]
    assert child.nhs_number not in json.dumps(issues)
    assert consent_rows(session) == 0


def test_a_child_deciding_for_themselves_is_read_from_a_performer_that_is_the_patient(
    child: Allocated, session: Session
) -> None:
    own = fhir_consent(status="active", performer=[{"reference": "Patient/p1"}, {"reference": "Practitioner/gp-1"}],
                       provision={"type": "deny"})

    _pushed(child.push(consent_bundle(own)))

    (row,) = stored_consents(session, child.child_id)
    assert (row.status.value, row.given_by, row.giver_relationship) == ("refused", "child", "self")


def test_a_new_version_is_a_new_decision_and_the_newest_is_in_force(child: Allocated, session: Session) -> None:
    given = fhir_consent(meta={"versionId": "1"})
    withdrawn = fhir_consent(status="inactive", meta={"versionId": "2"}, provision={"type": "deny"})

    _pushed(child.push(consent_bundle(given)))
    _pushed(child.push(consent_bundle(withdrawn)))

    first, second = stored_consents(session, child.child_id)
    assert [(r.source_version, r.status.value) for r in (first, second)] == [("1", "given"), ("2", "withdrawn")]
    registry = _registry(child)
    assert [r["status"] for r in registry["current"]] == ["withdrawn"]
    assert [r["status"] for r in registry["history"]] == ["withdrawn", "given"]


def test_a_batch_stores_the_good_consent_and_names_the_bad_one(child: Allocated, session: Session) -> None:
    good = fhir_consent(resource_id="good")
    bad = fhir_consent(resource_id="bad", purpose=None)

    answers = _pushed(child.push(consent_bundle(good, bad, bundle_type="batch")))

    assert [a["status"] for a in answers] == ["201 Created", "422 Unprocessable Entity"]
    (issue,) = answers[1]["outcome"]["issue"]
    assert issue["expression"] == ["Bundle.entry[1].resource.provision.purpose"]
    get_fhir_model_class("OperationOutcome").model_validate(answers[1]["outcome"])
    assert [r.source_record_id for r in stored_consents(session, child.child_id)] == ["Consent/good"]


def _without_relationship() -> dict[str, Any]:
    consent = fhir_consent()
    del consent["contained"][0]["relationship"]
    return consent


REJECTED = {
    "no purpose": (fhir_consent(purpose=None), "required", "provision.purpose"),
    "unknown purpose": (fhir_consent(purpose="gossip"), "code-invalid", "provision.purpose"),
    "two purposes": (
        fhir_consent(provision={"purpose": [{"system": PURPOSE_SYSTEM, "code": "family_help"},
                                            {"system": PURPOSE_SYSTEM, "code": "child_protection"}]}),
        "value", "provision.purpose",
    ),
    "a draft": (fhir_consent(status="draft"), "code-invalid", "status"),
    "entered in error": (fhir_consent(status="entered-in-error"), "code-invalid", "status"),
    "no performer": (fhir_consent(performer=[]), "required", "performer"),
    "only who recorded it": (fhir_consent(performer=[{"reference": "Practitioner/gp-1"}]), "required", "performer"),
    "a relationship without a code": (_without_relationship(), "required", "contained[0].relationship"),
    "a relationship in text only": (fhir_consent(relationship={"text": "mum"}), "required", "contained[0].relationship"),
    "a RelatedPerson not contained": (
        fhir_consent(performer=[{"reference": "RelatedPerson/rp-1"}]), "not-supported", "performer[0]",
    ),
    "another patient": (fhir_consent(performer=[{"reference": "Patient/someone-else"}]), "value", "performer[0]"),
    "two givers": (fhir_consent(performer=[{"reference": "#giver"}, {"reference": "Patient/p1"}]), "value", "performer"),
    "unknown agency": (fhir_consent(agencies=("health", "polise")), "code-invalid", "provision.actor"),
    "an actor that is not an agency": (
        fhir_consent(provision={"actor": [{"role": {"text": "x"}, "reference": {"reference": "Practitioner/gp-1"}}]}),
        "not-supported", "provision.actor[0]",
    ),
    "unknown category": (fhir_consent(categories=("health.gossip",)), "code-invalid", "provision.class"),
    "a nested provision": (fhir_consent(provision={"provision": [{"type": "deny"}]}), "not-supported", "provision.provision"),
    "an end before the start": (
        fhir_consent(provision={"period": {"start": "2027-01-01", "end": "2026-01-01"}}), "value", "provision.period.end",
    ),
    "a year for an end": (fhir_consent(provision={"period": {"end": "2027"}}), "value", "provision.period.end"),
    "no patient": (fhir_consent(patient={"display": "x"}), "required", "patient"),
}


@pytest.mark.parametrize("case", sorted(REJECTED))
def test_a_consent_that_cannot_be_read_is_refused_naming_the_element_and_nothing_is_stored(
    child: Allocated, session: Session, case: str
) -> None:
    consent, code, element = REJECTED[case]
    before = stored_counts(session)

    response = child.push(consent_bundle(consent))

    assert response.status_code == 422 and response.headers["content-type"] == FHIR_JSON
    outcome = response.json()
    get_fhir_model_class("OperationOutcome").model_validate(outcome)
    assert [(i["code"], i["expression"]) for i in outcome["issue"]] == [(code, [f"Bundle.entry[0].resource.{element}"])]
    assert "Testington" not in response.text and "Jo" not in response.text
    assert consent_rows(session) == 0 and stored_counts(session) == before
    assert AuditAction.CLIENT_CONSENT_IMPORTED not in audit_actions(session)
    rejected = last_event(session, AuditAction.CLIENT_RECORDS_REJECTED)
    assert rejected.detail["issue_codes"] == [code]


def test_a_client_not_registered_for_consents_is_refused(child: Allocated, session: Session) -> None:
    encounters_only, _key = make_client(session)  # identity and encounter only

    response = child.push(consent_bundle(fhir_consent()), source=encounters_only)

    assert response.status_code == 422
    (issue,) = response.json()["issue"]
    assert issue["code"] == "forbidden" and "'consent'" in issue["diagnostics"]
    assert consent_rows(session) == 0


def test_a_consent_for_an_erased_child_is_refused(child: Allocated, session: Session) -> None:
    erased = session.get(Child, child.child_id)
    assert erased is not None
    erased.wrapped_data_key = None
    session.flush()

    response = child.push(consent_bundle(fhir_consent()))

    assert response.status_code == 422 and response.json()["issue"][0]["code"] == "deleted"
    assert consent_rows(session) == 0


def test_a_consent_is_pushed_alone_by_put(child: Allocated, session: Session) -> None:
    token = client_token(child.signing_keys, child.settings, child.source)
    response = child.http.put(
        "/fhir/R4/Consent/c7", content=json.dumps(fhir_consent(resource_id="c7")),
        headers={"Content-Type": FHIR_JSON, "Authorization": f"Bearer {token}"},
    )

    assert response.status_code == 201, response.text
    assert [r.source_record_id for r in stored_consents(session, child.child_id)] == ["Consent/c7"]


def test_the_capability_statement_lists_consent(client: TestClient) -> None:
    statement = client.get("/fhir/R4/metadata").json()

    (consent,) = [r for r in statement["rest"][0]["resource"] if r["type"] == "Consent"]
    assert PURPOSE_SYSTEM in consent["documentation"] and AGENCY_SYSTEM in consent["documentation"]


# -- the adapter alone --------------------------------------------------------------------------


def test_the_adapter_reads_a_consent_into_terms() -> None:
    consent = fhir_consent(status="active", agencies=("police", "health", "police"), categories=("police.incident",),
                           provision={"type": "deny", "action": [{"coding": [{"code": "disclose"}]}]})
    del consent["dateTime"]

    (entry,) = parse_bundle(json.dumps(consent_bundle(consent)).encode(), FHIR_JSON, max_entries=10).entries

    assert isinstance(entry, RecordEntry) and isinstance(entry.record, InboundConsent)
    terms = entry.record.terms
    assert (terms.status, terms.purpose, terms.given_by, terms.giver_relationship) == (
        "refused", "family_help", "parental_responsibility", "mother",
    )
    assert terms.agencies == ("health", "police") and terms.categories == ("police.incident",)
    assert terms.period_start is None and terms.period_end is None
    assert entry.record.subject_ref == "Patient/p1" and entry.subject_location == "Bundle.entry[0].resource.patient"


def test_the_uk_core_consent_example_is_refused_with_what_it_lacks() -> None:
    xml = (CONFORMANCE / "UKCore-Consent-ForInformationAccess-Example.xml").read_text()
    body = (
        '<Bundle xmlns="http://hl7.org/fhir"><type value="batch"/><entry><resource>'
        + xml[xml.index("<Consent"):]
        + '</resource><request><method value="POST"/><url value="Consent"/></request></entry></Bundle>'
    )

    (entry,) = parse_bundle(body.encode(), "application/fhir+xml", max_entries=10).entries

    assert isinstance(entry, RejectedEntry)
    # It has a Practitioner who recorded it but no giver, and a v3 purpose (GOV) that is not the gateway's.
    assert sorted(issue.location for issue in entry.issues) == [
        "Bundle.entry[0].resource.performer", "Bundle.entry[0].resource.provision.purpose",
    ]


def test_a_pushed_consent_is_audited_under_the_source_not_a_person(child: Allocated, session: Session) -> None:
    _pushed(child.push(consent_bundle(fhir_consent())))

    event = session.scalars(
        select(AuditEvent).where(AuditEvent.action == AuditAction.CLIENT_CONSENT_IMPORTED)
    ).one()
    assert (event.actor_type, event.actor_agency) == ("client", "health")


def test_a_pushed_consent_opens_the_family_help_view_like_a_recorded_one(child: Allocated) -> None:
    bundle = child_bundle(demo_child(child.nhs_number), encounters=[encounter()])
    bundle["entry"].append(consent_bundle(fhir_consent(agencies=("health",)))["entry"][0])

    _pushed(child.push(bundle))

    view = get_view(child.http, staff_token(child.signing_keys, child.settings, child.member), child.child_id, "family_help")
    assert view.status_code == 200, view.text
    assert [entry["category"] for entry in view.json()["timeline"]] == ["health.urgent_care"]

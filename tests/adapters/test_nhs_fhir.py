"""The NHS FHIR adapter: synthetic Bundles, the UK Core conformance examples, and bad input."""

from __future__ import annotations

import copy
import json
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from fhir.resources.R4B import get_fhir_model_class

from adapters import AdapterError, EntryResponse, Issue, operation_outcome, parse_bundle, parse_resource
from adapters import response_bundle

CONFORMANCE = Path(__file__).resolve().parents[2].parent / "shared" / "conformance" / "ukcore-r4-examples"
NHS_SYSTEM = "https://fhir.nhs.uk/Id/nhs-number"
VALID_NHS = "9434765919"
JSON_TYPE = "application/fhir+json"


def patient(resource_id: str = "p1", nhs: str | None = VALID_NHS, **extra) -> dict:  # type: ignore[no-untyped-def,type-arg]
    resource = {
        "resourceType": "Patient",
        "id": resource_id,
        "name": [{"use": "usual", "family": "Nickname"}, {"use": "official", "family": "Synthetic", "given": ["Sam"]}],
        "gender": "male",
        "birthDate": "2016-05-04",
        "address": [{"use": "home", "line": ["1 Test Row"], "postalCode": "zz993vz"}],
        "identifier": [{"system": "https://local.example/mrn", "value": "MRN1"}],
    }
    if nhs is not None:
        resource["identifier"].append({"system": NHS_SYSTEM, "value": nhs})
    resource.update(extra)
    return resource


def encounter(resource_id: str = "e1", subject: str | None = "Patient/p1", **extra) -> dict:  # type: ignore[no-untyped-def,type-arg]
    resource = {
        "resourceType": "Encounter",
        "id": resource_id,
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "EMER", "display": "emergency"},
        "type": [{"coding": [{"system": "http://snomed.info/sct", "code": "4525004",
                              "display": "Emergency department patient visit"}]}],
        "period": {"start": "2026-10-01T14:00:00+01:00"},
    }
    if subject is not None:
        resource["subject"] = {"reference": subject}
    resource.update(extra)
    return resource


def bundle(*resources: dict, bundle_type: str = "transaction", method: str = "PUT") -> bytes:  # type: ignore[type-arg]
    entries = [
        {"fullUrl": f"urn:uuid:00000000-0000-4000-8000-00000000000{i}", "resource": r,
         "request": {"method": method, "url": f"{r['resourceType']}/{r['id']}" if method == "PUT" else r["resourceType"]}}
        for i, r in enumerate(resources)
    ]
    return json.dumps({"resourceType": "Bundle", "type": bundle_type, "entry": entries}).encode()


def only_issue(result) -> Issue:  # type: ignore[no-untyped-def]
    assert len(result.issues) == 1, result.issues
    return result.issues[0]


def test_patient_and_encounter_become_a_claim_and_a_record() -> None:
    parsed = parse_bundle(bundle(patient(), encounter()), "application/fhir+json; fhirVersion=4.0")

    claim_entry, record_entry = parsed.entries
    assert parsed.bundle_type == "transaction" and parsed.issues == ()
    claim = claim_entry.claim
    assert claim.source_record_id == "Patient/p1"
    assert claim.nhs_number == VALID_NHS
    assert claim.other_identifiers == (("https://local.example/mrn", "MRN1"),)
    assert (claim.family_name, claim.given_names) == ("Synthetic", ("Sam",))
    assert claim.birth_date == date(2016, 5, 4)
    assert claim.postcode == "ZZ99 3VZ"
    record = record_entry.record
    assert record.subject_ref == "Patient/p1"
    assert record.category == "health.urgent_care"
    assert record.summary == "Emergency encounter: Emergency department patient visit"
    assert record.occurred_at == datetime(2026, 10, 1, 13, 0, tzinfo=UTC)
    assert record.status == "current"
    assert record.payload["id"] == "e1"


def test_version_is_version_id_or_a_content_hash() -> None:
    with_version = parse_bundle(bundle(patient(meta={"versionId": "7"})), JSON_TYPE).entries[0].claim
    first = parse_bundle(bundle(patient()), JSON_TYPE).entries[0].claim
    again = parse_bundle(bundle(patient()), JSON_TYPE).entries[0].claim
    changed = parse_bundle(bundle(patient(gender="female")), JSON_TYPE).entries[0].claim

    assert with_version.source_version == "7"
    assert first.source_version == again.source_version
    assert first.source_version.startswith("sha256:")
    assert changed.source_version != first.source_version


def test_subject_may_be_the_patients_full_url_and_ids_may_come_from_it() -> None:
    body = json.dumps({
        "resourceType": "Bundle", "type": "transaction",
        "entry": [
            {"fullUrl": "urn:uuid:11111111-1111-4111-8111-111111111111",
             "resource": {k: v for k, v in patient().items() if k != "id"}, "request": {"method": "POST", "url": "Patient"}},
            {"fullUrl": "urn:uuid:22222222-2222-4222-8222-222222222222",
             "resource": {k: v for k, v in encounter(subject="urn:uuid:11111111-1111-4111-8111-111111111111").items()
                          if k != "id"},
             "request": {"method": "POST", "url": "Encounter"}},
        ],
    }).encode()

    claim_entry, record_entry = parse_bundle(body, JSON_TYPE).entries

    assert claim_entry.claim.source_record_id == "Patient/urn:uuid:11111111-1111-4111-8111-111111111111"
    assert record_entry.record.subject_ref == claim_entry.claim.source_record_id


def test_put_url_gives_the_id_when_the_resource_has_none() -> None:
    body = json.dumps({"resourceType": "Bundle", "type": "batch", "entry": [
        {"resource": {k: v for k, v in patient().items() if k != "id"}, "request": {"method": "PUT", "url": "Patient/p9"}},
    ]}).encode()

    assert parse_bundle(body, JSON_TYPE).entries[0].claim.source_record_id == "Patient/p9"


def test_entry_without_any_id_is_refused() -> None:
    body = json.dumps({"resourceType": "Bundle", "type": "batch", "entry": [
        {"resource": {k: v for k, v in patient().items() if k != "id"}, "request": {"method": "POST", "url": "Patient"}},
    ]}).encode()

    issue = only_issue(parse_bundle(body, JSON_TYPE).entries[0])

    assert (issue.code, issue.location) == ("required", "Bundle.entry[0].resource.id")


def test_put_url_naming_another_id_is_refused() -> None:
    body = json.loads(bundle(patient()))
    body["entry"][0]["request"]["url"] = "Patient/other"

    issue = only_issue(parse_bundle(json.dumps(body).encode(), JSON_TYPE).entries[0])

    assert issue.location == "Bundle.entry[0].request.url"


def test_invalid_nhs_number_points_at_the_identifier_and_does_not_echo_it() -> None:
    issue = only_issue(parse_bundle(bundle(patient(nhs="9434765918")), JSON_TYPE).entries[0])

    assert issue.code == "value"
    assert issue.location == "Bundle.entry[0].resource.identifier[1].value"
    assert "Modulus 11" in issue.message and "9434765918" not in issue.message


def test_two_nhs_numbers_are_refused() -> None:
    resource = patient()
    resource["identifier"].append({"system": NHS_SYSTEM, "value": "9000000009"})

    assert "two different NHS numbers" in only_issue(parse_bundle(bundle(resource), JSON_TYPE).entries[0]).message


def test_patient_without_nhs_number_is_a_claim_without_one() -> None:
    claim = parse_bundle(bundle(patient(nhs=None)), JSON_TYPE).entries[0].claim

    assert claim.nhs_number is None


@pytest.mark.parametrize(
    ("subject", "code", "fragment"),
    [
        (None, "required", "must name its subject"),
        ("urn:uuid:99999999-9999-4999-8999-999999999999", "not-found", "matches no Patient"),
        ("Practitioner/x", "value", "must be a Patient"),
    ],
)
def test_encounter_subject_problems(subject, code: str, fragment: str) -> None:  # type: ignore[no-untyped-def]
    issue = only_issue(parse_bundle(bundle(patient(), encounter(subject=subject)), JSON_TYPE).entries[1])

    assert (issue.code, issue.location) == (code, "Bundle.entry[1].resource.subject.reference")
    assert fragment in issue.message


def test_relative_subject_outside_the_bundle_is_left_to_the_gateway() -> None:
    record = parse_bundle(bundle(encounter(subject="Patient/earlier")), JSON_TYPE).entries[0].record

    assert record.subject_ref == "Patient/earlier"


def test_encounter_details_normalise() -> None:
    plain = encounter(status="entered-in-error", meta={"security": [{"code": "PSY"}, {"display": "no code"}]},
                      period={"start": "2026-10-01"})
    plain["class"] = {"code": "AMB"}
    plain["type"] = []
    parsed = parse_bundle(bundle(patient(), plain), JSON_TYPE).entries[1].record
    bare = encounter(period={"start": "2026"})
    bare["class"] = {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode"}
    del bare["type"]
    no_time = parse_bundle(bundle(patient(), bare), JSON_TYPE).entries[1].record

    assert parsed.category == "health.encounter"
    assert parsed.status == "entered_in_error"
    assert parsed.security_labels == frozenset({"PSY"})
    assert parsed.occurred_at == datetime(2026, 10, 1, tzinfo=UTC)
    assert parsed.summary == "AMB encounter"
    assert no_time.occurred_at is None and no_time.summary == "Encounter"


def test_naive_start_is_taken_as_utc_and_missing_period_is_none() -> None:
    naive = parse_bundle(bundle(patient(), encounter(period={"start": "2026-10-01T14:00:00Z"})), JSON_TYPE)
    missing = encounter()
    del missing["period"]

    assert naive.entries[1].record.occurred_at == datetime(2026, 10, 1, 14, tzinfo=UTC)
    assert parse_bundle(bundle(patient(), missing), JSON_TYPE).entries[1].record.occurred_at is None


def test_partial_birth_date_and_short_postcode_are_kept_honest() -> None:
    claim = parse_bundle(bundle(patient(birthDate="2016", address=[{"postalCode": "ZZ9"}])), JSON_TYPE).entries[0].claim
    no_address = parse_bundle(bundle(patient(address=[])), JSON_TYPE).entries[0].claim

    assert claim.birth_date is None
    assert claim.postcode == "ZZ9"
    assert no_address.postcode is None and no_address.address_lines == ()


def test_unsupported_type_and_read_methods_are_named() -> None:
    observation = {"resourceType": "Observation", "id": "o1", "status": "final",
                   "code": {"text": "x"}}
    parsed = parse_bundle(bundle(observation), JSON_TYPE)
    get = json.loads(bundle(patient()))
    get["entry"][0]["request"] = {"method": "GET", "url": "Patient/p1"}

    issue = only_issue(parsed.entries[0])
    assert issue.code == "not-supported" and "Observation" in issue.message and "Patient" in issue.message
    assert only_issue(parse_bundle(json.dumps(get).encode(), JSON_TYPE).entries[0]).location == (
        "Bundle.entry[0].request.method"
    )


def test_entry_without_resource_is_named() -> None:
    body = json.dumps({"resourceType": "Bundle", "type": "batch",
                       "entry": [{"request": {"method": "POST", "url": "Patient"}}]}).encode()

    assert only_issue(parse_bundle(body, JSON_TYPE).entries[0]).code == "required"


def test_empty_bundle_has_a_bundle_issue() -> None:
    parsed = parse_bundle(b'{"resourceType": "Bundle", "type": "batch"}', JSON_TYPE)

    assert parsed.entries == () and parsed.issues[0].location == "Bundle.entry"


@pytest.mark.parametrize(
    ("body", "content_type", "code", "fragment"),
    [
        (b"{nope", JSON_TYPE, "structure", "not valid JSON"),
        (b"\xff\xfe", JSON_TYPE, "structure", "not valid JSON"),
        (b'{"resourceType": "Patient"}', JSON_TYPE, "structure", "must be a FHIR Bundle"),
        (b"[1, 2]", JSON_TYPE, "structure", "must be a FHIR Bundle"),
        (b'{"resourceType": "Bundle", "type": "document"}', JSON_TYPE, "value", "transaction' or 'batch"),
        (b"<Bundle", "application/fhir+xml", "structure", "not well-formed XML"),
        (b'<Patient xmlns="http://hl7.org/fhir"/>', "application/fhir+xml", "structure", "must be a FHIR Bundle"),
        (b"x", "text/plain", "not-supported", "Content-Type"),
    ],
)
def test_whole_payload_failures(body: bytes, content_type: str, code: str, fragment: str) -> None:
    with pytest.raises(AdapterError) as error:
        parse_bundle(body, content_type)

    assert error.value.issues[0].code == code
    assert fragment in error.value.issues[0].message


def test_invalid_fhir_names_the_field_without_echoing_it() -> None:
    with pytest.raises(AdapterError) as error:
        parse_bundle(bundle(patient(birthDate="04/05/2016")), JSON_TYPE)

    issue = error.value.issues[0]
    assert issue.location == "Bundle.entry[0].resource.birthDate"
    assert "04/05/2016" not in issue.message


def test_unknown_resource_type_is_named() -> None:
    body = json.dumps({"resourceType": "Bundle", "type": "batch", "entry": [
        {"resource": {"resourceType": "Horoscope", "id": "h"}, "request": {"method": "PUT", "url": "Horoscope/h"}}
    ]}).encode()

    with pytest.raises(AdapterError) as error:
        parse_bundle(body, JSON_TYPE)

    assert "Horoscope" in error.value.issues[0].message


def test_xml_with_entities_is_not_expanded() -> None:
    evil = (b'<?xml version="1.0"?><!DOCTYPE b [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
            b'<Bundle xmlns="http://hl7.org/fhir"><type value="&x;"/></Bundle>')

    with pytest.raises(AdapterError) as error:
        parse_bundle(evil, "application/fhir+xml")

    assert "root:" not in json.dumps([i.message for i in error.value.issues])


def test_invalid_xml_resource_is_named() -> None:
    bad = b'<Bundle xmlns="http://hl7.org/fhir"><type value="batch"/><total value="many"/></Bundle>'

    with pytest.raises(AdapterError) as error:
        parse_bundle(bad, "application/fhir+xml")

    assert error.value.issues[0].location.startswith("Bundle")


def test_parse_resource_for_put() -> None:
    entry = parse_resource(json.dumps(patient("p5")).encode(), JSON_TYPE, resource_type="Patient", resource_id="p5")
    idless = parse_resource(json.dumps({k: v for k, v in patient().items() if k != "id"}).encode(), JSON_TYPE,
                            resource_type="Patient", resource_id="p6")

    assert entry.claim.source_record_id == "Patient/p5"
    assert idless.claim.source_record_id == "Patient/p6"
    with pytest.raises(AdapterError, match="id in the URL"):
        parse_resource(json.dumps(patient("p5")).encode(), JSON_TYPE, resource_type="Patient", resource_id="p7")
    with pytest.raises(AdapterError) as error:
        parse_resource(json.dumps(patient("p5", birthDate="x")).encode(), JSON_TYPE,
                       resource_type="Patient", resource_id="p5")
    assert error.value.issues[0].location == "Patient.birthDate"


# --- the UK Core conformance examples (public test material, ../shared/conformance) ---------------

def _example(name: str) -> dict:  # type: ignore[type-arg]
    model = get_fhir_model_class(name.split("-")[1]).model_validate_xml((CONFORMANCE / name).read_bytes())
    return model.model_dump(mode="json", exclude_none=True)


# The published BabyPatient example's NHS number, 9912003890, fails the Modulus 11 check (its check
# digit would be 6): the adapter must refuse it, exactly as it would from a live system.
INVALID_NHS_NUMBER_EXAMPLES = {"UKCore-Patient-BabyPatient-Example.xml"}


@pytest.mark.parametrize("name", sorted(p.name for p in CONFORMANCE.glob("UKCore-Patient-*.xml")))
def test_uk_core_patients_parse(name: str) -> None:
    text = (CONFORMANCE / name).read_text()
    xml_bundle = (
        '<Bundle xmlns="http://hl7.org/fhir"><type value="batch"/><entry><resource>'
        + text[text.index("<Patient"):]
        + '</resource><request><method value="POST"/><url value="Patient"/></request></entry></Bundle>'
    )

    entry = parse_bundle(xml_bundle.encode(), "application/fhir+xml").entries[0]

    if name in INVALID_NHS_NUMBER_EXAMPLES:
        issue = only_issue(entry)
        assert (issue.code, issue.location) == ("value", "Bundle.entry[0].resource.identifier[0].value")
    elif f'"{NHS_SYSTEM}"' in text:
        assert entry.claim.nhs_number is not None and len(entry.claim.nhs_number) == 10
    else:
        assert entry.claim is not None and entry.claim.nhs_number is None


def test_uk_core_encounter_parses_with_its_patient() -> None:
    the_patient = _example("UKCore-Patient-RichardSmith-Example.xml")
    the_encounter = _example("UKCore-Encounter-InpatientEncounter-Example.xml")

    parsed = parse_bundle(bundle(the_patient, the_encounter), JSON_TYPE)

    claim, record = parsed.entries[0].claim, parsed.entries[1].record
    assert claim.nhs_number == "9912003888"
    assert record.subject_ref == claim.source_record_id
    assert record.category == "health.encounter"
    assert record.summary.startswith("Inpatient encounter")
    assert "encounter encounter" not in record.summary


@pytest.mark.parametrize("name", ["UKCore-Bundle-Batch-Example.xml", "UKCore-Bundle-BatchPOST-Example.xml"])
def test_uk_core_batches_give_clear_not_supported_issues(name: str) -> None:
    parsed = parse_bundle((CONFORMANCE / name).read_bytes(), "application/fhir+xml")

    assert parsed.bundle_type == "batch"
    assert parsed.entries and all(e.issues and e.issues[0].code == "not-supported" for e in parsed.entries)


def test_outcome_and_response_bundle_are_valid_fhir() -> None:
    issue = Issue("error", "not-found", "Bundle.entry[1].resource.subject.reference", "no such Patient")
    outcome = operation_outcome([issue])
    empty = operation_outcome([Issue("information", "informational", "", "Stored.")])
    response = response_bundle("batch", [EntryResponse("201 Created", "Patient/p1/_history/1"),
                                         EntryResponse("422 Unprocessable Entity", None, (issue,))])

    assert outcome["issue"][0]["expression"] == [issue.location]
    assert "expression" not in empty["issue"][0]
    assert operation_outcome([])["issue"][0]["severity"] == "information"
    assert response["type"] == "batch-response"
    assert response["entry"][0]["response"] == {"status": "201 Created", "location": "Patient/p1/_history/1"}
    assert response["entry"][1]["response"]["outcome"]["resourceType"] == "OperationOutcome"
    assert copy.deepcopy(response) == response


def test_xml_bundle_holding_an_unknown_resource_is_refused() -> None:
    body = (b'<Bundle xmlns="http://hl7.org/fhir"><type value="batch"/><entry><resource>'
            b'<Horoscope><id value="h"/></Horoscope></resource></entry></Bundle>')

    with pytest.raises(AdapterError) as error:
        parse_bundle(body, "application/fhir+xml")

    assert error.value.issues[0].code in ("structure", "invalid")


def test_identifier_without_value_is_ignored() -> None:
    resource = patient()
    resource["identifier"].append({"system": "https://local.example/empty"})

    claim = parse_bundle(bundle(resource), JSON_TYPE).entries[0].claim

    assert claim.other_identifiers == (("https://local.example/mrn", "MRN1"),)

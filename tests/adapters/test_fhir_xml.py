"""FHIR answers as XML (adapters/fhir_xml.py), and what the FHIR adapter renders for FHIR's HTTP interactions.

Pure: no app, no database. Every XML answer is read back with fhir.resources and compared with the
JSON it was written from; the renderers' ETag, Last-Modified and Prefer shapes are checked as FHIR.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class
from lxml import etree

from adapters import ClaimEntry, EntryOutcome, EntryStatus, Issue, RecordEntry, RejectedEntry, parse_bundle, parse_resource
from adapters.fhir_consent import NHS_NUMBER_SUBJECT
from adapters.fhir_xml import NotSerialisable, to_xml
from adapters.nhs_fhir import (
    NhsFhirAdapter,
    deletion_response,
    operation_outcome,
    resource_response,
    response_bundle,
    unresolved_issue,
    unresolved_subject,
)

JSON_TYPE = "application/fhir+json"
NHS = "https://fhir.nhs.uk/Id/nhs-number"
VALID_NHS = "9434765919"
OTHER_NHS = "9434765870"
STORED_AT = datetime(2026, 3, 4, 5, 6, 7, 891000, tzinfo=UTC)


def _patient(resource_id: str = "p1", nhs: str = VALID_NHS, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": resource_id,
        "identifier": [{"system": NHS, "value": nhs}],
        "name": [{"use": "official", "family": "Testington", "given": ["Alex"]}],
        "gender": "female",
        "birthDate": "2015-03-14",
        "address": [{"use": "home", "line": ["1 Synthetic Street"], "postalCode": "ZZ99 3VZ"}],
        "telecom": [{"system": "phone", "value": "01234 567890"}],
        **extra,
    }


def _encounter(resource_id: str = "e1", subject: str = "Patient/p1", **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Encounter",
        "id": resource_id,
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "EMER"},
        "subject": {"reference": subject},
        "period": {"start": "2026-10-01T14:00:00+00:00"},
        **extra,
    }


def _bundle(*resources: dict[str, Any], bundle_type: str = "transaction") -> bytes:
    entries = [
        {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}} for r in resources
    ]
    return json.dumps({"resourceType": "Bundle", "type": bundle_type, "entry": entries}).encode()


def _read_xml(xml: bytes) -> dict[str, Any]:
    root = etree.QName(etree.fromstring(xml)).localname
    data: dict[str, Any] = get_fhir_model_class(root).model_validate_xml(xml).model_dump(mode="json", exclude_none=True)
    return data


def _as_fhir_json(resource: dict[str, Any]) -> dict[str, Any]:
    """The resource as fhir.resources writes it back as JSON (its own spelling of instants and decimals)."""
    data: dict[str, Any] = get_fhir_model_class(resource["resourceType"]).model_validate(resource).model_dump(
        mode="json", exclude_none=True
    )
    return data


# -- to_xml -------------------------------------------------------------------------------------------


def test_an_operation_outcome_round_trips_through_xml() -> None:
    outcome = operation_outcome(
        [Issue("error", "value", "Bundle.entry[0].resource.subject.reference", "a <tag> & an \"ampersand\" stay text")]
    )

    xml = to_xml(outcome)

    assert xml.startswith(b"<?xml") and b'xmlns="http://hl7.org/fhir"' in xml
    assert _read_xml(xml) == _as_fhir_json(outcome)
    assert b"&lt;tag&gt; &amp;" in xml  # escaped by the serialiser, not by hand


def test_a_response_bundle_with_versions_resources_and_outcomes_round_trips_through_xml() -> None:
    submission = parse_bundle(
        _bundle(_patient(meta={"versionId": "1"}), _encounter(meta={"versionId": "2"}), _encounter("e2", "Practitioner/x"),
                bundle_type="batch"),
        JSON_TYPE, max_entries=10,
    )
    refused = Issue("error", "not-found", "Bundle.entry[2].resource.subject.reference", "no such Patient")
    outcomes = [
        EntryOutcome(0, EntryStatus.CREATED, last_modified=STORED_AT),
        EntryOutcome(1, EntryStatus.UNCHANGED, last_modified=STORED_AT - timedelta(days=1)),
        EntryOutcome(2, EntryStatus.REJECTED, (refused,)),
    ]
    body = response_bundle(submission, outcomes, prefer="representation")

    back = _read_xml(to_xml(body))

    assert back == _as_fhir_json(body)
    assert [entry["response"]["status"] for entry in back["entry"]] == ["201 Created", "200 OK", "422 Unprocessable Entity"]
    assert back["entry"][1]["resource"]["resourceType"] == "Encounter"


def test_the_capability_statement_round_trips_through_xml() -> None:
    statement = NhsFhirAdapter().describe(token_endpoint="https://gateway.test.example/oauth/token")

    back = _read_xml(to_xml(statement))

    assert back == _as_fhir_json(statement)
    assert back["fhirVersion"] == "4.0.1"


def test_what_is_not_a_fhir_resource_is_not_serialised_and_no_value_is_echoed() -> None:
    with pytest.raises(NotSerialisable, match="resourceType"):
        to_xml({"issue": []})
    with pytest.raises(NotSerialisable, match="not a FHIR R4 resource type"):
        to_xml({"resourceType": "Spaceship"})
    with pytest.raises(NotSerialisable, match="birthDate") as refused:
        to_xml({"resourceType": "Patient", "birthDate": "14/03/2015"})
    assert "14/03/2015" not in str(refused.value)


# -- ETag, Last-Modified and Prefer, as the adapter renders them ----------------------------------------


def _put(resource: dict[str, Any]) -> Any:
    return parse_resource(json.dumps(resource).encode(), JSON_TYPE, resource_type=resource["resourceType"],
                          resource_id=resource["id"])


def test_a_put_answer_names_the_version_and_when_it_was_stored() -> None:
    submission = _put(_encounter(meta={"versionId": "5"}))

    created = resource_response(submission, EntryOutcome(0, EntryStatus.CREATED, last_modified=STORED_AT))
    unknown = resource_response(submission, EntryOutcome(0, EntryStatus.CREATED))

    assert created.status_code == 201
    assert dict(created.headers) == {
        "Location": "Encounter/e1/_history/5",
        "ETag": 'W/"5"',
        "Last-Modified": "Wed, 04 Mar 2026 05:06:07 GMT",
    }
    assert parsedate_to_datetime(created.headers["Last-Modified"]) == STORED_AT.replace(microsecond=0)
    assert dict(unknown.headers) == {"Location": "Encounter/e1/_history/5"}  # no time said: no ETag either
    assert created.body["resourceType"] == "OperationOutcome"


def test_last_modified_is_in_gmt_whatever_the_zone_of_the_time() -> None:
    submission = _put(_encounter(meta={"versionId": "5"}))
    in_paris = STORED_AT.astimezone(timezone(timedelta(hours=1)))

    rendered = resource_response(submission, EntryOutcome(0, EntryStatus.UNCHANGED, last_modified=in_paris))

    assert rendered.status_code == 200 and rendered.headers["Last-Modified"] == "Wed, 04 Mar 2026 05:06:07 GMT"


def test_representation_is_the_resource_as_stored_with_its_version_and_time() -> None:
    record = _put(_encounter(meta={"versionId": "5", "source": "urn:trust:epr"}))
    person = _put(_patient(meta={"versionId": "2"}))

    encounter = resource_response(record, EntryOutcome(0, EntryStatus.CREATED, last_modified=STORED_AT),
                                  prefer="representation").body
    patient = resource_response(person, EntryOutcome(0, EntryStatus.UNCHANGED, last_modified=STORED_AT),
                                prefer="representation").body

    assert encounter["meta"] == {"source": "urn:trust:epr", "versionId": "5", "lastUpdated": "2026-03-04T05:06:07.891Z"}
    assert encounter["subject"] == {"reference": "Patient/p1"} and encounter["id"] == "e1"
    # A Patient is what the gateway keeps of it: identifiers, name, gender, birth date, home address.
    assert patient == {
        "resourceType": "Patient",
        "id": "p1",
        "identifier": [{"system": NHS, "value": VALID_NHS}],
        "name": [{"use": "official", "family": "Testington", "given": ["Alex"]}],
        "gender": "female",
        "birthDate": "2015-03-14",
        "address": [{"use": "home", "line": ["1 Synthetic Street"], "postalCode": "ZZ99 3VZ"}],
        "meta": {"versionId": "2", "lastUpdated": "2026-03-04T05:06:07.891Z"},
    }
    for body in (encounter, patient):
        get_fhir_model_class(body["resourceType"]).model_validate(body)


def test_a_version_derived_from_the_content_is_no_version_id_but_stays_the_etag() -> None:
    submission = _put(_encounter())
    outcome = EntryOutcome(0, EntryStatus.CREATED, last_modified=STORED_AT)

    rendered = resource_response(submission, outcome, prefer="representation")

    assert rendered.headers["ETag"].startswith('W/"sha256:')
    assert rendered.headers["Location"].endswith(rendered.headers["ETag"][3:-1])
    assert rendered.body["meta"] == {"lastUpdated": "2026-03-04T05:06:07.891Z"}
    get_fhir_model_class("Encounter").model_validate(rendered.body)


def test_bundle_entries_carry_etag_and_last_modified_and_minimal_keeps_only_refusals_outcomes() -> None:
    submission = parse_bundle(_bundle(_patient(meta={"versionId": "1"}), _encounter("e2", "Practitioner/x"),
                                      bundle_type="batch"), JSON_TYPE, max_entries=10)
    warning = Issue("warning", "informational", "Bundle.entry[0].resource", "stored, with a note")
    refused = Issue("error", "not-found", "Bundle.entry[1].resource.subject.reference", "no such Patient")
    outcomes = [EntryOutcome(0, EntryStatus.CREATED, (warning,), last_modified=STORED_AT),
                EntryOutcome(1, EntryStatus.REJECTED, (refused,))]

    default = NhsFhirAdapter().render(submission, outcomes).body
    minimal = NhsFhirAdapter().render(submission, outcomes, prefer="minimal").body

    assert default["entry"][0] == {"response": {
        "status": "201 Created", "location": "Patient/p1/_history/1", "etag": 'W/"1"',
        "lastModified": "2026-03-04T05:06:07.891Z", "outcome": operation_outcome([warning]),
    }}
    assert minimal["entry"][0] == {"response": {
        "status": "201 Created", "location": "Patient/p1/_history/1", "etag": 'W/"1"',
        "lastModified": "2026-03-04T05:06:07.891Z",
    }}
    assert minimal["entry"][1] == default["entry"][1] == {
        "response": {"status": "422 Unprocessable Entity", "outcome": operation_outcome([refused])}
    }
    for body in (default, minimal):
        get_fhir_model_class("Bundle").model_validate(body)


def test_a_deletion_answer_says_whether_it_retracted() -> None:
    done = deletion_response(already=False)
    before = deletion_response(already=True)

    assert done.status_code == before.status_code == 200
    assert done.body["issue"][0]["diagnostics"].startswith("Deleted")
    assert before.body["issue"][0]["diagnostics"].startswith("Already deleted")
    get_fhir_model_class("OperationOutcome").model_validate(done.body)


# -- conditional references -------------------------------------------------------------------------------


def _subjects(*resources: dict[str, Any]) -> list[str]:
    submission = parse_bundle(_bundle(*resources, bundle_type="batch"), JSON_TYPE, max_entries=10)
    return [entry.record.subject_ref for entry in submission.entries if isinstance(entry, RecordEntry)]


def test_a_conditional_reference_names_the_patient_of_the_bundle_with_that_nhs_number() -> None:
    conditional = f"Patient?identifier={NHS}|{VALID_NHS}"
    spaced = f"Patient?identifier={NHS}|943 476 5919"
    encoded = "Patient?identifier=https%3A%2F%2Ffhir.nhs.uk%2FId%2Fnhs-number%7C9434765919"

    subjects = _subjects(_patient("p1"), _patient("p2", OTHER_NHS), _encounter("e1", conditional),
                         _encounter("e2", spaced), _encounter("e3", encoded))

    assert subjects == ["Patient/p1"] * 3


def test_a_conditional_reference_matching_no_patient_of_the_bundle_is_left_to_the_gateway_by_nhs_number() -> None:
    assert _subjects(_encounter("e1", f"Patient?identifier={NHS}|{VALID_NHS}")) == [NHS_NUMBER_SUBJECT + VALID_NHS]


def _refusal(*resources: dict[str, Any]) -> Issue:
    submission = parse_bundle(_bundle(*resources, bundle_type="batch"), JSON_TYPE, max_entries=10)
    (refused,) = [entry for entry in submission.entries if isinstance(entry, RejectedEntry)]
    (issue,) = refused.issues
    return issue


def test_a_conditional_reference_matching_two_patients_of_the_bundle_is_refused() -> None:
    issue = _refusal(_patient("p1"), _patient("p2"), _encounter("e1", f"Patient?identifier={NHS}|{VALID_NHS}"))

    assert issue.code == "multiple-matches" and issue.severity == "error"
    assert issue.location == "Bundle.entry[2].resource.subject.reference"
    assert VALID_NHS not in issue.message


@pytest.mark.parametrize(
    ("reference", "code"),
    [
        (f"Patient?identifier={NHS}|9434765918", "value"),
        (f"Patient?identifier={NHS}|", "value"),
        ("Patient?identifier=9434765919", "not-supported"),
        ("Patient?name=Testington", "not-supported"),
        (f"Patient?identifier={NHS}|{VALID_NHS}&identifier={NHS}|{VALID_NHS}", "not-supported"),
        ("Patient?=%", "not-supported"),
    ],
)
def test_a_conditional_reference_the_gateway_cannot_search_is_refused_with_a_reason(reference: str, code: str) -> None:
    issue = _refusal(_encounter("e1", reference))

    assert (issue.code, issue.location) == (code, "Bundle.entry[0].resource.subject.reference")
    assert "9434765918" not in issue.message and "Testington" not in issue.message


def test_an_unresolved_subject_carries_its_issue_and_an_ordinary_one_none() -> None:
    assert unresolved_issue("Patient/p1", "x") is None
    assert unresolved_issue(NHS_NUMBER_SUBJECT + VALID_NHS, "x") is None
    assert unresolved_issue(unresolved_subject("value", "why: with a colon"), "x") == Issue(
        "error", "value", "x", "why: with a colon"
    )


def test_a_claim_and_a_rejected_entry_have_no_stored_resource() -> None:
    submission = parse_bundle(_bundle(_patient(), _encounter("e2", "Practitioner/x"), bundle_type="batch"),
                              JSON_TYPE, max_entries=10)
    claim, rejected = submission.entries
    assert isinstance(claim, ClaimEntry) and isinstance(rejected, RejectedEntry)

    body = response_bundle(submission, [EntryOutcome(0, EntryStatus.UNCHANGED), EntryOutcome(1, EntryStatus.REJECTED)],
                           prefer="representation")

    patient = body["entry"][0]["resource"]
    # Versioned by content ("sha256:…", no FHIR id) and stored at a time not given: no meta at all.
    assert claim.claim.source_version.startswith("sha256:") and "meta" not in patient
    assert patient["identifier"] == [{"system": NHS, "value": VALID_NHS}]
    assert "telecom" not in patient  # not kept by the gateway, so not "as stored"
    assert "resource" not in body["entry"][1]

"""The NHS FHIR adapter: synthetic Bundles, the UK Core conformance examples, and bad input."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, TypeVar

import pytest
from fhir.resources.R4B import get_fhir_model_class

import adapters.nhs_fhir as nhs_fhir_module
from adapters import (
    Adapter,
    AdapterError,
    ClaimEntry,
    Entry,
    EntryOutcome,
    EntryStatus,
    IdentityClaim,
    InboundRecord,
    Issue,
    NhsFhirAdapter,
    RecordEntry,
    RejectedEntry,
    Submission,
    TooManyEntries,
    operation_outcome,
    parse_bundle,
    parse_resource,
    resource_response,
)
from adapters.nhs_fhir import (
    DETRIMENTAL_CODE,
    GATEWAY_CODE_SYSTEM,
    GENDER_IDENTITY_HISTORY_CODE,
    _datetime,
    capability_statement,
    entry_location,
    response_bundle,
)

CONFORMANCE = Path(__file__).resolve().parents[2].parent / "shared" / "conformance" / "ukcore-r4-examples"
NHS_SYSTEM = "https://fhir.nhs.uk/Id/nhs-number"
VALID_NHS = "9434765919"
JSON_TYPE = "application/fhir+json"
# The most entries a push may carry in these tests (the gateway passes its own setting).
MAX_ENTRIES = 1000


def patient(resource_id: str = "p1", nhs: str | None = VALID_NHS, **extra: Any) -> dict[str, Any]:
    resource: dict[str, Any] = {
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


def encounter(resource_id: str = "e1", subject: str | None = "Patient/p1", **extra: Any) -> dict[str, Any]:
    resource: dict[str, Any] = {
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


def bundle(*resources: dict[str, Any], bundle_type: str = "transaction", method: str = "PUT") -> bytes:
    entries = [
        {"fullUrl": f"urn:uuid:00000000-0000-4000-8000-00000000000{i}", "resource": r,
         "request": {"method": method, "url": f"{r['resourceType']}/{r['id']}" if method == "PUT" else r["resourceType"]}}
        for i, r in enumerate(resources)
    ]
    return json.dumps({"resourceType": "Bundle", "type": bundle_type, "entry": entries}).encode()


def parse(body: bytes, content_type: str = JSON_TYPE) -> Submission:
    """Parse a push under the test cap on entries."""
    return parse_bundle(body, content_type, max_entries=MAX_ENTRIES)


def claim_of(entry: Entry) -> IdentityClaim:
    assert isinstance(entry, ClaimEntry), entry
    return entry.claim


def record_of(entry: Entry) -> InboundRecord:
    assert isinstance(entry, RecordEntry), entry
    return entry.record


def only_issue(entry: Entry) -> Issue:
    assert isinstance(entry, RejectedEntry), entry
    assert len(entry.issues) == 1, entry.issues
    return entry.issues[0]


def test_patient_and_encounter_become_a_claim_and_a_record() -> None:
    parsed = parse(bundle(patient(), encounter()), "application/fhir+json; fhirVersion=4.0")

    claim_entry, record_entry = parsed.entries
    assert parsed.label == "transaction" and parsed.atomic and parsed.issues == ()
    assert isinstance(claim_entry, ClaimEntry) and isinstance(record_entry, RecordEntry)
    assert (claim_entry.index, claim_entry.location) == (0, "Bundle.entry[0].resource")
    assert (record_entry.index, record_entry.location) == (1, "Bundle.entry[1].resource")
    assert record_entry.subject_location == "Bundle.entry[1].resource.subject.reference"
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
    assert record.entered_in_error is False
    assert record.payload["id"] == "e1"


def test_a_batch_is_not_atomic() -> None:
    parsed = parse(bundle(patient(), bundle_type="batch"))

    assert (parsed.label, parsed.atomic) == ("batch", False)


def test_version_is_version_id_or_a_content_hash() -> None:
    with_version = claim_of(parse(bundle(patient(meta={"versionId": "7"}))).entries[0])
    first = claim_of(parse(bundle(patient())).entries[0])
    again = claim_of(parse(bundle(patient())).entries[0])
    changed = claim_of(parse(bundle(patient(gender="female"))).entries[0])

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

    claim_entry, record_entry = parse(body).entries

    claim, record = claim_of(claim_entry), record_of(record_entry)
    assert claim.source_record_id == "Patient/urn:uuid:11111111-1111-4111-8111-111111111111"
    assert record.subject_ref == claim.source_record_id


def test_put_url_gives_the_id_when_the_resource_has_none() -> None:
    body = json.dumps({"resourceType": "Bundle", "type": "batch", "entry": [
        {"resource": {k: v for k, v in patient().items() if k != "id"}, "request": {"method": "PUT", "url": "Patient/p9"}},
    ]}).encode()

    assert claim_of(parse(body).entries[0]).source_record_id == "Patient/p9"


def test_entry_without_any_id_is_refused() -> None:
    body = json.dumps({"resourceType": "Bundle", "type": "batch", "entry": [
        {"resource": {k: v for k, v in patient().items() if k != "id"}, "request": {"method": "POST", "url": "Patient"}},
    ]}).encode()

    entry = parse(body).entries[0]
    issue = only_issue(entry)

    assert (entry.index, entry.location) == (0, "Bundle.entry[0].resource")
    assert (issue.code, issue.location) == ("required", "Bundle.entry[0].resource.id")


def test_put_url_naming_another_id_is_refused() -> None:
    body = json.loads(bundle(patient()))
    body["entry"][0]["request"]["url"] = "Patient/other"

    issue = only_issue(parse(json.dumps(body).encode()).entries[0])

    assert issue.location == "Bundle.entry[0].request.url"


def test_invalid_nhs_number_points_at_the_identifier_and_does_not_echo_it() -> None:
    issue = only_issue(parse(bundle(patient(nhs="9434765918"))).entries[0])

    assert issue.code == "value"
    assert issue.location == "Bundle.entry[0].resource.identifier[1].value"
    assert "Modulus 11" in issue.message and "9434765918" not in issue.message


def test_two_nhs_numbers_are_refused() -> None:
    resource = patient()
    resource["identifier"].append({"system": NHS_SYSTEM, "value": "9000000009"})

    assert "two different NHS numbers" in only_issue(parse(bundle(resource)).entries[0]).message


def test_patient_without_nhs_number_is_a_claim_without_one() -> None:
    claim = claim_of(parse(bundle(patient(nhs=None))).entries[0])

    assert claim.nhs_number is None


@pytest.mark.parametrize(
    ("subject", "code", "fragment"),
    [
        (None, "required", "must name its subject"),
        ("urn:uuid:99999999-9999-4999-8999-999999999999", "not-found", "matches no Patient"),
        ("Practitioner/x", "value", "must be a Patient"),
    ],
)
def test_encounter_subject_problems(subject: str | None, code: str, fragment: str) -> None:
    issue = only_issue(parse(bundle(patient(), encounter(subject=subject))).entries[1])

    assert (issue.code, issue.location) == (code, "Bundle.entry[1].resource.subject.reference")
    assert fragment in issue.message


def test_relative_subject_outside_the_bundle_is_left_to_the_gateway() -> None:
    record = record_of(parse(bundle(encounter(subject="Patient/earlier"))).entries[0])

    assert record.subject_ref == "Patient/earlier"


def test_encounter_details_normalise() -> None:
    plain = encounter(status="entered-in-error", meta={"security": [{"code": "PSY"}, {"display": "no code"}]},
                      period={"start": "2026-10-01"})
    plain["class"] = {"code": "AMB"}
    plain["type"] = []
    parsed = record_of(parse(bundle(patient(), plain)).entries[1])
    bare = encounter(period={"start": "2026"})
    bare["class"] = {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode"}
    del bare["type"]
    no_time = record_of(parse(bundle(patient(), bare)).entries[1])

    assert parsed.category == "health.encounter"
    assert parsed.entered_in_error is True
    assert parsed.security_labels == frozenset({"PSY"})
    assert parsed.occurred_at == datetime(2026, 10, 1, tzinfo=UTC)
    assert parsed.summary == "AMB encounter"
    assert no_time.occurred_at is None and no_time.summary == "Encounter"
    assert no_time.entered_in_error is False


# --- meta: security labels and the s16LA mark ---------------------------------------------------

CONFIDENTIALITY = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
DETRIMENTAL = {"system": GATEWAY_CODE_SYSTEM, "code": DETRIMENTAL_CODE}


def marked_record(**meta: list[dict[str, str]]) -> InboundRecord:
    """The record of an Encounter (pushed with its Patient) whose meta has these codings."""
    return record_of(parse(bundle(patient(), encounter(meta=meta))).entries[1])


def test_the_mark_in_meta_security_makes_the_record_detrimental_and_is_no_label() -> None:
    record = marked_record(security=[DETRIMENTAL, {"system": ACT_CODE, "code": "PSY"}])

    assert record.detrimental is True
    assert record.security_labels == frozenset({"PSY"})
    assert DETRIMENTAL_CODE not in record.security_labels


def test_the_mark_in_meta_tag_makes_the_record_detrimental() -> None:
    record = marked_record(tag=[{"system": "https://local.example/tags", "code": "ed"}, DETRIMENTAL])

    assert record.detrimental is True
    assert record.security_labels == frozenset()


def test_without_the_mark_a_record_is_not_detrimental() -> None:
    plain = record_of(parse(bundle(patient(), encounter())).entries[1])
    # The same code in another system is not the mark (kept as that system's label, as any is).
    elsewhere = marked_record(security=[{"system": "https://local.example/codes", "code": DETRIMENTAL_CODE}],
                              tag=[{"system": "https://local.example/codes", "code": DETRIMENTAL_CODE}])

    assert plain.detrimental is False and plain.security_labels == frozenset()
    assert elsewhere.detrimental is False and elsewhere.security_labels == frozenset({DETRIMENTAL_CODE})


@pytest.mark.parametrize(
    ("meta", "location"),
    [
        ({"security": [{"system": ACT_CODE, "code": "PSY"}, {"system": GATEWAY_CODE_SYSTEM, "code": "s16-detrimental"}]},
         "Bundle.entry[1].resource.meta.security[1]"),
        ({"tag": [{"system": GATEWAY_CODE_SYSTEM, "code": DETRIMENTAL_CODE.upper()}]},
         "Bundle.entry[1].resource.meta.tag[0]"),
        ({"tag": [{"system": GATEWAY_CODE_SYSTEM, "display": "detrimental"}]}, "Bundle.entry[1].resource.meta.tag[0]"),
    ],
    ids=["security-typo", "tag-wrong-case", "tag-without-code"],
)
def test_an_unknown_code_of_the_gateway_system_is_refused_at_its_coding(
    meta: dict[str, list[dict[str, str]]], location: str
) -> None:
    entry = parse(bundle(patient(), encounter(meta=meta))).entries[1]

    issue = only_issue(entry)
    assert (entry.location, issue.severity, issue.code, issue.location) == (
        "Bundle.entry[1].resource", "error", "code-invalid", location
    )
    assert GATEWAY_CODE_SYSTEM in issue.message and repr(DETRIMENTAL_CODE) in issue.message


def test_an_unknown_code_in_a_put_encounter_is_located_under_the_resource() -> None:
    resource = encounter("e5", meta={"tag": [DETRIMENTAL, {"system": GATEWAY_CODE_SYSTEM, "code": "other"}]})

    submission = parse_resource(json.dumps(resource).encode(), JSON_TYPE, resource_type="Encounter", resource_id="e5")

    issue = only_issue(submission.entries[0])
    assert (issue.code, issue.location) == ("code-invalid", "Encounter.meta.tag[1]")


def test_the_mark_is_read_from_an_xml_push() -> None:
    body = (
        '<Bundle xmlns="http://hl7.org/fhir"><type value="batch"/><entry><resource><Encounter><id value="e1"/>'
        f'<meta><security><system value="{GATEWAY_CODE_SYSTEM}"/><code value="{DETRIMENTAL_CODE}"/></security></meta>'
        '<status value="finished"/><class><code value="AMB"/></class><subject><reference value="Patient/p1"/></subject>'
        '</Encounter></resource><request><method value="PUT"/><url value="Encounter/e1"/></request></entry></Bundle>'
    )

    record = record_of(parse(body.encode(), "application/fhir+xml").entries[0])

    assert record.detrimental is True and record.security_labels == frozenset()


def test_security_codes_of_any_system_are_labels_and_tags_never_are() -> None:
    record = marked_record(
        security=[
            {"system": CONFIDENTIALITY, "code": "R"},
            {"system": ACT_CODE, "code": "PSY"},
            {"system": "http://hl7.org/fhir/v3/ActCode", "code": "HIV"},  # the same system's DSTU2/STU3 URL
            {"system": "https://local.example/sensitivity", "code": "SEX"},  # a local system's: kept, never dropped
            {"code": "ETH"},  # no system: taken, as before
        ],
        tag=[{"system": CONFIDENTIALITY, "code": "V"}],  # a tag is never a security label
    )

    assert record.security_labels == frozenset({"R", "PSY", "HIV", "SEX", "ETH"})
    assert record.detrimental is False


def test_the_capability_statement_documents_the_mark_on_encounters() -> None:
    statement = capability_statement(token_endpoint="https://gateway.test.example/oauth/token")

    get_fhir_model_class("CapabilityStatement").model_validate(statement)
    documentation = {resource["type"]: resource.get("documentation", "") for resource in statement["rest"][0]["resource"]}
    assert GATEWAY_CODE_SYSTEM in documentation["Encounter"] and DETRIMENTAL_CODE in documentation["Encounter"]
    assert "s16LA" in documentation["Encounter"] and "meta.tag" in documentation["Encounter"]
    assert CONFIDENTIALITY in documentation["Encounter"] and ACT_CODE in documentation["Encounter"]
    assert GATEWAY_CODE_SYSTEM not in documentation["Patient"]


def test_naive_start_is_taken_as_utc_and_missing_period_is_none() -> None:
    naive = parse(bundle(patient(), encounter(period={"start": "2026-10-01T14:00:00Z"})))
    missing = encounter()
    del missing["period"]

    assert record_of(naive.entries[1]).occurred_at == datetime(2026, 10, 1, 14, tzinfo=UTC)
    assert record_of(parse(bundle(patient(), missing)).entries[1]).occurred_at is None


def test_partial_birth_date_and_short_postcode_are_kept_honest() -> None:
    claim = claim_of(parse(bundle(patient(birthDate="2016", address=[{"postalCode": "ZZ9"}]))).entries[0])
    no_address = claim_of(parse(bundle(patient(address=[]))).entries[0])

    assert claim.birth_date is None
    assert claim.postcode == "ZZ9"
    assert no_address.postcode is None and no_address.address_lines == ()


def test_a_resource_about_no_child_and_read_methods_are_named() -> None:
    practitioner = {"resourceType": "Practitioner", "id": "pr1", "name": [{"family": "Example"}]}
    parsed = parse(bundle(practitioner))
    get = json.loads(bundle(patient()))
    get["entry"][0]["request"] = {"method": "GET", "url": "Patient/p1"}

    issue = only_issue(parsed.entries[0])
    assert issue.code == "not-supported" and "Practitioner" in issue.message and "about a child" in issue.message
    assert issue.location == "Bundle.entry[0].resource"
    assert only_issue(parse(json.dumps(get).encode()).entries[0]).location == (
        "Bundle.entry[0].request.method"
    )


def test_entry_without_resource_is_named() -> None:
    body = json.dumps({"resourceType": "Bundle", "type": "batch",
                       "entry": [{"request": {"method": "POST", "url": "Patient"}}]}).encode()

    assert only_issue(parse(body).entries[0]).code == "required"


def test_empty_bundle_has_a_bundle_issue() -> None:
    parsed = parse(b'{"resourceType": "Bundle", "type": "batch"}')

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
        parse(body, content_type)

    assert error.value.issues[0].code == code
    assert fragment in error.value.issues[0].message


def test_invalid_fhir_names_the_field_without_echoing_it() -> None:
    with pytest.raises(AdapterError) as error:
        parse(bundle(patient(birthDate="04/05/2016")))

    issue = error.value.issues[0]
    assert issue.location == "Bundle.entry[0].resource.birthDate"
    assert "04/05/2016" not in issue.message


def test_unknown_resource_type_is_named() -> None:
    body = json.dumps({"resourceType": "Bundle", "type": "batch", "entry": [
        {"resource": {"resourceType": "Horoscope", "id": "h"}, "request": {"method": "PUT", "url": "Horoscope/h"}}
    ]}).encode()

    with pytest.raises(AdapterError) as error:
        parse(body)

    assert "Horoscope" in error.value.issues[0].message


def test_xml_with_entities_is_not_expanded() -> None:
    evil = (b'<?xml version="1.0"?><!DOCTYPE b [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
            b'<Bundle xmlns="http://hl7.org/fhir"><type value="&x;"/></Bundle>')

    with pytest.raises(AdapterError) as error:
        parse(evil, "application/fhir+xml")

    assert "root:" not in json.dumps([i.message for i in error.value.issues])


def test_invalid_xml_resource_is_named() -> None:
    bad = b'<Bundle xmlns="http://hl7.org/fhir"><type value="batch"/><total value="many"/></Bundle>'

    with pytest.raises(AdapterError) as error:
        parse(bad, "application/fhir+xml")

    assert error.value.issues[0].location.startswith("Bundle")


def test_parse_resource_for_put() -> None:
    submission = parse_resource(json.dumps(patient("p5")).encode(), JSON_TYPE, resource_type="Patient",
                                resource_id="p5")
    idless = parse_resource(json.dumps({k: v for k, v in patient().items() if k != "id"}).encode(), JSON_TYPE,
                            resource_type="Patient", resource_id="p6")

    assert (submission.atomic, submission.label, submission.issues) == (True, "transaction", ())
    assert len(submission.entries) == 1 and len(idless.entries) == 1
    assert submission.entries[0].location == "Patient"
    assert claim_of(submission.entries[0]).source_record_id == "Patient/p5"
    assert claim_of(idless.entries[0]).source_record_id == "Patient/p6"
    with pytest.raises(AdapterError, match="id in the URL"):
        parse_resource(json.dumps(patient("p5")).encode(), JSON_TYPE, resource_type="Patient", resource_id="p7")
    with pytest.raises(AdapterError) as error:
        parse_resource(json.dumps(patient("p5", birthDate="x")).encode(), JSON_TYPE,
                       resource_type="Patient", resource_id="p5")
    assert error.value.issues[0].location == "Patient.birthDate"


def test_parse_resource_names_entry_problems_under_the_resource() -> None:
    submission = parse_resource(json.dumps(encounter("e5", subject="Practitioner/x")).encode(), JSON_TYPE,
                                resource_type="Encounter", resource_id="e5")

    issue = only_issue(submission.entries[0])
    assert (issue.code, issue.location) == ("value", "Encounter.subject.reference")


# --- the cap on entries -----------------------------------------------------------------------

def _entries_bundle(count: int, entry: dict[str, Any]) -> bytes:
    return json.dumps({"resourceType": "Bundle", "type": "batch", "entry": [entry] * count}).encode()


def test_more_entries_than_the_cap_are_refused_before_validation() -> None:
    # Entries FHIR would refuse: were they validated first, the error would be a different one.
    invalid = {"resource": {"resourceType": "Patient", "id": "p1", "birthDate": "not a date"},
               "request": {"method": "PUT", "url": "Patient/p1"}}

    with pytest.raises(TooManyEntries) as error:
        parse(_entries_bundle(MAX_ENTRIES + 1, invalid))

    assert isinstance(error.value, AdapterError)
    (issue,) = error.value.issues
    assert (issue.severity, issue.code, issue.location) == ("error", "too-long", "Bundle.entry")
    assert f"at most {MAX_ENTRIES} entries" in issue.message
    with pytest.raises(TooManyEntries):
        parse_bundle(_entries_bundle(3, invalid), JSON_TYPE, max_entries=2)


def test_exactly_the_cap_is_accepted_and_then_validated() -> None:
    entry = {"resource": patient(), "request": {"method": "PUT", "url": "Patient/p1"}}
    invalid = {"resource": {"resourceType": "Patient", "id": "p1", "birthDate": "not a date"},
               "request": {"method": "PUT", "url": "Patient/p1"}}

    parsed = parse_bundle(_entries_bundle(3, entry), JSON_TYPE, max_entries=3)
    with pytest.raises(AdapterError) as error:
        parse_bundle(_entries_bundle(3, invalid), JSON_TYPE, max_entries=3)

    assert len(parsed.entries) == 3 and all(isinstance(e, ClaimEntry) for e in parsed.entries)
    assert not isinstance(error.value, TooManyEntries)
    assert error.value.issues[0].location == "Bundle.entry[0].resource.birthDate"


def test_entry_that_is_not_a_list_is_not_counted_but_refused_by_validation() -> None:
    body = b'{"resourceType": "Bundle", "type": "batch", "entry": {"not": "a list"}}'

    with pytest.raises(AdapterError) as error:
        parse_bundle(body, JSON_TYPE, max_entries=0)

    assert not isinstance(error.value, TooManyEntries)
    assert error.value.issues[0].location.startswith("Bundle.entry")


# --- the Adapter interface: parse, render, render_error, describe -------------------------------

def _stored_and_rejected(bundle_type: str = "batch") -> Submission:
    """A claim, a record and an entry the adapter rejected, in that order."""
    return parse(bundle(patient(meta={"versionId": "1"}), encounter(meta={"versionId": "2"}),
                        encounter("e2", subject="Practitioner/x"), bundle_type=bundle_type))


def test_the_fhir_adapter_is_an_adapter() -> None:
    adapter: Adapter = NhsFhirAdapter()  # checked by mypy against the protocol

    parsed = adapter.parse(bundle(patient()), JSON_TYPE, max_entries=1)

    assert adapter.name == "nhs_fhir"
    assert {"application/fhir+json", "application/fhir+xml"} <= adapter.media_types
    assert isinstance(parsed.entries[0], ClaimEntry)
    with pytest.raises(TooManyEntries):
        adapter.parse(bundle(patient(), patient("p2")), JSON_TYPE, max_entries=1)


def test_render_gives_a_batch_response_with_locations_only_for_stored_entries() -> None:
    submission = _stored_and_rejected()
    refused = Issue("error", "not-found", "Bundle.entry[2].resource.subject.reference", "no such Patient")
    outcomes = [
        EntryOutcome(0, EntryStatus.CREATED),
        EntryOutcome(1, EntryStatus.UNCHANGED),
        EntryOutcome(2, EntryStatus.REJECTED, (refused,)),
    ]

    rendered = NhsFhirAdapter().render(submission, outcomes)

    assert (rendered.status_code, rendered.media_type) == (200, "application/fhir+json")
    assert dict(rendered.headers) == {}
    get_fhir_model_class("Bundle").model_validate(rendered.body)
    assert rendered.body["resourceType"] == "Bundle" and rendered.body["type"] == "batch-response"
    responses = [entry["response"] for entry in rendered.body["entry"]]
    assert [response["status"] for response in responses] == ["201 Created", "200 OK", "422 Unprocessable Entity"]
    assert responses[0] == {"status": "201 Created", "location": "Patient/p1/_history/1"}
    assert responses[1] == {"status": "200 OK", "location": "Encounter/e1/_history/2"}
    assert "location" not in responses[2]
    assert responses[2]["outcome"]["resourceType"] == "OperationOutcome"
    assert responses[2]["outcome"]["issue"][0]["expression"] == [refused.location]


def test_render_gives_no_location_to_an_entry_the_gateway_refused() -> None:
    # The adapter accepted the claim, but the gateway did not store it (e.g. the child's record is erased).
    submission = _stored_and_rejected("transaction")
    refused = Issue("error", "forbidden", "Bundle.entry[0].resource", "not stored")
    outcomes = [EntryOutcome(0, EntryStatus.REJECTED, (refused,)), EntryOutcome(1, EntryStatus.CREATED),
                EntryOutcome(2, EntryStatus.REJECTED)]

    body = NhsFhirAdapter().render(submission, outcomes).body

    assert body["type"] == "transaction-response"
    responses = [entry["response"] for entry in body["entry"]]
    assert "location" not in responses[0] and responses[0]["status"] == "422 Unprocessable Entity"
    assert responses[1]["location"] == "Encounter/e1/_history/2"
    assert responses[2] == {"status": "422 Unprocessable Entity"}


def test_entry_location_is_the_stored_version_or_none() -> None:
    claim, record, rejected = _stored_and_rejected().entries

    assert entry_location(claim) == "Patient/p1/_history/1"
    assert entry_location(record) == "Encounter/e1/_history/2"
    assert entry_location(rejected) is None


def test_render_error_gives_an_operation_outcome() -> None:
    issue = Issue("error", "too-long", "Bundle.entry", "a push may carry at most 1 entries; split the Bundle")

    rendered = NhsFhirAdapter().render_error(413, [issue])
    empty = NhsFhirAdapter().render_error(500, [])

    assert (rendered.status_code, rendered.media_type) == (413, "application/fhir+json")
    get_fhir_model_class("OperationOutcome").model_validate(rendered.body)
    assert rendered.body["resourceType"] == "OperationOutcome"
    assert rendered.body["issue"] == [{"severity": "error", "code": "too-long", "diagnostics": issue.message,
                                       "expression": ["Bundle.entry"]}]
    assert empty.status_code == 500 and empty.body["issue"][0]["severity"] == "information"


def test_resource_response_is_201_with_a_location_when_created_and_200_when_unchanged() -> None:
    submission = parse_resource(json.dumps(patient("p5", meta={"versionId": "3"})).encode(), JSON_TYPE,
                                resource_type="Patient", resource_id="p5")

    created = resource_response(submission, EntryOutcome(0, EntryStatus.CREATED))
    unchanged = resource_response(submission, EntryOutcome(0, EntryStatus.UNCHANGED))

    assert (created.status_code, created.media_type) == (201, "application/fhir+json")
    assert dict(created.headers) == {"Location": "Patient/p5/_history/3"}
    assert created.body["resourceType"] == "OperationOutcome"
    assert created.body["issue"][0]["diagnostics"] == "Stored."
    assert unchanged.status_code == 200
    assert dict(unchanged.headers) == {"Location": "Patient/p5/_history/3"}
    assert "pushed before" in unchanged.body["issue"][0]["diagnostics"]
    for rendered in (created, unchanged):
        get_fhir_model_class("OperationOutcome").model_validate(rendered.body)


def test_resource_response_for_an_entry_without_a_version_has_no_location() -> None:
    submission = parse_resource(json.dumps(encounter("e5", subject="Practitioner/x")).encode(), JSON_TYPE,
                                resource_type="Encounter", resource_id="e5")

    rendered = resource_response(submission, EntryOutcome(0, EntryStatus.UNCHANGED))

    assert rendered.status_code == 200 and dict(rendered.headers) == {}


def test_describe_gives_a_capability_statement_naming_the_token_endpoint() -> None:
    token_endpoint = "https://gateway.test.example/oauth/token"

    statement = NhsFhirAdapter().describe(token_endpoint=token_endpoint)

    get_fhir_model_class("CapabilityStatement").model_validate(statement)
    assert statement["resourceType"] == "CapabilityStatement" and statement["fhirVersion"] == "4.0.1"
    (rest,) = statement["rest"]
    assert rest["mode"] == "server"
    assert token_endpoint in rest["security"]["description"]
    types = [resource["type"] for resource in rest["resource"]]
    assert types[:3] == ["Patient", "Consent", "Encounter"] and len(types) == len(set(types))
    assert {"Condition", "Observation", "Flag", "CareTeam", "RelatedPerson", "EpisodeOfCare", "Appointment",
            "Immunization", "AllergyIntolerance", "MedicationStatement", "MedicationRequest", "Procedure",
            "DocumentReference", "QuestionnaireResponse", "DiagnosticReport"} <= set(types)
    assert "Practitioner" not in types and "Organization" not in types  # refused: not about a child
    assert all(resource["documentation"] for resource in rest["resource"])
    by_type = {resource["type"]: resource for resource in rest["resource"]}
    interactions = {name: {i["code"] for i in resource["interaction"]} for name, resource in by_type.items()}
    assert interactions["Patient"] == interactions["Consent"] == {"update"}  # DELETE refused, and said why
    assert all(codes == {"update", "delete"} for name, codes in interactions.items() if name not in ("Patient", "Consent"))
    assert [op["name"] for op in by_type["Patient"]["operation"]] == ["person-info-query"]
    assert "conditional reference" in rest["documentation"] and "Prefer" in rest["documentation"]
    assert set(statement["format"]) >= {"application/fhir+json", "application/fhir+xml"}
    assert {interaction["code"] for interaction in rest["interaction"]} == {"transaction", "batch"}
    assert statement == capability_statement(token_endpoint=token_endpoint)


# --- the UK Core conformance examples (public test material, ../shared/conformance) ---------------

def _example(name: str) -> dict[str, Any]:
    model = get_fhir_model_class(name.split("-")[1]).model_validate_xml((CONFORMANCE / name).read_bytes())
    data: dict[str, Any] = model.model_dump(mode="json", exclude_none=True)
    return data


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

    entry = parse(xml_bundle.encode(), "application/fhir+xml").entries[0]

    if name in INVALID_NHS_NUMBER_EXAMPLES:
        issue = only_issue(entry)
        assert (issue.code, issue.location) == ("value", "Bundle.entry[0].resource.identifier[0].value")
    elif f'"{NHS_SYSTEM}"' in text:
        nhs_number = claim_of(entry).nhs_number
        assert nhs_number is not None and len(nhs_number) == 10
    else:
        assert claim_of(entry).nhs_number is None


def test_uk_core_encounter_parses_with_its_patient() -> None:
    the_patient = _example("UKCore-Patient-RichardSmith-Example.xml")
    the_encounter = _example("UKCore-Encounter-InpatientEncounter-Example.xml")

    parsed = parse(bundle(the_patient, the_encounter))

    claim, record = claim_of(parsed.entries[0]), record_of(parsed.entries[1])
    assert claim.nhs_number == "9912003888"
    assert record.subject_ref == claim.source_record_id
    assert record.category == "health.encounter"
    assert record.summary.startswith("Inpatient encounter")
    assert "encounter encounter" not in record.summary


def test_uk_core_read_batch_gives_clear_not_supported_issues() -> None:
    parsed = parse((CONFORMANCE / "UKCore-Bundle-Batch-Example.xml").read_bytes(), "application/fhir+xml")

    assert parsed.label == "batch" and not parsed.atomic
    assert parsed.entries and all(
        isinstance(e, RejectedEntry) and e.issues and e.issues[0].code == "not-supported"
        and e.issues[0].location.endswith(".request.method")
        for e in parsed.entries
    )


def test_uk_core_post_batch_of_observations_is_read() -> None:
    parsed = parse((CONFORMANCE / "UKCore-Bundle-BatchPOST-Example.xml").read_bytes(), "application/fhir+xml")

    records = [record_of(entry) for entry in parsed.entries]
    assert len(records) == 5 and {r.kind for r in records} == {"observation"}
    assert all(r.summary.startswith("Observation: Blood pressure; Systolic arterial pressure") for r in records)
    assert all(r.category == "health.observation" and r.occurred_at is not None for r in records)


def test_outcome_and_response_bundle_are_valid_fhir() -> None:
    issue = Issue("error", "not-found", "Bundle.entry[1].resource.subject.reference", "no such Patient")
    outcome = operation_outcome([issue])
    empty = operation_outcome([Issue("information", "informational", "", "Stored.")])
    submission = parse(bundle(patient(meta={"versionId": "1"}), encounter(subject="Practitioner/x"),
                              bundle_type="batch"))
    response = response_bundle(submission, [EntryOutcome(0, EntryStatus.CREATED),
                                            EntryOutcome(1, EntryStatus.REJECTED, (issue,))])
    unchanged = response_bundle(submission, [EntryOutcome(0, EntryStatus.UNCHANGED),
                                             EntryOutcome(1, EntryStatus.UNCHANGED)])
    for body in (outcome, empty, response, unchanged):
        get_fhir_model_class(body["resourceType"]).model_validate(body)

    assert outcome["issue"][0]["expression"] == [issue.location]
    assert "expression" not in empty["issue"][0]
    assert operation_outcome([])["issue"][0]["severity"] == "information"
    assert response["type"] == "batch-response"
    assert response["entry"][0]["response"] == {"status": "201 Created", "location": "Patient/p1/_history/1"}
    assert response["entry"][1]["response"]["outcome"]["resourceType"] == "OperationOutcome"
    assert copy.deepcopy(response) == response
    assert [e["response"]["status"] for e in unchanged["entry"]] == ["200 OK", "200 OK"]


def test_xml_bundle_holding_an_unknown_resource_is_refused() -> None:
    body = (b'<Bundle xmlns="http://hl7.org/fhir"><type value="batch"/><entry><resource>'
            b'<Horoscope><id value="h"/></Horoscope></resource></entry></Bundle>')

    with pytest.raises(AdapterError) as error:
        parse(body, "application/fhir+xml")

    assert error.value.issues[0].code in ("structure", "invalid")


def test_identifier_without_value_is_ignored() -> None:
    resource = patient()
    resource["identifier"].append({"system": "https://local.example/empty"})

    claim = claim_of(parse(bundle(resource)).entries[0])

    assert claim.other_identifiers == (("https://local.example/mrn", "MRN1"),)


# --- hostile input: nesting, leap seconds, DOCTYPEs --------------------------------------------

XML_TYPE = "application/fhir+xml"
LEAP_SECOND = "2016-12-31T23:59:60Z"
XXE_DOCTYPE = '<!DOCTYPE Bundle [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
T = TypeVar("T")


def _parse_push(body: bytes, content_type: str) -> Submission:
    """The one place these tests call the adapter."""
    return parse_bundle(body, content_type, max_entries=MAX_ENTRIES)


def _whole_payload_issue(body: bytes, content_type: str) -> Issue:
    with pytest.raises(AdapterError) as error:
        _parse_push(body, content_type)
    assert len(error.value.issues) == 1, error.value.issues
    return error.value.issues[0]


def _with_frames_in_use(frames: int, call: Callable[[], T]) -> T:
    """Run `call` with `frames` more Python frames on the stack, as a deeper server stack would have."""
    return call() if frames <= 0 else _with_frames_in_use(frames - 1, call)


def _assigner_chain(links: int) -> bytes:
    """A Bundle whose Patient.managingOrganization nests Reference.identifier.assigner `links` times.

    This is the FHIR shape that costs fhir.resources the most Python frames per level; the
    innermost object sits at JSON depth 5 + 2 * links.
    """
    chain = '{"identifier": {"assigner": ' * links + '{"display": "x"}' + "}}" * links
    return (
        '{"resourceType": "Bundle", "type": "batch", "entry": [{"request": {"method": "PUT", "url": "Patient/p1"}, '
        '"resource": {"resourceType": "Patient", "id": "p1", "managingOrganization": ' + chain + "}}]}"
    ).encode()


def _uk_core_patient_xml_bundle(prolog: str = "") -> str:
    """The batch of test_uk_core_patients_parse around UK Core's RichardSmith Patient, after `prolog`."""
    text = (CONFORMANCE / "UKCore-Patient-RichardSmith-Example.xml").read_text()
    return (
        prolog
        + '<Bundle xmlns="http://hl7.org/fhir"><type value="batch"/><entry><resource>'
        + text[text.index("<Patient"):]
        + '</resource><request><method value="POST"/><url value="Patient"/></request></entry></Bundle>'
    )


def test_hundred_thousand_nested_json_arrays_are_a_structure_issue() -> None:
    issue = _whole_payload_issue(b"[" * 100_000 + b"]" * 100_000, JSON_TYPE)

    assert (issue.severity, issue.code, issue.location) == ("error", "structure", "")
    assert "the JSON nests too deeply (more than" in issue.message


@pytest.mark.parametrize(
    "entry_resource",
    [
        # 900 levels of objects under a key FHIR does not know
        '{"resourceType": "Patient", "id": "p1", "deep": ' + '{"a": ' * 900 + "{}" + "}" * 900 + "}",
        # 900 levels of objects where FHIR does recurse (Reference.identifier.assigner)
        '{"resourceType": "Patient", "id": "p1", "managingOrganization": '
        + '{"identifier": {"assigner": ' * 450 + "{}" + "}}" * 450 + "}",
        # 450 nested extensions (900 levels of objects and arrays)
        '{"resourceType": "Patient", "id": "p1", "extension": ['
        + '{"url": "http://x", "extension": [' * 450 + '{"url": "http://x", "valueString": "v"}' + "]}" * 450 + "]}",
    ],
    ids=["unknown-key", "assigner-chain", "extensions"],
)
def test_deep_objects_inside_a_bundle_entry_are_refused_cleanly(entry_resource: str) -> None:
    body = ('{"resourceType": "Bundle", "type": "transaction", "entry": [{"resource": ' + entry_resource
            + ', "request": {"method": "PUT", "url": "Patient/p1"}}]}').encode()
    json.loads(body)  # valid JSON, shallow enough for the parser itself

    issue = _whole_payload_issue(body, JSON_TYPE)

    assert (issue.code, issue.location) == ("structure", "")
    assert "nests too deeply" in issue.message


def test_the_deepest_accepted_bundle_validates_with_stack_to_spare() -> None:
    # 29 links reach JSON depth 63, inside the limit; validating them must still leave room for
    # a deeper server stack (200 frames more than pytest's own) below the recursion limit.
    parsed = _with_frames_in_use(200, lambda: _parse_push(_assigner_chain(29), JSON_TYPE))
    issue = _whole_payload_issue(_assigner_chain(30), JSON_TYPE)

    assert len(parsed.entries) == 1
    assert "nests too deeply" in issue.message


@pytest.mark.parametrize("levels", [40, 100, 300])
def test_deeply_nested_xml_is_refused_cleanly(levels: int) -> None:
    # 300 is beyond libxml2's own limit (256), 100 beyond the adapter's; 40 passes as XML but
    # is deeper than the limit once read as JSON (each extension is an array and an object).
    body = ('<Bundle xmlns="http://hl7.org/fhir"><type value="batch"/><entry><resource><Patient><id value="p1"/>'
            + '<extension url="http://x">' * levels + '<valueString value="v"/>' + "</extension>" * levels
            + '</Patient></resource><request><method value="PUT"/><url value="Patient/p1"/></request></entry></Bundle>')

    issue = _whole_payload_issue(body.encode(), XML_TYPE)

    assert (issue.code, issue.location) == ("structure", "")
    assert "the XML nests too deeply" in issue.message


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (LEAP_SECOND, datetime(2016, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)),
        ("2016-12-31T23:59:60.5+01:00",
         datetime(2016, 12, 31, 23, 59, 59, 999999, tzinfo=timezone(timedelta(hours=1)))),
        ("2015-06-30T23:59:60-05:00",
         datetime(2015, 6, 30, 23, 59, 59, 999999, tzinfo=timezone(timedelta(hours=-5)))),
    ],
)
def test_leap_second_is_the_last_microsecond_of_its_minute(value: str, expected: datetime) -> None:
    parsed = _datetime(value)

    assert parsed == expected
    assert parsed is not None and parsed.utcoffset() == expected.utcoffset()  # same offset, same day


def test_bundle_with_a_leap_second_encounter_start_is_accepted() -> None:
    from tests.factories import nhs_number

    leap = encounter(period={"start": LEAP_SECOND, "end": "2017-01-01T02:00:00Z"})
    # fhir.resources itself accepts second 60, as FHIR's dateTime pattern does.
    get_fhir_model_class("Encounter").model_validate(leap)

    parsed = _parse_push(bundle(patient(nhs=nhs_number()), leap), JSON_TYPE)

    assert not any(isinstance(entry, RejectedEntry) for entry in parsed.entries)
    records = [entry.record for entry in parsed.entries if isinstance(entry, RecordEntry)]
    assert [record.occurred_at for record in records] == [datetime(2016, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)]
    assert records[0].payload["period"]["start"] == LEAP_SECOND  # the source's own value is kept as sent


@pytest.mark.parametrize(
    "doctype",
    [XXE_DOCTYPE, "<!DOCTYPE Bundle>", '<!DOCTYPE Bundle SYSTEM "http://example.invalid/fhir.dtd">',
     "<!doctype Bundle>"],
    ids=["external-entity", "bare", "external-dtd", "lower-case"],
)
def test_xml_with_any_doctype_is_refused_before_parsing(doctype: str) -> None:
    issue = _whole_payload_issue(_uk_core_patient_xml_bundle(doctype).encode(), XML_TYPE)

    assert (issue.severity, issue.code, issue.location) == ("error", "security", "")
    assert issue.message == "a DOCTYPE declaration is not accepted in a FHIR XML push"


UTF16_FORMS: list[tuple[str, Callable[[str], bytes]]] = [
    ("utf-16 with BOM (LE)", lambda text: b"\xff\xfe" + text.encode("utf-16-le")),
    ("utf-16 with BOM (BE)", lambda text: b"\xfe\xff" + text.encode("utf-16-be")),
    ("utf-16-le without BOM", lambda text: ('<?xml version="1.0" encoding="UTF-16"?>' + text).encode("utf-16-le")),
    ("utf-16-be without BOM", lambda text: ('<?xml version="1.0" encoding="UTF-16"?>' + text).encode("utf-16-be")),
]


@pytest.mark.parametrize(("form", "encode"), UTF16_FORMS, ids=[form for form, _ in UTF16_FORMS])
def test_utf16_xml_with_a_doctype_is_refused_and_without_one_is_read(form: str, encode: Callable[[str], bytes]) -> None:
    issue = _whole_payload_issue(encode(_uk_core_patient_xml_bundle(XXE_DOCTYPE)), XML_TYPE)
    parsed = _parse_push(encode(_uk_core_patient_xml_bundle()), XML_TYPE)

    assert issue.code == "security", form
    entry = parsed.entries[0]
    assert isinstance(entry, ClaimEntry) and entry.claim.nhs_number == "9912003888", form


def test_xml_declaring_an_encoding_that_could_hide_a_doctype_is_refused() -> None:
    # In UTF-7 "<!" can be written "+ADwAIQ-", which libxml2 honours: no byte scan would see it.
    hidden = (b'<?xml version="1.0" encoding="UTF-7"?>+ADwAIQ-DOCTYPE Bundle +AFsAPAAh-ENTITY x SYSTEM '
              b'+ACI-file:///etc/passwd+ACIAPgBdAD4-' + _uk_core_patient_xml_bundle().encode())
    assert "<!DOCTYPE Bundle [<!ENTITY" in hidden.decode("utf-7") and b"<!" not in hidden

    issue = _whole_payload_issue(hidden, XML_TYPE)

    assert (issue.code, issue.location) == ("not-supported", "")
    assert "UTF-8" in issue.message


def test_doctype_is_refused_after_parsing_too(monkeypatch: pytest.MonkeyPatch) -> None:
    # Belt and braces: were the byte scan ever bypassed, the parsed document's DOCTYPE is refused.
    monkeypatch.setattr(nhs_fhir_module, "_refuse_doctype", lambda body: None)

    issue = _whole_payload_issue(_uk_core_patient_xml_bundle("<!DOCTYPE Bundle>").encode(), XML_TYPE)

    assert (issue.code, issue.location) == ("security", "")


def test_ordinary_xml_bundle_without_doctype_is_still_accepted() -> None:
    with_declaration = _uk_core_patient_xml_bundle('<?xml version="1.0" encoding="UTF-8"?>\n<!-- a comment -->\n')

    for body in (_uk_core_patient_xml_bundle().encode(), b"\xef\xbb\xbf" + with_declaration.encode()):
        entry = _parse_push(body, XML_TYPE).entries[0]
        assert isinstance(entry, ClaimEntry) and entry.claim.nhs_number == "9912003888"


# --- what the sections above leave uncovered: non-XML bytes, odd resourceTypes, deep models ------

def test_xml_in_an_encoding_the_scan_does_not_cover_is_not_well_formed() -> None:
    # EBCDIC: no "<" where the scan looks, so libxml2 (which some builds let autodetect it) never sees it.
    ebcdic = _uk_core_patient_xml_bundle('<?xml version="1.0"?>').encode("cp500")

    issue = _whole_payload_issue(ebcdic, XML_TYPE)

    assert (issue.code, issue.location, issue.message) == ("structure", "", "the body is not well-formed XML")


@pytest.mark.parametrize("resource_type", [["Patient"], 5, None, {"name": "Patient"}],
                         ids=["list", "number", "null", "object"])
def test_a_resource_type_that_is_not_a_name_is_a_structure_issue(resource_type: object) -> None:
    body = json.dumps({"resourceType": "Bundle", "type": "batch", "entry": [
        {"resource": {"resourceType": resource_type, "id": "x"}, "request": {"method": "PUT", "url": "Patient/x"}},
    ]}).encode()

    issue = _whole_payload_issue(body, JSON_TYPE)

    assert (issue.code, issue.location) == ("structure", "Bundle")
    assert "resourceType" in issue.message


def test_recursion_while_reading_xml_into_models_is_a_nesting_issue(monkeypatch: pytest.MonkeyPatch) -> None:
    # The nesting limit should stop this first; were a shape ever to cost more frames, it is still clean.
    class RecursingModel:
        @staticmethod
        def model_validate_xml(body: bytes, xmlparser: object) -> object:
            raise RecursionError

    monkeypatch.setattr(nhs_fhir_module, "get_fhir_model_class", lambda name: RecursingModel)

    issue = _whole_payload_issue(_uk_core_patient_xml_bundle().encode(), XML_TYPE)

    assert (issue.code, issue.location) == ("structure", "")
    assert "the XML nests too deeply" in issue.message


@pytest.mark.parametrize("start", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-12:00"])
def test_a_start_outside_the_years_1_to_9999_in_utc_is_named(start: str) -> None:
    # Valid FHIR (and accepted by fhir.resources), but no Python datetime can hold it in UTC.
    parsed = _parse_push(bundle(patient(), encounter(period={"start": start})), JSON_TYPE)

    assert isinstance(parsed.entries[0], ClaimEntry)
    issue = only_issue(parsed.entries[1])
    assert (issue.code, issue.location) == ("value", "Bundle.entry[1].resource.period.start")
    assert "years 1 and 9999" in issue.message and start not in issue.message


def test_gender_identity_history_is_a_label_of_the_gateways_system_and_gdis_stays_genetic() -> None:
    record = marked_record(
        security=[
            {"system": GATEWAY_CODE_SYSTEM, "code": GENDER_IDENTITY_HISTORY_CODE},
            {"system": ACT_CODE, "code": "GDIS"},
        ],
        tag=[{"system": GATEWAY_CODE_SYSTEM, "code": GENDER_IDENTITY_HISTORY_CODE}],  # a tag is never a label
    )

    assert record.security_labels == frozenset({GENDER_IDENTITY_HISTORY_CODE, "GDIS"})
    assert record.detrimental is False
    statement = capability_statement(token_endpoint="https://gateway.test.example/oauth/token")
    documentation = {resource["type"]: resource.get("documentation", "") for resource in statement["rest"][0]["resource"]}
    assert GENDER_IDENTITY_HISTORY_CODE in documentation["Encounter"] and "genetic disease" in documentation["Encounter"]


def test_the_adapter_and_the_policy_engine_name_gender_identity_history_alike() -> None:
    from policies.engine import GENDER_IDENTITY_HISTORY, GENDER_IDENTITY_LABELS

    assert GENDER_IDENTITY_HISTORY_CODE == GENDER_IDENTITY_HISTORY and GENDER_IDENTITY_HISTORY in GENDER_IDENTITY_LABELS

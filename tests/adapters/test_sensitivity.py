"""The shipped sensitivity code list labels what the source did not, and the policy withholds by the labels."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from adapters import parse_bundle
from adapters.sensitivity import DEFAULT_CLASSIFIER, SNOMED, Classifier
from adapters.types import RecordEntry
from policies import (
    Agency,
    ConsentState,
    DecisionKind,
    ItemFacts,
    Purpose,
    RecordKind,
    Relationship,
    Viewer,
    decide,
    default_policy,
)

ICD10 = "http://hl7.org/fhir/sid/icd-10"
POLICY = default_policy()
MEMBER = Viewer(Agency.POLICE, "police_officer", Relationship.ALLOCATED_TEAM)


def encounter_bundle(**coded: Any) -> bytes:
    patient = {
        "resourceType": "Patient",
        "id": "p1",
        "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9990000018"}],
        "name": [{"family": "Example", "given": ["Sam"]}],
        "birthDate": "2015-03-01",
    }
    encounter = {
        "resourceType": "Encounter",
        "id": "e1",
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "subject": {"reference": "Patient/p1"},
        "period": {"start": "2026-10-01T10:00:00Z"},
        **coded,
    }
    entries = [
        {"fullUrl": f"urn:uuid:{uuid.uuid4()}", "resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}
        for r in (patient, encounter)
    ]
    return json.dumps({"resourceType": "Bundle", "type": "transaction", "entry": entries}).encode()


def labels_of(body: bytes) -> frozenset[str]:
    submission = parse_bundle(body, "application/fhir+json", max_entries=10)
    [record] = [entry.record for entry in submission.entries if isinstance(entry, RecordEntry)]
    return record.security_labels


def decision_for(labels: frozenset[str]) -> DecisionKind:
    facts = ItemFacts("i1", Agency.HEALTH, RecordKind.ENCOUNTER, "health.encounter", security_labels=labels)
    return decide(POLICY, viewer=MEMBER, purpose=Purpose.CHILD_PROTECTION, item=facts, consent=ConsentState()).kind


@pytest.mark.parametrize(
    ("coded", "label"),
    [
        ({"reasonCode": [{"coding": [{"system": SNOMED, "code": "86406008"}]}]}, "HIV"),
        ({"reasonCode": [{"coding": [{"system": ICD10, "code": "B20.1"}]}]}, "HIV"),
        ({"reasonCode": [{"coding": [{"system": ICD10, "code": "A56.0"}]}]}, "STD"),
        ({"serviceType": {"coding": [{"system": SNOMED, "code": "394808002"}]}}, "SEX"),
        ({"type": [{"coding": [{"system": SNOMED, "code": "386639001"}]}]}, "SEX"),
        ({"reasonCode": [{"coding": [{"system": ICD10, "code": "N97.9"}]}]}, "SEX"),
        ({"reasonCode": [{"coding": [{"system": ICD10, "code": "F64.0"}]}]}, "gender-identity-history"),
        ({"reasonCode": [{"coding": [{"system": SNOMED, "code": "93461009"}]}]}, "gender-identity-history"),
        ({"reasonCode": [{"coding": [{"system": ICD10, "code": "F32.1"}]}]}, "PSY"),
        ({"serviceType": {"coding": [{"system": SNOMED, "code": "394588006"}]}}, "PSY"),
        ({"reasonCode": [{"coding": [{"system": ICD10, "code": "F10.2"}]}]}, "ETH"),
    ],
)
def test_a_coded_encounter_is_labelled_and_withheld_by_the_policy(coded: dict[str, Any], label: str) -> None:
    labels = labels_of(encounter_bundle(**coded))

    assert label in labels
    assert decision_for(labels) is DecisionKind.INDICATE


def test_an_uncoded_or_ordinary_encounter_gets_no_label_and_is_shown() -> None:
    ordinary = {"type": [{"coding": [{"system": SNOMED, "code": "185389009"}]}]}  # follow-up visit

    for body in (encounter_bundle(), encounter_bundle(**ordinary)):
        assert labels_of(body) == frozenset()
        assert decision_for(labels_of(body)) is DecisionKind.DISCLOSE


def test_the_sources_own_labels_are_kept_beside_the_classifiers() -> None:
    body = encounter_bundle(
        meta={"security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "ETH"}]},
        reasonCode=[{"coding": [{"system": ICD10, "code": "F32"}]}],
    )

    assert labels_of(body) >= {"ETH", "PSY"}


def test_codes_match_by_system_exact_snomed_and_icd10_prefix() -> None:
    classifier = Classifier.from_mapping({"version": "t", "labels": {"PSY": {"snomed": ["1"], "icd10_prefixes": ["F3"]}}})

    assert classifier.labels_for([{"system": SNOMED, "code": "1"}]) == {"PSY"}
    assert classifier.labels_for([{"system": SNOMED, "code": "11"}]) == frozenset()
    assert classifier.labels_for([{"system": ICD10, "code": "f32.1"}]) == {"PSY"}
    assert classifier.labels_for([{"system": ICD10, "code": "F40"}]) == frozenset()
    # An ICD-10 code under another system, or no code at all, labels nothing.
    assert classifier.labels_for([{"system": "http://example.org/local", "code": "F32"}, {"system": ICD10}]) == frozenset()
    assert DEFAULT_CLASSIFIER.version == "2026.1"

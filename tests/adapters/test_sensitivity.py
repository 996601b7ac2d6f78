"""The shipped sensitivity code list labels what the source did not, and the policy withholds by the labels."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from adapters import parse_bundle
from adapters.sensitivity import DEFAULT_CLASSIFIER, SNOMED, Classifier, load_classifier, shipped_classifier
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


# --- the code list's shape, the `codes` element, and a partnership's extension ------------------------

LOCAL = "https://example.org/CodeSystem/local-service"


@pytest.mark.parametrize(
    ("data", "element"),
    [
        ({}, "version"),
        ({"version": "", "labels": {}}, "version"),
        ({"version": 2026, "labels": {}}, "version"),
        (["not", "an", "object"], "version"),
        ({"version": "t"}, "labels"),
        ({"version": "t", "labels": ["PSY"]}, "labels"),
        ({"version": "t", "labels": {"PSY": ["74732009"]}}, "labels.PSY"),
        ({"version": "t", "labels": {"PSY": {"snomed": "74732009"}}}, "labels.PSY.snomed"),
        ({"version": "t", "labels": {"PSY": {"snomed": ["74732009", " "]}}}, "labels.PSY.snomed"),
        ({"version": "t", "labels": {"PSY": {"snomed": None}}}, "labels.PSY.snomed"),
        ({"version": "t", "labels": {"PSY": {"icd10_prefixes": ["F", 32]}}}, "labels.PSY.icd10_prefixes"),
        ({"version": "t", "labels": {"PSY": {"codes": [{"system": LOCAL}]}}}, "labels.PSY.codes[0]"),
        ({"version": "t", "labels": {"PSY": {"codes": [{"system": LOCAL, "code": "1"}, {"system": "", "code": "2"}]}}},
         "labels.PSY.codes[1]"),
        ({"version": "t", "labels": {"PSY": {"codes": [{"system": LOCAL, "code": 1}]}}}, "labels.PSY.codes[0]"),
        ({"version": "t", "labels": {"PSY": {"codes": ["MH-01"]}}}, "labels.PSY.codes[0]"),
    ],
)
def test_a_code_list_of_another_shape_is_refused_naming_the_element(data: Any, element: str) -> None:
    with pytest.raises(ValueError) as raised:
        Classifier.from_mapping(data)

    assert str(raised.value).startswith(f"{element}: ")


def test_codes_of_another_system_match_exactly() -> None:
    classifier = Classifier.from_mapping(
        {"version": "t", "labels": {"PSY": {"codes": [{"system": LOCAL, "code": "MH-01"}]},
                                    "SEX": {"codes": [{"system": LOCAL, "code": "MH-01"}, {"system": LOCAL, "code": "SH"}]}}}
    )

    assert classifier.labels_for([{"system": LOCAL, "code": "MH-01"}]) == {"PSY", "SEX"}
    assert classifier.labels_for([{"system": LOCAL, "code": "SH"}]) == {"SEX"}
    # Exact: no prefix, no case folding, no other system, no code without its system.
    for coding in ({"system": LOCAL, "code": "MH-0"}, {"system": LOCAL, "code": "mh-01"},
                   {"system": LOCAL, "code": "MH-01 "}, {"system": LOCAL + "/v2", "code": "MH-01"},
                   {"code": "MH-01"}, {"system": LOCAL}):
        assert classifier.labels_for([coding]) == frozenset(), coding
    assert classifier.labels == {"PSY", "SEX"}


def test_a_snomed_code_under_codes_is_not_silently_ignored() -> None:
    data = {"version": "t", "labels": {"PSY": {"codes": [{"system": SNOMED, "code": "191736004"}]}}}

    try:
        classifier = Classifier.from_mapping(data)
    except ValueError:
        return  # refused: the partnership is told, which is as good as matching
    assert classifier.labels_for([{"system": SNOMED, "code": "191736004"}]) == {"PSY"}


def test_the_labels_a_classifier_can_give() -> None:
    classifier = Classifier.from_mapping(
        {"version": "t", "labels": {"HIV": {"snomed": ["86406008"]}, "ETH": {"icd10_prefixes": ["F10"]},
                                    "SDV": {"codes": [{"system": LOCAL, "code": "DV"}]}, "V": {}}}
    )

    # A label with no codes gives nothing, so it is not among them.
    assert classifier.labels == {"HIV", "ETH", "SDV"}
    assert DEFAULT_CLASSIFIER.labels == {"HIV", "STD", "SEX", "gender-identity-history", "PSY", "ETH"}


def test_an_extension_adds_labels_and_keeps_the_shipped_ones() -> None:
    depression = "35489007"  # PSY on the shipped list
    assert DEFAULT_CLASSIFIER.labels_for([{"system": SNOMED, "code": depression}]) == {"PSY"}
    extension = Classifier.from_mapping({
        "version": "local-3",
        "labels": {
            "SDV": {"snomed": [depression, "95930005"], "icd10_prefixes": ["F32", "T74"],
                    "codes": [{"system": LOCAL, "code": "DV"}]},
            "HIV": {"icd10_prefixes": ["R75"]},
        },
    })

    extended = DEFAULT_CLASSIFIER.extended_with(extension)

    assert extended.version == "2026.1+local-3"
    assert extended.labels_for([{"system": SNOMED, "code": depression}]) == {"PSY", "SDV"}
    assert extended.labels_for([{"system": SNOMED, "code": "95930005"}]) == {"SDV"}
    assert extended.labels_for([{"system": ICD10, "code": "F32.1"}]) == {"PSY", "SDV"}
    assert extended.labels_for([{"system": ICD10, "code": "R75"}]) == {"HIV"}
    assert extended.labels_for([{"system": ICD10, "code": "B20"}]) == {"HIV"}
    assert extended.labels_for([{"system": LOCAL, "code": "DV"}]) == {"SDV"}
    assert extended.labels == DEFAULT_CLASSIFIER.labels | {"SDV"}
    # Every shipped code still gives what it gave.
    for code, labels in DEFAULT_CLASSIFIER.by_snomed.items():
        assert extended.by_snomed[code] >= labels
    for prefix, labels in DEFAULT_CLASSIFIER.by_icd10_prefix.items():
        assert extended.by_icd10_prefix[prefix] >= labels
    # Neither list is changed.
    assert DEFAULT_CLASSIFIER.labels_for([{"system": SNOMED, "code": depression}]) == {"PSY"}
    assert extension.labels_for([{"system": SNOMED, "code": depression}]) == {"SDV"}


def test_without_an_extension_the_shipped_list_is_loaded() -> None:
    loaded = load_classifier(None)

    assert loaded == DEFAULT_CLASSIFIER == shipped_classifier()
    assert loaded.version == "2026.1"


def test_a_partnerships_file_extends_the_shipped_list(tmp_path: Path) -> None:
    path = tmp_path / "codes.json"
    path.write_text(json.dumps({"version": "p-1", "labels": {"PSY": {"codes": [{"system": LOCAL, "code": "CAMHS"}]}}}))

    loaded = load_classifier(path)

    assert loaded.version == "2026.1+p-1"
    assert loaded.labels_for([{"system": LOCAL, "code": "CAMHS"}]) == {"PSY"}
    assert loaded.labels_for([{"system": SNOMED, "code": "86406008"}]) == {"HIV"}


@pytest.mark.parametrize(
    ("content", "said"),
    [
        (b"{not json", "Expecting property name"),
        (b"\xff\xfe\x00not utf-8", "codec"),
        (json.dumps({"version": "p", "labels": {"PSY": {"snomed": [1]}}}).encode(), "labels.PSY.snomed"),
        (json.dumps([]).encode(), "version"),
    ],
)
def test_a_file_that_is_not_a_code_list_is_refused_naming_it(tmp_path: Path, content: bytes, said: str) -> None:
    path = tmp_path / "partnership-codes.json"
    path.write_bytes(content)

    with pytest.raises(ValueError) as raised:
        load_classifier(path)

    assert str(raised.value).startswith(f"{path}: not a sensitivity code list: ")
    assert said in str(raised.value)


def test_a_missing_file_is_refused_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "missing.json"

    with pytest.raises(ValueError, match="missing.json: not a sensitivity code list"):
        load_classifier(path)

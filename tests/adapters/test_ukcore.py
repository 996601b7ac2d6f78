"""The UK Core readers: what each resource about a child means, on NHS England's examples and synthetic ones."""

from __future__ import annotations

import copy
import json
from datetime import date
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class

from adapters import InvolvedPerson, Issue, RecordEntry, RejectedEntry, Submission, parse_bundle
from adapters import nhs_fhir, ukcore
from adapters.types import HealthAlert, InboundRecord
from adapters.ukcore import ALERT_SYSTEM, AlertCode, Reading

CONFORMANCE = Path(__file__).resolve().parents[2].parent / "shared" / "conformance" / "ukcore-r4-examples"
SNOMED = "http://snomed.info/sct"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
NHS_SYSTEM = "https://fhir.nhs.uk/Id/nhs-number"
VALID_NHS = "9434765919"
CHILD = {"reference": "Patient/p1"}
# Written where only free text may carry it: no summary may repeat it.
SECRET = "ZZ-FREE-TEXT-ONLY-ZZ"


def example(name: str) -> dict[str, Any]:
    """Load one of NHS England's UK Core R4 examples as the JSON a source would send."""
    model = get_fhir_model_class(name.split("-")[1]).model_validate_xml((CONFORMANCE / name).read_bytes())
    data: dict[str, Any] = model.model_dump(mode="json", exclude_none=True)
    return data


def read(resource: dict[str, Any]) -> Reading:
    """Read a resource that must be read."""
    reading = ukcore.read(resource)
    assert reading is not None, resource
    return reading


def concept(code: str, display: str | None = None, system: str = SNOMED, text: str | None = None) -> dict[str, Any]:
    coding: dict[str, Any] = {"system": system, "code": code}
    if display is not None:
        coding["display"] = display
    result: dict[str, Any] = {"coding": [coding]}
    if text is not None:
        result["text"] = text
    return result


# --- Encounter ------------------------------------------------------------------------------------


def test_inpatient_encounter_example() -> None:
    reading = read(example("UKCore-Encounter-InpatientEncounter-Example.xml"))

    assert (reading.kind, reading.category) == ("encounter", "health.encounter")
    # The v3 display "inpatient encounter" gives "Inpatient encounter", not "Inpatient encounter encounter".
    assert reading.summary.startswith(
        "Inpatient encounter: Seen in hospital ward; reason General treatment; "
        "discharged: Usual place of residence unless listed below"
    )
    assert reading.subject == {"reference": "Patient/UKCore-Patient-RichardSmith-Example"}
    assert reading.subject_element == "subject"
    assert (reading.occurred, reading.occurred_element) == ("2019-12-10T13:00:00Z", "period.start")
    assert not reading.emergency and not reading.retracted and reading.payload is None
    assert {"code": "185212007", "system": SNOMED, "display": "Seen in hospital ward"} in reading.codings


def test_an_emergency_class_encounter_is_urgent_care() -> None:
    reading = read({
        "resourceType": "Encounter", "status": "finished", "subject": CHILD,
        "class": {"system": ACT_CODE, "code": "EMER", "display": "emergency"},
        "type": [concept("4525004", "Emergency department patient visit", text=SECRET)],
        "serviceProvider": {"display": "Synthetic Trust"},
        "period": {"start": "2026-10-01T14:00:00+01:00"},
    })

    assert reading.emergency and reading.category == "health.urgent_care"
    assert reading.summary == "Emergency encounter: Emergency department patient visit; at Synthetic Trust"
    assert reading.occurred == "2026-10-01T14:00:00+01:00"


@pytest.mark.parametrize("code", sorted(ukcore.EMERGENCY_TYPES))
def test_an_emergency_type_makes_an_ambulatory_encounter_urgent_care(code: str) -> None:
    reading = read({
        "resourceType": "Encounter", "status": "finished", "subject": CHILD,
        "class": {"system": ACT_CODE, "code": "AMB", "display": "ambulatory"}, "type": [concept(code, "A&E")],
    })

    assert reading.emergency and reading.category == "health.urgent_care"
    assert reading.summary == "Ambulatory encounter: A&E"


def test_an_ordinary_encounter_is_not_an_emergency() -> None:
    reading = read({
        "resourceType": "Encounter", "status": "finished", "subject": CHILD,
        "class": {"system": ACT_CODE, "code": "AMB"}, "type": [concept("185389009", "Follow-up visit")],
        "reasonCode": [concept("7922000", "General treatment")],
    })

    assert not reading.emergency and reading.category == "health.encounter"
    assert reading.summary == "AMB encounter: Follow-up visit; reason General treatment"
    assert (reading.occurred, reading.occurred_element) == (None, "period.start")


# --- Condition ------------------------------------------------------------------------------------


def test_condition_example() -> None:
    reading = read(example("UKCore-Condition-BleedingFromEar-Example.xml"))

    assert (reading.kind, reading.category) == ("condition", "health.condition")
    assert reading.summary == "Condition: Bleeding from ear; active"
    assert reading.subject_element == "subject"
    assert (reading.occurred, reading.occurred_element) == (None, "onsetDateTime")
    assert {c["code"] for c in reading.codings} == {"26322001", "encounter-diagnosis"}
    assert not reading.retracted


def test_condition_dates_fall_back_to_onset_period_then_recorded_date() -> None:
    base = {"resourceType": "Condition", "subject": CHILD, "code": concept("35489007", "Depressive disorder")}

    assert read({**base, "onsetPeriod": {"start": "2025-02-01"}, "recordedDate": "2025-03-01"}).occurred_element == (
        "onsetPeriod.start"
    )
    late = read({**base, "recordedDate": "2025-03-01"})
    assert (late.occurred, late.occurred_element) == ("2025-03-01", "recordedDate")


def test_an_uncoded_condition_says_so_and_a_condition_entered_in_error_is_retracted() -> None:
    reading = read({
        "resourceType": "Condition", "subject": CHILD, "code": {"text": SECRET},
        "verificationStatus": concept("entered-in-error", system="http://terminology.hl7.org/CodeSystem/condition-ver-status"),
    })

    assert reading.summary == "Condition: not coded"
    assert reading.retracted


# --- Observation ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "summary", "occurred"),
    [
        ("UKCore-Observation-VitalSigns-BodyWeight-Example.xml", "Observation: Body weight; 90 kilogram", "2023-08-10"),
        ("UKCore-Observation-VitalSigns-BodyHeight-Example.xml", "Observation: Body height measure; 1.64 meter", "2023-08-10"),
        (
            "UKCore-Observation-VitalSigns-BloodPressure-Example.xml",
            "Observation: Blood pressure; Systolic arterial pressure 142 millimeter of mercury, "
            "Diastolic arterial pressure 94 millimeter of mercury",
            "2023-08-10",
        ),
        (
            "UKCore-Observation-PatientConsciousness-Example.xml",
            "Observation: Alert Confusion Voice Pain Unresponsive scale score; Responds to voice",
            "2023-08-10",
        ),
        ("UKCore-Observation-Lab-Albumin-Example.xml", "Observation: Serum albumin level; 47 g/L", "2022-03-08T14:23:00Z"),
    ],
)
def test_observation_examples(name: str, summary: str, occurred: str) -> None:
    reading = read(example(name))

    assert (reading.kind, reading.category) == ("observation", "health.observation")
    assert reading.summary == summary
    assert reading.occurred == occurred
    assert reading.subject is not None and reading.subject_element == "subject"


def test_an_observation_dated_only_by_issued_says_so() -> None:
    reading = read(example("UKCore-Observation-Lab-Albumin-Example.xml"))

    assert reading.occurred_element == "issued"
    assert reading.subject == {"reference": "urn:uuid:ab87a3f8-1d37-44a9-804e-5e962598a6e4", "display": "WELSH, Joel"}


def observation(**extra: Any) -> dict[str, Any]:
    return {"resourceType": "Observation", "status": "final", "subject": CHILD,
            "code": concept("229819007", "Tobacco use and exposure", text=SECRET), **extra}


def test_an_observation_with_a_quantity() -> None:
    reading = read(observation(valueQuantity={"value": 0, "unit": "per day", "code": "/d"},
                               effectiveDateTime="2026-01-05T09:00:00Z"))

    # Zero is a value, not an absent one.
    assert reading.summary == "Observation: Tobacco use and exposure; 0 per day"
    assert (reading.occurred, reading.occurred_element) == ("2026-01-05T09:00:00Z", "effectiveDateTime")


def test_an_observation_with_a_quantity_coded_only_by_ucum() -> None:
    reading = read(observation(valueQuantity={"value": 12.5, "system": "http://unitsofmeasure.org", "code": "kg"}))

    assert reading.summary == "Observation: Tobacco use and exposure; 12.5 kg"


def test_an_observation_with_a_coded_answer_is_classified_by_it() -> None:
    answer = concept("77176002", "Smoker", text=SECRET)
    reading = read(observation(valueCodeableConcept=answer, effectivePeriod={"start": "2026-01-01"}))

    assert reading.summary == "Observation: Tobacco use and exposure; Smoker"
    assert reading.occurred_element == "effectivePeriod.start"
    assert {"system": SNOMED, "code": "77176002", "display": "Smoker"} in reading.codings


@pytest.mark.parametrize(("value", "said"), [(True, "yes"), (False, "no")])
def test_an_observation_with_a_boolean(value: bool, said: str) -> None:
    assert read(observation(valueBoolean=value)).summary == f"Observation: Tobacco use and exposure; {said}"


def test_an_observation_with_components_lists_each() -> None:
    reading = read(observation(component=[
        {"code": concept("8480-6", "Systolic", system="http://loinc.org"),
         "valueQuantity": {"value": 110, "unit": "mmHg"}},
        {"code": concept("8462-4", "Diastolic", system="http://loinc.org"),
         "valueCodeableConcept": concept("17621005", "Normal")},
        {"code": {"text": SECRET}, "valueString": SECRET},
    ]))

    assert reading.summary == "Observation: Tobacco use and exposure; Systolic 110 mmHg, Diastolic Normal, component"


def test_a_preliminary_observation_says_so_and_one_entered_in_error_is_retracted() -> None:
    assert read(observation(status="preliminary")).summary == "Observation: Tobacco use and exposure; preliminary"
    retracted = read(observation(status="entered-in-error"))
    assert retracted.retracted
    assert retracted.summary == "Observation: Tobacco use and exposure; entered in error"


def test_an_observation_without_a_subject_has_none() -> None:
    reading = read(example("UKCore-Observation-FingerJointInflamed-Example.xml"))

    assert reading.subject is None and reading.subject_element == "subject"


# --- Flag -----------------------------------------------------------------------------------------


def test_flag_example_raises_no_alert_and_never_shows_its_text() -> None:
    resource = example("UKCore-Flag-FoodAllergy-Example.xml")
    reading = read(resource)

    assert (reading.kind, reading.category) == ("flag", "health.flag")
    assert reading.summary == "Flag: Peanut-free diet; active; from 2019-12-10"
    assert reading.alert is None
    # The example's own free text, written for a person, not a summary.
    assert resource["code"]["text"] == "Patient has a severe peanut allergy."
    assert "peanut allergy" not in reading.summary


def cp_is_flag(code: str, status: str = "active", **period: str) -> dict[str, Any]:
    return {
        "resourceType": "Flag", "status": status, "subject": CHILD,
        "code": {"coding": [{"system": ALERT_SYSTEM, "code": code, "display": "CP-IS flag"}], "text": SECRET},
        **({"period": period} if period else {}),
    }


def test_a_cp_is_flag_raises_an_alert_with_its_period() -> None:
    reading = read(cp_is_flag("child-protection-plan", start="2026-01-05T10:00:00Z", end="2026-07-05"))

    assert reading.alert == HealthAlert(
        code="child-protection-plan", active=True, start=date(2026, 1, 5), end=date(2026, 7, 5)
    )
    # The name is the gateway's own, not the sender's display.
    assert reading.summary == "Flag: Child protection plan; active; from 2026-01-05"
    assert (reading.occurred, reading.occurred_element) == ("2026-01-05T10:00:00Z", "period.start")


@pytest.mark.parametrize(("code", "name"), sorted(ukcore.ALERT_CODES.items()))
def test_every_cp_is_code_raises_its_alert(code: AlertCode, name: str) -> None:
    reading = read(cp_is_flag(code, status="inactive"))

    assert reading.alert == HealthAlert(code=code, active=False)
    assert reading.summary == f"Flag: {name}; inactive"


def test_a_flag_of_another_system_or_an_unknown_cp_is_code_raises_no_alert() -> None:
    other_system = read({
        "resourceType": "Flag", "status": "active", "subject": CHILD,
        "code": concept("child-protection-plan", "Child protection plan", system="https://example.org/local-flags"),
    })
    unknown_code = read(cp_is_flag("was-once-on-a-plan"))

    assert other_system.alert is None and other_system.summary == "Flag: Child protection plan; active"
    # A code the gateway does not know is shown by its display, like any other coded Flag.
    assert unknown_code.alert is None and unknown_code.summary == "Flag: CP-IS flag; active"


# --- CareTeam -------------------------------------------------------------------------------------


def test_care_team_example() -> None:
    reading = read(example("UKCore-CareTeam-WeightManagementTeam-Example.xml"))

    assert (reading.kind, reading.category) == ("care_team", "health.care_team")
    assert reading.summary == "Care team: care team; inactive"
    # Its one member is a bare reference with no display: no one to name.
    assert reading.people == ()
    assert (reading.occurred, reading.occurred_element) == (None, "period.start")


def test_care_team_members_join_the_people_as_professionals() -> None:
    reading = read({
        "resourceType": "CareTeam", "status": "active", "subject": CHILD,
        "category": [concept("384741000000108", "Child health care team")],
        "period": {"start": "2026-02-01"},
        "participant": [
            {"role": [concept("158965000", "Health visitor", text=SECRET)], "member": {"reference": "Practitioner/hv",
                                                                                       "display": "Pat Visitor"}},
            {"role": [concept("62247001", "General practitioner")], "member": {"display": "Dr Ann Other"}},
            {"member": {"display": "Sam School-Nurse"}},
            {"role": [concept("106292003", "Nurse")], "member": {"reference": "Practitioner/nameless"}},
        ],
        "note": [{"text": SECRET}],
    })

    assert reading.people == (
        InvolvedPerson(role="Health visitor", name="Pat Visitor", relationship="professional"),
        InvolvedPerson(role="General practitioner", name="Dr Ann Other", relationship="professional"),
        InvolvedPerson(role="care team member", name="Sam School-Nurse", relationship="professional"),
    )
    assert reading.summary == (
        "Care team: Child health care team; General practitioner, Health visitor, care team member"
    )
    assert reading.occurred == "2026-02-01"


# --- RelatedPerson --------------------------------------------------------------------------------


def test_related_person_example() -> None:
    reading = read(example("UKCore-RelatedPerson-JoySmith-Example.xml"))

    assert (reading.kind, reading.category) == ("related_person", "health.related_person")
    assert reading.summary == "Related person: wife"
    assert reading.subject_element == "patient"
    assert reading.subject == {"reference": "Patient/UKCore-Patient-RichardSmith-Example"}
    assert reading.people == (InvolvedPerson(role="related person", name="Joy SMITH", relationship="wife"),)


def test_a_related_persons_official_name_and_birth_date() -> None:
    reading = read({
        "resourceType": "RelatedPerson", "patient": CHILD, "birthDate": "1990-04-02",
        "relationship": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-RoleCode", "code": "MTH"}]}],
        "name": [{"use": "usual", "given": ["Mo"]}, {"use": "official", "given": ["Maria", "Jo"], "family": "Example"}],
    })

    # No display: the code stands for the relationship.
    assert reading.people == (
        InvolvedPerson(role="related person", name="Maria Jo Example", birth_date=date(1990, 4, 2), relationship="MTH"),
    )
    assert reading.summary == "Related person: MTH"
    assert reading.subject_element == "patient"


def test_a_nameless_related_person_names_no_one() -> None:
    reading = read({"resourceType": "RelatedPerson", "patient": CHILD,
                    "relationship": [concept("FTH", "father", system="http://terminology.hl7.org/CodeSystem/v3-RoleCode")]})

    assert reading.people == () and reading.summary == "Related person: father"


# --- EpisodeOfCare --------------------------------------------------------------------------------


def test_episode_of_care_example() -> None:
    reading = read(example("UKCore-EpisodeOfCare-SmokingCessationTherapy-Example.xml"))

    assert (reading.kind, reading.category) == ("episode_of_care", "health.episode_of_care")
    assert reading.summary == "Episode of care: Smoking cessation therapy; finished"
    assert reading.subject_element == "patient"


def test_episode_of_care_with_its_organisation() -> None:
    reading = read({
        "resourceType": "EpisodeOfCare", "status": "active", "patient": CHILD,
        "type": [concept("1234", "CAMHS episode")], "managingOrganization": {"display": "Synthetic CAMHS"},
        "period": {"start": "2026-03-01"},
    })

    assert reading.summary == "Episode of care: CAMHS episode; active; with Synthetic CAMHS"
    assert (reading.occurred, reading.occurred_element) == ("2026-03-01", "period.start")


# --- Appointment ----------------------------------------------------------------------------------


def test_appointment_example() -> None:
    reading = read(example("UKCore-Appointment-OrthopaedicSurgery-Example.xml"))

    assert (reading.kind, reading.category) == ("appointment", "health.appointment")
    assert reading.summary == "Appointment: Orthopaedic Surgery; booked; 2022-03-11"
    assert reading.subject_element == "participant[0].actor"
    assert reading.subject is not None and reading.subject["reference"] == "Patient/UKCore-Patient-RichardSmith-Example"
    assert (reading.occurred, reading.occurred_element) == ("2022-03-11T10:46:00Z", "start")


def appointment(*actors: dict[str, Any], status: str = "noshow") -> dict[str, Any]:
    return {
        "resourceType": "Appointment", "status": status, "start": "2026-04-01T09:30:00Z", "end": "2026-04-01T10:00:00Z",
        "serviceType": [concept("310019004", "Paediatric service", text=SECRET)], "comment": SECRET,
        "participant": [{"actor": actor, "status": "accepted"} for actor in actors],
    }


def test_a_child_not_brought_to_an_appointment() -> None:
    reading = read(appointment(
        {"reference": "Practitioner/dr1", "display": "Dr One"}, {"reference": "Location/clinic"}, CHILD,
    ))

    assert "was not brought" in reading.summary
    assert reading.summary == "Appointment: Paediatric service; was not brought; 2026-04-01"
    assert (reading.subject, reading.subject_element) == (CHILD, "participant[2].actor")


@pytest.mark.parametrize(
    "actor",
    [
        {"reference": "urn:uuid:5b0a3b4e-0000-4000-8000-000000000001"},
        {"reference": "Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|9434765919"},
        {"type": "Patient", "reference": "https://example.org/fhir/Patient/1"},
        {"identifier": {"system": NHS_SYSTEM, "value": VALID_NHS}},
    ],
)
def test_an_appointment_finds_its_patient_however_referred_to(actor: dict[str, Any]) -> None:
    reading = read(appointment({"reference": "Practitioner/dr1"}, actor, status="booked"))

    assert (reading.subject, reading.subject_element) == (actor, "participant[1].actor")
    assert reading.summary == "Appointment: Paediatric service; booked; 2026-04-01"


def test_an_appointment_naming_no_patient_has_no_subject() -> None:
    reading = read(appointment({"reference": "Practitioner/dr1"}, {"reference": "Location/clinic"}))

    assert (reading.subject, reading.subject_element) == (None, "participant")


def test_an_appointment_skips_a_urn_uuid_participant_typed_as_another_resource() -> None:
    practitioner = {"reference": "urn:uuid:00000000-0000-4000-8000-0000000000aa", "type": "Practitioner"}
    child = {"reference": "urn:uuid:00000000-0000-4000-8000-0000000000bb", "type": "Patient"}

    reading = read(appointment(practitioner, child))

    assert (reading.subject, reading.subject_element) == (child, "participant[1].actor")


# --- Immunization, AllergyIntolerance, medication, Procedure -----------------------------------------


def test_immunization_example() -> None:
    reading = read(example("UKCore-Immunization-InfluenzaVaccine-Example.xml"))

    assert (reading.kind, reading.category) == ("immunization", "health.immunisation")
    assert reading.summary == (
        "Immunisation: Influenza vaccine (split virion, inactivated) suspension for injection 0.5ml pre-filled "
        "syringes (Pfizer Ltd); 2013-01-10"
    )
    assert reading.subject_element == "patient"
    assert (reading.occurred, reading.occurred_element) == ("2013-01-10", "occurrenceDateTime")


def test_an_immunization_not_given() -> None:
    reading = read({"resourceType": "Immunization", "status": "not-done", "patient": CHILD,
                    "vaccineCode": concept("1", "MMR vaccine"), "occurrenceDateTime": "2026-05-05T10:00:00Z",
                    "note": [{"text": SECRET}]})

    assert reading.summary == "Immunisation: MMR vaccine; not given; 2026-05-05"


@pytest.mark.parametrize(
    ("name", "summary", "retracted"),
    [
        ("UKCore-AllergyIntolerance-Amoxicillin-Example.xml", "Allergy or intolerance: Amoxicillin; active", False),
        ("UKCore-AllergyIntolerance-EnteredInError-Example.xml", "Allergy or intolerance: Amoxicillin", True),
    ],
)
def test_allergy_examples(name: str, summary: str, retracted: bool) -> None:
    reading = read(example(name))

    assert (reading.kind, reading.category) == ("allergy_intolerance", "health.allergy")
    assert reading.summary == summary
    assert reading.retracted is retracted
    assert reading.subject_element == "patient"
    assert (reading.occurred, reading.occurred_element) == ("2019-12-10T13:00:00Z", "recordedDate")


def test_an_allergys_criticality() -> None:
    reading = read({"resourceType": "AllergyIntolerance", "patient": CHILD, "criticality": "high",
                    "code": concept("91935009", "Allergy to peanut", text=SECRET)})

    assert reading.summary == "Allergy or intolerance: Allergy to peanut; criticality high"


@pytest.mark.parametrize(
    ("name", "summary", "occurred_element"),
    [
        ("UKCore-MedicationRequest-Amoxicillin-Example.xml",
         "Medication prescribed: Amoxicillin 500mg capsules; completed", "authoredOn"),
        ("UKCore-MedicationStatement-Amoxicillin-Example.xml",
         "Medication: Amoxicillin 250mg capsules; active", "effectivePeriod.start"),
        ("UKCore-MedicationAdministration-CiprofloxacinIV-Example.xml",
         "Medication given: Ciprofloxacin 400mg/200ml infusion bags (Hikma Pharmaceuticals International Ltd); completed",
         "effectiveDateTime"),
        ("UKCore-MedicationDispense-Amoxicillin-Example.xml",
         "Medication dispensed: Amoxicillin 500mg capsules (DE Pharmaceuticals); completed", "whenPrepared"),
    ],
)
def test_medication_examples(name: str, summary: str, occurred_element: str) -> None:
    reading = read(example(name))

    assert (reading.kind, reading.category) == ("medication", "health.medication")
    assert reading.summary == summary
    assert reading.occurred_element == occurred_element and reading.occurred is not None
    assert reading.subject_element == "subject"


def test_a_medication_named_by_reference_display() -> None:
    reading = read({"resourceType": "MedicationStatement", "status": "active", "subject": CHILD,
                    "medicationReference": {"reference": "Medication/m1", "display": "Methylphenidate"}})

    assert reading.summary == "Medication: Methylphenidate; active"


def test_procedure_example() -> None:
    reading = read(example("UKCore-Procedure-ExaminationOfSkin-Example.xml"))

    assert (reading.kind, reading.category) == ("procedure", "health.procedure")
    # Completed is what a procedure usually is: not said.
    assert reading.summary == "Procedure: Hand microscope examination of skin"
    assert (reading.occurred, reading.occurred_element) == ("2019-12-10T13:00:00Z", "performedDateTime")


def test_a_procedure_in_progress_says_so() -> None:
    reading = read({"resourceType": "Procedure", "status": "in-progress", "subject": CHILD,
                    "code": concept("1", "Skeletal survey"), "performedPeriod": {"start": "2026-01-02"}})

    assert reading.summary == "Procedure: Skeletal survey; in progress"
    assert reading.occurred_element == "performedPeriod.start"


# --- DocumentReference ----------------------------------------------------------------------------


def test_document_reference_example() -> None:
    resource = example("UKCore-DocumentReference-CarePlanReportPDF-Example.xml")
    reading = read(resource)

    assert (reading.kind, reading.category) == ("document_reference", "health.document")
    assert reading.summary == "Document: Care plan; 2016-03-08"
    assert (reading.occurred, reading.occurred_element) == ("2016-03-08T15:26:00+01:00", "date")
    assert reading.payload is not None and reading.payload["content"] == resource["content"]


def test_a_document_references_payload_drops_the_attachment_data_only() -> None:
    resource: dict[str, Any] = {
        "resourceType": "DocumentReference", "status": "current", "subject": CHILD,
        "type": concept("371531000", "Report of clinical encounter", text=SECRET), "description": SECRET,
        "author": [{"reference": "Practitioner/dr1"}, {"display": "Dr One"}], "date": "2026-02-03T10:00:00Z",
        "content": [
            {"attachment": {"contentType": "application/pdf", "data": "U0VDUkVU", "size": 6,
                            "hash": "2jmj7l5rSw0yVb/vlWAYkK/YBwk=", "title": "Discharge letter",
                            "url": "https://example.org/docs/1"},
             "format": {"system": "http://ihe.net/fhir/ihe.formatcode.fhir/CodeSystem/formatcode", "code": "urn:ihe:iti:xds:2017:mimeTypeSufficient"}},
            {"attachment": {"contentType": "text/plain", "data": "U0VDUkVU"}},
        ],
    }
    sent = copy.deepcopy(resource)

    reading = read(resource)

    assert reading.payload is not None
    first, second = reading.payload["content"]
    assert first["attachment"] == {"contentType": "application/pdf", "size": 6, "hash": "2jmj7l5rSw0yVb/vlWAYkK/YBwk=",
                                   "title": "Discharge letter", "url": "https://example.org/docs/1"}
    assert first["format"] == sent["content"][0]["format"]
    assert second["attachment"] == {"contentType": "text/plain"}
    assert {k: v for k, v in reading.payload.items() if k != "content"} == {
        k: v for k, v in sent.items() if k != "content"
    }
    assert resource == sent  # what was sent is not changed
    assert reading.summary == "Document: Report of clinical encounter; from Dr One; 2026-02-03"


# --- QuestionnaireResponse ------------------------------------------------------------------------


def test_questionnaire_response_example_counts_answers_and_shows_none() -> None:
    reading = read(example("UKCore-QuestionnaireResponse-EOLPlan-Example.xml"))

    assert (reading.kind, reading.category) == ("questionnaire_response", "health.questionnaire_response")
    assert reading.summary == "Questionnaire response: completed; 3 questions answered"
    assert (reading.occurred, reading.occurred_element) == ("2023-11-14T08:07:00Z", "authored")
    assert reading.codings == ()
    assert "fibromyalgia" not in reading.summary  # an answer in the example


# --- the generic reader ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "summary", "subject_element", "occurred_element"),
    [
        ("UKCore-DiagnosticReport-CTChestScan-Example.xml", "Diagnostic report: Radiology studies report; final",
         "subject", "issued"),
        ("UKCore-ServiceRequest-ECG-Example.xml", "Service request: 12 lead ECG; active", "subject", "authoredOn"),
        ("UKCore-Task-Colonoscopy-Example.xml", "Task: Fulfill the focal request; in progress", "for", "authoredOn"),
        ("UKCore-FamilyMemberHistory-FatherDiabetes-Example.xml", "Family member history: not coded; partial",
         "patient", "date"),
        ("UKCore-Composition-Discharge-Example.xml", "Composition: Discharge summary; final", "subject", "date"),
        ("UKCore-Specimen-BloodSpecimen-Example.xml", "Specimen: Blood specimen; available", "subject",
         "effectiveDateTime"),
    ],
)
def test_generic_examples(name: str, summary: str, subject_element: str, occurred_element: str) -> None:
    resource = example(name)
    reading = read(resource)

    assert (reading.kind, reading.category) == ("health_record", "health.other")
    assert reading.summary == summary
    assert reading.subject_element == subject_element and reading.subject == resource[subject_element]
    assert reading.occurred_element == occurred_element


def test_a_generic_resource_is_classified_by_its_codes() -> None:
    reading = read({"resourceType": "ServiceRequest", "status": "active", "intent": "order", "subject": CHILD,
                    "code": concept("1", "Referral to CAMHS"), "reasonCode": [concept("35489007", "Depression")],
                    "note": [{"text": SECRET}], "patientInstruction": SECRET})

    assert reading.summary == "Service request: Referral to CAMHS; active"
    assert {c["code"] for c in reading.codings} == {"1", "35489007"}


@pytest.mark.parametrize(
    "name",
    [
        "UKCore-Practitioner-ConsultantSandraGose-Example.xml",
        "UKCore-Organization-LeedsTeachingHospital-Example.xml",
        "UKCore-Location-HospitalSJUH-Example.xml",
        "UKCore-PractitionerRole-GeneralPractitioner-Example.xml",
        "UKCore-Device-ColostomyBag-Example.xml",
        "UKCore-HealthcareService-OrthopaedicService-Example.xml",
    ],
)
def test_resources_about_no_patient_are_not_read(name: str) -> None:
    assert ukcore.read(example(name)) is None


@pytest.mark.parametrize("subject", [{"reference": "Group/g1"}, {"reference": "Device/d1"},
                                     {"reference": "Location/l1", "display": "Ward 3"}])
def test_a_generic_resource_about_a_group_or_a_device_is_not_read(subject: dict[str, Any]) -> None:
    resource = {"resourceType": "DiagnosticReport", "status": "final", "code": concept("1", "Report"), "subject": subject}

    assert ukcore.read(resource) is None


def test_a_generic_resource_about_a_group_named_by_urn_uuid_is_not_read() -> None:
    subject = {"reference": "urn:uuid:00000000-0000-4000-8000-0000000000cc", "type": "Group"}
    resource = {"resourceType": "DiagnosticReport", "status": "final", "code": concept("1", "Report"), "subject": subject}

    assert ukcore.read(resource) is None


def test_a_generic_resource_about_a_patient_by_nhs_number() -> None:
    subject = {"identifier": {"system": NHS_SYSTEM, "value": VALID_NHS}}
    reading = read({"resourceType": "Goal", "lifecycleStatus": "active", "subject": subject,
                    "description": {"text": SECRET}})

    assert reading.subject == subject and reading.summary == "Goal: not coded"


# --- no free text in any summary ------------------------------------------------------------------

FREE_TEXT_RESOURCES: list[dict[str, Any]] = [
    {"resourceType": "Encounter", "status": "finished", "subject": CHILD, "class": {"code": "AMB"},
     "type": [concept("1", "Visit", text=SECRET)], "reasonCode": [{"text": SECRET}],
     "hospitalization": {"dischargeDisposition": {"text": SECRET}}},
    {"resourceType": "Condition", "subject": CHILD, "code": concept("1", "Bruising", text=SECRET),
     "note": [{"text": SECRET}], "clinicalStatus": {"text": SECRET}},
    observation(valueString=SECRET, note=[{"text": SECRET}], interpretation=[{"text": SECRET}]),
    cp_is_flag("looked-after"),
    {"resourceType": "CareTeam", "status": "active", "subject": CHILD, "category": [{"text": SECRET}],
     "note": [{"text": SECRET}], "participant": [{"role": [{"text": SECRET}], "member": {"display": "A Person"}}]},
    {"resourceType": "RelatedPerson", "patient": CHILD, "relationship": [{"text": SECRET}],
     "name": [{"text": SECRET}]},
    {"resourceType": "EpisodeOfCare", "status": "active", "patient": CHILD, "type": [{"text": SECRET}]},
    appointment(CHILD, status="booked"),
    {"resourceType": "Immunization", "status": "completed", "patient": CHILD, "vaccineCode": {"text": SECRET},
     "occurrenceString": SECRET, "note": [{"text": SECRET}]},
    {"resourceType": "AllergyIntolerance", "patient": CHILD, "code": {"text": SECRET}, "note": [{"text": SECRET}],
     "reaction": [{"manifestation": [{"text": SECRET}], "description": SECRET}]},
    {"resourceType": "MedicationRequest", "status": "active", "intent": "order", "subject": CHILD,
     "medicationCodeableConcept": {"text": SECRET}, "note": [{"text": SECRET}],
     "dosageInstruction": [{"text": SECRET}]},
    {"resourceType": "Procedure", "status": "completed", "subject": CHILD, "code": {"text": SECRET},
     "note": [{"text": SECRET}], "outcome": {"text": SECRET}},
    {"resourceType": "DocumentReference", "status": "current", "subject": CHILD, "type": {"text": SECRET},
     "description": SECRET, "content": [{"attachment": {"title": SECRET}}]},
    {"resourceType": "QuestionnaireResponse", "status": "completed", "subject": CHILD,
     "item": [{"linkId": "1", "text": SECRET, "answer": [{"valueString": SECRET}]}]},
    {"resourceType": "DiagnosticReport", "status": "final", "subject": CHILD, "code": concept("1", "X-ray", text=SECRET),
     "conclusion": SECRET, "conclusionCode": [{"text": SECRET}]},
]


@pytest.mark.parametrize("resource", FREE_TEXT_RESOURCES, ids=lambda r: str(r["resourceType"]))
def test_no_summary_repeats_free_text(resource: dict[str, Any]) -> None:
    get_fhir_model_class(resource["resourceType"]).model_validate(resource)  # each is valid FHIR

    reading = read(resource)

    assert SECRET not in reading.summary
    assert reading.summary.startswith(
        ("Encounter", "AMB", "Condition", "Observation", "Flag", "Care team", "Related person", "Episode of care",
         "Appointment", "Immunisation", "Allergy", "Medication", "Procedure", "Document", "Questionnaire", "Diagnostic")
    )


def test_free_text_resources_cover_every_reader() -> None:
    covered = {r["resourceType"] for r in FREE_TEXT_RESOURCES}

    assert set(ukcore.READERS) - covered == {"MedicationStatement", "MedicationAdministration", "MedicationDispense"}


# --- the model: every type read names its Patient in an element fhir.resources knows ---------------


@pytest.mark.parametrize("resource_type", [*nhs_fhir.GENERIC, *ukcore.READERS])
def test_every_type_read_has_an_element_naming_a_patient(resource_type: str) -> None:
    fields = get_fhir_model_class(resource_type).model_fields
    elements = {"subject", "patient", "for_fhir", "beneficiary"} | ({"participant"} if resource_type == "Appointment" else set())

    assert elements & set(fields), f"{resource_type} has no element naming a Patient"


@pytest.mark.parametrize("resource_type", sorted(set(ukcore.READERS) - {"Appointment"}))
def test_each_reader_looks_for_its_patient_where_the_model_puts_it(resource_type: str) -> None:
    reading = read({"resourceType": resource_type})
    fields = get_fhir_model_class(resource_type).model_fields

    assert reading.subject is None
    assert reading.subject_element in fields


# --- through parse_bundle -------------------------------------------------------------------------


def bundle(*resources: dict[str, Any], bundle_type: str = "transaction") -> bytes:
    entries = [
        {"fullUrl": f"urn:uuid:00000000-0000-4000-8000-{i:012d}", "resource": r,
         "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}
        for i, r in enumerate(resources)
    ]
    return json.dumps({"resourceType": "Bundle", "type": bundle_type, "entry": entries}).encode()


def child() -> dict[str, Any]:
    return {"resourceType": "Patient", "id": "p1", "identifier": [{"system": NHS_SYSTEM, "value": VALID_NHS}],
            "name": [{"family": "Synthetic", "given": ["Sam"]}], "birthDate": "2016-05-04"}


def parse(body: bytes) -> Submission:
    return parse_bundle(body, "application/fhir+json", max_entries=100)


def record(submission: Submission, index: int = 1) -> InboundRecord:
    entry = submission.entries[index]
    assert isinstance(entry, RecordEntry), entry
    return entry.record


def only_issue(submission: Submission, index: int = 1) -> Issue:
    entry = submission.entries[index]
    assert isinstance(entry, RejectedEntry), entry
    [issue] = entry.issues
    return issue


def condition(code: str, **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Condition", "id": "c1", "subject": {"reference": "Patient/p1"},
            "code": concept(code, "Coded"), **extra}


def shipped_snomed() -> list[tuple[str, str]]:
    data = json.loads(resources.files("adapters").joinpath("sensitivity_codes.json").read_text())
    return [(code, label) for label, codes in data["labels"].items() for code in codes.get("snomed", [])]


@pytest.mark.parametrize(("code", "label"), shipped_snomed())
def test_a_condition_coded_on_the_shipped_list_gets_its_label(code: str, label: str) -> None:
    labelled = record(parse(bundle(child(), condition(code))))

    assert label in labelled.security_labels
    assert (labelled.kind, labelled.subject_ref) == ("condition", "Patient/p1")


def test_an_ordinary_condition_gets_no_label() -> None:
    assert record(parse(bundle(child(), condition("26322001")))).security_labels == frozenset()


def test_the_sources_labels_are_kept_beside_the_classifiers() -> None:
    meta = {"security": [{"system": ACT_CODE, "code": "SDV"},
                         {"system": nhs_fhir.GATEWAY_CODE_SYSTEM, "code": nhs_fhir.GENDER_IDENTITY_HISTORY_CODE}]}
    hiv = shipped_snomed()[0]
    assert hiv[1] == "HIV"

    labelled = record(parse(bundle(child(), condition(hiv[0], meta=meta))))

    assert labelled.security_labels == {"SDV", "gender-identity-history", "HIV"}


def test_a_cp_is_flag_and_a_document_reach_the_record() -> None:
    flag = {**cp_is_flag("child-protection-plan", start="2026-01-05"), "id": "f1"}
    document = {"resourceType": "DocumentReference", "id": "d1", "status": "current", "subject": {"reference": "Patient/p1"},
                "content": [{"attachment": {"contentType": "application/pdf", "data": "U0VDUkVU", "size": 6}}]}

    submission = parse(bundle(child(), flag, document))

    alert = record(submission, 1).alert
    assert alert == HealthAlert(code="child-protection-plan", active=True, start=date(2026, 1, 5))
    stored = record(submission, 2)
    assert stored.payload["content"] == [{"attachment": {"contentType": "application/pdf", "size": 6}}]
    assert stored.summary == "Document: not coded"


def test_a_condition_about_a_practitioner_is_refused_as_a_value() -> None:
    issue = only_issue(parse(bundle(child(), condition("26322001", subject={"reference": "Practitioner/dr1"}))))

    assert (issue.code, issue.location) == ("value", "Bundle.entry[1].resource.subject.reference")


def test_a_urn_uuid_subject_matching_no_entry_is_not_found() -> None:
    subject = {"reference": "urn:uuid:11111111-1111-4111-8111-111111111111"}
    issue = only_issue(parse(bundle(child(), condition("26322001", subject=subject))))

    assert (issue.code, issue.location) == ("not-found", "Bundle.entry[1].resource.subject.reference")


def test_a_urn_uuid_subject_naming_the_bundles_patient_resolves() -> None:
    subject = {"reference": "urn:uuid:00000000-0000-4000-8000-000000000000"}  # the child's fullUrl

    assert record(parse(bundle(child(), condition("26322001", subject=subject)))).subject_ref == "Patient/p1"


def test_a_record_without_a_subject_is_refused_as_required() -> None:
    finger = example("UKCore-Observation-FingerJointInflamed-Example.xml")
    issue = only_issue(parse(bundle(child(), finger)))

    assert (issue.code, issue.location) == ("required", "Bundle.entry[1].resource.subject.reference")


def test_an_appointment_without_a_patient_is_refused_as_required() -> None:
    resource = {**appointment({"reference": "Practitioner/dr1"}), "id": "a1"}

    issue = only_issue(parse(bundle(child(), resource)))

    assert (issue.code, issue.location) == ("required", "Bundle.entry[1].resource.participant")


def test_an_appointment_subject_is_found_among_participants_and_located() -> None:
    resource = {**appointment({"reference": "Practitioner/dr1"}, {"reference": "Patient/p1"}), "id": "a1"}

    submission = parse(bundle(child(), resource))

    entry = submission.entries[1]
    assert isinstance(entry, RecordEntry)
    assert entry.record.subject_ref == "Patient/p1"
    assert entry.subject_location == "Bundle.entry[1].resource.participant[1].actor.reference"
    assert "was not brought" in entry.record.summary


def test_an_appointment_in_a_batch_naming_a_practitioner_first_by_urn_uuid_is_accepted() -> None:
    practitioner = {"reference": "urn:uuid:00000000-0000-4000-8000-0000000000aa", "type": "Practitioner"}
    the_child = {"reference": "urn:uuid:00000000-0000-4000-8000-000000000000", "type": "Patient"}
    resource = {**appointment(practitioner, the_child), "id": "a1"}

    submission = parse(bundle(child(), resource, bundle_type="batch"))

    assert record(submission).subject_ref == "Patient/p1"


@pytest.mark.parametrize("name", ["UKCore-Practitioner-ConsultantSandraGose-Example.xml",
                                  "UKCore-Location-HospitalSJUH-Example.xml"])
def test_a_resource_naming_no_patient_is_refused_as_not_supported(name: str) -> None:
    issue = only_issue(parse(bundle(child(), example(name))))

    assert (issue.code, issue.location) == ("not-supported", "Bundle.entry[1].resource")

"""Generate a synthetic safeguarding partnership: a team, its members, children and their records.

All people are made up by Faker's en_GB locale. NHS numbers are drawn from the 999 range that
NHS England reserves for test data, with a valid Modulus 11 check digit, so that they pass
validation but can never be a real patient's.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from faker import Faker
from stdnum.gb import nhs

ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
SNOMED = "http://snomed.info/sct"
NHS_NUMBER_SYSTEM = "https://fhir.nhs.uk/Id/nhs-number"

# (class code, class display, SNOMED type code, type display)
ENCOUNTER_TYPES = [
    ("EMER", "emergency", "4525004", "Emergency department patient visit"),
    ("EMER", "emergency", "50849002", "Emergency room admission"),
    ("AMB", "ambulatory", "185389009", "Follow-up visit"),
    ("IMP", "inpatient encounter", "32485007", "Hospital admission"),
]


def synthetic_nhs_number(rng: random.Random) -> str:
    """Return a valid NHS number in the 999 test range."""
    while True:
        body = "999" + "".join(str(rng.randrange(10)) for _ in range(6))
        total = sum(int(d) * w for d, w in zip(body, range(10, 1, -1), strict=True))
        check = 11 - total % 11
        if check == 11:
            check = 0
        if check != 10:  # 10 means no valid number has this body
            number = body + str(check)
            assert nhs.is_valid(number)
            return number


@dataclass(frozen=True)
class DemoMember:
    """A staff member of a demo team."""

    subject: str
    display_name: str
    agency: str
    role: str


@dataclass
class DemoChild:
    """A synthetic child and the records each agency holds about them."""

    nhs_number: str
    given_names: list[str]
    family_name: str
    birth_date: date
    sex: str
    postcode: str
    address_lines: list[str]
    allocated: bool
    gp_postcode: str | None = None
    encounters: list[dict[str, Any]] = field(default_factory=list)
    police_incidents: list[dict[str, Any]] = field(default_factory=list)
    school: str | None = None


@dataclass
class DemoPartnership:
    """Everything the demo loads."""

    team_name: str
    local_authority: str
    members: list[DemoMember]
    outsider: DemoMember
    children: list[DemoChild]


def generate(*, children: int, seed: int) -> DemoPartnership:
    """Generate a reproducible synthetic partnership."""
    rng = random.Random(seed)
    fake = Faker("en_GB")
    fake.seed_instance(seed)
    members = [
        DemoMember("lead.practitioner@northshire.example", fake.name(), "social_care", "lead_practitioner"),
        DemoMember("health.member@northshire.example", fake.name(), "health", "designated_nurse"),
        DemoMember("police.member@northshire.example", fake.name(), "police", "police_officer"),
        DemoMember("education.member@northshire.example", fake.name(), "education", "designated_safeguarding_lead"),
    ]
    outsider = DemoMember("duty.worker@westshire.example", fake.name(), "social_care", "social_worker")
    today = date(2026, 11, 1)
    result = []
    for index in range(children):
        sex = rng.choice(["male", "female"])
        given = fake.first_name_male() if sex == "male" else fake.first_name_female()
        birth = today - timedelta(days=rng.randrange(365, 17 * 365))
        child = DemoChild(
            nhs_number=synthetic_nhs_number(rng),
            given_names=[given],
            family_name=fake.last_name(),
            birth_date=birth,
            sex=sex,
            postcode=fake.postcode(),
            address_lines=fake.street_address().split("\n"),
            # A few children are on no team's list, to show what refusal looks like.
            allocated=index % 6 != 5,
        )
        # One child in four has moved: the GP still holds the old postcode (a conflict to see).
        child.gp_postcode = fake.postcode() if rng.random() < 0.25 else child.postcode
        for _ in range(rng.randrange(1, 5)):
            class_code, class_display, type_code, type_display = rng.choice(ENCOUNTER_TYPES)
            start = datetime.combine(today, datetime.min.time(), UTC) - timedelta(
                days=rng.randrange(1, 700), minutes=rng.randrange(0, 1440)
            )
            child.encounters.append(
                {
                    "id": str(uuid.UUID(int=rng.getrandbits(128))),
                    "class_code": class_code,
                    "class_display": class_display,
                    "type_code": type_code,
                    "type_display": type_display,
                    "start": start,
                    # Mental-health attendances carry the PSY sensitivity label: withheld, but indicated.
                    # Demo child 0's first one always does: the README's request-to-see walk-through asks for it.
                    "sensitive": rng.random() < 0.15 or (index == 0 and not child.encounters),
                }
            )
        result.append(child)
    return DemoPartnership(
        team_name="Northshire MACPT",
        local_authority="Northshire County Council",
        members=members,
        outsider=outsider,
        children=result,
    )


def patient_resource(child: DemoChild, *, resource_id: str, postcode: str | None) -> dict[str, Any]:
    """Return the FHIR Patient a health system would send for a child (no postcode if None)."""
    address: dict[str, Any] = {"use": "home", "line": child.address_lines}
    if postcode:
        address["postalCode"] = postcode
    return {
        "resourceType": "Patient",
        "id": resource_id,
        "identifier": [{"system": NHS_NUMBER_SYSTEM, "value": child.nhs_number}],
        "name": [{"use": "official", "family": child.family_name, "given": child.given_names}],
        "gender": child.sex,
        "birthDate": child.birth_date.isoformat(),
        "address": [address],
    }


def encounter_resource(encounter: dict[str, Any], *, patient_ref: str) -> dict[str, Any]:
    """Return the FHIR Encounter for one attendance."""
    resource: dict[str, Any] = {
        "resourceType": "Encounter",
        "id": encounter["id"],
        "status": "finished",
        "class": {"system": ACT_CODE, "code": encounter["class_code"], "display": encounter["class_display"]},
        "type": [{"coding": [{"system": SNOMED, "code": encounter["type_code"], "display": encounter["type_display"]}]}],
        "subject": {"reference": patient_ref},
        "period": {
            "start": encounter["start"].isoformat(),
            "end": (encounter["start"] + timedelta(hours=3)).isoformat(),
        },
    }
    if encounter["sensitive"]:
        resource["meta"] = {"security": [{"system": ACT_CODE, "code": "PSY", "display": "psychiatry disorder information sensitivity"}]}
    return resource


def transaction_bundle(resources: list[dict[str, Any]]) -> dict[str, Any]:
    """Wrap resources in a FHIR transaction Bundle of PUTs."""
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, r['resourceType'] + '/' + r['id'])}",
                "resource": r,
                "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"},
            }
            for r in resources
        ],
    }


# The UK Core records a trust's integration engine sends besides attendances, for the mixed
# benchmark and tests: (resource type, SNOMED code, display). The codes are real SNOMED CT concepts
# of each kind; 35489007 (depressive disorder) is on the shipped sensitivity code list, so the
# gateway labels it PSY although the source did not.
HEALTH_RECORD_KINDS = [
    ("Condition", "26322001", "Bleeding from ear"),
    ("Condition", "35489007", "Depressive disorder"),
    ("Observation", "27113001", "Body weight"),
    ("Observation", "50373000", "Body height"),
    ("Flag", "child-protection-plan", "Child protection plan"),
    ("Immunization", "871908002", "Measles, mumps and rubella vaccine"),
    ("AllergyIntolerance", "91936005", "Allergy to penicillin"),
    ("MedicationStatement", "322236009", "Paracetamol 500mg tablets"),
    ("Appointment", "310080006", "Paediatric service"),
    ("Procedure", "80146002", "Appendicectomy"),
]
CP_IS_FLAG_SYSTEM = "urn:macpt-gateway:CodeSystem:cp-is-flag"


def health_record_resource(rng: random.Random, *, patient_ref: str, when: datetime, sensitive: bool) -> dict[str, Any]:
    """Return one made-up UK Core record about a child (not an Encounter), with a fresh id.

    `sensitive` marks it with meta.security PSY, as a mental health service's system would.
    """
    resource_type, code, display = rng.choice(HEALTH_RECORD_KINDS)
    coding = {"system": SNOMED, "code": code, "display": display}
    resource: dict[str, Any] = {"resourceType": resource_type, "id": str(uuid.UUID(int=rng.getrandbits(128)))}
    if resource_type == "Condition":
        resource |= {"clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                                     "code": "active"}]},
                     "code": {"coding": [coding]}, "subject": {"reference": patient_ref}, "onsetDateTime": when.isoformat()}
    elif resource_type == "Observation":
        kilograms = code == "27113001"
        resource |= {"status": "final",
                     "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                               "code": "vital-signs"}]}],
                     "code": {"coding": [coding]}, "subject": {"reference": patient_ref},
                     "effectiveDateTime": when.isoformat(),
                     "valueQuantity": {"value": round(rng.uniform(12, 60) if kilograms else rng.uniform(85, 170), 1),
                                       "unit": "kg" if kilograms else "cm", "system": "http://unitsofmeasure.org",
                                       "code": "kg" if kilograms else "cm"}}
    elif resource_type == "Flag":
        resource |= {"status": "active", "code": {"coding": [{"system": CP_IS_FLAG_SYSTEM, "code": code}]},
                     "subject": {"reference": patient_ref}, "period": {"start": when.isoformat()}}
    elif resource_type == "Immunization":
        resource |= {"status": "completed", "vaccineCode": {"coding": [coding]}, "patient": {"reference": patient_ref},
                     "occurrenceDateTime": when.isoformat()}
    elif resource_type == "AllergyIntolerance":
        resource |= {"code": {"coding": [coding]}, "patient": {"reference": patient_ref}, "criticality": "high",
                     "recordedDate": when.isoformat()}
    elif resource_type == "MedicationStatement":
        resource |= {"status": "active", "medicationCodeableConcept": {"coding": [coding]},
                     "subject": {"reference": patient_ref}, "effectiveDateTime": when.isoformat()}
    elif resource_type == "Appointment":
        resource |= {"status": rng.choice(["booked", "fulfilled", "noshow"]), "serviceType": [{"coding": [coding]}],
                     "start": when.isoformat(), "end": (when + timedelta(minutes=30)).isoformat(),
                     "participant": [{"actor": {"reference": patient_ref}, "status": "accepted"}]}
    else:  # Procedure
        resource |= {"status": "completed", "code": {"coding": [coding]}, "subject": {"reference": patient_ref},
                     "performedDateTime": when.isoformat()}
    if sensitive:
        resource["meta"] = {"security": [{"system": ACT_CODE, "code": "PSY", "display": "psychiatry disorder information sensitivity"}]}
    return resource

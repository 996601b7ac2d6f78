"""UK Core records in the child's view: every sensitivity label withholds (ARCHITECTURE.md §5), flags
fill the key facts, care teams and related people join the people, JSON and XML give the same item."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from fhir.resources.R4B import get_fhir_model_class
from httpx import Response
from sqlalchemy.orm import Session

from adapters.nhs_fhir import ACT_CODE_SYSTEM, CONFIDENTIALITY_SYSTEM, GATEWAY_CODE_SYSTEM
from adapters.sensitivity import SNOMED, shipped_classifier
from adapters.ukcore import ALERT_SYSTEM
from gateway.auth.keys import SigningKeys
from gateway.demo.generator import patient_resource, transaction_bundle
from gateway.demo.loader import HEALTH_KINDS
from gateway.kit.crypto import DataKeyring
from gateway.settings import Settings
from policies.model import GENDER_IDENTITY_HISTORY, SPECIAL_CATEGORY_LABELS
from tests.factories import add_member, allocate, client_token, demo_child, make_client, make_team, staff_token
from tests.gateway.helpers import FHIR_JSON, child_id_for, get_view, push

PATIENT = "Patient/p1"
TODAY = date.today()


@dataclass
class Pusher:
    http: TestClient
    token: str
    viewer_token: str
    child_id: uuid.UUID

    def push(self, *resources: dict[str, Any]) -> Response:
        response = push(self.http, self.token, transaction_bundle(list(resources)))
        assert response.status_code == 200, response.text
        return response

    def view(self, purpose: str = "child_protection") -> dict[str, Any]:
        response = get_view(self.http, self.viewer_token, self.child_id, purpose)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body


@pytest.fixture
def pusher(client: TestClient, session: Session, settings: Settings, signing_keys: SigningKeys, keyring: DataKeyring) -> Pusher:
    """A trust registered for every health kind, a child it pushed, and a police member of the child's team."""
    trust, _key = make_client(session, kinds=tuple(str(kind) for kind in HEALTH_KINDS))
    token = client_token(signing_keys, settings, trust)
    child = demo_child()
    response = push(client, token, transaction_bundle([patient_resource(child, resource_id="p1", postcode=child.postcode)]))
    assert response.status_code == 200, response.text
    child_id = child_id_for(session, keyring, child.nhs_number)
    team = make_team(session)
    member = add_member(session, team, agency="police", role="police_officer")
    allocate(session, child_id=child_id, team=team)
    return Pusher(client, token, staff_token(signing_keys, settings, member), child_id)


def condition(*, code: str = "26322001", display: str = "Bleeding from ear", security: list[dict[str, str]] | None = None,
              resource_id: str | None = None) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Condition",
        "id": resource_id or uuid.uuid4().hex,
        "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
        "code": {"coding": [{"system": SNOMED, "code": code, "display": display}]},
        "subject": {"reference": PATIENT},
        "onsetDateTime": "2026-10-01T09:30:00+00:00",
    }
    if security:
        resource["meta"] = {"security": security}
    return resource


def _label_coding(label: str) -> dict[str, str]:
    if label in ("R", "V"):
        return {"system": CONFIDENTIALITY_SYSTEM, "code": label}
    if label == GENDER_IDENTITY_HISTORY:
        return {"system": GATEWAY_CODE_SYSTEM, "code": label}
    return {"system": ACT_CODE_SYSTEM, "code": label}


def _where(view: dict[str, Any], item_ids: set[str]) -> tuple[set[str], dict[str, dict[str, Any]]]:
    """The ids among item_ids the timeline shows, and the withheld groups that name the others."""
    shown = {e["item_id"] for e in view["timeline"]} & item_ids
    withheld = {item_id: group for group in view["withheld"] for item_id in group["item_ids"] if item_id in item_ids}
    return shown, withheld


LABELS = sorted([*SPECIAL_CATEGORY_LABELS, GENDER_IDENTITY_HISTORY])


def test_every_sensitivity_label_the_source_sends_withholds_the_record_and_says_so(pusher: Pusher) -> None:
    plain = condition(resource_id="plain")
    labelled = {label: condition(resource_id=f"label-{label.lower()}", security=[_label_coding(label)]) for label in LABELS}
    pusher.push(plain, *labelled.values())

    view = pusher.view()
    timeline = {e["summary"]: e for e in view["timeline"]}
    assert len(view["timeline"]) == 1 and "Condition: Bleeding from ear; active" in timeline  # the control is shown
    groups = [g for g in view["withheld"] if g["agency"] == "health"]
    named = {item_id for g in groups for item_id in g["item_ids"]}
    assert len(named) == len(LABELS)  # every labelled record withheld, and the viewer told so
    for group in groups:
        # Gender identity history opens to no request unless a rule names it; the others the shipped ISA names ("*").
        assert group["requestable"] is ("gender identity" not in group["reason"]), group


@pytest.mark.parametrize("label", sorted(shipped_classifier().labels))
def test_a_record_the_code_list_labels_is_withheld_like_a_labelled_one(pusher: Pusher, label: str) -> None:
    classifier = shipped_classifier()
    code = next(code for code, labels in classifier.by_snomed.items() if label in labels) if any(
        label in labels for labels in classifier.by_snomed.values()
    ) else None
    if code is not None:
        record = condition(code=code, display="a coded finding")
    else:  # a label listed by ICD-10 prefix only
        prefix = next(prefix for prefix, labels in classifier.by_icd10_prefix.items() if label in labels)
        record = condition()
        record["code"] = {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": f"{prefix}0" if len(prefix) < 4 else prefix}]}
    pusher.push(record, condition(resource_id="plain"))

    view = pusher.view()
    assert [e["summary"] for e in view["timeline"]] == ["Condition: Bleeding from ear; active"]
    (group,) = [g for g in view["withheld"] if g["agency"] == "health"]
    assert group["count"] == 1 and group["requestable"] is (label != GENDER_IDENTITY_HISTORY)


def test_a_labelled_appointment_flag_or_observation_is_withheld_too(pusher: Pusher) -> None:
    psy = [{"system": ACT_CODE_SYSTEM, "code": "PSY"}]
    appointment = {
        "resourceType": "Appointment", "id": "a1", "status": "noshow", "meta": {"security": psy},
        "serviceType": [{"coding": [{"system": SNOMED, "code": "722164000", "display": "Child and adolescent mental health service"}]}],
        "start": "2026-10-02T09:00:00+00:00", "end": "2026-10-02T09:30:00+00:00",
        "participant": [{"actor": {"reference": PATIENT}, "status": "declined"}],
    }
    observation = {
        "resourceType": "Observation", "id": "o1", "status": "final", "meta": {"security": [{"system": ACT_CODE_SYSTEM, "code": "SDV"}]},
        "code": {"coding": [{"system": SNOMED, "code": "225338004", "display": "Risk assessment"}]},
        "subject": {"reference": PATIENT}, "effectiveDateTime": "2026-10-03",
    }
    pusher.push(appointment, observation)

    view = pusher.view()
    assert view["timeline"] == []
    assert sum(g["count"] for g in view["withheld"]) == 2


def _flag(code: str, *, status: str = "active", start: date | None = None, end: date | None = None,
          security: list[dict[str, str]] | None = None) -> dict[str, Any]:
    period: dict[str, str] = {"start": (start or TODAY - timedelta(days=30)).isoformat()}
    if end is not None:
        period["end"] = end.isoformat()
    resource: dict[str, Any] = {
        "resourceType": "Flag", "id": f"flag-{code}-{status}-{uuid.uuid4().hex[:6]}", "status": status,
        "code": {"coding": [{"system": ALERT_SYSTEM, "code": code}]},
        "subject": {"reference": PATIENT}, "period": period,
    }
    if security:
        resource["meta"] = {"security": security}
    return resource


def test_cp_is_flags_in_force_are_key_facts_where_disclosed(pusher: Pusher) -> None:
    pusher.push(
        _flag("child-protection-plan", start=TODAY - timedelta(days=10)),
        _flag("looked-after", status="inactive"),  # no longer in force
        _flag("unborn-child-protection-plan", end=TODAY - timedelta(days=1)),  # ended
        _flag("looked-after", security=[{"system": CONFIDENTIALITY_SYSTEM, "code": "R"}]),  # withheld from this viewer
    )

    view = pusher.view()
    flags = view["key_facts"]["health_flags"]
    assert [(f["code"], f["label"], f["since"], f["agency"]) for f in flags] == [
        ("child-protection-plan", "Child protection plan", (TODAY - timedelta(days=10)).isoformat(), "health")
    ]
    summaries = sorted(e["summary"] for e in view["timeline"])
    assert summaries[0].startswith("Flag: Child protection plan; active; from ")
    assert len(summaries) == 3  # the withheld one is not in the timeline either


def test_care_team_and_related_people_join_the_views_people(pusher: Pusher) -> None:
    care_team = {
        "resourceType": "CareTeam", "id": "ct1", "status": "active", "name": "Child health team",
        "subject": {"reference": PATIENT},
        "participant": [
            {"role": [{"coding": [{"system": SNOMED, "code": "159001000", "display": "Health visitor"}]}],
             "member": {"reference": "Practitioner/hv1", "display": "Pat Visitor"}},
            {"role": [{"coding": [{"system": SNOMED, "code": "62247001", "display": "General practitioner"}]}],
             "member": {"reference": "Practitioner/gp1", "display": "Dr Sam Example"}},
        ],
    }
    related = {
        "resourceType": "RelatedPerson", "id": "rp1", "patient": {"reference": PATIENT}, "birthDate": "1990-05-01",
        "relationship": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-RoleCode", "code": "MTH", "display": "mother"}]}],
        "name": [{"use": "official", "family": "Testington", "given": ["Jo"]}],
    }
    pusher.push(care_team, related)

    people = {(p["name"], p["role"], p["relationship"]) for p in pusher.view()["people"]}
    assert people == {
        ("Pat Visitor", "Health visitor", "professional"),
        ("Dr Sam Example", "General practitioner", "professional"),
        ("Jo Testington", "related person", "mother"),
    }


def test_was_not_brought_is_said_in_the_timeline(pusher: Pusher) -> None:
    appointment = {
        "resourceType": "Appointment", "id": "a2", "status": "noshow",
        "serviceType": [{"coding": [{"system": SNOMED, "code": "310080006", "display": "Paediatric service"}]}],
        "start": "2026-10-02T09:00:00+00:00", "end": "2026-10-02T09:30:00+00:00",
        "participant": [{"actor": {"reference": "Practitioner/x", "display": "Dr X"}, "status": "accepted"},
                        {"actor": {"reference": PATIENT}, "status": "accepted"}],
    }
    pusher.push(appointment)

    (entry,) = pusher.view()["timeline"]
    assert entry["summary"] == "Appointment: Paediatric service; was not brought; 2026-10-02"
    assert entry["kind"] == "appointment" and entry["category"] == "health.appointment"


def _as_xml(resource: dict[str, Any]) -> bytes:
    # fhir.resources types model_dump_xml as str, but returns bytes (lxml's tostring) by default.
    xml: Any = get_fhir_model_class(resource["resourceType"]).model_validate(resource).model_dump_xml()
    return xml if isinstance(xml, bytes) else str(xml).encode()


def test_the_same_resource_as_json_and_as_xml_gives_the_same_item(pusher: Pusher) -> None:
    resource = condition(resource_id="same", security=[])
    resource["meta"] = {"versionId": "3"}
    twin = {**resource, "id": "twin"}
    auth = {"Authorization": f"Bearer {pusher.token}"}

    as_json = pusher.http.put("/fhir/R4/Condition/same", content=json.dumps(resource), headers={**FHIR_JSON, **auth})
    again_as_xml = pusher.http.put(
        "/fhir/R4/Condition/same", content=_as_xml(resource), headers={"Content-Type": "application/fhir+xml", **auth}
    )
    twin_as_xml = pusher.http.put(
        "/fhir/R4/Condition/twin", content=_as_xml(twin), headers={"Content-Type": "application/fhir+xml", **auth}
    )

    assert as_json.status_code == 201, as_json.text
    assert again_as_xml.status_code == 200, again_as_xml.text  # the same version: acknowledged, not stored twice
    assert twin_as_xml.status_code == 201, twin_as_xml.text
    first, second = pusher.view()["timeline"]
    for field in ("kind", "category", "occurred_at", "summary", "status"):
        assert first[field] == second[field], field


def test_a_partnerships_own_code_list_labels_what_the_shipped_one_does_not(
    pusher: Pusher, app: FastAPI, settings: Settings, tmp_path: Path
) -> None:
    local = "https://fhir.northshire.example/CodeSystem/service"
    extension = tmp_path / "codes.json"
    extension.write_text(json.dumps({
        "version": "northshire-1",
        "labels": {"SEX": {"codes": [{"system": local, "code": "sexual-health-clinic"}]}},
    }))
    app.state.classifier = settings.model_copy(update={"sensitivity_codes_path": extension}).load_classifier()
    clinic = condition(resource_id="clinic")
    clinic["code"] = {"coding": [{"system": local, "code": "sexual-health-clinic", "display": "Clinic attendance"}]}

    pusher.push(clinic, condition(resource_id="plain"))

    view = pusher.view()
    assert [e["summary"] for e in view["timeline"]] == ["Condition: Bleeding from ear; active"]
    (group,) = [g for g in view["withheld"] if g["agency"] == "health"]
    assert group["count"] == 1 and "sexual health" in group["reason"]


def test_a_cp_is_flag_for_a_child_with_an_open_case_reaches_the_lead_practitioner(
    client: TestClient, session: Session, settings: Settings, signing_keys: SigningKeys, keyring: DataKeyring
) -> None:
    trust, _key = make_client(session, kinds=tuple(str(kind) for kind in HEALTH_KINDS))
    token = client_token(signing_keys, settings, trust)
    child = demo_child()
    patient = patient_resource(child, resource_id="p1", postcode=child.postcode)
    assert push(client, token, transaction_bundle([patient])).status_code == 200
    team = make_team(session)
    lead = add_member(session, team, agency="social_care", role="lead_practitioner")
    allocate(session, child_id=child_id_for(session, keyring, child.nhs_number), team=team)

    pushed = push(client, token, transaction_bundle([_flag("child-protection-plan"), condition()]))

    assert pushed.status_code == 200, pushed.text
    listed = client.get("/api/v1/notifications", headers={"Authorization": f"Bearer {staff_token(signing_keys, settings, lead)}"})
    assert listed.status_code == 200, listed.text
    kinds = [n.get("record_kind") for n in listed.json()["notifications"]]
    assert kinds == ["flag"]  # health.flag is notifiable in the shipped ISA; a condition is not

"""to_fhir and to_fhir_bundle: stored audit events as BALP-shaped FHIR R4 AuditEvents, valid as R4B models."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from fhir.resources.R4B.auditevent import AuditEvent as FhirAuditEvent
from fhir.resources.R4B.bundle import Bundle

from audit import AuditAction, AuditEvent, ItemDecisionRef
from audit.fhir import full_url, to_fhir, to_fhir_bundle
from audit.log import _grouped

SOURCE = "macpt-gateway.test.example"
WHEN = datetime(2025, 11, 20, 23, 15, 30, 250000, tzinfo=UTC)
HASH = "5e" * 32
CHILD = uuid.UUID("11111111-1111-4111-8111-111111111111")
OTHER = uuid.UUID("22222222-2222-4222-8222-222222222222")
THIRD = uuid.UUID("33333333-3333-4333-8333-333333333333")
DISCLOSED = uuid.UUID("aaaaaaaa-0000-4000-8000-000000000001")
INDICATED = uuid.UUID("aaaaaaaa-0000-4000-8000-000000000002")
REDACTED = uuid.UUID("aaaaaaaa-0000-4000-8000-000000000003")
WITHHELD = uuid.UUID("aaaaaaaa-0000-4000-8000-000000000004")
VIEW_ITEMS = [
    ItemDecisionRef(DISCLOSED, "disclose", "cp.health"),
    ItemDecisionRef(INDICATED, "indicate", "cp.police.indicate"),
    ItemDecisionRef(REDACTED, "redact", "cp.education.redact"),
    ItemDecisionRef(WITHHELD, "withhold_silently", "sealed"),
]

BALP = "https://profiles.ihe.net/ITI/BALP/StructureDefinition/IHE.BasicAudit."
DCM = "http://dicom.nema.org/resources/ontology/DCM"
ACT_REASON = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
INTERACTION = "http://hl7.org/fhir/restful-interaction"
ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
ACTION = "https://macpt.example/fhir/CodeSystem/audit-action"
PURPOSE = "https://macpt.example/fhir/CodeSystem/purpose"
PATIENT_TYPE = {"system": ENTITY_TYPE, "code": "1", "display": "Person"}
PATIENT_ROLE = {"system": OBJECT_ROLE, "code": "1", "display": "Patient"}
SYSTEM_OBJECT = {"system": ENTITY_TYPE, "code": "2", "display": "System Object"}
DOMAIN_RESOURCE = {"system": OBJECT_ROLE, "code": "4", "display": "Domain Resource"}
DESTINATION = {"system": DCM, "code": "110152", "display": "Destination Role ID"}
CHILD_PROTECTION = {
    "coding": [
        {"system": PURPOSE, "code": "child_protection", "display": "Child protection"},
        {"system": ACT_REASON, "code": "THREAT", "display": "threat"},
    ]
}
BREAK_THE_GLASS = {"coding": [{"system": ACT_REASON, "code": "BTG", "display": "break the glass"}]}


def _event(**columns: Any) -> AuditEvent:
    """An event as the trail stores it (no database): a social worker's view, overridable column by column."""
    values: dict[str, Any] = {
        "seq": 7,
        "occurred_at": WHEN,
        "actor_type": "user",
        "actor_id": "sw-0042",
        "actor_agency": "social_care",
        "actor_role": "social_worker",
        "action": AuditAction.STAFF_VIEW_OPENED.value,
        "outcome": "success",
        "child_id": None,
        "purpose": "child_protection",
        "lawful_basis": None,
        "policy_version": None,
        "items": [],
        "detail": {},
        "request_id": None,
        "trace_id": None,
        "prev_hash": "0" * 64,
        "hash": HASH,
    }
    values.update(columns)
    return AuditEvent(**values)


def _view(**columns: Any) -> AuditEvent:
    """A view of CHILD that decided on the four VIEW_ITEMS, with every optional column set."""
    values: dict[str, Any] = {
        "child_id": CHILD,
        "lawful_basis": "public_task",
        "policy_version": "isa@3",
        "items": _grouped(VIEW_ITEMS),
        "detail": {"relationship": "allocated", "team_id": str(OTHER)},
        "request_id": "0b8e3c1e-8f0e-4a51-9a55-0d6f3c2b1a00",
        "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
    }
    values.update(columns)
    return _event(**values)


def _valid(resources: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Check each resource is a valid R4B AuditEvent and survives JSON; return them."""
    for resource in resources:
        parsed = FhirAuditEvent.model_validate(json.loads(json.dumps(resource)))
        assert parsed.id == resource["id"]
    return resources


def _one(event: AuditEvent) -> dict[str, Any]:
    [resource] = _valid(to_fhir(event, source=SOURCE))
    return resource


def _patients(resource: dict[str, Any]) -> list[str]:
    return [e["what"]["reference"] for e in resource["entity"] if e.get("role") == PATIENT_ROLE]


def _items(resource: dict[str, Any]) -> dict[str, list[dict[str, str]]]:
    return {
        e["what"]["identifier"]["value"]: e["detail"]
        for e in resource["entity"]
        if e["what"].get("identifier", {}).get("system") == "https://macpt.example/fhir/NamingSystem/item"
    }


def _codes(codings: list[dict[str, str]]) -> list[tuple[str, str]]:
    return [(c["system"], c["code"]) for c in codings]


def test_a_view_of_one_child_is_one_patient_read() -> None:
    resource = _one(_view())

    assert resource["id"] == "7"
    assert resource["meta"] == {"profile": [BALP + "PatientRead"]}
    assert resource["type"] == {
        "system": "http://terminology.hl7.org/CodeSystem/audit-event-type",
        "code": "rest",
        "display": "RESTful Operation",
    }
    assert _codes(resource["subtype"]) == [
        (INTERACTION, "read"), (ACTION, "staff:view:opened")
    ]
    assert resource["action"] == "R"
    assert resource["recorded"] == "2025-11-20T23:15:30.250000Z"
    assert resource["outcome"] == "0"
    assert resource["outcomeDesc"] == "staff:view:opened: success"
    assert resource["purposeOfEvent"] == [CHILD_PROTECTION]
    assert resource["source"] == {
        "observer": {"display": SOURCE},
        "type": [{"system": "http://terminology.hl7.org/CodeSystem/security-source-type", "code": "4",
                  "display": "Application Server"}],
    }


def test_a_view_lists_the_patient_each_disclosed_or_indicated_item_and_counts_the_rest() -> None:
    resource = _one(_view())

    patient, *rest = resource["entity"]
    assert patient == {
        "what": {"reference": f"Patient/{CHILD}"},
        "type": PATIENT_TYPE,
        "role": PATIENT_ROLE,
        "detail": [{"type": "withheld", "valueString": "1"}],
    }
    assert _patients(resource) == [f"Patient/{CHILD}"]
    # A redacted item still shows that it exists, with its kind, date and source: a disclosure.
    assert _items(resource) == {
        str(DISCLOSED): [{"type": "decision", "valueString": "disclose"}, {"type": "rule", "valueString": "cp.health"}],
        str(INDICATED): [{"type": "decision", "valueString": "indicate"},
                         {"type": "rule", "valueString": "cp.police.indicate"}],
        str(REDACTED): [{"type": "decision", "valueString": "redact"},
                        {"type": "rule", "valueString": "cp.education.redact"}],
    }
    shown = {str(DISCLOSED), str(INDICATED), str(REDACTED)}
    items = [e for e in rest if e["what"].get("identifier", {}).get("value") in shown]
    assert [(e["type"], e["role"]) for e in items] == [(SYSTEM_OBJECT, DOMAIN_RESOURCE)] * 3
    assert str(WITHHELD) not in json.dumps(resource)


def test_the_last_entity_is_the_stored_event_with_its_hash_and_links() -> None:
    resource = _one(_view(detail={"review": ["out_of_hours", "volume"]}))

    *_, request, stored = resource["entity"]
    assert request == {
        "what": {"identifier": {"value": "0b8e3c1e-8f0e-4a51-9a55-0d6f3c2b1a00"}},
        "type": {"system": "https://profiles.ihe.net/ITI/BALP/CodeSystem/BasicAuditEntityType", "code": "XrequestId",
                 "display": "transport specific unique identifier where http X-Request-Id is used"},
    }
    assert stored == {
        "what": {"identifier": {"system": "https://macpt.example/fhir/NamingSystem/audit-event", "value": "7"}},
        "type": SYSTEM_OBJECT,
        "role": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "13",
                 "display": "Security Resource"},
        "detail": [
            {"type": "hash", "valueString": HASH},
            {"type": "trace_id", "valueString": "4bf92f3577b34da6a3ce929d0e0e4736"},
            {"type": "request_id", "valueString": "0b8e3c1e-8f0e-4a51-9a55-0d6f3c2b1a00"},
            {"type": "policy_version", "valueString": "isa@3"},
            {"type": "lawful_basis", "valueString": "public_task"},
            {"type": "review", "valueString": "out_of_hours"},
            {"type": "review", "valueString": "volume"},
        ],
    }


def test_the_stored_event_entity_holds_only_the_hash_when_nothing_else_is_known() -> None:
    resource = _one(_event())

    assert resource["entity"] == [
        {
            "what": {"identifier": {"system": "https://macpt.example/fhir/NamingSystem/audit-event", "value": "7"}},
            "type": SYSTEM_OBJECT,
            "role": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "13",
                     "display": "Security Resource"},
            "detail": [{"type": "hash", "valueString": HASH}],
        }
    ]
    assert resource["meta"] == {"profile": [BALP + "Read"]}


def test_the_user_and_the_gateway_are_the_agents() -> None:
    resource = _one(_view())

    assert resource["agent"] == [
        {
            "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP",
                                 "display": "information recipient"}]},
            "role": [
                {"coding": [{"system": "https://macpt.example/fhir/CodeSystem/role", "code": "social_worker"}]},
                {"coding": [{"system": "https://macpt.example/fhir/CodeSystem/agency", "code": "social_care"}]},
            ],
            "who": {"identifier": {"system": "https://macpt.example/fhir/NamingSystem/staff", "value": "sw-0042"}},
            "requestor": True,
            "purposeOfUse": [CHILD_PROTECTION],
        },
        {
            "type": {"coding": [{"system": DCM, "code": "110153", "display": "Source Role ID"}]},
            "who": {"display": SOURCE},
            "requestor": False,
        },
    ]


def test_an_event_about_three_children_gives_one_audit_event_per_child() -> None:
    event = _view(seq=12, child_id=None, detail={"children": [str(CHILD), str(OTHER), str(THIRD)]})

    resources = _valid(to_fhir(event, source=SOURCE))

    assert [r["id"] for r in resources] == ["12-1", "12-2", "12-3"]
    assert [_patients(r) for r in resources] == [[f"Patient/{CHILD}"], [f"Patient/{OTHER}"], [f"Patient/{THIRD}"]]
    assert {r["meta"]["profile"][0] for r in resources} == {BALP + "PatientRead"}
    # The trail does not say which item was about which child: each child's event lists them all.
    assert [sorted(_items(r)) for r in resources] == [sorted([str(DISCLOSED), str(INDICATED), str(REDACTED)])] * 3
    assert [r["entity"][-1]["what"]["identifier"]["value"] for r in resources] == ["12", "12", "12"]


def test_child_id_and_the_listed_children_are_each_named_once() -> None:
    event = _event(seq=5, child_id=OTHER, detail={"children": [str(CHILD), str(OTHER).upper(), str(CHILD)]})

    resources = _valid(to_fhir(event, source=SOURCE))

    assert [(r["id"], _patients(r)) for r in resources] == [
        ("5-1", [f"Patient/{OTHER}"]),
        ("5-2", [f"Patient/{CHILD}"]),
    ]


def test_one_listed_child_is_not_split() -> None:
    resource = _one(_event(seq=9, detail={"children": [str(THIRD)]}))

    assert resource["id"] == "9"
    assert _patients(resource) == [f"Patient/{THIRD}"]


def test_a_children_entry_that_is_not_a_uuid_is_refused() -> None:
    with pytest.raises(ValueError, match="badly formed"):
        to_fhir(_event(detail={"children": ["not-a-uuid"]}), source=SOURCE)


def test_a_refused_view_has_outcome_4_and_claims_no_success_profile() -> None:
    event = _event(action=AuditAction.STAFF_VIEW_REFUSED.value, outcome="denied", child_id=CHILD,
                   detail={"reason": "no_allocation", "review": ["refused"]})

    resource = _one(event)

    assert resource["outcome"] == "4"
    assert resource["outcomeDesc"] == "staff:view:refused: denied (no_allocation)"
    assert "meta" not in resource
    assert resource["action"] == "R"
    assert resource["subtype"][0] == {"system": INTERACTION, "code": "read", "display": "read"}
    assert resource["entity"][0] == {"what": {"reference": f"Patient/{CHILD}"}, "type": PATIENT_TYPE,
                                     "role": PATIENT_ROLE}
    assert _items(resource) == {}


def test_a_reason_that_is_not_a_string_stays_out_of_the_outcome_description() -> None:
    resource = _one(_event(outcome="failure", detail={"reason": {"nested": 1}}))

    assert resource["outcome"] == "8"
    assert resource["outcomeDesc"] == "staff:view:opened: failure"


def test_a_client_push_without_a_child_is_a_create_with_no_patient() -> None:
    event = _event(seq=3, actor_type="client", actor_id="epr-north", actor_agency="health", actor_role=None,
                   action=AuditAction.CLIENT_RECORDS_PUSHED.value, purpose=None,
                   detail={"submission": "transaction", "items_created": 4}, request_id="req-3")

    resource = _one(event)

    assert resource["meta"] == {"profile": [BALP + "Create"]}
    assert resource["subtype"][0] == {"system": INTERACTION, "code": "create", "display": "create"}
    assert resource["action"] == "C"
    assert _patients(resource) == []
    assert [e["type"]["code"] for e in resource["entity"]] == ["XrequestId", "2"]
    assert "purposeOfEvent" not in resource
    assert resource["agent"][0] == {
        "type": {"coding": [{"system": DCM, "code": "110153", "display": "Source Role ID"}]},
        "role": [{"coding": [{"system": "https://macpt.example/fhir/CodeSystem/agency", "code": "health"}]}],
        "who": {"identifier": {"system": "https://macpt.example/fhir/NamingSystem/client", "value": "epr-north"}},
        "requestor": True,
    }
    assert resource["agent"][1]["type"]["coding"] == [DESTINATION]


def test_a_client_push_for_a_child_is_a_patient_create() -> None:
    event = _event(actor_type="client", actor_id="epr-north", actor_agency=None, actor_role=None,
                   action=AuditAction.CLIENT_RECORDS_PUSHED.value, purpose=None, child_id=CHILD)

    resource = _one(event)

    assert resource["meta"] == {"profile": [BALP + "PatientCreate"]}
    assert resource["action"] == "C"
    assert _patients(resource) == [f"Patient/{CHILD}"]
    assert "detail" not in resource["entity"][0]
    assert "role" not in resource["agent"][0]


def test_a_break_glass_view_carries_the_dicom_codes_and_the_purpose_of_use() -> None:
    resource = _one(_view(detail={"relationship": "break_glass", "review": ["break_glass"]}))

    assert resource["subtype"][2:] == [
        {"system": DCM, "code": "110113", "display": "Security Alert"},
        {"system": DCM, "code": "110127", "display": "Emergency Override Started"},
    ]
    assert resource["purposeOfEvent"] == [CHILD_PROTECTION, BREAK_THE_GLASS]
    assert resource["agent"][0]["purposeOfUse"] == [CHILD_PROTECTION, BREAK_THE_GLASS]
    assert resource["agent"][1].get("purposeOfUse") is None
    assert resource["entity"][-1]["detail"][-1] == {"type": "review", "valueString": "break_glass"}


def test_break_glass_without_a_purpose_still_states_the_override() -> None:
    resource = _one(_event(purpose=None, detail={"review": ["break_glass"]}))

    assert resource["purposeOfEvent"] == [BREAK_THE_GLASS]
    assert resource["agent"][0]["purposeOfUse"] == [BREAK_THE_GLASS]


def test_a_view_without_break_glass_has_no_dicom_codes() -> None:
    resource = _one(_view(detail={"review": ["volume"]}))

    assert [c["system"] for c in resource["subtype"]] == [INTERACTION, ACTION]
    assert resource["purposeOfEvent"] == [CHILD_PROTECTION]


def test_family_help_and_an_unknown_purpose_are_local_codes_only() -> None:
    family = _one(_event(purpose="family_help"))
    other = _one(_event(purpose="research"))

    assert family["purposeOfEvent"] == [{"coding": [
        {"system": PURPOSE, "code": "family_help", "display": "Family help"}
    ]}]
    assert other["purposeOfEvent"] == [{"coding": [
        {"system": PURPOSE, "code": "research"}
    ]}]


def test_a_naive_time_is_utc() -> None:
    naive = _one(_event(occurred_at=datetime(2025, 11, 20, 23, 15, 30)))
    aware = _one(_event(occurred_at=datetime(2025, 11, 20, 23, 15, 30, tzinfo=UTC)))

    assert naive["recorded"] == aware["recorded"] == "2025-11-20T23:15:30Z"


def test_an_aware_time_in_another_zone_is_recorded_in_utc() -> None:
    resource = _one(_event(occurred_at=datetime(2025, 11, 21, 1, 15, 30, tzinfo=timezone(timedelta(hours=2)))))

    assert resource["recorded"] == "2025-11-20T23:15:30Z"


def test_an_ig_audit_search_is_a_query() -> None:
    resource = _one(_event(seq=40, actor_id="ig-0001", actor_agency=None, actor_role="ig_officer",
                           action=AuditAction.IG_AUDIT_SEARCHED.value, purpose=None))

    assert resource["id"] == "40"
    assert resource["meta"] == {"profile": [BALP + "Query"]}
    assert resource["subtype"][0] == {"system": INTERACTION, "code": "search-type", "display": "search-type"}
    assert resource["action"] == "E"
    assert resource["agent"][0]["type"]["coding"][0]["code"] == "IRCP"
    assert resource["agent"][0]["role"] == [
        {"coding": [{"system": "https://macpt.example/fhir/CodeSystem/role", "code": "ig_officer"}]}
    ]
    assert resource["agent"][1]["type"]["coding"][0]["code"] == "110152"


def test_a_refused_ig_request_is_a_refused_query() -> None:
    resource = _one(_event(actor_role="social_worker", action=AuditAction.IG_ACCESS_REFUSED.value, outcome="denied",
                           purpose=None, detail={"review": ["refused"]}))

    assert resource["action"] == "E"
    assert resource["subtype"][0]["code"] == "search-type"
    assert resource["outcome"] == "4"
    assert "meta" not in resource


def test_a_staff_search_about_a_child_is_a_patient_query() -> None:
    resource = _one(_event(action=AuditAction.STAFF_SEARCH_PERFORMED.value, child_id=CHILD))

    assert resource["meta"] == {"profile": [BALP + "PatientQuery"]}
    assert resource["action"] == "E"


def test_a_user_who_creates_is_the_author() -> None:
    resource = _one(_event(action=AuditAction.IG_REVIEW_RECORDED.value))

    assert resource["agent"][0]["type"]["coding"] == [
        {"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "AUT",
         "display": "author (originator)"}
    ]


def test_a_client_that_reads_is_the_destination() -> None:
    resource = _one(_event(actor_type="client", actor_id="lcs-east", action=AuditAction.STAFF_VIEW_OPENED.value))

    assert resource["agent"][0]["type"]["coding"] == [DESTINATION]
    assert resource["agent"][0]["who"]["identifier"]["system"] == "https://macpt.example/fhir/NamingSystem/client"


def test_the_gateway_acting_alone_is_an_application() -> None:
    resource = _one(_event(actor_type="system", actor_id="retention-job", actor_agency=None, actor_role=None,
                           action="system:retention:ran", purpose=None))

    assert resource["agent"][0] == {
        "type": {"coding": [{"system": DCM, "code": "110150", "display": "Application"}]},
        "who": {"identifier": {"system": "https://macpt.example/fhir/NamingSystem/system", "value": "retention-job"}},
        "requestor": True,
    }
    assert resource["subtype"][:2] == [
        {"system": INTERACTION, "code": "create", "display": "create"},
        {"system": ACTION, "code": "system:retention:ran"},
    ]


@pytest.mark.parametrize("action", list(AuditAction))
@pytest.mark.parametrize("outcome", ["success", "denied", "failure"])
def test_every_action_and_outcome_gives_a_valid_audit_event(action: AuditAction, outcome: str) -> None:
    resource = _one(_view(action=action.value, outcome=outcome))

    assert resource["outcome"] == {"success": "0", "denied": "4", "failure": "8"}[outcome]
    assert resource["subtype"][1] == {"system": ACTION, "code": action.value}


def test_items_stored_one_entry_per_item_are_read_too() -> None:
    legacy = [
        {"item": str(DISCLOSED), "decision": "disclose", "rule": "cp.health"},
        {"item": str(WITHHELD), "decision": "withhold_silently", "rule": "sealed"},
    ]

    resource = _one(_view(items=legacy))

    assert list(_items(resource)) == [str(DISCLOSED)]
    assert resource["entity"][0]["detail"] == [{"type": "withheld", "valueString": "1"}]


def test_a_view_that_withheld_nothing_says_so() -> None:
    resource = _one(_view(items=_grouped([ItemDecisionRef(DISCLOSED, "disclose", "cp.health")])))

    assert resource["entity"][0]["detail"] == [{"type": "withheld", "valueString": "0"}]


def test_an_unknown_decision_is_listed_rather_than_hidden() -> None:
    resource = _one(_view(items=_grouped([ItemDecisionRef(DISCLOSED, "summarise", "cp.new")])))

    assert _items(resource) == {
        str(DISCLOSED): [{"type": "decision", "valueString": "summarise"}, {"type": "rule", "valueString": "cp.new"}]
    }
    assert resource["entity"][0]["detail"] == [{"type": "withheld", "valueString": "0"}]


def test_only_ids_codes_and_counts_leave_the_event() -> None:
    event = _view(detail={"relationship": "allocated", "team_id": "team-secret-name", "note": "free text"})

    text = json.dumps(to_fhir(event, source=SOURCE))

    assert "team-secret-name" not in text
    assert "free text" not in text
    assert "allocated" not in text


def test_split_resources_share_no_mutable_parts() -> None:
    first, second = to_fhir(_event(detail={"children": [str(CHILD), str(OTHER)]}), source=SOURCE)

    first["agent"][0]["purposeOfUse"][0]["coding"][0]["code"] = "changed"
    first["type"]["code"] = "changed"

    assert first["purposeOfEvent"] == [CHILD_PROTECTION]
    assert second["agent"][0]["purposeOfUse"] == [CHILD_PROTECTION]
    assert second["type"]["code"] == "rest"


def test_an_unknown_outcome_is_refused() -> None:
    with pytest.raises(ValueError, match="audit event 7 has an unknown outcome 'partial'"):
        to_fhir(_event(outcome="partial"), source=SOURCE)


def test_an_unknown_actor_type_is_refused() -> None:
    with pytest.raises(ValueError, match="audit event 7 has an unknown actor type 'robot'"):
        to_fhir(_event(actor_type="robot"), source=SOURCE)


def test_a_bundle_is_a_searchset_of_every_audit_event() -> None:
    view = _view(seq=1)
    split = _event(seq=2, hash="6f" * 32, detail={"children": [str(CHILD), str(OTHER)]})
    push = _event(seq=3, hash="70" * 32, actor_type="client", actor_id="epr-north",
                  action=AuditAction.CLIENT_RECORDS_PUSHED.value)

    bundle = to_fhir_bundle([view, split, push], source=SOURCE, total=3)

    parsed = Bundle.model_validate(json.loads(json.dumps(bundle)))
    assert parsed.type == "searchset"
    assert bundle["resourceType"] == "Bundle"
    assert bundle["total"] == 3
    assert [e["resource"]["id"] for e in bundle["entry"]] == ["1", "2-1", "2-2", "3"]
    assert parsed.entry is not None
    for entry in parsed.entry:
        assert entry.resource is not None and entry.search is not None
        assert (entry.resource.get_resource_type(), entry.search.mode) == ("AuditEvent", "match")
    assert len(parsed.entry) == 4
    assert [e["fullUrl"] for e in bundle["entry"]] == [
        full_url(view, "1"), full_url(split, "2-1"), full_url(split, "2-2"), full_url(push, "3")
    ]
    assert all(e["fullUrl"].startswith("urn:uuid:") for e in bundle["entry"])
    assert len({e["fullUrl"] for e in bundle["entry"]}) == 4


def test_a_full_url_is_the_same_in_every_export() -> None:
    event = _view()

    assert full_url(event, "7") == full_url(_view(), "7")
    assert full_url(event, "7") != full_url(_view(hash="71" * 32), "7")
    assert str(uuid.UUID(full_url(event, "7").removeprefix("urn:uuid:"))) == full_url(event, "7")[len("urn:uuid:"):]


def test_a_bundle_without_a_total_or_events_has_neither() -> None:
    bundle = to_fhir_bundle([], source=SOURCE)

    assert bundle == {"resourceType": "Bundle", "type": "searchset"}
    assert Bundle.model_validate(bundle).total is None


def test_a_bundle_total_of_zero_is_kept() -> None:
    bundle = to_fhir_bundle([], source=SOURCE, total=0)

    assert bundle == {"resourceType": "Bundle", "type": "searchset", "total": 0}


def test_a_negative_total_is_refused() -> None:
    with pytest.raises(ValueError, match=r"a Bundle's total cannot be negative \(-1\)"):
        to_fhir_bundle([], source=SOURCE, total=-1)

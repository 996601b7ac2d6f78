"""The audit trail as FHIR R4 AuditEvents, shaped as IHE Basic Audit Log Patterns (BALP) shapes them.

`to_fhir` turns one stored event into AuditEvent resources, `to_fhir_bundle` a run of them into a
searchset Bundle. Both build plain JSON-ready dicts: this package does not import fhir.resources
(tests/test_boundaries.py); the tests validate what it builds against the R4B models, which match
R4 for AuditEvent and Bundle.

The shapes (BALP 1.1, https://profiles.ihe.net/ITI/BALP):
- A view is a RESTful read (action R), a search or an IG query (or its refusal) a search-type (E),
  anything else, a push above all, a create (C). The event names the BALP profile of its shape, with "Patient"
  when it is about a child (PatientRead, PatientQuery, PatientCreate). BALP's profiles are for
  successes only (they fix outcome to 0; "failures are recorded differently"), so a refused or
  failed event claims no profile rather than one it breaks; its shape is otherwise the same.
- One AuditEvent per child (BALP: "multiple AuditEvent resources should be recorded, one for each
  Patient/Subject"), each naming its child as the patient entity: `<seq>` when the event has at
  most one child, `<seq>-1`, `<seq>-2`, … when it has several (child_id first, then
  detail["children"] in their order, each once).
- Agents: the actor, as requestor, typed as BALP types it (a person the "information recipient"
  of a read or search and the "author" of a create; an agency system the client's DICOM role ID;
  the gateway acting on its own an "Application"), and the gateway, as the server.
- Entities: the patient (with the count of items the event did not disclose), one per item it
  disclosed or indicated, BALP's X-Request-Id transaction when the request had one, and last the
  stored event itself (seq, hash and what ties it to the trail and the policy), so that every
  resource leads back to the tamper-evident row it was made from.

Best effort, as BALP allows: the trail keeps no network addresses, nor the raw query of a search,
so agent.network and the query entity BALP asks for are absent.

No personal data: only ids, codes and counts go out, as the trail holds them. Of the event's
detail only "children", "review" and a string "reason" are read.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from .actions import ActorType, AuditAction, Outcome, ReviewReason
from .log import ItemDecisionRef, decode_items

JSON = dict[str, Any]

BALP = "https://profiles.ihe.net/ITI/BALP"
LOCAL = "https://macpt.example/fhir"

# Local CodeSystems (codes as the trail stores them) and NamingSystems (identifiers).
PURPOSE_SYSTEM = f"{LOCAL}/CodeSystem/purpose"
ACTION_SYSTEM = f"{LOCAL}/CodeSystem/audit-action"
ROLE_SYSTEM = f"{LOCAL}/CodeSystem/role"
AGENCY_SYSTEM = f"{LOCAL}/CodeSystem/agency"
STAFF_SYSTEM = f"{LOCAL}/NamingSystem/staff"
CLIENT_SYSTEM = f"{LOCAL}/NamingSystem/client"
SYSTEM_SYSTEM = f"{LOCAL}/NamingSystem/system"
ITEM_SYSTEM = f"{LOCAL}/NamingSystem/item"
AUDIT_EVENT_SYSTEM = f"{LOCAL}/NamingSystem/audit-event"

AUDIT_EVENT_TYPE = "http://terminology.hl7.org/CodeSystem/audit-event-type"
RESTFUL_INTERACTION = "http://hl7.org/fhir/restful-interaction"
DICOM = "http://dicom.nema.org/resources/ontology/DCM"
ACT_REASON = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
PARTICIPATION_TYPE = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
SOURCE_TYPE = "http://terminology.hl7.org/CodeSystem/security-source-type"
ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
BALP_ENTITY_TYPE = f"{BALP}/CodeSystem/BasicAuditEntityType"

# Bundle.entry.fullUrl is a urn:uuid (an absolute URL, which "AuditEvent/<id>" is not), derived from
# the event's hash and the resource id: the same resource gets the same fullUrl in every export.
_FULL_URL_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, AUDIT_EVENT_SYSTEM)

_Code = tuple[str, str, str]  # system, code, display

_REST: _Code = (AUDIT_EVENT_TYPE, "rest", "RESTful Operation")
_SOURCE_ROLE: _Code = (DICOM, "110153", "Source Role ID")
_DESTINATION_ROLE: _Code = (DICOM, "110152", "Destination Role ID")
_APPLICATION: _Code = (DICOM, "110150", "Application")
_RECIPIENT: _Code = (PARTICIPATION_TYPE, "IRCP", "information recipient")
_AUTHOR: _Code = (PARTICIPATION_TYPE, "AUT", "author (originator)")
_APPLICATION_SERVER: _Code = (SOURCE_TYPE, "4", "Application Server")
_PERSON: _Code = (ENTITY_TYPE, "1", "Person")
_SYSTEM_OBJECT: _Code = (ENTITY_TYPE, "2", "System Object")
_PATIENT: _Code = (OBJECT_ROLE, "1", "Patient")
_DOMAIN_RESOURCE: _Code = (OBJECT_ROLE, "4", "Domain Resource")
# "A passive object ... that is relevant to the event": the stored, hash-chained row.
_SECURITY_RESOURCE: _Code = (OBJECT_ROLE, "13", "Security Resource")
_X_REQUEST_ID: _Code = (
    BALP_ENTITY_TYPE, "XrequestId", "transport specific unique identifier where http X-Request-Id is used"
)

# Break-glass. The request was for "the DICOM purpose-of-use codes 110113/110127", but in DICOM
# (PS3.15 A.5.3.11) those are not purposes of use: 110113 "Security Alert" is the EventID and 110127
# "Emergency Override Started" its EventTypeCode. FHIR R4 carries an EventID in AuditEvent.type,
# which is one Coding and which BALP fixes to "rest"; the EventTypeCode belongs in subtype (BALP
# leaves its slicing open). So both DICOM codes go into subtype, where a search by subtype finds
# every break-glass event. The purpose of use itself is coded where R4 binds it (the v3
# PurposeOfUse value set), on the event's purposeOfEvent and the actor's purposeOfUse: v3-ActReason
# BTG "break the glass", the child of ETREAT defined as a policy override by users "not
# provisioned for this purpose of use", which is what the gateway's break-glass is.
_SECURITY_ALERT: _Code = (DICOM, "110113", "Security Alert")
_EMERGENCY_OVERRIDE_STARTED: _Code = (DICOM, "110127", "Emergency Override Started")
_BREAK_THE_GLASS: _Code = (ACT_REASON, "BTG", "break the glass")

# Purposes. The local code always (it is what the policy was decided on). Child protection also
# maps to v3-ActReason THREAT, "to prevent injury or disease to living subjects who may be the
# target of violence": the aim of a child protection enquiry (preventing significant harm to the
# child), more precise than its parent PUBHLTH, which a consumer reasoning by subsumption still
# reaches. Family help gets no v3 code: the nearest, COC "coordination of care", is about the
# provision of health care, which family help is not, and a wrong standard code would be worse than
# none.
_PURPOSE_DISPLAY = {"child_protection": "Child protection", "family_help": "Family help"}
_PURPOSE_STANDARD: dict[str, _Code] = {"child_protection": (ACT_REASON, "THREAT", "threat")}

_OUTCOMES = {Outcome.SUCCESS.value: "0", Outcome.DENIED.value: "4", Outcome.FAILURE.value: "8"}
_IDENTIFIER_SYSTEMS = {
    ActorType.USER.value: STAFF_SYSTEM,
    ActorType.CLIENT.value: CLIENT_SYSTEM,
    ActorType.SYSTEM.value: SYSTEM_SYSTEM,
}
# The decision that shows nothing of the item: not a disclosure, so only counted. Any other
# decision is listed item by item: a redacted item still shows that it exists, with its kind, date
# and source, as an indicated one does; and a decision this module does not know is listed too, as
# a disclosure log had better over-report than hide one. The IG disclosures report counts the same.
_NOT_DISCLOSED = frozenset({"withhold_silently"})


class StoredEvent(Protocol):
    """What `to_fhir` reads of an event: the columns of `audit.models.AuditEvent`."""

    @property
    def seq(self) -> int: ...
    @property
    def occurred_at(self) -> datetime: ...
    @property
    def actor_type(self) -> str: ...
    @property
    def actor_id(self) -> str: ...
    @property
    def actor_agency(self) -> str | None: ...
    @property
    def actor_role(self) -> str | None: ...
    @property
    def action(self) -> str: ...
    @property
    def outcome(self) -> str: ...
    @property
    def child_id(self) -> uuid.UUID | None: ...
    @property
    def purpose(self) -> str | None: ...
    @property
    def lawful_basis(self) -> str | None: ...
    @property
    def policy_version(self) -> str | None: ...
    @property
    def items(self) -> Sequence[Mapping[str, str]]: ...
    @property
    def detail(self) -> Mapping[str, Any]: ...
    @property
    def request_id(self) -> str | None: ...
    @property
    def trace_id(self) -> str | None: ...
    @property
    def hash(self) -> str: ...


@dataclass(frozen=True)
class _Shape:
    """A BALP RESTful pattern: the interaction, the action code, the profile and the agents' types."""

    interaction: str
    action: str
    profile: str
    user: _Code
    client: _Code
    server: _Code


# In a read the data flows from the server (DICOM "Source Role ID") to the client ("Destination");
# in a search or a create BALP follows DICOM in naming the client the source of the request.
_READ = _Shape("read", "R", "Read", _RECIPIENT, _DESTINATION_ROLE, _SOURCE_ROLE)
_SEARCH = _Shape("search-type", "E", "Query", _RECIPIENT, _SOURCE_ROLE, _DESTINATION_ROLE)
_CREATE = _Shape("create", "C", "Create", _AUTHOR, _SOURCE_ROLE, _DESTINATION_ROLE)
_SHAPES = {
    AuditAction.STAFF_VIEW_OPENED.value: _READ,
    AuditAction.STAFF_VIEW_REFUSED.value: _READ,
    AuditAction.STAFF_SEARCH_PERFORMED.value: _SEARCH,
    # The IG endpoints are searches of the trail; a refusal of one is refused as a search.
    AuditAction.IG_ACCESS_REFUSED.value: _SEARCH,
    AuditAction.IG_AUDIT_SEARCHED.value: _SEARCH,
    AuditAction.IG_DISCLOSURES_REPORTED.value: _SEARCH,
}


def to_fhir(event: StoredEvent, *, source: str) -> list[JSON]:
    """Return the event as FHIR R4 AuditEvents, one per child it touched (one if none); `source` names the gateway.

    Raises ValueError for an outcome or actor type the trail's vocabulary (audit.actions) lacks,
    or a detail["children"] entry that is not a UUID.
    """
    if event.outcome not in _OUTCOMES:
        raise ValueError(f"audit event {event.seq} has an unknown outcome {event.outcome!r}")
    if event.actor_type not in _IDENTIFIER_SYSTEMS:
        raise ValueError(f"audit event {event.seq} has an unknown actor type {event.actor_type!r}")
    children = _children(event)
    items = decode_items(event.items)
    if len(children) < 2:
        child = children[0] if children else None
        return [_resource(event, source=source, resource_id=str(event.seq), child=child, items=items)]
    return [
        _resource(event, source=source, resource_id=f"{event.seq}-{n}", child=child, items=items)
        for n, child in enumerate(children, start=1)
    ]


def to_fhir_bundle(
    events: Iterable[StoredEvent], *, source: str, total: int | None = None, patient: uuid.UUID | None = None
) -> JSON:
    """Return a searchset Bundle of the events' AuditEvents, in order, with `total` (the search's matches) if given.

    With `patient`, only the AuditEvents naming that child: an event that touched several children
    gives one AuditEvent per child, and a search for one child must not return the others'.
    """
    if total is not None and total < 0:
        raise ValueError(f"a Bundle's total cannot be negative ({total})")
    bundle: JSON = {"resourceType": "Bundle", "type": "searchset"}
    if total is not None:
        bundle["total"] = total
    wanted = None if patient is None else f"Patient/{patient}"
    entries = [
        {"fullUrl": full_url(event, resource["id"]), "resource": resource, "search": {"mode": "match"}}
        for event in events
        for resource in to_fhir(event, source=source)
        if wanted is None or any(entity["what"].get("reference") == wanted for entity in resource.get("entity", ()))
    ]
    if entries:  # FHIR JSON has no empty arrays
        bundle["entry"] = entries
    return bundle


def full_url(event: StoredEvent, resource_id: str) -> str:
    """Return the fullUrl of the event's AuditEvent `resource_id` in a Bundle: the same in every export."""
    return f"urn:uuid:{uuid.uuid5(_FULL_URL_NAMESPACE, f'{event.hash}/{resource_id}')}"


def _children(event: StoredEvent) -> list[uuid.UUID]:
    children = [] if event.child_id is None else [event.child_id]
    for listed in event.detail.get("children", ()):
        child = uuid.UUID(str(listed))
        if child not in children:
            children.append(child)
    return children


def _resource(
    event: StoredEvent, *, source: str, resource_id: str, child: uuid.UUID | None, items: Sequence[ItemDecisionRef]
) -> JSON:
    shape = _SHAPES.get(event.action, _CREATE)
    break_glass = ReviewReason.BREAK_GLASS.value in _review(event)
    resource: JSON = {"resourceType": "AuditEvent", "id": resource_id}
    if event.outcome == Outcome.SUCCESS.value:
        profile = f"Patient{shape.profile}" if child is not None else shape.profile
        resource["meta"] = {"profile": [f"{BALP}/StructureDefinition/IHE.BasicAudit.{profile}"]}
    subtype = [
        _coding((RESTFUL_INTERACTION, shape.interaction, shape.interaction)),
        _local(ACTION_SYSTEM, event.action),
    ]
    if break_glass:
        subtype += [_coding(_SECURITY_ALERT), _coding(_EMERGENCY_OVERRIDE_STARTED)]
    resource.update(
        type=_coding(_REST),
        subtype=subtype,
        action=shape.action,
        recorded=_instant(event.occurred_at),
        outcome=_OUTCOMES[event.outcome],
        outcomeDesc=_outcome_desc(event),
    )
    purposes = _purposes(event.purpose, break_glass=break_glass)
    if purposes:
        resource["purposeOfEvent"] = purposes
    # Built again rather than shared, so that no two parts of the output are the same object.
    uses = _purposes(event.purpose, break_glass=break_glass)
    resource["agent"] = [_actor(event, shape, uses), _gateway(shape, source)]
    resource["source"] = {"observer": {"display": source}, "type": [_coding(_APPLICATION_SERVER)]}
    entities = [] if child is None else [_patient(child, items)]
    entities += [_item(ref) for ref in items if ref.decision not in _NOT_DISCLOSED]
    if event.request_id is not None:
        entities.append({"what": {"identifier": {"value": event.request_id}}, "type": _coding(_X_REQUEST_ID)})
    entities.append(_stored(event))
    resource["entity"] = entities
    return resource


def _actor(event: StoredEvent, shape: _Shape, purposes: list[JSON]) -> JSON:
    kind = {ActorType.USER.value: shape.user, ActorType.CLIENT.value: shape.client}.get(event.actor_type, _APPLICATION)
    agent: JSON = {"type": {"coding": [_coding(kind)]}}
    roles = [{"coding": [_local(ROLE_SYSTEM, event.actor_role)]}] if event.actor_role is not None else []
    if event.actor_agency is not None:
        roles.append({"coding": [_local(AGENCY_SYSTEM, event.actor_agency)]})
    if roles:
        agent["role"] = roles
    agent["who"] = {"identifier": {"system": _IDENTIFIER_SYSTEMS[event.actor_type], "value": event.actor_id}}
    agent["requestor"] = True
    if purposes:
        agent["purposeOfUse"] = purposes
    return agent


def _gateway(shape: _Shape, source: str) -> JSON:
    return {"type": {"coding": [_coding(shape.server)]}, "who": {"display": source}, "requestor": False}


def _patient(child: uuid.UUID, items: Sequence[ItemDecisionRef]) -> JSON:
    entity: JSON = {"what": {"reference": f"Patient/{child}"}, "type": _coding(_PERSON), "role": _coding(_PATIENT)}
    if items:  # the event decided on items (a view): say how many it kept back, even none
        withheld = sum(1 for ref in items if ref.decision in _NOT_DISCLOSED)
        entity["detail"] = [{"type": "withheld", "valueString": str(withheld)}]
    return entity


def _item(ref: ItemDecisionRef) -> JSON:
    return {
        "what": {"identifier": {"system": ITEM_SYSTEM, "value": str(ref.item)}},
        "type": _coding(_SYSTEM_OBJECT),
        "role": _coding(_DOMAIN_RESOURCE),
        "detail": [{"type": "decision", "valueString": ref.decision}, {"type": "rule", "valueString": ref.rule}],
    }


def _stored(event: StoredEvent) -> JSON:
    detail = [{"type": "hash", "valueString": event.hash}]
    for name, value in (
        ("trace_id", event.trace_id),
        ("request_id", event.request_id),
        ("policy_version", event.policy_version),
        ("lawful_basis", event.lawful_basis),
    ):
        if value is not None:
            detail.append({"type": name, "valueString": value})
    detail += [{"type": "review", "valueString": reason} for reason in _review(event)]
    return {
        "what": {"identifier": {"system": AUDIT_EVENT_SYSTEM, "value": str(event.seq)}},
        "type": _coding(_SYSTEM_OBJECT),
        "role": _coding(_SECURITY_RESOURCE),
        "detail": detail,
    }


def _purposes(purpose: str | None, *, break_glass: bool) -> list[JSON]:
    concepts: list[JSON] = []
    if purpose is not None:
        codings = [_local(PURPOSE_SYSTEM, purpose, _PURPOSE_DISPLAY.get(purpose))]
        if purpose in _PURPOSE_STANDARD:
            codings.append(_coding(_PURPOSE_STANDARD[purpose]))
        concepts.append({"coding": codings})
    if break_glass:
        concepts.append({"coding": [_coding(_BREAK_THE_GLASS)]})
    return concepts


def _review(event: StoredEvent) -> list[str]:
    return [str(reason) for reason in event.detail.get("review", ())]


def _outcome_desc(event: StoredEvent) -> str:
    reason = event.detail.get("reason")
    why = f" ({reason})" if isinstance(reason, str) else ""
    return f"{event.action}: {event.outcome}{why}"


def _instant(moment: datetime) -> str:
    """Return an instant in UTC with a Z; a naive time (as SQLite hands them back) is UTC."""
    utc = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return utc.isoformat().replace("+00:00", "Z")


def _coding(code: _Code) -> JSON:
    system, value, display = code
    return {"system": system, "code": value, "display": display}


def _local(system: str, code: str, display: str | None = None) -> JSON:
    return {"system": system, "code": code} if display is None else {"system": system, "code": code, "display": display}

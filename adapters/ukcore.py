"""What each UK Core R4 resource about a child means to a safeguarding team.

A table, one reader per resource type: where the resource names its Patient, when it happened,
the record kind and policy category it is filed under, the codes the sensitivity classifier reads,
and a one-line summary a practitioner can read in a strategy meeting. Pure: no I/O, and nothing
here resolves a reference or checks a label (adapters/nhs_fhir.py does, for every type alike).

Summaries are built from coded displays, statuses and dates only, never from free text: a note
in a record may say more than a summary should, and the summary is what an `indicate` or a
notification can reveal. A resource type without a reader of its own, but valid FHIR and naming
a Patient as its subject, patient, `for` or beneficiary, is read generically (kind
`health_record`, category `health.other`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Literal

from .sensitivity import SNOMED
from .types import HealthAlert, InvolvedPerson

# The gateway's own code system for CP-IS style flags. CP-IS (Child Protection - Information
# Sharing) publishes no FHIR code for its flags, so, as with the s16LA mark, the gateway names
# them with its own URN until one exists (README, "The UK Core resources").
ALERT_SYSTEM = "urn:macpt-gateway:CodeSystem:cp-is-flag"
AlertCode = Literal["child-protection-plan", "looked-after", "unborn-child-protection-plan"]
ALERT_CODES: Mapping[AlertCode, str] = {
    "child-protection-plan": "Child protection plan",
    "looked-after": "Looked after child",
    "unborn-child-protection-plan": "Unborn baby: child protection plan",
}

# Elements that may name the Patient a generic resource is about, in the order looked at.
_SUBJECT_ELEMENTS = ("subject", "patient", "for", "beneficiary")
# The types read generically: every R4 clinical type with a subject, patient, for or beneficiary
# element that may name a Patient (tests check each against fhir.resources). Financial and
# administrative types (Account, Claim, Coverage, Invoice…) are not a safeguarding record and are
# refused, as is any type not listed here or in READERS.
GENERIC_TYPES = (
    "AdverseEvent", "Basic", "BodyStructure", "CarePlan", "ClinicalImpression", "Communication",
    "CommunicationRequest", "Composition", "DetectedIssue", "Device", "DeviceRequest", "DeviceUseStatement",
    "DiagnosticReport", "DocumentManifest", "FamilyMemberHistory", "Goal", "GuidanceResponse", "ImagingStudy",
    "ImmunizationEvaluation", "ImmunizationRecommendation", "List", "Media", "NutritionOrder", "RequestGroup",
    "RiskAssessment", "ServiceRequest", "Specimen", "SupplyDelivery", "Task", "VisionPrescription",
)
# The elements of a generic resource whose codes are summarised and classified.
_GENERIC_CODES = ("code", "type", "category", "reasonCode", "serviceType", "vaccineCode", "medicationCodeableConcept")


@dataclass(frozen=True)
class Reading:
    """What a resource says, in the gateway's terms (nothing resolved or checked yet)."""

    kind: str
    category: str
    subject: Mapping[str, Any] | None  # the Reference naming the Patient
    subject_element: str  # where, e.g. "subject" or "participant[1].actor"
    occurred: str | None  # a FHIR date or dateTime, as sent
    occurred_element: str
    summary: str
    codings: tuple[Mapping[str, Any], ...] = ()  # what the sensitivity classifier reads
    people: tuple[InvolvedPerson, ...] = ()
    alert: HealthAlert | None = None
    payload: dict[str, Any] | None = None  # the resource to store, when not the resource as sent
    retracted: bool = False  # status entered-in-error
    emergency: bool = False  # an A&E or urgent care attendance
    # Other references that may be the Patient (element, Reference), tried in order when `subject`
    # names none this push can resolve: an Appointment's participants are not typed by role, and
    # an untyped urn:uuid actor may be the child or the clinician.
    alternatives: tuple[tuple[str, Mapping[str, Any]], ...] = ()


@dataclass(frozen=True)
class _Dates:
    """The first of several date elements present: its value and its name."""

    elements: tuple[str, ...] = field(default=())

    def of(self, resource: Mapping[str, Any]) -> tuple[str | None, str]:
        for element in self.elements:
            value = _at(resource, element)
            if isinstance(value, str):
                return value, element
        return None, self.elements[0] if self.elements else ""


def _at(resource: Mapping[str, Any], dotted: str) -> Any:
    value: Any = resource
    for part in dotted.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def _codings(*concepts: Any) -> list[Mapping[str, Any]]:
    """The Codings of CodeableConcepts (each a concept, a list of them, or None)."""
    found: list[Mapping[str, Any]] = []
    for concept in concepts:
        for one in concept if isinstance(concept, list) else [concept]:
            if isinstance(one, Mapping):
                found.extend(c for c in one.get("coding") or [] if isinstance(c, Mapping))
    return found


def _display(*concepts: Any) -> str | None:
    """The first coded display among the concepts (never their free text)."""
    return next((str(c["display"]).strip() for c in _codings(*concepts) if c.get("display")), None)


def _words(code: Any) -> str:
    return str(code or "").replace("-", " ")


def _day(value: Any) -> str | None:
    return value[:10] if isinstance(value, str) and len(value) >= 10 else None


def _join(head: str, *parts: str | None) -> str:
    tail = "; ".join(p for p in parts if p)
    if not tail:
        return head
    return f"{head}; {tail}" if ": " in head else f"{head}: {tail}"


def _reading(
    resource: Mapping[str, Any],
    kind: str,
    category: str,
    dates: _Dates,
    summary: str,
    codings: Iterable[Mapping[str, Any]],
    *,
    subject_element: str = "subject",
    subject: Any = None,
    **extra: Any,
) -> Reading:
    occurred, occurred_element = dates.of(resource)
    subject = resource.get(subject_element) if subject is None else subject
    return Reading(
        kind=kind,
        category=category,
        subject=subject if isinstance(subject, Mapping) else None,
        subject_element=subject_element,
        occurred=occurred,
        occurred_element=occurred_element,
        summary=summary,
        codings=tuple(codings),
        retracted=resource.get("status") == "entered-in-error"
        or _display_code(resource.get("verificationStatus")) == "entered-in-error",
        **extra,
    )


def _display_code(concept: Any) -> str | None:
    return next((str(c["code"]) for c in _codings(concept) if c.get("code")), None)


# Emergency attendances: v3 ActCode EMER, or SNOMED "Emergency department patient visit" /
# "Emergency room admission". These are what a MACPT most needs to see first.
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
EMERGENCY_CLASS = "EMER"
EMERGENCY_TYPES = frozenset({"4525004", "50849002"})


def _encounter(r: Mapping[str, Any]) -> Reading:
    encounter_class = r.get("class") or {}
    types = _codings(r.get("type"))
    kind = str(encounter_class.get("display") or encounter_class.get("code") or "").strip()
    if kind.lower().endswith("encounter"):  # v3 ActCode displays such as "inpatient encounter"
        kind = kind[: -len("encounter")].strip()
    head = f"{kind[:1].upper()}{kind[1:]} encounter" if kind else "Encounter"
    detail = next((c.get("display") for c in types if c.get("display")), None)
    reason = _display(r.get("reasonCode"))
    provider = (r.get("serviceProvider") or {}).get("display")
    disposition = _display((r.get("hospitalization") or {}).get("dischargeDisposition"))
    summary = _join(
        f"{head}: {detail}" if detail else head,
        f"reason {reason}" if reason else None,
        f"at {provider}" if provider else None,
        f"discharged: {disposition}" if disposition else None,
    )
    # A class without a system is read as v3 ActCode, Encounter.class's bound value set.
    emergency = (encounter_class.get("code") == EMERGENCY_CLASS and encounter_class.get("system") in (None, ACT_CODE)) or any(
        c.get("code") in EMERGENCY_TYPES and c.get("system") == SNOMED for c in types
    )
    return _reading(
        r, "encounter", "health.urgent_care" if emergency else "health.encounter", _Dates(("period.start",)), summary,
        [*types, *_codings(r.get("reasonCode")), *_codings(r.get("serviceType"))], emergency=emergency,
    )


def _condition(r: Mapping[str, Any]) -> Reading:
    status = _display_code(r.get("clinicalStatus"))
    summary = _join(f"Condition: {_display(r.get('code')) or 'not coded'}", status)
    return _reading(
        r, "condition", "health.condition", _Dates(("onsetDateTime", "onsetPeriod.start", "recordedDate")), summary,
        _codings(r.get("code"), r.get("category"), r.get("bodySite")),
    )


def _quantity(value: Any) -> str | None:
    if not isinstance(value, Mapping) or value.get("value") is None:
        return None
    return f"{value['value']} {value.get('unit') or value.get('code') or ''}".strip()


def _observation(r: Mapping[str, Any]) -> Reading:
    # Growth and vital signs carry a quantity; a safeguarding assessment a coded answer.
    value = _quantity(r.get("valueQuantity")) or _display(r.get("valueCodeableConcept"))
    if value is None and isinstance(r.get("valueBoolean"), bool):
        value = "yes" if r["valueBoolean"] else "no"
    components = [
        f"{_display(c.get('code')) or 'component'} {_quantity(c.get('valueQuantity')) or _display(c.get('valueCodeableConcept')) or ''}".strip()
        for c in r.get("component") or []
        if isinstance(c, Mapping)
    ]
    summary = _join(
        f"Observation: {_display(r.get('code')) or 'not coded'}", value, ", ".join(components) or None,
        None if r.get("status") in (None, "final", "amended", "corrected") else _words(r.get("status")),
    )
    return _reading(
        r, "observation", "health.observation", _Dates(("effectiveDateTime", "effectivePeriod.start", "effectiveInstant", "issued")),
        summary, _codings(r.get("code"), r.get("valueCodeableConcept"), r.get("category")),
    )


def _flag(r: Mapping[str, Any]) -> Reading:
    sent = {c.get("code") for c in _codings(r.get("code")) if c.get("system") == ALERT_SYSTEM}
    alert_code = next((code for code in ALERT_CODES if code in sent), None)
    period = r.get("period") or {}
    alert = (
        HealthAlert(
            code=alert_code,
            active=r.get("status") == "active",
            start=_iso_date(period.get("start")),
            end=_iso_date(period.get("end")),
        )
        if alert_code is not None
        else None
    )
    name = ALERT_CODES[alert_code] if alert_code else _display(r.get("code")) or "not coded"
    since = _day(period.get("start"))
    summary = _join(f"Flag: {name}", _words(r.get("status")), f"from {since}" if since else None)
    return _reading(
        r, "flag", "health.flag", _Dates(("period.start",)), summary, _codings(r.get("code"), r.get("category")), alert=alert
    )


def _iso_date(value: Any) -> date | None:
    day = _day(value)
    try:
        return date.fromisoformat(day) if day else None
    except ValueError:
        return None


def _care_team(r: Mapping[str, Any]) -> Reading:
    # The professionals around the child (health visitor, school nurse, GP) join the view's people.
    people = []
    for participant in r.get("participant") or []:
        member = participant.get("member") or {} if isinstance(participant, Mapping) else {}
        name = str(member.get("display") or "").strip()
        role = _display(participant.get("role")) if isinstance(participant, Mapping) else None
        if name:
            people.append(InvolvedPerson(role=role or "care team member", name=name, relationship="professional"))
    roles = sorted({p.role for p in people})
    # CareTeam.name is free text a person typed: the category's coded display is used instead.
    summary = _join(f"Care team: {_display(r.get('category')) or 'care team'}", ", ".join(roles) or None,
                    None if r.get("status") in (None, "active") else _words(r.get("status")))
    return _reading(r, "care_team", "health.care_team", _Dates(("period.start",)), summary, _codings(r.get("category")),
                    people=tuple(people))


def _related_person(r: Mapping[str, Any]) -> Reading:
    relationship = _display(r.get("relationship")) or _display_code(r.get("relationship"))
    names = r.get("name") or []
    name = next((n for n in names if isinstance(n, Mapping) and n.get("use") == "official"), names[0] if names else {})
    full = " ".join([*(name.get("given") or []), name.get("family") or ""]).strip() if isinstance(name, Mapping) else ""
    people = (
        (InvolvedPerson(role="related person", name=full, birth_date=_iso_date(r.get("birthDate")), relationship=relationship),)
        if full
        else ()
    )
    summary = _join("Related person", relationship)
    return _reading(r, "related_person", "health.related_person", _Dates(("period.start",)), summary,
                    _codings(r.get("relationship")), subject_element="patient", people=people)


def _episode_of_care(r: Mapping[str, Any]) -> Reading:
    organisation = (r.get("managingOrganization") or {}).get("display")
    summary = _join(f"Episode of care: {_display(r.get('type')) or 'not coded'}", _words(r.get("status")),
                    f"with {organisation}" if organisation else None)
    return _reading(r, "episode_of_care", "health.episode_of_care", _Dates(("period.start",)), summary,
                    _codings(r.get("type")), subject_element="patient")


def _appointment(r: Mapping[str, Any]) -> Reading:
    what = _display(r.get("serviceType"), r.get("appointmentType"), r.get("specialty"))
    status = r.get("status")
    # "Was not brought": a child does not miss an appointment, an adult fails to bring them.
    said = "was not brought" if status == "noshow" else _words(status)
    candidates = [
        (f"participant[{position}].actor", participant["actor"])
        for position, participant in enumerate(r.get("participant") or [])
        if isinstance(participant, Mapping) and isinstance(participant.get("actor"), Mapping)
        and _names_patient(participant["actor"])
    ]
    # A reference that says it is a Patient first; then the untyped ones (urn:uuid), in order.
    candidates.sort(key=lambda candidate: not _surely_patient(candidate[1]))
    where, subject = candidates[0] if candidates else ("participant", None)
    summary = _join(f"Appointment: {what or 'not coded'}", said, _day(r.get("start")))
    return _reading(r, "appointment", "health.appointment", _Dates(("start", "created")), summary,
                    _codings(r.get("serviceType"), r.get("specialty"), r.get("appointmentType"), r.get("reasonCode")),
                    subject_element=where, subject=subject, alternatives=tuple(candidates[1:]))


def _names_patient(reference: Mapping[str, Any]) -> bool:
    """Whether a Reference may name a Patient: it says so, or (a urn:uuid, untyped) may be one."""
    if reference.get("type") not in (None, "Patient"):
        return False
    return _surely_patient(reference) or str(reference.get("reference") or "").startswith("urn:uuid:")


def _surely_patient(reference: Mapping[str, Any]) -> bool:
    text = str(reference.get("reference") or "")
    return (
        reference.get("type") == "Patient"
        or text.startswith(("Patient/", "Patient?"))
        or (not text and (reference.get("identifier") or {}).get("system") == "https://fhir.nhs.uk/Id/nhs-number")
    )


def _immunization(r: Mapping[str, Any]) -> Reading:
    status = "not given" if r.get("status") == "not-done" else None
    summary = _join(f"Immunisation: {_display(r.get('vaccineCode')) or 'not coded'}", status,
                    _day(r.get("occurrenceDateTime")))
    return _reading(r, "immunization", "health.immunisation", _Dates(("occurrenceDateTime", "recorded")), summary,
                    _codings(r.get("vaccineCode"), r.get("reasonCode")), subject_element="patient")


def _allergy(r: Mapping[str, Any]) -> Reading:
    criticality = r.get("criticality")
    summary = _join(f"Allergy or intolerance: {_display(r.get('code')) or 'not coded'}",
                    f"criticality {criticality}" if criticality else None, _display_code(r.get("clinicalStatus")))
    return _reading(r, "allergy_intolerance", "health.allergy", _Dates(("onsetDateTime", "recordedDate")), summary,
                    _codings(r.get("code")), subject_element="patient")


def _medication(r: Mapping[str, Any]) -> Reading:
    medicine = _display(r.get("medicationCodeableConcept")) or (r.get("medicationReference") or {}).get("display")
    head = {"MedicationRequest": "Medication prescribed", "MedicationStatement": "Medication",
            "MedicationAdministration": "Medication given", "MedicationDispense": "Medication dispensed"}[r["resourceType"]]
    summary = _join(f"{head}: {medicine or 'not coded'}", _words(r.get("status")))
    dates = _Dates(("effectiveDateTime", "effectivePeriod.start", "authoredOn", "dateAsserted", "whenHandedOver", "whenPrepared"))
    return _reading(r, "medication", "health.medication", dates, summary,
                    _codings(r.get("medicationCodeableConcept"), r.get("reasonCode"), r.get("category")))


def _procedure(r: Mapping[str, Any]) -> Reading:
    summary = _join(f"Procedure: {_display(r.get('code')) or 'not coded'}",
                    None if r.get("status") == "completed" else _words(r.get("status")))
    return _reading(r, "procedure", "health.procedure", _Dates(("performedDateTime", "performedPeriod.start")), summary,
                    _codings(r.get("code"), r.get("reasonCode"), r.get("category")))


def _document_reference(r: Mapping[str, Any]) -> Reading:
    # Metadata only: attachment data is dropped before the payload is stored (its contentType,
    # size, hash, title and url are kept, so a practitioner knows what exists and whom to ask).
    content = []
    for entry in r.get("content") or []:
        attachment = dict((entry or {}).get("attachment") or {})
        attachment.pop("data", None)
        content.append({**entry, "attachment": attachment})
    payload = {**r, "content": content} if r.get("content") else None
    author = next((a.get("display") for a in r.get("author") or [] if isinstance(a, Mapping) and a.get("display")), None)
    summary = _join(f"Document: {_display(r.get('type'), r.get('category')) or 'not coded'}",
                    f"from {author}" if author else None, _day(r.get("date")))
    return _reading(r, "document_reference", "health.document", _Dates(("date", "context.period.start")), summary,
                    _codings(r.get("type"), r.get("category"), (r.get("context") or {}).get("event")), payload=payload)


def _questionnaire_response(r: Mapping[str, Any]) -> Reading:
    answered = sum(1 for item in r.get("item") or [] if isinstance(item, Mapping))
    summary = _join("Questionnaire response", _words(r.get("status")), f"{answered} questions answered" if answered else None)
    return _reading(r, "questionnaire_response", "health.questionnaire_response", _Dates(("authored",)), summary, ())


def _generic(r: Mapping[str, Any]) -> Reading | None:
    if r.get("resourceType") not in GENERIC_TYPES:
        return None
    element = next((e for e in _SUBJECT_ELEMENTS if isinstance(r.get(e), Mapping) and _names_patient(r[e])), None)
    if element is None:
        return None
    codes = [r.get(e) for e in _GENERIC_CODES]
    resource_type = str(r.get("resourceType"))
    # "DiagnosticReport" → "Diagnostic report": the type's words, as a practitioner reads them.
    words = "".join(f" {ch.lower()}" if ch.isupper() and i else ch for i, ch in enumerate(resource_type))
    summary = _join(f"{words}: {_display(*codes) or 'not coded'}", _words(r.get("status")) or None)
    dates = _Dates(("effectiveDateTime", "occurrenceDateTime", "authoredOn", "issued", "date", "period.start", "created",
                    "performedDateTime", "recorded", "sent"))
    return _reading(r, "health_record", "health.other", dates, summary, _codings(*codes), subject_element=element)


READERS: Mapping[str, Callable[[Mapping[str, Any]], Reading]] = {
    "Encounter": _encounter,
    "Condition": _condition,
    "Observation": _observation,
    "Flag": _flag,
    "CareTeam": _care_team,
    "RelatedPerson": _related_person,
    "EpisodeOfCare": _episode_of_care,
    "Appointment": _appointment,
    "Immunization": _immunization,
    "AllergyIntolerance": _allergy,
    "MedicationStatement": _medication,
    "MedicationRequest": _medication,
    "MedicationAdministration": _medication,
    "MedicationDispense": _medication,
    "Procedure": _procedure,
    "DocumentReference": _document_reference,
    "QuestionnaireResponse": _questionnaire_response,
}


def read(resource: Mapping[str, Any]) -> Reading | None:
    """Read a resource about a child; None for a type the gateway does not keep, or one naming no Patient."""
    reader = READERS.get(str(resource.get("resourceType")))
    return reader(resource) if reader is not None else _generic(resource)

"""FHIR R4 Consent, in and out: the consent registry's vocabulary as FHIR, and its records as a Bundle.

The gateway passes and receives the plain types below; fhir.resources stays in this package.
nhs_fhir.py reads an inbound Consent into an `InboundConsent` with these mappings; `consent_bundle`
writes the registry's records out with the same ones. An export is for reading, not for pushing
back: its patient is the gateway's own child id, and its performer names a relationship only.

The mapping (gateway → FHIR; an inbound Consent is read the other way):
- status: given → `active` with provision.type `permit`; refused → `rejected` with `deny`;
  withdrawn → `inactive` with `deny`. Inbound, an `active` Consent whose provision.type is
  `deny` is a refusal too (an active directive not to share); `draft` and `proposed` are not
  decisions yet, and `entered-in-error` cannot retract a decision (rows are never changed: the
  source pushes the corrected decision instead), so those three are refused.
- scope: `patient-privacy` of http://terminology.hl7.org/CodeSystem/consentscope; category:
  LOINC 59284-0 "Patient Consent".
- patient: `Patient/<child id>`, the gateway's opaque id, never an identifier of the child.
- dateTime: when the gateway recorded the decision.
- performer: who gave or refused it, never by name: the child (a reference to the same Patient,
  display "self"), or a person with parental responsibility (type RelatedPerson, display their
  relationship to the child, such as "mother"). Inbound, the latter is a RelatedPerson contained
  in the Consent with a coded relationship (its display, or else its code, is kept; its name is not).
- provision.period: the period the decision covers; provision.purpose: one Coding of PURPOSE_SYSTEM;
  provision.actor: one per agency the decision covers (role IRCP, information recipient, and a
  reference whose identifier is of AGENCY_SYSTEM); provision.class: one Coding of CATEGORY_SYSTEM
  per category covered. No actor means every agency; no class means every category.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fhir.resources.R4B import get_fhir_model_class

from .types import InboundRecord

# The gateway's own code systems for what no published one names: its purposes, the agencies of a
# partnership, and its category vocabulary (`<agency>.<kind of fact>`), as the ISA uses them.
PURPOSE_SYSTEM = "urn:macpt-gateway:CodeSystem:purpose"
AGENCY_SYSTEM = "urn:macpt-gateway:CodeSystem:agency"
CATEGORY_SYSTEM = "urn:macpt-gateway:CodeSystem:category"
SCOPE_SYSTEM = "http://terminology.hl7.org/CodeSystem/consentscope"
LOINC_SYSTEM = "http://loinc.org"
PARTICIPATION_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
CONSENT_ACTION_SYSTEM = "http://terminology.hl7.org/CodeSystem/consentaction"

# Who gave or refused consent (the registry's `given_by`), and the relationship of a child giving it.
GIVEN_BY_CHILD = "child"
GIVEN_BY_PARENTAL_RESPONSIBILITY = "parental_responsibility"
SELF = "self"

# The registry's states, as FHIR Consent.status and provision.type.
STATUS_TO_FHIR = {"given": "active", "refused": "rejected", "withdrawn": "inactive"}
PROVISION_TYPE = {"given": "permit", "refused": "deny", "withdrawn": "deny"}
# Inbound: the Consent.status values that are decisions (an active `deny` is read as refused).
FHIR_TO_STATUS = {"active": "given", "rejected": "refused", "inactive": "withdrawn"}

# How an inbound record names a patient by NHS number rather than by a Patient it pushed: the
# gateway finds the child through this client's own records of that NHS number.
NHS_NUMBER_SUBJECT = "nhs-number:"

CONSENT_KIND = "consent"


@dataclass(frozen=True)
class ConsentTerms:
    """What one consent decision says: its state, purpose, giver and scope (plain values).

    `status` is given, refused or withdrawn; `given_by` is child or parental_responsibility, with
    `giver_relationship` "self" or the relationship to the child; empty `agencies` or `categories`
    mean all of them. Codes are as the source sent them: the gateway checks them against its
    vocabulary.
    """

    status: str
    purpose: str
    given_by: str
    giver_relationship: str
    agencies: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    period_start: datetime | None = None
    period_end: datetime | None = None


@dataclass(frozen=True, kw_only=True)
class InboundConsent(InboundRecord):
    """A FHIR Consent pushed by a source: a record about a child whose terms go to the consent registry.

    Its `kind` is "consent"; `category`, `summary` and `payload` are kept only because every
    inbound record has them (the registry stores the terms, never the resource).
    """

    terms: ConsentTerms


@dataclass(frozen=True)
class ConsentSource:
    """The source system's record a consent was imported from."""

    client_id: str
    record_id: str
    version: str


@dataclass(frozen=True)
class ConsentExport:
    """One consent decision of the registry, to be written as a FHIR Consent."""

    id: str
    child_id: str
    terms: ConsentTerms
    recorded_at: datetime
    source: ConsentSource | None = None


def consent_resource(consent: ConsentExport) -> dict[str, Any]:
    """Return a consent decision as a FHIR R4 Consent (a JSON-ready dict)."""
    terms = consent.terms
    patient = f"Patient/{consent.child_id}"
    if terms.given_by == GIVEN_BY_CHILD:
        performer: dict[str, Any] = {"reference": patient, "display": SELF}
    else:
        # A relationship ("mother", "special guardian"), never the person's name.
        performer = {"type": "RelatedPerson"}
        if terms.giver_relationship:
            performer["display"] = terms.giver_relationship
    provision: dict[str, Any] = {"type": PROVISION_TYPE[terms.status]}
    period = {
        name: value.isoformat()
        for name, value in (("start", terms.period_start), ("end", terms.period_end))
        if value is not None
    }
    if period:
        provision["period"] = period
    if terms.agencies:
        provision["actor"] = [
            {
                "role": {"coding": [{"system": PARTICIPATION_SYSTEM, "code": "IRCP", "display": "information recipient"}]},
                "reference": {"identifier": {"system": AGENCY_SYSTEM, "value": agency}, "display": agency},
            }
            for agency in terms.agencies
        ]
    provision["purpose"] = [{"system": PURPOSE_SYSTEM, "code": terms.purpose}]
    if terms.categories:
        provision["class"] = [{"system": CATEGORY_SYSTEM, "code": category} for category in terms.categories]
    resource: dict[str, Any] = {
        "resourceType": "Consent",
        "id": consent.id,
        "meta": {"lastUpdated": consent.recorded_at.isoformat()},
        "status": STATUS_TO_FHIR[terms.status],
        "scope": {"coding": [{"system": SCOPE_SYSTEM, "code": "patient-privacy", "display": "Privacy Consent"}]},
        "category": [{"coding": [{"system": LOINC_SYSTEM, "code": "59284-0", "display": "Patient Consent"}]}],
        "patient": {"reference": patient},
        "dateTime": consent.recorded_at.isoformat(),
        "performer": [performer],
        # R4 requires a policy or a policy rule (ppc-1): the partnership's ISA is the rule.
        "policyRule": {"text": "The safeguarding partnership's information sharing agreement"},
        "provision": provision,
    }
    if consent.source is not None:
        # Where it came from: the source system and its own record id (no personal data).
        resource["identifier"] = [
            {"system": f"urn:macpt-gateway:client:{consent.source.client_id}", "value": consent.source.record_id}
        ]
    return resource


def consent_bundle(consents: Sequence[ConsentExport]) -> dict[str, Any]:
    """Return a collection Bundle of Consents, validated as FHIR R4."""
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"fullUrl": f"urn:uuid:{consent.id}", "resource": consent_resource(consent)} for consent in consents],
    }
    if not bundle["entry"]:
        del bundle["entry"]
    # A child has a handful of consents: validating costs little, and a broken export fails here
    # rather than at the reader.
    get_fhir_model_class("Bundle").model_validate(bundle)
    return bundle

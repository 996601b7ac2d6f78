"""`$person-info-query` on the wire: the SocialCareData MAIS Data Exchange Standard's Parameters.

The standard (SocialCareData/data-exchange-standard, v0.3, docs/operation-definition.md) defines
`POST [base]/Patient/$person-info-query` as a constrained FHIR `$match`:

- request, a `Parameters` with `resource` (a Patient: identifiers, birth date, names) and
  `reason` (a `valueUri`: the legislation the query is made under, e.g.
  https://www.legislation.gov.uk/ukpga/1989/41/section/47);
- response, a `Parameters` with `match` (`valueBoolean`) and, when the person is known, one or
  more `contact` (an Organization to follow up with lawfully).

The standard names nothing else. What this module adds is the gateway's own and is marked so:
`outcome` (an OperationOutcome telling the querier, in the same words whether or not anyone
matched, how to read an answer) and `reference` (a valueIdentifier naming a query referred for
review, to quote when following it up).

Pure: bytes in, our own `PersonQuery` out; plain values in, a FHIR dict out. fhir.resources
validates both ways and never leaves this module.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from stdnum.gb import nhs

# The body is read as the NHS FHIR adapter reads a push: JSON or XML, with its guards (no DOCTYPE,
# bounded nesting) and fhir.resources' validation.
from .nhs_fhir import FHIR_JSON, JSON_TYPES, NHS_NUMBER_SYSTEM, XML_TYPES, _load, _validate
from .types import AdapterError, Issue

OPERATION = "$person-info-query"
MEDIA_TYPES = frozenset(JSON_TYPES | XML_TYPES)
# The standard's parameter names.
RESOURCE, REASON, MATCH, CONTACT = "resource", "reason", "match", "contact"
# The gateway's own (not in the standard).
OUTCOME, REFERENCE = "outcome", "reference"
REFERENCE_SYSTEM = "urn:macpt-gateway:person-info-query"
PATIENT_PATH = f"Parameters.parameter[{RESOURCE}].resource"
REASON_PATH = f"Parameters.parameter[{REASON}]"
# A uri with no whitespace, of a length an audit event can hold.
_REASON = re.compile(r"^\S{1,512}$")
_OWN = frozenset({RESOURCE, REASON})


class UnanswerableQuery(AdapterError):
    """A well-formed Parameters that cannot be answered: a field is missing or not valid (422)."""


@dataclass(frozen=True)
class PersonQuery:
    """What a query asks: its reason, and who it is about (only as matching needs them)."""

    reason: str
    nhs_number: str | None
    family_name: str | None
    given_name: str | None
    birth_date: date | None


@dataclass(frozen=True)
class Contact:
    """Whom to follow up with: an allocated team, its local authority and its lead practitioner."""

    team_name: str
    local_authority: str
    lead_practitioner: str | None


def parse_query(body: bytes, media_type: str) -> PersonQuery:
    """Parse and validate a query's Parameters; AdapterError (400) or UnanswerableQuery (422) says why not."""
    data = _load(body, media_type, expected="Parameters")
    _validate(data, "Parameters")
    issues: list[Issue] = []
    found: dict[str, list[dict[str, Any]]] = {}
    for position, parameter in enumerate(data.get("parameter") or []):
        name = parameter.get("name")
        if name not in _OWN:
            issues.append(
                Issue("error", "not-supported", f"Parameters.parameter[{position}].name",
                      f"unknown parameter; this operation takes only '{RESOURCE}' and '{REASON}'")
            )
            continue
        found.setdefault(name, []).append(parameter)
    reason = _reason(found.get(REASON, []), issues)
    patient = _patient(found.get(RESOURCE, []), issues)
    # The Patient is checked even when the reason is missing, so that one answer names every problem.
    query = None if patient is None else _person(reason or "", patient, issues)
    if issues or query is None:
        raise UnanswerableQuery(issues)
    return query


def _one(parameters: list[dict[str, Any]], name: str, path: str, issues: list[Issue]) -> dict[str, Any] | None:
    if not parameters:
        issues.append(Issue("error", "required", path, f"the '{name}' parameter is required"))
        return None
    if len(parameters) > 1:
        issues.append(Issue("error", "structure", path, f"send the '{name}' parameter once"))
        return None
    return parameters[0]


def _reason(parameters: list[dict[str, Any]], issues: list[Issue]) -> str | None:
    parameter = _one(parameters, REASON, REASON_PATH, issues)
    if parameter is None:
        return None
    value = parameter.get("valueUri")
    if not isinstance(value, str) or not _REASON.match(value):
        issues.append(
            Issue("error", "value", f"{REASON_PATH}.valueUri",
                  "the reason must be a valueUri naming the legislation the query is made under "
                  "(at most 512 characters), e.g. http://www.legislation.gov.uk/ukpga/1989/41/section/47")
        )
        return None
    return value


def _patient(parameters: list[dict[str, Any]], issues: list[Issue]) -> dict[str, Any] | None:
    parameter = _one(parameters, RESOURCE, f"Parameters.parameter[{RESOURCE}]", issues)
    if parameter is None:
        return None
    resource = parameter.get("resource")
    if not isinstance(resource, dict) or resource.get("resourceType") != "Patient":
        issues.append(Issue("error", "structure", PATIENT_PATH, "the 'resource' parameter must carry a Patient"))
        return None
    return resource


def _person(reason: str, patient: dict[str, Any], issues: list[Issue]) -> PersonQuery | None:
    numbers: set[str] = set()
    for position, identifier in enumerate(patient.get("identifier") or []):
        if identifier.get("system") != NHS_NUMBER_SYSTEM:
            continue  # only the NHS number is matched on; other identifiers are not read
        compact = str(nhs.compact(identifier.get("value") or ""))
        if nhs.is_valid(compact):
            numbers.add(compact)
        else:
            issues.append(
                Issue("error", "value", f"{PATIENT_PATH}.identifier[{position}].value",
                      "the NHS number is not valid: it must be 10 digits with a correct Modulus 11 check digit")
            )
    if len(numbers) > 1:
        issues.append(Issue("error", "value", f"{PATIENT_PATH}.identifier", "the Patient carries two NHS numbers; send one"))
    names = patient.get("name") or []
    name = next((n for n in names if n.get("use") == "official"), names[0] if names else {})
    family = name.get("family") or None
    given = next(iter(name.get("given") or ()), None)
    birth = patient.get("birthDate")
    # A partial birth date (a year, a year and month) is valid FHIR but nothing to match on.
    birth_date = date.fromisoformat(birth) if isinstance(birth, str) and len(birth) == 10 else None
    if not numbers and not issues:
        if family is None:
            issues.append(
                Issue("error", "required", f"{PATIENT_PATH}.name",
                      "without an NHS number, the Patient's family name and full birth date are needed to match")
            )
        if birth_date is None:
            issues.append(
                Issue("error", "required", f"{PATIENT_PATH}.birthDate",
                      "without an NHS number, the Patient's family name and full birth date (YYYY-MM-DD) are needed")
            )
    if issues:
        return None
    return PersonQuery(
        reason=reason,
        nhs_number=next(iter(numbers), None),
        family_name=family,
        given_name=given,
        birth_date=birth_date,
    )


def known_answer(contacts: Sequence[Contact]) -> dict[str, Any]:
    """Return the answer for a person known (open to a MACPT here): match true, a contact per allocated team."""
    return _parameters([{"name": MATCH, "valueBoolean": True}, *({"name": CONTACT, "resource": _organization(c)} for c in contacts)])


def unknown_answer(message: str) -> dict[str, Any]:
    """Return the answer for no unique match: match false, and how to read that."""
    return _parameters([{"name": MATCH, "valueBoolean": False}, _outcome(message)])


def referred_answer(reference: str, message: str) -> dict[str, Any]:
    """Return the answer for a query referred for review: no match yet, its reference, and what happens next."""
    identifier = {"system": REFERENCE_SYSTEM, "value": reference}
    return _parameters([_outcome(message), {"name": REFERENCE, "valueIdentifier": identifier}])


def _outcome(message: str) -> dict[str, Any]:
    issue = {"severity": "information", "code": "informational", "diagnostics": message}
    return {"name": OUTCOME, "resource": {"resourceType": "OperationOutcome", "issue": [issue]}}


def _organization(contact: Contact) -> dict[str, Any]:
    organization: dict[str, Any] = {
        "resourceType": "Organization",
        "active": True,
        "name": contact.team_name,
        "partOf": {"display": contact.local_authority},
    }
    if contact.lead_practitioner:
        organization["contact"] = [{"name": {"text": contact.lead_practitioner}}]
    return organization


def _parameters(parameters: list[dict[str, Any]]) -> dict[str, Any]:
    body = {"resourceType": "Parameters", "parameter": parameters}
    get_fhir_model_class("Parameters").model_validate(body)
    return body


__all__ = [
    "CONTACT",
    "FHIR_JSON",
    "MATCH",
    "MEDIA_TYPES",
    "OPERATION",
    "OUTCOME",
    "REFERENCE",
    "REFERENCE_SYSTEM",
    "Contact",
    "PersonQuery",
    "UnanswerableQuery",
    "known_answer",
    "parse_query",
    "referred_answer",
    "unknown_answer",
]

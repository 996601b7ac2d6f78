"""The NHS FHIR R4 adapter: a Bundle (JSON or XML) → identity claims and inbound records.

Validation is fhir.resources' (R4B models, which match R4 for the resources read here); this
module adds what FHIR alone does not check: NHS numbers, references that resolve, ids that make
a repeat recognisable, and the write methods a push may use.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from lxml import etree
from pydantic import ValidationError
from stdnum.gb import nhs

from .types import AdapterError, EntryResponse, EntryResult, IdentityClaim, InboundRecord, Issue, ParsedBundle

NHS_NUMBER_SYSTEM = "https://fhir.nhs.uk/Id/nhs-number"
JSON_TYPES = {"application/fhir+json", "application/json", "application/json+fhir"}
XML_TYPES = {"application/fhir+xml", "application/xml", "application/xml+fhir", "text/xml"}
SUPPORTED = ("Patient", "Encounter")
WRITE_METHODS = {"POST", "PUT"}
# Emergency attendances: v3 ActCode EMER, or SNOMED "Emergency department patient visit" /
# "Emergency room admission". These are what a MACPT most needs to see first.
EMERGENCY_CLASS = "EMER"
EMERGENCY_TYPES = {"4525004", "50849002"}
_PUT_URL = re.compile(r"^(?P<type>[A-Z][A-Za-z]+)/(?P<id>[A-Za-z0-9\-\.]{1,64})$")


def parse_bundle(body: bytes, content_type: str) -> ParsedBundle:
    """Parse and validate a transaction or batch Bundle into claims and records."""
    data = _load(body, content_type, expected="Bundle")
    bundle_type = data.get("type")
    if bundle_type not in ("transaction", "batch"):
        raise AdapterError([Issue("error", "value", "Bundle.type", "Bundle.type must be 'transaction' or 'batch'")])
    _validate(data, "Bundle")
    raw_entries = data.get("entry") or []
    patients = _patient_keys(raw_entries)
    entries = tuple(_entry(index, raw, patients) for index, raw in enumerate(raw_entries))
    issues: tuple[Issue, ...] = ()
    if not entries:
        issues = (Issue("error", "required", "Bundle.entry", "the Bundle has no entries"),)
    return ParsedBundle(bundle_type=bundle_type, entries=entries, issues=issues)


def parse_resource(body: bytes, content_type: str, *, resource_type: str, resource_id: str) -> EntryResult:
    """Parse one resource sent by PUT [type]/[id] into a claim or a record."""
    data = _load(body, content_type, expected=resource_type)
    if data.get("id") not in (None, resource_id):
        raise AdapterError(
            [Issue("error", "value", f"{resource_type}.id", "the resource id must equal the id in the URL")]
        )
    data = {**data, "id": resource_id}
    raw = {"resource": data, "request": {"method": "PUT", "url": f"{resource_type}/{resource_id}"}}
    _validate(data, resource_type, prefix=resource_type)
    entry = _entry(0, raw, {}, prefix=resource_type)
    return entry


def operation_outcome(issues: Sequence[Issue]) -> dict[str, Any]:
    """Return a valid FHIR OperationOutcome for issues."""
    body: dict[str, Any] = {
        "resourceType": "OperationOutcome",
        "issue": [
            {
                "severity": issue.severity,
                "code": issue.code,
                "diagnostics": issue.message,
                **({"expression": [issue.location]} if issue.location else {}),
            }
            for issue in issues
        ]
        or [{"severity": "information", "code": "informational", "diagnostics": "No issues."}],
    }
    get_fhir_model_class("OperationOutcome").model_validate(body)
    return body


def response_bundle(bundle_type: str, entries: Sequence[EntryResponse]) -> dict[str, Any]:
    """Return the transaction-response or batch-response Bundle."""
    body: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": f"{bundle_type}-response",
        "entry": [
            {
                "response": {
                    "status": entry.status,
                    **({"location": entry.location} if entry.location else {}),
                    **({"outcome": operation_outcome(entry.outcome_issues)} if entry.outcome_issues else {}),
                }
            }
            for entry in entries
        ],
    }
    get_fhir_model_class("Bundle").model_validate(body)
    return body


def _media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def _load(body: bytes, content_type: str, *, expected: str) -> dict[str, Any]:
    media = _media_type(content_type)
    if media in JSON_TYPES:
        try:
            data = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise AdapterError([Issue("error", "structure", "", "the body is not valid JSON")]) from None
    elif media in XML_TYPES:
        data = _xml_to_json(body, expected)
    else:
        raise AdapterError(
            [Issue("error", "not-supported", "", "Content-Type must be application/fhir+json or application/fhir+xml")]
        )
    if not isinstance(data, dict) or data.get("resourceType") != expected:
        raise AdapterError([Issue("error", "structure", "", f"the body must be a FHIR {expected} resource")])
    return data


def _xml_to_json(body: bytes, expected: str) -> dict[str, Any]:
    # No entities, no network, no huge trees: an XML push must not reach beyond itself.
    parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False, remove_comments=True)
    try:
        root = etree.fromstring(body, parser=parser)
    except etree.XMLSyntaxError:
        raise AdapterError([Issue("error", "structure", "", "the body is not well-formed XML")]) from None
    if etree.QName(root).localname != expected:
        raise AdapterError([Issue("error", "structure", "", f"the body must be a FHIR {expected} resource")])
    try:
        model = get_fhir_model_class(expected).model_validate_xml(body, xmlparser=parser)
    except ValidationError as exc:
        raise AdapterError(_validation_issues(exc, expected)) from None
    except (KeyError, ValueError, TypeError):
        raise AdapterError([Issue("error", "structure", expected, "the XML is not a valid FHIR R4 resource")]) from None
    return model.model_dump(mode="json", exclude_none=True)


def _validate(data: dict[str, Any], resource_type: str, *, prefix: str | None = None) -> None:
    try:
        get_fhir_model_class(resource_type).model_validate(data)
    except ValidationError as exc:
        raise AdapterError(_validation_issues(exc, prefix or resource_type)) from None
    except KeyError as exc:
        # fhir.resources raises KeyError for a resourceType it does not know.
        raise AdapterError(
            [Issue("error", "not-supported", prefix or resource_type, f"unknown FHIR resource type {exc.args[0]!r}")]
        ) from None


def _validation_issues(exc: ValidationError, root: str) -> list[Issue]:
    issues = []
    for error in exc.errors():
        location = root + "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in error["loc"])
        code = "required" if error["type"] == "missing" else "invalid"
        # error["msg"] says what was expected; error["input"] (the submitted value) is never used.
        issues.append(Issue("error", code, location, error["msg"]))
    return issues


def _patient_keys(raw_entries: list[dict[str, Any]]) -> dict[str, str]:
    """Map every way an entry may refer to a Patient of this Bundle to its source record id."""
    keys: dict[str, str] = {}
    for raw in raw_entries:
        resource = raw.get("resource") or {}
        if resource.get("resourceType") != "Patient":
            continue
        source_id = _source_record_id(resource, raw)
        if source_id is None:
            continue
        if raw.get("fullUrl"):
            keys[raw["fullUrl"]] = source_id
        if resource.get("id"):
            keys[f"Patient/{resource['id']}"] = source_id
    return keys


def _source_record_id(resource: dict[str, Any], raw: dict[str, Any]) -> str | None:
    resource_type = resource.get("resourceType")
    if resource.get("id"):
        return f"{resource_type}/{resource['id']}"
    request = raw.get("request") or {}
    match = _PUT_URL.match(request.get("url") or "")
    if request.get("method") == "PUT" and match and match["type"] == resource_type:
        return f"{resource_type}/{match['id']}"
    full_url = raw.get("fullUrl") or ""
    if full_url.startswith("urn:uuid:"):
        return f"{resource_type}/{full_url}"
    return None


def _source_version(resource: dict[str, Any]) -> str:
    version = (resource.get("meta") or {}).get("versionId")
    if version:
        return str(version)
    # No versionId: the content identifies the version, so an identical repeat is recognised
    # and any change to the resource is a new version.
    canonical = json.dumps(resource, sort_keys=True, separators=(",", ":")).encode()
    return "sha256:" + hashlib.sha256(canonical).hexdigest()[:32]


def _entry(index: int, raw: dict[str, Any], patients: dict[str, str], *, prefix: str | None = None) -> EntryResult:
    path = prefix or f"Bundle.entry[{index}].resource"
    resource = raw.get("resource")
    full_url = raw.get("fullUrl")

    def rejected(resource_type: str, *issues: Issue) -> EntryResult:
        return EntryResult(index, full_url, resource_type, None, None, tuple(issues))

    method = (raw.get("request") or {}).get("method")
    resource_type = resource.get("resourceType", "") if isinstance(resource, dict) else ""
    if method not in WRITE_METHODS:
        return rejected(
            resource_type,
            Issue("error", "not-supported", f"Bundle.entry[{index}].request.method",
                  "only POST and PUT entries are accepted in a push"),
        )
    if not isinstance(resource, dict):
        return rejected("", Issue("error", "required", f"Bundle.entry[{index}].resource", "each entry needs a resource"))
    if resource_type not in SUPPORTED:
        return rejected(
            resource_type,
            Issue("error", "not-supported", path,
                  f"resource type {resource_type} is not accepted yet; supported: {', '.join(SUPPORTED)}"),
        )
    source_id = _source_record_id(resource, raw)
    if source_id is None:
        return rejected(
            resource_type,
            Issue("error", "required", f"{path}.id",
                  "an id (or a PUT url, or a urn:uuid fullUrl) is needed so that a repeated push is recognised"),
        )
    request_url = (raw.get("request") or {}).get("url") or ""
    match = _PUT_URL.match(request_url)
    if method == "PUT" and match and resource.get("id") and match["id"] != resource["id"]:
        return rejected(
            resource_type,
            Issue("error", "value", f"Bundle.entry[{index}].request.url", "the PUT url must name the resource's own id"),
        )
    version = _source_version(resource)
    if resource_type == "Patient":
        return _patient(index, full_url, resource, source_id, version, path)
    return _encounter(index, full_url, resource, source_id, version, path, patients)


def _patient(index, full_url, resource: dict[str, Any], source_id: str, version: str, path: str) -> EntryResult:  # type: ignore[no-untyped-def]
    issues = []
    nhs_numbers = set()
    others = []
    for position, identifier in enumerate(resource.get("identifier") or []):
        system, value = identifier.get("system"), identifier.get("value")
        if system == NHS_NUMBER_SYSTEM:
            compact = (value or "").replace(" ", "")
            if not nhs.is_valid(compact):
                issues.append(
                    Issue("error", "value", f"{path}.identifier[{position}].value",
                          "the NHS number is not valid: it must be 10 digits with a correct Modulus 11 check digit")
                )
            else:
                nhs_numbers.add(compact)
        elif system and value:
            others.append((system, value))
    if len(nhs_numbers) > 1:
        issues.append(Issue("error", "value", f"{path}.identifier",
                            "the Patient carries two different NHS numbers; send one"))
    if issues:
        return EntryResult(index, full_url, "Patient", None, None, tuple(issues))
    name = _preferred(resource.get("name") or [], "official")
    address = _preferred(resource.get("address") or [], "home")
    claim = IdentityClaim(
        source_record_id=source_id,
        source_version=version,
        nhs_number=next(iter(nhs_numbers), None),
        other_identifiers=tuple(others),
        given_names=tuple(name.get("given") or ()),
        family_name=name.get("family"),
        birth_date=_date(resource.get("birthDate")),
        sex=resource.get("gender"),
        postcode=_postcode(address.get("postalCode")),
        address_lines=tuple(address.get("line") or ()),
    )
    return EntryResult(index, full_url, "Patient", claim, None, ())


def _encounter(index, full_url, resource: dict[str, Any], source_id, version, path, patients) -> EntryResult:  # type: ignore[no-untyped-def]
    reference = ((resource.get("subject") or {}).get("reference")) or ""
    location = f"{path}.subject.reference"
    if not reference:
        issue = Issue("error", "required", location, "an Encounter must name its subject, a Patient")
        return EntryResult(index, full_url, "Encounter", None, None, (issue,))
    subject = patients.get(reference)
    if subject is None:
        relative = re.fullmatch(r"Patient/[A-Za-z0-9\-\.]{1,64}", reference)
        if relative:
            subject = reference  # the gateway checks that this client pushed that Patient before
        else:
            code, message = (
                ("value", "the subject must be a Patient")
                if re.fullmatch(r"[A-Z][A-Za-z]+/.+", reference)
                else ("not-found", "the subject reference matches no Patient in this Bundle")
            )
            return EntryResult(index, full_url, "Encounter", None, None, (Issue("error", code, location, message),))
    encounter_class = resource.get("class") or {}
    type_codings = [c for t in resource.get("type") or [] for c in t.get("coding") or []]
    emergency = encounter_class.get("code") == EMERGENCY_CLASS or any(
        c.get("code") in EMERGENCY_TYPES for c in type_codings
    )
    record = InboundRecord(
        source_record_id=source_id,
        source_version=version,
        kind="encounter",
        category="health.urgent_care" if emergency else "health.encounter",
        occurred_at=_datetime((resource.get("period") or {}).get("start")),
        summary=_encounter_summary(encounter_class, type_codings),
        security_labels=frozenset(
            s["code"] for s in (resource.get("meta") or {}).get("security") or [] if s.get("code")
        ),
        status="entered_in_error" if resource.get("status") == "entered-in-error" else "current",
        subject_ref=subject,
        payload=resource,
    )
    return EntryResult(index, full_url, "Encounter", None, record, ())


def _encounter_summary(encounter_class: dict[str, Any], type_codings: list[dict[str, Any]]) -> str:
    # Built from coded displays only: free text in a record may say more than a summary should.
    kind = (encounter_class.get("display") or encounter_class.get("code") or "").strip()
    if kind.lower().endswith("encounter"):  # v3 ActCode displays such as "inpatient encounter"
        kind = kind[: -len("encounter")].strip()
    head = f"{kind[:1].upper()}{kind[1:]} encounter" if kind else "Encounter"
    detail = next((c.get("display") for c in type_codings if c.get("display")), None)
    return f"{head}: {detail}" if detail else head


def _preferred(values: list[dict[str, Any]], use: str) -> dict[str, Any]:
    return next((v for v in values if v.get("use") == use), values[0] if values else {})


def _postcode(value: str | None) -> str | None:
    if not value:
        return None
    compact = re.sub(r"\s+", "", value).upper()
    return f"{compact[:-3]} {compact[-3:]}" if len(compact) > 4 else compact


def _date(value: str | None) -> date | None:
    # A partial birth date (year or year-month) is not a date to match on; a full one has
    # already been checked as a real calendar date by fhir.resources.
    return date.fromisoformat(value) if value and len(value) == 10 else None


def _datetime(value: str | None) -> datetime | None:
    if not value:
        return None
    if len(value) == 10:
        return datetime.fromisoformat(value).replace(tzinfo=UTC)
    if len(value) < 10:
        return None
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)

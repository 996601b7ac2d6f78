"""The NHS FHIR R4 adapter: a Bundle (JSON or XML) → identity claims and inbound records.

Validation is fhir.resources' (R4B models, which match R4 for the resources read here); this
module adds what FHIR alone does not check: NHS numbers, references that resolve, ids that make
a repeat recognisable, and the write methods a push may use.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from lxml import etree
from pydantic import ValidationError
from stdnum.gb import nhs, upn

from .nesting import nests_deeper_than
from .types import (
    AdapterError,
    ClaimEntry,
    Entry,
    EntryOutcome,
    EntryStatus,
    IdentityClaim,
    InboundRecord,
    Issue,
    RecordEntry,
    RejectedEntry,
    Rendered,
    Submission,
    TooManyEntries,
)

NHS_NUMBER_SYSTEM = "https://fhir.nhs.uk/Id/nhs-number"
# The Department for Education publishes no FHIR identifier system for the Unique Pupil Number;
# until it does, the gateway names it with its own URN (README, "Identifiers").
UPN_SYSTEM = "urn:macpt-gateway:id:upn"
# The gateway's own code system for marks about sharing a record. Neither HL7 nor NHS England
# publishes a code for the Children Act 2004 s16LA exception to the duty to share (as amended by
# the Children's Wellbeing and Schools Act 2026), so, as with the UPN, the gateway names it with
# its own URN until one exists.
GATEWAY_CODE_SYSTEM = "urn:macpt-gateway:CodeSystem:sharing"
# The source judged that disclosing the record would be more detrimental to the child than not
# disclosing it (s16LA). Sent as a Coding in the record's meta.security (it restricts sharing) or
# meta.tag; it sets InboundRecord.detrimental and is never a security label itself.
DETRIMENTAL_CODE = "s16la-detrimental"
# Gender identity history (disclosing it can be an offence, Gender Recognition Act 2004 s22): no
# v3 ActCode code covers it (GDIS is genetic disease information), so the gateway's own system
# defines it. Sent in meta.security, it becomes the record's security label of that name.
GENDER_IDENTITY_HISTORY_CODE = "gender-identity-history"
# Codes of GATEWAY_CODE_SYSTEM that are security labels (the policy engine's vocabulary).
_GATEWAY_LABEL_CODES: frozenset[str] = frozenset({GENDER_IDENTITY_HISTORY_CODE})
# The code systems whose meta.security codes the policy knows: HL7 v3 Confidentiality (R, V…) and
# v3 ActCode (PSY, SEX, HIV, ETH, GDIS: genetic disease…). Codes of other systems are kept as labels too (see
# _sharing_marks); these are named in the CapabilityStatement.
CONFIDENTIALITY_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
ACT_CODE_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
JSON_TYPES = {"application/fhir+json", "application/json", "application/json+fhir"}
XML_TYPES = {"application/fhir+xml", "application/xml", "application/xml+fhir", "text/xml"}
SUPPORTED = ("Patient", "Encounter")
WRITE_METHODS = {"POST", "PUT"}
# Emergency attendances: v3 ActCode EMER, or SNOMED "Emergency department patient visit" /
# "Emergency room admission". These are what a MACPT most needs to see first.
EMERGENCY_CLASS = "EMER"
EMERGENCY_TYPES = {"4525004", "50849002"}
_PUT_URL = re.compile(r"^(?P<type>[A-Z][A-Za-z]+)/(?P<id>[A-Za-z0-9\-\.]{1,64})$")
FHIR_JSON = "application/fhir+json"
_STATUS_LINES = {
    EntryStatus.CREATED: "201 Created",
    EntryStatus.UNCHANGED: "200 OK",
    EntryStatus.REJECTED: "422 Unprocessable Entity",
}


def parse_bundle(body: bytes, content_type: str, *, max_entries: int) -> Submission:
    """Parse and validate a transaction or batch Bundle into claims and records."""
    data = _load(body, content_type, expected="Bundle")
    bundle_type = data.get("type")
    if bundle_type not in ("transaction", "batch"):
        raise AdapterError([Issue("error", "value", "Bundle.type", "Bundle.type must be 'transaction' or 'batch'")])
    raw_entries = data.get("entry") or []
    if isinstance(raw_entries, list) and len(raw_entries) > max_entries:
        # Counted before validation, which is where the time goes.
        raise TooManyEntries(
            [Issue("error", "too-long", "Bundle.entry",
                   f"a push may carry at most {max_entries} entries; split the Bundle")]
        )
    _validate(data, "Bundle")
    patients = _patient_keys(raw_entries)
    entries = tuple(_entry(index, raw, patients) for index, raw in enumerate(raw_entries))
    issues: tuple[Issue, ...] = ()
    if not entries:
        issues = (Issue("error", "required", "Bundle.entry", "the Bundle has no entries"),)
    return Submission(atomic=bundle_type == "transaction", label=bundle_type, entries=entries, issues=issues)


def parse_resource(body: bytes, content_type: str, *, resource_type: str, resource_id: str) -> Submission:
    """Parse one resource sent by PUT [type]/[id], as a one-entry transaction."""
    data = _load(body, content_type, expected=resource_type)
    if data.get("id") not in (None, resource_id):
        raise AdapterError(
            [Issue("error", "value", f"{resource_type}.id", "the resource id must equal the id in the URL")]
        )
    data = {**data, "id": resource_id}
    raw = {"resource": data, "request": {"method": "PUT", "url": f"{resource_type}/{resource_id}"}}
    _validate(data, resource_type, prefix=resource_type)
    entry = _entry(0, raw, {}, prefix=resource_type)
    return Submission(atomic=True, label="transaction", entries=(entry,))


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


def entry_location(entry: Entry) -> str | None:
    """Return where a stored entry's version lives: `Type/id/_history/version`."""
    if isinstance(entry, ClaimEntry):
        return f"{entry.claim.source_record_id}/_history/{entry.claim.source_version}"
    if isinstance(entry, RecordEntry):
        return f"{entry.record.source_record_id}/_history/{entry.record.source_version}"
    return None


def response_bundle(submission: Submission, outcomes: Sequence[EntryOutcome]) -> dict[str, Any]:
    """Return the transaction-response or batch-response Bundle, one entry per entry pushed."""
    entries = {entry.index: entry for entry in submission.entries}
    response_entries = []
    for outcome in outcomes:
        location = entry_location(entries[outcome.index]) if outcome.status is not EntryStatus.REJECTED else None
        response_entries.append(
            {
                "response": {
                    "status": _STATUS_LINES[outcome.status],
                    **({"location": location} if location else {}),
                    **({"outcome": operation_outcome(outcome.issues)} if outcome.issues else {}),
                }
            }
        )
    # Not validated with fhir.resources here: the shape is fixed above, and validating our own
    # output would cost as much as validating the push. The tests validate every shape it takes.
    return {"resourceType": "Bundle", "type": f"{submission.label}-response", "entry": response_entries}


def resource_response(submission: Submission, outcome: EntryOutcome) -> Rendered:
    """Return the answer to a PUT of one resource: 201 when stored, 200 when already stored."""
    created = outcome.status is EntryStatus.CREATED
    message = "Stored." if created else "Already stored: this version was pushed before."
    location = entry_location(submission.entries[0])
    return Rendered(
        status_code=201 if created else 200,
        body=operation_outcome([Issue("information", "informational", "", message)]),
        media_type=FHIR_JSON,
        headers={"Location": location} if location else {},
    )


_DOCUMENTATION = {
    "Patient": {
        "documentation": f"Linked to a child exactly by NHS number ({NHS_NUMBER_SYSTEM}, Modulus 11 checked) or "
        f"UPN ({UPN_SYSTEM}, check letter checked), or by a later version of the same Patient id; otherwise by "
        "score over name, birthDate, gender and home address, which then must include a name and a birthDate. "
        "A score between the thresholds puts the pair on the linking review queue."
    },
    "Encounter": {
        "documentation": "A record about a child: its subject must be a Patient in the same Bundle or one this client "
        "pushed before. Security labels are the meta.security codes of v3 Confidentiality "
        f"({CONFIDENTIALITY_SYSTEM}, e.g. R, V) and v3 ActCode ({ACT_CODE_SYSTEM}, e.g. PSY, SEX, HIV, ETH; GDIS is "
        "genetic disease information). Gender identity history, which no v3 code covers, is the Coding "
        f"system {GATEWAY_CODE_SYSTEM}, code {GENDER_IDENTITY_HISTORY_CODE}, in meta.security. "
        "Where the source judges that disclosing the Encounter would be more detrimental to the child than not "
        "(Children Act 2004 s16LA), it marks it with the Coding "
        f"system {GATEWAY_CODE_SYSTEM}, code {DETRIMENTAL_CODE}, in meta.security or meta.tag: the gateway then "
        "withholds it from the child's view, saying why and whom to ask. Any other code of that system is refused "
        "(code-invalid)."
    },
}


def capability_statement(*, token_endpoint: str) -> dict[str, Any]:
    """Return the CapabilityStatement: what this server accepts, and how to authenticate."""
    statement: dict[str, Any] = {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-11-23",
        "kind": "instance",
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "application/fhir+xml"],
        "implementation": {"description": "MACPT interagency data-sharing gateway"},
        "rest": [
            {
                "mode": "server",
                "security": {
                    "service": [
                        {
                            "coding": [
                                {
                                    "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                                    "code": "SMART-on-FHIR",
                                }
                            ]
                        }
                    ],
                    "description": "SMART Backend Services: client credentials with a signed JWT assertion "
                    f"at {token_endpoint}",
                },
                "resource": [
                    {"type": name, "interaction": [{"code": "update"}], **_DOCUMENTATION.get(name, {})}
                    for name in SUPPORTED
                ],
                "interaction": [{"code": "transaction"}, {"code": "batch"}],
            }
        ],
    }
    get_fhir_model_class("CapabilityStatement").model_validate(statement)
    return statement


class NhsFhirAdapter:
    """FHIR R4 Bundles from NHS systems (UK Core Patients with NHS numbers, Encounters)."""

    name = "nhs_fhir"
    media_types = frozenset(JSON_TYPES | XML_TYPES)

    def parse(self, body: bytes, media_type: str, *, max_entries: int) -> Submission:
        """Parse a transaction or batch Bundle."""
        return parse_bundle(body, media_type, max_entries=max_entries)

    def render(self, submission: Submission, outcomes: Sequence[EntryOutcome]) -> Rendered:
        """Render the transaction-response or batch-response Bundle."""
        return Rendered(status_code=200, body=response_bundle(submission, outcomes), media_type=FHIR_JSON)

    def render_error(self, status_code: int, issues: Sequence[Issue]) -> Rendered:
        """Render a refusal as an OperationOutcome."""
        return Rendered(status_code=status_code, body=operation_outcome(issues), media_type=FHIR_JSON)

    def describe(self, *, token_endpoint: str) -> dict[str, Any]:
        """Return the CapabilityStatement."""
        return capability_statement(token_endpoint=token_endpoint)


def _media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


# How deeply a push may nest (JSON objects and arrays, or XML elements). The deepest UK Core
# example is 15 levels as JSON (9 as XML), so 64 leaves room for any real record. The limit
# protects everything after _load: fhir.resources validates, and json.dumps (the content hash)
# serialises, recursively in Python, and the worst FHIR shape measured (Reference.identifier.
# assigner.identifier…) costs about 8 Python frames per level. 64 levels (about 520 frames) then
# stays well inside the default recursion limit of 1000 with the ~30 frames the ASGI stack
# already uses; 125 levels of that shape raise RecursionError even from an empty stack.
_MAX_NESTING = 64


def _too_deep(what: str) -> AdapterError:
    message = f"the {what} nests too deeply (more than {_MAX_NESTING} levels)"
    return AdapterError([Issue("error", "structure", "", message)])


def _load(body: bytes, content_type: str, *, expected: str) -> dict[str, Any]:
    media = _media_type(content_type)
    if media in JSON_TYPES:
        what = "JSON"
        # No depth pre-scan before json.loads: its C scanner counts its own nesting against the
        # recursion limit and raises a clean RecursionError (after at most ~1000 levels, whatever
        # the body's size), so catching that is enough. A string-aware pre-scan would have to be
        # a Python loop over up to 10 MB on every push, for nothing the parser does not already
        # tell us. What json.loads does accept is then bounded by nests_deeper_than below.
        try:
            data = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise AdapterError([Issue("error", "structure", "", "the body is not valid JSON")]) from None
        except RecursionError:
            raise _too_deep(what) from None
    elif media in XML_TYPES:
        what = "XML"
        data = _xml_to_json(body, expected)
    else:
        raise AdapterError(
            [Issue("error", "not-supported", "", "Content-Type must be application/fhir+json or application/fhir+xml")]
        )
    if isinstance(data, (dict, list)) and nests_deeper_than(data, _MAX_NESTING):
        raise _too_deep(what)
    if not isinstance(data, dict) or data.get("resourceType") != expected:
        raise AdapterError([Issue("error", "structure", "", f"the body must be a FHIR {expected} resource")])
    return data


# The XML DOCTYPE guard is hand-written: lxml/libxml2 have no "forbid DTD" switch (load_dtd=False
# and resolve_entities=False stop loading external DTDs and substituting entities, but the
# internal subset is still parsed), and defusedxml's lxml support is deprecated (and only checked
# after parsing). FHIR XML never carries a DTD, so any DOCTYPE is refused before libxml2 sees it.
_DOCTYPE_REFUSED = Issue("error", "security", "", "a DOCTYPE declaration is not accepted in a FHIR XML push")
_NOT_WELL_FORMED = Issue("error", "structure", "", "the body is not well-formed XML")
# "<!doctype" as bytes in every encoding libxml2 may be allowed to decode the body with (see
# _XML_ENCODINGS): UTF-8, and the ASCII-transparent encodings, share the first form.
_DOCTYPE_FORMS = tuple(
    "<!doctype".encode(codec) for codec in ("utf-8", "utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be")
)
# Byte-order marks, then the XML spec's (Appendix F) unmarked UTF-16/32 forms of "<" or "<?".
_XML_BOMS = (
    (b"\xff\xfe\x00\x00", "utf-32-le"), (b"\x00\x00\xfe\xff", "utf-32-be"), (b"\xef\xbb\xbf", "utf-8"),
    (b"\xff\xfe", "utf-16-le"), (b"\xfe\xff", "utf-16-be"),
)
_XML_UNMARKED = (
    (b"\x00\x00\x00<", "utf-32-be"), (b"<\x00\x00\x00", "utf-32-le"),
    (b"\x00<\x00?", "utf-16-be"), (b"<\x00?\x00", "utf-16-le"),
)
# Declared encodings accepted (normalised: lower case, no "-" or "_"). FHIR requires UTF-8; these
# are the ones whose "<!doctype" is one of _DOCTYPE_FORMS. Any other (UTF-7, Shift_JIS, EBCDIC…)
# could hide a DOCTYPE from the byte scan, and libxml2 honours the declaration, so it is refused.
_XML_ENCODINGS = {
    "utf8", "usascii", "ascii", "iso88591", "latin1", "utf16", "utf16le", "utf16be", "utf32", "utf32le", "utf32be",
}
_XML_DECLARED_ENCODING = re.compile(r"""\s*<\?xml\s[^>]*?\bencoding\s*=\s*["']?([^"'\s?>]*)""")


def _refuse_doctype(body: bytes) -> None:
    """Refuse, before any parsing, an XML body that has or could hide a DOCTYPE."""
    # Anywhere in the body, in any case: "<!" can only be markup there (text must escape "<"), so
    # at worst a "<!DOCTYPE" inside a comment or CDATA is refused too. bytes.lower() folds ASCII
    # letters only, which is right for the UTF-16/32 forms as well.
    lowered = body.lower()
    if any(form in lowered for form in _DOCTYPE_FORMS):
        raise AdapterError([_DOCTYPE_REFUSED])
    bom, codec = next(((b, c) for b, c in _XML_BOMS if body.startswith(b)), (b"", ""))
    codec = codec or next((c for start, c in _XML_UNMARKED if body.startswith(start)), "utf-8")
    head = body[len(bom):len(bom) + 1024].decode(codec, errors="ignore")
    if head.strip() and not head.lstrip(" \t\r\n").startswith("<"):
        # Not XML in any encoding the scan covers (EBCDIC, for one, is autodetected by some libxml2 builds).
        raise AdapterError([_NOT_WELL_FORMED])
    declared = _XML_DECLARED_ENCODING.match(head)
    if declared and re.sub(r"[-_]", "", declared[1].lower()) not in _XML_ENCODINGS:
        raise AdapterError([Issue("error", "not-supported", "", "the XML must be encoded in UTF-8 (or UTF-16)")])


def _xml_nests_too_deeply(root: Any) -> bool:
    depth = 0
    for event, _element in etree.iterwalk(root, events=("start", "end")):
        depth += 1 if event == "start" else -1
        if depth > _MAX_NESTING:
            return True
    return False


def _xml_to_json(body: bytes, expected: str) -> dict[str, Any]:
    _refuse_doctype(body)
    # No DTD, no entities, no network, no huge trees: an XML push must not reach beyond itself.
    parser = etree.XMLParser(
        load_dtd=False, resolve_entities=False, no_network=True, huge_tree=False, remove_comments=True
    )
    try:
        root = etree.fromstring(body, parser=parser)
    except etree.XMLSyntaxError as exc:
        # Without huge_tree libxml2 itself stops at 256 levels ("Excessive depth in document").
        if "excessive depth" in str(exc).lower():
            raise _too_deep("XML") from None
        raise AdapterError([_NOT_WELL_FORMED]) from None
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None or docinfo.externalDTD is not None:
        raise AdapterError([_DOCTYPE_REFUSED])  # belt and braces: _refuse_doctype should have caught it
    if _xml_nests_too_deeply(root):
        raise _too_deep("XML")  # before fhir.resources reads (and dumps) the tree recursively
    if etree.QName(root).localname != expected:
        raise AdapterError([Issue("error", "structure", "", f"the body must be a FHIR {expected} resource")])
    try:
        model = get_fhir_model_class(expected).model_validate_xml(body, xmlparser=parser)
        data: dict[str, Any] = model.model_dump(mode="json", exclude_none=True)
    except RecursionError:
        raise _too_deep("XML") from None
    except ValidationError as exc:
        raise AdapterError(_validation_issues(exc, expected)) from None
    except (KeyError, ValueError, TypeError):
        raise AdapterError([Issue("error", "structure", expected, "the XML is not a valid FHIR R4 resource")]) from None
    return data


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
    except (TypeError, AttributeError):
        # fhir.resources looks nested resources up by their resourceType before validating them,
        # and fails with a TypeError when one is not a string (e.g. a list).
        raise AdapterError(
            [Issue("error", "structure", prefix or resource_type,
                   "every resource must have a resourceType that is the name of a FHIR resource")]
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


def _entry(index: int, raw: dict[str, Any], patients: Mapping[str, str], *, prefix: str | None = None) -> Entry:
    path = prefix or f"Bundle.entry[{index}].resource"
    resource = raw.get("resource")

    def rejected(*issues: Issue) -> RejectedEntry:
        return RejectedEntry(index, path, tuple(issues))

    method = (raw.get("request") or {}).get("method")
    resource_type = resource.get("resourceType", "") if isinstance(resource, dict) else ""
    if method not in WRITE_METHODS:
        return rejected(
            Issue("error", "not-supported", f"Bundle.entry[{index}].request.method",
                  "only POST and PUT entries are accepted in a push"),
        )
    if not isinstance(resource, dict):
        return rejected(Issue("error", "required", f"Bundle.entry[{index}].resource", "each entry needs a resource"))
    if resource_type not in SUPPORTED:
        return rejected(
            Issue("error", "not-supported", path,
                  f"resource type {resource_type} is not accepted yet; supported: {', '.join(SUPPORTED)}"),
        )
    source_id = _source_record_id(resource, raw)
    if source_id is None:
        return rejected(
            Issue("error", "required", f"{path}.id",
                  "an id (or a PUT url, or a urn:uuid fullUrl) is needed so that a repeated push is recognised"),
        )
    request_url = (raw.get("request") or {}).get("url") or ""
    match = _PUT_URL.match(request_url)
    if method == "PUT" and match and resource.get("id") and match["id"] != resource["id"]:
        return rejected(
            Issue("error", "value", f"Bundle.entry[{index}].request.url", "the PUT url must name the resource's own id"),
        )
    version = _source_version(resource)
    if resource_type == "Patient":
        return _patient(index, resource, source_id, version, path)
    return _encounter(index, resource, source_id, version, path, patients)


def _patient(index: int, resource: dict[str, Any], source_id: str, version: str, path: str) -> Entry:
    issues: list[Issue] = []
    nhs_numbers: set[str] = set()
    upns: set[str] = set()
    others: list[tuple[str, str]] = []
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
        elif system == UPN_SYSTEM:
            compact = (value or "").replace(" ", "").upper()
            if not upn.is_valid(compact):
                issues.append(
                    Issue("error", "value", f"{path}.identifier[{position}].value",
                          "the UPN is not valid: it must be 13 characters with a correct check letter")
                )
            else:
                upns.add(compact)
        elif system and value:
            others.append((system, value))
    if len(nhs_numbers) > 1:
        issues.append(Issue("error", "value", f"{path}.identifier",
                            "the Patient carries two different NHS numbers; send one"))
    if len(upns) > 1:
        issues.append(Issue("error", "value", f"{path}.identifier", "the Patient carries two different UPNs; send one"))
    if issues:
        return RejectedEntry(index, path, tuple(issues))
    name = _preferred(resource.get("name") or [], "official")
    address = _preferred(resource.get("address") or [], "home")
    claim = IdentityClaim(
        source_record_id=source_id,
        source_version=version,
        nhs_number=next(iter(nhs_numbers), None),
        upn=next(iter(upns), None),
        other_identifiers=tuple(others),
        given_names=tuple(name.get("given") or ()),
        family_name=name.get("family"),
        birth_date=_date(resource.get("birthDate")),
        sex=resource.get("gender"),
        postcode=_postcode(address.get("postalCode")),
        address_lines=tuple(address.get("line") or ()),
    )
    return ClaimEntry(index, path, claim)


def _encounter(
    index: int, resource: dict[str, Any], source_id: str, version: str, path: str, patients: Mapping[str, str]
) -> Entry:
    reference = ((resource.get("subject") or {}).get("reference")) or ""
    location = f"{path}.subject.reference"
    if not reference:
        issue = Issue("error", "required", location, "an Encounter must name its subject, a Patient")
        return RejectedEntry(index, path, (issue,))
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
            return RejectedEntry(index, path, (Issue("error", code, location, message),))
    try:
        occurred_at = _utc(_datetime((resource.get("period") or {}).get("start")))
    except OverflowError:
        issue = Issue("error", "value", f"{path}.period.start", "the start must lie between the years 1 and 9999 in UTC")
        return RejectedEntry(index, path, (issue,))
    labels, detrimental, mark_issues = _sharing_marks(resource, path)
    if mark_issues:
        return RejectedEntry(index, path, tuple(mark_issues))
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
        occurred_at=occurred_at,
        summary=_encounter_summary(encounter_class, type_codings),
        security_labels=labels,
        entered_in_error=resource.get("status") == "entered-in-error",
        subject_ref=subject,
        payload=resource,
        detrimental=detrimental,
    )
    return RecordEntry(index, path, location, record)


_UNKNOWN_MARK = (
    f"unknown code of {GATEWAY_CODE_SYSTEM}: the codes accepted are "
    + ", ".join(repr(c) for c in sorted({DETRIMENTAL_CODE} | _GATEWAY_LABEL_CODES))
    + f" ({DETRIMENTAL_CODE!r}: disclosure judged more detrimental to the child than not, Children Act 2004 s16LA)"
)


def _sharing_marks(resource: dict[str, Any], path: str) -> tuple[frozenset[str], bool, list[Issue]]:
    """Read a record's meta: its security labels, whether it bears the s16LA mark, and any issues.

    Labels are meta.security codes (the v3 Confidentiality and ActCode systems are the ones the
    policy knows; a code of another system, or none, is kept too); the s16LA mark is a Coding of the gateway's own system in
    meta.security or meta.tag. Any other code of that system is refused rather than ignored: a
    mistyped mark must not let a record the source meant to withhold through.
    """
    meta = resource.get("meta") or {}
    labels: set[str] = set()
    detrimental = False
    issues: list[Issue] = []
    for element in ("security", "tag"):
        for position, coding in enumerate(meta.get(element) or []):
            system, code = coding.get("system"), coding.get("code")
            if system == GATEWAY_CODE_SYSTEM:
                if code == DETRIMENTAL_CODE:
                    detrimental = True
                elif code in _GATEWAY_LABEL_CODES:
                    if element == "security":  # a tag is not a security label
                        labels.add(code)
                else:
                    issues.append(Issue("error", "code-invalid", f"{path}.meta.{element}[{position}]", _UNKNOWN_MARK))
            elif element == "security" and code:
                # Any other system's code is kept, as before: the engine acts only on the codes it
                # knows, and dropping a local system's "PSY" would show the record more widely.
                labels.add(code)
    return frozenset(labels), detrimental, issues


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


# The seconds of a FHIR dateTime: 60 (a leap second) is valid FHIR, and fhir.resources accepts it.
_LEAP_SECOND = re.compile(r"(?<=T\d\d:\d\d:)60(?:\.\d+)?")


def _datetime(value: str | None) -> datetime | None:
    if not value:
        return None
    if len(value) == 10:
        return datetime.fromisoformat(value).replace(tzinfo=UTC)
    if len(value) < 10:
        return None
    # A Python datetime cannot hold second 60. A leap second is the last instant of its minute,
    # so it becomes :59.999999 of the same minute, day and offset (order is kept; no rollover).
    value = _LEAP_SECOND.sub("59.999999", value, count=1)
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _utc(value: datetime | None) -> datetime | None:
    """Return the instant in UTC; raise OverflowError for the few valid FHIR instants that lie
    outside the years 1 to 9999 once in UTC (e.g. 0001-01-01T00:00:00+14:00)."""
    return value.astimezone(UTC) if value is not None else None

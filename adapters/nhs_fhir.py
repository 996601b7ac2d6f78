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
from email.utils import format_datetime
from typing import Any, Literal
from urllib.parse import parse_qsl

from fhir.resources.R4B import get_fhir_model_class
from lxml import etree
from pydantic import ValidationError
from stdnum.gb import nhs, upn

from .fhir_consent import (
    AGENCY_SYSTEM,
    CATEGORY_SYSTEM,
    CONSENT_ACTION_SYSTEM,
    CONSENT_KIND,
    FHIR_TO_STATUS,
    GIVEN_BY_CHILD,
    GIVEN_BY_PARENTAL_RESPONSIBILITY,
    NHS_NUMBER_SUBJECT,
    PURPOSE_SYSTEM,
    SELF,
    ConsentTerms,
    InboundConsent,
)
from .nesting import nests_deeper_than
from . import ukcore
from .sensitivity import DEFAULT_CLASSIFIER, Classifier
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
# The resource types read by a reader of their own, then those read generically (adapters/ukcore.py).
# A generic one is accepted only when its subject, patient, for or beneficiary names a Patient.
SUPPORTED = ("Patient", "Consent", *ukcore.READERS)
GENERIC = ukcore.GENERIC_TYPES
WRITE_METHODS = {"POST", "PUT"}
_PUT_URL = re.compile(r"^(?P<type>[A-Z][A-Za-z]+)/(?P<id>[A-Za-z0-9\-\.]{1,64})$")
FHIR_JSON = "application/fhir+json"
_STATUS_LINES = {
    EntryStatus.CREATED: "201 Created",
    EntryStatus.UNCHANGED: "200 OK",
    EntryStatus.REJECTED: "422 Unprocessable Entity",
}


def parse_bundle(
    body: bytes, content_type: str, *, max_entries: int, classifier: Classifier = DEFAULT_CLASSIFIER
) -> Submission:
    """Parse and validate a transaction or batch Bundle into claims and records (labelled by `classifier`)."""
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
    entries = tuple(_entry(index, raw, patients, classifier) for index, raw in enumerate(raw_entries))
    issues: tuple[Issue, ...] = ()
    if not entries:
        issues = (Issue("error", "required", "Bundle.entry", "the Bundle has no entries"),)
    return Submission(atomic=bundle_type == "transaction", label=bundle_type, entries=entries, issues=issues)


def parse_resource(
    body: bytes,
    content_type: str,
    *,
    resource_type: str,
    resource_id: str,
    classifier: Classifier = DEFAULT_CLASSIFIER,
) -> Submission:
    """Parse one resource sent by PUT [type]/[id], as a one-entry transaction."""
    data = _load(body, content_type, expected=resource_type)
    if data.get("id") not in (None, resource_id):
        raise AdapterError(
            [Issue("error", "value", f"{resource_type}.id", "the resource id must equal the id in the URL")]
        )
    data = {**data, "id": resource_id}
    raw = {"resource": data, "request": {"method": "PUT", "url": f"{resource_type}/{resource_id}"}}
    _validate(data, resource_type, prefix=resource_type)
    entry = _entry(0, raw, {}, classifier, prefix=resource_type)
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
    version = _entry_version(entry)
    return None if version is None else f"{version[0]}/_history/{version[1]}"


def _entry_version(entry: Entry) -> tuple[str, str] | None:
    """Return the (source record id, version) an entry stores, or None for a rejected entry."""
    if isinstance(entry, ClaimEntry):
        return entry.claim.source_record_id, entry.claim.source_version
    if isinstance(entry, RecordEntry):
        return entry.record.source_record_id, entry.record.source_version
    return None


# What a client may ask to get back for what it stored (FHIR R4 http.html, "Prefer"): nothing,
# the resource as stored, or an OperationOutcome (the default, as before Prefer was read).
ReturnPreference = Literal["minimal", "representation", "OperationOutcome"]
RETURN_MINIMAL: ReturnPreference = "minimal"
RETURN_REPRESENTATION: ReturnPreference = "representation"
RETURN_OUTCOME: ReturnPreference = "OperationOutcome"
_FHIR_ID = re.compile(r"[A-Za-z0-9\-\.]{1,64}")


def _etag(version: str) -> str:
    return f'W/"{version}"'


def _instant(moment: datetime) -> str:
    """Return a FHIR instant (UTC, milliseconds)."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def response_bundle(
    submission: Submission, outcomes: Sequence[EntryOutcome], *, prefer: ReturnPreference = RETURN_OUTCOME
) -> dict[str, Any]:
    """Return the transaction-response or batch-response Bundle, one entry per entry pushed.

    A stored entry's response names its version (location, and etag and lastModified when the
    gateway said when it stored it). `prefer` representation adds each stored resource; minimal
    leaves out the outcome of a stored entry, never that of a refused one, which says what was wrong.
    """
    entries = {entry.index: entry for entry in submission.entries}
    response_entries = []
    for outcome in outcomes:
        entry = entries[outcome.index]
        stored = outcome.status is not EntryStatus.REJECTED
        version = _entry_version(entry) if stored else None
        response: dict[str, Any] = {"status": _STATUS_LINES[outcome.status]}
        if version is not None:
            response["location"] = f"{version[0]}/_history/{version[1]}"
            if outcome.last_modified is not None:
                response["etag"] = _etag(version[1])
                response["lastModified"] = _instant(outcome.last_modified)
        if outcome.issues and (prefer != RETURN_MINIMAL or not stored):
            response["outcome"] = operation_outcome(outcome.issues)
        resource = _stored_resource(entry, outcome) if stored and prefer == RETURN_REPRESENTATION else None
        response_entries.append({"resource": resource, "response": response} if resource else {"response": response})
    # Not validated with fhir.resources here: the shape is fixed above, and validating our own
    # output would cost as much as validating the push. The tests validate every shape it takes.
    return {"resourceType": "Bundle", "type": f"{submission.label}-response", "entry": response_entries}


def resource_response(
    submission: Submission, outcome: EntryOutcome, *, prefer: ReturnPreference = RETURN_OUTCOME
) -> Rendered:
    """Return the answer to a PUT of one resource: 201 when stored, 200 when already stored.

    Location names the stored version; ETag and Last-Modified come with it when the gateway said
    when it stored that version. The body is an OperationOutcome, or with `prefer` representation
    the resource as stored. (minimal: the caller sends no body; the status and headers are these.)
    """
    created = outcome.status is EntryStatus.CREATED
    message = "Stored." if created else "Already stored: this version was pushed before."
    entry = submission.entries[0]
    version = _entry_version(entry)
    headers: dict[str, str] = {}
    if version is not None:
        headers["Location"] = f"{version[0]}/_history/{version[1]}"
        if outcome.last_modified is not None:
            headers["ETag"] = _etag(version[1])
            headers["Last-Modified"] = format_datetime(outcome.last_modified.astimezone(UTC), usegmt=True)
    resource = _stored_resource(entry, outcome) if prefer == RETURN_REPRESENTATION else None
    return Rendered(
        status_code=201 if created else 200,
        body=resource or operation_outcome([Issue("information", "informational", "", message)]),
        media_type=FHIR_JSON,
        headers=headers,
    )


def deletion_response(*, already: bool) -> Rendered:
    """Return the answer to a DELETE of a record: 200 with an OperationOutcome saying what happened."""
    message = (
        "Already deleted: the record was retracted as entered in error before; nothing changed."
        if already
        else "Deleted: the record is retracted as entered in error and no longer shown in the child's view. "
        "A new version pushed later is in force again."
    )
    return Rendered(
        status_code=200, body=operation_outcome([Issue("information", "informational", "", message)]), media_type=FHIR_JSON
    )


def _stored_resource(entry: Entry, outcome: EntryOutcome) -> dict[str, Any] | None:
    """Return the resource an entry stored, with meta.versionId and meta.lastUpdated; None if there is none.

    A record is its payload as stored (what the reader kept of it: a DocumentReference without its
    attachment data); a Patient is what the gateway keeps of it (identifiers, official name,
    gender, birth date, home address). For a repeat (unchanged) this is what this push sent: the
    same version as the one stored before, so there is no need to read it back.
    """
    if isinstance(entry, ClaimEntry):
        resource = _claim_resource(entry.claim)
        version = entry.claim.source_version
    elif isinstance(entry, RecordEntry) and isinstance(entry.record.payload.get("resourceType"), str):
        resource = dict(entry.record.payload)
        version = entry.record.source_version
    else:
        return None
    meta = {k: v for k, v in (resource.get("meta") or {}).items() if k not in ("versionId", "lastUpdated")}
    if _FHIR_ID.fullmatch(version):
        # A version the gateway derived from the content ("sha256:…") is no FHIR id: the ETag and
        # Location carry it, meta.versionId cannot.
        meta["versionId"] = version
    if outcome.last_modified is not None:
        meta["lastUpdated"] = _instant(outcome.last_modified)
    resource.pop("meta", None)
    return {**resource, "meta": meta} if meta else resource


def _claim_resource(claim: IdentityClaim) -> dict[str, Any]:
    """Return a Patient of what the gateway stores of an identity claim."""
    identifiers = [{"system": NHS_NUMBER_SYSTEM, "value": claim.nhs_number}] if claim.nhs_number else []
    identifiers += [{"system": UPN_SYSTEM, "value": claim.upn}] if claim.upn else []
    identifiers += [{"system": system, "value": value} for system, value in claim.other_identifiers]
    local_id = claim.source_record_id.removeprefix("Patient/")
    name = {
        "use": "official",
        **({"family": claim.family_name} if claim.family_name else {}),
        **({"given": list(claim.given_names)} if claim.given_names else {}),
    }
    address = {
        "use": "home",
        **({"line": list(claim.address_lines)} if claim.address_lines else {}),
        **({"postalCode": claim.postcode} if claim.postcode else {}),
    }
    resource: dict[str, Any] = {
        "resourceType": "Patient",
        **({"id": local_id} if _FHIR_ID.fullmatch(local_id) else {}),
        **({"identifier": identifiers} if identifiers else {}),
        **({"name": [name]} if len(name) > 1 else {}),
        **({"gender": claim.sex} if claim.sex else {}),
        **({"birthDate": claim.birth_date.isoformat()} if claim.birth_date else {}),
        **({"address": [address]} if len(address) > 1 else {}),
    }
    return resource


_RECORD_RULES = (
    "A record about a child: the Patient it names (a reference to a Patient in the same Bundle, by fullUrl or "
    "Patient/id, or to one this client pushed before) must be linked. Status entered-in-error (or a "
    "verificationStatus of entered-in-error) retracts the record. Security labels are the meta.security codes of v3 "
    f"Confidentiality ({CONFIDENTIALITY_SYSTEM}, R, V) and v3 ActCode ({ACT_CODE_SYSTEM}: the information "
    "sensitivity codes such as PSY, SEX, STD, HIV, ETH, SDV, BH, MH, SUD; GDIS is genetic disease information). "
    "Gender identity history, which no v3 code covers, is the Coding "
    f"system {GATEWAY_CODE_SYSTEM}, code {GENDER_IDENTITY_HISTORY_CODE}, in meta.security. The gateway adds the "
    "labels its sensitivity code list gives the record's codes (SNOMED CT, ICD-10), never removing the source's. "
    "Where the source judges that disclosing the record would be more detrimental to the child than not "
    f"(Children Act 2004 s16LA), it marks it with the Coding system {GATEWAY_CODE_SYSTEM}, code {DETRIMENTAL_CODE}, "
    "in meta.security or meta.tag: the gateway then withholds it from the child's view, saying why and whom to "
    "ask. Any other code of that system is refused (code-invalid)."
)
_GENERIC_DOCUMENTATION = (
    "Read generically (health.other; summary: the type and its first coded display): accepted when its subject, "
    "patient, for or beneficiary names a Patient, refused (not-supported) otherwise. " + _RECORD_RULES
)
_DOCUMENTATION = {
    "Patient": {
        "documentation": f"Linked to a child exactly by NHS number ({NHS_NUMBER_SYSTEM}, Modulus 11 checked) or "
        f"UPN ({UPN_SYSTEM}, check letter checked), or by a later version of the same Patient id; otherwise by "
        "score over name, birthDate, gender and home address, which then must include a name and a birthDate. "
        "A score between the thresholds puts the pair on the linking review queue."
    },
    "Encounter": {
        "documentation": "An attendance. class EMER, or a type of SNOMED CT 4525004 or 50849002, files it as "
        "urgent care (health.urgent_care), shown first; otherwise health.encounter. Summary: class, type, reason, "
        "service provider and discharge disposition (coded displays only). " + _RECORD_RULES
    },
    "Flag": {
        "documentation": "health.flag. A CP-IS style flag is a Flag whose code is a Coding of "
        f"{ukcore.ALERT_SYSTEM} ({', '.join(ukcore.ALERT_CODES)}): where disclosed, the child's view shows it "
        "among its key facts (status active and period covering today). " + _RECORD_RULES
    },
    "CareTeam": {
        "documentation": "health.care_team. Its participants' roles and display names (health visitor, school nurse, "
        "GP) join the view's people where the record is disclosed. " + _RECORD_RULES
    },
    "RelatedPerson": {
        "documentation": "health.related_person, about the Patient named by patient. The person's name, birth date "
        "and coded relationship join the view's people where the record is disclosed. " + _RECORD_RULES
    },
    "Appointment": {
        "documentation": "health.appointment, about the Patient among its participants' actors. status noshow is "
        "shown as 'was not brought'. " + _RECORD_RULES
    },
    "DocumentReference": {
        "documentation": "health.document. Metadata only: attachment data is dropped before the record is stored "
        "(its contentType, size, hash, title and url are kept). " + _RECORD_RULES
    },
    "Consent": {
        "documentation": "A consent decision about sharing a child's records, stored in the gateway's consent registry "
        "(the client must be registered for the record kind 'consent'). patient: a Patient in the same Bundle, one "
        f"this client pushed before, or an NHS number identifier ({NHS_NUMBER_SYSTEM}) of a Patient this client "
        "pushed before. status: active (given; refused when provision.type is deny), rejected (refused) or inactive "
        "(withdrawn); draft, proposed and entered-in-error are refused. performer: who decided: the Patient itself "
        "(a competent child), or a RelatedPerson contained in the Consent (reference '#id') with a coded "
        "relationship (a person with parental responsibility; the relationship's display or code is kept, never a "
        f"name). provision.purpose: one Coding of {PURPOSE_SYSTEM} (child_protection or family_help). "
        f"provision.actor: the agencies covered, each a reference whose identifier has system {AGENCY_SYSTEM} "
        "(health, police, education, social_care); none means every agency. provision.class: the categories "
        f"covered, Codings of {CATEGORY_SYSTEM} (the ISA's categories, e.g. health.encounter); none means every "
        "category. provision.period: when it applies (from dateTime, if no start). Nested provisions, provision.code, "
        "data, dataPeriod and securityLabel are refused (they would change what the decision covers); "
        "provision.action, if sent, must include disclose or access. A repeat of the same version is acknowledged, "
        "not stored twice; a new version is a new decision in the registry's history."
    },
}


_REST_DOCUMENTATION = (
    "Responses come in the format asked for: _format (json, xml or a FHIR media type) wins over Accept; with "
    "neither, an XML push is answered in XML; Accept */* means JSON; an Accept naming no format this server "
    "writes is 406. Errors are OperationOutcomes in the same format. Prefer: return=minimal | representation | "
    "OperationOutcome (the default) on PUT and on Bundle entries (a refused entry always keeps its outcome). A "
    "stored version is answered with Location (Type/id/_history/version), ETag W/\"version\" and Last-Modified (on "
    "Bundle entries: response.etag and response.lastModified). A version is meta.versionId, or a hash of the "
    "content when none is sent. A subject or patient may be a conditional reference "
    f"Patient?identifier={NHS_NUMBER_SYSTEM}|<number>: the Bundle's Patient with that NHS number, else one this "
    "client pushed before; two matches are refused (multiple-matches), and any other search is not-supported. "
    "urn:uuid references name entries of the same Bundle."
)
# The SocialCareData Multi-Agency Information Sharing Data Exchange Standard (v0.3) publishes its
# operation as a document, not a FHIR canonical: the gateway names it with its own URN until one exists.
PERSON_INFO_QUERY_DEFINITION = "urn:macpt-gateway:OperationDefinition:person-info-query"
_PERSON_INFO_QUERY = {
    "name": "person-info-query",
    "definition": PERSON_INFO_QUERY_DEFINITION,
    "documentation": "POST /fhir/R4/Patient/$person-info-query, as the SocialCareData Multi-Agency Information "
    "Sharing Data Exchange Standard (v0.3) defines it: a Parameters with resource (a Patient) and reason (a "
    "legislation URI); the answer is match and, where the partnership's ISA permits that reason for the caller's "
    "agency, a contact Organization (the allocated MACPT and its lead practitioner), never the child's records. "
    "Agency clients registered for person_info_query only.",
}
_UNDELETABLE = {
    "Patient": " DELETE is refused (405): a Patient is an identity claim; a wrong link is undone through link review.",
    "Consent": " DELETE is refused (405): a consent decision is changed by pushing the corrected decision.",
}


def _resource_capability(name: str, documentation: str) -> dict[str, Any]:
    deletable = name not in _UNDELETABLE
    capability: dict[str, Any] = {
        "type": name,
        "documentation": documentation
        + (
            " DELETE marks the version in force entered in error (it leaves the child's view); a repeat answers 200, "
            "Prefer return=minimal 204."
            if deletable
            else _UNDELETABLE[name]
        ),
        "interaction": [{"code": "update"}, *([{"code": "delete"}] if deletable else [])],
        "versioning": "versioned",
        "readHistory": False,
        "updateCreate": True,
        "conditionalCreate": False,
        "conditionalUpdate": False,
        "conditionalDelete": "not-supported",
        "referencePolicy": ["literal", "logical", "local"],
    }
    if name == "Patient":
        capability["operation"] = [_PERSON_INFO_QUERY]
    return capability


def capability_statement(*, token_endpoint: str) -> dict[str, Any]:
    """Return the CapabilityStatement: what this server accepts, and how to authenticate."""
    statement: dict[str, Any] = {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-11-24",
        "kind": "instance",
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "application/fhir+xml", "json", "xml"],
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
                "documentation": _REST_DOCUMENTATION,
                "resource": [_resource_capability(name, _DOCUMENTATION.get(name, {}).get("documentation", _RECORD_RULES))
                             for name in SUPPORTED]
                + [_resource_capability(name, _GENERIC_DOCUMENTATION) for name in GENERIC],
                "interaction": [{"code": "transaction"}, {"code": "batch"}],
            }
        ],
    }
    get_fhir_model_class("CapabilityStatement").model_validate(statement)
    return statement


class NhsFhirAdapter:
    """FHIR R4 Bundles from NHS systems (UK Core Patients with NHS numbers, and records about them).

    `classifier` labels what the source did not: the shipped code list, or the partnership's
    extension of it (adapters/sensitivity.py).
    """

    name = "nhs_fhir"
    media_types = frozenset(JSON_TYPES | XML_TYPES)

    def __init__(self, classifier: Classifier = DEFAULT_CLASSIFIER) -> None:
        self.classifier = classifier

    def parse(self, body: bytes, media_type: str, *, max_entries: int) -> Submission:
        """Parse a transaction or batch Bundle."""
        return parse_bundle(body, media_type, max_entries=max_entries, classifier=self.classifier)

    def render(
        self, submission: Submission, outcomes: Sequence[EntryOutcome], *, prefer: ReturnPreference = RETURN_OUTCOME
    ) -> Rendered:
        """Render the transaction-response or batch-response Bundle (with what `prefer` asks each entry to return)."""
        return Rendered(status_code=200, body=response_bundle(submission, outcomes, prefer=prefer), media_type=FHIR_JSON)

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
    entries = data.get("entry") if resource_type == "Bundle" else None
    if isinstance(entries, list) and all(isinstance(entry, dict) for entry in entries):
        # A Bundle is validated entry by entry, so that one entry's model exists at a time:
        # fhir.resources builds a model of everything it validates, and a whole Bundle's is a
        # second copy of the push, twice the size of its dict (5,000 entries: 24 MiB beside
        # 12 MiB; the parse's peak fell from 45 to 21 MiB). The Bundle's own validators read only
        # its own elements, so a Bundle whose elements and entries are each valid is valid. At
        # the first problem the whole Bundle is validated as before, so that a refusal's issues
        # (every one, each at its Bundle.entry[n]… location) stay exactly those of one
        # validation; only a Bundle being refused pays for that.
        try:
            get_fhir_model_class("Bundle").model_validate({k: v for k, v in data.items() if k != "entry"})
            entry_model = get_fhir_model_class("BundleEntry")
            for entry in entries:
                entry_model.model_validate(entry)
        except (ValidationError, KeyError, TypeError, AttributeError):
            pass
        else:
            return
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
    """Map every way an entry may refer to a Patient of this Bundle to its source record id.

    Besides fullUrl and Patient/id, a conditional reference by NHS number (`_conditional_key`)
    names the Patient of this Bundle with that NHS number; where two Patients of the Bundle (two
    ids) carry it, the key names no one of them but the refusal (`_MULTIPLE_MATCHES`).
    """
    keys: dict[str, str] = {}
    by_nhs_number: dict[str, set[str]] = {}
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
        for identifier in resource.get("identifier") or []:
            if isinstance(identifier, dict) and identifier.get("system") == NHS_NUMBER_SYSTEM:
                compact = str(identifier.get("value") or "").replace(" ", "")
                if nhs.is_valid(compact):
                    by_nhs_number.setdefault(compact, set()).add(source_id)
    for number, source_ids in by_nhs_number.items():
        keys[_conditional_key(number)] = next(iter(source_ids)) if len(source_ids) == 1 else _MULTIPLE_MATCHES
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


def _entry(
    index: int, raw: dict[str, Any], patients: Mapping[str, str], classifier: Classifier, *, prefix: str | None = None
) -> Entry:
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
    if resource_type == "Consent":
        return _consent(index, resource, source_id, version, path, patients)
    return _record(index, resource, source_id, version, path, patients, classifier)


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


def _record(
    index: int,
    resource: dict[str, Any],
    source_id: str,
    version: str,
    path: str,
    patients: Mapping[str, str],
    classifier: Classifier,
) -> Entry:
    """Read a record about a child (adapters/ukcore.py says what each type means), or say what is wrong."""
    resource_type = resource["resourceType"]
    reading = ukcore.read(resource)
    if reading is None:
        kept = resource_type in ukcore.READERS or resource_type in ukcore.GENERIC_TYPES
        message = (
            f"this {resource_type} names no Patient: the gateway keeps records about a child, named as their subject, "
            "patient, for or beneficiary"
            if kept
            else f"a {resource_type} is not a record the gateway keeps: it keeps records about a child (the "
            "CapabilityStatement at /fhir/R4/metadata lists the resource types)"
        )
        return RejectedEntry(index, path, (Issue("error", "not-supported", path, message),))
    location = f"{path}.{reading.subject_element}"
    if reading.subject is None:
        # Where the Patient belongs: subject.reference; for an Appointment, among its participants.
        where = location if reading.subject_element == "participant" else f"{location}.reference"
        issue = Issue("error", "required", where, f"a {resource_type} must name its {reading.subject_element}, a Patient")
        return RejectedEntry(index, path, (issue,))
    subject = _subject_of(reading.subject, patients)
    for element, alternative in reading.alternatives:
        if subject is not None:
            break
        if (subject := _subject_of(alternative, patients)) is not None:
            location = f"{path}.{element}"
    if subject is not None and (unresolved := unresolved_issue(subject, f"{location}.reference")) is not None:
        return RejectedEntry(index, path, (unresolved,))
    if subject is None:
        reference = str(reading.subject.get("reference") or "")
        code, message = (
            ("value", f"the {reading.subject_element} must be a Patient")
            if re.fullmatch(r"[A-Z][A-Za-z]+/.+", reference)
            else ("not-found", f"the {reading.subject_element} reference matches no Patient in this Bundle")
        )
        return RejectedEntry(index, path, (Issue("error", code, f"{location}.reference", message),))
    try:
        occurred_at = _utc(_datetime(reading.occurred))
    except OverflowError:
        issue = Issue("error", "value", f"{path}.{reading.occurred_element}", "the time must lie between the years 1 and 9999 in UTC")
        return RejectedEntry(index, path, (issue,))
    labels, detrimental, mark_issues = _sharing_marks(resource, path)
    if mark_issues:
        return RejectedEntry(index, path, tuple(mark_issues))
    record = InboundRecord(
        source_record_id=source_id,
        source_version=version,
        kind=reading.kind,
        category=reading.category,
        occurred_at=occurred_at,
        summary=reading.summary,
        # What the source did not label, the code list does (adapters/sensitivity.py): it only adds.
        security_labels=labels | classifier.labels_for(reading.codings),
        entered_in_error=reading.retracted,
        subject_ref=subject,
        payload=reading.payload if reading.payload is not None else resource,
        detrimental=detrimental,
        people=reading.people,
        alert=reading.alert,
    )
    return RecordEntry(index, path, f"{location}.reference", record)


# A Patient named by a relative reference: one this client pushed before (the gateway checks).
_RELATIVE_PATIENT = re.compile(r"Patient/[A-Za-z0-9\-\.]{1,64}")
# Provision elements that would narrow or change what a decision covers: the registry records a
# purpose, agencies, categories and a period, so a Consent saying more is refused, not half-read.
_CONSENT_UNSUPPORTED = ("provision", "code", "data", "dataPeriod", "securityLabel")
_SHARING_ACTIONS = frozenset({"disclose", "access"})
_MAX_RELATIONSHIP = 100
_ONE_LINE = re.compile(r"[^\x00-\x1f\x7f]+")


def _consent(
    index: int, resource: dict[str, Any], source_id: str, version: str, path: str, patients: Mapping[str, str]
) -> Entry:
    """Read a Consent into the registry's terms (mapping: adapters/fhir_consent.py), or say what is wrong."""
    issues: list[Issue] = []
    provision: dict[str, Any] = resource.get("provision") or {}
    subject = _consent_patient(resource, path, patients, issues)
    status = _consent_status(resource, provision, path, issues)
    purpose = _consent_purpose(provision, path, issues)
    giver = _consent_giver(resource, path, patients, subject, issues)
    agencies, categories = _consent_scope(provision, path, issues)
    start, end = _consent_period(resource, provision, path, issues)
    if issues or subject is None or status is None or purpose is None or giver is None:
        return RejectedEntry(index, path, tuple(issues))
    given_by, relationship = giver
    record = InboundConsent(
        source_record_id=source_id,
        source_version=version,
        kind=CONSENT_KIND,
        category=CONSENT_KIND,  # not an item: the registry has no category vocabulary of its own
        occurred_at=start,
        summary=f"Consent {status} for {purpose}",
        security_labels=frozenset(),
        entered_in_error=False,
        subject_ref=subject,
        payload=resource,
        terms=ConsentTerms(
            status=status,
            purpose=purpose,
            given_by=given_by,
            giver_relationship=relationship,
            agencies=agencies,
            categories=categories,
            period_start=start,
            period_end=end,
        ),
    )
    return RecordEntry(index, path, f"{path}.patient", record)


# A subject this adapter read but cannot name, and why: _subject_of returns it as a subject_ref
# (`unresolved_subject(code, message)`), and the reader that asked refuses its entry with that
# issue (unresolved_issue) before the entry leaves the adapter: a conditional reference matching
# two Patients of one Bundle, a search by what the gateway cannot search by, an invalid NHS number.
_UNRESOLVED_SUBJECT = "unresolved:"


def unresolved_subject(code: str, message: str) -> str:
    """Return the subject_ref of a subject that cannot be resolved, carrying the issue to refuse it with."""
    return f"{_UNRESOLVED_SUBJECT}{code}:{message}"


def unresolved_issue(subject_ref: str, location: str) -> Issue | None:
    """Return the issue an unresolvable subject_ref carries, at `location`; None for any other subject_ref."""
    if not subject_ref.startswith(_UNRESOLVED_SUBJECT):
        return None
    code, _, message = subject_ref.removeprefix(_UNRESOLVED_SUBJECT).partition(":")
    return Issue("error", code, location, message)


def _subject_of(reference: Mapping[str, Any], patients: Mapping[str, str]) -> str | None:
    """Return how a Reference names a Patient as a record's subject_ref, or None if it names none.

    A conditional reference (`Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|<number>`, FHIR
    R4 http.html#trules) names the Patient of this Bundle with that NHS number, else the Patient
    this client pushed before with it (the gateway looks, as for an identifier reference). One it
    cannot resolve is an `unresolved_subject`, which the reader refuses, saying why (two Patients
    of the Bundle match; a search by anything else; an NHS number that is not valid).
    """
    text = reference.get("reference") or ""
    if text:
        if text in patients:
            return patients[text]
        if text.startswith(_CONDITIONAL_PATIENT):
            return _conditional_subject(text.removeprefix(_CONDITIONAL_PATIENT), patients)
        return text if _RELATIVE_PATIENT.fullmatch(text) else None
    identifier = reference.get("identifier") or {}
    if identifier.get("system") == NHS_NUMBER_SYSTEM:
        compact = (identifier.get("value") or "").replace(" ", "")
        if nhs.is_valid(compact):
            return NHS_NUMBER_SUBJECT + compact
    return None


_CONDITIONAL_PATIENT = "Patient?"
_MULTIPLE_MATCHES = unresolved_subject(
    "multiple-matches",
    "the conditional reference matches more than one Patient of this Bundle (two Patients carry that NHS "
    "number): refer to the Patient by its fullUrl or id",
)
_UNSUPPORTED_SEARCH = unresolved_subject(
    "not-supported",
    f"a conditional reference may search by NHS number only: Patient?identifier={NHS_NUMBER_SYSTEM}|<NHS number>",
)
_INVALID_NHS_NUMBER = unresolved_subject(
    "value",
    "the NHS number of the conditional reference is not valid: it must be 10 digits with a correct Modulus 11 "
    "check digit",
)


def _conditional_key(nhs_number: str) -> str:
    """Return the one spelling of a conditional reference to the Patient with an NHS number."""
    return f"{_CONDITIONAL_PATIENT}identifier={NHS_NUMBER_SYSTEM}|{nhs_number}"


def _conditional_subject(query: str, patients: Mapping[str, str]) -> str:
    """Resolve a conditional reference's search (`identifier=<system>|<value>`, URL-encoded or not)."""
    try:
        parameters = parse_qsl(query, keep_blank_values=True, strict_parsing=True)
    except ValueError:
        return _UNSUPPORTED_SEARCH
    if len(parameters) != 1 or parameters[0][0] != "identifier":
        return _UNSUPPORTED_SEARCH
    system, bar, value = parameters[0][1].partition("|")
    if not bar or system != NHS_NUMBER_SYSTEM:
        return _UNSUPPORTED_SEARCH
    number = value.replace(" ", "")
    if not nhs.is_valid(number):
        return _INVALID_NHS_NUMBER
    return patients.get(_conditional_key(number), NHS_NUMBER_SUBJECT + number)


def _consent_patient(
    resource: dict[str, Any], path: str, patients: Mapping[str, str], issues: list[Issue]
) -> str | None:
    patient = resource.get("patient") or {}
    location = f"{path}.patient"
    reference = patient.get("reference")
    if not reference and not patient.get("identifier"):
        issues.append(
            Issue("error", "required", location,
                  "a Consent must name its patient: a Patient in this Bundle, one this client pushed before, "
                  "or its NHS number")
        )
        return None
    subject = _subject_of(patient, patients)
    if subject is not None and (unresolved := unresolved_issue(subject, location)) is not None:
        issues.append(unresolved)
        return None
    if subject is not None:
        return subject
    if reference:
        code, message = (
            ("value", "the patient must be a Patient")
            if re.fullmatch(r"[A-Z][A-Za-z]+/.+", reference)
            else ("not-found", "the patient reference matches no Patient in this Bundle")
        )
        issues.append(Issue("error", code, f"{location}.reference", message))
    elif patient["identifier"].get("system") != NHS_NUMBER_SYSTEM:
        issues.append(
            Issue("error", "not-supported", f"{location}.identifier.system",
                  f"a patient named by an identifier must be named by NHS number ({NHS_NUMBER_SYSTEM})")
        )
    else:
        issues.append(
            Issue("error", "value", f"{location}.identifier.value",
                  "the NHS number is not valid: it must be 10 digits with a correct Modulus 11 check digit")
        )
    return None


def _consent_status(resource: dict[str, Any], provision: dict[str, Any], path: str, issues: list[Issue]) -> str | None:
    status = FHIR_TO_STATUS.get(resource.get("status") or "")
    if status is None:
        issues.append(
            Issue("error", "code-invalid", f"{path}.status",
                  "status must be active (consent given; refused when provision.type is deny), rejected (refused) or "
                  "inactive (withdrawn). A draft or proposed Consent is not a decision yet, and one entered in error "
                  "cannot retract a decision: push the corrected decision instead")
        )
        return None
    if status == "given" and provision.get("type") == "deny":
        return "refused"  # an active directive not to share
    return status


def _consent_purpose(provision: dict[str, Any], path: str, issues: list[Issue]) -> str | None:
    location = f"{path}.provision.purpose"
    codes = sorted(
        {str(c["code"]) for c in provision.get("purpose") or [] if c.get("system") == PURPOSE_SYSTEM and c.get("code")}
    )
    if not codes:
        issues.append(
            Issue("error", "required", location,
                  f"the purpose the decision was sought for is needed: a Coding of {PURPOSE_SYSTEM} "
                  "(child_protection or family_help)")
        )
        return None
    if len(codes) > 1:
        issues.append(Issue("error", "value", location, "one purpose per Consent: push a Consent for each purpose"))
        return None
    return codes[0]


def _consent_giver(
    resource: dict[str, Any],
    path: str,
    patients: Mapping[str, str],
    subject: str | None,
    issues: list[Issue],
) -> tuple[str, str] | None:
    """Return who decided (given_by, relationship): the Patient itself, or a contained RelatedPerson.

    Other performers (the practitioner or organisation that recorded it) are not the giver and are
    passed over; a RelatedPerson's name, if sent, is never read.
    """
    contained = {
        f"#{item['id']}": (position, item)
        for position, item in enumerate(resource.get("contained") or [])
        if isinstance(item, dict) and item.get("id")
    }
    before = len(issues)
    givers: list[tuple[str, str]] = []
    unread = False  # a performer that is a Patient, when the Consent's own patient could not be read
    for position, performer in enumerate(resource.get("performer") or []):
        location = f"{path}.performer[{position}]"
        reference = performer.get("reference") or ""
        if reference.startswith("#"):
            found = contained.get(reference)
            if found is None or found[1].get("resourceType") != "RelatedPerson":
                issues.append(
                    Issue("error", "not-found", f"{location}.reference",
                          "the reference names no RelatedPerson contained in this Consent")
                )
                continue
            relationship = _relationship(found[1])
            where = f"{path}.contained[{found[0]}].relationship"
            if relationship is None:
                issues.append(
                    Issue("error", "required", where,
                          "the RelatedPerson who decided needs a coded relationship to the child "
                          "(relationship.coding, e.g. v3 RoleCode MTH, mother)")
                )
            elif len(relationship) > _MAX_RELATIONSHIP or not _ONE_LINE.fullmatch(relationship):
                issues.append(
                    Issue("error", "value", where,
                          f"the relationship's display (or code) must be one line of at most {_MAX_RELATIONSHIP} characters")
                )
            else:
                givers.append((GIVEN_BY_PARENTAL_RESPONSIBILITY, relationship))
        elif performer.get("type") == "RelatedPerson" or reference.startswith("RelatedPerson/"):
            issues.append(
                Issue("error", "not-supported", location,
                      "a RelatedPerson who decided must be contained in the Consent (reference '#id') with a coded "
                      "relationship to the child")
            )
        elif performer.get("type") in (None, "Patient") and (named := _subject_of(performer, patients)) is not None:
            if subject is None:
                unread = True  # the patient itself could not be read: that issue is said already
                continue
            if named == subject:
                givers.append((GIVEN_BY_CHILD, SELF))
            else:
                issues.append(Issue("error", "value", location, "the performer is a Patient other than the Consent's patient"))
        # Anyone else (a Practitioner, an Organization) recorded the decision; they did not make it.
    if len(givers) > 1:
        issues.append(
            Issue("error", "value", f"{path}.performer",
                  "name one person who decided per Consent: the child, or one person with parental responsibility")
        )
    elif not givers and len(issues) == before and not unread:
        issues.append(
            Issue("error", "required", f"{path}.performer",
                  "name who gave or refused consent: the Patient itself (a competent child), or a contained "
                  "RelatedPerson with a coded relationship (a person with parental responsibility)")
        )
    return givers[0] if len(givers) == 1 and len(issues) == before else None


def _relationship(related: dict[str, Any]) -> str | None:
    for concept in related.get("relationship") or []:
        for coding in concept.get("coding") or []:
            if coding.get("code"):
                return str(coding.get("display") or coding["code"]).strip()
    return None


def _consent_scope(
    provision: dict[str, Any], path: str, issues: list[Issue]
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Return the agencies and categories a provision covers (empty: all), refusing what would change its meaning."""
    agencies: set[str] = set()
    for position, actor in enumerate(provision.get("actor") or []):
        identifier = (actor.get("reference") or {}).get("identifier") or {}
        if identifier.get("system") == AGENCY_SYSTEM and identifier.get("value"):
            agencies.add(str(identifier["value"]))
        else:
            # Ignoring an actor would widen the decision to every agency: refuse it instead.
            issues.append(
                Issue("error", "not-supported", f"{path}.provision.actor[{position}]",
                      f"an actor must be an agency: a reference whose identifier has system {AGENCY_SYSTEM} "
                      "(leave actors out for every agency)")
            )
    categories: set[str] = set()
    for position, coding in enumerate(provision.get("class") or []):
        if coding.get("system") == CATEGORY_SYSTEM and coding.get("code"):
            categories.add(str(coding["code"]))
        else:
            issues.append(
                Issue("error", "not-supported", f"{path}.provision.class[{position}]",
                      f"a class must be a Coding of {CATEGORY_SYSTEM} (leave classes out for every category)")
            )
    for element in _CONSENT_UNSUPPORTED:
        if provision.get(element):
            issues.append(
                Issue("error", "not-supported", f"{path}.provision.{element}",
                      "the registry records a purpose, agencies, categories and a period: push one Consent per scope")
            )
    actions = {
        coding.get("code")
        for concept in provision.get("action") or []
        for coding in concept.get("coding") or []
        if coding.get("system") in (None, CONSENT_ACTION_SYSTEM)
    }
    if provision.get("action") and not actions & _SHARING_ACTIONS:
        issues.append(
            Issue("error", "not-supported", f"{path}.provision.action",
                  f"a decision about sharing covers the action disclose or access ({CONSENT_ACTION_SYSTEM})")
        )
    return tuple(sorted(agencies)), tuple(sorted(categories))


def _consent_period(
    resource: dict[str, Any], provision: dict[str, Any], path: str, issues: list[Issue]
) -> tuple[datetime | None, datetime | None]:
    """Return the period a decision covers; it starts at dateTime when provision.period has no start."""
    period = provision.get("period") or {}
    values: dict[str, datetime | None] = {}
    for location, text in (
        (f"{path}.provision.period.start", period.get("start")),
        (f"{path}.provision.period.end", period.get("end")),
        (f"{path}.dateTime", resource.get("dateTime")),
    ):
        try:
            values[location] = _utc(_datetime(text))
        except OverflowError:
            issues.append(Issue("error", "value", location, "the time must lie between the years 1 and 9999 in UTC"))
            values[location] = None
            continue
        if text and values[location] is None and location.startswith(f"{path}.provision"):
            # A year or a month alone: an end read as "none" would make the decision open-ended.
            issues.append(Issue("error", "value", location, "give a full date or date-time"))
    start = values[f"{path}.provision.period.start"] or values[f"{path}.dateTime"]
    end = values[f"{path}.provision.period.end"]
    if start is not None and end is not None and end <= start:
        issues.append(Issue("error", "value", f"{path}.provision.period.end", "the end must be after the start"))
    return start, end


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

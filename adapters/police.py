"""The police JSON format, version 1 (`police/v1`): a batch of POLE records → identity claims and records.

Police forces have no FHIR. This is a small, versioned JSON format shaped on the POLE model UK
police systems use (person, object, location, event): each record is one event about one
child (the person it is about), with the other people, the places and the objects involved.
The format is defined by the pydantic models below; `PoliceAdapter.describe` publishes their
JSON Schema, with an example. Every model refuses unknown fields, so that a mapping mistake
is seen on the first day, not found in the data a year later.

Covert sources are never sent: the format has no field for them, and every free-text field is
checked for the patterns that would name one (SOURCE_IDENTIFIER_PATTERNS).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    StrictBool,
    StringConstraints,
    Tag,
    ValidationError,
    ValidationInfo,
)
from pydantic_core import PydanticCustomError
from stdnum.gb import nhs

from .batch import (
    BatchRecord,
    BatchSubmission,
    claim_version,
    read_json,
    render_outcomes,
    render_problem,
    validation_issues,
)
from .types import (
    AdapterError,
    ClaimEntry,
    Entry,
    EntryOutcome,
    IdentityClaim,
    InboundRecord,
    InvolvedPerson,
    Issue,
    RecordEntry,
    RejectedEntry,
    Rendered,
    Submission,
    TooManyEntries,
)

POLICE_SCHEMA = "police/v1"
POLICE_SCHEMA_ID = "urn:macpt-gateway:schema:police:v1"
MEDIA_TYPE = "application/json"
# A force's clock may run a little ahead of ours: an instant this close to now is not "in the future".
CLOCK_SKEW = timedelta(minutes=5)
# Today, wherever it is today latest (UTC+14): a birth date up to that day is not in the future.
_LATEST_OFFSET = timedelta(hours=14)
SUMMARY_LIMIT = 1000

KINDS = ("incident", "domestic_abuse_notification", "missing_episode", "custody", "intelligence")
CATEGORIES = {
    "incident": "police.incident",
    "domestic_abuse_notification": "police.domestic_abuse",
    "missing_episode": "police.missing_episode",
    "custody": "police.custody",
    "intelligence": "police.intelligence",
}

# Hand-written: no library knows how UK forces write the references of covert human intelligence
# sources (CHIS), and a source's identity must never leave the force (RIPA 2000 Part II; the
# CHIS Code of Practice). These are the obvious forms; each is matched case-insensitively and
# as whole words, so that "resource" or "sourced" never trigger. A false positive (the handler
# of a dog) costs a resend with other words; a miss could cost a life, so they err wide.
SOURCE_IDENTIFIER_PATTERNS: tuple[tuple[str, str], ...] = (
    ("CHIS", r"CHIS(?:s|es)?"),
    ("covert human intelligence source", r"covert\s+human\s+intelligence\s+sources?"),
    ("covert source", r"covert\s+sources?"),
    ("informant or informer", r"informants?|informers?"),
    ("source reference, number or id", r"source\s*(?:ref(?:erence)?s?|numbers?|nos?|num|id)"),
    ("handler", r"handlers?"),
    ("dedicated source unit", r"dedicated\s+source\s+units?"),
    ("URN with an S-number", r"URN\s*[:#]?\s*S\s*[-/]?\s*\d+"),
    ("S-number such as S/1234", r"S\s*/\s*\d{3,}"),
    ("SRN", r"SRNs?"),
)
SOURCE_IDENTIFIER = re.compile(
    "|".join(rf"\b(?:{pattern})\b" for _label, pattern in SOURCE_IDENTIFIER_PATTERNS), re.IGNORECASE
)
SOURCE_IDENTIFIER_MESSAGE = (
    "a covert source identifier appears to be present in this text; source identifiers must never be sent: "
    "remove it and send the record again"
)
_SECURITY_ERROR = "source_identifier"

_ID_PATTERN = r"^[A-Za-z0-9._:/-]{1,64}$"
_ID = re.compile(_ID_PATTERN)
_POSTCODE = re.compile(r"^(?:[A-Z]{1,2}[0-9][A-Z0-9]?[0-9][A-Z]{2}|GIR0AA)$")
_PNC = re.compile(r"^(?:[0-9]{2}|[0-9]{4})/[0-9]{1,7}[A-Z]$")
_ISO_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T")
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _now(info: ValidationInfo) -> datetime:
    context = info.context if isinstance(info.context, dict) else {}
    now = context.get("now")
    return now if isinstance(now, datetime) else _utcnow()


def _no_source_identifier(value: str) -> str:
    if SOURCE_IDENTIFIER.search(value):
        raise PydanticCustomError(_SECURITY_ERROR, SOURCE_IDENTIFIER_MESSAGE)
    return value


def _iso_datetime_string(value: Any) -> Any:
    # pydantic would also take a number (Unix time) or a bare date; the format takes ISO 8601 only.
    if not isinstance(value, str) or not _ISO_DATETIME.match(value):
        raise ValueError("must be an ISO 8601 date and time with a time zone, e.g. 2026-11-20T21:30:00Z")
    return value


def _not_future_instant(value: datetime, info: ValidationInfo) -> datetime:
    if value > _now(info) + CLOCK_SKEW:
        raise ValueError("must not be in the future")
    return value  # in the force's own offset: summaries show its local time; records get UTC


def _iso_date_string(value: Any) -> Any:
    if not isinstance(value, str) or not _ISO_DATE.match(value):
        raise ValueError("must be an ISO 8601 date, e.g. 2016-05-04")
    return value


def _not_future_date(value: date, info: ValidationInfo) -> date:
    if value > (_now(info) + _LATEST_OFFSET).date():
        raise ValueError("must not be in the future")
    return value


def _nhs_number(value: str) -> str:
    compact = nhs.compact(value)
    if not nhs.is_valid(compact):
        raise ValueError("the NHS number is not valid: it must be 10 digits with a correct Modulus 11 check digit")
    return str(compact)


def _pnc_id(value: str) -> str:
    normalised = value.strip().upper()
    if not _PNC.match(normalised):
        raise ValueError(
            "the PNC id is not valid: it must look like YYYY/NNNNNNNX (a 2- or 4-digit year, "
            "a slash, up to 7 digits and a letter)"
        )
    return normalised


def _postcode(value: str) -> str:
    compact = re.sub(r"\s+", "", value).upper()
    if not _POSTCODE.match(compact):
        raise ValueError("must be a UK postcode, e.g. ZZ99 3VZ")
    return f"{compact[:-3]} {compact[-3:]}"


def _phone(value: str) -> str:
    if not re.fullmatch(r"\+?[0-9 ()-]{6,24}", value) or sum(c.isdigit() for c in value) < 6:
        raise ValueError("must be a telephone number of digits, spaces and an optional leading +")
    return value


def _email(value: str) -> str:
    if not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", value):
        raise ValueError("must be an email address")
    return value


def _text(max_length: int) -> StringConstraints:
    return StringConstraints(strip_whitespace=True, min_length=1, max_length=max_length)


SourceId = Annotated[str, StringConstraints(pattern=_ID_PATTERN)]
Version = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._:/+-]{1,64}$")]
Name = Annotated[str, _text(100)]
Label = Annotated[str, _text(200), AfterValidator(_no_source_identifier)]
ShortText = Annotated[str, _text(500), AfterValidator(_no_source_identifier)]
FreeText = Annotated[str, _text(4000), AfterValidator(_no_source_identifier)]
Notice = Annotated[str, _text(1000), AfterValidator(_no_source_identifier)]
Instant = Annotated[AwareDatetime, BeforeValidator(_iso_datetime_string), AfterValidator(_not_future_instant)]
PastDate = Annotated[date, BeforeValidator(_iso_date_string), AfterValidator(_not_future_date)]
Postcode = Annotated[str, _text(10), AfterValidator(_postcode)]
NhsNumber = Annotated[str, _text(14), AfterValidator(_nhs_number)]
PncId = Annotated[str, _text(14), AfterValidator(_pnc_id)]
Phone = Annotated[str, _text(24), AfterValidator(_phone)]
Email = Annotated[str, _text(254), AfterValidator(_email)]
Kind = Literal["incident", "domestic_abuse_notification", "missing_episode", "custody", "intelligence"]
ChildRole = Literal["victim", "witness", "suspect", "present", "missing_person", "detained", "subject"]
PersonRole = Literal[
    "victim", "witness", "suspect", "present", "reporting_person", "missing_person", "detained", "subject",
    "parent_or_carer", "appropriate_adult", "other",
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Address(_Model):
    """A postal address."""

    lines: list[Name] = Field(
        default_factory=list, max_length=6, description="Address lines, first line first, without the postcode."
    )
    postcode: Postcode | None = Field(None, description="UK postcode; normalised to upper case with one space.")


class Child(_Model):
    """The child the record is about: the force's own person record, which the gateway links to a child."""

    person_id: SourceId = Field(description="The force's own id for this person; the same person keeps it.")
    version: Version | None = Field(
        None,
        description="The version of the force's person record, if it has one; otherwise the gateway derives one "
        "from the person's details, so that a change to them is a new version.",
    )
    pnc_id: PncId | None = Field(
        None, description="Police National Computer id, YYYY/NNNNNNNX (a 2- or 4-digit year); shape checked only."
    )
    nhs_number: NhsNumber | None = Field(
        None, description="NHS number, 10 digits (Modulus 11 checked): the surest link to the child's health records."
    )
    given_names: list[Name] = Field(default_factory=list, max_length=10, description="Given names, in order.")
    family_name: Name | None = Field(None, description="Family name.")
    birth_date: PastDate | None = Field(None, description="Date of birth (YYYY-MM-DD); not in the future.")
    sex: Literal["male", "female", "other", "unknown"] | None = Field(None, description="Sex as recorded.")
    address: Address | None = Field(None, description="The child's home address as the force holds it.")
    role: ChildRole = Field(
        description="The child's part in the event: subject is the subject of intelligence; missing_person for a "
        "missing episode; detained for custody."
    )


class Person(_Model):
    """Someone else involved (POLE person): an adult or another child. Never linked as the child."""

    person_id: SourceId = Field(description="The force's own id for this person.")
    given_names: list[Name] = Field(default_factory=list, max_length=10, description="Given names, in order.")
    family_name: Name | None = Field(None, description="Family name.")
    birth_date: PastDate | None = Field(None, description="Date of birth (YYYY-MM-DD), if known.")
    role: PersonRole = Field(description="The person's part in the event.")
    relationship_to_child: Label | None = Field(
        None, description="The person's relationship to the child, in words, e.g. \"mother's partner\"."
    )


class Place(_Model):
    """A location involved (POLE location)."""

    location_id: SourceId = Field(description="The force's own id for this location.")
    description: Label = Field(description="What the place is to the record, e.g. \"child's home address\".")
    address: Address | None = Field(None, description="The address, where there is one.")
    postcode: Postcode | None = Field(
        None, description="The postcode, when no full address is given (must equal address.postcode if both are)."
    )


class PoleObject(_Model):
    """An object involved (POLE object): a vehicle, a phone, a weapon…"""

    object_id: SourceId | None = Field(None, description="The force's own id for this object, if any.")
    object_type: Label = Field(alias="type", description="What kind of object, e.g. vehicle, phone, knife.")
    description: ShortText | None = Field(None, description="A short description.")


class Contact(_Model):
    """The officer or unit to ask about the record: named in the view when the record is withheld."""

    officer: Name | None = Field(None, description="Rank and name, e.g. \"DC Jane Example\".")
    unit: Name = Field(description="The unit or team, e.g. \"Public Protection Unit\".")
    phone: Phone | None = Field(None, description="A telephone number for the officer or unit.")
    email: Email | None = Field(None, description="An email address for the officer or unit.")


class IncidentDetails(_Model):
    """An incident or occurrence involving the child."""

    occurrence_type: Label = Field(description="e.g. \"assault\", \"criminal damage\", \"concern for welfare\".")
    summary: FreeText = Field(description="What happened, for a practitioner to read.")


class DomesticAbuseDetails(_Model):
    """An Operation Encompass notification: a child was present at, or affected by, a domestic abuse incident."""

    incident_at: Instant = Field(description="When the incident happened (with a time zone).")
    child_present: StrictBool = Field(description="Whether the child was present at the incident.")
    summary: FreeText = Field(description="What happened, for the MACPT.")
    school_notice: Notice = Field(
        description="The short notice for the designated safeguarding lead of the child's school, written for them "
        "to read before the next school day; the school sees this text, never the record behind it."
    )


class MissingEpisodeDetails(_Model):
    """A missing episode: the child was reported missing (and, perhaps, found)."""

    reported_missing_at: Instant = Field(description="When the child was reported missing.")
    found_at: Instant | None = Field(None, description="When the child was found; absent while still missing.")
    risk_level: Literal["no_apparent_risk", "low", "medium", "high"] = Field(
        description="The force's risk assessment of the episode."
    )
    summary: FreeText = Field(description="What happened, where the child was found, any concerns.")


class CustodyDetails(_Model):
    """The arrest or detention of the child."""

    arrested_at: Instant = Field(description="When the child was arrested.")
    offence: Label = Field(description="The offence the child was arrested for, in words.")
    outcome: Literal[
        "pending", "released_under_investigation", "bail", "charged", "remanded", "no_further_action",
        "youth_caution", "youth_conditional_caution", "community_resolution",
    ] = Field(description="The outcome so far; send a new version of the record when it changes.")
    appropriate_adult: StrictBool = Field(description="Whether an appropriate adult was present.")


class Grading(_Model):
    """The 3x5x2 grading of intelligence."""

    source_evaluation: Literal["1", "2", "3"] = Field(
        description="1 reliable, 2 untested, 3 not reliable (the source, never named)."
    )
    intelligence_assessment: Literal["A", "B", "C", "D", "E"] = Field(
        description="A known directly, B known indirectly but corroborated, C known indirectly, D not known, "
        "E suspected to be false."
    )
    handling_code: Literal["P", "C"] = Field(
        description="P: lawful sharing permitted; C: lawful sharing permitted with conditions (the record is then "
        "not shown: the view says the police hold further information and whom to ask)."
    )
    handling_conditions: FreeText | None = Field(
        None, description="The conditions on sharing: required with handling code C, and only with it."
    )


class IntelligenceDetails(_Model):
    """A piece of intelligence about the child, graded 3x5x2. Never names or identifies a source."""

    text: FreeText = Field(description="The intelligence, sanitised: no source identifiers of any kind.")
    grading: Grading = Field(description="The 3x5x2 grading.")


class _RecordBase(_Model):
    record_id: SourceId = Field(
        description="The force's id for the record (an occurrence number): unique across kinds, [A-Za-z0-9._:/-]."
    )
    version: Version = Field(description="The record's version; a push of a new version supersedes the old.")
    occurred_at: Instant = Field(description="When the event occurred (ISO 8601 with a time zone; not in the future).")
    retracted: Literal[False] = Field(False, description="False (or absent) for a record in force.")
    child: Child = Field(description="The child the record is about.")
    persons: list[Person] = Field(default_factory=list, max_length=50, description="Other people involved.")
    locations: list[Place] = Field(default_factory=list, max_length=20, description="Locations involved.")
    objects: list[PoleObject] = Field(default_factory=list, max_length=50, description="Objects involved.")
    contact: Contact = Field(description="The officer or unit to ask about the record.")
    detrimental: StrictBool = Field(
        False,
        description="True when the force judges that disclosing the record would be more detrimental to the child "
        "than not disclosing it (Children Act 2004 s16LA): the record is then withheld and the reason shown.",
    )


class IncidentRecord(_RecordBase):
    """An incident or occurrence involving the child."""

    kind: Literal["incident"] = Field(description="incident")
    details: IncidentDetails


class DomesticAbuseRecord(_RecordBase):
    """An Operation Encompass domestic abuse notification."""

    kind: Literal["domestic_abuse_notification"] = Field(description="domestic_abuse_notification")
    details: DomesticAbuseDetails


class MissingEpisodeRecord(_RecordBase):
    """A missing episode."""

    kind: Literal["missing_episode"] = Field(description="missing_episode")
    details: MissingEpisodeDetails


class CustodyRecord(_RecordBase):
    """An arrest or detention of the child."""

    kind: Literal["custody"] = Field(description="custody")
    details: CustodyDetails


class IntelligenceRecord(_RecordBase):
    """Graded intelligence about the child."""

    kind: Literal["intelligence"] = Field(description="intelligence")
    details: IntelligenceDetails


class Retraction(_Model):
    """A record the force entered in error, withdrawn: only what identifies it, and no reason."""

    record_id: SourceId = Field(description="The id of the record retracted.")
    version: Version = Field(description="A new version of the record: the retraction supersedes the record.")
    kind: Kind = Field(description="The kind of the record retracted.")
    child: Child = Field(description="The child the record was about.")
    retracted: Literal[True] = Field(description="True: the record was entered in error.")


PoliceRecord = IncidentRecord | DomesticAbuseRecord | MissingEpisodeRecord | CustodyRecord | IntelligenceRecord
_RECORD_MODELS: dict[str, type[PoliceRecord] | type[Retraction]] = {
    "incident": IncidentRecord,
    "domestic_abuse_notification": DomesticAbuseRecord,
    "missing_episode": MissingEpisodeRecord,
    "custody": CustodyRecord,
    "intelligence": IntelligenceRecord,
    "retraction": Retraction,
}
_DETAILS_MODELS: dict[str, type[_Model]] = {
    "incident": IncidentDetails,
    "domestic_abuse_notification": DomesticAbuseDetails,
    "missing_episode": MissingEpisodeDetails,
    "custody": CustodyDetails,
    "intelligence": IntelligenceDetails,
}


def _record_tag(value: Any) -> str | None:
    """Which model a record is: a retraction if it says so, else the model of its kind."""
    if isinstance(value, dict):
        if value.get("retracted") is True:
            return "retraction"
        kind = value.get("kind")
        return kind if isinstance(kind, str) and kind in CATEGORIES else None
    if isinstance(value, Retraction):
        return "retraction"
    return str(getattr(value, "kind", "")) or None


AnyRecord = Annotated[
    Annotated[IncidentRecord, Tag("incident")]
    | Annotated[DomesticAbuseRecord, Tag("domestic_abuse_notification")]
    | Annotated[MissingEpisodeRecord, Tag("missing_episode")]
    | Annotated[CustodyRecord, Tag("custody")]
    | Annotated[IntelligenceRecord, Tag("intelligence")]
    | Annotated[Retraction, Tag("retraction")],
    Discriminator(_record_tag),
]


class PoliceBatch(_Model):
    """A batch of police records (POLE), police/v1."""

    schema_id: Literal["police/v1"] = Field(alias="schema", description="The format and its version: police/v1.")
    atomic: StrictBool = Field(
        False, description="True: all the records are stored or none is (any problem refuses the whole batch)."
    )
    records: list[AnyRecord] = Field(
        min_length=1, description="The records, one event about one child each (at most the server's batch limit)."
    )


class _Envelope(_Model):
    """The batch around its records, read first: each record is then validated on its own."""

    schema_id: Literal["police/v1"] = Field(alias="schema")
    atomic: StrictBool = False
    records: list[Any] = Field(min_length=1)


def parse_police(
    body: bytes, media_type: str, *, max_entries: int, now: Callable[[], datetime] = _utcnow
) -> BatchSubmission:
    """Parse and validate a police/v1 batch into identity claims, records and rejected records."""
    if media_type.split(";", 1)[0].strip().lower() != MEDIA_TYPE:
        raise AdapterError([Issue("error", "not-supported", "", f"Content-Type must be {MEDIA_TYPE}")])
    data = read_json(body)
    if not isinstance(data, dict):
        raise AdapterError([Issue("error", "structure", "", "the body must be a JSON object: schema, atomic, records")])
    if "schema" not in data:
        raise AdapterError([Issue("error", "required", "schema", f"schema is required and must be '{POLICE_SCHEMA}'")])
    if data["schema"] != POLICE_SCHEMA:
        raise AdapterError([Issue("error", "value", "schema", f"schema must be '{POLICE_SCHEMA}'")])
    raw_records = data.get("records")
    if isinstance(raw_records, list) and len(raw_records) > max_entries:
        # Counted before validation, which is where the time goes.
        raise TooManyEntries(
            [Issue("error", "too-long", "records", f"a push may carry at most {max_entries} records; split the batch")]
        )
    try:
        envelope = _Envelope.model_validate(data)
    except ValidationError as exc:
        raise AdapterError(_issues(exc, prefix="")) from None
    context = {"now": now()}
    entries: list[Entry] = []
    records: list[BatchRecord] = []
    claims: dict[tuple[str, str], int] = {}
    for position, raw in enumerate(envelope.records):
        location = f"records[{position}]"
        record_id = _readable_id(raw)
        checked = _check(location, raw, context)
        if isinstance(checked, list):
            index = len(entries)
            entries.append(RejectedEntry(index, location, tuple(checked)))
            records.append(BatchRecord(location, record_id, (index,), None))
            continue
        claim = _claim(checked.child)
        key = (claim.source_record_id, claim.source_version)
        claim_index = claims.get(key)
        if claim_index is None:
            claim_index = claims[key] = len(entries)
            entries.append(ClaimEntry(claim_index, f"{location}.child", claim))
        record_index = len(entries)
        entries.append(RecordEntry(record_index, location, f"{location}.child", _inbound(checked)))
        records.append(BatchRecord(location, record_id, (claim_index, record_index), record_index))
    return BatchSubmission(
        atomic=envelope.atomic,
        label=f"{POLICE_SCHEMA} batch",
        entries=tuple(entries),
        records=tuple(records),
        schema=POLICE_SCHEMA,
    )


def _readable_id(raw: Any) -> str | None:
    record_id = raw.get("record_id") if isinstance(raw, dict) else None
    return record_id if isinstance(record_id, str) and _ID.fullmatch(record_id) else None


def _check(location: str, raw: Any, context: dict[str, Any]) -> PoliceRecord | Retraction | list[Issue]:
    """Validate one record: the model of its kind, then what no field alone can say."""
    if not isinstance(raw, dict):
        return [Issue("error", "structure", location, "each record must be a JSON object")]
    tag = _record_tag(raw)
    if tag is None:
        code = "required" if "kind" not in raw else "value"
        message = "kind must be one of " + ", ".join(f"'{kind}'" for kind in KINDS)
        return [Issue("error", code, f"{location}.kind", message)]
    model = _RECORD_MODELS[tag]
    try:
        record = model.model_validate(raw, context=context)
    except ValidationError as exc:
        return _wrong_details(location, tag, raw, _issues(exc, prefix=location))
    issues = _cross_checks(location, record)
    return issues if issues else record


def _issues(exc: ValidationError, *, prefix: str) -> list[Issue]:
    """validation_issues, with a source identifier in free text reported as a security problem."""
    issues = validation_issues(exc, prefix=prefix)
    return [
        Issue(issue.severity, "security", issue.location, issue.message) if error["type"] == _SECURITY_ERROR else issue
        for error, issue in zip(exc.errors(), issues, strict=True)
    ]


def _wrong_details(location: str, kind: str, raw: dict[str, Any], issues: list[Issue]) -> list[Issue]:
    """Say so plainly when a record's details are another kind's, rather than list each field."""
    details = raw.get("details")
    if kind not in _DETAILS_MODELS or not isinstance(details, dict) or not details:
        return issues
    keys = set(details)
    if keys <= set(_DETAILS_MODELS[kind].model_fields):
        return issues
    other = next((k for k, m in _DETAILS_MODELS.items() if k != kind and keys <= set(m.model_fields)), None)
    if other is None:
        return issues
    path = f"{location}.details"
    kept = [i for i in issues if i.location != path and not i.location.startswith(f"{path}.")]
    expected = ", ".join(_DETAILS_MODELS[kind].model_fields)
    message = f"these are the details of a {other} record, not of a {kind} record, whose details are: {expected}"
    return [*kept, Issue("error", "structure", path, message)]


def _cross_checks(location: str, record: PoliceRecord | Retraction) -> list[Issue]:
    """What no one field can say: conditions that go with a handling code, times in order, and so on."""
    if isinstance(record, Retraction):
        return []
    issues: list[Issue] = []
    details = record.details
    if isinstance(details, IntelligenceDetails):
        path = f"{location}.details.grading.handling_conditions"
        grading = details.grading
        if grading.handling_code == "C" and grading.handling_conditions is None:
            issues.append(
                Issue("error", "required", path, "handling code C needs the conditions on which the intelligence "
                      "may be shared")
            )
        elif grading.handling_code == "P" and grading.handling_conditions is not None:
            issues.append(Issue("error", "value", path, "handling conditions go only with handling code C"))
    if isinstance(details, MissingEpisodeDetails) and details.found_at is not None:
        if details.found_at < details.reported_missing_at:
            issues.append(
                Issue("error", "value", f"{location}.details.found_at", "must not be before reported_missing_at")
            )
    for position, person in enumerate(record.persons):
        if person.person_id == record.child.person_id:
            issues.append(
                Issue("error", "value", f"{location}.persons[{position}].person_id",
                      "the child is given in child, not again among persons")
            )
    for position, place in enumerate(record.locations):
        stated = place.address.postcode if place.address else None
        if stated and place.postcode and stated != place.postcode:
            issues.append(
                Issue("error", "value", f"{location}.locations[{position}].postcode",
                      "differs from address.postcode; give the postcode once")
            )
    return issues


def _claim(child: Child) -> IdentityClaim:
    version = child.version or claim_version(child.model_dump(mode="json", exclude={"role", "version"}))
    address = child.address or Address()
    return IdentityClaim(
        source_record_id=f"person/{child.person_id}",
        source_version=version,
        nhs_number=child.nhs_number,
        upn=None,
        other_identifiers=(("pnc", child.pnc_id),) if child.pnc_id else (),
        given_names=tuple(child.given_names),
        family_name=child.family_name,
        birth_date=child.birth_date,
        sex=child.sex,
        postcode=address.postcode,
        address_lines=tuple(address.lines),
    )


def _inbound(record: PoliceRecord | Retraction) -> InboundRecord:
    common: dict[str, Any] = {
        "source_record_id": record.record_id,
        "source_version": record.version,
        "kind": record.kind,
        "category": CATEGORIES[record.kind],
        "security_labels": frozenset(),
        "subject_ref": f"person/{record.child.person_id}",
        "payload": record.model_dump(mode="json", by_alias=True),
    }
    if isinstance(record, Retraction):
        summary = "Retracted by the force: the record was entered in error"
        return InboundRecord(occurred_at=None, summary=summary, entered_in_error=True, **common)
    details = record.details
    grading = details.grading if isinstance(details, IntelligenceDetails) else None
    return InboundRecord(
        occurred_at=record.occurred_at.astimezone(UTC),
        summary=_summary(record),
        entered_in_error=False,
        police_handling_code=grading.handling_code if grading else None,
        grading=_grading(grading) if grading else None,
        detrimental=record.detrimental,
        contact=_contact(record.contact),
        people=tuple(_involved(person) for person in record.persons),
        locations=tuple(_place(place) for place in record.locations),
        notice=details.school_notice if isinstance(details, DomesticAbuseDetails) else None,
        **common,
    )


def _grading(grading: Grading) -> str:
    return f"{grading.source_evaluation}/{grading.intelligence_assessment}/{grading.handling_code}"


_RISK = {"no_apparent_risk": "no apparent risk", "low": "low risk", "medium": "medium risk", "high": "high risk"}
_CHILD_PARTS = {
    "victim": "child a victim",
    "witness": "child a witness",
    "suspect": "child a suspect",
    "present": "child present",
    "missing_person": "child missing",
    "detained": "child detained",
    "subject": "child the subject",
}


def _summary(record: PoliceRecord) -> str:
    """Write what a practitioner reads in a strategy meeting: the structured facts, then the force's words."""
    details = record.details
    text: str | None
    if isinstance(details, IncidentDetails):
        head = f"Incident ({details.occurrence_type}), {_CHILD_PARTS[record.child.role]}"
        text = details.summary
    elif isinstance(details, DomesticAbuseDetails):
        present = "child present" if details.child_present else "child not present"
        head = f"Domestic abuse incident ({present}), {_when(details.incident_at)}"
        text = details.summary
    elif isinstance(details, MissingEpisodeDetails):
        risk = _RISK[details.risk_level]
        found = f"found {_when(details.found_at)}" if details.found_at else "not yet found"
        head = f"Missing episode ({risk}): reported {_when(details.reported_missing_at)}, {found}"
        text = details.summary
    elif isinstance(details, CustodyDetails):
        adult = "appropriate adult present" if details.appropriate_adult else "no appropriate adult present"
        outcome = details.outcome.replace("_", " ")
        head = f"Arrested {_day(details.arrested_at)} for {details.offence}; outcome: {outcome}; {adult}"
        text = None
    else:
        head = f"Intelligence graded {_grading(details.grading)}"
        text = details.text
    if record.objects:
        count = len(record.objects)
        head += f"; {count} object{'s' if count != 1 else ''} recorded"
    summary = f"{head}: {text}" if text else head
    return summary if len(summary) <= SUMMARY_LIMIT else summary[: SUMMARY_LIMIT - 1] + "…"


def _day(moment: datetime) -> str:
    return f"{moment.day} {_MONTHS[moment.month - 1]} {moment.year}"


def _when(moment: datetime) -> str:
    # In the offset the force sent (its local time), as the officer would say it.
    return f"{_day(moment)} {moment:%H:%M}"


def _contact(contact: Contact) -> str:
    who = ", ".join(part for part in (contact.officer, contact.unit) if part)
    reach = ", ".join(part for part in (contact.phone, contact.email) if part)
    return f"{who} ({reach})" if reach else who


def _involved(person: Person) -> InvolvedPerson:
    name = " ".join([*person.given_names, *([person.family_name] if person.family_name else [])])
    return InvolvedPerson(
        role=person.role.replace("_", " "),
        name=name or "name not known",
        birth_date=person.birth_date,
        relationship=person.relationship_to_child,
    )


def _place(place: Place) -> str:
    postcode = place.postcode or (place.address.postcode if place.address else None)
    # The postcode district only: enough to place it, not enough to find a door.
    return f"{place.description} ({postcode.split(' ')[0]})" if postcode else place.description


_CHILD = {
    "person_id": "PER-000101",
    "pnc_id": "26/0001234Z",
    "nhs_number": "9990000018",
    "given_names": ["Jordan", "Testcase"],
    "family_name": "Synthetic",
    "birth_date": "2014-03-09",
    "sex": "female",
    "address": {"lines": ["1 Example Row", "Testtown"], "postcode": "ZZ99 3VZ"},
}
_CONTACT = {
    "officer": "DC Jane Example",
    "unit": "Public Protection Unit",
    "phone": "01234 567890",
    "email": "ppu@example.police.invalid",
}
_HOME = {
    "location_id": "LOC-000501",
    "description": "child's home address",
    "address": {"lines": ["1 Example Row", "Testtown"], "postcode": "ZZ99 3VZ"},
}

def _fresh(value: dict[str, Any]) -> dict[str, Any]:
    """Return a copy sharing no part with value (the examples reuse parts; a reader may change its copy)."""
    copied: dict[str, Any] = json.loads(json.dumps(value))
    return copied


EXAMPLE_SUBMISSION: dict[str, Any] = _fresh({
    "schema": POLICE_SCHEMA,
    "atomic": False,
    "records": [
        {
            "record_id": "OCC-2026-000101",
            "version": "1",
            "kind": "incident",
            "occurred_at": "2026-11-10T16:05:00Z",
            "child": {**_CHILD, "role": "victim"},
            "persons": [
                {"person_id": "PER-000102", "given_names": ["Riley"], "family_name": "Fakename",
                 "birth_date": "2012-07-01", "role": "suspect", "relationship_to_child": "older pupil at the same school"}
            ],
            "locations": [{"location_id": "LOC-000502", "description": "footpath near the school", "postcode": "ZZ99 4WX"}],
            "contact": _CONTACT,
            "details": {
                "occurrence_type": "assault",
                "summary": "Jordan reports being pushed to the ground by an older pupil on the walk home; minor "
                "bruising, no medical treatment needed. Words of advice given; school informed.",
            },
        },
        {
            "record_id": "OCC-2026-000102",
            "version": "1",
            "kind": "domestic_abuse_notification",
            "occurred_at": "2026-11-20T21:30:00Z",
            "child": {**_CHILD, "role": "present"},
            "persons": [
                {"person_id": "PER-000103", "given_names": ["Casey"], "family_name": "Synthetic",
                 "role": "victim", "relationship_to_child": "mother"},
                {"person_id": "PER-000104", "given_names": ["Robin"], "family_name": "Placeholder",
                 "role": "suspect", "relationship_to_child": "mother's partner"},
            ],
            "locations": [_HOME],
            "contact": _CONTACT,
            "details": {
                "incident_at": "2026-11-20T21:30:00Z",
                "child_present": True,
                "summary": "Officers attended a verbal and physical argument between the mother and her partner at "
                "the family home; Jordan was upstairs and heard it. Partner arrested; DASH risk assessment medium.",
                "school_notice": "Police attended a domestic abuse incident at Jordan's home on Friday evening; "
                "Jordan was in the house. Please be alert to Jordan's wellbeing today and offer support.",
            },
        },
        {
            "record_id": "MIS-2026-000103",
            "version": "2",
            "kind": "missing_episode",
            "occurred_at": "2026-11-03T18:00:00Z",
            "child": {**_CHILD, "role": "missing_person"},
            "persons": [
                {"person_id": "PER-000103", "given_names": ["Casey"], "family_name": "Synthetic",
                 "role": "reporting_person", "relationship_to_child": "mother"}
            ],
            "locations": [{"location_id": "LOC-000503", "description": "where found", "postcode": "ZZ99 7AB"}],
            "contact": {"unit": "Missing Persons Unit", "phone": "01234 567891"},
            "details": {
                "reported_missing_at": "2026-11-03T18:00:00Z",
                "found_at": "2026-11-04T09:15:00Z",
                "risk_level": "high",
                "summary": "Did not return home after school. Found by officers at an address in a neighbouring town "
                "with two older males; return home interview requested.",
            },
        },
        {
            "record_id": "CUS-2026-000104",
            "version": "1",
            "kind": "custody",
            "occurred_at": "2026-11-02T16:20:00Z",
            "child": {**_CHILD, "role": "detained"},
            "persons": [
                {"person_id": "PER-000103", "given_names": ["Casey"], "family_name": "Synthetic",
                 "role": "appropriate_adult", "relationship_to_child": "mother"}
            ],
            "objects": [{"type": "phone", "description": "mobile phone seized for examination"}],
            "contact": _CONTACT,
            "details": {
                "arrested_at": "2026-11-02T16:20:00Z",
                "offence": "criminal damage",
                "outcome": "released_under_investigation",
                "appropriate_adult": True,
            },
        },
        {
            "record_id": "INT-2026-000105",
            "version": "1",
            "kind": "intelligence",
            "occurred_at": "2026-11-05T10:00:00Z",
            "child": {**_CHILD, "role": "subject"},
            "contact": {"officer": "DS Sam Example", "unit": "Child Exploitation Team", "phone": "01234 567892"},
            "details": {
                "text": "Jordan is reported to be spending evenings at an address associated with older males "
                "believed to be involved in supplying drugs; concern of criminal exploitation.",
                "grading": {"source_evaluation": "2", "intelligence_assessment": "B", "handling_code": "P"},
            },
        },
    ],
})

EXAMPLE_RETRACTION: dict[str, Any] = _fresh({
    "schema": POLICE_SCHEMA,
    "records": [
        {
            "record_id": "OCC-2026-000101",
            "version": "2",
            "kind": "incident",
            "child": {**_CHILD, "role": "victim"},
            "retracted": True,
        }
    ],
})

_DESCRIPTION = """\
The police records format, version 1, shaped on POLE (person, object, location, event). POST a batch \
to /police/v1/records as application/json, with a bearer token from {token_endpoint} (client \
credentials with a signed JWT assertion). The answer gives one outcome per record, in order: created, \
unchanged (this version was pushed before) or rejected, with the field and the reason.

Each record is one event about one child ("child", with the force's person id; NHS number and PNC id \
where known, which link the record to the right child), the other people involved ("persons": never \
linked as the child), the locations ("locations": shown as a description and postcode district only), \
the objects ("objects"), the officer or unit to ask ("contact") and the details of its kind:
- incident: an incident or occurrence involving the child (occurrence type, summary);
- domestic_abuse_notification: the Operation Encompass notice that the child was present at, or \
affected by, domestic abuse; "school_notice" is the text sent to the designated safeguarding lead of \
the child's school before the next school day (the school sees that text only);
- missing_episode: the child reported missing, found or not, with the force's risk level;
- custody: the arrest or detention of the child, the offence, the outcome, whether an appropriate \
adult was present;
- intelligence: intelligence about the child, graded 3x5x2. The handling code is required: P is shared \
under the information-sharing agreement; C (conditions in "handling_conditions") is not shown: the \
view says that the police hold further information and whom to ask.

Never send a source identifier: there is no field for one, and a record whose text appears to name \
or number a covert source (CHIS, informant, source reference, handler, URN S-numbers…) is rejected. \
Unknown fields are refused, not ignored. Times carry a time zone and none may be in the future. \
"detrimental": true marks a record whose disclosure the force judges more detrimental to the child \
than not (Children Act 2004 s16LA). To withdraw a record entered in error, send a new version with \
"retracted": true and only record_id, version, kind and child. "atomic": true stores all the records \
or none. Each version of a record is stored once: repeat a push safely."""


def police_schema(*, token_endpoint: str) -> dict[str, Any]:
    """Return the JSON Schema of police/v1, with its examples."""
    schema = PoliceBatch.model_json_schema(by_alias=True)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": POLICE_SCHEMA_ID,
        **schema,
        "title": "Police records (police/v1)",
        "description": _DESCRIPTION.format(token_endpoint=token_endpoint),
        "examples": [_fresh(EXAMPLE_SUBMISSION), _fresh(EXAMPLE_RETRACTION)],
    }


class PoliceAdapter:
    """Police records in the police/v1 JSON format (POLE)."""

    name = "police"
    media_types = frozenset({MEDIA_TYPE})

    def __init__(self, *, clock: Callable[[], datetime] = _utcnow) -> None:
        self._clock = clock

    def parse(self, body: bytes, media_type: str, *, max_entries: int) -> Submission:
        """Parse a police/v1 batch."""
        return parse_police(body, media_type, max_entries=max_entries, now=self._clock)

    def render(self, submission: Submission, outcomes: Sequence[EntryOutcome]) -> Rendered:
        """Render the per-record outcomes."""
        if not isinstance(submission, BatchSubmission):
            raise TypeError("the police adapter renders only the submissions it parsed")
        return render_outcomes(submission, outcomes)

    def render_error(self, status_code: int, issues: Sequence[Issue]) -> Rendered:
        """Render a refusal as an RFC 9457 problem."""
        return render_problem(status_code, issues)

    def describe(self, *, token_endpoint: str) -> dict[str, Any]:
        """Return the JSON Schema of police/v1."""
        return police_schema(token_endpoint=token_endpoint)

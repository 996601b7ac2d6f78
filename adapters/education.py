"""The education adapter: the education/v1 JSON format, and the CSV route for termly attendance extracts.

Schools have no FHIR. education/v1 is a small, versioned JSON format that a school MIS supplier or
a local authority data team can map to in a day: a batch of records, each about one pupil, each
of one kind (enrolment, attendance, exclusion, safeguarding concern, EHE/CME notice). Every object
refuses unknown fields, so that a mapping mistake is seen on the first push rather than silently
dropped. The CSV route carries attendance only, one row per pupil, for bulk extracts; each row is
turned into the same pydantic record as its JSON twin, so that both share one validation.

Parsing is pure: no I/O, no database. "Today" and "now" come from the caller (tests fix them) or
the clock.
"""

from __future__ import annotations

import copy
import csv
import io
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BeforeValidator,
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeInt,
    StrictBool,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from stdnum.exceptions import InvalidChecksum, InvalidComponent, InvalidFormat, InvalidLength
from stdnum.exceptions import ValidationError as StdnumError
from stdnum.gb import nhs, upn

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
    Issue,
    RecordEntry,
    RejectedEntry,
    Rendered,
    SchoolPlacement,
    Submission,
    TooManyEntries,
)

SCHEMA_NAME = "education/v1"
EDUCATION_SCHEMA_ID = "urn:macpt-gateway:schema:education:v1"
JSON_MEDIA_TYPE = "application/json"
CSV_MEDIA_TYPE = "text/csv"
SUMMARY_LIMIT = 1000


# --- Vocabularies -------------------------------------------------------------------------------


@dataclass(frozen=True)
class AttendanceCode:
    """A DfE attendance code: what it means and how it counts."""

    meaning: str
    # "authorised" and "unauthorised" are absences; "approved_activity" (attendance at an approved
    # educational activity off site) counts as attendance, so it is part of attended_sessions.
    counts_as: Literal["authorised", "unauthorised", "approved_activity"]


# The attendance codes in force since August 2024 (Working together to improve school attendance,
# 2024; the School Attendance (Pupil Registration) (England) Regulations 2024). Present (/ \), late
# (L) and the administrative codes (Z, #) are not absences and are not sent.
ABSENCE_CODES: Mapping[str, AttendanceCode] = {
    # Authorised absence
    "C": AttendanceCode("Leave of absence for exceptional circumstances", "authorised"),
    "C1": AttendanceCode(
        "Leave of absence to participate in a regulated performance or undertake regulated employment abroad",
        "authorised",
    ),
    "C2": AttendanceCode("Leave of absence for a pupil on a part-time timetable", "authorised"),
    "E": AttendanceCode("Suspended or permanently excluded and no alternative provision made", "authorised"),
    "I": AttendanceCode("Illness (not medical or dental appointment)", "authorised"),
    "J1": AttendanceCode(
        "Leave of absence to attend an interview for employment or admission to another educational institution",
        "authorised",
    ),
    "M": AttendanceCode("Leave of absence to attend a medical or dental appointment", "authorised"),
    "Q": AttendanceCode("Unable to attend the school because of a lack of access arrangements", "authorised"),
    "R": AttendanceCode("Religious observance", "authorised"),
    "S": AttendanceCode("Leave of absence for study leave", "authorised"),
    "T": AttendanceCode("Parent travelling for occupational purposes", "authorised"),
    "X": AttendanceCode("Non-compulsory school age pupil not required to be in school", "authorised"),
    "Y1": AttendanceCode("Unable to attend: transport normally provided not available", "authorised"),
    "Y2": AttendanceCode("Unable to attend: widespread disruption to travel", "authorised"),
    "Y3": AttendanceCode("Unable to attend: part of the school premises closed", "authorised"),
    "Y4": AttendanceCode("Unable to attend: whole school site unexpectedly closed", "authorised"),
    "Y5": AttendanceCode("Unable to attend: in criminal justice detention", "authorised"),
    "Y6": AttendanceCode("Unable to attend: in accordance with public health guidance or law", "authorised"),
    "Y7": AttendanceCode("Unable to attend: any other unavoidable cause", "authorised"),
    # Unauthorised absence
    "G": AttendanceCode("Holiday not granted by the school", "unauthorised"),
    "N": AttendanceCode("Reason for absence not yet established", "unauthorised"),
    "O": AttendanceCode("Absent in other or unknown circumstances", "unauthorised"),
    "U": AttendanceCode("Arrived in school after registration closed", "unauthorised"),
    # Attendance at an approved educational activity (counts as attendance)
    "K": AttendanceCode("Attending education provision arranged by the local authority", "approved_activity"),
    "V": AttendanceCode("Attending an educational visit or trip", "approved_activity"),
    "P": AttendanceCode("Participating in a supervised sporting activity", "approved_activity"),
    "W": AttendanceCode("Attending work experience", "approved_activity"),
    "B": AttendanceCode("Attending any other approved educational activity", "approved_activity"),
    "D": AttendanceCode("Dual registered: attending another school", "approved_activity"),
}

# The DfE's suspension and permanent exclusion reason categories (school census), as codes.
EXCLUSION_REASONS: Mapping[str, str] = {
    "physical_assault_against_pupil": "Physical assault against a pupil",
    "physical_assault_against_adult": "Physical assault against an adult",
    "verbal_abuse_against_pupil": "Verbal abuse or threatening behaviour against a pupil",
    "verbal_abuse_against_adult": "Verbal abuse or threatening behaviour against an adult",
    "offensive_weapon": "Use or threat of use of an offensive weapon or prohibited item",
    "bullying": "Bullying",
    "racist_abuse": "Racist abuse",
    "sexual_orientation_or_gender_identity_abuse": "Abuse against sexual orientation or gender identity",
    "disability_abuse": "Abuse relating to disability",
    "sexual_misconduct": "Sexual misconduct",
    "drug_and_alcohol_related": "Drug and alcohol related",
    "damage": "Damage",
    "theft": "Theft",
    "inappropriate_online_use": "Inappropriate use of social media or online technology",
    "public_health_transgression": (
        "Wilful and repeated transgression of protective measures in place to protect public health"
    ),
    "persistent_disruptive_behaviour": "Persistent or general disruptive behaviour",
    "other": "Other",
}

# What a designated safeguarding lead logs a concern as (Keeping children safe in education).
CONCERN_CATEGORIES: Mapping[str, str] = {
    "neglect": "Neglect",
    "physical_abuse": "Physical abuse",
    "emotional_abuse": "Emotional abuse",
    "sexual_abuse": "Sexual abuse",
    "domestic_abuse": "Domestic abuse",
    "child_sexual_exploitation": "Child sexual exploitation",
    "child_criminal_exploitation": "Child criminal exploitation",
    "online_safety": "Online safety",
    "self_harm": "Self-harm",
    "radicalisation": "Radicalisation",
    "fgm": "Female genital mutilation",
    "missing_from_education": "Missing from education",
    "peer_on_peer_abuse": "Child-on-child (peer-on-peer) abuse",
    "other": "Other",
}

YearGroup = Literal["N1", "N2", "R", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14"]
ExclusionReason = Literal[
    "physical_assault_against_pupil",
    "physical_assault_against_adult",
    "verbal_abuse_against_pupil",
    "verbal_abuse_against_adult",
    "offensive_weapon",
    "bullying",
    "racist_abuse",
    "sexual_orientation_or_gender_identity_abuse",
    "disability_abuse",
    "sexual_misconduct",
    "drug_and_alcohol_related",
    "damage",
    "theft",
    "inappropriate_online_use",
    "public_health_transgression",
    "persistent_disruptive_behaviour",
    "other",
]
ConcernCategory = Literal[
    "neglect",
    "physical_abuse",
    "emotional_abuse",
    "sexual_abuse",
    "domestic_abuse",
    "child_sexual_exploitation",
    "child_criminal_exploitation",
    "online_safety",
    "self_harm",
    "radicalisation",
    "fgm",
    "missing_from_education",
    "peer_on_peer_abuse",
    "other",
]

# The CSV route: required columns, in the order an extract usually has them.
CSV_COLUMNS: Mapping[str, str] = {
    "record_id": "the school's id for this attendance record (1-64 of A-Z a-z 0-9 . _ : / -)",
    "version": "the record's version (1-64 characters); a changed row needs a new version",
    "upn": "the pupil's Unique Pupil Number (13 characters, check letter verified)",
    "given_names": "the pupil's given names, separated by spaces",
    "family_name": "the pupil's family name",
    "birth_date": "the pupil's date of birth, YYYY-MM-DD",
    "sex": "male, female, other or unknown",
    "postcode": "the pupil's home postcode (may be empty)",
    "school_urn": "the school's six-digit Unique Reference Number",
    "period_start": "the first day of the period the figures cover, YYYY-MM-DD",
    "period_end": "the last day of the period, YYYY-MM-DD (not in the future)",
    "possible_sessions": "the number of possible sessions in the period (a whole number, 0 or more)",
    "attended_sessions": "the sessions attended, including approved educational activity (0 to possible)",
}
CSV_OPTIONAL_COLUMNS: Mapping[str, str] = {
    "nhs_number": "the pupil's NHS number, if the school holds it (10 digits, Modulus 11 checked)",
    **{f"absence_{code}": f"sessions recorded as code {code}: {c.meaning}" for code, c in ABSENCE_CODES.items()},
}
_ABSENCE_COLUMN_PREFIX = "absence_"
_CODE_ORDER = {code: position for position, code in enumerate(ABSENCE_CODES)}

_RECORD_ID_PATTERN = r"^[A-Za-z0-9._:/-]{1,64}$"
_RECORD_ID = re.compile(_RECORD_ID_PATTERN)
_KEY_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,39}$")  # what a field, code or column name looks like
_POSTCODE = re.compile(r"^[A-Z]{1,2}[0-9][A-Z0-9]? [0-9][A-Z]{2}$")
# A school's clock may run a little ahead of ours; a concern logged "in the future" by less than
# this is accepted.
_CLOCK_SKEW = timedelta(minutes=5)
_NO_LABELS: frozenset[str] = frozenset()  # schools send no FHIR security labels
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


# --- Validators shared by the models -----------------------------------------------------------

_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_ISO_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T")


def _iso_date(value: Any) -> Any:
    # pydantic's lax mode would read 1399939200 as a Unix time and "2015-03-14T00:00:00Z" as a
    # date: a mapping mistake that must be seen, not stored as some other day.
    if not isinstance(value, str) or not _ISO_DATE.match(value):
        raise ValueError("must be an ISO 8601 date, e.g. 2016-05-04")
    return value


def _iso_datetime(value: Any) -> Any:
    if not isinstance(value, str) or not _ISO_DATETIME.match(value):
        raise ValueError("must be an ISO 8601 date and time with its offset, e.g. 2026-11-20T09:15:00Z")
    return value


IsoDate = Annotated[date, BeforeValidator(_iso_date)]
IsoDateTime = Annotated[AwareDatetime, BeforeValidator(_iso_datetime)]



@dataclass(frozen=True)
class _Moment:
    """When a push is parsed: "now", and today's date in the UK. Worked out once per push."""

    now: datetime
    today: date

    @classmethod
    def at(cls, now: datetime | None) -> _Moment:
        """Return the moment `now` (the clock's when None)."""
        now = now if now is not None else datetime.now(UTC)
        now = now if now.tzinfo is not None else now.replace(tzinfo=UTC)
        # UK civil time is UTC or UTC+1, and the later is taken. Not zoneinfo: tz data is not a
        # dependency (slim images lack it), and an hour's leniency around midnight only ever
        # accepts, never refuses, a date that is today in the UK.
        return cls(now, (now.astimezone(UTC) + timedelta(hours=1)).date())


def _moment(info: ValidationInfo) -> _Moment:
    moment = info.context.get("moment") if isinstance(info.context, dict) else None
    return moment if isinstance(moment, _Moment) else _Moment.at(None)


def _not_future(value: date, info: ValidationInfo) -> date:
    if value > _moment(info).today:
        raise ValueError("the date must not be in the future")
    return value


def _valid_upn(value: str) -> str:
    # stdnum raises a subclass of its ValidationError per fault; each gets its own message, and none
    # of them repeats the number sent.
    try:
        return str(upn.validate(value))
    except InvalidLength:
        raise ValueError("the UPN must be 13 characters") from None
    except InvalidFormat:
        raise ValueError("the UPN must be a check letter, 11 digits, then a digit or letter") from None
    except InvalidComponent:
        raise ValueError("the UPN's local authority number (characters 2-4) is not a known one") from None
    except InvalidChecksum:
        raise ValueError("the UPN's check letter (its first character) does not match the rest") from None
    except StdnumError:
        raise ValueError("the UPN is not valid") from None


def _valid_nhs_number(value: str) -> str:
    try:
        return str(nhs.validate(value))  # the compact form
    except StdnumError:
        raise ValueError(
            "the NHS number is not valid: it must be 10 digits with a correct Modulus 11 check digit"
        ) from None


def _valid_postcode(value: str) -> str:
    compact = re.sub(r"\s+", "", value).upper()
    normalised = f"{compact[:-3]} {compact[-3:]}"
    if not _POSTCODE.match(normalised):
        raise ValueError("the postcode is not a UK postcode (e.g. ZZ99 3VZ)")
    return normalised


def _known_absence_code(value: str) -> str:
    if value not in ABSENCE_CODES:
        raise ValueError(
            "not a DfE attendance code in force since August 2024; use one of " + ", ".join(ABSENCE_CODES)
        )
    return value


Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=4000)]
Version = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[\x20-\x7e]+$")]
SchoolUrn = Annotated[str, StringConstraints(pattern=r"^[0-9]{6}$")]  # ASCII: the Rust regex's \d is Unicode
# An identifier longer than this is wrong whatever it holds; refused before stdnum reads it char by char.
Identifier = Annotated[str, StringConstraints(max_length=32)]
AbsenceCodeKey = Annotated[str, AfterValidator(_known_absence_code)]


def _absences_schema() -> dict[str, Any]:
    return {
        "propertyNames": {"enum": list(ABSENCE_CODES)},
        "properties": {
            code: {"type": "integer", "minimum": 0, "description": f"{c.meaning} ({c.counts_as.replace('_', ' ')})"}
            for code, c in ABSENCE_CODES.items()
        },
    }


# --- The education/v1 models ----------------------------------------------------------------------


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Address(_Model):
    """The pupil's home address."""

    lines: list[Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]] = Field(
        default_factory=list, max_length=6, description="Address lines, house first, without the postcode."
    )
    postcode: Annotated[str, StringConstraints(max_length=16)] | None = Field(
        default=None, description="UK postcode; normalised to upper case with one space (ZZ99 3VZ)."
    )

    @field_validator("postcode")
    @classmethod
    def _postcode(cls, value: str | None) -> str | None:
        return _valid_postcode(value) if value is not None else None


class Pupil(_Model):
    """Who the record is about, as the school's MIS holds the pupil: linked to a child by UPN."""

    upn: Identifier = Field(
        description="Unique Pupil Number: 13 characters, the first a check letter (verified). "
        "Normalised to upper case without spaces."
    )
    nhs_number: Identifier | None = Field(default=None, description="NHS number, if held (Modulus 11 checked).")
    given_names: list[Name] = Field(min_length=1, max_length=10, description="Given names, in order.")
    family_name: Name = Field(description="Family name (legal surname).")
    birth_date: IsoDate = Field(description="Date of birth (not in the future).")
    sex: Literal["male", "female", "other", "unknown"] = Field(description="Sex as recorded by the school.")
    address: Address | None = Field(default=None, description="Home address.")
    version: Version | None = Field(
        default=None,
        description="The version of this pupil's details in the MIS, if it keeps one; otherwise the gateway "
        "derives one from the details, so that a change is a new version and a repeat is not.",
    )

    @field_validator("upn")
    @classmethod
    def _upn(cls, value: str) -> str:
        return _valid_upn(value)

    @field_validator("nhs_number")
    @classmethod
    def _nhs_number(cls, value: str | None) -> str | None:
        return _valid_nhs_number(value) if value is not None else None

    @field_validator("birth_date")
    @classmethod
    def _birth_date(cls, value: date, info: ValidationInfo) -> date:
        return _not_future(value, info)


class School(_Model):
    """The school the record comes from."""

    urn: SchoolUrn = Field(
        description="The school's six-digit Unique Reference Number (Get Information about Schools)."
    )
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)] | None = Field(
        default=None, description="The school's name, for people reading the record."
    )


class EnrolmentDetails(_Model):
    """A pupil on a school's roll, or leaving it."""

    year_group: YearGroup = Field(description="National curriculum year group: N1, N2, R, or 1 to 14.")
    start_date: IsoDate = Field(description="The first day on the school's roll (not in the future).")
    end_date: IsoDate | None = Field(
        default=None, description="The leaving date; on or before today means the pupil has left."
    )
    reason_for_leaving: Text | None = Field(default=None, description="Why the pupil left (only with an end_date).")

    @field_validator("start_date")
    @classmethod
    def _start(cls, value: date, info: ValidationInfo) -> date:
        return _not_future(value, info)

    @field_validator("end_date")
    @classmethod
    def _end(cls, value: date | None, info: ValidationInfo) -> date | None:
        start = info.data.get("start_date")
        if value is not None and isinstance(start, date) and value < start:
            raise ValueError("the end_date must not be before the start_date")
        return value

    @field_validator("reason_for_leaving")
    @classmethod
    def _reason(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and info.data.get("end_date") is None and "end_date" in info.data:
            raise ValueError("a reason_for_leaving needs an end_date")
        return value


class AttendanceDetails(_Model):
    """A pupil's attendance over a period: sessions (half days) possible, attended, and absences by code."""

    period_start: IsoDate = Field(description="The first day of the period (not in the future).")
    period_end: IsoDate = Field(description="The last day of the period: on or after period_start, not in the future.")
    possible_sessions: NonNegativeInt = Field(description="Possible sessions (half days) in the period.")
    attended_sessions: NonNegativeInt = Field(
        description="Sessions attended, including approved educational activity (codes K, V, P, W, B, D); "
        "at most possible_sessions."
    )
    absences: dict[AbsenceCodeKey, NonNegativeInt] = Field(
        default_factory=dict,
        description="Sessions by DfE attendance code (those in force since August 2024). Authorised and "
        "unauthorised absences together may not exceed possible_sessions - attended_sessions; approved "
        "educational activity codes count as attendance and may be given too (at most attended_sessions).",
        json_schema_extra=_absences_schema(),
    )

    @field_validator("period_start")
    @classmethod
    def _start(cls, value: date, info: ValidationInfo) -> date:
        return _not_future(value, info)

    @field_validator("period_end")
    @classmethod
    def _end(cls, value: date, info: ValidationInfo) -> date:
        start = info.data.get("period_start")
        if isinstance(start, date) and value < start:
            raise ValueError("the period_end must not be before the period_start")
        return _not_future(value, info)

    @field_validator("attended_sessions")
    @classmethod
    def _attended(cls, value: int, info: ValidationInfo) -> int:
        possible = info.data.get("possible_sessions")
        if isinstance(possible, int) and value > possible:
            raise ValueError("attended_sessions must not exceed possible_sessions")
        return value

    @field_validator("absences")
    @classmethod
    def _absences(cls, value: dict[str, int], info: ValidationInfo) -> dict[str, int]:
        possible, attended = info.data.get("possible_sessions"), info.data.get("attended_sessions")
        if not (isinstance(possible, int) and isinstance(attended, int)):
            return value  # already refused for those fields
        absent = sum(n for code, n in value.items() if ABSENCE_CODES[code].counts_as != "approved_activity")
        if absent > possible - attended:
            raise ValueError("the absences add up to more than possible_sessions - attended_sessions")
        if sum(n for code, n in value.items() if ABSENCE_CODES[code].counts_as == "approved_activity") > attended:
            raise ValueError("approved educational activity counts as attendance: it must not exceed attended_sessions")
        return value


class ExclusionDetails(_Model):
    """A suspension (fixed period) or a permanent exclusion."""

    exclusion_type: Literal["suspension", "permanent_exclusion"] = Field(
        alias="type", description="suspension (for a number of sessions) or permanent_exclusion."
    )
    start_date: IsoDate = Field(description="The first day; may be ahead when a suspension is decided in advance.")
    sessions: Annotated[int, Field(ge=1, le=90)] | None = Field(
        default=None,
        validate_default=True,
        description="For a suspension, its length in sessions (half days; at most 90, the 45 school days a "
        "pupil may be suspended for in a school year). Not given for a permanent exclusion.",
    )
    reason: ExclusionReason = Field(
        description="The DfE reason category: " + "; ".join(f"{k}: {v}" for k, v in EXCLUSION_REASONS.items())
    )

    @field_validator("sessions")
    @classmethod
    def _sessions(cls, value: int | None, info: ValidationInfo) -> int | None:
        kind = info.data.get("exclusion_type")
        if kind == "suspension" and value is None:
            raise ValueError("a suspension needs its length in sessions")
        if kind == "permanent_exclusion" and value is not None:
            raise ValueError("a permanent exclusion has no length in sessions")
        return value


class SafeguardingConcernDetails(_Model):
    """A concern logged by the designated safeguarding lead (Keeping children safe in education)."""

    logged_at: IsoDateTime = Field(
        description="When the concern was logged, with its UTC offset (not in the future)."
    )
    category: ConcernCategory = Field(
        description="What the concern is about: " + "; ".join(f"{k}: {v}" for k, v in CONCERN_CATEGORIES.items())
    )
    summary: Text = Field(description="What was seen, heard or disclosed, briefly, for a strategy meeting.")
    action_taken: Text = Field(description="What the school did about it.")

    @field_validator("logged_at")
    @classmethod
    def _logged_at(cls, value: datetime, info: ValidationInfo) -> datetime:
        try:
            value.astimezone(UTC)
        except OverflowError:  # e.g. 0001-01-01T00:00:00+14:00, which has no UTC datetime
            raise ValueError("logged_at must lie between the years 1 and 9999 in UTC") from None
        if value > _moment(info).now + _CLOCK_SKEW:
            raise ValueError("logged_at must not be in the future")
        return value


class EducationNoticeDetails(_Model):
    """A notice that a child is electively home educated, or missing education."""

    notice_type: Literal["elective_home_education", "child_missing_education"] = Field(
        alias="type", description="elective_home_education or child_missing_education."
    )
    effective_date: IsoDate = Field(
        description="From when (not in the future): the day the pupil came off roll for EHE, or was first "
        "known to be missing education."
    )
    summary: Text | None = Field(default=None, description="What is known, briefly.")
    previous_school_urn: SchoolUrn | None = Field(default=None, description="The URN of the last school, if known.")

    @field_validator("effective_date")
    @classmethod
    def _effective(cls, value: date, info: ValidationInfo) -> date:
        return _not_future(value, info)


@dataclass(frozen=True)
class _Facts:
    """What a record contributes to its InboundRecord beyond the common fields."""

    category: str
    occurred_on: date | datetime
    summary: str
    school: SchoolPlacement | None = None


class _RecordBase(_Model):
    record_id: str = Field(
        pattern=_RECORD_ID_PATTERN,
        description="The school's id for this record (1-64 of A-Z a-z 0-9 . _ : / -): a later version of it "
        "replaces it.",
    )
    version: Version = Field(description="The record's version: a repeat of the same version is acknowledged, "
                             "not stored twice; a change needs a new version.")
    retracted: StrictBool = Field(default=False, description="True when the record was entered in error.")
    pupil: Pupil
    recorded_by: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)] | None = (
        Field(default=None, description="Who logged it, by role or name (e.g. Designated safeguarding lead): the "
              "person to ask when the record is withheld from a viewer.")
    )
    detrimental: StrictBool = Field(
        default=False,
        description="True when the school judges disclosure more detrimental to the child than not "
        "(Children Act 2004 s16LA): the record is then withheld and the reason shown.",
    )

    def facts(self, *, today: date) -> _Facts:
        """Return the record's category, date, summary and placement."""
        raise NotImplementedError


class EnrolmentRecord(_RecordBase):
    """Enrolment: the pupil is on the school's roll (from start_date) or has left it (end_date)."""

    kind: Literal["enrolment"]
    school: School
    details: EnrolmentDetails

    def facts(self, *, today: date) -> _Facts:
        """Return the enrolment's facts: on roll since the start, or left on the end date."""
        details, where = self.details, _school_text(self.school)
        year = _year_text(details.year_group)
        if details.end_date is not None and details.end_date <= today:
            summary = f"Left {where} on {_day(details.end_date)} ({year})"
            if details.reason_for_leaving:
                summary += f": {_one_line(details.reason_for_leaving)}"
            placement = SchoolPlacement(self.school.urn, "left", since=details.end_date)
            return _Facts("education.enrolment", details.end_date, summary, placement)
        summary = f"On roll at {where}, {year}, since {_day(details.start_date)}"
        if details.end_date is not None:
            summary += f"; leaving {_day(details.end_date)}"
        placement = SchoolPlacement(self.school.urn, "on_roll", since=details.start_date)
        return _Facts("education.enrolment", details.start_date, summary, placement)


class AttendanceRecord(_RecordBase):
    """Attendance: sessions possible and attended over a period, and absences by DfE code."""

    kind: Literal["attendance"]
    school: School
    details: AttendanceDetails

    def facts(self, *, today: date) -> _Facts:
        """Return the attendance's facts: dated at the period's end."""
        return _Facts("education.attendance", self.details.period_end, attendance_summary(self.details))


class ExclusionRecord(_RecordBase):
    """Exclusion: a suspension or a permanent exclusion, with the DfE reason."""

    kind: Literal["exclusion"]
    school: School
    details: ExclusionDetails

    def facts(self, *, today: date) -> _Facts:
        """Return the exclusion's facts: dated at its start."""
        details, where = self.details, _school_text(self.school)
        reason = EXCLUSION_REASONS[details.reason]
        if details.exclusion_type == "suspension":
            sessions = details.sessions or 0
            length = f"{sessions} session{'s' if sessions != 1 else ''}"
            summary = f"Suspended from {where} for {length} from {_day(details.start_date)}: {reason}"
        else:
            summary = f"Permanently excluded from {where} from {_day(details.start_date)}: {reason}"
        return _Facts("education.exclusion", details.start_date, summary)


class SafeguardingConcernRecord(_RecordBase):
    """Safeguarding concern: logged by the designated safeguarding lead."""

    kind: Literal["safeguarding_concern"]
    school: School
    details: SafeguardingConcernDetails

    def facts(self, *, today: date) -> _Facts:
        """Return the concern's facts: dated when it was logged."""
        details = self.details
        summary = (
            f"Safeguarding concern ({CONCERN_CATEGORIES[details.category].lower()}) logged "
            f"{_day(details.logged_at.date())} at {_school_text(self.school)}: {_one_line(details.summary)} "
            f"Action taken: {_one_line(details.action_taken)}"
        )
        return _Facts("education.safeguarding_concern", details.logged_at, summary)


class EducationNoticeRecord(_RecordBase):
    """Education notice: the child is electively home educated, or missing education (no school)."""

    kind: Literal["education_notice"]
    school: School | None = Field(default=None, description="The school sending the notice, if a school sends it.")
    details: EducationNoticeDetails

    def facts(self, *, today: date) -> _Facts:
        """Return the notice's facts: the placement from its effective date."""
        details = self.details
        ehe = details.notice_type == "elective_home_education"
        head = "Elective home education" if ehe else "Child missing education"
        summary = f"{head} from {_day(details.effective_date)}"
        if details.previous_school_urn:
            summary += f" (previously at school URN {details.previous_school_urn})"
        if details.summary:
            summary += f": {_one_line(details.summary)}"
        placement = SchoolPlacement(
            None, "elective_home_education" if ehe else "missing_education", since=details.effective_date
        )
        return _Facts("education.ehe_cme", details.effective_date, summary, placement)


class _UnknownKindRecord(_RecordBase):
    """A record whose kind is missing or unknown: its common fields are still checked."""

    kind: Any = None
    school: Any = None
    details: Any = None


EducationRecord = Annotated[
    EnrolmentRecord | AttendanceRecord | ExclusionRecord | SafeguardingConcernRecord | EducationNoticeRecord,
    Field(discriminator="kind"),
]
RECORD_MODELS: Mapping[str, type[_RecordBase]] = {
    "enrolment": EnrolmentRecord,
    "attendance": AttendanceRecord,
    "exclusion": ExclusionRecord,
    "safeguarding_concern": SafeguardingConcernRecord,
    "education_notice": EducationNoticeRecord,
}


class _EnvelopeBase(_Model):
    schema_name: Literal["education/v1"] = Field(alias="schema", description="The format and its version.")
    atomic: StrictBool = Field(
        default=False,
        description="True: the records stand or fall together (one bad record and none is stored). "
        "False: each record is stored or refused on its own.",
    )


class _Envelope(_EnvelopeBase):
    # Records are validated one by one, so that one bad record is refused alone.
    records: list[Any] = Field(min_length=1)


class EducationSubmission(_EnvelopeBase):
    """A push of education records."""

    records: list[EducationRecord] = Field(min_length=1, description="The records, each about one pupil.")


# --- Summaries ----------------------------------------------------------------------------------


def attendance_summary(details: AttendanceDetails) -> str:
    """Return a one-line attendance summary: sessions, percentage, absences by code, DfE absence bands."""
    possible, attended = details.possible_sessions, details.attended_sessions
    head = f"Attendance {_day(details.period_start)} – {_day(details.period_end)}: "
    if possible == 0:
        return head + "no possible sessions"
    # Tenths of a per cent, rounded half up, in integers: no float rounding surprises.
    tenths = (attended * 2000 + possible) // (2 * possible)
    parts = [head + f"{attended} of {possible} sessions ({tenths // 10}.{tenths % 10}%)"]
    by_kind: dict[str, list[tuple[str, int]]] = {"unauthorised": [], "authorised": [], "approved_activity": []}
    for code, sessions in sorted(details.absences.items(), key=_by_sessions_then_code):
        if sessions:
            by_kind[ABSENCE_CODES[code].counts_as].append((code, sessions))
    parts.append(_code_breakdown("unauthorised", by_kind["unauthorised"]))
    parts.append(_code_breakdown("authorised", by_kind["authorised"]))
    if by_kind["approved_activity"]:
        parts.append(_code_breakdown("approved educational activity", by_kind["approved_activity"]))
    absent = possible - attended
    # DfE: persistent absence is missing 10% or more of possible sessions, severe 50% or more.
    if absent * 2 >= possible:
        parts.append("severe absence")
    elif absent * 10 >= possible:
        parts.append("persistent absence")
    return "; ".join(parts)


def _by_sessions_then_code(item: tuple[str, int]) -> tuple[int, int]:
    return -item[1], _CODE_ORDER[item[0]]


def _code_breakdown(label: str, counted: Sequence[tuple[str, int]]) -> str:
    if not counted:
        return f"{label} 0"
    total = sum(sessions for _code, sessions in counted)
    return f"{label} {total} ({', '.join(f'{code} {sessions}' for code, sessions in counted)})"


def _day(value: date) -> str:
    return f"{value.day} {_MONTHS[value.month - 1]} {value.year}"


def _school_text(school: School | None) -> str:
    if school is None:
        return "no school"
    return f"{school.name} (URN {school.urn})" if school.name else f"school URN {school.urn}"


def _year_text(year_group: str) -> str:
    if year_group in ("N1", "N2"):
        return f"nursery ({year_group})"
    return "reception" if year_group == "R" else f"year {year_group}"


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _cap(text: str) -> str:
    return text if len(text) <= SUMMARY_LIMIT else text[: SUMMARY_LIMIT - 1] + "…"


def _occurred_at(value: date | datetime) -> datetime:
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    return datetime.combine(value, time(0, 0), tzinfo=UTC)


# --- From records to entries ------------------------------------------------------------------


class _Batch:
    """Collects a submission's entries and records, one claim per distinct pupil version."""

    def __init__(self, *, today: date) -> None:
        self.today = today
        self.entries: list[Entry] = []
        self.records: list[BatchRecord] = []
        self._claims: dict[tuple[str, str], int] = {}

    def reject(self, location: str, record_id: str | None, issues: Sequence[Issue]) -> None:
        index = len(self.entries)
        self.entries.append(RejectedEntry(index, location, tuple(issues)))
        self.records.append(BatchRecord(location, record_id, (index,), None))

    def accept(self, record: _RecordBase, *, location: str, subject_location: str) -> None:
        payload = record.model_dump(mode="json", by_alias=True)
        pupil = record.pupil
        subject_ref = f"pupil/{pupil.upn}"
        version = pupil.version or claim_version(_identifying(payload["pupil"]))
        claim_index = self._claims.get((subject_ref, version))
        if claim_index is None:
            claim_index = len(self.entries)
            self._claims[(subject_ref, version)] = claim_index
            self.entries.append(ClaimEntry(claim_index, subject_location, _claim(pupil, subject_ref, version)))
        facts = record.facts(today=self.today)
        inbound = InboundRecord(
            source_record_id=record.record_id,
            source_version=record.version,
            kind=str(payload["kind"]),
            category=facts.category,
            occurred_at=_occurred_at(facts.occurred_on),
            summary=_cap(facts.summary),
            security_labels=_NO_LABELS,
            entered_in_error=record.retracted,
            subject_ref=subject_ref,
            payload=payload,
            detrimental=record.detrimental,
            contact=record.recorded_by,
            school=facts.school,
        )
        index = len(self.entries)
        self.entries.append(RecordEntry(index, location, subject_location, inbound))
        self.records.append(BatchRecord(location, record.record_id, (claim_index, index), index))

    def submission(self, *, atomic: bool, label: str) -> BatchSubmission:
        return BatchSubmission(
            atomic=atomic, label=label, entries=tuple(self.entries), records=tuple(self.records), schema=SCHEMA_NAME
        )


# The pupil fields a version is computed from (when the school sends none). Address lines are left
# out: an attendance extract has none, and a row that agrees with the enrolment on everything else
# is the same pupil record, not a thinner new version of it (which would also replace the
# enrolment's fuller identity). A move shows in the postcode, which counts.
_VERSIONED_FIELDS = ("upn", "nhs_number", "given_names", "family_name", "birth_date", "sex")


def _identifying(pupil: dict[str, Any]) -> dict[str, Any]:
    address = pupil.get("address") or {}
    return {**{name: pupil.get(name) for name in _VERSIONED_FIELDS}, "postcode": address.get("postcode")}


def _claim(pupil: Pupil, subject_ref: str, version: str) -> IdentityClaim:
    address = pupil.address
    return IdentityClaim(
        source_record_id=subject_ref,
        source_version=version,
        nhs_number=pupil.nhs_number,
        upn=pupil.upn,
        other_identifiers=(),
        given_names=tuple(pupil.given_names),
        family_name=pupil.family_name,
        birth_date=pupil.birth_date,
        sex=pupil.sex,
        postcode=address.postcode if address else None,
        address_lines=tuple(address.lines) if address else (),
    )


def _readable_id(value: Any) -> str | None:
    return value if isinstance(value, str) and _RECORD_ID.match(value) else None


def _issues(error: ValidationError, *, prefix: str) -> list[Issue]:
    """Issues located under prefix; a refused key (unknown field, unknown absence code) is named only if name-like.

    A key may be anything a source sends, even a child's name, so one that does not look like a
    field name or a code is left out of the location (which then names the object holding it).
    """
    issues = []
    for issue in validation_issues(error, prefix=prefix):
        location = issue.location.removesuffix(".[key]")  # an absence code is located at the code itself
        if issue.code == "structure" or location != issue.location:
            holder, _, key = location.rpartition(".")
            if not _KEY_NAME.match(key):
                location = holder
        issues.append(replace(issue, location=location) if location != issue.location else issue)
    return issues


def _context(now: datetime | None) -> tuple[dict[str, Any], date]:
    moment = _Moment.at(now)
    return {"moment": moment}, moment.today


# --- JSON ------------------------------------------------------------------------------------------


def parse_json(body: bytes, *, max_entries: int, now: datetime | None = None) -> BatchSubmission:
    """Parse and validate an education/v1 JSON batch."""
    data = read_json(body)
    if not isinstance(data, dict):
        raise AdapterError(
            [Issue("error", "structure", "", 'the body must be an object: {"schema": "education/v1", "records": []}')]
        )
    try:
        envelope = _Envelope.model_validate(data)
    except ValidationError as exc:
        raise AdapterError(_issues(exc, prefix="")) from None
    if len(envelope.records) > max_entries:
        raise TooManyEntries(
            [Issue("error", "too-long", "records", f"a push may carry at most {max_entries} records; split it")]
        )
    context, today = _context(now)
    batch = _Batch(today=today)
    for position, raw in enumerate(envelope.records):
        location = f"records[{position}]"
        if not isinstance(raw, dict):
            batch.reject(location, None, [Issue("error", "structure", location, "each record must be a JSON object")])
            continue
        kind = raw.get("kind")
        model = RECORD_MODELS.get(kind) if isinstance(kind, str) else None
        if model is None:
            issues = [
                Issue("error", "required" if kind is None else "value", f"{location}.kind",
                      "kind must be one of: " + ", ".join(RECORD_MODELS))
            ]
            try:
                _UnknownKindRecord.model_validate(raw, context=context)
            except ValidationError as exc:
                issues += _issues(exc, prefix=location)
            batch.reject(location, _readable_id(raw.get("record_id")), issues)
            continue
        try:
            record = model.model_validate(raw, context=context)
        except ValidationError as exc:
            batch.reject(location, _readable_id(raw.get("record_id")), _issues(exc, prefix=location))
            continue
        batch.accept(record, location=location, subject_location=f"{location}.pupil")
    return batch.submission(atomic=envelope.atomic, label=f"{SCHEMA_NAME} batch")


# --- CSV ---------------------------------------------------------------------------------------------

# Where each column goes in the JSON form of the record: (object, field). The absence columns go to
# details.absences.<CODE>.
_CSV_TARGETS: Mapping[str, tuple[Literal["record", "pupil", "address", "school", "details"], str]] = {
    "record_id": ("record", "record_id"),
    "version": ("record", "version"),
    "upn": ("pupil", "upn"),
    "nhs_number": ("pupil", "nhs_number"),
    "given_names": ("pupil", "given_names"),
    "family_name": ("pupil", "family_name"),
    "birth_date": ("pupil", "birth_date"),
    "sex": ("pupil", "sex"),
    "postcode": ("address", "postcode"),
    "school_urn": ("school", "urn"),
    "period_start": ("details", "period_start"),
    "period_end": ("details", "period_end"),
    "possible_sessions": ("details", "possible_sessions"),
    "attended_sessions": ("details", "attended_sessions"),
}
_CSV_PATHS = {"record": "", "pupil": "pupil.", "address": "pupil.address.", "school": "school.", "details": "details."}
# The column of each field of the record model (paths as batch.validation_issues writes them).
_CSV_FIELD_COLUMNS = {_CSV_PATHS[target] + field: column for column, (target, field) in _CSV_TARGETS.items()}


@dataclass(frozen=True)
class _CsvLayout:
    """Where each column is, worked out once from the header."""

    width: int
    record_id: int
    cells: tuple[tuple[int, Literal["record", "pupil", "address", "school", "details"], str], ...]
    absences: tuple[tuple[str, int], ...]


def _csv_layout(header: Sequence[str]) -> _CsvLayout:
    names = [cell.strip() for cell in header]
    known = set(CSV_COLUMNS) | set(CSV_OPTIONAL_COLUMNS)
    if not any(name in known for name in names):
        # Probably a data row, not a header: say so without repeating its cells.
        raise AdapterError(
            [Issue("error", "structure", "row 1", "row 1 must be a header row naming the columns: "
                   + ", ".join(CSV_COLUMNS) + " (and optionally nhs_number and absence_<CODE> columns)")]
        )
    issues: list[Issue] = []
    seen: dict[str, int] = {}
    for position, name in enumerate(names, start=1):
        # Named only if name-like (a data row sent as the header would hold a child's details).
        where = f"row 1, column {name}" if _KEY_NAME.match(name) else f"row 1, column {position}"
        if name in seen:
            issues.append(Issue("error", "structure", where, f"the column appears more than once (first as column "
                                f"{seen[name]})"))
        elif name not in known:
            message = (
                "the column has no name" if not name
                else "unknown column; the columns are: " + ", ".join(CSV_COLUMNS)
                + ", optionally nhs_number and absence_<CODE> for a DfE absence code"
            )
            issues.append(Issue("error", "structure", where, message))
        seen.setdefault(name, position)
    missing = [column for column in CSV_COLUMNS if column not in seen]
    if missing:
        issues.append(Issue("error", "required", "row 1", "missing required column(s): " + ", ".join(missing)))
    if issues:
        raise AdapterError(issues)
    return _CsvLayout(
        width=len(names),
        record_id=seen["record_id"] - 1,
        cells=tuple((seen[column] - 1, *target) for column, target in _CSV_TARGETS.items() if column in seen),
        absences=tuple(
            (name.removeprefix(_ABSENCE_COLUMN_PREFIX), seen[name] - 1)
            for name in names
            if name.startswith(_ABSENCE_COLUMN_PREFIX)
        ),
    )


def _csv_record(row: Sequence[str], layout: _CsvLayout) -> dict[str, Any]:
    """Build the JSON form of the attendance record a row stands for.

    An empty cell is a field not sent, so that an empty required cell is answered "required".
    """
    parts: dict[str, dict[str, Any]] = {"record": {}, "pupil": {}, "address": {}, "school": {}, "details": {}}
    for position, target, field in layout.cells:
        if value := row[position].strip():
            parts[target][field] = value
    record, pupil, address, details = parts["record"], parts["pupil"], parts["address"], parts["details"]
    if "given_names" in pupil:
        pupil["given_names"] = pupil["given_names"].split()
    if address:
        pupil["address"] = address
    details["absences"] = {code: value for code, position in layout.absences if (value := row[position].strip())}
    record.update(kind="attendance", pupil=pupil, school=parts["school"], details=details)
    return record


def _csv_location(row_number: int, path: str) -> str:
    path = re.sub(r"\[\d+\]", "", path)
    column = _CSV_FIELD_COLUMNS.get(path)
    if column is None and path.startswith("details.absences."):
        column = _ABSENCE_COLUMN_PREFIX + path.removeprefix("details.absences.")
    elif column is None and path == "details.absences":
        return f"row {row_number}, columns {_ABSENCE_COLUMN_PREFIX}*"
    return f"row {row_number}, column {column}" if column else f"row {row_number}"


def _decode_csv(body: bytes) -> str:
    try:
        return body.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise AdapterError([Issue("error", "invalid", "", "the CSV must be encoded in UTF-8")]) from None


def parse_csv(body: bytes, *, max_entries: int, now: datetime | None = None) -> BatchSubmission:
    """Parse and validate a CSV attendance extract: one attendance record per data row."""
    rows: list[list[str]] = []
    reader = csv.reader(io.StringIO(_decode_csv(body), newline=""), strict=True)
    try:
        for row in reader:
            rows.append(row)
    except csv.Error:
        # Row numbers count CSV rows (a quoted cell may span lines), as a spreadsheet shows them.
        raise AdapterError(
            [Issue("error", "invalid", f"row {len(rows) + 1}", "the row is not valid CSV (check its quotes)")]
        ) from None
    if not rows or not any(cell.strip() for cell in rows[0]):
        raise AdapterError([Issue("error", "required", "row 1", "the CSV needs a header row naming its columns")])
    layout = _csv_layout(rows[0])
    data = [(number, row) for number, row in enumerate(rows[1:], start=2) if any(cell.strip() for cell in row)]
    if len(data) > max_entries:
        raise TooManyEntries(
            [Issue("error", "too-long", f"row {data[max_entries][0]}",
                   f"a push may carry at most {max_entries} data rows; split the file")]
        )
    if not data:
        raise AdapterError([Issue("error", "required", "row 2", "the CSV has no data rows")])
    context, today = _context(now)
    batch = _Batch(today=today)
    for number, row in data:
        location = f"row {number}"
        record_id = _readable_id(row[layout.record_id].strip()) if layout.record_id < len(row) else None
        if len(row) != layout.width:
            message = f"the row has {len(row)} cells; the header has {layout.width} columns"
            batch.reject(location, record_id, [Issue("error", "structure", location, message)])
            continue
        try:
            record = AttendanceRecord.model_validate(_csv_record(row, layout), context=context)
        except ValidationError as exc:
            issues = [replace(i, location=_csv_location(number, i.location)) for i in validation_issues(exc, prefix="")]
            batch.reject(location, record_id, issues)
            continue
        batch.accept(record, location=location, subject_location=f"{location}, column upn")
    return batch.submission(atomic=False, label=f"{SCHEMA_NAME} csv")


def parse_education(body: bytes, media_type: str, *, max_entries: int, now: datetime | None = None) -> BatchSubmission:
    """Parse an education push: education/v1 JSON, or a CSV attendance extract."""
    media = media_type.split(";", 1)[0].strip().lower()
    if media == JSON_MEDIA_TYPE:
        return parse_json(body, max_entries=max_entries, now=now)
    if media == CSV_MEDIA_TYPE:
        return parse_csv(body, max_entries=max_entries, now=now)
    raise AdapterError([Issue("error", "not-supported", "", "Content-Type must be application/json or text/csv")])


# --- What a school reads -------------------------------------------------------------------------

_DESCRIPTION = """\
education/v1: what schools and local authorities share with the multi-agency child protection team.

POST /education/v1/records with Content-Type application/json and a body {{"schema": "education/v1", \
"atomic": false, "records": [...]}}. Every object refuses fields it does not define, so that a mapping \
mistake is seen at once. Each record is about one pupil, identified by UPN (check letter verified), and is \
of one kind:
- enrolment: the pupil is on the school's roll, or has left it (end_date). Tells the partnership which \
school to send Operation Encompass notices to.
- attendance: sessions possible and attended over a period, with absences by DfE code (those in force \
since August 2024). Persistent (10%+ missed) and severe (50%+ missed) absence are flagged.
- exclusion: a suspension (with its length in sessions) or a permanent exclusion, with the DfE reason.
- safeguarding_concern: a concern logged by the designated safeguarding lead.
- education_notice: the child is electively home educated, or missing education.
A record is identified by (record_id, version): a repeat of the same version is acknowledged, not stored \
twice; a correction is a new version; "retracted": true marks a record entered in error. "detrimental": \
true withholds a record whose disclosure the school judges more detrimental to the child than not \
(Children Act 2004 s16LA). The answer gives each record's outcome (created, unchanged, rejected) and, \
for a rejected one, which field and what was expected.

POST /education/v1/records.csv with Content-Type text/csv (UTF-8, with or without a byte-order mark) for \
a termly attendance extract: a header row, then one attendance record per row. Required columns: {required}. \
Optional columns: nhs_number, and absence_<CODE> (e.g. absence_I, absence_N, absence_C1) giving the sessions \
recorded under each DfE code. Given names are separated by spaces; an empty cell is a value not given. \
Errors name the row (the header is row 1) and the column.

Authenticate with OAuth 2.0 client credentials and a signed JWT client assertion at {token_endpoint}."""


def education_schema(*, token_endpoint: str) -> dict[str, Any]:
    """Return the JSON Schema of education/v1, with its CSV route described and a full example."""
    schema = EducationSubmission.model_json_schema(by_alias=True)
    description = _DESCRIPTION.format(required=", ".join(CSV_COLUMNS), token_endpoint=token_endpoint)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": EDUCATION_SCHEMA_ID,
        **schema,
        "title": "Education records, format education/v1",
        "description": description,
        "examples": [copy.deepcopy(EXAMPLE_SUBMISSION)],
        "x-csv": {
            "media_type": CSV_MEDIA_TYPE,
            "required_columns": dict(CSV_COLUMNS),
            "optional_columns": dict(CSV_OPTIONAL_COLUMNS),
            "example": EXAMPLE_CSV,
        },
    }


class EducationAdapter:
    """education/v1 JSON batches and CSV attendance extracts from schools and local authorities."""

    name = "education"
    media_types = frozenset({JSON_MEDIA_TYPE, CSV_MEDIA_TYPE})

    def __init__(self, *, clock: Callable[[], datetime] | None = None) -> None:
        self._clock = clock

    def parse(self, body: bytes, media_type: str, *, max_entries: int) -> Submission:
        """Parse an education/v1 JSON batch or a CSV attendance extract."""
        now = self._clock() if self._clock is not None else None
        return parse_education(body, media_type, max_entries=max_entries, now=now)

    def render(self, submission: Submission, outcomes: Sequence[EntryOutcome]) -> Rendered:
        """Render the per-record outcomes."""
        if not isinstance(submission, BatchSubmission):
            raise TypeError("the education adapter renders only the submissions it parsed")
        return render_outcomes(submission, outcomes)

    def render_error(self, status_code: int, issues: Sequence[Issue]) -> Rendered:
        """Render a refusal as an RFC 9457 problem."""
        return render_problem(status_code, issues)

    def describe(self, *, token_endpoint: str) -> dict[str, Any]:
        """Return the JSON Schema of education/v1."""
        return education_schema(token_endpoint=token_endpoint)


# --- Examples (synthetic: made-up names, the ZZ99 pseudo-postcode area, test-range NHS numbers) --------

# UPNs built with stdnum's check letter on local authority 801; URNs in an unused 9990xx range.
_PUPIL_ALEX: dict[str, Any] = {
    "upn": "D801900126001",
    "nhs_number": "9990000018",
    "given_names": ["Alex", "Example"],
    "family_name": "Testpupil",
    "birth_date": "2018-03-14",
    "sex": "female",
    "address": {"lines": ["1 Sample Street", "Testtown"], "postcode": "ZZ99 3VZ"},
    "version": "4",
}
_PUPIL_SAM: dict[str, Any] = {
    "upn": "G801900125002",
    "given_names": ["Sam"],
    "family_name": "Specimen",
    "birth_date": "2013-11-02",
    "sex": "male",
    "address": {"lines": ["22 Fictional Road"], "postcode": "ZZ99 4QW"},
}
_PUPIL_JO: dict[str, Any] = {
    "upn": "K801900124003",
    "nhs_number": "9990000026",
    "given_names": ["Jo", "Placeholder"],
    "family_name": "Madeup",
    "birth_date": "2011-06-30",
    "sex": "unknown",
    "address": {"lines": ["3 Nowhere Close"], "postcode": "ZZ99 5XY"},
}
EXAMPLE_SUBMISSION: dict[str, Any] = {
    "schema": SCHEMA_NAME,
    "atomic": False,
    "records": [
        {
            "record_id": "enrolment/2026/0001",
            "version": "1",
            "kind": "enrolment",
            "pupil": _PUPIL_ALEX,
            "school": {"urn": "999001", "name": "Example Primary School"},
            "recorded_by": "Admissions officer",
            "details": {"year_group": "3", "start_date": "2026-09-03"},
        },
        {
            "record_id": "attendance/2026-autumn-1/0001",
            "version": "1",
            "kind": "attendance",
            "pupil": _PUPIL_ALEX,
            "school": {"urn": "999001", "name": "Example Primary School"},
            "details": {
                "period_start": "2026-09-03",
                "period_end": "2026-10-23",
                "possible_sessions": 72,
                "attended_sessions": 60,
                "absences": {"I": 6, "M": 1, "N": 3, "O": 2},
            },
        },
        {
            "record_id": "exclusion/2026/0042",
            "version": "1",
            "kind": "exclusion",
            "pupil": _PUPIL_SAM,
            "school": {"urn": "999002", "name": "Example Academy"},
            "recorded_by": "Head of year 8",
            "details": {
                "type": "suspension",
                "start_date": "2026-10-14",
                "sessions": 4,
                "reason": "verbal_abuse_against_adult",
            },
        },
        {
            "record_id": "concern/2026/0317",
            "version": "2",
            "kind": "safeguarding_concern",
            "pupil": _PUPIL_SAM,
            "school": {"urn": "999002", "name": "Example Academy"},
            "recorded_by": "Designated safeguarding lead",
            "details": {
                "logged_at": "2026-10-20T14:35:00+01:00",
                "category": "neglect",
                "summary": "Arrived hungry on three mornings this week; uniform unwashed.",
                "action_taken": "Spoke with the pupil; breakfast club place offered; parent invited to meet the DSL.",
            },
        },
        {
            "record_id": "notice/2026/0007",
            "version": "1",
            "kind": "education_notice",
            "pupil": _PUPIL_JO,
            "recorded_by": "Children missing education officer",
            "details": {
                "type": "elective_home_education",
                "effective_date": "2026-10-01",
                "previous_school_urn": "999003",
                "summary": "Parent's written notice received; off roll from this date.",
            },
        },
    ],
}

EXAMPLE_CSV = (
    "record_id,version,upn,nhs_number,given_names,family_name,birth_date,sex,postcode,school_urn,"
    "period_start,period_end,possible_sessions,attended_sessions,absence_I,absence_M,absence_N,absence_O\r\n"
    "att/2026-a1/0001,1,D801900126001,9990000018,Alex Example,Testpupil,2018-03-14,female,ZZ99 3VZ,999001,"
    "2026-09-03,2026-10-23,72,60,6,1,3,2\r\n"
    "att/2026-a1/0002,1,G801900125002,,Sam,Specimen,2013-11-02,male,ZZ99 4QW,999001,"
    "2026-09-03,2026-10-23,72,72,,,,\r\n"
    "att/2026-a1/0003,1,W801900126004,,Robin Fake,Notreal,2017-01-09,other,,999001,"
    "2026-09-03,2026-10-23,72,30,20,,12,10\r\n"
)

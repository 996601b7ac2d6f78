"""Our own inbound types and the one interface every adapter implements.

No library's types leave `adapters`: an adapter turns its wire format into a `Submission` of
entries (a claim about who a child is, a record about a child, or a rejected entry), and turns
the gateway's `EntryOutcome`s back into its own response. The gateway never sees a Bundle.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from typing import Any, Literal, Protocol


@dataclass(frozen=True)
class Issue:
    """One problem with a payload: where (in the adapter's own path syntax), what kind, what was expected.

    `code` is a FHIR IssueType code (invalid, required, value, not-found, forbidden…), which
    every adapter uses as its vocabulary of problems. A message never echoes a submitted
    personal value such as a name or an NHS number.
    """

    severity: Literal["error", "warning", "information"]
    code: str
    location: str
    message: str


@dataclass(frozen=True)
class IdentityClaim:
    """One source's claim about who a child is.

    `source_record_id` is the source's own id for the person (a Patient id, a force's person
    id, a school's pupil id): a later version of it is the same child. `nhs_number` and `upn`
    are verified identifiers (Modulus 11, the UPN's check letter), checked by the adapter.
    """

    source_record_id: str
    source_version: str
    nhs_number: str | None
    other_identifiers: tuple[tuple[str, str], ...]
    given_names: tuple[str, ...]
    family_name: str | None
    birth_date: date | None
    sex: str | None
    postcode: str | None
    address_lines: tuple[str, ...]
    upn: str | None = None


@dataclass(frozen=True)
class InvolvedPerson:
    """Someone a record names besides the child (POLE: a person in the event), for the view's people.

    Shown only where the record itself is disclosed. `role` is the person's part in the event
    (victim, witness, suspect, present, reporting person, parent…); `relationship` is to the child.
    """

    role: str
    name: str
    birth_date: date | None = None
    relationship: str | None = None


@dataclass(frozen=True)
class SchoolPlacement:
    """Where the child is educated, as an education record says: routes Operation Encompass notices.

    `urn` is the school's six-digit Unique Reference Number (None when not at a school);
    `status` says whether the child is on the school's roll, has left it, is electively home
    educated, or is missing education; `since` is when that became so.
    """

    urn: str | None
    status: Literal["on_roll", "left", "elective_home_education", "missing_education"]
    since: date | None = None


@dataclass(frozen=True)
class HealthAlert:
    """A CP-IS style flag a health record raises: the view's key facts show it where it is disclosed.

    `code` names the flag (adapters/ukcore.py, ALERT_CODES); `active` is the Flag's status.
    """

    code: Literal["child-protection-plan", "looked-after", "unborn-child-protection-plan"]
    active: bool
    start: date | None = None
    end: date | None = None


@dataclass(frozen=True)
class InboundRecord:
    """One shared fact about a child, normalised, with its original payload.

    `kind` and `category` use the policy vocabulary (`policies.RecordKind`, `policies.CATEGORIES`);
    the gateway refuses an entry whose kind or category it does not know.

    The fields after `payload` are what some formats carry and the gateway acts on:
    - `police_handling_code`: the 3x5x2 handling code (P or C) of police intelligence;
    - `grading`: the 3x5x2 grading as shown where disclosed, e.g. "1/B/P";
    - `detrimental`: the source judged disclosure more detrimental to the child than not (s16LA);
    - `contact`: the officer, unit or person to ask, named when the view withholds the record;
    - `people` and `locations`: who and where the record involves (the view's people section);
    - `notice`: an Operation Encompass notice for the child's school, written for a DSL to read
      (the school sees this, never the record behind it);
    - `school`: the placement an education record states (enrolment, EHE, CME);
    - `alert`: the CP-IS style flag a health Flag raises (child protection plan, looked after).
    """

    source_record_id: str
    source_version: str
    kind: str
    category: str
    occurred_at: datetime | None
    summary: str
    security_labels: frozenset[str]
    entered_in_error: bool
    subject_ref: str
    payload: dict[str, Any]
    police_handling_code: Literal["P", "C"] | None = None
    grading: str | None = None
    detrimental: bool = False
    contact: str | None = None
    people: tuple[InvolvedPerson, ...] = ()
    locations: tuple[str, ...] = ()
    notice: str | None = None
    school: SchoolPlacement | None = None
    alert: HealthAlert | None = None


@dataclass(frozen=True)
class ClaimEntry:
    """An entry that says who a child is."""

    index: int
    location: str
    claim: IdentityClaim


@dataclass(frozen=True)
class RecordEntry:
    """An entry holding a record about a child; `subject_location` is where it names the child."""

    index: int
    location: str
    subject_location: str
    record: InboundRecord


@dataclass(frozen=True)
class RejectedEntry:
    """An entry the adapter could not accept; `issues` say why."""

    index: int
    location: str
    issues: tuple[Issue, ...]


Entry = ClaimEntry | RecordEntry | RejectedEntry


@dataclass(frozen=True)
class Submission:
    """One push: its entries, whether they stand or fall together, and any push-level issues.

    `label` names the push in the adapter's terms (a FHIR Bundle's type, "batch"…); the gateway
    records it in the audit trail and hands the submission back to the adapter to render.
    """

    atomic: bool
    label: str
    entries: tuple[Entry, ...]
    issues: tuple[Issue, ...] = ()
    # True where a claim exists only to say whom its records are about (the police and education
    # batches): a claim that no accepted record names is then not linked, so that a refused record
    # leaves no child behind. A FHIR Patient is a record in its own right (False).
    claims_follow_records: bool = False


class EntryStatus(StrEnum):
    """What the gateway did with one entry."""

    CREATED = "created"
    UNCHANGED = "unchanged"
    REJECTED = "rejected"


@dataclass(frozen=True)
class EntryOutcome:
    """The gateway's answer for one entry, in entry order."""

    index: int
    status: EntryStatus
    issues: tuple[Issue, ...] = ()
    # When the gateway stored the version this entry names (this push, or the earlier push a repeat
    # repeats): an adapter that can say so (FHIR's ETag and Last-Modified) does. None when unknown.
    last_modified: datetime | None = None


@dataclass(frozen=True)
class Rendered:
    """A response in the adapter's own format."""

    status_code: int
    body: dict[str, Any]
    media_type: str
    headers: Mapping[str, str] = field(default_factory=dict)


class Adapter(Protocol):
    """An inbound wire format: parse a push, render the answer, describe what it accepts.

    Contract:
    - `parse` is pure (no I/O, no database) and never raises anything but `AdapterError`:
      a payload it cannot read at all raises `AdapterError` (or `TooManyEntries` when it has
      more than `max_entries` entries); an entry it cannot accept becomes a `RejectedEntry`
      with issues whose locations are in the adapter's own path syntax.
    - `render` turns the outcomes of a parsed submission (one per entry, in entry order)
      into the adapter's response; `render_error` turns a refusal into its error format.
    - `describe` returns the document a source system reads to know what it may send (a FHIR
      CapabilityStatement, a JSON Schema).
    """

    name: str
    media_types: frozenset[str]

    def parse(self, body: bytes, media_type: str, *, max_entries: int) -> Submission:
        """Parse and validate a push."""
        ...

    def render(self, submission: Submission, outcomes: Sequence[EntryOutcome]) -> Rendered:
        """Render the answer to a stored push."""
        ...

    def render_error(self, status_code: int, issues: Sequence[Issue]) -> Rendered:
        """Render a refusal."""
        ...

    def describe(self, *, token_endpoint: str) -> dict[str, Any]:
        """Return what this format accepts, for source systems."""
        ...


class AdapterError(Exception):
    """The payload as a whole cannot be accepted; `issues` say why."""

    def __init__(self, issues: tuple[Issue, ...] | list[Issue]) -> None:
        super().__init__("; ".join(f"{i.location}: {i.message}" for i in issues))
        self.issues = tuple(issues)


class TooManyEntries(AdapterError):
    """The payload has more entries than one push may carry."""

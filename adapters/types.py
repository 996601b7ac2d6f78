"""Our own inbound types: what every adapter returns. No library's types leave `adapters`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Literal


@dataclass(frozen=True)
class Issue:
    """One problem with a payload: where (FHIRPath-like), what kind, and what was expected.

    A message never echoes a submitted personal value such as a name or an NHS number.
    """

    severity: Literal["error", "warning", "information"]
    code: str
    location: str
    message: str


@dataclass(frozen=True)
class IdentityClaim:
    """One source's claim about who a child is."""

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


@dataclass(frozen=True)
class InboundRecord:
    """One shared fact about a child, normalised, with its original payload."""

    source_record_id: str
    source_version: str
    kind: str
    category: str
    occurred_at: datetime | None
    summary: str
    security_labels: frozenset[str]
    status: str
    subject_ref: str
    payload: dict[str, Any]


@dataclass(frozen=True)
class EntryResult:
    """What one entry of a Bundle turned into: a claim, a record, or issues (then rejected)."""

    index: int
    full_url: str | None
    resource_type: str
    claim: IdentityClaim | None
    record: InboundRecord | None
    issues: tuple[Issue, ...]


@dataclass(frozen=True)
class ParsedBundle:
    """A parsed Bundle: its type, its entries, and any Bundle-level issues."""

    bundle_type: str
    entries: tuple[EntryResult, ...]
    issues: tuple[Issue, ...]


@dataclass(frozen=True)
class EntryResponse:
    """The outcome of one entry, for the response Bundle."""

    status: str
    location: str | None
    outcome_issues: tuple[Issue, ...] = ()


class AdapterError(Exception):
    """The payload as a whole cannot be accepted; `issues` say why."""

    def __init__(self, issues: tuple[Issue, ...] | list[Issue]) -> None:
        super().__init__("; ".join(f"{i.location}: {i.message}" for i in issues))
        self.issues = tuple(issues)

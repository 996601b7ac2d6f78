"""What the JSON/CSV batch formats (police, education) share: reading, pydantic issues, the response.

A batch is a list of records, each about one child. An adapter turns each record into its
entries (the child's identity claim, shared by the records about the same person version, and
the record itself, or one rejected entry) and remembers, in a `BatchRecord`, which entries came
from which record, so that the answer can be given per record, in the source's own terms.
Everything here is pure: no I/O, no database.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from pydantic import ValidationError

from .nesting import nests_deeper_than
from .types import AdapterError, EntryOutcome, EntryStatus, Issue, Rendered, Submission

JSON = "application/json"
PROBLEM_JSON = "application/problem+json"

# How deeply a batch may nest (JSON objects and arrays). The batch formats are flat by design
# (the deepest field of police/v1 is 5 levels down), so 32 leaves room and keeps pydantic's
# recursive validation, and json.dumps of the payload, far inside the recursion limit.
MAX_NESTING = 32

_UNKNOWN_FIELD = "unknown field: refused so that a mapping mistake is seen at once"
_INVALID_VALUE = "the value is not valid here; see the published schema for what this field takes"


@dataclass(frozen=True)
class BatchRecord:
    """One record of a batch: where it is, its id if readable, and the entries it became."""

    location: str  # "records[3]" (JSON) or "row 17" (CSV: the header is row 1, the first data row is row 2)
    record_id: str | None  # the source's record id, if it could be read
    # Indexes (into Submission.entries) of this record's entries: its identity claim (possibly
    # shared with other records of the same person), and its RecordEntry, or its RejectedEntry.
    entry_indexes: tuple[int, ...]
    record_entry: int | None  # index of its RecordEntry (None when the adapter rejected the record)


@dataclass(frozen=True)
class BatchSubmission(Submission):
    """A batch push: its entries, and which of them each record of the batch became."""

    records: tuple[BatchRecord, ...] = ()
    schema: str = ""  # e.g. "police/v1"
    claims_follow_records: bool = True  # a person's claim is stored only with an accepted record


def read_json(body: bytes) -> Any:
    """Decode a UTF-8 JSON body; raise AdapterError if it is not JSON or nests too deeply.

    Not JSON (not UTF-8, a syntax error, NaN or Infinity, a key repeated in one object) is
    code "invalid"; more than MAX_NESTING levels of objects and arrays is code "structure".
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise AdapterError([Issue("error", "invalid", "", "the body must be JSON encoded in UTF-8")]) from None
    try:
        # A byte-order mark is tolerated (RFC 8259 §8.1 lets a parser ignore one).
        data = json.loads(text.removeprefix("\ufeff"), parse_constant=_refuse_constant, object_pairs_hook=_unique_keys)
    except _DuplicateKey:
        raise AdapterError(
            [Issue("error", "invalid", "", "the body repeats a key within one JSON object; send each field once")]
        ) from None
    except (json.JSONDecodeError, _NotJsonConstant):
        raise AdapterError([Issue("error", "invalid", "", "the body is not valid JSON")]) from None
    except RecursionError:
        # json's C scanner counts its own nesting against the recursion limit (see nhs_fhir._load).
        raise _too_deep() from None
    if isinstance(data, (dict, list)) and nests_deeper_than(data, MAX_NESTING):
        raise _too_deep()
    return data


def validation_issues(error: ValidationError, *, prefix: str) -> list[Issue]:
    """Turn a pydantic ValidationError into issues located under prefix, never echoing the input."""
    issues = []
    for detail in error.errors():
        location = _location(prefix, detail["loc"])
        kind = detail["type"]
        if kind == "extra_forbidden":
            issues.append(Issue("error", "structure", location, _UNKNOWN_FIELD))
        elif kind == "missing":
            issues.append(Issue("error", "required", location, "this field is required"))
        else:
            issues.append(Issue("error", "value", location, _message(detail)))
    return issues


def render_outcomes(submission: BatchSubmission, outcomes: Sequence[EntryOutcome]) -> Rendered:
    """Render the per-record answer to a stored batch: created, unchanged or rejected, with errors."""
    by_index = {outcome.index: outcome for outcome in outcomes}
    summary = {str(status): 0 for status in EntryStatus}
    rendered = []
    for record in submission.records:
        status, errors = _record_status(record, by_index)
        summary[str(status)] += 1
        rendered.append(
            {
                "location": record.location,
                "record_id": record.record_id,
                "status": str(status),
                "errors": [_error(issue) for issue in errors],
            }
        )
    body = {"schema": submission.schema, "atomic": submission.atomic, "summary": summary, "outcomes": rendered}
    return Rendered(status_code=200, body=body, media_type=JSON)


def render_problem(status_code: int, issues: Sequence[Issue]) -> Rendered:
    """Render a refusal as an RFC 9457 problem document."""
    try:
        title = HTTPStatus(status_code).phrase
    except ValueError:
        title = "Error"
    detail = issues[0].message if issues else "The request could not be accepted."
    body = {
        "type": "about:blank",
        "title": title,
        "status": status_code,
        "detail": detail,
        "errors": [_error(issue) for issue in issues],
    }
    return Rendered(status_code=status_code, body=body, media_type=PROBLEM_JSON)


def claim_version(data: Mapping[str, Any]) -> str:
    """Return a stable version for a person object that carries none: a hash of its canonical JSON."""
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


def _record_status(
    record: BatchRecord, by_index: Mapping[int, EntryOutcome]
) -> tuple[EntryStatus, list[Issue]]:
    errors: list[Issue] = []
    rejected = False
    for index in record.entry_indexes:
        outcome = by_index.get(index)
        if outcome is None or outcome.status is not EntryStatus.REJECTED:
            continue
        rejected = True
        errors.extend(issue for issue in outcome.issues if issue not in errors)
    if rejected or record.record_entry is None:
        return EntryStatus.REJECTED, errors
    outcome = by_index.get(record.record_entry)
    if outcome is None:
        # The gateway answers every entry; an entry with no answer was not stored.
        return EntryStatus.REJECTED, errors
    return outcome.status, errors


def _error(issue: Issue) -> dict[str, str]:
    return {"location": issue.location, "code": issue.code, "message": issue.message}


def _location(prefix: str, loc: Sequence[int | str]) -> str:
    location = prefix
    for part in loc:
        if isinstance(part, int):
            location += f"[{part}]"
        else:
            location += f".{part}" if location else str(part)
    return location


def _message(detail: Mapping[str, Any]) -> str:
    """Say what was expected, from pydantic's message or its context, never from the input."""
    kind, context = detail["type"], detail.get("ctx") or {}
    if kind == "value_error" and "error" in context:
        # Raised by the formats' own validators, whose messages are written never to echo input.
        return str(context["error"])
    if kind in ("literal_error", "enum") and "expected" in context:
        return f"must be {context['expected']}"
    if kind == "union_tag_invalid" and "expected_tags" in context:
        # pydantic's message repeats the submitted tag.
        return f"must be one of {context['expected_tags']}"
    message = str(detail["msg"])
    submitted = detail.get("input")
    # Belt and braces: should a pydantic message ever quote what was sent, say less instead.
    if isinstance(submitted, (str, int, float)) and not isinstance(submitted, bool):
        text = str(submitted)
        if len(text) >= 3 and text in message:
            return _INVALID_VALUE
    return message


class _DuplicateKey(ValueError):
    pass


class _NotJsonConstant(ValueError):
    pass


def _refuse_constant(name: str) -> Any:
    raise _NotJsonConstant(name)  # NaN, Infinity and -Infinity are Python's extensions, not JSON


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    data = dict(pairs)
    if len(data) != len(pairs):
        raise _DuplicateKey()
    return data


def _too_deep() -> AdapterError:
    message = f"the JSON nests too deeply (more than {MAX_NESTING} levels)"
    return AdapterError([Issue("error", "structure", "", message)])

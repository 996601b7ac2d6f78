"""What the batch formats share: reading JSON, pydantic issues, the per-record answer, problems."""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Annotated, Any, Literal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict, Discriminator, TypeAdapter, ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

from adapters import AdapterError, EntryOutcome, EntryStatus, Issue, Submission
from adapters.batch import (
    MAX_NESTING,
    BatchRecord,
    BatchSubmission,
    claim_version,
    read_json,
    render_outcomes,
    render_problem,
    validation_issues,
)


class Item(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    count: int = 0


class Cat(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pet: Literal["cat"]


class Dog(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pet: Literal["dog"]


class Sample(BaseModel):
    model_config = ConfigDict(extra="forbid")

    colour: Literal["red", "green"]
    items: list[Item] = []
    animal: Annotated[Cat | Dog, Discriminator("pet")] | None = None


def issues_for(data: dict[str, Any], prefix: str = "records[3]") -> list[Issue]:
    with pytest.raises(ValidationError) as caught:
        Sample.model_validate(data)
    return validation_issues(caught.value, prefix=prefix)


def refused(body: bytes) -> AdapterError:
    with pytest.raises(AdapterError) as caught:
        read_json(body)
    return caught.value


# read_json


def test_read_json_returns_the_data() -> None:
    assert read_json(b'{"a": [1, {"b": "\xc3\xa9"}]}') == {"a": [1, {"b": "é"}]}


def test_read_json_tolerates_a_byte_order_mark() -> None:
    assert read_json(b'\xef\xbb\xbf{"a": 1}') == {"a": 1}


@pytest.mark.parametrize(
    "body",
    [b"\xff\xfe{}", '{"a": "é"}'.encode("utf-16"), b"{not json", b"", b"[NaN]", b'{"a": Infinity}'],
    ids=["latin1-bytes", "utf16", "syntax", "empty", "nan", "infinity"],
)
def test_read_json_refuses_what_is_not_utf8_json(body: bytes) -> None:
    error = refused(body)
    assert [(i.code, i.location) for i in error.issues] == [("invalid", "")]


def test_read_json_refuses_a_key_sent_twice() -> None:
    error = refused(b'{"a": {"name": "first", "name": "second"}}')
    assert error.issues[0].code == "invalid"
    assert "repeats a key" in error.issues[0].message
    assert "first" not in error.issues[0].message and "second" not in error.issues[0].message


def test_read_json_accepts_the_deepest_nesting_allowed() -> None:
    body = b"[" * MAX_NESTING + b"]" * MAX_NESTING
    data = read_json(body)
    depth = 0
    while isinstance(data, list):
        depth += 1
        data = data[0] if data else None
    assert depth == MAX_NESTING


@pytest.mark.parametrize("depth", [MAX_NESTING + 1, 100_000])
def test_read_json_refuses_deeper_nesting(depth: int) -> None:
    error = refused(b'{"a":' * depth + b"1" + b"}" * depth)
    assert [(i.code, i.location) for i in error.issues] == [("structure", "")]
    assert str(MAX_NESTING) in error.issues[0].message


# validation_issues


def test_unknown_field_is_a_structure_issue_at_its_location() -> None:
    issues = issues_for({"colour": "red", "items": [{"name": "a"}, {"name": "b", "weight": 3}]})
    assert issues == [
        Issue("error", "structure", "records[3].items[1].weight",
              "unknown field: refused so that a mapping mistake is seen at once")
    ]


def test_missing_field_is_required() -> None:
    issues = issues_for({"colour": "red", "items": [{}]})
    assert [(i.code, i.location) for i in issues] == [("required", "records[3].items[0].name")]
    assert issues[0].message == "this field is required"


def test_wrong_value_says_what_was_expected_without_echoing_it() -> None:
    issues = issues_for({"colour": "mauve-secret", "items": [{"name": "a", "count": "lots-secret"}]})
    assert [(i.code, i.location) for i in issues] == [
        ("value", "records[3].colour"),
        ("value", "records[3].items[0].count"),
    ]
    assert "'red'" in issues[0].message and "'green'" in issues[0].message
    assert "integer" in issues[1].message
    assert all("secret" not in i.message for i in issues)


def test_discriminator_tag_is_not_echoed() -> None:
    # pydantic's own message for a wrong tag repeats the tag that was sent.
    issues = issues_for({"colour": "red", "animal": {"pet": "ferret-secret"}})
    assert [(i.code, i.location) for i in issues] == [("value", "records[3].animal")]
    assert "ferret" not in issues[0].message
    assert "'cat'" in issues[0].message and "'dog'" in issues[0].message


def test_no_prefix_gives_a_bare_location() -> None:
    issues = issues_for({"colour": "red", "extra": 1}, prefix="")
    assert [i.location for i in issues] == ["extra"]


def test_a_message_that_quotes_the_input_is_replaced() -> None:
    error = ValidationError.from_exception_data(
        "Sample",
        [
            InitErrorDetails(
                type=PydanticCustomError("custom", "bad value {value}", {"value": "Jordan Synthetic"}),
                loc=("child", "family_name"),
                input="Jordan Synthetic",
            )
        ],
    )
    [issue] = validation_issues(error, prefix="records[0]")
    assert issue.location == "records[0].child.family_name"
    assert issue.code == "value"
    assert "Jordan" not in issue.message
    assert "schema" in issue.message


def is_integer(value: str) -> bool:
    try:
        TypeAdapter(int).validate_python(value)
    except ValidationError:
        return False
    return True


def messages_for(value: Any) -> list[str]:
    with pytest.raises(ValidationError) as caught:
        Sample.model_validate({"colour": value, "items": [{"name": "a", "count": value}]})
    return [issue.message for issue in validation_issues(caught.value, prefix="records[0]")]


@settings(max_examples=200, deadline=None, database=None)
@given(st.text(min_size=1, max_size=40).filter(lambda v: v not in ("red", "green") and not is_integer(v)))
def test_a_message_never_depends_on_the_value_submitted(value: str) -> None:
    # The messages for any value are those for a neutral one, or the guard's generic sentence:
    # so nothing of what was sent can be in them, even where it happens to spell a word of theirs.
    neutral = messages_for("zzzz")
    generic = messages_for("valid")[1]  # "valid" is in pydantic's message about integers
    assert "schema" in generic
    assert all(got in (expected, generic) for got, expected in zip(messages_for(value), neutral, strict=True))


# render_outcomes


def submission(*records: BatchRecord, atomic: bool = False) -> BatchSubmission:
    return BatchSubmission(atomic=atomic, label="police/v1 batch", entries=(), records=records, schema="police/v1")


CLAIM_PROBLEM = Issue("error", "conflict", "records[0].child", "the NHS number is linked to another child")
RECORD_PROBLEM = Issue("error", "value", "records[2].details.summary", "must not be empty")


def test_render_outcomes_gives_one_outcome_per_record_in_order() -> None:
    batch = submission(
        BatchRecord("records[0]", "OCC-1", (0, 1), 1),
        BatchRecord("records[1]", "OCC-2", (0, 2), 2),
        BatchRecord("records[2]", None, (3,), None),
    )
    outcomes = [
        EntryOutcome(0, EntryStatus.CREATED),
        EntryOutcome(1, EntryStatus.CREATED),
        EntryOutcome(2, EntryStatus.UNCHANGED),
        EntryOutcome(3, EntryStatus.REJECTED, (RECORD_PROBLEM,)),
    ]
    rendered = render_outcomes(batch, outcomes)
    assert rendered.status_code == 200
    assert rendered.media_type == "application/json"
    assert rendered.body == {
        "schema": "police/v1",
        "atomic": False,
        "summary": {"created": 1, "unchanged": 1, "rejected": 1},
        "outcomes": [
            {"location": "records[0]", "record_id": "OCC-1", "status": "created", "errors": []},
            {"location": "records[1]", "record_id": "OCC-2", "status": "unchanged", "errors": []},
            {
                "location": "records[2]",
                "record_id": None,
                "status": "rejected",
                "errors": [{"location": "records[2].details.summary", "code": "value", "message": "must not be empty"}],
            },
        ],
    }
    json.dumps(rendered.body)  # the body is plain JSON


def test_a_rejected_shared_claim_rejects_every_record_that_uses_it() -> None:
    batch = submission(
        BatchRecord("records[0]", "OCC-1", (0, 1), 1),
        BatchRecord("records[1]", "OCC-2", (0, 2), 2),
        BatchRecord("records[2]", "OCC-3", (3, 4), 4),
    )
    outcomes = [
        EntryOutcome(0, EntryStatus.REJECTED, (CLAIM_PROBLEM,)),
        EntryOutcome(1, EntryStatus.REJECTED, (CLAIM_PROBLEM,)),
        EntryOutcome(2, EntryStatus.REJECTED, (CLAIM_PROBLEM, RECORD_PROBLEM)),
        EntryOutcome(3, EntryStatus.UNCHANGED),
        EntryOutcome(4, EntryStatus.CREATED),
    ]
    body = render_outcomes(batch, outcomes).body
    assert [o["status"] for o in body["outcomes"]] == ["rejected", "rejected", "created"]
    # The claim's issue once, even when the record's own outcome repeats it, then the record's.
    assert [e["location"] for e in body["outcomes"][0]["errors"]] == ["records[0].child"]
    assert [e["location"] for e in body["outcomes"][1]["errors"]] == ["records[0].child", "records[2].details.summary"]
    assert body["summary"] == {"created": 1, "unchanged": 0, "rejected": 2}


def test_a_record_with_a_created_claim_takes_its_record_status() -> None:
    batch = submission(BatchRecord("records[0]", "OCC-1", (0, 1), 1), atomic=True)
    body = render_outcomes(batch, [EntryOutcome(0, EntryStatus.CREATED), EntryOutcome(1, EntryStatus.UNCHANGED)]).body
    assert body["outcomes"][0]["status"] == "unchanged"
    assert body["atomic"] is True


def test_a_record_the_gateway_did_not_answer_is_not_reported_stored() -> None:
    batch = submission(BatchRecord("records[0]", "OCC-1", (0, 1), 1))
    body = render_outcomes(batch, [EntryOutcome(0, EntryStatus.CREATED)]).body
    assert body["outcomes"][0]["status"] == "rejected"


def test_batch_submission_is_a_submission() -> None:
    batch = BatchSubmission(atomic=False, label="x", entries=())
    assert isinstance(batch, Submission)
    assert batch.records == () and batch.schema == ""


# render_problem


def test_render_problem_is_rfc9457() -> None:
    issues = [
        Issue("error", "value", "schema", "schema must be 'police/v1'"),
        Issue("error", "required", "records", "this field is required"),
    ]
    rendered = render_problem(422, issues)
    assert rendered.status_code == 422
    assert rendered.media_type == "application/problem+json"
    assert rendered.body == {
        "type": "about:blank",
        "title": HTTPStatus(422).phrase,
        "status": 422,
        "detail": "schema must be 'police/v1'",
        "errors": [
            {"location": "schema", "code": "value", "message": "schema must be 'police/v1'"},
            {"location": "records", "code": "required", "message": "this field is required"},
        ],
    }


def test_render_problem_without_issues_or_a_known_status() -> None:
    body = render_problem(599, []).body
    assert body["title"] == "Error"
    assert body["detail"] and body["errors"] == []
    assert render_problem(413, []).body["title"] == HTTPStatus(413).phrase


# claim_version


def test_claim_version_is_stable_and_short() -> None:
    first = claim_version({"person_id": "P1", "given_names": ["A"], "address": {"postcode": "ZZ99 3VZ", "lines": []}})
    again = claim_version({"address": {"lines": [], "postcode": "ZZ99 3VZ"}, "given_names": ["A"], "person_id": "P1"})
    changed = claim_version({"person_id": "P1", "given_names": ["B"], "address": {"postcode": "ZZ99 3VZ", "lines": []}})
    assert first == again
    assert first != changed
    assert len(first) == 16 and int(first, 16) >= 0

"""The police/v1 adapter: each kind, the same person twice, bad input, source identifiers, the schema."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from stdnum.gb import nhs

from adapters import (
    Adapter,
    AdapterError,
    ClaimEntry,
    EntryOutcome,
    EntryStatus,
    InvolvedPerson,
    Issue,
    RecordEntry,
    RejectedEntry,
    Submission,
    TooManyEntries,
)
from adapters.batch import BatchRecord, BatchSubmission, claim_version
from adapters.police import (
    EXAMPLE_RETRACTION,
    EXAMPLE_SUBMISSION,
    POLICE_SCHEMA_ID,
    SOURCE_IDENTIFIER_MESSAGE,
    SOURCE_IDENTIFIER_PATTERNS,
    Child,
    DomesticAbuseDetails,
    IncidentDetails,
    IntelligenceDetails,
    MissingEpisodeDetails,
    PoliceAdapter,
    PoliceBatch,
    parse_police,
)

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
MAX_ENTRIES = 100
KINDS = ("incident", "domestic_abuse_notification", "missing_episode", "custody", "intelligence")


def example(kind: str) -> dict[str, Any]:
    """Return a deep copy of the example record of a kind."""
    record = next(r for r in EXAMPLE_SUBMISSION["records"] if r["kind"] == kind)
    return copy.deepcopy(record)


def body(*records: Any, **envelope: Any) -> bytes:
    return json.dumps({"schema": "police/v1", "records": list(records), **envelope}).encode()


def parse(payload: bytes, *, max_entries: int = MAX_ENTRIES, now: datetime = NOW) -> BatchSubmission:
    return parse_police(payload, "application/json", max_entries=max_entries, now=lambda: now)


def only_record(submission: BatchSubmission) -> RecordEntry:
    [entry] = [e for e in submission.entries if isinstance(e, RecordEntry)]
    return entry


def rejected(record: dict[str, Any]) -> RejectedEntry:
    """Parse one record that must be rejected; return its one entry, checking that nothing else is kept."""
    submission = parse(body(record))
    [entry] = submission.entries
    assert isinstance(entry, RejectedEntry), entry
    assert submission.records == (BatchRecord("records[0]", submission.records[0].record_id, (0,), None),)
    return entry


def refused(payload: bytes, *, max_entries: int = MAX_ENTRIES) -> AdapterError:
    with pytest.raises(AdapterError) as caught:
        parse(payload, max_entries=max_entries)
    return caught.value


# Each kind, from the published example


def test_the_example_parses_into_one_claim_and_a_record_of_each_kind() -> None:
    submission = parse(json.dumps(EXAMPLE_SUBMISSION).encode())
    assert submission.schema == "police/v1"
    assert submission.label == "police/v1 batch"
    assert submission.atomic is False
    assert not any(isinstance(e, RejectedEntry) for e in submission.entries)
    claims = [e for e in submission.entries if isinstance(e, ClaimEntry)]
    records = [e for e in submission.entries if isinstance(e, RecordEntry)]
    assert len(claims) == 1  # the same child, the same details, in all five records
    assert [r.record.kind for r in records] == list(KINDS)
    assert [e.index for e in submission.entries] == list(range(len(submission.entries)))
    assert [b.entry_indexes for b in submission.records] == [(0, 1), (0, 2), (0, 3), (0, 4), (0, 5)]
    assert [b.record_entry for b in submission.records] == [1, 2, 3, 4, 5]
    assert [b.record_id for b in submission.records] == [r["record_id"] for r in EXAMPLE_SUBMISSION["records"]]
    assert [r.location for r in records] == [f"records[{i}]" for i in range(5)]
    assert [r.subject_location for r in records] == [f"records[{i}].child" for i in range(5)]


def test_the_child_becomes_an_identity_claim() -> None:
    record = example("incident")
    record["child"]["address"]["postcode"] = " zz993vz "
    record["child"]["nhs_number"] = "999 000 0018"
    record["child"]["pnc_id"] = "2026/1234567z"
    submission = parse(body(record))
    claim_entry = submission.entries[0]
    assert isinstance(claim_entry, ClaimEntry)
    assert claim_entry.location == "records[0].child"
    claim = claim_entry.claim
    assert claim.source_record_id == "person/PER-000101"
    assert claim.nhs_number == "9990000018"
    assert claim.upn is None
    assert claim.other_identifiers == (("pnc", "2026/1234567Z"),)
    assert claim.given_names == ("Jordan", "Testcase")
    assert claim.family_name == "Synthetic"
    assert claim.birth_date == date(2014, 3, 9)
    assert claim.sex == "female"
    assert claim.postcode == "ZZ99 3VZ"
    assert claim.address_lines == ("1 Example Row", "Testtown")
    child = Child.model_validate(record["child"])
    assert claim.source_version == claim_version(child.model_dump(mode="json", exclude={"role", "version"}))


def test_a_person_version_sent_is_the_claim_version() -> None:
    record = example("incident")
    record["child"]["version"] = "2026-11-01T10:00:00Z"
    claim = parse(body(record)).entries[0]
    assert isinstance(claim, ClaimEntry)
    assert claim.claim.source_version == "2026-11-01T10:00:00Z"


def test_a_child_without_identifiers_has_none() -> None:
    record = example("incident")
    for field in ("pnc_id", "nhs_number", "address", "sex", "birth_date"):
        del record["child"][field]
    claim = parse(body(record)).entries[0]
    assert isinstance(claim, ClaimEntry)
    assert (claim.claim.nhs_number, claim.claim.other_identifiers, claim.claim.postcode) == (None, (), None)
    assert (claim.claim.address_lines, claim.claim.birth_date, claim.claim.sex) == ((), None, None)


def test_incident() -> None:
    entry = only_record(parse(body(example("incident"))))
    record = entry.record
    assert record.source_record_id == "OCC-2026-000101"
    assert record.source_version == "1"
    assert (record.kind, record.category) == ("incident", "police.incident")
    assert record.occurred_at == datetime(2026, 11, 10, 16, 5, tzinfo=UTC)
    assert record.summary.startswith("Incident (assault), child a victim: Jordan reports being pushed")
    assert record.subject_ref == "person/PER-000101"
    assert record.security_labels == frozenset()
    assert record.entered_in_error is False
    assert record.detrimental is False
    assert (record.police_handling_code, record.grading, record.notice) == (None, None, None)
    assert record.contact == "DC Jane Example, Public Protection Unit (01234 567890, ppu@example.police.invalid)"
    assert record.people == (
        InvolvedPerson(role="suspect", name="Riley Fakename", birth_date=date(2012, 7, 1),
                       relationship="older pupil at the same school"),
    )
    assert record.locations == ("footpath near the school (ZZ99)",)
    assert record.payload == json.loads(json.dumps(record.payload))
    assert record.payload["details"]["occurrence_type"] == "assault"


def test_domestic_abuse_notification() -> None:
    record = only_record(parse(body(example("domestic_abuse_notification")))).record
    assert (record.kind, record.category) == ("domestic_abuse_notification", "police.domestic_abuse")
    assert record.summary.startswith("Domestic abuse incident (child present), 20 Nov 2026 21:30: Officers attended")
    assert record.notice is not None and record.notice.startswith("Police attended a domestic abuse incident")
    assert [(p.role, p.relationship) for p in record.people] == [("victim", "mother"), ("suspect", "mother's partner")]
    assert record.locations == ("child's home address (ZZ99)",)


def test_domestic_abuse_with_the_child_absent_and_a_local_time() -> None:
    source = example("domestic_abuse_notification")
    source["details"]["child_present"] = False
    source["details"]["incident_at"] = "2026-06-20T21:30:00+01:00"
    source["occurred_at"] = "2026-06-20T21:30:00+01:00"
    record = only_record(parse(body(source))).record
    # The summary keeps the force's local time; occurred_at is the instant in UTC.
    assert record.summary.startswith("Domestic abuse incident (child not present), 20 Jun 2026 21:30: ")
    assert record.occurred_at == datetime(2026, 6, 20, 20, 30, tzinfo=UTC)
    assert record.occurred_at.tzinfo is UTC


def test_missing_episode() -> None:
    record = only_record(parse(body(example("missing_episode")))).record
    assert (record.kind, record.category) == ("missing_episode", "police.missing_episode")
    assert record.summary.startswith(
        "Missing episode (high risk): reported 3 Nov 2026 18:00, found 4 Nov 2026 09:15: Did not return home"
    )
    assert record.contact == "Missing Persons Unit (01234 567891)"
    assert record.people[0].role == "reporting person"


def test_missing_episode_not_yet_found() -> None:
    source = example("missing_episode")
    del source["details"]["found_at"]
    source["details"]["risk_level"] = "no_apparent_risk"
    record = only_record(parse(body(source))).record
    assert record.summary.startswith("Missing episode (no apparent risk): reported 3 Nov 2026 18:00, not yet found")


def test_custody() -> None:
    record = only_record(parse(body(example("custody")))).record
    assert (record.kind, record.category) == ("custody", "police.custody")
    assert record.summary == (
        "Arrested 2 Nov 2026 for criminal damage; outcome: released under investigation; "
        "appropriate adult present; 1 object recorded"
    )
    assert record.payload["objects"] == [
        {"object_id": None, "type": "phone", "description": "mobile phone seized for examination"}
    ]


def test_custody_without_an_appropriate_adult() -> None:
    source = example("custody")
    source["details"].update(outcome="charged", appropriate_adult=False)
    source["objects"].append({"type": "knife"})
    record = only_record(parse(body(source))).record
    assert record.summary == (
        "Arrested 2 Nov 2026 for criminal damage; outcome: charged; no appropriate adult present; 2 objects recorded"
    )


def test_intelligence() -> None:
    record = only_record(parse(body(example("intelligence")))).record
    assert (record.kind, record.category) == ("intelligence", "police.intelligence")
    assert record.police_handling_code == "P"
    assert record.grading == "2/B/P"
    assert record.summary.startswith("Intelligence graded 2/B/P: Jordan is reported")
    assert record.contact == "DS Sam Example, Child Exploitation Team (01234 567892)"


def test_intelligence_with_handling_code_c() -> None:
    source = example("intelligence")
    source["details"]["grading"] = {
        "source_evaluation": "1", "intelligence_assessment": "A", "handling_code": "C",
        "handling_conditions": "Not to be shared outside the strategy meeting without the force's agreement.",
    }
    record = only_record(parse(body(source))).record
    assert (record.police_handling_code, record.grading) == ("C", "1/A/C")


def test_detrimental_and_a_contact_without_phone_or_email() -> None:
    source = example("incident")
    source["detrimental"] = True
    source["contact"] = {"unit": "Public Protection Unit"}
    record = only_record(parse(body(source))).record
    assert record.detrimental is True
    assert record.contact == "Public Protection Unit"


def test_a_person_without_a_name_and_a_place_without_a_postcode() -> None:
    source = example("incident")
    source["persons"] = [{"person_id": "PER-9", "role": "witness"}]
    source["locations"] = [{"location_id": "L1", "description": "bus station"}]
    record = only_record(parse(body(source))).record
    assert record.people == (InvolvedPerson(role="witness", name="name not known"),)
    assert record.locations == ("bus station",)


def test_summaries_are_capped() -> None:
    source = example("incident")
    source["details"]["summary"] = "word " * 799
    summary = only_record(parse(body(source))).record.summary
    assert len(summary) == 1000
    assert summary.endswith("…")


def test_a_retraction() -> None:
    submission = parse(json.dumps(EXAMPLE_RETRACTION).encode())
    claim, entry = submission.entries
    assert isinstance(claim, ClaimEntry) and isinstance(entry, RecordEntry)
    record = entry.record
    assert record.entered_in_error is True
    assert (record.source_record_id, record.source_version) == ("OCC-2026-000101", "2")
    assert (record.kind, record.category) == ("incident", "police.incident")
    assert record.occurred_at is None
    assert record.contact is None and record.people == () and record.locations == ()
    assert record.payload["retracted"] is True
    # The child's details are those of the record's first version: the same claim.
    first = parse(body(example("incident"))).entries[0]
    assert isinstance(first, ClaimEntry)
    assert claim.claim == first.claim


# The same person across records


def test_the_same_person_in_two_records_is_one_claim() -> None:
    submission = parse(body(example("incident"), example("custody")))
    assert [type(e).__name__ for e in submission.entries] == ["ClaimEntry", "RecordEntry", "RecordEntry"]
    assert [b.entry_indexes for b in submission.records] == [(0, 1), (0, 2)]


def test_a_changed_person_is_a_second_claim() -> None:
    moved = example("custody")
    moved["child"]["address"] = {"lines": ["2 Sample Close"], "postcode": "ZZ99 1AA"}
    submission = parse(body(example("incident"), moved, example("intelligence")))
    kinds = [type(e).__name__ for e in submission.entries]
    assert kinds == ["ClaimEntry", "RecordEntry", "ClaimEntry", "RecordEntry", "RecordEntry"]
    assert [b.entry_indexes for b in submission.records] == [(0, 1), (2, 3), (0, 4)]
    claims = [e for e in submission.entries if isinstance(e, ClaimEntry)]
    assert claims[0].claim.source_record_id == claims[1].claim.source_record_id
    assert claims[0].claim.source_version != claims[1].claim.source_version


# Bad records: each rejected at its field, nothing of it kept, nothing of it echoed


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(record: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target: Any = record
        for part in parents:
            target = target[int(part)] if isinstance(target, list) else target[part]
        if isinstance(target, list):
            target[int(last)] = value
        else:
            target[last] = value

    return change


def _delete(path: str) -> Callable[[dict[str, Any]], None]:
    def change(record: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target: Any = record
        for part in parents:
            target = target[part]
        del target[last]

    return change


SECRET = "Zebedee-Quintessa-4471"
INCIDENT_DETAILS = example("incident")["details"]
DOMESTIC_DETAILS = example("domestic_abuse_notification")["details"]

BAD_RECORDS: list[tuple[str, str, Callable[[dict[str, Any]], None], str, str, str]] = [
    # (id, kind, change, location, code, a submitted value that no message may contain)
    ("unknown-record-field", "incident", _set("colour", SECRET), "records[0].colour", "structure", SECRET),
    ("unknown-child-field", "incident", _set("child.nickname", SECRET), "records[0].child.nickname", "structure",
     SECRET),
    ("unknown-details-field", "incident", _set("details.risk_level", "high"), "records[0].details.risk_level",
     "structure", SECRET),
    ("birth-date-future", "incident", _set("child.birth_date", "2027-02-03"), "records[0].child.birth_date", "value",
     "2027-02-03"),
    ("birth-date-a-datetime", "incident", _set("child.birth_date", "2014-03-09T00:00:00"),
     "records[0].child.birth_date", "value", "2014-03-09T00"),
    ("person-birth-date-future", "incident", _set("persons.0.birth_date", "2031-01-01"),
     "records[0].persons[0].birth_date", "value", "2031-01-01"),
    ("occurred-future", "incident", _set("occurred_at", "2026-11-24T13:00:00Z"), "records[0].occurred_at", "value",
     "2026-11-24T13"),
    ("occurred-naive", "incident", _set("occurred_at", "2026-11-10T16:05:00"), "records[0].occurred_at", "value",
     "2026-11-10T16"),
    ("occurred-a-number", "incident", _set("occurred_at", 1_790_000_000), "records[0].occurred_at", "value",
     "1790000000"),
    ("occurred-a-date", "incident", _set("occurred_at", "2026-11-10"), "records[0].occurred_at", "value",
     "2026-11-10"),
    ("occurred-missing", "incident", _delete("occurred_at"), "records[0].occurred_at", "required", SECRET),
    ("incident-at-future", "domestic_abuse_notification", _set("details.incident_at", "2027-01-01T00:00:00Z"),
     "records[0].details.incident_at", "value", "2027-01-01"),
    ("nhs-number-checksum", "incident", _set("child.nhs_number", "9990000019"), "records[0].child.nhs_number",
     "value", "9990000019"),
    ("nhs-number-short", "incident", _set("child.nhs_number", "99900000"), "records[0].child.nhs_number", "value",
     "99900000"),
    ("nhs-number-a-number", "incident", _set("child.nhs_number", 9990000018), "records[0].child.nhs_number", "value",
     "9990000018"),
    ("pnc-shape", "incident", _set("child.pnc_id", "26-1234567Z"), "records[0].child.pnc_id", "value",
     "26-1234567Z"),
    ("pnc-too-many-digits", "incident", _set("child.pnc_id", "26/12345678Z"), "records[0].child.pnc_id", "value",
     "12345678"),
    ("postcode", "incident", _set("child.address.postcode", "QQ1 Z"), "records[0].child.address.postcode", "value",
     "QQ1 Z"),
    ("no-handling-code", "intelligence", _delete("details.grading.handling_code"),
     "records[0].details.grading.handling_code", "required", SECRET),
    ("handling-code-x", "intelligence", _set("details.grading.handling_code", "X"),
     "records[0].details.grading.handling_code", "value", SECRET),
    ("c-without-conditions", "intelligence", _set("details.grading.handling_code", "C"),
     "records[0].details.grading.handling_conditions", "required", SECRET),
    ("p-with-conditions", "intelligence", _set("details.grading.handling_conditions", SECRET),
     "records[0].details.grading.handling_conditions", "value", SECRET),
    ("grading-a-number", "intelligence", _set("details.grading.source_evaluation", 2),
     "records[0].details.grading.source_evaluation", "value", SECRET),
    ("details-of-another-kind", "incident", _set("details", DOMESTIC_DETAILS), "records[0].details", "structure",
     "Officers attended"),
    ("details-missing", "custody", _delete("details"), "records[0].details", "required", SECRET),
    ("empty-record-id", "incident", _set("record_id", ""), "records[0].record_id", "value", SECRET),
    ("record-id-with-spaces", "incident", _set("record_id", "OCC 1 " + SECRET), "records[0].record_id", "value",
     SECRET),
    ("empty-version", "incident", _set("version", ""), "records[0].version", "value", SECRET),
    ("blank-summary", "incident", _set("details.summary", "   "), "records[0].details.summary", "value", SECRET),
    ("empty-person-id", "incident", _set("child.person_id", ""), "records[0].child.person_id", "value", SECRET),
    ("empty-given-name", "incident", _set("child.given_names", ["Jordan", ""]), "records[0].child.given_names[1]",
     "value", SECRET),
    ("empty-unit", "incident", _set("contact.unit", ""), "records[0].contact.unit", "value", SECRET),
    ("empty-school-notice", "domestic_abuse_notification", _set("details.school_notice", ""),
     "records[0].details.school_notice", "value", SECRET),
    ("missing-school-notice", "domestic_abuse_notification", _delete("details.school_notice"),
     "records[0].details.school_notice", "required", SECRET),
    ("missing-contact", "incident", _delete("contact"), "records[0].contact", "required", SECRET),
    ("missing-child", "incident", _delete("child"), "records[0].child", "required", SECRET),
    ("missing-child-role", "incident", _delete("child.role"), "records[0].child.role", "required", SECRET),
    ("child-role", "incident", _set("child.role", "bystander-" + SECRET), "records[0].child.role", "value", SECRET),
    ("person-role", "incident", _set("persons.0.role", SECRET), "records[0].persons[0].role", "value", SECRET),
    ("person-is-the-child", "incident", _set("persons.0.person_id", "PER-000101"), "records[0].persons[0].person_id",
     "value", "PER-000101"),
    ("kind-unknown", "incident", _set("kind", SECRET), "records[0].kind", "value", SECRET),
    ("kind-missing", "incident", _delete("kind"), "records[0].kind", "required", SECRET),
    ("found-before-reported", "missing_episode", _set("details.found_at", "2026-11-02T09:00:00Z"),
     "records[0].details.found_at", "value", "2026-11-02"),
    ("risk-level", "missing_episode", _set("details.risk_level", "severe"), "records[0].details.risk_level", "value",
     "severe"),
    ("child-present-a-string", "domestic_abuse_notification", _set("details.child_present", "yes"),
     "records[0].details.child_present", "value", SECRET),
    ("detrimental-a-number", "incident", _set("detrimental", 1), "records[0].detrimental", "value", SECRET),
    ("retracted-a-string", "incident", _set("retracted", "true"), "records[0].retracted", "value", SECRET),
    ("custody-outcome", "custody", _set("details.outcome", "let off"), "records[0].details.outcome", "value",
     "let off"),
    ("location-postcode-conflict", "incident", _set("locations.0.address", {"postcode": "ZZ99 9ZZ"}),
     "records[0].locations[0].postcode", "value", "ZZ99 9ZZ"),
    ("phone", "incident", _set("contact.phone", "call " + SECRET), "records[0].contact.phone", "value", SECRET),
    ("email", "incident", _set("contact.email", SECRET), "records[0].contact.email", "value", SECRET),
    ("object-without-type", "custody", _set("objects.0", {"description": "a phone"}), "records[0].objects[0].type",
     "required", SECRET),
    ("too-many-given-names", "incident", _set("child.given_names", ["A"] * 11), "records[0].child.given_names",
     "value", SECRET),
]


@pytest.mark.parametrize(
    ("kind", "change", "location", "code", "submitted"),
    [case[1:] for case in BAD_RECORDS],
    ids=[case[0] for case in BAD_RECORDS],
)
def test_a_bad_record_is_rejected_at_its_field(
    kind: str, change: Callable[[dict[str, Any]], None], location: str, code: str, submitted: str
) -> None:
    record = example(kind)
    change(record)
    entry = rejected(record)
    assert entry.location == "records[0]"
    assert (location, code) in [(i.location, i.code) for i in entry.issues], entry.issues
    for issue in entry.issues:
        assert issue.severity == "error"
        assert issue.message
        assert submitted not in issue.message
        assert SECRET not in issue.message


def test_the_issue_for_details_of_another_kind_says_so() -> None:
    record = example("incident")
    record["details"] = copy.deepcopy(DOMESTIC_DETAILS)
    [issue] = rejected(record).issues
    assert issue.location == "records[0].details"
    assert "domestic_abuse_notification" in issue.message and "occurrence_type" in issue.message


def test_details_of_no_kind_are_listed_field_by_field() -> None:
    record = example("incident")
    record["details"] = {"occurrence_type": "assault", "mood": "bad"}
    locations = {(i.location, i.code) for i in rejected(record).issues}
    assert locations == {("records[0].details.mood", "structure"), ("records[0].details.summary", "required")}


def test_a_retraction_carries_nothing_else() -> None:
    record = copy.deepcopy(EXAMPLE_RETRACTION["records"][0])
    record["details"] = copy.deepcopy(INCIDENT_DETAILS)
    record["occurred_at"] = "2026-11-10T16:05:00Z"
    issues = rejected(record).issues
    assert {(i.location, i.code) for i in issues} == {
        ("records[0].details", "structure"),
        ("records[0].occurred_at", "structure"),
    }


def test_a_record_that_is_not_an_object() -> None:
    entry = rejected(["not", "a", "record"])  # type: ignore[arg-type]  # deliberately the wrong type
    assert [(i.location, i.code) for i in entry.issues] == [("records[0]", "structure")]


def test_every_problem_of_a_record_is_reported_at_once() -> None:
    record = example("incident")
    record["child"]["nhs_number"] = "9990000019"
    record["occurred_at"] = "2026-11-10T16:05:00"
    record["extra"] = True
    issues = rejected(record).issues
    assert {i.location for i in issues} == {
        "records[0].child.nhs_number", "records[0].occurred_at", "records[0].extra",
    }


def test_the_clock_allows_a_little_skew() -> None:
    record = example("incident")
    record["occurred_at"] = (NOW + timedelta(minutes=2)).isoformat()
    assert isinstance(parse(body(record)).entries[1], RecordEntry)
    record["occurred_at"] = (NOW + timedelta(minutes=10)).isoformat()
    assert isinstance(parse(body(record)).entries[0], RejectedEntry)


def test_a_birth_today_is_not_in_the_future() -> None:
    record = example("incident")
    record["child"]["birth_date"] = NOW.date().isoformat()
    assert isinstance(parse(body(record)).entries[0], ClaimEntry)


def test_a_batch_with_one_bad_record_keeps_the_good_ones() -> None:
    bad = example("custody")
    bad["child"]["nhs_number"] = "9990000019"
    submission = parse(body(example("incident"), bad, example("intelligence")))
    assert [type(e).__name__ for e in submission.entries] == ["ClaimEntry", "RecordEntry", "RejectedEntry", "RecordEntry"]
    assert [b.entry_indexes for b in submission.records] == [(0, 1), (2,), (0, 3)]
    assert [b.record_entry for b in submission.records] == [1, None, 3]
    assert submission.records[1].record_id == "CUS-2026-000104"
    rejected_entry = submission.entries[2]
    assert isinstance(rejected_entry, RejectedEntry) and rejected_entry.location == "records[1]"


def test_a_bad_record_about_a_new_person_leaves_no_claim() -> None:
    bad = example("incident")
    bad["child"]["person_id"] = "PER-777"
    bad["occurred_at"] = "2030-01-01T00:00:00Z"
    submission = parse(body(bad, example("custody")))
    claims = [e for e in submission.entries if isinstance(e, ClaimEntry)]
    assert [c.claim.source_record_id for c in claims] == ["person/PER-000101"]
    assert submission.records[0].record_id == "OCC-2026-000101"


def test_an_unreadable_record_id_is_not_reported() -> None:
    record = example("incident")
    record["record_id"] = "has spaces"
    assert parse(body(record)).records[0].record_id is None


# Whole payloads


@pytest.mark.parametrize("atomic", [True, False])
def test_atomic_is_carried(atomic: bool) -> None:
    assert parse(body(example("incident"), atomic=atomic)).atomic is atomic


def test_atomic_defaults_to_false() -> None:
    assert parse(body(example("incident"))).atomic is False


def test_too_many_records() -> None:
    with pytest.raises(TooManyEntries) as caught:
        parse(body(example("incident"), example("custody"), example("intelligence")), max_entries=2)
    [issue] = caught.value.issues
    assert (issue.location, issue.code) == ("records", "too-long")
    assert "2" in issue.message


def test_as_many_records_as_allowed() -> None:
    submission = parse(body(example("incident"), example("custody")), max_entries=2)
    assert len(submission.records) == 2


@pytest.mark.parametrize(
    ("payload", "location", "code"),
    [
        (b"\xff\xfe", "", "invalid"),
        (b"{", "", "invalid"),
        (b"[]", "", "structure"),
        (json.dumps({"records": []}).encode(), "schema", "required"),
        (json.dumps({"schema": "police/v2", "records": []}).encode(), "schema", "value"),
        (json.dumps({"schema": "education/v1", "records": []}).encode(), "schema", "value"),
        (json.dumps({"schema": "police/v1", "records": []}).encode(), "records", "value"),
        (json.dumps({"schema": "police/v1"}).encode(), "records", "required"),
        (json.dumps({"schema": "police/v1", "records": {}}).encode(), "records", "value"),
        (body(example("incident"), atomic="yes"), "atomic", "value"),
        (body(example("incident"), force="Example Constabulary"), "force", "structure"),
        (b'{"schema": "police/v1", "records": ' + b"[" * 40 + b"]" * 40 + b"}", "", "structure"),
    ],
    ids=["not-utf8", "not-json", "not-an-object", "no-schema", "v2", "education", "no-records", "records-missing",
         "records-not-a-list", "atomic-a-string", "unknown-top-level", "too-deep"],
)
def test_a_payload_that_cannot_be_read_is_refused_whole(payload: bytes, location: str, code: str) -> None:
    error = refused(payload)
    assert (location, code) in [(i.location, i.code) for i in error.issues], error.issues


def test_the_schema_issue_names_what_is_expected_not_what_was_sent() -> None:
    [issue] = refused(json.dumps({"schema": "force-" + SECRET, "records": []}).encode()).issues
    assert "police/v1" in issue.message and SECRET not in issue.message


def test_only_json_is_accepted() -> None:
    with pytest.raises(AdapterError) as caught:
        parse_police(body(example("incident")), "text/csv", max_entries=MAX_ENTRIES)
    assert caught.value.issues[0].code == "not-supported"
    submission = parse_police(body(example("incident")), "application/json; charset=utf-8", max_entries=MAX_ENTRIES)
    assert len(submission.entries) == 2


# Source identifiers: refused at the door

SOURCE_TEXTS = [
    "Information from CHIS indicates the child is at risk.",
    "chis reporting suggests county lines involvement",
    "A covert human intelligence source reports the address is used.",
    "Covert source states the child carries a knife.",
    "The informant says the child stays out late.",
    "According to an informer the child was present.",
    "Source ref 4471: child seen at the address.",
    "See source reference AB12 for context.",
    "Source number 12 reports sightings.",
    "source no. 7 saw the child",
    "Source ID 99 confirms.",
    "His handler passed this on.",
    "Dedicated Source Unit reports the child was present.",
    "Intelligence under URN S1234 shows contact.",
    "urn: s/4471 refers",
    "From S/1234: the child was seen.",
    "Reported by SRN 55.",
]
FREE_TEXT_FIELDS = [
    ("incident", "details.summary", "records[0].details.summary"),
    ("incident", "details.occurrence_type", "records[0].details.occurrence_type"),
    ("incident", "persons.0.relationship_to_child", "records[0].persons[0].relationship_to_child"),
    ("incident", "locations.0.description", "records[0].locations[0].description"),
    ("domestic_abuse_notification", "details.school_notice", "records[0].details.school_notice"),
    ("domestic_abuse_notification", "details.summary", "records[0].details.summary"),
    ("missing_episode", "details.summary", "records[0].details.summary"),
    ("custody", "details.offence", "records[0].details.offence"),
    ("custody", "objects.0.description", "records[0].objects[0].description"),
    ("intelligence", "details.text", "records[0].details.text"),
]


def test_every_pattern_has_a_sample() -> None:
    # Each documented pattern is exercised by at least one text above.
    for label, pattern in SOURCE_IDENTIFIER_PATTERNS:
        assert any(re.search(rf"\b(?:{pattern})\b", text, re.IGNORECASE) for text in SOURCE_TEXTS), label


@pytest.mark.parametrize("text", SOURCE_TEXTS)
def test_a_source_identifier_in_intelligence_is_refused(text: str) -> None:
    record = example("intelligence")
    record["details"]["text"] = text
    [issue] = rejected(record).issues
    assert (issue.location, issue.code) == ("records[0].details.text", "security")
    assert "source identifier appears to be present" in issue.message
    # One fixed sentence, whatever the text: nothing of it is echoed.
    assert issue.message == SOURCE_IDENTIFIER_MESSAGE


@pytest.mark.parametrize(("kind", "path", "location"), FREE_TEXT_FIELDS)
def test_every_free_text_field_is_checked(kind: str, path: str, location: str) -> None:
    record = example(kind)
    _set(path, "Passed on by the informant.")(record)
    issues = rejected(record).issues
    assert [(i.location, i.code) for i in issues] == [(location, "security")]


def test_handling_conditions_are_checked() -> None:
    record = example("intelligence")
    record["details"]["grading"].update(handling_code="C", handling_conditions="Consult the CHIS handler first.")
    issues = rejected(record).issues
    assert [(i.location, i.code) for i in issues] == [("records[0].details.grading.handling_conditions", "security")]


@pytest.mark.parametrize(
    "text",
    [
        "The information was sourced from the school.",
        "Resources were offered to the family; outsourced support.",
        "The source of the injury is unclear.",
        "Open source research found nothing.",
        "Mr Chisholm, a neighbour, called police.",
        "The school (URN 123456) was informed.",
        "Section 47 enquiry opened (s.47); S47 strategy meeting held.",
        "An informal conversation was held; the child was handled sensitively.",
        "Mother's partner has two children from a previous relationship.",
    ],
)
def test_ordinary_words_are_not_source_identifiers(text: str) -> None:
    record = example("intelligence")
    record["details"]["text"] = text
    assert isinstance(parse(body(record)).entries[1], RecordEntry)


@settings(max_examples=100, deadline=None, database=None)
@given(st.sampled_from(SOURCE_TEXTS), st.text(alphabet="abcdefghij ,.;", max_size=30),
       st.text(alphabet="abcdefghij ,.;", max_size=30))
def test_a_source_identifier_is_found_wherever_it_sits(text: str, before: str, after: str) -> None:
    record = example("incident")
    record["details"]["summary"] = f"{before} {text} {after}"
    entry = parse(body(record)).entries[0]
    assert isinstance(entry, RejectedEntry)
    assert [i.code for i in entry.issues] == ["security"]


# Unknown fields, at random

_FIELD_NAMES = st.from_regex(r"[a-z][a-z0-9_]{0,20}", fullmatch=True)
_KNOWN = {
    "record": set(example("incident")) | {"retracted", "detrimental", "objects", "persons", "locations"},
    "child": set(Child.model_fields) | {"version"},
    "details": set(IncidentDetails.model_fields),
}


@settings(max_examples=100, deadline=None, database=None)
@given(st.sampled_from(["record", "child", "details", "contact", "persons.0"]), _FIELD_NAMES, st.integers())
def test_a_random_unknown_field_is_always_refused(where: str, name: str, value: int) -> None:
    record = example("incident")
    known = {
        "record": _KNOWN["record"], "child": _KNOWN["child"], "details": _KNOWN["details"],
        "contact": {"officer", "unit", "phone", "email"},
        "persons.0": {"person_id", "given_names", "family_name", "birth_date", "role", "relationship_to_child"},
    }[where]
    if name in known:
        return
    target: Any = record
    for part in [] if where == "record" else where.split("."):
        target = target[int(part)] if part.isdigit() else target[part]
    target[name] = value
    entry = rejected(record)
    prefix = "records[0]" if where == "record" else "records[0]." + where.replace(".0", "[0]")
    assert [(i.location, i.code) for i in entry.issues] == [(f"{prefix}.{name}", "structure")]
    assert str(value) not in entry.issues[0].message


@settings(max_examples=100, deadline=None, database=None)
@given(st.from_regex(r"[0-9]{10}", fullmatch=True))
def test_an_nhs_number_is_kept_only_when_valid(number: str) -> None:
    record = example("incident")
    record["child"]["nhs_number"] = number
    entry = parse(body(record)).entries[0]
    if nhs.is_valid(number):
        assert isinstance(entry, ClaimEntry) and entry.claim.nhs_number == number
    else:
        assert isinstance(entry, RejectedEntry)
        assert all(number not in i.message for i in entry.issues)


# The adapter, its answer and its schema


def test_the_adapter_implements_the_interface() -> None:
    adapter: Adapter = PoliceAdapter(clock=lambda: NOW)
    assert adapter.name == "police"
    assert adapter.media_types == frozenset({"application/json"})
    submission = adapter.parse(json.dumps(EXAMPLE_SUBMISSION).encode(), "application/json", max_entries=MAX_ENTRIES)
    assert isinstance(submission, BatchSubmission)
    outcomes = [EntryOutcome(e.index, EntryStatus.CREATED) for e in submission.entries]
    rendered = adapter.render(submission, outcomes)
    assert rendered.status_code == 200
    assert rendered.body["summary"] == {"created": 5, "unchanged": 0, "rejected": 0}
    assert rendered.body["schema"] == "police/v1"
    problem = adapter.render_error(413, [Issue("error", "too-long", "records", "split the batch")])
    assert problem.media_type == "application/problem+json"
    assert problem.body["errors"] == [{"location": "records", "code": "too-long", "message": "split the batch"}]


def test_the_adapter_renders_a_rejected_record() -> None:
    bad = example("custody")
    bad["details"]["offence"] = "Informant tip-off"
    adapter = PoliceAdapter(clock=lambda: NOW)
    submission = adapter.parse(body(example("incident"), bad), "application/json", max_entries=MAX_ENTRIES)
    outcomes = [
        EntryOutcome(e.index, EntryStatus.REJECTED, e.issues) if isinstance(e, RejectedEntry)
        else EntryOutcome(e.index, EntryStatus.CREATED)
        for e in submission.entries
    ]
    body_ = adapter.render(submission, outcomes).body
    assert [o["status"] for o in body_["outcomes"]] == ["created", "rejected"]
    assert body_["outcomes"][1]["errors"][0]["code"] == "security"
    assert body_["outcomes"][1]["record_id"] == "CUS-2026-000104"


def test_the_adapter_renders_only_its_own_submissions() -> None:
    with pytest.raises(TypeError):
        PoliceAdapter().render(Submission(atomic=False, label="batch", entries=()), [])


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in _refs(value)]
    return []


def test_describe_is_the_json_schema_with_examples() -> None:
    schema = PoliceAdapter().describe(token_endpoint="https://gateway.example/oauth/token")
    json.dumps(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == POLICE_SCHEMA_ID == "urn:macpt-gateway:schema:police:v1"
    assert schema["title"]
    assert "https://gateway.example/oauth/token" in schema["description"]
    for kind in KINDS:
        assert f"- {kind}:" in schema["description"]
    assert schema["type"] == "object" and schema["additionalProperties"] is False
    assert schema["properties"]["schema"]["const"] == "police/v1"
    assert set(schema["required"]) == {"schema", "records"}
    # Every model refuses unknown fields, and every reference resolves.
    for name, definition in schema["$defs"].items():
        assert definition.get("additionalProperties") is False, name
    for ref in _refs(schema):
        assert ref.startswith("#/$defs/") and ref.removeprefix("#/$defs/") in schema["$defs"], ref
    grading = schema["$defs"]["Grading"]
    assert "handling_code" in grading["required"]
    assert schema["examples"] == [EXAMPLE_SUBMISSION, EXAMPLE_RETRACTION]


@pytest.mark.parametrize("submission", [EXAMPLE_SUBMISSION, EXAMPLE_RETRACTION], ids=["records", "retraction"])
def test_each_example_is_valid_and_parses_with_no_rejection(submission: dict[str, Any]) -> None:
    PoliceBatch.model_validate(submission)  # the documented model accepts it
    parsed = PoliceAdapter().parse(json.dumps(submission).encode(), "application/json", max_entries=MAX_ENTRIES)
    assert parsed.entries and not any(isinstance(e, RejectedEntry) for e in parsed.entries)


def test_the_example_uses_synthetic_people_only() -> None:
    text = json.dumps(EXAMPLE_SUBMISSION)
    numbers = re.findall(r'"nhs_number": "(\d+)"', text)
    assert numbers and all(n.startswith("999") and nhs.is_valid(n) for n in numbers)
    postcodes = re.findall(r'"postcode": "([^"]+)"', text)
    assert postcodes and all(p.startswith("ZZ99 ") for p in postcodes)
    assert {r["kind"] for r in EXAMPLE_SUBMISSION["records"]} == set(KINDS)


def test_the_documented_model_refuses_what_the_parser_refuses() -> None:
    from pydantic import ValidationError

    wrong = copy.deepcopy(EXAMPLE_SUBMISSION)
    wrong["records"][0]["details"] = copy.deepcopy(DOMESTIC_DETAILS)
    with pytest.raises(ValidationError):
        PoliceBatch.model_validate(wrong)


def test_detail_models_are_exported_for_the_schema() -> None:
    # The kind-specific details the schema documents are the ones the parser validates.
    schema = PoliceAdapter().describe(token_endpoint="t")["$defs"]
    for model in (IncidentDetails, DomesticAbuseDetails, MissingEpisodeDetails, IntelligenceDetails):
        assert set(schema[model.__name__]["properties"]) == set(model.model_fields)

"""The education adapter: education/v1 JSON, the CSV attendance route, and bad input (all synthetic)."""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from stdnum.gb import upn as upn_number

from adapters import (
    Adapter,
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
    SchoolPlacement,
    TooManyEntries,
)
from adapters.batch import BatchSubmission
from adapters.education import (
    ABSENCE_CODES,
    CSV_COLUMNS,
    CSV_OPTIONAL_COLUMNS,
    EDUCATION_SCHEMA_ID,
    EXAMPLE_CSV,
    EXAMPLE_SUBMISSION,
    EXCLUSION_REASONS,
    EducationAdapter,
    EducationSubmission,
    parse_education,
)

# A fixed "now", so that "not in the future" and "has left" do not depend on the day the tests run.
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
MAX_ENTRIES = 1000
UPN = "D801900126001"  # valid: stdnum's check letter on local authority 801
OTHER_UPN = "G801900125002"
WRONG_CHECK_UPN = "A801900126001"
NHS = "9990000018"
TOKEN_ENDPOINT = "https://gateway.example/oauth/token"
CSV_HEADER = (
    "record_id,version,upn,nhs_number,given_names,family_name,birth_date,sex,postcode,school_urn,"
    "period_start,period_end,possible_sessions,attended_sessions,absence_I,absence_N"
)


def pupil(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "upn": UPN,
        "nhs_number": NHS,
        "given_names": ["Alex", "Example"],
        "family_name": "Testpupil",
        "birth_date": "2018-03-14",
        "sex": "female",
        "address": {"lines": ["1 Sample Street"], "postcode": "ZZ99 3VZ"},
    }
    data.update(changes)
    return data


def record(kind: str, details: dict[str, Any], **changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "record_id": f"{kind}/1",
        "version": "1",
        "kind": kind,
        "pupil": pupil(),
        "school": {"urn": "999001", "name": "Example Primary School"},
        "details": details,
    }
    data.update(changes)
    return data


def enrolment(**details: Any) -> dict[str, Any]:
    return record("enrolment", {"year_group": "4", "start_date": "2026-09-03", **details})


def attendance(**details: Any) -> dict[str, Any]:
    return record("attendance", {
        "period_start": "2026-09-02",
        "period_end": "2026-11-20",
        "possible_sessions": 140,
        "attended_sessions": 112,
        "absences": {"N": 10, "O": 4, "I": 12, "M": 2},
        **details,
    })


def body(*records: Any, atomic: Any = False, **changes: Any) -> bytes:
    return json.dumps({"schema": "education/v1", "atomic": atomic, "records": list(records), **changes}).encode()


def parse(content: bytes, media_type: str = "application/json", *, max_entries: int = MAX_ENTRIES) -> BatchSubmission:
    return parse_education(content, media_type, max_entries=max_entries, now=NOW)


def parse_csv(text: str, *, max_entries: int = MAX_ENTRIES) -> BatchSubmission:
    return parse(text.encode(), "text/csv", max_entries=max_entries)


def csv_row(record_id: str = "att/1", **cells: str) -> str:
    values = {
        "record_id": record_id, "version": "1", "upn": UPN, "nhs_number": "", "given_names": "Alex Example",
        "family_name": "Testpupil", "birth_date": "2018-03-14", "sex": "female", "postcode": "ZZ99 3VZ",
        "school_urn": "999001", "period_start": "2026-09-02", "period_end": "2026-11-20",
        "possible_sessions": "140", "attended_sessions": "112", "absence_I": "12", "absence_N": "10",
    }
    values.update(cells)
    return ",".join(values[column] for column in CSV_HEADER.split(","))


def claim_of(entry: Entry) -> IdentityClaim:
    assert isinstance(entry, ClaimEntry), entry
    return entry.claim


def record_of(entry: Entry) -> InboundRecord:
    assert isinstance(entry, RecordEntry), entry
    return entry.record


def rejected(entry: Entry) -> RejectedEntry:
    assert isinstance(entry, RejectedEntry), entry
    return entry


def only_record(submission: BatchSubmission) -> InboundRecord:
    claim, inbound = submission.entries
    assert isinstance(claim, ClaimEntry)
    return record_of(inbound)


def issue_at(entry: Entry, location: str) -> Issue:
    issues = [issue for issue in rejected(entry).issues if issue.location == location]
    assert issues, rejected(entry).issues
    return issues[0]


def assert_not_echoed(value: str, *issues: Issue) -> None:
    for issue in issues:
        assert value not in issue.message and value not in issue.location, issue


# --- Each kind -------------------------------------------------------------------------------------


def test_an_enrolment_becomes_a_claim_and_a_record_placing_the_pupil_on_roll() -> None:
    submission = parse(body(enrolment()))

    claim_entry, record_entry = submission.entries
    claim = claim_of(claim_entry)
    assert (claim_entry.index, claim_entry.location) == (0, "records[0].pupil")
    assert claim == IdentityClaim(
        source_record_id=f"pupil/{UPN}",
        source_version=claim.source_version,
        nhs_number=NHS,
        upn=UPN,
        other_identifiers=(),
        given_names=("Alex", "Example"),
        family_name="Testpupil",
        birth_date=date(2018, 3, 14),
        sex="female",
        postcode="ZZ99 3VZ",
        address_lines=("1 Sample Street",),
    )
    assert len(claim.source_version) == 16
    assert isinstance(record_entry, RecordEntry)
    assert (record_entry.index, record_entry.location, record_entry.subject_location) == (
        1, "records[0]", "records[0].pupil"
    )
    inbound = record_entry.record
    assert (inbound.source_record_id, inbound.source_version) == ("enrolment/1", "1")
    assert (inbound.kind, inbound.category) == ("enrolment", "education.enrolment")
    assert inbound.subject_ref == f"pupil/{UPN}"
    assert inbound.occurred_at == datetime(2026, 9, 3, tzinfo=UTC)
    assert inbound.school == SchoolPlacement("999001", "on_roll", since=date(2026, 9, 3))
    assert inbound.summary == "On roll at Example Primary School (URN 999001), year 4, since 3 Sep 2026"
    assert inbound.security_labels == frozenset() and not inbound.entered_in_error and not inbound.detrimental
    assert inbound.payload["details"]["start_date"] == "2026-09-03"
    assert inbound.payload["pupil"]["upn"] == UPN
    assert (submission.label, submission.schema, submission.atomic) == ("education/v1 batch", "education/v1", False)


def test_an_enrolment_with_a_past_end_date_says_the_pupil_left() -> None:
    inbound = only_record(parse(body(enrolment(end_date="2026-11-13", reason_for_leaving="Moved out of area"))))

    assert inbound.school == SchoolPlacement("999001", "left", since=date(2026, 11, 13))
    assert inbound.occurred_at == datetime(2026, 11, 13, tzinfo=UTC)
    assert inbound.summary == (
        "Left Example Primary School (URN 999001) on 13 Nov 2026 (year 4): Moved out of area"
    )


def test_an_enrolment_leaving_later_is_still_on_roll() -> None:
    inbound = only_record(parse(body(enrolment(year_group="R", end_date="2027-07-21"))))

    assert inbound.school == SchoolPlacement("999001", "on_roll", since=date(2026, 9, 3))
    assert inbound.summary.endswith("reception, since 3 Sep 2026; leaving 21 Jul 2027")


def test_an_attendance_summary_reads_as_a_strategy_meeting_needs_it() -> None:
    inbound = only_record(parse(body(attendance())))

    assert (inbound.kind, inbound.category) == ("attendance", "education.attendance")
    assert inbound.occurred_at == datetime(2026, 11, 20, tzinfo=UTC)
    assert inbound.school is None
    assert inbound.summary == (
        "Attendance 2 Sep 2026 – 20 Nov 2026: 112 of 140 sessions (80.0%); unauthorised 14 (N 10, O 4); "
        "authorised 14 (I 12, M 2); persistent absence"
    )


def test_attendance_bands_follow_the_dfe_definitions() -> None:
    def summary(attended: int, absences: dict[str, int]) -> str:
        details = {"possible_sessions": 100, "attended_sessions": attended, "absences": absences}
        return only_record(parse(body(attendance(**details)))).summary

    assert summary(95, {"I": 5}).endswith("authorised 5 (I 5)")
    assert summary(90, {"I": 10}).endswith("persistent absence")  # missing 10% or more
    assert summary(50, {"N": 50}).endswith("severe absence")  # missing 50% or more
    assert "approved educational activity 4 (K 4)" in summary(100, {"K": 4})


def test_attendance_with_no_possible_sessions_says_so() -> None:
    details = {"possible_sessions": 0, "attended_sessions": 0, "absences": {}}

    assert only_record(parse(body(attendance(**details)))).summary.endswith(": no possible sessions")


@pytest.mark.parametrize(
    ("details", "summary"),
    [
        ({"type": "suspension", "start_date": "2026-10-14", "sessions": 4, "reason": "verbal_abuse_against_adult"},
         "Suspended from Example Primary School (URN 999001) for 4 sessions from 14 Oct 2026: "
         "Verbal abuse or threatening behaviour against an adult"),
        ({"type": "permanent_exclusion", "start_date": "2026-11-02", "reason": "offensive_weapon"},
         "Permanently excluded from Example Primary School (URN 999001) from 2 Nov 2026: "
         "Use or threat of use of an offensive weapon or prohibited item"),
    ],
)
def test_an_exclusion_names_its_type_length_and_dfe_reason(details: dict[str, Any], summary: str) -> None:
    inbound = only_record(parse(body(record("exclusion", details))))

    assert (inbound.kind, inbound.category, inbound.summary) == ("exclusion", "education.exclusion", summary)
    assert inbound.occurred_at == datetime.combine(date.fromisoformat(details["start_date"]), datetime.min.time(), UTC)
    assert inbound.payload["details"]["type"] == details["type"]


@pytest.mark.parametrize(
    ("details", "location"),
    [
        ({"type": "suspension", "start_date": "2026-10-14", "reason": "theft"}, "records[0].details.sessions"),
        ({"type": "permanent_exclusion", "start_date": "2026-10-14", "sessions": 2, "reason": "theft"},
         "records[0].details.sessions"),
        ({"type": "suspension", "start_date": "2026-10-14", "sessions": 2, "reason": "fighting"},
         "records[0].details.reason"),
    ],
)
def test_an_exclusion_needs_sessions_for_a_suspension_only_and_a_dfe_reason(
    details: dict[str, Any], location: str
) -> None:
    issue = issue_at(parse(body(record("exclusion", details))).entries[0], location)

    assert issue.code == "value"


def test_a_safeguarding_concern_keeps_who_logged_it_and_when_in_utc() -> None:
    details = {
        "logged_at": "2026-10-20T14:35:00+01:00",
        "category": "neglect",
        "summary": "Arrived hungry on three mornings.\nUniform unwashed.",
        "action_taken": "Breakfast club place offered.",
    }
    concern = record("safeguarding_concern", details, recorded_by="Designated safeguarding lead", detrimental=True)

    inbound = only_record(parse(body(concern)))

    assert (inbound.kind, inbound.category) == ("safeguarding_concern", "education.safeguarding_concern")
    assert inbound.occurred_at == datetime(2026, 10, 20, 13, 35, tzinfo=UTC)
    assert inbound.contact == "Designated safeguarding lead"
    assert inbound.detrimental is True
    assert inbound.summary == (
        "Safeguarding concern (neglect) logged 20 Oct 2026 at Example Primary School (URN 999001): "
        "Arrived hungry on three mornings. Uniform unwashed. Action taken: Breakfast club place offered."
    )


def test_a_summary_is_capped_at_a_thousand_characters() -> None:
    details = {"logged_at": "2026-10-20T14:35:00Z", "category": "other", "summary": "word " * 700,
               "action_taken": "none"}

    summary = only_record(parse(body(record("safeguarding_concern", details)))).summary

    assert len(summary) == 1000 and summary.endswith("…")


def test_a_concern_needs_a_utc_offset_and_must_not_be_in_the_future() -> None:
    details = {"category": "neglect", "summary": "s", "action_taken": "a"}
    naive = record("safeguarding_concern", {**details, "logged_at": "2026-10-20T14:35:00"})
    future = record("safeguarding_concern", {**details, "logged_at": "2026-11-25T09:00:00Z"})
    before_utc_begins = record("safeguarding_concern", {**details, "logged_at": "0001-01-01T00:00:00+14:00"})

    first, second, third = parse(body(naive, future, before_utc_begins)).entries

    assert issue_at(first, "records[0].details.logged_at").code == "value"
    assert "future" in issue_at(second, "records[1].details.logged_at").message
    assert "years 1 and 9999" in issue_at(third, "records[2].details.logged_at").message


@pytest.mark.parametrize(
    ("notice_type", "status", "head"),
    [
        ("elective_home_education", "elective_home_education", "Elective home education"),
        ("child_missing_education", "missing_education", "Child missing education"),
    ],
)
def test_an_education_notice_places_the_child_out_of_school(notice_type: str, status: str, head: str) -> None:
    notice = record("education_notice", {"type": notice_type, "effective_date": "2026-10-01",
                                         "previous_school_urn": "999003"})
    del notice["school"]  # a notice may come from the local authority, not a school

    inbound = only_record(parse(body(notice)))

    assert (inbound.kind, inbound.category) == ("education_notice", "education.ehe_cme")
    assert inbound.school is not None
    assert (inbound.school.urn, inbound.school.status, inbound.school.since) == (None, status, date(2026, 10, 1))
    assert inbound.occurred_at == datetime(2026, 10, 1, tzinfo=UTC)
    assert inbound.summary == f"{head} from 1 Oct 2026 (previously at school URN 999003)"


def test_school_is_required_for_every_kind_but_a_notice() -> None:
    without_school = attendance()
    del without_school["school"]

    issue = issue_at(parse(body(without_school)).entries[0], "records[0].school")

    assert issue.code == "required"


def test_retracted_detrimental_and_recorded_by_reach_the_record() -> None:
    retracted = enrolment()
    retracted.update(retracted=True, detrimental=True, recorded_by="Office manager")

    inbound = only_record(parse(body(retracted)))

    assert (inbound.entered_in_error, inbound.detrimental, inbound.contact) == (True, True, "Office manager")


# --- Identity claims -------------------------------------------------------------------------------


def test_records_about_the_same_pupil_share_one_claim() -> None:
    other = enrolment()
    other.update(record_id="enrolment/2", pupil=pupil(upn=OTHER_UPN, nhs_number=None))
    submission = parse(body(enrolment(), attendance(), other))

    kinds = [type(entry).__name__ for entry in submission.entries]
    assert kinds == ["ClaimEntry", "RecordEntry", "RecordEntry", "ClaimEntry", "RecordEntry"]
    assert [entry.index for entry in submission.entries] == [0, 1, 2, 3, 4]
    assert [(r.location, r.record_id, r.entry_indexes, r.record_entry) for r in submission.records] == [
        ("records[0]", "enrolment/1", (0, 1), 1),
        ("records[1]", "attendance/1", (0, 2), 2),
        ("records[2]", "enrolment/2", (3, 4), 4),
    ]
    assert record_of(submission.entries[2]).subject_ref == claim_of(submission.entries[0]).source_record_id


def test_a_changed_pupil_is_a_new_claim_version_and_a_given_version_is_kept() -> None:
    moved = attendance()
    moved["pupil"] = pupil(address={"postcode": "ZZ99 4QW"})
    versioned = attendance()
    versioned["pupil"] = pupil(version="7")

    first, second, third = (claim_of(parse(body(r)).entries[0]) for r in (enrolment(), moved, versioned))
    again = claim_of(parse(body(enrolment())).entries[0])

    assert first.source_version == again.source_version
    assert second.source_version != first.source_version
    assert third.source_version == "7"
    assert len(parse(body(enrolment(), moved)).entries) == 4  # two claims: two versions of one pupil


def test_identifiers_and_postcode_are_normalised() -> None:
    spaced = enrolment()
    spaced["pupil"] = pupil(upn="d801 9001 2600 1", nhs_number="999 000 0018", address={"postcode": " zz993vz "})

    claim = claim_of(parse(body(spaced)).entries[0])

    assert (claim.upn, claim.nhs_number, claim.postcode) == (UPN, NHS, "ZZ99 3VZ")
    assert claim.source_record_id == f"pupil/{UPN}"


# --- Bad input: one record refused, with where and what, never the value -------------------------


def test_an_unknown_field_is_refused_not_ignored() -> None:
    bad = enrolment()
    bad["pupil"]["middle_name"] = "Secretname"
    bad["extra"] = 1

    entry = rejected(parse(body(bad)).entries[0])

    assert entry.location == "records[0]"
    assert issue_at(entry, "records[0].pupil.middle_name").code == "structure"
    assert issue_at(entry, "records[0].extra").code == "structure"
    assert_not_echoed("Secretname", *entry.issues)


def test_an_unknown_field_whose_name_is_not_name_like_is_not_repeated() -> None:
    bad = enrolment()
    bad["pupil"]["Alexandra Testpupil"] = True

    entry = rejected(parse(body(bad)).entries[0])

    assert issue_at(entry, "records[0].pupil").code == "structure"
    assert_not_echoed("Alexandra", *entry.issues)


def test_a_upn_with_a_wrong_check_letter_is_refused_without_echoing_it() -> None:
    bad = enrolment()
    bad["pupil"] = pupil(upn=WRONG_CHECK_UPN)

    issue = issue_at(parse(body(bad)).entries[0], "records[0].pupil.upn")

    assert issue.code == "value" and "check letter" in issue.message
    assert_not_echoed(WRONG_CHECK_UPN, issue)
    assert_not_echoed(WRONG_CHECK_UPN[1:], issue)


@pytest.mark.parametrize(
    ("value", "fragment"),
    [("D80190012600", "13 characters"), ("D8019001260X1", "check letter, 11 digits"),
     ("D999900126001", "local authority")],
)
def test_other_upn_faults_say_what_is_wrong(value: str, fragment: str) -> None:
    bad = enrolment()
    bad["pupil"] = pupil(upn=value)

    issue = issue_at(parse(body(bad)).entries[0], "records[0].pupil.upn")

    assert fragment in issue.message
    assert_not_echoed(value, issue)


def test_a_missing_upn_is_required() -> None:
    bad = enrolment()
    del bad["pupil"]["upn"]

    assert issue_at(parse(body(bad)).entries[0], "records[0].pupil.upn").code == "required"


def test_an_invalid_nhs_number_is_refused() -> None:
    bad = enrolment()
    bad["pupil"] = pupil(nhs_number="9990000019")

    issue = issue_at(parse(body(bad)).entries[0], "records[0].pupil.nhs_number")

    assert "Modulus 11" in issue.message
    assert_not_echoed("9990000019", issue)


def test_a_birth_date_in_the_future_is_refused() -> None:
    bad = enrolment()
    bad["pupil"] = pupil(birth_date="2026-11-26")

    issue = issue_at(parse(body(bad)).entries[0], "records[0].pupil.birth_date")

    assert issue.message == "the date must not be in the future"
    assert_not_echoed("2026-11-26", issue)


def test_todays_birth_date_is_accepted() -> None:
    newborn = enrolment()
    newborn["pupil"] = pupil(birth_date="2026-11-24")

    assert isinstance(parse(body(newborn)).entries[0], ClaimEntry)


def test_attendance_above_possible_is_refused() -> None:
    entry = parse(body(attendance(attended_sessions=141, absences={}))).entries[0]

    issue = issue_at(entry, "records[0].details.attended_sessions")

    assert "possible_sessions" in issue.message
    assert_not_echoed("141", issue)


def test_absences_adding_up_to_more_than_were_missed_are_refused() -> None:
    entry = parse(body(attendance(absences={"N": 20, "I": 9}))).entries[0]

    issue = issue_at(entry, "records[0].details.absences")

    assert "possible_sessions - attended_sessions" in issue.message


def test_an_unknown_absence_code_is_refused_at_the_code() -> None:
    entry = parse(body(attendance(absences={"Z": 1, "I": 2}))).entries[0]

    issue = issue_at(entry, "records[0].details.absences.Z")

    assert issue.code == "value" and "DfE attendance code" in issue.message


def test_an_absence_key_that_is_not_code_shaped_is_not_repeated() -> None:
    entry = parse(body(attendance(absences={"Alexandra Testpupil": 1}))).entries[0]

    issue = issue_at(entry, "records[0].details.absences")

    assert_not_echoed("Alexandra", issue)


def test_details_of_another_kind_are_refused() -> None:
    wrong = attendance()
    wrong["details"] = enrolment()["details"]

    entry = rejected(parse(body(wrong)).entries[0])

    assert issue_at(entry, "records[0].details.year_group").code == "structure"
    assert issue_at(entry, "records[0].details.period_start").code == "required"


@pytest.mark.parametrize(("kind", "code"), [(None, "required"), ("detention", "value")])
def test_an_unknown_or_missing_kind_is_refused_with_the_other_fields_still_checked(kind: str | None, code: str) -> None:
    bad = enrolment()
    bad["kind"] = kind
    if kind is None:
        del bad["kind"]
    bad["pupil"] = pupil(upn=WRONG_CHECK_UPN)

    entry = rejected(parse(body(bad)).entries[0])

    assert issue_at(entry, "records[0].kind").code == code
    assert "enrolment, attendance" in issue_at(entry, "records[0].kind").message
    assert issue_at(entry, "records[0].pupil.upn").code == "value"


def test_a_record_that_is_not_an_object_is_refused_alone() -> None:
    submission = parse(body("not a record", enrolment()))

    assert rejected(submission.entries[0]).issues[0].location == "records[0]"
    assert isinstance(submission.entries[2], RecordEntry)


def test_a_bad_record_is_one_rejected_entry_with_all_its_issues_and_good_ones_are_kept() -> None:
    bad = attendance(attended_sessions=200, period_end="2026-12-31")
    bad["pupil"] = pupil(upn=WRONG_CHECK_UPN, birth_date="2030-01-01")
    bad["record_id"] = "attendance/2"

    submission = parse(body(enrolment(), bad, attendance()))

    kinds = [type(entry).__name__ for entry in submission.entries]
    assert kinds == ["ClaimEntry", "RecordEntry", "RejectedEntry", "RecordEntry"]
    entry = rejected(submission.entries[2])
    assert entry.location == "records[1]"
    assert {issue.location for issue in entry.issues} == {
        "records[1].pupil.upn", "records[1].pupil.birth_date",
        "records[1].details.period_end", "records[1].details.attended_sessions",
    }
    assert submission.records[1].record_id == "attendance/2"
    assert (submission.records[1].entry_indexes, submission.records[1].record_entry) == ((2,), None)


def test_a_record_id_outside_the_pattern_is_refused_and_not_repeated_in_the_answer() -> None:
    bad = enrolment()
    bad["record_id"] = "Alex Testpupil's record"

    submission = parse(body(bad))

    assert issue_at(submission.entries[0], "records[0].record_id").code == "value"
    assert submission.records[0].record_id is None


# --- The envelope ----------------------------------------------------------------------------------


def test_atomic_comes_from_the_body() -> None:
    assert parse(body(enrolment(), atomic=True)).atomic is True
    assert parse(json.dumps({"schema": "education/v1", "records": [enrolment()]}).encode()).atomic is False


@pytest.mark.parametrize(
    ("content", "location"),
    [
        (body(enrolment(), schema="education/v2"), "schema"),
        (json.dumps({"records": [enrolment()]}).encode(), "schema"),
        (body(enrolment(), atomic="yes"), "atomic"),
        (body(enrolment(), school_name="Example"), "school_name"),
        (body(enrolment(), **{"Alex Testpupil": 1}), ""),
        (body(), "records"),
        (b"[]", ""),
        (b"{not json", ""),
    ],
)
def test_a_payload_that_cannot_be_read_is_refused_whole(content: bytes, location: str) -> None:
    with pytest.raises(AdapterError) as refused:
        parse(content)

    assert location in [issue.location for issue in refused.value.issues]


def test_too_many_records_is_too_many_entries() -> None:
    with pytest.raises(TooManyEntries) as refused:
        parse(body(enrolment(), enrolment(), enrolment()), max_entries=2)

    assert refused.value.issues[0].location == "records"
    assert "at most 2" in refused.value.issues[0].message


def test_an_unsupported_media_type_is_refused() -> None:
    with pytest.raises(AdapterError) as refused:
        parse(body(enrolment()), "application/xml")

    assert refused.value.issues[0].code == "not-supported"


def test_media_type_parameters_are_ignored() -> None:
    assert len(parse(body(enrolment()), "application/json; charset=utf-8").entries) == 2
    assert len(parse(EXAMPLE_CSV.encode(), "text/csv; charset=utf-8; header=present").entries) == 6


# --- CSV ---------------------------------------------------------------------------------------------


def test_example_csv_parses_into_attendance_records() -> None:
    submission = parse_csv(EXAMPLE_CSV)

    assert (submission.label, submission.schema, submission.atomic) == ("education/v1 csv", "education/v1", False)
    assert [r.location for r in submission.records] == ["row 2", "row 3", "row 4"]
    assert all(r.record_entry is not None for r in submission.records)
    records = [e.record for e in submission.entries if isinstance(e, RecordEntry)]
    assert {r.kind for r in records} == {"attendance"}
    assert records[2].summary.endswith("severe absence")
    assert claim_of(submission.entries[0]).nhs_number == "9990000018"
    assert claim_of(submission.entries[4]).postcode is None  # an empty cell is a value not given


def test_a_csv_row_is_mapped_exactly_as_its_json_twin() -> None:
    twin = attendance(absences={"I": 12, "N": 10}, attended_sessions=112)
    twin["record_id"] = "att/1"
    twin["pupil"] = pupil(nhs_number=None, address={"postcode": "ZZ99 3VZ"})
    twin["school"] = {"urn": "999001"}

    from_csv = parse_csv(f"{CSV_HEADER}\n{csv_row()}\n")
    from_json = parse(body(twin))

    assert claim_of(from_csv.entries[0]) == claim_of(from_json.entries[0])
    assert record_of(from_csv.entries[1]) == record_of(from_json.entries[1])
    assert from_csv.entries[1].location == "row 2"


def test_a_bom_crlf_and_trailing_blank_lines_are_handled() -> None:
    text = "\ufeff" + CSV_HEADER + "\r\n" + csv_row() + "\r\n" + csv_row("att/2") + "\r\n\r\n,,,\r\n"

    submission = parse_csv(text)

    assert [r.record_id for r in submission.records] == ["att/1", "att/2"]
    assert len(submission.entries) == 3  # the same pupil version: one claim


def test_a_bad_row_among_good_ones_is_refused_alone_naming_row_and_column() -> None:
    text = "\n".join([CSV_HEADER, csv_row("att/1"), csv_row("att/2", birth_date="2030-02-30"),
                      csv_row("att/3", upn=WRONG_CHECK_UPN, absence_N="90"), csv_row("att/4")])

    submission = parse_csv(text)

    kinds = [type(entry).__name__ for entry in submission.entries]
    assert kinds == ["ClaimEntry", "RecordEntry", "RejectedEntry", "RejectedEntry", "RecordEntry"]
    second, third = rejected(submission.entries[2]), rejected(submission.entries[3])
    assert second.location == "row 3"
    assert [i.location for i in second.issues] == ["row 3, column birth_date"]
    assert {i.location for i in third.issues} == {"row 4, column upn", "row 4, columns absence_*"}
    assert_not_echoed("2030-02-30", *second.issues)
    assert_not_echoed(WRONG_CHECK_UPN, *third.issues)
    assert [r.record_id for r in submission.records] == ["att/1", "att/2", "att/3", "att/4"]


def test_an_empty_required_cell_is_required_and_a_short_row_is_refused() -> None:
    short = ",".join(csv_row("att/2").split(",")[:5])
    text = "\n".join([CSV_HEADER, csv_row(family_name=""), short])

    first, second = parse_csv(text).entries

    assert issue_at(first, "row 2, column family_name").code == "required"
    assert rejected(second).issues[0].location == "row 3"
    assert "5 cells" in rejected(second).issues[0].message


def test_a_csv_missing_a_column_is_refused_whole() -> None:
    header = CSV_HEADER.replace("birth_date,", "")
    row = csv_row().replace(",2018-03-14", "")

    with pytest.raises(AdapterError) as refused:
        parse_csv(f"{header}\n{row}\n")

    (issue,) = refused.value.issues
    assert (issue.location, issue.code) == ("row 1", "required")
    assert "birth_date" in issue.message


def test_a_csv_with_an_unknown_or_duplicated_column_is_refused_whole() -> None:
    with pytest.raises(AdapterError) as refused:
        parse_csv(f"{CSV_HEADER},absence_Z,upn\n{csv_row()},1,{UPN}\n")

    locations = {issue.location: issue for issue in refused.value.issues}
    assert set(locations) == {"row 1, column absence_Z", "row 1, column upn"}
    assert "unknown column" in locations["row 1, column absence_Z"].message
    assert "more than once" in locations["row 1, column upn"].message


def test_a_csv_without_a_header_is_refused_without_repeating_its_first_row() -> None:
    with pytest.raises(AdapterError) as refused:
        parse_csv(csv_row() + "\n")

    assert refused.value.issues[0].location == "row 1"
    assert_not_echoed("Testpupil", *refused.value.issues)


@pytest.mark.parametrize(
    ("content", "location", "fragment"),
    [
        (b"", "row 1", "needs a header row"),
        (CSV_HEADER.encode() + b"\r\n\r\n", "row 2", "no data rows"),
        (b"\xff\xfe not utf-8", "", "UTF-8"),
        (f'{CSV_HEADER}\n{csv_row()}\n"att/2,1'.encode(), "row 3", "not valid CSV"),
    ],
)
def test_an_unreadable_csv_is_refused_whole(content: bytes, location: str, fragment: str) -> None:
    with pytest.raises(AdapterError) as refused:
        parse(content, "text/csv")

    (issue,) = refused.value.issues
    assert issue.location == location and fragment in issue.message


def test_too_many_csv_rows_is_too_many_entries() -> None:
    text = "\n".join([CSV_HEADER, csv_row("a1"), csv_row("a2"), "", csv_row("a3")])

    assert len(parse_csv(text, max_entries=3).records) == 3
    with pytest.raises(TooManyEntries) as refused:
        parse_csv(text, max_entries=2)

    assert refused.value.issues[0].location == "row 5"


def test_the_csv_columns_are_documented() -> None:
    assert list(CSV_COLUMNS)[:3] == ["record_id", "version", "upn"]
    assert {"nhs_number", "absence_I", "absence_N", "absence_C1"} <= set(CSV_OPTIONAL_COLUMNS)
    assert len([c for c in CSV_OPTIONAL_COLUMNS if c.startswith("absence_")]) == len(ABSENCE_CODES)


# --- Vocabularies, schema, rendering ---------------------------------------------------------------


def test_the_absence_codes_are_those_in_force_since_august_2024() -> None:
    by_category: dict[str, set[str]] = {}
    for code, meaning in ABSENCE_CODES.items():
        by_category.setdefault(meaning.counts_as, set()).add(code)
        assert meaning.meaning

    assert by_category == {
        "authorised": {"C", "C1", "C2", "E", "I", "J1", "M", "Q", "R", "S", "T", "X",
                       "Y1", "Y2", "Y3", "Y4", "Y5", "Y6", "Y7"},
        "unauthorised": {"G", "N", "O", "U"},
        "approved_activity": {"K", "V", "P", "W", "B", "D"},
    }
    assert len(EXCLUSION_REASONS) == 17


def test_describe_is_a_json_schema_whose_example_parses_with_no_rejections() -> None:
    adapter = EducationAdapter(clock=lambda: NOW)

    schema = adapter.describe(token_endpoint=TOKEN_ENDPOINT)
    (example,) = schema["examples"]
    submission = adapter.parse(json.dumps(example).encode(), "application/json", max_entries=MAX_ENTRIES)

    assert schema["$id"] == EDUCATION_SCHEMA_ID == "urn:macpt-gateway:schema:education:v1"
    assert schema["title"] and TOKEN_ENDPOINT in schema["description"]
    assert "absence_<CODE>" in schema["description"] and "period_start" in schema["description"]
    assert not any(isinstance(entry, RejectedEntry) for entry in submission.entries)
    records = [entry.record for entry in submission.entries if isinstance(entry, RecordEntry)]
    assert [r.kind for r in records] == [
        "enrolment", "attendance", "exclusion", "safeguarding_concern", "education_notice"
    ]
    assert EducationSubmission.model_validate(example, context={}).records[0].kind == "enrolment"
    assert set(schema["properties"]) == {"schema", "atomic", "records"}


def test_the_published_schema_accepts_its_example_and_refuses_what_the_adapter_refuses() -> None:
    jsonschema_rs = pytest.importorskip("jsonschema_rs")  # installed with schemathesis (dev)
    validator = jsonschema_rs.validator_for(EducationAdapter().describe(token_endpoint=TOKEN_ENDPOINT))
    unknown_code = copy.deepcopy(EXAMPLE_SUBMISSION)
    unknown_code["records"][1]["details"]["absences"]["Z"] = 1
    unknown_field = copy.deepcopy(EXAMPLE_SUBMISSION)
    unknown_field["records"][0]["pupil"]["middle_name"] = "Extra"

    assert validator.is_valid(EXAMPLE_SUBMISSION)
    assert not validator.is_valid(unknown_code)
    assert not validator.is_valid(unknown_field)


def test_the_examples_use_only_synthetic_identifiers() -> None:
    pupils = [r["pupil"] for r in EXAMPLE_SUBMISSION["records"]]

    assert all(upn_number.is_valid(p["upn"]) for p in pupils)
    assert all(p["address"]["postcode"].startswith("ZZ99") for p in pupils)
    assert all(p.get("nhs_number", "999").startswith("999") for p in pupils)
    assert all(r.get("school", {"urn": "999"})["urn"].startswith("999") for r in EXAMPLE_SUBMISSION["records"])


def test_the_example_is_not_changed_by_describe() -> None:
    before = copy.deepcopy(EXAMPLE_SUBMISSION)

    EducationAdapter().describe(token_endpoint=TOKEN_ENDPOINT)["examples"][0]["records"].clear()

    assert EXAMPLE_SUBMISSION == before


def test_the_adapter_renders_per_record_outcomes_and_problems() -> None:
    adapter: Adapter = EducationAdapter(clock=lambda: NOW)
    bad = enrolment()
    bad["pupil"] = pupil(upn=WRONG_CHECK_UPN)
    submission = adapter.parse(body(enrolment(), bad), "application/json", max_entries=MAX_ENTRIES)
    outcomes = [
        EntryOutcome(e.index, EntryStatus.REJECTED if isinstance(e, RejectedEntry) else EntryStatus.CREATED,
                     e.issues if isinstance(e, RejectedEntry) else ())
        for e in submission.entries
    ]

    answer = adapter.render(submission, outcomes)
    problem = adapter.render_error(422, [Issue("error", "value", "schema", "must be 'education/v1'")])

    assert adapter.name == "education" and adapter.media_types == {"application/json", "text/csv"}
    assert answer.body["summary"] == {"created": 1, "unchanged": 0, "rejected": 1}
    assert [o["status"] for o in answer.body["outcomes"]] == ["created", "rejected"]
    assert answer.body["outcomes"][1]["errors"][0]["location"] == "records[1].pupil.upn"
    assert (problem.status_code, problem.media_type) == (422, "application/problem+json")


# --- Properties --------------------------------------------------------------------------------------

_ABSENCE_ONLY = sorted(code for code, meaning in ABSENCE_CODES.items() if meaning.counts_as != "approved_activity")


@st.composite
def consistent_attendance(draw: st.DrawFn) -> tuple[int, int, dict[str, int]]:
    possible = draw(st.integers(min_value=1, max_value=400))
    attended = draw(st.integers(min_value=0, max_value=possible))
    codes = draw(st.lists(st.sampled_from(_ABSENCE_ONLY), unique=True, max_size=5))
    room = possible - attended
    absences: dict[str, int] = {}
    for code in codes:
        absences[code] = draw(st.integers(min_value=0, max_value=room))
        room -= absences[code]
    return possible, attended, absences


@settings(max_examples=150, deadline=None)
@given(consistent_attendance())
def test_any_consistent_attendance_is_accepted_with_the_right_percentage(
    figures: tuple[int, int, dict[str, int]],
) -> None:
    possible, attended, absences = figures
    details: Mapping[str, Any] = {"possible_sessions": possible, "attended_sessions": attended, "absences": absences}

    inbound = only_record(parse(body(attendance(**details))))

    percent = (Decimal(attended) * 100 / Decimal(possible)).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)
    assert f": {attended} of {possible} sessions ({percent}%)" in inbound.summary
    missed = possible - attended
    assert inbound.summary.endswith("severe absence") == (missed * 2 >= possible)
    assert inbound.summary.endswith("persistent absence") == (possible > missed * 2 and missed * 10 >= possible)
    unauthorised = sum(n for code, n in absences.items() if ABSENCE_CODES[code].counts_as == "unauthorised")
    assert f"; unauthorised {unauthorised}" in inbound.summary


@settings(max_examples=100, deadline=None)
@given(consistent_attendance(), st.integers(min_value=1, max_value=50))
def test_absences_beyond_what_was_missed_are_always_refused(
    figures: tuple[int, int, dict[str, int]], excess: int
) -> None:
    possible, attended, _absences = figures
    details = {"possible_sessions": possible, "attended_sessions": attended,
               "absences": {"O": possible - attended + excess}}

    entry = parse(body(attendance(**details))).entries[0]

    assert issue_at(entry, "records[0].details.absences").code == "value"


_JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=8,
)


@settings(max_examples=150, deadline=None)
@given(st.integers(min_value=0, max_value=4), st.sampled_from(["record_id", "version", "kind", "pupil", "school",
                                                               "details", "retracted", "recorded_by"]), _JSON_VALUES)
def test_any_value_in_any_field_is_answered_not_raised(position: int, field: str, value: Any) -> None:
    pushed = copy.deepcopy(EXAMPLE_SUBMISSION)
    pushed["records"][position][field] = value

    submission = parse(json.dumps(pushed).encode())

    assert len(submission.records) == 5
    assert [entry.index for entry in submission.entries] == list(range(len(submission.entries)))


@settings(max_examples=150, deadline=None)
@given(st.lists(st.lists(st.text(max_size=12), min_size=1, max_size=16), max_size=4))
def test_any_csv_rows_are_answered_or_refused_as_a_whole(rows: list[list[str]]) -> None:
    lines = [CSV_HEADER] + [",".join(json.dumps(cell) for cell in row) for row in rows]

    try:
        submission = parse_csv("\n".join(lines))
    except AdapterError as refused:
        assert refused.issues
    else:
        assert all(r.location.startswith("row ") for r in submission.records)

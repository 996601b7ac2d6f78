"""Scored matching (pure): the variations of real records link, twins, siblings and namesakes stay apart."""

from __future__ import annotations

import dataclasses
from datetime import date

import pytest

from gateway.identity.scoring import (
    DEFAULT_PARAMETERS,
    Decision,
    Demographics,
    Level,
    compare_birth_date,
    compare_family,
    compare_given,
    compare_location,
    compare_sex,
    normalise_address,
    normalise_name,
    score,
)

THOMAS = Demographics("Thomas", "Smith", date(2015, 3, 7), "M", "AB1 2CD", "12 High Street")


def _levels(a: Demographics, b: Demographics) -> dict[str, Level]:
    return {part.field: part.level for part in score(a, b).fields}


@pytest.mark.parametrize(
    ("other", "field", "level"),
    [
        (THOMAS, "given", Level.EXACT),
        (dataclasses.replace(THOMAS, given="Tom"), "given", Level.VARIANT),
        (dataclasses.replace(THOMAS, given="THOMAS"), "given", Level.EXACT),
        (dataclasses.replace(THOMAS, given="Thomsa"), "given", Level.CLOSE),
        (dataclasses.replace(THOMAS, family="Smith-Jones"), "family", Level.VARIANT),
        (dataclasses.replace(THOMAS, family="Smyth"), "family", Level.CLOSE),
        (dataclasses.replace(THOMAS, birth_date=date(2015, 7, 3)), "birth_date", Level.VARIANT),
        (dataclasses.replace(THOMAS, birth_date=date(2015, 3, 8)), "birth_date", Level.CLOSE),
        (dataclasses.replace(THOMAS, birth_date=date(2016, 3, 7)), "birth_date", Level.CLOSE),
        (dataclasses.replace(THOMAS, postcode="ab12cd", address="12, High St."), "location", Level.EXACT),
    ],
    ids=[
        "identical",
        "nickname",
        "case",
        "one mistyped character",
        "hyphenated surname",
        "near spelling",
        "day and month swapped",
        "one day out",
        "one digit of the year",
        "spacing and punctuation",
    ],
)
def test_each_variation_of_the_same_child_links(other: Demographics, field: str, level: Level) -> None:
    result = score(THOMAS, other)

    assert _levels(THOMAS, other)[field] is level
    assert result.decision is Decision.LINK, result
    assert result.guard is None


@pytest.mark.parametrize(
    ("first", "second"),
    [("Mohammed", "Muhammad"), ("Mohamed", "Mohammad"), ("Aisha", "Ayesha"), ("Katherine", "Kate"), ("Kate", "Katie")],
)
def test_transliterations_and_nicknames_are_variants_of_one_name(first: str, second: str) -> None:
    assert compare_given(first, second) == (Level.VARIANT, "known variants of one given name")
    child = dataclasses.replace(THOMAS, given=first, family="Khan")
    assert score(child, dataclasses.replace(child, given=second)).decision is Decision.LINK


def test_a_child_who_moved_house_still_links_and_with_a_nickname_too_goes_to_review() -> None:
    moved = dataclasses.replace(THOMAS, postcode="ZZ9 9ZZ", address="3 Low Road")

    assert _levels(THOMAS, moved)["location"] is Level.DIFFERENT
    assert score(THOMAS, moved).decision is Decision.LINK
    # Two pieces of weaker evidence together: a person decides.
    assert score(THOMAS, dataclasses.replace(moved, given="Tom")).decision is Decision.REVIEW


def test_a_changed_surname_at_the_same_address_goes_to_review() -> None:
    renamed = dataclasses.replace(THOMAS, family="Brown")

    result = score(THOMAS, renamed)

    assert _levels(THOMAS, renamed)["family"] is Level.DIFFERENT
    assert result.decision is Decision.REVIEW


@pytest.mark.parametrize(
    "twin",
    [
        dataclasses.replace(THOMAS, given="Oliver"),
        dataclasses.replace(THOMAS, given="Olivia", sex="F"),
        dataclasses.replace(THOMAS, given="Oliver", family="Smith-Jones"),
    ],
    ids=["brother", "sister", "brother, hyphenated surname"],
)
def test_twins_are_kept_apart_whatever_else_they_share(twin: Demographics) -> None:
    result = score(THOMAS, twin)

    assert result.decision is Decision.NEW
    assert result.guard == "given names differ where birth date and surname agree: twins and siblings are kept apart"
    assert result.total > DEFAULT_PARAMETERS.lower  # the guard, not the score, keeps them apart


def test_a_sibling_at_the_same_address_is_another_child() -> None:
    sibling = dataclasses.replace(THOMAS, given="Oliver", birth_date=date(2013, 5, 1))

    result = score(THOMAS, sibling)

    assert result.decision is Decision.NEW and result.guard is None
    assert result.total < DEFAULT_PARAMETERS.lower


@pytest.mark.parametrize(
    "birth_date", [date(2015, 3, 8), date(2014, 11, 20)], ids=["a day apart", "months apart"]
)
def test_namesakes_in_another_family_are_other_children(birth_date: date) -> None:
    namesake = dataclasses.replace(THOMAS, birth_date=birth_date, postcode="CD3 4EF", address="9 Park Lane")

    assert score(THOMAS, namesake).decision is Decision.NEW


def test_what_is_unknown_weighs_nothing() -> None:
    sparse = Demographics("Thomas", "Smith", date(2015, 3, 7))

    result = score(THOMAS, sparse)

    assert {part.field: part.weight for part in result.fields if part.level is Level.MISSING} == {
        "sex": 0.0,
        "location": 0.0,
    }
    assert result.total == pytest.approx(sum(part.weight for part in result.fields))


def test_every_field_reports_its_reason_for_a_reviewer() -> None:
    result = score(THOMAS, dataclasses.replace(THOMAS, given="Tom", birth_date=date(2015, 7, 3)))

    reasons = {part.field: part.reason for part in result.fields}
    assert reasons == {
        "given": "known variants of one given name",
        "family": "the same surname",
        "birth_date": "day and month swapped",
        "sex": "the same sex",
        "location": "the same address",
    }
    assert all(part.weight > 0 for part in result.fields)


def test_addresses_are_compared_without_punctuation_and_with_abbreviations_spelled_out() -> None:
    assert normalise_address("Flat 2, 12 High St.") == "flat 2 12 high street"
    assert normalise_address("  ") is None
    assert normalise_address(None) is None


@pytest.mark.parametrize(
    ("name", "normal"),
    [("Zoë", "zoe"), ("O'Brien", "obrien"), ("  Mary   Ann ", "mary ann"), ("Smith - Jones", "smith-jones"), ("", None)],
)
def test_names_are_compared_without_case_accents_or_punctuation(name: str, normal: str | None) -> None:
    assert normalise_name(name) == normal


def test_an_initial_is_weak_agreement_and_different_names_disagree() -> None:
    assert compare_given("T", "Thomas")[0] is Level.PARTIAL
    assert compare_given("Thomas", "T.")[0] is Level.PARTIAL
    assert compare_given("Thomas", "Oliver")[0] is Level.DIFFERENT
    assert compare_given(None, "Oliver")[0] is Level.MISSING


def test_surnames_dates_and_sex_compare_at_each_level() -> None:
    assert compare_family("Smith", "Brown")[0] is Level.DIFFERENT
    assert compare_family("Smith", None)[0] is Level.MISSING
    assert compare_birth_date(date(2015, 3, 7), date(2011, 9, 1))[0] is Level.DIFFERENT
    assert compare_birth_date(None, date(2011, 9, 1))[0] is Level.MISSING
    assert compare_sex("female", "F")[0] is Level.EXACT
    assert compare_sex("M", "F")[0] is Level.DIFFERENT
    assert compare_sex("", "F")[0] is Level.MISSING


@pytest.mark.parametrize(
    ("postcode", "address", "level"),
    [
        ("AB1 2CD", "4 Other Road", Level.VARIANT),
        ("AB1 2XY", "4 Other Road", Level.CLOSE),
        ("AB1 9XY", "4 Other Road", Level.PARTIAL),
        ("ZZ99 3WZ", "4 Other Road", Level.DIFFERENT),
        ("not a postcode", "12 High Street", Level.VARIANT),
        (None, "4 Other Road", Level.MISSING),
    ],
    ids=["same postcode", "same sector", "same district", "elsewhere", "bad postcode, same street", "no postcode"],
)
def test_location_compares_household_postcode_sector_and_district(
    postcode: str | None, address: str, level: Level
) -> None:
    assert compare_location(THOMAS.postcode, THOMAS.address, postcode, address)[0] is level


def test_a_shared_household_counts_once_not_twice() -> None:
    """Postcode and address are one field: siblings share both, and that must not add up twice."""
    sibling = dataclasses.replace(THOMAS, given="Oliver", birth_date=date(2013, 5, 1))
    location = [part for part in score(THOMAS, sibling).fields if part.field == "location"]

    assert len(location) == 1
    assert location[0].weight == pytest.approx(DEFAULT_PARAMETERS.location[Level.EXACT])

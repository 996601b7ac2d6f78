"""What counts as a match for a search, where it looks, and merges followed (gateway.identity.matching)."""

from __future__ import annotations

import uuid
from datetime import date

import pytest
from sqlalchemy.orm import Session

from gateway.identity.blocking import block_keys
from gateway.identity.matching import SearchField, agreeing_fields, search_block_keys
from gateway.identity.repository import get_current_children
from gateway.identity.scoring import Demographics
from gateway.models import Child

STORED = Demographics(given="Maisie Jo", family="Okonkwo-Reid", birth_date=date(2016, 7, 2), postcode="ZZ99 3VZ")


@pytest.mark.parametrize(
    ("searched", "fields"),
    [
        (Demographics(family="okonkwo-reid", birth_date=date(2016, 7, 2)), ("family_name", "birth_date")),
        (Demographics(family="Reid", postcode="ZZ99 3VZ"), ("family_name", "postcode")),  # a part of the surname
        (Demographics(family="Okonkwo-Reed", postcode="ZZ993VZ"), ("family_name", "postcode")),  # one slip
        (Demographics(given="Masie", birth_date=date(2016, 7, 2), postcode="ZZ99 3VZ"), ("given_name", "birth_date", "postcode")),
        (Demographics(family="Okonkwo-Reid", birth_date=date(2016, 2, 7)), ("family_name", "birth_date")),  # swapped
    ],
)
def test_every_field_given_agrees_as_linking_compares_it(searched: Demographics, fields: tuple[str, ...]) -> None:
    assert agreeing_fields(searched, STORED) == tuple(SearchField(field) for field in fields)


@pytest.mark.parametrize(
    "searched",
    [
        Demographics(family="Okonkwo-Reid", birth_date=date(2016, 7, 3)),  # one digit off
        Demographics(family="Okonkwo-Reid", postcode="ZZ99 3VY"),  # the same sector is not the same postcode
        Demographics(family="Smith", birth_date=date(2016, 7, 2)),
        Demographics(family="Okonkwo-Reid", given="Tobi", birth_date=date(2016, 7, 2)),  # a twin
        Demographics(family="Okonkwo-Reid", given="M", birth_date=date(2016, 7, 2)),  # an initial
        Demographics(),
    ],
)
def test_a_field_that_does_not_agree_or_nothing_given_is_no_match(searched: Demographics) -> None:
    assert agreeing_fields(searched, STORED) is None


def test_a_field_the_record_does_not_state_does_not_agree() -> None:
    searched = Demographics(family="Okonkwo-Reid", birth_date=date(2016, 7, 2), postcode="ZZ99 3VZ")

    assert agreeing_fields(searched, Demographics(family="Okonkwo-Reid", birth_date=date(2016, 7, 2))) is None


@pytest.mark.parametrize("given", ["Maisie", "Tom", "Liam", "Zoë", "Oluwaseun", "jean-luc", "Ébène"])
def test_a_postcode_search_looks_under_every_records_postcode_key(given: str) -> None:
    """The search writes linking's postcode keys itself: this fails if blocking changes their shape."""
    stored = block_keys(Demographics(given=given, family="Okonkwo", birth_date=date(2016, 7, 2), postcode="ZZ99 3VZ"))
    postcode_keys = {key for key in stored if key.startswith("postcode-given:")}

    assert postcode_keys and postcode_keys <= search_block_keys(Demographics(family="Okonkwo", postcode="zz99 3vz".upper()))


def test_a_search_without_a_postcode_looks_under_linkings_own_keys() -> None:
    searched = Demographics(family="Okonkwo", birth_date=date(2016, 7, 2))

    assert search_block_keys(searched) == block_keys(searched)


def test_merges_are_followed_to_the_child_the_records_are_on_now(session: Session) -> None:
    last, middle, first, alone = (Child(id=uuid.uuid4(), wrapped_data_key=b"k") for _ in range(4))
    session.add_all([last, middle, first, alone])
    session.flush()
    middle.merged_into_id = last.id
    first.merged_into_id = middle.id
    session.flush()

    current = get_current_children(session, child_ids=[first.id, middle.id, last.id, alone.id])

    assert current == {first.id: last.id, middle.id: last.id, last.id: last.id, alone.id: alone.id}
    assert get_current_children(session, child_ids=[]) == {}

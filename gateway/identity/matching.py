"""Linking's matching, for a staff member's search: which children a set of terms finds.

A search is not a claim to link, so it is not scored to a threshold: a score is calibrated for
whole records (a name, a birth date, a sex and an address), while a search gives two or three
fields, and a score over two fields cannot tell "a surname and a postcode agree" from "a
surname agrees" the way a person reading the answer would. Instead a child matches when one of
its current identities agrees on every field the searcher gave, each compared by linking's own
comparison (`scoring.compare_*`, after linking's normalisation), at the levels that linking
counts as evidence for the same child and that a searcher would accept as "the same":

- family name and given name: exact, a known variant (Tom for Thomas, one part of a hyphenated
  or double surname), or one slip apart (Smyth for Smith) — names are where records and
  searchers make mistakes, and a name is never searched alone;
- birth date: exact, or with day and month swapped (the recording error linking also accepts);
  not one digit off: with a postcode, the other field, that would find the neighbours;
- postcode: the same postcode, spaces and case aside.

Candidates are found as linking finds them, through the blocking keys (`blocking.block_keys`),
plus every `postcode-given` key of the searched postcode (one per possible given-name key
initial), so that a search by surname and postcode, which linking's keys alone would not reach,
finds everyone at the postcode. A record that has no given name is indexed by no postcode key:
a search by surname and postcode alone does not find it (one with a birth date does).

The work is bounded: at most `SEARCH_LIMIT` candidate children are compared, those sharing the
most blocking keys with the search first (a true match shares several); `limited` says when
some were left out, so that the searcher can narrow the search. The candidate query is
linking's own and reads every identity that shares a key (a birth date is shared by about 15
children in 100,000); only the first `SEARCH_LIMIT` children's are decrypted and compared.
"""

from __future__ import annotations

import string
import uuid
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy.orm import Session

from adapters import IdentityClaim
from gateway.kit.crypto import DataKeyring, OpenedKey
from gateway.models import Identity

from . import repository
from .authority import LinkingAuthority
from .blocking import block_keys
from .scoring import Demographics, Level, compare_birth_date, compare_family, compare_given, compare_location
from .service import BLOCK_SCHEME, NHS_NUMBER_SCHEME, demographics_of

# How many candidate children a search compares at most (and so returns at most).
SEARCH_LIMIT = 50

# Every first character `canonical_given` can give: a known name's canonical spelling starts
# with a lower-case letter, a Soundex code with an upper-case one.
_GIVEN_KEY_INITIALS = string.ascii_letters


class SearchField(StrEnum):
    """A field a search may give, as the request names it."""

    NHS_NUMBER = "nhs_number"
    FAMILY_NAME = "family_name"
    GIVEN_NAME = "given_name"
    BIRTH_DATE = "birth_date"
    POSTCODE = "postcode"


_NAME_LEVELS = frozenset({Level.EXACT, Level.VARIANT, Level.CLOSE})
_SAME_LEVELS = frozenset({Level.EXACT, Level.VARIANT})


@dataclass(frozen=True)
class Matches:
    """The children a search found (current children, merges followed), each with the fields that
    agreed, and whether candidates were left uncompared because there were too many."""

    children: Mapping[uuid.UUID, tuple[SearchField, ...]]
    limited: bool = False


def agreeing_fields(searched: Demographics, candidate: Demographics) -> tuple[SearchField, ...] | None:
    """Return the searched fields if every one agrees with the candidate's, else None (pure)."""
    compared: list[tuple[SearchField, bool]] = []
    if searched.family is not None:
        compared.append((SearchField.FAMILY_NAME, compare_family(searched.family, candidate.family)[0] in _NAME_LEVELS))
    if searched.given is not None:
        compared.append((SearchField.GIVEN_NAME, compare_given(searched.given, candidate.given)[0] in _NAME_LEVELS))
    if searched.birth_date is not None:
        level = compare_birth_date(searched.birth_date, candidate.birth_date)[0]
        compared.append((SearchField.BIRTH_DATE, level in _SAME_LEVELS))
    if searched.postcode is not None:
        level = compare_location(searched.postcode, None, candidate.postcode, None)[0]
        compared.append((SearchField.POSTCODE, level in _SAME_LEVELS))
    if not compared or not all(agrees for _, agrees in compared):
        return None
    return tuple(field for field, _ in compared)


def search_block_keys(person: Demographics) -> set[str]:
    """Return the blocking keys (plain text) under which a search looks for candidates."""
    keys = block_keys(person)
    if person.postcode:
        # The `postcode-given` key as blocking.block_keys writes it, for every given-name initial.
        postcode = person.postcode.upper().replace(" ", "")
        keys.update(f"postcode-given:{postcode}:{initial}" for initial in _GIVEN_KEY_INITIALS)
    return keys


def match_nhs_number(session: Session, *, keyring: DataKeyring, nhs_number: str) -> Matches:
    """Return the child an NHS number (compact, already checked) belongs to, if any and not erased."""
    identifier = (NHS_NUMBER_SCHEME, keyring.blind_index(NHS_NUMBER_SCHEME, nhs_number))
    found = repository.get_children_by_identifiers(session, identifiers={identifier})
    owners = [child_id for child_id, wrapped in found.values() if wrapped is not None]
    current = repository.get_current_children(session, child_ids=owners)
    return Matches({current[child_id]: (SearchField.NHS_NUMBER,) for child_id in owners})


def match_demographics(
    session: Session, authority: LinkingAuthority, *, keyring: DataKeyring, person: Demographics
) -> Matches:
    """Return the children with a current identity agreeing on every field the search gives."""
    hashed = {keyring.blind_index(BLOCK_SCHEME, key): key for key in search_block_keys(person)}
    rows = repository.get_block_candidates(session, authority, blocks=hashed.keys())
    shared: dict[uuid.UUID, int] = defaultdict(int)
    for row in rows:
        shared[row.identity_id] += 1
    # A child ranks by its identity sharing the most keys with the search.
    rank: dict[uuid.UUID, int] = defaultdict(int)
    for row in rows:
        rank[row.child_id] = max(rank[row.child_id], shared[row.identity_id])
    ranked = sorted(rank, key=lambda child_id: (-rank[child_id], str(child_id)))
    compared = set(ranked[:SEARCH_LIMIT])
    keys: dict[uuid.UUID, OpenedKey | None] = {}
    seen: set[uuid.UUID] = set()
    agreed: dict[uuid.UUID, tuple[SearchField, ...]] = {}
    for row in rows:
        if row.child_id not in compared or row.identity_id in seen or row.child_id in agreed:
            continue
        seen.add(row.identity_id)
        if row.child_id not in keys:
            keys[row.child_id] = None if row.wrapped_data_key is None else OpenedKey(keyring.unwrap(row.wrapped_data_key))
        key = keys[row.child_id]
        if key is None:  # an erased child is nobody's match
            continue
        claim = key.unseal_value(row.sealed_claim, IdentityClaim, context=Identity.context_for(row.identity_id))
        fields = agreeing_fields(person, demographics_of(claim))
        if fields is not None:
            agreed[row.child_id] = fields
    current = repository.get_current_children(session, child_ids=agreed.keys())
    children: dict[uuid.UUID, tuple[SearchField, ...]] = {}
    for child_id, fields in agreed.items():
        children.setdefault(current[child_id], fields)
    return Matches(children, limited=len(rank) > SEARCH_LIMIT)

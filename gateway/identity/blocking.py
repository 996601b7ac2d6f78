"""Blocking keys: which stored identities a new claim is compared with (pure, no I/O).

Scoring every pair of identities is out of the question (100,000 children are five billion
pairs), so a claim is compared only with identities that share at least one blocking key with
it. Each key is chosen so that a true match survives the errors real records carry:

- `dob`: the birth date (catches any change of name, a typo in a name, a house move);
- a second `dob` key with day and month swapped, where that is a date (a claim whose date was
  written the other way round meets the stored one's);
- `family-year`: the surname's Soundex code and the birth year (catches a mistyped day or
  month; Soundex survives most one-letter slips in a surname);
- `given-family`: the given name's known-variant group (or else its Soundex) with the surname's
  Soundex (catches a mistyped birth year with the names right);
- `postcode-given`: the postcode with the given name's first letter (catches a birth date
  wrong in two places where the child still lives at the same address).

The database holds the keys only as keyed hashes (`DataKeyring.blind_index("block", key)`), so
an index serves the lookup without holding a birth date or a name. Every part of a hyphenated
or double surname gives keys of its own, so that Smith-Jones meets Smith and Jones.

Keys and candidate lookup are also what serialises linking: two claims that could match each
other share a key, and linking locks every key of its claims before looking.
"""

from __future__ import annotations

import re
from datetime import date

import jellyfish

from .scoring import Demographics, canonical_given, normalise_name

_SPLIT = re.compile(r"[\s-]+")


def _soundex(name: str) -> str:
    return jellyfish.soundex(name)


def _surname_codes(family: str | None) -> set[str]:
    normal = normalise_name(family)
    if normal is None:
        return set()
    parts = [part for part in _SPLIT.split(normal) if len(part) > 1]
    return {_soundex(part) for part in parts} | {_soundex(normal.replace("-", "").replace(" ", ""))}


def _swapped(birth_date: date) -> date | None:
    if birth_date.day > 12 or birth_date.day == birth_date.month:
        return None
    return birth_date.replace(month=birth_date.day, day=birth_date.month)


def block_keys(person: Demographics) -> set[str]:
    """Return the blocking keys of a set of demographics (plain text; hash them before storing)."""
    keys: set[str] = set()
    surnames = _surname_codes(person.family)
    given = normalise_name(person.given)
    given_key = None if given is None else canonical_given(given.split()[0])
    if person.birth_date is not None:
        keys.add(f"dob:{person.birth_date.isoformat()}")
        swapped = _swapped(person.birth_date)
        if swapped is not None:
            keys.add(f"dob:{swapped.isoformat()}")
        keys.update(f"family-year:{code}:{person.birth_date.year}" for code in surnames)
    if given_key is not None:
        keys.update(f"given-family:{given_key}:{code}" for code in surnames)
        if person.postcode:
            keys.add(f"postcode-given:{person.postcode.upper().replace(' ', '')}:{given_key[0]}")
    return keys

"""Scored identity matching: how alike two sets of demographics are, Fellegi–Sunter style (pure, no I/O).

Each field is compared to a level (exact, a known variant, one slip, different, missing); each
level has a weight log2(m / u), where m is how often the level occurs when the two records are
the same child and u how often when they are not. A pair's score is the sum of its fields'
weights; above the upper threshold it links, between the thresholds it goes to a person for
review, below it is another child.

Two departures from plain Fellegi–Sunter, both because fields are not independent in families:
- postcode and address line are one field, "location": a shared household counts once, not
  twice (siblings share both);
- the twin guard: where birth date (exactly, swapped, or one digit off) and surname agree but
  the given names clearly differ, the pair is another child whatever the score (twins share
  everything else);
- two different NHS numbers are two children whatever the score.

The m and u values below are starting values chosen from the literature's orders of magnitude
(an exact birth date is shared by about 1 in 6,500 children under 18; a first name by about 1 in
200), not yet estimated from data: the linking benchmark will estimate them (EM over candidate
pairs) and replace them. String comparison is rapidfuzz's (a maintained C++ library).
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum

import jellyfish
from rapidfuzz.distance import JaroWinkler, Levenshtein
from rapidfuzz.fuzz import token_set_ratio


class Level(StrEnum):
    """How a field of two records compares."""

    EXACT = "exact"
    VARIANT = "variant"  # a known nickname or transliteration, a hyphenated part, a swapped day and month
    CLOSE = "close"  # one slip: a mistyped character, a near spelling, the same postcode sector
    PARTIAL = "partial"  # weak agreement: an initial, the same postcode district
    DIFFERENT = "different"
    MISSING = "missing"  # one side does not say: no evidence either way


class Decision(StrEnum):
    """What linking does with a scored pair."""

    LINK = "link"
    REVIEW = "review"
    NEW = "new"


@dataclass(frozen=True)
class Demographics:
    """What a record says of a child, as far as it says it; None is unknown."""

    given: str | None = None
    family: str | None = None
    birth_date: date | None = None
    sex: str | None = None
    postcode: str | None = None
    address: str | None = None
    nhs_number: str | None = None  # not scored: two different NHS numbers are two children


@dataclass(frozen=True)
class FieldScore:
    """One field's comparison: its level, weight, and why, in words a reviewer reads."""

    field: str
    level: Level
    weight: float
    reason: str


@dataclass(frozen=True)
class MatchScore:
    """A scored pair: the total, each field's part, and what linking does with it."""

    total: float
    fields: tuple[FieldScore, ...]
    decision: Decision
    guard: str | None = None  # why a rule overrode the score, if one did


def _weights(m: dict[Level, float], u: dict[Level, float]) -> dict[Level, float]:
    return {level: math.log2(m[level] / u[level]) for level in m}


@dataclass(frozen=True)
class MatchParameters:
    """m and u per field and level, as weights log2(m/u), and the two thresholds."""

    given: dict[Level, float] = field(
        default_factory=lambda: _weights(
            {Level.EXACT: 0.88, Level.VARIANT: 0.05, Level.CLOSE: 0.04, Level.PARTIAL: 0.01, Level.DIFFERENT: 0.02},
            {Level.EXACT: 0.005, Level.VARIANT: 0.001, Level.CLOSE: 0.004, Level.PARTIAL: 0.01, Level.DIFFERENT: 0.98},
        )
    )
    family: dict[Level, float] = field(
        default_factory=lambda: _weights(
            {Level.EXACT: 0.88, Level.VARIANT: 0.05, Level.CLOSE: 0.04, Level.DIFFERENT: 0.03},
            {Level.EXACT: 0.003, Level.VARIANT: 0.001, Level.CLOSE: 0.002, Level.DIFFERENT: 0.994},
        )
    )
    birth_date: dict[Level, float] = field(
        default_factory=lambda: _weights(
            {Level.EXACT: 0.93, Level.VARIANT: 0.02, Level.CLOSE: 0.03, Level.DIFFERENT: 0.02},
            {Level.EXACT: 0.00015, Level.VARIANT: 0.00015, Level.CLOSE: 0.002, Level.DIFFERENT: 0.99770},
        )
    )
    sex: dict[Level, float] = field(
        default_factory=lambda: _weights(
            {Level.EXACT: 0.97, Level.DIFFERENT: 0.03}, {Level.EXACT: 0.5, Level.DIFFERENT: 0.5}
        )
    )
    # Children in need move often: a different location is weak evidence against.
    location: dict[Level, float] = field(
        default_factory=lambda: _weights(
            {Level.EXACT: 0.70, Level.VARIANT: 0.10, Level.CLOSE: 0.03, Level.PARTIAL: 0.02, Level.DIFFERENT: 0.15},
            {Level.EXACT: 0.0007, Level.VARIANT: 0.0006, Level.CLOSE: 0.005, Level.PARTIAL: 0.02, Level.DIFFERENT: 0.9737},
        )
    )
    upper: float = 26.0
    lower: float = 18.0


DEFAULT_PARAMETERS = MatchParameters()

# Known variants of given names: nicknames and transliterations, each group one name. A seed
# list of names common in England's school population, to grow with the data; a pair in one
# group compares as VARIANT.
NAME_GROUPS: tuple[frozenset[str], ...] = tuple(
    frozenset(group.split())
    for group in (
        "thomas tom tommy",
        "katherine catherine kathryn kate katie kathy cathy",
        "elizabeth liz lizzie beth betty eliza libby",
        "william will billy bill liam",
        "robert rob robbie bob bobby",
        "james jim jimmy jamie",
        "alexander alex alexandra sasha",
        "benjamin ben benji",
        "daniel dan danny",
        "joseph joe joey",
        "samuel sam sammy samantha",
        "christopher chris",
        "jonathan jon john johnny jack",
        "margaret maggie meg peggy",
        "rebecca becky becca",
        "jessica jess jessie",
        "charlotte charlie lottie",
        "oliver ollie",
        "harry harold henry hal",
        "edward ed eddie ted",
        "mohammed muhammad mohamed mohammad muhammed mohamad",
        "aisha ayesha aysha aishah",
        "fatima fatimah fatma",
        "yusuf yousef yusef joseph",
        "ibrahim ebrahim",
        "abdullah abdallah",
        "zainab zaynab",
        "amir ameer",
        "hussain husain hussein",
        "oluwaseun seun",
        "aleksander aleksandr oleksandr alexander",
        "mikhail michael mykhailo mike mikey",
    )
)
_VARIANTS: dict[str, frozenset[str]] = {}
for _group in NAME_GROUPS:
    for _name in _group:
        _VARIANTS[_name] = _VARIANTS.get(_name, frozenset()) | _group


def _components(groups: Iterable[frozenset[str]]) -> dict[str, str]:
    """Name → the first (alphabetically) of every name reachable through overlapping groups."""
    merged: list[set[str]] = []
    for group in groups:
        touching = [component for component in merged if component & group]
        union = set(group).union(*touching)
        merged = [component for component in merged if not component & group] + [union]
    return {name: min(component) for component in merged for name in component}


_CANONICAL = _components(NAME_GROUPS)


def canonical_given(name: str) -> str:
    """Return one spelling for every known variant of a given name (Tom, Tommy → one), else the
    name's Soundex code (so that most one-letter slips meet): the given name's blocking key."""
    canonical = _CANONICAL.get(name)
    return canonical if canonical is not None else jellyfish.soundex(name)

_NOT_LETTERS = re.compile(r"[^a-z\s-]")
_POSTCODE = re.compile(r"^([A-Z]{1,2}[0-9][A-Z0-9]?)\s*([0-9])([A-Z]{2})$")


def normalise_name(name: str | None) -> str | None:
    """Return a name lowercased, without accents or punctuation, hyphens and single spaces kept."""
    if not name:
        return None
    plain = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii").lower()
    cleaned = " ".join(_NOT_LETTERS.sub("", plain).replace("-", " - ").split()).replace(" - ", "-")
    return cleaned or None


def _tokens(name: str) -> set[str]:
    return {token for token in re.split(r"[\s-]+", name) if token}


def _one_slip(a: str, b: str) -> bool:
    return Levenshtein.distance(a, b) <= 1 or JaroWinkler.similarity(a, b) >= 0.93


def compare_given(a: str | None, b: str | None) -> tuple[Level, str]:
    """Compare given names: exact, a known variant, one slip, an initial, or different."""
    first, second = normalise_name(a), normalise_name(b)
    if first is None or second is None:
        return Level.MISSING, "a given name is missing"
    if first == second:
        return Level.EXACT, "the same given name"
    head_a, head_b = first.split()[0], second.split()[0]
    if head_b in _VARIANTS.get(head_a, frozenset()):
        return Level.VARIANT, "known variants of one given name"
    if _one_slip(head_a, head_b):
        return Level.CLOSE, "given names one slip apart"
    if len(head_a) == 1 and head_b.startswith(head_a) or len(head_b) == 1 and head_a.startswith(head_b):
        return Level.PARTIAL, "an initial that fits"
    return Level.DIFFERENT, "different given names"


def compare_family(a: str | None, b: str | None) -> tuple[Level, str]:
    """Compare surnames: exact, one part of a hyphenated or double name, one slip, or different."""
    first, second = normalise_name(a), normalise_name(b)
    if first is None or second is None:
        return Level.MISSING, "a surname is missing"
    if first == second:
        return Level.EXACT, "the same surname"
    if _tokens(first) & _tokens(second):
        return Level.VARIANT, "a surname shares a part with the other (hyphenated or double)"
    if _one_slip(first, second):
        return Level.CLOSE, "surnames one slip apart"
    return Level.DIFFERENT, "different surnames"


def compare_birth_date(a: date | None, b: date | None) -> tuple[Level, str]:
    """Compare birth dates: exact, day and month swapped, one digit mistyped, or different."""
    if a is None or b is None:
        return Level.MISSING, "a birth date is missing"
    if a == b:
        return Level.EXACT, "the same birth date"
    if a.year == b.year and a.day == b.month and a.month == b.day:
        return Level.VARIANT, "day and month swapped"
    if Levenshtein.distance(a.strftime("%Y%m%d"), b.strftime("%Y%m%d")) == 1:
        return Level.CLOSE, "birth dates one digit apart"
    return Level.DIFFERENT, "different birth dates"


def compare_sex(a: str | None, b: str | None) -> tuple[Level, str]:
    """Compare recorded sex."""
    if not a or not b:
        return Level.MISSING, "sex is not recorded on one side"
    if a.strip().upper()[:1] == b.strip().upper()[:1]:
        return Level.EXACT, "the same sex"
    return Level.DIFFERENT, "different sex recorded"


# Street-type abbreviations as English addresses write them, expanded before comparing.
_ABBREVIATIONS = {
    "st": "street",
    "rd": "road",
    "ave": "avenue",
    "ln": "lane",
    "dr": "drive",
    "cl": "close",
    "ct": "court",
    "pl": "place",
    "sq": "square",
    "gdns": "gardens",
    "cres": "crescent",
    "flt": "flat",
}
_ADDRESS_NOISE = re.compile(r"[^a-z0-9\s]")


def normalise_address(address: str | None) -> str | None:
    """Return an address line lowercased, without punctuation, street-type abbreviations spelled out."""
    if not address:
        return None
    words = _ADDRESS_NOISE.sub(" ", address.lower()).split()
    return " ".join(_ABBREVIATIONS.get(word, word) for word in words) or None


def _postcode_parts(postcode: str | None) -> tuple[str, str, str] | None:
    if not postcode:
        return None
    match = _POSTCODE.match(postcode.upper().replace(" ", ""))
    return None if match is None else (match.group(1), match.group(2), match.group(3))


def compare_location(
    postcode_a: str | None, address_a: str | None, postcode_b: str | None, address_b: str | None
) -> tuple[Level, str]:
    """Compare where the child lives: the same address, the same postcode, sector or district, or elsewhere."""
    a, b = _postcode_parts(postcode_a), _postcode_parts(postcode_b)
    line_a, line_b = normalise_address(address_a), normalise_address(address_b)
    same_street = bool(line_a and line_b and token_set_ratio(line_a, line_b) >= 90)
    if a is None or b is None:
        if same_street:
            return Level.VARIANT, "the same address line (a postcode is missing)"
        return Level.MISSING, "a postcode is missing"
    if a == b:
        return (Level.EXACT, "the same address") if same_street else (Level.VARIANT, "the same postcode")
    if a[:2] == b[:2]:
        return Level.CLOSE, "the same postcode sector"
    if a[0] == b[0]:
        return Level.PARTIAL, "the same postcode district"
    return Level.DIFFERENT, "different areas (a house move?)"


def score(a: Demographics, b: Demographics, parameters: MatchParameters = DEFAULT_PARAMETERS) -> MatchScore:
    """Score a pair of records and decide: link, review or new."""
    compared = (
        ("given", parameters.given, compare_given(a.given, b.given)),
        ("family", parameters.family, compare_family(a.family, b.family)),
        ("birth_date", parameters.birth_date, compare_birth_date(a.birth_date, b.birth_date)),
        ("sex", parameters.sex, compare_sex(a.sex, b.sex)),
        ("location", parameters.location, compare_location(a.postcode, a.address, b.postcode, b.address)),
    )
    fields = tuple(
        FieldScore(name, level, 0.0 if level is Level.MISSING else weights[level], reason)
        for name, weights, (level, reason) in compared
    )
    total = sum(part.weight for part in fields)
    if a.nhs_number and b.nhs_number and a.nhs_number != b.nhs_number:
        return MatchScore(total, fields, Decision.NEW, "different NHS numbers: two children, however alike")
    guard = _twin_guard(fields)
    if guard is not None:
        # Given names that are still much alike may be one name badly misspelt rather than a
        # twin's: never linked automatically, but a person may look.
        alike = _similar_given(a.given, b.given) and total >= parameters.lower
        return MatchScore(total, fields, Decision.REVIEW if alike else Decision.NEW, guard)
    if total >= parameters.upper:
        decision = Decision.LINK
    elif total >= parameters.lower:
        decision = Decision.REVIEW
    else:
        decision = Decision.NEW
    return MatchScore(total, fields, decision)


def _similar_given(a: str | None, b: str | None) -> bool:
    first, second = normalise_name(a), normalise_name(b)
    if first is None or second is None:
        return False
    return JaroWinkler.similarity(first.split()[0], second.split()[0]) >= 0.80


def _twin_guard(fields: Iterable[FieldScore]) -> str | None:
    levels = {part.field: part.level for part in fields}
    if (
        levels["birth_date"] in (Level.EXACT, Level.VARIANT, Level.CLOSE)
        and levels["family"] in (Level.EXACT, Level.VARIANT, Level.CLOSE)
        and levels["given"] is Level.DIFFERENT
    ):
        # A swapped or one-digit-off birth date counts too: twins' dates are recorded with the
        # same slips, and siblings a year apart to the day differ in one digit.
        return "given names differ where birth date and surname agree: twins and siblings are kept apart"
    return None

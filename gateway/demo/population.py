"""A synthetic population with known truth, for evaluating identity linking (issue 9).

Children live in families: siblings share a surname and a household, twins a birth date too.
Each child is then recorded by several agencies, each record with the errors real feeds carry:
a nickname or another transliteration of the given name, one mistyped character, day and month
swapped, a hyphenated surname, a house move, no NHS number (most police records, many school
ones). Every record says which child it truly is (`truth`), so that a linker's output can be
scored. The output is the line format of `gateway link batch`.

All names and addresses are made up by Faker's en_GB locale; NHS numbers come from the 999 test
range (generator.synthetic_nhs_number); UPNs are made up with a valid check letter (python-stdnum's).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from faker import Faker
from stdnum.gb import upn

from gateway.identity.scoring import NAME_GROUPS, canonical_given

from .generator import synthetic_nhs_number

AGENCIES = ("health", "police", "education")
# How often a record carries each error (per record, independently).
ERROR_RATES = {
    "variant": 0.06,  # a nickname or another transliteration of the given name
    "typo": 0.04,  # one character of the given or family name mistyped
    "swap": 0.01,  # day and month of the birth date swapped (when both are 12 or under)
    "hyphen": 0.02,  # the family name recorded double-barrelled
    "moved": 0.10,  # an older address
}
# How often an agency's record carries the NHS number, and a school's the UPN.
NHS_NUMBER_RATE = {"health": 1.0, "education": 0.5, "police": 0.2}
TWIN_RATE = 0.03
_VARIANTS = {name: sorted(group - {name}) for group in NAME_GROUPS for name in group}
_FEMALE_WITH_VARIANTS = ("katherine", "elizabeth", "margaret", "rebecca", "jessica", "charlotte", "aisha", "fatima", "zainab")
_MALE_WITH_VARIANTS = ("thomas", "william", "robert", "james", "benjamin", "daniel", "mohammed", "yusuf", "hussain", "amir")
# Local authority codes that UPNs begin with (a few of those python-stdnum knows).
_LA_CODES = (801, 802, 803, 805, 806, 807, 808, 810, 811, 812)


@dataclass(frozen=True)
class TrueChild:
    """A child as the truth knows them."""

    key: str
    given: str
    family: str
    birth_date: date
    sex: str
    postcode: str
    address: str
    nhs_number: str
    upn: str


def synthetic_upn(rng: random.Random) -> str:
    """Return a made-up Unique Pupil Number: a real local authority code, random digits, stdnum's check letter."""
    body = f"{rng.choice(_LA_CODES)}{rng.randrange(10_000):04d}{rng.randrange(100):02d}{rng.randrange(1_000):03d}"
    return upn.calc_check_digit(body) + body


def population(children: int, *, seed: int) -> list[TrueChild]:
    """Return `children` children in families of one to four, some of them twins."""
    rng = random.Random(seed)
    fake = Faker("en_GB")
    fake.seed_instance(seed)
    made: list[TrueChild] = []
    # Identifiers are unique, as real ones are: the 999 test range holds under a million NHS
    # numbers, so a population of 100,000 would otherwise give thousands of children one number.
    nhs_numbers: set[str] = set()
    upns: set[str] = set()

    def unique(draw: Callable[[random.Random], str], used: set[str]) -> str:
        value = draw(rng)
        while value in used:
            value = draw(rng)
        used.add(value)
        return value

    while len(made) < children:
        family, postcode, address = fake.last_name(), fake.postcode(), fake.street_address().split("\n")[0]
        birth = date(2008, 1, 1) + timedelta(days=rng.randrange(18 * 365))
        for _ in range(rng.choice((1, 1, 2, 2, 3, 4))):
            if len(made) == children:
                break
            twin = made and made[-1].family == family and rng.random() < TWIN_RATE
            born = made[-1].birth_date if twin else birth - timedelta(days=rng.randrange(400, 2000))
            sex = rng.choice("FM")
            given = _given(fake, rng, sex)
            # Twins are given different names, not two spellings of one (real twins are).
            while twin and canonical_given(given.lower()) == canonical_given(made[-1].given.lower()):
                given = _given(fake, rng, sex)
            made.append(
                TrueChild(
                    key=f"c{len(made):07d}",
                    given=given,
                    family=family,
                    birth_date=born,
                    sex=sex,
                    postcode=postcode,
                    address=address,
                    nhs_number=unique(synthetic_nhs_number, nhs_numbers),
                    upn=unique(synthetic_upn, upns),
                )
            )
            birth = born
    return made


def _given(fake: Faker, rng: random.Random, sex: str) -> str:
    # Now and then a name with known variants, so that transliterations and nicknames occur.
    if rng.random() < 0.15:
        return rng.choice(_FEMALE_WITH_VARIANTS if sex == "F" else _MALE_WITH_VARIANTS).capitalize()
    return str(fake.first_name_female() if sex == "F" else fake.first_name_male())


def records(children: list[TrueChild], *, seed: int, per_child: int = 2) -> Iterator[dict[str, Any]]:
    """Yield each child's records across agencies, with errors, as `link batch` lines plus `truth`."""
    rng = random.Random(seed)
    fake = Faker("en_GB")
    fake.seed_instance(seed + 1)
    for child in children:
        for number in range(per_child):
            agency = AGENCIES[(int(child.key[1:]) + number) % len(AGENCIES)] if number else "health"
            yield {
                "agency": agency,
                "record_id": f"{agency}-{child.key}-{number}",
                "identity": _observed(child, agency, rng, fake),
                "truth": child.key,
            }


def _observed(child: TrueChild, agency: str, rng: random.Random, fake: Faker) -> dict[str, Any]:
    given, family, born = child.given, child.family, child.birth_date
    postcode, address = child.postcode, child.address
    if rng.random() < ERROR_RATES["variant"] and _VARIANTS.get(given.lower()):
        given = rng.choice(_VARIANTS[given.lower()]).capitalize()
    if rng.random() < ERROR_RATES["typo"]:
        given = _typo(given, rng)
    if rng.random() < ERROR_RATES["hyphen"]:
        family = f"{family}-{fake.last_name()}"
    if rng.random() < ERROR_RATES["swap"] and born.day <= 12 and born.day != born.month:
        born = born.replace(month=born.day, day=born.month)
    if rng.random() < ERROR_RATES["moved"]:
        postcode, address = fake.postcode(), fake.street_address().split("\n")[0]
    return {
        "given": given,
        "family": family,
        "birth_date": born.isoformat(),
        "sex": child.sex,
        "postcode": postcode,
        "address": address,
        "nhs_number": child.nhs_number if rng.random() < NHS_NUMBER_RATE[agency] else None,
        "upn": child.upn if agency == "education" else None,
    }


def _typo(name: str, rng: random.Random) -> str:
    if len(name) < 3:
        return name
    position = rng.randrange(1, len(name))
    letter = rng.choice("abcdefghijklmnopqrstuvwxyz")
    return name[:position] + letter + name[position + 1 :]

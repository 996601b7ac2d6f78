"""The synthetic population for evaluating linking: known truth, realistic errors, and what the scorer makes of it."""

from __future__ import annotations

import collections
import itertools
from datetime import date
from typing import Any

from stdnum.gb import nhs, upn

from gateway.demo.population import TrueChild, population, records
from gateway.identity.scoring import Decision, Demographics, score

CHILDREN = 1500
SEED = 11


def _demographics(line: dict[str, Any]) -> Demographics:
    seen = line["identity"]
    return Demographics(
        seen["given"], seen["family"], date.fromisoformat(seen["birth_date"]), seen["sex"], seen["postcode"], seen["address"]
    )


def _by_child(children: list[TrueChild]) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    for line in records(children, seed=SEED):
        grouped[line["truth"]].append(line)
    return grouped


def test_the_same_seed_makes_the_same_population_and_records() -> None:
    first, second = population(200, seed=SEED), population(200, seed=SEED)

    assert first == second
    assert list(records(first, seed=SEED)) == list(records(second, seed=SEED))
    assert population(200, seed=SEED + 1) != first


def test_identifiers_are_valid_and_synthetic() -> None:
    children = population(300, seed=SEED)

    assert all(nhs.is_valid(child.nhs_number) and child.nhs_number.startswith("999") for child in children)
    assert all(upn.is_valid(child.upn) for child in children)
    assert len({child.nhs_number for child in children}) == len(children)


def test_records_carry_the_errors_real_feeds_carry() -> None:
    children = population(CHILDREN, seed=SEED)
    truth = {child.key: child for child in children}
    lines = [line for lines in _by_child(children).values() for line in lines]

    def count(test: Any) -> int:
        return sum(1 for line in lines if test(line["identity"], truth[line["truth"]]))

    assert count(lambda seen, child: seen["given"] != child.given) > 0
    assert count(lambda seen, child: "-" in seen["family"] and "-" not in child.family) > 0
    assert count(lambda seen, child: seen["postcode"] != child.postcode) > 0
    assert count(lambda seen, child: seen["birth_date"] != child.birth_date.isoformat()) > 0
    police = [line for line in lines if line["agency"] == "police"]
    assert police and sum(line["identity"]["nhs_number"] is None for line in police) > len(police) / 2
    assert all(line["identity"]["upn"] for line in lines if line["agency"] == "education")
    twins = [(a, b) for a, b in itertools.pairwise(children) if a.family == b.family and a.birth_date == b.birth_date]
    assert twins, "no twins in the population: the scorer's hardest case would go untested"


def test_the_scorer_links_the_same_child_and_never_two_children_of_one_household() -> None:
    """On generated truth: true pairs link (or go to review), household pairs never link."""
    children = population(CHILDREN, seed=SEED)
    grouped = _by_child(children)

    same = collections.Counter(score(_demographics(a), _demographics(b)).decision for a, b in grouped.values())
    households: dict[tuple[str, str], list[str]] = collections.defaultdict(list)
    for child in children:
        households[(child.family, child.postcode)].append(child.key)
    apart = collections.Counter(
        score(_demographics(grouped[x][0]), _demographics(grouped[y][0])).decision
        for members in households.values()
        for x, y in itertools.combinations(members, 2)
    )

    assert same[Decision.LINK] >= 0.95 * CHILDREN, same
    assert same[Decision.LINK] + same[Decision.REVIEW] >= 0.99 * CHILDREN, same
    assert sum(apart.values()) > 500 and apart[Decision.LINK] == 0, apart

"""The synthetic partnership: valid test-range NHS numbers, reproducible, and in step with examples/."""

from __future__ import annotations

import json
import random
from pathlib import Path

from stdnum.gb import nhs

from gateway.demo.generator import generate, patient_resource, synthetic_nhs_number

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "walkthrough-bundle.json"


def test_nhs_numbers_are_valid_and_in_the_test_range() -> None:
    rng = random.Random(1)
    numbers = [synthetic_nhs_number(rng) for _ in range(500)]

    assert all(nhs.is_valid(n) and n.startswith("999") for n in numbers)
    assert len(set(numbers)) > 490


def test_generation_is_reproducible_and_varied() -> None:
    first, second = generate(children=12, seed=5), generate(children=12, seed=5)

    assert [c.nhs_number for c in first.children] == [c.nhs_number for c in second.children]
    assert len({c.nhs_number for c in first.children}) == 12
    assert [c.allocated for c in first.children].count(False) == 2
    assert all(1 <= len(c.encounters) <= 4 for c in first.children)
    assert {m.agency for m in first.members} == {"health", "police", "education", "social_care"}


def test_walkthrough_example_is_demo_child_zero_as_the_trust_sent_it() -> None:
    child = generate(children=36, seed=2026).children[0]
    bundle = json.loads(EXAMPLE.read_text())

    patient = bundle["entry"][0]["resource"]
    assert child.allocated
    # Identical content means the same version, so the walk-through's Patient is "200 OK", stored once.
    assert patient == patient_resource(child, resource_id="trust-patient-0", postcode=child.postcode)
    assert bundle["entry"][1]["resource"]["period"]["start"].startswith("2026-11-20")

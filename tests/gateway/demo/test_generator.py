"""The synthetic partnership: valid test-range NHS numbers, reproducible, and in step with examples/."""

from __future__ import annotations

import csv
import io
import json
import random
from pathlib import Path

from stdnum.gb import nhs

from adapters import RejectedEntry
from adapters.education import EducationAdapter
from adapters.police import PoliceAdapter
from gateway.demo.generator import generate, patient_resource, synthetic_nhs_number
from gateway.demo.loader import DEMO_SCHOOL_URN, DEMO_TODAY, police_person
from gateway.demo.population import synthetic_upn

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
EXAMPLE = EXAMPLES / "walkthrough-bundle.json"


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


def test_walkthrough_police_batch_is_about_demo_child_zero_as_the_force_knows_it() -> None:
    child = generate(children=36, seed=2026).children[0]
    batch = json.loads((EXAMPLES / "walkthrough-police.json").read_text())

    (record,) = batch["records"]
    about = record["child"]
    assert about["person_id"] == police_person(child, 0, role="present")["person_id"]  # the demo force's id for child 0
    assert "nhs_number" not in about  # linked by the force's own person id
    assert (about["given_names"], about["family_name"], about["birth_date"]) == (
        child.given_names, child.family_name, child.birth_date.isoformat()
    )
    assert record["kind"] == "domestic_abuse_notification" and record["occurred_at"].startswith("2026-11-20")
    submission = PoliceAdapter().parse(json.dumps(batch).encode(), "application/json", max_entries=10)
    assert not [e for e in submission.entries if isinstance(e, RejectedEntry)]


def test_walkthrough_attendance_csv_is_the_demo_schools_pupils() -> None:
    partnership = generate(children=36, seed=2026)
    body = (EXAMPLES / "walkthrough-attendance.csv").read_bytes()

    rows = list(csv.DictReader(io.StringIO(body.decode())))
    at_school = [i for i, c in enumerate(partnership.children) if (DEMO_TODAY - c.birth_date).days > 5 * 365]
    assert [row["upn"] for row in rows] == [synthetic_upn(random.Random(i)) for i in at_school]
    assert all(row["school_urn"] == DEMO_SCHOOL_URN for row in rows)
    submission = EducationAdapter().parse(body, "text/csv", max_entries=1000)
    assert not [e for e in submission.entries if isinstance(e, RejectedEntry)]

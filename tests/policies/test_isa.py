"""The ISA file format: strict, with errors that name the file and the field."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from policies import PolicyError, default_policy, load_policy, load_policy_text

VALID = """
id: t
version: "1"
title: t
lawful_bases: {public_task: "Art 6(1)(e)"}
rules:
  - id: r1
    description: d
    purposes: [child_protection]
    source_agencies: [health]
    categories: [health.encounter]
    viewer_agencies: [police]
    decision: disclose
    lawful_basis: public_task
    reason: because
"""


def test_valid_file_loads(tmp_path: Path) -> None:
    path = tmp_path / "isa.yaml"
    path.write_text(VALID)

    policy = load_policy(path)

    assert (policy.id, policy.version, [r.id for r in policy.rules]) == ("t", "1", ["r1"])
    assert policy.lawful_bases["public_task"] == "Art 6(1)(e)"


def test_default_isa_loads_and_covers_both_purposes() -> None:
    policy = default_policy()

    assert {p for rule in policy.rules for p in rule.purposes} == {"child_protection", "family_help"}
    assert all(rule.lawful_basis in policy.lawful_bases for rule in policy.rules)


def test_notifiable_categories_default_to_none_and_the_shipped_isa_names_cp_is_kinds() -> None:
    assert load_policy_text(VALID).notifiable_categories == ()
    shipped = default_policy().notifiable_categories
    assert {"health.urgent_care", "police.domestic_abuse", "education.safeguarding_concern"} <= set(shipped)
    assert "police.intelligence" not in shipped  # intelligence is not announced to a practitioner's inbox


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        (lambda t: t.replace("    reason: because", "    reason: because\n    colour: red"), "rules.0.colour"),
        (lambda t: t + t[t.index("  - id: r1"):], "duplicate rule id 'r1'"),
        (lambda t: t.replace("lawful_basis: public_task", "lawful_basis: vibes"), "rules.0.lawful_basis"),
        (lambda t: t.replace("decision: disclose", "decision: redact"), "redact_fields is required"),
        (lambda t: t.replace("decision: disclose", "decision: disclose\n    redact_fields: [summary]"),
         "only allowed when decision is redact"),
        (lambda t: t.replace("source_agencies: [health]", "source_agencies: [astrology]"), "unknown agency"),
        (lambda t: t.replace("categories: [health.encounter]", "categories: [health.horoscope]"), "unknown category"),
        (lambda t: t.replace("decision: disclose", "decision: indicate"), "rules.0.decision"),
        (lambda t: t.replace("purposes: [child_protection]", "purposes: [curiosity]"), "rules.0.purposes"),
        (lambda t: "key: [unclosed", "not valid YAML"),
        (lambda t: "- a list", "must be a YAML mapping"),
        (lambda t: t.replace('version: "1"\n', ""), "version"),
        (lambda t: t + "notifiable_categories: [police.gossip]\n", "notifiable_categories: Value error, unknown category"),
    ],
)
def test_errors_name_the_field(change: Callable[[str], str], fragment: str) -> None:
    with pytest.raises(PolicyError, match="isa-under-test") as error:
        load_policy_text(change(VALID), source="isa-under-test")

    assert fragment in str(error.value)


def test_unreadable_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="missing.yaml: cannot be read"):
        load_policy(tmp_path / "missing.yaml")

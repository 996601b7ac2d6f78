"""The ISA file format: strict, with errors that name the file and the field."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

import yaml

from policies import PolicyError, default_policy, load_policy, load_policy_text
from policies.isa import _line_of, isa_json_schema

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


def _last_line(text: str, fragment: str) -> int:
    return [number for number, line in enumerate(text.splitlines(), 1) if fragment in line][-1]


@pytest.mark.parametrize(
    ("change", "fragment", "field"),
    [
        (lambda t: t.replace("lawful_basis: public_task", "lawful_basis: vibes"), "lawful_basis: vibes",
         "rules.0.lawful_basis"),
        (lambda t: t.replace("    reason: because", "    reason: because\n    colour: red"), "colour: red",
         "rules.0.colour"),
        (lambda t: t.replace("purposes: [child_protection]", "purposes: [curiosity]"), "purposes: [curiosity]",
         "rules.0.purposes.0"),
        (lambda t: t + t[t.index("  - id: r1"):], "  - id: r1", "rules.1.id"),
    ],
)
def test_errors_name_the_line_at_fault(change: Callable[[str], str], fragment: str, field: str) -> None:
    text = change(VALID)
    with pytest.raises(PolicyError) as error:
        load_policy_text(text, source="isa.yaml")

    assert str(error.value).startswith(f"isa.yaml:{_last_line(text, fragment)}: {field}: "), str(error.value)


def test_a_yaml_syntax_error_names_its_line() -> None:
    with pytest.raises(PolicyError, match=r"^isa\.yaml:3: not valid YAML"):
        load_policy_text("id: t\nversion: '1'\ntitle: a: b\n", source="isa.yaml")


def test_a_yaml_error_without_a_position_names_the_file_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(_text: str) -> object:
        raise yaml.YAMLError("no mark")

    monkeypatch.setattr(yaml, "safe_load", broken)
    with pytest.raises(PolicyError, match=r"^isa\.yaml: not valid YAML \(YAMLError\)$"):
        load_policy_text(VALID, source="isa.yaml")


def test_a_path_beyond_the_document_stops_at_its_deepest_node() -> None:
    assert _line_of("a: 1\nb:\n  - x\n", ("b", 5)) == 3  # no such item: the list's first line
    assert _line_of("a: 1\nb: 2\n", ("b", "c")) == 2  # a scalar has no fields
    assert _line_of("a: 1\nb: 2\n", ("z",)) == 1  # no such key: the document's first line


SHIPPED_SCHEMA = Path(__file__).resolve().parents[2] / "policies" / "isa" / "schema.json"


def test_the_shipped_json_schema_is_the_models_and_the_shipped_isa_is_valid_under_it() -> None:
    jsonschema_rs = pytest.importorskip("jsonschema_rs")  # comes with schemathesis, a test dependency
    schema = isa_json_schema()
    shipped_isa = yaml.safe_load((Path(__file__).resolve().parents[2] / "policies" / "isa" / "default.yaml").read_text())

    assert json.loads(SHIPPED_SCHEMA.read_text()) == schema, "regenerate policies/isa/schema.json (gateway policy schema)"
    assert schema["$id"] == "urn:macpt-gateway:schema:isa:v1"
    validator = jsonschema_rs.validator_for(schema)
    assert validator.is_valid(shipped_isa)
    shipped_isa["rules"][0]["categories"] = ["health.horoscope"]
    assert not validator.is_valid(shipped_isa)  # the vocabulary is in the schema, for editors

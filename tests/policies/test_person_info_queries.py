"""The ISA's rules for other agencies' queries ($person-info-query): strictest covering rule, else deny."""

from __future__ import annotations

import json
from typing import Any

import pytest

from policies import Agency, PolicyError, default_policy, load_policy_text
from policies.isa import QueryDecision, normalise_reason

S47 = "http://www.legislation.gov.uk/ukpga/1989/41/section/47"
S17 = "http://www.legislation.gov.uk/ukpga/1989/41/section/17"
S11 = "http://www.legislation.gov.uk/ukpga/2004/31/section/11"
S16LA = "http://www.legislation.gov.uk/ukpga/2004/31/section/16LA"
# The one form every way of writing S47 is compared in.
NORMAL_S47 = "http://legislation.gov.uk/ukpga/1989/41/section/47"


def isa(*rules: dict[str, Any]) -> str:
    return json.dumps(
        {
            "id": "t",
            "version": "7",
            "title": "t",
            "lawful_bases": {"public_task": "Art 6(1)(e)"},
            "rules": [],
            "person_info_queries": list(rules),
        }
    )


def rule(rule_id: str = "q1", **fields: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "id": rule_id,
        "description": f"rule {rule_id}",
        "reasons": [S47],
        "agencies": ["police"],
        "decision": "permit",
    }
    values.update(fields)
    return values


def test_an_isa_without_query_rules_loads_and_denies_every_query() -> None:
    policy = load_policy_text(isa())

    verdict = policy.decide_person_info_query(reason=S47, agency=Agency.POLICE)

    assert policy.person_info_queries == ()
    assert (verdict.decision, verdict.rule_id, verdict.policy_version, verdict.lawful_basis) == (
        QueryDecision.DENY, None, "7", None
    )
    assert "deny by default" in verdict.reason


def test_a_covering_rule_decides_with_its_id_basis_and_description() -> None:
    policy = load_policy_text(isa(rule(lawful_basis="public_task")))

    verdict = policy.decide_person_info_query(reason=S47, agency=Agency.POLICE)

    assert (verdict.decision, verdict.rule_id, verdict.lawful_basis, verdict.reason) == (
        QueryDecision.PERMIT, "q1", "public_task", "rule q1"
    )


@pytest.mark.parametrize(
    ("reason", "agency"),
    [(S17, Agency.POLICE), (S47, Agency.HEALTH)],
    ids=["another reason", "another agency"],
)
def test_a_rule_covers_only_its_reasons_and_agencies(reason: str, agency: Agency) -> None:
    policy = load_policy_text(isa(rule()))

    assert policy.decide_person_info_query(reason=reason, agency=agency).decision is QueryDecision.DENY


@pytest.mark.parametrize(
    ("decisions", "expected"),
    [
        (("permit", "review"), ("review", "q2")),
        (("review", "deny"), ("deny", "q2")),
        (("deny", "permit"), ("deny", "q1")),
        (("permit", "permit"), ("permit", "q1")),
    ],
)
def test_the_strictest_covering_rule_decides_whatever_the_order(
    decisions: tuple[str, str], expected: tuple[str, str]
) -> None:
    first, second = decisions
    policy = load_policy_text(isa(rule("q1", decision=first), rule("q2", decision=second)))

    verdict = policy.decide_person_info_query(reason=S47, agency=Agency.POLICE)

    assert (verdict.decision.value, verdict.rule_id) == expected


@pytest.mark.parametrize(
    ("uri", "normal"),
    [
        ("https://www.legislation.gov.uk/ukpga/1989/41/section/47",NORMAL_S47),
        ("http://www.legislation.gov.uk/id/ukpga/1989/41/section/47",NORMAL_S47),
        ("HTTPS://Legislation.gov.uk/ukpga/1989/41/section/47/",NORMAL_S47),
        (" http://www.legislation.gov.uk/ukpga/1989/41/section/47 ",NORMAL_S47),
        ("https://example.org/id/isa/7/", "http://example.org/id/isa/7"),
        ("https://example.org", "http://example.org"),
        ("urn:oid:1.2.3", "urn:oid:1.2.3"),
        ("ftp://legislation.gov.uk/x", "ftp://legislation.gov.uk/x"),
    ],
)
def test_reasons_are_compared_in_one_form(uri: str, normal: str) -> None:
    assert normalise_reason(uri) == normal


def test_a_reason_in_another_form_of_the_same_uri_is_covered() -> None:
    policy = load_policy_text(isa(rule(reasons=["https://www.legislation.gov.uk/id/ukpga/1989/41/section/47/"])))

    assert policy.decide_person_info_query(reason=S47, agency=Agency.POLICE).decision is QueryDecision.PERMIT


@pytest.mark.parametrize(
    ("rules", "fragment"),
    [
        ((rule(reasons=["section 47"]),), "person_info_queries.0.reasons: Value error, reason 'section 47' is not an http(s) URI"),
        ((rule(reasons=[]),), "person_info_queries.0.reasons: Tuple should have at least 1 item"),
        ((rule(agencies=["probation"]),), "person_info_queries.0.agencies.0"),
        ((rule(decision="maybe"),), "person_info_queries.0.decision"),
        ((rule(), rule()), "person_info_queries.1.id: duplicate rule id 'q1'"),
        ((rule(lawful_basis="vital_interests"),), "person_info_queries.0.lawful_basis: 'vital_interests' is not a key"),
        ((rule(colour="blue"),), "person_info_queries.0.colour: Extra inputs are not permitted"),
    ],
)
def test_a_wrong_query_rule_is_refused_naming_its_field(rules: tuple[dict[str, Any], ...], fragment: str) -> None:
    with pytest.raises(PolicyError) as raised:
        load_policy_text(isa(*rules), source="isa.yaml")

    assert fragment in str(raised.value)


@pytest.mark.parametrize("agency", list(Agency))
def test_the_shipped_isa_permits_s47_and_s16la_and_refers_s17_and_s11_for_every_agency(agency: Agency) -> None:
    policy = default_policy()

    decide = policy.decide_person_info_query
    assert decide(reason=S47, agency=agency).decision is QueryDecision.PERMIT
    assert decide(reason=S16LA, agency=agency).decision is QueryDecision.PERMIT
    assert decide(reason=S17, agency=agency).decision is QueryDecision.REVIEW
    assert decide(reason=S11, agency=agency).decision is QueryDecision.REVIEW
    assert decide(reason="http://www.legislation.gov.uk/ukpga/1996/56/section/7", agency=agency).rule_id is None
    assert all(r.lawful_basis in policy.lawful_bases for r in policy.person_info_queries)

"""The policy engine: protective voters first, then the ISA, then deny by default."""

from __future__ import annotations

from dataclasses import replace

import pytest

from policies import (
    AGENCIES,
    Agency,
    ConsentFact,
    ConsentState,
    ConsentStatus,
    DecisionKind,
    ItemFacts,
    Purpose,
    RecordKind,
    RecordStatus,
    Relationship,
    Viewer,
    decide,
    default_policy,
    load_policy_text,
)

POLICY = default_policy()
CP, FH = Purpose.CHILD_PROTECTION, Purpose.FAMILY_HELP
NO_CONSENT = ConsentState()


def viewer(agency: str = "police", relationship: Relationship = Relationship.ALLOCATED_TEAM) -> Viewer:
    return Viewer(agency=Agency(agency), role="member", relationship=relationship)


def item(
    agency: str = "health",
    category: str = "health.urgent_care",
    *,
    security_labels: frozenset[str] = frozenset(),
    police_handling_code: str | None = None,
    status: RecordStatus = RecordStatus.CURRENT,
    detrimental: bool = False,
) -> ItemFacts:
    return ItemFacts(item_id="i1", agency=Agency(agency), kind=RecordKind.ENCOUNTER, category=category,
                     security_labels=security_labels, police_handling_code=police_handling_code, status=status,
                     detrimental=detrimental)


def consent(status: ConsentStatus, agency: str = "health", categories: frozenset[str] = frozenset()) -> ConsentState:
    return ConsentState((ConsentFact(status, FH, frozenset({Agency(agency)}), categories),))


@pytest.mark.parametrize("viewer_agency", sorted(AGENCIES))
@pytest.mark.parametrize(
    ("source", "category", "rule"),
    [
        ("health", "health.urgent_care", "cp.health"),
        ("police", "police.incident", "cp.police"),
        ("education", "education.enrolment", "cp.education"),
        ("social_care", "social_care.case", "cp.social-care"),
    ],
)
def test_child_protection_shares_every_agency_with_the_allocated_team(
    viewer_agency: Agency, source: str, category: str, rule: str
) -> None:
    decision = decide(POLICY, viewer=viewer(viewer_agency), purpose=CP, item=item(source, category), consent=NO_CONSENT)

    assert decision.kind is DecisionKind.DISCLOSE
    assert decision.shown
    assert decision.rule_id == rule
    assert decision.lawful_basis == "public_task"
    assert decision.policy_version == POLICY.version


def test_child_protection_does_not_need_consent_and_ignores_refusal() -> None:
    decision = decide(POLICY, viewer=viewer(), purpose=CP, item=item(), consent=consent(ConsentStatus.REFUSED))

    assert decision.kind is DecisionKind.DISCLOSE


def test_break_glass_viewer_gets_child_protection_disclosures() -> None:
    decision = decide(POLICY, viewer=viewer(relationship=Relationship.BREAK_GLASS), purpose=CP, item=item(),
                      consent=NO_CONSENT)

    assert decision.kind is DecisionKind.DISCLOSE


def test_no_relationship_sees_nothing_at_all() -> None:
    decision = decide(POLICY, viewer=viewer(relationship=Relationship.NONE), purpose=CP, item=item(),
                      consent=NO_CONSENT)

    assert decision.kind is DecisionKind.WITHHOLD_SILENTLY
    assert decision.rule_id == "builtin.no-relationship"
    assert decision.lawful_basis is None
    assert not decision.shown


@pytest.mark.parametrize(("status", "rule"), [("entered_in_error", "builtin.entered-in-error"),
                                              ("superseded", "builtin.superseded")])
def test_retracted_and_superseded_records_are_withheld_silently(status: str, rule: str) -> None:
    decision = decide(POLICY, viewer=viewer(), purpose=CP, item=item(status=RecordStatus(status)),
                      consent=NO_CONSENT)

    assert (decision.kind, decision.rule_id) == (DecisionKind.WITHHOLD_SILENTLY, rule)


def test_detrimental_item_is_indicated_with_the_source_to_ask() -> None:
    decision = decide(POLICY, viewer=viewer(), purpose=CP, item=item("education", "education.safeguarding_concern",
                                                                      detrimental=True), consent=NO_CONSENT)

    assert decision.kind is DecisionKind.INDICATE
    assert "s16LA" in decision.reason
    assert decision.ask == "the education member of the MACPT"


@pytest.mark.parametrize(("label", "words"), [("PSY", "mental health"), ("HIV", "HIV"), ("SEX", "sexual health"),
                                              ("STD", "sexually transmitted"), ("ETH", "substance"), ("R", "restricted"),
                                              ("V", "very restricted")])
def test_special_categories_are_indicated_not_shown(label: str, words: str) -> None:
    decision = decide(POLICY, viewer=viewer("social_care"), purpose=CP,
                      item=item(security_labels=frozenset({label, "NORMAL-OTHER"})), consent=NO_CONSENT)

    assert decision.kind is DecisionKind.INDICATE
    assert decision.rule_id == "builtin.special-category"
    assert words in decision.reason
    assert decision.ask == "the health member of the MACPT"


def test_gender_identity_history_warns_of_the_offence() -> None:
    decision = decide(POLICY, viewer=viewer(), purpose=CP,
                      item=item(security_labels=frozenset({"gender-identity-history", "PSY"})), consent=NO_CONSENT)

    assert decision.rule_id == "builtin.gender-identity"
    assert "Gender Recognition Act 2004 s22" in decision.reason


def test_gdis_is_genetic_disease_information_not_gender_identity() -> None:
    decision = decide(POLICY, viewer=viewer(), purpose=CP, item=item(security_labels=frozenset({"GDIS"})),
                      consent=NO_CONSENT)

    assert (decision.kind, decision.rule_id) == (DecisionKind.INDICATE, "builtin.special-category")
    assert "genetic disease information" in decision.reason and "Gender Recognition" not in decision.reason


def test_unknown_labels_do_not_block_sharing() -> None:
    decision = decide(POLICY, viewer=viewer(), purpose=CP, item=item(security_labels=frozenset({"N"})),
                      consent=NO_CONSENT)

    assert decision.kind is DecisionKind.DISCLOSE


def test_police_handling_code_c_is_indicated_and_p_is_shared() -> None:
    intelligence = "police.intelligence"
    held = decide(POLICY, viewer=viewer("health"), purpose=CP,
                  item=item("police", intelligence, police_handling_code="C"), consent=NO_CONSENT)
    shared = decide(POLICY, viewer=viewer("health"), purpose=CP,
                    item=item("police", intelligence, police_handling_code="P"), consent=NO_CONSENT)

    assert held.kind is DecisionKind.INDICATE
    assert "police hold further information" in held.reason
    assert held.ask == "the police member of the MACPT"
    assert shared.kind is DecisionKind.DISCLOSE


def test_family_help_shares_only_with_consent() -> None:
    given = decide(POLICY, viewer=viewer(), purpose=FH, item=item(), consent=consent(ConsentStatus.GIVEN))
    unknown = decide(POLICY, viewer=viewer(), purpose=FH, item=item(), consent=NO_CONSENT)

    assert (given.kind, given.rule_id, given.lawful_basis) == (DecisionKind.DISCLOSE, "fh.with-consent", "consent")
    assert (unknown.kind, unknown.rule_id) == (DecisionKind.INDICATE, "builtin.consent-not-recorded")
    assert "No consent is recorded for sharing health records for family_help" in unknown.reason
    assert "fh.with-consent" in unknown.reason and unknown.ask == "the health member of the MACPT"


@pytest.mark.parametrize("status", [ConsentStatus.REFUSED, ConsentStatus.WITHDRAWN])
def test_family_help_refusal_is_indicated(status: ConsentStatus) -> None:
    decision = decide(POLICY, viewer=viewer(), purpose=FH, item=item(), consent=consent(status))

    assert decision.kind is DecisionKind.INDICATE
    assert decision.rule_id == "builtin.consent-not-given"
    assert status.value in decision.reason


def test_newest_consent_wins_and_scope_is_respected() -> None:
    withdrawn_then_given = ConsentState((
        ConsentFact(ConsentStatus.WITHDRAWN, FH, frozenset({Agency.HEALTH})),
        ConsentFact(ConsentStatus.GIVEN, FH, frozenset({Agency.HEALTH})),
    ))
    other_agency = consent(ConsentStatus.GIVEN, agency="police")
    other_category = consent(ConsentStatus.GIVEN, categories=frozenset({"health.condition"}))
    this_category = consent(ConsentStatus.GIVEN, categories=frozenset({"health.urgent_care"}))
    other_purpose = ConsentState((ConsentFact(ConsentStatus.GIVEN, CP, frozenset({Agency.HEALTH})),))

    assert withdrawn_then_given.status_for(FH, Agency.HEALTH, "health.urgent_care") is ConsentStatus.WITHDRAWN
    assert decide(POLICY, viewer=viewer(), purpose=FH, item=item(), consent=other_agency).kind is DecisionKind.INDICATE
    assert decide(POLICY, viewer=viewer(), purpose=FH, item=item(), consent=other_category).kind is DecisionKind.INDICATE
    assert decide(POLICY, viewer=viewer(), purpose=FH, item=item(), consent=this_category).kind is DecisionKind.DISCLOSE
    assert other_purpose.status_for(FH, Agency.HEALTH, "health.urgent_care") is None


def test_police_intelligence_is_never_shared_for_family_help() -> None:
    decision = decide(POLICY, viewer=viewer(), purpose=FH, item=item("police", "police.intelligence"),
                      consent=consent(ConsentStatus.GIVEN, agency="police"))

    assert decision.rule_id == "builtin.default-deny"


def test_a_later_rule_without_consent_wins_over_one_awaiting_it() -> None:
    policy = load_policy_text(REDACTING.replace("rules:", """rules:
  - id: needs-consent
    description: d
    purposes: [child_protection]
    source_agencies: [health]
    categories: ["*"]
    viewer_agencies: [education]
    requires_consent: true
    decision: disclose
    lawful_basis: public_task
    reason: With consent."""))

    decision = decide(policy, viewer=viewer("education"), purpose=CP, item=item(), consent=NO_CONSENT)

    assert decision.rule_id == "redact-summary"


def test_break_glass_is_not_enough_for_family_help() -> None:
    decision = decide(POLICY, viewer=viewer(relationship=Relationship.BREAK_GLASS), purpose=FH, item=item(),
                      consent=consent(ConsentStatus.GIVEN))

    assert decision.rule_id == "builtin.default-deny"


REDACTING = """
id: t
version: "1"
title: t
lawful_bases: {public_task: "Art 6(1)(e)"}
rules:
  - id: redact-summary
    description: d
    purposes: [child_protection]
    source_agencies: [health]
    categories: ["*"]
    viewer_agencies: [education]
    decision: redact
    redact_fields: [summary]
    lawful_basis: public_task
    reason: Shared without the summary.
"""


def test_redact_rules_name_the_fields_and_wildcards_match_any_category() -> None:
    policy = load_policy_text(REDACTING)

    decision = decide(policy, viewer=viewer("education"), purpose=CP, item=item(category="health.condition"),
                      consent=NO_CONSENT)

    assert decision.kind is DecisionKind.REDACT
    assert decision.redacted_fields == ("summary",)
    assert decision.shown


def test_every_agency_has_a_member_to_ask() -> None:
    from policies import member_to_ask

    assert member_to_ask(Agency.SOCIAL_CARE) == "the lead child protection practitioner"
    assert {member_to_ask(agency) for agency in Agency} == {
        "the health member of the MACPT",
        "the police member of the MACPT",
        "the education member of the MACPT",
        "the lead child protection practitioner",
    }


@pytest.mark.parametrize(
    "facts",
    [
        item(),
        item("police", "police.incident", police_handling_code="C"),
        item(security_labels=frozenset({"PSY"})),
        item(status=RecordStatus.ENTERED_IN_ERROR),
        item(detrimental=True),
    ],
)
@pytest.mark.parametrize("purpose", [CP, FH])
def test_the_item_id_never_changes_a_decision(facts: ItemFacts, purpose: Purpose) -> None:
    # Callers decide once per kind of item on the strength of this (decide's contract).
    other = replace(facts, item_id="another-item")

    for state in (NO_CONSENT, consent(ConsentStatus.GIVEN), consent(ConsentStatus.REFUSED)):
        assert decide(POLICY, viewer=viewer(), purpose=purpose, item=other, consent=state) == decide(
            POLICY, viewer=viewer(), purpose=purpose, item=facts, consent=state
        )

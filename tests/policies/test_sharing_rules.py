"""The engine's sharing workflow: consent in time, overrides, approved requests, the compiled lookups."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from policies import (
    Agency,
    ConsentFact,
    ConsentState,
    ConsentStatus,
    Decision,
    DecisionKind,
    ItemFacts,
    OverrideFact,
    PolicyError,
    Purpose,
    RecordKind,
    Relationship,
    Viewer,
    decide,
    default_policy,
    load_policy_text,
)
from policies.isa import Rule

POLICY = default_policy()
CP, FH = Purpose.CHILD_PROTECTION, Purpose.FAMILY_HELP
T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
MEMBER = Viewer(Agency.POLICE, "police_officer", Relationship.ALLOCATED_TEAM)
URGENT = ItemFacts("i1", Agency.HEALTH, RecordKind.ENCOUNTER, "health.urgent_care")


def given(
    at: datetime,
    *,
    agencies: frozenset[Agency] = frozenset(),
    period_start: datetime | None = None,
    period_end: datetime | None = None,
) -> ConsentFact:
    return ConsentFact(
        ConsentStatus.GIVEN, FH, agencies, recorded_at=at, period_start=period_start, period_end=period_end
    )


def decide_at(
    moment: datetime,
    facts: list[ConsentFact],
    overrides: tuple[OverrideFact, ...] = (),
    *,
    item: ItemFacts = URGENT,
    purpose: Purpose = FH,
) -> Decision:
    consent = ConsentState.at(moment, facts, overrides)
    return decide(POLICY, viewer=MEMBER, purpose=purpose, item=item, consent=consent)


def test_a_withdrawal_stops_disclosure_from_when_it_was_recorded_not_before() -> None:
    history = [
        ConsentFact(ConsentStatus.WITHDRAWN, FH, recorded_at=T0 + timedelta(days=10)),
        given(T0),
    ]

    before = decide_at(T0 + timedelta(days=9, hours=23), history)
    after = decide_at(T0 + timedelta(days=10), history)
    not_yet = decide_at(T0 - timedelta(seconds=1), history)

    assert (before.kind, before.rule_id, before.lawful_basis) == (DecisionKind.DISCLOSE, "fh.with-consent", "consent")
    assert (after.kind, after.rule_id) == (DecisionKind.INDICATE, "builtin.consent-not-given")
    assert "withdrawn" in after.reason
    assert (not_yet.kind, not_yet.rule_id) == (DecisionKind.INDICATE, "builtin.consent-not-recorded")


def test_consent_applies_only_within_its_period() -> None:
    bounded = [given(T0, period_start=T0 + timedelta(days=1), period_end=T0 + timedelta(days=30))]

    assert decide_at(T0 + timedelta(hours=1), bounded).kind is DecisionKind.INDICATE
    assert decide_at(T0 + timedelta(days=1), bounded).kind is DecisionKind.DISCLOSE
    assert decide_at(T0 + timedelta(days=30), bounded).rule_id == "builtin.consent-not-recorded"


def test_empty_agencies_and_categories_mean_every_agency_and_category() -> None:
    everything = given(T0)
    only_police = given(T0, agencies=frozenset({Agency.POLICE}))

    assert everything.covers(FH, Agency.EDUCATION, "education.attendance")
    assert not only_police.covers(FH, Agency.HEALTH, "health.urgent_care")
    assert not everything.covers(CP, Agency.HEALTH, "health.urgent_care")


def test_decisions_recorded_at_the_same_instant_keep_the_callers_newest_first_order() -> None:
    state = ConsentState.at(T0, [ConsentFact(ConsentStatus.REFUSED, FH, recorded_at=T0), given(T0)])

    assert state.status_for(FH, Agency.HEALTH, "health.urgent_care") is ConsentStatus.REFUSED


def override(starts: datetime = T0, days: int = 90, *, agencies: frozenset[Agency] = frozenset()) -> OverrideFact:
    return OverrideFact("o-1", FH, "public_task", starts, starts + timedelta(days=days), agencies)


def test_an_override_in_force_shares_against_a_refusal_on_its_own_basis() -> None:
    refused = [ConsentFact(ConsentStatus.REFUSED, FH, recorded_at=T0)]

    decision = decide_at(T0 + timedelta(days=1), refused, (override(),))

    assert (decision.kind, decision.rule_id, decision.lawful_basis) == (DecisionKind.DISCLOSE, "builtin.override", "public_task")
    assert "o-1" in decision.reason and "fh.with-consent" in decision.reason


def test_an_override_shares_where_no_consent_is_recorded() -> None:
    decision = decide_at(T0 + timedelta(days=1), [], (override(),))

    assert (decision.kind, decision.rule_id) == (DecisionKind.DISCLOSE, "builtin.override")


def test_an_expired_or_future_override_stops_applying() -> None:
    refused = [ConsentFact(ConsentStatus.REFUSED, FH, recorded_at=T0)]
    short = override(days=7)

    assert decide_at(T0 + timedelta(days=6), refused, (short,)).kind is DecisionKind.DISCLOSE
    expired = decide_at(T0 + timedelta(days=7), refused, (short,))
    future = decide_at(T0 - timedelta(hours=1), [], (short,))

    assert (expired.kind, expired.rule_id) == (DecisionKind.INDICATE, "builtin.consent-not-given")
    assert (future.kind, future.rule_id) == (DecisionKind.INDICATE, "builtin.consent-not-recorded")


def test_an_override_is_bounded_by_its_scope() -> None:
    police_only = override(agencies=frozenset({Agency.POLICE}))

    decision = decide_at(T0 + timedelta(days=1), [], (police_only,))

    assert decision.rule_id == "builtin.consent-not-recorded"
    assert ConsentState.at(T0, [], (police_only,)).override_for(CP, Agency.POLICE, "police.incident") is None


def test_an_override_never_reaches_what_the_isa_does_not_share() -> None:
    intelligence = ItemFacts("i1", Agency.POLICE, RecordKind.INTELLIGENCE, "police.intelligence", police_handling_code="P")

    decision = decide_at(T0 + timedelta(days=1), [], (override(),), item=intelligence)

    assert (decision.kind, decision.rule_id) == (DecisionKind.WITHHOLD_SILENTLY, "builtin.default-deny")


MENTAL_HEALTH = replace(URGENT, security_labels=frozenset({"PSY"}))
GENDER = replace(URGENT, security_labels=frozenset({"gender-identity-history"}))


def test_special_categories_are_withheld_but_requestable_where_a_rule_names_them() -> None:
    decision = decide_at(T0, [], item=MENTAL_HEALTH, purpose=CP)

    assert (decision.kind, decision.rule_id, decision.requestable) == (DecisionKind.INDICATE, "builtin.special-category", True)


def test_an_approved_request_discloses_a_special_category_item_under_the_rule_naming_it() -> None:
    decision = decide_at(T0, [], item=replace(MENTAL_HEALTH, approved_request="r-9"), purpose=CP)

    assert (decision.kind, decision.rule_id, decision.lawful_basis) == (DecisionKind.DISCLOSE, "builtin.approved-request", "public_task")
    assert "r-9" in decision.reason and "cp.health" in decision.reason and "mental health" in decision.reason


def test_gender_identity_history_stays_withheld_unless_the_isa_names_it() -> None:
    approved = replace(GENDER, approved_request="r-9")

    default = decide_at(T0, [], item=approved, purpose=CP)

    assert (default.kind, default.rule_id, default.requestable) == (DecisionKind.INDICATE, "builtin.gender-identity", False)
    naming = POLICY.model_copy(update={"rules": tuple(
        rule.model_copy(update={"special_categories": ("gender-identity-history",)}) if rule.id == "cp.health" else rule
        for rule in POLICY.rules
    )})
    unapproved = decide(naming, viewer=MEMBER, purpose=CP, item=GENDER, consent=ConsentState())
    opened = decide(naming, viewer=MEMBER, purpose=CP, item=approved, consent=ConsentState())
    assert (unapproved.kind, unapproved.requestable) == (DecisionKind.INDICATE, True)
    assert (opened.kind, opened.rule_id) == (DecisionKind.DISCLOSE, "builtin.approved-request")
    assert "gender identity history" in opened.reason


def test_an_approval_cannot_open_what_no_applicable_rule_names() -> None:
    # Family help with no consent: the rule naming nothing does not apply, so nothing opens.
    decision = decide_at(T0, [], item=replace(MENTAL_HEALTH, approved_request="r-9"), purpose=FH)

    assert (decision.kind, decision.rule_id, decision.requestable) == (DecisionKind.INDICATE, "builtin.special-category", False)


@pytest.mark.parametrize(
    ("facts", "rule"),
    [
        (ItemFacts("i1", Agency.POLICE, RecordKind.INTELLIGENCE, "police.intelligence", police_handling_code="C"), "builtin.police-handling-c"),
        (replace(MENTAL_HEALTH, detrimental=True), "builtin.detrimental"),
    ],
)
def test_an_approval_never_opens_handling_code_c_or_a_detrimental_item(facts: ItemFacts, rule: str) -> None:
    decision = decide_at(T0, [], item=replace(facts, approved_request="r-9"), purpose=CP)

    assert (decision.kind, decision.rule_id, decision.requestable) == (DecisionKind.INDICATE, rule, False)


def test_a_refusal_for_family_help_is_stated_before_the_special_category() -> None:
    refused = [ConsentFact(ConsentStatus.REFUSED, FH, recorded_at=T0)]

    decision = decide_at(T0, refused, item=MENTAL_HEALTH)

    assert decision.rule_id == "builtin.consent-not-given"


EMPTY_ISA = """
id: empty
version: "0"
title: An ISA with no rules
lawful_bases: {public_task: UK GDPR Art 6(1)(e)}
rules: []
"""


@pytest.mark.parametrize("purpose", [CP, FH])
def test_an_empty_policy_discloses_nothing(purpose: Purpose) -> None:
    empty = load_policy_text(EMPTY_ISA)
    consent = ConsentState.at(T0, [given(T0)], (override(),))

    for facts in (URGENT, replace(MENTAL_HEALTH, approved_request="r-1")):
        decision = decide(empty, viewer=MEMBER, purpose=purpose, item=facts, consent=consent)
        assert not decision.shown


def test_a_broken_policy_does_not_load() -> None:
    with pytest.raises(PolicyError, match=r"rules\.0\.special_categories"):
        load_policy_text(EMPTY_ISA.replace("rules: []", """rules:
  - id: r
    description: d
    purposes: [child_protection]
    source_agencies: [health]
    categories: ['*']
    viewer_agencies: [health]
    special_categories: [gender-identity]
    decision: disclose
    lawful_basis: public_task
    reason: r"""))


def test_the_compiled_lookup_answers_as_a_scan_and_learns_categories_outside_the_vocabulary() -> None:
    for rule_set in (POLICY.rules_for(CP, Agency.HEALTH, "health.condition", Agency.EDUCATION, Relationship.BREAK_GLASS),):
        assert [rule.id for rule in rule_set] == ["cp.health"]
    wildcard = load_policy_text(EMPTY_ISA.replace("rules: []", """rules:
  - id: any
    description: d
    purposes: [child_protection]
    source_agencies: [health]
    categories: ['*']
    viewer_agencies: [health]
    decision: disclose
    lawful_basis: public_task
    reason: r"""))
    first = wildcard.rules_for(CP, Agency.HEALTH, "health.not-yet-in-the-vocabulary", Agency.HEALTH, Relationship.ALLOCATED_TEAM)
    again = wildcard.rules_for(CP, Agency.HEALTH, "health.not-yet-in-the-vocabulary", Agency.HEALTH, Relationship.ALLOCATED_TEAM)
    assert [rule.id for rule in first] == ["any"] and again is first


def test_opens_needs_every_label_named() -> None:
    rule = next(rule for rule in POLICY.rules if rule.id == "cp.health")
    named = Rule.model_validate({**rule.model_dump(), "special_categories": ["PSY"]})

    assert named.opens(frozenset({"PSY"})) and not named.opens(frozenset({"PSY", "HIV"})) and not named.opens(frozenset())


def test_a_copy_with_other_rules_or_version_does_not_answer_from_its_originals_lookups() -> None:
    assert POLICY.rules_for(CP, Agency.HEALTH, "health.condition", Agency.POLICE, Relationship.ALLOCATED_TEAM)
    assert POLICY.decision_of(POLICY.rules[0]).policy_version == POLICY.version

    emptied = POLICY.model_copy(update={"rules": ()})
    renumbered = POLICY.model_copy(update={"version": "2099.1"})

    assert emptied.rules_for(CP, Agency.HEALTH, "health.condition", Agency.POLICE, Relationship.ALLOCATED_TEAM) == ()
    assert renumbered.decision_of(renumbered.rules[0]).policy_version == "2099.1"
    assert not decide(emptied, viewer=MEMBER, purpose=CP, item=URGENT, consent=ConsentState()).shown

"""The policy engine: ordered voters, an explicit combiner, deny by default.

After HAPI FHIR's consent service: each voter either decides or abstains. The protective
built-in voters come first and no ISA can override them; then the ISA's rules, in file order;
and when every voter abstains, nothing is disclosed.
"""

from __future__ import annotations

from collections.abc import Callable

from .isa import Policy, Rule
from .model import (
    GENDER_IDENTITY_HISTORY,
    GENDER_IDENTITY_LABELS,
    SPECIAL_CATEGORY_LABELS,
    Agency,
    ConsentState,
    ConsentStatus,
    Decision,
    DecisionKind,
    ItemFacts,
    OverrideFact,
    Purpose,
    RecordStatus,
    Relationship,
    Viewer,
    member_to_ask,
)

# The sensitivity vocabulary lives in .model (the ISA validates rules naming it); re-exported here.
__all__ = ["GENDER_IDENTITY_HISTORY", "GENDER_IDENTITY_LABELS", "SPECIAL_CATEGORY_LABELS", "decide"]
SENSITIVE_LABELS = frozenset(SPECIAL_CATEGORY_LABELS) | GENDER_IDENTITY_LABELS


class _Unread:
    """The consent status not looked up yet (None is an answer: no decision covers the item)."""


_UNREAD = _Unread()


class _Context:
    """Everything a voter may look at for one item."""

    __slots__ = ("policy", "compiled", "viewer", "purpose", "item", "consent", "_status")

    def __init__(self, policy: Policy, viewer: Viewer, purpose: Purpose, item: ItemFacts, consent: ConsentState):
        self.policy, self.viewer, self.purpose, self.item, self.consent = policy, viewer, purpose, item, consent
        self.compiled = policy.compiled()
        self._status: ConsentStatus | None | _Unread = _UNREAD

    def withhold(
        self, kind: DecisionKind, rule_id: str, reason: str, ask: str | None = None, *, requestable: bool = False
    ) -> Decision:
        return Decision(kind, rule_id, self.policy.version, None, reason, (), ask, requestable)

    def rules_in_scope(self) -> tuple[Rule, ...]:
        return self.compiled.rules_for(
            self.purpose, self.item.agency, self.item.category, self.viewer.agency, self.viewer.relationship
        )

    def consent_status(self) -> ConsentStatus | None:
        # Read at most once per decision: the family-help voter and the ISA's rules both ask.
        if isinstance(self._status, _Unread):
            self._status = self.consent.status_for(self.purpose, self.item.agency, self.item.category)
        return self._status

    def override(self) -> OverrideFact | None:
        return self.consent.override_for(self.purpose, self.item.agency, self.item.category)

    def rule_applies(self, rule: Rule) -> bool:
        """Say whether a rule in scope applies: it needs no consent, or consent is given, or an override is in force."""
        return not rule.requires_consent or self.consent_status() is ConsentStatus.GIVEN or self.override() is not None


Voter = Callable[[_Context], Decision | None]


def _no_relationship(ctx: _Context) -> Decision | None:
    if ctx.viewer.relationship is Relationship.NONE:
        return ctx.withhold(
            DecisionKind.WITHHOLD_SILENTLY, "builtin.no-relationship", "The viewer has no relationship to this child."
        )
    return None


def _record_status(ctx: _Context) -> Decision | None:
    if ctx.item.status is RecordStatus.ENTERED_IN_ERROR:
        return ctx.withhold(
            DecisionKind.WITHHOLD_SILENTLY, "builtin.entered-in-error", "The source retracted this record as entered in error."
        )
    if ctx.item.status is RecordStatus.SUPERSEDED:
        return ctx.withhold(
            DecisionKind.WITHHOLD_SILENTLY, "builtin.superseded", "A newer version of this record is shown instead."
        )
    return None


def _detrimental(ctx: _Context) -> Decision | None:
    if ctx.item.detrimental:
        return ctx.withhold(
            DecisionKind.INDICATE,
            "builtin.detrimental",
            "The source judged that disclosing this would be more detrimental to the child than not "
            "(Children Act 2004 s16LA exception).",
            member_to_ask(ctx.item.agency),
        )
    return None


def _special_category(ctx: _Context) -> Decision | None:
    labels = ctx.item.security_labels
    if not labels or labels.isdisjoint(SENSITIVE_LABELS):
        return None
    sensitive = labels & SENSITIVE_LABELS
    # A rule that applies and names these labels lets an approved request open the item, for the
    # one requester who stated a justification; gender identity history only if named outright.
    opening = next((rule for rule in ctx.rules_in_scope() if rule.opens(sensitive) and ctx.rule_applies(rule)), None)
    named = sorted(SPECIAL_CATEGORY_LABELS.get(label, "gender identity history") for label in sensitive)
    if opening is not None and ctx.item.approved_request is not None:
        return Decision(
            DecisionKind.DISCLOSE,
            "builtin.approved-request",
            ctx.policy.version,
            opening.lawful_basis,
            f"Disclosed to you alone on approved request {ctx.item.approved_request}: special category "
            f"information ({', '.join(named)}) that ISA rule {opening.id} lets an approved request open.",
        )
    if GENDER_IDENTITY_HISTORY in sensitive:
        return ctx.withhold(
            DecisionKind.INDICATE,
            "builtin.gender-identity",
            "Withheld: gender identity history. Disclosing it can be an offence under the Gender "
            "Recognition Act 2004 s22.",
            member_to_ask(ctx.item.agency),
            requestable=opening is not None,
        )
    return ctx.withhold(
        DecisionKind.INDICATE,
        "builtin.special-category",
        f"Withheld: special category information ({', '.join(named)}).",
        member_to_ask(ctx.item.agency),
        requestable=opening is not None,
    )


def _police_handling(ctx: _Context) -> Decision | None:
    if ctx.item.police_handling_code == "C":
        return ctx.withhold(
            DecisionKind.INDICATE,
            "builtin.police-handling-c",
            "The police hold further information about this child that is shared only under conditions "
            "(3x5x2 handling code C).",
            member_to_ask(Agency.POLICE),
        )
    return None


def _family_help_consent(ctx: _Context) -> Decision | None:
    if ctx.purpose is not Purpose.FAMILY_HELP:
        return None
    status = ctx.consent_status()
    if status in (ConsentStatus.REFUSED, ConsentStatus.WITHDRAWN) and ctx.override() is None:
        return ctx.withhold(
            DecisionKind.INDICATE,
            "builtin.consent-not-given",
            f"The family has {status.value} consent to share {ctx.item.agency} records for family help.",
            member_to_ask(ctx.item.agency),
        )
    return None


BUILTIN_VOTERS: tuple[Voter, ...] = (
    _no_relationship,
    _record_status,
    _detrimental,
    _police_handling,
    _family_help_consent,
    _special_category,
)


def _isa_rules(ctx: _Context) -> Decision | None:
    awaiting_consent: Rule | None = None
    for rule in ctx.rules_in_scope():
        if not rule.requires_consent or ctx.consent_status() is ConsentStatus.GIVEN:
            return ctx.compiled.decisions[rule.id]
        override = ctx.override()
        if override is not None:
            return Decision(
                DecisionKind(rule.decision),
                "builtin.override",
                ctx.policy.version,
                override.lawful_basis,
                f"Shared for {ctx.purpose.value} without the family's consent under override "
                f"{override.override_id}, recorded because seeking or respecting consent would place the "
                f"child at risk (ISA rule {rule.id}).",
                rule.redact_fields,
            )
        awaiting_consent = awaiting_consent or rule
    if awaiting_consent is not None:
        # The ISA would share this with consent, and none is recorded: the practitioner needs to
        # know that (to seek consent, or record an override), not an unexplained gap.
        return ctx.withhold(
            DecisionKind.INDICATE,
            "builtin.consent-not-recorded",
            f"No consent is recorded for sharing {ctx.item.agency} records for {ctx.purpose.value} "
            f"(ISA rule {awaiting_consent.id} needs it).",
            member_to_ask(ctx.item.agency),
        )
    return None


_VOTERS = (*BUILTIN_VOTERS, _isa_rules)


def _default_deny(ctx: _Context) -> Decision:
    return ctx.withhold(
        DecisionKind.WITHHOLD_SILENTLY,
        "builtin.default-deny",
        f"No rule in ISA {ctx.policy.id} v{ctx.policy.version} permits sharing this with "
        f"{ctx.viewer.agency} for {ctx.purpose.value}.",
    )


def decide(policy: Policy, *, viewer: Viewer, purpose: Purpose, item: ItemFacts, consent: ConsentState) -> Decision:
    """Decide what a viewer may see of one item.

    Contract:
    - Pure: the same arguments always give the same Decision; no I/O.
    - The built-in protective voters run first, in order: no relationship → withhold silently;
      entered in error or superseded → withhold silently; detrimental (s16LA) → indicate;
      police handling code C → indicate; family help with consent refused or withdrawn and no
      override in force → indicate; special category or gender identity labels → indicate,
      `requestable` when an applicable rule names the labels, or disclose (rule
      builtin.approved-request) when the item carries an approved request and such a rule
      exists. The first that decides wins, and no ISA rule can override it.
    - Then the ISA's rules in file order; the first that applies decides (disclose or redact). A
      rule that needs consent applies when consent is given; else, when an override is in
      force, it applies under the override (rule builtin.override, the override's lawful basis).
      If the only rules that would apply need consent and there is neither, indicate that no
      consent is recorded (rule builtin.consent-not-recorded).
    - When everything abstains, deny by default: withhold silently, rule builtin.default-deny.
    - Every Decision carries rule id, policy version and a reason a practitioner can read;
      shown decisions carry their lawful basis, withheld ones carry none.
    - No voter reads `item.item_id`: two items alike in every other fact (the approved request
      included) get the same Decision, so a caller deciding many items may decide once per kind
      of item.
    - The consent state is what was in force at the moment the caller decides for
      (`ConsentState.at`): the engine reads no clock.
    """
    ctx = _Context(policy, viewer, purpose, item, consent)
    for voter in _VOTERS:
        decision = voter(ctx)
        if decision is not None:
            return decision
    return _default_deny(ctx)


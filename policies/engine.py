"""The policy engine: ordered voters, an explicit combiner, deny by default.

After HAPI FHIR's consent service: each voter either decides or abstains. The protective
built-in voters come first and no ISA can override them; then the ISA's rules, in file order;
and when every voter abstains, nothing is disclosed.
"""

from __future__ import annotations

from collections.abc import Callable

from .isa import Policy, Rule
from .model import (
    Agency,
    ConsentState,
    ConsentStatus,
    Decision,
    DecisionKind,
    ItemFacts,
    Purpose,
    RecordStatus,
    Relationship,
    Viewer,
    member_to_ask,
)

# FHIR v3 ActCode sensitivity codes, and confidentiality R (restricted) / V (very restricted).
SPECIAL_CATEGORY_LABELS = {
    "SEX": "sexual health",
    "STD": "sexually transmitted infection",
    "HIV": "HIV",
    "ETH": "substance misuse",
    "PSY": "mental health",
    "R": "restricted (confidentiality R)",
    "V": "very restricted (confidentiality V)",
    "GDIS": "genetic disease information",
}
# Gender identity history: disclosing it can be an offence (Gender Recognition Act 2004 s22). No
# v3 ActCode code covers it (GDIS is genetic disease information, a special category above), so
# the gateway's own code system defines it (urn:macpt-gateway:CodeSystem:sharing, beside the
# s16LA mark; adapters/nhs_fhir.py and the README document it).
GENDER_IDENTITY_HISTORY = "gender-identity-history"
GENDER_IDENTITY_LABELS = {GENDER_IDENTITY_HISTORY}


class _Context:
    """Everything a voter may look at for one item."""

    __slots__ = ("policy", "viewer", "purpose", "item", "consent")

    def __init__(self, policy: Policy, viewer: Viewer, purpose: Purpose, item: ItemFacts, consent: ConsentState):
        self.policy, self.viewer, self.purpose, self.item, self.consent = policy, viewer, purpose, item, consent

    def withhold(self, kind: DecisionKind, rule_id: str, reason: str, ask: str | None = None) -> Decision:
        return Decision(kind, rule_id, self.policy.version, None, reason, (), ask)


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
    if labels & GENDER_IDENTITY_LABELS:
        return ctx.withhold(
            DecisionKind.INDICATE,
            "builtin.gender-identity",
            "Withheld: gender identity history. Disclosing it can be an offence under the Gender "
            "Recognition Act 2004 s22.",
            member_to_ask(ctx.item.agency),
        )
    named = sorted(SPECIAL_CATEGORY_LABELS[label] for label in labels if label in SPECIAL_CATEGORY_LABELS)
    if named:
        # Justified disclosure of special categories (a rule naming them, plus the viewer's stated
        # justification) comes in a later stage; until then they are indicated, never shown.
        return ctx.withhold(
            DecisionKind.INDICATE,
            "builtin.special-category",
            f"Withheld: special category information ({', '.join(named)}).",
            member_to_ask(ctx.item.agency),
        )
    return None


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
    status = ctx.consent.status_for(ctx.purpose, ctx.item.agency, ctx.item.category)
    if status in (ConsentStatus.REFUSED, ConsentStatus.WITHDRAWN):
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
    _special_category,
    _police_handling,
    _family_help_consent,
)


def _rule_scope_matches(rule: Rule, ctx: _Context) -> bool:
    if ctx.purpose not in rule.purposes:
        return False
    if ctx.item.agency not in rule.source_agencies or not rule.matches_category(ctx.item.category):
        return False
    return ctx.viewer.agency in rule.viewer_agencies and ctx.viewer.relationship in rule.viewer_relationships


def _isa_rules(ctx: _Context) -> Decision | None:
    awaiting_consent: Rule | None = None
    for rule in ctx.policy.rules:
        if not _rule_scope_matches(rule, ctx):
            continue
        if rule.requires_consent and (
            ctx.consent.status_for(ctx.purpose, ctx.item.agency, ctx.item.category) is not ConsentStatus.GIVEN
        ):
            awaiting_consent = awaiting_consent or rule
            continue
        return Decision(
            DecisionKind(rule.decision),
            rule.id,
            ctx.policy.version,
            rule.lawful_basis,
            rule.reason,
            rule.redact_fields,
        )
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
      gender identity or special category labels → indicate; police handling code C →
      indicate; family help with consent refused or withdrawn → indicate. The first that
      decides wins, and no ISA rule can override it.
    - Then the ISA's rules in file order; the first that applies decides (disclose or redact).
      If the only rules that would apply need consent and none is given, indicate that no
      consent is recorded (rule builtin.consent-not-recorded).
    - When everything abstains, deny by default: withhold silently, rule builtin.default-deny.
    - Every Decision carries rule id, policy version and a reason a practitioner can read;
      shown decisions carry their lawful basis, withheld ones carry none.
    - No voter reads `item.item_id`: two items alike in every other fact get the same Decision,
      so a caller deciding many items may decide once per kind of item.
    """
    ctx = _Context(policy, viewer, purpose, item, consent)
    for voter in (*BUILTIN_VOTERS, _isa_rules):
        decision = voter(ctx)
        if decision is not None:
            return decision
    return _default_deny(ctx)


"""The merged view of a child, in four steps: load, decide, project, audit.

- load: the child's aggregate from the repository, through the access that opened it; items
  come as plain rows (a view may hold hundreds, and ORM objects cost more than the rest of it);
- decide: one policy Decision per item, taken once (pure: no I/O);
- project: the response, showing only what the decisions let the viewer see, unsealing only
  the summaries shown;
- audit: one event naming every item's decision and the rule that took it.

Later capabilities extend one step each: people and key facts extend load and project,
overrides and break-glass extend decide, disclosures extend audit.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime

from opentelemetry import trace
from sqlalchemy.orm import Session

from adapters import IdentityClaim
from adapters.ukcore import ALERT_CODES
from audit import AuditAction, ItemDecisionRef, Outcome, ReviewReason
from gateway.auth.principal import Principal
from gateway.cases import repository as cases_repository
from gateway.cases.access import ChildAccess
from gateway.cases.schemas import ChildProtectionPlanRead
from gateway.cases.service import require_child_access
from gateway.consents import service as consents_service
from gateway.identity.service import get_linked_identities, read_claim
from gateway.kit.auditor import Auditor
from gateway.kit.crypto import ChildErased, DataKeyring, OpenedKey
from gateway.kit.errors import Forbidden
from gateway.models import (
    Case,
    ChildMerge,
    Client,
    Consent,
    Identity,
    Item,
    ItemContent,
    ItemDetail,
    Link,
    Override,
    Team,
    utcnow,
)
from policies import (
    Agency,
    CaseStatus,
    ConsentFact,
    ConsentStatus,
    ConsentState,
    Decision,
    DecisionKind,
    ItemFacts,
    OverrideFact,
    Policy,
    Purpose,
    RecordStatus,
    Relationship,
    Viewer,
    decide,
)

from . import repository
from .repository import ItemRow
from .schemas import (
    ChildViewRead,
    ConflictRead,
    ConflictValue,
    ConsentRead,
    ConsentStateRead,
    DecisionRead,
    IdentityRead,
    HealthFlagRead,
    KeyFactsRead,
    LinkingEventRead,
    LinkingRead,
    LocationRead,
    OverrideRead,
    PersonRead,
    PolicyRead,
    SourceRead,
    TeamRead,
    TimelineEntry,
    WithheldRead,
)

tracer = trace.get_tracer("gateway.child_view")

# Identity fields compared across sources; a difference is a conflict worth a practitioner's eye.
CONFLICT_FIELDS = ("nhs_number", "family_name", "given_names", "birth_date", "sex", "postcode")

# Shown in place of a summary the decision redacts.
REDACTED = "[redacted]"

# Every item with its decision, in the order loaded (newest first).
Decided = list[tuple[ItemRow, Decision]]


@dataclass(frozen=True)
class ChildAggregate:
    """Everything the view of one child is made from, loaded once."""

    access: ChildAccess
    data_key: bytes
    case: Case | None
    team: Team | None
    # The display name of the team member the case names as lead (None when it names no member).
    lead_practitioner_name: str | None
    identities: list[tuple[Identity, IdentityClaim]]
    links: dict[uuid.UUID, Link]
    items: list[ItemRow]
    clients: dict[str, Client]
    consents: list[Consent]
    overrides: list[Override]
    merged_into: uuid.UUID | None
    merges: list[ChildMerge]
    proposed_links: int
    # The viewer's own approved requests to see: item id → request id (for the view's purpose).
    approvals: dict[uuid.UUID, uuid.UUID]
    # The moment the view is decided for: consent and overrides are read as in force then.
    at: datetime


def get(
    session: Session,
    principal: Principal,
    *,
    auditor: Auditor,
    keyring: DataKeyring,
    policy: Policy,
    child_id: uuid.UUID,
    purpose: Purpose,
) -> ChildViewRead:
    """Return the merged view of a child for a purpose, auditing every item's decision."""
    with tracer.start_as_current_span("view") as span:
        span.set_attribute("gateway.purpose", purpose.value)
        access = require_child_access(session, principal, auditor=auditor, child_id=child_id, purpose=purpose)
        if access.relationship is Relationship.BREAK_GLASS and purpose is not Purpose.CHILD_PROTECTION:
            raise auditor.refuse(
                Forbidden(
                    "Break-glass access is for child protection only. This refusal has been recorded."
                ),
                AuditAction.STAFF_VIEW_REFUSED,
                child_id=child_id,
                purpose=purpose,
                detail={"reason": "break_glass_purpose"},
            )
        try:
            aggregate = load(session, access, keyring=keyring)
        except ChildErased as erased:
            raise auditor.refuse(
                erased, AuditAction.STAFF_VIEW_REFUSED, child_id=child_id, purpose=purpose, detail={"reason": "erased"}
            ) from None
        with tracer.start_as_current_span("decide") as decide_span:
            decided = decide_items(aggregate, policy=policy, purpose=purpose)
            if any(decision.requestable for _item, decision in decided):
                # Only an item a request could open can have been opened by one: look for the
                # viewer's approvals then, not on every view.
                approvals = repository.get_approved_requests(session, access, purpose=purpose)
                if approvals:
                    aggregate = replace(aggregate, approvals=approvals)
                    decided = decide_items(aggregate, policy=policy, purpose=purpose)
            decide_span.set_attribute("gateway.items_decided", len(decided))
        view = project(aggregate, decided, policy=policy, purpose=purpose)
        with tracer.start_as_current_span("audit"):
            audit_view(auditor, aggregate, decided, policy=policy, purpose=purpose)
        return view


def load(session: Session, access: ChildAccess, *, keyring: DataKeyring) -> ChildAggregate:
    """Load the child's aggregate; raise ChildErased when its key has been destroyed."""
    with tracer.start_as_current_span("load"):
        child = repository.get_child(session, access)
        data_key = keyring.unwrap(child.wrapped_data_key)
        # None under break-glass for a child that no team has a case for yet.
        allocation = cases_repository.get_allocation(session, access)
        case, team, lead_name = allocation if allocation is not None else (None, None, None)
        identities = get_linked_identities(session, access)
        items = repository.get_items(session, access)
        clients = repository.get_clients(
            session, client_ids={i.client_id for i in identities} | {i.client_id for i in items}
        )
        return ChildAggregate(
            access=access,
            data_key=data_key,
            case=case,
            team=team,
            lead_practitioner_name=lead_name,
            identities=[(identity, read_claim(data_key, identity)) for identity in identities],
            links=repository.get_links(session, access),
            items=items,
            clients=clients,
            consents=repository.get_consents(session, access),
            overrides=repository.get_overrides(session, access),
            merged_into=child.merged_into_id,
            merges=repository.get_merges(session, access),
            proposed_links=repository.count_proposed_links(session, access),
            # Filled by get() when a decision says a request could open an item (most views have none).
            approvals={},
            at=utcnow(),
        )


def decide_items(aggregate: ChildAggregate, *, policy: Policy, purpose: Purpose) -> Decided:
    """Decide what the viewer may see of every item, once each (pure)."""
    access = aggregate.access
    viewer = Viewer(agency=access.agency, role=access.role, relationship=access.relationship)
    consent = consent_state(aggregate.consents, aggregate.overrides, at=aggregate.at)
    approvals = aggregate.approvals
    # The engine reads every fact of an item but its id (policies.decide's contract), so items
    # alike in all the rest get the same decision: take it once per kind of item, not per item.
    # A child's hundreds of items come in a handful of kinds.
    decisions: dict[tuple[object, ...], Decision] = {}
    decided: Decided = []
    for item in aggregate.items:
        approved = approvals.get(item.id) if approvals else None
        alike = (*_alike(item), approved)
        decision = decisions.get(alike)
        if decision is None:
            decision = decisions[alike] = decide(
                policy, viewer=viewer, purpose=purpose, item=item_facts(item, approved), consent=consent
            )
        decided.append((item, decision))
    return decided


def decide_one(session: Session, access: ChildAccess, *, policy: Policy, purpose: Purpose, item: Item) -> Decision:
    """Decide one stored item for the viewer the access names, now, as their view would."""
    approvals = repository.get_approved_requests(session, access, purpose=purpose)
    consent = consent_state(
        repository.get_consents(session, access), repository.get_overrides(session, access), at=utcnow()
    )
    facts = item_facts(item, approvals.get(item.id))
    viewer = Viewer(agency=access.agency, role=access.role, relationship=access.relationship)
    return decide(policy, viewer=viewer, purpose=purpose, item=facts, consent=consent)


def project(aggregate: ChildAggregate, decided: Decided, *, policy: Policy, purpose: Purpose) -> ChildViewRead:
    """Build the response: only what the decisions show, unsealed only when shown."""
    with tracer.start_as_current_span("project"):
        shown: Decided = []
        indicated: Decided = []
        for item, decision in decided:
            if decision.shown:
                shown.append((item, decision))
            elif decision.kind is DecisionKind.INDICATE:
                indicated.append((item, decision))
        identities = [_identity(aggregate, identity, claim) for identity, claim in aggregate.identities]
        details = _details(aggregate, shown)
        return ChildViewRead(
            child_id=aggregate.access.child_id,
            purpose=purpose,
            generated_at=datetime.now(UTC),
            policy=PolicyRead(id=policy.id, version=policy.version),
            relationship=aggregate.access.relationship,
            identities=identities,
            conflicts=_conflicts(identities),
            key_facts=KeyFactsRead(
                open_case=aggregate.case is not None and aggregate.case.status is CaseStatus.OPEN,
                allocated_team=None if aggregate.team is None else TeamRead.model_validate(aggregate.team),
                # The lead's name when the case names a member (by subject); else as stored (older rows hold a name).
                lead_practitioner=None
                if aggregate.case is None
                else aggregate.lead_practitioner_name or aggregate.case.lead_practitioner,
                child_protection_plan=None if aggregate.case is None else ChildProtectionPlanRead.of_case(aggregate.case),
                looked_after=aggregate.case is not None and aggregate.case.looked_after,
                looked_after_since=None if aggregate.case is None else aggregate.case.looked_after_since,
                health_flags=_health_flags(shown, details, today=aggregate.at.date()),
            ),
            timeline=_timeline(aggregate, shown, details),
            people=[
                PersonRead(
                    name=person.name,
                    role=person.role,
                    relationship=person.relationship,
                    birth_date=person.birth_date,
                    item_id=item.id,
                    agency=item.agency,
                )
                for item, decision in shown
                if item.id in details and "people" not in decision.redacted_fields
                for person in details[item.id].people
            ],
            locations=[
                LocationRead(description=location, item_id=item.id, agency=item.agency)
                for item, decision in shown
                if item.id in details and "locations" not in decision.redacted_fields
                for location in details[item.id].locations
            ],
            consent=_consent_state_read(aggregate),
            withheld=_withheld(indicated),
            linking=_linking(aggregate),
        )


def audit_view(
    auditor: Auditor, aggregate: ChildAggregate, decided: Decided, *, policy: Policy, purpose: Purpose
) -> None:
    """Record the view: every item's decision and rule, and the lawful bases of what was shown."""
    from gateway.policy_admin.loaded import sha256_of  # the hash of the ISA text a loaded policy came from

    bases = sorted({d.lawful_basis for _item, d in decided if d.shown and d.lawful_basis})
    auditor.record(
        AuditAction.STAFF_VIEW_OPENED,
        Outcome.SUCCESS,
        child_id=aggregate.access.child_id,
        purpose=purpose,
        lawful_basis="; ".join(bases) or None,
        policy_version=f"{policy.id}@{policy.version}",
        items=[ItemDecisionRef(item=item.id, decision=d.kind.value, rule=d.rule_id) for item, d in decided],
        detail={
            "relationship": aggregate.access.relationship.value,
            "team_id": None if aggregate.team is None else str(aggregate.team.id),
            # The exact ISA text that took these decisions is stored under this hash (policy_version).
            "policy_sha256": sha256_of(policy),
        },
        # Every view under break-glass goes to the IG review queue.
        review=[ReviewReason.BREAK_GLASS] if aggregate.access.relationship is Relationship.BREAK_GLASS else (),
    )


def consent_state(consents: Iterable[Consent], overrides: Iterable[Override], *, at: datetime) -> ConsentState:
    """Return the consent decisions and overrides in force at `at`, as the policy engine reads them.

    `consents` newest first: decisions recorded at the same instant keep that order.
    """
    return ConsentState.at(
        at,
        (
            ConsentFact(
                status=c.status,
                purpose=c.purpose,
                agencies=frozenset(Agency(a) for a in c.agencies),
                categories=frozenset(c.categories),
                recorded_at=c.recorded_at,
                period_start=c.period_start,
                period_end=c.period_end,
            )
            for c in consents
        ),
        (
            OverrideFact(
                override_id=str(o.id),
                purpose=o.purpose,
                lawful_basis=o.lawful_basis,
                starts_at=o.created_at,
                # An override without an expiry (none can be recorded so since issue 11) never applied.
                expires_at=o.expires_at or o.created_at,
                agencies=frozenset(Agency(a) for a in o.agencies),
                categories=frozenset(o.categories),
            )
            for o in overrides
        ),
    )


def _alike(item: ItemRow) -> tuple[object, ...]:
    # Every fact item_facts gives the engine but the id: keep the two in step.
    return (
        item.agency,
        item.kind,
        item.category,
        item.security_labels,
        item.police_handling_code,
        item.status,
        item.detrimental,
    )


def item_facts(item: ItemRow | Item, approved_request: uuid.UUID | None = None) -> ItemFacts:
    """Return what the policy engine may know of an item, a view's row or a stored one (never its contents)."""
    return ItemFacts(
        item_id=str(item.id),
        agency=item.agency,
        kind=item.kind,
        category=item.category,
        # A row's labels are a frozenset already (no copy); a stored Item's are a JSON list.
        security_labels=frozenset(item.security_labels or ()),
        police_handling_code=item.police_handling_code,
        status=item.status,
        detrimental=item.detrimental,
        approved_request=None if approved_request is None else str(approved_request),
    )


def _identity(aggregate: ChildAggregate, identity: Identity, claim: IdentityClaim) -> IdentityRead:
    claimed = {name: getattr(claim, name) for name in IdentityRead.model_fields if hasattr(claim, name)}
    return IdentityRead(
        **claimed,
        source=SourceRead.model_validate(aggregate.clients[identity.client_id]),
        received_at=identity.received_at,
        link_method=aggregate.links[identity.id].method,
    )


def _linking(aggregate: ChildAggregate) -> LinkingRead:
    child_id = aggregate.access.child_id
    return LinkingRead(
        merged_into=aggregate.merged_into,
        proposed_links=aggregate.proposed_links,
        history=[
            LinkingEventRead(
                merge_id=merge.id,
                kind=merge.kind.value,
                direction="out_of_this_child" if merge.child_id == child_id else "into_this_child",
                other_child_id=merge.into_child_id if merge.child_id == child_id else merge.child_id,
                source_records=len(merge.source_records),
                at=merge.merged_at,
                by=merge.merged_by,
                reason=merge.reason,
                unmerged_at=merge.unmerged_at,
                unmerged_by=merge.unmerged_by,
                unmerge_reason=merge.unmerge_reason,
            )
            for merge in aggregate.merges
        ],
    )


def _conflicts(identities: list[IdentityRead]) -> list[ConflictRead]:
    conflicts = []
    for field in CONFLICT_FIELDS:
        by_value: dict[str, list[str]] = defaultdict(list)
        for identity in identities:
            value = getattr(identity, field)
            if value in (None, [], ""):
                continue
            rendered = " ".join(value) if isinstance(value, list) else str(value)
            if identity.source.client_id not in by_value[rendered]:
                by_value[rendered].append(identity.source.client_id)
        if len(by_value) > 1:
            conflicts.append(
                ConflictRead(
                    field=field,
                    values=[ConflictValue(value=v, sources=s) for v, s in sorted(by_value.items())],
                )
            )
    return conflicts


def _details(aggregate: ChildAggregate, shown: Decided) -> dict[uuid.UUID, ItemDetail]:
    """Unseal the people, locations and grading of the shown items that carry any (police records)."""
    key = OpenedKey(aggregate.data_key)
    return {
        item.id: key.unseal_value(item.sealed_detail, ItemDetail, context=Item.context_for(item.id, "detail"))
        for item, _decision in shown
        if item.sealed_detail is not None
    }


_ALERT_LABELS: dict[str, str] = {str(code): label for code, label in ALERT_CODES.items()}


def _health_flags(shown: Decided, details: dict[uuid.UUID, ItemDetail], *, today: date) -> list[HealthFlagRead]:
    """The CP-IS style flags in force on the shown records: active, and their period covering today."""
    flags = []
    for item, decision in shown:
        alert = details[item.id].alert if item.id in details else None
        if alert is None or not alert.active or item.status is not RecordStatus.CURRENT or "summary" in decision.redacted_fields:
            continue
        if (alert.start is None or alert.start <= today) and (alert.end is None or today <= alert.end):
            flags.append(
                HealthFlagRead(
                    code=alert.code, label=_ALERT_LABELS.get(alert.code, alert.code),
                    since=alert.start, until=alert.end, agency=item.agency, item_id=item.id,
                )
            )
    return flags


def _timeline(aggregate: ChildAggregate, shown: Decided, details: dict[uuid.UUID, ItemDetail]) -> list[TimelineEntry]:
    # Entries share one SourceRead per source and one DecisionRead per distinct decision, built once
    # here instead of once per entry. The entries themselves are still validated: with values
    # already of their fields' types and nested models passed through as they are, pydantic-core
    # validates an entry in half the time model_construct's Python loop takes to skip it.
    sources = {client_id: SourceRead.model_validate(client) for client_id, client in aggregate.clients.items()}
    opened_key = OpenedKey(aggregate.data_key)
    decision_reads: dict[Decision, DecisionRead] = {}
    entries = []
    for item, decision in shown:  # newest first, as loaded
        decision_read = decision_reads.get(decision)
        if decision_read is None:
            decision_read = decision_reads[decision] = DecisionRead(
                kind=decision.kind,
                rule_id=decision.rule_id,
                policy_version=decision.policy_version,
                lawful_basis=decision.lawful_basis,
                reason=decision.reason,
            )
        entries.append(
            TimelineEntry(
                item_id=item.id,
                source=sources[item.client_id],
                kind=item.kind,
                category=item.category,
                occurred_at=item.occurred_at,
                received_at=item.received_at,
                status=item.status,
                summary=_summary(opened_key, item, decision),
                grading=details[item.id].grading
                if item.id in details and "grading" not in decision.redacted_fields
                else None,
                redacted_fields=list(decision.redacted_fields),
                decision=decision_read,
            )
        )
    return entries


def _summary(key: OpenedKey, item: ItemRow, decision: Decision) -> str:
    if "summary" in decision.redacted_fields:
        return REDACTED  # never unsealed: what the viewer may not see is not decrypted
    if item.sealed_summary is not None:
        return key.unseal_value(item.sealed_summary, str, context=Item.context_for(item.id, "summary"))
    # Stored before migration 0003: the summary is only in the sealed content, which the query
    # returns for such rows (sealed_content is NOT NULL).
    assert item.legacy_content is not None
    return key.unseal_value(item.legacy_content, ItemContent, context=Item.context_for(item.id)).summary


def _consent_state_read(aggregate: ChildAggregate) -> ConsentStateRead:
    """The history (in force marked, notes unsealed), the stated wishes in words, and the overrides in force."""
    key = OpenedKey(aggregate.data_key)
    in_force = {c.id for c in consents_service.current(aggregate.consents, at=aggregate.at)}
    records = [
        ConsentRead(
            id=c.id,
            status=c.status,
            purpose=c.purpose,
            given_by=c.given_by,
            giver_relationship=c.giver_relationship,
            agencies=[Agency(a) for a in c.agencies],
            categories=list(c.categories),
            period_start=c.period_start,
            period_end=c.period_end,
            recorded_at=c.recorded_at,
            in_force=c.id in in_force,
            note=None
            if c.sealed_note is None
            else key.unseal_value(c.sealed_note, str, context=Consent.context_for(c.id, "note")),
        )
        for c in aggregate.consents
    ]
    return ConsentStateRead(
        records=records,
        stated_wishes=[_stated_wish(r) for r in records if r.in_force and r.status is not ConsentStatus.GIVEN],
        overrides=[
            OverrideRead.model_validate(o)
            for o in aggregate.overrides
            if o.expires_at is not None and o.created_at <= aggregate.at < o.expires_at
        ],
    )


def _stated_wish(record: ConsentRead) -> str:
    who = "The child" if record.given_by == "child" else "A person with parental responsibility"
    if record.giver_relationship and record.giver_relationship != "self":
        who += f" ({record.giver_relationship})"
    what = ", ".join(record.agencies) + " records" if record.agencies else "records of every agency"
    if record.categories:
        what += f" ({', '.join(record.categories)})"
    said = f"{who} {record.status.value} consent to share {what} for {record.purpose.value.replace('_', ' ')}, "
    said += f"recorded {record.recorded_at:%d %B %Y}."
    return f"{said} Their words: {record.note}" if record.note else said


def _withheld(indicated: Decided) -> list[WithheldRead]:
    groups: dict[tuple[str, str, str | None, str, bool], list[uuid.UUID]] = defaultdict(list)
    for item, decision in indicated:
        # The record's own contact (the officer or unit that holds it), beside the team member to ask.
        ask = f"{decision.ask}, or {item.contact}" if decision.ask and item.contact else decision.ask
        groups[(item.agency, decision.reason, ask, decision.rule_id, decision.requestable)].append(item.id)
    return [
        WithheldRead(
            agency=agency,
            reason=reason,
            ask=ask,
            rule_id=rule_id,
            count=len(item_ids),
            item_ids=item_ids,
            requestable=requestable,
        )
        for (agency, reason, ask, rule_id, requestable), item_ids in sorted(
            groups.items(), key=lambda kv: (kv[0][0], kv[0][3], kv[0][4])
        )
    ]

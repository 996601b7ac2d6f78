"""The merged view of a child, in four steps: load, decide, project, audit.

- load: the child's aggregate from the repository, through the access that opened it;
- decide: one policy Decision per item (pure: no I/O);
- project: the response, showing only what the decisions let the viewer see;
- audit: one event naming every item's decision and the rule that took it.

Later capabilities extend one step each: people and key facts extend load and project,
overrides and break-glass extend decide, disclosures extend audit.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime

from opentelemetry import trace
from sqlalchemy.orm import Session

from adapters import IdentityClaim
from audit import AuditAction, ItemDecisionRef, Outcome
from gateway.auth.principal import Principal
from gateway.cases import repository as cases_repository
from gateway.cases.access import ChildAccess
from gateway.cases.service import require_child_access
from gateway.identity.service import get_linked_identities, read_claim
from gateway.kit.auditor import Auditor
from gateway.kit.crypto import ChildErased, DataKeyring, unseal_value
from gateway.models import Case, Client, Consent, Identity, Item, ItemContent, Link, Override, Team
from policies import (
    Agency,
    CaseStatus,
    ConsentFact,
    ConsentState,
    Decision,
    DecisionKind,
    ItemFacts,
    Policy,
    Purpose,
    Viewer,
    decide,
)

from . import repository
from .schemas import (
    ChildViewRead,
    ConflictRead,
    ConflictValue,
    ConsentRead,
    ConsentStateRead,
    DecisionRead,
    IdentityRead,
    KeyFactsRead,
    OverrideRead,
    PolicyRead,
    SourceRead,
    TeamRead,
    TimelineEntry,
    WithheldRead,
)

tracer = trace.get_tracer("gateway.child_view")

# Identity fields compared across sources; a difference is a conflict worth a practitioner's eye.
CONFLICT_FIELDS = ("nhs_number", "family_name", "given_names", "birth_date", "sex", "postcode")

Decisions = dict[uuid.UUID, Decision]


@dataclass(frozen=True)
class ChildAggregate:
    """Everything the view of one child is made from, loaded once."""

    access: ChildAccess
    data_key: bytes
    case: Case
    team: Team
    identities: list[tuple[Identity, IdentityClaim]]
    links: dict[uuid.UUID, Link]
    items: list[Item]
    clients: dict[str, Client]
    consents: list[Consent]
    overrides: list[Override]


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
        try:
            aggregate = load(session, access, keyring=keyring)
        except ChildErased as erased:
            raise auditor.refuse(
                erased, AuditAction.STAFF_VIEW_REFUSED, child_id=child_id, purpose=purpose, detail={"reason": "erased"}
            ) from None
        with tracer.start_as_current_span("decide") as decide_span:
            decisions = decide_items(aggregate, policy=policy, purpose=purpose)
            decide_span.set_attribute("gateway.items_decided", len(decisions))
        view = project(aggregate, decisions, policy=policy, purpose=purpose)
        with tracer.start_as_current_span("audit"):
            audit_view(auditor, aggregate, decisions, policy=policy, purpose=purpose)
        return view


def load(session: Session, access: ChildAccess, *, keyring: DataKeyring) -> ChildAggregate:
    """Load the child's aggregate; raise ChildErased when its key has been destroyed."""
    with tracer.start_as_current_span("load"):
        data_key = keyring.unwrap(repository.get_child(session, access).wrapped_data_key)
        case, team = cases_repository.get_allocation(session, access)
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
            identities=[(identity, read_claim(data_key, identity)) for identity in identities],
            links=repository.get_links(session, access),
            items=items,
            clients=clients,
            consents=repository.get_consents(session, access),
            overrides=repository.get_overrides(session, access),
        )


def decide_items(aggregate: ChildAggregate, *, policy: Policy, purpose: Purpose) -> Decisions:
    """Decide what the viewer may see of every item (pure)."""
    access = aggregate.access
    viewer = Viewer(agency=access.agency, role=access.role, relationship=access.relationship)
    consent = ConsentState(
        facts=tuple(
            ConsentFact(
                status=c.status,
                purpose=c.purpose,
                agencies=frozenset(Agency(a) for a in c.agencies),
                categories=frozenset(c.categories),
            )
            for c in aggregate.consents
        )
    )
    return {
        item.id: decide(policy, viewer=viewer, purpose=purpose, item=_facts(item), consent=consent)
        for item in aggregate.items
    }


def project(aggregate: ChildAggregate, decisions: Decisions, *, policy: Policy, purpose: Purpose) -> ChildViewRead:
    """Build the response: only what the decisions show, unsealed only when shown."""
    with tracer.start_as_current_span("project"):
        shown = sorted((item for item in aggregate.items if decisions[item.id].shown), key=_newest_first)
        identities = [_identity(aggregate, identity, claim) for identity, claim in aggregate.identities]
        return ChildViewRead(
            child_id=aggregate.access.child_id,
            purpose=purpose,
            generated_at=datetime.now(UTC),
            policy=PolicyRead(id=policy.id, version=policy.version),
            relationship=aggregate.access.relationship,
            identities=identities,
            conflicts=_conflicts(identities),
            key_facts=KeyFactsRead(
                open_case=aggregate.case.status is CaseStatus.OPEN,
                allocated_team=TeamRead.model_validate(aggregate.team),
                lead_practitioner=aggregate.case.lead_practitioner,
            ),
            timeline=[_timeline_entry(aggregate, item, decisions[item.id]) for item in shown],
            consent=ConsentStateRead(
                records=[ConsentRead.model_validate(c) for c in aggregate.consents],
                overrides=[OverrideRead.model_validate(o) for o in aggregate.overrides],
            ),
            withheld=_withheld(aggregate.items, decisions),
        )


def audit_view(
    auditor: Auditor, aggregate: ChildAggregate, decisions: Decisions, *, policy: Policy, purpose: Purpose
) -> None:
    """Record the view: every item's decision and rule, and the lawful bases of what was shown."""
    bases = sorted({d.lawful_basis for d in decisions.values() if d.shown and d.lawful_basis})
    auditor.record(
        AuditAction.STAFF_VIEW_OPENED,
        Outcome.SUCCESS,
        child_id=aggregate.access.child_id,
        purpose=purpose,
        lawful_basis="; ".join(bases) or None,
        policy_version=f"{policy.id}@{policy.version}",
        items=[
            ItemDecisionRef(item=item_id, decision=d.kind.value, rule=d.rule_id)
            for item_id, d in sorted(decisions.items(), key=lambda pair: str(pair[0]))
        ],
        detail={"relationship": aggregate.access.relationship.value, "team_id": str(aggregate.team.id)},
    )


def _facts(item: Item) -> ItemFacts:
    return ItemFacts(
        item_id=str(item.id),
        agency=item.agency,
        kind=item.kind,
        category=item.category,
        security_labels=frozenset(item.security_labels),
        police_handling_code=item.police_handling_code,
        status=item.status,
        detrimental=item.detrimental,
    )


def _newest_first(item: Item) -> tuple[float, float]:
    occurred = item.occurred_at or item.received_at
    return (-occurred.timestamp(), -item.received_at.timestamp())


def _identity(aggregate: ChildAggregate, identity: Identity, claim: IdentityClaim) -> IdentityRead:
    claimed = {name: getattr(claim, name) for name in IdentityRead.model_fields if hasattr(claim, name)}
    return IdentityRead(
        **claimed,
        source=SourceRead.model_validate(aggregate.clients[identity.client_id]),
        received_at=identity.received_at,
        link_method=aggregate.links[identity.id].method,
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


def _timeline_entry(aggregate: ChildAggregate, item: Item, decision: Decision) -> TimelineEntry:
    if "summary" in decision.redacted_fields:
        summary = "[redacted]"  # never unsealed: what the viewer may not see is not decrypted
    else:
        content = unseal_value(aggregate.data_key, item.sealed_content, ItemContent, context=item.sealing_context)
        summary = content.summary
    return TimelineEntry(
        item_id=item.id,
        source=SourceRead.model_validate(aggregate.clients[item.client_id]),
        kind=item.kind,
        category=item.category,
        occurred_at=item.occurred_at,
        received_at=item.received_at,
        status=item.status,
        summary=summary,
        redacted_fields=list(decision.redacted_fields),
        decision=DecisionRead(
            kind=decision.kind,
            rule_id=decision.rule_id,
            policy_version=decision.policy_version,
            lawful_basis=decision.lawful_basis,
            reason=decision.reason,
        ),
    )


def _withheld(items: list[Item], decisions: Decisions) -> list[WithheldRead]:
    groups: dict[tuple[str, str, str | None, str], int] = defaultdict(int)
    for item in items:
        decision = decisions[item.id]
        if decision.kind is DecisionKind.INDICATE:
            groups[(item.agency, decision.reason, decision.ask, decision.rule_id)] += 1
    return [
        WithheldRead(agency=agency, reason=reason, ask=ask, rule_id=rule_id, count=count)
        for (agency, reason, ask, rule_id), count in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][3]))
    ]

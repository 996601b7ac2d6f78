"""Assemble the merged view of a child: decide every item, show what may be shown, audit it."""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from datetime import UTC, datetime

from opentelemetry import trace
from sqlalchemy.orm import Session

from audit import AuditAction, AuditRecord, ItemDecisionRef, Outcome, record
from gateway.auth.principal import Principal
from gateway.cases.service import require_child_access
from gateway.identity import repository as identity_repository
from gateway.identity.service import read_claim
from gateway.kit.crypto import DataKeyring, unseal
from gateway.models import Child, Client, Item
from policies import (
    ConsentFact,
    ConsentState,
    ConsentStatus,
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


def get(
    session: Session,
    principal: Principal,
    *,
    keyring: DataKeyring,
    policy: Policy,
    child_id: uuid.UUID,
    purpose: Purpose,
    request_id: str | None = None,
) -> ChildViewRead:
    """Return the merged view of a child for a purpose, auditing every item's decision."""
    with tracer.start_as_current_span("view") as span:
        span.set_attribute("gateway.purpose", purpose.value)
        access = require_child_access(
            session, principal, child_id=child_id, purpose=purpose.value, request_id=request_id
        )
        child = session.get(Child, child_id)
        if child is None or child.wrapped_data_key is None:
            raise LookupError("an allocated child has no data key")  # erased: a later stage handles this
        data_key = keyring.unwrap(child.wrapped_data_key)

        identities = identity_repository.get_linked_identities(session, child_id=child_id)
        items = repository.get_items(session, child_id=child_id)
        clients = repository.get_clients(
            session, client_ids={i.client_id for i in identities} | {i.client_id for i in items}
        )
        consents = repository.get_consents(session, child_id=child_id)
        overrides = repository.get_overrides(session, child_id=child_id)
        viewer = Viewer(agency=access.member.agency, role=access.member.role, relationship=access.relationship)
        consent_state = ConsentState(
            facts=tuple(
                ConsentFact(
                    status=ConsentStatus(c.status),
                    purpose=Purpose(c.purpose),
                    agencies=frozenset(c.agencies),
                    categories=frozenset(c.categories),
                )
                for c in consents
            )
        )

        with tracer.start_as_current_span("decide") as decide_span:
            decisions = {
                item.id: decide(policy, viewer=viewer, purpose=purpose, item=_facts(item), consent=consent_state)
                for item in items
            }
            decide_span.set_attribute("gateway.items_decided", len(decisions))

        shown = [item for item in items if decisions[item.id].shown]
        shown.sort(key=_newest_first)
        identity_reads = _identities(session, keyring, child, identities, clients)
        view = ChildViewRead(
            child_id=child_id,
            purpose=purpose.value,
            generated_at=datetime.now(UTC),
            policy=PolicyRead(id=policy.id, version=policy.version),
            relationship=access.relationship.value,
            identities=identity_reads,
            conflicts=_conflicts(identity_reads),
            key_facts=KeyFactsRead(
                child_protection_plan=None,
                looked_after=None,
                open_case=access.case.status == "open",
                allocated_team=TeamRead(
                    id=access.team.id, name=access.team.name, local_authority=access.team.local_authority
                ),
                lead_practitioner=access.case.lead_practitioner,
            ),
            timeline=[_timeline_entry(item, decisions[item.id], clients, data_key) for item in shown],
            people=[],
            consent=ConsentStateRead(
                records=[
                    ConsentRead(
                        status=c.status,
                        purpose=c.purpose,
                        given_by=c.given_by,
                        agencies=c.agencies,
                        categories=c.categories,
                        recorded_at=c.recorded_at,
                    )
                    for c in consents
                ],
                overrides=[
                    OverrideRead(
                        agencies=o.agencies,
                        categories=o.categories,
                        lawful_basis=o.lawful_basis,
                        decided_by=o.decided_by,
                        approved_by=o.approved_by,
                        expires_at=o.expires_at,
                    )
                    for o in overrides
                ],
            ),
            withheld=_withheld(items, decisions),
        )

        with tracer.start_as_current_span("audit"):
            bases = sorted({d.lawful_basis for d in decisions.values() if d.shown and d.lawful_basis})
            record(
                session,
                AuditRecord(
                    action=AuditAction.STAFF_VIEW_OPENED,
                    actor=principal.actor(),
                    outcome=Outcome.SUCCESS,
                    child_id=child_id,
                    purpose=purpose.value,
                    lawful_basis="; ".join(bases) or None,
                    policy_version=f"{policy.id}@{policy.version}",
                    items=[
                        ItemDecisionRef(item=item_id, decision=d.kind.value, rule=d.rule_id)
                        for item_id, d in sorted(decisions.items(), key=lambda pair: str(pair[0]))
                    ],
                    detail={"relationship": access.relationship.value, "team_id": str(access.team.id)},
                    request_id=request_id,
                ),
            )
        return view


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


def _source(client: Client) -> SourceRead:
    return SourceRead(agency=client.agency, client_id=client.id, name=client.name)


def _identities(session, keyring, child, identities, clients) -> list[IdentityRead]:  # type: ignore[no-untyped-def]
    links = repository.get_links(session, identity_ids=[i.id for i in identities])
    reads = []
    for identity in identities:
        claim = read_claim(keyring, child=child, identity=identity)
        reads.append(
            IdentityRead(
                source=_source(clients[identity.client_id]),
                nhs_number=claim.nhs_number,
                given_names=list(claim.given_names),
                family_name=claim.family_name,
                birth_date=claim.birth_date,
                sex=claim.sex,
                postcode=claim.postcode,
                address_lines=list(claim.address_lines),
                received_at=identity.received_at,
                link_method=links[identity.id].method,
            )
        )
    return reads


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


def _timeline_entry(item: Item, decision: Decision, clients: dict[str, Client], data_key: bytes) -> TimelineEntry:
    content = json.loads(unseal(data_key, item.sealed_content, context=f"item:{item.id}"))
    summary = "[redacted]" if "summary" in decision.redacted_fields else content["summary"]
    return TimelineEntry(
        item_id=item.id,
        source=_source(clients[item.client_id]),
        kind=item.kind,
        category=item.category,
        occurred_at=item.occurred_at,
        received_at=item.received_at,
        status=item.status,
        summary=summary,
        redacted_fields=list(decision.redacted_fields),
        decision=DecisionRead(
            kind=decision.kind.value,
            rule_id=decision.rule_id,
            policy_version=decision.policy_version,
            lawful_basis=decision.lawful_basis,
            reason=decision.reason,
        ),
    )


def _withheld(items: list[Item], decisions: dict[uuid.UUID, Decision]) -> list[WithheldRead]:
    groups: dict[tuple[str, str, str | None, str], int] = defaultdict(int)
    for item in items:
        decision = decisions[item.id]
        if decision.kind is DecisionKind.INDICATE:
            groups[(item.agency, decision.reason, decision.ask, decision.rule_id)] += 1
    return [
        WithheldRead(agency=agency, reason=reason, ask=ask, rule_id=rule_id, count=count)
        for (agency, reason, ask, rule_id), count in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][3]))
    ]

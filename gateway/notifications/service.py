"""Read and acknowledge inboxes; escalate Operation Encompass notices nobody acknowledged in time.

- A designated safeguarding lead (any staff member registered as a school's contact, or the
  LA's education safeguarding lead) reads their Operation Encompass notices and acknowledges
  them. The notice is decided again when read: a record the police have since retracted or
  marked detrimental is shown as withdrawn, its notice no longer unsealed.
- A lead practitioner reads the notifications of their open cases: which agency and kind, and
  what the child's view would show them of the record. A record the view would withhold
  silently is not listed; one it would indicate says so. Entries of a case that has closed, or
  of a team they no longer lead, are not listed.
- Every listing is audited per child with each item's decision; acknowledging and reading are
  audited; the escalation is audited and put on the IG review queue.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, select, update
from sqlalchemy.orm import Session

from audit import AuditAction, ItemDecisionRef, Outcome, ReviewReason
from gateway.auth.principal import Principal
from gateway.identity import repository as identity_repository
from gateway.kit.auditor import Auditor
from gateway.kit.crypto import DataKeyring, OpenedKey
from gateway.kit.db import insert_all
from gateway.kit.errors import Forbidden, NotFound
from gateway.models import Case, InboxEntry, InboxKind, Item, SchoolContact, TeamMember, utcnow
from policies import (
    CaseStatus,
    ConsentState,
    Decision,
    DecisionKind,
    ItemFacts,
    Policy,
    Purpose,
    Relationship,
    Viewer,
    decide,
)

from .routing import ENCOMPASS_VIEWER, LEAD_PRACTITIONER, NoticeContent, lead_practitioners
from .schemas import (
    AcknowledgedRead,
    EncompassInboxRead,
    EncompassNoticeRead,
    NotificationRead,
    NotificationsRead,
    PupilRead,
)

# How many overdue notices one sweep escalates (the rest wait for the next sweep).
SWEEP_BATCH = 500

_KIND_NAMES = {
    "encounter": "attendance or encounter",
    "incident": "incident",
    "domestic_abuse_notification": "domestic abuse notification",
    "missing_episode": "missing episode",
    "custody": "arrest or custody",
    "intelligence": "intelligence",
    "enrolment": "enrolment",
    "attendance": "attendance summary",
    "exclusion": "suspension or exclusion",
    "safeguarding_concern": "safeguarding concern",
    "education_notice": "home education or missing education notice",
}


def encompass_inbox(
    session: Session,
    principal: Principal,
    *,
    auditor: Auditor,
    keyring: DataKeyring,
    policy: Policy,
    limit: int,
) -> EncompassInboxRead:
    """Return the caller's Operation Encompass notices, unacknowledged first; audit each child's."""
    _require_school_contact(session, principal, auditor)
    now = utcnow()
    entries = session.scalars(
        select(InboxEntry)
        .where(InboxEntry.recipient == principal.subject, InboxEntry.kind == InboxKind.ENCOMPASS)
        .order_by(InboxEntry.acknowledged_at.is_not(None), InboxEntry.created_at.desc())
        .limit(limit)
    ).all()
    facts = _item_facts(session, [entry.item_id for entry in entries])
    acknowledged = _acknowledged_items(session, [entry.item_id for entry in entries])
    keys = _data_keys(session, keyring, {entry.child_id for entry in entries})
    notices: list[EncompassNoticeRead] = []
    decided: dict[uuid.UUID, list[ItemDecisionRef]] = defaultdict(list)
    for entry in entries:
        decision = _decide(policy, ENCOMPASS_VIEWER, facts[entry.item_id])
        decided[entry.child_id].append(ItemDecisionRef(entry.item_id, decision.kind.value, decision.rule_id))
        key = keys.get(entry.child_id)
        content = None
        if decision.shown and key is not None and entry.sealed_notice is not None:
            content = key.unseal_value(
                entry.sealed_notice, NoticeContent, context=InboxEntry.context_for(entry.id, "notice")
            )
        notices.append(_notice_read(entry, content, now=now, withdrawn=not decision.shown, acknowledged=acknowledged))
    for child_id, items in decided.items():
        auditor.record(
            AuditAction.ENCOMPASS_INBOX_LISTED,
            Outcome.SUCCESS,
            child_id=child_id,
            purpose=Purpose.CHILD_PROTECTION.value,
            lawful_basis=_basis(policy, items),
            policy_version=policy.version,
            items=items,
        )
    unacknowledged = session.scalar(
        select(func.count())
        .select_from(InboxEntry)
        .where(
            InboxEntry.recipient == principal.subject,
            InboxEntry.kind == InboxKind.ENCOMPASS,
            InboxEntry.acknowledged_at.is_(None),
        )
    )
    return EncompassInboxRead(notices=notices, unacknowledged=unacknowledged or 0)


def acknowledge_notice(
    session: Session, principal: Principal, *, auditor: Auditor, entry_id: uuid.UUID
) -> AcknowledgedRead:
    """Mark a notice of the caller's acknowledged (once: a repeat answers with the first acknowledgement)."""
    _require_school_contact(session, principal, auditor)
    entry = _own_entry(session, principal, entry_id, (InboxKind.ENCOMPASS,))
    if entry.acknowledged_at is None:
        entry.acknowledged_at = utcnow()
        entry.acknowledged_by = principal.subject
        late = entry.deadline is not None and entry.acknowledged_at > entry.deadline
        auditor.record(
            AuditAction.ENCOMPASS_NOTICE_ACKNOWLEDGED,
            Outcome.SUCCESS,
            child_id=entry.child_id,
            detail={"entry": str(entry.id), "item": str(entry.item_id), "late": late},
        )
    assert entry.acknowledged_at is not None and entry.acknowledged_by is not None
    return AcknowledgedRead(
        id=entry.id,
        acknowledged_at=entry.acknowledged_at,
        acknowledged_by=entry.acknowledged_by,
        late=entry.deadline is not None and entry.acknowledged_at > entry.deadline,
    )


def notifications(
    session: Session, principal: Principal, *, auditor: Auditor, policy: Policy, limit: int
) -> NotificationsRead:
    """Return the caller's notifications for cases they still lead, unread first; audit each child's."""
    rows = session.execute(
        select(InboxEntry, TeamMember.agency, TeamMember.role, Item.child_id)
        .join(Case, Case.id == InboxEntry.case_id)
        .join(
            TeamMember,
            and_(
                TeamMember.team_id == Case.team_id,
                TeamMember.subject == InboxEntry.recipient,
                TeamMember.role == LEAD_PRACTITIONER,
                TeamMember.active.is_(True),
            ),
        )
        .join(Item, Item.id == InboxEntry.item_id)
        .where(
            InboxEntry.recipient == principal.subject,
            InboxEntry.kind.in_((InboxKind.NOTIFICATION, InboxKind.ENCOMPASS_OVERDUE)),
            Case.status == CaseStatus.OPEN,
        )
        .order_by(InboxEntry.acknowledged_at.is_not(None), InboxEntry.created_at.desc())
        .limit(limit)
    ).all()
    facts = _item_facts(session, [entry.item_id for entry, *_ in rows])
    listed: list[NotificationRead] = []
    decided: dict[uuid.UUID, list[ItemDecisionRef]] = defaultdict(list)
    for entry, agency, role, child_id in rows:
        viewer = Viewer(agency, role, Relationship.ALLOCATED_TEAM)
        decision = _decide(policy, viewer, facts[entry.item_id])
        decided[child_id].append(ItemDecisionRef(entry.item_id, decision.kind.value, decision.rule_id))
        if decision.kind is DecisionKind.WITHHOLD_SILENTLY:
            continue  # the view would not show that this record exists: nor does its notification
        listed.append(
            NotificationRead(
                id=entry.id,
                kind=entry.kind.value,
                child_id=child_id,
                agency=entry.agency,
                record_kind=entry.record_kind,
                category=entry.category,
                created_at=entry.created_at,
                read_at=entry.acknowledged_at,
                decision=decision.kind,
                message=_message(entry, decision),
            )
        )
    for child_id, items in decided.items():
        auditor.record(
            AuditAction.NOTIFICATIONS_LISTED,
            Outcome.SUCCESS,
            child_id=child_id,
            purpose=Purpose.CHILD_PROTECTION.value,
            policy_version=policy.version,
            items=items,
        )
    return NotificationsRead(notifications=listed, unread=sum(1 for n in listed if n.read_at is None))


def mark_read(session: Session, principal: Principal, *, auditor: Auditor, entry_id: uuid.UUID) -> AcknowledgedRead:
    """Mark one of the caller's notifications read (once)."""
    entry = _own_entry(session, principal, entry_id, (InboxKind.NOTIFICATION, InboxKind.ENCOMPASS_OVERDUE))
    if entry.acknowledged_at is None:
        entry.acknowledged_at = utcnow()
        entry.acknowledged_by = principal.subject
        auditor.record(
            AuditAction.NOTIFICATION_READ,
            Outcome.SUCCESS,
            child_id=entry.child_id,
            detail={"entry": str(entry.id), "item": str(entry.item_id)},
        )
    assert entry.acknowledged_at is not None and entry.acknowledged_by is not None
    return AcknowledgedRead(
        id=entry.id, acknowledged_at=entry.acknowledged_at, acknowledged_by=entry.acknowledged_by, late=False
    )


def escalate_overdue(session: Session, auditor: Auditor, *, now: datetime | None = None) -> int:
    """Escalate each notice that nobody it went to acknowledged by its deadline; return how many.

    Per notice (item): marked escalated, audited and put on the IG review queue, and sent to the
    lead practitioner of each open case of the child. Safe with several workers sweeping at once:
    the UPDATE that marks a notice escalated is what claims it, and a notice one worker claimed
    matches nobody else's UPDATE (its row locks make the other wait, then re-check).
    """
    now = now or utcnow()
    due = session.execute(
        select(InboxEntry.item_id)
        .where(InboxEntry.kind == InboxKind.ENCOMPASS, InboxEntry.escalated_at.is_(None), InboxEntry.deadline < now)
        .group_by(InboxEntry.item_id)
        .having(func.count(InboxEntry.acknowledged_at) == 0)
        .limit(SWEEP_BATCH)
    ).scalars().all()
    if not due:
        return 0
    claimed = session.execute(
        update(InboxEntry)
        .where(
            InboxEntry.item_id.in_(due),
            InboxEntry.kind == InboxKind.ENCOMPASS,
            InboxEntry.escalated_at.is_(None),
            InboxEntry.acknowledged_at.is_(None),
        )
        .values(escalated_at=now)
        .returning(InboxEntry.id, InboxEntry.item_id, InboxEntry.urn, InboxEntry.deadline)
    ).all()
    notices: dict[uuid.UUID, tuple[uuid.UUID, str | None, datetime | None]] = {}
    for entry_id, item_id, urn, deadline in claimed:
        notices.setdefault(item_id, (entry_id, urn, deadline))
    items = session.execute(
        select(Item.id, Item.child_id, Item.agency, Item.kind, Item.category).where(Item.id.in_(notices))
    ).all()
    leads = lead_practitioners(session, {row.child_id for row in items})
    rows: list[dict[str, Any]] = []
    for item_id, child_id, agency, kind, category in items:
        entry_id, urn, deadline = notices[item_id]
        for lead in leads.get(child_id, []):
            rows.append(
                {
                    "id": uuid.uuid4(),
                    "kind": InboxKind.ENCOMPASS_OVERDUE,
                    "recipient": lead.subject,
                    "recipient_role": LEAD_PRACTITIONER,
                    "item_id": item_id,
                    "child_id": child_id,
                    "agency": agency,
                    "record_kind": kind,
                    "category": category,
                    "urn": urn,
                    "case_id": lead.case_id,
                    "about_entry_id": entry_id,
                    "created_at": now,
                }
            )
        auditor.record(
            AuditAction.ENCOMPASS_NOTICE_OVERDUE,
            Outcome.FAILURE,
            child_id=child_id,
            detail={
                "item": str(item_id),
                "deadline": deadline.isoformat() if deadline is not None else None,
                "sent_to_school": urn is not None,
                "lead_practitioners_told": len(leads.get(child_id, [])),
            },
            review=[ReviewReason.ENCOMPASS_UNACKNOWLEDGED],
        )
    insert_all(session, InboxEntry, rows)
    return len(items)


def _require_school_contact(session: Session, principal: Principal, auditor: Auditor) -> None:
    registered = session.scalar(
        select(SchoolContact.id).where(SchoolContact.subject == principal.subject, SchoolContact.active.is_(True)).limit(1)
    )
    if registered is None:
        raise auditor.refuse(
            Forbidden("Only a school's registered safeguarding contact, or the local authority's, has an Encompass inbox."),
            AuditAction.ENCOMPASS_INBOX_LISTED,
            detail={"reason": "not_a_school_contact"},
        )


def _own_entry(
    session: Session, principal: Principal, entry_id: uuid.UUID, kinds: Sequence[InboxKind]
) -> InboxEntry:
    entry = session.scalar(
        select(InboxEntry)
        .where(InboxEntry.id == entry_id, InboxEntry.recipient == principal.subject, InboxEntry.kind.in_(kinds))
        .with_for_update()
    )
    if entry is None:
        # Someone else's entry answers as a missing one: an id reveals nothing.
        raise NotFound("No such entry in your inbox.")
    return entry


def _item_facts(session: Session, item_ids: list[uuid.UUID]) -> dict[uuid.UUID, ItemFacts]:
    if not item_ids:
        return {}
    rows = session.execute(
        select(
            Item.id,
            Item.agency,
            Item.kind,
            Item.category,
            Item.security_labels,
            Item.police_handling_code,
            Item.status,
            Item.detrimental,
        ).where(Item.id.in_(set(item_ids)))
    ).all()
    return {
        row.id: ItemFacts(
            item_id=str(row.id),
            agency=row.agency,
            kind=row.kind,
            category=row.category,
            security_labels=frozenset(row.security_labels or ()),
            police_handling_code=row.police_handling_code,
            status=row.status,
            detrimental=row.detrimental,
        )
        for row in rows
    }


def _acknowledged_items(session: Session, item_ids: list[uuid.UUID]) -> set[uuid.UUID]:
    """Return the notices (by item) that someone they went to has acknowledged."""
    if not item_ids:
        return set()
    return set(
        session.scalars(
            select(InboxEntry.item_id).where(
                InboxEntry.item_id.in_(set(item_ids)),
                InboxEntry.kind == InboxKind.ENCOMPASS,
                InboxEntry.acknowledged_at.is_not(None),
            )
        )
    )


def _data_keys(session: Session, keyring: DataKeyring, child_ids: set[uuid.UUID]) -> dict[uuid.UUID, OpenedKey]:
    wrapped = identity_repository.get_wrapped_data_keys(session, child_ids=child_ids)
    return {child_id: OpenedKey(keyring.unwrap(key)) for child_id, key in wrapped.items() if key is not None}


def _decide(policy: Policy, viewer: Viewer, facts: ItemFacts) -> Decision:
    return decide(policy, viewer=viewer, purpose=Purpose.CHILD_PROTECTION, item=facts, consent=ConsentState())


def _basis(policy: Policy, items: list[ItemDecisionRef]) -> str | None:
    rules = {rule.id: rule for rule in policy.rules}
    return next((rules[ref.rule].lawful_basis for ref in items if ref.rule in rules), None)


def _notice_read(
    entry: InboxEntry,
    content: NoticeContent | None,
    *,
    now: datetime,
    withdrawn: bool,
    acknowledged: set[uuid.UUID],
) -> EncompassNoticeRead:
    assert entry.deadline is not None  # every notice is routed with one
    return EncompassNoticeRead(
        id=entry.id,
        child_id=entry.child_id,
        received_at=entry.created_at,
        deadline=entry.deadline,
        overdue=entry.item_id not in acknowledged and now > entry.deadline,
        school_urn=entry.urn,
        acknowledged_at=entry.acknowledged_at,
        acknowledged_by=entry.acknowledged_by,
        withdrawn=withdrawn,
        pupil=None
        if content is None
        else PupilRead(
            given_names=list(content.given_names), family_name=content.family_name, birth_date=content.birth_date
        ),
        notice=None if content is None else content.notice,
        incident_at=None if content is None else content.incident_at,
        contact=None if content is None else content.contact,
    )


def _message(entry: InboxEntry, decision: Decision) -> str:
    kind = _KIND_NAMES.get(entry.record_kind.value, entry.record_kind.value.replace("_", " "))
    agency = entry.agency.value.replace("_", " ")
    if entry.kind is InboxKind.ENCOMPASS_OVERDUE:
        where = "the child's school" if entry.urn is not None else "the local authority's education safeguarding lead"
        return f"An Operation Encompass notice to {where} was not acknowledged by the start of the school day."
    if decision.kind is DecisionKind.INDICATE:
        return f"New {agency} record ({kind}): withheld from you. {decision.reason} Ask {decision.ask}."
    return f"New {agency} record: {kind}. Open the child's view to read it."

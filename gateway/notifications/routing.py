"""Route what a push filed to the people who must hear of it, in the push's own transaction.

Two routes, both into `inbox_entry`:

- **Operation Encompass.** A police notice that a child was present at a domestic abuse incident
  goes to the designated safeguarding lead (and deputies) registered for the child's current
  school, as the education records place the child, with the start of the next school day as
  its deadline. A child with no current school (elective home education, missing education,
  left with no new school, or never placed) goes to the local authority's education
  safeguarding lead instead, as does a school with no one registered. The ISA decides first,
  as for a viewer with the `operation_encompass` relationship: the s16LA mark, special category
  labels or a retraction stop the notice, and a partnership whose ISA has no Encompass rule
  sends none. What the recipient reads is the notice the police wrote for the school, sealed
  under the child's key, never the police record behind it.
- **Notifications.** A new record of a category the ISA names notifiable, for a child with an
  open case, goes to that case's lead practitioner. What they are shown is decided when they
  read it (service.py), so it never says more than the view would.

Only a record's first version is routed: a correction of a notice is not a second notice.
Every route taken (or not: a notice with nobody to receive it) is audited.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Collection
from dataclasses import dataclass
from typing import NamedTuple
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict
from sqlalchemy import and_, select
from sqlalchemy.orm import Session

from adapters import IdentityClaim, InboundRecord
from audit import AuditAction, Outcome, ReviewReason
from gateway.kit.auditor import Auditor
from gateway.kit.crypto import seal_value
from gateway.kit.db import insert_all
from gateway.settings import Settings

from .webhooks import enqueue
from gateway.models import (
    Case,
    InboxEntry,
    InboxKind,
    Item,
    SchoolContact,
    SchoolContactRole,
    SchoolPlacement,
    TeamMember,
    utcnow,
)
from policies import (
    Agency,
    CaseStatus,
    ConsentState,
    DecisionKind,
    ItemFacts,
    Policy,
    Purpose,
    RecordKind,
    RecordStatus,
    Relationship,
    Viewer,
    decide,
)

LEAD_PRACTITIONER = "lead_practitioner"
ON_ROLL = "on_roll"
# How an Operation Encompass notice's reader is described to the policy engine.
ENCOMPASS_VIEWER = Viewer(Agency.EDUCATION, "designated_safeguarding_lead", Relationship.OPERATION_ENCOMPASS)


# The columns an entry may leave empty, as a new row has them.
_UNSET: dict[str, Any] = {"urn": None, "case_id": None, "about_entry_id": None, "deadline": None, "sealed_notice": None}


@dataclass(frozen=True)
class Routing:
    """What routing needs besides the push: the ISA, and when a school day starts (local time)."""

    policy: Policy
    school_day_start: time = time(8, 30)
    timezone: ZoneInfo = ZoneInfo("Europe/London")

    def deadline_after(self, moment: datetime) -> datetime:
        """Return the start of the first school day (Monday to Friday) after `moment`, in UTC.

        Bank holidays and school holidays are not known to the gateway: a notice on the eve of one
        is due the next weekday, which is earlier than needed, never later.
        """
        local = moment.astimezone(self.timezone)
        day = local.date()
        while True:
            start = datetime.combine(day, self.school_day_start, tzinfo=self.timezone)
            if start > local and start.weekday() < 5:
                return start.astimezone(moment.tzinfo)
            day += timedelta(days=1)


def routing_for(settings: Settings, policy: Policy) -> Routing:
    """Return the routing of a gateway built with these settings and this ISA."""
    hours, minutes = settings.school_day_start.split(":")
    return Routing(policy, time(int(hours), int(minutes)), ZoneInfo(settings.review_timezone))


@dataclass(frozen=True)
class RoutingScope:
    """Leave for a push to read what routing needs of the children it filed records for.

    Made only by the ingest service for the children of its own push (tests/gateway/test_child_scope.py).
    """

    child_ids: frozenset[uuid.UUID]


@dataclass(frozen=True)
class FiledRecord:
    """A record a push stored as a new item, in force, and the claim that named its child (if in the push)."""

    item_id: uuid.UUID
    child_id: uuid.UUID
    kind: RecordKind
    agency: Agency
    record: InboundRecord
    claim: IdentityClaim | None


class NoticeContent(BaseModel):
    """What a school's DSL reads of an Operation Encompass notice: the police's notice, who, when, whom to ask."""

    model_config = ConfigDict(frozen=True)

    notice: str
    given_names: tuple[str, ...] = ()
    family_name: str | None = None
    birth_date: date | None = None
    incident_at: datetime | None = None
    contact: str | None = None


def facts_of(item_id: uuid.UUID, agency: Agency, kind: RecordKind, record: InboundRecord) -> ItemFacts:
    """Return what the policy engine may know of a new record."""
    return ItemFacts(
        item_id=str(item_id),
        agency=agency,
        kind=kind,
        category=record.category,
        security_labels=record.security_labels,
        police_handling_code=record.police_handling_code,
        status=RecordStatus.ENTERED_IN_ERROR if record.entered_in_error else RecordStatus.CURRENT,
        detrimental=record.detrimental,
    )


def route(
    session: Session,
    auditor: Auditor,
    scope: RoutingScope,
    routing: Routing,
    filed: list[FiledRecord],
    data_keys: dict[uuid.UUID, bytes],
) -> None:
    """Put each filed record in the inboxes it belongs in (none, usually), and audit each route."""
    notices = [f for f in filed if f.record.notice is not None]
    notifiable = set(routing.policy.notifiable_categories)
    notifications = [f for f in filed if f.record.category in notifiable and not f.record.entered_in_error]
    if not notices and not notifications:
        return
    rows: list[dict[str, Any]] = []
    outbound: list[dict[str, Any]] = []
    if notices:
        rows += _encompass(session, auditor, scope, routing, notices, data_keys)
    if notifications:
        notified, outbound = _notify(session, auditor, scope, routing, notifications)
        rows += notified
    # One INSERT for all: every row names every column (executemany takes one parameter set).
    insert_all(session, InboxEntry, [{**_UNSET, **row} for row in rows])
    enqueue(session, outbound)  # after the entries its rows refer to


def _encompass(
    session: Session,
    auditor: Auditor,
    scope: RoutingScope,
    routing: Routing,
    notices: list[FiledRecord],
    data_keys: dict[uuid.UUID, bytes],
) -> list[dict[str, Any]]:
    now = utcnow()
    deadline = routing.deadline_after(now)
    schools = current_schools(session, scope)
    contacts = school_contacts(session, {urn for urn in schools.values() if urn is not None})
    rows: list[dict[str, Any]] = []
    for filed in notices:
        decision = decide(
            routing.policy,
            viewer=ENCOMPASS_VIEWER,
            purpose=Purpose.CHILD_PROTECTION,
            item=facts_of(filed.item_id, filed.agency, filed.kind, filed.record),
            consent=ConsentState(),
        )
        if not decision.shown:
            auditor.record(
                AuditAction.ENCOMPASS_NOTICE_WITHHELD,
                Outcome.SUCCESS,
                child_id=filed.child_id,
                policy_version=decision.policy_version,
                detail={"item": str(filed.item_id), "rule": decision.rule_id},
            )
            continue
        urn = schools.get(filed.child_id)
        recipients = contacts.get(urn, []) if urn is not None else []
        if not recipients:
            recipients = contacts.get(None, [])
        base = {
            "kind": InboxKind.ENCOMPASS,
            "item_id": filed.item_id,
            "child_id": filed.child_id,
            "agency": filed.agency,
            "record_kind": filed.kind,
            "category": filed.record.category,
            "urn": urn if urn is not None and recipients and recipients[0].urn == urn else None,
            "created_at": now,
            "deadline": deadline,
        }
        content = _notice_content(filed)
        for contact in recipients:
            entry_id = uuid.uuid4()
            rows.append(
                {
                    **base,
                    "id": entry_id,
                    "recipient": contact.subject,
                    "recipient_role": contact.role.value,
                    "sealed_notice": seal_value(
                        data_keys[filed.child_id],
                        content,
                        NoticeContent,
                        context=InboxEntry.context_for(entry_id, "notice"),
                    ),
                }
            )
        routed_to = "school" if base["urn"] is not None else "local_authority" if recipients else "nobody"
        auditor.record(
            AuditAction.ENCOMPASS_NOTICE_ROUTED if recipients else AuditAction.ENCOMPASS_NOTICE_UNROUTED,
            Outcome.SUCCESS if recipients else Outcome.FAILURE,
            child_id=filed.child_id,
            lawful_basis=decision.lawful_basis,
            policy_version=decision.policy_version,
            detail={
                "item": str(filed.item_id),
                "rule": decision.rule_id,
                "routed_to": routed_to,
                "school_on_roll": urn is not None,
                "recipients": len(recipients),
                "deadline": deadline.isoformat(),
            },
            # Nobody to receive it: a child's school will not hear in time unless a person acts.
            review=() if recipients else [ReviewReason.ENCOMPASS_UNACKNOWLEDGED],
        )
    return rows


def _notice_content(filed: FiledRecord) -> NoticeContent:
    claim = filed.claim
    assert filed.record.notice is not None  # only notices are routed here
    return NoticeContent(
        notice=filed.record.notice,
        given_names=claim.given_names if claim is not None else (),
        family_name=claim.family_name if claim is not None else None,
        birth_date=claim.birth_date if claim is not None else None,
        incident_at=filed.record.occurred_at,
        contact=filed.record.contact,
    )


def _notify(
    session: Session, auditor: Auditor, scope: RoutingScope, routing: Routing, filed: list[FiledRecord]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Return the notification entries to insert, and those to send to their teams' webhooks."""
    leads = lead_practitioners(session, scope.child_ids)
    now = utcnow()
    rows: list[dict[str, Any]] = []
    outbound: list[dict[str, Any]] = []
    notified: dict[uuid.UUID, list[str]] = defaultdict(list)
    for record in filed:
        facts = facts_of(record.item_id, record.agency, record.kind, record.record)
        for lead in leads.get(record.child_id, []):
            row = {
                "id": uuid.uuid4(),
                "kind": InboxKind.NOTIFICATION,
                "recipient": lead.subject,
                "recipient_role": LEAD_PRACTITIONER,
                "item_id": record.item_id,
                "child_id": record.child_id,
                "agency": record.agency,
                "record_kind": record.kind,
                "category": record.record.category,
                "case_id": lead.case_id,
                "created_at": now,
            }
            rows.append(row)
            notified[record.child_id].append(str(record.item_id))
            viewer = Viewer(lead.agency, lead.role, Relationship.ALLOCATED_TEAM)
            decision = decide(
                routing.policy, viewer=viewer, purpose=Purpose.CHILD_PROTECTION, item=facts, consent=ConsentState()
            )
            # The team's case system hears only of what the lead practitioner's view would show or indicate.
            if decision.kind is not DecisionKind.WITHHOLD_SILENTLY:
                outbound.append({**row, "team_id": lead.team_id})
    for child_id, items in notified.items():
        auditor.record(
            AuditAction.NOTIFICATION_CREATED, Outcome.SUCCESS, child_id=child_id, detail={"items": items}
        )
    return rows, outbound


def current_schools(session: Session, scope: RoutingScope) -> dict[uuid.UUID, str | None]:
    """Return, per child of the scope with any placement, the URN of its current school (None: not at one).

    The placement of the newest item in force that states one (by the date it took effect, then
    by when it was received): an enrolment on roll names the school; leaving, elective home
    education or missing education means no current school.
    """
    if not scope.child_ids:
        return {}
    rows = session.execute(
        select(Item.child_id, SchoolPlacement.urn, SchoolPlacement.status, SchoolPlacement.since, Item.received_at)
        .join(SchoolPlacement, SchoolPlacement.item_id == Item.id)
        .where(Item.child_id.in_(scope.child_ids), Item.status == RecordStatus.CURRENT)
    ).all()
    newest: dict[uuid.UUID, tuple[date, datetime, str | None]] = {}
    for child_id, urn, status, since, received_at in rows:
        key = (since or date.min, received_at)
        if child_id not in newest or key > newest[child_id][:2]:
            newest[child_id] = (*key, urn if status == ON_ROLL else None)
    return {child_id: urn for child_id, (_since, _received, urn) in newest.items()}


def school_contacts(session: Session, urns: set[str]) -> dict[str | None, list[SchoolContact]]:
    """Return the active contacts of these schools, and (under None) the LA's education safeguarding leads."""
    rows = session.scalars(
        select(SchoolContact)
        .where(
            SchoolContact.active.is_(True),
            (SchoolContact.urn.in_(urns) if urns else SchoolContact.urn.is_(None))
            | and_(SchoolContact.urn.is_(None), SchoolContact.role == SchoolContactRole.LA_EDUCATION_SAFEGUARDING_LEAD),
        )
        .order_by(SchoolContact.subject)
    ).all()
    contacts: dict[str | None, list[SchoolContact]] = defaultdict(list)
    for contact in rows:
        contacts[contact.urn].append(contact)
    return contacts


class LeadPractitioner(NamedTuple):
    """The lead practitioner of an open case: whom a notification goes to, and as whom the policy sees them."""

    case_id: uuid.UUID
    team_id: uuid.UUID
    subject: str
    agency: Agency
    role: str


def lead_practitioners(
    session: Session, child_ids: Collection[uuid.UUID]
) -> dict[uuid.UUID, list[LeadPractitioner]]:
    """Return, per child, the lead practitioners of its open cases (routing and the overdue sweep).

    The lead practitioner is an active member of the allocated team with that role, as the
    linking review reads it (identity/review.py).
    """
    rows = session.execute(
        select(Case.child_id, Case.id, Case.team_id, TeamMember.subject, TeamMember.agency, TeamMember.role)
        .join(TeamMember, TeamMember.team_id == Case.team_id)
        .where(
            Case.child_id.in_(child_ids),
            Case.status == CaseStatus.OPEN,
            TeamMember.role == LEAD_PRACTITIONER,
            TeamMember.active.is_(True),
        )
        .order_by(TeamMember.subject)
    ).all()
    leads: dict[uuid.UUID, list[LeadPractitioner]] = defaultdict(list)
    for child_id, case_id, team_id, subject, agency, role in rows:
        leads[child_id].append(LeadPractitioner(case_id, team_id, subject, agency, role))
    return leads

"""Who receives what: schools' safeguarding contacts, where each child is educated, and inboxes.

- `SchoolContact`: a staff member registered for a school's URN (its designated safeguarding
  lead or deputy), or, with no URN, the local authority's education safeguarding lead: who an
  Operation Encompass notice goes to, whether or not they are on a MACPT.
- `SchoolPlacement`: what an education record says about where the child is educated. Keyed by
  the item, never by the child: an item moves with merges and unmerges, so the placement follows.
- `TeamWebhook`, `WebhookDelivery`: a team's optional outbound webhook, and its outbox.
- `InboxEntry`: one thing routed to one person: an Operation Encompass notice for a school (with
  its deadline), a notification of new information for a lead practitioner, or a notice not
  acknowledged in time, escalated to the lead practitioner.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from policies import Agency, RecordKind

from .base import Base, SealedRowMixin, UUIDPrimaryKey, str_enum, utcnow


class SchoolContactRole(StrEnum):
    """Why a staff member receives a school's Operation Encompass notices."""

    DESIGNATED_SAFEGUARDING_LEAD = "designated_safeguarding_lead"
    DEPUTY_DESIGNATED_SAFEGUARDING_LEAD = "deputy_designated_safeguarding_lead"
    # No URN: children with no current school (elective home education, missing education).
    LA_EDUCATION_SAFEGUARDING_LEAD = "la_education_safeguarding_lead"


class SchoolContact(UUIDPrimaryKey, Base):
    """A staff member (by sign-in subject) who receives a school's notices, or the LA's when `urn` is None."""

    __tablename__ = "school_contact"
    __table_args__ = (UniqueConstraint("urn", "subject"),)

    urn: Mapped[str | None] = mapped_column(String(6), index=True)
    subject: Mapped[str] = mapped_column(String(255), index=True)
    display_name: Mapped[str] = mapped_column(String(200))
    role: Mapped[SchoolContactRole] = mapped_column(str_enum(SchoolContactRole, 64))
    active: Mapped[bool] = mapped_column(default=True)


class SchoolPlacement(Base):
    """Where an education record says its child is educated (one row per item that says so)."""

    __tablename__ = "school_placement"

    item_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("item.id"), primary_key=True)
    # None when the child is not at a school (elective home education, missing education).
    urn: Mapped[str | None] = mapped_column(String(6))
    status: Mapped[str] = mapped_column(String(32))
    since: Mapped[date | None]


class InboxKind(StrEnum):
    """What an inbox entry is."""

    ENCOMPASS = "encompass"
    NOTIFICATION = "notification"
    ENCOMPASS_OVERDUE = "encompass_overdue"


class InboxEntry(SealedRowMixin, UUIDPrimaryKey, Base):
    """One item routed to one person, and whether they have seen it.

    Holds no personal data in clear: the agency, kind and category of the item it is about, and
    for an Operation Encompass notice the notice itself sealed under the child's data key.
    """

    __tablename__ = "inbox_entry"
    __table_args__ = (
        Index("ix_inbox_entry_recipient_kind_created", "recipient", "kind", "created_at"),
        # The overdue sweep: notices not yet acknowledged nor escalated, by deadline.
        Index("ix_inbox_entry_kind_deadline", "kind", "deadline"),
    )

    kind: Mapped[InboxKind] = mapped_column(str_enum(InboxKind, 32))
    recipient: Mapped[str] = mapped_column(String(255))
    recipient_role: Mapped[str] = mapped_column(String(64))
    item_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("item.id"), index=True)
    # The child the item was filed under when routed: its data key seals the notice. (The item
    # may move with a merge later; the notice stays readable under this child's key.)
    child_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("child.id"))
    agency: Mapped[Agency] = mapped_column(str_enum(Agency, 32))
    record_kind: Mapped[RecordKind] = mapped_column(str_enum(RecordKind, 64))
    category: Mapped[str] = mapped_column(String(64))
    # The school (Encompass) or team and case (notifications) it was routed through.
    urn: Mapped[str | None] = mapped_column(String(6))
    case_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("case.id"))
    # For an escalation: the notice that was not acknowledged in time.
    about_entry_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("inbox_entry.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    deadline: Mapped[datetime | None]
    acknowledged_at: Mapped[datetime | None]
    acknowledged_by: Mapped[str | None] = mapped_column(String(255))
    escalated_at: Mapped[datetime | None]
    # NoticeContent (gateway/notifications/encompass.py), sealed under the child's data key with
    # context `inbox_entry:<id>/notice`: what the school may read, never the police record.
    sealed_notice: Mapped[bytes | None] = mapped_column(LargeBinary)


class TeamWebhook(UUIDPrimaryKey, Base):
    """Where a team's notifications are also sent: a local authority case system's endpoint.

    The signing secret is a fresh 256-bit key, stored only wrapped under the key-encryption key
    (shown once, when it is set). At most one active webhook per team.
    """

    __tablename__ = "team_webhook"

    team_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("team.id"), unique=True)
    url: Mapped[str] = mapped_column(String(2000))
    wrapped_secret: Mapped[bytes] = mapped_column(LargeBinary)
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class DeliveryStatus(StrEnum):
    """Where a webhook delivery stands."""

    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


class WebhookDelivery(UUIDPrimaryKey, Base):
    """One notification to send to a team's webhook: an outbox row, written with the notification.

    Its payload holds ids and vocabulary only (no personal data). A worker claims a due row by
    moving its next attempt past a lease (FOR UPDATE SKIP LOCKED), sends it with no transaction
    open, and records the answer; a failure is retried with exponential backoff, then given up.
    """

    __tablename__ = "webhook_delivery"
    __table_args__ = (Index("ix_webhook_delivery_status_next", "status", "next_attempt_at"),)

    webhook_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("team_webhook.id"), index=True)
    entry_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("inbox_entry.id"))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[DeliveryStatus] = mapped_column(str_enum(DeliveryStatus, 16), default=DeliveryStatus.PENDING)
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_status: Mapped[int | None]
    delivered_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

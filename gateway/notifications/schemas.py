"""What the inbox endpoints answer."""

from __future__ import annotations

import uuid
from datetime import date, datetime

from pydantic import BaseModel, Field

from policies import Agency, DecisionKind, RecordKind


class PupilRead(BaseModel):
    """Who the notice is about, as the police named the child (so that the school knows its pupil)."""

    given_names: list[str]
    family_name: str | None
    birth_date: date | None


class EncompassNoticeRead(BaseModel):
    """One Operation Encompass notice in a designated safeguarding lead's inbox."""

    id: uuid.UUID
    child_id: uuid.UUID
    received_at: datetime
    deadline: datetime = Field(description="The start of the next school day after the notice arrived.")
    overdue: bool = Field(description="Not acknowledged by anyone it went to, and past its deadline.")
    school_urn: str | None = Field(description="The school it went to; None when sent to the local authority's lead.")
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    withdrawn: bool = Field(
        description="The police have since retracted or restricted the record: the notice is no longer shown."
    )
    pupil: PupilRead | None
    notice: str | None = Field(description="The notice the police wrote for the school (never their record).")
    incident_at: datetime | None
    contact: str | None = Field(description="Whom at the police to ask.")


class EncompassInboxRead(BaseModel):
    """A DSL's Operation Encompass notices, unacknowledged first, each newest first."""

    notices: list[EncompassNoticeRead]
    unacknowledged: int


class NotificationRead(BaseModel):
    """New information about a child of one's case: which agency and kind, never the record itself."""

    id: uuid.UUID
    kind: str = Field(description="notification (a new record) or encompass_overdue (a school's notice not acknowledged).")
    child_id: uuid.UUID
    agency: Agency
    record_kind: RecordKind
    category: str
    created_at: datetime
    read_at: datetime | None
    decision: DecisionKind = Field(
        description="What the child's view would show you of the record: disclose or redact (open the view), or "
        "indicate (withheld; ask the agency)."
    )
    message: str


class NotificationsRead(BaseModel):
    """A lead practitioner's notifications, unread first, each newest first."""

    notifications: list[NotificationRead]
    unread: int


class AcknowledgedRead(BaseModel):
    """An inbox entry marked acknowledged (a notice) or read (a notification)."""

    id: uuid.UUID
    acknowledged_at: datetime
    acknowledged_by: str
    late: bool = Field(description="Acknowledged after the notice's deadline (notices only).")

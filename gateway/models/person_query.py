"""Other agencies' queries about a person ($person-info-query) that wait for a lead practitioner.

- `PersonQueryReferral`: a query the ISA sends for review, matched to a child with an open
  case: one row per open case, on the allocated team's queue, for its lead practitioner to
  decide whether and how to answer the querying agency. Holds no personal data: the query's
  name, birth date and NHS number are never stored, only the child it matched, the reason
  (a legislation URI) and who asked. The lead practitioner's decision (share the team's contact
  with the querying agency, or decline) is kept with who decided and when; its note, which may
  name people, is sealed under the child's data key.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, Index, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from policies import Agency

from .base import Base, SealedRowMixin, UUIDPrimaryKey, str_enum, utcnow


class ReferralStatus(StrEnum):
    """Where a referred query stands on the lead practitioner's queue."""

    PENDING = "pending"
    CONTACT_SHARED = "contact_shared"  # the lead practitioner decided to give the querying agency the contact
    DECLINED = "declined"  # the lead practitioner decided not to answer


class PersonQueryReferral(SealedRowMixin, UUIDPrimaryKey, Base):
    """A referred query on one allocated team's queue (the lead practitioner decides)."""

    __tablename__ = "person_query_referral"
    __table_args__ = (Index("ix_person_query_referral_team_status", "team_id", "status", "created_at"),)

    # The reference the querying agency was given: shared by the rows of one query (one per open case).
    query_id: Mapped[uuid.UUID] = mapped_column(index=True)
    client_id: Mapped[str] = mapped_column(ForeignKey("client.id"))
    agency: Mapped[Agency] = mapped_column(str_enum(Agency, 32))
    # The legislation URI the query stated, as sent (at most 512 characters, no spaces).
    reason: Mapped[str] = mapped_column(String(512))
    child_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("child.id"))
    case_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("case.id"))
    team_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("team.id"))
    status: Mapped[ReferralStatus] = mapped_column(str_enum(ReferralStatus, 16), default=ReferralStatus.PENDING)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    decided_at: Mapped[datetime | None]
    decided_by: Mapped[str | None] = mapped_column(String(255))
    # The decider's free-text note (it may name people), sealed under the child's data key.
    sealed_note: Mapped[bytes | None] = mapped_column(LargeBinary)

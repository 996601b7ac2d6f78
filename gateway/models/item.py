"""Items: one shared fact each, normalised, with its original payload sealed."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import JSON, ForeignKey, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, UUIDPrimaryKey, utcnow
from .child import RecordStatus


class Item(UUIDPrimaryKey, Base):
    """One version of one source record about one child."""

    __tablename__ = "item"
    __table_args__ = (UniqueConstraint("client_id", "source_record_id", "source_version"),)

    child_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("child.id"), index=True)
    identity_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("identity.id"))
    client_id: Mapped[str] = mapped_column(ForeignKey("client.id"), index=True)
    agency: Mapped[str] = mapped_column(String(32))
    source_record_id: Mapped[str] = mapped_column(String(255))
    source_version: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(64))
    category: Mapped[str] = mapped_column(String(64))
    occurred_at: Mapped[datetime | None]
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    security_labels: Mapped[list[str]] = mapped_column(JSON, default=list)
    police_handling_code: Mapped[str | None] = mapped_column(String(1))
    police_grading: Mapped[str | None] = mapped_column(String(8))
    detrimental: Mapped[bool] = mapped_column(default=False)
    status: Mapped[str] = mapped_column(String(32), default=RecordStatus.CURRENT)
    # Summary and original payload, sealed under the child's data key.
    sealed_content: Mapped[bytes] = mapped_column(LargeBinary)

"""Every ISA version the gateway has loaded, kept with its hash, so IG can see what decided a view."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String, Text
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, UUIDPrimaryKey, utcnow


class PolicyVersion(UUIDPrimaryKey, Base):
    """One loaded ISA text, by its SHA-256 (the same text loaded twice is one row)."""

    __tablename__ = "policy_version"

    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    policy_id: Mapped[str] = mapped_column(String(200))
    version: Mapped[str] = mapped_column(String(64))
    text: Mapped[str] = mapped_column(Text)
    first_loaded_at: Mapped[datetime] = mapped_column(default=utcnow)



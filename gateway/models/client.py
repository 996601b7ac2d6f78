"""Registered agency source systems and the client assertions they have used."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, String
from sqlalchemy.orm import Mapped, mapped_column

from policies import Agency

from .base import Base, str_enum, utcnow


class Client(Base):
    """An agency system allowed to push records (SMART Backend Services client)."""

    __tablename__ = "client"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    agency: Mapped[Agency] = mapped_column(str_enum(Agency, 32))
    jwks: Mapped[dict[str, Any]] = mapped_column(JSON)
    # RecordKind values this client may push (`identity` for claims about who a child is).
    allowed_kinds: Mapped[list[str]] = mapped_column(JSON, default=list)
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class UsedAssertion(Base):
    """A client assertion `jti` already spent; kept until it would have expired anyway."""

    __tablename__ = "used_assertion"

    client_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    jti: Mapped[str] = mapped_column(String(255), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(index=True)

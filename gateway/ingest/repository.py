"""Queries for stored item versions."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway.models import Item, RecordStatus


def get_item_version(session: Session, *, client_id: str, source_record_id: str, source_version: str) -> Item | None:
    """Return one stored version of a source record, if pushed before."""
    return session.scalar(
        select(Item).where(
            Item.client_id == client_id,
            Item.source_record_id == source_record_id,
            Item.source_version == source_version,
        )
    )


def get_current_items(session: Session, *, client_id: str, source_record_id: str) -> list[Item]:
    """Return the version(s) of a source record still in force."""
    return list(
        session.scalars(
            select(Item).where(
                Item.client_id == client_id,
                Item.source_record_id == source_record_id,
                Item.status != RecordStatus.SUPERSEDED,
            )
        )
    )

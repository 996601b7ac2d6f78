"""Queries for stored item versions, by source (never by child: that goes through access)."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from gateway.models import Item
from policies import RecordStatus


def get_item_version(session: Session, *, client_id: str, source_record_id: str, source_version: str) -> Item | None:
    """Return one stored version of a source record, if pushed before."""
    return session.scalar(
        select(Item).where(
            Item.client_id == client_id,
            Item.source_record_id == source_record_id,
            Item.source_version == source_version,
        )
    )


def supersede_items(session: Session, *, client_id: str, source_record_id: str) -> None:
    """Mark the version(s) of a source record still in force superseded by a newer one."""
    session.execute(
        update(Item)
        .where(
            Item.client_id == client_id,
            Item.source_record_id == source_record_id,
            Item.status != RecordStatus.SUPERSEDED,
        )
        .values(status=RecordStatus.SUPERSEDED)
        .execution_options(synchronize_session=False)
    )

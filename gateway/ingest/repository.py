"""Queries for stored item versions, by source (never by child: that goes through access)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from gateway.models import Item


def get_item_version(session: Session, *, client_id: str, source_record_id: str, source_version: str) -> Item | None:
    """Return one stored version of a source record, if pushed before."""
    statement = Item.select_version(client_id=client_id, source_record_id=source_record_id, source_version=source_version)
    item: Item | None = session.scalar(statement)
    return item


def supersede_items(session: Session, *, client_id: str, source_record_id: str) -> None:
    """Mark the version(s) of a source record still in force superseded by a newer one."""
    session.execute(Item.supersede(client_id=client_id, source_record_id=source_record_id))

"""Queries for stored item and consent versions, by source (never by child: that goes through access)."""

from __future__ import annotations

import uuid
from collections.abc import Collection
from typing import Any, NamedTuple

from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway.kit.db import insert_all
from gateway.kit.sql import dialect_of, one_of
from gateway.models import Consent, Item
from policies import RecordStatus


class StoredItem(NamedTuple):
    """A stored version of a source record, and the child it is filed under."""

    source_record_id: str
    source_version: str
    status: RecordStatus
    child_id: uuid.UUID


def get_stored_items(session: Session, *, client_id: str, versions: Collection[tuple[str, str]]) -> list[StoredItem]:
    """Return these versions of a client's source records, and the versions in force of the same records."""
    statement = Item.select_stored(Item.child_id, client_id=client_id, versions=versions, dialect=dialect_of(session))
    rows = [StoredItem(*row) for row in session.execute(statement)]
    return [row for row in rows if (row[0], row[1]) in versions or row.status != RecordStatus.SUPERSEDED]


def supersede_items(session: Session, *, client_id: str, source_record_ids: Collection[str]) -> None:
    """Mark the versions in force of these source records superseded by newer ones."""
    session.execute(
        Item.supersede(client_id=client_id, source_record_ids=source_record_ids, dialect=dialect_of(session))
    )


def add_items(session: Session, rows: list[dict[str, Any]]) -> None:
    """Insert new item versions (the caller holds their records' locks and found them not stored)."""
    insert_all(session, Item, rows)


def get_stored_consents(
    session: Session, *, client_id: str, versions: Collection[tuple[str, str]]
) -> dict[tuple[str, str], uuid.UUID]:
    """Return the child of each of these versions of a client's consent records that is stored already."""
    if not versions:
        return {}
    rows = session.execute(
        select(Consent.source_record_id, Consent.source_version, Consent.child_id).where(
            Consent.client_id == client_id,
            one_of(Consent.source_record_id, {record_id for record_id, _ in versions}, dialect=dialect_of(session)),
        )
    )
    wanted = set(versions)
    stored: dict[tuple[str, str], uuid.UUID] = {}
    for record_id, version, child_id in rows:
        if record_id is not None and version is not None and (record_id, version) in wanted:
            stored[(record_id, version)] = child_id
    return stored


def add_consents(session: Session, rows: list[dict[str, Any]]) -> None:
    """Insert imported consent versions (the caller holds their records' locks and found them not stored)."""
    insert_all(session, Consent, rows)

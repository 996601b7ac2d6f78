"""Queries for stored item and consent versions, by source (never by child: that goes through access)."""

from __future__ import annotations

import uuid
from collections.abc import Collection
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session

from gateway.kit.db import insert_all
from gateway.kit.sql import dialect_of, one_of
from gateway.models import Consent, Identity, Item, Link, LinkState
from policies import RecordKind, RecordStatus


class StoredItem(NamedTuple):
    """A stored version of a source record, and the child it is filed under."""

    source_record_id: str
    source_version: str
    status: RecordStatus
    child_id: uuid.UUID
    received_at: datetime


def get_stored_items(session: Session, *, client_id: str, versions: Collection[tuple[str, str]]) -> list[StoredItem]:
    """Return these versions of a client's source records, and the versions in force of the same records."""
    statement = Item.select_stored(
        Item.child_id, Item.received_at, client_id=client_id, versions=versions, dialect=dialect_of(session)
    )
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


class StoredConsent(NamedTuple):
    """A stored version of a client's consent record: the child it is filed under, and when it was recorded."""

    child_id: uuid.UUID
    recorded_at: datetime


def get_stored_consents(
    session: Session, *, client_id: str, versions: Collection[tuple[str, str]]
) -> dict[tuple[str, str], StoredConsent]:
    """Return each of these versions of a client's consent records that is stored already."""
    if not versions:
        return {}
    rows = session.execute(
        select(Consent.source_record_id, Consent.source_version, Consent.child_id, Consent.recorded_at).where(
            Consent.client_id == client_id,
            one_of(Consent.source_record_id, {record_id for record_id, _ in versions}, dialect=dialect_of(session)),
        )
    )
    wanted = set(versions)
    stored: dict[tuple[str, str], StoredConsent] = {}
    for record_id, version, child_id, recorded_at in rows:
        if record_id is not None and version is not None and (record_id, version) in wanted:
            stored[(record_id, version)] = StoredConsent(child_id, recorded_at)
    return stored


def add_consents(session: Session, rows: list[dict[str, Any]]) -> None:
    """Insert imported consent versions (the caller holds their records' locks and found them not stored)."""
    insert_all(session, Consent, rows)


class IdentityVersion(NamedTuple):
    """A version of a client's identity record: its status, when it was stored, and the child it is linked to."""

    source_record_id: str
    source_version: str
    status: RecordStatus
    received_at: datetime
    id: uuid.UUID
    child_id: uuid.UUID | None  # None: not linked


def get_identity_versions(
    session: Session,
    *,
    client_id: str,
    source_record_ids: Collection[str],
    versions: Collection[tuple[str, str]] = (),
) -> list[IdentityVersion]:
    """Return, newest first, the current versions of these identity records of a client's, and these versions.

    One query answers what a push asks of identities after linking them: which identity and child
    each subject names (the current, linked versions), and when each version it pushed was stored.
    """
    records = set(source_record_ids) | {record_id for record_id, _ in versions}
    if not records:
        return []
    dialect = dialect_of(session)
    in_force = Identity.status == RecordStatus.CURRENT
    statement = (
        select(
            Identity.source_record_id, Identity.source_version, Identity.status, Identity.received_at, Identity.id,
            Link.child_id,
        )
        .outerjoin(Link, and_(Link.identity_id == Identity.id, Link.state == LinkState.LINKED))
        .where(
            Identity.client_id == client_id,
            one_of(Identity.source_record_id, records, dialect=dialect),
            or_(in_force, one_of(Identity.source_version, {version for _, version in versions}, dialect=dialect))
            if versions
            else in_force,
        )
        .order_by(Identity.received_at.desc())
    )
    return [IdentityVersion(*row) for row in session.execute(statement)]


class ItemInForce(NamedTuple):
    """The version in force of a client's source record: current, or retracted as entered in error."""

    id: uuid.UUID
    child_id: uuid.UUID
    kind: RecordKind
    status: RecordStatus


def get_item_in_force(session: Session, *, client_id: str, source_record_id: str) -> ItemInForce | None:
    """Return the version in force of one of a client's source records; None if the client never pushed it."""
    row = session.execute(
        select(Item.id, Item.child_id, Item.kind, Item.status).where(
            Item.client_id == client_id,
            Item.source_record_id == source_record_id,
            Item.status != RecordStatus.SUPERSEDED,
        )
    ).first()
    return None if row is None else ItemInForce(*row)


def retract_item(session: Session, *, item_id: uuid.UUID) -> None:
    """Mark an item version entered in error (the caller holds its record's lock and found it current)."""
    session.execute(
        update(Item)
        .where(Item.id == item_id, Item.status == RecordStatus.CURRENT)
        .values(status=RecordStatus.ENTERED_IN_ERROR)
        .execution_options(synchronize_session=False)
    )

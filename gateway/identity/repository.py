"""Queries for identities, links and the children they point at, a whole push at a time."""

from __future__ import annotations

import uuid
from collections.abc import Collection
from typing import Any, NamedTuple

from sqlalchemy import and_, delete, select
from sqlalchemy.orm import Session

from gateway.cases.access import ChildAccess

from .authority import LinkingAuthority
from gateway.kit.db import insert_all
from gateway.kit.sql import dialect_of, one_of
from gateway.models import Child, ChildIdentifier, Identity, IdentityBlock, Link, LinkState
from policies import RecordStatus


class StoredIdentity(NamedTuple):
    """A stored version of an identity record, and the child it is linked to (None: unlinked)."""

    source_record_id: str
    source_version: str
    status: RecordStatus
    id: uuid.UUID
    nhs_number_index: str | None
    upn_index: str | None
    child_id: uuid.UUID | None


def get_stored_identities(
    session: Session, *, client_id: str, versions: Collection[tuple[str, str]]
) -> list[StoredIdentity]:
    """Return these versions of a client's identity records, and the versions in force, with their links."""
    statement = Identity.select_stored(
        Identity.id,
        Identity.nhs_number_index,
        Identity.upn_index,
        Link.child_id,
        client_id=client_id, versions=versions, dialect=dialect_of(session)
    ).outerjoin(Link, and_(Link.identity_id == Identity.id, Link.state == LinkState.LINKED))
    rows = [StoredIdentity(*row) for row in session.execute(statement)]
    return [row for row in rows if (row[0], row[1]) in versions or row.status != RecordStatus.SUPERSEDED]


def supersede_identities(session: Session, *, client_id: str, source_record_ids: Collection[str]) -> None:
    """Mark the versions in force of these identity records superseded by newer ones."""
    session.execute(
        Identity.supersede(client_id=client_id, source_record_ids=source_record_ids, dialect=dialect_of(session))
    )


class BlockCandidate(NamedTuple):
    """A current, linked identity sharing a blocking key with a claim, its child and sealed claim."""

    key: str
    identity_id: uuid.UUID
    child_id: uuid.UUID
    sealed_claim: bytes
    wrapped_data_key: bytes | None


def get_block_candidates(session: Session, authority: LinkingAuthority, *, blocks: Collection[str]) -> list[BlockCandidate]:
    """Return every current, linked identity that has one of these blocking keys, once per key."""
    if not blocks:
        return []
    rows = session.execute(
        select(IdentityBlock.key, Identity.id, Link.child_id, Identity.sealed_claim, Child.wrapped_data_key)
        .join(Identity, Identity.id == IdentityBlock.identity_id)
        .join(Link, and_(Link.identity_id == Identity.id, Link.state == LinkState.LINKED))
        .join(Child, Child.id == Link.child_id)
        .where(
            one_of(IdentityBlock.key, blocks, dialect=dialect_of(session)),
            Identity.status == RecordStatus.CURRENT,
        )
    )
    return [BlockCandidate(*row) for row in rows]


def get_children_by_identifiers(
    session: Session, *, identifiers: Collection[tuple[str, str]]
) -> dict[tuple[str, str], tuple[uuid.UUID, bytes | None]]:
    """Return, by (scheme, blind index), the child owning each identifier found and its wrapped data key.

    One query for every scheme: a blind index is keyed with its scheme, so an index of one
    scheme never equals another's.
    """
    if not identifiers:
        return {}
    rows = session.execute(
        select(ChildIdentifier.scheme, ChildIdentifier.blind_index, Child.id, Child.wrapped_data_key)
        .join(Child, Child.id == ChildIdentifier.child_id)
        .where(one_of(ChildIdentifier.blind_index, {index for _, index in identifiers}, dialect=dialect_of(session)))
    )
    wanted = set(identifiers)
    return {
        (scheme, blind_index): (child_id, wrapped)
        for scheme, blind_index, child_id, wrapped in rows
        if (scheme, blind_index) in wanted
    }


def get_wrapped_data_keys(session: Session, *, child_ids: Collection[uuid.UUID]) -> dict[uuid.UUID, bytes | None]:
    """Return the children's wrapped data keys (None for an erased child), by child id."""
    if not child_ids:
        return {}
    rows = session.execute(select(Child.id, Child.wrapped_data_key).where(one_of(Child.id, child_ids, dialect=dialect_of(session))))
    return {child_id: wrapped for child_id, wrapped in rows}


def add_children(session: Session, rows: list[dict[str, Any]]) -> None:
    """Insert new children (id and wrapped data key each) in one statement."""
    insert_all(session, Child, rows)


def delete_children(session: Session, *, child_ids: Collection[uuid.UUID]) -> None:
    """Delete children that were created in this transaction and never used."""
    if child_ids:
        session.execute(delete(Child).where(Child.id.in_(child_ids)))


def add_links(session: Session, rows: list[dict[str, Any]]) -> None:
    """Insert links in one statement (proposed ones have more columns: those go in a second)."""
    for shape in {tuple(sorted(row)) for row in rows}:
        insert_all(session, Link, [row for row in rows if tuple(sorted(row)) == shape])


def get_subjects_by_nhs_number(
    session: Session, *, client_id: str, nhs_number_indexes: Collection[str]
) -> dict[str, list[tuple[uuid.UUID, uuid.UUID]]]:
    """Return, by NHS number blind index, every identity in force of this client's with it and its child, newest first.

    Every one, not only the newest: a subject named by NHS number is refused when two of the
    client's identities with it are linked to different children. Only the client's own records,
    so that an answer never says whether another source knows a child.
    """
    if not nhs_number_indexes:
        return {}
    rows = session.execute(
        select(Identity.nhs_number_index, Identity.id, Link.child_id)
        .join(Link, Link.identity_id == Identity.id)
        .where(
            Identity.client_id == client_id,
            one_of(Identity.nhs_number_index, nhs_number_indexes, dialect=dialect_of(session)),
            Identity.status == RecordStatus.CURRENT,
            Link.state == LinkState.LINKED,
        )
        .order_by(Identity.received_at.desc())
    )
    subjects: dict[str, list[tuple[uuid.UUID, uuid.UUID]]] = {}
    for index, identity_id, child_id in rows:
        if index is not None:
            subjects.setdefault(index, []).append((identity_id, child_id))
    return subjects


def get_linked_identities(session: Session, access: ChildAccess) -> list[Identity]:
    """Return the current identities linked to the child the access opens."""
    return list(
        session.scalars(
            select(Identity)
            .join(Link, Link.identity_id == Identity.id)
            .where(
                Link.child_id == access.child_id,
                Link.state == LinkState.LINKED,
                Identity.status == RecordStatus.CURRENT,
            )
            .order_by(Identity.received_at)
        )
    )


def get_current_children(session: Session, *, child_ids: Collection[uuid.UUID]) -> dict[uuid.UUID, uuid.UUID]:
    """Return, for each child, the child its records are on now: itself, or the child it was merged into
    (followed through merges of merges), one query per step."""
    merged_into: dict[uuid.UUID, uuid.UUID] = {}
    pending, queried = set(child_ids), set()
    while pending:
        queried |= pending
        rows = session.execute(
            select(Child.id, Child.merged_into_id).where(
                one_of(Child.id, pending, dialect=dialect_of(session)), Child.merged_into_id.is_not(None)
            )
        )
        merged_into.update({child_id: into for child_id, into in rows if into is not None})
        pending = set(merged_into.values()) - queried

    def home(child_id: uuid.UUID) -> uuid.UUID:
        seen = {child_id}
        while child_id in merged_into and merged_into[child_id] not in seen:  # a cycle would be a bug: stop
            child_id = merged_into[child_id]
            seen.add(child_id)
        return child_id

    return {child_id: home(child_id) for child_id in child_ids}

"""Queries for identities, links and the children they point at."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway.cases.access import ChildAccess
from gateway.models import ChildIdentifier, Identity, Link, LinkState
from policies import RecordStatus


def get_identity_version(
    session: Session, *, client_id: str, source_record_id: str, source_version: str
) -> Identity | None:
    """Return one stored version of a source's identity record, if pushed before."""
    statement = Identity.select_version(
        client_id=client_id, source_record_id=source_record_id, source_version=source_version
    )
    identity: Identity | None = session.scalar(statement)
    return identity


def supersede_identities(session: Session, *, client_id: str, source_record_id: str) -> None:
    """Mark the current version(s) of a source's identity record superseded by a newer one."""
    session.execute(Identity.supersede(client_id=client_id, source_record_id=source_record_id))


def get_current_identities(session: Session, *, client_id: str, source_record_id: str) -> list[Identity]:
    """Return the current version(s) of a source's identity record."""
    return list(
        session.scalars(
            select(Identity).where(
                Identity.client_id == client_id,
                Identity.source_record_id == source_record_id,
                Identity.status == RecordStatus.CURRENT,
            )
        )
    )


def get_linked_child_id(session: Session, *, identity_id: uuid.UUID) -> uuid.UUID | None:
    """Return the child an identity is linked to, if the link is in force."""
    return session.scalar(
        select(Link.child_id).where(Link.identity_id == identity_id, Link.state == LinkState.LINKED)
    )


def get_child_id_by_identifier(session: Session, *, scheme: str, blind_index: str) -> uuid.UUID | None:
    """Return the child that owns an identifier, by its blind index."""
    return session.scalar(
        select(ChildIdentifier.child_id).where(
            ChildIdentifier.scheme == scheme, ChildIdentifier.blind_index == blind_index
        )
    )


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

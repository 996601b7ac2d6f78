"""Queries that read one child's data: each takes the ChildAccess that opened the child."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway.cases.access import ChildAccess
from gateway.models import Child, Client, Consent, Item, Link, LinkState, Override
from policies import RecordStatus


def get_child(session: Session, access: ChildAccess) -> Child:
    """Return the child the access opens."""
    child = session.get(Child, access.child_id)
    assert child is not None  # an access is only ever granted through a case, whose key points here
    return child


def get_items(session: Session, access: ChildAccess) -> list[Item]:
    """Return the child's items still in force (current, or marked entered in error)."""
    return list(
        session.scalars(
            select(Item).where(Item.child_id == access.child_id, Item.status != RecordStatus.SUPERSEDED)
        )
    )


def get_links(session: Session, access: ChildAccess) -> dict[uuid.UUID, Link]:
    """Return the child's links in force, by identity id."""
    links = session.scalars(select(Link).where(Link.child_id == access.child_id, Link.state == LinkState.LINKED))
    return {link.identity_id: link for link in links}


def get_consents(session: Session, access: ChildAccess) -> list[Consent]:
    """Return the child's consent decisions, newest first."""
    return list(
        session.scalars(
            select(Consent).where(Consent.child_id == access.child_id).order_by(Consent.recorded_at.desc())
        )
    )


def get_overrides(session: Session, access: ChildAccess) -> list[Override]:
    """Return the child's overrides, newest first."""
    return list(
        session.scalars(
            select(Override).where(Override.child_id == access.child_id).order_by(Override.created_at.desc())
        )
    )


def get_clients(session: Session, *, client_ids: set[str]) -> dict[str, Client]:
    """Return source systems by id."""
    if not client_ids:
        return {}
    return {c.id: c for c in session.scalars(select(Client).where(Client.id.in_(client_ids)))}

"""Queries that read one child's data; callers must have passed require_child_access()."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway.models import Client, Consent, Item, Link, LinkState, Override, RecordStatus


def get_items(session: Session, *, child_id: uuid.UUID) -> list[Item]:
    """Return the child's items still in force (current, or marked entered in error)."""
    return list(
        session.scalars(
            select(Item).where(Item.child_id == child_id, Item.status != RecordStatus.SUPERSEDED)
        )
    )


def get_links(session: Session, *, identity_ids: list[uuid.UUID]) -> dict[uuid.UUID, Link]:
    """Return the links in force of the given identities, by identity id."""
    if not identity_ids:
        return {}
    links = session.scalars(
        select(Link).where(Link.identity_id.in_(identity_ids), Link.state == LinkState.LINKED)
    )
    return {link.identity_id: link for link in links}


def get_clients(session: Session, *, client_ids: set[str]) -> dict[str, Client]:
    """Return source systems by id."""
    if not client_ids:
        return {}
    return {c.id: c for c in session.scalars(select(Client).where(Client.id.in_(client_ids)))}


def get_consents(session: Session, *, child_id: uuid.UUID) -> list[Consent]:
    """Return the child's consent decisions, newest first."""
    return list(
        session.scalars(select(Consent).where(Consent.child_id == child_id).order_by(Consent.recorded_at.desc()))
    )


def get_overrides(session: Session, *, child_id: uuid.UUID) -> list[Override]:
    """Return the child's overrides, newest first."""
    return list(
        session.scalars(select(Override).where(Override.child_id == child_id).order_by(Override.created_at.desc()))
    )

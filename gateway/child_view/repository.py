"""Queries that read one child's data: each takes the ChildAccess that opened the child."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import NamedTuple

from sqlalchemy import Text, case, cast, func, or_, select
from sqlalchemy.orm import Session

from gateway.cases.access import ChildAccess
from gateway.models import Child, ChildMerge, Client, Consent, Item, Link, LinkState, Override, RequestStatus, SeeRequest
from policies import Agency, Purpose, RecordKind, RecordStatus


class ItemRow(NamedTuple):
    """The columns of an item the view reads, as a plain row: the view never builds Item objects."""

    id: uuid.UUID
    client_id: str
    agency: Agency
    kind: RecordKind
    category: str
    occurred_at: datetime | None
    received_at: datetime
    status: RecordStatus
    police_handling_code: str | None
    detrimental: bool
    sealed_summary: bytes | None
    # The sealed content, only for rows stored before migration 0003 (no sealed summary): their
    # summary is read from it. None for every other row, so that payloads stay in the database.
    legacy_content: bytes | None
    # Whom to ask about it (an officer or unit), and its sealed people, locations and grading, if any.
    contact: str | None
    sealed_detail: bytes | None
    security_labels: frozenset[str]


def get_child(session: Session, access: ChildAccess) -> Child:
    """Return the child the access opens."""
    child = session.get(Child, access.child_id)
    assert child is not None  # an access is only ever granted through a case, whose key points here
    return child


def get_items(session: Session, access: ChildAccess) -> list[ItemRow]:
    """Return the child's items still in force (current, or marked entered in error), newest first, as rows.

    Newest by when it happened (when it was received, if the source did not say), then by when
    it was received; the id breaks ties, so that the order is the same every time.
    """
    # Labels come as JSON text, parsed once per distinct value: a child's hundreds of items carry a
    # handful of label sets, and parsing each row's JSON was a third of this query's cost.
    label_sets: dict[str, frozenset[str]] = {}

    def labels(text: str) -> frozenset[str]:
        parsed = label_sets.get(text)
        if parsed is None:
            parsed = label_sets[text] = frozenset(json.loads(text))
        return parsed

    item = Item.__table__.c
    # Executed on the session's connection, as Core: the ORM's result machinery would cost more
    # than the rest of the query for hundreds of plain rows.
    rows = session.connection().execute(
        select(
            item.id,
            item.client_id,
            item.agency,
            item.kind,
            item.category,
            item.occurred_at,
            item.received_at,
            item.status,
            item.police_handling_code,
            item.detrimental,
            item.sealed_summary,
            # In the same query, not a second one: after migration 0003 this is NULL for every row.
            case((item.sealed_summary.is_(None), item.sealed_content)).label("legacy_content"),
            item.contact,
            item.sealed_detail,
            cast(item.security_labels, Text).label("security_labels"),  # last: parsed below
        )
        .where(item.child_id == access.child_id, item.status != RecordStatus.SUPERSEDED)
        .order_by(func.coalesce(item.occurred_at, item.received_at).desc(), item.received_at.desc(), item.id)
    ).all()  # fetched at once: iterating the result would fetch row by row
    return [ItemRow._make((*row[:-1], labels(row[-1]))) for row in rows]


def get_links(session: Session, access: ChildAccess) -> dict[uuid.UUID, Link]:
    """Return the child's links in force, by identity id."""
    links = session.scalars(select(Link).where(Link.child_id == access.child_id, Link.state == LinkState.LINKED))
    return {link.identity_id: link for link in links}


def get_merges(session: Session, access: ChildAccess) -> list[ChildMerge]:
    """Return the merges, unmerges and moves that took records to or from the child, newest first."""
    return list(
        session.scalars(
            select(ChildMerge)
            .where(or_(ChildMerge.child_id == access.child_id, ChildMerge.into_child_id == access.child_id))
            .order_by(ChildMerge.merged_at.desc())
        )
    )


def count_proposed_links(session: Session, access: ChildAccess) -> int:
    """Return how many proposed links about the child wait for a person."""
    on_child = select(Link.identity_id).where(Link.child_id == access.child_id, Link.state == LinkState.LINKED)
    return session.scalar(
        select(func.count())
        .select_from(Link)
        .where(Link.state == LinkState.REVIEW, or_(Link.child_id == access.child_id, Link.identity_id.in_(on_child)))
    ) or 0


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


def get_approved_requests(session: Session, access: ChildAccess, *, purpose: Purpose) -> dict[uuid.UUID, uuid.UUID]:
    """Return item id → approved request id: the viewer's own approved requests to see, for this child and purpose."""
    rows = session.execute(
        select(SeeRequest.item_id, SeeRequest.id)
        .where(
            SeeRequest.child_id == access.child_id,
            SeeRequest.requester == access.subject,
            SeeRequest.requester_agency == access.agency,
            SeeRequest.purpose == purpose,
            SeeRequest.status == RequestStatus.APPROVED,
        )
        .order_by(SeeRequest.decided_at)
    )
    return {item_id: request_id for item_id, request_id in rows}

"""Queries for search: which of the children a search found the caller may open."""

from __future__ import annotations

import uuid
from collections.abc import Collection

from sqlalchemy.orm import Session

from gateway.auth.principal import Principal
from gateway.cases.repository import select_accessible_children
from gateway.kit.sql import dialect_of, one_of
from gateway.models import Case


def get_accessible_child_ids(session: Session, principal: Principal, *, child_ids: Collection[uuid.UUID]) -> set[uuid.UUID]:
    """Return those of these children the access query lets the caller open, in one query."""
    if not child_ids:
        return set()
    rows = session.execute(
        select_accessible_children(principal).where(one_of(Case.child_id, child_ids, dialect=dialect_of(session)))
    )
    return {child_id for child_id, *_ in rows}

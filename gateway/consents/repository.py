"""Queries of the consent registry: each read takes the ChildAccess that opened the child."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway.cases.access import ChildAccess
from gateway.models import Child, Consent
from policies import Purpose


def get_consents(session: Session, access: ChildAccess, *, purpose: Purpose | None = None) -> list[Consent]:
    """Return the child's consent decisions (of one purpose, if given), newest recorded first."""
    statement = select(Consent).where(Consent.child_id == access.child_id)
    if purpose is not None:
        statement = statement.where(Consent.purpose == purpose)
    # The id breaks ties, so that the order is the same every time.
    return list(session.scalars(statement.order_by(Consent.recorded_at.desc(), Consent.id)))


def get_wrapped_data_key(session: Session, access: ChildAccess) -> bytes | None:
    """Return the child's wrapped data key (None: the child was erased)."""
    return session.scalar(select(Child.wrapped_data_key).where(Child.id == access.child_id))


def add_consent(session: Session, consent: Consent) -> None:
    """Add a new consent decision (rows are never updated: a withdrawal is another row)."""
    session.add(consent)
    session.flush()

"""get_items reads plain rows: the same values as the ORM, newest first, payloads left in the database."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from gateway.auth.keys import SigningKeys
from gateway.auth.principal import Principal, PrincipalKind
from gateway.cases.access import ChildAccess
from gateway.cases.repository import get_child_access
from gateway.child_view import repository
from gateway.kit.crypto import DataKeyring
from gateway.models import Item
from gateway.settings import Settings
from policies import RecordStatus
from tests.gateway.child_view.helpers import SeededChild, seed_child


def _access(session: Session, seeded: SeededChild) -> ChildAccess:
    member = seeded.member
    principal = Principal(PrincipalKind.STAFF, member.subject, member.agency, member.role)
    access = get_child_access(session, principal, child_id=seeded.child_id)
    assert access is not None
    return access


def test_rows_hold_what_the_orm_holds_newest_first(
    client: TestClient, session: Session, settings: Settings, signing_keys: SigningKeys, keyring: DataKeyring
) -> None:
    seeded = seed_child(client, session, settings, signing_keys, keyring, encounters=12, police_items=12)
    stored = session.scalars(select(Item).where(Item.child_id == seeded.child_id)).all()

    rows = repository.get_items(session, _access(session, seeded))

    in_force = {item.id: item for item in stored if item.status is not RecordStatus.SUPERSEDED}
    assert sorted(row.id for row in rows) == sorted(in_force)
    for row in rows:
        item = in_force[row.id]
        assert row == repository.ItemRow(
            id=item.id,
            client_id=item.client_id,
            agency=item.agency,
            kind=item.kind,
            category=item.category,
            occurred_at=item.occurred_at,
            received_at=item.received_at,
            status=item.status,
            police_handling_code=item.police_handling_code,
            detrimental=item.detrimental,
            sealed_summary=item.sealed_summary,
            legacy_content=None,  # every row has its sealed summary: no payload leaves the database
            contact=item.contact,
            sealed_detail=item.sealed_detail,
            security_labels=frozenset(item.security_labels),
        )
    newest_first = [((r.occurred_at or r.received_at), r.received_at) for r in rows]
    assert newest_first == sorted(newest_first, reverse=True)
    assert any(r.security_labels for r in rows) and any(not r.security_labels for r in rows)


def test_rows_stored_before_the_sealed_summary_bring_their_sealed_content(
    client: TestClient, session: Session, settings: Settings, signing_keys: SigningKeys, keyring: DataKeyring
) -> None:
    seeded = seed_child(client, session, settings, signing_keys, keyring, encounters=3)
    [old, *new] = session.scalars(select(Item).where(Item.child_id == seeded.child_id)).all()
    # As migration 0003 leaves a row stored before it.
    session.execute(update(Item).where(Item.id == old.id).values(sealed_summary=None))

    rows = {row.id: row for row in repository.get_items(session, _access(session, seeded))}

    assert rows[old.id].sealed_summary is None and rows[old.id].legacy_content == old.sealed_content
    assert all(rows[item.id].legacy_content is None for item in new)

"""Children with many items of every agency, for the view's tests: pushed for real, or stored as ingest stores them."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from gateway.auth.keys import SigningKeys
from gateway.kit import crypto
from gateway.kit.crypto import DataKeyring, seal_value
from gateway.models import Child, Item, ItemContent, Link, TeamMember
from gateway.settings import Settings
from policies import Agency, RecordKind, RecordStatus
from tests.factories import (
    add_member,
    allocate,
    child_bundle,
    client_token,
    demo_child,
    encounter,
    make_client,
    make_team,
    staff_token,
)
from tests.gateway.helpers import child_id_for, push

START = datetime(2025, 1, 1, 9, 0, tzinfo=UTC)


@dataclass(frozen=True)
class SeededChild:
    """A child allocated to a team, and a police member of that team who may open it."""

    child_id: uuid.UUID
    member: TeamMember
    token: str


def seed_child(
    http: TestClient,
    session: Session,
    settings: Settings,
    signing_keys: SigningKeys,
    keyring: DataKeyring,
    *,
    encounters: int,
    police_items: int = 0,
) -> SeededChild:
    """Push a child with encounters (every seventh sensitive), add police items, allocate it to a team."""
    source, _ = make_client(session)
    child = demo_child()
    attendances = [
        encounter(start=START + timedelta(hours=7 * n), sensitive=n % 7 == 3) for n in range(encounters)
    ]
    pushed = push(http, client_token(signing_keys, settings, source), child_bundle(child, encounters=attendances))
    assert pushed.status_code == 200, pushed.text
    child_id = child_id_for(session, keyring, child.nhs_number)
    if police_items:
        store_police_items(session, keyring, child_id=child_id, count=police_items)
    team = make_team(session)
    member = add_member(session, team, agency="police", role="police_officer")
    allocate(session, child_id=child_id, team=team)
    return SeededChild(child_id, member, staff_token(signing_keys, settings, member))


def store_police_items(session: Session, keyring: DataKeyring, *, child_id: uuid.UUID, count: int) -> list[uuid.UUID]:
    """Store police items as ingest does (sealed summary and content): incidents and intelligence,
    handling codes P and C, some judged detrimental, some entered in error, some with no time."""
    police, _ = make_client(session, agency=Agency.POLICE, kinds=("identity", "incident"))
    child = session.get(Child, child_id)
    assert child is not None
    data_key = keyring.unwrap(child.wrapped_data_key)
    identity_id = session.scalar(select(Link.identity_id).where(Link.child_id == child_id).limit(1))
    ids = [uuid.uuid4() for _ in range(count)]
    rows: list[dict[str, Any]] = []
    for n, item_id in enumerate(ids):
        summary = f"Police record {n}: attended an incident at the family home ({'é' if n % 2 else 'ß'})"
        rows.append(
            {
                "id": item_id,
                "child_id": child_id,
                "identity_id": identity_id,
                "client_id": police.id,
                "agency": Agency.POLICE,
                "source_record_id": f"police-{item_id}",
                "source_version": "1",
                "kind": RecordKind.INCIDENT,
                "category": "police.intelligence" if n % 4 == 0 else "police.incident",
                "occurred_at": None if n % 5 == 0 else START + timedelta(days=n, minutes=n),
                "security_labels": [],
                "police_handling_code": "C" if n % 8 == 0 else "P",
                "detrimental": n % 9 == 1,
                "status": RecordStatus.ENTERED_IN_ERROR if n % 11 == 2 else RecordStatus.CURRENT,
                "sealed_content": seal_value(
                    data_key, ItemContent(summary=summary, payload={"n": n}), ItemContent, context=Item.context_for(item_id)
                ),
                "sealed_summary": seal_value(data_key, summary, str, context=Item.context_for(item_id, "summary")),
            }
        )
    session.execute(insert(Item), rows)
    return ids


def record_unsealing(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Return a list that collects the sealing context of every item value the view decrypts from now on."""
    unsealed: list[str] = []
    real_unseal = crypto.OpenedKey.unseal_value

    def recording_unseal(self: crypto.OpenedKey, blob: bytes, type_: type[object], *, context: str) -> object:
        if context.startswith("item:"):  # the identities' claims are decrypted too: not what is counted
            unsealed.append(context)
        return real_unseal(self, blob, type_, context=context)

    monkeypatch.setattr(crypto.OpenedKey, "unseal_value", recording_unseal)
    return unsealed

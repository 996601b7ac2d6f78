"""A child with health records (some mental health), police records (handling codes P and C, one judged
detrimental) and an allocated team: lead practitioner, health and police members; and a member of
another team."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from gateway.auth.keys import SigningKeys
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
from tests.gateway.helpers import child_id_for, get_view, push

START = datetime(2026, 9, 1, 9, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Member:
    row: TeamMember
    token: str

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@dataclass(frozen=True)
class Family:
    """The child, the items by what they are, and the people who look."""

    child_id: uuid.UUID
    health_items: list[uuid.UUID]
    mental_health_items: list[uuid.UUID]
    police_p: uuid.UUID
    police_c: uuid.UUID
    detrimental: uuid.UUID
    lead: Member
    health: Member
    police: Member
    outsider: Member


def store_police(session: Session, keyring: DataKeyring, child_id: uuid.UUID, *, code: str, detrimental: bool = False) -> uuid.UUID:
    """Store one police incident as ingest stores it (sealed summary), with its handling code and s16LA mark."""
    police = session.scalar(select(Item.client_id).where(Item.agency == Agency.POLICE).limit(1))
    if police is None:
        police = make_client(session, agency=Agency.POLICE, kinds=("identity", "incident"))[0].id
    child = session.get(Child, child_id)
    assert child is not None
    data_key = keyring.unwrap(child.wrapped_data_key)
    identity_id = session.scalar(select(Link.identity_id).where(Link.child_id == child_id).limit(1))
    item_id = uuid.uuid4()
    summary = f"Police incident ({code}{', detrimental' if detrimental else ''})"
    row: dict[str, Any] = {
        "id": item_id, "child_id": child_id, "identity_id": identity_id, "client_id": police,
        "agency": Agency.POLICE, "source_record_id": f"police-{item_id}", "source_version": "1",
        "kind": RecordKind.INCIDENT, "category": "police.incident", "occurred_at": START,
        "security_labels": [], "police_handling_code": code, "detrimental": detrimental,
        "status": RecordStatus.CURRENT,
        "sealed_content": seal_value(data_key, ItemContent(summary=summary, payload={}), ItemContent, context=Item.context_for(item_id)),
        "sealed_summary": seal_value(data_key, summary, str, context=Item.context_for(item_id, "summary")),
    }
    session.execute(insert(Item), [row])
    return item_id


@pytest.fixture
def family(client: TestClient, session: Session, settings: Settings, signing_keys: SigningKeys, keyring: DataKeyring) -> Family:
    source, _ = make_client(session)
    child = demo_child()
    attendances = [encounter(start=START + timedelta(days=n), sensitive=n in (1, 3)) for n in range(4)]
    pushed = push(client, client_token(signing_keys, settings, source), child_bundle(child, encounters=attendances))
    assert pushed.status_code == 200, pushed.text
    child_id = child_id_for(session, keyring, child.nhs_number)
    health_rows = session.execute(select(Item.id, Item.security_labels).where(Item.child_id == child_id)).all()
    police_p = store_police(session, keyring, child_id, code="P")
    police_c = store_police(session, keyring, child_id, code="C")
    detrimental = store_police(session, keyring, child_id, code="P", detrimental=True)
    team = make_team(session)
    lead = add_member(session, team, agency="social_care", role="lead_practitioner")
    health = add_member(session, team, agency="health", role="health_practitioner")
    police = add_member(session, team, agency="police", role="police_officer")
    other_team = make_team(session, name="Another MACPT")
    outsider = add_member(session, other_team, agency="police", role="police_officer")
    case = allocate(session, child_id=child_id, team=team)
    case.lead_practitioner = lead.subject
    session.flush()

    def member(row: TeamMember) -> Member:
        return Member(row, staff_token(signing_keys, settings, row))

    return Family(
        child_id=child_id,
        health_items=[item_id for item_id, labels in health_rows if not labels],
        mental_health_items=[item_id for item_id, labels in health_rows if "PSY" in (labels or [])],
        police_p=police_p,
        police_c=police_c,
        detrimental=detrimental,
        lead=member(lead),
        health=member(health),
        police=member(police),
        outsider=member(outsider),
    )


def view(client: TestClient, member: Member, family: Family, purpose: str = "child_protection") -> dict[str, Any]:
    response = get_view(client, member.token, family.child_id, purpose)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def shown(body: dict[str, Any]) -> set[str]:
    return {entry["item_id"] for entry in body["timeline"]}


def withheld(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Item id → the withheld entry that lists it."""
    return {item_id: entry for entry in body["withheld"] for item_id in entry["item_ids"]}


def post(client: TestClient, member: Member, path: str, body: dict[str, Any]) -> Response:
    response: Response = client.post(path, json=body, headers=member.headers())
    return response

"""Small test helpers shared by the gateway tests: row counts and audit lookups."""

from __future__ import annotations

import json
import uuid
from typing import Any

from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from audit import AuditEvent
from gateway.kit.crypto import DataKeyring
from gateway.models import Child, ChildIdentifier, Identity, Item, Link

FHIR_JSON = {"Content-Type": "application/fhir+json"}


def stored_counts(session: Session) -> dict[str, int]:
    """Count what pushes store, to prove a request stored nothing or nothing twice."""
    return {
        model.__tablename__: session.scalar(select(func.count()).select_from(model)) or 0
        for model in (Child, Identity, Link, Item)
    }


def audit_actions(session: Session) -> list[str]:
    """Return the actions of the audit trail, oldest first."""
    return list(session.scalars(select(AuditEvent.action).order_by(AuditEvent.seq)))


def last_event(session: Session, action: str) -> AuditEvent:
    """Return the newest audit event of an action."""
    event = session.scalar(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.seq.desc()))
    assert event is not None, f"no {action} event was recorded"
    return event


def push(http: TestClient, token: str, bundle: dict[str, Any]) -> Response:
    """POST a Bundle to /fhir/R4 as an agency system."""
    response: Response = http.post(
        "/fhir/R4", content=json.dumps(bundle), headers={**FHIR_JSON, "Authorization": f"Bearer {token}"}
    )
    return response


def get_view(http: TestClient, token: str, child_id: uuid.UUID | str, purpose: str = "child_protection") -> Response:
    """GET a child's view as a staff member."""
    response: Response = http.get(
        f"/api/v1/children/{child_id}/view", params={"purpose": purpose}, headers={"Authorization": f"Bearer {token}"}
    )
    return response


def child_id_for(session: Session, keyring: DataKeyring, nhs_number: str) -> uuid.UUID:
    """Return the child an NHS number was linked to."""
    index = keyring.blind_index("nhs_number", nhs_number)
    child_id = session.scalar(select(ChildIdentifier.child_id).where(ChildIdentifier.blind_index == index))
    assert child_id is not None, "the NHS number was not linked to a child"
    return child_id

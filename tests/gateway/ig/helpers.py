"""Helpers for the IG tests: an IG officer's token, children to view, review rules with a fixed clock."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, time
from zoneinfo import ZoneInfo

from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from audit import AuditEvent
from gateway.auth.keys import SigningKeys
from gateway.auth.principal import Principal, PrincipalKind
from gateway.auth.tokens import mint_access_token
from gateway.ig.rules import PartnershipReviewRules
from gateway.kit.crypto import DataKeyring
from gateway.models import Client, Team, TeamMember
from gateway.settings import Settings
from policies import Agency
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

IG_SUBJECT = "ig.officer@test.example"
LONDON = ZoneInfo("Europe/London")


def ig_token(keys: SigningKeys, settings: Settings, *, subject: str = IG_SUBJECT) -> str:
    """Mint a token for an information governance officer (on no team)."""
    principal = Principal(kind=PrincipalKind.STAFF, subject=subject, agency=Agency.SOCIAL_CARE, role="ig_officer")
    return mint_access_token(
        keys, issuer=settings.issuer, audience=settings.audience, principal=principal, ttl_seconds=300
    )


def bearer(token: str) -> dict[str, str]:
    """Return the Authorization header of a token."""
    return {"Authorization": f"Bearer {token}"}


def rules_at(moment: datetime, *, daily_children: int = 100) -> PartnershipReviewRules:
    """Return the partnership's rules (Mon-Fri 08:00-18:00 London) with a clock stopped at `moment`."""
    return PartnershipReviewRules(
        zone=LONDON,
        day_starts=time(8),
        day_ends=time(18),
        first_day=1,
        last_day=5,
        daily_children=daily_children,
        clock=lambda: moment,
    )


@dataclass(frozen=True)
class Partnership:
    """A source system, a team, and children pushed by the source and allocated to the team."""

    source: Client
    source_token: str
    team: Team
    children: list[uuid.UUID]


def pushed_child(
    http: TestClient,
    session: Session,
    keyring: DataKeyring,
    source_token: str,
    *,
    encounters: int = 2,
    patient_id: str = "p1",
) -> uuid.UUID:
    """Push a new child with emergency attendances (the second sensitive); return its id."""
    child = demo_child()
    attendances = [encounter(sensitive=n % 2 == 1) for n in range(encounters)]
    pushed = push(http, source_token, child_bundle(child, patient_id=patient_id, encounters=attendances))
    assert pushed.status_code == 200, pushed.text
    return child_id_for(session, keyring, child.nhs_number)


def partnership(
    http: TestClient,
    session: Session,
    settings: Settings,
    signing_keys: SigningKeys,
    keyring: DataKeyring,
    *,
    children: int = 1,
) -> Partnership:
    """Push `children` children from one health system and allocate them all to one new team."""
    source, _key = make_client(session)
    token = client_token(signing_keys, settings, source)
    team = make_team(session)
    ids = []
    for n in range(children):
        child_id = pushed_child(http, session, keyring, token, patient_id=f"p{n}")
        allocate(session, child_id=child_id, team=team)
        ids.append(child_id)
    return Partnership(source, token, team, ids)


def member_token(
    session: Session, settings: Settings, signing_keys: SigningKeys, team: Team, *, agency: str, role: str
) -> tuple[TeamMember, str]:
    """Put a new member on a team; return it and its token."""
    member = add_member(session, team, agency=agency, role=role)
    return member, staff_token(signing_keys, settings, member)


def view(http: TestClient, token: str, child_id: uuid.UUID, purpose: str = "child_protection") -> Response:
    """Open a child's view."""
    response: Response = http.get(
        f"/api/v1/children/{child_id}/view", params={"purpose": purpose}, headers=bearer(token)
    )
    return response


def events(session: Session) -> list[AuditEvent]:
    """Return the whole trail, oldest first."""
    return list(session.scalars(select(AuditEvent).order_by(AuditEvent.seq)))


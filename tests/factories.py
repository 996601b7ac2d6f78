"""Factories for tests: build real rows and real FHIR through the project's own code."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, date, datetime
from typing import Any

from joserfc.jwk import ECKey
from sqlalchemy.orm import Session

from gateway.auth.keys import SigningKeys
from gateway.auth.principal import Principal, PrincipalKind
from gateway.auth.tokens import mint_access_token
from gateway.demo.generator import (
    DemoChild,
    encounter_resource,
    patient_resource,
    synthetic_nhs_number,
    transaction_bundle,
)
from gateway.models import Case, Client, Team, TeamMember
from gateway.settings import Settings
from policies import Agency

_rng = random.Random(7)


def nhs_number() -> str:
    """Return a fresh valid synthetic NHS number (999 test range)."""
    return synthetic_nhs_number(_rng)


def make_client(
    session: Session,
    *,
    agency: Agency | str = Agency.HEALTH,
    kinds: tuple[str, ...] = ("identity", "encounter"),
    client_id: str | None = None,
) -> tuple[Client, ECKey]:
    """Register a source system with a fresh ES384 key; return it and its private key."""
    agency = Agency(agency)
    key = ECKey.generate_key("P-384", private=True, auto_kid=True)
    client = Client(
        id=client_id or f"test-{agency}-{uuid.uuid4().hex[:8]}",
        name=f"Test {agency} system",
        agency=agency,
        jwks={"keys": [key.as_dict(private=False)]},
        allowed_kinds=list(kinds),
    )
    session.add(client)
    session.flush()
    return client, key


def make_team(session: Session, *, name: str = "Test MACPT") -> Team:
    """Create a team."""
    team = Team(name=name, local_authority="Testshire Council")
    session.add(team)
    session.flush()
    return team


def add_member(
    session: Session, team: Team, *, agency: Agency | str, role: str, subject: str | None = None
) -> TeamMember:
    """Put a staff member on a team."""
    agency = Agency(agency)
    member = TeamMember(
        team_id=team.id,
        subject=subject or f"{agency}.{uuid.uuid4().hex[:8]}@test.example",
        display_name=f"Test {role}",
        agency=agency,
        role=role,
    )
    session.add(member)
    session.flush()
    return member


def allocate(session: Session, *, child_id: uuid.UUID, team: Team) -> Case:
    """Allocate a child to a team (open a case)."""
    case = Case(child_id=child_id, team_id=team.id, lead_practitioner="Test lead")
    session.add(case)
    session.flush()
    return case


def staff_token(keys: SigningKeys, settings: Settings, member: TeamMember, *, ttl: int = 300, now: int | None = None) -> str:
    """Mint an access token for a team member."""
    principal = Principal(PrincipalKind.STAFF, member.subject, member.agency, member.role)
    return mint_access_token(
        keys, issuer=settings.issuer, audience=settings.audience, principal=principal, ttl_seconds=ttl, now=now
    )


def client_token(keys: SigningKeys, settings: Settings, client: Client) -> str:
    """Mint an access token for a registered client."""
    principal = Principal(PrincipalKind.CLIENT, client.id, client.agency)
    return mint_access_token(
        keys, issuer=settings.issuer, audience=settings.audience, principal=principal, ttl_seconds=300
    )


def demo_child(nhs: str | None = None, **overrides: Any) -> DemoChild:
    """Return a synthetic child with no records yet."""
    values: dict[str, Any] = {
        "nhs_number": nhs or nhs_number(),
        "given_names": ["Alex"],
        "family_name": "Testington",
        "birth_date": date(2015, 3, 14),
        "sex": "female",
        "postcode": "ZZ99 3VZ",
        "address_lines": ["1 Synthetic Street"],
        "allocated": True,
    }
    values.update(overrides)
    return DemoChild(**values)


def encounter(*, class_code: str = "EMER", start: datetime | None = None, sensitive: bool = False) -> dict[str, Any]:
    """Return the generator's description of one attendance."""
    return {
        "id": str(uuid.uuid4()),
        "class_code": class_code,
        "class_display": "emergency" if class_code == "EMER" else "ambulatory",
        "type_code": "4525004",
        "type_display": "Emergency department patient visit",
        "start": start or datetime(2026, 10, 1, 14, 0, tzinfo=UTC),
        "sensitive": sensitive,
    }


def child_bundle(child: DemoChild, *, patient_id: str = "p1", encounters: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Return a transaction Bundle with the child's Patient and Encounters."""
    resources = [patient_resource(child, resource_id=patient_id, postcode=child.postcode)]
    resources += [encounter_resource(e, patient_ref=f"Patient/{patient_id}") for e in encounters or []]
    return transaction_bundle(resources)

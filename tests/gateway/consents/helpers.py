"""A child pushed by a health system and allocated to a team, and the calls the consent tests make."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from adapters.fhir_consent import AGENCY_SYSTEM, CATEGORY_SYSTEM, PURPOSE_SYSTEM
from gateway.auth.keys import SigningKeys
from gateway.kit.crypto import DataKeyring
from gateway.models import Client, Consent, Team, TeamMember
from gateway.settings import Settings
from tests.factories import add_member, allocate, child_bundle, client_token, demo_child, make_client, make_team, staff_token
from tests.gateway.helpers import child_id_for, push

PROBLEM_JSON = "application/problem+json"
FHIR_JSON = "application/fhir+json"
HEALTH_KINDS = ("identity", "encounter", "consent")


@dataclass(frozen=True)
class Allocated:
    """A child a health system pushed (Patient/p1), allocated to a team with one health member."""

    http: TestClient
    session: Session
    settings: Settings
    signing_keys: SigningKeys
    keyring: DataKeyring
    child_id: uuid.UUID
    nhs_number: str
    team: Team
    member: TeamMember
    source: Client

    def staff(self, member: TeamMember | None = None) -> dict[str, str]:
        token = staff_token(self.signing_keys, self.settings, member or self.member)
        return {"Authorization": f"Bearer {token}"}

    def record(
        self, body: dict[str, Any], *, member: TeamMember | None = None, child_id: uuid.UUID | None = None
    ) -> Response:
        response: Response = self.http.post(
            f"/api/v1/children/{child_id or self.child_id}/consents", json=body, headers=self.staff(member)
        )
        return response

    def registry(
        self, *, member: TeamMember | None = None, child_id: uuid.UUID | None = None, **params: str
    ) -> Response:
        response: Response = self.http.get(
            f"/api/v1/children/{child_id or self.child_id}/consents", params=params, headers=self.staff(member)
        )
        return response

    def push(self, bundle: dict[str, Any], *, source: Client | None = None) -> Response:
        return push(self.http, client_token(self.signing_keys, self.settings, source or self.source), bundle)


def allocated_child(
    http: TestClient, session: Session, settings: Settings, signing_keys: SigningKeys, keyring: DataKeyring
) -> Allocated:
    """Push a child as a health system registered for consents, and allocate it to a new team."""
    source, _key = make_client(session, kinds=HEALTH_KINDS)
    child = demo_child()
    pushed = push(http, client_token(signing_keys, settings, source), child_bundle(child))
    assert pushed.status_code == 200, pushed.text
    child_id = child_id_for(session, keyring, child.nhs_number)
    team = make_team(session)
    member = add_member(session, team, agency="health", role="health_practitioner")
    allocate(session, child_id=child_id, team=team)
    return Allocated(http, session, settings, signing_keys, keyring, child_id, child.nhs_number, team, member, source)


def consent_rows(session: Session) -> int:
    """Count the registry's rows, to prove a request stored nothing (or nothing twice)."""
    return session.scalar(select(func.count()).select_from(Consent)) or 0


def stored_consents(session: Session, child_id: uuid.UUID) -> list[Consent]:
    """Return a child's registry rows, oldest first (read directly, as a check of what was stored)."""
    session.expire_all()
    return list(session.scalars(select(Consent).where(Consent.child_id == child_id).order_by(Consent.recorded_at)))


def fhir_consent(
    *,
    resource_id: str = "c1",
    patient: dict[str, Any] | None = None,
    status: str = "active",
    purpose: str | None = "family_help",
    performer: list[dict[str, Any]] | None = None,
    relationship: dict[str, Any] | None = None,
    provision: dict[str, Any] | None = None,
    agencies: tuple[str, ...] = (),
    categories: tuple[str, ...] = (),
    **extra: Any,
) -> dict[str, Any]:
    """Return a FHIR Consent a health system would push: by default, a mother's consent for family help."""
    body: dict[str, Any] = {"type": "permit"}
    if purpose is not None:
        body["purpose"] = [{"system": PURPOSE_SYSTEM, "code": purpose}]
    if agencies:
        body["actor"] = [
            {"role": {"text": "recipient"}, "reference": {"identifier": {"system": AGENCY_SYSTEM, "value": a}}}
            for a in agencies
        ]
    if categories:
        body["class"] = [{"system": CATEGORY_SYSTEM, "code": c} for c in categories]
    body.update(provision or {})
    resource: dict[str, Any] = {
        "resourceType": "Consent",
        "id": resource_id,
        "status": status,
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": patient or {"reference": "Patient/p1"},
        "dateTime": "2026-11-20T10:00:00Z",
        "contained": [
            {
                "resourceType": "RelatedPerson",
                "id": "giver",
                "patient": {"reference": "Patient/p1"},
                "relationship": [
                    relationship
                    or {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-RoleCode", "code": "MTH", "display": "mother"}]}
                ],
                "name": [{"family": "Testington", "given": ["Jo"]}],
            }
        ],
        "performer": performer if performer is not None else [{"reference": "#giver"}],
        "provision": body,
    }
    resource.update(extra)
    return resource


def consent_bundle(*resources: dict[str, Any], bundle_type: str = "transaction") -> dict[str, Any]:
    """Wrap resources in a Bundle of PUTs (each by its own id)."""
    return {
        "resourceType": "Bundle",
        "type": bundle_type,
        "entry": [
            {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}} for r in resources
        ],
    }

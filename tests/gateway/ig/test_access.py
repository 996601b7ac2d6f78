"""Who may call the IG endpoints: IG officers only; the checkpoint and key: any authenticated caller."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from audit import AuditAction, AuditEvent, sign_checkpoint
from gateway.auth.keys import SigningKeys
from gateway.auth.principal import Principal, PrincipalKind
from gateway.auth.tokens import mint_access_token
from gateway.kit.crypto import DataKeyring
from gateway.settings import Settings
from policies import Agency
from tests.factories import add_member, client_token, make_client, make_team, staff_token
from tests.gateway.helpers import last_event
from tests.gateway.ig.helpers import IG_SUBJECT, bearer, ig_token, partnership

IG_ENDPOINTS = (
    "events",
    "event",
    "proof",
    "consistency",
    "review",
    "conclude",
    "disclosures",
    "fhir",
)
ROLE_NAMED = "This endpoint is for information governance officers (role ig_officer)."


@dataclass(frozen=True)
class Arranged:
    """A trail with events about a child and a signed checkpoint of all of them."""

    child_id: uuid.UUID
    seq: int
    size: int


@pytest.fixture
def arranged(
    client: TestClient,
    app: FastAPI,
    session: Session,
    settings: Settings,
    signing_keys: SigningKeys,
    keyring: DataKeyring,
) -> Arranged:
    """Push a child (events about it), then sign a checkpoint."""
    seeded = partnership(client, session, settings, signing_keys, keyring)
    checkpoint = sign_checkpoint(session, app.state.audit_signer)
    session.commit()
    event = last_event(session, AuditAction.IDENTITY_LINK_CREATED)
    return Arranged(seeded.children[0], event.seq, checkpoint.tree_size)


def call(http: TestClient, endpoint: str, arranged: Arranged, headers: dict[str, str]) -> Response:
    """Call one IG endpoint with valid parameters."""
    response: Response
    if endpoint == "conclude":
        response = http.post(
            f"/api/v1/audit/review/{uuid.uuid4()}", json={"outcome": "appropriate", "note": "Checked."}, headers=headers
        )
        return response
    path, params = {
        "events": ("/api/v1/audit/events", {}),
        "event": (f"/api/v1/audit/events/{arranged.seq}", {}),
        "proof": (f"/api/v1/audit/proof/{arranged.seq}", {"tree_size": arranged.size}),
        "consistency": ("/api/v1/audit/consistency", {"first": arranged.size, "second": arranged.size}),
        "review": ("/api/v1/audit/review", {}),
        "disclosures": (f"/api/v1/children/{arranged.child_id}/disclosures", {}),
        "fhir": ("/fhir/R4/AuditEvent", {"patient": f"Patient/{arranged.child_id}"}),
    }[endpoint]
    response = http.get(path, params=params, headers=headers)
    return response


@pytest.mark.parametrize(
    ("endpoint", "status"),
    [
        ("events", 200),
        ("event", 200),
        ("proof", 200),
        ("consistency", 200),
        ("review", 200),
        ("conclude", 404),  # no such entry: the officer got past the guard
        ("disclosures", 200),
        ("fhir", 200),
    ],
)
def test_an_ig_officer_may_call_every_ig_endpoint(
    client: TestClient,
    settings: Settings,
    signing_keys: SigningKeys,
    arranged: Arranged,
    endpoint: str,
    status: int,
) -> None:
    response = call(client, endpoint, arranged, bearer(ig_token(signing_keys, settings)))

    assert response.status_code == status, response.text


@pytest.mark.parametrize("endpoint", IG_ENDPOINTS)
def test_a_team_member_is_refused_and_the_refusal_goes_on_the_review_queue(
    client: TestClient,
    session: Session,
    settings: Settings,
    signing_keys: SigningKeys,
    arranged: Arranged,
    endpoint: str,
) -> None:
    member = add_member(session, make_team(session), agency="police", role="police_officer")
    before = session.scalar(select(func.count()).select_from(AuditEvent))

    response = call(client, endpoint, arranged, bearer(staff_token(signing_keys, settings, member)))

    assert response.status_code == 403, response.text
    if endpoint == "fhir":
        assert response.headers["content-type"] == "application/fhir+json"
        [issue] = response.json()["issue"]
        assert (issue["code"], issue["diagnostics"]) == ("forbidden", ROLE_NAMED)
    else:
        assert response.headers["content-type"] == "application/problem+json"
        body = response.json()
        assert (body["status"], body["title"], body["detail"]) == (403, "Forbidden", ROLE_NAMED)
    # Exactly one event: the refusal, flagged for review; nothing the request began was kept.
    assert session.scalar(select(func.count()).select_from(AuditEvent)) == (before or 0) + 1
    refusal = last_event(session, AuditAction.IG_ACCESS_REFUSED)
    assert (refusal.actor_type, refusal.actor_id, refusal.actor_agency, refusal.actor_role) == (
        "user",
        member.subject,
        "police",
        "police_officer",
    )
    assert refusal.outcome == "denied"
    assert refusal.detail == {"review": ["refused"]}

    queue = client.get(
        "/api/v1/audit/review", params={"reason": "refused"}, headers=bearer(ig_token(signing_keys, settings))
    )
    assert queue.status_code == 200, queue.text
    [entry] = [e for e in queue.json()["entries"] if e["seq"] == refusal.seq]
    assert entry["reason"] == "refused"
    assert entry["action"] == "ig:access:refused"
    assert entry["status"] == "open"
    assert entry["actor"] == {"type": "user", "id": member.subject, "agency": "police", "role": "police_officer"}


@pytest.mark.parametrize("endpoint", IG_ENDPOINTS)
def test_an_agency_system_is_refused_without_a_review_entry(
    client: TestClient,
    session: Session,
    settings: Settings,
    signing_keys: SigningKeys,
    arranged: Arranged,
    endpoint: str,
) -> None:
    system, _key = make_client(session)
    before = session.scalar(select(func.count()).select_from(AuditEvent))

    response = call(client, endpoint, arranged, bearer(client_token(signing_keys, settings, system)))

    assert response.status_code == 403, response.text
    assert "not agency systems" in response.text
    assert session.scalar(select(func.count()).select_from(AuditEvent)) == before


@pytest.mark.parametrize("endpoint", IG_ENDPOINTS)
def test_no_token_is_401(client: TestClient, session: Session, arranged: Arranged, endpoint: str) -> None:
    before = session.scalar(select(func.count()).select_from(AuditEvent))

    response = call(client, endpoint, arranged, {})

    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    assert session.scalar(select(func.count()).select_from(AuditEvent)) == before


def test_a_token_with_another_role_named_like_ig_is_refused(
    client: TestClient, settings: Settings, signing_keys: SigningKeys, arranged: Arranged
) -> None:
    # The role must be exactly ig_officer: not a prefix, nor a different case.
    for role in ("IG_OFFICER", "ig_officer_trainee", "ig"):
        token = mint_access_token(
            signing_keys,
            issuer=settings.issuer,
            audience=settings.audience,
            principal=Principal(PrincipalKind.STAFF, IG_SUBJECT, Agency.SOCIAL_CARE, role),
            ttl_seconds=300,
        )
        response = call(client, "events", arranged, bearer(token))
        assert response.status_code == 403, role


@pytest.mark.parametrize("path", ["/api/v1/audit/checkpoint", "/api/v1/audit/public-key"])
def test_the_checkpoint_and_key_are_open_to_any_authenticated_caller(
    client: TestClient,
    session: Session,
    settings: Settings,
    signing_keys: SigningKeys,
    arranged: Arranged,
    path: str,
) -> None:
    member = add_member(session, make_team(session), agency="health", role="designated_nurse")
    system, _key = make_client(session)
    callers = {
        "ig officer": ig_token(signing_keys, settings),
        "team member": staff_token(signing_keys, settings, member),
        "agency system": client_token(signing_keys, settings, system),
    }
    bodies = set()
    for who, token in callers.items():
        response = client.get(path, headers=bearer(token))
        assert response.status_code == 200, (who, response.text)
        assert response.headers["content-type"] == "text/plain; charset=utf-8"
        bodies.add(response.content)
    assert len(bodies) == 1  # everyone is shown the same bytes

    anonymous = client.get(path)
    assert anonymous.status_code == 401
    assert anonymous.headers["content-type"] == "application/problem+json"

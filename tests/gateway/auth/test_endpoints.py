"""POST /oauth/token: client credentials with a signed JWT assertion."""

from __future__ import annotations

import json
import time
import uuid

import pytest
from fastapi.testclient import TestClient
from httpx import Response
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey
from sqlalchemy.orm import Session

from audit import AuditAction
from gateway.settings import Settings
from tests.factories import child_bundle, demo_child, make_client
from tests.gateway.helpers import FHIR_JSON, last_event

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def _assertion(
    key: ECKey | RSAKey, client_id: str, audience: str, *, exp_in: int = 240, jti: str | None = None, alg: str = "ES384"
) -> str:
    now = int(time.time())
    claims = {"iss": client_id, "sub": client_id, "aud": audience, "exp": now + exp_in, "iat": now,
              "jti": jti or str(uuid.uuid4())}
    return jwt.encode({"alg": alg, "kid": key.kid}, claims, key, algorithms=[alg])


def _token_request(client: TestClient, assertion: str) -> Response:
    response: Response = client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "client_assertion_type": ASSERTION_TYPE,
              "client_assertion": assertion},
    )
    return response


def test_signed_assertion_gets_a_token_that_pushes(client: TestClient, session: Session, settings: Settings) -> None:
    source, key = make_client(session)

    response = _token_request(client, _assertion(key, source.id, settings.token_endpoint))

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "bearer"
    assert 0 < body["expires_in"] <= 300
    pushed = client.post(
        "/fhir/R4",
        content=json.dumps(child_bundle(demo_child())),
        headers={**FHIR_JSON, "Authorization": f"Bearer {body['access_token']}"},
    )
    assert pushed.status_code == 200, pushed.text
    assert last_event(session, AuditAction.CLIENT_TOKEN_ISSUED).actor_id == source.id


def test_rsa_registered_client_signs_with_rs384(client: TestClient, session: Session, settings: Settings) -> None:
    source, _ = make_client(session)
    rsa = RSAKey.generate_key(2048, private=True, auto_kid=True)
    source.jwks = {"keys": [rsa.as_dict(private=False)]}
    session.flush()

    response = _token_request(client, _assertion(rsa, source.id, settings.token_endpoint, alg="RS384"))

    assert response.status_code == 200, response.text


def test_replayed_assertion_is_refused(client: TestClient, session: Session, settings: Settings) -> None:
    source, key = make_client(session)
    assertion = _assertion(key, source.id, settings.token_endpoint)

    assert _token_request(client, assertion).status_code == 200
    replay = _token_request(client, assertion)

    assert replay.status_code == 401
    assert replay.json()["error"] == "invalid_client"
    assert "jti" in replay.json()["error_description"]
    assert last_event(session, AuditAction.CLIENT_TOKEN_REFUSED).outcome == "denied"


@pytest.mark.parametrize(
    ("case", "fragment"),
    [
        ("exp_too_far", "5 minutes"),
        ("expired", "exp"),
        ("wrong_audience", "aud"),
        ("wrong_key", "registered keys"),
        ("unknown_client", "not registered"),
    ],
)
def test_bad_assertions_are_refused(
    client: TestClient, session: Session, settings: Settings, case: str, fragment: str
) -> None:
    source, key = make_client(session)
    client_id, audience, exp_in = source.id, settings.token_endpoint, 240
    if case == "exp_too_far":
        exp_in = 3600
    elif case == "expired":
        exp_in = -600
    elif case == "wrong_audience":
        audience = "https://elsewhere.example/token"
    elif case == "wrong_key":
        key = ECKey.generate_key("P-384", private=True, auto_kid=True)
    elif case == "unknown_client":
        client_id = "nobody"

    response = _token_request(client, _assertion(key, client_id, audience, exp_in=exp_in))

    assert response.status_code == 401, response.text
    assert response.json()["error"] == "invalid_client"
    assert fragment in response.json()["error_description"]


def test_wrong_grant_type_is_refused(client: TestClient) -> None:
    response = client.post("/oauth/token", data={"grant_type": "password"})

    assert response.status_code == 400
    assert response.json()["error"] == "unsupported_grant_type"


def test_missing_assertion_is_refused(client: TestClient) -> None:
    response = client.post(
        "/oauth/token", data={"grant_type": "client_credentials", "client_assertion_type": ASSERTION_TYPE}
    )

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"

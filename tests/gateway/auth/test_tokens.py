"""Bearer tokens: signature, issuer, audience and expiry are all checked."""

from __future__ import annotations

import time
from typing import Any

import pytest
from fastapi.testclient import TestClient
from joserfc.jwk import ECKey, KeySet
from sqlalchemy.orm import Session

from gateway.auth.keys import SigningKeys
from gateway.auth.principal import Principal, PrincipalKind
from gateway.auth.tokens import InvalidToken, mint_access_token, verify_access_token
from gateway.settings import Settings
from policies import Agency

STAFF = Principal(PrincipalKind.STAFF, "someone@test.example", Agency.POLICE, "police_officer")


def _mint(
    keys: SigningKeys,
    *,
    issuer: str = "https://gw.test",
    audience: str = "macpt-gateway",
    principal: Principal = STAFF,
    now: int | None = None,
) -> str:
    return mint_access_token(keys, issuer=issuer, audience=audience, principal=principal, ttl_seconds=300, now=now)


def _verify(keys: SigningKeys, token: str) -> Principal:
    return verify_access_token(keys, token=token, issuer="https://gw.test", audience="macpt-gateway")


def test_valid_token_names_the_principal(signing_keys: SigningKeys) -> None:
    assert _verify(signing_keys, _mint(signing_keys)) == STAFF


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"issuer": "https://evil.test"}, "iss"),
        ({"audience": "another-api"}, "aud"),
        ({"now": int(time.time()) - 3600}, "expired"),
    ],
)
def test_wrong_claims_are_refused(signing_keys: SigningKeys, overrides: dict[str, Any], fragment: str) -> None:
    with pytest.raises(InvalidToken, match=fragment):
        _verify(signing_keys, _mint(signing_keys, **overrides))


def test_token_signed_by_another_key_is_refused(signing_keys: SigningKeys) -> None:
    other = ECKey.generate_key("P-384", private=True, auto_kid=True)
    forged = _mint(SigningKeys(private=other, verification=KeySet([other])))

    with pytest.raises(InvalidToken, match="signature"):
        _verify(signing_keys, forged)


def test_staff_token_without_role_is_refused(signing_keys: SigningKeys) -> None:
    roleless = Principal(PrincipalKind.STAFF, "someone@test.example", Agency.POLICE, None)

    with pytest.raises(InvalidToken, match="role"):
        _verify(signing_keys, _mint(signing_keys, principal=roleless))


def test_expired_staff_token_gets_401_over_http(
    client: TestClient, session: Session, settings: Settings, signing_keys: SigningKeys
) -> None:
    from tests.factories import add_member, make_team, staff_token

    member = add_member(session, make_team(session), agency="police", role="police_officer")
    expired = staff_token(signing_keys, settings, member, now=int(time.time()) - 3600)

    response = client.get(
        "/api/v1/children/8c1f1f4e-0000-4000-8000-000000000000/view?purpose=child_protection",
        headers={"Authorization": f"Bearer {expired}"},
    )

    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert "expired" in response.json()["detail"]

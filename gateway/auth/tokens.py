"""Mint and verify the gateway's bearer access tokens (JWT, ES384, at most 300 s)."""

from __future__ import annotations

import time
import uuid
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError

from policies import Agency

from .keys import TOKEN_ALGORITHM, SigningKeys
from .principal import Principal, PrincipalKind

# A little allowance for clocks that differ between servers behind a load balancer.
CLOCK_LEEWAY_SECONDS = 30


class InvalidToken(Exception):
    """A token that must not be trusted; the message says why, without echoing the token."""


def mint_access_token(
    keys: SigningKeys,
    *,
    issuer: str,
    audience: str,
    principal: Principal,
    ttl_seconds: int,
    scope: str | None = None,
    now: int | None = None,
) -> str:
    """Sign an access token that identifies a principal."""
    issued_at = int(time.time()) if now is None else now
    claims: dict[str, Any] = {
        "iss": issuer,
        "aud": audience,
        "sub": principal.subject,
        "iat": issued_at,
        "nbf": issued_at,
        "exp": issued_at + ttl_seconds,
        "jti": str(uuid.uuid4()),
        "gateway_kind": principal.kind.value,
        "agency": principal.agency,
    }
    if principal.role:
        claims["role"] = principal.role
    if scope:
        claims["scope"] = scope
    header = {"alg": TOKEN_ALGORITHM, "kid": keys.private.kid, "typ": "at+jwt"}
    return jwt.encode(header, claims, keys.private, algorithms=[TOKEN_ALGORITHM])


def verify_access_token(keys: SigningKeys, *, token: str, issuer: str, audience: str) -> Principal:
    """Verify signature, issuer, audience and expiry, and return the principal named."""
    try:
        decoded = jwt.decode(token, keys.verification, algorithms=[TOKEN_ALGORITHM])
    except (JoseError, ValueError) as exc:
        raise InvalidToken("the token is malformed or its signature does not verify") from exc
    registry = jwt.JWTClaimsRegistry(
        leeway=CLOCK_LEEWAY_SECONDS,
        iss={"essential": True, "value": issuer},
        aud={"essential": True, "value": audience},
        exp={"essential": True},
        sub={"essential": True},
    )
    try:
        registry.validate(decoded.claims)
    except JoseError as exc:
        raise InvalidToken(f"the token was refused: {exc.description or exc.error}") from exc
    claims = decoded.claims
    try:
        kind = PrincipalKind(str(claims.get("gateway_kind")))
    except ValueError:
        raise InvalidToken("the token does not say whether it is for staff or a client") from None
    try:
        agency = Agency(str(claims.get("agency")))
    except ValueError:
        raise InvalidToken(f"the token must name one agency of {', '.join(Agency)}") from None
    role = claims.get("role")
    if kind is PrincipalKind.STAFF and not role:
        raise InvalidToken("a staff token must name a role")
    return Principal(kind=kind, subject=str(claims["sub"]), agency=agency, role=role)

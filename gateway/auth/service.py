"""Client credentials with a signed JWT assertion (SMART Backend Services, RFC 7523)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import cast

from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet, KeySetSerialization
from sqlalchemy import delete
from sqlalchemy.orm import Session

from audit import Actor, ActorType, AuditAction, Outcome
from gateway.kit.auditor import Auditor
from gateway.kit.db import insert_if_absent
from gateway.kit.errors import GatewayError
from gateway.models import Client, UsedAssertion
from gateway.settings import Settings

from .keys import SigningKeys
from .principal import Principal, PrincipalKind
from .tokens import CLOCK_LEEWAY_SECONDS, mint_access_token

CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_ALGORITHMS = ("RS384", "ES384")
MAX_ASSERTION_LIFETIME_SECONDS = 300
CLIENT_SCOPE = "system/*.write"


class TokenRefused(GatewayError):
    """The token request is refused; `oauth_error` is the RFC 6749 §5.2 code."""

    title, fhir_code = "Token request refused", "security"

    def __init__(self, oauth_error: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.oauth_error = oauth_error
        self.status = status


@dataclass(frozen=True)
class IssuedToken:
    """A minted access token and what it is good for."""

    access_token: str
    expires_in: int
    scope: str


def issue_client_token(
    session: Session,
    *,
    auditor: Auditor,
    keys: SigningKeys,
    settings: Settings,
    grant_type: str | None,
    client_assertion_type: str | None,
    client_assertion: str | None,
) -> IssuedToken:
    """Verify a client's signed assertion and mint its access token; audit either outcome."""
    claimed_client = "unknown"
    try:
        claimed_client, client = _check_request(session, grant_type, client_assertion_type, client_assertion)
        _verify_assertion(session, client, client_assertion or "", settings.token_endpoint)
    except TokenRefused as refused:
        raise auditor.refuse(
            refused,
            AuditAction.CLIENT_TOKEN_REFUSED,
            actor=Actor(type=ActorType.CLIENT, id=claimed_client[:128]),
            detail={"error": refused.oauth_error},
        ) from None
    principal = Principal(kind=PrincipalKind.CLIENT, subject=client.id, agency=client.agency)
    ttl = settings.access_token_ttl_seconds
    token = mint_access_token(
        keys,
        issuer=settings.issuer,
        audience=settings.audience,
        principal=principal,
        ttl_seconds=ttl,
        scope=CLIENT_SCOPE,
    )
    auditor.record(AuditAction.CLIENT_TOKEN_ISSUED, Outcome.SUCCESS, actor=principal.actor())
    session.flush()
    return IssuedToken(access_token=token, expires_in=ttl, scope=CLIENT_SCOPE)


def _check_request(
    session: Session, grant_type: str | None, assertion_type: str | None, assertion: str | None
) -> tuple[str, Client]:
    if grant_type != "client_credentials":
        raise TokenRefused("unsupported_grant_type", "grant_type must be `client_credentials`.")
    if assertion_type != CLIENT_ASSERTION_TYPE:
        raise TokenRefused("invalid_request", f"client_assertion_type must be `{CLIENT_ASSERTION_TYPE}`.")
    if not assertion:
        raise TokenRefused("invalid_request", "client_assertion is required: a JWT signed with your key.")
    try:
        # Read the claimed issuer before verifying, only to know whose keys to verify with.
        unverified = jws.extract_compact(assertion.encode())
        claimed = json.loads(unverified.payload).get("iss")
    except (JoseError, ValueError, AttributeError):
        raise TokenRefused("invalid_client", "client_assertion is not a compact JWS.", 401) from None
    if not isinstance(claimed, str) or not claimed:
        raise TokenRefused("invalid_client", "client_assertion must carry `iss`: your client id.", 401)
    client = session.get(Client, claimed)
    if client is None or not client.active:
        raise TokenRefused("invalid_client", "The client is not registered or not active.", 401)
    return claimed, client


def _verify_assertion(session: Session, client: Client, assertion: str, token_endpoint: str) -> None:
    try:
        keys = KeySet.import_key_set(cast(KeySetSerialization, client.jwks))
        decoded = jwt.decode(assertion, keys, algorithms=list(ASSERTION_ALGORITHMS))
    except (JoseError, ValueError):
        raise TokenRefused(
            "invalid_client",
            "client_assertion does not verify with the client's registered keys (RS384 or ES384).",
            401,
        ) from None
    now = int(time.time())
    registry = jwt.JWTClaimsRegistry(
        now=now,
        leeway=CLOCK_LEEWAY_SECONDS,
        iss={"essential": True, "value": client.id},
        sub={"essential": True, "value": client.id},
        aud={"essential": True, "value": token_endpoint},
        exp={"essential": True},
        jti={"essential": True},
    )
    try:
        registry.validate(decoded.claims)
    except JoseError as exc:
        raise TokenRefused("invalid_client", f"client_assertion refused: {exc.description or exc.error}", 401) from None
    exp = int(decoded.claims["exp"])
    if exp > now + MAX_ASSERTION_LIFETIME_SECONDS:
        raise TokenRefused("invalid_client", "client_assertion `exp` must be at most 5 minutes ahead.", 401)
    jti = str(decoded.claims["jti"])
    session.execute(delete(UsedAssertion).where(UsedAssertion.expires_at < datetime.fromtimestamp(now, UTC)))
    # Spending the jti is the check: of two requests with the same assertion at once, the second
    # meets the first at the primary key and is refused, never both accepted.
    spent = insert_if_absent(
        session,
        UsedAssertion,
        {"client_id": client.id, "jti": jti, "expires_at": datetime.fromtimestamp(exp, UTC)},
        unique=["client_id", "jti"],
    )
    if not spent:
        raise TokenRefused("invalid_client", "client_assertion `jti` has been used before.", 401)

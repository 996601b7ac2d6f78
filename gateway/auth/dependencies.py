"""The caller as a typed dependency; every non-public router depends on one of these."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from gateway.kit.auditor import Auditor
from gateway.kit.context import AppSettings, auditor_for
from gateway.kit.db import DbSession
from gateway.kit.errors import Forbidden, NotAuthenticated

from .keys import SigningKeys
from .principal import Principal, PrincipalKind
from .tokens import InvalidToken, verify_access_token

# auto_error=False: a missing token is ours to refuse (401 in the route's own format); the
# scheme is declared so that the OpenAPI document says how to authenticate.
_bearer = HTTPBearer(auto_error=False, description="An access token from POST /oauth/token, or a staff token.")


async def get_signing_keys(request: Request) -> SigningKeys:
    """Return the keys that sign and verify access tokens."""
    keys: SigningKeys = request.app.state.signing_keys
    return keys


SigningKeySet = Annotated[SigningKeys, Depends(get_signing_keys)]


def authenticate(
    settings: AppSettings,
    keys: SigningKeySet,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """Return the verified principal of the request's bearer token, or refuse with 401."""
    if credentials is None or credentials.scheme.lower() != "bearer" or not credentials.credentials.strip():
        raise NotAuthenticated("An `Authorization: Bearer <token>` header is required.")
    try:
        return verify_access_token(
            keys, token=credentials.credentials.strip(), issuer=settings.issuer, audience=settings.audience
        )
    except InvalidToken as exc:
        raise NotAuthenticated(str(exc)) from None


async def require_staff(principal: Annotated[Principal, Depends(authenticate)]) -> Principal:
    """Let only staff through."""
    if principal.kind is not PrincipalKind.STAFF:
        raise Forbidden("This endpoint is for MACPT staff, not agency systems.")
    return principal


async def require_client(principal: Annotated[Principal, Depends(authenticate)]) -> Principal:
    """Let only registered agency systems through."""
    if principal.kind is not PrincipalKind.CLIENT:
        raise Forbidden("This endpoint is for agency systems, not staff.")
    return principal


async def get_auditor(
    request: Request, session: DbSession, principal: Annotated[Principal, Depends(authenticate)]
) -> Auditor:
    """Return the request's auditor, acting as the authenticated caller."""
    return auditor_for(request, session, principal.actor())


StaffPrincipal = Annotated[Principal, Depends(require_staff)]
ClientPrincipal = Annotated[Principal, Depends(require_client)]
CallerAuditor = Annotated[Auditor, Depends(get_auditor)]

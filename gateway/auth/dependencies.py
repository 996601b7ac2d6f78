"""The caller as a typed dependency; every non-public router depends on one of these."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from gateway.kit.errors import GatewayError

from .principal import Principal, PrincipalKind
from .tokens import InvalidToken, verify_access_token


def _unauthorised(detail: str) -> GatewayError:
    return GatewayError(
        401,
        "Not authenticated",
        detail,
        headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        fhir_code="login",
    )


def authenticate(request: Request) -> Principal:
    """Return the verified principal of the request's bearer token, or refuse with 401."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _unauthorised("An `Authorization: Bearer <token>` header is required.")
    settings = request.app.state.settings
    try:
        return verify_access_token(
            request.app.state.signing_keys,
            token=token.strip(),
            issuer=settings.issuer,
            audience=settings.audience,
        )
    except InvalidToken as exc:
        raise _unauthorised(str(exc)) from None


def require_staff(principal: Annotated[Principal, Depends(authenticate)]) -> Principal:
    """Let only staff through."""
    if principal.kind is not PrincipalKind.STAFF:
        raise GatewayError(403, "Forbidden", "This endpoint is for MACPT staff, not agency systems.",
                           fhir_code="forbidden")
    return principal


def require_client(principal: Annotated[Principal, Depends(authenticate)]) -> Principal:
    """Let only registered agency systems through."""
    if principal.kind is not PrincipalKind.CLIENT:
        raise GatewayError(403, "Forbidden", "This endpoint is for agency systems, not staff.",
                           fhir_code="forbidden")
    return principal


StaffPrincipal = Annotated[Principal, Depends(require_staff)]
ClientPrincipal = Annotated[Principal, Depends(require_client)]

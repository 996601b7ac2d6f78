"""POST /oauth/token: client credentials for agency systems."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import JSONResponse

from gateway.kit.db import DbSession

from .schemas import TokenError, TokenRead
from .service import TokenRefused, issue_client_token

router = APIRouter(tags=["auth"])


@router.post(
    "/oauth/token",
    response_model=TokenRead,
    responses={400: {"model": TokenError}, 401: {"model": TokenError}},
    summary="Exchange a signed client assertion for an access token",
)
def token(
    request: Request,
    session: DbSession,
    grant_type: Annotated[str | None, Form()] = None,
    client_assertion_type: Annotated[str | None, Form()] = None,
    client_assertion: Annotated[str | None, Form()] = None,
) -> TokenRead | JSONResponse:
    """Issue a token of at most 300 s to a registered client."""
    settings = request.app.state.settings
    try:
        issued = issue_client_token(
            session,
            keys=request.app.state.signing_keys,
            issuer=settings.issuer,
            audience=settings.audience,
            token_endpoint=settings.token_endpoint,
            ttl_seconds=settings.access_token_ttl_seconds,
            grant_type=grant_type,
            client_assertion_type=client_assertion_type,
            client_assertion=client_assertion,
            request_id=request.state.request_id,
        )
    except TokenRefused as refused:
        # Returned, not raised: the refusal's audit event commits with the request's transaction.
        body = TokenError(error=refused.error, error_description=refused.description)
        return JSONResponse(body.model_dump(), status_code=refused.status, headers={"Cache-Control": "no-store"})
    return TokenRead(access_token=issued.access_token, expires_in=issued.expires_in, scope=issued.scope)

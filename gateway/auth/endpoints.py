"""POST /oauth/token: client credentials for agency systems (routes only)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form
from fastapi.responses import JSONResponse
from starlette.responses import Response

from gateway.kit.context import AnonymousAuditor, AppSettings
from gateway.kit.db import DbSession
from gateway.kit.errors import GatewayError, error_route

from .dependencies import SigningKeySet
from .schemas import TokenError, TokenRead
from .service import issue_client_token

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def oauth_error_response(error: GatewayError) -> Response:
    """Render an error as RFC 6749 §5.2 JSON, the format token clients parse."""
    code = getattr(error, "oauth_error", "invalid_request" if error.status < 500 else "server_error")
    body = TokenError(error=code, error_description=error.detail)
    return JSONResponse(body.model_dump(), status_code=error.status, headers={**error.headers, **NO_STORE})


router = APIRouter(tags=["auth"], route_class=error_route(oauth_error_response, "OAuthRoute"))


@router.post(
    "/oauth/token",
    response_model=TokenRead,
    responses={
        400: {"model": TokenError, "description": "The request is not a client-credentials request."},
        401: {"model": TokenError, "description": "The client or its assertion is not accepted."},
        503: {"model": TokenError, "description": "The database is busy; try again."},
    },
    summary="Exchange a signed client assertion for an access token",
)
def token(
    response: Response,
    session: DbSession,
    auditor: AnonymousAuditor,
    settings: AppSettings,
    keys: SigningKeySet,
    grant_type: Annotated[str | None, Form()] = None,
    client_assertion_type: Annotated[str | None, Form()] = None,
    client_assertion: Annotated[str | None, Form()] = None,
) -> TokenRead:
    """Issue a token of at most 300 s to a registered client."""
    issued = issue_client_token(
        session,
        auditor=auditor,
        keys=keys,
        settings=settings,
        grant_type=grant_type,
        client_assertion_type=client_assertion_type,
        client_assertion=client_assertion,
    )
    response.headers.update(NO_STORE)
    return TokenRead(access_token=issued.access_token, expires_in=issued.expires_in, scope=issued.scope)

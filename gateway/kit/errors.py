"""Errors a caller can act on: RFC 9457 problem+json, or a FHIR OperationOutcome under /fhir."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
FHIR_JSON = "application/fhir+json"


@dataclass(frozen=True)
class ErrorDetail:
    """One thing wrong with a request: where, and what was expected (never the submitted value)."""

    location: str
    message: str
    code: str = "invalid"


@dataclass
class GatewayError(Exception):
    """An error with an HTTP status, rendered as problem+json or OperationOutcome by path."""

    status: int
    title: str
    detail: str
    errors: list[ErrorDetail] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)
    fhir_code: str = "invalid"

    def __str__(self) -> str:
        return f"{self.status} {self.title}: {self.detail}"


class CommitThenRaise(Exception):
    """Marker: the session dependency commits (the audit event of a refusal) before re-raising."""


class AuditedRefusal(GatewayError, CommitThenRaise):
    """A refusal whose audit event must persist although the request fails."""


def problem_response(error: GatewayError) -> JSONResponse:
    """Render an error as RFC 9457 problem details."""
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": error.title,
        "status": error.status,
        "detail": error.detail,
    }
    if error.errors:
        body["errors"] = [{"location": e.location, "message": e.message} for e in error.errors]
    return JSONResponse(body, status_code=error.status, media_type=PROBLEM_JSON, headers=error.headers)


def outcome_response(error: GatewayError) -> JSONResponse:
    """Render an error as a FHIR OperationOutcome."""
    from adapters import Issue, operation_outcome

    issues = [Issue(severity="error", code=e.code, location=e.location, message=e.message) for e in error.errors]
    if not issues:
        issues = [Issue(severity="error", code=error.fhir_code, location="", message=error.detail)]
    return JSONResponse(
        operation_outcome(issues), status_code=error.status, media_type=FHIR_JSON, headers=error.headers
    )


def _render(request: Request, error: GatewayError) -> JSONResponse:
    if request.url.path.startswith("/fhir/"):
        return outcome_response(error)
    return problem_response(error)


def install_error_handlers(app: FastAPI) -> None:
    """Make every error, expected or not, come back in the format of the endpoint's family."""

    @app.exception_handler(GatewayError)
    async def _gateway_error(request: Request, exc: GatewayError) -> JSONResponse:
        return _render(request, exc)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        # Pydantic errors carry the submitted input; only the location and the expectation go back.
        details = [
            ErrorDetail(location=".".join(str(part) for part in err["loc"]), message=err["msg"])
            for err in exc.errors()
        ]
        return _render(request, GatewayError(422, "Invalid request", "The request failed validation.", details))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        title = {404: "Not found", 405: "Method not allowed"}.get(exc.status_code, "HTTP error")
        return _render(request, GatewayError(exc.status_code, title, str(exc.detail), headers=exc.headers or {}))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        from gateway.kit.telemetry import route_template

        log.exception("unhandled error", extra={"path_template": route_template(request)})
        return _render(
            request,
            GatewayError(500, "Internal error", "The gateway failed; nothing from this request was stored.",
                         fhir_code="exception"),
        )

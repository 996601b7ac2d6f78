"""Errors a caller can act on, by name, and the one way each family of routes renders them.

Each error class carries its HTTP status, title and FHIR issue code, so a raise names what
went wrong (`raise Forbidden("…")`) instead of spelling a status. Each router says how its
errors look (RFC 9457 problem+json, FHIR OperationOutcome, RFC 6749 OAuth JSON) by its route
class; the app's handlers look the renderer up on the route that matched.

An error may carry audit records (`Auditor.refuse`). The session dependency then rolls back
everything else the request did and commits those records alone: a refusal is audited, and a
refused request changes nothing else.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from audit import AuditRecord

PROBLEM_JSON = "application/problem+json"


@dataclass(frozen=True)
class ErrorDetail:
    """One thing wrong with a request: where, and what was expected (never the submitted value)."""

    location: str
    message: str
    code: str = "invalid"


class GatewayError(Exception):
    """An error with a status, a title and a FHIR issue code, named by its class."""

    # Plain attributes, not ClassVars: the class sets them, and the few errors whose status
    # depends on the case (an OAuth refusal, a framework HTTP error) set them per instance.
    status: int = 500
    title: str = "Internal error"
    fhir_code: ClassVar[str] = "exception"
    default_headers: ClassVar[Mapping[str, str]] = {}

    def __init__(
        self,
        detail: str,
        *,
        errors: Sequence[ErrorDetail] = (),
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = tuple(errors)
        self.headers = {**self.default_headers, **(headers or {})}
        # Filled by Auditor.refuse(): the events the session dependency commits on their own.
        self.audit: tuple[AuditRecord, ...] = ()

    def __str__(self) -> str:
        return f"{self.status} {self.title}: {self.detail}"


class InvalidPayload(GatewayError):
    """The body is not an acceptable payload (400)."""

    status, title, fhir_code = 400, "Invalid payload", "invalid"


class InvalidQuery(GatewayError):
    """A query parameter is not acceptable (400), as FHIR search answers it."""

    status, title, fhir_code = 400, "Invalid query", "invalid"


class NotAuthenticated(GatewayError):
    """No valid bearer token (401)."""

    status, title, fhir_code = 401, "Not authenticated", "login"
    default_headers = {"WWW-Authenticate": 'Bearer error="invalid_token"'}


class Forbidden(GatewayError):
    """Authenticated, but not allowed (403)."""

    status, title, fhir_code = 403, "Forbidden", "forbidden"


class NotFound(GatewayError):
    """No such route (404)."""

    status, title, fhir_code = 404, "Not found", "not-found"


class MethodNotAllowed(GatewayError):
    """The route exists but not with this method (405)."""

    status, title, fhir_code = 405, "Method not allowed", "not-supported"


class Conflict(GatewayError):
    """The request conflicts with the resource's current state (409)."""

    status, title, fhir_code = 409, "Conflict", "conflict"


class Gone(GatewayError):
    """What was asked for existed and has been erased (410)."""

    status, title, fhir_code = 410, "Gone", "deleted"


class PayloadTooLarge(GatewayError):
    """The body, or the number of entries in it, is over the limit (413)."""

    status, title, fhir_code = 413, "Payload too large", "too-long"


class UnsupportedMediaType(GatewayError):
    """The Content-Type is not one this endpoint reads (415)."""

    status, title, fhir_code = 415, "Unsupported media type", "not-supported"


class ValidationFailed(GatewayError):
    """Parameters or form fields failed validation (422)."""

    status, title, fhir_code = 422, "Invalid request", "invalid"


class ServiceUnavailable(GatewayError):
    """The database is busy or unreachable: try again shortly (503, with Retry-After)."""

    status, title, fhir_code = 503, "Service unavailable", "transient"
    default_headers = {"Retry-After": "1"}


class InternalError(GatewayError):
    """The gateway failed (500); nothing from the request was stored."""


class HttpError(GatewayError):
    """Any other HTTP error raised by the framework, with its own status."""

    def __init__(self, status: int, detail: str, *, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(detail, headers=headers)
        self.status = status


Renderer = Callable[[GatewayError], Response]


def problem_response(error: GatewayError) -> Response:
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


PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem (RFC 9457)",
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"location": {"type": "string"}, "message": {"type": "string"}},
            },
        },
    },
}


def problem_openapi(description: str) -> dict[str, Any]:
    """Return an OpenAPI response entry for a problem+json error."""
    return {"description": description, "content": {PROBLEM_JSON: {"schema": PROBLEM_SCHEMA}}}


def error_route(renderer: Renderer, name: str) -> type[APIRoute]:
    """Return a route class whose errors are rendered by `renderer` (set it on a router)."""
    return type(name, (APIRoute,), {"error_renderer": staticmethod(renderer)})


ProblemRoute = error_route(problem_response, "ProblemRoute")


def renderer_for(request: Request) -> Renderer:
    """Return the renderer of the route a request matched (problem+json when none matched)."""
    route = request.scope.get("route")
    renderer: Renderer = getattr(route, "error_renderer", problem_response)
    return renderer


def render(request: Request, error: GatewayError) -> Response:
    """Render an error the way the matched route's family expects."""
    return renderer_for(request)(error)


def validation_failed(exc: RequestValidationError) -> ValidationFailed:
    """Turn FastAPI's validation error into ours, keeping locations and expectations only."""
    # Pydantic errors carry the submitted input; only the location and the expectation go back.
    details = [
        ErrorDetail(location=".".join(str(part) for part in err["loc"]), message=err["msg"])
        for err in exc.errors()
    ]
    return ValidationFailed("The request failed validation.", errors=details)


def install_error_handlers(app: FastAPI) -> None:
    """Make every expected error come back in the format of the matched route's family.

    Unexpected exceptions never reach these handlers: the request middleware
    (kit/telemetry.py) turns them into a 500 without writing a traceback.
    """

    async def _gateway_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, GatewayError)
        return render(request, exc)

    async def _validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return render(request, validation_failed(exc))

    async def _http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        error: GatewayError
        if exc.status_code == 404:
            error = NotFound("Nothing is served at this address.")
        elif exc.status_code == 405:
            error = MethodNotAllowed("This address does not accept that method.", headers=exc.headers)
        else:
            error = HttpError(exc.status_code, str(exc.detail), headers=exc.headers)
        return render(request, error)

    app.add_exception_handler(GatewayError, _gateway_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)

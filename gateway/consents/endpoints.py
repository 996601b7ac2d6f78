"""The consent registry (routes only)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.responses import Response

from gateway.auth.dependencies import CallerAuditor, StaffPrincipal
from gateway.kit.context import Keyring
from gateway.kit.db import DbSession
from gateway.kit.errors import GatewayError, ValidationFailed, error_route, problem_openapi, problem_response, validation_failed
from policies import Purpose

from . import service
from .schemas import CONSENT_BUNDLE, ConsentCreate, ConsentRead, ConsentRegistryRead

FHIR_JSON = "application/fhir+json"
# What FastAPI's own validation says of any request; this router's problems name the fields as well.
_GENERIC_VALIDATION = validation_failed(RequestValidationError([])).detail


def _problem_naming_fields(error: GatewayError) -> Response:
    """Render problem+json whose `detail` names the fields at fault (not only its `errors`)."""
    if isinstance(error, ValidationFailed) and error.errors and error.detail == _GENERIC_VALIDATION:
        fields = "; ".join(f"{e.location}: {e.message}" for e in error.errors)
        named = ValidationFailed(f"The request failed validation: {fields}.", errors=error.errors, headers=error.headers)
        return problem_response(named)
    return problem_response(error)


ConsentRoute = error_route(_problem_naming_fields, "ConsentRoute")

ERRORS: dict[int | str, dict[str, Any]] = {
    401: problem_openapi("No valid bearer token."),
    403: problem_openapi("Not a member of the MACPT team allocated to this child (the refusal is recorded)."),
    410: problem_openapi("The child's record has been erased."),
    422: problem_openapi("A parameter or the body is not valid; `detail` names the fields."),
    503: problem_openapi("The database is busy; retry after the Retry-After seconds."),
}
AS_FHIR: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The registry as JSON, or with format=fhir a FHIR R4 collection Bundle of Consent resources.",
        "content": {FHIR_JSON: {"schema": CONSENT_BUNDLE}},
    }
}

router = APIRouter(prefix="/children", tags=["consents"], route_class=ConsentRoute)


@router.post(
    "/{child_id}/consents",
    response_model=ConsentRead,
    status_code=201,
    summary="Record consent given, refused or withdrawn",
    responses=ERRORS,
)
def record_consent(
    session: DbSession,
    principal: StaffPrincipal,
    auditor: CallerAuditor,
    keyring: Keyring,
    child_id: uuid.UUID,
    body: ConsentCreate,
) -> ConsentRead:
    """Record a decision of the child or of a person with parental responsibility (audited; never changed
    afterwards: record a withdrawal as a new decision)."""
    return service.create(session, principal, auditor=auditor, keyring=keyring, child_id=child_id, consent=body)


@router.get(
    "/{child_id}/consents",
    response_model=ConsentRegistryRead,
    summary="A child's consent decisions: in force now, and the history",
    responses={**ERRORS, **AS_FHIR},
)
def get_consents(
    session: DbSession,
    principal: StaffPrincipal,
    auditor: CallerAuditor,
    keyring: Keyring,
    child_id: uuid.UUID,
    purpose: Annotated[Purpose | None, Query(description="Only the decisions for this purpose.")] = None,
    output: Annotated[
        Literal["json", "fhir"],
        Query(alias="format", description="json (default), or fhir: a FHIR R4 Bundle of Consent resources."),
    ] = "json",
) -> ConsentRegistryRead | Response:
    """Every decision, newest first, and for each scope the newest in force now (audited)."""
    if output == "fhir":
        bundle = service.get_fhir_bundle(
            session, principal, auditor=auditor, keyring=keyring, child_id=child_id, purpose=purpose
        )
        return JSONResponse(bundle, media_type=FHIR_JSON)
    return service.get_registry(session, principal, auditor=auditor, keyring=keyring, child_id=child_id, purpose=purpose)

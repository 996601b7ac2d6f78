"""FHIR R4 push endpoints for health systems (routes only; the logic is in service.py).

Plain `def` endpoints: FastAPI runs them in its threadpool, so parsing, validation and the
database work never block the event loop. Only the body is read on the loop, asynchronously
and never past the size limit.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path
from fastapi.responses import JSONResponse
from starlette.responses import Response

from adapters import AdapterError, NhsFhirAdapter, parse_resource, resource_response
from gateway.auth.dependencies import CallerAuditor, ClientPrincipal
from gateway.kit.context import ActiveRouting, AppSettings, Keyring
from gateway.kit.db import DbSession
from gateway.kit.errors import error_route

from .http import PushBody, adapter_error_renderer, adapter_failure, body_reader, respond
from .schemas import (
    BUNDLE_REQUEST,
    BUNDLE_RESPONSE,
    CAPABILITY_STATEMENT,
    FHIR_ERRORS,
    FHIR_JSON,
    RESOURCE_REQUEST,
    fhir_request_body,
    fhir_response,
)
from .service import ingest

FHIR = NhsFhirAdapter()
FhirRoute = error_route(adapter_error_renderer(FHIR), "FhirRoute")
FhirBody = Annotated[PushBody, Depends(body_reader(FHIR, default_media_type=FHIR_JSON))]


class FhirJSONResponse(JSONResponse):
    """A JSON response whose media type is FHIR's."""

    media_type = FHIR_JSON


router = APIRouter(prefix="/fhir/R4", tags=["fhir"], route_class=FhirRoute)


@router.post(
    "",
    summary="Push a FHIR transaction or batch Bundle",
    response_class=FhirJSONResponse,
    responses={200: fhir_response("The response Bundle: one entry per entry pushed.", BUNDLE_RESPONSE), **FHIR_ERRORS},
    openapi_extra=fhir_request_body(BUNDLE_REQUEST),
)
def push_bundle(
    session: DbSession,
    principal: ClientPrincipal,
    auditor: CallerAuditor,
    keyring: Keyring,
    settings: AppSettings,
    routing: ActiveRouting,
    body: FhirBody,
) -> Response:
    """Store a Bundle's Patients and records and answer with the response Bundle."""
    try:
        submission = FHIR.parse(body.content, body.media_type, max_entries=settings.max_bundle_entries)
    except AdapterError as error:
        raise adapter_failure(error) from None
    outcomes = ingest(session, principal, auditor=auditor, keyring=keyring, routing=routing, submission=submission)
    return respond(FHIR.render(submission, outcomes))


@router.put(
    "/{resource_type}/{resource_id}",
    summary="Push one FHIR resource",
    response_class=FhirJSONResponse,
    responses={
        200: fhir_response("Already stored: this version was pushed before."),
        201: fhir_response("Stored; Location names the stored version."),
        **FHIR_ERRORS,
    },
    openapi_extra=fhir_request_body(RESOURCE_REQUEST),
)
def put_resource(
    session: DbSession,
    principal: ClientPrincipal,
    auditor: CallerAuditor,
    keyring: Keyring,
    resource_type: Annotated[str, Path(pattern=r"^[A-Z][A-Za-z]{1,63}$")],
    resource_id: Annotated[str, Path(pattern=r"^[A-Za-z0-9\-\.]{1,64}$")],
    routing: ActiveRouting,
    body: FhirBody,
) -> Response:
    """Store one Patient or record, as a one-entry transaction."""
    try:
        submission = parse_resource(
            body.content, body.media_type, resource_type=resource_type, resource_id=resource_id
        )
    except AdapterError as error:
        raise adapter_failure(error) from None
    outcomes = ingest(session, principal, auditor=auditor, keyring=keyring, routing=routing, submission=submission)
    return respond(resource_response(submission, outcomes[0]))


public_router = APIRouter(prefix="/fhir/R4", tags=["fhir"], route_class=FhirRoute)


@public_router.get(
    "/metadata",
    summary="CapabilityStatement",
    response_class=FhirJSONResponse,
    responses={200: fhir_response("What this server accepts.", CAPABILITY_STATEMENT)},
)
def capability_statement(settings: AppSettings) -> Response:
    """Say what this server accepts."""
    return FhirJSONResponse(FHIR.describe(token_endpoint=settings.token_endpoint))

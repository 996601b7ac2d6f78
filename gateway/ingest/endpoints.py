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

from adapters import AdapterError, NhsFhirAdapter, Rendered, parse_bundle, parse_resource, resource_response
from adapters.nhs_fhir import deletion_response
from gateway.auth.dependencies import CallerAuditor, ClientPrincipal
from gateway.kit.context import ActiveRouting, AppSettings, Keyring, SensitivityClassifier
from gateway.kit.db import DbSession

from .fhir_http import Answer, fhir_route
from .http import PushBody, adapter_failure, body_reader
from .retract import retract
from .schemas import (
    BUNDLE_REQUEST,
    BUNDLE_RESPONSE,
    CAPABILITY_STATEMENT,
    DELETE_ERRORS,
    FHIR_ERRORS,
    FHIR_JSON,
    NEGOTIATION,
    RESOURCE_REQUEST,
    fhir_request_body,
    fhir_response,
)
from .service import ingest

FHIR = NhsFhirAdapter()
# Every answer of these routes, errors included, in the format the request negotiates (fhir_http.py).
FhirRoute = fhir_route(FHIR, "FhirRoute")
FhirBody = Annotated[PushBody, Depends(body_reader(FHIR, default_media_type=FHIR_JSON))]
ResourceType = Annotated[str, Path(pattern=r"^[A-Z][A-Za-z]{1,63}$")]
ResourceId = Annotated[str, Path(pattern=r"^[A-Za-z0-9\-\.]{1,64}$")]


class FhirJSONResponse(JSONResponse):
    """A JSON response whose media type is FHIR's."""

    media_type = FHIR_JSON


router = APIRouter(prefix="/fhir/R4", tags=["fhir"], route_class=FhirRoute)


@router.post(
    "",
    summary="Push a FHIR transaction or batch Bundle",
    description="Prefer: return=representation adds each stored resource to its entry; return=minimal leaves out "
    "the outcome of a stored entry (a refused entry's outcome always says why). " + NEGOTIATION,
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
    classifier: SensitivityClassifier,
    body: FhirBody,
    answer: Answer,
) -> Response:
    """Store a Bundle's Patients and records and answer with the response Bundle."""
    try:
        submission = parse_bundle(
            body.content, body.media_type, max_entries=settings.max_bundle_entries, classifier=classifier
        )
    except AdapterError as error:
        raise adapter_failure(error) from None
    outcomes = ingest(session, principal, auditor=auditor, keyring=keyring, routing=routing, submission=submission)
    return answer.bundle(FHIR.render(submission, outcomes, prefer=answer.prefer))


@router.put(
    "/{resource_type}/{resource_id}",
    summary="Push one FHIR resource",
    description="Location names the stored version, ETag is W/\"<version>\" and Last-Modified when the gateway "
    "stored it. Prefer: return=minimal answers with no body; return=representation with the resource as stored "
    "(meta.versionId and meta.lastUpdated set); otherwise an OperationOutcome. " + NEGOTIATION,
    response_class=FhirJSONResponse,
    responses={
        200: fhir_response("Already stored: this version was pushed before (ETag and Last-Modified are its own)."),
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
    resource_type: ResourceType,
    resource_id: ResourceId,
    routing: ActiveRouting,
    classifier: SensitivityClassifier,
    body: FhirBody,
    answer: Answer,
) -> Response:
    """Store one Patient or record, as a one-entry transaction."""
    try:
        submission = parse_resource(
            body.content, body.media_type, resource_type=resource_type, resource_id=resource_id, classifier=classifier
        )
    except AdapterError as error:
        raise adapter_failure(error) from None
    outcomes = ingest(session, principal, auditor=auditor, keyring=keyring, routing=routing, submission=submission)
    return answer.write(resource_response(submission, outcomes[0], prefer=answer.prefer))


@router.delete(
    "/{resource_type}/{resource_id}",
    summary="Retract a record pushed in error",
    description="Marks this client's version in force of the record entered in error: it leaves the child's view. "
    "A Patient (undone through link review) or a Consent (push the corrected decision) cannot be deleted (405). "
    "Prefer: return=minimal answers 204 with no body. " + NEGOTIATION,
    response_class=FhirJSONResponse,
    responses={
        200: fhir_response("Retracted, or retracted before (the OperationOutcome says which)."),
        204: {"description": "Retracted (Prefer: return=minimal)."},
        **DELETE_ERRORS,
    },
)
def delete_resource(
    session: DbSession,
    principal: ClientPrincipal,
    auditor: CallerAuditor,
    resource_type: ResourceType,
    resource_id: ResourceId,
    answer: Answer,
) -> Response:
    """Retract one of this client's records: its version in force is marked entered in error."""
    retraction = retract(session, principal, auditor=auditor, resource_type=resource_type, resource_id=resource_id)
    return answer.write(deletion_response(already=retraction.already), minimal_status=204)


public_router = APIRouter(prefix="/fhir/R4", tags=["fhir"], route_class=FhirRoute)


@public_router.get(
    "/metadata",
    summary="CapabilityStatement",
    response_class=FhirJSONResponse,
    responses={200: fhir_response("What this server accepts.", CAPABILITY_STATEMENT)},
)
def capability_statement(settings: AppSettings, answer: Answer) -> Response:
    """Say what this server accepts."""
    statement = FHIR.describe(token_endpoint=settings.token_endpoint)
    return answer.read(Rendered(status_code=200, body=statement, media_type=FHIR_JSON))

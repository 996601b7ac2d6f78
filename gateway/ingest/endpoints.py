"""FHIR R4 push endpoints for health systems (routes only; the logic is in service.py)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Path, Request
from fastapi.responses import JSONResponse

from adapters import AdapterError, EntryResponse, parse_bundle, parse_resource, response_bundle
from adapters import Issue, ParsedBundle, operation_outcome
from gateway.auth.dependencies import ClientPrincipal
from gateway.kit.db import DbSession
from gateway.kit.errors import FHIR_JSON, ErrorDetail, GatewayError

from .service import ingest_bundle

router = APIRouter(prefix="/fhir/R4", tags=["fhir"])

MAX_BODY_BYTES = 10 * 1024 * 1024


async def _read_body(request: Request) -> bytes:
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        raise GatewayError(413, "Too large", f"A push may be at most {MAX_BODY_BYTES} bytes.", fhir_code="too-long")
    return body


def _adapter_failure(error: AdapterError) -> GatewayError:
    return GatewayError(
        400,
        "Invalid FHIR",
        "The payload is not an acceptable FHIR R4 Bundle; nothing was stored.",
        [ErrorDetail(location=i.location, message=i.message, code=i.code) for i in error.issues],
    )


@router.post("", summary="Push a FHIR transaction or batch Bundle", response_class=JSONResponse)
async def push_bundle(
    request: Request,
    session: DbSession,
    principal: ClientPrincipal,
    content_type: Annotated[str, Header()] = "application/fhir+json",
) -> JSONResponse:
    """Store a Bundle's Patients and records and answer with the response Bundle."""
    body = await _read_body(request)
    try:
        parsed = parse_bundle(body, content_type)
    except AdapterError as error:
        raise _adapter_failure(error) from None
    outcomes = ingest_bundle(
        session, principal, keyring=request.app.state.keyring, parsed=parsed, request_id=request.state.request_id
    )
    responses = [EntryResponse(status=o.status, location=o.location, outcome_issues=o.issues) for o in outcomes]
    return JSONResponse(response_bundle(parsed.bundle_type, responses), media_type=FHIR_JSON)


@router.put("/{resource_type}/{resource_id}", summary="Push one FHIR resource", response_class=JSONResponse)
async def put_resource(
    request: Request,
    session: DbSession,
    principal: ClientPrincipal,
    resource_type: Annotated[str, Path(pattern=r"^[A-Z][A-Za-z]{1,63}$")],
    resource_id: Annotated[str, Path(pattern=r"^[A-Za-z0-9\-\.]{1,64}$")],
    content_type: Annotated[str, Header()] = "application/fhir+json",
) -> JSONResponse:
    """Store one Patient or record, as a one-entry transaction."""
    body = await _read_body(request)
    try:
        entry = parse_resource(body, content_type, resource_type=resource_type, resource_id=resource_id)
    except AdapterError as error:
        raise _adapter_failure(error) from None
    outcomes = ingest_bundle(
        session,
        principal,
        keyring=request.app.state.keyring,
        parsed=ParsedBundle(bundle_type="transaction", entries=(entry,), issues=()),
        request_id=request.state.request_id,
    )
    outcome = outcomes[0]
    status_code = int(outcome.status.split(" ", 1)[0])
    message = "Stored." if status_code == 201 else "Already stored: this version was pushed before."
    body_out = operation_outcome([Issue("information", "informational", "", message)])
    headers = {"Location": outcome.location} if outcome.location else {}
    return JSONResponse(body_out, status_code=status_code, media_type=FHIR_JSON, headers=headers)


public_router = APIRouter(prefix="/fhir/R4", tags=["fhir"])


@public_router.get("/metadata", summary="CapabilityStatement", response_class=JSONResponse)
def capability_statement(request: Request) -> JSONResponse:
    """Say what this server accepts."""
    statement = {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-11-22",
        "kind": "instance",
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "application/fhir+xml"],
        "implementation": {"description": "MACPT interagency data-sharing gateway"},
        "rest": [
            {
                "mode": "server",
                "security": {
                    "service": [
                        {
                            "coding": [
                                {
                                    "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                                    "code": "SMART-on-FHIR",
                                }
                            ]
                        }
                    ],
                    "description": "SMART Backend Services: client credentials with a signed JWT assertion "
                    f"at {request.app.state.settings.token_endpoint}",
                },
                "resource": [
                    {"type": "Patient", "interaction": [{"code": "update"}]},
                    {"type": "Encounter", "interaction": [{"code": "update"}]},
                ],
                "interaction": [{"code": "transaction"}, {"code": "batch"}],
            }
        ],
    }
    return JSONResponse(statement, media_type=FHIR_JSON)

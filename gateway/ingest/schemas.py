"""What the FHIR push endpoints accept and answer, as the OpenAPI document describes them.

The bodies are FHIR resources, read and validated by the adapter (fhir.resources), not by
pydantic models here; these JSON Schemas say enough of their shape for a client, or a
property-based tester, to build a request and check a response.
"""

from __future__ import annotations

from typing import Any

FHIR_JSON = "application/fhir+json"
FHIR_XML = "application/fhir+xml"

OPERATION_OUTCOME: dict[str, Any] = {
    "title": "OperationOutcome",
    "type": "object",
    "required": ["resourceType", "issue"],
    "properties": {
        "resourceType": {"const": "OperationOutcome"},
        "issue": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["severity", "code"],
                "properties": {
                    "severity": {"enum": ["fatal", "error", "warning", "information"]},
                    "code": {"type": "string"},
                    "diagnostics": {"type": "string"},
                    "expression": {"type": "array", "items": {"type": "string"}},
                },
            },
        },
    },
}

BUNDLE_REQUEST: dict[str, Any] = {
    "title": "Bundle (transaction or batch)",
    "type": "object",
    "required": ["resourceType", "type"],
    "properties": {
        "resourceType": {"const": "Bundle"},
        "type": {"enum": ["transaction", "batch"]},
        "entry": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "fullUrl": {"type": "string"},
                    "resource": {"type": "object", "description": "A Patient (with NHS number) or an Encounter."},
                    "request": {
                        "type": "object",
                        "properties": {"method": {"enum": ["POST", "PUT"]}, "url": {"type": "string"}},
                    },
                },
            },
        },
    },
}

BUNDLE_RESPONSE: dict[str, Any] = {
    "title": "Bundle (transaction-response or batch-response)",
    "type": "object",
    "required": ["resourceType", "type", "entry"],
    "properties": {
        "resourceType": {"const": "Bundle"},
        "type": {"enum": ["transaction-response", "batch-response"]},
        "entry": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["response"],
                "properties": {
                    "response": {
                        "type": "object",
                        "required": ["status"],
                        "properties": {
                            "status": {"type": "string"},
                            "location": {"type": "string"},
                            "outcome": OPERATION_OUTCOME,
                        },
                    }
                },
            },
        },
    },
}

RESOURCE_REQUEST: dict[str, Any] = {
    "title": "A FHIR resource (Patient or Encounter)",
    "type": "object",
    "required": ["resourceType"],
    "properties": {"resourceType": {"type": "string"}, "id": {"type": "string"}},
}

CAPABILITY_STATEMENT: dict[str, Any] = {
    "title": "CapabilityStatement",
    "type": "object",
    "required": ["resourceType", "fhirVersion"],
    "properties": {"resourceType": {"const": "CapabilityStatement"}, "fhirVersion": {"type": "string"}},
}


def fhir_request_body(schema: dict[str, Any]) -> dict[str, Any]:
    """Return an OpenAPI requestBody taking a FHIR resource as JSON or XML."""
    return {
        "requestBody": {
            "required": True,
            "content": {
                FHIR_JSON: {"schema": schema},
                FHIR_XML: {"schema": {"type": "string", "description": "The same resource in FHIR XML."}},
            },
        }
    }


def fhir_response(description: str, schema: dict[str, Any] = OPERATION_OUTCOME) -> dict[str, Any]:
    """Return an OpenAPI response holding a FHIR resource."""
    return {"description": description, "content": {FHIR_JSON: {"schema": schema}}}


FHIR_ERRORS: dict[int | str, dict[str, Any]] = {
    400: fhir_response("The body is not valid FHIR, or not the resource expected; nothing was stored."),
    401: fhir_response("No valid bearer token."),
    403: fhir_response("The token is not an agency system's, or the client is not active."),
    406: fhir_response("The Accept header or _format names no format this server writes (always JSON)."),
    413: fhir_response("The body or its number of entries is over the limit; nothing was stored."),
    415: fhir_response("The Content-Type is not FHIR JSON or XML."),
    422: fhir_response("A transaction was refused as a whole (the issues name each entry); nothing was stored."),
    503: fhir_response("The database is busy; retry after the Retry-After seconds. Nothing was stored."),
}

DELETE_ERRORS: dict[int | str, dict[str, Any]] = {
    401: FHIR_ERRORS[401],
    403: fhir_response("The token is not an agency system's, the client is not active, or not registered for the "
                       "record's kind."),
    404: fhir_response("This client pushed no record of that type and id."),
    405: fhir_response("A Patient or a Consent cannot be deleted (the OperationOutcome says what to do instead)."),
    406: FHIR_ERRORS[406],
    503: FHIR_ERRORS[503],
}

# How every FHIR route chooses its answer's format (gateway/ingest/fhir_http.py), for the document.
NEGOTIATION = (
    "Answers, errors included, are FHIR JSON or FHIR XML: as _format (json, xml, or a media type) or else the "
    "Accept header asks, else in the format of the request body, else JSON (each documented here as JSON)."
)

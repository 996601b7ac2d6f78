"""Police and education push endpoints, and their published schemas (routes only).

Police forces and schools have no FHIR: each pushes a versioned JSON batch (`police/v1`,
`education/v1`, the schemas at `GET /schemas/police.json` and `/schemas/education.json`), and
schools also a CSV attendance extract. The answer gives each record's outcome; one bad record
does not sink the rest unless the batch asks for all-or-nothing (`"atomic": true`, or
`?atomic=true` for a CSV, at most GATEWAY_MAX_ATOMIC_RECORDS records). A large batch is stored
in chunks of a bounded transaction each (bulk.py). Errors are RFC 9457 problem+json. Plain `def` endpoints: parsing and
the database work run in the threadpool, never on the event loop.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session
from starlette.responses import Response

from adapters import Adapter, AdapterError, Issue, Submission
from adapters.batch import BatchSubmission
from adapters.education import EXAMPLE_CSV, EducationAdapter
from adapters.education import EXAMPLE_SUBMISSION as EDUCATION_EXAMPLE
from adapters.police import EXAMPLE_SUBMISSION as POLICE_EXAMPLE
from adapters.police import PoliceAdapter
from gateway.auth.dependencies import CallerAuditor, ClientPrincipal
from gateway.auth.principal import Principal
from gateway.kit.auditor import Auditor
from gateway.kit.crypto import DataKeyring
from gateway.notifications.routing import Routing
from gateway.settings import Settings
from gateway.kit.context import ActiveRouting, AppSettings, Keyring
from gateway.kit.db import DbSession
from gateway.kit.errors import PayloadTooLarge, error_route, problem_openapi

from .http import PushBody, adapter_error_renderer, adapter_failure, body_reader, respond
from .bulk import ingest_batch

POLICE = PoliceAdapter()
EDUCATION = EducationAdapter()
JSON = "application/json"
CSV = "text/csv"

PoliceRoute = error_route(adapter_error_renderer(POLICE), "PoliceRoute")
EducationRoute = error_route(adapter_error_renderer(EDUCATION), "EducationRoute")
PoliceBody = Annotated[PushBody, Depends(body_reader(POLICE, default_media_type=JSON))]
EducationBody = Annotated[PushBody, Depends(body_reader(EDUCATION, default_media_type=JSON))]

OUTCOMES_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["schema", "atomic", "summary", "outcomes"],
    "properties": {
        "schema": {"type": "string"},
        "atomic": {"type": "boolean"},
        "summary": {
            "type": "object",
            "properties": {k: {"type": "integer"} for k in ("created", "unchanged", "rejected")},
        },
        "outcomes": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "location": {"type": "string"},
                    "record_id": {"type": ["string", "null"]},
                    "status": {"enum": ["created", "unchanged", "rejected"]},
                    "errors": {"type": "array", "items": {"type": "object"}},
                },
            },
        },
    },
}
ERRORS: dict[int | str, dict[str, Any]] = {
    400: problem_openapi("The body is not a batch of this format (the errors name the fields)."),
    401: problem_openapi("No valid bearer token."),
    403: problem_openapi("The client is not registered, or not for these record kinds."),
    413: problem_openapi("The body, or the number of records, is over the limit."),
    415: problem_openapi("The Content-Type is not one this endpoint reads."),
    422: problem_openapi("An all-or-nothing batch had a bad record: nothing was stored."),
    503: problem_openapi("The database is busy; retry after the Retry-After seconds."),
}


def _outcomes(description: str) -> dict[int | str, dict[str, Any]]:
    return {200: {"description": description, "content": {JSON: {"schema": OUTCOMES_SCHEMA}}}}


def _published(name: str) -> dict[str, Any]:
    # The full schema is published on its own (a JSON Schema 2020-12 document with its own $defs,
    # which an OpenAPI document cannot embed as it is); here, its shape and where to find it.
    return {
        "type": "object",
        "required": ["schema", "records"],
        "properties": {"schema": {"type": "string"}, "atomic": {"type": "boolean"}, "records": {"type": "array"}},
        "description": f"The {name}/v1 batch: the full JSON Schema is at GET /schemas/{name}.json.",
    }


def _request_body(media_type: str, example: Any, schema: dict[str, Any]) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {media_type: {"schema": schema, "example": example}}}}


police_router = APIRouter(prefix="/police/v1", tags=["police"], route_class=PoliceRoute)
education_router = APIRouter(prefix="/education/v1", tags=["education"], route_class=EducationRoute)
schemas_router = APIRouter(prefix="/schemas", tags=["schemas"])


@police_router.post(
    "/records",
    summary="Push police records (police/v1)",
    responses={**_outcomes("Each record's outcome, in order."), **ERRORS},
    openapi_extra=_request_body(JSON, POLICE_EXAMPLE, _published("police")),
)
def push_police_records(
    session: DbSession,
    principal: ClientPrincipal,
    auditor: CallerAuditor,
    keyring: Keyring,
    settings: AppSettings,
    routing: ActiveRouting,
    body: PoliceBody,
) -> Response:
    """Store a force's records (incidents, domestic abuse notifications, missing episodes, custody,
    intelligence), each with the child and the persons and locations involved."""
    push = _Push(session, principal, auditor, keyring, routing, settings)
    return push.store(POLICE, body, max_records=settings.max_bundle_entries)


@education_router.post(
    "/records",
    summary="Push education records (education/v1)",
    responses={**_outcomes("Each record's outcome, in order."), **ERRORS},
    openapi_extra=_request_body(JSON, EDUCATION_EXAMPLE, _published("education")),
)
def push_education_records(
    session: DbSession,
    principal: ClientPrincipal,
    auditor: CallerAuditor,
    keyring: Keyring,
    settings: AppSettings,
    routing: ActiveRouting,
    body: EducationBody,
) -> Response:
    """Store a school's records (enrolments, attendance, suspensions and exclusions, safeguarding
    concerns, home education and missing education notices), each pupil by UPN."""
    if body.media_type != JSON:
        raise adapter_failure(AdapterError([_media_issue(JSON, "/education/v1/records.csv")]))
    push = _Push(session, principal, auditor, keyring, routing, settings)
    return push.store(EDUCATION, body, max_records=settings.max_bundle_entries)


@education_router.post(
    "/records.csv",
    summary="Push a termly attendance extract (CSV, education/v1 columns)",
    responses={**_outcomes("Each row's outcome, in order."), **ERRORS},
    openapi_extra=_request_body(CSV, EXAMPLE_CSV, {"type": "string"}),
)
def push_education_csv(
    session: DbSession,
    principal: ClientPrincipal,
    auditor: CallerAuditor,
    keyring: Keyring,
    settings: AppSettings,
    routing: ActiveRouting,
    body: EducationBody,
    atomic: Annotated[bool, Query(description="All rows or none: one bad row stores nothing.")] = False,
) -> Response:
    """Store one attendance record per row (thousands in one request); each row's outcome is answered."""
    if body.media_type != CSV:
        raise adapter_failure(AdapterError([_media_issue(CSV, "/education/v1/records")]))
    push = _Push(session, principal, auditor, keyring, routing, settings)
    return push.store(EDUCATION, body, max_records=settings.max_csv_rows, atomic=atomic)


@dataclass(frozen=True)
class _Push:
    """What every batch route does with its body: parse, check, store in chunks, answer per record."""

    session: Session
    principal: Principal
    auditor: Auditor
    keyring: DataKeyring
    routing: Routing
    settings: Settings

    def store(self, adapter: Adapter, body: PushBody, *, max_records: int, atomic: bool | None = None) -> Response:
        try:
            submission = adapter.parse(body.content, body.media_type, max_entries=max_records)
        except AdapterError as error:
            raise adapter_failure(error) from None
        if atomic is not None:  # the CSV route's query parameter: a CSV has no field for it
            submission = dataclasses.replace(submission, atomic=atomic)
        batch = _within_atomic_limit(submission, self.settings.max_atomic_records)
        outcomes = ingest_batch(
            self.session, self.principal, auditor=self.auditor, keyring=self.keyring, routing=self.routing, submission=batch
        )
        return respond(adapter.render(batch, outcomes))


def _within_atomic_limit(submission: Submission, limit: int) -> BatchSubmission:
    """Return the batch, refusing an all-or-nothing one too large for one transaction (413)."""
    assert isinstance(submission, BatchSubmission)  # what the police and education adapters parse into
    if submission.atomic and len(submission.records) > limit:
        raise PayloadTooLarge(
            f"An all-or-nothing batch may carry at most {limit} records; send it without all-or-nothing "
            "(each record is answered, and stored in chunks) or split it. Nothing was stored."
        )
    return submission


def _media_issue(expected: str, other: str) -> Issue:
    return Issue("error", "not-supported", "Content-Type", f"this endpoint takes {expected}; see {other} for the other")


@schemas_router.get("/police.json", summary="The police/v1 JSON Schema", response_class=JSONResponse)
def police_schema(settings: AppSettings) -> JSONResponse:
    """What a force's integration team maps its records system to."""
    return JSONResponse(POLICE.describe(token_endpoint=settings.token_endpoint), media_type="application/schema+json")


@schemas_router.get("/education.json", summary="The education/v1 JSON Schema", response_class=JSONResponse)
def education_schema(settings: AppSettings) -> JSONResponse:
    """What a school's MIS supplier or LA data team maps to (the CSV columns are in its description)."""
    return JSONResponse(EDUCATION.describe(token_endpoint=settings.token_endpoint), media_type="application/schema+json")

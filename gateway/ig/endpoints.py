"""The IG officer's endpoints, the log's open checkpoint and key, and FHIR AuditEvent (routes only)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import PlainTextResponse, StreamingResponse

from audit import AuditAction, Outcome, ReviewReason
from gateway.auth.dependencies import CallerAuditor
from gateway.ingest.endpoints import FhirJSONResponse, FhirRoute
from gateway.kit.context import AppSettings, AuditSigner
from gateway.kit.db import DbSession
from gateway.kit.errors import ProblemRoute, problem_openapi
from gateway.models import ReviewStatus
from policies import Agency, Purpose

from . import fhir, service
from .auth import IgOfficer
from .repository import EventFilters
from .schemas import (
    ConsistencyProofRead,
    DisclosuresRead,
    EventDetailRead,
    EventPage,
    InclusionProofRead,
    ReviewDecisionWrite,
    ReviewEntryRead,
    ReviewPage,
)

ERRORS: dict[int | str, dict[str, Any]] = {
    401: problem_openapi("No valid bearer token."),
    403: problem_openapi("Not an information governance officer."),
    422: problem_openapi("A parameter is not valid."),
}
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: problem_openapi("No such event, checkpoint or entry.")}

open_router = APIRouter(prefix="/audit", tags=["audit"], route_class=ProblemRoute)


@open_router.get(
    "/checkpoint",
    summary="The newest signed checkpoint of the audit log",
    response_class=PlainTextResponse,
    responses={200: {"content": {"text/plain": {}}}, 401: ERRORS[401], **NOT_FOUND},
)
def get_checkpoint(session: DbSession) -> Response:
    """Return the newest checkpoint as its C2SP signed note, byte for byte."""
    return PlainTextResponse(service.checkpoint_note(session), media_type="text/plain; charset=utf-8")


@open_router.get(
    "/public-key",
    summary="The key that verifies the audit log's checkpoints",
    response_class=PlainTextResponse,
    responses={200: {"content": {"text/plain": {}}}, 401: ERRORS[401]},
)
def get_public_key(signer: AuditSigner) -> Response:
    """Return the C2SP note verifier key: `<name>+<key id>+<base64 key>`."""
    return PlainTextResponse(signer.verifier().vkey() + "\n", media_type="text/plain; charset=utf-8")


router = APIRouter(tags=["ig"], route_class=ProblemRoute)


@router.get("/audit/events", response_model=EventPage, summary="Search the audit trail", responses=ERRORS)
def list_events(
    request: Request,
    session: DbSession,
    _officer: IgOfficer,
    auditor: CallerAuditor,
    child: uuid.UUID | None = None,
    actor: Annotated[str | None, Query(max_length=255)] = None,
    agency: Agency | None = None,
    action: AuditAction | None = None,
    purpose: Purpose | None = None,
    outcome: Outcome | None = None,
    since: Annotated[datetime | None, Query(description="From this time (inclusive, with a time zone).")] = None,
    until: Annotated[datetime | None, Query(description="Up to this time (exclusive, with a time zone).")] = None,
    trace_id: Annotated[str | None, Query(pattern=r"^[0-9a-f]{32}$")] = None,
    before: Annotated[int | None, Query(ge=1, description="Only events before this seq (from `next`).")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> EventPage:
    """Return events matching every filter given, newest first."""
    filters = EventFilters(
        child_id=child,
        actor_id=actor,
        agency=agency.value if agency else None,
        action=action.value if action else None,
        purpose=purpose.value if purpose else None,
        outcome=outcome.value if outcome else None,
        since=service.aware(since, "since"),
        until=service.aware(until, "until"),
        trace_id=trace_id,
    )
    base = str(request.url.remove_query_params("before"))
    return service.search_events(session, auditor, filters, before=before, limit=limit, base_url=base)


@router.get(
    "/audit/events/{seq}",
    response_model=EventDetailRead,
    summary="One audit event, with its canonical bytes",
    responses={**ERRORS, **NOT_FOUND},
)
def get_event(session: DbSession, _officer: IgOfficer, auditor: CallerAuditor, seq: int) -> EventDetailRead:
    """Return one event in full; SHA-256(0x00 ‖ canonical bytes) is its leaf hash."""
    return service.get_event(session, auditor, seq)


@router.get(
    "/audit/proof/{seq}",
    response_model=InclusionProofRead,
    summary="Inclusion proof of an event",
    responses={**ERRORS, **NOT_FOUND},
)
def get_proof(
    session: DbSession,
    _officer: IgOfficer,
    seq: int,
    tree_size: Annotated[int | None, Query(ge=1, description="A checkpoint's tree size; the newest when omitted.")] = None,
) -> InclusionProofRead:
    """Return the RFC 9162 inclusion proof of event `seq` in a checkpoint's tree."""
    return service.prove_inclusion(session, seq, tree_size)


@router.get(
    "/audit/consistency",
    response_model=ConsistencyProofRead,
    summary="Consistency proof between two checkpoints",
    responses={**ERRORS, **NOT_FOUND},
)
def get_consistency(
    session: DbSession,
    _officer: IgOfficer,
    first: Annotated[int, Query(ge=1)],
    second: Annotated[int, Query(ge=1)],
) -> ConsistencyProofRead:
    """Return the RFC 9162 consistency proof between the checkpoints of `first` and `second` events."""
    return service.prove_consistency(session, first, second)


@router.get("/audit/review", response_model=ReviewPage, summary="The review queue", responses=ERRORS)
def get_review_queue(
    request: Request,
    session: DbSession,
    _officer: IgOfficer,
    status: ReviewStatus | None = ReviewStatus.OPEN,
    reason: ReviewReason | None = None,
    after: Annotated[str | None, Query(max_length=64, description="The cursor from `next`.")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> ReviewPage:
    """Return what needs a human look (open entries by default), in the order it happened."""
    base = str(request.url.remove_query_params("after"))
    return service.review_queue(session, status=status, reason=reason, after=after, limit=limit, base_url=base)


@router.post(
    "/audit/review/{entry_id}",
    response_model=ReviewEntryRead,
    summary="Mark a review entry reviewed",
    responses={**ERRORS, **NOT_FOUND, 409: problem_openapi("Already reviewed.")},
)
def post_review(
    session: DbSession,
    officer: IgOfficer,
    auditor: CallerAuditor,
    entry_id: uuid.UUID,
    decision: ReviewDecisionWrite,
) -> ReviewEntryRead:
    """Record the outcome and a note; the review is itself audited."""
    return service.conclude_review(session, officer, auditor, entry_id, decision)


@router.get(
    "/children/{child_id}/disclosures",
    response_model=DisclosuresRead,
    summary="Every disclosure of a child's information (subject access)",
    responses={**ERRORS, 200: {"content": {"application/json": {}, "text/csv": {}}}},
)
def get_disclosures(
    request: Request,
    session: DbSession,
    _officer: IgOfficer,
    auditor: CallerAuditor,
    child_id: uuid.UUID,
    format: Annotated[str | None, Query(pattern="^(json|csv)$", description="csv or json; else by Accept.")] = None,
) -> Response:
    """Return who saw what of the child, when, why and on what basis: as JSON, or as CSV."""
    report = service.disclosures(session, auditor, child_id)
    wants_csv = format == "csv" or (format is None and "text/csv" in request.headers.get("accept", ""))
    if wants_csv:
        return StreamingResponse(
            service.disclosures_csv(report),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="disclosures-{child_id}.csv"'},
        )
    return Response(report.model_dump_json(), media_type="application/json")


fhir_router = APIRouter(prefix="/fhir/R4", tags=["fhir"], route_class=FhirRoute)


@fhir_router.get("/AuditEvent", summary="Audit events of a child as FHIR AuditEvents", response_class=FhirJSONResponse)
def search_audit_events(
    request: Request,
    session: DbSession,
    settings: AppSettings,
    _officer: IgOfficer,
    auditor: CallerAuditor,
    patient: Annotated[str | None, Query(max_length=100, description="The child: Patient/<id> or <id>.")] = None,
    date: Annotated[list[str] | None, Query(description="ge/gt/le/lt/eq followed by a date or date-time.")] = None,
) -> Response:
    """Return a searchset Bundle of the child's events, shaped as IHE Basic Audit Log Patterns."""
    bundle = fhir.search(session, auditor, patient=patient, dates=date or [], source=settings.audit_origin)
    return FhirJSONResponse(bundle)

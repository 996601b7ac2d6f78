"""GET /healthz and GET /readyz (public: they reveal nothing about anyone)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from gateway.kit.context import DatabaseEngine
from gateway.kit.errors import ProblemRoute
from gateway.kit.migrate import current_revision, head_revision

router = APIRouter(tags=["ops"], route_class=ProblemRoute)


@router.get("/healthz", summary="The process is alive")
def healthz() -> dict[str, str]:
    """Answer while the process can serve at all."""
    return {"status": "ok"}


@router.get("/readyz", summary="The database is reachable and migrated to head")
def readyz(engine: DatabaseEngine) -> JSONResponse:
    """Answer 200 only when requests can be served correctly."""
    head = head_revision()
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
            current = current_revision(connection)
    except SQLAlchemyError:
        return JSONResponse({"status": "unavailable", "database": "unreachable"}, status_code=503)
    if current != head:
        return JSONResponse(
            {"status": "unavailable", "database": "reachable", "migrations": {"current": current, "head": head}},
            status_code=503,
        )
    return JSONResponse({"status": "ok", "database": "reachable", "migrations": {"current": current, "head": head}})

"""The FastAPI app factory: everything is built here, nothing at import time."""

from __future__ import annotations

from fastapi import APIRouter, Depends, FastAPI
from sqlalchemy import Engine

from gateway.auth.dependencies import require_client, require_staff
from gateway.auth.endpoints import router as token_router
from gateway.child_view.endpoints import router as child_view_router
from gateway.health.endpoints import router as health_router
from gateway.ingest.endpoints import public_router as fhir_public_router
from gateway.ingest.endpoints import router as ingest_router
from gateway.keys import KeyFolder
from gateway.kit.db import build_engine, build_sessionmaker
from gateway.kit.errors import install_error_handlers
from gateway.kit.logging import configure_logging
from gateway.kit.telemetry import RequestMiddleware, configure_tracing
from gateway.settings import Settings
from policies import default_policy, load_policy

# Routes reachable without a token. Everything else is mounted under an authenticated parent;
# tests/gateway/test_routing.py fails if a route escapes both.
PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/oauth/token", "/fhir/R4/metadata"})


def create_app(settings: Settings | None = None, *, engine: Engine | None = None) -> FastAPI:
    """Build the gateway app from settings (read from the environment when not given)."""
    settings = settings or Settings()
    configure_logging(settings.log_level)
    configure_tracing(settings)

    app = FastAPI(
        title="MACPT data-sharing gateway",
        version="0.1.0",
        description="Interagency data-sharing and consent gateway for Multi-Agency Child Protection Teams.",
        # FastAPI's own spans and metrics record the raw URL path and query (child ids,
        # purposes). Ours are named by route template instead (kit/telemetry.py).
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.settings = settings
    app.state.engine = engine or build_engine(settings.database_url, settings.database_limits())
    app.state.sessionmaker = build_sessionmaker(app.state.engine)
    keys = KeyFolder(settings.keys_dir)
    app.state.signing_keys = keys.signing_keys()
    app.state.keyring = keys.data_keyring()
    app.state.policy = load_policy(settings.policy_path) if settings.policy_path else default_policy()

    install_error_handlers(app)
    app.add_middleware(RequestMiddleware)

    app.include_router(health_router)
    app.include_router(token_router)
    app.include_router(fhir_public_router)

    clients = APIRouter(dependencies=[Depends(require_client)])
    clients.include_router(ingest_router)
    app.include_router(clients)

    staff = APIRouter(prefix="/api/v1", dependencies=[Depends(require_staff)])
    staff.include_router(child_view_router)
    app.include_router(staff)
    return app

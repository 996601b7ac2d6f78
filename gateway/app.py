"""The FastAPI app factory: everything is built here, nothing at import time."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import functools
import logging
import sys
from collections.abc import AsyncIterator
from functools import partial

import anyio
from fastapi import APIRouter, Depends, FastAPI
from starlette.routing import BaseRoute
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError

from gateway.auth.dependencies import authenticate, require_client, require_staff
from gateway.auth.endpoints import router as token_router
from gateway.cases.endpoints import cases_router, teams_router
from gateway.child_view.endpoints import router as child_view_router
from gateway.consents.endpoints import router as consents_router
from gateway.health.endpoints import router as health_router
from gateway.ig.checkpointer import InlineSigner, integrate_pending, run_audit_worker
from gateway.identity.endpoints import router as linking_router
from gateway.ig.endpoints import fhir_router as ig_fhir_router
from gateway.ig.endpoints import open_router as audit_open_router
from gateway.ig.endpoints import router as ig_router
from gateway.ig.rules import PartnershipReviewRules
from gateway.ingest.batch_endpoints import education_router, police_router, schemas_router
from gateway.ingest.endpoints import public_router as fhir_public_router
from gateway.ingest.endpoints import router as ingest_router
from gateway.keys import KeyFolder
from gateway.kit.db import build_engine, build_sessionmaker
from gateway.kit.errors import install_error_handlers
from gateway.kit.logging import configure_logging
from gateway.kit.telemetry import RequestMiddleware, configure_tracing
from gateway.mais.endpoints import referrals_router as person_query_referrals_router
from gateway.mais.endpoints import router as person_query_router
from gateway.notifications.endpoints import router as inbox_router
from gateway.search.endpoints import router as search_router
from gateway.sharing.endpoints import requests_router, router as sharing_router
from gateway.notifications.routing import routing_for
from gateway.notifications.sweeper import run_overdue_sweeper
from gateway.notifications.webhooks import run_webhook_sender
from gateway.policy_admin.loaded import read_policy
from gateway.policy_admin.service import watch_policy
from gateway.settings import Settings

log = logging.getLogger(__name__)

# Routes reachable without a token. Everything else is mounted under an authenticated parent;
# tests/gateway/test_routing.py fails if a route escapes both.
PUBLIC_PATHS = frozenset(
    {"/healthz", "/readyz", "/oauth/token", "/fhir/R4/metadata", "/schemas/police.json", "/schemas/education.json"}
)
# Routes any authenticated caller reaches, staff or agency system: the audit log's checkpoint and
# public key, so that anyone the partnership lets in can check the log.
ANY_CALLER_PATHS = frozenset({"/api/v1/audit/checkpoint", "/api/v1/audit/public-key"})


def create_app(settings: Settings | None = None, *, engine: Engine | None = None) -> FastAPI:
    """Build the gateway app from settings (read from the environment when not given)."""
    settings = settings or Settings()
    configure_logging(settings.log_level)
    configure_tracing(settings)

    deferred = settings.audit_deferred()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # What importing and building the app made lives as long as the process: out of the
        # collector's sight, a large push's collections scan only what requests create (about a
        # tenth of a 10,000-row import's time).
        gc.freeze()
        # The event loop answers /healthz and reads bodies while pushes run in threads: at the
        # default 5 ms switch interval it queued behind a CPU-bound push for each of its many GIL
        # hand-overs (a 2,000-Patient push: /healthz up to 2 s late); at 1 ms, under 0.3 s, and
        # the push took no longer (tests/gateway/test_under_load.py, on PostgreSQL).
        sys.setswitchinterval(0.001)
        # The ISA in force is stored with its hash and the load audited; SIGHUP reloads it.
        policy_watch = await watch_policy(app.state, settings)
        interval = settings.audit_checkpoint_interval_s
        worker = None
        if deferred or interval > 0:
            worker = asyncio.create_task(
                run_audit_worker(
                    app.state.sessionmaker,
                    app.state.audit_signer,
                    deferred=deferred,
                    integration_interval_s=settings.audit_integration_interval_s,
                    checkpoint_interval_s=interval,
                )
            )
        sweeper = None
        if settings.encompass_sweep_interval_s > 0:
            sweeper = asyncio.create_task(
                run_overdue_sweeper(
                    app.state.sessionmaker,
                    interval_s=settings.encompass_sweep_interval_s,
                    rules=app.state.review_rules,
                )
            )
        sender = None
        if settings.webhook_interval_s > 0:
            sender = asyncio.create_task(
                run_webhook_sender(app.state.sessionmaker, app.state.keyring, interval_s=settings.webhook_interval_s)
            )
        yield
        await policy_watch.stop()
        for task in (worker, sweeper, sender):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if deferred:
            # What this process's last requests staged goes into the trail before it exits, even
            # while another process integrates (it may not see these rows).
            try:
                await anyio.to_thread.run_sync(partial(integrate_pending, app.state.sessionmaker, wait=True))
            except OperationalError as failure:  # lock_timeout: they stay staged for the next gateway to take
                log.warning("staged audit events left for the next start", extra={"error": type(failure).__name__})

    app = FastAPI(
        lifespan=lifespan,
        title="MACPT data-sharing gateway",
        version="0.1.0",
        description="Interagency data-sharing and consent gateway for Multi-Agency Child Protection Teams.",
        # FastAPI's own spans and metrics record the raw URL path and query (child ids,
        # purposes). Ours are named by route template instead (kit/telemetry.py).
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.settings = settings
    app.state.engine = engine or build_engine(settings.database_url, settings.database_limits())
    app.state.sessionmaker = build_sessionmaker(app.state.engine, deferred_audit=deferred)
    keys = KeyFolder(settings.keys_dir)
    app.state.signing_keys = keys.signing_keys()
    app.state.keyring = keys.data_keyring()
    app.state.audit_signer = keys.audit_signer()
    if settings.audit_checkpoint_interval_s > 0 and not deferred:
        InlineSigner(app.state.audit_signer, interval_s=settings.audit_checkpoint_interval_s).install(
            app.state.sessionmaker
        )
    app.state.review_rules = PartnershipReviewRules.from_settings(settings)
    # Read and validated here, so that a broken ISA stops the start; stored (by its SHA-256) at startup.
    app.state.loaded_policy = read_policy(settings.policy_path)
    app.state.policy = app.state.loaded_policy.policy
    app.state.routing = routing_for(settings, app.state.policy)
    # Read and checked here too: a code list naming a label the policy does not know stops the start.
    app.state.classifier = settings.load_classifier()

    install_error_handlers(app)
    app.add_middleware(RequestMiddleware)

    # Built once per process and shared: each app would otherwise analyse every route's dependencies again.
    app.router.routes.extend(_routes())
    return app


@functools.cache
def _routes() -> tuple[BaseRoute, ...]:
    """Return every route of the gateway, with its prefix and its caller dependency.

    Routes hold no per-app state (a request reaches its app's state through `request.app`), so
    one set serves every app this process builds: the test suite builds one per test, and
    analysing some 60 routes' dependencies took most of an app's construction.
    """
    router = APIRouter()
    router.include_router(health_router)
    router.include_router(token_router)
    router.include_router(fhir_public_router)
    router.include_router(schemas_router)

    clients = APIRouter(dependencies=[Depends(require_client)])
    clients.include_router(ingest_router)
    clients.include_router(police_router)
    clients.include_router(education_router)
    clients.include_router(person_query_router)
    router.include_router(clients)

    staff = APIRouter(prefix="/api/v1", dependencies=[Depends(require_staff)])
    staff.include_router(search_router)
    staff.include_router(child_view_router)
    staff.include_router(consents_router)
    staff.include_router(sharing_router)
    staff.include_router(requests_router)
    staff.include_router(teams_router)
    staff.include_router(cases_router)
    staff.include_router(linking_router)
    staff.include_router(ig_router)
    staff.include_router(inbox_router)
    staff.include_router(person_query_referrals_router)
    router.include_router(staff)
    router.include_router(ig_fhir_router, dependencies=[Depends(require_staff)])

    # The log's checkpoint and public key: for anyone the partnership lets in, staff or system.
    anyone = APIRouter(prefix="/api/v1", dependencies=[Depends(authenticate)])
    anyone.include_router(audit_open_router)
    router.include_router(anyone)
    return tuple(router.routes)

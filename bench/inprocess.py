"""Measurements taken inside the benchmark's own process: the fhir.resources ceiling, statements per
push (the app run in-process on the same database), the view's audit event, and policy decisions.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import Engine, event, select
from sqlalchemy.orm import Session

# fhir.resources' default package is FHIR R5, whose Encounter.class is a list: it rejects the R4
# Encounters pushed here. The gateway's adapter validates with the R4B models, so the ceiling does too.
from fhir.resources.R4B import get_fhir_model_class

from audit import AuditAction, AuditEvent, decode_items
from audit.hashing import canonical_bytes, event_hash
from gateway.app import create_app
from gateway.child_view.service import consent_state
from gateway.kit.db import build_engine
from gateway.models import Client, Consent, Item, TeamMember
from gateway.settings import Settings
from policies import (
    Agency,
    ItemFacts,
    Purpose,
    RecordStatus,
    Relationship,
    Viewer,
    decide,
    default_policy,
    load_policy,
)

from .client import Tokens
from .pushes import FHIR_JSON, UNCHANGED, Ledger, Push, read_answer


def fhir_ceiling(bodies: list[bytes]) -> tuple[int, float]:
    """Parse and validate Bundles with fhir.resources alone; return (resources, CPU seconds)."""
    model = get_fhir_model_class("Bundle")
    model.model_validate(json.loads(bodies[0]))  # warm up, as the served gateway is
    resources = 0
    started = time.process_time()
    for body in bodies:
        data = json.loads(body)
        model.model_validate(data)
        resources += len(data["entry"])
    return resources, time.process_time() - started


@dataclass
class StatementCounts:
    """SQL statements (cursor executions) and pool checkouts the in-process app ran per push."""

    fresh_statements: list[int] = field(default_factory=list)
    fresh_executions: list[int] = field(default_factory=list)
    fresh_checkouts: list[int] = field(default_factory=list)
    repeat_statements: int = 0
    resources_per_push: int = 0
    ledger: Ledger = field(default_factory=Ledger)
    problems: list[str] = field(default_factory=list)


def count_statements(settings: Settings, tokens: Tokens, client: Client, fresh: list[Push]) -> StatementCounts:
    """Push fresh Bundles, then an exact repeat of the first, through the app in-process; count statements each."""
    engine = build_engine(settings.database_url, settings.database_limits())
    tally = {"statements": 0, "executions": 0, "checkouts": 0}

    def on_statement(*args: Any) -> None:
        # (connection, cursor, statement, parameters, context, executemany). An executemany is one
        # statement and one round trip, but the database executes it once per parameter set.
        parameters, executemany = args[3], args[5]
        tally["statements"] += 1
        tally["executions"] += len(parameters) if executemany else 1

    def on_checkout(*_args: Any) -> None:
        tally["checkouts"] += 1

    # The app is given this engine (create_app's `engine=`), so every statement of its sessions runs here.
    event.listen(engine, "before_cursor_execute", on_statement)
    event.listen(engine, "checkout", on_checkout)
    counts = StatementCounts(resources_per_push=fresh[0].resources)
    # Each push appends its own audit events (inline), with no background integrator or signer:
    # every statement counted is the push's own, the append included (deferred, a push would
    # send one INSERT for its events and the integrator's statements, shared by many pushes,
    # would land on whichever push was being counted).
    settings = settings.model_copy(update={"audit_append": "inline", "audit_checkpoint_interval_s": 0})
    try:
        app = create_app(settings, engine=engine)
        with TestClient(app) as http:
            for position, push in enumerate([*fresh, fresh[0]]):
                repeat = position == len(fresh)
                tally.update(statements=0, executions=0, checkouts=0)
                headers = {"Content-Type": FHIR_JSON, "Authorization": f"Bearer {tokens.for_client(client)}"}
                response = http.post("/fhir/R4", content=push.body, headers=headers)
                statements, executions, checkouts = tally["statements"], tally["executions"], tally["checkouts"]
                entries, problem = read_answer(response.status_code, response.content, push)
                if entries is None:
                    counts.problems.append(f"in-process push {position + 1}: {problem}")
                    continue
                counts.ledger.acknowledge(client.id, push, entries)
                if repeat:
                    counts.repeat_statements = statements
                    if any(status != UNCHANGED for status, _ in entries):
                        counts.problems.append("the exact repeat was not answered '200 OK' for every entry")
                else:
                    counts.fresh_statements.append(statements)
                    counts.fresh_executions.append(executions)
                    counts.fresh_checkouts.append(checkouts)
    finally:
        event.remove(engine, "before_cursor_execute", on_statement)
        event.remove(engine, "checkout", on_checkout)
        engine.dispose()
    return counts


@dataclass(frozen=True)
class AuditEventSize:
    """The newest view event: its sequence number, canonical size and time to hash."""

    seq: int
    item_entries: int  # entries of its `items` field (the trail groups decisions by rule)
    item_decisions: int  # the item decisions those entries hold, decoded
    canonical_bytes: int
    hash_seconds: float


def view_event_size(engine: Engine, *, runs: int) -> AuditEventSize | None:
    """Measure the newest `staff:view:opened` event, or None when there is none."""
    with Session(engine) as session:
        newest = session.scalar(
            select(AuditEvent)
            .where(AuditEvent.action == AuditAction.STAFF_VIEW_OPENED.value)
            .order_by(AuditEvent.seq.desc())
            .limit(1)
        )
        if newest is None:
            return None
        size = len(canonical_bytes(newest))
        started = time.perf_counter()
        for _ in range(runs):
            event_hash(newest)
        seconds = (time.perf_counter() - started) / runs
        decisions = len(decode_items(newest.items or []))
        return AuditEventSize(newest.seq, len(newest.items or []), decisions, size, seconds)


@dataclass(frozen=True)
class PolicyTiming:
    """How long deciding every in-force item of one child takes, and how many the viewer is shown."""

    items: int
    shown: int
    seconds_per_run: float


def time_policy(settings: Settings, member: TeamMember, child_id: uuid.UUID, *, runs: int) -> PolicyTiming:
    """Time `policies.decide` over a child's items in force, built as the view's decide_items builds them."""
    policy = load_policy(settings.policy_path) if settings.policy_path else default_policy()
    engine = build_engine(settings.database_url)
    try:
        with Session(engine) as session:
            items = list(
                session.scalars(select(Item).where(Item.child_id == child_id, Item.status != RecordStatus.SUPERSEDED))
            )
            consents = list(
                session.scalars(
                    select(Consent).where(Consent.child_id == child_id).order_by(Consent.recorded_at.desc())
                )
            )
    finally:
        engine.dispose()
    viewer = Viewer(agency=Agency(member.agency), role=member.role, relationship=Relationship.ALLOCATED_TEAM)
    consent = consent_state(consents, [], at=datetime.now(UTC))
    facts = [
        ItemFacts(
            item_id=str(item.id),
            agency=item.agency,
            kind=item.kind,
            category=item.category,
            security_labels=frozenset(item.security_labels),
            police_handling_code=item.police_handling_code,
            status=item.status,
            detrimental=item.detrimental,
        )
        for item in items
    ]
    purpose = Purpose.CHILD_PROTECTION
    decisions = [decide(policy, viewer=viewer, purpose=purpose, item=f, consent=consent) for f in facts]
    started = time.perf_counter()
    for _ in range(runs):
        for item_facts in facts:
            decide(policy, viewer=viewer, purpose=purpose, item=item_facts, consent=consent)
    seconds = (time.perf_counter() - started) / runs
    return PolicyTiming(len(facts), sum(1 for d in decisions if d.shown), seconds)

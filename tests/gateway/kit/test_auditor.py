"""The Auditor: events land at commit, in the same transaction, carrying request and trace ids."""

from __future__ import annotations

import uuid

from opentelemetry import trace
from sqlalchemy import Connection, func, select
from sqlalchemy.event import listen
from sqlalchemy.orm import Session, sessionmaker

from audit import Actor, ActorType, AuditAction, AuditEvent, AuditPending, Outcome, ReviewReason, verify
from gateway.ig.checkpointer import integrate_pending
from gateway.kit.auditor import Auditor, commit_refusal
from gateway.kit.db import configure_sessionmaker
from gateway.models import ReviewEntry
from gateway.kit.errors import Forbidden

ACTOR = Actor(type=ActorType.CLIENT, id="test-client", agency="health")


def _count(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(AuditEvent)) or 0


def test_events_are_appended_when_the_transaction_commits(session: Session) -> None:
    before = _count(session)
    auditor = Auditor(session, ACTOR, request_id="req-1")

    auditor.record(AuditAction.CLIENT_TOKEN_ISSUED, Outcome.SUCCESS)
    session.flush()
    assert _count(session) == before  # kept, not yet written: the trail's lock is not taken yet

    session.commit()
    assert _count(session) == before + 1
    event = session.scalar(select(AuditEvent).order_by(AuditEvent.seq.desc()).limit(1))
    assert event is not None and event.request_id == "req-1" and event.actor_id == "test-client"
    assert verify(session).ok


def test_kept_events_are_appended_at_commit_in_one_batch_in_the_order_kept(session: Session) -> None:
    """A push touching twenty children keeps twenty events: one lock, one tail read, one INSERT."""
    before = _count(session)
    statements: list[str] = []
    listen(session.connection(), "before_cursor_execute", lambda *args: statements.append(args[2]))
    auditor = Auditor(session, ACTOR)

    for n in range(20):
        auditor.record(AuditAction.CLIENT_RECORDS_PUSHED, detail={"n": n})
    session.commit()
    trail = [s for s in statements if "audit_event" in s or "pg_advisory_xact_lock" in s]

    events = session.scalars(select(AuditEvent).where(AuditEvent.seq > before).order_by(AuditEvent.seq)).all()
    assert [e.detail["n"] for e in events] == list(range(20))
    assert len(trail) == (3 if session.get_bind().dialect.name == "postgresql" else 2)
    assert verify(session).ok


def test_an_event_carries_the_trace_id_of_the_span_it_was_recorded_in(session: Session) -> None:
    auditor = Auditor(session, ACTOR)

    with trace.get_tracer("test").start_as_current_span("work") as span:
        auditor.record(AuditAction.CLIENT_TOKEN_ISSUED)
        expected = format(span.get_span_context().trace_id, "032x")
    session.commit()

    event = session.scalar(select(AuditEvent).order_by(AuditEvent.seq.desc()).limit(1))
    assert event is not None and event.trace_id == expected and len(expected) == 32


def test_an_event_kept_in_a_rolled_back_savepoint_is_dropped_with_it(session: Session) -> None:
    before = _count(session)
    auditor = Auditor(session, ACTOR)

    auditor.record(AuditAction.CLIENT_RECORDS_PUSHED, detail={"kept": "outer"})
    savepoint = session.begin_nested()
    auditor.record(AuditAction.CLIENT_RECORDS_PUSHED, detail={"kept": "rolled back"})
    savepoint.rollback()
    with session.begin_nested():
        auditor.record(AuditAction.CLIENT_RECORDS_PUSHED, detail={"kept": "released"})
    session.commit()

    newer = select(AuditEvent).where(AuditEvent.seq > before).order_by(AuditEvent.seq)
    details = [e.detail["kept"] for e in session.scalars(newer)]
    assert details == ["outer", "released"]


def test_a_rollback_drops_kept_events(session: Session) -> None:
    before = _count(session)
    Auditor(session, ACTOR).record(AuditAction.CLIENT_TOKEN_ISSUED)

    session.rollback()
    session.commit()

    assert _count(session) == before


def test_a_refusal_commits_its_own_event_and_nothing_else(session: Session) -> None:
    before = _count(session)
    auditor = Auditor(session, ACTOR)
    auditor.record(AuditAction.CLIENT_RECORDS_PUSHED)  # work the refused request had done
    error = auditor.refuse(Forbidden("no"), AuditAction.STAFF_VIEW_REFUSED, detail={"reason": "test"})

    commit_refusal(session, error)

    events = list(session.scalars(select(AuditEvent).where(AuditEvent.seq > before)))
    assert [(e.action, e.outcome, e.detail) for e in events] == [
        (AuditAction.STAFF_VIEW_REFUSED.value, Outcome.DENIED.value, {"reason": "test"})
    ]


def test_an_event_needs_an_actor(session: Session) -> None:
    auditor = Auditor(session, None)

    try:
        auditor.record(AuditAction.CLIENT_TOKEN_ISSUED)
    except ValueError as error:
        assert "needs an actor" in str(error)
    else:
        raise AssertionError("an event without an actor was kept")
    auditor.record(AuditAction.CLIENT_TOKEN_ISSUED, actor=ACTOR)  # naming one per event is enough


def test_deferred_commits_stage_their_events_and_the_integrator_appends_and_queues_them(
    connection: Connection,
) -> None:
    """Deferred (PostgreSQL's way): a commit takes no lock; the integrator chains, queues and clears."""
    factory = configure_sessionmaker(
        sessionmaker(bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False),
        deferred_audit=True,
    )
    with factory() as session:
        before = _count(session)
        auditor = Auditor(session, Actor(type=ActorType.USER, id="someone@test.example", agency="police"))
        auditor.record(AuditAction.STAFF_VIEW_OPENED, child_id=uuid.uuid4(), review=[ReviewReason.BREAK_GLASS])
        auditor.record(AuditAction.STAFF_SEARCH_PERFORMED)
        session.commit()
        assert _count(session) == before
        assert session.scalar(select(func.count()).select_from(AuditPending)) == 2

        assert integrate_pending(factory, limit=1) == 2  # a batch at a time, until none are left

        assert _count(session) == before + 2
        assert session.scalar(select(func.count()).select_from(AuditPending)) == 0
        flagged = session.scalars(select(AuditEvent).order_by(AuditEvent.seq.desc()).limit(2)).all()[-1]
        entry = session.scalar(select(ReviewEntry).where(ReviewEntry.seq == flagged.seq))
        assert entry is not None and entry.reason == ReviewReason.BREAK_GLASS
        assert integrate_pending(factory) == 0
        assert verify(session).ok

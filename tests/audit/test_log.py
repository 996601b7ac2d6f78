"""record() appends a chained event in the caller's transaction; verify() names the first break."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest
from sqlalchemy import select, text, update

from audit import (
    Actor,
    ActorType,
    AppendOnlyViolation,
    AuditAction,
    AuditEvent,
    AuditRecord,
    ItemDecisionRef,
    Outcome,
    record,
    verify,
)
from audit.hashing import GENESIS_HASH, canonical_bytes, leaf_hash
from tests.tamper import disable_audit_triggers

ACTOR = Actor(ActorType.USER, "someone@test.example", "police", "police_officer")


def _entry(**overrides) -> AuditRecord:  # type: ignore[no-untyped-def]
    values = {"action": AuditAction.STAFF_VIEW_OPENED, "actor": ACTOR, "outcome": Outcome.SUCCESS}
    values.update(overrides)
    return AuditRecord(**values)


def _append(session, count: int) -> list[AuditEvent]:  # type: ignore[no-untyped-def]
    return [record(session, _entry(detail={"n": n})) for n in range(count)]


def test_first_event_starts_the_chain(session) -> None:  # type: ignore[no-untyped-def]
    first = record(session, _entry())

    assert first.seq == 1
    assert first.prev_hash == GENESIS_HASH


def test_each_event_holds_the_previous_hash_and_is_a_merkle_leaf(session) -> None:  # type: ignore[no-untyped-def]
    child = uuid.uuid4()
    item = uuid.uuid4()
    first, second = _append(session, 1)[0], record(
        session,
        _entry(child_id=child, purpose="child_protection", lawful_basis="public_task", policy_version="isa@1",
               items=[ItemDecisionRef(item, "disclose", "cp.health")], request_id="r1", trace_id="t1"),
    )

    assert second.seq == first.seq + 1
    assert second.prev_hash == first.hash
    assert second.hash == leaf_hash(canonical_bytes(second)).hex()
    stored = session.get(AuditEvent, second.seq)
    assert stored.items == [{"item": str(item), "decision": "disclose", "rule": "cp.health"}]
    assert stored.child_id == child


def test_clean_trail_verifies_with_its_root(session) -> None:  # type: ignore[no-untyped-def]
    events = _append(session, 7)
    session.expire_all()

    result = verify(session, batch_size=3)

    assert result.ok and result.problem is None and result.first_broken_seq is None
    assert result.events_checked == events[-1].seq
    assert result.root_hash is not None and len(result.root_hash) == 64


def test_empty_trail_verifies(session) -> None:  # type: ignore[no-untyped-def]
    result = verify(session)

    assert result.ok and result.events_checked == 0 and result.root_hash is None


def test_altered_row_is_named(session) -> None:  # type: ignore[no-untyped-def]
    events = _append(session, 5)
    target = events[2].seq
    disable_audit_triggers(session)
    session.execute(update(AuditEvent).where(AuditEvent.seq == target).values(actor_id="someone-else")
                    .execution_options(synchronize_session=False))
    session.expire_all()

    result = verify(session, batch_size=2)

    assert not result.ok
    assert result.first_broken_seq == target
    assert f"event {target}: content does not match its hash" in result.problem
    assert "someone-else" not in result.problem


def test_deleted_row_is_named(session) -> None:  # type: ignore[no-untyped-def]
    events = _append(session, 5)
    gone = events[2].seq
    disable_audit_triggers(session)
    session.execute(text("DELETE FROM audit_event WHERE seq = :seq"), {"seq": gone})
    session.expire_all()

    result = verify(session)

    assert result.first_broken_seq == gone
    assert f"event {gone} is missing" in result.problem


def test_rechained_row_is_named(session) -> None:  # type: ignore[no-untyped-def]
    events = _append(session, 3)
    target = events[1].seq
    disable_audit_triggers(session)
    session.execute(text("UPDATE audit_event SET prev_hash = :h WHERE seq = :seq"), {"h": "f" * 64, "seq": target})
    session.expire_all()

    result = verify(session)

    assert result.first_broken_seq == target
    assert "prev_hash does not match" in result.problem


def test_rewritten_genesis_is_named(session) -> None:  # type: ignore[no-untyped-def]
    if session.scalar(select(AuditEvent.seq).where(AuditEvent.seq == 1)) is None:
        record(session, _entry())
    disable_audit_triggers(session)
    session.execute(text("UPDATE audit_event SET prev_hash = :h WHERE seq = 1"), {"h": "e" * 64})
    session.expire_all()

    result = verify(session)

    assert result.first_broken_seq == 1
    assert "genesis" in result.problem


def test_orm_cannot_change_or_delete_an_event(session) -> None:  # type: ignore[no-untyped-def]
    event = record(session, _entry())
    event.outcome = Outcome.DENIED.value
    with pytest.raises(AppendOnlyViolation, match="may not be changed"):
        session.flush()
    session.rollback()

    event = record(session, _entry())
    session.delete(event)
    with pytest.raises(AppendOnlyViolation, match="may not be deleted"):
        session.flush()


def test_unchanged_loaded_event_flushes_fine(session) -> None:  # type: ignore[no-untyped-def]
    event = record(session, _entry())
    event.outcome = event.outcome  # touched but not modified

    session.flush()

    assert session.get(AuditEvent, event.seq).outcome == "success"


def test_record_never_commits(session) -> None:  # type: ignore[no-untyped-def]
    savepoint = session.begin_nested()
    event = record(session, _entry(), now=datetime(2026, 1, 1, tzinfo=UTC))
    seq = event.seq
    savepoint.rollback()

    assert session.scalar(select(AuditEvent).where(AuditEvent.seq == seq)) is None


def test_postgresql_appenders_take_the_advisory_lock_first() -> None:
    """Checked without a server too, so the lock is proven on every run, not only on PostgreSQL."""
    statements: list[str] = []

    class _Result:
        def first(self) -> None:
            return None

    class _FakeSession:
        def get_bind(self):  # type: ignore[no-untyped-def]
            return SimpleNamespace(dialect=SimpleNamespace(name="postgresql"))

        def execute(self, statement, params=None):  # type: ignore[no-untyped-def]
            statements.append(str(statement))
            return _Result()

        def add(self, _obj) -> None:  # type: ignore[no-untyped-def]
            statements.append("add")

        def flush(self) -> None:
            statements.append("flush")

    record(_FakeSession(), _entry())  # type: ignore[arg-type]

    assert "pg_advisory_xact_lock" in statements[0]
    assert statements[-2:] == ["add", "flush"]


def test_concurrent_fork_is_impossible(session) -> None:  # type: ignore[no-untyped-def]
    from sqlalchemy.exc import IntegrityError

    event = record(session, _entry())
    twin = AuditEvent(**{c.key: getattr(event, c.key) for c in AuditEvent.__table__.columns})
    twin.hash = "a" * 64
    session.expunge(event)
    nested = session.begin_nested()
    session.add(twin)
    with pytest.raises(IntegrityError):
        session.flush()
    nested.rollback()


def test_guard_lets_other_rows_change_and_go(session) -> None:  # type: ignore[no-untyped-def]
    from gateway.models import Team

    team = Team(name="Temporary", local_authority="Testshire")
    session.add(team)
    session.flush()
    team.name = "Renamed"
    session.flush()
    session.delete(team)

    session.flush()

    assert session.get(Team, team.id) is None


@pytest.mark.parametrize("statement", ["UPDATE audit_event SET actor_id = 'x' WHERE seq = :seq",
                                       "DELETE FROM audit_event WHERE seq = :seq"])
def test_the_database_itself_refuses_changes(session, statement: str) -> None:  # type: ignore[no-untyped-def]
    from sqlalchemy.exc import DBAPIError

    seq = record(session, _entry()).seq
    savepoint = session.begin_nested()
    with pytest.raises(DBAPIError, match="append-only"):
        session.execute(text(statement), {"seq": seq})
    savepoint.rollback()

    assert session.scalar(select(AuditEvent.actor_id).where(AuditEvent.seq == seq)) == ACTOR.id

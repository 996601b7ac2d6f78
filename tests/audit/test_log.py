"""record() appends chained events in the caller's transaction; verify() names the first break."""

from __future__ import annotations

import base64
import dataclasses
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import create_engine, func, select, text, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.event import listen
from sqlalchemy.orm import Session

from audit import (
    Actor,
    ActorType,
    AppendOnlyViolation,
    AuditAction,
    AuditEvent,
    AuditNode,
    AuditPending,
    AuditRecord,
    ItemDecisionRef,
    Outcome,
    ReviewReason,
    decode_items,
    integrate,
    record,
    stage,
    verify,
)
from audit.log import _lock, _pending_with_ids
from audit.models import UTCDateTime
from audit.store import compact_range
from audit.hashing import GENESIS_HASH, canonical_bytes, event_hash, leaf_hash
from tests.tamper import disable_audit_triggers

ACTOR = Actor(ActorType.USER, "someone@test.example", "police", "police_officer")


def _entry(**overrides: Any) -> AuditRecord:
    return dataclasses.replace(
        AuditRecord(action=AuditAction.STAFF_VIEW_OPENED, actor=ACTOR, outcome=Outcome.SUCCESS), **overrides
    )


def _record_one(session: Session, entry: AuditRecord, *, now: datetime | None = None) -> AuditEvent:
    [event] = record(session, [entry], now=now)
    return event


def _append(session: Session, count: int) -> list[AuditEvent]:
    return [_record_one(session, _entry(detail={"n": n})) for n in range(count)]


def _problem(session: Session, *, batch_size: int = 1000) -> tuple[int | None, str]:
    """Verify the trail, which must be broken; return the first broken seq and the problem."""
    result = verify(session, batch_size=batch_size)
    assert not result.ok and result.problem is not None, result
    return result.first_broken_seq, result.problem


def test_first_event_starts_the_chain(session: Session) -> None:
    first = _record_one(session, _entry())

    assert first.seq == 1
    assert first.prev_hash == GENESIS_HASH


def test_each_event_holds_the_previous_hash_and_is_a_merkle_leaf(session: Session) -> None:
    child = uuid.uuid4()
    item = uuid.uuid4()
    first, second = _append(session, 1)[0], _record_one(
        session,
        _entry(child_id=child, purpose="child_protection", lawful_basis="public_task", policy_version="isa@1",
               items=[ItemDecisionRef(item, "disclose", "cp.health")], request_id="r1", trace_id="t1"),
    )

    assert second.seq == first.seq + 1
    assert second.prev_hash == first.hash
    assert second.hash == leaf_hash(canonical_bytes(second)).hex()
    stored = session.get(AuditEvent, second.seq)
    assert stored is not None
    assert decode_items(stored.items) == [ItemDecisionRef(item, "disclose", "cp.health")]
    assert stored.child_id == child


def test_clean_trail_verifies_with_its_root(session: Session) -> None:
    events = _append(session, 7)
    session.expire_all()

    result = verify(session, batch_size=3)

    assert result.ok and result.problem is None and result.first_broken_seq is None
    assert result.events_checked == events[-1].seq
    assert result.root_hash is not None and len(result.root_hash) == 64


def test_empty_trail_verifies(session: Session) -> None:
    result = verify(session)

    assert result.ok and result.events_checked == 0 and result.root_hash is None


def test_altered_row_is_named(session: Session) -> None:
    events = _append(session, 5)
    target = events[2].seq
    disable_audit_triggers(session)
    session.execute(update(AuditEvent).where(AuditEvent.seq == target).values(actor_id="someone-else")
                    .execution_options(synchronize_session=False))
    session.expire_all()

    first_broken_seq, problem = _problem(session, batch_size=2)

    assert first_broken_seq == target
    assert f"event {target}: content does not match its hash" in problem
    assert "someone-else" not in problem


def test_deleted_row_is_named(session: Session) -> None:
    events = _append(session, 5)
    gone = events[2].seq
    disable_audit_triggers(session)
    session.execute(text("DELETE FROM audit_event WHERE seq = :seq"), {"seq": gone})
    session.expire_all()

    first_broken_seq, problem = _problem(session)

    assert first_broken_seq == gone
    assert f"event {gone} is missing" in problem


def test_rechained_row_is_named(session: Session) -> None:
    events = _append(session, 3)
    target = events[1].seq
    disable_audit_triggers(session)
    session.execute(text("UPDATE audit_event SET prev_hash = :h WHERE seq = :seq"), {"h": "f" * 64, "seq": target})
    session.expire_all()

    first_broken_seq, problem = _problem(session)

    assert first_broken_seq == target
    assert "prev_hash does not match" in problem


def test_rewritten_genesis_is_named(session: Session) -> None:
    if session.scalar(select(AuditEvent.seq).where(AuditEvent.seq == 1)) is None:
        _record_one(session, _entry())
    disable_audit_triggers(session)
    session.execute(text("UPDATE audit_event SET prev_hash = :h WHERE seq = 1"), {"h": "e" * 64})
    session.expire_all()

    first_broken_seq, problem = _problem(session)

    assert first_broken_seq == 1
    assert "genesis" in problem


def test_orm_cannot_change_or_delete_an_event(session: Session) -> None:
    event = _record_one(session, _entry())
    event.outcome = Outcome.DENIED.value
    with pytest.raises(AppendOnlyViolation, match="may not be changed"):
        session.flush()
    session.rollback()

    event = _record_one(session, _entry())
    session.delete(event)
    with pytest.raises(AppendOnlyViolation, match="may not be deleted"):
        session.flush()


def test_unchanged_loaded_event_flushes_fine(session: Session) -> None:
    event = _record_one(session, _entry())
    event.outcome = event.outcome  # touched but not modified

    session.flush()

    loaded = session.get(AuditEvent, event.seq)
    assert loaded is not None and loaded.outcome == "success"


def test_record_never_commits(session: Session) -> None:
    savepoint = session.begin_nested()
    event = _record_one(session, _entry(), now=datetime(2026, 1, 1, tzinfo=UTC))
    seq = event.seq
    savepoint.rollback()

    assert session.scalar(select(AuditEvent).where(AuditEvent.seq == seq)) is None


def test_postgresql_appenders_take_the_advisory_lock_first(monkeypatch: pytest.MonkeyPatch) -> None:
    """Checked without a server too, so the lock is proven on every run, not only on PostgreSQL."""
    statements: list[str] = []

    class _Result:
        def first(self) -> None:
            return None

    def execute(statement: object, params: object = None) -> _Result:
        statements.append(str(statement))
        return _Result()

    def scalars(statement: object, params: list[dict[str, Any]]) -> list[AuditEvent]:
        statements.append(str(statement).split("(", 1)[0].strip())
        return []

    # A real session on a PostgreSQL engine that never connects: what it would send is recorded instead.
    engine = create_engine("postgresql+psycopg://nobody@127.0.0.1:1/none")
    with Session(engine) as session:
        monkeypatch.setattr(session, "execute", execute)
        monkeypatch.setattr(session, "scalars", scalars)

        record(session, [_entry(), _entry()])
    engine.dispose()

    # The empty trail has no right edge to read; the second event completes node 1/0.
    assert len(statements) == 4
    assert "pg_advisory_xact_lock" in statements[0]
    assert "FROM audit_event" in statements[1]
    assert statements[2] == "INSERT INTO audit_event"
    assert statements[3].startswith("INSERT INTO audit_node")


def test_concurrent_fork_is_impossible(session: Session) -> None:
    from sqlalchemy.exc import IntegrityError

    event = _record_one(session, _entry())
    twin = AuditEvent(**{c.key: getattr(event, c.key) for c in AuditEvent.__table__.columns})
    twin.hash = "a" * 64
    session.expunge(event)
    nested = session.begin_nested()
    session.add(twin)
    with pytest.raises(IntegrityError):
        session.flush()
    nested.rollback()


def test_guard_lets_other_rows_change_and_go(session: Session) -> None:
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
def test_the_database_itself_refuses_changes(session: Session, statement: str) -> None:
    from sqlalchemy.exc import DBAPIError

    seq = _record_one(session, _entry()).seq
    savepoint = session.begin_nested()
    with pytest.raises(DBAPIError, match="append-only"):
        session.execute(text(statement), {"seq": seq})
    savepoint.rollback()

    assert session.scalar(select(AuditEvent.actor_id).where(AuditEvent.seq == seq)) == ACTOR.id


def _counting_statements(session: Session) -> list[str]:
    """Return a list that collects every statement the session's connection sends from now on."""
    statements: list[str] = []

    def _count(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        statements.append(statement)

    connection = session.connection()
    listen(connection, "before_cursor_execute", _count)
    return statements


@pytest.mark.parametrize("count", [1, 2, 25])
def test_a_batch_costs_the_same_statements_however_many_events(session: Session, count: int) -> None:
    statements = _counting_statements(session)

    events = record(session, [_entry(detail={"n": n}) for n in range(count)])

    assert len(events) == count
    # lock (PostgreSQL), tail, at most one read of the tree's right edge beyond the last leaf,
    # one INSERT of the events and at most one of the nodes they complete.
    lock = 1 if session.get_bind().dialect.name == "postgresql" else 0
    assert lock + 2 <= len(statements) <= lock + 4
    [insert_statement] = [s for s in statements if s.startswith("INSERT INTO audit_event")]
    assert insert_statement.count("VALUES") == 1 and insert_statement.count("), (") == count - 1  # one row each
    assert len([s for s in statements if s.startswith("INSERT INTO audit_node")]) <= 1


def test_a_batch_is_appended_in_order_and_chained(session: Session) -> None:
    before = _append(session, 1)[0]

    events = record(session, [_entry(detail={"n": n}) for n in range(5)])

    assert [e.detail["n"] for e in events] == [0, 1, 2, 3, 4]
    assert [e.seq for e in events] == list(range(before.seq + 1, before.seq + 6))
    assert [e.prev_hash for e in events] == [before.hash, *(e.hash for e in events[:-1])]
    session.expire_all()
    stored = session.scalars(select(AuditEvent).where(AuditEvent.seq > before.seq).order_by(AuditEvent.seq)).all()
    assert [e.detail["n"] for e in stored] == [0, 1, 2, 3, 4]
    assert all(e.hash == event_hash(e) for e in stored)
    assert verify(session).ok


def test_an_empty_batch_sends_nothing(session: Session) -> None:
    statements = _counting_statements(session)

    assert record(session, []) == []
    assert statements == []


def test_items_are_stored_grouped_by_decision_and_rule_and_decode_back(session: Session) -> None:
    refs = [
        ItemDecisionRef(uuid.uuid4(), decision, rule)
        for decision, rule in [("disclose", "cp.health")] * 3 + [("indicate", "builtin.special-category")] * 2
    ]

    event = _record_one(session, _entry(items=refs))
    session.expire_all()
    stored = session.get(AuditEvent, event.seq)

    assert stored is not None
    assert [(g["decision"], g["rule"]) for g in stored.items] == [
        ("disclose", "cp.health"),
        ("indicate", "builtin.special-category"),
    ]
    assert [len(base64.urlsafe_b64decode(g["ids"])) for g in stored.items] == [48, 32]
    assert sorted(decode_items(stored.items), key=str) == sorted(refs, key=str)
    assert verify(session).ok


def test_no_items_decode_to_no_decisions() -> None:
    assert decode_items([]) == []


def test_events_written_one_entry_per_item_still_verify_and_decode(session: Session) -> None:
    """Events already stored keep the form they were written in: their hashes cover it."""
    tail = _append(session, 1)[0]
    item = uuid.uuid4()
    old_form = [{"item": str(item), "decision": "disclose", "rule": "cp.health"}]
    # As the previous version of record() wrote it.
    old = AuditEvent(
        seq=tail.seq + 1,
        occurred_at=datetime(2026, 1, 1, tzinfo=UTC),
        actor_type=ACTOR.type.value,
        actor_id=ACTOR.id,
        actor_agency=ACTOR.agency,
        actor_role=ACTOR.role,
        action=AuditAction.STAFF_VIEW_OPENED.value,
        outcome=Outcome.SUCCESS.value,
        child_id=uuid.uuid4(),
        purpose="child_protection",
        lawful_basis=None,
        policy_version=None,
        items=old_form,
        detail={},
        request_id=None,
        trace_id=None,
        prev_hash=tail.hash,
    )
    old.hash = event_hash(old)
    session.add(old)
    session.flush()
    # The tree's nodes over it, as migration 0004 stored them for the events before it.
    completed = compact_range(session, tail.seq).append(bytes.fromhex(old.hash))
    session.add_all(AuditNode(level=level, position=position, hash=node) for (level, position), node in completed)
    session.flush()
    newer = _record_one(session, _entry(items=[ItemDecisionRef(item, "indicate", "builtin.detrimental")]))
    session.expire_all()

    assert verify(session).ok
    stored_old = session.get(AuditEvent, old.seq)
    assert stored_old is not None and stored_old.items == old_form
    assert decode_items(stored_old.items) == [ItemDecisionRef(item, "disclose", "cp.health")]
    assert newer.prev_hash == old.hash


def test_a_group_of_ids_of_the_wrong_length_is_refused() -> None:
    broken = [{"decision": "disclose", "rule": "cp.health", "ids": base64.urlsafe_b64encode(b"x" * 17).decode()}]

    with pytest.raises(ValueError, match="not a multiple of 16"):
        decode_items(broken)


def test_events_with_different_empty_columns_still_go_in_one_insert(session: Session) -> None:
    """A view's event (child, purpose) beside a push's (neither): one INSERT, not one per change of shape."""
    statements = _counting_statements(session)
    child = uuid.uuid4()
    mixed = [
        _entry(child_id=child, purpose="child_protection") if n % 2 else _entry(detail={"n": n}) for n in range(40)
    ]

    events = record(session, mixed)

    assert [e.child_id for e in events] == [child if n % 2 else None for n in range(40)]
    assert len([s for s in statements if s.startswith("INSERT INTO audit_event")]) == 1


def test_staged_events_wait_in_pending_and_integrate_into_the_chain_in_order(session: Session) -> None:
    tail = _append(session, 1)[0]
    child = uuid.uuid4()

    staged = stage(session, [_entry(detail={"n": n}, child_id=child if n else None) for n in range(3)])
    staged += stage(session, [_entry(detail={"n": 3}, review=[ReviewReason.VOLUME])])
    assert staged == 4 and stage(session, []) == 0
    assert session.scalar(select(func.count()).select_from(AuditEvent).where(AuditEvent.seq > tail.seq)) == 0

    first = integrate(session, limit=3)
    rest = integrate(session)

    assert [e.seq for e in first + rest] == list(range(tail.seq + 1, tail.seq + 5))
    assert [e.detail["n"] for e in first + rest] == [0, 1, 2, 3]
    assert [e.child_id for e in first] == [None, child, child]
    assert rest[0].detail["review"] == ["volume"]
    assert first[0].prev_hash == tail.hash and rest[0].prev_hash == first[-1].hash
    assert session.scalar(select(func.count()).select_from(AuditPending)) == 0
    assert integrate(session) == []
    assert verify(session).ok


def test_staging_keeps_the_time_it_was_staged_at(session: Session) -> None:
    at = datetime(2030, 5, 6, 7, 8, 9, tzinfo=UTC)
    stage(session, [_entry()], now=at)

    [event] = integrate(session)

    assert event.occurred_at.replace(tzinfo=event.occurred_at.tzinfo or UTC) == at


def test_the_database_refuses_to_change_a_staged_event(session: Session) -> None:
    stage(session, [_entry()])

    with pytest.raises(DBAPIError), session.begin_nested():
        session.execute(text("UPDATE audit_pending SET actor_id = 'mallory'"))


def test_an_integrator_that_may_not_wait_gives_way_on_postgresql(monkeypatch: pytest.MonkeyPatch) -> None:
    """Checked without a server: a second integrator asks once for the lock and returns if it is taken."""
    statements: list[str] = []

    def scalar(statement: object, params: object = None) -> bool:
        statements.append(str(statement))
        return False

    engine = create_engine("postgresql+psycopg://nobody@127.0.0.1:1/none")
    with Session(engine) as pg_session:
        monkeypatch.setattr(pg_session, "scalar", scalar)

        assert integrate(pg_session, wait=False) == []
    engine.dispose()

    assert statements == ["SELECT pg_try_advisory_xact_lock(:key)"]


def test_sqlite_needs_no_append_lock_of_its_own() -> None:
    """BEGIN IMMEDIATE already makes a SQLite writer the only one (checked on PostgreSQL runs too)."""
    engine = create_engine("sqlite://")
    with Session(engine) as sqlite_session:
        assert _lock(sqlite_session, wait=False) is True
        assert sqlite_session.get_transaction() is None  # nothing was sent
    engine.dispose()


@pytest.mark.parametrize(
    ("dialect", "rendered"),
    [("postgresql", "audit_pending.id = ANY (%(ids)s::BIGINT[])"), ("sqlite", "audit_pending.id IN (__[POSTCOMPILE_id_1])")],
)
def test_integrated_rows_are_deleted_by_their_ids_never_by_a_range(dialect: str, rendered: str) -> None:
    """Each run of the suite deletes on one database; both conditions are checked on every run."""
    condition = _pending_with_ids(dialect, [3, 5, 8])
    engine = create_engine("postgresql+psycopg://nobody@127.0.0.1:1/none" if dialect == "postgresql" else "sqlite://")

    assert str(condition.compile(engine)) == rendered
    engine.dispose()


def test_the_trail_refuses_a_time_without_a_zone_and_reads_sqlites_back_in_utc() -> None:
    """UTCDateTime, the type of every time column: SQLite stores times without their zone."""
    column = UTCDateTime()
    dialect = create_engine("sqlite://").dialect

    with pytest.raises(ValueError, match="naive datetimes are refused"):
        column.process_bind_param(datetime(2026, 1, 1, 9, 0), dialect)
    assert column.process_bind_param(None, dialect) is None
    assert column.process_result_value(datetime(2026, 1, 1, 9, 0), dialect) == datetime(2026, 1, 1, 9, 0, tzinfo=UTC)
    assert column.process_result_value(None, dialect) is None

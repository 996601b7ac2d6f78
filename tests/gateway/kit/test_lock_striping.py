"""Advisory locks of a push are striped: bounded in number whatever its size, and still exclusive where they must be."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from gateway.kit.db import EXACT_NAMES, STRIPES, lock_all_for_transaction

HELD = text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND granted")


@pytest.fixture
def sessions(engine: Engine) -> Iterator[tuple[Session, Session]]:
    """Yield two sessions on connections of their own (two transactions), rolled back afterwards."""
    if engine.dialect.name != "postgresql":
        pytest.skip("advisory locks are PostgreSQL's; SQLite serialises writers")
    first, second = Session(engine), Session(engine)
    try:
        yield first, second
    finally:
        first.rollback()
        second.rollback()
        first.close()
        second.close()


def _items(client: str, count: int, *, start: int = 0) -> list[tuple[str, ...]]:
    return [("item", client, f"Encounter/{n}") for n in range(start, start + count)]


def _refused(session: Session, names: Sequence[tuple[str, ...]], **stages: Sequence[tuple[str, ...]]) -> bool:
    """Say whether the session could not take the locks within 200 ms (its transaction then rolled back)."""
    session.execute(text("SET LOCAL lock_timeout = '200ms'"))
    try:
        lock_all_for_transaction(session, names, **stages)
    except OperationalError:
        session.rollback()
        return True
    return False


def test_a_push_of_any_size_takes_a_bounded_number_of_locks(sessions: tuple[Session, Session]) -> None:
    session, _ = sessions
    identities = [("identity", "client-a", f"Patient/{n}") for n in range(2500)]
    blocks = [("block", f"key-{n}") for n in range(20_000)]

    lock_all_for_transaction(session, identities, then=blocks)
    lock_all_for_transaction(session, _items("client-a", 2500))

    assert session.scalar(HELD) <= 3 * STRIPES


def test_a_small_family_takes_each_name_and_its_stripe(sessions: tuple[Session, Session]) -> None:
    session, _ = sessions
    names = _items("client-a", EXACT_NAMES)

    lock_all_for_transaction(session, names, shared=[("team", "t1")])

    held = session.scalar(HELD)
    assert EXACT_NAMES + 1 < held <= 2 * EXACT_NAMES + 1  # every name, its stripes (some shared), the team


def test_a_large_push_excludes_a_small_one_naming_one_of_its_records(sessions: tuple[Session, Session]) -> None:
    large, small = sessions
    lock_all_for_transaction(large, _items("client-a", 1000))

    assert _refused(small, _items("client-a", 1, start=999))


def test_a_small_push_excludes_a_large_one_naming_its_record(sessions: tuple[Session, Session]) -> None:
    small, large = sessions
    lock_all_for_transaction(small, _items("client-a", 1, start=500))

    assert _refused(large, _items("client-a", 1000))


def test_small_pushes_meet_only_on_a_shared_name(sessions: tuple[Session, Session]) -> None:
    first, second = sessions
    lock_all_for_transaction(first, _items("client-a", EXACT_NAMES))

    assert not _refused(second, _items("client-a", EXACT_NAMES, start=EXACT_NAMES))
    assert _refused(second, _items("client-a", 1, start=EXACT_NAMES - 1))


def test_large_pushes_of_different_clients_do_not_meet_on_their_items(sessions: tuple[Session, Session]) -> None:
    first, second = sessions
    lock_all_for_transaction(first, _items("client-a", 2500))

    assert not _refused(second, _items("client-b", 2500))


def test_shared_names_pass_each_other_but_not_an_exclusive_one(sessions: tuple[Session, Session]) -> None:
    first, second = sessions
    keys = [("block", f"key-{n}") for n in range(8)]
    lock_all_for_transaction(first, [], shared=keys)

    assert not _refused(second, [], shared=keys)
    second.rollback()
    assert _refused(second, keys[:1])


def test_a_later_stage_is_locked_with_the_first(sessions: tuple[Session, Session]) -> None:
    first, second = sessions
    lock_all_for_transaction(first, [("identity", "client-a", "Patient/1")], then=[("block", "key-0")])

    assert _refused(second, [("block", "key-0")])
    assert _refused(second, [("identity", "client-a", "Patient/1")])

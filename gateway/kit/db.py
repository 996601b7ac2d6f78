"""Engine and session plumbing; the session dependency owns the request's transaction.

Nothing waits forever: PostgreSQL sessions carry a lock timeout, a statement timeout and an
idle-in-transaction timeout; SQLite writers queue on a busy timeout; the pool has a checkout
timeout. A timeout or a busy database answers 503 with Retry-After, never a hang.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy import Engine, create_engine, event, insert, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session, sessionmaker

from audit import install_append_only_guard

from .auditor import commit_refusal, install_auditor_hooks
from .errors import GatewayError, ServiceUnavailable


@dataclass(frozen=True)
class DatabaseLimits:
    """How long the gateway waits on the database before it gives up (milliseconds)."""

    lock_timeout_ms: int = 5_000
    statement_timeout_ms: int = 30_000
    idle_in_transaction_timeout_ms: int = 60_000
    sqlite_busy_timeout_ms: int = 30_000
    pool_size: int = 10
    pool_timeout_s: int = 10


def build_engine(url: str, limits: DatabaseLimits | None = None) -> Engine:
    """Create the engine for a URL, with the per-dialect settings the gateway relies on."""
    limits = limits or DatabaseLimits()
    if url.startswith("sqlite"):
        database = url.split("///", 1)[-1]
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas(limits.sqlite_busy_timeout_ms))
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    # plan_cache_mode: psycopg prepares a statement run five times, and PostgreSQL then plans it
    # once for any parameters. Ours pass arrays of one to thousands of ids (kit/sql.one_of), for
    # which that generic plan scans a client's every row; a custom plan per execution costs a
    # fraction of a millisecond and uses the unique index (measured: 0.86 s of a 5,000-row import).
    options = (
        f"-c lock_timeout={limits.lock_timeout_ms} -c statement_timeout={limits.statement_timeout_ms} "
        f"-c idle_in_transaction_session_timeout={limits.idle_in_transaction_timeout_ms} "
        "-c plan_cache_mode=force_custom_plan"
    )
    return create_engine(
        url,
        pool_pre_ping=True,
        pool_size=limits.pool_size,
        max_overflow=limits.pool_size,
        pool_timeout=limits.pool_timeout_s,
        connect_args={"options": options},
    )


def _sqlite_pragmas(busy_timeout_ms: int) -> Any:
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # SQLite ignores foreign keys unless asked; WAL lets readers work beside the one writer.
        # pysqlite's own transaction handling breaks SAVEPOINT (SQLAlchemy's documented recipe):
        # let SQLAlchemy emit BEGIN itself.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.close()

    return _on_connect


SQLITE_BEGIN = "sqlite_begin"


def _sqlite_begin(connection: Any) -> None:
    # Sessions that write ask for IMMEDIATE (build_sessionmaker): it takes the write lock when
    # the transaction starts, so writers queue on the busy timeout. A deferred BEGIN that later
    # writes fails at once with "database is locked" when another writer committed in between,
    # which no busy timeout can help. Read-only work (readiness, verification) stays deferred
    # and, under WAL, never waits for a writer.
    mode = connection.get_execution_options().get(SQLITE_BEGIN, "DEFERRED")
    connection.exec_driver_sql(f"BEGIN {mode}")


def configure_sessionmaker(factory: sessionmaker[Session], *, deferred_audit: bool = False) -> sessionmaker[Session]:
    """Install the audit trail's guard and the auditor's commit hooks on a session factory."""
    install_append_only_guard(factory)
    install_auditor_hooks(factory, deferred=deferred_audit)
    return factory


def build_sessionmaker(engine: Engine, *, deferred_audit: bool = False) -> sessionmaker[Session]:
    """Create the session factory the app and the commands use (its sessions may write).

    `deferred_audit`: commits stage their audit events for the integrator instead of appending
    them (gateway/kit/auditor.py).
    """
    bind = engine.execution_options(**{SQLITE_BEGIN: "IMMEDIATE"}) if engine.dialect.name == "sqlite" else engine
    factory = sessionmaker(bind=bind, expire_on_commit=False, autoflush=False)
    return configure_sessionmaker(factory, deferred_audit=deferred_audit)


def insert_if_absent(session: Session, model: type[Any], values: dict[str, Any], *, unique: list[str]) -> bool:
    """Insert a row unless one with the same unique key exists; say whether it was inserted.

    Two requests that store the same thing at once (the same NHS number first seen by two
    sources, a retried push) then meet at the unique index: the second waits for the first
    and does nothing, instead of failing with an integrity error.
    """
    # RETURNING, not rowcount: PostgreSQL's driver reports rowcount -1 for this statement.
    table = model.__table__
    statement = _insert_or_skip(session, table, unique).values(**values).returning(*table.primary_key.columns)
    return session.execute(statement).first() is not None


def insert_missing(
    session: Session, model: type[Any], rows: Sequence[dict[str, Any]], *, unique: list[str], returning: str
) -> set[Any]:
    """Insert the rows whose unique key is not taken yet, in as few statements as the driver allows.

    Returns the values of column `returning` of the rows inserted. SQLAlchemy's
    "insertmanyvalues" sends the rows as multi-row INSERTs, a thousand or so at a time, in the
    order given: callers that may race on a unique key pass their rows sorted by it, so that
    two transactions inserting overlapping keys meet in the same order and cannot deadlock.
    """
    if not rows:
        return set()
    table = model.__table__
    statement = _insert_or_skip(session, table, unique).returning(table.c[returning])
    return set(session.scalars(statement, list(rows)))


def insert_all(session: Session, model: type[Any], rows: Sequence[dict[str, Any]]) -> None:
    """Insert rows that the caller has made sure are new, with the driver's executemany.

    For rows whose unique keys the caller holds locks on and has just checked: a plain INSERT
    costs a third of the client CPU of a multi-row INSERT … ON CONFLICT … RETURNING, whose long
    text the driver must parse afresh each time. The unique constraint stays the backstop: were
    the check ever wrong, the INSERT fails and the whole transaction with it, so nothing is
    stored twice and nothing half-stored.
    """
    if rows:
        session.execute(insert(model.__table__), list(rows))


def _insert_or_skip(session: Session, table: Any, unique: list[str]) -> Any:
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing(index_elements=unique)
    return sqlite.insert(table).on_conflict_do_nothing(index_elements=unique)


def lock_all_for_transaction(
    session: Session,
    names: Iterable[Sequence[str]],
    *,
    then: Iterable[Sequence[str]] = (),
    shared: Iterable[Sequence[str]] = (),
) -> None:
    """Take, in one statement, a lock on each thing named (each name a sequence of parts).

    PostgreSQL: transaction-scoped advisory locks on 64-bit hashes of the names, released at
    commit or rollback and bounded by lock_timeout. They are taken in ascending key order, so
    that two transactions wanting overlapping sets queue instead of deadlocking. SQLite needs
    none: its writers already run one at a time (BEGIN IMMEDIATE).

    `then` names a later stage's locks, taken after all of `names` in the same statement: the
    order is the same as a transaction that takes the two stages in two statements, so that
    the two kinds of transaction cannot deadlock either. `shared` names locks of the same
    stage as `names` taken in shared mode: held by many transactions at once, they exclude
    only those that take the same name exclusively (a name in both is taken exclusively).
    Every mode goes in the one key order, so the mix cannot deadlock.

    Names of the kinds in STRIPED_KINDS (one per entry of a push) are striped, so that a push
    of any size takes a bounded number of locks (see STRIPES). A transaction should lock each
    family of those kinds in one call: a later call that turned a family's stripes from shared
    to exclusive would upgrade a lock it holds, which can deadlock.
    """
    if session.get_bind().dialect.name != "postgresql":
        return
    first = _stage_keys(names, shared)
    later = _stage_keys(then, ())
    for key in first.keys() & later.keys():
        first[key] = later.pop(key) or first[key]
    stages = sorted(first.items()) + sorted(later.items())
    if stages:
        keys, modes = [key for key, _ in stages], [mode for _, mode in stages]
        # unnest yields the arrays' elements in order, and the aggregate takes them as they come.
        session.execute(
            text(
                "SELECT count(CASE WHEN exclusive THEN pg_advisory_xact_lock(key) "
                "ELSE pg_advisory_xact_lock_shared(key) END) "
                "FROM unnest(CAST(:keys AS bigint[]), CAST(:modes AS boolean[])) AS lock(key, exclusive)"
            ),
            {"keys": keys, "modes": modes},
        )


# Lock striping. Each advisory lock a transaction holds takes a slot of PostgreSQL's shared lock
# table, max_locks_per_transaction × max_connections slots for the whole server (64 × 100 on the
# development server: PostgreSQL's defaults); running out fails the transaction with "out of
# shared memory". A push took one lock per entry and, for a Patient without an NHS number, about
# eight more (its blocking keys): a few thousand entries filled the table. Names of these kinds
# are grouped in families (the name without its last part: ("item", client) for ("item", client,
# record id)); each family has STRIPES stripes, a name's stripe a hash of it. In one call:
#
# - a family of at most EXACT_NAMES names takes each name's own lock (in its mode) and each of
#   their stripes in shared mode: at most 2 × EXACT_NAMES locks. Such calls wait for one another
#   only on a name they share, as before striping;
# - a family of more names takes only their stripes, exclusively: at most STRIPES locks however
#   many names. It excludes every transaction naming anything in those stripes, even where both
#   wanted a name in shared mode: advisory locks have two modes, too few for a striped shared
#   lock that lets shared takers pass and still stops an exclusive taker of one name (only the
#   blocking keys of a large push of Patients with NHS numbers are such a case).
#
# So a call takes at most STRIPES (128) locks per family, and a push, which names at most six
# families (its client's identities, items and consents, NHS numbers, UPNs, blocking keys), at
# most 768 whatever its size; a 5,000-entry push of Patients without NHS numbers takes 3 × 128.
# The price is false sharing: a large push holds about every stripe of its families until it
# commits, so another push of the same client, or any push whose Patients are scored (blocking
# keys are everyone's), waits for it (up to lock_timeout, then 503 with Retry-After) even when
# the two share no record. Pushes of different clients meet only on identifiers and blocking
# keys, so a 100-entry Bundle of a few Patients (95 items: striped, but its client's own) waits
# no more than before. Stripes and names are keys in the one ascending order of their stage,
# so the deadlock-freedom argument above is unchanged. Every process must stripe alike: a
# transaction locking a name exactly does not meet one that locks only its stripe.
STRIPED_KINDS = frozenset({"identity", "identifier", "block", "item", "consent"})
STRIPES = 128
EXACT_NAMES = STRIPES // 2


def _stage_keys(exclusive: Iterable[Sequence[str]], shared: Iterable[Sequence[str]]) -> dict[int, bool]:
    """Return the keys a stage locks, each with whether it is taken exclusively."""
    wanted = dict.fromkeys((tuple(parts) for parts in shared), False)
    wanted.update(dict.fromkeys((tuple(parts) for parts in exclusive), True))
    keys: dict[int, bool] = {}
    families: dict[tuple[str, ...], list[tuple[tuple[str, ...], bool]]] = defaultdict(list)
    for name, mode in wanted.items():
        if name and name[0] in STRIPED_KINDS:
            families[name[: max(1, len(name) - 1)]].append((name, mode))
        else:
            keys[_lock_key(name)] = mode
    for family, members in families.items():
        striped = len(members) > EXACT_NAMES
        for name, mode in members:
            key = _lock_key(name)
            stripe = _lock_key(("\x1estripe", *family, str(key % STRIPES)))
            keys[stripe] = keys.get(stripe, False) or striped
            if not striped:
                keys[key] = keys.get(key, False) or mode
    return keys


def _lock_key(parts: Sequence[str]) -> int:
    # A signed 64-bit key from a hash of the name; a collision only makes two unrelated
    # transactions queue, never lets two related ones pass.
    digest = hashlib.blake2b("\x1f".join(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def database_busy() -> ServiceUnavailable:
    """Return the error for a database that timed out or could not be reached."""
    return ServiceUnavailable("The database is busy or unreachable; nothing was stored. Try again shortly.")


def get_session(request: Request) -> Iterator[Session]:
    """Yield the request's session and commit or roll back its one transaction."""
    factory: sessionmaker[Session] = request.app.state.sessionmaker
    session = factory()
    try:
        yield session
    except GatewayError as error:
        if error.audit:
            _commit_refusal(session, error)
        else:
            session.rollback()
        raise
    except (OperationalError, PoolTimeout):
        session.rollback()
        raise database_busy() from None
    except BaseException:
        session.rollback()
        raise
    else:
        try:
            session.commit()
        except (OperationalError, PoolTimeout):
            session.rollback()
            raise database_busy() from None
    finally:
        session.close()


def _commit_refusal(session: Session, error: GatewayError) -> None:
    try:
        commit_refusal(session, error)
    except (OperationalError, PoolTimeout):
        session.rollback()
        raise database_busy() from None


# scope="function": commit before the response is sent, so a 2xx always means "stored".
DbSession = Annotated[Session, Depends(get_session, scope="function")]


# Tables a bulk load grows fastest, whose statistics the planner needs to pick index plans.
BULK_TABLES = ("child", "child_identifier", "identity", "identity_block", "link", "item")


def refresh_statistics(session: Session, tables: Sequence[str] = BULK_TABLES) -> list[str]:
    """ANALYZE the tables that have more than doubled since last analysed; return their names.

    A bulk load outgrows the planner's statistics long before autovacuum's next look (a fresh
    database's tables look empty to it, and it then picks plans that are slow at any size, such
    as a nested loop over a whole table per row). PostgreSQL only; commits. A table that another
    ANALYZE or VACUUM holds is left for the next call (waited on for 100 ms at most).
    """
    if session.get_bind().dialect.name != "postgresql":
        return []
    stale = list(
        session.scalars(
            text(
                "SELECT s.relname FROM pg_stat_user_tables AS s JOIN pg_class AS c ON c.oid = s.relid "
                "WHERE s.relname = ANY(:tables) AND s.n_mod_since_analyze > greatest(500, c.reltuples)"
            ),
            {"tables": list(tables)},
        )
    )
    session.commit()
    for table in stale:
        assert table in tables  # an identifier from the caller's constants, never from input
        try:
            # Another ANALYZE or VACUUM of the table holds it: leave it to them, do not queue.
            session.execute(text("SET LOCAL lock_timeout = '100ms'"))
            session.execute(text(f"ANALYZE {table}"))  # a name from BULK_TABLES, never from input
            session.commit()
        except OperationalError:
            session.rollback()
    return stale

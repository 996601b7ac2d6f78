"""Engine and session plumbing; the session dependency owns the request's transaction."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from audit import install_append_only_guard

from .errors import CommitThenRaise


def build_engine(url: str, **kwargs: object) -> Engine:
    """Create the engine for a URL, with the per-dialect settings the gateway relies on."""
    if url.startswith("sqlite"):
        database = url.split("///", 1)[-1]
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False}, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    return create_engine(url, pool_pre_ping=True, **kwargs)


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
    # SQLite ignores foreign keys unless asked, and a busy writer should make others wait, not fail.
    # pysqlite's own transaction handling breaks SAVEPOINT (SQLAlchemy's documented recipe):
    # let SQLAlchemy emit BEGIN itself.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.close()


def _sqlite_begin(connection) -> None:  # type: ignore[no-untyped-def]
    connection.exec_driver_sql("BEGIN")


def build_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    """Create the session factory, with the audit log's append-only guard installed."""
    factory = sessionmaker(bind=engine, expire_on_commit=False, autoflush=False)
    install_append_only_guard(factory)
    return factory


def get_session(request: Request) -> Iterator[Session]:
    """Yield the request's session and commit or roll back its one transaction."""
    factory: sessionmaker[Session] = request.app.state.sessionmaker
    session = factory()
    try:
        yield session
    except CommitThenRaise:
        # An audited refusal: the only thing written is the audit event recording it.
        session.commit()
        raise
    except BaseException:
        session.rollback()
        raise
    else:
        session.commit()
    finally:
        session.close()


# scope="function": commit before the response is sent, so a 2xx always means "stored".
DbSession = Annotated[Session, Depends(get_session, scope="function")]

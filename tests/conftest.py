"""Shared fixtures: one migrated database per run, each test inside a transaction rolled back.

The database comes from GATEWAY_TEST_DATABASE_URL (PostgreSQL in CI), else a SQLite file.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Connection, Engine, text
from sqlalchemy.orm import Session, sessionmaker

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from gateway.app import create_app
from gateway.auth.keys import SigningKeys
from gateway.keys import KeyFolder
from gateway.kit.crypto import DataKeyring
from gateway.kit.db import build_engine, configure_sessionmaker
from gateway.kit.migrate import upgrade
from gateway.settings import Settings


# Public test material (NHS England's UK Core R4 examples), kept beside the repository.
CONFORMANCE_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "conformance" / "ukcore-r4-examples"


def pytest_sessionstart(session: pytest.Session) -> None:
    """Stop at once, saying why, when `make test` runs without the conformance material."""
    if os.environ.get("GATEWAY_REQUIRE_CONFORMANCE") and not CONFORMANCE_DIR.is_dir():
        pytest.exit(
            f"the UK Core conformance examples are missing: expected them at {CONFORMANCE_DIR} "
            "(the shared/ folder beside this repository). The suite does not run without them.",
            returncode=4,
        )


@pytest.fixture(scope="session", autouse=True)
def span_exporter() -> InMemorySpanExporter:
    """Collect every span of the run in memory (the app factory leaves a set provider alone)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return exporter


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Return the URL of the database the suite runs on."""
    url = os.environ.get("GATEWAY_TEST_DATABASE_URL")
    if url:
        return Settings(database_url=url).database_url
    return f"sqlite:///{tmp_path_factory.mktemp('db') / 'test.sqlite3'}"


@pytest.fixture(scope="session")
def engine(database_url: str) -> Iterator[Engine]:
    """Return an engine on a freshly migrated database."""
    engine = build_engine(database_url)
    if engine.dialect.name == "postgresql":
        # The test database is the suite's own: start from an empty schema every run.
        with engine.begin() as connection:
            connection.execute(text("DROP SCHEMA public CASCADE"))
            connection.execute(text("CREATE SCHEMA public"))
    upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def keys_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Return a folder holding freshly made keys."""
    path = tmp_path_factory.mktemp("keys")
    KeyFolder(path).create_missing(audit_origin=Settings().audit_origin)
    return path


@pytest.fixture(scope="session")
def settings(database_url: str, keys_dir: Path) -> Settings:
    """Return the settings the test app runs with."""
    # No background worker (checkpoint signer, Encompass sweeper, webhook sender): the test app's
    # sessions share the test's one connection, which a worker's thread must not use at the same time.
    # Every hour of every day is working time here, so that no test's events are flagged out of
    # hours by the clock it happens to run at; tests of the review rules set their own hours and clock.
    return Settings(
        database_url=database_url,
        keys_dir=keys_dir,
        audit_checkpoint_interval_s=0,
        encompass_sweep_interval_s=0,
        webhook_interval_s=0,
        # Each commit appends its own events, so that a test reads them as soon as its request returns.
        audit_append="inline",
        review_working_hours="00:00-00:00",
        review_working_days="1-7",
    )


@pytest.fixture(scope="session")
def signing_keys(keys_dir: Path) -> SigningKeys:
    """Return the token-signing keys."""
    return KeyFolder(keys_dir).signing_keys()


@pytest.fixture(scope="session")
def keyring(keys_dir: Path) -> DataKeyring:
    """Return the data keyring."""
    return KeyFolder(keys_dir).data_keyring()


@pytest.fixture
def connection(engine: Engine) -> Iterator[Connection]:
    """Yield a connection inside a transaction that is rolled back after the test."""
    with engine.connect() as connection:
        transaction = connection.begin()
        yield connection
        transaction.rollback()


@pytest.fixture
def test_sessionmaker(connection: Connection) -> sessionmaker[Session]:
    """Return a session factory whose commits only release savepoints of the test's transaction."""
    return configure_sessionmaker(
        sessionmaker(bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False, autoflush=False)
    )


@pytest.fixture
def session(test_sessionmaker: sessionmaker[Session]) -> Iterator[Session]:
    """Yield a session for arranging and checking data."""
    with test_sessionmaker() as session:
        yield session


@pytest.fixture
def app(settings: Settings, engine: Engine, test_sessionmaker: sessionmaker[Session]) -> FastAPI:
    """Return the gateway app, its requests running inside the test's transaction."""
    app = create_app(settings, engine=engine)
    app.state.sessionmaker = test_sessionmaker
    return app


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    """Yield an HTTP client for the app."""
    with TestClient(app) as test_client:
        yield test_client

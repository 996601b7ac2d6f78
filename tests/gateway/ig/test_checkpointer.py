"""sign_if_grown: a checkpoint when the trail has grown past the newest, None when not."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from audit import (
    Actor,
    ActorType,
    AuditAction,
    AuditCheckpoint,
    AuditEvent,
    AuditPending,
    NoteSigner,
    latest_checkpoint,
    sign_checkpoint,
    tree_size,
)
from audit.log import _APPEND_LOCK_KEY as APPEND_LOCK_KEY
from audit.store import root_at
from gateway.auth.keys import SigningKeys
from gateway.ig import checkpointer
from gateway.ig.checkpointer import integrate_pending, run_audit_worker, sign_if_grown
from gateway.kit.auditor import Auditor
from gateway.kit.db import build_engine, build_sessionmaker
from gateway.kit.migrate import upgrade
from gateway.kit.crypto import DataKeyring
from gateway.settings import Settings
from tests.gateway.ig.helpers import partnership, pushed_child
from tests.serving import scratch_database


def checkpoints(session: Session) -> int:
    """Count the stored checkpoints."""
    return session.scalar(select(func.count()).select_from(AuditCheckpoint)) or 0


def test_a_checkpoint_is_signed_when_the_trail_has_grown_and_not_otherwise(
    client: TestClient,
    app: FastAPI,
    session: Session,
    test_sessionmaker: sessionmaker[Session],
    settings: Settings,
    signing_keys: SigningKeys,
    keyring: DataKeyring,
) -> None:
    signer: NoteSigner = app.state.audit_signer
    seeded = partnership(client, session, settings, signing_keys, keyring)
    sign_checkpoint(session, signer)
    session.commit()
    before = checkpoints(session)

    assert sign_if_grown(test_sessionmaker, signer) is None  # nothing new since
    assert checkpoints(session) == before

    pushed_child(client, session, keyring, seeded.source_token, patient_id="another")
    size = tree_size(session)
    signed = sign_if_grown(test_sessionmaker, signer)

    assert signed is not None
    assert signed.tree_size == size
    assert signed.root_hash == root_at(session, size)
    opened = signer.verifier().open(signed.note)
    assert (opened.tree_size, opened.root_hash) == (size, signed.root_hash)
    assert checkpoints(session) == before + 1
    newest = latest_checkpoint(session)
    assert newest is not None and newest.tree_size == size and newest.note == signed.note

    assert sign_if_grown(test_sessionmaker, signer) is None
    assert checkpoints(session) == before + 1


def test_the_first_checkpoint_is_signed_when_there_is_none(
    client: TestClient,
    app: FastAPI,
    session: Session,
    test_sessionmaker: sessionmaker[Session],
    settings: Settings,
    signing_keys: SigningKeys,
    keyring: DataKeyring,
) -> None:
    if latest_checkpoint(session) is not None:
        pytest.skip("this database already holds a committed checkpoint")
    partnership(client, session, settings, signing_keys, keyring)
    size = tree_size(session)

    signed = sign_if_grown(test_sessionmaker, app.state.audit_signer)

    assert signed is not None and signed.tree_size == size > 0
    assert checkpoints(session) == 1


def test_the_background_signer_signs_then_logs_a_failed_round_and_carries_on(
    client: TestClient,
    app: FastAPI,
    session: Session,
    test_sessionmaker: sessionmaker[Session],
    settings: Settings,
    signing_keys: SigningKeys,
    keyring: DataKeyring,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    partnership(client, session, settings, signing_keys, keyring)
    signer: NoteSigner = app.state.audit_signer
    rounds: list[str] = []

    def flaky(factory: sessionmaker[Session], note_signer: NoteSigner) -> AuditCheckpoint | None:
        # Runs in a worker thread: touches no database, only counts rounds and fails the first.
        rounds.append("round")
        if len(rounds) == 1:
            raise OperationalError("SELECT 1", {"secret": "value"}, Exception("database is locked"))
        return None

    monkeypatch.setattr(checkpointer, "sign_if_grown", flaky)

    async def run_briefly() -> None:
        task = asyncio.create_task(
            run_audit_worker(
                test_sessionmaker, signer, deferred=False, integration_interval_s=0.01, checkpoint_interval_s=0.01
            )
        )
        while len(rounds) < 3:
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    with caplog.at_level(logging.WARNING, logger="gateway.ig.checkpointer"):
        asyncio.run(asyncio.wait_for(run_briefly(), timeout=10))

    assert len(rounds) >= 3  # a failed round did not stop the signer
    [warning] = [r for r in caplog.records if r.name == "gateway.ig.checkpointer"]
    assert warning.getMessage() == "audit integration or checkpoint failed this round"
    assert warning.__dict__["error"] == "OperationalError"  # the class name only, never the statement's values
    assert "secret" not in str(warning.__dict__) and "locked" not in str(warning.__dict__)


def test_an_empty_trail_gets_no_checkpoint(
    app: FastAPI, session: Session, test_sessionmaker: sessionmaker[Session]
) -> None:
    if tree_size(session) != 0 or latest_checkpoint(session) is not None:
        pytest.skip("this database already holds committed events or checkpoints")

    assert sign_if_grown(test_sessionmaker, app.state.audit_signer) is None
    assert checkpoints(session) == 0


@pytest.mark.skipif(
    not os.environ.get("GATEWAY_TEST_DATABASE_URL", "").startswith("postgresql"),
    reason="the append lock is a PostgreSQL advisory lock; SQLite's one writer needs none",
)
def test_an_exiting_process_waits_for_the_append_lock_so_its_staged_events_are_not_stranded(
    database_url: str, tmp_path: Path
) -> None:
    """Stop 16's CI: two workers exiting together; the one holding the lock had read its batch
    before the other's last requests committed, and the other gave way. With `wait=True` the
    exiting process waits (within lock_timeout) and appends what it staged."""
    with scratch_database(database_url, tmp_path, prefix="gw_exit") as url:
        engine = build_engine(url)
        try:
            upgrade(engine)
            factory = build_sessionmaker(engine, deferred_audit=True)
            with factory() as session:
                Auditor(session, Actor(type=ActorType.CLIENT, id="exiting-client", agency="health")).record(
                    AuditAction.CLIENT_TOKEN_ISSUED
                )
                session.commit()
            holder = engine.connect()
            holder_transaction = holder.begin()
            holder.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": APPEND_LOCK_KEY})

            assert integrate_pending(factory) == 0  # a running worker gives way: the holder will take them

            release = threading.Timer(0.5, holder_transaction.rollback)  # the other process finishes
            release.start()
            started = time.monotonic()
            try:
                assert integrate_pending(factory, wait=True) == 1
            finally:
                release.join()
                holder.close()
            assert time.monotonic() - started >= 0.4  # it did wait for the holder
            with factory() as session:
                assert session.scalar(select(func.count()).select_from(AuditPending)) == 0
                assert session.scalar(select(func.count()).select_from(AuditEvent)) == 1
        finally:
            engine.dispose()

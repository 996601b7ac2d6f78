"""sign_if_grown: a checkpoint when the trail has grown past the newest, None when not."""

from __future__ import annotations

import asyncio
import logging

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from audit import AuditCheckpoint, NoteSigner, latest_checkpoint, sign_checkpoint, tree_size
from audit.store import root_at
from gateway.auth.keys import SigningKeys
from gateway.ig import checkpointer
from gateway.ig.checkpointer import run_audit_worker, sign_if_grown
from gateway.kit.crypto import DataKeyring
from gateway.settings import Settings
from tests.gateway.ig.helpers import partnership, pushed_child


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

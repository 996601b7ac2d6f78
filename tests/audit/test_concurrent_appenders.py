"""Two processes append to one PostgreSQL trail at once, one of them signing checkpoints: no fork, no gap.

The appenders are this module run as a script (`python -m tests.audit.test_concurrent_appenders`),
each in its own OS process with its own engine, so that the only thing they share is the database:
its advisory locks are what serialise them. They wait for a start file so that both race from the
first transaction.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from audit import (
    Actor,
    ActorType,
    AuditAction,
    AuditCheckpoint,
    AuditEvent,
    AuditRecord,
    NoteSigner,
    Outcome,
    consistency_proof,
    record,
    sign_checkpoint,
    verify,
    verify_consistency,
)
from gateway.kit.db import build_engine
from gateway.kit.migrate import upgrade
from tests.serving import scratch_database

EVENTS_EACH = 300
SIGN_EVERY = 5  # transactions
PROCESS_TIMEOUT_SECONDS = 180.0
START_TIMEOUT_SECONDS = 60.0
REPO = Path(__file__).resolve().parents[2]

# The appender's settings travel in its environment.
_URL, _NAME, _SKEY, _READY, _GO = (f"AUDIT_APPENDER_{key}" for key in ("URL", "NAME", "SKEY", "READY", "GO"))

pytestmark = pytest.mark.skipif(
    not os.environ.get("GATEWAY_TEST_DATABASE_URL", "").startswith("postgresql"),
    reason="two processes appending at once need PostgreSQL (GATEWAY_TEST_DATABASE_URL); SQLite has one writer",
)


def _appender() -> None:
    """Append EVENTS_EACH events in transactions of 1–5, signing every SIGN_EVERY transactions if given a key."""
    name = os.environ[_NAME]
    skey = os.environ.get(_SKEY)
    signer = NoteSigner.parse(skey) if skey else None
    actor = Actor(ActorType.CLIENT, name, "health")
    rng = random.Random(name)
    engine = build_engine(os.environ[_URL])
    try:
        Path(os.environ[_READY]).touch()
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while not Path(os.environ[_GO]).exists():
            if time.monotonic() > deadline:
                raise SystemExit(f"{name}: no start signal within {START_TIMEOUT_SECONDS:.0f} s")
            time.sleep(0.01)
        done = transactions = 0
        while done < EVENTS_EACH:
            size = min(rng.randint(1, 5), EVENTS_EACH - done)
            entries = [
                AuditRecord(AuditAction.CLIENT_RECORDS_PUSHED, actor, Outcome.SUCCESS, detail={"n": done + i})
                for i in range(size)
            ]
            with Session(engine) as session, session.begin():
                record(session, entries)
            done += size
            transactions += 1
            if signer is not None and transactions % SIGN_EVERY == 0:
                with Session(engine) as session, session.begin():
                    sign_checkpoint(session, signer)
        if signer is not None:
            with Session(engine) as session, session.begin():
                sign_checkpoint(session, signer)
    finally:
        engine.dispose()


def _start(name: str, url: str, tmp_path: Path, skey: str | None) -> subprocess.Popen[str]:
    env = dict(os.environ)
    env.update({_URL: url, _NAME: name, _READY: str(tmp_path / f"{name}.ready"), _GO: str(tmp_path / "go")})
    if skey is not None:
        env[_SKEY] = skey
    return subprocess.Popen(
        [sys.executable, "-m", "tests.audit.test_concurrent_appenders"],
        cwd=REPO,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _run_both(url: str, tmp_path: Path, skey: str) -> None:
    """Start both appenders, let them go together, and wait for both, each within a timeout."""
    processes = {name: _start(name, url, tmp_path, skey if name == "signer" else None) for name in ("signer", "plain")}
    try:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while not all((tmp_path / f"{name}.ready").exists() for name in processes):
            for name, process in processes.items():
                if process.poll() is not None:
                    output, _ = process.communicate(timeout=10)
                    raise AssertionError(f"appender {name} exited {process.returncode} before the start:\n{output}")
            assert time.monotonic() < deadline, f"the appenders were not ready within {START_TIMEOUT_SECONDS:.0f} s"
            time.sleep(0.05)
        (tmp_path / "go").touch()
        for name, process in processes.items():
            output, _ = process.communicate(timeout=PROCESS_TIMEOUT_SECONDS)
            assert process.returncode == 0, f"appender {name} exited {process.returncode}:\n{output}"
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
                process.communicate(timeout=10)


def test_two_processes_append_one_gap_free_trail(database_url: str, tmp_path: Path) -> None:
    signer = NoteSigner.generate("test.example/audit")
    with scratch_database(database_url, tmp_path, prefix="gw_appenders") as url:
        engine = build_engine(url)
        try:
            upgrade(engine)
            _run_both(url, tmp_path, signer.skey())

            with Session(engine) as session:
                result = verify(session, verifier=signer.verifier())
                seqs = list(session.scalars(select(AuditEvent.seq).order_by(AuditEvent.seq)))
                written = session.execute(
                    select(AuditEvent.actor_id, AuditEvent.detail).order_by(AuditEvent.seq)
                ).all()
                checkpoints = list(session.scalars(select(AuditCheckpoint).order_by(AuditCheckpoint.tree_size)))
                first, last = checkpoints[0], checkpoints[-1]
                proof = consistency_proof(session, first.tree_size, last.tree_size)
        finally:
            engine.dispose()

    assert result.ok, result
    assert result.events_checked == 2 * EVENTS_EACH and result.signatures_checked
    assert seqs == list(range(1, 2 * EVENTS_EACH + 1))
    assert result.checkpoints_checked == len(checkpoints) >= 2
    assert 0 < first.tree_size < last.tree_size
    verify_consistency(
        first=first.tree_size,
        second=last.tree_size,
        first_root=first.root_hash,
        second_root=last.root_hash,
        path=proof.path,
    )
    # Each appender's events are in its own order, and the two really raced: their runs interleave.
    for name in ("signer", "plain"):
        assert [detail["n"] for actor, detail in written if actor == name] == list(range(EVENTS_EACH))
    runs = 1 + sum(1 for (a, _), (b, _) in zip(written, written[1:], strict=False) if a != b)
    assert runs > 2, "the appenders ran one after the other: the test raced nothing"


if __name__ == "__main__":
    _appender()

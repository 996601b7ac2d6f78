"""Integrate staged audit events, and sign a checkpoint of the log at least once a second while events arrive.

With deferred appends (GATEWAY_AUDIT_APPEND, deferred on PostgreSQL), requests stage their events
and each worker's audit worker integrates them every GATEWAY_AUDIT_INTEGRATION_INTERVAL_S (0.1 s):
one process at a time takes the trail's lock and appends all that is staged, a batch per
transaction; the others find the lock taken and return at once.

Checkpoints are signed in two ways, because either alone can fail the promise:
- inline (with inline appends): a transaction that appends events also signs a checkpoint of them when the newest is
  older than the interval (looked up at most once per interval per process). Under a steady
  stream of writes this is what signs: a separate signer can wait behind the writers for
  SQLite's one write lock for as long as they keep coming;
- in the background: each worker process looks every interval (two indexed reads) whether the
  trail has grown past the newest checkpoint, and if so signs one. This covers the last events
  before a quiet spell, and with deferred appends it is the only way. The work runs in a
  thread: the event loop is never blocked.

Signing takes a PostgreSQL advisory lock, so that several processes make one checkpoint per size
(audit.sign_checkpoint); an appender takes it after the append lock, the background signer
takes it alone, so the two never wait on each other in a cycle.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from datetime import UTC, datetime, timedelta

import anyio
from sqlalchemy import event
from sqlalchemy.orm import Session, sessionmaker

from audit import AuditCheckpoint, NoteSigner, integrate, latest_checkpoint, sign_checkpoint, tree_size
from gateway.kit.auditor import APPENDED, STAGED, queue_for_review

log = logging.getLogger(__name__)

# How often a worker looks for staged events it was not told of (another process's, a dead one's).
SWEEP_INTERVAL_S = 1.0


def sign_if_grown(factory: sessionmaker[Session], signer: NoteSigner) -> AuditCheckpoint | None:
    """Sign and commit a checkpoint when the trail has grown past the newest; return it, or None."""
    with factory() as session:
        latest = latest_checkpoint(session)
        size = tree_size(session)
        if size == 0 or (latest is not None and latest.tree_size >= size):
            return None
        signed = sign_checkpoint(session, signer)
        session.commit()
        return None if latest is not None and signed.tree_size == latest.tree_size else signed


def integrate_pending(
    factory: sessionmaker[Session], *, limit: int = 10_000, rounds: int = 100, wait: bool = False
) -> int:
    """Append staged audit events to the trail, `limit` a transaction, until none are left; return how many.

    Flagged events go on the review queue in the transaction that appends them. While running,
    another process integrating at the time makes this return at once: it holds the lock and
    will take these too, or its next round will. A process about to exit cannot count on that
    (the other may have read its batch before this one's last requests committed, and be exiting
    too), so it passes `wait=True`: it waits for the lock, for at most the session's lock_timeout.
    """
    appended = 0
    for _ in range(rounds):
        with factory() as session:
            events = integrate(session, limit=limit, wait=wait)
            queue_for_review(session, events)
            session.commit()
        appended += len(events)
        if len(events) < limit:
            break
    return appended


async def run_audit_worker(
    factory: sessionmaker[Session],
    signer: NoteSigner,
    *,
    deferred: bool,
    integration_interval_s: float,
    checkpoint_interval_s: float,
) -> None:
    """Until cancelled: integrate staged events (deferred) and sign checkpoints while the trail grows.

    A failed round is logged and the next one tries again.
    """
    tick = integration_interval_s if deferred else checkpoint_interval_s
    next_signature = next_sweep = time.monotonic()
    while True:
        await asyncio.sleep(tick)
        try:
            # This process's requests staged something, or it is time to sweep for rows staged
            # elsewhere (another process, one that died): an idle worker does not query 10 times a second.
            if deferred and (STAGED.is_set() or time.monotonic() >= next_sweep):
                STAGED.clear()
                next_sweep = time.monotonic() + SWEEP_INTERVAL_S
                await anyio.to_thread.run_sync(integrate_pending, factory)
            if checkpoint_interval_s > 0 and time.monotonic() >= next_signature:
                next_signature = time.monotonic() + checkpoint_interval_s
                await anyio.to_thread.run_sync(sign_if_grown, factory, signer)
        except Exception as failure:  # any failure: the worker must outlive it, or the trail stops growing
            # The class name only: a driver's message may quote a statement's parameters.
            log.warning("audit integration or checkpoint failed this round", extra={"error": type(failure).__name__})


class InlineSigner:
    """Signs a checkpoint in a transaction that appended events, when the newest is older than the interval."""

    def __init__(self, signer: NoteSigner, *, interval_s: float) -> None:
        self.signer = signer
        self.interval = timedelta(seconds=interval_s)
        self._interval_s = interval_s
        self._next_look = 0.0  # monotonic seconds: until then, a checkpoint is known to be recent enough
        self._lock = threading.Lock()

    def install(self, factory: sessionmaker[Session]) -> None:
        """Run after the auditor's own commit hook on sessions of `factory` (listeners run in order)."""
        event.listen(factory, "before_commit", self._after_append)

    def _after_append(self, session: Session) -> None:
        if not session.info.pop(APPENDED, False) or session.in_nested_transaction():
            return
        with self._lock:
            now = time.monotonic()
            if now < self._next_look:
                return
            self._next_look = now + self._interval_s
        latest = latest_checkpoint(session)
        if latest is not None and datetime.now(UTC) - latest.signed_at < self.interval:
            return
        sign_checkpoint(session, self.signer)


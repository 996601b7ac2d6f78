"""Sign a checkpoint of the audit log at least once a second while events arrive.

Each worker process runs one signer beside its requests. Every interval it looks (two indexed
reads) whether the trail has grown past the newest checkpoint, and if so signs one; the signing
itself takes a PostgreSQL advisory lock, so several processes make one checkpoint per size
(audit.sign_checkpoint). The work runs in a thread: the event loop is never blocked.
"""

from __future__ import annotations

import asyncio
import logging

import anyio
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from audit import AuditCheckpoint, NoteSigner, latest_checkpoint, sign_checkpoint, tree_size

log = logging.getLogger(__name__)


def sign_if_grown(factory: sessionmaker[Session], signer: NoteSigner) -> AuditCheckpoint | None:
    """Sign and commit a checkpoint when the trail has grown past the newest; return it, or None."""
    with factory() as session:
        latest = latest_checkpoint(session)
        if latest is not None and latest.tree_size >= tree_size(session):
            return None
        signed = sign_checkpoint(session, signer)
        session.commit()
        return None if latest is not None and signed.tree_size == latest.tree_size else signed


async def run_checkpointer(factory: sessionmaker[Session], signer: NoteSigner, *, interval_s: float) -> None:
    """Sign checkpoints every `interval_s` seconds until cancelled; a failed round is logged and retried."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            await anyio.to_thread.run_sync(sign_if_grown, factory, signer)
        except SQLAlchemyError as failure:
            # The class name only: a driver's message may quote a statement's parameters.
            log.warning("audit checkpoint not signed this round", extra={"error": type(failure).__name__})

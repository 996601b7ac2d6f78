"""A transaction that appends events signs a checkpoint of them when the newest is older than the interval."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from audit import Actor, ActorType, AuditAction, AuditCheckpoint, NoteSigner, latest_checkpoint, tree_size
from gateway.ig.checkpointer import InlineSigner
from gateway.kit.auditor import Auditor

ACTOR = Actor(type=ActorType.CLIENT, id="test-client", agency="health")
SIGNER = NoteSigner.generate("test.example/audit")


def _checkpoints(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(AuditCheckpoint)) or 0


def _append_and_commit(session: Session) -> None:
    Auditor(session, ACTOR).record(AuditAction.CLIENT_TOKEN_ISSUED)
    session.commit()


def test_the_first_append_signs_and_the_next_within_the_interval_does_not(
    test_sessionmaker: sessionmaker[Session],
) -> None:
    inline = InlineSigner(SIGNER, interval_s=3600)
    inline.install(test_sessionmaker)
    with test_sessionmaker() as session:
        before = _checkpoints(session)

        _append_and_commit(session)
        signed = latest_checkpoint(session)
        assert signed is not None and signed.tree_size == tree_size(session)
        assert SIGNER.verifier().open(signed.note).tree_size == signed.tree_size

        _append_and_commit(session)
        assert _checkpoints(session) == before + 1  # within the interval: no look, no signature

        inline._next_look = 0.0  # the interval has passed for this process…
        _append_and_commit(session)
        assert _checkpoints(session) == before + 1  # …but the newest checkpoint is still recent

        inline.interval = timedelta(0)
        inline._next_look = 0.0
        _append_and_commit(session)
        assert _checkpoints(session) == before + 2
        newest = latest_checkpoint(session)
        assert newest is not None and newest.tree_size == tree_size(session)


def test_a_commit_that_appended_nothing_signs_nothing(test_sessionmaker: sessionmaker[Session]) -> None:
    InlineSigner(SIGNER, interval_s=1).install(test_sessionmaker)
    with test_sessionmaker() as session:
        before = _checkpoints(session)
        session.commit()
        assert _checkpoints(session) == before

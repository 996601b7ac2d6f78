"""A batch stored in chunks: each a committed transaction, every record answered, a failure part-way honest."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

import gateway.ingest.bulk as bulk
from adapters import EntryOutcome, EntryStatus
from adapters.batch import BatchSubmission
from adapters.police import PoliceAdapter
from gateway.auth.principal import Principal, PrincipalKind
from gateway.ingest.service import ingest
from gateway.kit.auditor import Auditor
from gateway.kit.crypto import DataKeyring
from gateway.kit.db import build_engine, build_sessionmaker, refresh_statistics
from gateway.kit.migrate import upgrade
from gateway.models import Item
from gateway.notifications.routing import Routing
from policies import Agency, default_policy
from tests.factories import make_client, nhs_number
from tests.serving import scratch_database

POLICE = PoliceAdapter()
KINDS = ("identity", "incident")


def _batch(count: int) -> BatchSubmission:
    records = [
        {
            "record_id": f"BULK-{n}",
            "version": "1",
            "kind": "incident",
            "occurred_at": "2026-11-01T10:00:00Z",
            "child": {
                "person_id": f"PER-BULK-{n}",
                "nhs_number": nhs_number(),
                "given_names": ["Sam"],
                "family_name": f"Bulktest{n}",
                "birth_date": "2015-01-01",
                "role": "victim",
            },
            "contact": {"unit": "Test Unit"},
            "details": {"occurrence_type": "assault", "summary": "A test incident."},
        }
        for n in range(count)
    ]
    body = json.dumps({"schema": "police/v1", "records": records}).encode()
    submission = POLICE.parse(body, "application/json", max_entries=1000)
    assert isinstance(submission, BatchSubmission)
    return submission


def _store(session: Session, keyring: DataKeyring, submission: BatchSubmission, **options: Any) -> list[EntryOutcome]:
    client, _key = make_client(session, agency=Agency.POLICE, kinds=KINDS)
    principal = Principal(PrincipalKind.CLIENT, client.id, client.agency)
    return bulk.ingest_batch(
        session,
        principal,
        auditor=Auditor(session, principal.actor()),
        keyring=keyring,
        routing=Routing(default_policy()),
        submission=submission,
        **options,
    )


def _statuses(submission: BatchSubmission, outcomes: list[EntryOutcome]) -> list[str]:
    body = POLICE.render(submission, outcomes).body
    return [outcome["status"] for outcome in body["outcomes"]]


def test_a_batch_is_stored_a_chunk_a_transaction_and_every_record_answered(
    session: Session, keyring: DataKeyring
) -> None:
    submission = _batch(7)
    chunks: list[int] = []

    outcomes = _store(session, keyring, submission, chunk=3, progress=chunks.append)

    assert chunks == [3, 3, 1]
    assert [o.index for o in outcomes] == list(range(len(submission.entries)))
    assert _statuses(submission, outcomes) == ["created"] * 7
    assert session.scalar(select(func.count()).select_from(Item).where(Item.source_record_id.like("BULK-%"))) == 7


def test_a_failure_part_way_keeps_what_was_stored_and_answers_the_rest_transient(
    session: Session, keyring: DataKeyring, monkeypatch: pytest.MonkeyPatch
) -> None:
    submission = _batch(7)
    real = ingest
    calls = 0

    def failing_second(*args: Any, **kwargs: Any) -> list[EntryOutcome]:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise OperationalError("SELECT 1", {}, Exception("lock timeout"))
        return real(*args, **kwargs)

    monkeypatch.setattr("gateway.ingest.bulk.ingest", failing_second)

    outcomes = _store(session, keyring, submission, chunk=3)

    assert _statuses(submission, outcomes) == ["created"] * 3 + ["rejected"] * 4
    rejected = [o for o in outcomes if o.status is EntryStatus.REJECTED]
    assert {issue.code for o in rejected for issue in o.issues} == {"transient"}
    assert all("send it again" in issue.message for o in rejected for issue in o.issues)
    assert calls == 2  # no chunk after the failed one was tried
    stored = session.scalars(select(Item.source_record_id).where(Item.source_record_id.like("BULK-%"))).all()
    assert sorted(stored) == ["BULK-0", "BULK-1", "BULK-2"]


def test_an_atomic_batch_is_one_transaction_left_to_the_caller(session: Session, keyring: DataKeyring) -> None:
    import dataclasses

    submission = dataclasses.replace(_batch(4), atomic=True)
    chunks: list[int] = []

    outcomes = _store(session, keyring, submission, chunk=2, progress=chunks.append)

    assert chunks == [4] and _statuses(submission, outcomes) == ["created"] * 4


def test_statistics_are_postgresqls_only(session: Session) -> None:
    if session.get_bind().dialect.name == "postgresql":
        pytest.skip("the PostgreSQL side is the next test")
    assert refresh_statistics(session) == []


@pytest.mark.skipif(
    not os.environ.get("GATEWAY_TEST_DATABASE_URL", "").startswith("postgresql"),
    reason="ANALYZE and pg_stat_user_tables are PostgreSQL's",
)
def test_a_table_that_has_doubled_since_last_analysed_is_analysed_once(database_url: str, tmp_path: Path) -> None:
    with scratch_database(database_url, tmp_path, prefix="gw_stats") as url:
        engine = build_engine(url)
        try:
            upgrade(engine)
            with build_sessionmaker(engine)() as session:
                session.execute(text("INSERT INTO team (id, name, local_authority) "
                                     "SELECT gen_random_uuid(), 'T' || n, 'LA' FROM generate_series(1, 700) AS n"))
                session.commit()
                # The statistics collector reports modifications asynchronously: flush them now.
                session.execute(text("SELECT pg_stat_force_next_flush()"))
                session.commit()

                first = refresh_statistics(session, ("team", "item"))
                second = refresh_statistics(session, ("team", "item"))

                assert first == ["team"] and second == []
                analysed = session.scalar(
                    text("SELECT last_analyze IS NOT NULL FROM pg_stat_user_tables WHERE relname = 'team'")
                )
                assert analysed is True
        finally:
            engine.dispose()

"""Store a police or education batch in chunks: a bounded transaction per chunk of records.

A batch of thousands of records (a school's termly attendance extract) in one transaction would
hold its locks until the end (bounded in number by lock striping, gateway/kit/db.py, but a large
family of names holds nearly every stripe of its kind), so every other push of its client, and
every push scoring Patients, would wait for the whole import. So a batch that is not
all-or-nothing is stored `chunk` records per transaction, each committed before the next starts;
the answer is still one outcome per record. An all-or-nothing batch is one transaction, and is
limited in size (Settings.max_atomic_records) so that others do not wait long behind it.

If the database fails part-way (busy, lock timeout), the chunks already committed stay stored
and every record from the failed chunk on is answered `rejected` with code `transient`: the
client sends those again (a push is idempotent, so sending the whole batch again is safe too).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from adapters import EntryOutcome, EntryStatus, Issue
from adapters.batch import BatchRecord, BatchSubmission
from gateway.auth.principal import Principal
from gateway.kit.auditor import Auditor
from gateway.kit.crypto import DataKeyring
from gateway.kit.db import refresh_statistics
from gateway.notifications.routing import Routing

from .service import ingest

log = logging.getLogger(__name__)

# Records per transaction: a few hundred milliseconds of work, so that a push waiting on this
# import's locks (striped: gateway/kit/db.py) waits no longer than that.
DEFAULT_CHUNK = 250
# Chunks between looks at the planner's statistics (kit/db.refresh_statistics): a large import
# can double a young database's tables before autovacuum looks.
STATISTICS_EVERY = 8
NOT_STORED = (
    "the database was busy and this record was not stored (the records before it were); send it again"
)


def ingest_batch(
    session: Session,
    principal: Principal,
    *,
    auditor: Auditor,
    keyring: DataKeyring,
    routing: Routing,
    submission: BatchSubmission,
    chunk: int = DEFAULT_CHUNK,
    progress: Callable[[int], None] = lambda _records: None,
) -> list[EntryOutcome]:
    """Store a batch, `chunk` records a committed transaction (atomic: one, left to the caller to commit).

    Returns every entry's outcome, in entry order; `progress` is told how many records each
    committed chunk held. A refusal of the whole push (an inactive client, an atomic batch with a
    bad record) raises as `ingest` does, before anything of it is stored.
    """
    if submission.atomic or len(submission.records) <= chunk:
        outcomes = ingest(session, principal, auditor=auditor, keyring=keyring, routing=routing, submission=submission)
        progress(len(submission.records))
        return outcomes
    answered: dict[int, EntryOutcome] = {}
    for number, start in enumerate(range(0, len(submission.records), chunk)):
        if number % STATISTICS_EVERY == 0:
            refresh_statistics(session)
        records = submission.records[start : start + chunk]
        part = _part(submission, records)
        try:
            stored = ingest(session, principal, auditor=auditor, keyring=keyring, routing=routing, submission=part)
            session.commit()
        except SQLAlchemyError as failure:
            session.rollback()
            # The class name only: a driver's message may quote a statement's parameters.
            log.warning("a batch chunk was not stored", extra={"error": type(failure).__name__, "first_record": start})
            _not_stored(submission, submission.records[start:], answered)
            break
        for outcome in stored:
            # A claim shared by records in two chunks: the first chunk's answer stands.
            answered.setdefault(outcome.index, outcome)
        progress(len(records))
    return [answered[index] for index in sorted(answered)]


def _part(submission: BatchSubmission, records: Sequence[BatchRecord]) -> BatchSubmission:
    """Return the sub-batch of these records' entries, each keeping its index in the whole batch.

    The ingest service answers by entry index, whatever the indexes are, so the answers of every
    chunk fall into place in the whole batch's answer without renumbering.
    """
    wanted = sorted({index for record in records for index in record.entry_indexes})
    return dataclasses.replace(submission, entries=tuple(submission.entries[i] for i in wanted), records=tuple(records))


def _not_stored(submission: BatchSubmission, records: Sequence[BatchRecord], answered: dict[int, EntryOutcome]) -> None:
    for record in records:
        for index in record.entry_indexes:
            if index not in answered or index == record.record_entry:
                issue = Issue("error", "transient", submission.entries[index].location, NOT_STORED)
                answered[index] = EntryOutcome(index, EntryStatus.REJECTED, (issue,))

"""The request's auditor: one way for the gateway to write the audit trail.

`Auditor.record` does not write at once. It keeps the event with the session, and the session
appends every kept event, in the order kept, with one call of `audit.record` (the trail's one
entry point) just before it commits. So the trail's lock, which serialises appenders, is taken
at commit and held for one multi-row insert, not for the whole request; the events still land in
the same transaction as what they record, or not at all. An event kept inside a savepoint that
is rolled back is dropped with it.
"""

from __future__ import annotations

import functools
import threading
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from opentelemetry import trace
from sqlalchemy import event
from sqlalchemy.orm import Session, SessionTransaction, sessionmaker

from audit import Actor, AuditAction, AuditEvent, AuditRecord, ItemDecisionRef, Outcome, ReviewReason, record, stage

from .errors import GatewayError

_PENDING = "gateway.audit.pending"
# Set in session.info when a commit appended events (gateway/ig/checkpointer.py signs after them).
APPENDED = "gateway.audit.appended"
# Set when a session of this process stages events: its integrator then has work (process-local;
# rows staged by another process, or left by one that died, are found by the periodic sweep).
STAGED = threading.Event()

E = TypeVar("E", bound=GatewayError)


@dataclass(frozen=True)
class _Pending:
    entry: AuditRecord
    # The transactions open when the event was kept, innermost first: rolling back any of them
    # drops the event.
    transactions: tuple[SessionTransaction, ...]


class ReviewRules(Protocol):
    """Adds the review flags an event earns from what it is (refused, out of hours, volume).

    Features flag what only they know (`review=` on `Auditor.record`); these rules add what any
    event shows, and return the entry with them (and their evidence in `detail`).
    gateway/ig/rules.py holds the partnership's.
    """

    def __call__(self, session: Session, entry: AuditRecord) -> AuditRecord: ...


def current_trace_id() -> str | None:
    """Return the current span's trace id as 32 hex digits, or None outside a trace."""
    context = trace.get_current_span().get_span_context()
    return _hex_trace_id(context.trace_id) if context.is_valid else None


@functools.lru_cache(maxsize=64)
def _hex_trace_id(trace_id: int) -> str:
    # A push of thousands of children records an event for each, all in one trace.
    return format(trace_id, "032x")


@dataclass
class Auditor:
    """Writes audit events for one unit of work: its session, its actor, its request and trace."""

    session: Session
    actor: Actor | None
    request_id: str | None = None
    rules: ReviewRules | None = None
    _refusals: list[AuditRecord] = field(default_factory=list, repr=False)

    def record(
        self,
        action: AuditAction,
        outcome: Outcome = Outcome.SUCCESS,
        *,
        actor: Actor | None = None,
        child_id: Any = None,
        purpose: str | None = None,
        lawful_basis: str | None = None,
        policy_version: str | None = None,
        items: Sequence[ItemDecisionRef] = (),
        detail: Mapping[str, Any] | None = None,
        review: Sequence[ReviewReason] = (),
    ) -> None:
        """Keep an event, to be appended in this session's transaction when it commits.

        `review` is the one way for a feature to put the event it records on the IG review queue
        (break-glass, an override, a merge…): the reasons go into the event itself, and the event
        lands on the queue (`review_entry`) in the same transaction. The review rules add the
        flags any event earns (refused, out of hours, volume) without the feature asking.
        """
        entry = self._entry(
            action, outcome, actor, child_id, purpose, lawful_basis, policy_version, items, detail, review
        )
        _keep(self.session, entry)

    def refuse(
        self,
        error: E,
        action: AuditAction,
        outcome: Outcome = Outcome.DENIED,
        *,
        actor: Actor | None = None,
        child_id: Any = None,
        purpose: str | None = None,
        detail: Mapping[str, Any] | None = None,
    ) -> E:
        """Attach a refusal's event to the error; the session commits it alone when it is raised."""
        entry = self._entry(action, outcome, actor, child_id, purpose, None, None, (), detail, ())
        error.audit = (*error.audit, entry)
        return error

    def _entry(
        self,
        action: AuditAction,
        outcome: Outcome,
        actor: Actor | None,
        child_id: Any,
        purpose: str | None,
        lawful_basis: str | None,
        policy_version: str | None,
        items: Sequence[ItemDecisionRef],
        detail: Mapping[str, Any] | None,
        review: Sequence[ReviewReason],
    ) -> AuditRecord:
        who = actor or self.actor
        if who is None:
            raise ValueError(f"an audit event of {action} needs an actor")
        entry = AuditRecord(
            action=action,
            actor=who,
            outcome=outcome,
            child_id=child_id,
            purpose=purpose,
            lawful_basis=lawful_basis,
            policy_version=policy_version,
            items=tuple(items),
            detail=dict(detail or {}),
            request_id=self.request_id,
            trace_id=current_trace_id(),
            review=tuple(review),
        )
        return entry if self.rules is None else self.rules(self.session, entry)


def commit_refusal(session: Session, error: GatewayError) -> None:
    """Roll back what the request did, then commit the refusal's own audit events alone."""
    session.rollback()
    for entry in error.audit:
        _keep(session, entry)
    session.commit()


def _keep(session: Session, entry: AuditRecord) -> None:
    transactions: list[SessionTransaction] = []
    current = session.get_nested_transaction() or session.get_transaction()
    if current is None:
        # Autobegin: the event belongs to the transaction the session is about to start.
        current = session.begin()
    while current is not None:
        transactions.append(current)
        current = current.parent
    session.info.setdefault(_PENDING, []).append(_Pending(entry, tuple(transactions)))


def _append_pending(session: Session) -> None:
    if session.in_nested_transaction():
        return  # a savepoint is released: its events wait for the real commit
    pending: list[_Pending] = session.info.pop(_PENDING, [])
    events = record(session, [kept.entry for kept in pending])
    if events:
        session.info[APPENDED] = True
    queue_for_review(session, events)
    span = trace.get_current_span()
    if events and span.is_recording():
        # From a trace to its events: seqs are not personal data.
        span.set_attribute("gateway.audit.seqs", [appended.seq for appended in events])


def _stage_pending(session: Session) -> None:
    if session.in_nested_transaction():
        return  # a savepoint is released: its events wait for the real commit
    pending: list[_Pending] = session.info.pop(_PENDING, [])
    if stage(session, [kept.entry for kept in pending]):
        STAGED.set()


def queue_for_review(session: Session, events: Sequence[AuditEvent]) -> None:
    """Put the flagged ones of appended events on the IG review queue, once per reason (volume: once per person and day)."""
    flagged = [appended for appended in events if appended.detail.get("review")]
    if flagged:
        _queue(session, flagged)


def _queue(session: Session, events: Sequence[AuditEvent]) -> None:
    # Imported here: kit.db imports this module to install the hooks.
    from gateway.models.review import ReviewEntry

    from .db import insert_missing

    rows = []
    for flagged in events:
        for reason in flagged.detail["review"]:
            if reason == ReviewReason.VOLUME:
                # The rules name the working day they counted (local time); one entry per person and day.
                key = f"volume:{flagged.actor_id}:{flagged.detail.get('review_day', flagged.occurred_at.date().isoformat())}"
            else:
                key = f"{reason}:{flagged.seq}"
            rows.append(
                {
                    "id": uuid.uuid4(),
                    "dedupe_key": key,
                    "seq": flagged.seq,
                    "reason": ReviewReason(reason),
                    "actor_id": flagged.actor_id,
                    "actor_agency": flagged.actor_agency,
                    "actor_role": flagged.actor_role,
                    "action": flagged.action,
                    "child_id": flagged.child_id,
                    "flagged_at": flagged.occurred_at,
                }
            )
    insert_missing(session, ReviewEntry, sorted(rows, key=lambda row: row["dedupe_key"]), unique=["dedupe_key"], returning="id")


def _drop_rolled_back(session: Session, previous_transaction: SessionTransaction) -> None:
    pending: list[_Pending] = session.info.get(_PENDING, [])
    session.info[_PENDING] = [kept for kept in pending if previous_transaction not in kept.transactions]


def install_auditor_hooks(factory: sessionmaker[Session], *, deferred: bool = False) -> None:
    """Make sessions of `factory` append kept events at commit (or stage them, `deferred`) and drop them on rollback.

    Deferred, a commit inserts its events into `audit_pending` without taking the trail's lock,
    and the integrator (gateway/ig/checkpointer.py) appends them, a batch at a time: the way for
    many concurrent writers. Otherwise each commit appends its own events under the lock.
    """
    event.listen(factory, "before_commit", _stage_pending if deferred else _append_pending)
    event.listen(factory, "after_soft_rollback", _drop_rolled_back)

"""The request's auditor: one way for the gateway to write the audit trail.

`Auditor.record` does not write at once. It keeps the event with the session, and the session
appends every kept event, in the order kept, with one call of `audit.record` (the trail's one
entry point) just before it commits. So the trail's lock, which serialises appenders, is taken
at commit and held for one multi-row insert, not for the whole request; the events still land in
the same transaction as what they record, or not at all. An event kept inside a savepoint that
is rolled back is dropped with it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from opentelemetry import trace
from sqlalchemy import event
from sqlalchemy.orm import Session, SessionTransaction, sessionmaker

from audit import Actor, AuditAction, AuditRecord, ItemDecisionRef, Outcome, record

from .errors import GatewayError

_PENDING = "gateway.audit.pending"

E = TypeVar("E", bound=GatewayError)


@dataclass(frozen=True)
class _Pending:
    entry: AuditRecord
    # The transactions open when the event was kept, innermost first: rolling back any of them
    # drops the event.
    transactions: tuple[SessionTransaction, ...]


def current_trace_id() -> str | None:
    """Return the current span's trace id as 32 hex digits, or None outside a trace."""
    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None


@dataclass
class Auditor:
    """Writes audit events for one unit of work: its session, its actor, its request and trace."""

    session: Session
    actor: Actor | None
    request_id: str | None = None
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
    ) -> None:
        """Keep an event, to be appended in this session's transaction when it commits."""
        entry = self._entry(action, outcome, actor, child_id, purpose, lawful_basis, policy_version, items, detail)
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
        entry = self._entry(action, outcome, actor, child_id, purpose, None, None, (), detail)
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
    ) -> AuditRecord:
        who = actor or self.actor
        if who is None:
            raise ValueError(f"an audit event of {action} needs an actor")
        return AuditRecord(
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
        )


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
    record(session, [kept.entry for kept in pending])


def _drop_rolled_back(session: Session, previous_transaction: SessionTransaction) -> None:
    pending: list[_Pending] = session.info.get(_PENDING, [])
    session.info[_PENDING] = [kept for kept in pending if previous_transaction not in kept.transactions]


def install_auditor_hooks(factory: sessionmaker[Session]) -> None:
    """Make sessions of `factory` append kept events at commit and drop them on rollback."""
    event.listen(factory, "before_commit", _append_pending)
    event.listen(factory, "after_soft_rollback", _drop_rolled_back)

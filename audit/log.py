"""The one way to write the audit trail (`record`), and the way to check it (`verify`)."""

from __future__ import annotations

import base64
import uuid
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

from sqlalchemy import event, insert, select, text
from sqlalchemy.orm import Session, sessionmaker

from .actions import ActorType, AuditAction, Outcome
from .hashing import GENESIS_HASH, canonical_bytes, canonical_bytes_of, event_hash, leaf_hash, merkle_root_of_leaf_hashes
from .models import AuditEvent

# Any fixed 64-bit number will do; it only has to be the same in every process.
_APPEND_LOCK_KEY = 0x4D414350_54415544  # "MACPTAUD"
_UUID_BYTES = 16


@dataclass(frozen=True)
class Actor:
    """Who acted, as the trail shows them."""

    type: ActorType
    id: str
    agency: str | None = None
    role: str | None = None


class ItemDecisionRef(NamedTuple):
    """One item and the decision taken on it, with the rule that took it.

    A named tuple rather than a frozen dataclass: a view makes one per item, hundreds at a
    time, and a tuple is built in a fraction of the time.
    """

    item: uuid.UUID
    decision: str
    rule: str


@dataclass(frozen=True)
class AuditRecord:
    """An event to append: what, who, about which child, on what basis, with which items."""

    action: AuditAction
    actor: Actor
    outcome: Outcome
    child_id: uuid.UUID | None = None
    purpose: str | None = None
    lawful_basis: str | None = None
    policy_version: str | None = None
    items: Sequence[ItemDecisionRef] = ()
    detail: Mapping[str, Any] = field(default_factory=dict)
    request_id: str | None = None
    trace_id: str | None = None


class AppendOnlyViolation(RuntimeError):
    """Something tried to change or delete an audit event."""


def record(session: Session, entries: Sequence[AuditRecord], *, now: datetime | None = None) -> list[AuditEvent]:
    """Append events to the trail, in the order given, in the caller's transaction; return them.

    Contract:
    - This is the only function that writes audit events. It never commits: the events land
      atomically with whatever they record, or not at all. An empty sequence writes nothing.
    - The events get consecutive seqs after the last one (1 for the very first), each prev_hash
      is the hash of the event before it (64 zeros for the first), and each hash is hex
      SHA-256(0x00 ‖ canonical bytes): both the chain link and the event's RFC 9162 Merkle leaf hash.
    - However many events, it sends the same statements: on PostgreSQL a transaction-scoped
      advisory lock that serialises appenders; one query for the tail; one multi-row INSERT (one
      more for every further thousand events). On any database the seq primary key and the unique
      hash make a fork impossible: a racing writer fails instead.
    - `items` are stored grouped, one group per (decision, rule), sorted by decision then rule:
      `{"decision": "disclose", "rule": "cp.health", "ids": "<base64url>"}`, where `ids` is the
      padded base64url (RFC 4648 §5) of the group's item UUIDs as 16 bytes each, sorted and
      concatenated. `decode_items` reads this form and the one-entry-per-item form of events
      written before it (`{"item": "<uuid>", "decision": …, "rule": …}`), which stay as they were
      stored: their hashes cover them.
    - `detail` must be JSON-serialisable and free of personal data (ids, counts and codes only);
      that is the caller's duty, because this package cannot tell a name from a code.
    """
    if not entries:
        return []
    # Each run of the suite takes only one side of this on its own database; the lock itself is
    # checked on every run by a test with a PostgreSQL-dialect session.
    if session.get_bind().dialect.name == "postgresql":  # pragma: no branch
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _APPEND_LOCK_KEY})
    tail = session.execute(select(AuditEvent.seq, AuditEvent.hash).order_by(AuditEvent.seq.desc()).limit(1)).first()
    seq, prev_hash = (0, GENESIS_HASH) if tail is None else (tail[0], tail[1])
    occurred = (now or datetime.now(UTC)).astimezone(UTC)
    rows = []
    for entry in entries:
        seq += 1
        row = _row(entry, seq=seq, occurred_at=occurred, prev_hash=prev_hash)
        row["hash"] = prev_hash = leaf_hash(canonical_bytes_of(row)).hex()
        rows.append(row)
    # RETURNING makes SQLAlchemy send one INSERT … VALUES (…), (…) per 1000 rows (insertmanyvalues)
    # on both drivers, where a plain executemany would send one INSERT per row; it also hands back
    # the events as persistent objects, so that the append-only guard watches them.
    inserted = insert(AuditEvent).returning(AuditEvent, sort_by_parameter_order=True)
    return list(session.scalars(inserted, rows))


def decode_items(stored: Sequence[Mapping[str, str]]) -> list[ItemDecisionRef]:
    """Return the item decisions an event's stored `items` hold, in either form `record` documents."""
    refs: list[ItemDecisionRef] = []
    for entry in stored:
        if "ids" not in entry:  # written before the grouped form: one entry per item
            refs.append(ItemDecisionRef(uuid.UUID(entry["item"]), entry["decision"], entry["rule"]))
            continue
        packed = base64.urlsafe_b64decode(entry["ids"])
        if len(packed) % _UUID_BYTES:
            raise ValueError(f"an items group holds {len(packed)} bytes of ids, not a multiple of {_UUID_BYTES}")
        refs.extend(
            ItemDecisionRef(uuid.UUID(bytes=packed[i : i + _UUID_BYTES]), entry["decision"], entry["rule"])
            for i in range(0, len(packed), _UUID_BYTES)
        )
    return refs


def _grouped(items: Sequence[ItemDecisionRef]) -> list[dict[str, str]]:
    groups: dict[tuple[str, str], list[bytes]] = defaultdict(list)
    for ref in items:
        groups[(ref.decision, ref.rule)].append(ref.item.bytes)
    return [
        {"decision": decision, "rule": rule, "ids": base64.urlsafe_b64encode(b"".join(sorted(ids))).decode("ascii")}
        for (decision, rule), ids in sorted(groups.items())
    ]


def _row(entry: AuditRecord, *, seq: int, occurred_at: datetime, prev_hash: str) -> dict[str, Any]:
    return {
        "seq": seq,
        "occurred_at": occurred_at,
        "actor_type": entry.actor.type.value,
        "actor_id": entry.actor.id,
        "actor_agency": entry.actor.agency,
        "actor_role": entry.actor.role,
        "action": entry.action.value,
        "outcome": entry.outcome.value,
        "child_id": entry.child_id,
        "purpose": entry.purpose,
        "lawful_basis": entry.lawful_basis,
        "policy_version": entry.policy_version,
        "items": _grouped(entry.items),
        "detail": dict(entry.detail),
        "request_id": entry.request_id,
        "trace_id": entry.trace_id,
        "prev_hash": prev_hash,
    }


@dataclass(frozen=True)
class VerificationResult:
    """What verify() found: whether the trail is intact, and if not, where it first breaks."""

    ok: bool
    events_checked: int
    first_broken_seq: int | None
    problem: str | None
    root_hash: str | None


def verify(session: Session, *, batch_size: int = 1000) -> VerificationResult:
    """Walk the whole trail in order and check every link of the chain.

    Contract:
    - Reads events in seq order, batch_size at a time (never the whole table at once).
    - Checks that seq runs 1, 2, 3… without a gap, that each prev_hash is the previous event's
      hash (64 zeros for the first), and that each hash matches the event's content.
    - Stops at the first broken event and names it; the problem text names seqs and what is
      wrong, never a column's value.
    - When intact, returns the RFC 9162 root over all events' leaf hashes.
    """
    expected_seq, prev_hash = 1, GENESIS_HASH
    leaves: list[bytes] = []
    while True:
        batch = session.scalars(
            select(AuditEvent).where(AuditEvent.seq >= expected_seq).order_by(AuditEvent.seq).limit(batch_size)
        ).all()
        if not batch:
            break
        for audit_event in batch:
            problem = _check(audit_event, expected_seq, prev_hash)
            if problem is not None:
                broken = min(audit_event.seq, expected_seq)
                return VerificationResult(False, len(leaves), broken, problem, None)
            leaves.append(leaf_hash(canonical_bytes(audit_event)))
            expected_seq, prev_hash = audit_event.seq + 1, audit_event.hash
        for audit_event in batch:
            session.expunge(audit_event)  # keep memory flat however long the trail
    root = merkle_root_of_leaf_hashes(leaves).hex() if leaves else None
    return VerificationResult(True, len(leaves), None, None, root)


def _check(audit_event: AuditEvent, expected_seq: int, prev_hash: str) -> str | None:
    if audit_event.seq != expected_seq:
        return (
            f"event {expected_seq} is missing: the sequence jumps from {expected_seq - 1} to {audit_event.seq}"
        )
    if audit_event.prev_hash != prev_hash:
        previous = f"event {expected_seq - 1}" if expected_seq > 1 else "the genesis value"
        return f"event {audit_event.seq}: prev_hash does not match {previous} (re-chained or reordered)"
    if event_hash(audit_event) != audit_event.hash:
        return f"event {audit_event.seq}: content does not match its hash (altered after it was written)"
    return None


def install_append_only_guard(target: sessionmaker[Session] | type[Session]) -> None:
    """Refuse, at flush, any update or delete of an audit event through sessions of `target`."""

    @event.listens_for(target, "before_flush")
    def _refuse_changes(session: Session, _context: object, _instances: object) -> None:
        for instance in session.dirty:
            if isinstance(instance, AuditEvent) and session.is_modified(instance):
                raise AppendOnlyViolation(f"audit event {instance.seq} may not be changed")
        for instance in session.deleted:
            if isinstance(instance, AuditEvent):
                raise AppendOnlyViolation(f"audit event {instance.seq} may not be deleted")

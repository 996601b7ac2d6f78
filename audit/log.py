"""The one way to write the audit trail (`record`), and what it stores."""

from __future__ import annotations

import base64
import uuid
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

from sqlalchemy import ARRAY, BigInteger, ColumnElement, any_, bindparam, delete, event, insert, select, text
from sqlalchemy.orm import Session, sessionmaker

from .actions import ActorType, AuditAction, Outcome, ReviewReason
from .hashing import GENESIS_HASH, HASHED_COLUMNS, canonical_bytes_of, leaf_hash
from .models import AuditCheckpoint, AuditEvent, AuditNode, AuditPending
from .store import compact_range

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
    # Flags for the IG review queue; stored, sorted, as detail["review"] (hashed with the event).
    review: Sequence[ReviewReason] = ()


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
    - Each event is a leaf of the RFC 9162 tree (leaf index = seq - 1); the perfect subtrees its
      leaf completes are stored in `audit_node` (audit/tree.py), never recomputed.
    - However many events, it sends the same statements: on PostgreSQL a transaction-scoped
      advisory lock that serialises appenders; one query for the tail; at most two for the tree's
      right edge (its perfect subtrees); one multi-row INSERT of events (one more for every
      further thousand) and one of the nodes they complete. On any database the seq primary key
      and the unique hash make a fork impossible: a racing writer fails instead.
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
    _lock(session)
    occurred = (now or datetime.now(UTC)).astimezone(UTC)
    return _append(session, [_content(entry, occurred_at=occurred) for entry in entries], page=1000)


def stage(session: Session, entries: Sequence[AuditRecord], *, now: datetime | None = None) -> int:
    """Keep events in `audit_pending`, in the caller's transaction, for `integrate` to append; return how many.

    The deferred way to write the trail, for a busy service: a request's transaction inserts its
    events as pending rows, taking no lock, and commits with them; `integrate` later gives them
    their seqs, chain links and Merkle leaves in large batches, under the lock that `record` takes.
    An event is thus in the database with what it records (same transaction) at once, and in the
    tamper-evident trail once integrated. Pending rows keep their time; `items`, `detail` and
    `review` are stored as `record` stores them.
    """
    if not entries:
        return 0
    occurred = (now or datetime.now(UTC)).astimezone(UTC)
    session.execute(
        insert(AuditPending).execution_options(render_nulls=True),
        [_content(entry, occurred_at=occurred) for entry in entries],
    )
    return len(entries)


def integrate(session: Session, *, limit: int = 10_000, wait: bool = True) -> list[AuditEvent]:
    """Append up to `limit` pending events to the trail, oldest first, and delete them from `audit_pending`.

    Takes the append lock as `record` does (with `wait=False`, returns nothing at once if another
    process holds it, on PostgreSQL). Never commits: appended and deleted together, or neither.
    Returns the events appended, in seq order.
    """
    if not _lock(session, wait=wait):
        return []
    pending = session.execute(
        select(AuditPending.id, *(getattr(AuditPending, name) for name in _CONTENT)).order_by(AuditPending.id).limit(limit)
    ).all()
    if not pending:
        return []
    events = _append(session, [{name: row._mapping[name] for name in _CONTENT} for row in pending], page=100)
    ids = [row.id for row in pending]
    session.execute(delete(AuditPending).where(_pending_with_ids(session.get_bind().dialect.name, ids)))
    return events


def _pending_with_ids(dialect: str, ids: list[int]) -> ColumnElement[bool]:
    """Return the condition for exactly these pending rows (never a range: a lower id may commit later).

    On PostgreSQL one array parameter, where ten thousand placeholders would cost more to parse.
    """
    if dialect == "postgresql":
        return AuditPending.id == any_(bindparam("ids", ids, type_=ARRAY(BigInteger)))
    return AuditPending.id.in_(ids)


def _lock(session: Session, *, wait: bool = True) -> bool:
    # Each run of the suite takes only one side of this on its own database; the lock itself is
    # checked on every run by a test with a PostgreSQL-dialect session.
    if session.get_bind().dialect.name != "postgresql":  # pragma: no branch
        return True  # SQLite: BEGIN IMMEDIATE already made this the one writer
    if wait:
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _APPEND_LOCK_KEY})
        return True
    return bool(session.scalar(text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": _APPEND_LOCK_KEY}))


def _append(session: Session, contents: Sequence[dict[str, Any]], *, page: int) -> list[AuditEvent]:
    """Chain and hash events' contents after the tail, store them and the nodes they complete (lock held).

    `page`: rows a statement. A request's events go in one (up to a thousand); an integrator's
    thousands in pages of 100, because the driver parses a page's placeholders anew each time, and
    a thousand rows' 18,000 of them cost more than ten statements (340 µs an event, not 440).
    """
    tail = session.execute(select(AuditEvent.seq, AuditEvent.hash).order_by(AuditEvent.seq.desc()).limit(1)).first()
    seq, prev_hash = (0, GENESIS_HASH) if tail is None else (tail[0], tail[1])
    tree = compact_range(session, seq, known={} if tail is None else {(0, seq - 1): bytes.fromhex(prev_hash)})
    rows = []
    nodes: list[dict[str, Any]] = []
    for content in contents:
        seq += 1
        row = {**content, "seq": seq, "prev_hash": prev_hash}
        leaf = leaf_hash(canonical_bytes_of(row))
        row["hash"] = prev_hash = leaf.hex()
        rows.append(row)
        nodes.extend({"level": level, "position": position, "hash": node} for (level, position), node in tree.append(leaf))
    # RETURNING makes SQLAlchemy send one INSERT … VALUES (…), (…) per page of rows (insertmanyvalues)
    # on both drivers, where a plain executemany would send one INSERT per row; it also hands back
    # the events as persistent objects, so that the append-only guard watches them. render_nulls:
    # rows whose None columns differ (a view's event beside a push's) still share one statement,
    # where SQLAlchemy would otherwise start a new INSERT at every change of the columns set.
    inserted = (
        insert(AuditEvent)
        .returning(AuditEvent, sort_by_parameter_order=True)
        .execution_options(render_nulls=True, insertmanyvalues_page_size=page)
    )
    events = list(session.scalars(inserted, rows))
    if nodes:
        session.execute(insert(AuditNode), nodes)
    return events


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


# The columns of an event's content: all it holds but its place in the trail (seq, prev_hash, hash).
_CONTENT = tuple(name for name in HASHED_COLUMNS if name not in ("seq", "prev_hash"))


def _content(entry: AuditRecord, *, occurred_at: datetime) -> dict[str, Any]:
    return {
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
        "detail": {**entry.detail, "review": sorted({reason.value for reason in entry.review})} if entry.review else dict(entry.detail),
        "request_id": entry.request_id,
        "trace_id": entry.trace_id,
    }


_APPEND_ONLY = (AuditEvent, AuditNode, AuditCheckpoint)


def install_append_only_guard(target: sessionmaker[Session] | type[Session]) -> None:
    """Refuse, at flush, any update or delete of an audit event, node or checkpoint through sessions of `target`."""

    @event.listens_for(target, "before_flush")
    def _refuse_changes(session: Session, _context: object, _instances: object) -> None:
        for instance in session.dirty:
            if isinstance(instance, _APPEND_ONLY) and session.is_modified(instance):
                raise AppendOnlyViolation(f"{_describe(instance)} may not be changed")
        for instance in session.deleted:
            if isinstance(instance, _APPEND_ONLY):
                raise AppendOnlyViolation(f"{_describe(instance)} may not be deleted")


def _describe(instance: AuditEvent | AuditNode | AuditCheckpoint) -> str:
    if isinstance(instance, AuditEvent):
        return f"audit event {instance.seq}"
    if isinstance(instance, AuditNode):
        return f"audit node {instance.level}/{instance.position}"
    return f"audit checkpoint {instance.tree_size}"

"""The stored tree: fetching its nodes, signing checkpoints, and serving proofs.

Every function reads committed rows in the caller's session and writes nothing but a checkpoint;
none commits.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import and_, func, or_, select, text, tuple_
from sqlalchemy.orm import Session

from .checkpoint import NoteSigner
from .models import AuditCheckpoint, AuditEvent, AuditNode
from .tree import CompactRange, Node, ProofError, consistency_spans, inclusion_spans, nodes_for, span_hash, span_nodes

# Any fixed 64-bit number will do; it only has to be the same in every process, and differ from
# the append lock's so that signing never waits for appenders.
_CHECKPOINT_LOCK_KEY = 0x4D414350_43484B50  # "MACPCHKP"


class UnknownTreeSize(LookupError):
    """No checkpoint of the size asked for, or no event of the seq asked for."""


@dataclass(frozen=True)
class InclusionProof:
    """RFC 9162 §2.1.3: the path from one leaf to the root of a tree of `tree_size` leaves."""

    leaf_index: int
    tree_size: int
    leaf_hash: bytes
    path: list[bytes]


@dataclass(frozen=True)
class ConsistencyProof:
    """RFC 9162 §2.1.4: the hashes that show the tree of `first` leaves is a prefix of that of `second`."""

    first: int
    second: int
    path: list[bytes]


def fetch_nodes(session: Session, wanted: Collection[Node]) -> dict[Node, bytes]:
    """Return the hashes of the wanted nodes: level 0 from the events, the rest from audit_node.

    Raises ProofError naming a node the store lacks (which `verify` would also report).
    """
    leaves = sorted(position for level, position in wanted if level == 0)
    interior = sorted(node for node in wanted if node[0] > 0)
    found: dict[Node, bytes] = {}
    if leaves:
        rows = session.execute(select(AuditEvent.seq, AuditEvent.hash).where(AuditEvent.seq.in_([p + 1 for p in leaves])))
        found.update({(0, seq - 1): bytes.fromhex(hex_hash) for seq, hex_hash in rows})
    if interior:
        stored = session.execute(
            select(AuditNode.level, AuditNode.position, AuditNode.hash).where(
                tuple_(AuditNode.level, AuditNode.position).in_(interior)
            )
        )
        found.update({(level, position): node_hash for level, position, node_hash in stored})
    for node in wanted:
        if node not in found:
            raise ProofError(f"the stored tree lacks node {node[0]}/{node[1]}")
    return found


def compact_range(session: Session, size: int, *, known: Mapping[Node, bytes] | None = None) -> CompactRange:
    """Return the tree of `size` leaves as its perfect subtrees, read from the store.

    `known` holds node hashes the caller already has (the appender knows the last leaf's).
    """
    known = known or {}
    nodes = span_nodes((0, size))
    found = {**fetch_nodes(session, [node for node in nodes if node not in known]), **known}
    return CompactRange(size, [found[node] for node in nodes])


def nodes_completed_within(session: Session, first_leaf: int, last_leaf: int) -> dict[Node, bytes]:
    """Return the stored interior nodes whose last leaf lies in [first_leaf, last_leaf]."""
    ranges = []
    level = 1
    while (1 << level) <= last_leaf + 1:
        # Node (level, p) is complete once leaf (p + 1) · 2^level - 1 is in.
        low = -(-(first_leaf + 1) // (1 << level)) - 1
        high = (last_leaf + 1) // (1 << level) - 1
        if low <= high:
            ranges.append(and_(AuditNode.level == level, AuditNode.position.between(low, high)))
        level += 1
    if not ranges:
        return {}
    rows = session.execute(select(AuditNode.level, AuditNode.position, AuditNode.hash).where(or_(*ranges)))
    return {(level, position): node_hash for level, position, node_hash in rows}


def tree_size(session: Session) -> int:
    """Return how many events the trail holds (committed ones, as this session sees them)."""
    return int(session.scalar(select(func.coalesce(func.max(AuditEvent.seq), 0))) or 0)


def root_at(session: Session, size: int) -> bytes:
    """Return the RFC 9162 root of the tree of the first `size` events."""
    return compact_range(session, size).root()


def latest_checkpoint(session: Session) -> AuditCheckpoint | None:
    """Return the newest stored checkpoint, or None before the first."""
    return session.scalars(select(AuditCheckpoint).order_by(AuditCheckpoint.tree_size.desc()).limit(1)).first()


def checkpoint_of_size(session: Session, size: int) -> AuditCheckpoint:
    """Return the stored checkpoint of a tree size; raise UnknownTreeSize when there is none."""
    found = session.get(AuditCheckpoint, size)
    if found is None:
        raise UnknownTreeSize(f"no checkpoint of tree size {size}")
    return found


def sign_checkpoint(session: Session, signer: NoteSigner, *, now: datetime | None = None) -> AuditCheckpoint:
    """Sign and store a checkpoint of the trail as it stands, unless the newest one already covers it.

    Contract: on PostgreSQL a transaction-scoped advisory lock lets one signer at a time look and
    sign (another process waits, then finds the checkpoint made); the checkpoint is of the events
    committed when the lock was taken. Returns the checkpoint, new or not. Never commits.
    """
    if session.get_bind().dialect.name == "postgresql":  # pragma: no branch
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _CHECKPOINT_LOCK_KEY})
    size = tree_size(session)
    latest = latest_checkpoint(session)
    if latest is not None and latest.tree_size >= size:
        return latest
    root = root_at(session, size)
    signed = AuditCheckpoint(
        tree_size=size,
        root_hash=root,
        note=signer.sign(size, root),
        signed_at=(now or datetime.now(UTC)).astimezone(UTC),
    )
    session.add(signed)
    session.flush()
    return signed


def inclusion_proof(session: Session, seq: int, tree_size: int) -> InclusionProof:
    """Return the inclusion proof of event `seq` in the tree of `tree_size` events."""
    if seq < 1 or seq > tree_size:
        raise UnknownTreeSize(f"event {seq} is not in a tree of {tree_size} events")
    spans = inclusion_spans(seq - 1, tree_size)
    nodes = fetch_nodes(session, nodes_for(spans) | {(0, seq - 1)})
    return InclusionProof(seq - 1, tree_size, nodes[(0, seq - 1)], [span_hash(span, nodes) for span in spans])


def consistency_proof(session: Session, first: int, second: int) -> ConsistencyProof:
    """Return the consistency proof between the trees of `first` and `second` events."""
    spans = consistency_spans(first, second)
    nodes = fetch_nodes(session, nodes_for(spans))
    return ConsistencyProof(first, second, [span_hash(span, nodes) for span in spans])


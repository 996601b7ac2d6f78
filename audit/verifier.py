"""Checking the trail: every event, every stored node and every checkpoint, or from a trusted checkpoint on.

`verify` trusts nothing the database holds: it recomputes each event's leaf hash from its content,
the chain from the first event (or from a checkpoint the caller trusts), each perfect subtree the
store keeps, and each checkpoint's root, and checks each checkpoint's signature with the public key
the caller gives. It names the first bad event, or the first bad checkpoint, and what is wrong with
it, never a column's value.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Row, func, select
from sqlalchemy.orm import Session

from .checkpoint import Checkpoint, CheckpointError, NoteVerifier
from .hashing import GENESIS_HASH, HASHED_COLUMNS, canonical_bytes_of, leaf_hash
from .models import AuditCheckpoint, AuditEvent, AuditNode, AuditPending
from .store import compact_range, fetch_nodes, nodes_completed_within
from .tree import CompactRange, Node, ProofError, inclusion_spans, nodes_for, span_hash, verify_inclusion

_EVENT_COLUMNS = [getattr(AuditEvent, name) for name in (*HASHED_COLUMNS, "hash")]
_CHECKPOINT_COLUMNS = [AuditCheckpoint.tree_size, AuditCheckpoint.root_hash, AuditCheckpoint.note]


@dataclass(frozen=True)
class VerificationResult:
    """What verify() found: whether the trail is intact, and if not, where it first breaks.

    `first_broken_seq` names an event; `bad_checkpoint` names a checkpoint by its tree size.
    """

    ok: bool
    events_checked: int
    first_broken_seq: int | None
    problem: str | None
    root_hash: str | None
    checkpoints_checked: int = 0
    signatures_checked: bool = False
    bad_checkpoint: int | None = None
    # Events staged by requests and not yet integrated: in the database, not yet in the tree.
    pending: int = 0


class _Broken(Exception):
    def __init__(self, problem: str, *, seq: int | None = None, checkpoint: int | None = None) -> None:
        super().__init__(problem)
        self.problem, self.seq, self.checkpoint = problem, seq, checkpoint


def verify(
    session: Session,
    *,
    verifier: NoteVerifier | None = None,
    trusted: Checkpoint | None = None,
    batch_size: int = 5000,
) -> VerificationResult:
    """Check the trail, from its first event or from a trusted checkpoint onwards.

    Contract:
    - Reads events in seq order, batch_size at a time, as plain rows (memory stays flat).
    - Events: seq runs on without a gap; each prev_hash is the previous event's hash (64 zeros
      for the first); each hash is the leaf hash of the event's content.
    - The tree: every stored perfect subtree equals the one the events make.
    - Checkpoints: each root equals the root of the events up to its size; no checkpoint is
      larger than the trail; with a verifier key, each note's signature verifies and its body
      says the size and root stored beside it. Without one, signatures are not checked, and the
      result says so (`signatures_checked`).
    - `trusted` (a checkpoint the caller has verified, e.g. from an earlier run): the stored tree
      must reproduce its root and hold its last event; only events after it are walked.
    - Stops at the first problem and names it. When intact, returns the root over all events, and
      how many staged events wait to be integrated (in the database, not yet in the tree).
    """
    walk = _Walk(session, verifier, batch_size)
    try:
        walk.start(trusted)
        walk.run()
    except _Broken as broken:
        return VerificationResult(
            ok=False,
            events_checked=walk.checked,
            first_broken_seq=broken.seq,
            problem=broken.problem,
            root_hash=None,
            checkpoints_checked=walk.checkpoints,
            signatures_checked=verifier is not None,
            bad_checkpoint=broken.checkpoint,
        )
    return VerificationResult(
        ok=True,
        events_checked=walk.checked,
        first_broken_seq=None,
        problem=None,
        root_hash=walk.tree.root().hex() if walk.tree.size else None,
        checkpoints_checked=walk.checkpoints,
        signatures_checked=verifier is not None,
        pending=session.scalar(select(func.count()).select_from(AuditPending)) or 0,
    )


class _Walk:
    def __init__(self, session: Session, verifier: NoteVerifier | None, batch_size: int) -> None:
        self.session, self.verifier, self.batch_size = session, verifier, batch_size
        self.tree = CompactRange.empty()
        self.prev_hash = GENESIS_HASH
        self.checked = 0
        self.checkpoints = 0
        # The nodes the last event completed, with the stored ones they are checked against. They
        # are checked after the next event's link: a rewritten event is then named by the next
        # event's prev_hash, and a node is named only when every event under it is sound.
        self.pending: list[tuple[Node, bytes]] = []
        self.stored_nodes: dict[Node, bytes] = {}

    def start(self, trusted: Checkpoint | None) -> None:
        if trusted is None or trusted.tree_size == 0:
            return
        size = trusted.tree_size
        try:
            tree = compact_range(self.session, size)
            spans = inclusion_spans(size - 1, size)
            path_nodes = fetch_nodes(self.session, nodes_for(spans))
        except ProofError as missing:
            raise _Broken(f"the trusted checkpoint of size {size}: {missing}", checkpoint=size) from None
        if tree.root() != trusted.root_hash:
            raise _Broken(
                f"the stored tree does not reproduce the trusted checkpoint of size {size} "
                "(events or nodes before it were altered)",
                checkpoint=size,
            )
        last = self.session.execute(select(*_EVENT_COLUMNS).where(AuditEvent.seq == size)).first()
        if last is None:
            raise _Broken(f"event {size}, the last of the trusted checkpoint, is missing", seq=size)
        leaf = leaf_hash(canonical_bytes_of(last._mapping))
        if leaf.hex() != last.hash:
            raise _Broken(f"event {size}: content does not match its hash (altered after it was written)", seq=size)
        try:
            verify_inclusion(
                leaf_index=size - 1,
                tree_size=size,
                leaf_hash=leaf,
                path=[span_hash(span, path_nodes) for span in spans],
                root=trusted.root_hash,
            )
        except ProofError:
            raise _Broken(f"event {size} is not the last event of the trusted checkpoint", seq=size) from None
        self.tree, self.prev_hash = tree, last.hash

    def run(self) -> None:
        self._checkpoints_of_empty_tree()
        while True:
            rows = self.session.execute(
                select(*_EVENT_COLUMNS)
                .where(AuditEvent.seq > self.tree.size)
                .order_by(AuditEvent.seq)
                .limit(self.batch_size)
            ).all()
            if not rows:
                break
            self._batch(rows)
        self._check_pending()
        beyond = self.session.scalars(
            select(AuditCheckpoint.tree_size)
            .where(AuditCheckpoint.tree_size > self.tree.size)
            .order_by(AuditCheckpoint.tree_size)
            .limit(1)
        ).first()
        if beyond is not None:
            raise _Broken(
                f"checkpoint {beyond} covers more events than the trail holds ({self.tree.size}): "
                "events were deleted from its end",
                checkpoint=beyond,
            )
        stray = self.session.execute(
            select(AuditNode.level, AuditNode.position)
            .where(((AuditNode.position + 1) * func.power(2, AuditNode.level)) > self.tree.size)
            .limit(1)
        ).first()
        if stray is not None:
            raise _Broken(
                f"stored node {stray.level}/{stray.position} covers events the trail does not hold: "
                "events were deleted from its end"
            )

    def _checkpoints_of_empty_tree(self) -> None:
        if self.tree.size:
            return
        for stored in self.session.execute(select(*_CHECKPOINT_COLUMNS).where(AuditCheckpoint.tree_size == 0)):
            self._checkpoint(stored)

    def _batch(self, rows: Sequence[Row[Any]]) -> None:
        first_leaf = self.tree.size
        last_leaf = first_leaf + len(rows) - 1
        # Read as plain rows, not ORM objects: a session's cached copy must not stand in for the row.
        checkpoints = {
            stored.tree_size: stored
            for stored in self.session.execute(
                select(*_CHECKPOINT_COLUMNS).where(
                    AuditCheckpoint.tree_size > first_leaf, AuditCheckpoint.tree_size <= last_leaf + 1
                )
            )
        }
        # The stored nodes the previous batch's last event completed are still to be checked.
        self.stored_nodes = nodes_completed_within(self.session, max(first_leaf - 1, 0), last_leaf)
        for row in rows:
            self._event(row._mapping)
            # Checked event by event, never at a batch's end: the first problem named is the same
            # whatever the batch size.
            self._check_pending()
            self.pending = self.tree.append(bytes.fromhex(row.hash))
            self.checked += 1
            stored = checkpoints.get(self.tree.size)
            if stored is not None:
                self._checkpoint(stored)

    def _event(self, event: Mapping[Any, Any]) -> None:
        expected = self.tree.size + 1
        seq = event["seq"]
        if seq != expected:
            raise _Broken(f"event {expected} is missing: the sequence jumps from {expected - 1} to {seq}", seq=expected)
        if event["prev_hash"] != self.prev_hash:
            previous = f"event {expected - 1}" if expected > 1 else "the genesis value"
            raise _Broken(f"event {seq}: prev_hash does not match {previous} (re-chained or reordered)", seq=seq)
        if leaf_hash(canonical_bytes_of(event)).hex() != event["hash"]:
            raise _Broken(f"event {seq}: content does not match its hash (altered after it was written)", seq=seq)
        self.prev_hash = event["hash"]

    def _checkpoint(self, stored: Any) -> None:  # a row of _CHECKPOINT_COLUMNS
        size = stored.tree_size
        if stored.root_hash != self.tree.root():
            raise _Broken(f"checkpoint {size}: its root is not the root of events 1 to {size}", checkpoint=size)
        if self.verifier is not None:
            try:
                signed = self.verifier.open(stored.note)
            except CheckpointError as bad:
                raise _Broken(f"checkpoint {size}: {bad}", checkpoint=size) from None
            if (signed.tree_size, signed.root_hash) != (size, stored.root_hash):
                raise _Broken(f"checkpoint {size}: the signed note is of another tree", checkpoint=size)
        self.checkpoints += 1

    def _check_pending(self) -> None:
        for (level, position), made in self.pending:
            events = f"events {position * 2**level + 1} to {(position + 1) * 2**level}"
            stored = self.stored_nodes.get((level, position))
            if stored is None:
                raise _Broken(f"the stored tree lacks node {level}/{position}, over {events} (deleted)")
            if stored != made:
                raise _Broken(f"stored node {level}/{position} does not match {events} (altered)")
        self.pending = []

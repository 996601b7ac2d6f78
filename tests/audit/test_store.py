"""The stored tree: checkpoints signed once per size, proofs served from audit_node, and rows kept as written."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import create_engine, delete, func, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from audit import (
    Actor,
    ActorType,
    AppendOnlyViolation,
    AuditAction,
    AuditCheckpoint,
    AuditEvent,
    AuditNode,
    AuditRecord,
    NoteSigner,
    Outcome,
    ProofError,
    ReviewReason,
    UnknownTreeSize,
    checkpoint_of_size,
    consistency_proof,
    inclusion_proof,
    latest_checkpoint,
    record,
    sign_checkpoint,
    tree_size,
    verify,
    verify_consistency,
    verify_inclusion,
)
from audit.hashing import EMPTY_ROOT, merkle_root_of_leaf_hashes
from audit.store import compact_range, fetch_nodes, nodes_completed_within, root_at
from audit.tree import CompactRange
from tests.tamper import disable_audit_triggers

ORIGIN = "test.example/audit"
SIGNER = NoteSigner.generate(ORIGIN)
ACTOR = Actor(ActorType.CLIENT, "trust-epr", "health")


def _entry(**overrides: Any) -> AuditRecord:
    return dataclasses.replace(
        AuditRecord(action=AuditAction.CLIENT_RECORDS_PUSHED, actor=ACTOR, outcome=Outcome.SUCCESS), **overrides
    )


def _append(session: Session, count: int) -> int:
    """Append `count` events, one transaction's worth at a time; return the trail's size before them."""
    before = tree_size(session)
    for n in range(count):
        record(session, [_entry(detail={"n": n})])
    return before


def _aligned(session: Session, multiple: int = 8) -> int:
    """Append events until the trail's size is a multiple of `multiple`; return that size."""
    size = tree_size(session)
    if size % multiple:
        record(session, [_entry() for _ in range(-size % multiple)])
    return tree_size(session)


def _leaf_hashes(session: Session) -> list[bytes]:
    return [bytes.fromhex(h) for h in session.scalars(select(AuditEvent.hash).order_by(AuditEvent.seq))]


def _checkpoint_count(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(AuditCheckpoint)) or 0)


# --- tree_size and sign_checkpoint ------------------------------------------------------------------


def test_tree_size_counts_the_events_appended(session: Session) -> None:
    before = _append(session, 3)
    record(session, [_entry(), _entry()])

    assert tree_size(session) == before + 5


def test_a_checkpoint_is_signed_once_per_size(session: Session) -> None:
    before = _append(session, 3)
    rows = _checkpoint_count(session)

    first = sign_checkpoint(session, SIGNER, now=datetime(2026, 3, 1, 12, tzinfo=UTC))
    again = sign_checkpoint(session, SIGNER)

    assert first.tree_size == before + 3
    assert first.root_hash == root_at(session, before + 3)
    assert again.tree_size == first.tree_size and again.note == first.note
    assert _checkpoint_count(session) == rows + 1
    signed = SIGNER.verifier().open(first.note)
    assert (signed.origin, signed.tree_size, signed.root_hash) == (ORIGIN, first.tree_size, first.root_hash)
    stored = checkpoint_of_size(session, first.tree_size)
    assert stored.signed_at.replace(tzinfo=stored.signed_at.tzinfo or UTC) == datetime(2026, 3, 1, 12, tzinfo=UTC)


def test_a_longer_trail_gets_a_new_checkpoint_and_the_latest_is_the_largest(session: Session) -> None:
    before = _append(session, 2)
    first = sign_checkpoint(session, SIGNER).tree_size
    _append(session, 4)

    second = sign_checkpoint(session, SIGNER)
    latest = latest_checkpoint(session)

    assert (first, second.tree_size) == (before + 2, before + 6)
    assert latest is not None and latest.tree_size == before + 6
    assert checkpoint_of_size(session, first).tree_size == first
    assert verify(session, verifier=SIGNER.verifier()).ok


def test_the_empty_trail_gets_the_checkpoint_of_the_empty_tree(session: Session) -> None:
    if tree_size(session) or latest_checkpoint(session) is not None:
        pytest.skip("the shared test database already holds committed events or checkpoints")

    signed = sign_checkpoint(session, SIGNER)

    assert (signed.tree_size, signed.root_hash) == (0, EMPTY_ROOT)
    assert SIGNER.verifier().open(signed.note).tree_size == 0
    assert sign_checkpoint(session, SIGNER).tree_size == 0 and _checkpoint_count(session) == 1


def test_postgresql_signers_take_the_checkpoint_lock_first(monkeypatch: pytest.MonkeyPatch) -> None:
    """Checked without a server too, so the lock is proven on every run, not only on PostgreSQL."""
    statements: list[str] = []
    newest = AuditCheckpoint(tree_size=5, root_hash=b"\x00" * 32, note="", signed_at=datetime(2026, 1, 1, tzinfo=UTC))

    class _Result:
        def first(self) -> AuditCheckpoint:
            return newest

    def execute(statement: object, params: object = None) -> None:
        statements.append(str(statement))

    def scalar(statement: object) -> int:
        statements.append(str(statement))
        return 5

    def scalars(statement: object) -> _Result:
        statements.append(str(statement))
        return _Result()

    # A real session on a PostgreSQL engine that never connects: what it would send is recorded instead.
    engine = create_engine("postgresql+psycopg://nobody@127.0.0.1:1/none")
    with Session(engine) as pg_session:
        monkeypatch.setattr(pg_session, "execute", execute)
        monkeypatch.setattr(pg_session, "scalar", scalar)
        monkeypatch.setattr(pg_session, "scalars", scalars)

        signed = sign_checkpoint(pg_session, SIGNER)
    engine.dispose()

    # The newest checkpoint covers the trail (5 events): it is returned, after the lock was taken.
    assert signed is newest
    assert len(statements) == 3
    assert "pg_advisory_xact_lock" in statements[0]
    assert "FROM audit_event" in statements[1] and "FROM audit_checkpoint" in statements[2]


def test_checkpoint_of_size_refuses_a_size_never_signed(session: Session) -> None:
    before = _append(session, 3)
    sign_checkpoint(session, SIGNER)

    for size in (before + 2, before + 4):
        with pytest.raises(UnknownTreeSize, match=f"no checkpoint of tree size {size}$"):
            checkpoint_of_size(session, size)


# --- roots and nodes -------------------------------------------------------------------------------------


def test_root_at_is_the_rfc9162_root_of_the_first_events(session: Session) -> None:
    _append(session, 13)
    leaves = _leaf_hashes(session)

    assert root_at(session, 0) == EMPTY_ROOT
    for size in range(1, len(leaves) + 1):
        assert root_at(session, size) == merkle_root_of_leaf_hashes(leaves[:size]), size


def test_the_stored_nodes_are_those_the_events_make(session: Session) -> None:
    start = _aligned(session)
    _append(session, 11)
    tree = CompactRange.empty()
    made: dict[tuple[int, int], bytes] = {}
    for leaf in _leaf_hashes(session):
        made.update(tree.append(leaf))

    within = nodes_completed_within(session, start, start + 10)

    assert within == {node: h for node, h in made.items() if start <= ((node[1] + 1) << node[0]) - 1 <= start + 10}
    assert (1, start // 2) in within and (3, start // 8) in within and (2, start // 4 + 2) not in within
    # A range no node ends in: a single even leaf, and a run below the first pair.
    assert nodes_completed_within(session, start + 2, start + 2) == {}
    assert nodes_completed_within(session, 0, 0) == {}


def test_compact_range_takes_known_nodes_instead_of_reading_them(session: Session) -> None:
    start = _aligned(session)
    _append(session, 3)
    size = start + 3
    last = (0, size - 1)
    disable_audit_triggers(session)
    session.execute(delete(AuditEvent).where(AuditEvent.seq == size))

    with pytest.raises(ProofError, match=f"lacks node 0/{size - 1}"):
        compact_range(session, size)
    tree = compact_range(session, size, known={last: b"\x01" * 32})

    assert tree.size == size and tree.hashes[-1] == b"\x01" * 32


def test_fetch_nodes_reads_leaves_from_events_and_the_rest_from_audit_node(session: Session) -> None:
    start = _aligned(session)
    _append(session, 4)
    leaves = _leaf_hashes(session)

    found = fetch_nodes(session, [(0, start), (0, start + 3), (2, start // 4)])

    assert found == {
        (0, start): leaves[start],
        (0, start + 3): leaves[start + 3],
        (2, start // 4): merkle_root_of_leaf_hashes(leaves[start : start + 4]),
    }
    assert fetch_nodes(session, []) == {}


@pytest.mark.parametrize("missing", ["node", "event"])
def test_fetch_nodes_names_a_missing_row(session: Session, missing: str) -> None:
    start = _aligned(session)
    _append(session, 4)
    disable_audit_triggers(session)
    if missing == "node":
        session.execute(delete(AuditNode).where(AuditNode.level == 1, AuditNode.position == start // 2 + 1))
        wanted, name = [(1, start // 2), (1, start // 2 + 1)], f"1/{start // 2 + 1}"
    else:
        session.execute(delete(AuditEvent).where(AuditEvent.seq == start + 2))
        wanted, name = [(0, start), (0, start + 1), (1, start // 2 + 1)], f"0/{start + 1}"

    with pytest.raises(ProofError, match=f"the stored tree lacks node {name}$"):
        fetch_nodes(session, wanted)


# --- proofs -----------------------------------------------------------------------------------------------


def test_every_inclusion_proof_verifies_against_the_root(session: Session) -> None:
    before = _append(session, 9)
    leaves = _leaf_hashes(session)

    for size in (before + 1, before + 4, before + 9):
        root = root_at(session, size)
        for seq in range(max(1, size - 9), size + 1):
            proof = inclusion_proof(session, seq, size)
            assert (proof.leaf_index, proof.tree_size, proof.leaf_hash) == (seq - 1, size, leaves[seq - 1])
            verify_inclusion(
                leaf_index=proof.leaf_index, tree_size=size, leaf_hash=proof.leaf_hash, path=proof.path, root=root
            )


def test_an_inclusion_proof_does_not_lead_to_another_root(session: Session) -> None:
    before = _append(session, 6)
    size = before + 6
    proof = inclusion_proof(session, size - 2, size)

    with pytest.raises(ProofError, match="does not lead to the root"):
        verify_inclusion(
            leaf_index=proof.leaf_index,
            tree_size=size,
            leaf_hash=proof.leaf_hash,
            path=proof.path,
            root=root_at(session, size - 1),
        )


@pytest.mark.parametrize("where", ["zero", "negative", "beyond"])
def test_an_inclusion_proof_of_an_event_outside_the_tree_is_refused(session: Session, where: str) -> None:
    before = _append(session, 3)
    size = before + 3
    seq = {"zero": 0, "negative": -1, "beyond": size + 1}[where]

    with pytest.raises(UnknownTreeSize, match=f"event {seq} is not in a tree of {size} events"):
        inclusion_proof(session, seq, size)


def test_every_consistency_proof_verifies_between_the_roots(session: Session) -> None:
    before = _append(session, 9)
    sizes = range(before + 1, before + 10)

    for first in sizes:
        for second in sizes:
            if first > second:
                continue
            proof = consistency_proof(session, first, second)
            assert (proof.first, proof.second) == (first, second)
            verify_consistency(
                first=first,
                second=second,
                first_root=root_at(session, first),
                second_root=root_at(session, second),
                path=proof.path,
            )


def test_a_consistency_proof_refuses_an_altered_first_root(session: Session) -> None:
    before = _append(session, 7)
    proof = consistency_proof(session, before + 3, before + 7)

    with pytest.raises(ProofError, match="does not lead to the first root"):
        verify_consistency(
            first=before + 3,
            second=before + 7,
            first_root=b"\x00" * 32,
            second_root=root_at(session, before + 7),
            path=proof.path,
        )


# --- append-only, in the ORM and in the database ---------------------------------------------------------


def _a_node(session: Session) -> AuditNode:
    start = _aligned(session, 2)
    _append(session, 2)
    node = session.get(AuditNode, (1, start // 2))
    assert node is not None
    return node


def test_the_orm_refuses_to_change_a_node(session: Session) -> None:
    node = _a_node(session)
    node.hash = b"\x00" * 32

    with pytest.raises(AppendOnlyViolation, match=f"^audit node 1/{node.position} may not be changed$"):
        session.flush()


def test_the_orm_refuses_to_delete_a_node(session: Session) -> None:
    node = _a_node(session)
    session.delete(node)

    with pytest.raises(AppendOnlyViolation, match=f"^audit node 1/{node.position} may not be deleted$"):
        session.flush()


def test_the_orm_refuses_to_change_a_checkpoint(session: Session) -> None:
    _append(session, 2)
    checkpoint = sign_checkpoint(session, SIGNER)
    checkpoint.note = SIGNER.sign(checkpoint.tree_size, b"\x00" * 32)

    with pytest.raises(AppendOnlyViolation, match=f"^audit checkpoint {checkpoint.tree_size} may not be changed$"):
        session.flush()


def test_the_orm_refuses_to_delete_a_checkpoint(session: Session) -> None:
    _append(session, 2)
    checkpoint = sign_checkpoint(session, SIGNER)
    session.delete(checkpoint)

    with pytest.raises(AppendOnlyViolation, match=f"^audit checkpoint {checkpoint.tree_size} may not be deleted$"):
        session.flush()


@pytest.mark.parametrize(
    ("table", "operation", "statement"),
    [
        ("audit_node", "UPDATE", "UPDATE audit_node SET hash = :zero WHERE level = 1 AND position = :position"),
        ("audit_node", "DELETE", "DELETE FROM audit_node WHERE level = 1 AND position = :position"),
        ("audit_checkpoint", "UPDATE", "UPDATE audit_checkpoint SET root_hash = :zero WHERE tree_size = :size"),
        ("audit_checkpoint", "DELETE", "DELETE FROM audit_checkpoint WHERE tree_size = :size"),
    ],
)
def test_the_database_refuses_to_change_nodes_and_checkpoints(
    session: Session, table: str, operation: str, statement: str
) -> None:
    start = _aligned(session, 2)
    _append(session, 2)
    size = sign_checkpoint(session, SIGNER).tree_size
    before = (session.get(AuditNode, (1, start // 2)), checkpoint_of_size(session, size).root_hash)
    assert before[0] is not None
    node_hash = before[0].hash

    savepoint = session.begin_nested()
    with pytest.raises(DBAPIError, match=f"{table} is append-only: {operation} refused"):
        session.execute(text(statement), {"zero": b"\x00" * 32, "position": start // 2, "size": size})
    savepoint.rollback()

    session.expire_all()
    node = session.get(AuditNode, (1, start // 2))
    assert node is not None and node.hash == node_hash
    assert checkpoint_of_size(session, size).root_hash == before[1]


@pytest.mark.parametrize("table", ["audit_node", "audit_checkpoint"])
def test_postgresql_refuses_to_truncate_nodes_and_checkpoints(session: Session, table: str) -> None:
    if session.get_bind().dialect.name != "postgresql":
        pytest.skip("TRUNCATE is PostgreSQL's (SQLite has no such statement)")
    _append(session, 2)
    sign_checkpoint(session, SIGNER)

    savepoint = session.begin_nested()
    with pytest.raises(DBAPIError, match=f"{table} is append-only: TRUNCATE refused"):
        session.execute(text(f"TRUNCATE {table}"))
    savepoint.rollback()


# --- review flags -----------------------------------------------------------------------------------------


def test_review_flags_are_stored_sorted_and_once_in_the_hashed_detail(session: Session) -> None:
    [event] = record(
        session,
        [_entry(detail={"count": 3}, review=[ReviewReason.OUT_OF_HOURS, ReviewReason.REFUSED, ReviewReason.REFUSED])],
    )
    session.expire_all()
    stored = session.get(AuditEvent, event.seq)

    assert stored is not None and stored.detail == {"count": 3, "review": ["out_of_hours", "refused"]}
    assert verify(session).ok


def test_an_event_without_review_flags_has_no_review_key(session: Session) -> None:
    [event] = record(session, [_entry(detail={"count": 1})])
    session.expire_all()
    stored = session.get(AuditEvent, event.seq)

    assert stored is not None and stored.detail == {"count": 1}

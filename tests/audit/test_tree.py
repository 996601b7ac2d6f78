"""audit/tree.py and the stored tree's proofs, held against the RFC 9162 §2.1 reference in rfc9162.py."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

import pytest
from sqlalchemy.orm import Session

from audit import (
    Actor,
    ActorType,
    AuditAction,
    AuditRecord,
    Outcome,
    ProofError,
    UnknownTreeSize,
    consistency_proof,
    inclusion_proof,
    record,
    verify_consistency,
    verify_inclusion,
)
from audit.hashing import EMPTY_ROOT, leaf_hash, merkle_root, merkle_root_of_leaf_hashes
from audit.store import root_at
from audit.tree import (
    CompactRange,
    Node,
    consistency_spans,
    fold,
    inclusion_spans,
    nodes_for,
    span_hash,
    span_nodes,
)
from tests.audit import rfc9162 as rfc

SIZES = [*range(1, 71), 1000, 1025]
SMALL_SIZES = range(1, 34)
DB_SIZES = range(1, 34)

LEAVES = [f"leaf {i}".encode() for i in range(max(SIZES) + 1)]
HASHES = [rfc.leaf_hash(d) for d in LEAVES]

# What the project's ProofError says for each check the RFC's verification steps can fail.
INCLUSION_MESSAGES = {
    rfc.INCLUSION_INDEX: "is not below the tree size",
    rfc.INCLUSION_TOO_LONG: "inclusion proof is longer than the tree is deep",
    rfc.INCLUSION_SN: "inclusion proof is shorter than the tree is deep",
    rfc.INCLUSION_ROOT: "inclusion proof does not lead to the root hash",
}
CONSISTENCY_MESSAGES = {
    rfc.CONSISTENCY_SIZES: "no consistency proof from a tree of",
    rfc.CONSISTENCY_EMPTY: "the consistency proof is empty",
    rfc.CONSISTENCY_TOO_LONG: "consistency proof is longer than the tree is deep",
    rfc.CONSISTENCY_SN: "consistency proof is shorter than the tree is deep",
    rfc.CONSISTENCY_FIRST: "consistency proof does not lead to the first root",
    rfc.CONSISTENCY_SECOND: "consistency proof does not lead to the second root",
}


def _indices(size: int) -> list[int]:
    """Every leaf index of a small tree; for a large one, the edges, around each power of two, and a stride."""
    if size <= 70:
        return list(range(size))
    around_powers = {p + d for p in (1 << j for j in range(size.bit_length())) for d in (-1, 0, 1)}
    picked = {0, 1, size // 3, size // 2, size - 2, size - 1} | around_powers | set(range(0, size, 97))
    return sorted(i for i in picked if 0 <= i < size)


def _firsts(size: int) -> list[int]:
    """The first tree sizes to prove consistency from, up to `size` itself."""
    return [i + 1 for i in _indices(size)]


def _project_tree(size: int) -> tuple[CompactRange, dict[Node, bytes]]:
    """Append the first `size` leaves to a CompactRange; return it and every node known at that size."""
    tree = CompactRange.empty()
    nodes: dict[Node, bytes] = {}
    for index, data in enumerate(LEAVES[:size]):
        nodes[(0, index)] = leaf_hash(data)
        nodes.update(tree.append(leaf_hash(data)))
    return tree, nodes


def _project_path(leaf_index: int, size: int, nodes: dict[Node, bytes]) -> list[bytes]:
    return [span_hash(span, nodes) for span in inclusion_spans(leaf_index, size)]


def _project_proof(first: int, second: int, nodes: dict[Node, bytes]) -> list[bytes]:
    return [span_hash(span, nodes) for span in consistency_spans(first, second)]


def _flip(value: bytes, bit: int) -> bytes:
    changed = bytearray(value)
    changed[bit // 8 % len(value)] ^= 1 << (bit % 8)
    return bytes(changed)


def _rejected_for_a_reason_the_rfc_gives(
    reference_failures: list[str], messages: dict[str, str], check: Callable[[], None]
) -> str:
    """Assert the RFC's steps fail and `check` raises a ProofError naming one of the checks that failed."""
    assert reference_failures, "the reference accepts what was meant to be a broken proof"
    with pytest.raises(ProofError) as raised:
        check()
    message = str(raised.value)
    assert any(messages[failure] in message for failure in reference_failures), (message, reference_failures)
    return message


def _inclusion_rejected(leaf_index: int, size: int, leaf: bytes, path: Sequence[bytes], root: bytes) -> str:
    return _rejected_for_a_reason_the_rfc_gives(
        rfc.verify_inclusion(leaf_index, size, leaf, path, root),
        INCLUSION_MESSAGES,
        lambda: verify_inclusion(leaf_index=leaf_index, tree_size=size, leaf_hash=leaf, path=path, root=root),
    )


def _consistency_rejected(first: int, second: int, first_root: bytes, second_root: bytes, path: Sequence[bytes]) -> str:
    return _rejected_for_a_reason_the_rfc_gives(
        rfc.verify_consistency(first, second, first_root, second_root, path),
        CONSISTENCY_MESSAGES,
        lambda: verify_consistency(first=first, second=second, first_root=first_root, second_root=second_root,
                                   path=path),
    )


# --- roots -----------------------------------------------------------------------------------------


def test_reference_leaf_and_node_hashes_are_the_projects() -> None:
    assert [leaf_hash(d) for d in LEAVES[:70]] == HASHES[:70]
    assert rfc.node_hash(HASHES[0], HASHES[1]) == hashlib.sha256(b"\x01" + HASHES[0] + HASHES[1]).digest()


def test_the_empty_tree_has_the_hash_of_nothing() -> None:
    assert fold([]) == CompactRange.empty().root() == EMPTY_ROOT == rfc.mth([]) == hashlib.sha256(b"").digest()
    assert CompactRange.empty().nodes() == []


@pytest.mark.parametrize("size", SIZES)
def test_root_of_every_size_is_the_rfc_mth(size: int) -> None:
    tree, nodes = _project_tree(size)
    expected = rfc.mth_of_data(LEAVES[:size])

    assert tree.size == size
    assert tree.root() == expected
    assert span_hash((0, size), nodes) == expected
    assert merkle_root(LEAVES[:size]) == merkle_root_of_leaf_hashes(HASHES[:size]) == expected


# --- the proofs themselves -------------------------------------------------------------------------


@pytest.mark.parametrize("size", SIZES)
def test_inclusion_paths_are_the_rfc_path(size: int) -> None:
    _, nodes = _project_tree(size)

    for leaf_index in _indices(size):
        assert _project_path(leaf_index, size, nodes) == rfc.path(leaf_index, HASHES[:size]), leaf_index


@pytest.mark.parametrize("size", SIZES)
def test_consistency_proofs_are_the_rfc_proof(size: int) -> None:
    _, nodes = _project_tree(size)

    for first in _firsts(size):
        assert _project_proof(first, size, nodes) == rfc.proof(first, HASHES[:size]), first


@pytest.mark.parametrize("size", SIZES)
def test_the_nodes_a_proof_needs_are_complete_in_the_tree_of_its_size(size: int) -> None:
    complete = rfc.perfect_subtrees(size)

    for index in _indices(size):
        assert nodes_for(inclusion_spans(index, size)) <= complete
        assert nodes_for(consistency_spans(index + 1, size)) <= complete


@pytest.mark.parametrize("size", SIZES)
def test_span_nodes_of_a_whole_tree_fold_to_its_root(size: int) -> None:
    _, nodes = _project_tree(size)
    peaks = span_nodes((0, size))

    assert len(peaks) == bin(size).count("1")
    assert fold([nodes[node] for node in peaks]) == rfc.mth(HASHES[:size])


# --- each verifier accepts the other's proofs ------------------------------------------------------


@pytest.mark.parametrize("size", SIZES)
def test_inclusion_proofs_verify_both_ways(size: int) -> None:
    _, nodes = _project_tree(size)
    root = rfc.mth(HASHES[:size])

    for leaf_index in _indices(size):
        leaf = HASHES[leaf_index]
        verify_inclusion(leaf_index=leaf_index, tree_size=size, leaf_hash=leaf,
                         path=rfc.path(leaf_index, HASHES[:size]), root=root)
        assert rfc.verify_inclusion(leaf_index, size, leaf, _project_path(leaf_index, size, nodes), root) == []


@pytest.mark.parametrize("size", SIZES)
def test_consistency_proofs_verify_both_ways(size: int) -> None:
    _, nodes = _project_tree(size)
    second_root = rfc.mth(HASHES[:size])

    for first in _firsts(size):
        first_root = rfc.mth(HASHES[:first])
        verify_consistency(first=first, second=size, first_root=first_root, second_root=second_root,
                           path=rfc.proof(first, HASHES[:size]))
        if first < size:  # RFC 9162 §2.1.4.2 verifies 0 < first < second only
            assert rfc.verify_consistency(first, size, first_root, second_root,
                                          _project_proof(first, size, nodes)) == []


# --- every way an inclusion proof can be wrong -----------------------------------------------------


@pytest.mark.parametrize("size", SIZES)
def test_inclusion_proof_with_any_bit_flipped_in_any_element_is_rejected(size: int) -> None:
    root = rfc.mth(HASHES[:size])

    for leaf_index in _indices(size):
        path = rfc.path(leaf_index, HASHES[:size])
        for position in range(len(path)):
            for bit in (0, 7 + leaf_index, 255 - position):
                broken = [*path[:position], _flip(path[position], bit), *path[position + 1:]]
                message = _inclusion_rejected(leaf_index, size, HASHES[leaf_index], broken, root)
                assert "does not lead to the root hash" in message


@pytest.mark.parametrize("size", SIZES)
def test_inclusion_proof_of_a_flipped_leaf_hash_is_rejected(size: int) -> None:
    root = rfc.mth(HASHES[:size])

    for leaf_index in _indices(size):
        message = _inclusion_rejected(leaf_index, size, _flip(HASHES[leaf_index], leaf_index),
                                      rfc.path(leaf_index, HASHES[:size]), root)
        assert "does not lead to the root hash" in message


@pytest.mark.parametrize("size", SIZES)
def test_inclusion_proof_one_element_short_or_long_is_rejected(size: int) -> None:
    root = rfc.mth(HASHES[:size])

    for leaf_index in _indices(size):
        path = rfc.path(leaf_index, HASHES[:size])
        if path:
            assert "shorter than the tree is deep" in _inclusion_rejected(
                leaf_index, size, HASHES[leaf_index], path[:-1], root)
        for extra in (root, bytes(32)):
            assert "longer than the tree is deep" in _inclusion_rejected(
                leaf_index, size, HASHES[leaf_index], [*path, extra], root)


@pytest.mark.parametrize("size", SMALL_SIZES)
def test_inclusion_proof_under_any_other_leaf_index_is_rejected(size: int) -> None:
    root = rfc.mth(HASHES[:size])

    for leaf_index in range(size):
        path = rfc.path(leaf_index, HASHES[:size])
        for claimed in range(size):
            if claimed != leaf_index:
                _inclusion_rejected(claimed, size, HASHES[leaf_index], path, root)


@pytest.mark.parametrize("size", SMALL_SIZES)
def test_inclusion_proof_against_any_other_tree_size_is_rejected(size: int) -> None:
    for leaf_index in range(size):
        path = rfc.path(leaf_index, HASHES[:size])
        for claimed in range(leaf_index + 1, 40):
            if claimed != size:
                _inclusion_rejected(leaf_index, claimed, HASHES[leaf_index], path, rfc.mth(HASHES[:claimed]))


@pytest.mark.parametrize("size", SIZES)
def test_inclusion_proof_of_a_leaf_index_not_below_the_tree_size_is_rejected(size: int) -> None:
    root = rfc.mth(HASHES[:size])
    path = rfc.path(size - 1, HASHES[:size])

    for leaf_index in (size, size + 1, 2 * size):
        message = _inclusion_rejected(leaf_index, size, HASHES[size - 1], path, root)
        assert f"leaf index {leaf_index} is not below the tree size {size}" in message


def test_inclusion_proof_of_a_negative_leaf_index_is_rejected() -> None:
    with pytest.raises(ProofError, match="leaf index -1 is not below the tree size 4"):
        verify_inclusion(leaf_index=-1, tree_size=4, leaf_hash=HASHES[0], path=rfc.path(0, HASHES[:4]),
                         root=rfc.mth(HASHES[:4]))


@pytest.mark.parametrize("size", SIZES)
def test_inclusion_proof_against_a_different_root_is_rejected(size: int) -> None:
    for leaf_index in _indices(size):
        path = rfc.path(leaf_index, HASHES[:size])
        for other_root in (rfc.mth(HASHES[: size + 1]), _flip(rfc.mth(HASHES[:size]), leaf_index)):
            message = _inclusion_rejected(leaf_index, size, HASHES[leaf_index], path, other_root)
            assert "does not lead to the root hash" in message


def test_no_inclusion_spans_for_a_leaf_outside_the_tree() -> None:
    for leaf_index, size in ((4, 4), (5, 4), (-1, 4), (0, 0)):
        with pytest.raises(ProofError, match=f"leaf {leaf_index} is not in a tree of {size}"):
            inclusion_spans(leaf_index, size)


# --- every way a consistency proof can be wrong ----------------------------------------------------


@pytest.mark.parametrize("size", SIZES)
def test_consistency_proof_with_any_bit_flipped_in_any_element_is_rejected(size: int) -> None:
    second_root = rfc.mth(HASHES[:size])

    for first in _firsts(size)[:-1]:
        first_root = rfc.mth(HASHES[:first])
        path = rfc.proof(first, HASHES[:size])
        for position in range(len(path)):
            for bit in (0, 3 + first, 255 - position):
                broken = [*path[:position], _flip(path[position], bit), *path[position + 1:]]
                message = _consistency_rejected(first, size, first_root, second_root, broken)
                assert "does not lead to the" in message


@pytest.mark.parametrize("size", SIZES)
def test_consistency_proof_one_element_short_or_long_is_rejected(size: int) -> None:
    second_root = rfc.mth(HASHES[:size])

    for first in _firsts(size)[:-1]:
        first_root = rfc.mth(HASHES[:first])
        path = rfc.proof(first, HASHES[:size])
        short = _consistency_rejected(first, size, first_root, second_root, path[:-1])
        assert ("shorter than the tree is deep" if len(path) > 1 else "the consistency proof is empty") in short
        for extra in (second_root, bytes(32)):
            long = _consistency_rejected(first, size, first_root, second_root, [*path, extra])
            assert "longer than the tree is deep" in long


@pytest.mark.parametrize("size", SMALL_SIZES)
def test_consistency_proof_from_any_other_first_size_is_rejected(size: int) -> None:
    second_root = rfc.mth(HASHES[:size])

    for first in range(1, size):
        first_root = rfc.mth(HASHES[:first])
        path = rfc.proof(first, HASHES[:size])
        for claimed in range(1, size):
            if claimed != first:
                _consistency_rejected(claimed, size, first_root, second_root, path)


@pytest.mark.parametrize("size", SIZES)
def test_consistency_proof_against_a_different_root_is_rejected(size: int) -> None:
    second_root = rfc.mth(HASHES[:size])

    for first in _firsts(size)[:-1]:
        first_root = rfc.mth(HASHES[:first])
        path = rfc.proof(first, HASHES[:size])
        wrong_first = _consistency_rejected(first, size, _flip(first_root, first), second_root, path)
        # When first is a power of two, §2.1.4.2 step 2 puts first_hash itself into the path, so fr
        # is the wrong first_hash and it is sr that comes out wrong.
        first_is_a_power_of_two = first & (first - 1) == 0
        assert f"does not lead to the {'second' if first_is_a_power_of_two else 'first'} root" in wrong_first
        wrong_second = _consistency_rejected(first, size, first_root, _flip(second_root, first), path)
        assert "does not lead to the second root" in wrong_second


@pytest.mark.parametrize("size", [1, 2, 3, 8, 70, 1025])
def test_consistency_from_a_larger_or_empty_tree_is_rejected(size: int) -> None:
    root = rfc.mth(HASHES[:size])

    for first, second in ((size + 1, size), (2 * size, size), (0, size), (-1, size)):
        message = _consistency_rejected(first, second, root, root, [root])
        assert f"no consistency proof from a tree of {first} to one of {second}" in message
        with pytest.raises(ProofError, match=f"no consistency proof from a tree of {first} to one of {second}"):
            consistency_spans(first, second)


@pytest.mark.parametrize("size", [1, 2, 3, 8, 70, 1025])
def test_consistency_between_trees_of_the_same_size_needs_an_empty_proof_and_equal_roots(size: int) -> None:
    root = rfc.mth(HASHES[:size])
    assert consistency_spans(size, size) == [] == rfc.proof(size, HASHES[:size])

    verify_consistency(first=size, second=size, first_root=root, second_root=root, path=[])
    with pytest.raises(ProofError, match="a proof between trees of the same size must be empty"):
        verify_consistency(first=size, second=size, first_root=root, second_root=root, path=[root])
    with pytest.raises(ProofError, match="two trees of the same size have different roots"):
        verify_consistency(first=size, second=size, first_root=root, second_root=_flip(root, 0), path=[])


@pytest.mark.parametrize("size", [2, 3, 8, 70, 1025])
def test_empty_consistency_proof_between_different_sizes_is_rejected(size: int) -> None:
    for first in _firsts(size)[:-1]:
        message = _consistency_rejected(first, size, rfc.mth(HASHES[:first]), rfc.mth(HASHES[:size]), [])
        assert message == "the consistency proof is empty"


# --- CompactRange ----------------------------------------------------------------------------------


def test_compact_range_append_returns_exactly_the_subtrees_each_leaf_completes() -> None:
    tree = CompactRange.empty()
    complete_before: set[Node] = set()

    for size in range(1, 520):
        completed = tree.append(HASHES[size - 1])
        complete = rfc.perfect_subtrees(size)
        newly_complete = sorted(node for node in complete - complete_before if node[0] >= 1)

        assert [node for node, _ in completed] == newly_complete, size
        for (level, position), node in completed:
            assert node == rfc.mth(HASHES[position << level:(position + 1) << level])
        # Between appends the range holds the roots of the perfect subtrees no larger one contains.
        peaks = sorted((node for node in complete if (node[0] + 1, node[1] // 2) not in complete),
                       key=lambda node: node[1] << node[0])
        assert tree.size == size
        assert tree.nodes() == peaks
        assert tree.hashes == [rfc.mth(HASHES[p << level:(p + 1) << level]) for level, p in peaks]
        assert tree.root() == rfc.mth(HASHES[:size])
        complete_before = complete


# --- the stored tree -------------------------------------------------------------------------------

ACTOR = Actor(ActorType.USER, "tree-test@test.example", "police", "police_officer")


def _append_events(session: Session, count: int) -> list[bytes]:
    """Append `count` events in batches of varying length; return their leaf hashes in seq order."""
    hashes: list[bytes] = []
    batch = 1
    while len(hashes) < count:
        size = min(batch, count - len(hashes))
        entries = [AuditRecord(action=AuditAction.STAFF_VIEW_OPENED, actor=ACTOR, outcome=Outcome.SUCCESS,
                               detail={"n": len(hashes) + n}) for n in range(size)]
        events = record(session, entries)
        assert [event.seq for event in events] == list(range(len(hashes) + 1, len(hashes) + size + 1))
        hashes.extend(bytes.fromhex(event.hash) for event in events)
        batch = batch % 4 + 1
    session.flush()
    return hashes


@pytest.mark.parametrize("size", DB_SIZES)
def test_stored_proofs_of_the_whole_trail_are_the_rfc_ones(session: Session, size: int) -> None:
    hashes = _append_events(session, size)

    assert root_at(session, size) == rfc.mth(hashes)
    for seq in range(1, size + 1):
        proof = inclusion_proof(session, seq, size)
        assert (proof.leaf_index, proof.tree_size, proof.leaf_hash) == (seq - 1, size, hashes[seq - 1])
        assert proof.path == rfc.path(seq - 1, hashes)
    for first in range(1, size + 1):
        consistency = consistency_proof(session, first, size)
        assert (consistency.first, consistency.second) == (first, size)
        assert consistency.path == rfc.proof(first, hashes)


def test_stored_proofs_of_every_earlier_tree_size_are_the_rfc_ones(session: Session) -> None:
    hashes = _append_events(session, max(DB_SIZES))

    for second in DB_SIZES:
        assert root_at(session, second) == rfc.mth(hashes[:second])
        for seq in range(1, second + 1):
            proof = inclusion_proof(session, seq, second)
            assert proof.path == rfc.path(seq - 1, hashes[:second]), (seq, second)
            assert rfc.verify_inclusion(seq - 1, second, proof.leaf_hash, proof.path, rfc.mth(hashes[:second])) == []
        for first in range(1, second + 1):
            assert consistency_proof(session, first, second).path == rfc.proof(first, hashes[:second]), (first, second)


def test_stored_proofs_refuse_what_is_not_in_the_trail(session: Session) -> None:
    _append_events(session, 5)

    for seq, size in ((0, 5), (6, 5)):
        with pytest.raises(UnknownTreeSize, match=f"event {seq} is not in a tree of {size} events"):
            inclusion_proof(session, seq, size)
    with pytest.raises(ProofError, match="the stored tree lacks node 0/5"):
        inclusion_proof(session, 6, 6)
    with pytest.raises(ProofError, match="no consistency proof from a tree of 5 to one of 4"):
        consistency_proof(session, 5, 4)

"""The RFC 9162 Merkle tree over the trail, kept as its perfect subtrees.

Leaves are the events in seq order (leaf index = seq - 1), each leaf hash the event's `hash`.
A node `(level, position)` is the root of the perfect subtree over leaves
`[position · 2^level, (position + 1) · 2^level)`. The trail stores every such node once it is
complete (`audit_node`, level 1 and up; level 0 is the events' own hashes), so appending n leaves
adds about n nodes and never recomputes the interior, and any hash RFC 9162 asks for, of a tree or
of one of the subtrees its proofs name, is a fold of at most log2(size) stored nodes.

Written by hand, as hashing.py is: no well-kept Python library implements RFC 9162 proofs over a
store of subtrees. The functions here are pure; `log.py` fetches the nodes they name.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from .hashing import EMPTY_ROOT, node_hash

Node = tuple[int, int]
"""A perfect subtree: (level, position)."""

Span = tuple[int, int]
"""A run of leaves: (first leaf index, number of leaves), as RFC 9162 writes D[start:start+size]."""


class ProofError(ValueError):
    """A proof that cannot be made or does not verify; the message says which check failed."""


def _largest_power_of_two_below(n: int) -> int:
    # RFC 9162 §2.1.1: k is the largest power of two smaller than n (n > 1).
    return 1 << ((n - 1).bit_length() - 1)


def span_nodes(span: Span) -> list[Node]:
    """Return the perfect subtrees whose fold is MTH of the span, left to right.

    The span must start at a multiple of the largest power of two not above its size, as every
    span in a tree or in its proofs does; then RFC 9162's split at the largest power of two below
    the size peels off one perfect subtree per set bit of the size.
    """
    start, size = span
    nodes: list[Node] = []
    for level in range(size.bit_length() - 1, -1, -1):
        if size >> level & 1:
            nodes.append((level, start >> level))
            start += 1 << level
    return nodes


def fold(hashes: Sequence[bytes]) -> bytes:
    """Return MTH of a span from its perfect subtrees' hashes, left to right (empty: SHA-256 of nothing)."""
    if not hashes:
        return EMPTY_ROOT
    root = hashes[-1]
    for left in reversed(hashes[:-1]):
        root = node_hash(left, root)
    return root


def inclusion_spans(leaf_index: int, tree_size: int) -> list[Span]:
    """Return the spans whose hashes make PATH(m, D[n]) (RFC 9162 §2.1.3.1), leaf upwards."""
    if not 0 <= leaf_index < tree_size:
        raise ProofError(f"leaf {leaf_index} is not in a tree of {tree_size}")
    spans: list[Span] = []
    start, size, m = 0, tree_size, leaf_index
    while size > 1:
        k = _largest_power_of_two_below(size)
        if m < k:
            spans.append((start + k, size - k))
            size = k
        else:
            spans.append((start, k))
            start, size, m = start + k, size - k, m - k
    spans.reverse()
    return spans


def consistency_spans(first: int, second: int) -> list[Span]:
    """Return the spans whose hashes make PROOF(m, D[n]) (RFC 9162 §2.1.4.1), in the RFC's order."""
    if not 0 < first <= second:
        raise ProofError(f"no consistency proof from a tree of {first} to one of {second}")
    spans: list[Span] = []
    start, size, m, whole = 0, second, first, True
    while m != size:
        k = _largest_power_of_two_below(size)
        if m <= k:
            spans.append((start + k, size - k))
            size = k
        else:
            spans.append((start, k))
            start, size, m, whole = start + k, size - k, m - k, False
    if not whole:
        spans.append((start, m))
    spans.reverse()
    return spans


def nodes_for(spans: Iterable[Span]) -> set[Node]:
    """Return every stored node the spans' hashes are folded from."""
    return {node for span in spans for node in span_nodes(span)}


def span_hash(span: Span, nodes: Mapping[Node, bytes]) -> bytes:
    """Return MTH of the span from the stored nodes (which must hold every node it needs)."""
    return fold([nodes[node] for node in span_nodes(span)])


@dataclass
class CompactRange:
    """The perfect subtrees of a tree of `size` leaves, left to right: enough to append and to root.

    `append` returns the nodes each new leaf completes, so that the caller stores them.
    """

    size: int
    hashes: list[bytes]

    @classmethod
    def empty(cls) -> CompactRange:
        """Return the range of the empty tree."""
        return cls(0, [])

    def nodes(self) -> list[Node]:
        """Return the (level, position) of each hash held, left to right."""
        return span_nodes((0, self.size))

    def append(self, leaf: bytes) -> list[tuple[Node, bytes]]:
        """Add a leaf hash; return the nodes of level 1 and up that it completes, lowest first."""
        completed: list[tuple[Node, bytes]] = []
        index = self.size
        self.hashes.append(leaf)
        level = 0
        while index >> level & 1:
            right = self.hashes.pop()
            left = self.hashes.pop()
            level += 1
            parent = node_hash(left, right)
            self.hashes.append(parent)
            completed.append(((level, index >> level), parent))
        self.size += 1
        return completed

    def root(self) -> bytes:
        """Return MTH of the whole tree."""
        return fold(self.hashes)


def verify_inclusion(
    *, leaf_index: int, tree_size: int, leaf_hash: bytes, path: Sequence[bytes], root: bytes
) -> None:
    """Check an inclusion proof as RFC 9162 §2.1.3.2 says; raise ProofError naming the failure."""
    if leaf_index >= tree_size or leaf_index < 0:
        raise ProofError(f"leaf index {leaf_index} is not below the tree size {tree_size}")
    fn, sn, r = leaf_index, tree_size - 1, leaf_hash
    for p in path:
        if sn == 0:
            raise ProofError("the inclusion proof is longer than the tree is deep")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise ProofError("the inclusion proof is shorter than the tree is deep")
    if r != root:
        raise ProofError("the inclusion proof does not lead to the root hash")


def verify_consistency(
    *, first: int, second: int, first_root: bytes, second_root: bytes, path: Sequence[bytes]
) -> None:
    """Check a consistency proof as RFC 9162 §2.1.4.2 says; raise ProofError naming the failure."""
    if not 0 < first <= second:
        raise ProofError(f"no consistency proof from a tree of {first} to one of {second}")
    if first == second:
        if path:
            raise ProofError("a proof between trees of the same size must be empty")
        if first_root != second_root:
            raise ProofError("two trees of the same size have different roots")
        return
    if not path:
        raise ProofError("the consistency proof is empty")
    hashes = list(path)
    if first & (first - 1) == 0:  # an exact power of two: the first tree is a subtree of the second
        hashes.insert(0, first_root)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = hashes[0]
    for c in hashes[1:]:
        if sn == 0:
            raise ProofError("the consistency proof is longer than the tree is deep")
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise ProofError("the consistency proof is shorter than the tree is deep")
    if fr != first_root:
        raise ProofError("the consistency proof does not lead to the first root")
    if sr != second_root:
        raise ProofError("the consistency proof does not lead to the second root")

"""RFC 9162 hashing and canonical event bytes."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime, timedelta, timezone
from types import SimpleNamespace
from typing import Any

import pytest

from audit.hashing import HASHED_COLUMNS, canonical_bytes, leaf_hash, merkle_root, node_hash


def _reference_mth(leaves: list[bytes]) -> bytes:
    """RFC 9162 §2.1.1 exactly as written: split at the largest power of two below n."""
    n = len(leaves)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    k = 1
    while k * 2 < n:
        k *= 2
    return hashlib.sha256(b"\x01" + _reference_mth(leaves[:k]) + _reference_mth(leaves[k:])).digest()


def test_leaf_and_node_hashes_use_the_rfc_prefixes() -> None:
    assert leaf_hash(b"abc") == hashlib.sha256(b"\x00abc").digest()
    assert node_hash(b"L", b"R") == hashlib.sha256(b"\x01LR").digest()


def test_empty_tree_root_is_the_hash_of_nothing() -> None:
    assert merkle_root([]).hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


@pytest.mark.parametrize("size", range(1, 18))
def test_merkle_root_matches_the_rfc_definition(size: int) -> None:
    leaves = [f"leaf {i}".encode() for i in range(size)]

    assert merkle_root(leaves) == _reference_mth(leaves)


def _event(**overrides: Any) -> SimpleNamespace:
    values: dict[str, Any] = dict.fromkeys(HASHED_COLUMNS)
    values.update(seq=1, occurred_at=datetime(2026, 11, 22, 9, 30, 0, 123456, tzinfo=UTC), actor_type="user",
                  actor_id="a", action="staff:view:opened", outcome="success", items=[], detail={},
                  prev_hash="0" * 64)
    values.update(overrides)
    return SimpleNamespace(**values)


def test_naive_utc_and_other_offsets_hash_the_same() -> None:
    aware = _event()
    naive = _event(occurred_at=datetime(2026, 11, 22, 9, 30, 0, 123456))
    shifted = _event(occurred_at=datetime(2026, 11, 22, 10, 30, 0, 123456, tzinfo=timezone(timedelta(hours=1))))

    assert canonical_bytes(aware) == canonical_bytes(naive) == canonical_bytes(shifted)


def test_canonical_bytes_cover_every_hashed_column_and_render_uuids() -> None:
    child = uuid.UUID("12345678-1234-5678-1234-567812345678")

    data = canonical_bytes(_event(child_id=child))

    assert b'"child_id":"12345678-1234-5678-1234-567812345678"' in data
    assert all(f'"{name}"'.encode() in data for name in HASHED_COLUMNS)
    assert b'"hash"' not in data
    assert canonical_bytes(_event(actor_id="b")) != canonical_bytes(_event())

"""Canonical event bytes and RFC 9162 §2.1.1 Merkle hashing.

Written by hand: these few lines are the whole algorithm, and no well-kept Python library
implements RFC 9162 tree hashing on its own.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

GENESIS_HASH = "0" * 64
# RFC 9162 §2.1.1: the hash of an empty list is the hash of an empty string.
EMPTY_ROOT = hashlib.sha256(b"").digest()
HASHED_COLUMNS = (
    "seq",
    "occurred_at",
    "actor_type",
    "actor_id",
    "actor_agency",
    "actor_role",
    "action",
    "outcome",
    "child_id",
    "purpose",
    "lawful_basis",
    "policy_version",
    "items",
    "detail",
    "request_id",
    "trace_id",
    "prev_hash",
)


def _normalise(value: Any) -> Any:
    if isinstance(value, datetime):
        # SQLite hands back naive datetimes (stored as UTC); PostgreSQL may use another offset.
        aware = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return aware.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


def canonical_bytes(event: Any) -> bytes:
    """Return the event's content (every column but its own hash) as canonical JSON bytes."""
    return canonical_bytes_of({name: getattr(event, name) for name in HASHED_COLUMNS})


def canonical_bytes_of(values: Mapping[Any, Any]) -> bytes:
    """Return the canonical JSON bytes of an event given as its column values, by column name."""
    content = {name: _normalise(values[name]) for name in HASHED_COLUMNS}
    return json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def leaf_hash(data: bytes) -> bytes:
    """Return SHA-256(0x00 ‖ data), the RFC 9162 leaf hash."""
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Return SHA-256(0x01 ‖ left ‖ right), the RFC 9162 interior node hash."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def merkle_root_of_leaf_hashes(hashes: Sequence[bytes]) -> bytes:
    """Return the Merkle tree hash over already-computed leaf hashes (RFC 9162 MTH)."""
    if not hashes:
        return EMPTY_ROOT
    level = list(hashes)
    # Pairing left to right and promoting an odd last node gives the same tree as RFC 9162's
    # split at the largest power of two below n.
    while len(level) > 1:
        paired = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return level[0]


def merkle_root(leaves: Sequence[bytes]) -> bytes:
    """Return the RFC 9162 Merkle tree hash of the leaf data."""
    return merkle_root_of_leaf_hashes([leaf_hash(leaf) for leaf in leaves])


def event_hash(event: Any) -> str:
    """Return the event's hash: hex of its Merkle leaf hash, which covers prev_hash too."""
    return leaf_hash(canonical_bytes(event)).hex()

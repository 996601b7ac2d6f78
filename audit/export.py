"""Exporting a period of the trail so that it can be checked offline with the public key alone.

An export is JSON Lines, each line the canonical JSON of one object (keys sorted, no spaces):
- the header: `{"checkpoint": <signed note>, "first_seq": a, "format": "macpt-audit-export/1", "last_seq": b}`;
- then one line per event a…b: `{"canonical": <base64 of the event's canonical bytes>,
  "event": <those bytes as JSON>, "proof": [<base64 hashes>], "seq": n}`, where `proof` is the
  RFC 9162 inclusion proof of the event in the checkpoint's tree.

`verify_export` checks the checkpoint's signature, each event's proof against the signed root,
that the events run a…b without a gap and chain by prev_hash, and that every line is exactly the
canonical form of what it holds: so any altered, missing, added or reordered byte is found, and
the line it is on named.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from .checkpoint import Checkpoint, CheckpointError, NoteVerifier, b64, strict_b64decode
from .hashing import canonical_bytes, leaf_hash
from .models import AuditCheckpoint, AuditEvent
from .store import fetch_nodes
from .tree import ProofError, inclusion_spans, nodes_for, span_hash, verify_inclusion

FORMAT = "macpt-audit-export/1"
_BATCH = 1000


def _line(value: dict[str, Any]) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def seq_range(session: Session, since: datetime, until: datetime) -> tuple[int, int] | None:
    """Return the first and last seq of the events in [since, until), or None when there are none."""
    low, high = session.execute(
        select(func.min(AuditEvent.seq), func.max(AuditEvent.seq)).where(
            AuditEvent.occurred_at >= since, AuditEvent.occurred_at < until
        )
    ).one()
    return None if low is None else (int(low), int(high))


def export_lines(session: Session, checkpoint: AuditCheckpoint, first: int, last: int) -> Iterator[str]:
    """Yield the export of events first…last (with newlines), proven against `checkpoint`.

    Every event from first to last is exported, whatever its time: a period's seqs are contiguous,
    which is what lets a reader see that none is missing.
    """
    if not 1 <= first <= last <= checkpoint.tree_size:
        raise ValueError(f"events {first} to {last} are not all in the checkpoint of {checkpoint.tree_size}")
    size = checkpoint.tree_size
    yield _line({"checkpoint": checkpoint.note, "first_seq": first, "format": FORMAT, "last_seq": last}) + "\n"
    start = first
    while start <= last:
        end = min(start + _BATCH - 1, last)
        events = session.scalars(select(AuditEvent).where(AuditEvent.seq.between(start, end)).order_by(AuditEvent.seq))
        spans = {seq: inclusion_spans(seq - 1, size) for seq in range(start, end + 1)}
        nodes = fetch_nodes(session, set().union(*(nodes_for(s) for s in spans.values())))
        for event in events:
            data = canonical_bytes(event)
            proof = [b64(span_hash(span, nodes)) for span in spans[event.seq]]
            yield _line({"canonical": b64(data), "event": json.loads(data), "proof": proof, "seq": event.seq}) + "\n"
            session.expunge(event)
        start = end + 1


@dataclass(frozen=True)
class ExportResult:
    """What verify_export found: the checkpoint, how many events checked, and the first problem with its line."""

    ok: bool
    events_checked: int
    checkpoint: Checkpoint | None
    problem: str | None = None
    line: int | None = None


class _Bad(Exception):
    def __init__(self, line: int, problem: str) -> None:
        super().__init__(problem)
        self.line, self.problem = line, problem


def verify_export(lines: Iterable[bytes], verifier: NoteVerifier) -> ExportResult:
    """Check an export with the log's public key alone (no database); name the first bad line."""
    checked = 0
    checkpoint: Checkpoint | None = None
    try:
        numbered = enumerate(lines, start=1)
        header = _parse(*next(numbered, (1, b"")))
        if set(header) != {"checkpoint", "first_seq", "format", "last_seq"} or header["format"] != FORMAT:
            raise _Bad(1, f"the first line is not a {FORMAT} header")
        try:
            checkpoint = verifier.open(str(header["checkpoint"]))
        except CheckpointError as bad:
            raise _Bad(1, f"the checkpoint: {bad}") from None
        first, last = header["first_seq"], header["last_seq"]
        if not (isinstance(first, int) and isinstance(last, int) and 1 <= first <= last <= checkpoint.tree_size):
            raise _Bad(1, f"the header's seqs are not a run within the checkpoint's {checkpoint.tree_size} events")
        previous: str | None = None
        for number, raw in numbered:
            expected = first + checked
            if expected > last:
                raise _Bad(number, f"a line after event {last}, the header's last")
            previous = _check_event(number, _parse(number, raw), expected, previous, checkpoint)
            checked += 1
        if first + checked <= last:
            # The header is line 1: the missing event's line would have been the next.
            raise _Bad(checked + 2, f"events {first + checked} to {last} are missing")
    except _Bad as bad:
        return ExportResult(False, checked, checkpoint, bad.problem, bad.line)
    return ExportResult(True, checked, checkpoint)


def _parse(number: int, raw: bytes) -> dict[str, Any]:
    try:
        text = raw.decode("utf-8")
        value = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise _Bad(number, "not a line of UTF-8 JSON") from None
    if not isinstance(value, dict) or _line(value) + "\n" != text:
        raise _Bad(number, "not in canonical form (altered)")
    return value


def _check_event(number: int, line: dict[str, Any], seq: int, previous: str | None, checkpoint: Checkpoint) -> str:
    if set(line) != {"canonical", "event", "proof", "seq"} or line["seq"] != seq:
        raise _Bad(number, f"not the line of event {seq}")
    try:
        data = strict_b64decode(str(line["canonical"]), what="canonical")
        path = [strict_b64decode(str(node), what="a proof hash") for node in line["proof"]]
    except (CheckpointError, TypeError):
        raise _Bad(number, f"event {seq}: its canonical bytes or proof are not base64") from None
    try:
        event = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise _Bad(number, f"event {seq}: its canonical bytes are not JSON") from None
    if event != line["event"] or not isinstance(event, dict) or event.get("seq") != seq:
        raise _Bad(number, f"event {seq}: the event does not match its canonical bytes")
    if previous is not None and event.get("prev_hash") != previous:
        raise _Bad(number, f"event {seq}: prev_hash does not match event {seq - 1}")
    leaf = leaf_hash(data)
    try:
        verify_inclusion(
            leaf_index=seq - 1, tree_size=checkpoint.tree_size, leaf_hash=leaf, path=path, root=checkpoint.root_hash
        )
    except ProofError as bad:
        raise _Bad(number, f"event {seq}: {bad}") from None
    return leaf.hex()

"""An export of a period, checked offline with the public key alone: every altered byte is found and its line named."""

from __future__ import annotations

import base64
import dataclasses
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy.orm import Session

from audit import Actor, ActorType, AuditAction, AuditRecord, NoteSigner, Outcome, record, sign_checkpoint, tree_size
from audit.export import FORMAT, export_lines, seq_range, verify_export

SIGNER = NoteSigner.generate("test.example/audit")
OTHER = NoteSigner.generate("test.example/audit")
ACTOR = Actor(ActorType.USER, "someone@test.example", "police", "police_officer")
T0 = datetime(2031, 3, 1, 9, 0, tzinfo=UTC)


def _entry(n: int) -> AuditRecord:
    return AuditRecord(action=AuditAction.STAFF_VIEW_OPENED, actor=ACTOR, outcome=Outcome.SUCCESS, detail={"n": n})


def _export(session: Session, count: int = 6) -> tuple[list[bytes], int, int]:
    """Append `count` events a minute apart from T0, sign, and export them all; return the lines and seqs."""
    for n in range(count):
        record(session, [_entry(n)], now=T0 + timedelta(minutes=n))
    signed = sign_checkpoint(session, SIGNER)
    found = seq_range(session, T0, T0 + timedelta(minutes=count))
    assert found is not None
    lines = [line.encode() for line in export_lines(session, signed, *found)]
    return lines, found[0], found[1]


def _problem(lines: list[bytes]) -> tuple[int | None, str]:
    result = verify_export(lines, SIGNER.verifier())
    assert not result.ok and result.problem is not None, result
    return result.line, result.problem


def test_an_export_verifies_with_the_public_key_alone(session: Session) -> None:
    lines, first, last = _export(session)

    result = verify_export(lines, SIGNER.verifier())

    assert result.ok and result.problem is None, result
    assert result.events_checked == last - first + 1 == 6
    assert result.checkpoint is not None and result.checkpoint.tree_size == tree_size(session)
    header = json.loads(lines[0])
    assert header["format"] == FORMAT and (header["first_seq"], header["last_seq"]) == (first, last)
    event = json.loads(lines[1])
    assert event["seq"] == first and event["event"]["detail"] == {"n": 0}
    assert json.loads(base64.b64decode(event["canonical"])) == event["event"]


def test_seq_range_is_the_events_of_the_period_and_none_for_an_empty_one(session: Session) -> None:
    _lines, first, _last = _export(session, 4)

    assert seq_range(session, T0 + timedelta(minutes=1), T0 + timedelta(minutes=3)) == (first + 1, first + 2)
    assert seq_range(session, T0 - timedelta(days=9), T0 - timedelta(days=8)) is None


def test_a_run_outside_the_checkpoint_is_refused(session: Session) -> None:
    record(session, [_entry(0)])
    signed = sign_checkpoint(session, SIGNER)

    with pytest.raises(ValueError, match="not all in the checkpoint"):
        list(export_lines(session, signed, signed.tree_size, signed.tree_size + 1))


def test_every_single_byte_altered_is_found(session: Session) -> None:
    lines, _first, _last = _export(session, 3)
    blob = b"".join(lines)

    for position in range(len(blob)):
        for replacement in {blob[position] ^ 0x01, ord("0") if blob[position] != ord("0") else ord("1")}:
            altered = blob[:position] + bytes([replacement]) + blob[position + 1 :]
            result = verify_export(altered.splitlines(keepends=True), SIGNER.verifier())
            assert not result.ok, f"byte {position} altered to {replacement} went unnoticed"


@pytest.mark.parametrize(
    ("change", "line", "phrase"),
    [
        (lambda lines: lines[:2] + lines[3:], 3, "not the line of event"),
        (lambda lines: lines[:-1], 7, "are missing"),
        (lambda lines: [*lines, lines[-1]], 8, "a line after event"),
        (lambda lines: [lines[0], lines[2], lines[1], *lines[3:]], 2, "not the line of event"),
        (lambda lines: [], 1, "not a line of UTF-8 JSON"),
        (lambda lines: [b"\xff\xfe\n", *lines[1:]], 1, "not a line of UTF-8 JSON"),
        (lambda lines: [b"[]\n", *lines[1:]], 1, "not in canonical form"),
        (lambda lines: [lines[0].replace(b'{"checkpoint"', b'{ "checkpoint"'), *lines[1:]], 1, "canonical form"),
        (lambda lines: [lines[0][:-1], *lines[1:]], 1, "canonical form"),
    ],
    ids=["deleted", "cut short", "line added", "reordered", "empty", "not utf-8", "not an object", "spaced", "no newline"],
)
def test_lines_deleted_added_reordered_or_malformed_are_named(
    session: Session, change: Any, line: int, phrase: str
) -> None:
    lines, _first, _last = _export(session)

    where, problem = _problem(change(lines))

    assert where == line and phrase in problem, (where, problem)


def _rewrite(line: bytes, **values: Any) -> bytes:
    decoded = json.loads(line)
    decoded.update(values)
    return (json.dumps(decoded, sort_keys=True, separators=(",", ":"), ensure_ascii=False) + "\n").encode()


def _event_line(lines: list[bytes], index: int, **values: Any) -> list[bytes]:
    return [*lines[:index], _rewrite(lines[index], **values), *lines[index + 1 :]]


def test_a_header_that_is_not_one_is_named(session: Session) -> None:
    lines, _first, _last = _export(session)

    assert _problem([_rewrite(lines[0], format="other/1"), *lines[1:]]) == (1, f"the first line is not a {FORMAT} header")
    extra = _problem([_rewrite(lines[0], extra=1), *lines[1:]])
    assert extra == (1, f"the first line is not a {FORMAT} header")


def test_a_checkpoint_signed_by_another_key_is_refused(session: Session) -> None:
    lines, _first, _last = _export(session)
    header = json.loads(lines[0])
    forged = OTHER.sign(tree_size(session), b"\x01" * 32)

    where, problem = _problem([_rewrite(lines[0], checkpoint=forged), *lines[1:]])

    assert where == 1 and problem.startswith("the checkpoint: ") and "no signature" in problem
    assert header["checkpoint"] != forged


@pytest.mark.parametrize(
    "values",
    [{"first_seq": 0}, {"last_seq": 10**9}, {"first_seq": "1"}, {"first_seq": 5, "last_seq": 4}],
    ids=["zero", "beyond the checkpoint", "not a number", "backwards"],
)
def test_header_seqs_outside_the_checkpoint_are_refused(session: Session, values: dict[str, Any]) -> None:
    lines, _first, _last = _export(session)

    where, problem = _problem([_rewrite(lines[0], **values), *lines[1:]])

    assert where == 1 and "are not a run within the checkpoint" in problem


def test_an_event_that_does_not_match_its_canonical_bytes_is_named(session: Session) -> None:
    lines, first, _last = _export(session)
    event = json.loads(lines[2])["event"]

    where, problem = _problem(_event_line(lines, 2, event={**event, "actor_id": "mallory@test.example"}))

    assert (where, problem) == (3, f"event {first + 1}: the event does not match its canonical bytes")


def test_canonical_bytes_rewritten_with_their_event_fail_the_proof(session: Session) -> None:
    lines, first, _last = _export(session)
    event = {**json.loads(lines[2])["event"], "actor_id": "mallory@test.example"}
    data = json.dumps(event, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()

    where, problem = _problem(_event_line(lines, 2, event=event, canonical=base64.b64encode(data).decode()))

    assert (where, problem) == (3, f"event {first + 1}: the inclusion proof does not lead to the root hash")


def test_a_broken_chain_between_two_lines_is_named(session: Session) -> None:
    lines, first, _last = _export(session)
    event = {**json.loads(lines[3])["event"], "prev_hash": "0" * 64}
    data = json.dumps(event, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()

    where, problem = _problem(_event_line(lines, 3, event=event, canonical=base64.b64encode(data).decode()))

    assert (where, problem) == (4, f"event {first + 2}: prev_hash does not match event {first + 1}")


@pytest.mark.parametrize(
    ("values", "phrase"),
    [
        ({"canonical": "not base64!"}, "are not base64"),
        ({"proof": [7]}, "are not base64"),
        ({"proof": "abc"}, "are not base64"),
        ({"canonical": base64.b64encode(b"\xff").decode()}, "are not JSON"),
        ({"canonical": base64.b64encode(b"[1]").decode(), "event": [1]}, "does not match its canonical bytes"),
        ({"proof": []}, "the inclusion proof is shorter than the tree is deep"),
    ],
    ids=["canonical", "proof item", "proof string", "not json", "not an object", "no proof"],
)
def test_malformed_event_lines_are_named(session: Session, values: dict[str, Any], phrase: str) -> None:
    lines, first, _last = _export(session)

    where, problem = _problem(_event_line(lines, 1, **values))

    assert where == 2 and problem.startswith(f"event {first}: ") and phrase in problem, problem


def test_an_export_is_stable_for_the_same_checkpoint(session: Session) -> None:
    lines, first, last = _export(session)
    signed = sign_checkpoint(session, SIGNER)

    again = [line.encode() for line in export_lines(session, signed, first, last)]

    assert again == lines


def test_the_proofs_hold_for_long_runs_exported_in_batches(session: Session, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("audit.export._BATCH", 4)
    lines, first, last = _export(session, 11)

    result = verify_export(lines, SIGNER.verifier())

    assert result.ok and result.events_checked == last - first + 1 == 11


def test_the_entry_fields_are_what_record_stored(session: Session) -> None:
    """Guard against an export that reads another column set than the hash covers."""
    lines, _first, _last = _export(session, 1)
    event = json.loads(lines[1])["event"]

    assert set(event) >= {"seq", "prev_hash", "actor_id", "items", "detail", "trace_id"}
    assert dataclasses.asdict(_entry(0))["detail"] == event["detail"]

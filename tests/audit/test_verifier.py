"""verify() against a database administrator who tampers with the trail, its tree and its checkpoints.

Every tamper runs with the append-only triggers off (tests/tamper.py), inside the test's
transaction, and checks that verify() says exactly where the trail breaks and what is wrong.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import delete, insert, select, text, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from audit import (
    Actor,
    ActorType,
    AuditAction,
    AuditCheckpoint,
    AuditEvent,
    AuditNode,
    AuditRecord,
    Checkpoint,
    NoteSigner,
    Outcome,
    ReviewReason,
    VerificationResult,
    checkpoint_of_size,
    record,
    sign_checkpoint,
    tree_size,
    verify,
)
from audit.hashing import EMPTY_ROOT, HASHED_COLUMNS, canonical_bytes_of, leaf_hash
from audit.store import root_at
from audit.tree import CompactRange
from tests.tamper import disable_audit_triggers

ORIGIN = "test.example/audit"
SIGNER = NoteSigner.generate(ORIGIN)
VERIFIER = SIGNER.verifier()
OTHER_SIGNER = NoteSigner.generate(ORIGIN)
ACTOR = Actor(ActorType.USER, "someone@test.example", "police", "police_officer")
_COLUMNS = [getattr(AuditEvent, name) for name in (*HASHED_COLUMNS, "hash")]


def _entry(**overrides: Any) -> AuditRecord:
    return dataclasses.replace(
        AuditRecord(action=AuditAction.STAFF_VIEW_OPENED, actor=ACTOR, outcome=Outcome.SUCCESS), **overrides
    )


def _trail(session: Session, count: int, *, sign_at: Sequence[int] = ()) -> int:
    """Append `count` events after a multiple of 8, signing a checkpoint after each offset in `sign_at`.

    Returns that multiple of 8 (`start`): the test's events are start + 1 … start + count, and the
    tree's node positions over them are predictable whatever the shared database already holds.
    The events go in transactions of 1, 3 and 2 events in turn; one of them carries review flags.
    """
    start = tree_size(session)
    if start % 8:
        record(session, [_entry(detail={"pad": n}) for n in range(-start % 8)])
        start += -start % 8
    chunks = itertools.cycle([1, 3, 2])
    done = 0
    while done < count:
        stop = min([offset for offset in sign_at if offset > done] + [count])
        size = min(next(chunks), stop - done)
        record(
            session,
            [
                _entry(detail={"n": done + i}, review=[ReviewReason.REFUSED] if done + i == 1 else [])
                for i in range(size)
            ],
        )
        done += size
        if done in sign_at:
            sign_checkpoint(session, SIGNER)
    assert tree_size(session) == start + count
    return start


def _verify(session: Session, **options: Any) -> VerificationResult:
    """Verify from what the database holds now, not from objects the session remembers."""
    session.expire_all()
    return verify(session, **options)


def _broken(session: Session, **options: Any) -> VerificationResult:
    result = _verify(session, **options)
    assert result.ok is False and result.problem is not None and result.root_hash is None, result
    return result


def _problem(result: VerificationResult) -> str:
    assert result.problem is not None, result
    return result.problem


def _row(session: Session, seq: int) -> dict[str, Any]:
    return dict(session.execute(select(*_COLUMNS).where(AuditEvent.seq == seq)).mappings().one())


def _rehash(values: Mapping[str, Any]) -> str:
    return leaf_hash(canonical_bytes_of(values)).hex()


def _set_event(session: Session, which: int, **values: Any) -> None:
    """Set columns of event `which` (`seq` among them, to move it) behind the ORM's back."""
    session.execute(
        update(AuditEvent).where(AuditEvent.seq == which).values(**values).execution_options(synchronize_session=False)
    )


def _rechain(session: Session, first: int, last: int | None = None, **change: Any) -> None:
    """Apply `change` to event `first`, then rewrite it and the events after it (to `last`) consistently.

    Each rewritten event's prev_hash is the (new) hash of the one before, and each hash is
    recomputed from the new content: the hash chain of the rewritten run is flawless.
    """
    query = select(*_COLUMNS).where(AuditEvent.seq >= first).order_by(AuditEvent.seq)
    if last is not None:
        query = query.where(AuditEvent.seq <= last)
    rows = [dict(row) for row in session.execute(query).mappings()]
    rows[0].update(change)
    prev_hash = rows[0]["prev_hash"]
    for row in rows:
        row["prev_hash"] = prev_hash
        row["hash"] = prev_hash = _rehash(row)
        _set_event(session, row["seq"], **{name: value for name, value in row.items() if name != "seq"})


def _rebuild_nodes(session: Session) -> None:
    """Replace every stored node by the one the events (as they now are) make."""
    tree = CompactRange.empty()
    nodes: list[dict[str, Any]] = []
    for (hex_hash,) in session.execute(select(AuditEvent.hash).order_by(AuditEvent.seq)):
        nodes.extend(
            {"level": level, "position": position, "hash": node}
            for (level, position), node in tree.append(bytes.fromhex(hex_hash))
        )
    session.execute(delete(AuditNode))
    session.execute(insert(AuditNode), nodes)


def _set_checkpoint(session: Session, size: int, **values: Any) -> None:
    session.execute(
        update(AuditCheckpoint)
        .where(AuditCheckpoint.tree_size == size)
        .values(**values)
        .execution_options(synchronize_session=False)
    )


def _set_node(session: Session, level: int, position: int, node_hash: bytes) -> None:
    session.execute(
        update(AuditNode)
        .where(AuditNode.level == level, AuditNode.position == position)
        .values(hash=node_hash)
        .execution_options(synchronize_session=False)
    )


def _delete_node(session: Session, level: int, position: int) -> None:
    session.execute(delete(AuditNode).where(AuditNode.level == level, AuditNode.position == position))


def _trusted(session: Session, size: int) -> Checkpoint:
    """Return the checkpoint of `size`, as a verifier who checked its signature trusts it."""
    return VERIFIER.open(checkpoint_of_size(session, size).note)


# --- an intact trail ------------------------------------------------------------------------------


def test_an_intact_trail_with_checkpoints_verifies_every_signature(session: Session) -> None:
    start = _trail(session, 11, sign_at=[4, 7, 11])

    result = _verify(session, verifier=VERIFIER)

    assert result.ok and result.problem is None and result.first_broken_seq is None and result.bad_checkpoint is None
    assert result.events_checked == start + 11
    assert result.checkpoints_checked >= 3 and result.signatures_checked is True
    assert result.root_hash == root_at(session, start + 11).hex()


def test_without_a_verifier_signatures_are_not_checked_and_the_result_says_so(session: Session) -> None:
    start = _trail(session, 4, sign_at=[4])
    disable_audit_triggers(session)
    _set_checkpoint(session, start + 4, note="not a signed note at all")

    result = _verify(session)

    assert result.ok and result.signatures_checked is False and result.checkpoints_checked >= 1


# --- events -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("actor_id", "mallory@test.example"),
        ("items", [{"decision": "disclose", "rule": "cp.health", "ids": "AAAAAAAAAAAAAAAAAAAAAA=="}]),
        ("detail", {"n": 2, "extra": "added"}),
        ("occurred_at", datetime(2020, 2, 2, 2, 2, 2, tzinfo=UTC)),
        ("outcome", Outcome.DENIED.value),
        ("hash", "ab" * 32),
    ],
)
def test_an_altered_column_is_named(session: Session, column: str, value: Any) -> None:
    start = _trail(session, 5)
    target = start + 3
    disable_audit_triggers(session)
    _set_event(session, target, **{column: value})

    result = _broken(session, batch_size=2)

    assert result.first_broken_seq == target and result.bad_checkpoint is None
    assert result.problem == f"event {target}: content does not match its hash (altered after it was written)"
    assert result.events_checked == target - 1


def test_removed_review_flags_are_named(session: Session) -> None:
    """The review queue's flags live in the hashed detail: removing them is an alteration."""
    start = _trail(session, 3)
    flagged = start + 2
    assert _row(session, flagged)["detail"] == {"n": 1, "review": ["refused"]}
    disable_audit_triggers(session)
    _set_event(session, flagged, detail={"n": 1})

    result = _broken(session)

    assert result.first_broken_seq == flagged
    assert "content does not match its hash" in _problem(result)


def test_an_event_deleted_in_the_middle_is_named(session: Session) -> None:
    start = _trail(session, 5)
    gone = start + 3
    disable_audit_triggers(session)
    session.execute(delete(AuditEvent).where(AuditEvent.seq == gone))

    result = _broken(session)

    assert result.first_broken_seq == gone and result.bad_checkpoint is None
    assert result.problem == f"event {gone} is missing: the sequence jumps from {gone - 1} to {gone + 1}"


def test_events_deleted_from_the_end_are_named_by_the_checkpoint_that_covered_them(session: Session) -> None:
    start = _trail(session, 5, sign_at=[4, 5])
    disable_audit_triggers(session)
    session.execute(delete(AuditEvent).where(AuditEvent.seq > start + 3))

    result = _broken(session, verifier=VERIFIER)

    # The first checkpoint beyond the trail is named, not the newest.
    assert result.bad_checkpoint == start + 4 and result.first_broken_seq is None
    assert result.problem == (
        f"checkpoint {start + 4} covers more events than the trail holds ({start + 3}): events were deleted from its end"
    )
    assert result.events_checked == start + 3


def test_an_event_deleted_from_the_end_without_a_checkpoint_goes_unnoticed(session: Session) -> None:
    """Why checkpoints exist: a trail cut short is still a well-formed trail."""
    start = _trail(session, 5)
    disable_audit_triggers(session)
    session.execute(delete(AuditEvent).where(AuditEvent.seq == start + 5))

    result = _verify(session)

    assert result.ok and result.events_checked == start + 4


def test_events_deleted_from_the_end_under_a_stored_node_are_named_by_it(session: Session) -> None:
    """Without a checkpoint, the nodes over deleted events still show that the trail was longer."""
    start = _trail(session, 6)
    disable_audit_triggers(session)
    session.execute(delete(AuditEvent).where(AuditEvent.seq > start + 4))

    result = _broken(session)

    position = (start + 4) // 2  # node 1/p over events start + 5 and start + 6
    assert result.problem == (
        f"stored node 1/{position} covers events the trail does not hold: events were deleted from its end"
    )
    assert result.events_checked == start + 4 and result.first_broken_seq is None


def test_a_checkpoint_of_the_empty_trail_is_checked_too(session: Session) -> None:
    if tree_size(session) != 0:
        pytest.skip("the test database already holds events")
    sign_checkpoint(session, SIGNER)

    assert _verify(session, verifier=VERIFIER).checkpoints_checked == 1
    disable_audit_triggers(session)
    _set_checkpoint(session, 0, note=OTHER_SIGNER.sign(0, EMPTY_ROOT))

    result = _broken(session, verifier=VERIFIER)
    assert result.bad_checkpoint == 0 and "no signature" in _problem(result)


def test_an_event_inserted_in_the_middle_is_named_at_the_event_it_displaced(session: Session) -> None:
    """A well-formed event slipped in at seq s verifies itself; the original event s, now s + 1, does not."""
    start = _trail(session, 5)
    at = start + 3
    disable_audit_triggers(session)
    for seq in range(start + 5, at - 1, -1):  # one row at a time, from the end: the seq key stays unique
        _set_event(session, seq, seq=seq + 1)
    forged = _row(session, at + 1) | {"seq": at, "actor_id": "mallory@test.example", "detail": {"forged": True}}
    forged["prev_hash"] = _row(session, at - 1)["hash"]
    forged["hash"] = _rehash(forged)
    session.execute(insert(AuditEvent).values(**forged))

    result = _broken(session)

    assert result.first_broken_seq == at + 1 and result.bad_checkpoint is None
    assert result.problem == f"event {at + 1}: prev_hash does not match event {at} (re-chained or reordered)"
    assert result.events_checked == at  # the forged event itself passed


def test_two_events_swapped_are_named_at_the_first(session: Session) -> None:
    start = _trail(session, 5)
    first, second = start + 2, start + 3
    disable_audit_triggers(session)
    _set_event(session, first, seq=-1)
    _set_event(session, second, seq=first)
    _set_event(session, -1, seq=second)

    result = _broken(session)

    assert result.first_broken_seq == first
    assert result.problem == f"event {first}: prev_hash does not match event {first - 1} (re-chained or reordered)"


def test_an_event_rewritten_with_its_hash_recomputed_is_caught_by_the_next_event(session: Session) -> None:
    start = _trail(session, 5)
    target = start + 2
    disable_audit_triggers(session)
    _rechain(session, target, target, actor_id="mallory@test.example")

    result = _broken(session)

    assert result.first_broken_seq == target + 1
    assert result.problem == f"event {target + 1}: prev_hash does not match event {target} (re-chained or reordered)"


def test_an_event_rechained_with_a_new_prev_hash_is_named(session: Session) -> None:
    start = _trail(session, 4)
    target = start + 3
    disable_audit_triggers(session)
    _rechain(session, target, target, prev_hash="f" * 64)

    result = _broken(session)

    assert result.first_broken_seq == target
    assert result.problem == f"event {target}: prev_hash does not match event {target - 1} (re-chained or reordered)"


def test_a_rechained_run_of_events_is_caught_by_the_stored_tree(session: Session) -> None:
    """Every later event re-chained: the chain is flawless, but the stored nodes over the change are not."""
    start = _trail(session, 8)
    disable_audit_triggers(session)
    _rechain(session, start + 3, actor_id="mallory@test.example")

    result = _broken(session, batch_size=1)

    # Leaf start + 2 (event start + 3) first completes node 1/(start + 2) / 2, at event start + 4.
    position = (start + 2) // 2
    events = f"events {2 * position + 1} to {2 * position + 2}"
    assert result.problem == f"stored node 1/{position} does not match {events} (altered)"
    assert result.first_broken_seq is None and result.bad_checkpoint is None
    assert result.events_checked == start + 4


def test_a_rewritten_last_event_is_caught_only_by_a_checkpoint(session: Session) -> None:
    """Leaf start + 4 completes no node: only the checkpoint's root holds the last event."""
    start = _trail(session, 5, sign_at=[5])
    size = start + 5
    disable_audit_triggers(session)
    _rechain(session, size, actor_id="mallory@test.example")

    result = _broken(session)

    assert result.bad_checkpoint == size and result.first_broken_seq is None
    assert result.problem == f"checkpoint {size}: its root is not the root of events 1 to {size}"

    session.execute(delete(AuditCheckpoint).where(AuditCheckpoint.tree_size == size))
    assert _verify(session).ok


# --- a whole trail rewritten ----------------------------------------------------------------------------


def _rewrite_everything(session: Session, target: int) -> None:
    """Alter one event and rewrite the whole trail and tree around it, as consistently as a DBA can."""
    disable_audit_triggers(session)
    _rechain(session, target, actor_id="mallory@test.example")
    _rebuild_nodes(session)


def test_a_consistent_rewrite_of_trail_and_tree_is_caught_only_by_the_signed_checkpoint(session: Session) -> None:
    start = _trail(session, 9, sign_at=[4, 7])
    _rewrite_everything(session, start + 3)

    result = _broken(session, verifier=VERIFIER)

    assert result.bad_checkpoint == start + 4 and result.first_broken_seq is None
    assert result.problem == f"checkpoint {start + 4}: its root is not the root of events 1 to {start + 4}"
    assert result.events_checked == start + 4

    # Without its checkpoints the rewritten trail is flawless: they are what caught it.
    session.execute(delete(AuditCheckpoint).where(AuditCheckpoint.tree_size > start))
    assert _verify(session).ok


def test_a_rewrite_that_also_fixes_the_stored_roots_is_caught_only_by_the_signature(session: Session) -> None:
    start = _trail(session, 9, sign_at=[4, 7])
    _rewrite_everything(session, start + 3)
    for size in (start + 4, start + 7):
        _set_checkpoint(session, size, root_hash=root_at(session, size))

    unsigned = _verify(session)
    signed = _broken(session, verifier=VERIFIER)

    assert unsigned.ok and unsigned.signatures_checked is False
    assert signed.bad_checkpoint == start + 4 and signed.signatures_checked is True
    assert signed.problem == f"checkpoint {start + 4}: the signed note is of another tree"


def test_a_rewrite_resigned_with_the_attackers_key_is_caught_by_the_signature(session: Session) -> None:
    start = _trail(session, 9, sign_at=[4, 7])
    _rewrite_everything(session, start + 3)
    forger = NoteSigner.generate(ORIGIN)  # same log name, another key
    for size in (start + 4, start + 7):
        root = root_at(session, size)
        _set_checkpoint(session, size, root_hash=root, note=forger.sign(size, root))

    assert _verify(session, verifier=forger.verifier()).ok
    result = _broken(session, verifier=VERIFIER)

    assert result.bad_checkpoint == start + 4
    assert result.problem == f"checkpoint {start + 4}: the note carries no signature of {ORIGIN}"


# --- the stored tree ----------------------------------------------------------------------------------


def test_an_altered_node_is_named(session: Session) -> None:
    start = _trail(session, 8)
    position = start // 4 + 1  # node 2/p over events start + 5 … start + 8
    disable_audit_triggers(session)
    _set_node(session, 2, position, b"\x00" * 32)

    result = _broken(session, batch_size=3)

    assert result.problem == f"stored node 2/{position} does not match events {4 * position + 1} to {4 * position + 4} (altered)"
    assert result.first_broken_seq is None and result.bad_checkpoint is None


def test_a_deleted_node_is_named(session: Session) -> None:
    start = _trail(session, 8)
    position = start // 2 + 1  # node 1/p over events start + 3 and start + 4
    disable_audit_triggers(session)
    _delete_node(session, 1, position)

    result = _broken(session)

    assert result.problem == (
        f"the stored tree lacks node 1/{position}, over events {2 * position + 1} to {2 * position + 2} (deleted)"
    )
    assert result.first_broken_seq is None and result.bad_checkpoint is None


# --- checkpoints ----------------------------------------------------------------------------------------


def test_a_checkpoint_resigned_by_another_key_is_named_only_with_a_verifier(session: Session) -> None:
    start = _trail(session, 6, sign_at=[4, 6])
    size = start + 6
    root = root_at(session, size)
    disable_audit_triggers(session)
    _set_checkpoint(session, size, note=NoteSigner.generate(ORIGIN).sign(size, root))

    checked = _broken(session, verifier=VERIFIER)
    unchecked = _verify(session)

    assert checked.bad_checkpoint == size and checked.first_broken_seq is None and checked.signatures_checked
    assert checked.problem == f"checkpoint {size}: the note carries no signature of {ORIGIN}"
    assert checked.events_checked == size
    assert unchecked.ok and unchecked.signatures_checked is False
    assert unchecked.checkpoints_checked == checked.checkpoints_checked + 1


def test_a_checkpoint_note_that_is_not_a_note_is_named(session: Session) -> None:
    start = _trail(session, 4, sign_at=[4])
    disable_audit_triggers(session)
    _set_checkpoint(session, start + 4, note="tampered\n")

    result = _broken(session, verifier=VERIFIER)

    assert result.bad_checkpoint == start + 4
    assert _problem(result).startswith(f"checkpoint {start + 4}: a signed note is text, a blank line")


def test_an_altered_checkpoint_root_is_named_with_or_without_a_verifier(session: Session) -> None:
    start = _trail(session, 6, sign_at=[3, 6])
    size = start + 3
    disable_audit_triggers(session)
    _set_checkpoint(session, size, root_hash=b"\x11" * 32)

    for options in ({}, {"verifier": VERIFIER}):
        result = _broken(session, **options)
        assert result.bad_checkpoint == size and result.first_broken_seq is None
        assert result.problem == f"checkpoint {size}: its root is not the root of events 1 to {size}"
        assert result.events_checked == size


@pytest.mark.parametrize("other", ["smaller tree", "other root"])
def test_a_checkpoint_note_of_another_tree_is_named(session: Session, other: str) -> None:
    start = _trail(session, 6, sign_at=[6])
    size = start + 6
    # Validly signed by the log's own key, but not of the size and root stored beside it.
    note = SIGNER.sign(size - 1, root_at(session, size - 1)) if other == "smaller tree" else SIGNER.sign(size, EMPTY_ROOT)
    disable_audit_triggers(session)
    _set_checkpoint(session, size, note=note)

    result = _broken(session, verifier=VERIFIER)

    assert result.bad_checkpoint == size
    assert result.problem == f"checkpoint {size}: the signed note is of another tree"
    assert _verify(session).ok  # without the key, the note is not read


# --- from a trusted checkpoint ----------------------------------------------------------------------------


def test_from_a_trusted_checkpoint_only_later_events_are_walked(session: Session) -> None:
    start = _trail(session, 11, sign_at=[4, 8])
    full = _verify(session, verifier=VERIFIER)

    result = _verify(session, verifier=VERIFIER, trusted=_trusted(session, start + 4))

    assert result.ok and result.events_checked == 7
    assert result.root_hash == full.root_hash
    assert result.checkpoints_checked == 1  # checkpoint start + 8; start + 4 is the trusted one


def test_a_trusted_checkpoint_of_the_whole_trail_walks_nothing(session: Session) -> None:
    start = _trail(session, 5, sign_at=[5])

    result = _verify(session, trusted=_trusted(session, start + 5))

    assert result.ok and result.events_checked == 0 and result.root_hash == root_at(session, start + 5).hex()


def test_a_trusted_checkpoint_of_the_empty_tree_walks_everything(session: Session) -> None:
    start = _trail(session, 3)

    result = _verify(session, trusted=Checkpoint(ORIGIN, 0, EMPTY_ROOT))

    assert result.ok and result.events_checked == start + 3


def test_an_event_altered_before_a_trusted_checkpoint_is_not_walked(session: Session) -> None:
    """Trusting a checkpoint means trusting the events it covers: only a full walk reads them."""
    start = _trail(session, 8, sign_at=[4])
    disable_audit_triggers(session)
    _set_event(session, start + 2, actor_id="mallory@test.example")

    assert _verify(session, trusted=_trusted(session, start + 4)).ok
    assert _broken(session).first_broken_seq == start + 2


def test_a_node_altered_before_a_trusted_checkpoint_is_named_with_it(session: Session) -> None:
    start = _trail(session, 8, sign_at=[4])
    size = start + 4
    trusted = _trusted(session, size)
    disable_audit_triggers(session)
    _set_node(session, 2, start // 4, b"\x22" * 32)  # the subtree over events start + 1 … start + 4

    result = _broken(session, trusted=trusted)

    assert result.bad_checkpoint == size and result.first_broken_seq is None and result.events_checked == 0
    assert result.problem == (
        f"the stored tree does not reproduce the trusted checkpoint of size {size} (events or nodes before it were altered)"
    )


def test_a_node_deleted_before_a_trusted_checkpoint_is_named_with_it(session: Session) -> None:
    start = _trail(session, 8, sign_at=[4])
    size = start + 4
    trusted = _trusted(session, size)
    disable_audit_triggers(session)
    _delete_node(session, 2, start // 4)

    result = _broken(session, trusted=trusted)

    assert result.bad_checkpoint == size and result.first_broken_seq is None
    # The message ends with ProofError's advice, which in verify's own output reads oddly.
    assert result.problem == (
        f"the trusted checkpoint of size {size}: the stored tree lacks node 2/{start // 4}"
    )


def test_a_consistent_rewrite_before_a_trusted_checkpoint_is_named_with_it(session: Session) -> None:
    start = _trail(session, 8, sign_at=[5])
    size = start + 5
    trusted = _trusted(session, size)
    _rewrite_everything(session, start + 2)
    # The DBA even has the signing key: the stored checkpoint is re-signed over the new root.
    _set_checkpoint(session, size, root_hash=root_at(session, size), note=SIGNER.sign(size, root_at(session, size)))

    result = _broken(session, verifier=VERIFIER, trusted=trusted)

    assert result.bad_checkpoint == size
    assert "does not reproduce the trusted checkpoint" in _problem(result)
    assert _verify(session, verifier=VERIFIER).ok  # without the trusted root, the rewrite (re-signed) passes


def test_the_trusted_checkpoints_last_event_altered_is_named(session: Session) -> None:
    start = _trail(session, 6, sign_at=[4])
    size = start + 4
    trusted = _trusted(session, size)
    disable_audit_triggers(session)
    _set_event(session, size, actor_id="mallory@test.example")

    result = _broken(session, trusted=trusted)

    assert result.first_broken_seq == size and result.bad_checkpoint is None
    assert result.problem == f"event {size}: content does not match its hash (altered after it was written)"


def test_the_trusted_checkpoints_last_event_missing_is_named(session: Session) -> None:
    start = _trail(session, 6, sign_at=[4])
    size = start + 4  # even: the tree's root is folded from nodes alone, not from this event
    trusted = _trusted(session, size)
    disable_audit_triggers(session)
    session.execute(delete(AuditEvent).where(AuditEvent.seq == size))

    result = _broken(session, trusted=trusted)

    assert result.first_broken_seq == size
    assert result.problem == f"event {size}, the last of the trusted checkpoint, is missing"


@pytest.mark.parametrize("offset", [4, 5])
def test_the_trusted_checkpoints_last_event_replaced_is_named(session: Session, offset: int) -> None:
    """A well-formed event in place of the last one: the inclusion proof (even size) or the root (odd) fails."""
    start = _trail(session, 6, sign_at=[offset])
    size = start + offset
    trusted = _trusted(session, size)
    disable_audit_triggers(session)
    _rechain(session, size, size, actor_id="mallory@test.example")

    result = _broken(session, trusted=trusted)

    if offset % 2 == 0:
        assert result.first_broken_seq == size and result.bad_checkpoint is None
        assert result.problem == f"event {size} is not the last event of the trusted checkpoint"
    else:
        assert result.bad_checkpoint == size and result.first_broken_seq is None
        assert "does not reproduce the trusted checkpoint" in _problem(result)


def test_an_event_altered_after_a_trusted_checkpoint_is_named(session: Session) -> None:
    start = _trail(session, 9, sign_at=[4])
    target = start + 7
    trusted = _trusted(session, start + 4)
    disable_audit_triggers(session)
    _set_event(session, target, detail={"n": 0})

    result = _broken(session, trusted=trusted, batch_size=2)

    assert result.first_broken_seq == target and result.events_checked == 2
    assert "content does not match its hash" in _problem(result)


def test_an_inclusion_path_node_missing_before_a_trusted_checkpoint_is_named(session: Session) -> None:
    start = _trail(session, 6, sign_at=[4])
    size = start + 4
    trusted = _trusted(session, size)
    disable_audit_triggers(session)
    # Event size - 1 is a sibling on the path of event `size`, but not one of the root's nodes.
    session.execute(delete(AuditEvent).where(AuditEvent.seq == size - 1))

    result = _broken(session, trusted=trusted)

    assert result.bad_checkpoint == size or result.first_broken_seq == size - 1


# --- batching ---------------------------------------------------------------------------------------------


def _tamper_event(session: Session, start: int) -> None:
    _set_event(session, start + 6, actor_id="mallory@test.example")


def _tamper_deletion(session: Session, start: int) -> None:
    session.execute(delete(AuditEvent).where(AuditEvent.seq == start + 5))


def _tamper_tail(session: Session, start: int) -> None:
    session.execute(delete(AuditEvent).where(AuditEvent.seq > start + 9))


def _tamper_checkpoint_root(session: Session, start: int) -> None:
    _set_checkpoint(session, start + 7, root_hash=b"\x33" * 32)


def _tamper_rechain(session: Session, start: int) -> None:
    _rechain(session, start + 3, actor_id="mallory@test.example")


def _tamper_node(session: Session, start: int) -> None:
    _set_node(session, 1, start // 2 + 2, b"\x44" * 32)


def _tamper_nothing(session: Session, start: int) -> None:
    pass


TAMPERS: dict[str, Callable[[Session, int], None]] = {
    "nothing": _tamper_nothing,
    "altered event": _tamper_event,
    "deleted event": _tamper_deletion,
    "deleted tail": _tamper_tail,
    "checkpoint root": _tamper_checkpoint_root,
    "altered node": _tamper_node,
}


@pytest.mark.parametrize("trusting", [False, True], ids=["from the start", "from a trusted checkpoint"])
@pytest.mark.parametrize("tamper", list(TAMPERS))
def test_batching_neither_hides_nor_moves_a_problem(session: Session, tamper: str, trusting: bool) -> None:
    start = _trail(session, 11, sign_at=[2, 7, 10])
    trusted = _trusted(session, start + 2) if trusting else None
    disable_audit_triggers(session)
    TAMPERS[tamper](session, start)

    default = _verify(session, verifier=VERIFIER, trusted=trusted)

    assert default.ok is (tamper == "nothing")
    for batch_size in (1, 2, 3, 7):
        batched = _verify(session, verifier=VERIFIER, trusted=trusted, batch_size=batch_size)
        if tamper == "altered node":
            # Nodes are checked at the end of each batch: how many events were read before varies.
            assert (batched.ok, batched.first_broken_seq, batched.bad_checkpoint, batched.problem) == (
                default.ok,
                default.first_broken_seq,
                default.bad_checkpoint,
                default.problem,
            ), batch_size
        else:
            assert batched == default, batch_size


def _tamper_node_and_later_event(session: Session, start: int) -> None:
    _set_node(session, 1, start // 2, b"\x55" * 32)  # over events start + 1 and start + 2
    _set_event(session, start + 6, actor_id="mallory@test.example")


@pytest.mark.parametrize("tamper", [_tamper_rechain, _tamper_node_and_later_event], ids=["rechained run", "two"])
def test_batching_does_not_change_which_problem_is_named_first(
    session: Session, tamper: Callable[[Session, int], None]
) -> None:
    """One batch per event finds the problem at the first leaf it touches; every batch size should agree.

    A run re-chained from start + 3 breaks node 1/(start + 2)/2 (complete at event start + 4) and
    checkpoint start + 7; a large batch names the checkpoint, a small one the node.
    """
    start = _trail(session, 11, sign_at=[2, 7, 10])
    disable_audit_triggers(session)
    tamper(session, start)

    finest = _broken(session, batch_size=1)
    named = {
        batch_size: (result.first_broken_seq, result.bad_checkpoint, result.problem)
        for batch_size in (2, 3, 7, 5000)
        for result in [_broken(session, batch_size=batch_size)]
    }

    assert _problem(finest).startswith("stored node")
    assert named == dict.fromkeys(named, (finest.first_broken_seq, finest.bad_checkpoint, finest.problem))


def test_the_triggers_come_back_when_the_tampering_is_rolled_back(session: Session) -> None:
    """tamper.py's switch lasts as long as the transaction (or savepoint) that threw it."""
    start = _trail(session, 2)
    savepoint = session.begin_nested()
    disable_audit_triggers(session)
    session.execute(text("DELETE FROM audit_node"))
    savepoint.rollback()

    savepoint = session.begin_nested()
    with pytest.raises(DBAPIError, match="audit_node is append-only: DELETE refused"):
        session.execute(text("DELETE FROM audit_node"))
    savepoint.rollback()
    assert session.scalar(select(AuditNode.hash).where(AuditNode.level == 1, AuditNode.position == start // 2))

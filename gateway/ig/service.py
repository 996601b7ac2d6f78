"""The IG officer's work: searching the trail, proofs, the review queue, and disclosures.

Every read of the trail that can show who saw which child is itself audited (the search's filter
names, never their values); proofs and checkpoints hold no personal data and are not.
"""

from __future__ import annotations

import csv
import io
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from sqlalchemy.orm import Session

from audit import (
    AuditAction,
    AuditEvent,
    Outcome,
    ProofError,
    ReviewReason,
    UnknownTreeSize,
    checkpoint_of_size,
    consistency_proof,
    decode_items,
    inclusion_proof,
    latest_checkpoint,
)
from audit.checkpoint import b64
from audit.hashing import canonical_bytes, leaf_hash
from gateway.auth.principal import Principal
from gateway.kit.auditor import Auditor
from gateway.kit.errors import Conflict, InternalError, NotFound, ValidationFailed
from gateway.models import ReviewEntry, ReviewStatus
from policies import DecisionKind

from . import repository
from .repository import EventFilters
from .schemas import (
    ActorRead,
    ConsistencyProofRead,
    DisclosureRead,
    DisclosuresRead,
    EventDetailRead,
    EventPage,
    EventRead,
    InclusionProofRead,
    ItemDecisionRead,
    ReviewDecisionWrite,
    ReviewEntryRead,
    ReviewPage,
)

# The events that disclose a child's information to a person. Features that disclose in other
# ways (break-glass, an approved request to see) add their actions here.
DISCLOSURE_ACTIONS = (AuditAction.STAFF_VIEW_OPENED.value,)
# What a disclosure shows of an item: all but what is withheld silently.
DISCLOSED = frozenset({DecisionKind.DISCLOSE.value, DecisionKind.REDACT.value, DecisionKind.INDICATE.value})


def _actor(event: AuditEvent | ReviewEntry) -> ActorRead:
    kind = event.actor_type if isinstance(event, AuditEvent) else "user"
    return ActorRead(type=kind, id=event.actor_id, agency=event.actor_agency, role=event.actor_role)


def _event_read(event: AuditEvent) -> dict[str, object]:
    counts = Counter(ref.decision for ref in decode_items(event.items))
    return {
        "seq": event.seq,
        "occurred_at": event.occurred_at,
        "actor": _actor(event),
        "action": event.action,
        "outcome": event.outcome,
        "child_id": event.child_id,
        "purpose": event.purpose,
        "lawful_basis": event.lawful_basis,
        "policy_version": event.policy_version,
        "item_counts": dict(sorted(counts.items())),
        "detail": event.detail,
        "request_id": event.request_id,
        "trace_id": event.trace_id,
        "prev_hash": event.prev_hash,
        "hash": event.hash,
    }


def aware(moment: datetime | None, name: str) -> datetime | None:
    """Return a time given with its zone in UTC; refuse one without (which instant would it be?)."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        raise ValidationFailed(f"{name} needs a time zone, e.g. 2026-11-24T09:00:00Z")
    return moment.astimezone(UTC)


def search_events(
    session: Session, auditor: Auditor, filters: EventFilters, *, before: int | None, limit: int, base_url: str
) -> EventPage:
    """Return a page of events matching the filters, newest first; audit the search."""
    events = repository.find_events(session, filters, before=before, limit=limit + 1)
    page, more = events[:limit], len(events) > limit
    auditor.record(
        AuditAction.IG_AUDIT_SEARCHED,
        child_id=filters.child_id,
        detail={"filters": filters.used(), "returned": len(page)},
    )
    next_url = None
    if more:
        next_url = f"{base_url}{'&' if '?' in base_url else '?'}before={page[-1].seq}"
    return EventPage(events=[EventRead.model_validate(_event_read(event)) for event in page], next=next_url)


def get_event(session: Session, auditor: Auditor, seq: int) -> EventDetailRead:
    """Return one event in full, with its canonical bytes; audit the read."""
    event = repository.get_event(session, seq)
    if event is None:
        raise NotFound(f"there is no audit event {seq}")
    auditor.record(AuditAction.IG_AUDIT_SEARCHED, child_id=event.child_id, detail={"filters": ["seq"], "returned": 1})
    data = canonical_bytes(event)
    return EventDetailRead.model_validate(
        {
            **_event_read(event),
            "items": [ItemDecisionRead(item=r.item, decision=r.decision, rule=r.rule) for r in decode_items(event.items)],
            "canonical": b64(data),
            "leaf_hash": b64(leaf_hash(data)),
        }
    )


def checkpoint_note(session: Session) -> str:
    """Return the newest signed checkpoint, byte for byte."""
    latest = latest_checkpoint(session)
    if latest is None:
        raise NotFound("no checkpoint has been signed yet: one is signed within a second of the first event")
    return latest.note


@contextmanager
def _proving() -> Iterator[None]:
    """Answer a seq or size with no checkpoint as 404; a stored tree that cannot make a proof as a fault."""
    try:
        yield
    except UnknownTreeSize as unknown:
        raise NotFound(f"{unknown}") from None
    except ProofError as broken:
        # Sizes and seqs are checked first: what is left is a damaged store, not a bad request.
        raise InternalError(f"the stored tree cannot make this proof ({broken}): run `gateway audit verify`") from None


def prove_inclusion(session: Session, seq: int, tree_size: int | None) -> InclusionProofRead:
    """Return the inclusion proof of event `seq` against a stored checkpoint (the newest when no size is given)."""
    with _proving():
        if tree_size is None:
            latest = latest_checkpoint(session)
            if latest is None:
                raise UnknownTreeSize("no checkpoint has been signed yet")
            tree_size = latest.tree_size
        else:
            checkpoint_of_size(session, tree_size)
        proof = inclusion_proof(session, seq, tree_size)
    return InclusionProofRead(
        leaf_index=proof.leaf_index,
        tree_size=proof.tree_size,
        leaf_hash=b64(proof.leaf_hash),
        path=[b64(node) for node in proof.path],
    )


def prove_consistency(session: Session, first: int, second: int) -> ConsistencyProofRead:
    """Return the consistency proof between two stored checkpoints."""
    if first > second:
        raise ValidationFailed(f"first ({first}) must not be larger than second ({second})")
    with _proving():
        checkpoint_of_size(session, first)
        checkpoint_of_size(session, second)
        proof = consistency_proof(session, first, second)
    return ConsistencyProofRead(first=first, second=second, path=[b64(node) for node in proof.path])


def _entry_read(entry: ReviewEntry) -> ReviewEntryRead:
    return ReviewEntryRead(
        id=entry.id,
        reason=entry.reason,
        seq=entry.seq,
        actor=_actor(entry),
        action=entry.action,
        child_id=entry.child_id,
        flagged_at=entry.flagged_at,
        status=entry.status,
        reviewed_by=entry.reviewed_by,
        reviewed_at=entry.reviewed_at,
        outcome=entry.outcome,
        note=entry.note,
    )


def review_queue(
    session: Session,
    *,
    status: ReviewStatus | None,
    reason: ReviewReason | None,
    after: str | None,
    limit: int,
    base_url: str,
) -> ReviewPage:
    """Return a page of the review queue, in the order the flagged events happened."""
    cursor = _review_cursor(after)
    entries = repository.review_entries(session, status=status, reason=reason, after=cursor, limit=limit + 1)
    page, more = entries[:limit], len(entries) > limit
    next_url = None
    if more:
        next_url = f"{base_url}{'&' if '?' in base_url else '?'}after={page[-1].seq}:{page[-1].reason}"
    return ReviewPage(entries=[_entry_read(entry) for entry in page], next=next_url)


def _review_cursor(after: str | None) -> tuple[int, str] | None:
    if after is None:
        return None
    seq, _, reason = after.partition(":")
    if not seq.isdigit() or reason not in set(ReviewReason):
        raise ValidationFailed("after must be a cursor from a previous page's `next` (seq:reason)")
    return int(seq), reason


def conclude_review(
    session: Session, principal: Principal, auditor: Auditor, entry_id: uuid.UUID, decision: ReviewDecisionWrite
) -> ReviewEntryRead:
    """Mark an open entry reviewed with an outcome and a note; audit it (the note stays out of the trail)."""
    entry = repository.mark_reviewed(
        session, entry_id, by=principal.subject, at=datetime.now(UTC), outcome=decision.outcome, note=decision.note
    )
    if entry is None:
        existing = repository.review_entry(session, entry_id)
        if existing is None:
            raise NotFound(f"there is no review entry {entry_id}")
        raise Conflict(f"review entry {entry_id} was already reviewed by {existing.reviewed_by}")
    auditor.record(
        AuditAction.IG_REVIEW_RECORDED,
        child_id=entry.child_id,
        detail={
            "review_entry": str(entry.id),
            "reason": entry.reason,
            "flagged_seq": entry.seq,
            "outcome": decision.outcome.value,
        },
    )
    return _entry_read(entry)


def disclosures(session: Session, auditor: Auditor, child_id: uuid.UUID) -> DisclosuresRead:
    """Return every disclosure of a child's information, oldest first; audit the report."""
    events = repository.child_events(session, child_id, actions=DISCLOSURE_ACTIONS, outcome=Outcome.SUCCESS.value)
    found = [
        DisclosureRead(
            seq=event.seq,
            occurred_at=event.occurred_at,
            to=_actor(event),
            action=event.action,
            purpose=event.purpose,
            lawful_basis=event.lawful_basis,
            policy_version=event.policy_version,
            items=[
                ItemDecisionRead(item=ref.item, decision=ref.decision, rule=ref.rule)
                for ref in decode_items(event.items)
                if ref.decision in DISCLOSED
            ],
        )
        for event in events
    ]
    auditor.record(AuditAction.IG_DISCLOSURES_REPORTED, child_id=child_id, detail={"disclosures": len(found)})
    return DisclosuresRead(child_id=child_id, count=len(found), disclosures=found)


CSV_COLUMNS = (
    "seq",
    "occurred_at",
    "person",
    "role",
    "agency",
    "action",
    "purpose",
    "lawful_basis",
    "policy_version",
    "item",
    "decision",
    "rule",
)


def disclosures_csv(report: DisclosuresRead) -> Iterator[str]:
    """Render the report as CSV, one row per item disclosed (a disclosure of no item: one row without one)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")

    def flush() -> str:
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return text

    writer.writerow(CSV_COLUMNS)
    yield flush()
    for disclosure in report.disclosures:
        common = [
            disclosure.seq,
            disclosure.occurred_at.isoformat(),
            _csv_safe(disclosure.to.id),
            _csv_safe(disclosure.to.role or ""),
            disclosure.to.agency or "",
            disclosure.action,
            disclosure.purpose or "",
            _csv_safe(disclosure.lawful_basis or ""),
            _csv_safe(disclosure.policy_version or ""),
        ]
        rows = [(str(item.item), item.decision, _csv_safe(item.rule)) for item in disclosure.items] or [("", "", "")]
        for row in rows:
            writer.writerow([*common, *row])
        yield flush()


def _csv_safe(value: str) -> str:
    # A cell starting with = + - @ runs as a formula when a spreadsheet opens the file (OWASP CSV
    # injection): prefix it with a quote so that it stays text.
    return f"'{value}" if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value

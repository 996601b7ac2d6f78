"""Store what an agency pushed: link each claim, file each record under its child, audit it all.

Works on any adapter's `Submission`. An atomic submission (a FHIR transaction) is all or
nothing; any other succeeds or fails entry by entry. Every push is idempotent on
(client, source record id, version).
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass, field

from opentelemetry import trace
from sqlalchemy.orm import Session

from adapters import ClaimEntry, Entry, EntryOutcome, EntryStatus, Issue, RecordEntry, RejectedEntry, Submission
from audit import AuditAction, Outcome
from gateway.auth.principal import Principal
from gateway.identity import repository as identity_repository
from gateway.identity.service import LinkRefused, link_claim
from gateway.kit.auditor import Auditor
from gateway.kit.crypto import ChildErased, DataKeyring, seal_value
from gateway.kit.db import insert_if_absent, lock_for_transaction
from gateway.kit.errors import ErrorDetail, Forbidden, GatewayError
from gateway.models import Child, Client, Item, ItemContent
from policies import CATEGORIES, RecordKind, RecordStatus

from . import repository

tracer = trace.get_tracer("gateway.ingest")


class PushRejected(GatewayError):
    """The whole push is refused: nothing from it is stored, only the audit event of the refusal."""

    status, title, fhir_code = 422, "Push rejected", "processing"


class _EntryRejected(Exception):
    """One entry cannot be stored; carries the issues that say why."""

    def __init__(self, *issues: Issue) -> None:
        super().__init__("entry rejected")
        self.issues = issues


@dataclass
class _ChildTally:
    items_created: list[str] = field(default_factory=list)
    identities_created: int = 0
    unchanged: int = 0

    def add(self, other: _ChildTally) -> None:
        self.items_created += other.items_created
        self.identities_created += other.identities_created
        self.unchanged += other.unchanged


Tallies = dict[uuid.UUID, _ChildTally]


def ingest(
    session: Session,
    principal: Principal,
    *,
    auditor: Auditor,
    keyring: DataKeyring,
    submission: Submission,
) -> list[EntryOutcome]:
    """Store a submission's entries for the calling client; return one outcome per entry, in order."""
    with tracer.start_as_current_span("ingest") as span:
        span.set_attribute("gateway.submission", submission.label)
        span.set_attribute("gateway.entry_count", len(submission.entries))
        push = _Push(session, principal, auditor, keyring, submission, _active_client(session, principal, auditor))
        outcomes = push.store_all_or_nothing() if submission.atomic else push.store_entry_by_entry()
        push.audit(outcomes)
        return outcomes


@dataclass
class _Push:
    """One push being stored: what every step of it shares (the unit of work)."""

    session: Session
    principal: Principal
    auditor: Auditor
    keyring: DataKeyring
    submission: Submission
    client: Client
    tallies: Tallies = field(default_factory=lambda: defaultdict(_ChildTally))
    data_keys: dict[uuid.UUID, bytes] = field(default_factory=dict)
    # Subjects resolved once per push: a Patient's nine Encounters name the same subject.
    subjects: dict[str, tuple[uuid.UUID, uuid.UUID]] = field(default_factory=dict)

    def store_all_or_nothing(self) -> list[EntryOutcome]:
        """Store every entry or none: the first problem refuses the whole push."""
        issues = list(self.submission.issues)
        issues += [issue for entry in self.submission.entries if isinstance(entry, RejectedEntry) for issue in entry.issues]
        if issues:
            raise self._rejected(issues)
        outcomes: dict[int, EntryOutcome] = {}
        for entry in _claims_first(self.submission.entries):
            try:
                outcomes[entry.index] = self._store(entry, self.tallies)
            except _EntryRejected as rejected:
                raise self._rejected(list(rejected.issues)) from None
        return [outcomes[index] for index in sorted(outcomes)]

    def store_entry_by_entry(self) -> list[EntryOutcome]:
        """Store each entry on its own: one that fails is answered with its issues, the rest stand."""
        outcomes = {
            entry.index: EntryOutcome(entry.index, EntryStatus.REJECTED, entry.issues)
            for entry in self.submission.entries
            if isinstance(entry, RejectedEntry)
        }
        for entry in _claims_first(self.submission.entries):
            entry_tallies: Tallies = defaultdict(_ChildTally)
            try:
                with self.session.begin_nested():
                    outcomes[entry.index] = self._store(entry, entry_tallies)
            except _EntryRejected as rejected:
                outcomes[entry.index] = EntryOutcome(entry.index, EntryStatus.REJECTED, rejected.issues)
            else:
                for child_id, tally in entry_tallies.items():
                    self.tallies[child_id].add(tally)
        return [outcomes[index] for index in sorted(outcomes)]

    def audit(self, outcomes: list[EntryOutcome]) -> None:
        """Record what the push stored, per child, and what it could not."""
        for child_id, tally in self.tallies.items():
            self.auditor.record(
                AuditAction.CLIENT_RECORDS_PUSHED,
                Outcome.SUCCESS,
                child_id=child_id,
                detail={
                    "submission": self.submission.label,
                    "items_created": tally.items_created,
                    "identities_created": tally.identities_created,
                    "unchanged": tally.unchanged,
                },
            )
        failed = [o for o in outcomes if o.status is EntryStatus.REJECTED]
        if failed:
            self.auditor.record(
                AuditAction.CLIENT_RECORDS_REJECTED,
                Outcome.FAILURE,
                detail={
                    "submission": self.submission.label,
                    "entries_rejected": len(failed),
                    "issue_codes": sorted({i.code for o in failed for i in o.issues}),
                },
            )

    def _store(self, entry: ClaimEntry | RecordEntry, tallies: Tallies) -> EntryOutcome:
        try:
            if isinstance(entry, ClaimEntry):
                return self._link(entry, tallies)
            return self._file(entry, tallies)
        except ChildErased as erased:
            raise _EntryRejected(Issue("error", erased.fhir_code, entry.location, erased.detail)) from None

    def _link(self, entry: ClaimEntry, tallies: Tallies) -> EntryOutcome:
        self._require_kind(RecordKind.IDENTITY, entry.location)
        with tracer.start_as_current_span("link"):
            try:
                result = link_claim(
                    self.session, self.principal, auditor=self.auditor, keyring=self.keyring, claim=entry.claim
                )
            except LinkRefused as refused:
                raise _EntryRejected(Issue("error", "processing", entry.location, str(refused))) from None
        tally = tallies[result.child_id]
        if result.created:
            tally.identities_created += 1
        else:
            tally.unchanged += 1
        return EntryOutcome(entry.index, EntryStatus.CREATED if result.created else EntryStatus.UNCHANGED)

    def _file(self, entry: RecordEntry, tallies: Tallies) -> EntryOutcome:
        record = entry.record
        kind = self._known_kind(record.kind, record.category, entry.location)
        self._require_kind(kind, entry.location)
        # Versions of one source record are stored one transaction at a time, so that two pushes of
        # different new versions cannot both leave theirs current.
        lock_for_transaction(self.session, "item", self.client.id, record.source_record_id)
        existing = repository.get_item_version(
            self.session,
            client_id=self.client.id,
            source_record_id=record.source_record_id,
            source_version=record.source_version,
        )
        if existing is not None:
            tallies[existing.child_id].unchanged += 1
            return EntryOutcome(entry.index, EntryStatus.UNCHANGED)

        child_id, identity_id = self._subject(entry)
        data_key = self._data_key(child_id)
        repository.supersede_items(self.session, client_id=self.client.id, source_record_id=record.source_record_id)
        item_id = uuid.uuid4()
        content = ItemContent(summary=record.summary, payload=record.payload)
        inserted = insert_if_absent(
            self.session,
            Item,
            {
                "id": item_id,
                "child_id": child_id,
                "identity_id": identity_id,
                "client_id": self.client.id,
                "agency": self.client.agency,
                "source_record_id": record.source_record_id,
                "source_version": record.source_version,
                "kind": kind,
                "category": record.category,
                "occurred_at": record.occurred_at,
                "security_labels": sorted(record.security_labels),
                "detrimental": False,
                "status": RecordStatus.ENTERED_IN_ERROR if record.entered_in_error else RecordStatus.CURRENT,
                "sealed_content": seal_value(data_key, content, ItemContent, context=Item.context_for(item_id)),
                "sealed_summary": seal_value(
                    data_key, record.summary, str, context=Item.context_for(item_id, "summary")
                ),
            },
            unique=["client_id", "source_record_id", "source_version"],
        )
        if not inserted:
            # A concurrent push by this client stored the same version first.
            tallies[child_id].unchanged += 1
            return EntryOutcome(entry.index, EntryStatus.UNCHANGED)
        tallies[child_id].items_created.append(str(item_id))
        return EntryOutcome(entry.index, EntryStatus.CREATED)

    def _subject(self, entry: RecordEntry) -> tuple[uuid.UUID, uuid.UUID]:
        # Claims are all linked before any record is filed, so a subject found here stays valid
        # for the rest of the push.
        subject = entry.record.subject_ref
        if subject not in self.subjects:
            self.subjects[subject] = self._resolve_subject(entry)
        return self.subjects[subject]

    def _resolve_subject(self, entry: RecordEntry) -> tuple[uuid.UUID, uuid.UUID]:
        for identity in identity_repository.get_current_identities(
            self.session, client_id=self.client.id, source_record_id=entry.record.subject_ref
        ):
            child_id = identity_repository.get_linked_child_id(self.session, identity_id=identity.id)
            if child_id is not None:
                return child_id, identity.id
        raise _EntryRejected(
            Issue(
                "error",
                "not-found",
                entry.subject_location,
                "the subject is neither in this push nor linked from an earlier push by this client; "
                "send the subject's identity (with its NHS number) first or in the same push",
            )
        )

    def _data_key(self, child_id: uuid.UUID) -> bytes:
        if child_id not in self.data_keys:
            child = self.session.get(Child, child_id)
            self.data_keys[child_id] = self.keyring.unwrap(child.wrapped_data_key if child else None)
        return self.data_keys[child_id]

    def _known_kind(self, kind: str, category: str, location: str) -> RecordKind:
        try:
            known = RecordKind(kind)
        except ValueError:
            known = None
        if known is None or known is RecordKind.IDENTITY or category not in CATEGORIES:
            raise _EntryRejected(
                Issue("error", "not-supported", location, f"records of kind '{kind}' ({category}) are not accepted")
            )
        return known

    def _require_kind(self, kind: RecordKind, location: str) -> None:
        if kind not in self.client.allowed_kinds:
            raise _EntryRejected(
                Issue("error", "forbidden", location, f"this client is not registered to push records of kind '{kind}'")
            )

    def _rejected(self, issues: list[Issue]) -> PushRejected:
        error = PushRejected(
            f"The {self.submission.label} was rejected as a whole; nothing from it was stored.",
            errors=[ErrorDetail(location=i.location, message=i.message, code=i.code) for i in issues],
        )
        return self.auditor.refuse(
            error,
            AuditAction.CLIENT_RECORDS_REJECTED,
            Outcome.FAILURE,
            detail={
                "submission": self.submission.label,
                "entries": len(self.submission.entries),
                "issue_codes": sorted({issue.code for issue in issues}),
                "issue_count": len(issues),
            },
        )


def _claims_first(entries: tuple[Entry, ...]) -> list[ClaimEntry | RecordEntry]:
    # A record may name a subject claimed in the same push: link the claims first. Claims go in
    # NHS number order, records in source id order, so that concurrent pushes about the same
    # children and records take their locks in the same order and cannot deadlock.
    claims = sorted((e for e in entries if isinstance(e, ClaimEntry)), key=lambda e: (e.claim.nhs_number or "", e.index))
    records = sorted((e for e in entries if isinstance(e, RecordEntry)), key=lambda e: (e.record.source_record_id, e.index))
    return [*claims, *records]


def _active_client(session: Session, principal: Principal, auditor: Auditor) -> Client:
    client = session.get(Client, principal.subject)
    if client is None or not client.active:
        raise auditor.refuse(
            Forbidden("This client is not registered or no longer active."),
            AuditAction.CLIENT_RECORDS_REJECTED,
            detail={"reason": "client_inactive"},
        )
    return client

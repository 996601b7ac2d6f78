"""Store what an agency pushed: link each claim, file each record under its child, audit it all.

Works on any adapter's `Submission`. An atomic submission (a FHIR transaction) is all or
nothing; any other succeeds or fails entry by entry. Every push is idempotent on
(client, source record id, version).
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, NoReturn

from opentelemetry import trace
from sqlalchemy.orm import Session

from adapters import (
    ClaimEntry,
    EntryOutcome,
    EntryStatus,
    IdentityClaim,
    InboundRecord,
    Issue,
    RecordEntry,
    RejectedEntry,
    Submission,
)
from audit import AuditAction, Outcome
from gateway.auth.principal import Principal
from gateway.identity import repository as identity_repository
from gateway.identity.service import LinkRefused, link_claims
from gateway.kit.auditor import Auditor
from gateway.kit.crypto import ChildErased, DataKeyring, seal_value
from gateway.kit.db import insert_all, lock_all_for_transaction
from gateway.kit.errors import ErrorDetail, Forbidden, GatewayError
from gateway.models import Client, Item, ItemContent, ItemDetail, PersonDetail, SchoolPlacement
from gateway.notifications.routing import FiledRecord, Routing, RoutingScope, route
from gateway.models.base import utcnow
from policies import CATEGORIES, RecordKind, RecordStatus

from . import repository

tracer = trace.get_tracer("gateway.ingest")


_UNNAMED = "not stored: no record of this push that was accepted is about this person"


class PushRejected(GatewayError):
    """The whole push is refused: nothing from it is stored, only the audit event of the refusal."""

    status, title, fhir_code = 422, "Push rejected", "processing"


@dataclass
class _ChildTally:
    items_created: list[str] = field(default_factory=list)
    identities_created: int = 0
    unchanged: int = 0


Tallies = dict[uuid.UUID, _ChildTally]


def ingest(
    session: Session,
    principal: Principal,
    *,
    auditor: Auditor,
    keyring: DataKeyring,
    routing: Routing,
    submission: Submission,
) -> list[EntryOutcome]:
    """Store a submission's entries for the calling client; return one outcome per entry, in order.

    Set-based: a push costs a constant number of statements, whatever its size. Claims are
    linked first (a record may name a subject claimed in the same push), then records are
    filed, then each new record is routed to the inboxes it belongs in (notifications/routing.py).
    An atomic submission with any problem is refused as a whole before it is stored.
    """
    with tracer.start_as_current_span("ingest") as span:
        span.set_attribute("gateway.submission", submission.label)
        span.set_attribute("gateway.entry_count", len(submission.entries))
        push = _Push(
            session, principal, auditor, keyring, routing, submission, _active_client(session, principal, auditor)
        )
        outcomes = push.store()
        push.audit(outcomes)
        return outcomes


@dataclass
class _Push:
    """One push being stored: what every step of it shares (the unit of work)."""

    session: Session
    principal: Principal
    auditor: Auditor
    keyring: DataKeyring
    routing: Routing
    submission: Submission
    client: Client
    claims: dict[str, IdentityClaim] = field(default_factory=dict)
    filed: list[FiledRecord] = field(default_factory=list)
    tallies: Tallies = field(default_factory=lambda: defaultdict(_ChildTally))
    outcomes: dict[int, EntryOutcome] = field(default_factory=dict)
    data_keys: dict[uuid.UUID, bytes] = field(default_factory=dict)

    def store(self) -> list[EntryOutcome]:
        """Store the entries: all or none for an atomic submission, else each that can be."""
        if self.submission.atomic and self.submission.issues:
            self._reject_all(list(self.submission.issues))
        claims: dict[int, ClaimEntry] = {}
        records: dict[int, tuple[RecordEntry, RecordKind]] = {}
        for entry in self.submission.entries:
            if isinstance(entry, RejectedEntry):
                self._reject(entry.index, *entry.issues)
            elif isinstance(entry, ClaimEntry):
                if self._allowed(RecordKind.IDENTITY, entry.index, entry.location):
                    claims[entry.index] = entry
            else:
                kind = self._known_kind(entry)
                if kind is not None and self._allowed(kind, entry.index, entry.location):
                    records[entry.index] = (entry, kind)
        if self.submission.claims_follow_records:
            named = {entry.record.subject_ref for entry, _kind in records.values()}
            for index, entry in list(claims.items()):
                if entry.claim.source_record_id not in named:
                    del claims[index]
                    self._reject(index, Issue("error", "processing", entry.location, _UNNAMED))
        self._settle()
        with tracer.start_as_current_span("link"):
            self._link(claims)
        self._settle()
        with tracer.start_as_current_span("file"):
            self._file(records)
        if self.filed:
            with tracer.start_as_current_span("route"):
                scope = RoutingScope(frozenset(f.child_id for f in self.filed))
                route(self.session, self.auditor, scope, self.routing, self.filed, self.data_keys)
        return [self.outcomes[index] for index in sorted(self.outcomes)]

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

    def _link(self, claims: dict[int, ClaimEntry]) -> None:
        self.claims = {entry.claim.source_record_id: entry.claim for entry in claims.values()}
        linked = link_claims(
            self.session,
            self.principal,
            auditor=self.auditor,
            keyring=self.keyring,
            claims={index: entry.claim for index, entry in claims.items()},
        )
        self.data_keys.update(linked.data_keys)
        for index, result in linked.outcomes.items():
            if isinstance(result, LinkRefused):
                self._reject(index, Issue("error", result.code, claims[index].location, str(result)))
            elif result.created:
                self.tallies[result.child_id].identities_created += 1
                self.outcomes[index] = EntryOutcome(index, EntryStatus.CREATED)
            else:
                self._unchanged(index, result.child_id)

    def _file(self, records: dict[int, tuple[RecordEntry, RecordKind]]) -> None:
        if not records:
            return
        client_id = self.client.id
        versions = {(entry.record.source_record_id, entry.record.source_version) for entry, _ in records.values()}
        # Versions of one source record are stored one transaction at a time, so that two pushes of
        # different new versions cannot both leave theirs current.
        lock_all_for_transaction(self.session, [("item", client_id, record_id) for record_id, _ in versions])
        stored = repository.get_stored_items(self.session, client_id=client_id, versions=versions)
        stored_versions = {(row.source_record_id, row.source_version): row.child_id for row in stored}
        in_force = {row.source_record_id for row in stored if row.status != RecordStatus.SUPERSEDED}

        known = {row.source_record_id for row in stored}  # records with a version stored before
        new: dict[tuple[str, str], list[int]] = {}
        for index, (entry, _kind) in sorted(records.items()):
            version = (entry.record.source_record_id, entry.record.source_version)
            if version in stored_versions:
                self._unchanged(index, stored_versions[version])
            else:
                new.setdefault(version, []).append(index)  # the same version twice in one push: stored once
        if not new:
            return
        subjects = identity_repository.get_current_subjects(
            self.session,
            client_id=client_id,
            source_record_ids={records[indexes[0]][0].record.subject_ref for indexes in new.values()},
        )
        self._unwrap_keys({child_id for _identity_id, child_id in subjects.values()})
        # Of several new versions of one record in this push, the last is in force.
        last_version = {version[0]: version for version in new}
        rows: list[dict[str, Any]] = []
        filed: dict[uuid.UUID, tuple[uuid.UUID, list[int]]] = {}
        placements: list[dict[str, Any]] = []
        for version, indexes in new.items():
            entry, kind = records[indexes[0]]
            subject = subjects.get(entry.record.subject_ref)
            if subject is None or subject[1] not in self.data_keys:
                for index in indexes:
                    self._reject(index, _unfileable(records[index][0], subject))
                continue
            identity_id, child_id = subject
            item_id = uuid.uuid4()
            latest = last_version[version[0]] == version
            rows.append(self._item_row(item_id, entry.record, kind, child_id, identity_id, in_force=latest))
            filed[item_id] = (child_id, indexes)
            if (school := entry.record.school) is not None:
                placements.append({"item_id": item_id, "urn": school.urn, "status": school.status, "since": school.since})
            if latest and version[0] not in known:
                self.filed.append(
                    FiledRecord(
                        item_id, child_id, kind, self.client.agency, entry.record, self.claims.get(entry.record.subject_ref)
                    )
                )
        self._settle()
        superseded = {row["source_record_id"] for row in rows} & in_force
        if superseded:
            repository.supersede_items(self.session, client_id=client_id, source_record_ids=superseded)
        repository.add_items(self.session, rows)
        if placements:
            insert_all(self.session, SchoolPlacement, placements)
        for item_id, (child_id, indexes) in filed.items():
            first, *repeats = indexes
            self.tallies[child_id].items_created.append(str(item_id))
            self.outcomes[first] = EntryOutcome(first, EntryStatus.CREATED)
            for index in repeats:
                self._unchanged(index, child_id)

    def _item_row(
        self,
        item_id: uuid.UUID,
        record: InboundRecord,
        kind: RecordKind,
        child_id: uuid.UUID,
        identity_id: uuid.UUID,
        *,
        in_force: bool,
    ) -> dict[str, Any]:
        data_key = self.data_keys[child_id]
        status = RecordStatus.ENTERED_IN_ERROR if record.entered_in_error else RecordStatus.CURRENT
        return {
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
            "received_at": utcnow(),
            "security_labels": sorted(record.security_labels),
            "police_handling_code": record.police_handling_code,
            "detrimental": record.detrimental,
            "contact": record.contact,
            "status": status if in_force else RecordStatus.SUPERSEDED,
            "sealed_content": seal_value(
                data_key,
                ItemContent(summary=record.summary, payload=record.payload),
                ItemContent,
                context=Item.context_for(item_id),
            ),
            "sealed_summary": seal_value(data_key, record.summary, str, context=Item.context_for(item_id, "summary")),
            "sealed_detail": _sealed_detail(data_key, item_id, record),
        }

    def _unwrap_keys(self, child_ids: set[uuid.UUID]) -> None:
        """Unwrap, once per push, the data keys of children not met yet; an erased child has none."""
        wanted = child_ids - self.data_keys.keys()
        for child_id, wrapped in identity_repository.get_wrapped_data_keys(self.session, child_ids=wanted).items():
            if wrapped is not None:
                self.data_keys[child_id] = self.keyring.unwrap(wrapped)

    def _unchanged(self, index: int, child_id: uuid.UUID) -> None:
        self.tallies[child_id].unchanged += 1
        self.outcomes[index] = EntryOutcome(index, EntryStatus.UNCHANGED)

    def _reject(self, index: int, *issues: Issue) -> None:
        self.outcomes[index] = EntryOutcome(index, EntryStatus.REJECTED, tuple(issues))

    def _settle(self) -> None:
        """Refuse an atomic push as soon as any entry is rejected, before more is written."""
        if not self.submission.atomic:
            return
        rejected = [o for _index, o in sorted(self.outcomes.items()) if o.status is EntryStatus.REJECTED]
        if rejected:
            self._reject_all([issue for outcome in rejected for issue in outcome.issues])

    def _known_kind(self, entry: RecordEntry) -> RecordKind | None:
        kind, category = entry.record.kind, entry.record.category
        try:
            known = RecordKind(kind)
        except ValueError:
            known = None
        if known is None or known is RecordKind.IDENTITY or category not in CATEGORIES:
            self._reject(
                entry.index,
                Issue("error", "not-supported", entry.location, f"records of kind '{kind}' ({category}) are not accepted"),
            )
            return None
        return known

    def _allowed(self, kind: RecordKind, index: int, location: str) -> bool:
        if kind in self.client.allowed_kinds:
            return True
        self._reject(
            index,
            Issue("error", "forbidden", location, f"this client is not registered to push records of kind '{kind}'"),
        )
        return False

    def _reject_all(self, issues: list[Issue]) -> NoReturn:
        error = PushRejected(
            f"The {self.submission.label} was rejected as a whole; nothing from it was stored.",
            errors=[ErrorDetail(location=i.location, message=i.message, code=i.code) for i in issues],
        )
        raise self.auditor.refuse(
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


def _sealed_detail(data_key: bytes, item_id: uuid.UUID, record: InboundRecord) -> bytes | None:
    """Seal the people, locations and grading a record carries; None when it carries none."""
    if not (record.people or record.locations or record.grading):
        return None
    detail = ItemDetail(
        people=tuple(
            PersonDetail(role=p.role, name=p.name, birth_date=p.birth_date, relationship=p.relationship)
            for p in record.people
        ),
        locations=record.locations,
        grading=record.grading,
    )
    return seal_value(data_key, detail, ItemDetail, context=Item.context_for(item_id, "detail"))


def _unfileable(entry: RecordEntry, subject: tuple[uuid.UUID, uuid.UUID] | None) -> Issue:
    if subject is None:
        return Issue(
            "error",
            "not-found",
            entry.subject_location,
            "the subject is neither in this push nor linked from an earlier push by this client; "
            "send the subject's identity (with its NHS number) first or in the same push",
        )
    erased = ChildErased()
    return Issue("error", erased.fhir_code, entry.location, erased.detail)


def _active_client(session: Session, principal: Principal, auditor: Auditor) -> Client:
    client = session.get(Client, principal.subject)
    if client is None or not client.active:
        raise auditor.refuse(
            Forbidden("This client is not registered or no longer active."),
            AuditAction.CLIENT_RECORDS_REJECTED,
            detail={"reason": "client_inactive"},
        )
    return client

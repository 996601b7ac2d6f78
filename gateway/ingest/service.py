"""Store what an agency pushed: link each claim, file each record under its child, audit it all.

Works on any adapter's `Submission`. An atomic submission (a FHIR transaction) is all or
nothing; any other succeeds or fails entry by entry. Every push is idempotent on
(client, source record id, version). A consent (`adapters.fhir_consent.InboundConsent`) is
filed in the consent registry rather than as an item.
"""

from __future__ import annotations

import re
import uuid
from collections import defaultdict
from dataclasses import dataclass, field, replace
from datetime import datetime
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
from adapters.fhir_consent import NHS_NUMBER_SUBJECT, ConsentTerms, InboundConsent
from audit import AuditAction, Outcome
from gateway.auth.principal import Principal
from gateway.identity import repository as identity_repository
from gateway.identity.service import NHS_NUMBER_SCHEME, LinkRefused, link_claims
from gateway.kit.auditor import Auditor
from gateway.kit.crypto import ChildErased, DataKeyring, seal_value
from gateway.kit.db import insert_all, lock_all_for_transaction
from gateway.kit.errors import ErrorDetail, Forbidden, GatewayError
from gateway.models import AlertDetail, Client, Item, ItemContent, ItemDetail, PersonDetail, SchoolPlacement
from gateway.notifications.routing import FiledRecord, Routing, RoutingScope, route
from gateway.models.base import utcnow
from policies import CATEGORIES, Agency, ConsentStatus, Purpose, RecordKind, RecordStatus

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
            session, principal, auditor, keyring, routing, submission, active_client(session, principal, auditor)
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
    # The identity versions this push linked (created or acknowledged), by entry, and when each was
    # stored: read with the first subject lookup, or on their own when nothing is looked up.
    claim_versions: dict[int, tuple[str, str]] = field(default_factory=dict)
    identity_times: dict[tuple[str, str], datetime] | None = None

    def store(self) -> list[EntryOutcome]:
        """Store the entries: all or none for an atomic submission, else each that can be."""
        if self.submission.atomic and self.submission.issues:
            self._reject_all(list(self.submission.issues))
        claims: dict[int, ClaimEntry] = {}
        records: dict[int, tuple[RecordEntry, RecordKind]] = {}
        consents: dict[int, tuple[RecordEntry, InboundConsent]] = {}
        for entry in self.submission.entries:
            if isinstance(entry, RejectedEntry):
                self._reject(entry.index, *entry.issues)
            elif isinstance(entry, ClaimEntry):
                if self._allowed(RecordKind.IDENTITY, entry.index, entry.location):
                    claims[entry.index] = entry
            elif isinstance(entry.record, InboundConsent):
                if self._allowed(RecordKind.CONSENT, entry.index, entry.location) and self._known_terms(entry, entry.record):
                    consents[entry.index] = (entry, entry.record)
            else:
                kind = self._known_kind(entry)
                if kind is not None and self._allowed(kind, entry.index, entry.location):
                    records[entry.index] = (entry, kind)
        if self.submission.claims_follow_records:
            named = {entry.record.subject_ref for entry, _kind in records.values()}
            named |= {consent.subject_ref for _entry, consent in consents.values()}
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
            self._file_consents(consents)
        if self.filed:
            with tracer.start_as_current_span("route"):
                scope = RoutingScope(frozenset(f.child_id for f in self.filed))
                route(self.session, self.auditor, scope, self.routing, self.filed, self.data_keys)
        self._stamp_identities()
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
                continue
            self.claim_versions[index] = (claims[index].claim.source_record_id, claims[index].claim.source_version)
            if result.created:
                self.tallies[result.child_id].identities_created += 1
                self.outcomes[index] = EntryOutcome(index, EntryStatus.CREATED)
            else:
                self._unchanged(index, result.child_id, None)

    def _stamp_identities(self) -> None:
        """Give each identity entry the time its version was stored (the linking stores and acknowledges without one)."""
        if not self.claim_versions:
            return
        if self.identity_times is None:
            self._subjects(set())  # nothing else was looked up: one query for the times alone
        times = self.identity_times or {}
        for index, version in self.claim_versions.items():
            outcome = self.outcomes[index]
            if outcome.status is not EntryStatus.REJECTED:
                self.outcomes[index] = replace(outcome, last_modified=times.get(version))

    def _file(self, records: dict[int, tuple[RecordEntry, RecordKind]]) -> None:
        if not records:
            return
        client_id = self.client.id
        versions = {(entry.record.source_record_id, entry.record.source_version) for entry, _ in records.values()}
        # Versions of one source record are stored one transaction at a time, so that two pushes of
        # different new versions cannot both leave theirs current.
        lock_all_for_transaction(self.session, [("item", client_id, record_id) for record_id, _ in versions])
        stored = repository.get_stored_items(self.session, client_id=client_id, versions=versions)
        stored_versions = {(row.source_record_id, row.source_version): row for row in stored}
        in_force = {row.source_record_id for row in stored if row.status != RecordStatus.SUPERSEDED}

        known = {row.source_record_id for row in stored}  # records with a version stored before
        new: dict[tuple[str, str], list[int]] = {}
        for index, (entry, _kind) in sorted(records.items()):
            version = (entry.record.source_record_id, entry.record.source_version)
            if version in stored_versions:
                self._unchanged(index, stored_versions[version].child_id, stored_versions[version].received_at)
            else:
                new.setdefault(version, []).append(index)  # the same version twice in one push: stored once
        if not new:
            return
        subjects, ambiguous = self._subjects({records[indexes[0]][0].record.subject_ref for indexes in new.values()})
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
                    self._reject(index, _unfileable(records[index][0], subject, ambiguous))
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
        received = {row["id"]: row["received_at"] for row in rows}
        for item_id, (child_id, indexes) in filed.items():
            first, *repeats = indexes
            self.tallies[child_id].items_created.append(str(item_id))
            self.outcomes[first] = EntryOutcome(first, EntryStatus.CREATED, last_modified=received[item_id])
            for index in repeats:
                self._unchanged(index, child_id, received[item_id])

    def _file_consents(self, consents: dict[int, tuple[RecordEntry, InboundConsent]]) -> None:
        """File each new consent version in the registry under its child; a repeat is acknowledged, not stored.

        Registry rows are never updated: a new version of a source's Consent is a new decision in
        the child's history, and the registry's reader takes the newest in force.
        """
        if not consents:
            return
        client_id = self.client.id
        versions = {(consent.source_record_id, consent.source_version) for _entry, consent in consents.values()}
        lock_all_for_transaction(self.session, [("consent", client_id, record_id) for record_id, _ in versions])
        stored = repository.get_stored_consents(self.session, client_id=client_id, versions=versions)
        new: dict[tuple[str, str], list[int]] = {}
        for index, (_entry, consent) in sorted(consents.items()):
            version = (consent.source_record_id, consent.source_version)
            if version in stored:
                self._unchanged(index, stored[version].child_id, stored[version].recorded_at)
            else:
                new.setdefault(version, []).append(index)  # the same version twice in one push: stored once
        if not new:
            return
        subjects, ambiguous = self._subjects({consents[indexes[0]][1].subject_ref for indexes in new.values()})
        # An erased child has no key: nothing more is filed about them.
        self._unwrap_keys({child_id for _identity_id, child_id in subjects.values()})
        now = utcnow()
        rows: list[dict[str, Any]] = []
        filed: list[tuple[uuid.UUID, uuid.UUID, ConsentTerms, list[int]]] = []
        for (record_id, source_version), indexes in new.items():
            consent = consents[indexes[0]][1]
            subject = subjects.get(consent.subject_ref)
            if subject is None or subject[1] not in self.data_keys:
                for index in indexes:
                    self._reject(index, _unfileable(consents[index][0], subject, ambiguous))
                continue
            terms, consent_id, child_id = consent.terms, uuid.uuid4(), subject[1]
            rows.append(
                {
                    "id": consent_id,
                    "child_id": child_id,
                    "given_by": terms.given_by,
                    "giver_relationship": terms.giver_relationship,
                    "sealed_note": None,
                    "client_id": client_id,
                    "source_record_id": record_id,
                    "source_version": source_version,
                    "status": ConsentStatus(terms.status),
                    "purpose": Purpose(terms.purpose),
                    "agencies": list(terms.agencies),
                    "categories": list(terms.categories),
                    # Without a start, a decision applies from when the gateway learns of it.
                    "period_start": terms.period_start or now,
                    "period_end": terms.period_end,
                    "recorded_by": client_id,
                    "recorded_at": now,
                }
            )
            filed.append((consent_id, child_id, terms, indexes))
        self._settle()
        repository.add_consents(self.session, rows)
        for consent_id, child_id, terms, (first, *repeats) in filed:
            self.outcomes[first] = EntryOutcome(first, EntryStatus.CREATED, last_modified=now)
            for index in repeats:
                self._unchanged(index, child_id, now)
            self.auditor.record(
                AuditAction.CLIENT_CONSENT_IMPORTED,
                Outcome.SUCCESS,
                child_id=child_id,
                purpose=terms.purpose,
                detail={
                    "consent_id": str(consent_id),
                    "status": terms.status,
                    "given_by": terms.given_by,
                    "submission": self.submission.label,
                },
            )

    def _subjects(self, refs: set[str]) -> tuple[dict[str, tuple[uuid.UUID, uuid.UUID]], set[str]]:
        """Return, by subject_ref, the identity and child each names, and the refs that name two children.

        A subject_ref is a Patient this client pushed (its source record id), or an NHS number:
        the newest of this client's identities in force with it, unless two of them are linked to
        different children (then the ref is ambiguous, and what names it is refused). Two queries
        at most, whatever the number of refs.
        The first call of a push also reads when its identity versions were stored, in the same query.
        """
        by_nhs_number = {ref for ref in refs if ref.startswith(NHS_NUMBER_SUBJECT)}
        by_record = refs - by_nhs_number
        # The first lookup also reads when the push's identity versions were stored (_stamp_identities).
        versions = set(self.claim_versions.values()) if self.identity_times is None else set()
        subjects: dict[str, tuple[uuid.UUID, uuid.UUID]] = {}
        if by_record or versions:
            rows = repository.get_identity_versions(
                self.session, client_id=self.client.id, source_record_ids=by_record, versions=versions
            )
            for row in rows:  # the newest received first
                if row.source_record_id in by_record and row.status is RecordStatus.CURRENT and row.child_id is not None:
                    subjects.setdefault(row.source_record_id, (row.id, row.child_id))
            if self.identity_times is None:
                self.identity_times = {
                    (row.source_record_id, row.source_version): row.received_at
                    for row in rows
                    if (row.source_record_id, row.source_version) in versions
                }
        by_index = {
            self.keyring.blind_index(NHS_NUMBER_SCHEME, ref.removeprefix(NHS_NUMBER_SUBJECT)): ref
            for ref in by_nhs_number
        }
        found = identity_repository.get_subjects_by_nhs_number(
            self.session, client_id=self.client.id, nhs_number_indexes=by_index.keys()
        )
        ambiguous: set[str] = set()
        for index, matches in found.items():
            if len({child_id for _identity_id, child_id in matches}) > 1:
                ambiguous.add(by_index[index])
            else:
                subjects[by_index[index]] = matches[0]  # the newest received
        return subjects, ambiguous

    def _known_terms(self, entry: RecordEntry, consent: InboundConsent) -> bool:
        """Check a consent's codes against the gateway's vocabulary (the adapter reads them; policies know them)."""
        issues = _consent_issues(consent.terms, entry.location)
        if issues:
            self._reject(entry.index, *issues)
        return not issues

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

    def _unchanged(self, index: int, child_id: uuid.UUID, stored_at: datetime | None) -> None:
        self.tallies[child_id].unchanged += 1
        self.outcomes[index] = EntryOutcome(index, EntryStatus.UNCHANGED, last_modified=stored_at)

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


_PURPOSES = frozenset(p.value for p in Purpose)
_AGENCIES = frozenset(a.value for a in Agency)
_CODE_LIKE = re.compile(r"[a-z][a-z0-9_.\-]{0,63}")


def _shown(code: str) -> str:
    # A code is named back to the source; anything that does not look like one might be personal.
    return repr(code) if _CODE_LIKE.fullmatch(code) else "(not shown)"


def _consent_issues(terms: ConsentTerms, location: str) -> list[Issue]:
    """Say which of a consent's purpose, agencies, categories and period the gateway cannot take."""
    issues = []
    if terms.purpose not in _PURPOSES:
        issues.append(
            Issue("error", "code-invalid", f"{location}.provision.purpose",
                  f"unknown purpose {_shown(terms.purpose)}; expected one of: {', '.join(sorted(_PURPOSES))}")
        )
    for agency in terms.agencies:
        if agency not in _AGENCIES:
            issues.append(
                Issue("error", "code-invalid", f"{location}.provision.actor",
                      f"unknown agency {_shown(agency)}; expected one of: {', '.join(sorted(_AGENCIES))}")
            )
    for category in terms.categories:
        if category not in CATEGORIES:
            issues.append(
                Issue("error", "code-invalid", f"{location}.provision.class",
                      f"unknown category {_shown(category)}; expected one of the ISA's categories, e.g. health.encounter")
            )
    if terms.period_start is None and terms.period_end is not None and terms.period_end <= utcnow():
        issues.append(
            Issue("error", "value", f"{location}.provision.period.end",
                  "the end must be after the start (now, when neither provision.period.start nor dateTime is given)")
        )
    return issues


def _sealed_detail(data_key: bytes, item_id: uuid.UUID, record: InboundRecord) -> bytes | None:
    """Seal the people, locations, grading and flag a record carries; None when it carries none."""
    if not (record.people or record.locations or record.grading or record.alert):
        return None
    alert = record.alert
    detail = ItemDetail(
        people=tuple(
            PersonDetail(role=p.role, name=p.name, birth_date=p.birth_date, relationship=p.relationship)
            for p in record.people
        ),
        locations=record.locations,
        grading=record.grading,
        alert=None if alert is None else AlertDetail(code=alert.code, active=alert.active, start=alert.start, end=alert.end),
    )
    return seal_value(data_key, detail, ItemDetail, context=Item.context_for(item_id, "detail"))


def _unfileable(entry: RecordEntry, subject: tuple[uuid.UUID, uuid.UUID] | None, ambiguous: set[str]) -> Issue:
    if entry.record.subject_ref in ambiguous:
        return Issue(
            "error",
            "multiple-matches",
            entry.subject_location,
            "the subject's NHS number matches more than one Patient this client pushed, linked to different "
            "children: name the subject by its Patient id (or have the links reviewed)",
        )
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


def active_client(session: Session, principal: Principal, auditor: Auditor) -> Client:
    """Return the calling client's registration, refusing (audited) a client unknown or no longer active."""
    client = session.get(Client, principal.subject)
    if client is None or not client.active:
        raise auditor.refuse(
            Forbidden("This client is not registered or no longer active."),
            AuditAction.CLIENT_RECORDS_REJECTED,
            detail={"reason": "client_inactive"},
        )
    return client

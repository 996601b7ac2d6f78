"""Store what an agency pushed: link each claim, file each record under its child, audit it all.

A transaction Bundle is all or nothing; a batch Bundle succeeds or fails entry by entry.
Every push is idempotent on (client, source record id, version).
"""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from dataclasses import dataclass, field

from opentelemetry import trace
from sqlalchemy.orm import Session

from adapters import EntryResult, InboundRecord, Issue, ParsedBundle
from audit import AuditAction, AuditRecord, Outcome, record
from gateway.auth.principal import Principal
from gateway.identity import repository as identity_repository
from gateway.identity.service import LinkRefused, link_claim
from gateway.kit.crypto import DataKeyring, seal
from gateway.kit.errors import AuditedRefusal, ErrorDetail
from gateway.models import Child, Client, Item, RecordStatus

from . import repository

tracer = trace.get_tracer("gateway.ingest")

IDENTITY_KIND = "identity"


class EntryRejected(Exception):
    """One entry cannot be stored; carries the issues that say why."""

    def __init__(self, issues: list[Issue]) -> None:
        super().__init__("entry rejected")
        self.issues = issues


class PushRejected(AuditedRefusal):
    """The whole push is refused: nothing from it is stored, only the audit event of the refusal."""


@dataclass(frozen=True)
class EntryOutcome:
    """What happened to one entry: an HTTP status line, where it lives, and any issues."""

    index: int
    status: str
    location: str | None = None
    issues: tuple[Issue, ...] = ()


@dataclass
class _ChildTally:
    items_created: list[str] = field(default_factory=list)
    identities_created: int = 0
    unchanged: int = 0


def ingest_bundle(
    session: Session,
    principal: Principal,
    *,
    keyring: DataKeyring,
    parsed: ParsedBundle,
    request_id: str | None = None,
) -> list[EntryOutcome]:
    """Store a parsed Bundle's entries for the calling client, in Bundle entry order of outcome."""
    with tracer.start_as_current_span("ingest") as span:
        span.set_attribute("gateway.bundle_type", parsed.bundle_type)
        span.set_attribute("gateway.entry_count", len(parsed.entries))
        client = _active_client(session, principal)
        tallies: dict[uuid.UUID, _ChildTally] = defaultdict(_ChildTally)
        if parsed.bundle_type == "transaction":
            outcomes = _ingest_transaction(session, principal, client, keyring, parsed, tallies, request_id)
        else:
            outcomes = _ingest_batch(session, principal, client, keyring, parsed, tallies, request_id)
        _audit_push(session, principal, parsed.bundle_type, tallies, outcomes, request_id)
        return outcomes


def _ingest_transaction(session, principal, client, keyring, parsed, tallies, request_id):  # type: ignore[no-untyped-def]
    issues = list(parsed.issues) + [issue for entry in parsed.entries for issue in entry.issues]
    if issues:
        _reject(session, principal, parsed, issues, request_id)
    outcomes: dict[int, EntryOutcome] = {}
    try:
        with session.begin_nested():
            for entry in _claims_first(parsed.entries):
                outcomes[entry.index] = _ingest_entry(session, principal, client, keyring, entry, tallies, request_id)
    except EntryRejected as rejected:
        tallies.clear()
        _reject(session, principal, parsed, rejected.issues, request_id)
    return [outcomes[index] for index in sorted(outcomes)]


def _ingest_batch(session, principal, client, keyring, parsed, tallies, request_id):  # type: ignore[no-untyped-def]
    outcomes: dict[int, EntryOutcome] = {}
    for entry in _claims_first(parsed.entries):
        if entry.issues:
            outcomes[entry.index] = EntryOutcome(entry.index, "422 Unprocessable Entity", issues=entry.issues)
            continue
        entry_tallies: dict[uuid.UUID, _ChildTally] = defaultdict(_ChildTally)
        try:
            with session.begin_nested():
                outcome = _ingest_entry(session, principal, client, keyring, entry, entry_tallies, request_id)
        except EntryRejected as rejected:
            outcome = EntryOutcome(entry.index, "422 Unprocessable Entity", issues=tuple(rejected.issues))
        else:
            for child_id, tally in entry_tallies.items():
                merged = tallies[child_id]
                merged.items_created += tally.items_created
                merged.identities_created += tally.identities_created
                merged.unchanged += tally.unchanged
        outcomes[entry.index] = outcome
    return [outcomes[index] for index in sorted(outcomes)]


def _claims_first(entries: tuple[EntryResult, ...]) -> list[EntryResult]:
    # A record may refer to a Patient pushed in the same Bundle: link the Patients first.
    return sorted(entries, key=lambda entry: (entry.claim is None, entry.index))


def _ingest_entry(session, principal, client, keyring, entry, tallies, request_id) -> EntryOutcome:  # type: ignore[no-untyped-def]
    path = f"Bundle.entry[{entry.index}].resource"
    if entry.claim is not None:
        _require_kind(client, IDENTITY_KIND, path)
        with tracer.start_as_current_span("link"):
            try:
                result = link_claim(session, principal, keyring=keyring, claim=entry.claim, request_id=request_id)
            except LinkRefused as refused:
                raise EntryRejected([Issue("error", "processing", path, str(refused))]) from None
        tally = tallies[result.child_id]
        if result.created:
            tally.identities_created += 1
        else:
            tally.unchanged += 1
        return EntryOutcome(
            entry.index,
            "201 Created" if result.created else "200 OK",
            f"{entry.claim.source_record_id}/_history/{entry.claim.source_version}",
        )
    assert entry.record is not None  # the adapter gives each clean entry a claim or a record
    return _store_record(session, principal, client, keyring, entry.index, entry.record, tallies)


def _store_record(session, principal, client, keyring, index, inbound: InboundRecord, tallies) -> EntryOutcome:  # type: ignore[no-untyped-def]
    path = f"Bundle.entry[{index}].resource"
    _require_kind(client, inbound.kind, path)
    location = f"{inbound.source_record_id}/_history/{inbound.source_version}"
    existing = repository.get_item_version(
        session,
        client_id=client.id,
        source_record_id=inbound.source_record_id,
        source_version=inbound.source_version,
    )
    if existing is not None:
        tallies[existing.child_id].unchanged += 1
        return EntryOutcome(index, "200 OK", location)

    child_id, identity_id = _resolve_subject(session, client, inbound, f"{path}.subject.reference")
    child = session.get(Child, child_id)
    if child is None or child.wrapped_data_key is None:
        raise EntryRejected([Issue("error", "processing", f"{path}.subject.reference",
                                   "the subject's record has been erased; nothing more can be filed for it")])
    for previous in repository.get_current_items(
        session, client_id=client.id, source_record_id=inbound.source_record_id
    ):
        previous.status = RecordStatus.SUPERSEDED

    item_id = uuid.uuid4()
    content = json.dumps({"summary": inbound.summary, "payload": inbound.payload}, sort_keys=True).encode()
    session.add(
        Item(
            id=item_id,
            child_id=child_id,
            identity_id=identity_id,
            client_id=client.id,
            agency=client.agency,
            source_record_id=inbound.source_record_id,
            source_version=inbound.source_version,
            kind=inbound.kind,
            category=inbound.category,
            occurred_at=inbound.occurred_at,
            security_labels=sorted(inbound.security_labels),
            status=RecordStatus(inbound.status),
            sealed_content=seal(keyring.unwrap(child.wrapped_data_key), content, context=f"item:{item_id}"),
        )
    )
    session.flush()
    tallies[child_id].items_created.append(str(item_id))
    return EntryOutcome(index, "201 Created", location)


def _resolve_subject(session: Session, client: Client, inbound: InboundRecord, location: str) -> tuple[uuid.UUID, uuid.UUID]:
    for identity in identity_repository.get_current_identities(
        session, client_id=client.id, source_record_id=inbound.subject_ref
    ):
        child_id = identity_repository.get_linked_child_id(session, identity_id=identity.id)
        if child_id is not None:
            return child_id, identity.id
    raise EntryRejected(
        [
            Issue(
                "error",
                "not-found",
                location,
                "the subject Patient is neither in this Bundle nor linked from an earlier push by this client; "
                "send the Patient (with its NHS number) first or in the same Bundle",
            )
        ]
    )


def _require_kind(client: Client, kind: str, location: str) -> None:
    if kind not in client.allowed_kinds:
        raise EntryRejected(
            [Issue("error", "forbidden", location, f"this client is not registered to push records of kind '{kind}'")]
        )


def _active_client(session: Session, principal: Principal) -> Client:
    client = session.get(Client, principal.subject)
    if client is None or not client.active:
        raise AuditedRefusal(403, "Forbidden", "This client is not registered or no longer active.",
                             fhir_code="forbidden")
    return client


def _reject(session, principal, parsed: ParsedBundle, issues: list[Issue], request_id) -> None:  # type: ignore[no-untyped-def]
    record(
        session,
        AuditRecord(
            action=AuditAction.CLIENT_RECORDS_REJECTED,
            actor=principal.actor(),
            outcome=Outcome.FAILURE,
            detail={
                "bundle_type": parsed.bundle_type,
                "entries": len(parsed.entries),
                "issue_codes": sorted({issue.code for issue in issues}),
                "issue_count": len(issues),
            },
            request_id=request_id,
        ),
    )
    raise PushRejected(
        422,
        "Push rejected",
        f"The {parsed.bundle_type} Bundle was rejected as a whole; nothing from it was stored.",
        [ErrorDetail(location=i.location, message=i.message, code=i.code) for i in issues],
        fhir_code="processing",
    )


def _audit_push(session, principal, bundle_type, tallies, outcomes, request_id) -> None:  # type: ignore[no-untyped-def]
    with tracer.start_as_current_span("audit"):
        for child_id, tally in tallies.items():
            record(
                session,
                AuditRecord(
                    action=AuditAction.CLIENT_RECORDS_PUSHED,
                    actor=principal.actor(),
                    outcome=Outcome.SUCCESS,
                    child_id=child_id,
                    detail={
                        "bundle_type": bundle_type,
                        "items_created": tally.items_created,
                        "identities_created": tally.identities_created,
                        "unchanged": tally.unchanged,
                    },
                    request_id=request_id,
                ),
            )
        failed = [o for o in outcomes if o.issues]
        if failed:
            record(
                session,
                AuditRecord(
                    action=AuditAction.CLIENT_RECORDS_REJECTED,
                    actor=principal.actor(),
                    outcome=Outcome.FAILURE,
                    detail={
                        "bundle_type": bundle_type,
                        "entries_rejected": len(failed),
                        "issue_codes": sorted({i.code for o in failed for i in o.issues}),
                    },
                    request_id=request_id,
                ),
            )

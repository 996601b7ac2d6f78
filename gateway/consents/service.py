"""The consent registry: record a decision, read the history and what is in force, export it as FHIR.

Who may: an active member of the team allocated to the child, through the one gate
(`cases.service.require_child_access`, which audits a refusal). Rows are never updated: a
withdrawal is a new decision, so the history is the table. Notes are sealed under the child's
data key; the audit trail records ids, states and who decided, never a note or a relationship.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from audit import AuditAction, Outcome
from gateway.auth.principal import Principal
from gateway.cases.access import AllocationGrant, ChildAccess
from gateway.cases.service import require_child_access
from gateway.kit.auditor import Auditor
from gateway.kit.crypto import ChildErased, DataKeyring, OpenedKey, seal_value
from gateway.kit.errors import ErrorDetail, Forbidden, ValidationFailed
from gateway.models import Consent
from gateway.models.base import utcnow
from policies import Agency, Purpose

from . import fhir, repository
from .schemas import ConsentCreate, ConsentRead, ConsentRegistryRead, ConsentSourceRead, GivenBy

# The purpose a reading of every purpose's decisions is audited under.
ALL_PURPOSES = "all"
# The scope key of a decision that names no agency: it covers every agency.
EVERY_AGENCY = "*"


def create(
    session: Session,
    principal: Principal,
    *,
    auditor: Auditor,
    keyring: DataKeyring,
    child_id: uuid.UUID,
    consent: ConsentCreate,
) -> ConsentRead:
    """Record a consent decision about a child, and return it as stored (the allocated team only)."""
    access = require_child_access(session, principal, auditor=auditor, child_id=child_id, purpose=consent.purpose)
    if not isinstance(access.grant, AllocationGrant):
        # Break-glass opens a child to be read in an emergency, not to change their record.
        raise auditor.refuse(
            Forbidden("Consent is recorded by the team allocated to the child, not under break-glass. "
                      "This refusal has been recorded."),
            AuditAction.STAFF_VIEW_REFUSED,
            child_id=child_id,
            purpose=consent.purpose,
            detail={"reason": "break_glass_cannot_record_consent"},
        )
    data_key = _data_key(
        session, access, keyring=keyring, auditor=auditor, action=AuditAction.STAFF_CONSENT_RECORDED,
        purpose=consent.purpose,
    )
    now = utcnow()
    start = consent.period_start or now
    if consent.period_end is not None and consent.period_end <= start:
        raise ValidationFailed(
            "period_end must be after period_start (now, when period_start is not given).",
            errors=[ErrorDetail(location="body.period_end", message="must be after period_start")],
        )
    row = Consent(
        id=uuid.uuid4(),
        child_id=access.child_id,
        given_by=consent.given_by.value,
        giver_relationship=consent.giver_relationship,
        status=consent.status,
        purpose=consent.purpose,
        agencies=list(consent.agencies),
        categories=list(consent.categories),
        period_start=start,
        period_end=consent.period_end,
        recorded_by=principal.subject,
        recorded_at=now,
    )
    if consent.note is not None:
        row.sealed_note = seal_value(data_key, consent.note, str, context=Consent.context_for(row.id, "note"))
    repository.add_consent(session, row)
    auditor.record(
        AuditAction.STAFF_CONSENT_RECORDED,
        Outcome.SUCCESS,
        child_id=access.child_id,
        purpose=consent.purpose,
        detail={"consent_id": str(row.id), "status": row.status.value, "given_by": row.given_by},
    )
    return _read(row, OpenedKey(data_key))


def get_registry(
    session: Session,
    principal: Principal,
    *,
    auditor: Auditor,
    keyring: DataKeyring,
    child_id: uuid.UUID,
    purpose: Purpose | None,
    at: datetime | None = None,
) -> ConsentRegistryRead:
    """Return a child's consent decisions: those in force now (see `current`), and the whole history."""
    access, consents, key = _load(session, principal, auditor=auditor, keyring=keyring, child_id=child_id, purpose=purpose)
    history = [_read(consent, key) for consent in consents]
    in_force = {consent.id for consent in current(consents, at=at or utcnow())}
    _audit_listing(auditor, access, purpose, output="json", returned=len(consents), in_force=len(in_force))
    return ConsentRegistryRead(
        child_id=access.child_id,
        current=[record for record in history if record.id in in_force],
        history=history,
    )


def get_fhir_bundle(
    session: Session,
    principal: Principal,
    *,
    auditor: Auditor,
    keyring: DataKeyring,
    child_id: uuid.UUID,
    purpose: Purpose | None,
) -> dict[str, Any]:
    """Return a child's consent decisions as a FHIR R4 collection Bundle of Consents (notes are not exported)."""
    access, consents, _key = _load(session, principal, auditor=auditor, keyring=keyring, child_id=child_id, purpose=purpose)
    _audit_listing(auditor, access, purpose, output="fhir", returned=len(consents), in_force=None)
    return fhir.to_bundle(access.child_id, consents)


def current(consents: Sequence[Consent], *, at: datetime) -> list[Consent]:
    """Return the decisions in force at `at`, newest recorded first.

    A scope is a purpose, one agency and a set of categories. A decision naming several agencies
    counts in the scope of each; one naming none counts in the scope "every agency", a scope of its
    own, as an empty set of categories ("every category") is. The registry does not weigh a
    decision for every agency against a later one for one agency: both are in force, and the policy
    engine reads them together. In each scope the decision in force is the newest recorded whose
    period covers `at` (period_start <= at < period_end, an end not set being open) and that was
    recorded by then (as the policy engine reads a decision: ConsentFact.in_force), so a newer
    decision whose period has not begun, or has ended, does not hide an older one that still covers
    `at`; and a withdrawal, being the newest decision of its scope, is what is in force after it.
    """
    newest: dict[tuple[str, str, frozenset[str]], uuid.UUID] = {}
    ordered = sorted(consents, key=lambda consent: consent.recorded_at, reverse=True)  # stable: ties keep their order
    for consent in ordered:
        if not _covers(consent, at):
            continue
        for agency in consent.agencies or [EVERY_AGENCY]:
            newest.setdefault((consent.purpose.value, agency, frozenset(consent.categories)), consent.id)
    in_force = set(newest.values())
    return [consent for consent in ordered if consent.id in in_force]


def _covers(consent: Consent, at: datetime) -> bool:
    return (
        consent.recorded_at <= at
        and (consent.period_start is None or consent.period_start <= at)
        and (consent.period_end is None or at < consent.period_end)
    )


def _load(
    session: Session,
    principal: Principal,
    *,
    auditor: Auditor,
    keyring: DataKeyring,
    child_id: uuid.UUID,
    purpose: Purpose | None,
) -> tuple[ChildAccess, list[Consent], OpenedKey]:
    access = require_child_access(session, principal, auditor=auditor, child_id=child_id, purpose=purpose or ALL_PURPOSES)
    data_key = _data_key(
        session, access, keyring=keyring, auditor=auditor, action=AuditAction.STAFF_CONSENTS_LISTED, purpose=purpose
    )
    return access, repository.get_consents(session, access, purpose=purpose), OpenedKey(data_key)


def _data_key(
    session: Session,
    access: ChildAccess,
    *,
    keyring: DataKeyring,
    auditor: Auditor,
    action: AuditAction,
    purpose: Purpose | None,
) -> bytes:
    """Return the child's data key, or refuse (410, audited) for an erased child: nothing more is read or kept."""
    try:
        return keyring.unwrap(repository.get_wrapped_data_key(session, access))
    except ChildErased as erased:
        raise auditor.refuse(
            erased, action, child_id=access.child_id, purpose=purpose, detail={"reason": "erased"}
        ) from None


def _audit_listing(
    auditor: Auditor, access: ChildAccess, purpose: Purpose | None, *, output: str, returned: int, in_force: int | None
) -> None:
    detail: dict[str, Any] = {"format": output, "returned": returned}
    if in_force is not None:
        detail["current"] = in_force
    auditor.record(AuditAction.STAFF_CONSENTS_LISTED, Outcome.SUCCESS, child_id=access.child_id, purpose=purpose, detail=detail)


def _read(consent: Consent, key: OpenedKey) -> ConsentRead:
    note = None
    if consent.sealed_note is not None:
        note = key.unseal_value(consent.sealed_note, str, context=Consent.context_for(consent.id, "note"))
    source = None
    if consent.client_id is not None and consent.source_record_id is not None and consent.source_version is not None:
        source = ConsentSourceRead(
            client_id=consent.client_id, record_id=consent.source_record_id, version=consent.source_version
        )
    return ConsentRead(
        id=consent.id,
        status=consent.status,
        purpose=consent.purpose,
        given_by=GivenBy(consent.given_by),
        giver_relationship=consent.giver_relationship,
        agencies=[Agency(agency) for agency in consent.agencies],
        categories=list(consent.categories),
        period_start=consent.period_start,
        period_end=consent.period_end,
        note=note,
        recorded_by=consent.recorded_by,
        recorded_at=consent.recorded_at,
        source=source,
    )

"""Retract a record a source pushed in error (FHIR DELETE [type]/[id]): its version in force is marked entered in error.

Nothing is erased: the row stays, with status entered-in-error, which the policy engine withholds
silently (policies/engine.py, builtin.entered-in-error), so the record leaves the child's view. A
later push of a new version of the record is in force again, as after any retraction. Only the
client's own records: another client's record looks exactly like one that does not exist.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from audit import AuditAction, Outcome
from gateway.auth.principal import Principal
from gateway.kit.auditor import Auditor
from gateway.kit.db import lock_all_for_transaction
from gateway.kit.errors import Forbidden, MethodNotAllowed, NotFound
from policies import RecordStatus

from . import repository
from .service import active_client

# The resource types a source cannot retract by DELETE, and why (said to the source).
NOT_RETRACTABLE = {
    "Patient": "a Patient is a claim of who a child is, not a record about them: a Patient linked to the wrong child "
    "is undone through link review (ask the MACPT's linking reviewers), and a corrected Patient is pushed as a new "
    "version",
    "Consent": "a consent decision is never deleted: the registry keeps every decision, so push the corrected decision "
    "(a new version of the Consent, e.g. status inactive for a withdrawal)",
}
_SUBMISSION = "delete"


@dataclass(frozen=True)
class Retraction:
    """What a DELETE did: retracted the record's version in force, or found it retracted already."""

    source_record_id: str
    already: bool


def retract(
    session: Session, principal: Principal, *, auditor: Auditor, resource_type: str, resource_id: str
) -> Retraction:
    """Mark the calling client's version in force of `resource_type/resource_id` entered in error, and audit it."""
    client = active_client(session, principal, auditor)
    record_id = f"{resource_type}/{resource_id}"
    if resource_type in NOT_RETRACTABLE:
        raise auditor.refuse(
            MethodNotAllowed(
                f"A {resource_type} cannot be deleted: {NOT_RETRACTABLE[resource_type]}.", headers={"Allow": "PUT"}
            ),
            AuditAction.CLIENT_RECORDS_REJECTED,
            Outcome.FAILURE,
            detail={"submission": _SUBMISSION, "reason": "not_retractable", "resource_type": resource_type},
        )
    # The lock a push of a version of this record takes (service.py, _Push._file): a DELETE and a
    # PUT of the same record are stored one after the other, so exactly one version stays in force.
    lock_all_for_transaction(session, [("item", client.id, record_id)])
    item = repository.get_item_in_force(session, client_id=client.id, source_record_id=record_id)
    if item is None:
        raise auditor.refuse(
            NotFound(f"This client has pushed no record {record_id}."),
            AuditAction.CLIENT_RECORDS_REJECTED,
            Outcome.FAILURE,
            detail={"submission": _SUBMISSION, "reason": "not_found"},
        )
    if item.kind not in client.allowed_kinds:
        raise auditor.refuse(
            Forbidden(f"This client is not registered to push (or retract) records of kind '{item.kind}'."),
            AuditAction.CLIENT_RECORDS_REJECTED,
            detail={"submission": _SUBMISSION, "reason": "kind_not_allowed", "kind": str(item.kind)},
        )
    if item.status is RecordStatus.ENTERED_IN_ERROR:
        return Retraction(record_id, already=True)
    repository.retract_item(session, item_id=item.id)
    auditor.record(
        AuditAction.CLIENT_RECORDS_RETRACTED,
        Outcome.SUCCESS,
        child_id=item.child_id,
        detail={"source_record_id": record_id, "item_id": str(item.id)},
    )
    return Retraction(record_id, already=False)

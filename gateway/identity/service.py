"""Link each source's identity claim to the right child.

First stage of linking: an NHS number that passes its check digit identifies the child
exactly. Claims without one wait for scored demographic matching (a later stage); until
then they are refused with a clear reason rather than guessed at.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy.orm import Session

from adapters import IdentityClaim
from audit import AuditAction, Outcome
from gateway.auth.principal import Principal
from gateway.cases.access import ChildAccess
from gateway.kit.auditor import Auditor
from gateway.kit.crypto import DataKeyring, seal_value, unseal_value
from gateway.kit.db import insert_if_absent, lock_for_transaction
from gateway.models import Child, ChildIdentifier, Identity, Link, LinkMethod, LinkState
from policies import RecordStatus

from . import repository

NHS_NUMBER_SCHEME = "nhs_number"


class LinkRefused(Exception):
    """The claim cannot be linked to a child; the message says why, with no personal data."""


@dataclass(frozen=True)
class LinkResult:
    """Which child a claim is about, and whether this push changed anything."""

    child_id: uuid.UUID
    identity_id: uuid.UUID
    created: bool


def link_claim(
    session: Session, principal: Principal, *, auditor: Auditor, keyring: DataKeyring, claim: IdentityClaim
) -> LinkResult:
    """Store a source's identity claim and link it to its child, creating the child if new."""
    # One transaction at a time per source record, so that two new versions cannot both stay current.
    lock_for_transaction(session, "identity", principal.subject, claim.source_record_id)
    existing = _stored_version(session, principal, claim)
    if existing is not None:
        return existing
    if claim.nhs_number is None:
        raise LinkRefused(
            "a Patient needs a valid NHS number (system https://fhir.nhs.uk/Id/nhs-number) to be linked; "
            "linking on name, birth date and address is not supported yet"
        )
    nhs_index = keyring.blind_index(NHS_NUMBER_SCHEME, claim.nhs_number)
    child_id = repository.get_child_id_by_identifier(session, scheme=NHS_NUMBER_SCHEME, blind_index=nhs_index)
    if child_id is None:
        child_id = _create_child(session, keyring, nhs_index)
    child = session.get(Child, child_id)
    assert child is not None  # the identifier's foreign key guarantees it
    data_key = keyring.unwrap(child.wrapped_data_key)

    repository.supersede_identities(session, client_id=principal.subject, source_record_id=claim.source_record_id)
    identity_id = uuid.uuid4()
    inserted = insert_if_absent(
        session,
        Identity,
        {
            "id": identity_id,
            "client_id": principal.subject,
            "agency": principal.agency,
            "source_record_id": claim.source_record_id,
            "source_version": claim.source_version,
            "status": RecordStatus.CURRENT,
            "nhs_number_index": nhs_index,
            "sealed_claim": seal_value(data_key, claim, IdentityClaim, context=Identity.context_for(identity_id)),
        },
        unique=["client_id", "source_record_id", "source_version"],
    )
    if not inserted:
        # The same version was stored by a concurrent push of this client: acknowledge it.
        stored = _stored_version(session, principal, claim)
        assert stored is not None
        return stored
    link = Link(
        identity_id=identity_id,
        child_id=child.id,
        method=LinkMethod.NHS_NUMBER,
        score=1.0,
        state=LinkState.LINKED,
        decided_by="gateway:nhs-number-exact",
    )
    session.add(link)
    session.flush()
    auditor.record(
        AuditAction.IDENTITY_LINK_CREATED,
        Outcome.SUCCESS,
        child_id=child.id,
        detail={"identity_id": str(identity_id), "link_id": str(link.id), "method": LinkMethod.NHS_NUMBER.value},
    )
    return LinkResult(child_id=child.id, identity_id=identity_id, created=True)


def read_claim(data_key: bytes, identity: Identity) -> IdentityClaim:
    """Decrypt an identity's claim with its child's data key."""
    return unseal_value(data_key, identity.sealed_claim, IdentityClaim, context=identity.sealing_context)


def get_linked_identities(session: Session, access: ChildAccess) -> list[Identity]:
    """Return the current identities linked to the child the access opens."""
    return repository.get_linked_identities(session, access)


def _stored_version(session: Session, principal: Principal, claim: IdentityClaim) -> LinkResult | None:
    existing = repository.get_identity_version(
        session,
        client_id=principal.subject,
        source_record_id=claim.source_record_id,
        source_version=claim.source_version,
    )
    if existing is None:
        return None
    child_id = repository.get_linked_child_id(session, identity_id=existing.id)
    if child_id is None:
        raise LinkRefused("this identity record was stored before but is no longer linked to a child")
    return LinkResult(child_id=child_id, identity_id=existing.id, created=False)


def _create_child(session: Session, keyring: DataKeyring, nhs_index: str) -> uuid.UUID:
    _key, wrapped = keyring.new_data_key()
    child = Child(wrapped_data_key=wrapped)
    session.add(child)
    session.flush()
    # The identifier's primary key makes two concurrent first pushes of one NHS number meet:
    # the second waits for the first, finds the identifier taken, and uses the first's child.
    claimed = insert_if_absent(
        session,
        ChildIdentifier,
        {"scheme": NHS_NUMBER_SCHEME, "blind_index": nhs_index, "child_id": child.id},
        unique=["scheme", "blind_index"],
    )
    if claimed:
        return child.id
    session.delete(child)
    session.flush()
    winner = repository.get_child_id_by_identifier(session, scheme=NHS_NUMBER_SCHEME, blind_index=nhs_index)
    assert winner is not None
    return winner

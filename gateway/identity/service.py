"""Link each source's identity claim to the right child.

First stage of linking: an NHS number that passes its check digit identifies the child
exactly. Claims without one wait for scored demographic matching (a later stage); until
then they are refused with a clear reason rather than guessed at.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from dataclasses import dataclass
from datetime import date

from sqlalchemy.orm import Session

from adapters import IdentityClaim
from audit import AuditAction, AuditRecord, Outcome, record
from gateway.auth.principal import Principal
from gateway.kit.crypto import DataKeyring, seal, unseal
from gateway.models import Child, ChildIdentifier, Identity, Link, LinkMethod, LinkState, RecordStatus

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
    session: Session,
    principal: Principal,
    *,
    keyring: DataKeyring,
    claim: IdentityClaim,
    request_id: str | None = None,
) -> LinkResult:
    """Store a source's identity claim and link it to its child, creating the child if new."""
    existing = repository.get_identity_version(
        session,
        client_id=principal.subject,
        source_record_id=claim.source_record_id,
        source_version=claim.source_version,
    )
    if existing is not None:
        child_id = repository.get_linked_child_id(session, identity_id=existing.id)
        if child_id is None:
            raise LinkRefused("this identity record was stored before but is no longer linked to a child")
        return LinkResult(child_id=child_id, identity_id=existing.id, created=False)

    if claim.nhs_number is None:
        raise LinkRefused(
            "a Patient needs a valid NHS number (system https://fhir.nhs.uk/Id/nhs-number) to be linked; "
            "linking on name, birth date and address is not supported yet"
        )
    nhs_index = keyring.blind_index(NHS_NUMBER_SCHEME, claim.nhs_number)
    child_id = repository.get_child_id_by_identifier(session, scheme=NHS_NUMBER_SCHEME, blind_index=nhs_index)
    child = _create_child(session, keyring, nhs_index) if child_id is None else session.get(Child, child_id)
    assert child is not None  # the identifier's foreign key guarantees it

    for previous in repository.get_current_identities(
        session, client_id=principal.subject, source_record_id=claim.source_record_id
    ):
        previous.status = RecordStatus.SUPERSEDED

    identity_id = uuid.uuid4()
    identity = Identity(
        id=identity_id,
        client_id=principal.subject,
        agency=principal.agency,
        source_record_id=claim.source_record_id,
        source_version=claim.source_version,
        nhs_number_index=nhs_index,
        sealed_claim=seal(
            keyring.unwrap(_wrapped_key(child)), _claim_to_json(claim), context=f"identity:{identity_id}"
        ),
    )
    session.add(identity)
    session.flush()
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
    record(
        session,
        AuditRecord(
            action=AuditAction.IDENTITY_LINK_CREATED,
            actor=principal.actor(),
            outcome=Outcome.SUCCESS,
            child_id=child.id,
            detail={"identity_id": str(identity_id), "link_id": str(link.id), "method": LinkMethod.NHS_NUMBER.value},
            request_id=request_id,
        ),
    )
    return LinkResult(child_id=child.id, identity_id=identity_id, created=True)


def read_claim(keyring: DataKeyring, *, child: Child, identity: Identity) -> IdentityClaim:
    """Decrypt an identity's claim with its child's data key."""
    data = json.loads(
        unseal(keyring.unwrap(_wrapped_key(child)), identity.sealed_claim, context=f"identity:{identity.id}")
    )
    data["birth_date"] = date.fromisoformat(data["birth_date"]) if data["birth_date"] else None
    for field in ("given_names", "address_lines"):
        data[field] = tuple(data[field])
    data["other_identifiers"] = tuple(tuple(pair) for pair in data["other_identifiers"])
    return IdentityClaim(**data)


def _create_child(session: Session, keyring: DataKeyring, nhs_index: str) -> Child:
    _key, wrapped = keyring.new_data_key()
    child = Child(wrapped_data_key=wrapped)
    session.add(child)
    session.flush()
    # The identifier's primary key makes two concurrent first pushes of one NHS number collide
    # instead of creating two children for one person.
    session.add(ChildIdentifier(scheme=NHS_NUMBER_SCHEME, blind_index=nhs_index, child_id=child.id))
    session.flush()
    return child


def _wrapped_key(child: Child) -> bytes:
    if child.wrapped_data_key is None:
        raise LinkRefused("this child's data has been erased")
    return child.wrapped_data_key


def _claim_to_json(claim: IdentityClaim) -> bytes:
    data = dataclasses.asdict(claim)
    data["birth_date"] = claim.birth_date.isoformat() if claim.birth_date else None
    return json.dumps(data, sort_keys=True).encode()

"""Link each source's identity claim to the right child.

First stage of linking: an NHS number that passes its check digit identifies the child
exactly. Claims without one wait for scored demographic matching (a later stage); until
then they are refused with a clear reason rather than guessed at.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from adapters import IdentityClaim
from audit import AuditAction, Outcome
from gateway.auth.principal import Principal
from gateway.cases.access import ChildAccess
from gateway.kit.auditor import Auditor
from gateway.kit.crypto import ChildErased, DataKeyring, seal_value, unseal_value
from gateway.kit.db import insert_all, insert_missing, lock_all_for_transaction
from gateway.models import ChildIdentifier, Identity, LinkMethod, LinkState
from policies import RecordStatus

from . import repository

NHS_NUMBER_SCHEME = "nhs_number"


class LinkRefused(Exception):
    """The claim cannot be linked to a child; the message says why, with no personal data."""

    def __init__(self, message: str, *, code: str = "processing") -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class ClaimLinked:
    """Which child a claim is about, and whether this push stored it (False: stored before)."""

    child_id: uuid.UUID
    created: bool


@dataclass
class LinkedClaims:
    """What became of each claim, by the caller's key, and the data keys unwrapped on the way."""

    outcomes: dict[int, ClaimLinked | LinkRefused] = field(default_factory=dict)
    data_keys: dict[uuid.UUID, bytes] = field(default_factory=dict)


def link_claims(
    session: Session,
    principal: Principal,
    *,
    auditor: Auditor,
    keyring: DataKeyring,
    claims: Mapping[int, IdentityClaim],
) -> LinkedClaims:
    """Store a push's identity claims and link each to its child, creating children that are new.

    A constant number of statements whatever the number of claims. A version stored before is
    acknowledged, not stored again; of two new versions of one record in the same push, the
    later (by key) is the one in force.
    """
    if not claims:
        return LinkedClaims()
    return _ClaimLinking(session, principal, auditor, keyring, dict(sorted(claims.items()))).run()


@dataclass
class _ClaimLinking:
    session: Session
    principal: Principal
    auditor: Auditor
    keyring: DataKeyring
    claims: dict[int, IdentityClaim]
    result: LinkedClaims = field(default_factory=LinkedClaims)

    def run(self) -> LinkedClaims:
        client_id = self.principal.subject
        versions = {(c.source_record_id, c.source_version) for c in self.claims.values()}
        # One transaction at a time per source record, so that two new versions cannot both stay current.
        lock_all_for_transaction(self.session, [("identity", client_id, record_id) for record_id, _ in versions])
        stored = repository.get_stored_identities(self.session, client_id=client_id, versions=versions)
        stored_versions = {(row.source_record_id, row.source_version): row.child_id for row in stored}
        in_force = {row.source_record_id for row in stored if row.status != RecordStatus.SUPERSEDED}

        new: dict[tuple[str, str], list[int]] = {}
        for key, claim in self.claims.items():
            version = (claim.source_record_id, claim.source_version)
            if version in stored_versions:
                self._acknowledge(key, stored_versions[version])
            elif version in new:
                new[version].append(key)  # the same version twice in one push: stored once
            elif claim.nhs_number is None:
                self.result.outcomes[key] = LinkRefused(
                    "a Patient needs a valid NHS number (system https://fhir.nhs.uk/Id/nhs-number) to be linked; "
                    "linking on name, birth date and address is not supported yet"
                )
            else:
                new[version] = [key]
        if new:
            self._store(new, in_force)
        return self.result

    def _acknowledge(self, key: int, child_id: uuid.UUID | None) -> None:
        if child_id is None:
            self.result.outcomes[key] = LinkRefused(
                "this identity record was stored before but is no longer linked to a child"
            )
        else:
            self.result.outcomes[key] = ClaimLinked(child_id=child_id, created=False)

    def _store(self, new: dict[tuple[str, str], list[int]], in_force: set[str]) -> None:
        indexes = {
            version: self.keyring.blind_index(NHS_NUMBER_SCHEME, self._nhs_number(keys[0]))
            for version, keys in new.items()
        }
        children = self._children(set(indexes.values()))
        # Of several new versions of one record in this push, the last is in force.
        last_version = {version[0]: version for version in new}
        identities: list[dict[str, Any]] = []
        links: list[dict[str, Any]] = []
        for version, keys in new.items():
            child_id = children[indexes[version]]
            data_key = self.result.data_keys.get(child_id)
            if data_key is None:
                for key in keys:
                    self.result.outcomes[key] = LinkRefused(ChildErased().detail, code=ChildErased.fhir_code)
                continue
            claim = self.claims[keys[0]]
            identity_id = uuid.uuid4()
            identities.append(
                {
                    "id": identity_id,
                    "client_id": self.principal.subject,
                    "agency": self.principal.agency,
                    "source_record_id": claim.source_record_id,
                    "source_version": claim.source_version,
                    "status": _status(in_force=last_version[version[0]] == version),
                    "nhs_number_index": indexes[version],
                    "sealed_claim": seal_value(
                        data_key, claim, IdentityClaim, context=Identity.context_for(identity_id)
                    ),
                }
            )
            links.append(
                {
                    "id": uuid.uuid4(),
                    "identity_id": identity_id,
                    "child_id": child_id,
                    "method": LinkMethod.NHS_NUMBER,
                    "score": 1.0,
                    "state": LinkState.LINKED,
                    "decided_by": "gateway:nhs-number-exact",
                }
            )
            self.result.outcomes[keys[0]] = ClaimLinked(child_id=child_id, created=True)
            for key in keys[1:]:
                self.result.outcomes[key] = ClaimLinked(child_id=child_id, created=False)
        superseded = {row["source_record_id"] for row in identities} & in_force
        if superseded:
            repository.supersede_identities(
                self.session, client_id=self.principal.subject, source_record_ids=superseded
            )
        insert_all(self.session, Identity, identities)
        repository.add_links(self.session, links)
        for link in links:
            self.auditor.record(
                AuditAction.IDENTITY_LINK_CREATED,
                Outcome.SUCCESS,
                child_id=link["child_id"],
                detail={
                    "identity_id": str(link["identity_id"]),
                    "link_id": str(link["id"]),
                    "method": LinkMethod.NHS_NUMBER.value,
                },
            )

    def _nhs_number(self, key: int) -> str:
        number = self.claims[key].nhs_number
        assert number is not None  # claims without one were refused before
        return number

    def _children(self, indexes: set[str]) -> dict[str, uuid.UUID]:
        """Return the child of each NHS number, creating those not seen before; unwrap their keys."""
        found = repository.get_children_by_identifiers(self.session, scheme=NHS_NUMBER_SCHEME, blind_indexes=indexes)
        missing = sorted(indexes - found.keys())
        created: dict[str, tuple[uuid.UUID, bytes]] = {}
        for blind_index in missing:
            data_key, new_wrapped = self.keyring.new_data_key()
            child_id = uuid.uuid4()
            created[blind_index] = found[blind_index] = (child_id, new_wrapped)
            self.result.data_keys[child_id] = data_key
        if created:
            self._claim_identifiers(created, found)
        children: dict[str, uuid.UUID] = {}
        for blind_index, (child_id, wrapped) in found.items():
            children[blind_index] = child_id
            if child_id not in self.result.data_keys and wrapped is not None:
                self.result.data_keys[child_id] = self.keyring.unwrap(wrapped)
        return children

    def _claim_identifiers(
        self, created: dict[str, tuple[uuid.UUID, bytes]], found: dict[str, tuple[uuid.UUID, bytes | None]]
    ) -> None:
        repository.add_children(
            self.session, [{"id": child_id, "wrapped_data_key": wrapped} for child_id, wrapped in created.values()]
        )
        # The identifier's primary key makes two concurrent first pushes of one NHS number meet:
        # the second waits for the first, finds the identifier taken, and uses the first's child.
        # Rows go in blind-index order (insert_missing), so two pushes cannot deadlock on them.
        claimed = insert_missing(
            self.session,
            ChildIdentifier,
            [
                {"scheme": NHS_NUMBER_SCHEME, "blind_index": blind_index, "child_id": child_id}
                for blind_index, (child_id, _wrapped) in sorted(created.items())
            ],
            unique=["scheme", "blind_index"],
            returning="blind_index",
        )
        lost = created.keys() - claimed
        if lost:
            repository.delete_children(self.session, child_ids={created[index][0] for index in lost})
            for index in lost:
                del self.result.data_keys[created[index][0]]
            found.update(
                repository.get_children_by_identifiers(self.session, scheme=NHS_NUMBER_SCHEME, blind_indexes=lost)
            )


def read_claim(data_key: bytes, identity: Identity) -> IdentityClaim:
    """Decrypt an identity's claim with its child's data key."""
    return unseal_value(data_key, identity.sealed_claim, IdentityClaim, context=identity.sealing_context)


def get_linked_identities(session: Session, access: ChildAccess) -> list[Identity]:
    """Return the current identities linked to the child the access opens."""
    return repository.get_linked_identities(session, access)


def _status(*, in_force: bool) -> RecordStatus:
    return RecordStatus.CURRENT if in_force else RecordStatus.SUPERSEDED

"""Link each source's identity claim to the right child.

In this order, for each new version of a source's person record:

1. Exact, on a verified identifier: the NHS number (Modulus 11), then the UPN (check letter),
   then the source's own record id (a later version of a record this client linked before is
   the same child). Where identifiers disagree, the strongest wins and a person is asked about
   the rest (a proposed link on the review queue).
2. Scored (`scoring`), when no identifier is shared: the claim is compared with the identities
   that share a blocking key with it (`blocking`), best child first. Above the upper threshold
   it links; between the thresholds it becomes a new child with a proposed link to the best
   candidate on the review queue (so nothing is shown on a child a person has not confirmed);
   below, a new child.
3. A claim with no identifier, or without a name and a birth date, is refused as too weak.

A new version whose NHS number (or UPN) now belongs to another child moves the record, every
version and every item of it, to that child (`merging.move_records`), audited on both.

Statements per push stay constant in the number of claims on the exact path; scored claims add
one candidate query per push. Locks: each source record, each identifier, and each blocking key
of a scored claim, so two pushes that could link to one another take turns.
"""

from __future__ import annotations

import functools
import uuid
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from sqlalchemy.orm import Session

from adapters import IdentityClaim
from audit import AuditAction, Outcome
from gateway.auth.principal import Principal
from gateway.cases.access import ChildAccess
from gateway.kit.auditor import Auditor
from gateway.kit.crypto import ChildErased, DataKeyring, OpenedKey, seal_value, unseal_value
from gateway.kit.db import insert_all, lock_all_for_transaction
from gateway.models import ChildIdentifier, Identity, IdentityBlock, LinkMethod, LinkState
from policies import RecordStatus

from . import repository
from .authority import grant_for_push
from .merging import move_record, retire_identifier
from .blocking import block_keys
from .scoring import DEFAULT_PARAMETERS, Decision, Demographics, MatchParameters, MatchScore, score

NHS_NUMBER_SCHEME = "nhs_number"
UPN_SCHEME = "upn"
BLOCK_SCHEME = "block"
# How many stored identities a claim is scored against at most: those sharing the most blocking
# keys with it. A true match shares several; a crowd sharing only a birth date does not need all
# of its members decrypted and scored.
MAX_CANDIDATES = 40


class LinkRefused(Exception):
    """The claim cannot be linked to a child; the message says why, with no personal data."""

    def __init__(self, message: str, *, code: str = "processing") -> None:
        super().__init__(message)
        self.code = code


class LinkOutcome(StrEnum):
    """How a claim found its child."""

    EXACT = "exact"  # an identifier, or an earlier version of the same source record
    SCORED = "scored"  # demographics, above the upper threshold
    REVIEW = "review"  # between the thresholds: a new child, and a proposed link for a person
    NEW = "new"  # nothing matched: a new child


@dataclass(frozen=True)
class ClaimLinked:
    """Which child a claim is about, and whether this push stored it (False: stored before).

    `proposed_child_id` is the child a claim sent to review would have joined.
    """

    child_id: uuid.UUID
    created: bool
    outcome: LinkOutcome = LinkOutcome.EXACT
    score: float | None = None
    proposed_child_id: uuid.UUID | None = None


@dataclass
class LinkedClaims:
    """What became of each claim, by the caller's key, and the data keys unwrapped on the way."""

    outcomes: dict[int, ClaimLinked | LinkRefused] = field(default_factory=dict)
    data_keys: dict[uuid.UUID, bytes] = field(default_factory=dict)


def demographics_of(claim: IdentityClaim) -> Demographics:
    """Return what scoring compares of a claim."""
    sex = (claim.sex or "").strip().lower()
    return Demographics(
        given=" ".join(claim.given_names) or None,
        family=claim.family_name,
        birth_date=claim.birth_date,
        sex={"male": "M", "m": "M", "female": "F", "f": "F"}.get(sex),
        postcode=claim.postcode,
        address=claim.address_lines[0] if claim.address_lines else None,
        nhs_number=claim.nhs_number,
    )


def too_weak(claim: IdentityClaim) -> str | None:
    """Say what is missing from a claim that has nothing to link on, or None if it has enough."""
    if claim.nhs_number or claim.upn:
        return None
    missing = [
        what
        for what, present in (
            ("name", bool(claim.given_names or claim.family_name)),
            ("birth date", claim.birth_date is not None),
        )
        if not present
    ]
    if not missing:
        return None
    return (
        "the identity is too weak to link: it has no NHS number or UPN, and no "
        + " or ".join(missing)
        + "; send an identifier, or a name and a birth date"
    )


def link_claims(
    session: Session,
    principal: Principal,
    *,
    auditor: Auditor,
    keyring: DataKeyring,
    claims: Mapping[int, IdentityClaim],
    parameters: MatchParameters = DEFAULT_PARAMETERS,
) -> LinkedClaims:
    """Store a push's identity claims and link each to its child, creating children that are new.

    A version stored before is acknowledged, not stored again; of two new versions of one
    record in the same push, the later (by key) is the one in force. Claims are linked in key
    order, each able to join a child an earlier claim of the same push made.
    """
    if not claims:
        return LinkedClaims()
    return _ClaimLinking(
        session, principal, auditor, keyring, parameters, dict(sorted(claims.items()))
    ).run()


@dataclass
class _Candidate:
    """A stored (or just linked) identity that a claim may be scored against."""

    identity_id: uuid.UUID
    child_id: uuid.UUID
    person: Demographics


@dataclass
class _NewVersion:
    keys: list[int]
    claim: IdentityClaim
    nhs_index: str | None
    upn_index: str | None
    keyring: DataKeyring

    @functools.cached_property
    def blocks(self) -> set[str]:
        """The keyed hashes of the claim's blocking keys, computed when first needed: a version
        stored before (an extract's rows, a repeated push) never needs them."""
        return {self.keyring.blind_index(BLOCK_SCHEME, k) for k in block_keys(demographics_of(self.claim))}


@dataclass
class _ClaimLinking:
    session: Session
    principal: Principal
    auditor: Auditor
    keyring: DataKeyring
    parameters: MatchParameters
    claims: dict[int, IdentityClaim]
    result: LinkedClaims = field(default_factory=LinkedClaims)
    # (scheme, blind index) → child, as stored or as this push registers them.
    registry: dict[tuple[str, str], uuid.UUID] = field(default_factory=dict)
    wrapped: dict[uuid.UUID, bytes | None] = field(default_factory=dict)
    new_children: list[dict[str, Any]] = field(default_factory=list)
    identities: list[dict[str, Any]] = field(default_factory=list)
    links: list[dict[str, Any]] = field(default_factory=list)
    blocks: list[dict[str, Any]] = field(default_factory=list)
    identifiers: list[dict[str, Any]] = field(default_factory=list)
    moves: list[tuple[str, uuid.UUID, uuid.UUID, bool]] = field(default_factory=list)
    # Identifiers a record no longer carries: (child, scheme, blind index) to retire if no other record has them.
    dropped: list[tuple[uuid.UUID, str, str]] = field(default_factory=list)
    blocks_locked: set[str] = field(default_factory=set)
    # Identities this push linked, by blocking key, for later claims of the same push.
    linked_here: dict[str, list[_Candidate]] = field(default_factory=lambda: defaultdict(list))

    def run(self) -> LinkedClaims:
        client_id = self.principal.subject
        new = self._versions()
        names: list[tuple[str, ...]] = [("identity", client_id, record_id) for record_id, _ in new]
        for entry in new.values():
            if entry.nhs_index is not None:
                names.append(("identifier", NHS_NUMBER_SCHEME, entry.nhs_index))
            if entry.upn_index is not None:
                names.append(("identifier", UPN_SCHEME, entry.upn_index))
        # Where no claim has an identifier, every claim is scored unless an earlier version
        # links it: take the blocking keys' locks (the second stage) in the same round trip.
        if all(entry.nhs_index is None and entry.upn_index is None for entry in new.values()):
            self.blocks_locked = set().union(*(entry.blocks for entry in new.values()))
        # One transaction at a time per source record (two new versions cannot both stay
        # current) and per identifier (two first pushes of one NHS number make one child).
        lock_all_for_transaction(self.session, names, then=[("block", block) for block in self.blocks_locked])
        stored = repository.get_stored_identities(self.session, client_id=client_id, versions=set(new))
        stored_versions = {(row.source_record_id, row.source_version): row.child_id for row in stored}
        in_force = {row.source_record_id: row for row in stored if row.status != RecordStatus.SUPERSEDED}
        for version, entry in list(new.items()):
            if version in stored_versions:  # stored before: acknowledged, not stored again
                for key in entry.keys:
                    self._acknowledge(key, stored_versions[version])
                del new[version]
        if not new:
            return self.result
        self._load_registry(new.values())
        self._link(new, in_force)
        self._write(new, in_force)
        return self.result

    def _versions(self) -> dict[tuple[str, str], _NewVersion]:
        versions: dict[tuple[str, str], _NewVersion] = {}
        for key, claim in self.claims.items():
            version = (claim.source_record_id, claim.source_version)
            if version in versions:
                versions[version].keys.append(key)  # the same version twice in one push: stored once
            else:
                versions[version] = _NewVersion(
                    keys=[key],
                    claim=claim,
                    nhs_index=self._index(NHS_NUMBER_SCHEME, claim.nhs_number),
                    upn_index=self._index(UPN_SCHEME, claim.upn),
                    keyring=self.keyring,
                )
        return versions

    def _index(self, scheme: str, value: str | None) -> str | None:
        return None if value is None else self.keyring.blind_index(scheme, value)

    def _acknowledge(self, key: int, child_id: uuid.UUID | None) -> None:
        if child_id is None:
            self.result.outcomes[key] = LinkRefused(
                "this identity record was stored before but is no longer linked to a child"
            )
        else:
            self.result.outcomes[key] = ClaimLinked(child_id=child_id, created=False)

    def _load_registry(self, new: Iterable[_NewVersion]) -> None:
        wanted = {
            (scheme, index)
            for version in new
            for scheme, index in ((NHS_NUMBER_SCHEME, version.nhs_index), (UPN_SCHEME, version.upn_index))
            if index is not None
        }
        found = repository.get_children_by_identifiers(self.session, identifiers=wanted)
        for identifier, (child_id, wrapped) in found.items():
            self.registry[identifier] = child_id
            self.wrapped[child_id] = wrapped

    # -- deciding -----------------------------------------------------------------------------

    def _link(self, new: dict[tuple[str, str], _NewVersion], in_force: Mapping[str, repository.StoredIdentity]) -> None:
        to_score: list[tuple[tuple[str, str], _NewVersion]] = []
        for version, entry in new.items():
            previous = in_force.get(version[0])
            if previous is not None and previous.child_id is not None:
                self.wrapped.setdefault(previous.child_id, None)
            target = self._exact(entry, previous)
            if target is None:
                reason = too_weak(entry.claim)
                if reason is not None:
                    self._refuse(entry, LinkRefused(reason, code="required"))
                    continue
                to_score.append((version, entry))
        self._fill_wrapped()
        candidates = self._candidates([entry for _, entry in to_score])
        for version, entry in new.items():
            if all(key in self.result.outcomes for key in entry.keys):
                continue
            if (version, entry) in to_score:
                self._score(version, entry, candidates)
            else:
                self._link_exact(version, entry, in_force.get(version[0]))

    def _exact(self, entry: _NewVersion, previous: repository.StoredIdentity | None) -> uuid.UUID | None:
        for scheme, index in ((NHS_NUMBER_SCHEME, entry.nhs_index), (UPN_SCHEME, entry.upn_index)):
            if index is not None and (scheme, index) in self.registry:
                return self.registry[(scheme, index)]
        if previous is not None:
            return previous.child_id
        return None

    def _link_exact(
        self, version: tuple[str, str], entry: _NewVersion, previous: repository.StoredIdentity | None
    ) -> None:
        by_nhs = self.registry.get((NHS_NUMBER_SCHEME, entry.nhs_index)) if entry.nhs_index else None
        by_upn = self.registry.get((UPN_SCHEME, entry.upn_index)) if entry.upn_index else None
        if by_nhs is not None:
            target, method = by_nhs, LinkMethod.NHS_NUMBER
        elif by_upn is not None:
            target, method = by_upn, LinkMethod.UPN
        else:
            assert previous is not None and previous.child_id is not None  # _exact found one of the three
            target, method = previous.child_id, LinkMethod.SOURCE_RECORD
        identity_id = self._store_identity(version, entry, target, method, 1.0, LinkOutcome.EXACT)
        if identity_id is None:
            return
        if previous is not None and previous.child_id is not None:
            for scheme, before, now in (
                (NHS_NUMBER_SCHEME, previous.nhs_number_index, entry.nhs_index),
                (UPN_SCHEME, previous.upn_index, entry.upn_index),
            ):
                # A number left out is not known to be wrong; a different one says the old was.
                if before is not None and now is not None and before != now:
                    self.dropped.append((previous.child_id, scheme, before))
        if by_nhs is not None and by_upn is not None and by_upn != by_nhs:
            # The UPN belongs to another child than the NHS number: a person decides.
            self._propose(identity_id, by_upn, None, None, "the UPN is another child's")
        if previous is not None and previous.child_id is not None and previous.child_id != target:
            # The record's identifier now names another child: the record goes with it, and where
            # the identifier is new to the record (not a correction), a person is asked whether
            # the two children are one.
            changed = {
                LinkMethod.NHS_NUMBER: previous.nhs_number_index,
                LinkMethod.UPN: previous.upn_index,
            }.get(method)
            self.moves.append((version[0], previous.child_id, target, changed is None))

    def _score(self, version: tuple[str, str], entry: _NewVersion, candidates: dict[str, list[_Candidate]]) -> None:
        person = demographics_of(entry.claim)
        shared: dict[uuid.UUID, int] = defaultdict(int)
        pool: dict[uuid.UUID, _Candidate] = {}
        for block in entry.blocks:
            for candidate in (*candidates.get(block, ()), *self.linked_here.get(block, ())):
                shared[candidate.identity_id] += 1
                pool[candidate.identity_id] = candidate
        ranked = sorted(pool.values(), key=lambda c: (-shared[c.identity_id], str(c.identity_id)))[:MAX_CANDIDATES]
        best: dict[uuid.UUID, tuple[MatchScore, _Candidate]] = {}
        for candidate in ranked:
            scored = score(person, candidate.person, self.parameters)
            held = best.get(candidate.child_id)
            if held is None or _rank(scored) > _rank(held[0]):
                best[candidate.child_id] = (scored, candidate)
        ordered = sorted(best.values(), key=lambda pair: _rank(pair[0]), reverse=True)
        top = ordered[0] if ordered else None
        linking = [pair for pair in ordered if pair[0].decision is Decision.LINK]
        if top is not None and top[0].decision is Decision.LINK and len(linking) == 1:
            self._store_identity(version, entry, top[1].child_id, LinkMethod.SCORED, top[0].total, LinkOutcome.SCORED)
            return
        child_id = self._new_child()
        proposed = top if top is not None and top[0].decision is not Decision.NEW else None
        if proposed is None:
            self._store_identity(version, entry, child_id, LinkMethod.NEW, None, LinkOutcome.NEW)
            return
        identity_id = self._store_identity(
            version, entry, child_id, LinkMethod.NEW, proposed[0].total, LinkOutcome.REVIEW,
            proposed_child_id=proposed[1].child_id,
        )
        if identity_id is not None:
            note = None if len(linking) < 2 else "more than one child scored above the upper threshold"
            self._propose(identity_id, proposed[1].child_id, proposed[1].identity_id, proposed[0], note)

    def _new_child(self) -> uuid.UUID:
        data_key, wrapped = self.keyring.new_data_key()
        child_id = uuid.uuid4()
        self.new_children.append({"id": child_id, "wrapped_data_key": wrapped})
        self.result.data_keys[child_id] = data_key
        self.wrapped[child_id] = wrapped
        return child_id

    def _refuse(self, entry: _NewVersion, refusal: LinkRefused) -> None:
        for key in entry.keys:
            self.result.outcomes[key] = refusal

    # -- candidates -----------------------------------------------------------------------------

    def _fill_wrapped(self) -> None:
        missing = {child_id for child_id, wrapped in self.wrapped.items() if wrapped is None}
        self.wrapped.update(repository.get_wrapped_data_keys(self.session, child_ids=missing))

    def _data_key(self, child_id: uuid.UUID) -> bytes | None:
        data_key = self.result.data_keys.get(child_id)
        if data_key is None:
            wrapped = self.wrapped.get(child_id)
            if wrapped is None:
                return None
            data_key = self.result.data_keys[child_id] = self.keyring.unwrap(wrapped)
        return data_key

    def _candidates(self, entries: list[_NewVersion]) -> dict[str, list[_Candidate]]:
        """Return, by blocking key, the stored identities sharing a key with any claim to score."""
        if not entries:
            return {}
        wanted = set().union(*(entry.blocks for entry in entries))
        # Whoever could match these claims waits for this push, and this push for them. A claim
        # with an NHS number can match only claims without one (two numbers are two children,
        # and one number is locked as an identifier): its keys are shared, so that pushes of
        # numbered Patients, a trust's daily traffic, never wait for one another here.
        if not wanted <= self.blocks_locked:
            exclusive = set().union(*(entry.blocks for entry in entries if entry.nhs_index is None))
            lock_all_for_transaction(
                self.session,
                [("block", block) for block in exclusive],
                shared=[("block", block) for block in wanted - exclusive],
            )
        rows = repository.get_block_candidates(self.session, grant_for_push(self.principal), blocks=wanted)
        counts: dict[uuid.UUID, int] = defaultdict(int)
        for row in rows:
            counts[row.identity_id] += 1
        # Decrypt only the identities that share the most keys with some claim (a crowd sharing
        # one common key is cut to MAX_CANDIDATES per claim below, so no more are needed).
        keep: set[uuid.UUID] = set()
        for entry in entries:
            sharing = {row.identity_id for row in rows if row.key in entry.blocks}
            keep.update(sorted(sharing, key=lambda i: (-counts[i], str(i)))[:MAX_CANDIDATES])
        people: dict[uuid.UUID, Demographics] = {}
        opened: dict[uuid.UUID, OpenedKey | None] = {}
        by_block: dict[str, list[_Candidate]] = defaultdict(list)
        for row in rows:
            if row.identity_id not in keep:
                continue
            if row.identity_id not in people:
                if row.child_id not in opened:
                    self.wrapped.setdefault(row.child_id, row.wrapped_data_key)
                    data_key = self._data_key(row.child_id)
                    opened[row.child_id] = None if data_key is None else OpenedKey(data_key)
                key = opened[row.child_id]
                if key is None:  # an erased child is nobody's match
                    continue
                claim = key.unseal_value(row.sealed_claim, IdentityClaim, context=Identity.context_for(row.identity_id))
                people[row.identity_id] = demographics_of(claim)
            by_block[row.key].append(_Candidate(row.identity_id, row.child_id, people[row.identity_id]))
        return by_block

    # -- storing --------------------------------------------------------------------------------

    def _store_identity(
        self,
        version: tuple[str, str],
        entry: _NewVersion,
        child_id: uuid.UUID,
        method: LinkMethod,
        score_: float | None,
        outcome: LinkOutcome,
        *,
        proposed_child_id: uuid.UUID | None = None,
    ) -> uuid.UUID | None:
        data_key = self._data_key(child_id)
        if data_key is None:
            self._refuse(entry, LinkRefused(ChildErased().detail, code=ChildErased.fhir_code))
            return None
        identity_id = uuid.uuid4()
        self.identities.append(
            {
                "id": identity_id,
                "client_id": self.principal.subject,
                "agency": self.principal.agency,
                "source_record_id": version[0],
                "source_version": version[1],
                "status": RecordStatus.CURRENT,  # settled in _write: the last version of a record stays
                "nhs_number_index": entry.nhs_index,
                "upn_index": entry.upn_index,
                "sealed_claim": seal_value(data_key, entry.claim, IdentityClaim, context=Identity.context_for(identity_id)),
            }
        )
        self.links.append(
            {
                "id": uuid.uuid4(),
                "identity_id": identity_id,
                "child_id": child_id,
                "method": method,
                "score": score_,
                "state": LinkState.LINKED,
                "decided_by": f"gateway:{method.value}",
            }
        )
        self.blocks.extend({"key": block, "identity_id": identity_id} for block in sorted(entry.blocks))
        for scheme, index in ((NHS_NUMBER_SCHEME, entry.nhs_index), (UPN_SCHEME, entry.upn_index)):
            if index is not None and (scheme, index) not in self.registry:
                self.registry[(scheme, index)] = child_id
                self.identifiers.append({"scheme": scheme, "blind_index": index, "child_id": child_id})
        person = demographics_of(entry.claim)
        for block in entry.blocks:
            self.linked_here[block].append(_Candidate(identity_id, child_id, person))
        self.result.outcomes[entry.keys[0]] = ClaimLinked(
            child_id=child_id, created=True, outcome=outcome, score=score_, proposed_child_id=proposed_child_id
        )
        for key in entry.keys[1:]:
            self.result.outcomes[key] = ClaimLinked(child_id=child_id, created=False, outcome=outcome)
        return identity_id

    def _propose(
        self,
        identity_id: uuid.UUID,
        child_id: uuid.UUID,
        candidate_identity_id: uuid.UUID | None,
        scored: MatchScore | None,
        note: str | None,
    ) -> None:
        reasons: list[dict[str, Any]] = []
        if scored is not None:
            reasons = [
                {"field": part.field, "level": part.level.value, "weight": round(part.weight, 2), "reason": part.reason}
                for part in scored.fields
            ]
        if note is not None:
            reasons.append({"field": "note", "level": "note", "weight": 0.0, "reason": note})
        self.links.append(
            {
                "id": uuid.uuid4(),
                "identity_id": identity_id,
                "child_id": child_id,
                "method": LinkMethod.SCORED if scored is not None else LinkMethod.MANUAL,
                "score": None if scored is None else scored.total,
                "state": LinkState.REVIEW,
                "decided_by": "gateway:review",
                "candidate_identity_id": candidate_identity_id,
                "reasons": reasons,
            }
        )

    def _write(self, new: dict[tuple[str, str], _NewVersion], in_force: Mapping[str, repository.StoredIdentity]) -> None:
        # Of several new versions of one record in this push, the last is in force.
        last_version: dict[str, str] = {}
        for row in self.identities:
            last_version[row["source_record_id"]] = row["source_version"]
        for row in self.identities:
            if last_version[row["source_record_id"]] != row["source_version"]:
                row["status"] = RecordStatus.SUPERSEDED
        superseded = {row["source_record_id"] for row in self.identities} & in_force.keys()
        if superseded:
            repository.supersede_identities(self.session, client_id=self.principal.subject, source_record_ids=superseded)
        repository.add_children(self.session, self.new_children)
        insert_all(self.session, Identity, self.identities)
        repository.add_links(self.session, self.links)
        insert_all(self.session, IdentityBlock, self.blocks)
        insert_all(self.session, ChildIdentifier, sorted(self.identifiers, key=lambda r: (r["scheme"], r["blind_index"])))
        for link in self.links:
            proposed = link["state"] is LinkState.REVIEW
            self.auditor.record(
                AuditAction.IDENTITY_LINK_PROPOSED if proposed else AuditAction.IDENTITY_LINK_CREATED,
                Outcome.SUCCESS,
                child_id=link["child_id"],
                detail={
                    "identity_id": str(link["identity_id"]),
                    "link_id": str(link["id"]),
                    "method": link["method"].value,
                    **({} if link["score"] is None else {"score": round(link["score"], 2)}),
                },
            )
        for child_id, scheme, blind_index in self.dropped:
            retire_identifier(
                self.session, grant_for_push(self.principal), child_id=child_id, scheme=scheme, blind_index=blind_index
            )
        for source_record_id, from_child, to_child, ask in self.moves:
            move_record(
                self.session,
                grant_for_push(self.principal),
                auditor=self.auditor,
                keyring=self.keyring,
                source_record_id=source_record_id,
                from_child_id=from_child,
                to_child_id=to_child,
                propose_join=ask,
            )


def _rank(scored: MatchScore) -> tuple[int, float]:
    # A guarded pair never outranks an unguarded one, whatever its total.
    return (0 if scored.guard is not None else 1, scored.total)


def read_claim(data_key: bytes, identity: Identity) -> IdentityClaim:
    """Decrypt an identity's claim with its child's data key."""
    return unseal_value(data_key, identity.sealed_claim, IdentityClaim, context=identity.sealing_context)


def get_linked_identities(session: Session, access: ChildAccess) -> list[Identity]:
    """Return the current identities linked to the child the access opens."""
    return repository.get_linked_identities(session, access)

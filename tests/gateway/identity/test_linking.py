"""Identity linking end to end at the service level: exact, scored, review, refusals, merges, moves and blocking."""

from __future__ import annotations

import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from adapters import ClaimEntry, EntryStatus, IdentityClaim, InboundRecord, RecordEntry, Submission
from audit import AuditAction, AuditEvent
from gateway.auth.principal import Principal, PrincipalKind
from gateway.demo.population import synthetic_upn
from gateway.identity import review, service
from gateway.identity.merging import current_child_of
from gateway.identity.scoring import DEFAULT_PARAMETERS, Demographics, MatchParameters, MatchScore, score
from gateway.identity.service import ClaimLinked, LinkOutcome, LinkRefused, link_claims
from gateway.ingest.service import ingest
from gateway.kit.auditor import Auditor
from gateway.notifications.routing import Routing
from gateway.kit.crypto import DataKeyring, unseal_value
from gateway.kit.errors import Conflict, Forbidden, NotFound
from gateway.models import (
    Child,
    ChildIdentifier,
    ChildMerge,
    Client,
    Identity,
    Item,
    ItemContent,
    Link,
    LinkMethod,
    LinkState,
    MergeKind,
)
from policies import Agency, Policy, RecordStatus, default_policy
from tests.factories import add_member, allocate, make_client, make_team, nhs_number

# -- building claims ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Person:
    """What a source says of a child, before it becomes a claim."""

    given: tuple[str, ...] = ("Thomas",)
    family: str | None = "Whitfield"
    birth: date | None = date(2014, 3, 9)
    sex: str | None = "male"
    postcode: str | None = "LS6 2AB"
    address: tuple[str, ...] = ("14 Cardigan Road",)

    def claim(
        self, record_id: str, *, version: str = "1", nhs: str | None = None, upn: str | None = None
    ) -> IdentityClaim:
        return IdentityClaim(
            source_record_id=record_id,
            source_version=version,
            nhs_number=nhs,
            other_identifiers=(),
            given_names=self.given,
            family_name=self.family,
            birth_date=self.birth,
            sex=self.sex,
            postcode=self.postcode,
            address_lines=self.address,
            upn=upn,
        )


THOMAS = Person()
KATHERINE = Person(
    given=("Katherine",),
    family="Okafor",
    birth=date(2012, 7, 21),
    sex="female",
    postcode="BD7 1DP",
    address=("3 Great Horton Road",),
)
MOHAMMED = Person(
    given=("Mohammed",),
    family="Rahman",
    birth=date(2011, 11, 2),
    sex="male",
    postcode="B10 0AB",
    address=("77 Coventry Road",),
)
AISHA = Person(
    given=("Aisha",),
    family="Begum",
    birth=date(2015, 1, 30),
    sex="female",
    postcode="OL9 6QT",
    address=("5 Featherstall Road",),
)
SMITH = Person(
    given=("Lily",),
    family="Smith",
    birth=date(2013, 5, 17),
    sex="female",
    postcode="NE6 1AA",
    address=("21 Shields Road",),
)
PRIYA = Person(
    given=("Priya",),
    family="Ramaswamy",
    birth=date(2016, 4, 28),
    sex="female",
    postcode="LE4 6AB",
    address=("9 Belgrave Gate",),
)


def _moved(person: Person) -> Person:
    """The same person after a house move to another area altogether."""
    return replace(person, postcode="M14 5RT", address=("3 Platt Lane",))


def _typo(name: str | None) -> str:
    """Mistype one character of a name (its second-to-last letter)."""
    assert name is not None and len(name) > 2
    wrong = "a" if name[-2] != "a" else "e"
    return name[:-2] + wrong + name[-1]


def _principal(client: Client) -> Principal:
    return Principal(PrincipalKind.CLIENT, client.id, client.agency)


def _source(session: Session, agency: Agency = Agency.HEALTH) -> Principal:
    client, _key = make_client(session, agency=agency)
    return _principal(client)


def _link(session: Session, keyring: DataKeyring, principal: Principal, *claims: IdentityClaim) -> list[ClaimLinked]:
    """Link claims as one push; every one of them must be linked (not refused)."""
    outcomes = _link_any(session, keyring, principal, *claims)
    linked = [outcome for outcome in outcomes if isinstance(outcome, ClaimLinked)]
    assert len(linked) == len(outcomes), outcomes
    return linked


def _link_any(
    session: Session, keyring: DataKeyring, principal: Principal, *claims: IdentityClaim
) -> list[ClaimLinked | LinkRefused]:
    result = link_claims(
        session,
        principal,
        auditor=Auditor(session, principal.actor()),
        keyring=keyring,
        claims=dict(enumerate(claims)),
    )
    session.flush()
    return [result.outcomes[index] for index in range(len(claims))]


def _identity(session: Session, principal: Principal, record_id: str, version: str = "1") -> Identity:
    identity = session.scalar(
        select(Identity).where(
            Identity.client_id == principal.subject,
            Identity.source_record_id == record_id,
            Identity.source_version == version,
        )
    )
    assert identity is not None
    return identity


def _links(session: Session, identity_id: uuid.UUID, state: LinkState) -> list[Link]:
    session.expire_all()
    return list(session.scalars(select(Link).where(Link.identity_id == identity_id, Link.state == state)))


def _in_force(session: Session, identity_id: uuid.UUID) -> Link:
    (link,) = _links(session, identity_id, LinkState.LINKED)
    return link


def _count(session: Session, model: type[Child] | type[Identity] | type[Link]) -> int:
    return session.scalar(select(func.count()).select_from(model)) or 0


def _registered(session: Session, keyring: DataKeyring, scheme: str, value: str) -> uuid.UUID | None:
    session.expire_all()
    return session.scalar(
        select(ChildIdentifier.child_id).where(
            ChildIdentifier.scheme == scheme, ChildIdentifier.blind_index == keyring.blind_index(scheme, value)
        )
    )


def _child(session: Session, child_id: uuid.UUID) -> Child:
    session.expire_all()
    child = session.get(Child, child_id)
    assert child is not None
    return child


# -- pushing records through the real ingest service -------------------------------------------


@dataclass
class Source:
    """A registered source system that pushes through `gateway.ingest.service.ingest`."""

    client: Client
    kind: str
    category: str

    @property
    def principal(self) -> Principal:
        return _principal(self.client)

    def push(
        self,
        session: Session,
        keyring: DataKeyring,
        claims: Sequence[IdentityClaim] = (),
        items: Sequence[tuple[str, str]] = (),
    ) -> None:
        """Push claims and items (record id, subject record id) as one atomic submission; all must be created."""
        entries: list[ClaimEntry | RecordEntry] = [
            ClaimEntry(index, f"Bundle.entry[{index}]", claim) for index, claim in enumerate(claims)
        ]
        for record_id, subject in items:
            index = len(entries)
            entries.append(
                RecordEntry(
                    index,
                    f"Bundle.entry[{index}]",
                    f"Bundle.entry[{index}].resource.subject",
                    InboundRecord(
                        source_record_id=record_id,
                        source_version="1",
                        kind=self.kind,
                        category=self.category,
                        occurred_at=datetime(2026, 10, 1, 14, 0, tzinfo=UTC),
                        summary=f"summary of {record_id}",
                        security_labels=frozenset(),
                        entered_in_error=False,
                        subject_ref=subject,
                        payload={"id": record_id},
                    ),
                )
            )
        principal = self.principal
        outcomes = ingest(
            session,
            principal,
            auditor=Auditor(session, principal.actor()),
            keyring=keyring,
            routing=Routing(default_policy()),
            submission=Submission(atomic=True, label="transaction", entries=tuple(entries)),
        )
        session.flush()
        assert [outcome.status for outcome in outcomes] == [EntryStatus.CREATED] * len(entries), outcomes


def _health(session: Session) -> Source:
    client, _key = make_client(session, agency=Agency.HEALTH, kinds=("identity", "encounter"))
    return Source(client, "encounter", "health.encounter")


def _police(session: Session) -> Source:
    client, _key = make_client(session, agency=Agency.POLICE, kinds=("identity", "incident"))
    return Source(client, "incident", "police.incident")


def _items(session: Session, source: Source, *record_ids: str) -> list[Item]:
    session.expire_all()
    items = list(
        session.scalars(
            select(Item)
            .where(Item.client_id == source.client.id, Item.source_record_id.in_(record_ids))
            .order_by(Item.source_record_id)
        )
    )
    assert len(items) == len(record_ids)
    return items


def _data_key(session: Session, keyring: DataKeyring, child_id: uuid.UUID) -> bytes:
    wrapped = session.scalar(select(Child.wrapped_data_key).where(Child.id == child_id))
    return keyring.unwrap(wrapped)


def _assert_on(session: Session, keyring: DataKeyring, items: Sequence[Item], child_id: uuid.UUID) -> None:
    """Every item is on the child, and opens with that child's data key (content and summary)."""
    key = _data_key(session, keyring, child_id)
    for item in items:
        assert item.child_id == child_id
        content = unseal_value(key, item.sealed_content, ItemContent, context=Item.context_for(item.id))
        assert content.summary == f"summary of {item.source_record_id}"
        assert item.sealed_summary is not None
        summary = unseal_value(key, item.sealed_summary, str, context=Item.context_for(item.id, "summary"))
        assert summary == content.summary


# -- review callers -----------------------------------------------------------------------------


@pytest.fixture
def policy() -> Policy:
    return default_policy()


def _officer() -> Principal:
    return Principal(PrincipalKind.STAFF, "officer@partnership.example", Agency.SOCIAL_CARE, "linking_officer")


def _decide(
    session: Session,
    keyring: DataKeyring,
    policy: Policy,
    principal: Principal,
    link_id: uuid.UUID,
    *,
    confirm: bool,
) -> None:
    review.decide(
        session,
        principal,
        auditor=Auditor(session, principal.actor()),
        keyring=keyring,
        policy=policy,
        link_id=link_id,
        confirm=confirm,
        note="checked by a person",
    )
    session.flush()


def _merge(
    session: Session, keyring: DataKeyring, policy: Policy, child_id: uuid.UUID, into_child_id: uuid.UUID
) -> None:
    officer = _officer()
    review.merge(
        session,
        officer,
        auditor=Auditor(session, officer.actor()),
        keyring=keyring,
        policy=policy,
        child_id=child_id,
        into_child_id=into_child_id,
        reason="one child recorded twice",
    )
    session.flush()


def _unmerge(session: Session, keyring: DataKeyring, policy: Policy, child_id: uuid.UUID) -> None:
    officer = _officer()
    review.unmerge(
        session,
        officer,
        auditor=Auditor(session, officer.actor()),
        keyring=keyring,
        policy=policy,
        child_id=child_id,
        reason="two children after all",
    )
    session.flush()


@dataclass(frozen=True)
class Pair:
    """A claim sent to review: its own new child, the candidate it may be, the proposed link."""

    record_child: uuid.UUID
    candidate_child: uuid.UUID
    link_id: uuid.UUID
    identity_id: uuid.UUID


def _review_pair(session: Session, keyring: DataKeyring, person: Person) -> Pair:
    """Store a person, then a surname typo of them after a house move from another source: review."""
    first, second = _source(session), _source(session)
    (candidate,) = _link(session, keyring, first, person.claim("Patient/c"))
    slipped = replace(_moved(person), family=_typo(person.family))
    (record,) = _link(session, keyring, second, slipped.claim("Person/r"))
    assert record.outcome is LinkOutcome.REVIEW and record.proposed_child_id == candidate.child_id
    identity = _identity(session, second, "Person/r")
    (proposal,) = _links(session, identity.id, LinkState.REVIEW)
    return Pair(record.child_id, candidate.child_id, proposal.id, identity.id)


# -- 1. exact links ------------------------------------------------------------------------------


def test_a_second_source_with_the_same_nhs_number_links_exactly_to_the_same_child(
    session: Session, keyring: DataKeyring
) -> None:
    number = nhs_number()
    trust, gp = _source(session), _source(session)
    (first,) = _link(session, keyring, trust, THOMAS.claim("Patient/t1", nhs=number))
    # Another source, another record id, other demographics: only the NHS number is shared.
    (second,) = _link(session, keyring, gp, KATHERINE.claim("Patient/g7", nhs=number))

    assert first.outcome is LinkOutcome.NEW and first.created
    assert second.outcome is LinkOutcome.EXACT and second.created
    assert second.child_id == first.child_id
    link = _in_force(session, _identity(session, gp, "Patient/g7").id)
    assert link.child_id == first.child_id and link.method is LinkMethod.NHS_NUMBER
    assert _registered(session, keyring, "nhs_number", number) == first.child_id


def test_a_second_source_with_the_same_upn_links_exactly_to_the_same_child(
    session: Session, keyring: DataKeyring
) -> None:
    upn = synthetic_upn(random.Random(11))
    school, academy = _source(session, Agency.EDUCATION), _source(session, Agency.EDUCATION)
    (first,) = _link(session, keyring, school, THOMAS.claim("Pupil/1", upn=upn))
    (second,) = _link(session, keyring, academy, KATHERINE.claim("Pupil/99", upn=upn))

    assert first.outcome is LinkOutcome.NEW
    assert second.outcome is LinkOutcome.EXACT and second.child_id == first.child_id
    link = _in_force(session, _identity(session, academy, "Pupil/99").id)
    assert link.child_id == first.child_id and link.method is LinkMethod.UPN
    assert _registered(session, keyring, "upn", upn) == first.child_id


def test_a_new_version_of_a_source_record_links_to_its_child_with_no_identifier_at_all(
    session: Session, keyring: DataKeyring
) -> None:
    police = _source(session, Agency.POLICE)
    (first,) = _link(session, keyring, police, THOMAS.claim("Person/p1"))
    # No NHS number, no UPN, not even a birth date: only the source's own record id says who it is
    # (this claim would be refused as too weak if it were a new record).
    bare = replace(THOMAS, birth=None, postcode=None, address=())
    (second,) = _link(session, keyring, police, bare.claim("Person/p1", version="2"))

    assert first.outcome is LinkOutcome.NEW
    assert second.outcome is LinkOutcome.EXACT and second.child_id == first.child_id
    link = _in_force(session, _identity(session, police, "Person/p1", "2").id)
    assert link.child_id == first.child_id and link.method is LinkMethod.SOURCE_RECORD
    assert _identity(session, police, "Person/p1", "1").status is RecordStatus.SUPERSEDED


def test_an_identity_carrying_an_nhs_number_and_a_upn_registers_both_to_its_child(
    session: Session, keyring: DataKeyring
) -> None:
    number, upn = nhs_number(), synthetic_upn(random.Random(12))
    school = _source(session, Agency.EDUCATION)
    (linked,) = _link(session, keyring, school, AISHA.claim("Pupil/2", nhs=number, upn=upn))

    assert _registered(session, keyring, "nhs_number", number) == linked.child_id
    assert _registered(session, keyring, "upn", upn) == linked.child_id
    # Each identifier then finds the child on its own.
    by_nhs, by_upn = _source(session), _source(session, Agency.EDUCATION)
    (via_nhs,) = _link(session, keyring, by_nhs, MOHAMMED.claim("Patient/x", nhs=number))
    (via_upn,) = _link(session, keyring, by_upn, MOHAMMED.claim("Pupil/y", upn=upn))
    assert via_nhs.child_id == via_upn.child_id == linked.child_id


# -- 2. no NHS number ----------------------------------------------------------------------------


def test_a_patient_without_an_nhs_number_but_with_a_name_and_birth_date_makes_a_new_child(
    session: Session, keyring: DataKeyring
) -> None:
    children = _count(session, Child)
    (linked,) = _link(session, keyring, _source(session), PRIYA.claim("Patient/no-nhs"))

    assert linked.outcome is LinkOutcome.NEW and linked.created and linked.proposed_child_id is None
    assert _count(session, Child) == children + 1
    assert _child(session, linked.child_id).wrapped_data_key is not None


# -- 3. scored links across each variation --------------------------------------------------------

VARIATIONS = {
    "nickname Tom for Thomas": (THOMAS, replace(THOMAS, given=("Tom",))),
    "nickname Kate for Katherine": (KATHERINE, replace(KATHERINE, given=("Kate",))),
    "transliteration Muhammad for Mohammed": (MOHAMMED, replace(MOHAMMED, given=("Muhammad",))),
    "transliteration Ayesha for Aisha": (AISHA, replace(AISHA, given=("Ayesha",))),
    "hyphenated surname Smith-Jones for Smith": (SMITH, replace(SMITH, family="Smith-Jones")),
    "day and month swapped": (THOMAS, replace(THOMAS, birth=date(2014, 9, 3))),
    "one mistyped character in the surname": (PRIYA, replace(PRIYA, family=_typo(PRIYA.family))),
    "a house move": (KATHERINE, _moved(KATHERINE)),
}


@pytest.mark.parametrize(("stored", "variant"), list(VARIATIONS.values()), ids=list(VARIATIONS))
def test_a_variation_of_a_stored_claim_from_another_source_is_scored_to_the_same_child(
    session: Session, keyring: DataKeyring, stored: Person, variant: Person
) -> None:
    assert variant != stored
    (first,) = _link(session, keyring, _source(session), stored.claim("Patient/s1"))
    other = _source(session, Agency.POLICE)
    (second,) = _link(session, keyring, other, variant.claim("Person/v1"))

    assert second.outcome is LinkOutcome.SCORED, second
    assert second.child_id == first.child_id
    assert second.score is not None and second.score >= DEFAULT_PARAMETERS.upper
    link = _in_force(session, _identity(session, other, "Person/v1").id)
    assert link.method is LinkMethod.SCORED and link.child_id == first.child_id


# -- 4. kept apart ---------------------------------------------------------------------------------


def _assert_kept_apart(session: Session, keyring: DataKeyring, stored: IdentityClaim, other: IdentityClaim) -> None:
    (first,) = _link(session, keyring, _source(session), stored)
    second_source = _source(session)
    (second,) = _link(session, keyring, second_source, other)

    assert second.outcome is LinkOutcome.NEW, second
    assert second.child_id != first.child_id and second.proposed_child_id is None
    assert _links(session, _identity(session, second_source, other.source_record_id).id, LinkState.REVIEW) == []


def test_twins_with_different_given_names_are_two_children(session: Session, keyring: DataKeyring) -> None:
    # Two boys: everything but the given name agrees, enough to link were it not for the twin guard.
    oscar, harvey = replace(THOMAS, given=("Oscar",)), replace(THOMAS, given=("Harvey",))
    _assert_kept_apart(session, keyring, oscar.claim("Patient/tw1"), harvey.claim("Patient/tw2"))


def test_twins_whose_birth_date_is_recorded_with_day_and_month_swapped_are_two_children(
    session: Session, keyring: DataKeyring
) -> None:
    oscar, harvey = replace(THOMAS, given=("Oscar",)), replace(THOMAS, given=("Harvey",), birth=date(2014, 9, 3))
    _assert_kept_apart(session, keyring, oscar.claim("Patient/tw1"), harvey.claim("Patient/tw2"))


def test_namesakes_born_over_a_year_apart_in_another_area_are_two_children(
    session: Session, keyring: DataKeyring
) -> None:
    james = Person(
        given=("James",),
        family="Wilson",
        birth=date(2013, 2, 10),
        sex="male",
        postcode="LS6 2AB",
        address=("14 Cardigan Road",),
    )
    namesake = replace(james, birth=date(2014, 6, 22), postcode="BS3 4AA", address=("2 North Street",))
    _assert_kept_apart(session, keyring, james.claim("Patient/j1"), namesake.claim("Patient/j2"))


def test_identical_demographics_with_different_nhs_numbers_are_two_children(
    session: Session, keyring: DataKeyring
) -> None:
    first_number, second_number = nhs_number(), nhs_number()
    _assert_kept_apart(
        session, keyring, THOMAS.claim("Patient/n1", nhs=first_number), THOMAS.claim("Patient/n2", nhs=second_number)
    )
    assert _registered(session, keyring, "nhs_number", first_number) != _registered(
        session, keyring, "nhs_number", second_number
    )


# -- 5. the review band ----------------------------------------------------------------------------

REVIEW_BAND = {
    "surname typo and a house move": replace(_moved(PRIYA), family=_typo(PRIYA.family)),
    "given name missing and a house move": replace(_moved(PRIYA), given=()),
}


@pytest.mark.parametrize("variant", list(REVIEW_BAND.values()), ids=list(REVIEW_BAND))
def test_a_claim_between_the_thresholds_makes_a_new_child_and_a_proposed_link(
    session: Session, keyring: DataKeyring, variant: Person
) -> None:
    first = _source(session)
    (candidate,) = _link(session, keyring, first, PRIYA.claim("Patient/c"))
    other = _source(session, Agency.POLICE)
    children = _count(session, Child)
    (linked,) = _link(session, keyring, other, variant.claim("Person/r"))

    parameters = DEFAULT_PARAMETERS
    assert linked.outcome is LinkOutcome.REVIEW
    assert linked.score is not None and parameters.lower <= linked.score < parameters.upper
    assert linked.child_id != candidate.child_id and linked.proposed_child_id == candidate.child_id
    assert _count(session, Child) == children + 1
    identity = _identity(session, other, "Person/r")
    assert _in_force(session, identity.id).child_id == linked.child_id  # nothing shown on the candidate
    (proposal,) = _links(session, identity.id, LinkState.REVIEW)
    assert proposal.child_id == candidate.child_id and proposal.method is LinkMethod.SCORED
    assert proposal.candidate_identity_id == _identity(session, first, "Patient/c").id
    reasons = proposal.reasons
    assert reasons is not None
    assert {reason["field"] for reason in reasons} == {"given", "family", "birth_date", "sex", "location"}
    for reason in reasons:
        assert set(reason) == {"field", "level", "weight", "reason"}
        assert isinstance(reason["weight"], float) and isinstance(reason["reason"], str) and reason["reason"]
    said = repr(reasons).lower()
    for name in (*PRIYA.given, PRIYA.family, *variant.given, variant.family):
        assert name is not None and name.lower() not in said


# -- 6. too weak -----------------------------------------------------------------------------------


def test_a_claim_with_no_identifier_and_no_birth_date_is_refused_and_nothing_is_stored(
    session: Session, keyring: DataKeyring
) -> None:
    police = _source(session, Agency.POLICE)
    before = {model: _count(session, model) for model in (Identity, Child, Link)}
    (refused,) = _link_any(session, keyring, police, replace(THOMAS, birth=None).claim("Person/weak"))

    assert isinstance(refused, LinkRefused)
    assert refused.code == "required" and "a birth date" in str(refused)
    assert "Thomas" not in str(refused) and "Whitfield" not in str(refused)
    assert {model: _count(session, model) for model in (Identity, Child, Link)} == before


# -- 7. review decisions ---------------------------------------------------------------------------


def test_a_linking_officer_confirms_a_proposed_link_and_the_record_child_is_merged_into_the_candidate(
    session: Session, keyring: DataKeyring, policy: Policy
) -> None:
    pair = _review_pair(session, keyring, PRIYA)
    # The record's child has a second record, which goes across too.
    school = _source(session, Agency.EDUCATION)
    (also,) = _link(session, keyring, school, replace(_moved(PRIYA), family=_typo(PRIYA.family)).claim("Pupil/r"))
    assert also.outcome is LinkOutcome.SCORED and also.child_id == pair.record_child

    _decide(session, keyring, policy, _officer(), pair.link_id, confirm=True)

    assert _child(session, pair.record_child).merged_into_id == pair.candidate_child
    assert _child(session, pair.candidate_child).merged_into_id is None
    for identity_id in (pair.identity_id, _identity(session, school, "Pupil/r").id):
        assert _in_force(session, identity_id).child_id == pair.candidate_child
        assert current_child_of(session, identity_id) == pair.candidate_child
    proposal = session.get(Link, pair.link_id)
    assert proposal is not None and proposal.state is LinkState.CONFIRMED
    assert proposal.decided_by == _officer().subject
    assert session.scalar(select(ChildMerge.link_id).where(ChildMerge.child_id == pair.record_child)) == pair.link_id

    with pytest.raises(Conflict):
        _decide(session, keyring, policy, _officer(), pair.link_id, confirm=True)
    with pytest.raises(Conflict):
        _decide(session, keyring, policy, _officer(), pair.link_id, confirm=False)


def test_a_linking_officer_rejects_a_proposed_link_and_nothing_moves(
    session: Session, keyring: DataKeyring, policy: Policy
) -> None:
    pair = _review_pair(session, keyring, PRIYA)

    _decide(session, keyring, policy, _officer(), pair.link_id, confirm=False)

    session.expire_all()
    proposal = session.get(Link, pair.link_id)
    assert proposal is not None and proposal.state is LinkState.REJECTED
    assert _in_force(session, pair.identity_id).child_id == pair.record_child
    assert _child(session, pair.record_child).merged_into_id is None
    assert session.scalar(select(func.count()).select_from(ChildMerge)) == 0
    with pytest.raises(Conflict):
        _decide(session, keyring, policy, _officer(), pair.link_id, confirm=False)
    with pytest.raises(Conflict):
        _decide(session, keyring, policy, _officer(), pair.link_id, confirm=True)


def test_staff_with_another_role_and_no_lead_case_may_not_decide(
    session: Session, keyring: DataKeyring, policy: Policy
) -> None:
    pair = _review_pair(session, keyring, PRIYA)
    social_worker = Principal(PrincipalKind.STAFF, "sw@council.example", Agency.SOCIAL_CARE, "social_worker")

    with pytest.raises(Forbidden):
        _decide(session, keyring, policy, social_worker, pair.link_id, confirm=True)

    proposal = session.get(Link, pair.link_id)
    assert proposal is not None and proposal.state is LinkState.REVIEW
    assert _child(session, pair.record_child).merged_into_id is None


def test_a_lead_practitioner_decides_the_pairs_about_their_child_only(
    session: Session, keyring: DataKeyring, policy: Policy
) -> None:
    theirs = _review_pair(session, keyring, PRIYA)
    not_theirs = _review_pair(session, keyring, KATHERINE)
    team = make_team(session)
    member = add_member(session, team, agency=Agency.SOCIAL_CARE, role="lead_practitioner")
    allocate(session, child_id=theirs.candidate_child, team=team)
    lead = Principal(PrincipalKind.STAFF, member.subject, member.agency, member.role)

    with pytest.raises(Forbidden):
        _decide(session, keyring, policy, lead, not_theirs.link_id, confirm=True)
    _decide(session, keyring, policy, lead, theirs.link_id, confirm=True)

    session.expire_all()
    decided, untouched = session.get(Link, theirs.link_id), session.get(Link, not_theirs.link_id)
    assert decided is not None and decided.state is LinkState.CONFIRMED and decided.decided_by == member.subject
    assert untouched is not None and untouched.state is LinkState.REVIEW
    assert _child(session, theirs.record_child).merged_into_id == theirs.candidate_child
    assert _child(session, not_theirs.record_child).merged_into_id is None
    # Another staff member with the same subject in another agency is not the lead practitioner.
    impostor = Principal(PrincipalKind.STAFF, member.subject, Agency.POLICE, "lead_practitioner")
    with pytest.raises(Forbidden):
        _decide(session, keyring, policy, impostor, not_theirs.link_id, confirm=False)


# -- 8. merge and unmerge --------------------------------------------------------------------------


def test_merge_moves_every_item_and_unmerge_restores_them_all_with_those_pushed_since(
    session: Session, keyring: DataKeyring, policy: Policy
) -> None:
    trust, gp = _health(session), _health(session)
    number_a, number_b = nhs_number(), nhs_number()
    trust.push(
        session,
        keyring,
        [THOMAS.claim("Patient/a", nhs=number_a)],
        [("Encounter/a1", "Patient/a"), ("Encounter/a2", "Patient/a")],
    )
    gp.push(session, keyring, [KATHERINE.claim("Patient/b", nhs=number_b)], [("Encounter/b1", "Patient/b")])
    a = _registered(session, keyring, "nhs_number", number_a)
    b = _registered(session, keyring, "nhs_number", number_b)
    assert a is not None and b is not None and a != b
    a_items = _items(session, trust, "Encounter/a1", "Encounter/a2")
    b_items = _items(session, gp, "Encounter/b1")
    _assert_on(session, keyring, a_items, a)

    _merge(session, keyring, policy, a, b)

    _assert_on(session, keyring, _items(session, trust, "Encounter/a1", "Encounter/a2"), b)
    assert _child(session, a).merged_into_id == b
    assert _registered(session, keyring, "nhs_number", number_a) == b
    assert current_child_of(session, _identity(session, trust.principal, "Patient/a").id) == b

    # After the merge, the trust sends a new item about its patient, and a new version of the patient.
    trust.push(session, keyring, items=[("Encounter/a3", "Patient/a")])
    trust.push(
        session, keyring, [THOMAS.claim("Patient/a", version="2", nhs=number_a)], [("Encounter/a4", "Patient/a")]
    )
    _assert_on(session, keyring, _items(session, trust, "Encounter/a3", "Encounter/a4"), b)
    assert current_child_of(session, _identity(session, trust.principal, "Patient/a", "2").id) == b

    _unmerge(session, keyring, policy, a)

    _assert_on(
        session, keyring, _items(session, trust, "Encounter/a1", "Encounter/a2", "Encounter/a3", "Encounter/a4"), a
    )
    _assert_on(session, keyring, _items(session, gp, "Encounter/b1"), b)
    assert [item.id for item in _items(session, gp, "Encounter/b1")] == [item.id for item in b_items]
    for version in ("1", "2"):
        assert current_child_of(session, _identity(session, trust.principal, "Patient/a", version).id) == a
    assert current_child_of(session, _identity(session, gp.principal, "Patient/b").id) == b
    assert _registered(session, keyring, "nhs_number", number_a) == a
    assert _registered(session, keyring, "nhs_number", number_b) == b
    assert _child(session, a).merged_into_id is None
    (merge,) = session.scalars(select(ChildMerge).where(ChildMerge.child_id == a))
    assert merge.kind is MergeKind.MERGE and merge.into_child_id == b
    assert merge.unmerged_at is not None and merge.unmerged_by == _officer().subject
    # The next push about the patient goes to its own child again.
    trust.push(session, keyring, items=[("Encounter/a5", "Patient/a")])
    _assert_on(session, keyring, _items(session, trust, "Encounter/a5"), a)


def test_merge_and_unmerge_refuse_what_cannot_be_done(session: Session, keyring: DataKeyring, policy: Policy) -> None:
    source = _source(session)
    first, second, third = _link(
        session,
        keyring,
        source,
        THOMAS.claim("Patient/1", nhs=nhs_number()),
        KATHERINE.claim("Patient/2", nhs=nhs_number()),
        AISHA.claim("Patient/3", nhs=nhs_number()),
    )
    a, b, c = first.child_id, second.child_id, third.child_id
    assert len({a, b, c}) == 3

    with pytest.raises(Conflict):
        _merge(session, keyring, policy, a, a)
    with pytest.raises(NotFound):
        _merge(session, keyring, policy, a, uuid.uuid4())
    with pytest.raises(NotFound):
        _merge(session, keyring, policy, uuid.uuid4(), a)
    with pytest.raises(Conflict):
        _unmerge(session, keyring, policy, a)  # never merged
    with pytest.raises(NotFound):
        _unmerge(session, keyring, policy, uuid.uuid4())

    _merge(session, keyring, policy, a, b)
    with pytest.raises(Conflict):
        _merge(session, keyring, policy, a, c)  # already merged
    with pytest.raises(Conflict):
        _merge(session, keyring, policy, c, a)  # into a merged child
    _unmerge(session, keyring, policy, a)
    with pytest.raises(Conflict):
        _unmerge(session, keyring, policy, a)  # unmerged already
    assert _child(session, a).merged_into_id is None


def test_only_a_linking_officer_may_merge(session: Session, keyring: DataKeyring, policy: Policy) -> None:
    source = _source(session)
    first, second = _link(
        session,
        keyring,
        source,
        THOMAS.claim("Patient/1", nhs=nhs_number()),
        AISHA.claim("Patient/2", nhs=nhs_number()),
    )
    team = make_team(session)
    member = add_member(session, team, agency=Agency.HEALTH, role="lead_practitioner")
    allocate(session, child_id=first.child_id, team=team)
    lead = Principal(PrincipalKind.STAFF, member.subject, member.agency, member.role)

    with pytest.raises(Forbidden):
        review.merge(
            session,
            lead,
            auditor=Auditor(session, lead.actor()),
            keyring=keyring,
            policy=policy,
            child_id=first.child_id,
            into_child_id=second.child_id,
            reason="lead practitioners do not merge",
        )
    assert _child(session, first.child_id).merged_into_id is None


# -- 9. an NHS number changes ------------------------------------------------------------------------


def _moved_events(session: Session, child_id: uuid.UUID) -> list[AuditEvent]:
    return list(
        session.scalars(
            select(AuditEvent).where(
                AuditEvent.action == AuditAction.IDENTITY_RECORD_MOVED.value, AuditEvent.child_id == child_id
            )
        )
    )


def test_a_new_version_whose_nhs_number_is_another_childs_moves_the_record_and_its_items(
    session: Session, keyring: DataKeyring
) -> None:
    trust, gp = _health(session), _health(session)
    first_number, second_number = nhs_number(), nhs_number()
    trust.push(session, keyring, [THOMAS.claim("Patient/p", nhs=first_number)], [("Encounter/e1", "Patient/p")])
    gp.push(session, keyring, [KATHERINE.claim("Patient/q", nhs=second_number)])
    a = _registered(session, keyring, "nhs_number", first_number)
    b = _registered(session, keyring, "nhs_number", second_number)
    assert a is not None and b is not None and a != b

    (v2,) = _link(session, keyring, trust.principal, THOMAS.claim("Patient/p", version="2", nhs=second_number))
    session.commit()  # the audit trail is appended at commit

    assert v2.outcome is LinkOutcome.EXACT and v2.child_id == b
    v1_identity, v2_identity = (_identity(session, trust.principal, "Patient/p", v) for v in ("1", "2"))
    assert _in_force(session, v2_identity.id).method is LinkMethod.NHS_NUMBER
    assert current_child_of(session, v2_identity.id) == b
    assert current_child_of(session, v1_identity.id) == b
    _assert_on(session, keyring, _items(session, trust, "Encounter/e1"), b)
    (move,) = session.scalars(select(ChildMerge).where(ChildMerge.child_id == a))
    assert move.kind is MergeKind.MOVE and move.into_child_id == b
    assert move.source_records == [[trust.client.id, "Patient/p"]]
    for child_id in (a, b):
        (event,) = _moved_events(session, child_id)
        assert event.detail["from_child"] == str(a) and event.detail["to_child"] == str(b)
        assert event.detail["identities"] == 1 and event.detail["items"] == 1
    # Nothing on the first child carries the first number any more: it no longer names that child.
    assert _registered(session, keyring, "nhs_number", first_number) is None
    assert _registered(session, keyring, "nhs_number", second_number) == b
    # A correction, not a new identifier: nobody is asked whether the two children are one.
    assert session.scalar(select(func.count()).select_from(Link).where(Link.state == LinkState.REVIEW)) == 0
    # The next item about the patient lands on its new child.
    trust.push(session, keyring, items=[("Encounter/e2", "Patient/p")])
    _assert_on(session, keyring, _items(session, trust, "Encounter/e2"), b)


def test_a_changed_nhs_number_stays_registered_where_another_record_still_carries_it(
    session: Session, keyring: DataKeyring
) -> None:
    trust, gp, hospice = _health(session), _health(session), _health(session)
    first_number, second_number = nhs_number(), nhs_number()
    trust.push(session, keyring, [THOMAS.claim("Patient/p", nhs=first_number)])
    gp.push(session, keyring, [THOMAS.claim("Patient/g", nhs=first_number)])
    hospice.push(session, keyring, [KATHERINE.claim("Patient/h", nhs=second_number)])
    a = _registered(session, keyring, "nhs_number", first_number)
    b = _registered(session, keyring, "nhs_number", second_number)

    (v2,) = _link(session, keyring, trust.principal, THOMAS.claim("Patient/p", version="2", nhs=second_number))

    assert v2.child_id == b
    assert _registered(session, keyring, "nhs_number", first_number) == a  # the GP's record still carries it
    assert current_child_of(session, _identity(session, gp.principal, "Patient/g").id) == a


def test_a_new_version_with_an_nhs_number_nobody_has_stays_on_its_child_and_retires_the_old_number(
    session: Session, keyring: DataKeyring
) -> None:
    trust = _health(session)
    old_number, new_number = nhs_number(), nhs_number()
    trust.push(session, keyring, [THOMAS.claim("Patient/p", nhs=old_number)], [("Encounter/e1", "Patient/p")])
    a = _registered(session, keyring, "nhs_number", old_number)
    assert a is not None

    (v2,) = _link(session, keyring, trust.principal, THOMAS.claim("Patient/p", version="2", nhs=new_number))

    assert v2.outcome is LinkOutcome.EXACT and v2.child_id == a
    assert (
        _in_force(session, _identity(session, trust.principal, "Patient/p", "2").id).method is LinkMethod.SOURCE_RECORD
    )
    assert _registered(session, keyring, "nhs_number", new_number) == a
    assert _registered(session, keyring, "nhs_number", old_number) is None
    _assert_on(session, keyring, _items(session, trust, "Encounter/e1"), a)
    assert session.scalar(select(func.count()).select_from(ChildMerge)) == 0


def test_a_new_version_that_leaves_the_nhs_number_out_keeps_it_registered_to_its_child(
    session: Session, keyring: DataKeyring
) -> None:
    trust = _health(session)
    number = nhs_number()
    (v1,) = _link(session, keyring, trust.principal, THOMAS.claim("Patient/p", nhs=number))

    (v2,) = _link(session, keyring, trust.principal, THOMAS.claim("Patient/p", version="2"))

    # Left out is unknown, not wrong: the number still finds the child.
    assert v2.child_id == v1.child_id
    assert _registered(session, keyring, "nhs_number", number) == v1.child_id


# -- 10. a later identifier joins what was separate -------------------------------------------------

JORDAN = Person(
    given=("Jordan",),
    family="Blake",
    birth=date(2012, 8, 15),
    sex="male",
    postcode="S2 4QT",
    address=("10 Duke Street",),
)
# The same boy as the police recorded him: another spelling of the surname, an older address.
JORDAN_AS_POLICE_SAW_HIM = replace(JORDAN, family="Bleyk", postcode="DN4 8AB", address=("2 Balby Road",))


def test_an_nhs_number_arriving_on_a_police_record_joins_it_to_the_health_child(
    session: Session, keyring: DataKeyring
) -> None:
    trust, police = _health(session), _police(session)
    school = Source(make_client(session, agency=Agency.EDUCATION)[0], "enrolment", "education.enrolment")
    number = nhs_number()
    trust.push(session, keyring, [JORDAN.claim("Patient/j", nhs=number)], [("Encounter/e1", "Patient/j")])
    h = _registered(session, keyring, "nhs_number", number)
    assert h is not None
    (police_v1,) = _link(session, keyring, police.principal, JORDAN_AS_POLICE_SAW_HIM.claim("Person/j"))
    assert police_v1.outcome is LinkOutcome.NEW and police_v1.proposed_child_id is None
    x = police_v1.child_id
    police.push(session, keyring, items=[("Incident/i1", "Person/j"), ("Incident/i2", "Person/j")])
    (pupil,) = _link(session, keyring, school.principal, JORDAN_AS_POLICE_SAW_HIM.claim("Pupil/j"))
    assert pupil.outcome is LinkOutcome.SCORED and pupil.child_id == x

    (police_v2,) = _link(
        session, keyring, police.principal, JORDAN_AS_POLICE_SAW_HIM.claim("Person/j", version="2", nhs=number)
    )

    assert police_v2.outcome is LinkOutcome.EXACT and police_v2.child_id == h
    for version in ("1", "2"):
        assert current_child_of(session, _identity(session, police.principal, "Person/j", version).id) == h
    _assert_on(session, keyring, _items(session, police, "Incident/i1", "Incident/i2"), h)
    _assert_on(session, keyring, _items(session, trust, "Encounter/e1"), h)
    # The school's record stays where it was, and a person is asked whether its child is the health child.
    pupil_identity = _identity(session, school.principal, "Pupil/j")
    assert current_child_of(session, pupil_identity.id) == x
    (proposal,) = _links(session, pupil_identity.id, LinkState.REVIEW)
    assert proposal.child_id == h
    assert _registered(session, keyring, "nhs_number", number) == h


# -- 11. blocking --------------------------------------------------------------------------------------

_GIVEN = ("Oliver", "Amelia", "Noah", "Isla", "Leo", "Ava", "Arlo", "Ivy", "Finley", "Freya")
_FAMILY = ("Abbott", "Barker", "Carter", "Dawson", "Ellis")


def test_a_claim_is_scored_only_against_identities_sharing_a_blocking_key(
    session: Session, keyring: DataKeyring, monkeypatch: pytest.MonkeyPatch
) -> None:
    crowd = [
        Person(
            given=(_GIVEN[n % 10],),
            family=_FAMILY[n // 10],
            birth=date(2005, 1, 1) + timedelta(days=97 * n),
            sex="female" if n % 2 else "male",
            postcode=f"S{n + 1} 1AA",
            address=(f"{n + 1} Crowd Street",),
        )
        for n in range(50)
    ]
    assert THOMAS.birth not in {person.birth for person in crowd}
    stored = _link(
        session, keyring, _source(session), *(person.claim(f"Patient/c{n}") for n, person in enumerate(crowd))
    )
    assert len({linked.child_id for linked in stored}) == 50
    assert {linked.outcome for linked in stored} == {LinkOutcome.NEW}
    (thomas,) = _link(session, keyring, _source(session), THOMAS.claim("Patient/t"))

    scored: list[Demographics] = []

    def counting(a: Demographics, b: Demographics, parameters: MatchParameters = DEFAULT_PARAMETERS) -> MatchScore:
        scored.append(b)
        return score(a, b, parameters)

    monkeypatch.setattr(service, "score", counting)
    (tom,) = _link(session, keyring, _source(session, Agency.POLICE), replace(THOMAS, given=("Tom",)).claim("Person/t"))

    assert tom.outcome is LinkOutcome.SCORED and tom.child_id == thomas.child_id
    assert 1 <= len(scored) <= 3, len(scored)
    assert {person.family for person in scored} == {"Whitfield"}

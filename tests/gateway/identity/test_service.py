"""Linking a push's claims: new versions supersede, an erased child takes no more, a lost race uses the winner."""

from __future__ import annotations


import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from adapters import IdentityClaim
from gateway.auth.principal import Principal, PrincipalKind
from gateway.identity.service import ClaimLinked, LinkRefused, link_claims
from gateway.kit.auditor import Auditor
from gateway.kit.crypto import DataKeyring
from gateway.models import Child, Identity, Link
from policies import RecordStatus
from tests.factories import make_client, nhs_number


def _claim(number: str | None, *, version: str = "1", source_id: str = "Patient/p1") -> IdentityClaim:
    return IdentityClaim(
        source_record_id=source_id,
        source_version=version,
        nhs_number=number,
        other_identifiers=(),
        given_names=("Alex",),
        family_name="Testington",
        birth_date=None,
        sex=None,
        postcode=None,
        address_lines=(),
    )


def _link(session: Session, keyring: DataKeyring, principal: Principal, *claims: IdentityClaim) -> list[object]:
    linked = link_claims(
        session,
        principal,
        auditor=Auditor(session, principal.actor()),
        keyring=keyring,
        claims=dict(enumerate(claims)),
    )
    return [linked.outcomes[index] for index in range(len(claims))]


@pytest.fixture
def principal(session: Session) -> Principal:
    client, _key = make_client(session)
    return Principal(PrincipalKind.CLIENT, client.id, client.agency)


def test_a_new_version_supersedes_the_one_in_force_and_links_to_the_same_child(
    session: Session, keyring: DataKeyring, principal: Principal
) -> None:
    number = nhs_number()
    (first,) = _link(session, keyring, principal, _claim(number, version="1"))
    (second,) = _link(session, keyring, principal, _claim(number, version="2"))
    (again,) = _link(session, keyring, principal, _claim(number, version="1"))

    assert isinstance(first, ClaimLinked) and isinstance(second, ClaimLinked) and isinstance(again, ClaimLinked)
    assert first.created and second.created and not again.created
    assert first.child_id == second.child_id == again.child_id
    statuses = dict(session.execute(select(Identity.source_version, Identity.status)).all())
    assert statuses == {"1": RecordStatus.SUPERSEDED, "2": RecordStatus.CURRENT}
    assert session.scalar(select(func.count()).select_from(Link)) == 2


def test_a_claim_for_an_erased_child_is_refused_and_one_without_an_nhs_number_too(
    session: Session, keyring: DataKeyring, principal: Principal
) -> None:
    number = nhs_number()
    (first,) = _link(session, keyring, principal, _claim(number))
    assert isinstance(first, ClaimLinked)
    child = session.get(Child, first.child_id)
    assert child is not None
    child.wrapped_data_key = None  # erasure: the child's data key is destroyed
    session.flush()

    erased, unnumbered = _link(
        session, keyring, principal, _claim(number, version="2"), _claim(None, source_id="Patient/p2")
    )

    assert isinstance(erased, LinkRefused) and erased.code == "deleted" and "erased" in str(erased)
    assert isinstance(unnumbered, LinkRefused) and "NHS number" in str(unnumbered)
    assert session.scalar(select(func.count()).select_from(Identity)) == 1

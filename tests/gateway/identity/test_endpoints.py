"""The linking review queue over HTTP: the pair side by side, confirm, reject, merge, unmerge, and who may."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import date
from typing import Any

import pytest
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from audit import AuditAction, AuditEvent
from gateway.auth.keys import SigningKeys
from gateway.identity.scoring import DEFAULT_PARAMETERS
from gateway.kit.crypto import DataKeyring
from gateway.models import Child, ChildMerge, Client, Link, LinkState, Team, TeamMember
from gateway.settings import Settings
from tests.factories import (
    add_member,
    allocate,
    child_bundle,
    client_token,
    demo_child,
    encounter,
    make_client,
    make_team,
    staff_token,
)
from tests.gateway.helpers import child_id_for, get_view, push, stored_counts

PROBLEM_JSON = "application/problem+json"


@dataclass(frozen=True)
class Pair:
    """Two children a person is asked about: the scored record's child, and the candidate it may be."""

    record_child: uuid.UUID
    candidate_child: uuid.UUID
    link_id: uuid.UUID
    nhs_number: str
    record_source: Client
    candidate_source: Client


@dataclass(frozen=True)
class Caller:
    """The app and the keys to call it with."""

    http: TestClient
    session: Session
    settings: Settings
    signing_keys: SigningKeys
    keyring: DataKeyring

    def staff(self, member: TeamMember) -> dict[str, str]:
        return {"Authorization": f"Bearer {staff_token(self.signing_keys, self.settings, member)}"}

    def get(self, path: str, member: TeamMember, **params: Any) -> Response:
        response: Response = self.http.get(f"/api/v1{path}", params=params, headers=self.staff(member))
        return response

    def post(self, path: str, member: TeamMember, body: dict[str, Any] | None = None) -> Response:
        response: Response = self.http.post(f"/api/v1{path}", json=body, headers=self.staff(member))
        return response

    def view(self, member: TeamMember, child_id: uuid.UUID) -> dict[str, Any]:
        response = get_view(self.http, staff_token(self.signing_keys, self.settings, member), child_id)
        assert response.status_code == 200, response.text
        view: dict[str, Any] = response.json()
        return view

    def push(self, source: Client, bundle: dict[str, Any]) -> None:
        response = push(self.http, client_token(self.signing_keys, self.settings, source), bundle)
        assert response.status_code == 200, response.text
        statuses = [entry["response"]["status"] for entry in response.json()["entry"]]
        assert all(status.startswith("201") for status in statuses), statuses


@pytest.fixture
def caller(
    client: TestClient, session: Session, settings: Settings, signing_keys: SigningKeys, keyring: DataKeyring
) -> Caller:
    return Caller(client, session, settings, signing_keys, keyring)


@pytest.fixture
def officer(session: Session) -> TeamMember:
    """A linking officer: a role the ISA names in linking_roles, on a team with no child."""
    return add_member(session, make_team(session, name="Linking unit"), agency="social_care", role="linking_officer")


@pytest.fixture
def team(session: Session) -> Team:
    return make_team(session, name="Northshire MACPT")


@pytest.fixture
def viewer(session: Session, team: Team) -> TeamMember:
    """A police officer on the team the tests allocate children to: sees their views, may not link."""
    return add_member(session, team, agency="police", role="police_officer")


def _source(session: Session, name: str) -> Client:
    """Register a health system with a name of its own."""
    source, _key = make_client(session)
    source.name = name
    session.flush()
    return source


def _pair(
    caller: Caller,
    *,
    given: str = "Alex",
    family: str = "Testington",
    slipped_family: str = "Testingtan",
    birth_date: date = date(2015, 3, 14),
    encounters: int = 0,
) -> Pair:
    """Push a child with an NHS number from one system, then, from another, one without any
    identifier whose surname is one slip off and who lives elsewhere: scored between the thresholds."""
    session = caller.session
    first = _source(session, f"Northshire Hospital EPR {uuid.uuid4().hex[:6]}")
    second = _source(session, f"Southshire Community Health {uuid.uuid4().hex[:6]}")
    child = demo_child(given_names=[given], family_name=family, birth_date=birth_date)
    caller.push(first, child_bundle(child, encounters=[encounter() for _ in range(encounters)]))
    candidate_child = child_id_for(session, caller.keyring, child.nhs_number)

    alike = demo_child(
        given_names=[given],
        family_name=slipped_family,
        birth_date=birth_date,
        postcode="LS1 4AB",
        address_lines=["22 Other Road"],
    )
    bundle = child_bundle(alike, patient_id="q1", encounters=[encounter() for _ in range(encounters)])
    del bundle["entry"][0]["resource"]["identifier"]
    caller.push(second, bundle)

    proposed = session.execute(
        select(Link.id, Link.child_id, Link.identity_id).where(
            Link.state == LinkState.REVIEW, Link.child_id == candidate_child
        )
    ).all()
    assert len(proposed) == 1, "the second record did not land on the review queue"
    link_id, _candidate, identity_id = proposed[0]
    record_child = session.scalar(
        select(Link.child_id).where(Link.identity_id == identity_id, Link.state == LinkState.LINKED)
    )
    assert record_child is not None and record_child != candidate_child
    return Pair(record_child, candidate_child, link_id, child.nhs_number, second, first)


def _other_child(caller: Caller, *, encounters: int, given: str, family: str, birth_date: date) -> uuid.UUID:
    """Push a child with an NHS number, nothing like any other, from a system of its own."""
    source = _source(caller.session, f"Eastshire EPR {uuid.uuid4().hex[:6]}")
    child = demo_child(
        given_names=[given],
        family_name=family,
        birth_date=birth_date,
        postcode="EX1 1AA",
        address_lines=["3 Quay Lane"],
    )
    caller.push(source, child_bundle(child, encounters=[encounter() for _ in range(encounters)]))
    return child_id_for(caller.session, caller.keyring, child.nhs_number)


def _link_state(session: Session, link_id: uuid.UUID) -> LinkState | None:
    return session.scalar(select(Link.state).where(Link.id == link_id).execution_options(populate_existing=True))


def _events(session: Session, action: str) -> list[AuditEvent]:
    return list(session.scalars(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.seq)))


def _merges(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(ChildMerge)) or 0


def _merged_into(session: Session, child_id: uuid.UUID) -> uuid.UUID | None:
    return session.scalar(select(Child.merged_into_id).where(Child.id == child_id))


def _problem(response: Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    return body


# -- the queue -------------------------------------------------------------------------------------


def test_the_queue_shows_each_pair_side_by_side_and_audits_each_child_shown(
    caller: Caller, session: Session, officer: TeamMember
) -> None:
    pair = _pair(caller)
    later = _pair(caller, given="Jordan", family="Blackwood", slipped_family="Blackwod", birth_date=date(2012, 7, 2))

    response = caller.get("/links/review", officer, limit=1)

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["total"] == 2
    assert len(body["links"]) == 1
    shown = body["links"][0]
    assert shown["link_id"] == str(pair.link_id)
    assert shown["thresholds"] == {"lower": DEFAULT_PARAMETERS.lower, "upper": DEFAULT_PARAMETERS.upper}
    assert DEFAULT_PARAMETERS.lower <= shown["score"] < DEFAULT_PARAMETERS.upper
    levels = {reason["field"]: reason["level"] for reason in shown["reasons"]}
    assert levels == {
        "given": "exact",
        "family": "close",
        "birth_date": "exact",
        "sex": "exact",
        "location": "different",
    }
    assert all(reason["reason"] for reason in shown["reasons"])
    assert abs(sum(reason["weight"] for reason in shown["reasons"]) - shown["score"]) < 0.05

    record, candidate = shown["record"], shown["candidate"]
    assert record["child_id"] == str(pair.record_child)
    assert record["agency"] == "health"
    assert record["source"] == pair.record_source.name
    assert record["nhs_number"] is None
    assert (record["given_names"], record["family_name"]) == (["Alex"], "Testingtan")
    assert (record["birth_date"], record["postcode"]) == ("2015-03-14", "LS1 4AB")
    assert record["records"] == 1
    assert candidate["child_id"] == str(pair.candidate_child)
    assert candidate["agency"] == "health"
    assert candidate["source"] == pair.candidate_source.name
    assert candidate["nhs_number"] == pair.nhs_number
    assert (candidate["given_names"], candidate["family_name"]) == (["Alex"], "Testington")
    assert (candidate["birth_date"], candidate["postcode"]) == ("2015-03-14", "ZZ99 3VZ")
    assert candidate["records"] == 1

    # Each child shown is audited once; the pair not shown (beyond the limit) is not.
    listed = _events(session, AuditAction.IDENTITY_REVIEW_LISTED)
    assert sorted(str(e.child_id) for e in listed) == sorted(str(c) for c in (pair.record_child, pair.candidate_child))
    assert all(e.detail["links"] == [str(pair.link_id)] for e in listed)
    assert all(e.actor_id == officer.subject and e.outcome == "success" for e in listed)

    everything = caller.get("/links/review", officer).json()
    assert [link["link_id"] for link in everything["links"]] == [str(pair.link_id), str(later.link_id)]
    assert everything["total"] == 2


def test_the_queue_limit_is_bounded(caller: Caller, officer: TeamMember) -> None:
    for limit in (0, 101):
        body = _problem(caller.get("/links/review", officer, limit=limit), 422)
        assert any("limit" in error["location"] for error in body["errors"])


# -- confirm and reject ----------------------------------------------------------------------------


def test_confirming_merges_the_record_into_the_candidate_and_cannot_be_done_twice(
    caller: Caller, session: Session, officer: TeamMember, team: Team, viewer: TeamMember
) -> None:
    pair = _pair(caller, encounters=1)
    allocate(session, child_id=pair.candidate_child, team=team)
    before = caller.view(viewer, pair.candidate_child)
    assert len(before["identities"]) == 1 and len(before["timeline"]) == 1
    assert before["linking"]["proposed_links"] == 1

    response = caller.post(f"/links/{pair.link_id}/confirm", officer, {"note": "same child, surname mistyped"})

    assert response.status_code == 200, response.text
    decided = response.json()
    assert decided["link_id"] == str(pair.link_id)
    assert decided["state"] == "confirmed"
    assert decided["decided_by"] == officer.subject
    assert decided["merge_id"] is not None
    assert decided["child_id"] == str(pair.candidate_child)
    assert _link_state(session, pair.link_id) is LinkState.CONFIRMED
    assert _merged_into(session, pair.record_child) == pair.candidate_child

    view = caller.view(viewer, pair.candidate_child)
    assert sorted(i["family_name"] for i in view["identities"]) == ["Testingtan", "Testington"]
    assert len(view["timeline"]) == 2
    assert view["linking"]["proposed_links"] == 0
    (history,) = view["linking"]["history"]
    assert history["kind"] == "merge"
    assert history["direction"] == "into_this_child"
    assert history["other_child_id"] == str(pair.record_child)
    assert history["merge_id"] == decided["merge_id"]
    assert history["reason"] == "same child, surname mistyped"
    assert history["unmerged_at"] is None
    confirmed = _events(session, AuditAction.IDENTITY_LINK_CONFIRMED)
    assert {e.child_id for e in confirmed} == {pair.record_child, pair.candidate_child}

    again = _problem(caller.post(f"/links/{pair.link_id}/confirm", officer), 409)
    assert "already confirmed" in again["detail"]
    rejected = _problem(caller.post(f"/links/{pair.link_id}/reject", officer), 409)
    assert "already confirmed" in rejected["detail"]
    assert _link_state(session, pair.link_id) is LinkState.CONFIRMED
    assert _merges(session) == 1


def test_rejecting_keeps_the_children_apart_and_empties_the_queue(
    caller: Caller, session: Session, officer: TeamMember, team: Team, viewer: TeamMember
) -> None:
    pair = _pair(caller, encounters=1)
    allocate(session, child_id=pair.candidate_child, team=team)
    allocate(session, child_id=pair.record_child, team=team)

    response = caller.post(f"/links/{pair.link_id}/reject", officer)

    assert response.status_code == 200, response.text
    decided = response.json()
    assert decided["state"] == "rejected"
    assert decided["merge_id"] is None
    assert decided["child_id"] == str(pair.record_child)
    assert _link_state(session, pair.link_id) is LinkState.REJECTED
    assert _merges(session) == 0
    assert _merged_into(session, pair.record_child) is None
    for child_id, family in ((pair.candidate_child, "Testington"), (pair.record_child, "Testingtan")):
        view = caller.view(viewer, child_id)
        assert [i["family_name"] for i in view["identities"]] == [family]
        assert len(view["timeline"]) == 1
        assert view["linking"] == {"merged_into": None, "proposed_links": 0, "history": []}
    assert {e.child_id for e in _events(session, AuditAction.IDENTITY_LINK_REJECTED)} == {
        pair.record_child,
        pair.candidate_child,
    }

    queue = caller.get("/links/review", officer)
    assert queue.status_code == 200
    assert queue.json() == {"links": [], "total": 0}
    again = _problem(caller.post(f"/links/{pair.link_id}/confirm", officer), 409)
    assert "already rejected" in again["detail"]


@pytest.mark.parametrize("decision", ["confirm", "reject"])
def test_an_unknown_link_is_not_found(caller: Caller, officer: TeamMember, decision: str) -> None:
    body = _problem(caller.post(f"/links/{uuid.uuid4()}/{decision}", officer), 404)
    assert "link" in body["detail"]


def test_a_decision_note_with_an_unknown_key_is_refused(caller: Caller, session: Session, officer: TeamMember) -> None:
    pair = _pair(caller)

    body = _problem(caller.post(f"/links/{pair.link_id}/confirm", officer, {"note": "x", "merge": True}), 422)

    assert any("merge" in error["location"] for error in body["errors"])
    assert _link_state(session, pair.link_id) is LinkState.REVIEW


# -- merge and unmerge -----------------------------------------------------------------------------


def test_merge_and_unmerge_move_every_record_there_and_back(
    caller: Caller, session: Session, officer: TeamMember, team: Team, viewer: TeamMember
) -> None:
    merged = _other_child(caller, encounters=1, given="Priya", family="Patel", birth_date=date(2017, 9, 21))
    into = _other_child(caller, encounters=2, given="Jordan", family="Smith", birth_date=date(2012, 1, 5))
    allocate(session, child_id=merged, team=team)
    allocate(session, child_id=into, team=team)
    assert len(caller.view(viewer, into)["timeline"]) == 2

    response = caller.post(
        "/children/merge", officer, {"child_id": str(merged), "into_child_id": str(into), "reason": "one child"}
    )

    assert response.status_code == 201, response.text
    merge = response.json()
    assert merge["merge_id"]
    assert (merge["child_id"], merge["into_child_id"]) == (str(merged), str(into))
    assert merge["source_records"] == 1 and merge["identifiers"] == 1
    assert merge["merged_by"] == officer.subject and merge["unmerged_at"] is None
    assert _merged_into(session, merged) == into
    view = caller.view(viewer, into)
    assert sorted(i["family_name"] for i in view["identities"]) == ["Patel", "Smith"]
    assert len(view["timeline"]) == 3
    assert caller.view(viewer, merged)["linking"]["merged_into"] == str(into)

    undone = caller.post(f"/children/{merged}/unmerge", officer, {"reason": "two children after all"})

    assert undone.status_code == 200, undone.text
    unmerge = undone.json()
    assert unmerge["merge_id"] == merge["merge_id"]
    assert unmerge["unmerged_at"] is not None and unmerge["unmerged_by"] == officer.subject
    assert _merged_into(session, merged) is None
    view = caller.view(viewer, into)
    assert [i["family_name"] for i in view["identities"]] == ["Smith"]
    assert len(view["timeline"]) == 2
    (history,) = view["linking"]["history"]
    assert history["kind"] == "merge" and history["direction"] == "into_this_child"
    assert history["other_child_id"] == str(merged)
    assert history["unmerged_at"] is not None
    assert history["unmerge_reason"] == "two children after all"
    back = caller.view(viewer, merged)
    assert [i["family_name"] for i in back["identities"]] == ["Patel"]
    assert len(back["timeline"]) == 1
    assert back["linking"]["history"][0]["direction"] == "out_of_this_child"
    assert {e.child_id for e in _events(session, AuditAction.IDENTITY_CHILD_MERGED)} == {merged, into}
    assert {e.child_id for e in _events(session, AuditAction.IDENTITY_CHILD_UNMERGED)} == {merged, into}

    # Merging the same pair again after the unmerge is allowed.
    body = {"child_id": str(merged), "into_child_id": str(into), "reason": "one child after all"}
    again = caller.post("/children/merge", officer, body)
    assert again.status_code == 201, again.text
    assert again.json()["merge_id"] != merge["merge_id"]
    assert len(caller.view(viewer, into)["timeline"]) == 3
    assert _merges(session) == 2


def test_merge_and_unmerge_refuse_what_cannot_be_done(caller: Caller, session: Session, officer: TeamMember) -> None:
    merged = _other_child(caller, encounters=0, given="Priya", family="Patel", birth_date=date(2017, 9, 21))
    into = _other_child(caller, encounters=0, given="Jordan", family="Smith", birth_date=date(2012, 1, 5))
    third = _other_child(caller, encounters=0, given="Casey", family="Okafor", birth_date=date(2010, 11, 30))
    done = caller.post(
        "/children/merge", officer, {"child_id": str(merged), "into_child_id": str(into), "reason": "one"}
    )
    assert done.status_code == 201, done.text
    before, merges = stored_counts(session), _merges(session)

    already = _problem(
        caller.post("/children/merge", officer, {"child_id": str(merged), "into_child_id": str(third), "reason": "x"}),
        409,
    )
    assert "already merged" in already["detail"]
    into_merged = _problem(
        caller.post("/children/merge", officer, {"child_id": str(third), "into_child_id": str(merged), "reason": "x"}),
        409,
    )
    assert "already merged" in into_merged["detail"]
    itself = _problem(
        caller.post("/children/merge", officer, {"child_id": str(into), "into_child_id": str(into), "reason": "x"}), 409
    )
    assert "itself" in itself["detail"]
    never = _problem(caller.post(f"/children/{into}/unmerge", officer, {"reason": "x"}), 409)
    assert "not merged" in never["detail"]
    unknown = _problem(
        caller.post(
            "/children/merge", officer, {"child_id": str(uuid.uuid4()), "into_child_id": str(into), "reason": "x"}
        ),
        404,
    )
    assert "child" in unknown["detail"]
    _problem(caller.post(f"/children/{uuid.uuid4()}/unmerge", officer, {"reason": "x"}), 404)

    missing = _problem(
        caller.post("/children/merge", officer, {"child_id": str(third), "into_child_id": str(into)}), 422
    )
    assert [error["location"] for error in missing["errors"]] == ["body.reason"]
    extra = _problem(
        caller.post(
            "/children/merge",
            officer,
            {"child_id": str(third), "into_child_id": str(into), "reason": "x", "force": True},
        ),
        422,
    )
    assert [error["location"] for error in extra["errors"]] == ["body.force"]
    empty = _problem(caller.post(f"/children/{merged}/unmerge", officer, {"reason": ""}), 422)
    assert [error["location"] for error in empty["errors"]] == ["body.reason"]
    no_body = _problem(caller.post(f"/children/{merged}/unmerge", officer), 422)
    assert no_body["errors"]

    assert stored_counts(session) == before
    assert _merges(session) == merges
    assert _merged_into(session, merged) == into and _merged_into(session, third) is None


# -- who may ----------------------------------------------------------------------------------------


def test_another_role_is_refused_everything_audited_and_nothing_changes(
    caller: Caller, session: Session, officer: TeamMember, team: Team, viewer: TeamMember
) -> None:
    pair = _pair(caller, encounters=1)
    # The police officer may view the candidate (its team's case is open) but not link.
    allocate(session, child_id=pair.candidate_child, team=team)
    before, merges = stored_counts(session), _merges(session)
    refused_before = len(_events(session, AuditAction.IDENTITY_LINK_REFUSED))

    responses = [
        caller.get("/links/review", viewer),
        caller.post(f"/links/{pair.link_id}/confirm", viewer),
        caller.post(f"/links/{pair.link_id}/reject", viewer),
        caller.post(
            "/children/merge",
            viewer,
            {"child_id": str(pair.record_child), "into_child_id": str(pair.candidate_child), "reason": "x"},
        ),
        caller.post(f"/children/{pair.record_child}/unmerge", viewer, {"reason": "x"}),
    ]

    for response in responses:
        body = _problem(response, 403)
        assert "recorded" in body["detail"]
    refused = _events(session, AuditAction.IDENTITY_LINK_REFUSED)[refused_before:]
    assert len(refused) == len(responses)
    assert all(e.actor_id == viewer.subject and e.outcome == "denied" for e in refused)
    assert stored_counts(session) == before
    assert _merges(session) == merges
    assert _link_state(session, pair.link_id) is LinkState.REVIEW
    assert _merged_into(session, pair.record_child) is None
    assert _events(session, AuditAction.IDENTITY_REVIEW_LISTED) == []
    # The linking officer still finds the pair waiting.
    assert caller.get("/links/review", officer).json()["total"] == 1


def test_the_lead_practitioner_of_the_candidates_team_sees_and_decides_its_pair(
    caller: Caller, session: Session, team: Team
) -> None:
    pair = _pair(caller)
    allocate(session, child_id=pair.candidate_child, team=team)
    lead = add_member(session, team, agency="social_care", role="lead_practitioner")

    queue = caller.get("/links/review", lead)
    assert queue.status_code == 200, queue.text
    assert queue.json()["total"] == 1
    assert [link["link_id"] for link in queue.json()["links"]] == [str(pair.link_id)]

    response = caller.post(f"/links/{pair.link_id}/confirm", lead)

    assert response.status_code == 200, response.text
    assert response.json()["state"] == "confirmed"
    assert response.json()["decided_by"] == lead.subject
    assert _link_state(session, pair.link_id) is LinkState.CONFIRMED
    assert _merged_into(session, pair.record_child) == pair.candidate_child


def test_a_lead_practitioner_of_another_child_sees_nothing_of_the_pair_and_may_not_decide_or_merge(
    caller: Caller, session: Session
) -> None:
    pair = _pair(caller)
    unrelated = _other_child(caller, encounters=0, given="Casey", family="Okafor", birth_date=date(2010, 11, 30))
    elsewhere = make_team(session, name="Westshire MACPT")
    allocate(session, child_id=unrelated, team=elsewhere)
    lead = add_member(session, elsewhere, agency="social_care", role="lead_practitioner")
    before, merges = stored_counts(session), _merges(session)

    queue = caller.get("/links/review", lead)
    assert queue.status_code == 200, queue.text
    assert queue.json() == {"links": [], "total": 0}
    assert _events(session, AuditAction.IDENTITY_REVIEW_LISTED) == []

    confirm = _problem(caller.post(f"/links/{pair.link_id}/confirm", lead), 403)
    assert "lead" in confirm["detail"]
    merge = _problem(
        caller.post(
            "/children/merge",
            lead,
            {"child_id": str(pair.record_child), "into_child_id": str(unrelated), "reason": "x"},
        ),
        403,
    )
    assert "linking officers" in merge["detail"]

    refused = _events(session, AuditAction.IDENTITY_LINK_REFUSED)
    assert [e.child_id for e in refused] == [pair.candidate_child, pair.record_child]
    assert all(e.actor_id == lead.subject for e in refused)
    assert _link_state(session, pair.link_id) is LinkState.REVIEW
    assert stored_counts(session) == before and _merges(session) == merges


def test_the_lead_practitioner_of_the_child_may_not_merge_it_either(
    caller: Caller, session: Session, team: Team
) -> None:
    pair = _pair(caller)
    allocate(session, child_id=pair.candidate_child, team=team)
    allocate(session, child_id=pair.record_child, team=team)
    lead = add_member(session, team, agency="social_care", role="lead_practitioner")

    body = {"child_id": str(pair.record_child), "into_child_id": str(pair.candidate_child), "reason": "x"}
    _problem(caller.post("/children/merge", lead, body), 403)

    assert _merged_into(session, pair.record_child) is None
    assert len(_events(session, AuditAction.IDENTITY_LINK_REFUSED)) == 1


def test_an_agency_system_is_refused_the_staff_routes(caller: Caller, session: Session) -> None:
    pair = _pair(caller)
    headers = {"Authorization": f"Bearer {client_token(caller.signing_keys, caller.settings, pair.record_source)}"}
    before = stored_counts(session)
    merge_body = {"child_id": str(pair.record_child), "into_child_id": str(pair.candidate_child), "reason": "x"}

    responses = [
        caller.http.get("/api/v1/links/review", headers=headers),
        caller.http.post(f"/api/v1/links/{pair.link_id}/confirm", headers=headers),
        caller.http.post(f"/api/v1/links/{pair.link_id}/reject", headers=headers),
        caller.http.post("/api/v1/children/merge", json=merge_body, headers=headers),
        caller.http.post(f"/api/v1/children/{pair.record_child}/unmerge", json={"reason": "x"}, headers=headers),
    ]

    for response in responses:
        assert "staff" in _problem(response, 403)["detail"]
    assert _link_state(session, pair.link_id) is LinkState.REVIEW
    assert stored_counts(session) == before


def test_the_routes_refuse_a_caller_without_a_token(caller: Caller, session: Session) -> None:
    pair = _pair(caller)

    for response in (
        caller.http.get("/api/v1/links/review"),
        caller.http.post(f"/api/v1/links/{pair.link_id}/confirm"),
        caller.http.post("/api/v1/children/merge", json={}),
    ):
        _problem(response, 401)
    assert _link_state(session, pair.link_id) is LinkState.REVIEW


# -- found wrong ------------------------------------------------------------------------------------


def test_unmerging_a_confirmed_link_rejects_it_so_that_it_is_not_proposed_again(
    caller: Caller, session: Session, officer: TeamMember, team: Team, viewer: TeamMember
) -> None:
    pair = _pair(caller, encounters=1)
    allocate(session, child_id=pair.candidate_child, team=team)
    confirmed = caller.post(f"/links/{pair.link_id}/confirm", officer)
    assert confirmed.status_code == 200, confirmed.text

    undone = caller.post(f"/children/{pair.record_child}/unmerge", officer, {"reason": "twins after all"})

    assert undone.status_code == 200, undone.text
    assert undone.json()["merge_id"] == confirmed.json()["merge_id"]
    assert _link_state(session, pair.link_id) is LinkState.REJECTED
    assert _merged_into(session, pair.record_child) is None
    view = caller.view(viewer, pair.candidate_child)
    assert [i["family_name"] for i in view["identities"]] == ["Testington"]
    assert len(view["timeline"]) == 1
    (history,) = view["linking"]["history"]
    assert history["unmerged_at"] is not None and history["unmerge_reason"] == "twins after all"
    assert caller.get("/links/review", officer).json() == {"links": [], "total": 0}


def test_unmerging_a_merge_by_hand_does_not_leave_the_pairs_proposal_confirmed(
    caller: Caller, session: Session, officer: TeamMember
) -> None:
    pair = _pair(caller)
    body = {"child_id": str(pair.record_child), "into_child_id": str(pair.candidate_child), "reason": "one child"}
    assert caller.post("/children/merge", officer, body).status_code == 201
    assert _link_state(session, pair.link_id) is LinkState.CONFIRMED  # the merge settled the proposal

    undone = caller.post(f"/children/{pair.record_child}/unmerge", officer, {"reason": "two children"})

    assert undone.status_code == 200, undone.text
    assert _merged_into(session, pair.record_child) is None
    assert _link_state(session, pair.link_id) in (LinkState.REJECTED, LinkState.REVIEW)


def test_a_rejections_note_is_kept_on_the_link_and_the_audit_says_there_is_one(
    caller: Caller, session: Session, officer: TeamMember
) -> None:
    pair = _pair(caller)
    note = "different children: the school confirms two pupils"

    response = caller.post(f"/links/{pair.link_id}/reject", officer, {"note": note})

    assert response.status_code == 200, response.text
    link = session.get(Link, pair.link_id, populate_existing=True)
    assert link is not None and link.note == note
    rejected = _events(session, AuditAction.IDENTITY_LINK_REJECTED)
    assert len(rejected) == 2
    # The words may name people: the trail records that a note was given, never what it says.
    assert all(event.detail["note"] is True and note not in json.dumps(event.detail) for event in rejected)


def test_a_caller_without_standing_is_refused_whatever_the_link_id(
    caller: Caller, session: Session, viewer: TeamMember
) -> None:
    response = caller.post(f"/links/{uuid.uuid4()}/confirm", viewer)

    _problem(response, 403)
    assert [e.actor_id for e in _events(session, AuditAction.IDENTITY_LINK_REFUSED)] == [viewer.subject]

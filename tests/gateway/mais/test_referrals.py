"""The lead practitioner's queue of referred $person-info-query queries: listed to, and decided once by,
the lead practitioner of the case; nobody else learns that a referral exists; always audited."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from audit import AuditAction, AuditEvent
from gateway.auth.keys import SigningKeys
from gateway.demo.loader import DEMO_CLIENTS, GP, POLICE, SCHOOLS, TRUST
from gateway.keys import KeyFolder
from gateway.kit.crypto import DataKeyring
from gateway.kit.db import build_engine, build_sessionmaker
from gateway.mais.service import PERSON_INFO_QUERY
from gateway.models import Case, PersonQueryReferral, ReferralStatus, Team, TeamMember
from gateway.settings import Settings
from policies import CaseStatus
from tests.factories import add_member, allocate, child_bundle, client_token, demo_child, make_client, make_team, staff_token
from tests.gateway.ig.helpers import ig_token
from tests.gateway.mais.test_endpoints import S17, World, maisie, named, parameters, patient
from tests.gateway.helpers import FHIR_JSON
from tests.gateway.test_under_load import allocate_children, audit_problems, set_up
from tests.serving import log_tail, scratch_database, serve_gateway

QUEUE = "/api/v1/person-queries"
NOTE = "Spoke to DS Okafor at Northshire Police: Maisie's mother agreed we share the team's number."
STAFF_ACTIONS = (
    AuditAction.STAFF_PERSON_QUERIES_LISTED,
    AuditAction.STAFF_PERSON_QUERY_DECIDED,
    AuditAction.STAFF_PERSON_QUERY_REFUSED,
)
REQUEST_TIMEOUT = 30.0


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class Desk(World):
    """The query world, with a way to refer a child's query and to act as any staff member."""

    def refer(self, child: Any = None, **allocated: Any) -> tuple[uuid.UUID, str]:
        """Push and allocate a child, have the police system query about it under s17; return (child, reference)."""
        child = child or maisie()
        child_id = self.child(child, **allocated)
        answer = self.answer(parameters(patient(child), S17))
        [reference] = named(answer, "reference")
        return child_id, reference["valueIdentifier"]["value"]

    def token(self, member: TeamMember) -> str:
        return staff_token(self.signing_keys, self.settings, member)

    def listing(self, token: str, **params: Any) -> Response:
        response: Response = self.http.get(QUEUE, params=params, headers=bearer(token))
        return response

    def listed(self, member: TeamMember, **params: Any) -> list[dict[str, Any]]:
        response = self.listing(self.token(member), **params)
        assert response.status_code == 200, response.text
        referrals: list[dict[str, Any]] = response.json()["referrals"]
        return referrals

    def decide(self, token: str, referral_id: object, decision: str = "share_contact", note: str | None = None) -> Response:
        body: dict[str, Any] = {"decision": decision}
        if note is not None:
            body["note"] = note
        response: Response = self.http.post(f"{QUEUE}/{referral_id}/decision", json=body, headers=bearer(token))
        return response

    def referrals(self) -> list[PersonQueryReferral]:
        return list(self.session.scalars(select(PersonQueryReferral).order_by(PersonQueryReferral.created_at)))


@pytest.fixture
def desk(
    client: TestClient, app: FastAPI, session: Session, settings: Settings, signing_keys: SigningKeys, keyring: DataKeyring
) -> Desk:
    pusher, _ = make_client(session)
    querier, _ = make_client(session, agency="police", kinds=(PERSON_INFO_QUERY,))
    querier.name = "Northshire Police RMS"
    team = make_team(session, name="Northshire MACPT")
    lead = add_member(session, team, agency="social_care", role="lead_practitioner")
    session.flush()
    return Desk(client, app, session, settings, signing_keys, keyring, pusher, querier, team, lead)


def staff_events(session: Session) -> list[AuditEvent]:
    return list(session.scalars(select(AuditEvent).where(AuditEvent.action.in_(STAFF_ACTIONS)).order_by(AuditEvent.seq)))


# --- who sees the queue ------------------------------------------------------------------------


def test_the_lead_practitioner_lists_their_cases_referrals_newest_first_with_who_asked_and_why(desk: Desk) -> None:
    first_child = maisie()
    second_child = maisie(given_names=["Tobias"], family_name="Quartermaine")
    first_id, first_reference = desk.refer(first_child, patient_id="a")
    second_id, second_reference = desk.refer(second_child, patient_id="b")

    response = desk.listing(desk.token(desk.lead))

    assert response.status_code == 200, response.text
    listed = response.json()["referrals"]
    assert [(r["child_id"], r["reference"]) for r in listed] == [
        (str(second_id), second_reference),
        (str(first_id), first_reference),
    ]
    entry = listed[1]
    assert (entry["client_id"], entry["client_name"], entry["agency"]) == (desk.querier.id, "Northshire Police RMS", "police")
    assert entry["reason"] == S17 and entry["reason_label"].startswith("Children Act 1989, section 17")
    assert (entry["team_id"], entry["team_name"], entry["status"], entry["decision"]) == (
        str(desk.team.id), "Northshire MACPT", "pending", None
    )
    assert entry["asked_at"] and entry["case_id"]
    # Nothing of what the agency searched with.
    for child in (first_child, second_child):
        for term in (child.nhs_number, child.family_name, child.given_names[0], child.birth_date.isoformat()):
            assert term not in response.text
    [event] = staff_events(desk.session)
    assert (event.action, event.actor_id, event.child_id) == (AuditAction.STAFF_PERSON_QUERIES_LISTED, desk.lead.subject, None)
    assert event.detail["referrals"] == [r["id"] for r in listed]
    assert event.detail["children"] == sorted([str(first_id), str(second_id)])
    assert (event.detail["count"], event.detail["status"]) == (2, None)


def test_the_lead_the_case_names_lists_that_cases_referral_only(desk: Desk) -> None:
    other_team = make_team(desk.session, name="Southshire MACPT")
    named_lead = add_member(desk.session, other_team, agency="health", role="designated_nurse")
    child = maisie()
    child_id = desk.child(child)
    allocate(desk.session, child_id=child_id, team=other_team).lead_practitioner = named_lead.subject
    desk.session.flush()
    desk.answer(parameters(patient(child), S17))
    # A second child open only to the first team: not the named lead's.
    desk.refer(maisie(given_names=["Tobias"]), patient_id="b")

    mine = desk.listed(named_lead)

    assert [(r["team_id"], r["child_id"]) for r in mine] == [(str(other_team.id), str(child_id))]
    assert len(desk.listed(desk.lead)) == 2  # the first team's lead: both children's referrals


@pytest.mark.parametrize("caller", ["other_teams_lead", "same_team_non_lead", "deactivated_lead", "ig_officer"])
def test_anyone_else_sees_no_referral(desk: Desk, caller: str) -> None:
    desk.refer()
    other_team = make_team(desk.session, name="Westshire MACPT")
    if caller == "ig_officer":
        token = ig_token(desk.signing_keys, desk.settings)
    elif caller == "other_teams_lead":
        token = desk.token(add_member(desk.session, other_team, agency="social_care", role="lead_practitioner"))
    elif caller == "same_team_non_lead":
        token = desk.token(add_member(desk.session, desk.team, agency="police", role="police_officer"))
    else:
        desk.lead.active = False
        desk.session.flush()
        token = desk.token(desk.lead)

    response = desk.listing(token)

    assert response.status_code == 200, response.text
    assert response.json() == {"referrals": []}
    event = staff_events(desk.session)[-1]
    assert (event.action, event.detail["referrals"], event.detail["count"]) == (AuditAction.STAFF_PERSON_QUERIES_LISTED, [], 0)


def test_a_referral_leaves_the_queue_when_its_case_closes(desk: Desk) -> None:
    child_id, _ = desk.refer()
    [referral] = desk.referrals()
    case = desk.session.get_one(Case, referral.case_id)
    case.status = CaseStatus.CLOSED
    desk.session.flush()

    assert desk.listed(desk.lead) == []
    assert desk.decide(desk.token(desk.lead), referral.id).status_code == 404
    assert child_id == referral.child_id


# --- deciding ----------------------------------------------------------------------------------


def test_the_lead_decides_once_and_a_second_decision_is_a_conflict(desk: Desk) -> None:
    desk.refer()
    [referral] = desk.referrals()
    token = desk.token(desk.lead)

    decided = desk.decide(token, referral.id, "share_contact", NOTE)
    again = desk.decide(token, referral.id, "decline")

    assert decided.status_code == 200, decided.text
    body = decided.json()
    assert (body["id"], body["status"]) == (str(referral.id), "contact_shared")
    assert body["decision"]["decision"] == "share_contact" and body["decision"]["note"] == NOTE
    assert body["decision"]["decided_by"] == desk.lead.subject
    assert again.status_code == 409 and "decided once" in again.json()["detail"]
    desk.session.refresh(referral)
    assert (referral.status, referral.decided_by) == (ReferralStatus.CONTACT_SHARED, desk.lead.subject)
    # The note is sealed under the child's data key: never in clear in the row.
    assert referral.sealed_note is not None and NOTE.encode() not in referral.sealed_note
    assert [r["id"] for r in desk.listed(desk.lead, status="pending")] == []
    [shown] = desk.listed(desk.lead, status="decided")
    assert shown["decision"]["note"] == NOTE and shown["status"] == "contact_shared"
    decided_events = [e for e in staff_events(desk.session) if e.action == AuditAction.STAFF_PERSON_QUERY_DECIDED]
    assert len(decided_events) == 1
    event = decided_events[0]
    assert (event.child_id, event.actor_id) == (referral.child_id, desk.lead.subject)
    assert event.detail["referral_id"] == str(referral.id) and event.detail["query"] == str(referral.query_id)
    assert (event.detail["decision"], event.detail["note"], event.detail["reason"]) == ("share_contact", True, S17)


def test_a_decline_without_a_note_is_kept_and_listed_as_declined(desk: Desk) -> None:
    desk.refer()
    [referral] = desk.referrals()

    response = desk.decide(desk.token(desk.lead), referral.id, "decline")

    assert response.status_code == 200, response.text
    assert response.json()["status"] == "declined" and response.json()["decision"]["note"] is None
    [shown] = desk.listed(desk.lead, status="decided")
    assert shown["decision"]["decision"] == "decline"


@pytest.mark.parametrize("caller", ["other_teams_lead", "same_team_non_lead", "ig_officer"])
def test_a_stranger_gets_404_the_same_whether_or_not_the_referral_exists(desk: Desk, caller: str) -> None:
    desk.refer()
    [referral] = desk.referrals()
    if caller == "ig_officer":
        token = ig_token(desk.signing_keys, desk.settings)
    elif caller == "other_teams_lead":
        token = desk.token(add_member(desk.session, make_team(desk.session, name="W"), agency="social_care", role="lead_practitioner"))
    else:
        token = desk.token(add_member(desk.session, desk.team, agency="police", role="police_officer"))

    existing = desk.decide(token, referral.id)
    missing = desk.decide(token, uuid.uuid4())

    assert existing.status_code == missing.status_code == 404
    assert existing.json()["detail"] == missing.json()["detail"]
    desk.session.refresh(referral)
    assert referral.status is ReferralStatus.PENDING and referral.decided_by is None
    refused = [e for e in staff_events(desk.session) if e.action == AuditAction.STAFF_PERSON_QUERY_REFUSED]
    assert [(e.outcome, e.detail["reason"], e.child_id) for e in refused] == [("denied", "not_a_lead", None)] * 2


def test_a_note_over_1000_characters_or_an_unknown_decision_is_422(desk: Desk) -> None:
    desk.refer()
    [referral] = desk.referrals()
    token = desk.token(desk.lead)

    long_note = desk.decide(token, referral.id, note="x" * 1001)
    unknown = desk.decide(token, referral.id, decision="approve")

    assert (long_note.status_code, unknown.status_code) == (422, 422)
    desk.session.refresh(referral)
    assert referral.status is ReferralStatus.PENDING


def test_the_queues_audit_events_hold_no_personal_data(desk: Desk) -> None:
    child = maisie(given_names=["Zanele"], family_name="Okonkwo-Reid")
    desk.refer(child)
    [referral] = desk.referrals()
    desk.listed(desk.lead)
    assert desk.decide(desk.token(desk.lead), referral.id, "share_contact", NOTE).status_code == 200
    desk.decide(desk.token(add_member(desk.session, desk.team, agency="police", role="police_officer")), referral.id)

    events = staff_events(desk.session)

    assert [e.action for e in events] == list(STAFF_ACTIONS[:3])
    for event in events:
        stored = json.dumps(event.detail).casefold()
        for personal in (child.nhs_number, "zanele", "okonkwo", child.birth_date.isoformat(), "okafor", "mother"):
            assert personal not in stored, (event.action, personal)


def test_the_demos_health_trust_and_police_may_query_and_the_others_may_not() -> None:
    kinds = {client_id: set(allowed) for client_id, _name, _agency, allowed in DEMO_CLIENTS}

    assert PERSON_INFO_QUERY in kinds[TRUST] and PERSON_INFO_QUERY in kinds[POLICE]
    assert PERSON_INFO_QUERY not in kinds[GP] | kinds[SCHOOLS]


# --- two lead practitioners race (a real server, PostgreSQL) -------------------------------------


def test_two_lead_practitioners_race_to_decide_one_referral(database_url: str, tmp_path: Path) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("PostgreSQL race test; the suite runs on SQLite (GATEWAY_TEST_DATABASE_URL is not PostgreSQL)")
    log_path = tmp_path / "gateway-serve.log"
    child = demo_child()
    with scratch_database(database_url, tmp_path, prefix="gw_mais_race") as url:
        partnership = set_up(url, tmp_path, clients=1)
        settings = Settings()
        keys = KeyFolder(partnership.keys_dir).signing_keys()
        engine = build_engine(url)
        try:
            with build_sessionmaker(engine)() as session:
                team = session.get(Team, partnership.team_id)
                assert team is not None
                leads = [
                    staff_token(keys, settings, add_member(session, team, agency="social_care", role="lead_practitioner"))
                    for _ in range(2)
                ]
                querier = client_token(keys, settings, make_client(session, agency="police", kinds=(PERSON_INFO_QUERY,))[0])
                session.commit()
        finally:
            engine.dispose()
        with serve_gateway(partnership.env, log_path=log_path, workers=2) as base_url:
            with httpx.Client(base_url=base_url, timeout=REQUEST_TIMEOUT) as http:
                pushed = http.post("/fhir/R4", content=json.dumps(child_bundle(child)),
                                   headers={**FHIR_JSON, **bearer(partnership.client_tokens[0])})
                assert pushed.status_code == 200, pushed.text
            allocate_children(partnership, [child.nhs_number])
            with httpx.Client(base_url=base_url, timeout=REQUEST_TIMEOUT) as http:
                query = parameters(patient(child), S17)
                asked = http.post("/fhir/R4/Patient/$person-info-query", content=json.dumps(query),
                                  headers={**FHIR_JSON, **bearer(querier)})
                assert asked.status_code == 200, asked.text
                listed = http.get(QUEUE, params={"status": "pending"}, headers=bearer(leads[0]))
                assert listed.status_code == 200, listed.text
                [referral] = listed.json()["referrals"]

            statuses: list[int] = []
            lock = threading.Lock()
            start = threading.Barrier(len(leads))

            def decide(token: str, decision: str) -> Callable[[], None]:
                def run() -> None:
                    start.wait(timeout=REQUEST_TIMEOUT)
                    with httpx.Client(base_url=base_url, timeout=REQUEST_TIMEOUT) as http:
                        response = http.post(f"{QUEUE}/{referral['id']}/decision", headers=bearer(token),
                                             json={"decision": decision, "note": NOTE})
                    with lock:
                        statuses.append(response.status_code)
                return run

            threads = [
                threading.Thread(target=decide(leads[0], "share_contact"), daemon=True),
                threading.Thread(target=decide(leads[1], "decline"), daemon=True),
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=4 * REQUEST_TIMEOUT)
            assert not any(thread.is_alive() for thread in threads), f"a lead is still waiting\n{log_tail(log_path)}"
        # The server has stopped: every event its requests staged has been integrated.
        problems = audit_problems(partnership.env)
        engine = build_engine(url)
        try:
            with build_sessionmaker(engine)() as session:
                stored = session.scalars(select(PersonQueryReferral)).all()
                decided = session.scalar(
                    select(func.count()).select_from(AuditEvent).where(
                        AuditEvent.action == AuditAction.STAFF_PERSON_QUERY_DECIDED
                    )
                )
        finally:
            engine.dispose()
    tail = log_tail(log_path)
    assert sorted(statuses) == [200, 409], f"{statuses}\n{tail}"
    [row] = stored
    assert row.status in (ReferralStatus.CONTACT_SHARED, ReferralStatus.DECLINED) and row.decided_by is not None
    assert decided == 1, tail
    assert problems == [], problems

"""The consent registry over HTTP: record, read the history and what is in force, refuse bad input and strangers."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography.exceptions import InvalidTag
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from audit import AuditAction, AuditEvent
from gateway.auth.keys import SigningKeys
from gateway.kit.crypto import DataKeyring, unseal_value
from gateway.models import Case, Child, Consent, TeamMember
from gateway.settings import Settings
from policies import CaseStatus
from tests.factories import add_member, child_bundle, client_token, demo_child, encounter, make_team, staff_token
from tests.gateway.helpers import audit_actions, get_view, last_event

from .helpers import PROBLEM_JSON, Allocated, allocated_child, consent_rows, stored_consents

NOTE = "Mum is happy for health to share; she does not want the school told about the move."


@pytest.fixture
def child(
    client: TestClient, session: Session, settings: Settings, signing_keys: SigningKeys, keyring: DataKeyring
) -> Allocated:
    return allocated_child(client, session, settings, signing_keys, keyring)


def _mothers_consent(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "status": "given",
        "purpose": "family_help",
        "given_by": "parental_responsibility",
        "giver_relationship": "mother",
        "agencies": ["health"],
        "categories": [],
        "note": NOTE,
    }
    body.update(overrides)
    return body


def _created(response: Response) -> dict[str, Any]:
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def _registry(response: Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _problem(response: Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    return body


# -- recording and reading ----------------------------------------------------------------------


def test_a_member_records_a_consent_and_reads_it_back(child: Allocated, session: Session) -> None:
    before = datetime.now(UTC)

    created = _created(child.record(_mothers_consent(period_end="2027-06-01T00:00:00Z")))

    assert created["status"] == "given" and created["purpose"] == "family_help"
    assert created["given_by"] == "parental_responsibility" and created["giver_relationship"] == "mother"
    assert created["agencies"] == ["health"] and created["categories"] == []
    assert created["note"] == NOTE and created["recorded_by"] == child.member.subject
    assert created["source"] is None
    # period_start defaults to now, when it was recorded.
    assert created["period_start"] == created["recorded_at"]
    assert before <= datetime.fromisoformat(created["recorded_at"]) <= datetime.now(UTC)
    assert datetime.fromisoformat(created["period_end"]) == datetime(2027, 6, 1, tzinfo=UTC)

    registry = _registry(child.registry())
    assert registry["child_id"] == str(child.child_id)
    assert registry["history"] == [created] and registry["current"] == [created]
    (row,) = stored_consents(session, child.child_id)
    assert str(row.id) == created["id"] and row.client_id is None and row.source_record_id is None


def test_recording_and_listing_are_audited_without_the_note_or_relationship(child: Allocated, session: Session) -> None:
    created = _created(child.record(_mothers_consent()))
    _registry(child.registry())

    recorded = last_event(session, AuditAction.STAFF_CONSENT_RECORDED)
    assert recorded.child_id == child.child_id and recorded.purpose == "family_help"
    assert recorded.actor_id == child.member.subject and recorded.outcome == "success"
    assert recorded.detail == {"consent_id": created["id"], "status": "given", "given_by": "parental_responsibility"}
    listed = last_event(session, AuditAction.STAFF_CONSENTS_LISTED)
    assert listed.child_id == child.child_id and listed.detail == {"format": "json", "returned": 1, "current": 1}
    events = session.scalars(select(AuditEvent).where(AuditEvent.child_id == child.child_id)).all()
    trail = json.dumps([event.detail for event in events])
    assert "happy" not in trail and "mother" not in trail


def test_the_note_is_sealed_under_the_childs_key_and_bound_to_its_row(
    child: Allocated, session: Session, keyring: DataKeyring
) -> None:
    first = _created(child.record(_mothers_consent()))
    second = _created(child.record(_mothers_consent(note="Another note")))

    rows = {str(row.id): row for row in stored_consents(session, child.child_id)}
    sealed = rows[first["id"]].sealed_note
    assert sealed is not None and b"happy" not in sealed and NOTE.encode() not in sealed
    wrapped = session.scalar(select(Child.wrapped_data_key).where(Child.id == child.child_id))
    key = keyring.unwrap(wrapped)
    assert unseal_value(key, sealed, str, context=Consent.context_for(uuid.UUID(first["id"]), "note")) == NOTE
    with pytest.raises(InvalidTag):  # moved to another row, it does not open
        unseal_value(key, sealed, str, context=Consent.context_for(uuid.UUID(second["id"]), "note"))


def test_a_withdrawal_is_a_new_decision_in_force_after_it(child: Allocated, session: Session) -> None:
    given = _created(child.record(_mothers_consent()))

    withdrawn = _created(child.record(_mothers_consent(status="withdrawn", note=None)))

    registry = _registry(child.registry())
    assert [r["id"] for r in registry["history"]] == [withdrawn["id"], given["id"]]  # newest first
    assert [r["id"] for r in registry["current"]] == [withdrawn["id"]]
    first, second = stored_consents(session, child.child_id)
    assert (first.status.value, second.status.value) == ("given", "withdrawn")  # the first row is untouched


def test_current_holds_the_newest_decision_of_each_scope_in_its_period(child: Allocated) -> None:
    now = datetime.now(UTC)
    all_agencies = _created(child.record(_mothers_consent(agencies=[])))
    police = _created(child.record(_mothers_consent(status="refused", agencies=["police"])))
    for_protection = _created(
        child.record({"status": "given", "purpose": "child_protection", "given_by": "child", "giver_relationship": "self"})
    )
    ended = _created(
        child.record(
            _mothers_consent(
                status="refused",
                agencies=[],
                period_start=(now - timedelta(days=30)).isoformat(),
                period_end=(now - timedelta(days=1)).isoformat(),
            )
        )
    )
    not_yet = _created(child.record(_mothers_consent(status="refused", period_start=(now + timedelta(days=7)).isoformat())))
    categories = _created(child.record(_mothers_consent(categories=["health.encounter"], note=None)))

    registry = _registry(child.registry())

    assert [r["id"] for r in registry["history"]] == [
        categories["id"], not_yet["id"], ended["id"], for_protection["id"], police["id"], all_agencies["id"],
    ]
    # The ended and the future refusals do not hide the decisions that cover now.
    assert [r["id"] for r in registry["current"]] == [
        categories["id"], for_protection["id"], police["id"], all_agencies["id"],
    ]
    only = _registry(child.registry(purpose="child_protection"))
    assert [r["id"] for r in only["history"]] == [for_protection["id"]] == [r["id"] for r in only["current"]]


def test_a_child_deciding_for_themselves_is_self(child: Allocated) -> None:
    created = _created(
        child.record({"status": "refused", "purpose": "family_help", "given_by": "child", "giver_relationship": "self"})
    )

    assert (created["given_by"], created["giver_relationship"], created["note"]) == ("child", "self", None)
    assert created["agencies"] == [] and created["categories"] == []


# -- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"given_by": None}, "given_by", "Field required"),
        ({"status": None}, "status", "Field required"),
        ({"purpose": "gossip"}, "purpose", "family_help"),
        ({"agencies": ["health", "polise"]}, "agencies", "unknown agency 'polise'"),
        ({"agencies": ["Jo Bloggs"]}, "agencies", "unknown agency (not shown)"),
        ({"categories": ["health.gossip"]}, "categories", "unknown category 'health.gossip'"),
        (
            {"period_start": "2027-01-01T00:00:00Z", "period_end": "2026-12-31T00:00:00Z"},
            "period_end",
            "must be after period_start",
        ),
        ({"period_start": "2027-01-01T00:00:00"}, "period_start", "timezone"),
        ({"given_by": "child"}, "giver_relationship", "must be 'self'"),
        ({"giver_relationship": "self"}, "giver_relationship", "relationship to the child"),
        ({"giver_relationship": ""}, "giver_relationship", "at least 1 character"),
        ({"giver_relationship": "x" * 101}, "giver_relationship", "at most 100"),
        ({"giver_relationship": "mo\x00ther"}, "giver_relationship", "pattern"),
        ({"decided_by": "Jo Bloggs"}, "decided_by", "Extra inputs"),
    ],
)
def test_bad_input_is_422_naming_the_field_and_stores_nothing(
    child: Allocated, session: Session, change: dict[str, Any], field: str, words: str
) -> None:
    body = {k: v for k, v in {**_mothers_consent(), **change}.items() if v is not None}
    before = consent_rows(session)

    problem = _problem(child.record(body), 422)

    assert field in problem["detail"] and words in problem["detail"]
    assert f"body.{field}" in [error["location"] for error in problem["errors"]]
    assert "Jo Bloggs" not in json.dumps(problem) and NOTE not in json.dumps(problem)
    assert consent_rows(session) == before
    assert AuditAction.STAFF_CONSENT_RECORDED not in audit_actions(session)


def test_an_end_before_the_default_start_is_422(child: Allocated, session: Session) -> None:
    yesterday = (datetime.now(UTC) - timedelta(days=1)).isoformat()

    problem = _problem(child.record(_mothers_consent(period_end=yesterday)), 422)

    assert "period_end" in problem["detail"] and problem["errors"][0]["location"] == "body.period_end"
    assert consent_rows(session) == 0


def test_a_bad_format_or_purpose_to_list_is_422(child: Allocated, session: Session) -> None:
    bad_format = _problem(child.registry(format="xml"), 422)
    bad_purpose = _problem(child.registry(purpose="gossip"), 422)

    assert "query.format" in bad_format["detail"] and "query.purpose" in bad_purpose["detail"]
    assert AuditAction.STAFF_CONSENTS_LISTED not in audit_actions(session)


# -- who may ------------------------------------------------------------------------------------


def _another_team(child: Allocated, session: Session) -> TeamMember:
    return add_member(session, make_team(session, name="Elsewhere MACPT"), agency="health", role="health_practitioner")


def _deactivated(child: Allocated, session: Session) -> TeamMember:
    member = add_member(session, child.team, agency="police", role="police_officer")
    member.active = False
    session.flush()
    return member


def _case_closed(child: Allocated, session: Session) -> TeamMember:
    case = session.scalars(select(Case).where(Case.team_id == child.team.id)).one()
    case.status = CaseStatus.CLOSED
    session.flush()
    return child.member


def _wrong_agency_token(child: Allocated, session: Session) -> TeamMember:
    # The membership is for health; a token that says police does not use it.
    return TeamMember(
        team_id=child.team.id, subject=child.member.subject, display_name="x", agency="police", role="health_practitioner"
    )


STRANGERS = {
    "member of another team": _another_team,
    "deactivated member": _deactivated,
    "member of a closed case": _case_closed,
    "token of another agency": _wrong_agency_token,
}


@pytest.mark.parametrize("stranger", sorted(STRANGERS))
def test_a_caller_without_allocation_is_refused_audited_and_nothing_is_stored(
    child: Allocated, session: Session, stranger: str
) -> None:
    caller = STRANGERS[stranger](child, session)

    recorded = _problem(child.record(_mothers_consent(), member=caller), 403)
    listed = _problem(child.registry(member=caller), 403)
    exported = _problem(child.registry(member=caller, format="fhir"), 403)

    assert "allocated" in recorded["detail"] and listed["detail"] == recorded["detail"] == exported["detail"]
    assert consent_rows(session) == 0
    refusals = session.scalars(
        select(AuditEvent).where(AuditEvent.action == AuditAction.STAFF_VIEW_REFUSED).order_by(AuditEvent.seq)
    ).all()
    assert [(e.child_id, e.purpose, e.actor_id, e.outcome) for e in refusals] == [
        (child.child_id, "family_help", caller.subject, "denied"),
        (child.child_id, "all", caller.subject, "denied"),
        (child.child_id, "all", caller.subject, "denied"),
    ]
    actions = audit_actions(session)
    assert AuditAction.STAFF_CONSENT_RECORDED not in actions and AuditAction.STAFF_CONSENTS_LISTED not in actions


def test_an_unknown_child_gets_the_same_403(child: Allocated, session: Session) -> None:
    unknown = uuid.uuid4()

    problem = _problem(child.record(_mothers_consent(), child_id=unknown), 403)

    assert "allocated" in problem["detail"]
    assert last_event(session, AuditAction.STAFF_VIEW_REFUSED).child_id == unknown


def test_an_agency_system_cannot_use_the_staff_routes(child: Allocated, session: Session) -> None:
    token = client_token(child.signing_keys, child.settings, child.source)

    response = child.http.post(
        f"/api/v1/children/{child.child_id}/consents", json=_mothers_consent(), headers={"Authorization": f"Bearer {token}"}
    )

    assert response.status_code == 403 and consent_rows(session) == 0


def test_an_erased_child_is_410_audited_and_nothing_is_stored(child: Allocated, session: Session) -> None:
    _created(child.record(_mothers_consent()))
    erased = session.get(Child, child.child_id)
    assert erased is not None
    erased.wrapped_data_key = None
    session.flush()

    recorded = _problem(child.record(_mothers_consent()), 410)
    _problem(child.registry(), 410)

    assert "erased" in recorded["detail"]
    assert consent_rows(session) == 1
    refused = session.scalars(
        select(AuditEvent).where(AuditEvent.outcome == "denied", AuditEvent.child_id == child.child_id).order_by(AuditEvent.seq)
    ).all()
    # Refusals go on the IG review queue (the review rules add the flag).
    assert [(e.action, e.detail["reason"], e.detail["review"]) for e in refused] == [
        (AuditAction.STAFF_CONSENT_RECORDED, "erased", ["refused"]),
        (AuditAction.STAFF_CONSENTS_LISTED, "erased", ["refused"]),
    ]


# -- what the view makes of it --------------------------------------------------------------------


def test_the_view_for_family_help_follows_the_recorded_decisions(child: Allocated) -> None:
    pushed = child.push(child_bundle(demo_child(child.nhs_number), encounters=[encounter()]))
    assert pushed.status_code == 200, pushed.text
    token = staff_token(child.signing_keys, child.settings, child.member)

    def shown() -> list[str]:
        view = get_view(child.http, token, child.child_id, purpose="family_help")
        assert view.status_code == 200, view.text
        return [entry["category"] for entry in view.json()["timeline"]]

    assert shown() == []  # family help relies on consent: none yet
    _created(child.record(_mothers_consent(agencies=["health"], note=None)))
    assert shown() == ["health.urgent_care"]
    _created(child.record(_mothers_consent(status="withdrawn", agencies=["health"], note=None)))
    assert shown() == []

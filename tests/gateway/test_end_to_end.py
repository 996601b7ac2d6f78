"""The whole thin path: push → link → decide → view → audit, over HTTP, on this run's database."""

from __future__ import annotations

import json
import uuid

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from audit import AuditAction, decode_items, verify
from gateway.auth.keys import SigningKeys
from gateway.kit.crypto import DataKeyring
from gateway.models import Item
from gateway.settings import Settings
from policies import RecordStatus
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
from tests.gateway.helpers import FHIR_JSON, audit_actions, child_id_for, last_event, push, stored_counts


def test_push_link_decide_view_audit(
    client: TestClient, session: Session, settings: Settings, signing_keys: SigningKeys, keyring: DataKeyring
) -> None:
    source, _key = make_client(session)
    child = demo_child()
    bundle = child_bundle(child, encounters=[encounter(), encounter(class_code="AMB", sensitive=True)])

    pushed = push(client, client_token(signing_keys, settings, source), bundle)

    assert pushed.status_code == 200, pushed.text
    response_bundle = pushed.json()
    assert response_bundle["type"] == "transaction-response"
    assert [e["response"]["status"] for e in response_bundle["entry"]] == ["201 Created"] * 3

    child_id = child_id_for(session, keyring, child.nhs_number)
    team = make_team(session)
    police = add_member(session, team, agency="police", role="police_officer")
    allocate(session, child_id=child_id, team=team)

    viewed = client.get(
        f"/api/v1/children/{child_id}/view",
        params={"purpose": "child_protection"},
        headers={"Authorization": f"Bearer {staff_token(signing_keys, settings, police)}"},
    )

    assert viewed.status_code == 200, viewed.text
    view = viewed.json()
    assert view["child_id"] == str(child_id)
    assert [i["nhs_number"] for i in view["identities"]] == [child.nhs_number]
    assert view["identities"][0]["source"]["client_id"] == source.id
    assert view["key_facts"]["allocated_team"]["name"] == team.name
    # The emergency attendance is disclosed, with its source and the rule that decided it.
    assert len(view["timeline"]) == 1
    entry = view["timeline"][0]
    assert entry["source"]["agency"] == "health"
    assert entry["decision"]["kind"] == "disclose"
    assert entry["decision"]["lawful_basis"]
    assert "Emergency" in entry["summary"] or "emergency" in entry["summary"]
    # The mental-health attendance is withheld, and the viewer is told whom to ask.
    assert len(view["withheld"]) == 1
    assert view["withheld"][0]["count"] == 1
    assert view["withheld"][0]["agency"] == "health"
    assert view["withheld"][0]["ask"]

    actions = audit_actions(session)
    assert actions.count(AuditAction.CLIENT_RECORDS_PUSHED) == 1
    assert actions.count(AuditAction.IDENTITY_LINK_CREATED) == 1
    opened = last_event(session, AuditAction.STAFF_VIEW_OPENED)
    assert opened.child_id == child_id
    assert opened.actor_id == police.subject
    assert opened.purpose == "child_protection"
    item_ids = {str(i) for i in session.scalars(select(Item.id).where(Item.child_id == child_id))}
    decisions = decode_items(opened.items)
    assert {str(ref.item) for ref in decisions} == item_ids and len(decisions) == len(item_ids)
    assert {ref.decision for ref in decisions} == {"disclose", "indicate"}
    assert verify(session).ok


def test_same_nhs_number_from_two_sources_links_to_one_child(
    client: TestClient, session: Session, settings: Settings, signing_keys: SigningKeys, keyring: DataKeyring
) -> None:
    trust, _ = make_client(session)
    gp, _ = make_client(session)
    child = demo_child()
    for source, patient_id, postcode in ((trust, "t1", "ZZ99 3VZ"), (gp, "g1", "ZZ99 4QQ")):
        other = demo_child(child.nhs_number, postcode=postcode)
        response = push(client, client_token(signing_keys, settings, source), child_bundle(other, patient_id=patient_id))
        assert response.status_code == 200, response.text

    child_id = child_id_for(session, keyring, child.nhs_number)
    assert stored_counts(session)["child"] >= 1
    team = make_team(session)
    lead = add_member(session, team, agency="social_care", role="lead_practitioner")
    allocate(session, child_id=child_id, team=team)
    view = client.get(
        f"/api/v1/children/{child_id}/view?purpose=child_protection",
        headers={"Authorization": f"Bearer {staff_token(signing_keys, settings, lead)}"},
    ).json()

    assert sorted(i["source"]["client_id"] for i in view["identities"]) == sorted([trust.id, gp.id])
    assert [c["field"] for c in view["conflicts"]] == ["postcode"]


def test_repeated_push_stores_nothing_twice(
    client: TestClient, session: Session, settings: Settings, signing_keys: SigningKeys
) -> None:
    source, _ = make_client(session)
    body = json.dumps(child_bundle(demo_child(), encounters=[encounter(), encounter()]))
    headers = {**FHIR_JSON, "Authorization": f"Bearer {client_token(signing_keys, settings, source)}"}

    first = client.post("/fhir/R4", content=body, headers=headers)
    after_first = stored_counts(session)
    second = client.post("/fhir/R4", content=body, headers=headers)

    assert first.status_code == second.status_code == 200
    assert [e["response"]["status"] for e in second.json()["entry"]] == ["200 OK"] * 3
    assert stored_counts(session) == after_first


def test_new_version_supersedes_the_old(
    client: TestClient, session: Session, settings: Settings, signing_keys: SigningKeys, keyring: DataKeyring
) -> None:
    source, _ = make_client(session)
    child = demo_child()
    attendance = encounter()
    headers = {**FHIR_JSON, "Authorization": f"Bearer {client_token(signing_keys, settings, source)}"}
    client.post("/fhir/R4", content=json.dumps(child_bundle(child, encounters=[attendance])), headers=headers)
    attendance["class_code"] = "AMB"  # the source corrects the record: new content, new version

    client.post("/fhir/R4", content=json.dumps(child_bundle(child, encounters=[attendance])), headers=headers)

    child_id = child_id_for(session, keyring, child.nhs_number)
    statuses = sorted(session.scalars(select(Item.status).where(Item.child_id == child_id)))
    assert statuses == [RecordStatus.CURRENT, RecordStatus.SUPERSEDED]


def test_member_of_another_team_is_refused_and_the_refusal_is_audited(
    client: TestClient, session: Session, settings: Settings, signing_keys: SigningKeys, keyring: DataKeyring
) -> None:
    source, _ = make_client(session)
    child = demo_child()
    push(client, client_token(signing_keys, settings, source), child_bundle(child, encounters=[encounter()]))
    child_id = child_id_for(session, keyring, child.nhs_number)
    allocate(session, child_id=child_id, team=make_team(session, name="Allocated team"))
    outsider = add_member(session, make_team(session, name="Other team"), agency="social_care", role="social_worker")

    refused = client.get(
        f"/api/v1/children/{child_id}/view?purpose=child_protection",
        headers={"Authorization": f"Bearer {staff_token(signing_keys, settings, outsider)}"},
    )

    assert refused.status_code == 403
    assert refused.headers["content-type"] == "application/problem+json"
    assert "not a member" in refused.json()["detail"]
    assert "Testington" not in refused.text and child.nhs_number not in refused.text
    event = last_event(session, AuditAction.STAFF_VIEW_REFUSED)
    assert event.child_id == child_id
    assert event.actor_id == outsider.subject
    assert event.outcome == "denied"


def test_refusal_is_the_same_for_a_child_that_does_not_exist(
    client: TestClient, session: Session, settings: Settings, signing_keys: SigningKeys
) -> None:
    member = add_member(session, make_team(session), agency="police", role="police_officer")
    unknown = uuid.uuid4()

    refused = client.get(
        f"/api/v1/children/{unknown}/view?purpose=child_protection",
        headers={"Authorization": f"Bearer {staff_token(signing_keys, settings, member)}"},
    )

    assert refused.status_code == 403
    assert last_event(session, AuditAction.STAFF_VIEW_REFUSED).child_id == unknown

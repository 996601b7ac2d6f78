"""Requests to see a withheld item: asked by a member, answered by another, disclosed to the requester alone."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from gateway.auth.keys import SigningKeys
from gateway.kit.crypto import DataKeyring
from gateway.models import Item, SeeRequest
from gateway.settings import Settings
from tests.factories import child_bundle, client_token, demo_child, encounter, make_client
from tests.gateway.helpers import child_id_for, last_event, push
from tests.gateway.sharing.family import Family, Member, post, shown, view, withheld

JUSTIFICATION = "Strategy meeting today: the mental health history bears on the risk assessment."


def ask(client: TestClient, member: Member, family: Family, item_id: object, **extra: Any) -> Any:
    return post(client, member, f"/api/v1/children/{family.child_id}/requests",
                {"item_id": str(item_id), "justification": JUSTIFICATION, **extra})


def answer(client: TestClient, member: Member, request_id: str, decision: str = "approve") -> Any:
    return post(client, member, f"/api/v1/requests/{request_id}/decision", {"decision": decision, "note": "Agreed."})


def stored(session: Session, request_id: str) -> SeeRequest:
    request = session.get(SeeRequest, uuid.UUID(request_id))
    assert request is not None
    session.refresh(request)
    return request


def requests(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(SeeRequest)) or 0


def test_special_categories_are_withheld_without_an_approved_request(client: TestClient, family: Family) -> None:
    body = view(client, family.police, family)

    entries = withheld(body)
    for item_id in family.mental_health_items:
        assert str(item_id) not in shown(body)
        assert entries[str(item_id)]["rule_id"] == "builtin.special-category"
        assert entries[str(item_id)]["requestable"] is True
    assert {str(i) for i in family.health_items} <= shown(body)


def test_an_approved_request_discloses_to_the_requester_only(client: TestClient, session: Session, family: Family) -> None:
    item = family.mental_health_items[0]

    created = ask(client, family.police, family, item)
    assert created.status_code == 201, created.text
    assert created.json()["status"] == "pending" and created.json()["withheld_by"] == "builtin.special-category"
    pending = client.get("/api/v1/requests", params={"status": "pending"}, headers=family.health.headers())
    assert [r["id"] for r in pending.json()["requests"]] == [created.json()["id"]]
    decided = answer(client, family.health, created.json()["id"])
    assert decided.status_code == 200, decided.text
    assert decided.json()["status"] == "approved" and decided.json()["decided_by"] == family.health.row.subject

    requester = view(client, family.police, family)
    entry = next(e for e in requester["timeline"] if e["item_id"] == str(item))
    assert entry["decision"]["rule_id"] == "builtin.approved-request"
    assert created.json()["id"] in entry["decision"]["reason"]
    # The other mental health item, not asked for, stays withheld from the requester too.
    assert str(family.mental_health_items[1]) in withheld(requester)
    for someone_else in (family.lead, family.health):
        assert str(item) in withheld(view(client, someone_else, family))
    # Not for another purpose either: the approval was for child protection.
    assert str(item) not in shown(view(client, family.police, family, "family_help"))
    event = last_event(session, "staff:request:decided")
    assert event.detail["decision"] == "approved" and event.detail["review"] == ["request_approved"]


def test_a_requester_cannot_approve_their_own_request(client: TestClient, session: Session, family: Family) -> None:
    created = ask(client, family.health, family, family.mental_health_items[0]).json()

    refused = answer(client, family.health, created["id"])

    assert refused.status_code == 403
    assert "own request" in refused.json()["detail"]
    assert stored(session, created["id"]).status == "pending"
    assert last_event(session, "staff:request:refused").detail["reason"] == "own_request"


def test_only_the_items_agency_member_or_the_lead_may_answer(client: TestClient, family: Family) -> None:
    created = ask(client, family.police, family, family.mental_health_items[0]).json()

    # The police member is not the item's agency, the outsider is not on the team: neither sees or answers it.
    for stranger in (family.outsider,):
        assert client.get("/api/v1/requests", headers=stranger.headers()).json()["requests"] == []
        assert answer(client, stranger, created["id"]).status_code == 404
    assert client.get("/api/v1/requests", headers=family.lead.headers()).json()["requests"][0]["id"] == created["id"]
    declined = answer(client, family.lead, created["id"], "decline")
    assert declined.json()["status"] == "declined"
    assert str(family.mental_health_items[0]) in withheld(view(client, family.police, family))
    mine = client.get("/api/v1/requests", params={"mine": "true"}, headers=family.police.headers()).json()
    assert [r["status"] for r in mine["requests"]] == ["declined"]


def test_a_decision_on_a_decided_request_is_a_conflict(client: TestClient, session: Session, family: Family) -> None:
    created = ask(client, family.police, family, family.mental_health_items[0]).json()
    assert answer(client, family.health, created["id"]).status_code == 200

    again = answer(client, family.lead, created["id"], "decline")

    assert again.status_code == 409
    assert "already approved" in again.json()["detail"]
    assert stored(session, created["id"]).decided_by == family.health.row.subject


def test_a_request_for_an_item_not_withheld_or_of_another_child_is_refused(client: TestClient, session: Session, family: Family) -> None:
    before = requests(session)

    shown_item = ask(client, family.police, family, family.health_items[0])
    unknown = ask(client, family.police, family, "00000000-0000-4000-8000-000000000000")
    police_c = ask(client, family.police, family, family.police_c)
    no_justification = post(client, family.police, f"/api/v1/children/{family.child_id}/requests",
                            {"item_id": str(family.mental_health_items[0]), "justification": "  "})

    assert shown_item.status_code == 422 and "item_id" in shown_item.json()["detail"] and "not withheld" in shown_item.json()["detail"]
    assert unknown.status_code == 422 and "item_id" in unknown.json()["detail"]
    assert police_c.status_code == 422 and "builtin.police-handling-c" in police_c.json()["detail"]
    assert no_justification.status_code == 422 and "justification" in no_justification.text
    assert requests(session) == before


def test_a_second_pending_request_for_the_same_item_is_a_conflict(client: TestClient, session: Session, family: Family) -> None:
    assert ask(client, family.police, family, family.mental_health_items[0]).status_code == 201

    again = ask(client, family.police, family, family.mental_health_items[0])

    assert again.status_code == 409
    assert requests(session) == 1


def test_handling_code_c_and_detrimental_items_are_indicated_never_shown(client: TestClient, family: Family) -> None:
    for member in (family.lead, family.police, family.health):
        body = view(client, member, family)
        entries = withheld(body)
        assert str(family.police_c) not in shown(body) and str(family.detrimental) not in shown(body)
        assert entries[str(family.police_c)]["rule_id"] == "builtin.police-handling-c"
        # "More detrimental to the child than not": withheld even from the lead practitioner.
        assert entries[str(family.detrimental)]["rule_id"] == "builtin.detrimental"
        assert not entries[str(family.detrimental)]["requestable"]
        assert str(family.police_p) in shown(body)


def test_a_request_naming_another_childs_item_is_refused_as_unknown(
    client: TestClient, session: Session, family: Family, settings: Settings, signing_keys: SigningKeys, keyring: DataKeyring
) -> None:
    other = demo_child()
    source, _ = make_client(session)
    bundle = child_bundle(other, patient_id="other", encounters=[encounter(sensitive=True)])
    assert push(client, client_token(signing_keys, settings, source), bundle).status_code == 200
    other_id = child_id_for(session, keyring, other.nhs_number)
    their_item = session.scalar(select(Item.id).where(Item.child_id == other_id))

    refused = ask(client, family.police, family, their_item)

    assert refused.status_code == 422
    assert refused.json()["detail"] == "item_id: no item withheld from you with this id in this child's view"
    assert requests(session) == 0

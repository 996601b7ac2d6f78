"""Consent in the view, overrides, and break-glass: each route past a withholding, and where it stops."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from gateway.auth.keys import SigningKeys
from gateway.auth.principal import Principal, PrincipalKind
from gateway.auth.tokens import mint_access_token
from gateway.models import BreakGlass, Consent, Override, ReviewEntry
from gateway.settings import Settings
from policies import Agency, ConsentStatus, Purpose
from tests.gateway.helpers import get_view, last_event
from tests.gateway.sharing.family import Family, Member, post, shown, view, withheld


def consent(session: Session, family: Family, status: ConsentStatus, *, at: datetime | None = None, agencies: list[str] | None = None) -> None:
    session.add(Consent(
        child_id=family.child_id, given_by="parental_responsibility", giver_relationship="mother", status=status,
        purpose=Purpose.FAMILY_HELP, agencies=agencies if agencies is not None else ["health"], categories=[],
        recorded_by=family.lead.row.subject, recorded_at=at or datetime.now(UTC),
    ))
    session.flush()


def override_body(**changes: Any) -> dict[str, Any]:
    return {
        "purpose": "family_help", "agencies": ["health"], "categories": [], "lawful_basis": "public_task",
        "justification": "Asking the father would alert him to the enquiry and place the child at risk.",
        "expires_at": (datetime.now(UTC) + timedelta(days=30)).isoformat(), **changes,
    }


def overrides(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(Override)) or 0


def test_refused_consent_for_family_help_withholds_that_agencys_records_and_says_why(client: TestClient, session: Session, family: Family) -> None:
    consent(session, family, ConsentStatus.REFUSED)

    body = view(client, family.police, family, "family_help")

    assert not {str(i) for i in family.health_items} & shown(body)
    entry = withheld(body)[str(family.health_items[0])]
    assert entry["rule_id"] == "builtin.consent-not-given" and "refused" in entry["reason"]


def test_the_same_refusal_does_not_withhold_for_child_protection_and_shows_the_familys_wishes(
    client: TestClient, session: Session, family: Family
) -> None:
    recorded = post(client, family.lead, f"/api/v1/children/{family.child_id}/consents", {
        "status": "refused", "purpose": "family_help", "given_by": "parental_responsibility",
        "giver_relationship": "mother", "agencies": ["health"], "categories": [],
        "note": "Mother does not want the GP's records shared with school.",
    })
    assert recorded.status_code == 201, recorded.text

    body = view(client, family.police, family)

    assert {str(i) for i in family.health_items} <= shown(body)
    [record] = body["consent"]["records"]
    assert (record["status"], record["in_force"], record["giver_relationship"]) == ("refused", True, "mother")
    [wish] = body["consent"]["stated_wishes"]
    assert wish.startswith("A person with parental responsibility (mother) refused consent to share health records for family help")
    assert "does not want the GP's records shared with school" in wish


def test_a_withdrawal_stops_disclosure_from_that_moment(client: TestClient, session: Session, family: Family) -> None:
    consent(session, family, ConsentStatus.GIVEN, at=datetime.now(UTC) - timedelta(days=3))
    assert {str(i) for i in family.health_items} <= shown(view(client, family.police, family, "family_help"))
    # Recorded for a moment still to come: until then the consent given stands.
    consent(session, family, ConsentStatus.WITHDRAWN, at=datetime.now(UTC) + timedelta(minutes=10))
    assert {str(i) for i in family.health_items} <= shown(view(client, family.police, family, "family_help"))

    session.execute(update(Consent).where(Consent.status == ConsentStatus.WITHDRAWN).values(recorded_at=datetime.now(UTC) - timedelta(seconds=1)))
    body = view(client, family.police, family, "family_help")

    assert not {str(i) for i in family.health_items} & shown(body)
    assert withheld(body)[str(family.health_items[0])]["rule_id"] == "builtin.consent-not-given"


def test_the_lead_practitioners_override_shares_against_refusal_and_is_reviewed(client: TestClient, session: Session, family: Family) -> None:
    consent(session, family, ConsentStatus.REFUSED)

    created = post(client, family.lead, f"/api/v1/children/{family.child_id}/overrides", override_body())

    assert created.status_code == 201, created.text
    body = view(client, family.police, family, "family_help")
    entry = next(e for e in body["timeline"] if e["item_id"] == str(family.health_items[0]))
    assert (entry["decision"]["rule_id"], entry["decision"]["lawful_basis"]) == ("builtin.override", "public_task")
    assert [o["lawful_basis"] for o in body["consent"]["overrides"]] == ["public_task"]
    event = last_event(session, "staff:override:recorded")
    assert event.detail["review"] == ["override"] and event.detail["override_id"] == created.json()["id"]
    assert session.scalar(select(func.count()).select_from(ReviewEntry).where(ReviewEntry.reason == "override")) == 1


def test_an_expired_override_stops_applying(client: TestClient, session: Session, family: Family) -> None:
    consent(session, family, ConsentStatus.REFUSED)
    assert post(client, family.lead, f"/api/v1/children/{family.child_id}/overrides", override_body()).status_code == 201
    assert str(family.health_items[0]) in shown(view(client, family.police, family, "family_help"))

    session.execute(update(Override).values(expires_at=datetime.now(UTC) - timedelta(seconds=1)))

    body = view(client, family.police, family, "family_help")
    assert withheld(body)[str(family.health_items[0])]["rule_id"] == "builtin.consent-not-given"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"justification": ""}, "justification"),
        ({"justification": "   "}, "justification"),
        ({"expires_at": None}, "expires_at"),
        ({"expires_at": (datetime.now(UTC) + timedelta(days=91)).isoformat()}, "expires_at"),
        ({"expires_at": (datetime.now(UTC) - timedelta(days=1)).isoformat()}, "expires_at"),
        ({"expires_at": "2026-12-01T10:00:00"}, "expires_at"),
        ({"lawful_basis": "consent"}, "lawful_basis"),
        ({"lawful_basis": "vital_interests"}, "lawful_basis"),
        ({"categories": ["health.everything"]}, "categories"),
        ({"agencies": ["probation"]}, "agencies"),
    ],
)
def test_a_bad_override_names_the_field_and_stores_nothing(client: TestClient, session: Session, family: Family, changes: dict[str, Any], field: str) -> None:
    body = override_body(**changes)
    if body["expires_at"] is None:
        del body["expires_at"]

    refused = post(client, family.lead, f"/api/v1/children/{family.child_id}/overrides", body)

    assert refused.status_code == 422, refused.text
    assert field in refused.text
    assert overrides(session) == 0


@pytest.mark.parametrize("who", ["police", "health", "outsider"])
def test_only_the_lead_practitioner_records_an_override(client: TestClient, session: Session, family: Family, who: str) -> None:
    member: Member = getattr(family, who)

    refused = post(client, member, f"/api/v1/children/{family.child_id}/overrides", override_body())

    assert refused.status_code == 403
    assert overrides(session) == 0


def break_glass(client: TestClient, member: Member, family: Family, **changes: Any) -> Any:
    body = {"reason": "Child brought into custody suite overnight; no allocated team reachable.", "purpose": "child_protection", **changes}
    return post(client, member, f"/api/v1/children/{family.child_id}/break-glass", body)


def test_an_outsider_is_refused_then_breaks_the_glass_sees_child_protection_and_is_flagged(client: TestClient, session: Session, family: Family) -> None:
    assert get_view(client, family.outsider.token, family.child_id).status_code == 403

    granted = break_glass(client, family.outsider, family)

    assert granted.status_code == 201, granted.text
    expires = datetime.fromisoformat(granted.json()["expires_at"])
    assert timedelta(minutes=59) < expires - datetime.now(UTC) <= timedelta(minutes=60)
    body = view(client, family.outsider, family)
    assert body["relationship"] == "break_glass"
    assert str(family.police_p) in shown(body) and str(family.police_c) in withheld(body)
    opened = last_event(session, "staff:view:opened")
    assert opened.detail["review"] == ["break_glass"] and opened.detail["relationship"] == "break_glass"
    assert session.scalar(select(func.count()).select_from(ReviewEntry).where(ReviewEntry.reason == "break_glass")) == 2
    # Break-glass is for child protection: not family help, and no second grant while one runs.
    assert get_view(client, family.outsider.token, family.child_id, "family_help").status_code == 403
    assert break_glass(client, family.outsider, family).status_code == 409


def test_break_glass_expires(client: TestClient, session: Session, family: Family) -> None:
    assert break_glass(client, family.outsider, family).status_code == 201

    session.execute(update(BreakGlass).values(expires_at=datetime.now(UTC) - timedelta(seconds=1)))

    assert get_view(client, family.outsider.token, family.child_id).status_code == 403


@pytest.mark.parametrize(
    ("changes", "field"),
    [({"reason": ""}, "reason"), ({"reason": " "}, "reason"), ({"purpose": "family_help"}, "purpose")],
)
def test_break_glass_without_a_reason_or_for_family_help_is_refused(client: TestClient, session: Session, family: Family, changes: dict[str, Any], field: str) -> None:
    refused = break_glass(client, family.outsider, family, **changes)

    assert refused.status_code == 422
    assert field in refused.text
    assert session.scalar(select(func.count()).select_from(BreakGlass)) == 0


def test_break_glass_is_not_for_the_allocated_team_or_an_unknown_child(client: TestClient, session: Session, family: Family) -> None:
    assert break_glass(client, family.police, family).status_code == 409
    unknown = post(client, family.outsider, f"/api/v1/children/{uuid.uuid4()}/break-glass",
                   {"reason": "urgent", "purpose": "child_protection"})
    assert unknown.status_code == 404
    assert session.scalar(select(func.count()).select_from(BreakGlass)) == 0


def test_break_glass_reads_but_records_no_consent(client: TestClient, session: Session, family: Family) -> None:
    assert break_glass(client, family.outsider, family).status_code == 201

    refused = post(client, family.outsider, f"/api/v1/children/{family.child_id}/consents", {
        "status": "refused", "purpose": "child_protection", "given_by": "child", "giver_relationship": "self",
    })

    assert refused.status_code == 403 and "break-glass" in refused.json()["detail"]
    assert session.scalar(select(func.count()).select_from(Consent)) == 0
    assert client.get(f"/api/v1/children/{family.child_id}/consents", headers=family.outsider.headers()).status_code == 200


def test_break_glass_is_for_macpt_members_only(
    client: TestClient, session: Session, family: Family, settings: Settings, signing_keys: SigningKeys
) -> None:
    stranger = mint_access_token(
        signing_keys, issuer=settings.issuer, audience=settings.audience,
        principal=Principal(PrincipalKind.STAFF, "someone@elsewhere.example", Agency.POLICE, "police_officer"),
        ttl_seconds=300,
    )

    refused = client.post(f"/api/v1/children/{family.child_id}/break-glass", headers={"Authorization": f"Bearer {stranger}"},
                          json={"reason": "urgent", "purpose": "child_protection"})

    assert refused.status_code == 403 and "members of a MACPT team" in refused.json()["detail"]
    assert last_event(session, "staff:break-glass:refused").detail["reason"] == "not_a_member"
    assert session.scalar(select(func.count()).select_from(BreakGlass)) == 0

"""GET /api/v1/children/{id}/disclosures: who saw what of a child, as JSON and as CSV, and its own audit."""

from __future__ import annotations

import csv
import io
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy.orm import Session

from audit import AuditAction, AuditEvent, decode_items
from gateway.app import create_app
from gateway.auth.keys import SigningKeys
from gateway.auth.principal import Principal, PrincipalKind
from gateway.auth.tokens import mint_access_token
from gateway.demo.generator import generate
from gateway.demo.loader import load_demo
from gateway.ig.service import CSV_COLUMNS, _csv_safe
from gateway.keys import KeyFolder
from gateway.kit.crypto import DataKeyring
from gateway.kit.db import build_engine
from gateway.kit.migrate import upgrade
from gateway.models import Team, TeamMember
from gateway.settings import Settings
from policies import Agency
from tests.factories import add_member, make_team, staff_token
from tests.gateway.child_view.helpers import seed_child
from tests.gateway.helpers import last_event
from tests.gateway.ig.helpers import IG_SUBJECT, bearer, ig_token, view

HEADER = [
    "seq",
    "occurred_at",
    "person",
    "role",
    "agency",
    "action",
    "purpose",
    "lawful_basis",
    "policy_version",
    "item",
    "decision",
    "rule",
]


def disclosed(event: AuditEvent) -> list[tuple[str, str, str]]:
    """Return the items of a view's event that the viewer was shown or told of, sorted."""
    return sorted((str(r.item), r.decision, r.rule) for r in decode_items(event.items) if r.decision != "withhold_silently")


def as_tuples(items: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    """Return a report's items as sorted tuples."""
    return sorted((i["item"], i["decision"], i["rule"]) for i in items)


@dataclass(frozen=True)
class Viewed:
    """A child seen twice by two members of its team, and once refused to an outsider."""

    child_id: uuid.UUID
    police: TeamMember
    social: TeamMember
    outsider: TeamMember
    police_view: AuditEvent
    social_view: AuditEvent
    token: str


@pytest.fixture
def viewed(
    client: TestClient, session: Session, settings: Settings, signing_keys: SigningKeys, keyring: DataKeyring
) -> Viewed:
    """Push a child with attendances and police items (one entered in error), have it viewed twice, refused once."""
    seeded = seed_child(client, session, settings, signing_keys, keyring, encounters=4, police_items=12)
    team = session.get_one(Team, seeded.member.team_id)
    social = add_member(session, team, agency="social_care", role="social_worker")
    outsider = add_member(session, make_team(session, name="Westshire MACPT"), agency="health", role="nurse")
    assert view(client, seeded.token, seeded.child_id).status_code == 200
    police_view = last_event(session, AuditAction.STAFF_VIEW_OPENED)
    assert view(client, staff_token(signing_keys, settings, social), seeded.child_id, "family_help").status_code == 200
    social_view = last_event(session, AuditAction.STAFF_VIEW_OPENED)
    assert view(client, staff_token(signing_keys, settings, outsider), seeded.child_id).status_code == 403
    return Viewed(
        seeded.child_id, seeded.member, social, outsider, police_view, social_view, ig_token(signing_keys, settings)
    )


def report(
    http: TestClient, viewed: Viewed, *, params: dict[str, str] | None = None, accept: str | None = None
) -> Response:
    """GET the child's disclosures as the IG officer, with a format or an Accept header."""
    headers = bearer(viewed.token) | ({"Accept": accept} if accept else {})
    response: Response = http.get(f"/api/v1/children/{viewed.child_id}/disclosures", params=params, headers=headers)
    return response


def test_every_view_is_listed_oldest_first_with_who_why_and_what(client: TestClient, viewed: Viewed) -> None:
    # Something the viewer was not even told of: an item entered in error is withheld silently.
    assert "withhold_silently" in {r.decision for r in decode_items(viewed.police_view.items)}

    response = report(client, viewed)

    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["child_id"] == str(viewed.child_id)
    assert body["count"] == 2
    police, social = body["disclosures"]
    for shown, member, event, purpose in (
        (police, viewed.police, viewed.police_view, "child_protection"),
        (social, viewed.social, viewed.social_view, "family_help"),
    ):
        assert shown["seq"] == event.seq
        assert shown["to"] == {"type": "user", "id": member.subject, "agency": member.agency, "role": member.role}
        assert (shown["action"], shown["purpose"]) == ("staff:view:opened", purpose)
        assert (shown["lawful_basis"], shown["policy_version"]) == (event.lawful_basis, event.policy_version)
        assert shown["policy_version"]
        assert as_tuples(shown["items"]) == disclosed(event)
        assert all(item["decision"] != "withhold_silently" for item in shown["items"])
    assert police["lawful_basis"]  # the police officer was shown items, on a stated basis
    assert len(police["items"]) < len(decode_items(viewed.police_view.items))
    assert police["seq"] < social["seq"]
    assert police["occurred_at"] <= social["occurred_at"]


def test_refusals_and_the_ig_officers_own_reads_are_not_disclosures(
    client: TestClient, session: Session, viewed: Viewed
) -> None:
    searched = client.get(
        "/api/v1/audit/events", params={"child": str(viewed.child_id)}, headers=bearer(viewed.token)
    )
    assert searched.status_code == 200

    body = report(client, viewed).json()

    refusal = last_event(session, AuditAction.STAFF_VIEW_REFUSED)
    assert refusal.child_id == viewed.child_id
    people = [d["to"]["id"] for d in body["disclosures"]]
    assert people == [viewed.police.subject, viewed.social.subject]
    assert refusal.seq not in [d["seq"] for d in body["disclosures"]]
    assert IG_SUBJECT not in people


def test_the_report_is_audited(client: TestClient, session: Session, viewed: Viewed) -> None:
    response = report(client, viewed)
    assert response.status_code == 200

    reported = last_event(session, AuditAction.IG_DISCLOSURES_REPORTED)
    assert (reported.actor_id, reported.actor_role, reported.outcome) == (IG_SUBJECT, "ig_officer", "success")
    assert reported.child_id == viewed.child_id
    assert reported.detail == {"disclosures": 2}

    as_csv = report(client, viewed, params={"format": "csv"})
    assert as_csv.status_code == 200
    again = last_event(session, AuditAction.IG_DISCLOSURES_REPORTED)
    assert again.seq > reported.seq
    assert again.detail == {"disclosures": 2}


def test_a_child_never_viewed_has_no_disclosures(
    client: TestClient, session: Session, settings: Settings, signing_keys: SigningKeys
) -> None:
    child_id = uuid.uuid4()

    response = client.get(f"/api/v1/children/{child_id}/disclosures", headers=bearer(ig_token(signing_keys, settings)))

    assert response.status_code == 200
    assert response.json() == {"child_id": str(child_id), "count": 0, "disclosures": []}
    assert last_event(session, AuditAction.IG_DISCLOSURES_REPORTED).detail == {"disclosures": 0}


def expected_rows(body: dict[str, Any]) -> list[list[str]]:
    """Return the CSV rows a JSON report should give, one per item (a disclosure of none: one blank row)."""
    rows = []
    for d in body["disclosures"]:
        common = [
            str(d["seq"]),
            d["occurred_at"],
            d["to"]["id"],
            d["to"]["role"] or "",
            d["to"]["agency"] or "",
            d["action"],
            d["purpose"] or "",
            d["lawful_basis"] or "",
            d["policy_version"] or "",
        ]
        rows += [[*common, i["item"], i["decision"], i["rule"]] for i in d["items"]] or [[*common, "", "", ""]]
    return rows


def test_csv_has_the_header_and_one_row_per_item(client: TestClient, viewed: Viewed) -> None:
    body = report(client, viewed).json()

    response = report(client, viewed, params={"format": "csv"})

    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.headers["content-disposition"] == f'attachment; filename="disclosures-{viewed.child_id}.csv"'
    assert response.text.startswith(",".join(HEADER) + "\r\n")
    header, *rows = list(csv.reader(io.StringIO(response.text)))
    assert header == HEADER == list(CSV_COLUMNS)
    items = sum(len(d["items"]) for d in body["disclosures"])
    assert len(rows) == items == len(disclosed(viewed.police_view)) + len(disclosed(viewed.social_view))
    # occurred_at: JSON writes it with Z, the CSV with +00:00; the same instant.
    for row in rows:
        row[1] = row[1].replace("+00:00", "Z")
    assert rows == expected_rows(body)
    assert {row[2] for row in rows} == {viewed.police.subject, viewed.social.subject}


def test_accept_text_csv_gives_the_same_csv(client: TestClient, viewed: Viewed) -> None:
    by_format = report(client, viewed, params={"format": "csv"})
    by_accept = report(client, viewed, accept="text/csv")
    json_wins = report(client, viewed, params={"format": "json"}, accept="text/csv")
    browser = report(client, viewed, accept="text/html,application/xhtml+xml")

    assert by_accept.status_code == 200
    assert by_accept.headers["content-type"] == "text/csv; charset=utf-8"
    assert by_accept.content == by_format.content
    assert json_wins.headers["content-type"] == "application/json"
    assert json_wins.json()["count"] == 2
    assert browser.headers["content-type"] == "application/json"


def test_an_unknown_format_is_422(client: TestClient, viewed: Viewed) -> None:
    response = report(client, viewed, params={"format": "xlsx"})

    assert response.status_code == 422
    assert [e["location"] for e in response.json()["errors"]] == ["query.format"]


@pytest.mark.parametrize(
    ("value", "safe"),
    [
        ("=SUM(A1:A9)", "'=SUM(A1:A9)"),
        ("+44 1632 960000", "'+44 1632 960000"),
        ("-2+3", "'-2+3"),
        ("@SUM(1)", "'@SUM(1)"),
        ("\t=1", "'\t=1"),
        ("\r=1", "'\r=1"),
        ("police.member@northshire.example", "police.member@northshire.example"),
        ("a=b", "a=b"),
        ("", ""),
    ],
)
def test_a_cell_that_a_spreadsheet_would_run_is_prefixed_with_a_quote(value: str, safe: str) -> None:
    assert _csv_safe(value) == safe


def test_a_formula_in_a_person_or_role_reaches_the_csv_as_text(
    client: TestClient, session: Session, settings: Settings, signing_keys: SigningKeys, keyring: DataKeyring
) -> None:
    seeded = seed_child(client, session, settings, signing_keys, keyring, encounters=1)
    team = session.get_one(Team, seeded.member.team_id)
    sly = add_member(session, team, agency="police", role="@officer", subject='=HYPERLINK("http://x.example")')
    assert view(client, staff_token(signing_keys, settings, sly), seeded.child_id).status_code == 200

    response = client.get(
        f"/api/v1/children/{seeded.child_id}/disclosures",
        params={"format": "csv"},
        headers=bearer(ig_token(signing_keys, settings)),
    )

    assert response.status_code == 200
    _header, *rows = list(csv.reader(io.StringIO(response.text)))
    assert rows
    assert {(row[2], row[3]) for row in rows} == {("'=HYPERLINK(\"http://x.example\")", "'@officer")}


def test_the_demo_partnership_reports_who_saw_its_allocated_child(tmp_path: Path) -> None:
    # load_demo commits through its own session factory, so it cannot run inside the test's
    # transaction: it gets a throwaway SQLite database and key folder of its own instead.
    keys = KeyFolder(tmp_path / "keys")
    keys.create_missing(audit_origin=Settings().audit_origin)
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'demo.sqlite3'}",
        keys_dir=tmp_path / "keys",
        audit_checkpoint_interval_s=0,
        review_working_hours="00:00-00:00",
        review_working_days="1-7",
    )
    engine = build_engine(settings.database_url)
    try:
        upgrade(engine)
        summary = load_demo(settings, engine, children=6, seed=1)
        partnership = generate(children=6, seed=1)
        signing_keys = keys.signing_keys()

        def token_of(subject: str, agency: str, role: str) -> str:
            principal = Principal(PrincipalKind.STAFF, subject, Agency(agency), role)
            return mint_access_token(
                signing_keys, issuer=settings.issuer, audience=settings.audience, principal=principal, ttl_seconds=300
            )

        lead, _health, police, _education = partnership.members
        outsider = partnership.outsider
        with TestClient(create_app(settings, engine=engine)) as http:
            for member in (lead, police):
                response = view(http, token_of(member.subject, member.agency, member.role), summary.allocated_child)
                assert response.status_code == 200, response.text
            refused = view(http, token_of(outsider.subject, outsider.agency, outsider.role), summary.allocated_child)
            assert refused.status_code == 403
            assert view(http, token_of(police.subject, police.agency, police.role), summary.unallocated_child).status_code == 403
            officer = bearer(token_of("ig.officer@northshire.example", "social_care", "ig_officer"))

            allocated = http.get(f"/api/v1/children/{summary.allocated_child}/disclosures", headers=officer)
            unallocated = http.get(f"/api/v1/children/{summary.unallocated_child}/disclosures", headers=officer)
            as_csv = http.get(
                f"/api/v1/children/{summary.allocated_child}/disclosures", params={"format": "csv"}, headers=officer
            )

        assert allocated.status_code == 200, allocated.text
        body = allocated.json()
        assert body["count"] == 2
        assert [(d["to"]["id"], d["to"]["agency"], d["to"]["role"]) for d in body["disclosures"]] == [
            ("lead.practitioner@northshire.example", "social_care", "lead_practitioner"),
            ("police.member@northshire.example", "police", "police_officer"),
        ]
        assert all(d["purpose"] == "child_protection" and d["policy_version"] for d in body["disclosures"])
        assert body["disclosures"][0]["items"], "the lead practitioner was shown nothing of the demo child"
        assert unallocated.json()["count"] == 0
        _header, *rows = list(csv.reader(io.StringIO(as_csv.text)))
        assert len(rows) == sum(max(1, len(d["items"])) for d in body["disclosures"])
    finally:
        engine.dispose()

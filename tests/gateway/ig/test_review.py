"""The review queue: what puts an event on it (refused, out of hours, volume), and an officer's review of it."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from audit import AuditAction, AuditEvent
from audit.hashing import canonical_bytes
from gateway.auth.keys import SigningKeys
from gateway.kit.crypto import DataKeyring
from gateway.models import ReviewEntry
from gateway.settings import Settings
from tests.factories import add_member, make_team, staff_token
from tests.gateway.helpers import last_event
from tests.gateway.ig.helpers import (
    IG_SUBJECT,
    LONDON,
    Partnership,
    bearer,
    ig_token,
    member_token,
    partnership,
    rules_at,
    view,
)

QUEUE = "/api/v1/audit/review"
NOTE = "Spoke to the team lead: the view was for Tuesday's strategy meeting."
SATURDAY_NIGHT = datetime(2026, 11, 21, 23, 30, tzinfo=LONDON)
TUESDAY_MORNING = datetime(2026, 11, 24, 10, 0, tzinfo=LONDON)


def queue(http: TestClient, token: str, **params: Any) -> list[dict[str, Any]]:
    """Return the review queue's first page (up to 500 entries)."""
    response = http.get(QUEUE, params={"limit": 500, **params}, headers=bearer(token))
    assert response.status_code == 200, response.text
    entries: list[dict[str, Any]] = response.json()["entries"]
    return entries


def entries_in_db(session: Session) -> list[ReviewEntry]:
    """Return every review entry as stored now."""
    return list(session.scalars(select(ReviewEntry).order_by(ReviewEntry.seq, ReviewEntry.reason)))


def refused_view(
    http: TestClient, session: Session, settings: Settings, signing_keys: SigningKeys, child_id: uuid.UUID
) -> tuple[str, AuditEvent]:
    """Have someone on another team try to open the child's view; return their subject and the refusal."""
    outsider = add_member(session, make_team(session, name="Westshire MACPT"), agency="education", role="teacher")
    response = view(http, staff_token(signing_keys, settings, outsider), child_id)
    assert response.status_code == 403, response.text
    return outsider.subject, last_event(session, AuditAction.STAFF_VIEW_REFUSED)


@pytest.fixture
def seeded(
    client: TestClient, session: Session, settings: Settings, signing_keys: SigningKeys, keyring: DataKeyring
) -> Partnership:
    """Four children pushed by a health system and allocated to one team."""
    return partnership(client, session, settings, signing_keys, keyring, children=4)


def test_a_refused_view_puts_an_entry_naming_the_person_and_child_on_the_queue(
    client: TestClient, session: Session, settings: Settings, signing_keys: SigningKeys, seeded: Partnership
) -> None:
    child_id = seeded.children[0]

    subject, refusal = refused_view(client, session, settings, signing_keys, child_id)

    assert refusal.detail == {"reason": "no_allocation", "review": ["refused"]}
    [entry] = queue(client, ig_token(signing_keys, settings))
    assert entry["reason"] == "refused"
    assert entry["seq"] == refusal.seq
    assert entry["actor"] == {"type": "user", "id": subject, "agency": "education", "role": "teacher"}
    assert (entry["action"], entry["child_id"]) == ("staff:view:refused", str(child_id))
    assert (entry["status"], entry["reviewed_by"], entry["outcome"], entry["note"]) == ("open", None, None, None)
    assert datetime.fromisoformat(entry["flagged_at"]) == refusal.occurred_at.replace(
        tzinfo=refusal.occurred_at.tzinfo or UTC
    )


def test_a_view_on_saturday_night_is_flagged_out_of_hours(
    client: TestClient,
    app: FastAPI,
    session: Session,
    settings: Settings,
    signing_keys: SigningKeys,
    seeded: Partnership,
) -> None:
    app.state.review_rules = rules_at(SATURDAY_NIGHT)
    member, token = member_token(session, settings, signing_keys, seeded.team, agency="police", role="police_officer")

    assert view(client, token, seeded.children[0]).status_code == 200

    opened = last_event(session, AuditAction.STAFF_VIEW_OPENED)
    assert opened.detail["review"] == ["out_of_hours"]
    [entry] = queue(client, ig_token(signing_keys, settings))
    assert (entry["reason"], entry["seq"], entry["child_id"]) == ("out_of_hours", opened.seq, str(seeded.children[0]))
    assert entry["actor"]["id"] == member.subject
    assert entry["action"] == "staff:view:opened"


def test_a_view_on_tuesday_morning_is_not_flagged(
    client: TestClient,
    app: FastAPI,
    session: Session,
    settings: Settings,
    signing_keys: SigningKeys,
    seeded: Partnership,
) -> None:
    app.state.review_rules = rules_at(TUESDAY_MORNING)
    _member, token = member_token(session, settings, signing_keys, seeded.team, agency="police", role="police_officer")

    assert view(client, token, seeded.children[0]).status_code == 200

    opened = last_event(session, AuditAction.STAFF_VIEW_OPENED)
    assert "review" not in opened.detail
    assert queue(client, ig_token(signing_keys, settings)) == []
    assert entries_in_db(session) == []


@pytest.mark.parametrize(
    ("moment", "flagged"),
    [
        (datetime(2026, 11, 24, 7, 59, 59, tzinfo=LONDON), True),
        (datetime(2026, 11, 24, 8, 0, tzinfo=LONDON), False),
        (datetime(2026, 11, 24, 17, 59, 59, tzinfo=LONDON), False),
        (datetime(2026, 11, 24, 18, 0, tzinfo=LONDON), True),
        (datetime(2026, 11, 20, 17, 0, tzinfo=LONDON), False),  # Friday
        (datetime(2026, 11, 23, 8, 0, tzinfo=LONDON), False),  # Monday
        (datetime(2026, 11, 22, 12, 0, tzinfo=LONDON), True),  # Sunday noon
        # British Summer Time: 07:30 UTC is 08:30 in London, 17:30 UTC is 18:30.
        (datetime(2026, 7, 14, 7, 30, tzinfo=UTC), False),
        (datetime(2026, 7, 14, 17, 30, tzinfo=UTC), True),
        # Friday 23:30 UTC is Friday 23:30 in London in November (GMT): a working day, but after hours.
        (datetime(2026, 11, 20, 23, 30, tzinfo=UTC), True),
    ],
)
def test_working_hours_are_london_time_monday_to_friday_eight_to_six(
    client: TestClient,
    app: FastAPI,
    session: Session,
    settings: Settings,
    signing_keys: SigningKeys,
    seeded: Partnership,
    moment: datetime,
    flagged: bool,
) -> None:
    app.state.review_rules = rules_at(moment)
    _member, token = member_token(session, settings, signing_keys, seeded.team, agency="health", role="nurse")

    assert view(client, token, seeded.children[0]).status_code == 200

    opened = last_event(session, AuditAction.STAFF_VIEW_OPENED)
    assert ("out_of_hours" in opened.detail.get("review", [])) is flagged
    assert [entry.reason for entry in entries_in_db(session)] == (["out_of_hours"] if flagged else [])


def test_the_fourth_child_in_a_day_puts_one_volume_entry_on_the_queue(
    client: TestClient,
    app: FastAPI,
    session: Session,
    settings: Settings,
    signing_keys: SigningKeys,
    seeded: Partnership,
) -> None:
    # A Tuesday in the past: every view of this test happens after its local midnight.
    app.state.review_rules = rules_at(datetime(2026, 11, 17, 10, 0, tzinfo=LONDON), daily_children=3)
    member, token = member_token(session, settings, signing_keys, seeded.team, agency="police", role="police_officer")
    first, second, third, fourth = seeded.children
    opened: list[AuditEvent] = []

    for child_id in (first, first, second, third, fourth, first, fourth):
        assert view(client, token, child_id).status_code == 200
        opened.append(last_event(session, AuditAction.STAFF_VIEW_OPENED))

    # The same child opened twice counts once: three children, no flag.
    for event in opened[:4]:
        assert "review" not in event.detail, event.detail
    assert opened[4].detail["review"] == ["volume"]
    assert opened[4].detail["children_today"] == 4
    assert opened[4].detail["review_day"] == "2026-11-17"
    # Opening the first or fourth child again: still four children today, still flagged, no new entry.
    for event in opened[5:]:
        assert event.detail["review"] == ["volume"]
        assert event.detail["children_today"] == 4
    entries = queue(client, ig_token(signing_keys, settings), reason="volume")
    assert len(entries) == 1
    [entry] = entries
    assert (entry["seq"], entry["child_id"], entry["actor"]["id"]) == (opened[4].seq, str(fourth), member.subject)
    assert [e.reason for e in entries_in_db(session)] == ["volume"]


def test_volume_is_counted_per_person(
    client: TestClient,
    app: FastAPI,
    session: Session,
    settings: Settings,
    signing_keys: SigningKeys,
    seeded: Partnership,
) -> None:
    app.state.review_rules = rules_at(datetime(2026, 11, 17, 10, 0, tzinfo=LONDON), daily_children=3)
    _one, first_token = member_token(session, settings, signing_keys, seeded.team, agency="police", role="officer")
    _two, second_token = member_token(session, settings, signing_keys, seeded.team, agency="health", role="nurse")

    # Two people open two children each, and one of them a third: nobody opened four.
    for token, children in ((first_token, seeded.children[:2]), (second_token, seeded.children[2:]),
                            (first_token, seeded.children[2:3])):
        for child_id in children:
            assert view(client, token, child_id).status_code == 200

    assert entries_in_db(session) == []


def test_a_view_both_out_of_hours_and_over_volume_gets_two_entries_paged_apart(
    client: TestClient,
    app: FastAPI,
    session: Session,
    settings: Settings,
    signing_keys: SigningKeys,
    seeded: Partnership,
) -> None:
    app.state.review_rules = rules_at(SATURDAY_NIGHT, daily_children=1)
    _member, token = member_token(session, settings, signing_keys, seeded.team, agency="police", role="officer")
    assert view(client, token, seeded.children[0]).status_code == 200
    assert view(client, token, seeded.children[1]).status_code == 200
    second = last_event(session, AuditAction.STAFF_VIEW_OPENED)
    assert second.detail["review"] == ["out_of_hours", "volume"]

    seen: list[tuple[int, str]] = []
    url: str | None = f"{QUEUE}?limit=1"
    while url is not None:
        response = client.get(url, headers=bearer(ig_token(signing_keys, settings)))
        assert response.status_code == 200, response.text
        page = response.json()
        seen += [(entry["seq"], entry["reason"]) for entry in page["entries"]]
        url = page["next"]

    assert seen == [(second.seq - 1, "out_of_hours"), (second.seq, "out_of_hours"), (second.seq, "volume")]


def test_the_queue_pages_with_next_in_the_order_events_happened(
    client: TestClient, session: Session, settings: Settings, signing_keys: SigningKeys, seeded: Partnership
) -> None:
    refusals = [refused_view(client, session, settings, signing_keys, child)[1] for child in seeded.children]
    token = ig_token(signing_keys, settings)

    seen: list[int] = []
    pages = 0
    url: str | None = f"{QUEUE}?reason=refused&limit=3"
    while url is not None:
        response = client.get(url, headers=bearer(token))
        assert response.status_code == 200, response.text
        page = response.json()
        seen += [entry["seq"] for entry in page["entries"]]
        assert all(entry["reason"] == "refused" for entry in page["entries"])
        url = page["next"]
        if url is not None:
            assert "reason=refused" in url
        pages += 1

    assert seen == [refusal.seq for refusal in refusals]
    assert pages == 2


def test_the_reason_filter_keeps_only_that_reason(
    client: TestClient,
    app: FastAPI,
    session: Session,
    settings: Settings,
    signing_keys: SigningKeys,
    seeded: Partnership,
) -> None:
    app.state.review_rules = rules_at(SATURDAY_NIGHT)
    _member, token = member_token(session, settings, signing_keys, seeded.team, agency="police", role="officer")
    _subject, refusal = refused_view(client, session, settings, signing_keys, seeded.children[0])
    assert view(client, token, seeded.children[1]).status_code == 200
    opened = last_event(session, AuditAction.STAFF_VIEW_OPENED)
    officer = ig_token(signing_keys, settings)

    assert [(e["seq"], e["reason"]) for e in queue(client, officer)] == [
        (refusal.seq, "refused"),
        (opened.seq, "out_of_hours"),
    ]
    assert [e["seq"] for e in queue(client, officer, reason="refused")] == [refusal.seq]
    assert [e["seq"] for e in queue(client, officer, reason="out_of_hours")] == [opened.seq]
    assert queue(client, officer, reason="volume") == []
    assert queue(client, officer, reason="break_glass") == []


@pytest.mark.parametrize(
    ("params", "location"),
    [
        ({"reason": "nosy"}, "query.reason"),
        ({"status": "closed"}, "query.status"),
        ({"limit": 0}, "query.limit"),
    ],
)
def test_an_invalid_queue_parameter_is_422(
    client: TestClient, settings: Settings, signing_keys: SigningKeys, params: dict[str, Any], location: str
) -> None:
    response = client.get(QUEUE, params=params, headers=bearer(ig_token(signing_keys, settings)))

    assert response.status_code == 422, response.text
    assert [e["location"] for e in response.json()["errors"]] == [location]


@pytest.mark.parametrize("after", ["12", "x:refused", "12:nosy", "-1:refused", ":"])
def test_a_cursor_not_from_next_is_422(
    client: TestClient, settings: Settings, signing_keys: SigningKeys, after: str
) -> None:
    response = client.get(QUEUE, params={"after": after}, headers=bearer(ig_token(signing_keys, settings)))

    assert response.status_code == 422, response.text
    assert response.json()["detail"] == "after must be a cursor from a previous page's `next` (seq:reason)"


@pytest.fixture
def open_entry(
    client: TestClient, session: Session, settings: Settings, signing_keys: SigningKeys, seeded: Partnership
) -> ReviewEntry:
    """One open entry: a refused view."""
    refused_view(client, session, settings, signing_keys, seeded.children[0])
    [entry] = entries_in_db(session)
    return entry


def test_an_officer_records_a_review_once(
    client: TestClient, session: Session, settings: Settings, signing_keys: SigningKeys, open_entry: ReviewEntry
) -> None:
    token = ig_token(signing_keys, settings)
    before = datetime.now(UTC)

    response = client.post(
        f"{QUEUE}/{open_entry.id}", json={"outcome": "appropriate", "note": NOTE}, headers=bearer(token)
    )

    assert response.status_code == 200, response.text
    reviewed = response.json()
    assert reviewed["id"] == str(open_entry.id)
    assert (reviewed["status"], reviewed["reviewed_by"], reviewed["outcome"], reviewed["note"]) == (
        "reviewed",
        IG_SUBJECT,
        "appropriate",
        NOTE,
    )
    assert before <= datetime.fromisoformat(reviewed["reviewed_at"]) <= datetime.now(UTC)
    assert (reviewed["reason"], reviewed["seq"]) == ("refused", open_entry.seq)
    stored = session.get_one(ReviewEntry, open_entry.id, populate_existing=True)
    assert (stored.status, stored.reviewed_by, stored.outcome, stored.note) == ("reviewed", IG_SUBJECT, "appropriate", NOTE)

    again = client.post(
        f"{QUEUE}/{open_entry.id}",
        json={"outcome": "inappropriate", "note": "Second thoughts."},
        headers=bearer(ig_token(signing_keys, settings, subject="another.officer@test.example")),
    )

    assert again.status_code == 409, again.text
    assert again.headers["content-type"] == "application/problem+json"
    assert again.json()["detail"] == f"review entry {open_entry.id} was already reviewed by {IG_SUBJECT}"
    stored = session.get_one(ReviewEntry, open_entry.id, populate_existing=True)
    assert (stored.reviewed_by, stored.outcome, stored.note) == (IG_SUBJECT, "appropriate", NOTE)


def test_a_review_is_audited_without_its_note(
    client: TestClient, session: Session, settings: Settings, signing_keys: SigningKeys, open_entry: ReviewEntry
) -> None:
    first_new = session.scalar(select(func.coalesce(func.max(AuditEvent.seq), 0))) or 0

    response = client.post(
        f"{QUEUE}/{open_entry.id}",
        json={"outcome": "escalated", "note": NOTE},
        headers=bearer(ig_token(signing_keys, settings)),
    )

    assert response.status_code == 200, response.text
    recorded = last_event(session, AuditAction.IG_REVIEW_RECORDED)
    assert (recorded.actor_id, recorded.actor_role, recorded.outcome) == (IG_SUBJECT, "ig_officer", "success")
    assert recorded.child_id == open_entry.child_id
    assert recorded.detail == {
        "review_entry": str(open_entry.id),
        "reason": "refused",
        "flagged_seq": open_entry.seq,
        "outcome": "escalated",
    }
    new = session.scalars(select(AuditEvent).where(AuditEvent.seq > first_new)).all()
    assert [event.action for event in new] == ["ig:review:recorded"]
    for event in new:
        assert "strategy meeting" not in canonical_bytes(event).decode()
        assert "strategy meeting" not in json.dumps(event.detail)


def test_the_reviewed_entry_leaves_the_open_queue(
    client: TestClient, settings: Settings, signing_keys: SigningKeys, open_entry: ReviewEntry
) -> None:
    token = ig_token(signing_keys, settings)
    assert [e["id"] for e in queue(client, token)] == [str(open_entry.id)]
    assert queue(client, token, status="reviewed") == []

    response = client.post(
        f"{QUEUE}/{open_entry.id}", json={"outcome": "inappropriate", "note": NOTE}, headers=bearer(token)
    )
    assert response.status_code == 200, response.text

    assert queue(client, token) == []
    assert queue(client, token, status="open") == []
    [reviewed] = queue(client, token, status="reviewed")
    assert (reviewed["id"], reviewed["outcome"], reviewed["note"], reviewed["reviewed_by"]) == (
        str(open_entry.id),
        "inappropriate",
        NOTE,
        IG_SUBJECT,
    )


def test_reviewing_an_unknown_entry_is_404(client: TestClient, settings: Settings, signing_keys: SigningKeys) -> None:
    unknown = uuid.uuid4()

    response = client.post(
        f"{QUEUE}/{unknown}", json={"outcome": "appropriate", "note": NOTE}, headers=bearer(ig_token(signing_keys, settings))
    )

    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["detail"] == f"there is no review entry {unknown}"


@pytest.mark.parametrize(
    ("body", "location"),
    [
        ({"outcome": "appropriate"}, "body.note"),
        ({"outcome": "appropriate", "note": ""}, "body.note"),
        ({"outcome": "appropriate", "note": "x" * 4001}, "body.note"),
        ({"note": NOTE}, "body.outcome"),
        ({"outcome": "fine", "note": NOTE}, "body.outcome"),
        ({"outcome": "appropriate", "note": NOTE, "reviewed_by": "someone.else@test.example"}, "body.reviewed_by"),
        ({"outcome": "appropriate", "note": NOTE, "status": "open"}, "body.status"),
    ],
)
def test_an_invalid_review_is_422_and_changes_nothing(
    client: TestClient,
    session: Session,
    settings: Settings,
    signing_keys: SigningKeys,
    open_entry: ReviewEntry,
    body: dict[str, Any],
    location: str,
) -> None:
    response = client.post(f"{QUEUE}/{open_entry.id}", json=body, headers=bearer(ig_token(signing_keys, settings)))

    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert [e["location"] for e in response.json()["errors"]] == [location]
    stored = session.get_one(ReviewEntry, open_entry.id, populate_existing=True)
    assert (stored.status, stored.reviewed_by, stored.note) == ("open", None, None)


def test_a_review_of_a_malformed_id_is_422(client: TestClient, settings: Settings, signing_keys: SigningKeys) -> None:
    response = client.post(
        f"{QUEUE}/not-an-id", json={"outcome": "appropriate", "note": NOTE}, headers=bearer(ig_token(signing_keys, settings))
    )

    assert response.status_code == 422
    assert [e["location"] for e in response.json()["errors"]] == ["path.entry_id"]


def test_the_refusal_of_a_non_officer_is_on_the_queue_and_can_be_reviewed(
    client: TestClient, session: Session, settings: Settings, signing_keys: SigningKeys, seeded: Partnership
) -> None:
    member, token = member_token(session, settings, signing_keys, seeded.team, agency="police", role="police_officer")
    assert client.get(QUEUE, headers=bearer(token)).status_code == 403
    refusal = last_event(session, AuditAction.IG_ACCESS_REFUSED)
    officer = ig_token(signing_keys, settings)
    [entry] = queue(client, officer)
    assert (entry["seq"], entry["reason"], entry["actor"]["id"], entry["child_id"]) == (
        refusal.seq, "refused", member.subject, None
    )

    response = client.post(
        f"{QUEUE}/{entry['id']}", json={"outcome": "appropriate", "note": "Clicked the wrong link."},
        headers=bearer(officer),
    )

    assert response.status_code == 200, response.text
    assert last_event(session, AuditAction.IG_REVIEW_RECORDED).child_id is None
    assert queue(client, officer) == []

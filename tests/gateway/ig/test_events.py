"""GET /api/v1/audit/events and /events/{seq}: filters, paging, canonical bytes, and the search's own audit."""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from audit import AuditAction, AuditEvent, decode_items
from audit.hashing import leaf_hash
from gateway.auth.keys import SigningKeys
from gateway.kit.crypto import DataKeyring
from gateway.models import TeamMember
from gateway.settings import Settings
from tests.factories import add_member, make_team, staff_token
from tests.gateway.helpers import last_event
from tests.gateway.ig.helpers import IG_SUBJECT, bearer, events, ig_token, member_token, partnership, view

EVENTS = "/api/v1/audit/events"


@dataclass(frozen=True)
class Trail:
    """Two children pushed by a health system, two views by two members, one refused view."""

    first_child: uuid.UUID
    second_child: uuid.UUID
    police: TeamMember
    social: TeamMember
    outsider: TeamMember
    police_view: AuditEvent
    social_view: AuditEvent
    refusal: AuditEvent
    token: str


@pytest.fixture
def trail(
    client: TestClient, session: Session, settings: Settings, signing_keys: SigningKeys, keyring: DataKeyring
) -> Trail:
    """Build a trail with events of every kind of actor, action, purpose and outcome."""
    seeded = partnership(client, session, settings, signing_keys, keyring, children=2)
    first, second = seeded.children
    police, police_token = member_token(
        session, settings, signing_keys, seeded.team, agency="police", role="police_officer"
    )
    social, social_token = member_token(
        session, settings, signing_keys, seeded.team, agency="social_care", role="social_worker"
    )
    outsider = add_member(session, make_team(session, name="Elsewhere"), agency="education", role="teacher")
    assert view(client, police_token, first).status_code == 200
    police_view = last_event(session, AuditAction.STAFF_VIEW_OPENED)
    assert view(client, social_token, second, purpose="family_help").status_code == 200
    social_view = last_event(session, AuditAction.STAFF_VIEW_OPENED)
    assert view(client, staff_token(signing_keys, settings, outsider), first).status_code == 403
    refusal = last_event(session, AuditAction.STAFF_VIEW_REFUSED)
    return Trail(
        first, second, police, social, outsider, police_view, social_view, refusal, ig_token(signing_keys, settings)
    )


def utc(moment: datetime) -> datetime:
    """Return a stored time as an aware UTC time (SQLite hands them back naive)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def search(http: TestClient, token: str, **params: Any) -> list[int]:
    """Search the trail (one page of up to 500) and return the seqs found."""
    response = http.get(EVENTS, params={"limit": 500, **params}, headers=bearer(token))
    assert response.status_code == 200, response.text
    page = response.json()
    assert page["next"] is None
    return [event["seq"] for event in page["events"]]


def expected(session: Session, keep: Callable[[AuditEvent], bool]) -> list[int]:
    """Return the seqs of the trail's events that `keep` keeps, newest first."""
    return [event.seq for event in reversed(events(session)) if keep(event)]


def test_each_filter_narrows_to_exactly_the_events_it_names(
    client: TestClient, session: Session, trail: Trail
) -> None:
    assert trail.police_view.trace_id is not None
    cases: dict[str, tuple[dict[str, Any], Callable[[AuditEvent], bool], set[int]]] = {
        "child": (
            {"child": str(trail.first_child)},
            lambda e: e.child_id == trail.first_child,
            {trail.police_view.seq, trail.refusal.seq},
        ),
        "actor": ({"actor": trail.police.subject}, lambda e: e.actor_id == trail.police.subject, {trail.police_view.seq}),
        "agency": ({"agency": "police"}, lambda e: e.actor_agency == "police", {trail.police_view.seq}),
        "action": (
            {"action": "staff:view:opened"},
            lambda e: e.action == "staff:view:opened",
            {trail.police_view.seq, trail.social_view.seq},
        ),
        "purpose": ({"purpose": "family_help"}, lambda e: e.purpose == "family_help", {trail.social_view.seq}),
        "outcome": ({"outcome": "denied"}, lambda e: e.outcome == "denied", {trail.refusal.seq}),
        "trace_id": (
            {"trace_id": trail.police_view.trace_id},
            lambda e: e.trace_id == trail.police_view.trace_id,
            {trail.police_view.seq},
        ),
        "all together": (
            {"child": str(trail.second_child), "agency": "social_care", "action": "staff:view:opened",
             "purpose": "family_help", "outcome": "success"},
            lambda e: e.seq == trail.social_view.seq,
            {trail.social_view.seq},
        ),
    }
    for name, (params, keep, must_hold) in cases.items():
        everything = events(session)
        want = expected(session, keep)

        found = search(client, trail.token, **params)

        assert found == want, name
        assert must_hold <= set(found), name
        assert len(found) < len(everything), f"{name} did not narrow"
    # Events of the IG searches themselves are found by their own filters.
    searches = expected(session, lambda e: e.actor_id == IG_SUBJECT)
    assert len(searches) == len(cases)
    assert search(client, trail.token, actor=IG_SUBJECT, action="ig:audit:searched") == searches


def test_the_actor_filter_is_exact(client: TestClient, trail: Trail) -> None:
    assert search(client, trail.token, actor=trail.police.subject.upper()) == []
    assert search(client, trail.token, actor=trail.police.subject[:-1]) == []
    assert search(client, trail.token, child=str(uuid.uuid4())) == []


def test_since_is_inclusive_and_until_exclusive_in_any_zone(
    client: TestClient, session: Session, trail: Trail
) -> None:
    boundary = utc(trail.social_view.occurred_at)
    east = boundary.astimezone(timezone(timedelta(hours=5, minutes=30))).isoformat()
    west = boundary.astimezone(timezone(timedelta(hours=-8))).isoformat()

    want_since = expected(session, lambda e: utc(e.occurred_at) >= boundary)
    found_since = search(client, trail.token, since=east)
    want_until = expected(session, lambda e: utc(e.occurred_at) < boundary)
    found_until = search(client, trail.token, until=west)
    found_instant = search(client, trail.token, since=east, until=(boundary + timedelta(microseconds=1)).isoformat())

    assert found_since == want_since
    assert trail.social_view.seq in found_since and trail.police_view.seq not in found_since
    assert found_until == want_until
    assert trail.police_view.seq in found_until and trail.social_view.seq not in found_until
    assert found_instant == [trail.social_view.seq]


@pytest.mark.parametrize(
    ("params", "location"),
    [
        ({"action": "staff:view:peeked"}, "query.action"),
        ({"agency": "fire_brigade"}, "query.agency"),
        ({"purpose": "curiosity"}, "query.purpose"),
        ({"outcome": "maybe"}, "query.outcome"),
        ({"child": "not-a-uuid"}, "query.child"),
        ({"trace_id": "4BF92F3577B34DA6A3CE929D0E0E4736"}, "query.trace_id"),
        ({"limit": 0}, "query.limit"),
        ({"limit": 501}, "query.limit"),
        ({"before": 0}, "query.before"),
        ({"since": "yesterday"}, "query.since"),
    ],
)
def test_an_invalid_parameter_is_422_naming_it(
    client: TestClient, settings: Settings, signing_keys: SigningKeys, params: dict[str, Any], location: str
) -> None:
    response = client.get(EVENTS, params=params, headers=bearer(ig_token(signing_keys, settings)))

    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert [e["location"] for e in response.json()["errors"]] == [location]


@pytest.mark.parametrize("name", ["since", "until"])
def test_a_time_without_a_zone_is_422_naming_the_parameter(
    client: TestClient, settings: Settings, signing_keys: SigningKeys, name: str
) -> None:
    response = client.get(EVENTS, params={name: "2026-11-24T09:00:00"}, headers=bearer(ig_token(signing_keys, settings)))

    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["detail"] == f"{name} needs a time zone, e.g. 2026-11-24T09:00:00Z"


def test_paging_walks_every_event_once_newest_first(client: TestClient, session: Session, trail: Trail) -> None:
    everything = [event.seq for event in reversed(events(session))]
    assert len(everything) > 6

    found: list[int] = []
    pages = 0
    url: str | None = f"{EVENTS}?limit=3"
    while url is not None:
        response = client.get(url, headers=bearer(trail.token))
        assert response.status_code == 200, response.text
        page = response.json()
        assert len(page["events"]) <= 3
        found += [event["seq"] for event in page["events"]]
        url = page["next"]
        pages += 1

    assert found == everything  # each once, newest first, none of the searches' own events
    assert pages == -(-len(everything) // 3)  # no empty last page


def test_paging_keeps_the_filters(client: TestClient, session: Session, trail: Trail) -> None:
    want = expected(session, lambda e: e.actor_agency == "health")
    assert len(want) >= 4

    found: list[int] = []
    # A zone with a "+" must survive into `next` still encoded, or the next page reads a space.
    params: dict[str, Any] | None = {"agency": "health", "since": "2000-01-01T00:00:00+01:00", "limit": 1}
    url: str | None = EVENTS
    while url is not None:
        response = client.get(url, params=params, headers=bearer(trail.token))
        assert response.status_code == 200, response.text
        page = response.json()
        found += [event["seq"] for event in page["events"]]
        assert all(event["actor"]["agency"] == "health" for event in page["events"])
        url, params = page["next"], None
        if url is not None:
            assert "agency=health" in url and "limit=1" in url and "since=2000-01-01T00%3A00%3A00%2B01%3A00" in url

    assert found == want


def test_a_listed_event_shows_its_columns_and_counts_its_items(client: TestClient, trail: Trail) -> None:
    response = client.get(EVENTS, params={"actor": trail.police.subject}, headers=bearer(trail.token))

    assert response.status_code == 200, response.text
    [listed] = response.json()["events"]
    stored = trail.police_view
    assert listed["seq"] == stored.seq
    assert datetime.fromisoformat(listed["occurred_at"]) == utc(stored.occurred_at)
    assert listed["actor"] == {"type": "user", "id": trail.police.subject, "agency": "police", "role": "police_officer"}
    assert (listed["action"], listed["outcome"], listed["child_id"]) == (
        "staff:view:opened",
        "success",
        str(trail.first_child),
    )
    assert (listed["purpose"], listed["lawful_basis"], listed["policy_version"]) == (
        "child_protection",
        stored.lawful_basis,
        stored.policy_version,
    )
    assert listed["item_counts"] == dict(Counter(ref.decision for ref in decode_items(stored.items)))
    assert sum(listed["item_counts"].values()) == 2  # the two attendances pushed
    assert listed["detail"] == stored.detail
    assert (listed["request_id"], listed["trace_id"]) == (stored.request_id, stored.trace_id)
    assert (listed["prev_hash"], listed["hash"]) == (stored.prev_hash, stored.hash)
    assert "items" not in listed and "canonical" not in listed


def test_one_event_has_canonical_bytes_whose_leaf_hash_is_its_hash(client: TestClient, trail: Trail) -> None:
    stored = trail.police_view

    response = client.get(f"{EVENTS}/{stored.seq}", headers=bearer(trail.token))

    assert response.status_code == 200, response.text
    event = response.json()
    canonical = base64.b64decode(event["canonical"], validate=True)
    digest = hashlib.sha256(b"\x00" + canonical).digest()
    assert digest == base64.b64decode(event["leaf_hash"], validate=True) == leaf_hash(canonical)
    assert digest.hex() == stored.hash == event["hash"]
    content = json.loads(canonical)
    assert (content["seq"], content["prev_hash"], content["child_id"]) == (
        stored.seq,
        stored.prev_hash,
        str(trail.first_child),
    )
    assert sorted((i["item"], i["decision"], i["rule"]) for i in event["items"]) == sorted(
        (str(ref.item), ref.decision, ref.rule) for ref in decode_items(stored.items)
    )
    assert len(event["items"]) == 2


def test_an_unknown_event_is_404_and_not_audited(client: TestClient, session: Session, trail: Trail) -> None:
    newest = events(session)[-1].seq

    response = client.get(f"{EVENTS}/{newest + 100}", headers=bearer(trail.token))

    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["detail"] == f"there is no audit event {newest + 100}"
    assert events(session)[-1].seq == newest


def test_a_search_is_audited_with_the_filter_names_not_their_values(
    client: TestClient, session: Session, trail: Trail
) -> None:
    found = search(
        client, trail.token, child=str(trail.first_child), actor=trail.police.subject, action="staff:view:opened"
    )

    searched = last_event(session, AuditAction.IG_AUDIT_SEARCHED)
    assert found == [trail.police_view.seq]
    assert (searched.actor_id, searched.actor_role, searched.outcome) == (IG_SUBJECT, "ig_officer", "success")
    assert searched.child_id == trail.first_child
    assert searched.detail == {"filters": ["child", "actor", "action"], "returned": 1}
    assert searched.items == []


def test_a_search_by_time_trace_and_kind_is_audited_without_the_values(
    client: TestClient, session: Session, trail: Trail
) -> None:
    trace_id = trail.police_view.trace_id
    assert trace_id is not None
    params = {
        "agency": "police",
        "purpose": "child_protection",
        "outcome": "success",
        "since": "2020-01-01T00:00:00+01:00",
        "until": "2999-01-01T00:00:00Z",
        "trace_id": trace_id,
    }

    found = search(client, trail.token, **params)

    searched = last_event(session, AuditAction.IG_AUDIT_SEARCHED)
    assert found == [trail.police_view.seq]
    assert searched.child_id is None
    assert searched.detail == {
        "filters": ["agency", "purpose", "outcome", "since", "until", "trace_id"],
        "returned": 1,
    }
    text = json.dumps(searched.detail)
    for value in (trace_id, "2020", "2999", "child_protection", "police"):
        assert value not in text


def test_reading_one_event_is_audited(client: TestClient, session: Session, trail: Trail) -> None:
    response = client.get(f"{EVENTS}/{trail.refusal.seq}", headers=bearer(trail.token))

    assert response.status_code == 200, response.text
    read = last_event(session, AuditAction.IG_AUDIT_SEARCHED)
    assert read.actor_id == IG_SUBJECT
    assert read.child_id == trail.first_child
    assert read.detail == {"filters": ["seq"], "returned": 1}

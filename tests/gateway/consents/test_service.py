"""Which decisions are in force: per scope, the newest recorded whose period covers the moment (pure)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from gateway.consents.service import current
from gateway.models import Consent
from policies import ConsentStatus, Purpose

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def _consent(
    recorded_days_ago: int,
    *,
    status: str = "given",
    purpose: str = "family_help",
    agencies: tuple[str, ...] = (),
    categories: tuple[str, ...] = (),
    start: datetime | None = None,
    end: datetime | None = None,
) -> Consent:
    recorded_at = NOW - timedelta(days=recorded_days_ago)
    return Consent(
        id=uuid.uuid4(),
        child_id=uuid.uuid4(),
        given_by="parental_responsibility",
        giver_relationship="mother",
        status=ConsentStatus(status),
        purpose=Purpose(purpose),
        agencies=list(agencies),
        categories=list(categories),
        period_start=recorded_at if start is None else start,
        period_end=end,
        recorded_by="someone@test.example",
        recorded_at=recorded_at,
    )


def test_the_newest_of_a_scope_wins_whatever_the_order_given() -> None:
    given, withdrawn = _consent(10), _consent(2, status="withdrawn")

    assert current([given, withdrawn], at=NOW) == [withdrawn]
    assert current([withdrawn, given], at=NOW) == [withdrawn]


def test_a_decision_for_several_agencies_stays_in_force_for_those_a_newer_one_does_not_name() -> None:
    both = _consent(10, agencies=("health", "police"))
    police_refused = _consent(2, status="refused", agencies=("police",))

    assert current([both, police_refused], at=NOW) == [police_refused, both]


def test_every_agency_and_every_category_are_scopes_of_their_own() -> None:
    everything = _consent(10)
    health = _consent(9, status="refused", agencies=("health",))
    encounters = _consent(8, status="refused", categories=("health.encounter",))
    protection = _consent(7, purpose="child_protection")

    assert current([everything, health, encounters, protection], at=NOW) == [protection, encounters, health, everything]


def test_periods_decide_what_covers_the_moment() -> None:
    older = _consent(30)
    ended = _consent(20, status="refused", start=NOW - timedelta(days=20), end=NOW - timedelta(days=1))
    future = _consent(1, status="refused", start=NOW + timedelta(days=1))
    ends_now = _consent(5, status="refused", agencies=("police",), end=NOW)
    open_start = _consent(3, agencies=("education",), start=NOW)
    open_start.period_start = None

    assert current([older, ended, future, ends_now, open_start], at=NOW) == [open_start, older]
    # A moment inside the ended refusal's period: it was in force then.
    assert current([older, ended, future], at=NOW - timedelta(days=5)) == [ended]
    # Before a decision was recorded it did not exist, whatever period it names.
    backdated = _consent(1, status="withdrawn", start=NOW - timedelta(days=60))
    assert current([older, backdated], at=NOW - timedelta(days=5)) == [older]
    assert current([older, backdated], at=NOW) == [backdated]
    assert current([], at=NOW) == []

"""The sharing workflow on a real `gateway serve` with two workers on PostgreSQL, clients racing.

Members of the allocated team ask to see the same withheld item at once (each gets their own
request; one member asking twice at once gets one request and a 409); two approvers answer one
request at once (one 200, one 409, one audit event); an outsider breaks the glass from several
clients at once (one grant, the rest 409); two managers of another team open the child's case at
once (one case, one 409); members record consents while others search for the child; and views
keep answering throughout. Afterwards the
stored rows say the same, and the audit trail verifies.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from audit import AuditEvent
from gateway.keys import KeyFolder
from gateway.kit.db import build_engine, build_sessionmaker
from gateway.models import BreakGlass, Case, Consent, Item, SeeRequest, Team
from gateway.settings import Settings
from policies import CaseStatus
from tests.factories import add_member, child_bundle, demo_child, encounter, make_team, staff_token
from tests.gateway.helpers import FHIR_JSON
from tests.gateway.test_under_load import allocate_children, audit_problems, set_up
from tests.serving import log_tail, scratch_database, serve_gateway

REQUEST_TIMEOUT = 30.0
ASKERS = 6


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _race(calls: list[Callable[[], int]]) -> list[int]:
    """Run the calls at once (released together by a barrier); return their statuses, sorted."""
    start = threading.Barrier(len(calls))
    statuses: list[int] = []
    lock = threading.Lock()

    def run(call: Callable[[], int]) -> None:
        start.wait(timeout=REQUEST_TIMEOUT)
        status = call()
        with lock:
            statuses.append(status)

    threads = [threading.Thread(target=run, args=(call,), daemon=True) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=4 * REQUEST_TIMEOUT)
    assert not any(thread.is_alive() for thread in threads), "a client is still waiting"
    return sorted(statuses)


def test_members_race_to_ask_answer_and_break_the_glass(database_url: str, tmp_path: Path) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("PostgreSQL load test; the suite runs on SQLite (GATEWAY_TEST_DATABASE_URL is not PostgreSQL)")
    log_path = tmp_path / "gateway-serve.log"
    child = demo_child()
    with scratch_database(database_url, tmp_path, prefix="gw_sharing_load") as url:
        partnership = set_up(url, tmp_path, clients=1)
        settings = Settings()
        keys = KeyFolder(partnership.keys_dir).signing_keys()
        with serve_gateway(partnership.env, log_path=log_path, workers=2) as base_url:
            with httpx.Client(base_url=base_url, timeout=REQUEST_TIMEOUT) as http:
                bundle = child_bundle(child, encounters=[encounter(sensitive=True), encounter(sensitive=False)])
                pushed = http.post("/fhir/R4", content=json.dumps(bundle, default=str),
                                   headers={**FHIR_JSON, **_bearer(partnership.client_tokens[0])})
                assert pushed.status_code == 200, pushed.text
            [child_id] = allocate_children(partnership, [child.nhs_number])
            engine = build_engine(url)
            try:
                with build_sessionmaker(engine)() as session:
                    team = session.get(Team, partnership.team_id)
                    assert team is not None
                    tokens: dict[str, Any] = {
                        "askers": [staff_token(keys, settings, add_member(session, team, agency="police", role="police_officer")) for _ in range(ASKERS)],
                        "health": staff_token(keys, settings, add_member(session, team, agency="health", role="health_practitioner")),
                        "lead": staff_token(keys, settings, add_member(session, team, agency="social_care", role="lead_practitioner")),
                        "outsider": staff_token(keys, settings, add_member(session, make_team(session, name="Elsewhere"), agency="police", role="police_officer")),
                    }
                    # A second team, whose two managers will race to open the child's case.
                    other = make_team(session, name="North East MACPT")
                    second_lead = add_member(session, other, agency="social_care", role="lead_practitioner").subject
                    tokens["managers"] = [
                        staff_token(keys, settings, add_member(session, other, agency="social_care", role="team_manager"))
                        for _ in range(2)
                    ]
                    second_team = other.id
                    labelled = session.execute(select(Item.id, Item.security_labels).where(Item.child_id == child_id)).all()
                    sensitive = next((item_id for item_id, labels in labelled if labels), None)
                    session.commit()
            finally:
                engine.dispose()
            assert sensitive is not None

            def ask(token: str) -> Callable[[], int]:
                def call() -> int:
                    with httpx.Client(base_url=base_url, timeout=REQUEST_TIMEOUT) as http:
                        return http.post(f"/api/v1/children/{child_id}/requests", headers=_bearer(token),
                                         json={"item_id": str(sensitive), "justification": "Strategy meeting at 10."}).status_code
                return call

            def view(token: str) -> Callable[[], int]:
                def call() -> int:
                    with httpx.Client(base_url=base_url, timeout=REQUEST_TIMEOUT) as http:
                        return http.get(f"/api/v1/children/{child_id}/view", params={"purpose": "child_protection"},
                                        headers=_bearer(token)).status_code
                return call

            # Every member asks at once, one of them twice, while two views are opened.
            asked = _race([*(ask(t) for t in tokens["askers"]), ask(tokens["askers"][0]), view(tokens["health"]), view(tokens["lead"])])
            assert asked == [200, 200] + [201] * ASKERS + [409], asked

            with httpx.Client(base_url=base_url, timeout=REQUEST_TIMEOUT) as http:
                pending = http.get("/api/v1/requests", params={"status": "pending"}, headers=_bearer(tokens["health"])).json()
            assert len(pending["requests"]) == ASKERS
            first = pending["requests"][0]["id"]

            def decide(token: str, decision: str) -> Callable[[], int]:
                def call() -> int:
                    with httpx.Client(base_url=base_url, timeout=REQUEST_TIMEOUT) as http:
                        return http.post(f"/api/v1/requests/{first}/decision", headers=_bearer(token),
                                         json={"decision": decision}).status_code
                return call

            assert _race([decide(tokens["health"], "approve"), decide(tokens["lead"], "decline")]) == [200, 409]

            def glass() -> int:
                with httpx.Client(base_url=base_url, timeout=REQUEST_TIMEOUT) as http:
                    return http.post(f"/api/v1/children/{child_id}/break-glass", headers=_bearer(tokens["outsider"]),
                                     json={"reason": "Custody suite, 2 am.", "purpose": "child_protection"}).status_code

            assert _race([glass] * 4) == [201, 409, 409, 409]
            assert _race([view(tokens["outsider"]) for _ in range(3)]) == [200, 200, 200]

            def post(token: str, path: str, body: dict[str, Any]) -> Callable[[], int]:
                def call() -> int:
                    with httpx.Client(base_url=base_url, timeout=REQUEST_TIMEOUT) as http:
                        return http.post(path, headers=_bearer(token), json=body).status_code
                return call

            # Two managers of another team open the same child's case at once: one case, one 409.
            case = {"team_id": str(second_team), "child_id": str(child_id), "lead_practitioner": second_lead}
            assert _race([post(token, "/api/v1/cases", case) for token in tokens["managers"]]) == [201, 409]
            # Members record consent decisions while others search for the child and the lead opens the view.
            given = {"status": "given", "purpose": "family_help", "given_by": "child", "giver_relationship": "self"}
            consents = [post(t, f"/api/v1/children/{child_id}/consents", given) for t in tokens["askers"][:3]]
            searches = [post(t, "/api/v1/children/search", {"nhs_number": child.nhs_number}) for t in tokens["askers"][3:]]
            assert _race([*consents, *searches, view(tokens["lead"])]) == [200] * 4 + [201] * 3

        problems = audit_problems(partnership.env)
        engine = build_engine(url)
        try:
            with build_sessionmaker(engine)() as session:
                requests = session.scalars(select(SeeRequest)).all()
                decided = session.scalar(select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "staff:request:decided"))
                grants = session.scalar(select(func.count()).select_from(BreakGlass))
                consents_stored = session.scalar(select(func.count()).select_from(Consent))
                second_cases = session.scalar(
                    select(func.count()).select_from(Case).where(Case.team_id == second_team, Case.status == CaseStatus.OPEN)
                )
                searches_audited = session.scalar(
                    select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "staff:search:performed")
                )
                glass_views = session.scalar(
                    select(func.count()).select_from(AuditEvent).where(
                        AuditEvent.action == "staff:view:opened", AuditEvent.actor_id.like("police.%"),
                        AuditEvent.child_id == child_id,
                    )
                )
        finally:
            engine.dispose()

    tail = log_tail(log_path)
    assert len(requests) == ASKERS, tail
    assert len({r.requester for r in requests}) == ASKERS
    # Whichever approver won, the request was decided once, and the others are untouched.
    statuses = sorted(r.status.value for r in requests)
    assert statuses in (["approved"] + ["pending"] * (ASKERS - 1), ["declined"] + ["pending"] * (ASKERS - 1)), statuses
    assert decided == 1 and grants == 1
    assert (consents_stored, second_cases, searches_audited) == (3, 1, 3)
    assert glass_views is not None and glass_views >= 3
    assert not problems, problems

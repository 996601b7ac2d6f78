"""$person-info-query on a real `gateway serve` with two workers on PostgreSQL: agencies query at once
while a health system pushes Patients.

Four agency systems (one of each agency) each send a run of queries at the same time: permitted
(s47) about children open to the team and about nobody, and referred (s17) about children open to
the team, while the health system pushes new Patients. Every query is answered as the ISA says;
afterwards the audit trail holds exactly one event per query, of the right action, the lead
practitioner's queue one referral per referred query, the pushes' children are all stored, and
the trail verifies.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from audit import AuditAction, AuditEvent
from gateway.demo.generator import DemoChild, patient_resource, transaction_bundle
from gateway.keys import KeyFolder
from gateway.kit.db import build_engine, build_sessionmaker
from gateway.mais.service import PERSON_INFO_QUERY
from gateway.models import ChildIdentifier, PersonQueryReferral, Team
from gateway.settings import Settings
from policies import Agency
from tests.factories import add_member, child_bundle, client_token, make_client
from tests.gateway.helpers import FHIR_JSON
from tests.gateway.test_under_load import allocate_children, audit_problems, set_up, synthetic_children
from tests.serving import log_tail, scratch_database, serve_gateway

REQUEST_TIMEOUT = 30.0
ROUNDS = 4  # each querier sends ROUNDS x (known s47, unknown s47, known s17)
PUSHES = 4
PATIENTS_PER_PUSH = 5
KNOWN = 3
S47 = "https://www.legislation.gov.uk/ukpga/1989/41/section/47"
S17 = "http://www.legislation.gov.uk/ukpga/1989/41/section/17"


def _query(child: DemoChild, reason: str) -> str:
    resource = {
        "resourceType": "Patient",
        "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": child.nhs_number}],
        "name": [{"family": child.family_name, "given": list(child.given_names)}],
        "birthDate": child.birth_date.isoformat(),
    }
    return json.dumps(
        {"resourceType": "Parameters", "parameter": [{"name": "resource", "resource": resource}, {"name": "reason", "valueUri": reason}]}
    )


def _kind(answer: dict[str, Any]) -> str:
    """Say what an answer was: known (match true with a contact), unknown (match false) or referred."""
    names = [parameter["name"] for parameter in answer["parameter"]]
    if "reference" in names:
        return "referred"
    match = next(p["valueBoolean"] for p in answer["parameter"] if p["name"] == "match")
    return "known" if match and "contact" in names else "unknown"


def test_agencies_query_at_once_while_patients_are_pushed(database_url: str, tmp_path: Path) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("PostgreSQL load test; the suite runs on SQLite (GATEWAY_TEST_DATABASE_URL is not PostgreSQL)")
    log_path = tmp_path / "gateway-serve.log"
    taken: set[str] = set()
    known = synthetic_children(KNOWN, taken)
    fresh = [synthetic_children(PATIENTS_PER_PUSH, taken) for _ in range(PUSHES)]
    # Nobody: never pushed (drawn here, in the main thread, distinct from every pushed number).
    nobody = [synthetic_children(ROUNDS, taken) for _ in Agency]
    with scratch_database(database_url, tmp_path, prefix="gw_mais_load") as url:
        partnership = set_up(url, tmp_path, clients=1)
        settings = Settings()
        keys = KeyFolder(partnership.keys_dir).signing_keys()
        engine = build_engine(url)
        try:
            with build_sessionmaker(engine)() as session:
                team = session.get(Team, partnership.team_id)
                assert team is not None
                add_member(session, team, agency="social_care", role="lead_practitioner")
                queriers = [make_client(session, agency=agency, kinds=(PERSON_INFO_QUERY,))[0] for agency in Agency]
                query_tokens = [client_token(keys, settings, querier) for querier in queriers]
                session.commit()
        finally:
            engine.dispose()
        push_token = partnership.client_tokens[0]
        with serve_gateway(partnership.env, log_path=log_path, workers=2) as base_url:
            with httpx.Client(base_url=base_url, timeout=REQUEST_TIMEOUT) as http:
                for index, child in enumerate(known):
                    pushed = http.post("/fhir/R4", content=json.dumps(child_bundle(child, patient_id=f"k{index}")),
                                       headers={**FHIR_JSON, "Authorization": f"Bearer {push_token}"})
                    assert pushed.status_code == 200, pushed.text
            allocate_children(partnership, [child.nhs_number for child in known])

            answers: list[tuple[str, str]] = []
            problems: list[str] = []
            lock = threading.Lock()
            start = threading.Barrier(len(query_tokens) + PUSHES)

            def querier(token: str, number: int) -> Callable[[], None]:
                def run() -> None:
                    start.wait(timeout=REQUEST_TIMEOUT)
                    with httpx.Client(base_url=base_url, timeout=REQUEST_TIMEOUT) as http:
                        for round_ in range(ROUNDS):
                            child = known[(number + round_) % KNOWN]
                            for expected, body in (
                                ("known", _query(child, S47)),
                                ("unknown", _query(nobody[number][round_], S47)),
                                ("referred", _query(child, S17)),
                            ):
                                response = http.post("/fhir/R4/Patient/$person-info-query", content=body,
                                                     headers={**FHIR_JSON, "Authorization": f"Bearer {token}"})
                                with lock:
                                    if response.status_code != 200:
                                        problems.append(f"{response.status_code} {response.text[:300]}")
                                    else:
                                        answers.append((expected, _kind(response.json())))
                return run

            def pusher(batch: list[DemoChild], number: int) -> Callable[[], None]:
                def run() -> None:
                    start.wait(timeout=REQUEST_TIMEOUT)
                    bundle = transaction_bundle(
                        [patient_resource(c, resource_id=f"f{number}-{i}", postcode=c.postcode) for i, c in enumerate(batch)]
                    )
                    with httpx.Client(base_url=base_url, timeout=REQUEST_TIMEOUT) as http:
                        response = http.post("/fhir/R4", content=json.dumps(bundle, default=str),
                                             headers={**FHIR_JSON, "Authorization": f"Bearer {push_token}"})
                    if response.status_code != 200:
                        with lock:
                            problems.append(f"push {response.status_code} {response.text[:300]}")
                return run

            threads = [
                threading.Thread(target=querier(token, number), daemon=True) for number, token in enumerate(query_tokens)
            ] + [threading.Thread(target=pusher(batch, number), daemon=True) for number, batch in enumerate(fresh)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=20 * REQUEST_TIMEOUT)
            assert not any(thread.is_alive() for thread in threads), f"a client is still waiting\n{log_tail(log_path)}"
        # The server has stopped: every event its requests staged has been integrated.
        assert problems == [], f"{problems}\n{log_tail(log_path)}"
        queries = len(query_tokens) * ROUNDS
        assert Counter(expected for expected, _ in answers) == {"known": queries, "unknown": queries, "referred": queries}
        assert [(e, got) for e, got in answers if e != got] == []
        engine = build_engine(url)
        try:
            with build_sessionmaker(engine)() as session:
                actions = Counter(
                    dict(
                        session.execute(
                            select(AuditEvent.action, func.count()).where(AuditEvent.action.like("client:person-query:%"))
                            .group_by(AuditEvent.action)
                        ).all()
                    )
                )
                referrals = session.scalar(select(func.count()).select_from(PersonQueryReferral))
                referred_children = set(session.scalars(select(PersonQueryReferral.child_id)))
                linked = session.scalar(select(func.count()).select_from(ChildIdentifier))
        finally:
            engine.dispose()
        assert actions == {
            AuditAction.CLIENT_PERSON_QUERY_ANSWERED.value: 2 * queries,
            AuditAction.CLIENT_PERSON_QUERY_REFERRED.value: queries,
        }
        assert referrals == queries  # one allocation each: one referral per referred query
        assert len(referred_children) == KNOWN
        assert linked == KNOWN + PUSHES * PATIENTS_PER_PUSH  # every pushed child stored, once
        assert audit_problems(partnership.env) == []

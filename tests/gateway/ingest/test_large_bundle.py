"""A 5,000-entry transaction Bundle is accepted by default; beyond the limits, 413 with an OperationOutcome.

The large push goes over HTTP to a real `gateway serve` (two workers on PostgreSQL, one on SQLite)
on a scratch database of the suite's kind (tests/serving.py), with the default limits. Its
Patients carry no NHS number, so each is scored and locks its blocking keys: before lock striping
(gateway/kit/db.py) such a push ran PostgreSQL out of lock table ("out of shared memory"). Run with
`pytest -s` to see the one-line summary it prints.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bench.large_bundle import large_bundle_resources
from gateway.demo.generator import transaction_bundle
from gateway.kit.db import build_engine
from gateway.models import Child, ChildIdentifier, Identity, Item, Link
from gateway.auth.keys import SigningKeys
from gateway.settings import Settings
from tests.factories import client_token, make_client
from tests.gateway.helpers import FHIR_JSON, stored_counts
from tests.gateway.test_under_load import set_up
from tests.serving import log_tail, scratch_database, serve_gateway

ENTRIES = 5_000
PUSH_TIMEOUT = 120.0  # seconds; a liveness bound for the one request, not a speed target


def _bundle(entries: int, *, prefix: str) -> bytes:
    return json.dumps(transaction_bundle(large_bundle_resources(entries, seed=12, prefix=prefix))).encode()


def test_a_5000_entry_transaction_bundle_is_accepted_and_stored_by_a_real_server(
    database_url: str, tmp_path: Path
) -> None:
    postgresql = database_url.startswith("postgresql")
    body = _bundle(ENTRIES, prefix="large")
    log_path = tmp_path / "gateway-serve.log"
    with scratch_database(database_url, tmp_path, prefix="gw_large") as url:
        partnership = set_up(url, tmp_path, clients=1)  # the default limits: nothing raised for this push
        headers = {**FHIR_JSON, "Authorization": f"Bearer {partnership.client_tokens[0]}"}
        with serve_gateway(partnership.env, log_path=log_path, workers=2 if postgresql else 1) as base_url:
            with httpx.Client(base_url=base_url, timeout=PUSH_TIMEOUT) as http:
                started = time.monotonic()
                response = http.post("/fhir/R4", content=body, headers=headers)
                seconds = time.monotonic() - started
            tail = log_tail(log_path)
        engine = build_engine(url)
        try:
            with Session(engine) as session:
                client_id = partnership.client_ids[0]
                identities = session.scalar(
                    select(func.count()).select_from(Identity).where(Identity.client_id == client_id)
                )
                items = session.scalar(select(func.count()).select_from(Item).where(Item.client_id == client_id))
                linked = session.scalar(select(func.count(func.distinct(Link.identity_id))))
                children = session.scalar(select(func.count()).select_from(Child)) or 0
                identifiers = session.scalar(select(func.count()).select_from(ChildIdentifier))
        finally:
            engine.dispose()

    print(
        f"\n[{'postgresql' if postgresql else 'sqlite'}] {ENTRIES:,}-entry transaction ({len(body) / 2**20:.1f} MiB): "
        f"{response.status_code} in {seconds:.1f} s; {identities} identities, {items} items, {children} children"
    )
    assert response.status_code == 200, f"{response.status_code}: {response.text[:500]}\n{tail}"
    answer = response.json()
    assert answer["type"] == "transaction-response"
    assert Counter(entry["response"]["status"] for entry in answer["entry"]) == {"201 Created": ENTRIES}
    assert identities == ENTRIES // 2 and items == ENTRIES // 2
    assert linked == ENTRIES // 2  # every identity linked (or proposed) to a child
    # No NHS numbers: every child was made by scoring, none has an identifier, none is shared
    # by more Patients than scored into it.
    assert identifiers == 0
    assert 0 < children <= ENTRIES // 2


def test_more_entries_than_the_limit_is_413_naming_it_and_stores_nothing(
    client: TestClient, session: Session, settings: Settings, signing_keys: SigningKeys
) -> None:
    assert settings.max_bundle_entries == ENTRIES  # the default
    token = client_token(signing_keys, settings, make_client(session)[0])
    body = _bundle(ENTRIES + 2, prefix="over")
    before = stored_counts(session)

    response = client.post("/fhir/R4", content=body, headers={**FHIR_JSON, "Authorization": f"Bearer {token}"})

    assert response.status_code == 413
    assert response.headers["content-type"].startswith("application/fhir+json")
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    (issue,) = outcome["issue"]
    assert issue["code"] == "too-long" and issue["expression"] == ["Bundle.entry"]
    assert f"at most {ENTRIES} entries" in issue["diagnostics"]
    assert stored_counts(session) == before


def test_a_body_over_the_byte_limit_is_413_naming_it_and_stores_nothing(
    client: TestClient, session: Session, settings: Settings, signing_keys: SigningKeys
) -> None:
    limit = settings.max_body_bytes
    assert limit == 32 * 1024 * 1024  # the default
    token = client_token(signing_keys, settings, make_client(session)[0])
    start = _bundle(2, prefix="bytes")
    padding = b" " * (1024 * 1024)

    def chunks() -> Iterator[bytes]:
        # Streamed (no Content-Length): the limit is enforced on the bytes actually read. A Bundle
        # of two entries, then whitespace (valid JSON) until the body is a mebibyte over the limit.
        yield start
        for _ in range(limit // len(padding) + 1):
            yield padding

    before = stored_counts(session)

    response = client.post("/fhir/R4", content=chunks(), headers={**FHIR_JSON, "Authorization": f"Bearer {token}"})

    assert response.status_code == 413
    assert response.headers["content-type"].startswith("application/fhir+json")
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    (issue,) = outcome["issue"]
    assert issue["code"] == "too-long" and f"at most {limit} bytes" in issue["diagnostics"]
    assert stored_counts(session) == before


def test_an_invalid_entry_of_a_large_bundle_is_named_at_its_location_and_nothing_is_stored(
    client: TestClient, session: Session, settings: Settings, signing_keys: SigningKeys
) -> None:
    token = client_token(signing_keys, settings, make_client(session)[0])
    bundle = transaction_bundle(large_bundle_resources(ENTRIES, seed=12, prefix="bad"))
    bundle["entry"][4321]["resource"]["status"] = 7  # an Encounter's status must be a code
    before = stored_counts(session)

    response = client.post(
        "/fhir/R4", content=json.dumps(bundle), headers={**FHIR_JSON, "Authorization": f"Bearer {token}"}
    )

    assert response.status_code == 400
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert [issue["expression"] for issue in outcome["issue"]] == [["Bundle.entry[4321].resource.status"]]
    assert stored_counts(session) == before

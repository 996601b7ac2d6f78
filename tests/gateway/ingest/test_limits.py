"""A push is bounded before it costs anything: body size, entry count, media type; refusals store nothing."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from adapters import NhsFhirAdapter
from gateway.app import create_app
from gateway.auth.keys import SigningKeys
from gateway.ingest.http import body_reader
from gateway.kit.errors import PayloadTooLarge
from gateway.settings import Settings
from tests.factories import child_bundle, client_token, demo_child, make_client
from tests.gateway.helpers import FHIR_JSON, stored_counts


@pytest.fixture
def app_with_small_cap(
    settings: Settings, engine: Engine, test_sessionmaker: sessionmaker[Session]
) -> Iterator[TestClient]:
    """Yield a client of an app whose pushes may carry at most 5 entries."""
    app = create_app(settings.model_copy(update={"max_bundle_entries": 5}), engine=engine)
    app.state.sessionmaker = test_sessionmaker
    with TestClient(app) as test_client:
        yield test_client


def _token(session: Session, settings: Settings, signing_keys: SigningKeys) -> str:
    source, _key = make_client(session)
    return client_token(signing_keys, settings, source)


def test_a_declared_length_over_the_limit_is_refused_before_reading(
    client: TestClient, session: Session, settings: Settings, signing_keys: SigningKeys
) -> None:
    token = _token(session, settings, signing_keys)
    before = stored_counts(session)
    headers = {**FHIR_JSON, "Authorization": f"Bearer {token}", "Content-Length": str(settings.max_body_bytes + 1)}

    # The body sent is tiny: the gateway must refuse on the declared length alone.
    response = client.post("/fhir/R4", content=b"{}" + b" " * (settings.max_body_bytes - 1), headers=headers)

    assert response.status_code == 413
    assert response.headers["content-type"].startswith("application/fhir+json")
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome" and outcome["issue"][0]["code"] == "too-long"
    assert stored_counts(session) == before


def test_a_streamed_body_is_read_only_up_to_the_limit(app: FastAPI, settings: Settings) -> None:
    chunk = b" " * (1024 * 1024)
    offered = 3 * settings.max_body_bytes // len(chunk)
    received = 0

    async def receive() -> dict[str, object]:
        # A chunked body with no Content-Length, three times the limit, counted as it is taken.
        nonlocal received
        received += 1
        return {"type": "http.request", "body": chunk, "more_body": received < offered}

    scope = {"type": "http", "method": "POST", "path": "/fhir/R4", "headers": [(b"content-type", b"application/fhir+json")],
             "app": app, "query_string": b""}
    read_body = body_reader(NhsFhirAdapter(), default_media_type="application/fhir+json")

    with pytest.raises(PayloadTooLarge):
        asyncio.run(read_body(Request(scope, receive)))

    assert received * len(chunk) <= settings.max_body_bytes + len(chunk)  # it stopped at the limit
    assert received < offered


def test_too_many_entries_is_413_naming_the_cap(
    app_with_small_cap: TestClient, session: Session, settings: Settings, signing_keys: SigningKeys
) -> None:
    token = _token(session, settings, signing_keys)
    bundle = child_bundle(demo_child(), encounters=[])
    bundle["entry"] = bundle["entry"] * 6  # 6 entries against a cap of 5
    before = stored_counts(session)

    response = app_with_small_cap.post(
        "/fhir/R4", content=json.dumps(bundle), headers={**FHIR_JSON, "Authorization": f"Bearer {token}"}
    )

    assert response.status_code == 413
    issue = response.json()["issue"][0]
    assert issue["code"] == "too-long" and "at most 5 entries" in issue["diagnostics"]
    assert issue["expression"] == ["Bundle.entry"]
    assert stored_counts(session) == before


def test_an_unsupported_media_type_is_415(
    client: TestClient, session: Session, settings: Settings, signing_keys: SigningKeys
) -> None:
    token = _token(session, settings, signing_keys)

    response = client.post(
        "/fhir/R4", content=b"name=x", headers={"Content-Type": "text/plain", "Authorization": f"Bearer {token}"}
    )

    assert response.status_code == 415
    assert response.json()["resourceType"] == "OperationOutcome"
    assert "application/fhir+json" in response.json()["issue"][0]["diagnostics"]


def test_every_answer_forbids_caching_and_sniffing(
    client: TestClient, session: Session, settings: Settings, signing_keys: SigningKeys
) -> None:
    token = _token(session, settings, signing_keys)
    pushed = client.post(
        "/fhir/R4",
        content=json.dumps(child_bundle(demo_child())),
        headers={**FHIR_JSON, "Authorization": f"Bearer {token}"},
    )
    refused = client.get("/api/v1/children/00000000-0000-4000-8000-000000000000/view?purpose=child_protection")
    health = client.get("/healthz")

    for response in (pushed, refused, health):
        assert response.headers["cache-control"] == "no-store", response.request.url
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-request-id"]
    assert pushed.status_code == 200 and refused.status_code == 401

"""Errors by name, rendered per family; unexpected ones are a clean 500 and a JSON log line."""

from __future__ import annotations

import io
import json
import logging
from typing import NoReturn

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from audit import AuditAction
from gateway.auth.keys import SigningKeys
from gateway.kit.crypto import DataKeyring
from gateway.kit.logging import JsonFormatter
from gateway.models import Child
from gateway.settings import Settings
from tests.factories import (
    add_member,
    allocate,
    child_bundle,
    client_token,
    demo_child,
    encounter,
    make_client,
    make_team,
    staff_token,
)
from tests.gateway.helpers import child_id_for, get_view, last_event, push

SECRET = "Quillfeather 9434765919"


def _explode(*_args: object, **_kwargs: object) -> NoReturn:
    raise RuntimeError(f"failed on {SECRET}")


def test_an_unexpected_error_is_a_500_problem_and_one_json_line_without_a_traceback(
    client: TestClient,
    session: Session,
    settings: Settings,
    signing_keys: SigningKeys,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    member = add_member(session, make_team(session), agency="police", role="police_officer")
    monkeypatch.setattr("gateway.child_view.service.get", _explode)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logging.getLogger("gateway").addHandler(handler)

    response = get_view(client, staff_token(signing_keys, settings, member), "00000000-0000-4000-8000-000000000000")

    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["title"] == "Internal error" and SECRET not in response.text
    logging.getLogger("gateway").removeHandler(handler)
    logged = stream.getvalue()
    assert "Traceback" not in logged and SECRET not in logged
    lines = [json.loads(line) for line in logged.splitlines() if line.startswith("{")]
    unhandled = [line for line in lines if line["message"] == "unhandled error"]
    assert len(unhandled) == 1
    assert unhandled[0]["event"] == "RuntimeError"
    assert unhandled[0]["path_template"] == "/api/v1/children/{child_id}/view"
    assert unhandled[0]["request_id"] == response.headers["x-request-id"]


def test_an_unexpected_error_on_a_fhir_route_is_an_operation_outcome(
    client: TestClient, session: Session, settings: Settings, signing_keys: SigningKeys, monkeypatch: pytest.MonkeyPatch
) -> None:
    source, _ = make_client(session)
    monkeypatch.setattr("gateway.ingest.endpoints.ingest", _explode)

    response = push(client, client_token(signing_keys, settings, source), child_bundle(demo_child()))

    assert response.status_code == 500
    assert response.headers["content-type"].startswith("application/fhir+json")
    assert response.json()["issue"][0]["code"] == "exception"
    assert SECRET not in response.text


def test_the_token_endpoint_forbids_caching_of_tokens_and_refusals(client: TestClient) -> None:
    refused = client.post("/oauth/token", data={"grant_type": "password"})

    assert refused.status_code == 400 and refused.json()["error"] == "unsupported_grant_type"
    assert refused.headers["cache-control"] == "no-store"
    assert refused.headers["pragma"] == "no-cache"


def test_an_erased_child_is_gone_for_the_view_and_the_refusal_is_audited(
    client: TestClient, session: Session, settings: Settings, signing_keys: SigningKeys, keyring: DataKeyring
) -> None:
    source, _ = make_client(session)
    child = demo_child()
    token = client_token(signing_keys, settings, source)
    assert push(client, token, child_bundle(child, encounters=[encounter()])).status_code == 200
    child_id = child_id_for(session, keyring, child.nhs_number)
    team = make_team(session)
    member = add_member(session, team, agency="health", role="designated_nurse")
    allocate(session, child_id=child_id, team=team)
    stored = session.get(Child, child_id)
    assert stored is not None
    stored.wrapped_data_key = None  # erasure: the child's data key is destroyed
    session.flush()

    viewed = get_view(client, staff_token(signing_keys, settings, member), child_id)
    more = child_bundle(child, encounters=[encounter()])
    more["type"] = "batch"
    pushed_again = push(client, token, more)

    assert viewed.status_code == 410
    assert viewed.headers["content-type"] == "application/problem+json"
    assert viewed.json()["title"] == "Gone" and "erased" in viewed.json()["detail"]
    refused = last_event(session, AuditAction.STAFF_VIEW_REFUSED)
    # A person refused is flagged for the IG review queue (gateway/ig/rules.py).
    assert refused.child_id == child_id and refused.detail == {"reason": "erased", "review": ["refused"]}
    # Filing more for the erased child is refused entry by entry, in the same words.
    assert pushed_again.status_code == 200
    new_encounter = pushed_again.json()["entry"][1]["response"]
    assert new_encounter["status"].startswith("422")
    issue = new_encounter["outcome"]["issue"][0]
    assert issue["code"] == "deleted" and issue["diagnostics"] == viewed.json()["detail"]


def test_a_staff_error_names_what_was_wrong_without_echoing_it(
    client: TestClient, session: Session, settings: Settings, signing_keys: SigningKeys
) -> None:
    member = add_member(session, make_team(session), agency="police", role="police_officer")

    response = get_view(client, staff_token(signing_keys, settings, member), "not-a-uuid", purpose="gossip")

    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    locations = {error["location"] for error in response.json()["errors"]}
    assert locations == {"path.child_id", "query.purpose"}
    assert "gossip" not in response.text and "not-a-uuid" not in response.text


def test_an_unknown_address_is_a_404_problem(client: TestClient) -> None:
    response = client.get("/api/v1/nowhere")

    assert response.status_code == 404 and response.json()["title"] == "Not found"


def test_a_database_that_times_out_is_a_503_to_retry(
    client: TestClient, session: Session, settings: Settings, signing_keys: SigningKeys, monkeypatch: pytest.MonkeyPatch
) -> None:
    source, _ = make_client(session)

    def lock_timeout(*_args: object, **_kwargs: object) -> NoReturn:
        raise OperationalError("UPDATE item ...", {}, Exception("canceling statement due to lock timeout"))

    monkeypatch.setattr("gateway.ingest.endpoints.ingest", lock_timeout)

    response = push(client, client_token(signing_keys, settings, source), child_bundle(demo_child()))

    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    issue = response.json()["issue"][0]
    assert issue["code"] == "transient" and "Try again" in issue["diagnostics"]

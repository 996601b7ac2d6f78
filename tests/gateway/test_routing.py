"""Deny by default: every route is listed public, or refuses a caller without the right token.

Tested by behaviour, over every path of the OpenAPI document, so that a new route that forgets
its authenticated parent fails here whatever FastAPI does inside.
"""

from __future__ import annotations

import re
import uuid

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from gateway.app import ANY_CALLER_PATHS, PUBLIC_PATHS
from gateway.auth.keys import SigningKeys
from gateway.settings import Settings
from tests.factories import add_member, client_token, make_client, make_team, staff_token

PLACEHOLDERS = {
    "child_id": str(uuid.uuid4()),
    "link_id": str(uuid.uuid4()),
    "resource_type": "Patient",
    "resource_id": "x1",
    "seq": "1",
    "entry_id": str(uuid.uuid4()),
    "request_id": str(uuid.uuid4()),
    "team_id": str(uuid.uuid4()),
    "member_id": str(uuid.uuid4()),
    "case_id": str(uuid.uuid4()),
    "referral_id": str(uuid.uuid4()),
}


def _operations(app: FastAPI) -> list[tuple[str, str, str]]:
    operations: list[tuple[str, str, str]] = []
    for template, methods in app.openapi()["paths"].items():
        concrete = re.sub(r"\{(\w+)\}", lambda m: PLACEHOLDERS[m.group(1)], template)
        operations.extend((method.upper(), template, concrete) for method in methods)
    return operations


def test_public_paths_exist(app: FastAPI) -> None:
    assert PUBLIC_PATHS <= set(app.openapi()["paths"])


def test_every_other_route_refuses_a_caller_without_a_token(app: FastAPI, client: TestClient) -> None:
    guarded = [(m, t, c) for m, t, c in _operations(app) if t not in PUBLIC_PATHS]
    assert guarded, "no guarded routes found: the test would prove nothing"
    for method, template, concrete in guarded:
        response = client.request(method, concrete, params={"purpose": "child_protection"})
        assert response.status_code == 401, f"{method} {template} answered {response.status_code} without a token"


@pytest.mark.parametrize("caller", ["staff", "client"])
def test_staff_and_client_routes_refuse_each_other(
    app: FastAPI, client: TestClient, session: Session, settings: Settings, signing_keys: SigningKeys, caller: str
) -> None:
    if caller == "staff":
        member = add_member(session, make_team(session), agency="police", role="police_officer")
        token, foreign_prefix = staff_token(signing_keys, settings, member), "/fhir/"
    else:
        source, _ = make_client(session)
        token, foreign_prefix = client_token(signing_keys, settings, source), "/api/"
    shared = PUBLIC_PATHS | ANY_CALLER_PATHS
    foreign = [(m, t, c) for m, t, c in _operations(app) if t.startswith(foreign_prefix) and t not in shared]
    assert foreign
    for method, template, concrete in foreign:
        response = client.request(
            method, concrete, params={"purpose": "child_protection"}, headers={"Authorization": f"Bearer {token}"}
        )
        assert response.status_code == 403, f"{caller} reached {method} {template}: {response.status_code}"


@pytest.mark.parametrize("caller", ["staff", "client"])
def test_the_logs_checkpoint_and_key_are_open_to_every_authenticated_caller(
    app: FastAPI, client: TestClient, session: Session, settings: Settings, signing_keys: SigningKeys, caller: str
) -> None:
    if caller == "staff":
        member = add_member(session, make_team(session), agency="police", role="police_officer")
        token = staff_token(signing_keys, settings, member)
    else:
        token = client_token(signing_keys, settings, make_client(session)[0])
    assert ANY_CALLER_PATHS <= set(app.openapi()["paths"])
    for path in sorted(ANY_CALLER_PATHS):
        # 404 is the checkpoint of a log not yet signed in this test's database: reached, not refused.
        response = client.get(path, headers={"Authorization": f"Bearer {token}"})
        assert response.status_code in (200, 404), f"{caller} refused at {path}: {response.status_code}"
        assert client.get(path).status_code == 401

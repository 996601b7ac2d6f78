"""The OpenAPI document tells the truth: property-based requests built from it never get a 5xx,
and every response matches the document (status, content type, schema).

Bounded: a fixed number of examples per operation, derandomised, so it costs seconds in CI.
Each operation is called with the right kind of token (agency system or staff), so the
generated bodies reach the adapter and the services rather than stopping at 401.
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance
from sqlalchemy.orm import Session

from gateway.auth.keys import SigningKeys
from gateway.settings import Settings
from tests.factories import add_member, client_token, make_client, make_team, staff_token

EXAMPLES_PER_OPERATION = 25


def test_the_document_declares_bodies_security_and_errors(app: FastAPI) -> None:
    document = app.openapi()
    push = document["paths"]["/fhir/R4"]["post"]

    assert set(push["requestBody"]["content"]) == {"application/fhir+json", "application/fhir+xml"}
    assert {"200", "400", "401", "403", "413", "415", "422", "503"} <= set(push["responses"])
    assert set(push["responses"]["413"]["content"]) == {"application/fhir+json"}
    assert push["security"] == [{"HTTPBearer": []}]
    assert document["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    view = document["paths"]["/api/v1/children/{child_id}/view"]["get"]
    assert {"200", "401", "403", "410", "422"} <= set(view["responses"])
    assert set(view["responses"]["403"]["content"]) == {"application/problem+json"}
    assert "security" not in document["paths"]["/healthz"]["get"]


def test_generated_requests_get_no_5xx_and_responses_match_the_document(
    app: FastAPI, session: Session, settings: Settings, signing_keys: SigningKeys
) -> None:
    source, _key = make_client(session)
    member = add_member(session, make_team(session), agency="police", role="police_officer")
    tokens = {
        "/fhir/": client_token(signing_keys, settings, source),
        "/api/": staff_token(signing_keys, settings, member),
    }
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [_operation(result) for result in schema.get_all_operations()]
    assert len(operations) >= 7, "the document lost operations"
    tried = 0

    def check_operation(operation: Any, headers: dict[str, Any]) -> None:
        @settings_for_operation
        @given(case=operation.as_strategy())
        def check(case: Any) -> None:
            nonlocal tried
            tried += 1
            response = case.call(headers=headers)
            case.validate_response(response, checks=[not_a_server_error, response_schema_conformance])

        check()

    for operation in operations:
        token = next((t for prefix, t in tokens.items() if operation.path.startswith(prefix)), None)
        check_operation(operation, {"Authorization": f"Bearer {token}"} if token else {})
    assert tried >= len(operations) * 5, f"only {tried} requests were tried"


def _operation(result: Any) -> Any:
    """Return the operation of a schema result, failing the test if the document is invalid."""
    operation = result.ok()  # raises on an operation the document describes invalidly
    assert operation is not None
    return operation


settings_for_operation = settings(
    max_examples=EXAMPLES_PER_OPERATION,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)


@pytest.mark.parametrize("purpose", ["child_protection", "family_help"])
def test_unknown_children_get_the_documented_403(
    app: FastAPI, session: Session, settings: Settings, signing_keys: SigningKeys, purpose: str
) -> None:
    member = add_member(session, make_team(session), agency="health", role="designated_nurse")
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operation = schema["/api/v1/children/{child_id}/view"]["GET"]
    headers = {"Authorization": f"Bearer {staff_token(signing_keys, settings, member)}"}

    @settings_for_operation
    @given(child_id=st.uuids())
    def check(child_id: Any) -> None:
        case = operation.Case(path_parameters={"child_id": str(child_id)}, query={"purpose": purpose})
        response = case.call(headers=headers)
        assert response.status_code == 403
        case.validate_response(response, checks=[not_a_server_error, response_schema_conformance])

    check()

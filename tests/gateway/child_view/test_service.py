"""The view's project step shows only what the decisions allow, and never unseals what is redacted."""

from __future__ import annotations

from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from gateway.app import create_app
from gateway.auth.keys import SigningKeys
from gateway.kit import crypto
from gateway.kit.crypto import DataKeyring
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
from tests.gateway.helpers import child_id_for, get_view, push

DEFAULT_ISA = resources.files("policies").joinpath("isa/default.yaml")


@pytest.fixture
def redacting_client(
    settings: Settings, engine: Engine, test_sessionmaker: sessionmaker[Session], tmp_path: Path
) -> Iterator[TestClient]:
    """Yield a client of an app whose ISA redacts the summary of health records for child protection."""
    text = DEFAULT_ISA.read_text()
    rule = "    decision: disclose\n    lawful_basis: public_task\n    reason: Shared for child protection"
    assert text.count(rule) >= 1
    text = text.replace(rule, rule.replace("decision: disclose", "decision: redact\n    redact_fields: [summary]"), 1)
    policy_path = tmp_path / "redacting.yaml"
    policy_path.write_text(text)
    app = create_app(settings.model_copy(update={"policy_path": policy_path}), engine=engine)
    app.state.sessionmaker = test_sessionmaker
    with TestClient(app) as test_client:
        yield test_client


def test_a_redacted_summary_is_shown_as_redacted_and_never_decrypted(
    redacting_client: TestClient,
    session: Session,
    settings: Settings,
    signing_keys: SigningKeys,
    keyring: DataKeyring,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    source, _ = make_client(session)
    child = demo_child()
    token = client_token(signing_keys, settings, source)
    assert push(redacting_client, token, child_bundle(child, encounters=[encounter()])).status_code == 200
    child_id = child_id_for(session, keyring, child.nhs_number)
    team = make_team(session)
    member = add_member(session, team, agency="police", role="police_officer")
    allocate(session, child_id=child_id, team=team)
    unsealed: list[str] = []
    real_unseal = crypto.unseal_value

    def counting_unseal(key: bytes, blob: bytes, type_: type[object], *, context: str) -> object:
        unsealed.append(context.split(":", 1)[0])
        return real_unseal(key, blob, type_, context=context)

    monkeypatch.setattr("gateway.child_view.service.unseal_value", counting_unseal)

    viewed = get_view(redacting_client, staff_token(signing_keys, settings, member), child_id)

    assert viewed.status_code == 200, viewed.text
    [entry] = viewed.json()["timeline"]
    assert entry["summary"] == "[redacted]" and entry["redacted_fields"] == ["summary"]
    assert entry["decision"]["kind"] == "redact" and entry["decision"]["rule_id"] == "cp.health"
    assert "item" not in unsealed  # the item's sealed content was never decrypted

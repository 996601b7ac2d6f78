"""Personal data is encrypted at rest: no NHS number, name or summary is stored in clear."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import Connection, text
from sqlalchemy.orm import Session

from gateway.auth.keys import SigningKeys
from gateway.settings import Settings
from tests.factories import child_bundle, client_token, demo_child, encounter, make_client
from tests.gateway.helpers import push


def test_nothing_personal_is_stored_in_clear(
    client: TestClient, session: Session, connection: Connection, settings: Settings, signing_keys: SigningKeys
) -> None:
    source, _ = make_client(session)
    child = demo_child(family_name="Quillfeather", address_lines=["77 Unmistakable Row"])
    push(client, client_token(signing_keys, settings, source), child_bundle(child, encounters=[encounter()]))

    dumped: list[str] = []
    for table in ("child", "child_identifier", "identity", "link", "item", "audit_event"):
        for row in connection.execute(text(f"SELECT * FROM {table}")):  # noqa: S608 - fixed table names
            dumped.extend(bytes(v).hex() if isinstance(v, (bytes, memoryview)) else str(v) for v in row)
    everything = " ".join(dumped)

    assert len(dumped) > 10
    for secret in (child.nhs_number, "Quillfeather", "Unmistakable", "Emergency department"):
        assert secret not in everything
        assert secret.encode().hex() not in everything

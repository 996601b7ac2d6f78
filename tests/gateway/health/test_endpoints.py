"""GET /healthz and /readyz."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import create_engine

from gateway.app import create_app
from gateway.kit.migrate import head_revision
from gateway.settings import Settings


def test_healthz(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}


def test_readyz_reports_head(client: TestClient) -> None:
    response = client.get("/readyz")

    assert response.status_code == 200
    assert response.json()["migrations"]["current"] == head_revision()


def test_readyz_refuses_an_unmigrated_database(settings: Settings, tmp_path: Path) -> None:
    empty = create_engine(f"sqlite:///{tmp_path / 'empty.sqlite3'}")
    with TestClient(create_app(settings, engine=empty)) as client:
        response = client.get("/readyz")

    assert response.status_code == 503
    assert response.json()["migrations"]["current"] is None

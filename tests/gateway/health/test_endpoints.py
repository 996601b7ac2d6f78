"""GET /healthz and /readyz."""

from __future__ import annotations

from sqlalchemy import create_engine

from gateway.app import create_app
from gateway.kit.migrate import head_revision


def test_healthz(client) -> None:  # type: ignore[no-untyped-def]
    assert client.get("/healthz").json() == {"status": "ok"}


def test_readyz_reports_head(client) -> None:  # type: ignore[no-untyped-def]
    response = client.get("/readyz")

    assert response.status_code == 200
    assert response.json()["migrations"]["current"] == head_revision()


def test_readyz_refuses_an_unmigrated_database(settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from fastapi.testclient import TestClient

    empty = create_engine(f"sqlite:///{tmp_path / 'empty.sqlite3'}")
    with TestClient(create_app(settings, engine=empty)) as client:
        response = client.get("/readyz")

    assert response.status_code == 503
    assert response.json()["migrations"]["current"] is None

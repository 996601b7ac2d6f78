"""The `gateway` command: the demo loads through the real path; `audit verify` catches tampering."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select, text
from typer.testing import CliRunner

from audit import AuditEvent
from gateway.cli import app
from gateway.kit.db import build_engine
from gateway.models import Case, Child, Item
from tests.serving import scratch_database
from tests.tamper import disable_audit_triggers


@pytest.fixture
def scratch_url(database_url: str, tmp_path: Path) -> Iterator[str]:
    """Yield the URL of an empty database of the suite's kind, for commands that commit."""
    with scratch_database(database_url, tmp_path, prefix="gw_cli") as url:
        yield url


def test_demo_load_then_verify_then_detect_tampering(scratch_url: str, tmp_path: Path) -> None:
    env = {"GATEWAY_DATABASE_URL": scratch_url, "GATEWAY_KEYS_DIR": str(tmp_path / "keys")}
    runner = CliRunner()

    loaded = runner.invoke(app, ["demo", "--load-only", "--children", "6"], env=env)
    assert loaded.exit_code == 0, loaded.output
    assert "6 synthetic children" in loaded.output

    engine = build_engine(scratch_url)
    with engine.connect() as connection:
        assert connection.scalar(select(func.count()).select_from(Child)) == 6
        assert connection.scalar(select(func.count()).select_from(Case)) == 5  # one child in six unallocated
        assert connection.execute(select(func.count()).select_from(Item)).scalar_one() > 6
        events = connection.scalar(select(func.count()).select_from(AuditEvent))

    reloaded = runner.invoke(app, ["demo", "--load-only", "--children", "6"], env=env)
    assert reloaded.exit_code == 0 and "already loaded" in reloaded.output

    clean = runner.invoke(app, ["audit", "verify"], env=env)
    assert clean.exit_code == 0, clean.output
    assert f"audit trail intact: {events} events" in clean.output

    with engine.begin() as connection:
        disable_audit_triggers(connection)  # a rogue administrator; verify must still catch it
        connection.execute(text("UPDATE audit_event SET outcome = 'success' WHERE seq = 3 AND outcome <> 'success'"))
        connection.execute(text("UPDATE audit_event SET actor_id = 'someone-else' WHERE seq = 3"))
    engine.dispose()

    broken = runner.invoke(app, ["audit", "verify"], env=env)
    assert broken.exit_code == 1
    assert "first broken event: 3" in broken.output


def test_serve_refuses_an_unmigrated_database(tmp_path: Path) -> None:
    env = {"GATEWAY_DATABASE_URL": f"sqlite:///{tmp_path / 'new.sqlite3'}", "GATEWAY_KEYS_DIR": str(tmp_path)}

    result = CliRunner().invoke(app, ["serve"], env=env)

    assert result.exit_code == 1
    assert "gateway db upgrade" in result.output


def test_dev_token_needs_a_whole_identity(tmp_path: Path) -> None:
    env = {"GATEWAY_KEYS_DIR": str(tmp_path)}
    runner = CliRunner()
    assert runner.invoke(app, ["keys", "create"], env=env).exit_code == 0

    assert runner.invoke(app, ["dev-token", "--subject", "x@test.example"], env=env).exit_code == 2
    token = runner.invoke(
        app, ["dev-token", "--subject", "x@test.example", "--agency", "police", "--role", "police_officer"], env=env
    )
    assert token.exit_code == 0
    assert token.output.count(".") == 2  # a compact JWS


def test_db_upgrade_brings_a_new_database_to_head(tmp_path: Path) -> None:
    from gateway.kit.migrate import current_revision, head_revision

    url = f"sqlite:///{tmp_path / 'fresh.sqlite3'}"

    result = CliRunner().invoke(app, ["db", "upgrade"], env={"GATEWAY_DATABASE_URL": url})

    assert result.exit_code == 0, result.output
    engine = create_engine(url)
    with engine.connect() as connection:
        assert current_revision(connection) == head_revision() is not None
    engine.dispose()

"""The `gateway` command: the demo loads through the real path; `audit verify` catches tampering."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select, text
from typer.testing import CliRunner

from adapters.education import EXAMPLE_CSV
from audit import AuditEvent
from gateway.cli import app
from gateway.kit.db import build_engine
from gateway.models import Case, Child, Item, SchoolContact, Team
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


def test_the_log_is_checked_with_the_public_key_alone(scratch_url: str, tmp_path: Path) -> None:
    """What an IG officer does: take the key and a checkpoint, export a period, check it offline."""
    env = {"GATEWAY_DATABASE_URL": scratch_url, "GATEWAY_KEYS_DIR": str(tmp_path / "keys")}
    runner = CliRunner()
    assert runner.invoke(app, ["demo", "--load-only", "--children", "6"], env=env).exit_code == 0

    key = runner.invoke(app, ["audit", "public-key"], env=env)
    assert key.exit_code == 0 and key.output.startswith("macpt-gateway.invalid/audit+")
    key_file = tmp_path / "audit.vkey"
    key_file.write_text(key.output)
    signed = runner.invoke(app, ["audit", "checkpoint"], env=env)
    assert signed.exit_code == 0 and signed.output.startswith("macpt-gateway.invalid/audit\n")
    checkpoint = tmp_path / "checkpoint.txt"
    checkpoint.write_text(signed.output)
    size = int(signed.output.splitlines()[1])

    proof = runner.invoke(app, ["audit", "proof", "3"], env=env)
    assert proof.exit_code == 0 and f'"tree_size": {size}' in proof.output
    missing = runner.invoke(app, ["audit", "proof", str(size + 1)], env=env)
    assert missing.exit_code == 1 and f"event {size + 1} is not in a tree of {size} events" in missing.output

    trusted = runner.invoke(app, ["audit", "verify", "--trusted", str(checkpoint), "--public-key", str(key_file)], env=env)
    assert trusted.exit_code == 0, trusted.output
    assert "audit trail intact: 0 events" in trusted.output  # nothing after the trusted checkpoint

    export = tmp_path / "export.jsonl"
    exported = runner.invoke(
        app, ["audit", "export", str(export), "--from", "2000-01-01T00:00:00Z", "--to", "2100-01-01T00:00:00Z"], env=env
    )
    assert exported.exit_code == 0, exported.output
    offline = {"GATEWAY_KEYS_DIR": str(tmp_path / "nowhere")}  # the key file only: no keys folder, no database
    checked = runner.invoke(app, ["audit", "verify", "--export", str(export), "--public-key", str(key_file)], env=offline)
    assert checked.exit_code == 0, checked.output
    assert f"export intact: {size} events" in checked.output

    data = bytearray(export.read_bytes())
    data[len(data) // 2] ^= 0x01
    export.write_bytes(bytes(data))
    altered = runner.invoke(app, ["audit", "verify", "--export", str(export), "--public-key", str(key_file)], env=offline)
    assert altered.exit_code == 1 and "EXPORT BROKEN at line" in altered.output

    naive = runner.invoke(app, ["audit", "export", str(export), "--from", "2000-01-01", "--to", "2100-01-01"], env=env)
    assert naive.exit_code == 2 and "need a time zone" in naive.output
    empty = runner.invoke(
        app, ["audit", "export", str(export), "--from", "2000-01-01T00:00:00Z", "--to", "2000-01-02T00:00:00Z"], env=env
    )
    assert empty.exit_code == 1 and "no events in that period" in empty.output

    engine = build_engine(scratch_url)
    with engine.begin() as connection:
        disable_audit_triggers(connection)
        connection.execute(text("UPDATE audit_checkpoint SET note = replace(note, '\n\n', '\n\n\n') WHERE tree_size = :size"), {"size": size})
    engine.dispose()
    forged = runner.invoke(app, ["audit", "verify"], env=env)
    assert forged.exit_code == 1 and f"bad checkpoint: tree size {size}" in forged.output

    wrong_key = tmp_path / "wrong.vkey"
    wrong_key.write_text("not a key")
    refused = runner.invoke(app, ["audit", "verify", "--public-key", str(wrong_key)], env=env)
    assert refused.exit_code == 2 and "cannot read the public key" in refused.output


def test_import_education_reports_each_row_and_a_repeat_stores_nothing(scratch_url: str, tmp_path: Path) -> None:
    env = {"GATEWAY_DATABASE_URL": scratch_url, "GATEWAY_KEYS_DIR": str(tmp_path / "keys")}
    runner = CliRunner()
    assert runner.invoke(app, ["demo", "--load-only", "--children", "6"], env=env).exit_code == 0
    extract = tmp_path / "attendance.csv"
    extract.write_text(EXAMPLE_CSV)
    report = tmp_path / "report.json"

    first = runner.invoke(
        app, ["import", "education", str(extract), "--client", "demo-school-mis", "--report", str(report)], env=env
    )
    again = runner.invoke(app, ["import", "education", str(extract), "--client", "demo-school-mis"], env=env)
    unknown = runner.invoke(app, ["import", "education", str(extract), "--client", "nobody"], env=env)
    broken = tmp_path / "broken.csv"
    broken.write_text(EXAMPLE_CSV.replace("2018-03-14", "2099-03-14"))
    partly = runner.invoke(app, ["import", "education", str(broken), "--client", "demo-school-mis"], env=env)

    assert first.exit_code == 0 and "3 created, 0 unchanged, 0 rejected" in first.output, first.output
    assert json.loads(report.read_text())["summary"] == {"created": 3, "unchanged": 0, "rejected": 0}
    assert again.exit_code == 0 and "0 created, 3 unchanged, 0 rejected" in again.output
    assert unknown.exit_code == 2 and "no registered client" in unknown.output
    assert partly.exit_code == 1 and "row 2, column birth_date" in partly.output and "1 rejected" in partly.output


def test_school_contacts_and_webhooks_are_set_from_the_command_line(scratch_url: str, tmp_path: Path) -> None:
    env = {"GATEWAY_DATABASE_URL": scratch_url, "GATEWAY_KEYS_DIR": str(tmp_path / "keys")}
    runner = CliRunner()
    assert runner.invoke(app, ["demo", "--load-only", "--children", "6"], env=env).exit_code == 0

    added = runner.invoke(app, ["schools", "add-contact", "--subject", "dsl@new.example", "--name", "N", "--urn", "999777"], env=env)
    bad = runner.invoke(app, ["schools", "add-contact", "--subject", "x@new.example", "--name", "X", "--urn", "9997"], env=env)
    removed = runner.invoke(app, ["schools", "remove-contact", "--subject", "dsl@new.example", "--urn", "999777"], env=env)
    engine = create_engine(scratch_url)
    with engine.connect() as connection:
        active = connection.execute(select(SchoolContact.active).where(SchoolContact.subject == "dsl@new.example")).all()
        team_id = connection.scalar(select(Team.id).where(Team.name == "Northshire MACPT"))
    engine.dispose()
    hook = runner.invoke(app, ["webhook", "set", "--team", str(team_id), "--url", "https://case.example/hook"], env=env)
    plain = runner.invoke(app, ["webhook", "set", "--team", str(team_id), "--url", "http://case.example/hook"], env=env)

    assert added.exit_code == 0 and "URN 999777" in added.output
    assert bad.exit_code == 2 and "six digits" in bad.output
    assert removed.exit_code == 0 and active == [(False,)]
    assert hook.exit_code == 0 and "whsec_" in hook.output
    assert plain.exit_code == 2 and "https" in plain.output


def test_policy_check_accepts_the_shipped_isa_and_names_the_line_of_a_mistake(tmp_path: Path) -> None:
    shipped = Path(__file__).resolve().parents[2] / "policies" / "isa" / "default.yaml"
    broken = tmp_path / "isa.yaml"
    text = shipped.read_text().replace("lawful_basis: consent", "lawful_basis: goodwill", 1)
    broken.write_text(text)
    line = text.splitlines().index("    lawful_basis: goodwill") + 1
    runner = CliRunner()

    ok = runner.invoke(app, ["policy", "check", str(shipped)])
    refused = runner.invoke(app, ["policy", "check", str(broken)])

    assert ok.exit_code == 0 and ok.output.startswith("ok: default-macpt-isa version 2026.1: 6 rules"), ok.output
    assert refused.exit_code == 1, refused.output
    assert f"isa.yaml:{line}: rules.5.lawful_basis: " in refused.output and "goodwill" in refused.output


def test_policy_schema_prints_the_shipped_schema() -> None:
    shipped = Path(__file__).resolve().parents[2] / "policies" / "isa" / "schema.json"

    printed = CliRunner().invoke(app, ["policy", "schema"])

    assert printed.exit_code == 0 and json.loads(printed.output) == json.loads(shipped.read_text())

"""`gateway policy explain` and `gateway policy diff`, on a database the commands open themselves."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from audit import AuditAction, AuditEvent, decode_items
from gateway.app import create_app
from gateway.cli import app as cli
from gateway.keys import KeyFolder
from gateway.kit.db import build_engine
from gateway.kit.migrate import upgrade
from gateway.settings import Settings
from tests.factories import add_member, allocate, child_bundle, client_token, demo_child, encounter, make_client, make_team
from tests.gateway.child_view.helpers import store_police_items
from tests.gateway.helpers import child_id_for, push
from tests.serving import scratch_database

SHIPPED = resources.files("policies").joinpath("isa/default.yaml")
POLICE_ITEMS = 10
ENCOUNTERS = 4


@dataclass(frozen=True)
class Population:
    """A scratch database with one child allocated to a team of two, its records pushed for real."""

    url: str
    engine: Engine
    child_id: uuid.UUID
    police_member: str
    health_member: str
    items: int


@pytest.fixture(scope="module")
def population(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Population]:
    folder = tmp_path_factory.mktemp("cli_policy")
    with scratch_database(database_url, folder, prefix="gw_cli_policy") as url:
        keys_dir = folder / "keys"
        KeyFolder(keys_dir).create_missing(audit_origin=Settings().audit_origin)
        settings = Settings(
            database_url=url,
            keys_dir=keys_dir,
            audit_checkpoint_interval_s=0,
            encompass_sweep_interval_s=0,
            webhook_interval_s=0,
            audit_append="inline",
            review_working_hours="00:00-00:00",
            review_working_days="1-7",
        )
        engine = build_engine(url)
        upgrade(engine)
        keys = KeyFolder(keys_dir)
        gateway = create_app(settings, engine=engine)
        try:
            with TestClient(gateway) as http, gateway.state.sessionmaker() as session:
                source, _ = make_client(session)
                session.commit()
                child = demo_child()
                attendances = [encounter(sensitive=n == 1) for n in range(ENCOUNTERS)]
                bundle = child_bundle(child, encounters=attendances)
                assert push(http, client_token(keys.signing_keys(), settings, source), bundle).status_code == 200
                child_id = child_id_for(session, keys.data_keyring(), child.nhs_number)
                store_police_items(session, keys.data_keyring(), child_id=child_id, count=POLICE_ITEMS)
                team = make_team(session)
                police = add_member(session, team, agency="police", role="police_officer")
                health = add_member(session, team, agency="health", role="health_visitor")
                allocate(session, child_id=child_id, team=team)
                session.commit()
            yield Population(url, engine, child_id, police.subject, health.subject, ENCOUNTERS + POLICE_ITEMS)
        finally:
            engine.dispose()


def _explained_events(population: Population) -> list[AuditEvent]:
    with Session(population.engine) as session:
        return list(
            session.scalars(
                select(AuditEvent).where(AuditEvent.action == AuditAction.IG_POLICY_EXPLAINED).order_by(AuditEvent.seq)
            )
        )


def _isa_without(rule_id: str, tmp_path: Path) -> Path:
    data = yaml.safe_load(SHIPPED.read_text())
    data["rules"] = [rule for rule in data["rules"] if rule["id"] != rule_id]
    path = tmp_path / f"without-{rule_id}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _shipped_copy(tmp_path: Path) -> Path:
    path = tmp_path / "in-force.yaml"
    path.write_bytes(SHIPPED.read_bytes())
    return path


# -- explain -------------------------------------------------------------------------------------


def test_explain_prints_each_items_decision_and_a_summary(population: Population) -> None:
    before = len(_explained_events(population))

    result = CliRunner().invoke(
        cli,
        [
            "policy", "explain",
            "--child", str(population.child_id),
            "--viewer", population.police_member,
            "--purpose", "child_protection",
            "--database-url", population.url,
        ],
    )

    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith(f"child {population.child_id}, purpose child_protection, ISA default-macpt-isa@")
    assert f"viewer {population.police_member}: police_officer (police)" in lines[1]
    assert "relationship allocated_team" in lines[1]
    events = _explained_events(population)
    assert len(events) == before + 1
    event = events[-1]
    assert (event.actor_type, event.actor_id, event.child_id) == ("system", "cli", population.child_id)
    decided = decode_items(event.items)
    assert len(decided) == population.items
    item_lines = lines[2:-1]
    assert len(item_lines) == population.items
    for ref, line in zip(sorted(decided), sorted(item_lines), strict=True):
        item_id, agency, kind, category, decision, rule, *_reason = line.split("  ")
        assert (item_id, decision.split("[")[0], rule) == (str(ref.item), ref.decision, ref.rule)
        assert agency in {"health", "police"} and kind and category.startswith(f"{agency}.")
    assert lines[-1].startswith(f"{population.items} items: ")
    assert "disclose: " in lines[-1] and "indicate: " in lines[-1]
    # Ids and facts only: no record's summary, no child's name.
    assert "Police record" not in result.output and "Testington" not in result.output


def test_explain_for_a_viewer_not_on_the_team_says_so(population: Population) -> None:
    result = CliRunner().invoke(
        cli,
        [
            "policy", "explain",
            "--child", str(population.child_id),
            "--viewer", "nobody@test.example",
            "--purpose", "family_help",
            "--database-url", population.url,
        ],
    )

    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "nobody@test.example is not an active member of the team allocated to this child" in lines[1]
    assert all("withhold_silently  builtin.no-relationship" in line for line in lines[2:-1])
    assert lines[-1] == f"{population.items} items: withhold_silently: {population.items}"


def test_explain_refuses_an_unknown_child_and_records_nothing(population: Population) -> None:
    before = len(_explained_events(population))
    unknown = uuid.uuid4()

    result = CliRunner().invoke(
        cli,
        [
            "policy", "explain",
            "--child", str(unknown),
            "--viewer", population.police_member,
            "--purpose", "child_protection",
            "--database-url", population.url,
        ],
    )

    assert result.exit_code == 1
    assert f"refused: No child {unknown} is known to the gateway." in result.output
    assert len(_explained_events(population)) == before


def test_explain_refuses_an_unknown_purpose(population: Population) -> None:
    before = len(_explained_events(population))

    result = CliRunner().invoke(
        cli,
        [
            "policy", "explain",
            "--child", str(population.child_id),
            "--viewer", population.police_member,
            "--purpose", "curiosity",
            "--database-url", population.url,
        ],
    )

    assert result.exit_code == 2
    assert "--purpose must be one of: child_protection, family_help" in result.output
    assert len(_explained_events(population)) == before


# -- diff ----------------------------------------------------------------------------------------


def test_diff_of_identical_files_prints_no_change(population: Population, tmp_path: Path) -> None:
    in_force = _shipped_copy(tmp_path)

    result = CliRunner().invoke(
        cli, ["policy", "diff", str(in_force), str(SHIPPED), "--database-url", population.url]
    )

    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    # One child, two members, both purposes.
    assert lines[2].startswith(f"compared {population.items * 2 * 2} decisions (children with an open case: 1;")
    assert lines[-1] == "no decisions change"


def test_diff_where_new_drops_a_rule_prints_the_changes(population: Population, tmp_path: Path) -> None:
    in_force = _shipped_copy(tmp_path)
    proposed = _isa_without("cp.police", tmp_path)
    before = len(_explained_events(population))

    result = CliRunner().invoke(
        cli,
        ["policy", "diff", str(in_force), str(proposed), "--limit", "2"],
        env={"GATEWAY_DATABASE_URL": population.url},
    )

    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    change = "disclose/cp.police -> withhold_silently/builtin.default-deny"
    [counted] = [line for line in lines if line.endswith(change) and not line.startswith(f"  {population.child_id}")]
    changed = int(counted.split()[0])
    assert lines[3] == f"{changed} decisions change:"
    # The police items cp.police shares today, for each of the two members, for child protection only.
    assert changed > 0 and changed % 2 == 0 and changed <= 2 * POLICE_ITEMS
    listed = [line for line in lines if line.startswith(f"  {population.child_id}")]
    assert len(listed) == 2
    for line in listed:
        child, viewer, purpose, _item, *_decisions = line.split()
        assert child == str(population.child_id) and purpose == "child_protection"
        assert viewer in {population.police_member, population.health_member} and line.endswith(change)
    event = _explained_events(population)[-1]
    assert len(_explained_events(population)) == before + 1
    assert event.detail["command"] == "diff" and event.detail["changed"] == changed


def test_diff_names_the_file_and_line_of_a_broken_isa(population: Population, tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text(SHIPPED.read_text().replace("decision: disclose", "decision: share", 1))
    before = len(_explained_events(population))

    result = CliRunner().invoke(
        cli, ["policy", "diff", str(SHIPPED), str(broken), "--database-url", population.url]
    )

    assert result.exit_code == 1
    assert f"refused: {broken}:" in result.output and ".decision:" in result.output
    assert len(_explained_events(population)) == before

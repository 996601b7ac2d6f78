"""ISA versions: stored once per text with their hash, reloaded safely, explained and compared."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, create_engine, select
from sqlalchemy.orm import Session, sessionmaker
from starlette.datastructures import State

from audit import AuditAction, AuditEvent, decode_items
from gateway.app import create_app
from gateway.auth.keys import SigningKeys
from gateway.kit.auditor import Auditor
from gateway.kit.crypto import DataKeyring
from gateway.kit.db import build_engine, build_sessionmaker
from gateway.kit.errors import Conflict, NotFound
from gateway.kit.migrate import upgrade
from gateway.models import Case, PolicyVersion, Team
from gateway.policy_admin.loaded import LoadedPolicy, parse_policy, read_policy, sha256_of
from gateway.policy_admin.service import (
    CLI,
    POLICY_LOADER,
    PolicyWatch,
    diff,
    explain,
    reload_policy,
    store,
    store_at_start,
)
from gateway.settings import Settings
from policies import CaseStatus, DecisionKind, PolicyError, Purpose
from tests.factories import add_member
from tests.gateway.child_view.helpers import SeededChild, seed_child
from tests.gateway.helpers import get_view, last_event
from tests.serving import scratch_database

SHIPPED = resources.files("policies").joinpath("isa/default.yaml")


def _versions(session: Session, sha256: str | None = None) -> list[PolicyVersion]:
    query = select(PolicyVersion).order_by(PolicyVersion.first_loaded_at)
    if sha256 is not None:
        query = query.where(PolicyVersion.sha256 == sha256)
    return list(session.scalars(query))


def _events(session: Session, action: str) -> list[AuditEvent]:
    return list(session.scalars(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.seq)))


def _isa_text(**changes: Any) -> str:
    """Return the shipped ISA as YAML with top-level fields changed (`drop_rule=` removes a rule by id)."""
    data = yaml.safe_load(SHIPPED.read_text())
    dropped = changes.pop("drop_rule", None)
    if dropped is not None:
        kept = [rule for rule in data["rules"] if rule["id"] != dropped]
        assert len(kept) == len(data["rules"]) - 1, f"the shipped ISA has no rule {dropped}"
        data["rules"] = kept
    data.update(changes)
    return yaml.safe_dump(data, sort_keys=False)


# -- storing ------------------------------------------------------------------------------------


def test_the_hash_is_of_the_exact_text_and_the_same_text_loads_as_the_same_policy(tmp_path: Path) -> None:
    text = SHIPPED.read_text().replace("\n", "\r\n")  # line endings are part of the text
    path = tmp_path / "isa.yaml"
    path.write_bytes(text.encode())

    loaded = read_policy(path)

    assert loaded.sha256 == hashlib.sha256(text.encode()).hexdigest() != read_policy(None).sha256
    assert loaded.text == text
    assert read_policy(path) is loaded and sha256_of(loaded.policy) == loaded.sha256
    assert read_policy(None).policy.id == loaded.policy.id


def test_a_started_gateway_stores_its_isa_once_however_often_it_loads(
    client: TestClient, app: FastAPI, session: Session, test_sessionmaker: sessionmaker[Session]
) -> None:
    loaded: LoadedPolicy = app.state.loaded_policy
    assert loaded.sha256 == hashlib.sha256(SHIPPED.read_bytes()).hexdigest()

    # A second worker starting with the same file.
    assert store_at_start(test_sessionmaker, read_policy(None)) is True

    [row] = _versions(session, loaded.sha256)
    assert (row.policy_id, row.version) == (loaded.policy.id, loaded.policy.version)
    assert row.text == SHIPPED.read_text() and hashlib.sha256(row.text.encode()).hexdigest() == row.sha256
    first, second = _events(session, AuditAction.SYSTEM_POLICY_LOADED)
    assert first.actor_type == "system" and first.actor_id == POLICY_LOADER.id
    assert first.policy_version == loaded.label
    assert first.detail == {
        "policy_id": loaded.policy.id,
        "version": loaded.policy.version,
        "sha256": loaded.sha256,
        "new": True,
    }
    assert second.detail["new"] is False and second.detail["sha256"] == loaded.sha256


def test_a_changed_text_is_a_second_version(session: Session) -> None:
    shipped = read_policy(None)
    changed = parse_policy(_isa_text(version="2026.2").encode(), source="changed.yaml")
    auditor = Auditor(session, POLICY_LOADER)

    store(session, shipped, auditor=auditor)
    assert store(session, changed, auditor=auditor) is True
    assert store(session, changed, auditor=auditor) is False
    session.commit()

    assert [row.version for row in _versions(session, shipped.sha256)] == [shipped.policy.version]
    assert [row.version for row in _versions(session, changed.sha256)] == ["2026.2"]
    news = [event.detail["new"] for event in _events(session, AuditAction.SYSTEM_POLICY_LOADED)]
    assert news[-2:] == [True, False]


def test_a_database_not_migrated_is_left_for_later(tmp_path: Path) -> None:
    empty = create_engine(f"sqlite:///{tmp_path / 'empty.sqlite3'}")
    try:
        assert store_at_start(build_sessionmaker(empty), read_policy(None)) is False
    finally:
        empty.dispose()


def test_a_gateway_started_before_its_database_was_migrated_stores_its_isa_once_it_is(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("gateway.policy_admin.service.STORE_RETRY_S", 0.01)
    engine = build_engine(f"sqlite:///{tmp_path / 'late.sqlite3'}")
    factory = build_sessionmaker(engine)
    loaded = read_policy(None)
    state = State({"sessionmaker": factory, "loaded_policy": loaded})

    async def start_then_migrate() -> None:
        watch = PolicyWatch(state, settings)
        await watch.start()  # does not fail: readiness says 503 until the database is migrated
        try:
            await asyncio.to_thread(upgrade, engine)
            while True:  # the watch tries again in the background
                with factory() as session:
                    if _versions(session, loaded.sha256):
                        return
                await asyncio.sleep(0.01)
        finally:
            await watch.stop()

    try:
        asyncio.run(asyncio.wait_for(start_then_migrate(), timeout=60))
        with factory() as session:
            assert len(_versions(session, loaded.sha256)) == 1
            assert [e.detail["new"] for e in _events(session, AuditAction.SYSTEM_POLICY_LOADED)] == [True]
    finally:
        engine.dispose()


def test_two_workers_starting_at_once_store_one_version(database_url: str, tmp_path: Path) -> None:
    """On the suite's database kind: the second insert waits for the first, then stores nothing."""
    new_text = parse_policy(_isa_text(version=f"race-{uuid.uuid4().hex[:8]}").encode(), source="race.yaml")
    with scratch_database(database_url, tmp_path, prefix="gw_policy_race") as url:
        engine = build_engine(url)
        try:
            upgrade(engine)
            factory = build_sessionmaker(engine)
            first_inserted = threading.Event()
            outcomes: dict[str, bool] = {}
            failures: list[BaseException] = []

            def first() -> None:
                with factory() as session:
                    outcomes["first"] = store(session, new_text, auditor=Auditor(session, POLICY_LOADER))
                    first_inserted.set()
                    second_worker.join(timeout=0.5)  # let the second reach its insert, if it can
                    session.commit()

            def second() -> None:
                first_inserted.wait()
                try:
                    outcomes["second"] = store_at_start(factory, new_text)
                except BaseException as failure:  # noqa: BLE001 - the test reports any failure below
                    failures.append(failure)

            second_worker = threading.Thread(target=second)
            first_worker = threading.Thread(target=first)
            second_worker.start()
            first_worker.start()
            first_worker.join()
            second_worker.join()

            assert failures == []
            assert outcomes == {"first": True, "second": True}
            with factory() as session:
                assert len(_versions(session, new_text.sha256)) == 1
                assert [e.detail["new"] for e in _events(session, AuditAction.SYSTEM_POLICY_LOADED)] == [True, False]
        finally:
            engine.dispose()


# -- reloading ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class FileGateway:
    """An app whose ISA is a file the test rewrites."""

    app: FastAPI
    http: TestClient
    settings: Settings
    path: Path


@pytest.fixture
def file_gateway(
    settings: Settings, engine: Engine, test_sessionmaker: sessionmaker[Session], tmp_path: Path
) -> Iterator[FileGateway]:
    path = tmp_path / "isa.yaml"
    path.write_text(_isa_text(version="2026.5"))
    with_file = settings.model_copy(update={"policy_path": path})
    app = create_app(with_file, engine=engine)
    app.state.sessionmaker = test_sessionmaker
    with TestClient(app) as http:
        yield FileGateway(app, http, with_file, path)


def test_a_broken_file_on_reload_keeps_the_version_in_force_and_audits_the_refusal(
    file_gateway: FileGateway, session: Session
) -> None:
    state = file_gateway.app.state
    in_force: LoadedPolicy = state.loaded_policy
    routing = state.routing
    versions = len(_versions(session))
    broken = _isa_text(version="2026.6").replace("decision: disclose", "decision: share", 1)
    file_gateway.path.write_text(broken)

    outcome = reload_policy(state, settings=file_gateway.settings)

    assert outcome.in_force is in_force and not outcome.changed
    assert outcome.error is not None and outcome.error.startswith(f"{file_gateway.path}:")
    assert ".decision:" in outcome.error  # the field at fault, as rules.N.decision
    assert state.loaded_policy is in_force and state.policy is in_force.policy and state.routing is routing
    assert len(_versions(session)) == versions
    refused = last_event(session, AuditAction.SYSTEM_POLICY_REJECTED)
    assert refused.outcome == "failure" and refused.actor_id == POLICY_LOADER.id
    assert refused.policy_version == in_force.label == "default-macpt-isa@2026.5"
    assert refused.detail == {"error": outcome.error, "in_force": in_force.label, "in_force_sha256": in_force.sha256}


def test_an_unreadable_file_on_reload_keeps_the_version_in_force(file_gateway: FileGateway, session: Session) -> None:
    in_force = file_gateway.app.state.loaded_policy
    file_gateway.path.unlink()

    outcome = reload_policy(file_gateway.app.state, settings=file_gateway.settings)

    assert outcome.in_force is in_force and outcome.error == f"{file_gateway.path}: cannot be read (No such file or directory)"
    assert last_event(session, AuditAction.SYSTEM_POLICY_REJECTED).detail["error"] == outcome.error


def test_a_valid_file_on_reload_is_stored_then_put_in_force(
    file_gateway: FileGateway,
    session: Session,
    settings: Settings,
    signing_keys: SigningKeys,
    keyring: DataKeyring,
) -> None:
    state = file_gateway.app.state
    before: LoadedPolicy = state.loaded_policy
    file_gateway.path.write_text(_isa_text(version="2026.7"))

    outcome = reload_policy(state, settings=file_gateway.settings)

    assert outcome.error is None and outcome.changed
    after = outcome.in_force
    assert after.policy.version == "2026.7" and after.sha256 != before.sha256
    assert state.loaded_policy is after and state.policy is after.policy and state.routing.policy is after.policy
    [row] = _versions(session, after.sha256)
    assert row.text == file_gateway.path.read_text()
    assert last_event(session, AuditAction.SYSTEM_POLICY_LOADED).detail["sha256"] == after.sha256
    # The next view is decided, and audited, under the new version.
    child = seed_child(file_gateway.http, session, settings, signing_keys, keyring, encounters=2)
    assert get_view(file_gateway.http, child.token, child.child_id).json()["policy"]["version"] == "2026.7"
    opened = last_event(session, AuditAction.STAFF_VIEW_OPENED)
    assert opened.policy_version == "default-macpt-isa@2026.7" and opened.detail["policy_sha256"] == after.sha256
    # The same file again: nothing new, nothing changed.
    again = reload_policy(state, settings=file_gateway.settings)
    assert again.in_force is after and not again.changed and len(_versions(session, after.sha256)) == 1


def test_sighup_reloads_the_policy_in_the_serving_process(
    test_sessionmaker: sessionmaker[Session], settings: Settings, session: Session, tmp_path: Path
) -> None:
    path = tmp_path / "isa.yaml"
    path.write_text(_isa_text(version="2026.8"))
    with_file = settings.model_copy(update={"policy_path": path})
    state = State({"sessionmaker": test_sessionmaker, "loaded_policy": read_policy(path)})
    state.policy = state.loaded_policy.policy

    async def serve() -> LoadedPolicy:
        watch = PolicyWatch(state, with_file)
        await watch.start()
        try:
            assert watch.reloads_on_sighup, "pytest runs tests in the main thread, where signals arrive"
            path.write_text(_isa_text(version="2026.9"))
            os.kill(os.getpid(), signal.SIGHUP)
            while state.loaded_policy.policy.version != "2026.9":  # the reload runs in a thread
                await asyncio.sleep(0.01)
            return state.loaded_policy  # type: ignore[no-any-return]  # State holds Any
        finally:
            await watch.stop()

    handler_before = signal.getsignal(signal.SIGHUP)

    reloaded = asyncio.run(asyncio.wait_for(serve(), timeout=30))

    assert state.policy is reloaded.policy and len(_versions(session, reloaded.sha256)) == 1
    assert signal.getsignal(signal.SIGHUP) == handler_before  # stopping the watch gives SIGHUP back


# -- the view's audit -----------------------------------------------------------------------------


def test_the_view_audit_names_the_sha256_of_the_text_that_decided_it(
    client: TestClient,
    app: FastAPI,
    session: Session,
    settings: Settings,
    signing_keys: SigningKeys,
    keyring: DataKeyring,
) -> None:
    child = seed_child(client, session, settings, signing_keys, keyring, encounters=3)

    assert get_view(client, child.token, child.child_id).status_code == 200

    opened = last_event(session, AuditAction.STAFF_VIEW_OPENED)
    sha256 = hashlib.sha256(SHIPPED.read_bytes()).hexdigest()
    assert opened.detail["policy_sha256"] == sha256 == app.state.loaded_policy.sha256
    [stored] = _versions(session, sha256)  # IG fetches the exact text by it
    assert f"{stored.policy_id}@{stored.version}" == opened.policy_version


# -- explain -----------------------------------------------------------------------------------


@pytest.fixture
def seeded(
    client: TestClient, session: Session, settings: Settings, signing_keys: SigningKeys, keyring: DataKeyring
) -> SeededChild:
    """A child with health encounters (some sensitive) and police items of every sort, allocated to a team."""
    return seed_child(client, session, settings, signing_keys, keyring, encounters=8, police_items=12)


@pytest.mark.parametrize("purpose", list(Purpose))
def test_explain_decides_every_item_as_the_view_does(
    client: TestClient, session: Session, seeded: SeededChild, purpose: Purpose
) -> None:
    loaded = read_policy(None)
    assert get_view(client, seeded.token, seeded.child_id, purpose.value).status_code == 200
    viewed = {ref.item: (ref.decision, ref.rule) for ref in decode_items(last_event(session, AuditAction.STAFF_VIEW_OPENED).items)}

    explanation = explain(
        session,
        auditor=Auditor(session, CLI),
        loaded=loaded,
        child_id=seeded.child_id,
        viewer=seeded.member.subject,
        purpose=purpose,
    )
    session.commit()

    assert explanation.member and explanation.facts.relationship == "allocated_team"
    assert {item.item_id: (item.decision.kind.value, item.decision.rule_id) for item in explanation.items} == viewed
    assert len(explanation.items) == 8 + 12
    assert sum(explanation.by_decision().values()) == 20
    lines = explanation.lines()
    assert len(lines) == 2 + 20 + 1
    first = explanation.items[0]
    assert lines[2].startswith(f"{first.item_id}  {first.agency}  {first.kind}  {first.category}  {first.decision.kind}")
    assert lines[-1].startswith("20 items: ")
    printed = "\n".join(lines)
    assert "Police record" not in printed and "Testington" not in printed  # summaries and names never
    event = last_event(session, AuditAction.IG_POLICY_EXPLAINED)
    assert (event.actor_type, event.actor_id) == ("system", "cli")
    assert (event.child_id, event.purpose, event.policy_version) == (seeded.child_id, purpose.value, loaded.label)
    assert event.detail["viewer"] == seeded.member.subject and event.detail["policy_sha256"] == loaded.sha256
    assert {ref.item: (ref.decision, ref.rule) for ref in decode_items(event.items)} == viewed


def test_explain_for_someone_not_on_the_team_shows_everything_withheld(
    session: Session, seeded: SeededChild
) -> None:
    explanation = explain(
        session,
        auditor=Auditor(session, CLI),
        loaded=read_policy(None),
        child_id=seeded.child_id,
        viewer="stranger@test.example",
        purpose=Purpose.CHILD_PROTECTION,
    )

    assert not explanation.member and explanation.facts.relationship == "none"
    assert {(i.decision.kind, i.decision.rule_id) for i in explanation.items} == {
        (DecisionKind.WITHHOLD_SILENTLY, "builtin.no-relationship")
    }
    assert "stranger@test.example is not an active member" in explanation.lines()[1]
    assert explanation.lines()[-1] == "20 items: withhold_silently: 20"


def test_explain_refuses_an_unknown_child_and_records_nothing(session: Session) -> None:
    before = len(_events(session, AuditAction.IG_POLICY_EXPLAINED))
    unknown = uuid.uuid4()

    with pytest.raises(NotFound) as refused:
        explain(
            session,
            auditor=Auditor(session, CLI),
            loaded=read_policy(None),
            child_id=unknown,
            viewer="anyone@test.example",
            purpose=Purpose.CHILD_PROTECTION,
        )

    assert str(unknown) in refused.value.detail
    session.commit()
    assert len(_events(session, AuditAction.IG_POLICY_EXPLAINED)) == before


def test_explain_refuses_a_child_with_no_open_case(session: Session, seeded: SeededChild) -> None:
    case = session.scalar(select(Case).where(Case.child_id == seeded.child_id))
    assert case is not None
    case.status = CaseStatus.CLOSED
    session.flush()

    with pytest.raises(Conflict, match="no open case"):
        explain(
            session,
            auditor=Auditor(session, CLI),
            loaded=read_policy(None),
            child_id=seeded.child_id,
            viewer=seeded.member.subject,
            purpose=Purpose.CHILD_PROTECTION,
        )


# -- diff --------------------------------------------------------------------------------------


def _children_with_an_open_case(session: Session) -> int:
    return len(set(session.scalars(select(Case.child_id).where(Case.status == CaseStatus.OPEN))))


def test_diff_of_identical_files_changes_nothing(session: Session, seeded: SeededChild) -> None:
    shipped = read_policy(None)
    same = parse_policy(SHIPPED.read_bytes() + b"\n# reworded nothing\n", source="same.yaml")

    compared = diff(session, auditor=Auditor(session, CLI), old=shipped, new=same)
    session.commit()

    assert compared.children == _children_with_an_open_case(session) >= 1
    assert compared.decisions >= 20 * 2  # this child's items, for its one member, for both purposes
    assert compared.changed == 0 and compared.examples == []
    assert compared.lines()[-1] == "no decisions change"
    event = last_event(session, AuditAction.IG_POLICY_EXPLAINED)
    assert event.detail["command"] == "diff" and event.detail["changed"] == 0
    assert event.detail["old_sha256"] == shipped.sha256 and event.detail["new_sha256"] == same.sha256


def test_diff_where_new_drops_a_rule_counts_and_lists_the_changes(
    client: TestClient, session: Session, seeded: SeededChild, settings: Settings, signing_keys: SigningKeys
) -> None:
    shipped = read_policy(None)
    without_police = parse_policy(_isa_text(drop_rule="cp.police").encode(), source="new.yaml")
    # A second member of the team: every decision is taken for each member.
    team = session.get(Team, seeded.member.team_id)
    assert team is not None
    health = add_member(session, team, agency="health", role="health_visitor")
    decided_by_police_rule = {
        ref.item
        for ref in decode_items(_viewed(client, session, seeded).items)
        if ref.rule == "cp.police"
    }
    assert decided_by_police_rule, "the seeded police items are shared under cp.police today"

    compared = diff(session, auditor=Auditor(session, CLI), old=shipped, new=without_police, limit=3)

    # Both members see the police items under cp.police for child protection; without it, nothing permits them.
    assert compared.changes == {
        ("disclose/cp.police", "withhold_silently/builtin.default-deny"): 2 * len(decided_by_police_rule)
    }
    assert len(compared.examples) == 3
    assert {c.item_id for c in compared.examples} <= decided_by_police_rule
    assert {c.child_id for c in compared.examples} == {seeded.child_id}
    assert {c.viewer for c in compared.examples} <= {seeded.member.subject, health.subject}
    lines = compared.lines()
    assert f"  {2 * len(decided_by_police_rule)}  disclose/cp.police -> withhold_silently/builtin.default-deny" in lines
    example = compared.examples[0]
    assert (
        f"  {example.child_id}  {example.viewer}  child_protection  {example.item_id}  "
        "disclose/cp.police -> withhold_silently/builtin.default-deny"
    ) in lines


def _viewed(client: TestClient, session: Session, seeded: SeededChild) -> AuditEvent:
    assert get_view(client, seeded.token, seeded.child_id).status_code == 200
    return last_event(session, AuditAction.STAFF_VIEW_OPENED)


def test_a_policy_error_names_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(_isa_text().replace("lawful_basis: public_task", "lawful_basis: nowhere", 1))

    with pytest.raises(PolicyError, match=rf"^{path}:\d+: rules\.\d+\.lawful_basis"):
        read_policy(path)

"""The view shows only what the decisions allow, unseals only the summaries it shows, and audits every item."""

from __future__ import annotations

import uuid
import warnings
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import TypeAdapter
from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session, sessionmaker

from audit import AuditAction, decode_items
from audit.hashing import canonical_bytes
from gateway.app import create_app
from gateway.auth.keys import SigningKeys
from gateway.auth.principal import Principal, PrincipalKind
from gateway.cases.repository import get_child_access
from gateway.child_view import service
from gateway.child_view.schemas import ChildViewRead
from gateway.kit import crypto
from gateway.kit.auditor import Auditor
from gateway.kit.crypto import DataKeyring
from gateway.models import Child, Item, ItemContent
from gateway.settings import Settings
from policies import ConsentState, DecisionKind, Purpose, Viewer, decide, default_policy
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
from tests.gateway.child_view.helpers import SeededChild, record_unsealing, seed_child
from tests.gateway.helpers import child_id_for, get_view, last_event, push

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


@pytest.mark.parametrize("stored_before_0003", [False, True])
def test_a_redacted_summary_is_shown_as_redacted_and_never_decrypted(
    redacting_client: TestClient,
    session: Session,
    settings: Settings,
    signing_keys: SigningKeys,
    keyring: DataKeyring,
    monkeypatch: pytest.MonkeyPatch,
    stored_before_0003: bool,
) -> None:
    source, _ = make_client(session)
    child = demo_child()
    token = client_token(signing_keys, settings, source)
    assert push(redacting_client, token, child_bundle(child, encounters=[encounter()])).status_code == 200
    child_id = child_id_for(session, keyring, child.nhs_number)
    if stored_before_0003:
        _forget_sealed_summaries(session, child_id)
    team = make_team(session)
    member = add_member(session, team, agency="police", role="police_officer")
    allocate(session, child_id=child_id, team=team)
    unsealed = record_unsealing(monkeypatch)

    viewed = get_view(redacting_client, staff_token(signing_keys, settings, member), child_id)

    assert viewed.status_code == 200, viewed.text
    [entry] = viewed.json()["timeline"]
    assert entry["summary"] == "[redacted]" and entry["redacted_fields"] == ["summary"]
    assert entry["decision"]["kind"] == "redact" and entry["decision"]["rule_id"] == "cp.health"
    assert not [c for c in unsealed if c.startswith("item:")]  # nothing of the item was decrypted


def _forget_sealed_summaries(session: Session, child_id: uuid.UUID) -> None:
    """Make the child's items look stored before migration 0003, which added the sealed summary."""
    session.execute(update(Item).where(Item.child_id == child_id).values(sealed_summary=None))


def _summaries_in_content(session: Session, keyring: DataKeyring, child_id: uuid.UUID) -> dict[str, str]:
    """Return each item's summary as its sealed content holds it (how the view read it before 0003)."""
    child = session.get(Child, child_id)
    assert child is not None
    key = keyring.unwrap(child.wrapped_data_key)
    return {
        str(item.id): crypto.unseal_value(key, item.sealed_content, ItemContent, context=item.sealing_context).summary
        for item in session.scalars(select(Item).where(Item.child_id == child_id))
    }


def test_only_the_summaries_shown_are_decrypted(
    client: TestClient,
    session: Session,
    settings: Settings,
    signing_keys: SigningKeys,
    keyring: DataKeyring,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seeded = seed_child(client, session, settings, signing_keys, keyring, encounters=14, police_items=12)
    unsealed = record_unsealing(monkeypatch)

    viewed = get_view(client, seeded.token, seeded.child_id)

    assert viewed.status_code == 200, viewed.text
    timeline = viewed.json()["timeline"]
    assert viewed.json()["withheld"]  # some items are withheld: none of them may be decrypted
    assert sorted(unsealed) == sorted(f"item:{entry['item_id']}/summary" for entry in timeline)
    stored = _summaries_in_content(session, keyring, seeded.child_id)
    assert all(entry["summary"] == stored[entry["item_id"]] for entry in timeline)


def test_items_stored_before_the_sealed_summary_show_the_summary_of_their_content(
    client: TestClient,
    session: Session,
    settings: Settings,
    signing_keys: SigningKeys,
    keyring: DataKeyring,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seeded = seed_child(client, session, settings, signing_keys, keyring, encounters=14, police_items=12)
    before = get_view(client, seeded.token, seeded.child_id).json()
    _forget_sealed_summaries(session, seeded.child_id)
    unsealed = record_unsealing(monkeypatch)

    after = get_view(client, seeded.token, seeded.child_id).json()

    assert after["timeline"] == before["timeline"]
    assert sorted(unsealed) == sorted(f"item:{entry['item_id']}" for entry in after["timeline"])


def _view_in_process(session: Session, keyring: DataKeyring, seeded: SeededChild) -> ChildViewRead:
    member = seeded.member
    principal = Principal(PrincipalKind.STAFF, member.subject, member.agency, member.role)
    return service.get(
        session,
        principal,
        auditor=Auditor(session, principal.actor()),
        keyring=keyring,
        policy=default_policy(),
        child_id=seeded.child_id,
        purpose=Purpose.CHILD_PROTECTION,
    )


def test_the_json_is_what_fastapi_would_render_from_a_fully_validated_view(
    client: TestClient, session: Session, settings: Settings, signing_keys: SigningKeys, keyring: DataKeyring
) -> None:
    """The endpoint renders the view itself instead of letting FastAPI validate it again first."""
    seeded = seed_child(client, session, settings, signing_keys, keyring, encounters=30, police_items=40)
    view = _view_in_process(session, keyring, seeded)

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # pydantic warns when a value does not fit its field's type
        fast = view.model_dump_json(by_alias=True)
        # Every field validated from scratch (by name: a source's client_id is read from `id` otherwise).
        validated = ChildViewRead.model_validate(view.model_dump(), by_name=True)
        rendered_by_fastapi = TypeAdapter(ChildViewRead).dump_json(validated, by_alias=True)

    assert ChildViewRead.model_validate_json(fast, by_name=True) == validated
    assert fast.encode() == rendered_by_fastapi
    kinds = {entry.decision.kind for entry in view.timeline}
    assert len(view.timeline) > 50 and view.withheld and kinds == {DecisionKind.DISCLOSE}
    assert any(entry.occurred_at is None for entry in view.timeline)
    served = get_view(client, seeded.token, seeded.child_id)
    assert served.headers["content-type"] == "application/json"
    assert ChildViewRead.model_validate_json(served.content, by_name=True).timeline == validated.timeline


def test_the_audit_event_of_a_500_item_view_is_compact_and_names_every_decision(
    client: TestClient, session: Session, settings: Settings, signing_keys: SigningKeys, keyring: DataKeyring
) -> None:
    seeded = seed_child(client, session, settings, signing_keys, keyring, encounters=400, police_items=100)
    aggregate = _aggregate(session, seeded, keyring)
    expected = {
        (item.id, decision.kind.value, decision.rule_id)
        for item, decision in service.decide_items(aggregate, policy=default_policy(), purpose=Purpose.CHILD_PROTECTION)
    }

    assert get_view(client, seeded.token, seeded.child_id).status_code == 200

    opened = last_event(session, AuditAction.STAFF_VIEW_OPENED)
    assert opened.child_id == seeded.child_id
    assert len(canonical_bytes(opened)) <= 16_384, len(canonical_bytes(opened))
    decoded = decode_items(opened.items)
    assert len(decoded) == 500 and len({ref.item for ref in decoded}) == 500
    assert {(ref.item, ref.decision, ref.rule) for ref in decoded} == expected
    assert len({(ref.decision, ref.rule) for ref in decoded}) > 3  # several groups, each decoded


def test_deciding_once_per_kind_of_item_gives_each_item_its_own_decision(
    client: TestClient, session: Session, settings: Settings, signing_keys: SigningKeys, keyring: DataKeyring
) -> None:
    seeded = seed_child(client, session, settings, signing_keys, keyring, encounters=60, police_items=40)
    aggregate = _aggregate(session, seeded, keyring)
    access = aggregate.access
    viewer = Viewer(agency=access.agency, role=access.role, relationship=access.relationship)

    decided = service.decide_items(aggregate, policy=default_policy(), purpose=Purpose.CHILD_PROTECTION)

    assert [item for item, _ in decided] == aggregate.items
    one_by_one = [
        decide(
            default_policy(),
            viewer=viewer,
            purpose=Purpose.CHILD_PROTECTION,
            item=service.item_facts(item),
            consent=ConsentState(),
        )
        for item in aggregate.items
    ]
    assert [decision for _, decision in decided] == one_by_one
    assert len({decision.rule_id for decision in one_by_one}) > 2  # items of several kinds, decided apart


def _aggregate(session: Session, seeded: SeededChild, keyring: DataKeyring) -> service.ChildAggregate:
    access = get_child_access(
        session,
        Principal(PrincipalKind.STAFF, seeded.member.subject, seeded.member.agency, seeded.member.role),
        child_id=seeded.child_id,
    )
    assert access is not None
    return service.load(session, access, keyring=keyring)

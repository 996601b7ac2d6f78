"""Items stored before migration 0003 (no sealed summary) are shown from their sealed content after it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import insert

from gateway.auth.principal import Principal, PrincipalKind
from gateway.child_view import service
from gateway.kit.auditor import Auditor
from gateway.kit.crypto import DataKeyring, seal_value
from gateway.kit.db import build_engine, build_sessionmaker
from gateway.kit.migrate import upgrade
from gateway.models import Child, Identity, Item, ItemContent
from policies import Agency, DecisionKind, Purpose, RecordKind, RecordStatus, default_policy
from tests.factories import add_member, allocate, make_client, make_team
from tests.gateway.child_view.helpers import record_unsealing
from tests.serving import scratch_database

START = datetime(2025, 6, 1, 9, 0, tzinfo=UTC)


def test_items_stored_at_0002_are_shown_from_their_sealed_content_after_the_upgrade(
    database_url: str, tmp_path: Path, keyring: DataKeyring, monkeypatch: pytest.MonkeyPatch
) -> None:
    with scratch_database(database_url, tmp_path, prefix="gw_cv0003") as url:
        engine = build_engine(url)
        try:
            upgrade(engine, "0002")
            factory = build_sessionmaker(engine)
            with factory() as session:
                source, _ = make_client(session)
                data_key, wrapped = keyring.new_data_key()
                # Core inserts name only the columns of 0002: the models have more since.
                child_id, identity_id = uuid.uuid4(), uuid.uuid4()
                session.execute(insert(Child).values(id=child_id, wrapped_data_key=wrapped))
                session.execute(
                    insert(Identity).values(
                        id=identity_id,
                        client_id=source.id,
                        source_record_id="p1",
                        source_version="1",
                        agency=Agency.HEALTH,
                        sealed_claim=b"not read: the identity is not linked",
                    )
                )
                summaries: dict[uuid.UUID, str] = {}
                for n, labels in enumerate([[], ["PSY"], []]):
                    item_id = uuid.uuid4()
                    summaries[item_id] = f"Attendance {n} at the emergency department"
                    content = ItemContent(summary=summaries[item_id], payload={"n": n})
                    # As ingest stored an item before 0003: its content sealed, no summary of its own.
                    session.execute(
                        insert(Item).values(
                            id=item_id,
                            child_id=child_id,
                            identity_id=identity_id,
                            client_id=source.id,
                            agency=Agency.HEALTH,
                            source_record_id=f"e{n}",
                            source_version="1",
                            kind=RecordKind.ENCOUNTER,
                            category="health.encounter",
                            occurred_at=START + timedelta(days=n),
                            security_labels=labels,
                            status=RecordStatus.CURRENT,
                            sealed_content=seal_value(
                                data_key, content, ItemContent, context=Item.context_for(item_id)
                            ),
                        )
                    )
                session.commit()

            upgrade(engine)
            # The team and case after the upgrade: the ORM models are today's (0007 added columns).
            with factory() as session:
                team = make_team(session)
                member = add_member(session, team, agency="police", role="police_officer")
                allocate(session, child_id=child_id, team=team)
                session.commit()

            unsealed = record_unsealing(monkeypatch)
            principal = Principal(PrincipalKind.STAFF, member.subject, member.agency, member.role)
            with factory() as session:
                view = service.get(
                    session,
                    principal,
                    auditor=Auditor(session, principal.actor()),
                    keyring=keyring,
                    policy=default_policy(),
                    child_id=child_id,
                    purpose=Purpose.CHILD_PROTECTION,
                )
                session.rollback()
        finally:
            engine.dispose()

    shown = [entry.item_id for entry in view.timeline]
    assert [entry.summary for entry in view.timeline] == [summaries[item_id] for item_id in shown]
    assert len(shown) == 2 and [entry.decision.kind for entry in view.timeline] == [DecisionKind.DISCLOSE] * 2
    assert [w.count for w in view.withheld] == [1]  # the PSY-labelled attendance: never decrypted
    assert sorted(unsealed) == sorted(Item.context_for(item_id) for item_id in shown)

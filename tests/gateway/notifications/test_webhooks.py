"""A team's webhook: notifications written to the outbox in the push, sent signed, retried, given up."""

from __future__ import annotations

import base64
import json
import os
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from audit import AuditAction
from gateway.kit.crypto import DataKeyring
from gateway.kit.db import build_engine, build_sessionmaker, configure_sessionmaker
from gateway.kit.migrate import upgrade
from gateway.models import DeliveryStatus, InboxEntry, InboxKind, Team, TeamWebhook, WebhookDelivery, utcnow
from gateway.notifications import webhooks
from gateway.notifications.routing import Routing
from gateway.notifications.webhooks import (
    MAX_ATTEMPTS,
    WebhookError,
    check_url,
    deliver_due,
    set_webhook,
    sign,
)
from policies import default_policy
from tests.factories import add_member, allocate, make_team
from tests.gateway.helpers import last_event
from tests.gateway.notifications.test_inboxes import _claim, _police, _push, _record
from tests.serving import scratch_database


@dataclass
class Receiver:
    """A local HTTP endpoint that records what it is sent and answers with `status`."""

    status: int = 204
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802  (the http.server method name)
            body = self.rfile.read(int(self.headers["content-length"]))
            with state.lock:
                state.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
            self.send_response(state.status)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002  (the base class's name)
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/macpt/notifications"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def _secret(value: str) -> bytes:
    assert value.startswith("whsec_")
    return base64.b64decode(value.removeprefix("whsec_"))


# -- signing and set-up ---------------------------------------------------------------------------


def test_signatures_follow_standard_webhooks() -> None:
    # The Standard Webhooks specification's own example (secret, id, timestamp, payload, signature).
    secret = _secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    body = b'{"test": 2432232314}'

    assert sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body) == (
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    )


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("ftp://case-system.example/hook", "absolute https"),
        ("/relative/path", "absolute https"),
        ("https://user:pass@case-system.example/hook", "credentials"),
        ("http://case-system.example/hook", "must use https"),
    ],
)
def test_a_webhook_url_must_be_https_without_credentials(url: str, fragment: str) -> None:
    with pytest.raises(WebhookError, match=fragment):
        check_url(url, allow_http=False)


def test_https_and_this_hosts_http_are_allowed() -> None:
    assert check_url("https://case-system.example/hook", allow_http=False)
    assert check_url("http://127.0.0.1:9000/hook", allow_http=False)
    assert check_url("http://case-system.test/hook", allow_http=True)


def test_setting_again_rotates_the_secret_and_removing_stops_it(session: Session, keyring: DataKeyring) -> None:
    team = make_team(session)
    first = set_webhook(session, keyring, team_id=team.id, url="https://one.example/hook")
    second = set_webhook(session, keyring, team_id=team.id, url="https://two.example/hook")

    (hook,) = session.scalars(select(TeamWebhook).where(TeamWebhook.team_id == team.id)).all()
    assert first != second and hook.url == "https://two.example/hook"
    assert keyring.unwrap(hook.wrapped_secret) == _secret(second)  # stored wrapped, never in clear
    assert _secret(second) not in hook.wrapped_secret
    assert webhooks.remove_webhook(session, team_id=team.id) is True
    assert webhooks.remove_webhook(session, team_id=team.id) is False
    with pytest.raises(WebhookError, match="no such team"):
        set_webhook(session, keyring, team_id=uuid.uuid4(), url="https://one.example/hook")


# -- from a push to the receiver --------------------------------------------------------------------


def _allocated_child_with_webhook(
    session: Session, keyring: DataKeyring, url: str
) -> tuple[Team, str, uuid.UUID]:
    police = _police(session)
    _push(session, keyring, police, _claim("person/W-1"), _record("W-INC-0", "person/W-1", kind="incident",
                                                                    category="police.incident", notice=None))
    child_id = last_event(session, AuditAction.CLIENT_RECORDS_PUSHED).child_id
    assert child_id is not None
    team = make_team(session)
    allocate(session, child_id=child_id, team=team)
    add_member(session, team, agency="social_care", role="lead_practitioner")
    secret = set_webhook(session, keyring, team_id=team.id, url=url)
    session.commit()
    return team, secret, child_id


def _state(session: Session, delivery_id: uuid.UUID) -> tuple[DeliveryStatus, int, int | None]:
    session.expire_all()
    delivery = session.get(WebhookDelivery, delivery_id)
    assert delivery is not None
    return delivery.status, delivery.attempts, delivery.last_status


def _factory(session: Session) -> sessionmaker[Session]:
    # The test's own connection (its transaction is rolled back at the end), as the sender's sessions.
    return configure_sessionmaker(
        sessionmaker(bind=session.connection(), join_transaction_mode="create_savepoint", expire_on_commit=False)
    )


def test_a_notification_is_sent_signed_with_ids_only_then_marked_delivered(
    session: Session, keyring: DataKeyring, receiver: Receiver
) -> None:
    team, secret, child_id = _allocated_child_with_webhook(session, keyring, receiver.url)
    police = _police(session)
    _push(session, keyring, police, _claim("person/W-1"),
          _record("W-MISS-1", "person/W-1", kind="missing_episode", category="police.missing_episode", notice=None))
    (delivery,) = session.scalars(select(WebhookDelivery)).all()
    entry = session.get(InboxEntry, delivery.entry_id)
    assert entry is not None and _state(session, delivery.id) == (DeliveryStatus.PENDING, 0, None)

    with httpx.Client(timeout=5) as client:
        assert deliver_due(_factory(session), keyring, client) == 1

    ((headers, body),) = receiver.received
    payload = json.loads(body)
    assert payload == {
        "type": "notification.created", "id": str(entry.id), "team_id": str(team.id), "case_id": str(entry.case_id),
        "child_id": str(child_id), "agency": "police", "record_kind": "missing_episode",
        "category": "police.missing_episode", "created_at": entry.created_at.isoformat(),
    }
    assert "Ada" not in body.decode() and "Testchild" not in body.decode()  # ids only, never the child's name
    signed = sign(_secret(secret), headers["webhook-id"], int(headers["webhook-timestamp"]), body)
    assert headers["webhook-signature"] == signed and headers["webhook-id"] == f"msg_{delivery.id}"
    assert _state(session, delivery.id) == (DeliveryStatus.DELIVERED, 1, 204)
    with httpx.Client(timeout=5) as client:
        assert deliver_due(_factory(session), keyring, client) == 0  # delivered once


def test_a_failing_receiver_is_retried_with_backoff_then_given_up_and_audited(
    session: Session, keyring: DataKeyring, receiver: Receiver
) -> None:
    receiver.status = 500
    _allocated_child_with_webhook(session, keyring, receiver.url)
    _push(session, keyring, _police(session), _claim("person/W-1"),
          _record("W-INC-2", "person/W-1", kind="incident", category="police.incident", notice=None))
    (delivery,) = session.scalars(select(WebhookDelivery)).all()

    with httpx.Client(timeout=5) as client:
        before = utcnow()
        assert deliver_due(_factory(session), keyring, client) == 1
        assert _state(session, delivery.id) == (DeliveryStatus.PENDING, 1, 500)
        assert delivery.next_attempt_at >= before + timedelta(seconds=29)  # 30 s, then doubling
        assert deliver_due(_factory(session), keyring, client) == 0  # not due yet
        for _ in range(MAX_ATTEMPTS - 1):
            delivery.next_attempt_at = utcnow() - timedelta(seconds=1)
            session.commit()
            assert deliver_due(_factory(session), keyring, client) == 1
            session.expire_all()

    assert _state(session, delivery.id) == (DeliveryStatus.FAILED, MAX_ATTEMPTS, 500)
    assert len(receiver.received) == MAX_ATTEMPTS
    failed = last_event(session, AuditAction.NOTIFICATION_WEBHOOK_FAILED)
    assert failed.outcome == "failure" and failed.detail["attempts"] == MAX_ATTEMPTS


def test_a_record_the_lead_practitioners_view_would_withhold_silently_is_not_sent(
    session: Session, keyring: DataKeyring, receiver: Receiver
) -> None:
    _allocated_child_with_webhook(session, keyring, receiver.url)
    # An ISA that makes police incidents notifiable but shares them with nobody for child protection.
    shipped = default_policy()
    silent = shipped.model_copy(
        update={"rules": tuple(r for r in shipped.rules if r.id != "cp.police"), "notifiable_categories": ("police.incident",)}
    )
    _push_with(session, keyring, Routing(silent))

    assert session.scalars(select(WebhookDelivery)).all() == []
    assert session.scalars(select(InboxEntry).where(InboxEntry.kind == InboxKind.NOTIFICATION)).all() != []


def _push_with(session: Session, keyring: DataKeyring, routing: Routing) -> None:
    from adapters import ClaimEntry, RecordEntry, Submission
    from gateway.auth.principal import Principal, PrincipalKind
    from gateway.ingest.service import ingest
    from gateway.kit.auditor import Auditor

    police = _police(session)
    principal = Principal(PrincipalKind.CLIENT, police.id, police.agency)
    record = _record("W-INC-3", "person/W-1", kind="incident", category="police.incident", notice=None)
    ingest(
        session,
        principal,
        auditor=Auditor(session, principal.actor()),
        keyring=keyring,
        routing=routing,
        submission=Submission(
            atomic=True,
            label="test batch",
            entries=(ClaimEntry(0, "records[0].child", _claim("person/W-1")), RecordEntry(1, "records[0]", "records[0].child", record)),
        ),
    )
    session.commit()


@pytest.mark.skipif(
    not os.environ.get("GATEWAY_TEST_DATABASE_URL", "").startswith("postgresql"),
    reason="two senders claiming at once need PostgreSQL's FOR UPDATE SKIP LOCKED; SQLite has one writer",
)
def test_two_workers_sending_at_once_send_each_delivery_once(
    database_url: str, tmp_path: Path, keyring: DataKeyring, receiver: Receiver
) -> None:
    with scratch_database(database_url, tmp_path, prefix="gw_hooks") as url:
        engine = build_engine(url)
        try:
            upgrade(engine)
            factory = build_sessionmaker(engine, deferred_audit=True)
            with factory() as session:
                team = make_team(session)
                set_webhook(session, keyring, team_id=team.id, url=receiver.url)
                _seed_deliveries(session, team, count=60)
                session.commit()
            barrier = threading.Barrier(4, timeout=30)

            def sender() -> int:
                barrier.wait()
                sent = 0
                with httpx.Client(timeout=5) as client:
                    while (n := deliver_due(factory, keyring, client)) > 0:
                        sent += n
                return sent

            with ThreadPoolExecutor(4) as pool:
                totals = list(pool.map(lambda _: sender(), range(4)))
            ids = [headers["webhook-id"] for headers, _body in receiver.received]
            assert sum(totals) == 60 and len(ids) == len(set(ids)) == 60, totals
            with factory() as session:
                statuses = set(session.scalars(select(WebhookDelivery.status)))
                assert statuses == {DeliveryStatus.DELIVERED}
        finally:
            engine.dispose()


def _seed_deliveries(session: Session, team: Team, *, count: int) -> None:
    """Write `count` notifications with their deliveries, as routing would (a child, an item, an entry each)."""
    from gateway.models import Child, Client, Identity, Item
    from policies import Agency, RecordKind

    (hook,) = session.scalars(select(TeamWebhook).where(TeamWebhook.team_id == team.id)).all()
    client = Client(id="hook-police", name="p", agency=Agency.POLICE, jwks={"keys": []}, allowed_kinds=["incident"])
    session.add(client)
    session.flush()
    for n in range(count):
        child = Child(wrapped_data_key=b"\0" * 40)
        session.add(child)
        session.flush()
        identity = Identity(client_id=client.id, agency=Agency.POLICE, source_record_id=f"p/{n}", source_version="1",
                            sealed_claim=b"x")
        session.add(identity)
        session.flush()
        item = Item(child_id=child.id, identity_id=identity.id, client_id=client.id, agency=Agency.POLICE,
                    kind=RecordKind.INCIDENT, category="police.incident", source_record_id=f"i/{n}",
                    source_version="1", sealed_content=b"x")
        session.add(item)
        session.flush()
        entry = InboxEntry(kind=InboxKind.NOTIFICATION, recipient="lead@test.example",
                           recipient_role="lead_practitioner", item_id=item.id, child_id=child.id,
                           agency=Agency.POLICE, record_kind=RecordKind.INCIDENT, category="police.incident")
        session.add(entry)
        session.flush()
        session.add(WebhookDelivery(webhook_id=hook.id, entry_id=entry.id, payload={"id": str(entry.id), "n": n,
                                                                                   "birth": str(date(2016, 1, 1))}))
    session.flush()

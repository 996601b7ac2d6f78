"""A team's optional outbound webhook: notifications sent, signed and retried, to a case system.

- Configured per team by an operator (`gateway webhook set --team ID --url URL`), which prints
  the signing secret once; it is stored only wrapped under the key-encryption key.
- A notification for a team with an active webhook writes a delivery row in the push's own
  transaction (an outbox): nothing is sent from inside a transaction, and nothing is lost if the
  process dies before sending.
- Each worker, every GATEWAY_WEBHOOK_INTERVAL_S, claims due deliveries (PostgreSQL: FOR UPDATE
  SKIP LOCKED, so two workers never take one row), moves their next attempt past a lease,
  commits, then POSTs each with a timeout and no transaction open, and records the answer: 2xx
  delivered; anything else, or no answer, retried after 30 s, 1, 2, 4… minutes (at most an
  hour apart); after MAX_ATTEMPTS it is given up, audited and logged for whoever is on call.
- The body holds ids and the policy vocabulary only (which agency, which kind of record, which
  child and case by the gateway's opaque ids), never personal data, and only for a record the
  lead practitioner's view would show or indicate (decided when the notification is made).
- Signed as Standard Webhooks (https://www.standardwebhooks.com/) specify, so a receiver can use
  any of their libraries: `webhook-id`, `webhook-timestamp`, and `webhook-signature: v1,<base64
  HMAC-SHA256 of "id.timestamp.body">` under the secret `whsec_<base64>`. Written with the
  standard library's hmac: the scheme is four lines, and the reference library adds nothing a
  sender needs.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import anyio
import httpx
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from audit import Actor, ActorType, AuditAction, Outcome
from gateway.kit.auditor import Auditor
from gateway.kit.crypto import DataKeyring
from gateway.kit.db import insert_all
from gateway.models import DeliveryStatus, Team, TeamWebhook, WebhookDelivery, utcnow

log = logging.getLogger(__name__)

SENDER = Actor(type=ActorType.SYSTEM, id="webhook-sender")
MAX_ATTEMPTS = 10
FIRST_RETRY = timedelta(seconds=30)
LONGEST_RETRY = timedelta(hours=1)
LEASE = timedelta(seconds=60)  # a claimed delivery is not claimed again within this (the sender died?)
BATCH = 20  # deliveries claimed per round
REQUEST_TIMEOUT_S = 5.0
SECRET_PREFIX = "whsec_"


class WebhookError(ValueError):
    """A webhook cannot be set as asked; the message says why."""


@dataclass(frozen=True)
class Claimed:
    """A delivery claimed for sending: where, with what secret, what body."""

    id: uuid.UUID
    url: str
    secret: bytes
    body: bytes
    attempts: int
    child_id: str | None


def sign(secret: bytes, message_id: str, timestamp: int, body: bytes) -> str:
    """Return the Standard Webhooks `webhook-signature` header value for a message."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(secret, signed, hashlib.sha256).digest()).decode()


def check_url(url: str, *, allow_http: bool) -> str:
    """Return the URL if a webhook may be sent there: https (http only to this host, for tests and demos)."""
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise WebhookError("the URL must be an absolute https:// URL")
    if parts.username or parts.password:
        raise WebhookError("the URL must not carry credentials: the signature authenticates the gateway")
    if parts.scheme == "http" and not (allow_http or parts.hostname in ("127.0.0.1", "localhost", "::1")):
        raise WebhookError("the URL must use https (http only to this host)")
    return url


def set_webhook(session: Session, keyring: DataKeyring, *, team_id: uuid.UUID, url: str, allow_http: bool = False) -> str:
    """Set (or replace) a team's webhook; return its new signing secret, shown this once."""
    if session.get(Team, team_id) is None:
        raise WebhookError("no such team")
    check_url(url, allow_http=allow_http)
    secret, wrapped = keyring.new_data_key()
    existing = session.scalar(select(TeamWebhook).where(TeamWebhook.team_id == team_id).with_for_update())
    if existing is None:
        session.add(TeamWebhook(team_id=team_id, url=url, wrapped_secret=wrapped, active=True))
    else:  # a new secret with a new URL: the old one stops verifying at once
        existing.url, existing.wrapped_secret, existing.active = url, wrapped, True
    session.flush()
    return SECRET_PREFIX + base64.b64encode(secret).decode()


def remove_webhook(session: Session, *, team_id: uuid.UUID) -> bool:
    """Stop sending a team's notifications; say whether it had an active webhook."""
    stopped = session.execute(
        update(TeamWebhook)
        .where(TeamWebhook.team_id == team_id, TeamWebhook.active.is_(True))
        .values(active=False)
        .returning(TeamWebhook.id)
    ).first()
    return stopped is not None


def enqueue(session: Session, notifications: Sequence[dict[str, Any]]) -> int:
    """Write a delivery for each notification row (inbox entry values) whose team has an active webhook."""
    teams = {row["team_id"] for row in notifications}
    if not teams:
        return 0
    hooks = dict(
        session.execute(
            select(TeamWebhook.team_id, TeamWebhook.id).where(TeamWebhook.team_id.in_(teams), TeamWebhook.active.is_(True))
        ).all()
    )
    now = utcnow()
    rows = [
        {
            "id": uuid.uuid4(),
            "webhook_id": hooks[row["team_id"]],
            "entry_id": row["id"],
            "payload": {
                "type": "notification.created",
                "id": str(row["id"]),
                "team_id": str(row["team_id"]),
                "case_id": str(row["case_id"]),
                "child_id": str(row["child_id"]),
                "agency": str(row["agency"]),
                "record_kind": str(row["record_kind"]),
                "category": row["category"],
                "created_at": row["created_at"].isoformat(),
            },
            "status": DeliveryStatus.PENDING,
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
        }
        for row in notifications
        if row["team_id"] in hooks
    ]
    insert_all(session, WebhookDelivery, rows)
    return len(rows)


def claim_due(session: Session, keyring: DataKeyring, *, now: datetime, limit: int = BATCH) -> list[Claimed]:
    """Claim up to `limit` due deliveries (moving their next attempt past the lease); the caller commits."""
    statement = (
        select(WebhookDelivery, TeamWebhook.url, TeamWebhook.wrapped_secret)
        .join(TeamWebhook, TeamWebhook.id == WebhookDelivery.webhook_id)
        .where(
            WebhookDelivery.status == DeliveryStatus.PENDING,
            WebhookDelivery.next_attempt_at <= now,
            TeamWebhook.active.is_(True),
        )
        .order_by(WebhookDelivery.next_attempt_at)
        .limit(limit)
        .with_for_update(skip_locked=True, of=WebhookDelivery)
    )
    claimed = []
    for delivery, url, wrapped in session.execute(statement).all():
        delivery.next_attempt_at = now + LEASE
        body = json.dumps(delivery.payload, separators=(",", ":"), sort_keys=True).encode()
        claimed.append(
            Claimed(delivery.id, url, keyring.unwrap(wrapped), body, delivery.attempts, delivery.payload.get("child_id"))
        )
    return claimed


def send(client: httpx.Client, delivery: Claimed, *, now: datetime) -> int | None:
    """POST one delivery, signed; return the HTTP status, or None when there was no answer."""
    message_id = f"msg_{delivery.id}"
    timestamp = int(now.timestamp())
    headers = {
        "content-type": "application/json",
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(delivery.secret, message_id, timestamp, delivery.body),
    }
    try:
        response = client.post(delivery.url, content=delivery.body, headers=headers)
    except httpx.HTTPError as failure:
        log.warning("webhook delivery got no answer", extra={"delivery": str(delivery.id), "error": type(failure).__name__})
        return None
    return response.status_code


def record(session: Session, delivery: Claimed, status: int | None, *, now: datetime) -> DeliveryStatus:
    """Record a send's answer: delivered, retried later, or given up (audited); the caller commits."""
    attempts = delivery.attempts + 1
    values: dict[str, Any] = {"attempts": attempts, "last_status": status}
    outcome = DeliveryStatus.PENDING
    if status is not None and 200 <= status < 300:
        outcome = DeliveryStatus.DELIVERED
        values.update(status=outcome, delivered_at=now)
    elif attempts >= MAX_ATTEMPTS:
        outcome = DeliveryStatus.FAILED
        values.update(status=outcome)
        Auditor(session, SENDER).record(
            AuditAction.NOTIFICATION_WEBHOOK_FAILED,
            Outcome.FAILURE,
            child_id=uuid.UUID(delivery.child_id) if delivery.child_id else None,
            detail={"delivery": str(delivery.id), "attempts": attempts, "last_status": status},
        )
        log.error("webhook delivery given up", extra={"delivery": str(delivery.id), "attempts": attempts})
    else:
        values.update(next_attempt_at=now + min(FIRST_RETRY * 2 ** (attempts - 1), LONGEST_RETRY))
    session.execute(update(WebhookDelivery).where(WebhookDelivery.id == delivery.id).values(**values))
    return outcome


def deliver_due(factory: sessionmaker[Session], keyring: DataKeyring, client: httpx.Client) -> int:
    """Claim, send and record one round of due deliveries; return how many were sent."""
    now = utcnow()
    with factory() as session:
        claimed = claim_due(session, keyring, now=now)
        session.commit()  # the claim holds through the lease; no transaction stays open while sending
    for delivery in claimed:
        status = send(client, delivery, now=utcnow())
        with factory() as session:
            record(session, delivery, status, now=utcnow())
            session.commit()
    return len(claimed)


async def run_webhook_sender(factory: sessionmaker[Session], keyring: DataKeyring, *, interval_s: float) -> None:
    """Until cancelled: send due deliveries every `interval_s`, in a thread (the event loop never waits)."""
    with httpx.Client(timeout=REQUEST_TIMEOUT_S, follow_redirects=False) as client:
        while True:
            await asyncio.sleep(interval_s)
            try:
                await anyio.to_thread.run_sync(deliver_due, factory, keyring, client)
            except Exception as failure:  # any failure: the sender must outlive it, or notifications stop
                log.warning("webhook round failed", extra={"error": type(failure).__name__})

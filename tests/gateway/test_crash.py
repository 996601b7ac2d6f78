"""A server killed in the middle of requests leaves no event without its action and no action without its event.

A real `gateway serve` takes pushes from several agency systems at once and is killed with
SIGKILL while some are in flight. Afterwards every stored identity and item is accounted for by a
`client:records:pushed` event, every such event's counts are in the database, the trail and its
signed checkpoints verify, and a restarted server carries on the same chain.
"""

from __future__ import annotations

import itertools
import json
import re
import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from sqlalchemy import func, select

from audit import AuditAction, AuditEvent, AuditPending
from gateway.kit.db import build_engine
from gateway.models import Identity, Item
from tests.gateway.helpers import FHIR_JSON
from tests.gateway.test_under_load import Push, build_push, set_up, synthetic_children
from tests.serving import audit_verify, log_tail, scratch_database, serve_gateway, serve_gateway_process

PUSHERS = 4
CHILDREN_PER_PUSH = 10
KILL_AFTER_PUSHES = 4  # acknowledged pushes before the kill: the server is busy by then
KILL_AFTER_SECONDS = 2.5  # and long enough for its once-a-second signer to have signed
KILL_DEADLINE = 60.0
REQUEST_TIMEOUT = 60.0


@dataclass
class Pushing:
    """What the pusher threads saw; read after they finish."""

    acknowledged: int = 0
    cut_off: int = 0  # requests the kill left without an answer
    other: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)


def _push_until_stopped(base_url: str, token: str, pushes: list[Push], seen: Pushing) -> None:
    headers = {**FHIR_JSON, "Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=base_url, timeout=REQUEST_TIMEOUT) as http:
        for push in itertools.cycle(pushes):  # repeats are acknowledged, not stored twice
            if seen.stop.is_set():
                return
            try:
                response = http.post("/fhir/R4", content=push.body, headers=headers)
            except httpx.TransportError:
                with seen.lock:
                    seen.cut_off += 1
                return
            with seen.lock:
                if response.status_code == 200:
                    seen.acknowledged += 1
                else:
                    seen.other.append(f"{response.status_code}: {response.text[:200]}")


def _pushed_counts(url: str, *, staged: bool = True) -> tuple[int, int, set[str], set[str]]:
    """Return (identities stored, identities the events created, ids of items stored, ids the events created).

    With `staged`, events staged and not yet integrated count too (PostgreSQL stages them: they are
    in the database with what they record, and join the tree when a gateway next runs).
    """
    tables = (AuditEvent, AuditPending) if staged else (AuditEvent,)
    engine = build_engine(url)
    try:
        with engine.connect() as connection:
            identities = connection.scalar(select(func.count()).select_from(Identity)) or 0
            items = {str(item_id) for item_id in connection.scalars(select(Item.id))}
            details = [
                detail
                for table in tables
                for detail in connection.scalars(
                    select(table.detail).where(table.action == AuditAction.CLIENT_RECORDS_PUSHED.value)
                )
            ]
    finally:
        engine.dispose()
    created = [item_id for detail in details for item_id in detail.get("items_created", [])]
    assert len(created) == len(set(created)), "an item is named by two push events"
    return identities, sum(int(detail.get("identities_created", 0)) for detail in details), items, set(created)


def test_a_server_killed_mid_request_leaves_actions_and_events_together(database_url: str, tmp_path: Path) -> None:
    rng = random.Random(7)
    taken: set[str] = set()
    log_path = tmp_path / "gateway-serve.log"
    workers = 2 if database_url.startswith("postgresql") else 1
    with scratch_database(database_url, tmp_path, prefix="gw_crash") as url:
        partnership = set_up(url, tmp_path, clients=PUSHERS)
        plans = [
            [
                build_push(synthetic_children(CHILDREN_PER_PUSH, taken), side=0, pool=f"c{index}-{n}", rng=rng)
                for n in range(20)
            ]
            for index in range(PUSHERS)
        ]
        seen = Pushing()
        with serve_gateway_process(partnership.env, log_path=log_path, workers=workers) as served:
            threads = [
                threading.Thread(
                    target=_push_until_stopped,
                    args=(served.base_url, partnership.client_tokens[index], plans[index], seen),
                    daemon=True,
                )
                for index in range(PUSHERS)
            ]
            for thread in threads:
                thread.start()
            started = time.monotonic()
            deadline = started + KILL_DEADLINE
            while (
                seen.acknowledged < KILL_AFTER_PUSHES or time.monotonic() - started < KILL_AFTER_SECONDS
            ) and time.monotonic() < deadline:
                time.sleep(0.01)
            served.kill()  # SIGKILL to the supervisor and its workers, in the middle of requests
            seen.stop.set()
            for thread in threads:
                thread.join(timeout=REQUEST_TIMEOUT)
        tail = log_tail(log_path)
        assert seen.acknowledged >= KILL_AFTER_PUSHES, f"too few pushes before the kill\n{tail}"
        assert seen.cut_off >= 1, "the kill left no request unanswered: it did not happen mid-request"
        assert not seen.other, seen.other[:3]

        identities, identities_audited, items, items_audited = _pushed_counts(url)
        assert identities >= KILL_AFTER_PUSHES * CHILDREN_PER_PUSH  # at least the first pushes, all new
        assert identities == identities_audited, "stored identities and the pushes' audit events disagree"
        assert items - items_audited == set(), "items stored without the event of their push"
        assert items_audited - items == set(), "push events naming items that were not stored"
        code, output = audit_verify(partnership.env)
        assert code == 0, output
        signed = re.search(r"(\d+) signed checkpoints", output)
        assert signed is not None and int(signed.group(1)) >= 1, output  # signed by the server while it ran

        # The restarted server goes on with the same chain and tree.
        with serve_gateway(partnership.env, log_path=log_path, workers=workers) as base_url:
            fresh = build_push(synthetic_children(CHILDREN_PER_PUSH, taken), side=0, pool="after", rng=rng)
            headers = {**FHIR_JSON, "Authorization": f"Bearer {partnership.client_tokens[0]}"}
            answer = httpx.post(f"{base_url}/fhir/R4", content=fresh.body, headers=headers, timeout=REQUEST_TIMEOUT)
            assert answer.status_code == 200, answer.text[:300]
            assert all(e["response"]["status"] == "201 Created" for e in json.loads(answer.text)["entry"])
            time.sleep(1.5)  # a checkpoint of the new event, signed by the server's own signer
        # The server integrated what the killed one had staged, and its own events before it stopped.
        after = _pushed_counts(url, staged=False)
        assert after[0] == after[1] == identities + CHILDREN_PER_PUSH and after[2] == after[3]
        code, output = audit_verify(partnership.env)
        assert code == 0, f"{output}\n{log_tail(log_path)}"
        assert "wait to be integrated" not in output, output

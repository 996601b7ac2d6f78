"""A real `gateway serve` under concurrent clients: answers, stores once, audits intact, stays alive.

These tests start the gateway as a subprocess on a free loopback port, on a scratch database of
the suite's kind (tests/serving.py), and drive it over HTTP from threads. Every request has a
timeout and every loop is bounded in count and time: a hung gateway makes these tests fail,
never hang. Run with `pytest -s` to see the one-line summary each prints.
"""

from __future__ import annotations

import json
import random
import re
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from joserfc import jwt
from sqlalchemy import Connection, func, select, text

from gateway.demo.generator import DemoChild, encounter_resource, patient_resource, transaction_bundle
from gateway.keys import KeyFolder
from gateway.kit.db import SQLITE_BEGIN, build_engine, build_sessionmaker
from gateway.models import Child, ChildIdentifier, Identity, Item, Team
from gateway.settings import Settings
from tests.factories import (
    add_member,
    allocate,
    client_token,
    demo_child,
    encounter,
    make_client,
    make_team,
    nhs_number,
    staff_token,
)
from tests.gateway.helpers import FHIR_JSON, child_id_for
from tests.serving import audit_verify, gateway_env, log_tail, prepare, scratch_database, serve_gateway

REQUEST_TIMEOUT = 30.0  # seconds; no answer within it is "unanswered" and fails the test
MAX_TRIES = 5  # a 503 with Retry-After may be retried, at most this many tries in all
RETRY_AFTER_CAP = 2.0  # seconds slept at most between tries, whatever Retry-After says
PATIENTS_PER_PUSH = 10
ENCOUNTERS_PER_PATIENT = 9  # 10 Patients + 90 Encounters = 100 resources a push
MAX_ROUNDS = 120  # pushes per pusher, whatever the time
MAX_VIEWS = 5000  # views per viewer, whatever the time
BIG_PUSH_PATIENTS = 2000
BIG_PUSH_TIMEOUT = 120.0
HEALTH_BOUND = 2.0  # seconds: a liveness bound, not a speed target
HEALTH_INTERVAL = 0.1
SIDES = ("trust", "gp")  # the two clients of a pair: a hospital trust and a GP practice
FIRST_DATE = datetime(2025, 1, 1, tzinfo=UTC)


# --- set-up --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Partnership:
    """What the scratch database was seeded with, and the tokens to act as its members."""

    url: str
    keys_dir: Path
    env: dict[str, str]
    client_ids: tuple[str, ...]
    client_tokens: tuple[str, ...]
    staff_token: str
    team_id: uuid.UUID


def set_up(url: str, tmp_path: Path, *, clients: int, extra_env: dict[str, str] | None = None) -> Partnership:
    """Create keys, migrate, and seed health clients and a team with a police member, through the ORM."""
    keys_dir = tmp_path / "keys"
    env = gateway_env(url, keys_dir, extra_env)
    prepare(env)
    settings = Settings(database_url=url, keys_dir=keys_dir)
    keys = KeyFolder(keys_dir).signing_keys()
    engine = build_engine(url)
    try:
        with build_sessionmaker(engine)() as session:
            registered = [
                make_client(session, kinds=("identity", "encounter"), client_id=f"load-health-{index}")[0]
                for index in range(clients)
            ]
            team = make_team(session, name="Load-test MACPT")
            police = add_member(session, team, agency="police", role="police_officer")
            session.commit()
            return Partnership(
                url=url,
                keys_dir=keys_dir,
                env=env,
                client_ids=tuple(client.id for client in registered),
                client_tokens=tuple(client_token(keys, settings, client) for client in registered),
                staff_token=staff_token(keys, settings, police),
                team_id=team.id,
            )
    finally:
        engine.dispose()


def allocate_children(partnership: Partnership, nhs_numbers: list[str]) -> list[uuid.UUID]:
    """Look up the children the NHS numbers were linked to and allocate them to the team."""
    engine = build_engine(partnership.url)
    try:
        with build_sessionmaker(engine)() as session:
            keyring = KeyFolder(partnership.keys_dir).data_keyring()
            team = session.get(Team, partnership.team_id)
            assert team is not None
            child_ids = [child_id_for(session, keyring, number) for number in nhs_numbers]
            for child_id in child_ids:
                allocate(session, child_id=child_id, team=team)
            session.commit()
            return child_ids
    finally:
        engine.dispose()


def synthetic_children(count: int, taken: set[str]) -> list[DemoChild]:
    """Return children with fresh NHS numbers, none in `taken` (which grows); main thread only."""
    children: list[DemoChild] = []
    for _ in range(count * 20):  # the generator repeats itself now and then; bounded anyway
        if len(children) == count:
            break
        number = nhs_number()
        if number not in taken:
            taken.add(number)
            children.append(demo_child(number))
    assert len(children) == count, "could not draw enough distinct synthetic NHS numbers"
    return children


# --- HTTP -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    """One request's final answer: status None means no answer in time (or no connection)."""

    status: int | None
    text: str
    retries: int
    seconds: float
    retry_after: str | None = None


def send(
    http: httpx.Client, method: str, url: str, *, headers: dict[str, str], body: bytes | None, retry_503: bool
) -> Reply:
    """Send a request; retry a 503 that carries Retry-After (bounded) when allowed."""
    started = time.monotonic()
    retries = 0
    while True:
        try:
            response = http.request(method, url, content=body, headers=headers)
        except httpx.TimeoutException as error:
            reason = f"no answer within {REQUEST_TIMEOUT:.0f} s ({type(error).__name__})"
            return Reply(None, reason, retries, time.monotonic() - started)
        except httpx.TransportError as error:
            return Reply(None, f"no answer: {type(error).__name__}: {error}", retries, time.monotonic() - started)
        retry_after = response.headers.get("Retry-After")
        if response.status_code == 503 and retry_after is not None and retry_503 and retries + 1 < MAX_TRIES:
            retries += 1
            time.sleep(_retry_delay(retry_after))
            continue
        return Reply(response.status_code, response.text, retries, time.monotonic() - started, retry_after)


def _retry_delay(retry_after: str) -> float:
    try:
        seconds = float(retry_after)
    except ValueError:  # an HTTP date: wait the cap
        seconds = RETRY_AFTER_CAP
    return min(max(seconds, 0.0), RETRY_AFTER_CAP)


# --- pushes ------------------------------------------------------------------------------------

VersionKey = tuple[str, str, str]  # (client id, source record id, source version)


@dataclass(frozen=True)
class Push:
    """A Bundle ready to send, and what it is about."""

    body: bytes
    types: tuple[str, ...]  # resource type of each entry, in order
    nhs_numbers: tuple[str, ...]


def build_push(
    children: list[DemoChild], *, side: int, pool: str, rng: random.Random, encounters: int = ENCOUNTERS_PER_PATIENT
) -> Push:
    """Return a transaction Bundle: each child's Patient (the same resource every time) and new Encounters."""
    resources: list[dict[str, Any]] = []
    for position, child in enumerate(children):
        patient_id = f"{SIDES[side]}-{pool}-{position}"
        postcode = child.postcode if side == 0 else "ZZ99 3WZ"  # the GP holds another address
        resources.append(patient_resource(child, resource_id=patient_id, postcode=postcode))
        for _ in range(encounters):
            attendance = encounter(
                class_code=rng.choice(["EMER", "AMB"]),
                start=FIRST_DATE + timedelta(minutes=rng.randrange(0, 600_000)),
                sensitive=rng.random() < 0.1,
            )
            resources.append(encounter_resource(attendance, patient_ref=f"Patient/{patient_id}"))
    bundle = transaction_bundle(resources)
    return Push(
        body=json.dumps(bundle).encode(),
        types=tuple(resource["resourceType"] for resource in resources),
        nhs_numbers=tuple(child.nhs_number for child in children),
    )


def check_push_reply(reply: Reply, push: Push, *, repeat_of: list[str] | None) -> tuple[list[str] | None, str | None]:
    """Return (the entries' locations, None) for a good answer, else (None, what was wrong)."""
    if reply.status is None:
        return None, f"unanswered: {reply.text}"
    if reply.status != 200:
        return None, f"{reply.status}: {reply.text[:300]}"
    try:
        answer = json.loads(reply.text)
        statuses = [entry["response"]["status"] for entry in answer["entry"]]
        locations = [entry["response"]["location"] for entry in answer["entry"]]
    except (ValueError, KeyError, TypeError) as error:
        return None, f"200 with an unreadable response Bundle ({type(error).__name__}): {reply.text[:300]}"
    if answer.get("type") != "transaction-response" or len(locations) != len(push.types):
        return None, f"200 but not a transaction-response of {len(push.types)} entries: {reply.text[:300]}"
    for status, location, resource_type in zip(statuses, locations, push.types, strict=True):
        if status not in ("200 OK", "201 Created"):
            return None, f"200 with an entry answered {status!r}"
        if not (isinstance(location, str) and location.startswith(f"{resource_type}/") and "/_history/" in location):
            return None, f"200 with an entry's location {location!r} not {resource_type}/<id>/_history/<version>"
    if repeat_of is not None:
        if any(status != "200 OK" for status in statuses):
            return None, f"an exact repeat was not '200 OK' throughout: {dict(Counter(statuses))}"
        if locations != repeat_of:
            return None, "an exact repeat answered other locations (versions) than the first push"
    return locations, None


@dataclass
class ThreadStats:
    """What one client thread did; read only after the thread has finished."""

    name: str
    ok: int = 0
    attempted: int = 0
    repeats_ok: int = 0
    retries: int = 0
    unanswered: int = 0
    server_errors: int = 0  # 5xx other than retried 503s
    client_errors: int = 0  # 4xx
    resources_acked: int = 0
    problems: list[str] = field(default_factory=list)
    identities: set[VersionKey] = field(default_factory=set)
    items: set[VersionKey] = field(default_factory=set)
    nhs_numbers: set[str] = field(default_factory=set)

    def problem(self, message: str) -> None:
        if len(self.problems) < 5:  # the counts say how many; a few examples say what
            self.problems.append(f"{self.name}: {message}")

    def count_failure(self, reply: Reply) -> None:
        if reply.status is None:
            self.unanswered += 1
        elif reply.status >= 500:
            self.server_errors += 1
        elif reply.status >= 400:
            self.client_errors += 1

    def acknowledge(self, client_id: str, push: Push, locations: list[str]) -> None:
        for location, resource_type in zip(locations, push.types, strict=True):
            source_record_id, version = location.rsplit("/_history/", 1)
            key = (client_id, source_record_id, version)
            (self.identities if resource_type == "Patient" else self.items).add(key)
        self.nhs_numbers.update(push.nhs_numbers)
        self.resources_acked += len(push.types)


@dataclass
class LoadPlan:
    """Shared, read-only inputs of the client threads (plus the stop signal)."""

    base_url: str
    partnership: Partnership
    warm: list[list[DemoChild]]  # per pair: children pushed before the load (allocated)
    fresh: list[list[list[DemoChild]]]  # per pair, per "new children" round: children first pushed under load
    child_ids: list[uuid.UUID]  # allocated children, for the viewers
    deadline: float
    retry_503: bool
    stop: threading.Event = field(default_factory=threading.Event)


def push_once(
    http: httpx.Client, plan: LoadPlan, stats: ThreadStats, client_index: int, push: Push, repeat_of: list[str] | None
) -> list[str] | None:
    """Send one push, count it, acknowledge its entries; return their locations, None on failure."""
    headers = {**FHIR_JSON, "Authorization": f"Bearer {plan.partnership.client_tokens[client_index]}"}
    reply = send(http, "POST", "/fhir/R4", headers=headers, body=push.body, retry_503=plan.retry_503)
    stats.attempted += 1
    stats.retries += reply.retries
    locations, problem = check_push_reply(reply, push, repeat_of=repeat_of)
    if problem is not None or locations is None:
        stats.count_failure(reply)
        stats.problem(f"push{' (exact repeat)' if repeat_of is not None else ''}: {problem}")
        if reply.status is None:
            plan.stop.set()  # the gateway is not answering: stop everyone, fail soon
        return None
    stats.ok += 1
    if repeat_of is not None:
        stats.repeats_ok += 1
    stats.acknowledge(plan.partnership.client_ids[client_index], push, locations)
    return locations


def pusher(plan: LoadPlan, index: int, stats: ThreadStats) -> None:
    """Push 100-resource Bundles until the deadline: new children (shared with the partner), known ones, repeats."""
    pair, side = divmod(index, 2)
    rng = random.Random(1000 + index)
    acknowledged: list[tuple[Push, list[str]]] = []
    try:
        with httpx.Client(base_url=plan.base_url, timeout=REQUEST_TIMEOUT) as http:
            for round_no in range(MAX_ROUNDS):
                if time.monotonic() >= plan.deadline or plan.stop.is_set():
                    break
                repeat: tuple[Push, list[str]] | None = None
                fresh_round = round_no // 3
                if round_no % 3 == 0 and fresh_round < len(plan.fresh[pair]):
                    # Both clients of the pair push the same new NHS numbers at about the same time.
                    push = build_push(plan.fresh[pair][fresh_round], side=side, pool=f"n{pair}-{fresh_round}", rng=rng)
                elif round_no % 3 == 2 and acknowledged:
                    repeat = rng.choice(acknowledged)  # byte for byte what was acknowledged before
                    push = repeat[0]
                else:
                    push = build_push(plan.warm[pair], side=side, pool=f"w{pair}", rng=rng)
                locations = push_once(http, plan, stats, index, push, repeat[1] if repeat else None)
                if locations is not None and repeat is None:
                    acknowledged.append((push, locations))
    except Exception as error:  # a fault of the test itself must fail the test, not vanish with the thread
        stats.problem(f"pusher crashed: {error!r}")
        plan.stop.set()


def viewer(plan: LoadPlan, index: int, stats: ThreadStats) -> None:
    """Open allocated children's views until the deadline; each must answer 200."""
    rng = random.Random(2000 + index)
    headers = {"Authorization": f"Bearer {plan.partnership.staff_token}"}
    try:
        with httpx.Client(base_url=plan.base_url, timeout=REQUEST_TIMEOUT) as http:
            for _ in range(MAX_VIEWS):
                if time.monotonic() >= plan.deadline or plan.stop.is_set():
                    break
                child_id = rng.choice(plan.child_ids)
                url = f"/api/v1/children/{child_id}/view?purpose=child_protection"
                reply = send(http, "GET", url, headers=headers, body=None, retry_503=plan.retry_503)
                stats.attempted += 1
                stats.retries += reply.retries
                if reply.status != 200:
                    stats.count_failure(reply)
                    stats.problem(f"view: {reply.status}: {reply.text[:300]}")
                    if reply.status is None:
                        plan.stop.set()
                    continue
                try:
                    shown = json.loads(reply.text).get("child_id")
                except ValueError:
                    shown = None
                if shown != str(child_id):
                    stats.problem("view: 200 but not the requested child's view")
                    continue
                stats.ok += 1
    except Exception as error:  # a fault of the test itself must fail the test, not vanish with the thread
        stats.problem(f"viewer crashed: {error!r}")
        plan.stop.set()


@dataclass(frozen=True)
class LoadResult:
    """The finished threads' statistics and the load phase's wall time."""

    pushers: list[ThreadStats]
    viewers: list[ThreadStats]
    seconds: float
    still_running: list[str]


def run_load(plan: LoadPlan, *, pushers: int, viewers: int) -> LoadResult:
    """Run the client threads together; wait for them, bounded."""
    push_stats = [ThreadStats(f"pusher-{i}") for i in range(pushers)]
    view_stats = [ThreadStats(f"viewer-{i}") for i in range(viewers)]
    threads = [
        threading.Thread(target=pusher, args=(plan, i, s), name=s.name, daemon=True) for i, s in enumerate(push_stats)
    ]
    threads += [
        threading.Thread(target=viewer, args=(plan, i, s), name=s.name, daemon=True) for i, s in enumerate(view_stats)
    ]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    # The worst a thread can take past the deadline: one request retried to the limit.
    hard_deadline = plan.deadline + MAX_TRIES * (REQUEST_TIMEOUT + RETRY_AFTER_CAP) + 10
    for thread in threads:
        thread.join(timeout=max(0.0, hard_deadline - time.monotonic()))
    return LoadResult(
        push_stats, view_stats, time.monotonic() - started, [t.name for t in threads if t.is_alive()]
    )


# --- after the load ------------------------------------------------------------------------------


def _stored_versions(connection: Connection, model: type[Identity] | type[Item]) -> Counter[VersionKey]:
    rows = connection.execute(select(model.client_id, model.source_record_id, model.source_version)).all()
    return Counter((row[0], row[1], row[2]) for row in rows)


def storage_problems(url: str, identities: set[VersionKey], items: set[VersionKey], nhs_numbers: set[str]) -> list[str]:
    """Check that every acknowledged version is stored exactly once, nothing else is, and one child per person."""
    problems: list[str] = []
    engine = build_engine(url)
    try:
        with engine.connect() as connection:
            for table, stored, acknowledged in (
                ("identity", _stored_versions(connection, Identity), identities),
                ("item", _stored_versions(connection, Item), items),
            ):
                twice = sum(1 for count in stored.values() if count > 1)
                missing = len(acknowledged - stored.keys())
                unacknowledged = len(stored.keys() - acknowledged)
                rows = sum(stored.values())
                if twice or missing or unacknowledged or rows != len(acknowledged):
                    problems.append(
                        f"{table}: {rows} rows for {len(acknowledged)} distinct acknowledged versions "
                        f"({twice} stored more than once, {missing} acknowledged but missing, "
                        f"{unacknowledged} stored but never acknowledged)"
                    )
            children = connection.scalar(select(func.count()).select_from(Child)) or 0
            identifiers = connection.scalar(select(func.count()).select_from(ChildIdentifier)) or 0
            if not children == identifiers == len(nhs_numbers):
                problems.append(
                    f"{children} children and {identifiers} NHS-number identifiers "
                    f"for {len(nhs_numbers)} distinct acknowledged NHS numbers (one child per person)"
                )
    finally:
        engine.dispose()
    return problems


def audit_problems(env: dict[str, str]) -> list[str]:
    """Run `gateway audit verify`; it must exit 0, say the trail is intact, with signed checkpoints,
    and nothing left staged (a gateway that stops integrates what its requests staged)."""
    code, output = audit_verify(env)
    signed = re.search(r"(\d+) signed checkpoints", output)
    if code == 0 and "audit trail intact" in output and "wait to be integrated" not in output:
        if signed is not None and int(signed.group(1)) >= 1:
            return []
    return [f"`gateway audit verify` exited {code}: {output.strip()[:500]}"]


# --- the load scenario shared by the PostgreSQL and SQLite tests ----------------------------------


def run_scenario(
    database_url: str,
    tmp_path: Path,
    *,
    pushers: int,
    viewers: int,
    workers: int,
    seconds: float,
    retry_503: bool,
) -> None:
    """Seed, serve, warm up, load, stop the server, then check answers, storage and the audit trail."""
    dialect = "postgresql" if database_url.startswith("postgresql") else "sqlite"
    pairs = pushers // 2
    taken: set[str] = set()
    warm = [synthetic_children(PATIENTS_PER_PUSH, taken) for _ in range(pairs)]
    fresh = [
        [synthetic_children(PATIENTS_PER_PUSH, taken) for _ in range(MAX_ROUNDS // 3 + 1)] for _ in range(pairs)
    ]
    log_path = tmp_path / "gateway-serve.log"
    with scratch_database(database_url, tmp_path, prefix="gw_load") as url:
        partnership = set_up(url, tmp_path, clients=pushers)
        warm_stats = ThreadStats("warm-up")
        with serve_gateway(partnership.env, log_path=log_path, workers=workers) as base_url:
            plan = LoadPlan(base_url, partnership, warm, fresh, [], deadline=0.0, retry_503=retry_503)
            # One warm-up push per pair, one at a time, so that the viewers have allocated children.
            with httpx.Client(base_url=base_url, timeout=REQUEST_TIMEOUT) as http:
                for pair in range(pairs):
                    push = build_push(warm[pair], side=0, pool=f"w{pair}", rng=random.Random(pair))
                    if push_once(http, plan, warm_stats, 2 * pair, push, None) is None:
                        pytest.fail(f"warm-up push failed: {warm_stats.problems}\n{log_tail(log_path)}")
            if viewers:
                plan.child_ids = allocate_children(partnership, [c.nhs_number for group in warm for c in group])
            plan.deadline = time.monotonic() + seconds
            result = run_load(plan, pushers=pushers, viewers=viewers)
        # The server is stopped: nothing is in flight while the database is checked.

        everyone = [warm_stats, *result.pushers, *result.viewers]
        retries = sum(s.retries for s in everyone)
        pushes_ok = sum(s.ok for s in result.pushers)
        pushes = sum(s.attempted for s in result.pushers)
        repeats = sum(s.repeats_ok for s in result.pushers)
        views_ok = sum(s.ok for s in result.viewers)
        views = sum(s.attempted for s in result.viewers)
        resources = sum(s.resources_acked for s in result.pushers)
        unanswered = sum(s.unanswered for s in everyone)
        server_errors = sum(s.server_errors for s in everyone)
        client_errors = sum(s.client_errors for s in everyone)
        summary = (
            f"[{dialect}, {workers} worker(s), {pushers} pushers, {viewers} viewers, {result.seconds:.1f} s] "
            f"pushes ok {pushes_ok}/{pushes} ({repeats} exact repeats), views ok {views_ok}/{views}, "
            f"503 retries {retries}, unanswered {unanswered}, other 5xx {server_errors}, 4xx {client_errors}, "
            f"resources acknowledged {resources} = {resources / max(result.seconds, 0.001):.0f}/s"
        )
        print(f"\n{summary}")

        problems: list[str] = []
        if result.still_running:
            problems.append(f"threads still running past every timeout: {result.still_running}")
        if unanswered:
            problems.append(f"{unanswered} requests unanswered within {REQUEST_TIMEOUT:.0f} s")
        if server_errors:
            problems.append(f"{server_errors} answers 5xx (other than 503s retried after Retry-After)")
        if client_errors:
            problems.append(f"{client_errors} answers 4xx to valid requests")
        problems += [f"{s.name} had no successful request" for s in [*result.pushers, *result.viewers] if s.ok == 0]
        problems += [message for s in everyone for message in s.problems]
        server_log = log_path.read_text(errors="replace") if log_path.exists() else ""
        if "database is locked" in server_log or any("database is locked" in p for p in problems):
            problems.append("'database is locked' was reported")

        identities: set[VersionKey] = set()
        items: set[VersionKey] = set()
        nhs_numbers: set[str] = set()
        for stats in everyone:
            identities |= stats.identities
            items |= stats.items
            nhs_numbers |= stats.nhs_numbers
        problems += storage_problems(url, identities, items, nhs_numbers)
        problems += audit_problems(partnership.env)

        assert not problems, "\n".join([summary, *problems, log_tail(log_path)])


# --- the tests ---------------------------------------------------------------------------------


def test_postgresql_two_workers_under_concurrent_pushes_and_views(database_url: str, tmp_path: Path) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("PostgreSQL load test; the suite runs on SQLite (GATEWAY_TEST_DATABASE_URL is not PostgreSQL)")
    run_scenario(database_url, tmp_path, pushers=8, viewers=4, workers=2, seconds=12.0, retry_503=True)


def test_sqlite_one_worker_under_concurrent_pushes(database_url: str, tmp_path: Path) -> None:
    if database_url.startswith("postgresql"):
        pytest.skip("SQLite load test: the suite runs on PostgreSQL (unset GATEWAY_TEST_DATABASE_URL)")
    run_scenario(database_url, tmp_path, pushers=4, viewers=0, workers=1, seconds=8.0, retry_503=False)


@dataclass
class BigPush:
    """The large push's answer, filled in by its thread."""

    reply: Reply | None = None
    error: str | None = None


def test_healthz_answers_during_a_large_push(database_url: str, tmp_path: Path) -> None:
    children = synthetic_children(BIG_PUSH_PATIENTS, set())
    resources = [
        patient_resource(child, resource_id=f"big-{n}", postcode=child.postcode) for n, child in enumerate(children)
    ]
    bundle = transaction_bundle(resources)
    bundle["type"] = "batch"
    body = json.dumps(bundle).encode()
    log_path = tmp_path / "gateway-serve.log"
    # The gateway caps Bundle entries (GATEWAY_MAX_BUNDLE_ENTRIES, 5,000 by default); said here for clarity.
    extra_env = {"GATEWAY_MAX_BUNDLE_ENTRIES": "5000"}

    with scratch_database(database_url, tmp_path, prefix="gw_big") as url:
        partnership = set_up(url, tmp_path, clients=1, extra_env=extra_env)
        big = BigPush()
        health: list[tuple[int | None, float]] = []  # (status, seconds); status None: no answer within the bound

        def push_big(base_url: str) -> None:
            headers = {**FHIR_JSON, "Authorization": f"Bearer {partnership.client_tokens[0]}"}
            try:
                with httpx.Client(base_url=base_url, timeout=BIG_PUSH_TIMEOUT) as http:
                    big.reply = send(http, "POST", "/fhir/R4", headers=headers, body=body, retry_503=False)
            except Exception as error:  # a fault of the test itself
                big.error = repr(error)

        with serve_gateway(partnership.env, log_path=log_path, workers=1) as base_url:
            pushing = threading.Thread(target=push_big, args=(base_url,), name="big-push", daemon=True)
            started = time.monotonic()
            pushing.start()
            with httpx.Client(base_url=base_url, timeout=HEALTH_BOUND) as http:
                for _ in range(int((BIG_PUSH_TIMEOUT + 10) / HEALTH_INTERVAL)):
                    if not pushing.is_alive() or time.monotonic() - started > BIG_PUSH_TIMEOUT + 10:
                        break
                    asked = time.monotonic()
                    try:
                        status: int | None = http.get("/healthz").status_code
                    except httpx.HTTPError:
                        status = None
                    took = time.monotonic() - asked
                    health.append((status, took))
                    time.sleep(max(0.0, HEALTH_INTERVAL - took))
            pushing.join(timeout=max(0.0, BIG_PUSH_TIMEOUT + 15 - (time.monotonic() - started)))
            push_seconds = time.monotonic() - started

    slow = [(status, took) for status, took in health if status != 200 or took > HEALTH_BOUND]
    worst = max((took for _status, took in health), default=0.0)
    reply = big.reply
    print(
        f"\n[{'postgresql' if database_url.startswith('postgresql') else 'sqlite'}] big batch push of "
        f"{BIG_PUSH_PATIENTS} Patients: {reply.status if reply else big.error} in {push_seconds:.1f} s; "
        f"/healthz polled {len(health)} times, {len(slow)} not 200 within {HEALTH_BOUND:.0f} s, worst {worst:.2f} s"
    )
    tail = log_tail(log_path)
    assert not pushing.is_alive(), f"the big push's thread did not finish\n{tail}"
    assert reply is not None, f"the big push failed in the test: {big.error}\n{tail}"
    assert reply.status == 200, f"big push answered {reply.status}: {reply.text[:500]}\n{tail}"
    entries = json.loads(reply.text)["entry"]
    statuses = Counter(entry["response"]["status"] for entry in entries)
    assert statuses == {"201 Created": BIG_PUSH_PATIENTS}, f"big push entries: {dict(statuses)}"
    assert len(health) >= 3, f"only {len(health)} /healthz polls while the push ran ({push_seconds:.1f} s)"
    assert not slow, (
        f"{len(slow)} of {len(health)} /healthz polls did not answer 200 within {HEALTH_BOUND:.0f} s "
        f"while the big push ran (first: {slow[:5]})\n{tail}"
    )
    # The server's own output, uvicorn's lines included, stays JSON lines with ids and counts.
    lines = [line for line in log_path.read_text().splitlines() if line.strip()]
    not_json = [line[:120] for line in lines if not _is_json_object(line)]
    assert lines and not not_json, f"lines of the server log that are not JSON: {not_json[:5]}"


def _is_json_object(line: str) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


def test_one_client_assertion_buys_one_token_however_many_race_for_it(database_url: str, tmp_path: Path) -> None:
    racers = 8
    log_path = tmp_path / "gateway-serve.log"
    with scratch_database(database_url, tmp_path, prefix="gw_jti") as url:
        keys_dir = tmp_path / "keys"
        env = gateway_env(url, keys_dir, None)
        prepare(env)
        engine = build_engine(url)
        try:
            with build_sessionmaker(engine)() as session:
                client, key = make_client(session, client_id="race-client")
                session.commit()
        finally:
            engine.dispose()
        settings = Settings(database_url=url, keys_dir=keys_dir)
        now = int(time.time())
        claims = {"iss": client.id, "sub": client.id, "aud": settings.token_endpoint, "exp": now + 120,
                  "iat": now, "jti": str(uuid.uuid4())}
        assertion = jwt.encode({"alg": "ES384", "kid": key.kid}, claims, key, algorithms=["ES384"])
        form = {
            "grant_type": "client_credentials",
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": assertion,
        }
        answers: list[tuple[int, str]] = []
        gate = threading.Barrier(racers, timeout=30)

        def race(base_url: str) -> None:
            with httpx.Client(base_url=base_url, timeout=REQUEST_TIMEOUT) as http:
                gate.wait()
                reply = http.post("/oauth/token", data=form)
                answers.append((reply.status_code, reply.json().get("error", "")))

        with serve_gateway(env, log_path=log_path, workers=2) as base_url:
            threads = [threading.Thread(target=race, args=(base_url,), daemon=True) for _ in range(racers)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=REQUEST_TIMEOUT + 5)
        verified, verify_output = audit_verify(env)

    tail = log_tail(log_path)
    assert len(answers) == racers, f"only {len(answers)} of {racers} token requests were answered\n{tail}"
    assert sorted(status for status, _ in answers) == [200] + [401] * (racers - 1), f"{answers}\n{tail}"
    assert {error for status, error in answers if status == 401} == {"invalid_client"}
    assert verified == 0 and "audit trail intact" in verify_output, verify_output


def test_racing_new_versions_of_one_record_leave_exactly_one_current(database_url: str, tmp_path: Path) -> None:
    racers = 8
    log_path = tmp_path / "gateway-serve.log"
    child = demo_child(nhs_number())
    with scratch_database(database_url, tmp_path, prefix="gw_versions") as url:
        partnership = set_up(url, tmp_path, clients=1)
        headers = {**FHIR_JSON, "Authorization": f"Bearer {partnership.client_tokens[0]}"}
        patient = transaction_bundle([patient_resource(child, resource_id="p1", postcode=child.postcode)])
        versions = []
        for n in range(racers):
            # The same Encounter, changed a little each time: each is a new version of one record.
            resource = encounter_resource(encounter(), patient_ref="Patient/p1")
            resource["id"] = "e1"
            resource["period"]["start"] = (FIRST_DATE + timedelta(hours=n)).isoformat()
            versions.append(json.dumps(transaction_bundle([resource])).encode())
        answers: list[int | None] = []
        gate = threading.Barrier(racers, timeout=30)

        def race(base_url: str, body: bytes) -> None:
            with httpx.Client(base_url=base_url, timeout=REQUEST_TIMEOUT) as http:
                gate.wait()
                answers.append(send(http, "POST", "/fhir/R4", headers=headers, body=body, retry_503=True).status)

        with serve_gateway(partnership.env, log_path=log_path, workers=2) as base_url:
            with httpx.Client(base_url=base_url, timeout=REQUEST_TIMEOUT) as http:
                assert http.post("/fhir/R4", content=json.dumps(patient), headers=headers).status_code == 200
            threads = [threading.Thread(target=race, args=(base_url, body), daemon=True) for body in versions]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=REQUEST_TIMEOUT * MAX_TRIES)
        engine = build_engine(url)
        try:
            with engine.connect() as connection:
                statuses = Counter(
                    connection.scalars(
                        select(Item.status).where(Item.source_record_id == "Encounter/e1")
                    ).all()
                )
        finally:
            engine.dispose()

    tail = log_tail(log_path)
    assert answers == [200] * racers, f"{answers}\n{tail}"
    assert statuses == {"current": 1, "superseded": racers - 1}, f"{dict(statuses)}\n{tail}"


def test_a_push_that_cannot_get_its_lock_answers_503_in_time_then_succeeds(database_url: str, tmp_path: Path) -> None:
    """Nothing waits forever: while another holder keeps the lock a push needs, the push answers
    503 with Retry-After within the configured timeout (not a hang, not a 500), stores nothing,
    and goes through once the lock is free."""
    log_path = tmp_path / "gateway-serve.log"
    postgres = database_url.startswith("postgresql")
    timeouts = {"GATEWAY_DB_LOCK_TIMEOUT_MS": "500"} if postgres else {"GATEWAY_SQLITE_BUSY_TIMEOUT_MS": "500"}
    child = demo_child(nhs_number())
    body = json.dumps(transaction_bundle([patient_resource(child, resource_id="p1", postcode=child.postcode)])).encode()
    with scratch_database(database_url, tmp_path, prefix="gw_locked") as url:
        partnership = set_up(url, tmp_path, clients=1, extra_env=timeouts)
        headers = {**FHIR_JSON, "Authorization": f"Bearer {partnership.client_tokens[0]}"}
        holder = build_engine(url)
        try:
            with serve_gateway(partnership.env, log_path=log_path, workers=1) as base_url:
                # SQLite: a transaction begun IMMEDIATE holds the database's one write lock.
                writer = holder.execution_options(**{SQLITE_BEGIN: "IMMEDIATE"})
                with writer.connect() as connection, httpx.Client(base_url=base_url, timeout=REQUEST_TIMEOUT) as http:
                    transaction = connection.begin()
                    if postgres:
                        # A lock every push of a new Patient needs: writing to the identity table.
                        # (Not the audit trail's append lock: on PostgreSQL a push only stages its events.)
                        connection.execute(text("LOCK TABLE identity IN SHARE MODE"))
                    started = time.monotonic()
                    blocked = http.post("/fhir/R4", content=body, headers=headers)
                    waited = time.monotonic() - started
                    transaction.rollback()
                    freed = http.post("/fhir/R4", content=body, headers=headers)
            with holder.connect() as connection:
                identities = connection.scalar(select(func.count()).select_from(Identity))
        finally:
            holder.dispose()

    tail = log_tail(log_path)
    assert blocked.status_code == 503, f"{blocked.status_code} {blocked.text[:300]}\n{tail}"
    assert blocked.headers["retry-after"] == "1"
    assert blocked.json()["issue"][0]["code"] == "transient"
    assert waited < REQUEST_TIMEOUT / 2, f"the blocked push waited {waited:.1f} s"
    assert freed.status_code == 200, f"{freed.status_code} {freed.text[:300]}\n{tail}"
    assert identities == 1  # the blocked push stored nothing; the freed one stored its Patient once

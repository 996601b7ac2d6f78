"""The benchmark, phase by phase, on its own scratch PostgreSQL database and a real `gateway serve --workers 2`.

Phases, in order (4 and 8 are the gateway's measured speed; 7 and 9 are measured in this process):
1. set-up: scratch database, keys, migrations, clients, a team and a member (through the ORM);
2. the fhir.resources ceiling, in this process, before the server starts;
3. warm-up: a few pushes, not measured, so that the measured phase meets a warm server;
4. MEASURED ingest: 8 pusher threads over HTTP, 25 Bundles of 100 resources each;
4a. MEASURED: the same again with mixed UK Core resources (every other record a Condition,
   Observation, Flag, Immunization, AllergyIntolerance, MedicationStatement, Appointment or
   Procedure instead of an Encounter), from 8 other clients;
4b. MEASURED, alone: the large Bundle, one transaction of 5,000 entries (bench/large_bundle.py):
   time, resources per second, the serving worker's peak memory;
5. background seeding (not a speed target): bigger Bundles (500 resources) from 4 pushers, over
   HTTP through the same gateway, until the database holds 100,000 items. The rows are real,
   sealed and audited, as pushed; fewer, larger pushes only save round trips and commits;
6. the big child: its Patient, then 500 Encounters in 5 Bundles of 100; allocated to the team;
7. statements per push: the app in-process on the same database, a listener counting statements;
8. MEASURED views: 20 reader threads open the big child's view 25 times each;
9. the view's audit event (size, time to hash) and policy decisions (time), in this process;
10. after the server stops: stored rows against what was acknowledged, and `gateway audit verify`.
"""

from __future__ import annotations

import os
import random
import signal
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import httpx
from sqlalchemy import Engine, func, select, text

from audit.models import AuditPending
from gateway.demo.generator import patient_resource
from gateway.demo.loader import HEALTH_KINDS
from gateway.keys import KeyFolder
from gateway.kit.db import build_engine, build_sessionmaker
from gateway.models import Client, Item, Team, TeamMember
from gateway.settings import Settings
from policies import RecordStatus
from tests.factories import add_member, allocate, make_client, make_team
from tests.gateway.helpers import child_id_for
from tests.serving import audit_verify, gateway_env, log_tail, prepare, scratch_database, serve_gateway

from .checks import check_storage
from .client import REQUEST_TIMEOUT, Tokens, percentile
from .inprocess import count_statements, fhir_ceiling, time_policy, view_event_size
from .large_bundle import measure_large_bundle
from .phase import Window, run_concurrently
from .procstat import ServerProcesses, children, find_server, machine_facts
from .pushes import (
    Ledger,
    NhsNumbers,
    Push,
    PushStats,
    bundle_push,
    children_push,
    encounters_push,
    push_one,
    pusher,
    synthetic_child,
)
from .report import Report
from .views import ViewStats, reader

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "var" / "bench-latest.json"
DEFAULT_BASE_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
WORKERS = 2

# Measured ingest: 8 pushers × 25 Bundles of 5 Patients + 95 Encounters (100 resources, all new).
PUSHERS = 8
BUNDLES_PER_PUSHER = 25
PATIENTS_PER_BUNDLE = 5
ENCOUNTERS_PER_PATIENT = 19
INGEST_TIME_LIMIT = 150.0
SENSITIVE_SHARE = 0.1  # about one attendance in ten carries the PSY label, as in the demo data

# Background seeding up to the item count a realistic database has.
TARGET_ITEMS = 100_000
SEEDERS = 4
SEED_PATIENTS = 5
SEED_ENCOUNTERS_PER_PATIENT = 99  # 500 resources a push
SEED_TIME_LIMIT = 150.0
WARM_UP_PUSHES = 2  # per seeder pair (two threads), so that both workers are likely warmed

BIG_CHILD_BUNDLES = 5
BIG_CHILD_BUNDLE_SIZE = 100
STATEMENT_PUSHES = 5

VIEWERS = 20
VIEWS_EACH = 25
VIEW_TIME_LIMIT = 90.0

FHIR_SAMPLE = 50
HASH_RUNS = 1000
POLICY_RUNS = 200

OTHER_CPU_WARNING = 0.10  # share of the machine's CPU used by anything else before a phase is called disturbed

# Targets (the performance issue's table).
INGEST_RESOURCES_PER_SECOND_TARGET = 2000
VIEW_P95_MS_TARGET = 100
VIEW_CPU_MS_TARGET = 10
CEILING_RATIO_TARGET = 0.30
STATEMENTS_PER_RESOURCE_TARGET = 0.2
AUDIT_EVENT_BYTES_TARGET = 16 * 1024


@dataclass(frozen=True)
class Partnership:
    """What the scratch database was seeded with through the ORM."""

    pushers: list[Client]
    seeders: list[Client]
    big_child_client: Client
    in_process_client: Client
    large_bundle_client: Client
    mixed_pushers: list[Client]
    team: Team
    member: TeamMember


@dataclass
class Tally:
    """Every pusher's and reader's statistics, for the checks at the end."""

    pushes: list[PushStats] = field(default_factory=list)
    views: list[ViewStats] = field(default_factory=list)
    windows: list[tuple[str, Window]] = field(default_factory=list)
    ledger: Ledger = field(default_factory=Ledger)

    def troubled(self) -> bool:
        """Say whether any request went unanswered or was answered 5xx (worth the server's log)."""
        failures = [(s.unanswered, s.server_errors) for s in self.pushes]
        failures += [(s.unanswered, s.server_errors) for s in self.views]
        return any(unanswered or errors for unanswered, errors in failures)

    def add_pushes(self, stats: Sequence[PushStats]) -> None:
        """Keep pushers' statistics and merge what they had acknowledged."""
        for one in stats:
            self.pushes.append(one)
            self.ledger.merge(one.ledger)


class Progress:
    """One line per step on stdout, with the seconds since the start."""

    def __init__(self) -> None:
        self.started = time.monotonic()

    def __call__(self, message: str) -> None:
        print(f"[{time.monotonic() - self.started:6.1f} s] {message}", flush=True)


class Interrupted(BaseException):
    """SIGTERM or SIGHUP arrived: unwind, so that the server is stopped and the database dropped."""


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    raise Interrupted(signal.Signals(signum).name)


def main() -> int:
    """Run the benchmark; print and save the report; return 0 unless a correctness check failed."""
    return run_reported("the benchmark", RESULTS, run)


def run_reported(name: str, results: Path, body: Callable[[str, Report, Progress], None]) -> int:
    """Run a benchmark's body on the PostgreSQL server of GATEWAY_BENCH_DATABASE_URL; print and save its report.

    Returns 0 unless a correctness check failed (130 when interrupted). A missed target is in the
    report, not in the status; a failure part-way still prints what was measured before it.
    """
    # Python's default for these signals is to die on the spot, skipping every `finally`.
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _interrupt)
    report = Report(machine=machine_facts())
    progress = Progress()
    base_url = os.environ.get("GATEWAY_BENCH_DATABASE_URL", DEFAULT_BASE_URL)
    status = 1
    try:
        if not base_url.startswith("postgresql"):
            raise RuntimeError(
                "the benchmark needs PostgreSQL: set GATEWAY_BENCH_DATABASE_URL to a postgresql+psycopg:// URL"
            )
        body(Settings(database_url=base_url).database_url, report, progress)
    except (KeyboardInterrupt, Interrupted) as stop:
        report.check(f"{name} ran to the end", False, f"interrupted ({type(stop).__name__} {stop})")
        status = 130
    except Exception as error:  # the report still says what was measured before the failure
        traceback.print_exc()
        report.check(f"{name} ran to the end", False, f"{type(error).__name__}: {error}")
    report.run_seconds = time.monotonic() - progress.started
    print(report.render(), flush=True)
    report.save(results)
    print(f"saved {results.relative_to(ROOT)}")
    return 0 if report.correct else status


@dataclass
class Bench:
    """What every phase shares: the report, the scratch database, the tokens, the served gateway."""

    report: Report
    progress: Progress
    tally: Tally
    engine: Engine
    settings: Settings
    tokens: Tokens
    partnership: Partnership
    numbers: NhsNumbers
    rng: random.Random
    server: ServerProcesses | None = None
    server_url: str = ""
    ceiling_rate: float | None = None
    big_child: uuid.UUID | None = None
    in_force: int | None = None
    mixed: list[list[Push]] = field(default_factory=list)  # the mixed measured phase's Bundles

    def backends(self) -> tuple[int, ...]:
        """Return the pids of the PostgreSQL backends connected to the scratch database."""
        with self.engine.connect() as connection:
            pids = connection.scalars(text("SELECT pid FROM pg_stat_activity WHERE datname = current_database()"))
            return tuple(int(pid) for pid in pids)


def run(base_url: str, report: Report, progress: Progress) -> None:
    """Run every phase on a scratch database that is dropped at the end, whatever happens."""
    with (
        tempfile.TemporaryDirectory(prefix="gateway-bench-") as tmp,
        scratch_database(base_url, Path(tmp), prefix="gw_bench") as url,
    ):
        keys_dir = Path(tmp) / "keys"
        env = gateway_env(url, keys_dir)
        progress("scratch database created; creating keys and migrating")
        prepare(env)
        settings = Settings(database_url=url, keys_dir=keys_dir)
        engine = build_engine(url)
        try:
            report.machine["postgresql"] = server_version(engine)
            bench = Bench(
                report=report,
                progress=progress,
                tally=Tally(),
                engine=engine,
                settings=settings,
                tokens=Tokens(KeyFolder(keys_dir).signing_keys(), settings),
                partnership=register(engine),
                numbers=NhsNumbers(seed=2026),
                rng=random.Random(2026),
            )
            measured = build_measured(bench)
            bench.mixed = build_measured(bench, mixed=True)
            measure_ceiling(bench, [push for pushes in measured for push in pushes])
            log_path = Path(tmp) / "gateway-serve.log"
            try:
                with serve_gateway(env, log_path=log_path, workers=WORKERS) as server_url:
                    bench.server_url = server_url
                    bench.server = server = find_server(int(server_url.rsplit(":", 1)[1]), workers=WORKERS)
                    progress(f"`gateway serve --workers {WORKERS}` ready: supervisor and {len(server.workers)} workers")
                    served_phases(bench, measured)
                    workers_now = tuple(pid for pid in children(server.master) if pid not in server.helpers)
                    report.check(
                        "the server's workers stayed up (none died and was replaced)",
                        workers_now == server.workers,
                        f"workers at the start {list(server.workers)}, at the end {list(workers_now)}",
                    )
            finally:
                if bench.tally.troubled():
                    # The server's log holds ids and counts only (gateway/kit/logging.py), never personal data.
                    print(log_tail(log_path, lines=20), file=sys.stderr)
            progress("server stopped; checking the stored rows and the audit trail")
            after_server(bench, env)
        finally:
            engine.dispose()
        progress("dropping the scratch database")


def server_version(engine: Engine) -> str:
    """Return the PostgreSQL server's version."""
    with engine.connect() as connection:
        return str(connection.scalar(text("SHOW server_version")))


def register(engine: Engine) -> Partnership:
    """Register the clients (identity and encounter pushes), a team and a health member, through the ORM."""
    with build_sessionmaker(engine)() as session:
        pushers = [make_client(session, client_id=f"bench-pusher-{n}")[0] for n in range(PUSHERS)]
        seeders = [make_client(session, client_id=f"bench-seeder-{n}")[0] for n in range(SEEDERS)]
        big_child_client = make_client(session, client_id="bench-big-child")[0]
        in_process_client = make_client(session, client_id="bench-in-process")[0]
        large_bundle_client = make_client(session, client_id="bench-large-bundle")[0]
        health_kinds = tuple(str(kind) for kind in HEALTH_KINDS)
        mixed_pushers = [make_client(session, client_id=f"bench-mixed-{n}", kinds=health_kinds)[0] for n in range(PUSHERS)]
        team = make_team(session, name="Bench MACPT")
        member = add_member(session, team, agency="health", role="designated_nurse")
        session.commit()
    return Partnership(
        pushers, seeders, big_child_client, in_process_client, large_bundle_client, mixed_pushers, team, member
    )


def new_children_pushes(
    bench: Bench, count: int, *, prefix: str, patients: int, per_child: int, mixed: bool = False
) -> list[Push]:
    """Build (before any clock starts) Bundles of new children, each Patient followed by its records
    (Encounters; with `mixed`, every other one another UK Core resource type)."""
    return [
        children_push(
            [synthetic_child(bench.numbers, bench.rng) for _ in range(patients)],
            per_child=per_child,
            id_prefix=f"{prefix}{n}",
            rng=bench.rng,
            sensitive_share=SENSITIVE_SHARE,
            mixed=mixed,
        )
        for n in range(count)
    ]


def build_measured(bench: Bench, *, mixed: bool = False) -> list[list[Push]]:
    """Build a measured phase's Bundles, one list per pusher (Encounters only, or `mixed` UK Core records)."""
    prefix = "x" if mixed else "m"
    measured = [
        new_children_pushes(
            bench,
            BUNDLES_PER_PUSHER,
            prefix=f"{prefix}{p}-",
            patients=PATIENTS_PER_BUNDLE,
            per_child=ENCOUNTERS_PER_PATIENT,
            mixed=mixed,
        )
        for p in range(PUSHERS)
    ]
    bench.progress(f"built {PUSHERS} × {BUNDLES_PER_PUSHER} Bundles of {measured[0][0].resources} resources")
    return measured


def measure_ceiling(bench: Bench, pushes: list[Push]) -> None:
    """Time fhir.resources alone on a sample of the same Bundles: the ceiling the gateway is compared with."""
    sample = pushes[:: max(1, len(pushes) // FHIR_SAMPLE)][:FHIR_SAMPLE]
    resources, cpu = fhir_ceiling([push.body for push in sample])
    bench.ceiling_rate = resources / cpu if cpu > 0 else None
    bench.report.notes.append(
        "The fhir.resources ceiling uses fhir.resources.R4B, the models the gateway's adapter validates with: "
        "the package's default (R5) models reject these R4 Encounters (Encounter.class is a list in R5)."
    )
    bench.report.figure(
        "fhir.resources",
        "json.loads + R4B Bundle validation",
        bench.ceiling_rate,
        "resources/CPU-s",
        note=f"{len(sample)} Bundles, {resources:,} resources in {cpu:.2f} CPU-s, this process",
    )
    bench.progress(f"fhir.resources ceiling measured: {bench.ceiling_rate or 0:,.0f} resources per CPU-second")


def served_phases(bench: Bench, measured: list[list[Push]]) -> None:
    """Run the phases that need the served gateway, in order; each later one needs the earlier ones."""
    warm_up(bench)
    measured_ingest(bench, measured)
    settle(bench)
    measured_ingest(bench, bench.mixed, mixed=True)
    settle(bench)
    measure_large_bundle(bench)
    seed(bench)
    if push_big_child(bench):
        count_push_statements(bench)
        measured_views(bench)
        measure_view_event(bench)
        measure_policy(bench)


def push_phase(
    bench: Bench, name: str, clients: list[Client], pushes: list[list[Push]], limit: float
) -> tuple[Window, list[PushStats]]:
    """Run one pusher thread per client, each sending its own Bundles; keep their statistics."""
    assert bench.server is not None
    stats = [PushStats(f"{name}-{n}") for n in range(len(clients))]
    workers = [
        (one.name, pusher(bench.server_url, bench.tokens, client, mine, one))
        for client, mine, one in zip(clients, pushes, stats, strict=True)
    ]
    window = run_concurrently(workers, server=bench.server, backends=bench.backends, time_limit=limit)
    bench.tally.add_pushes(stats)
    bench.tally.windows.append((name, window))
    return window, stats


def warm_up(bench: Bench) -> None:
    """Push a few Bundles from two threads, unmeasured, so that both workers have served pushes before."""
    pairs = bench.partnership.seeders[:2]
    pushes = [
        new_children_pushes(
            bench, WARM_UP_PUSHES, prefix=f"w{n}-", patients=PATIENTS_PER_BUNDLE, per_child=ENCOUNTERS_PER_PATIENT
        )
        for n in range(len(pairs))
    ]
    window, stats = push_phase(bench, "warm-up", pairs, pushes, 60.0)
    bench.progress(f"warm-up: {sum(s.ok for s in stats)} Bundles in {window.seconds:.1f} s")


def settle(bench: Bench, *, limit: float = 60.0) -> None:
    """Wait (up to `limit` seconds) until the audit events the last phase staged are in the trail.

    On PostgreSQL pushes stage their events and the workers' integrator appends them to the Merkle
    tree in the background: a phase measured while the previous one's backlog is integrated pays
    for both (the second of two identical ingest phases ran at about 60 % of the first's rate).
    """
    started = time.perf_counter()
    pending = -1
    while time.perf_counter() - started < limit:
        with bench.engine.connect() as connection:
            pending = connection.scalar(select(func.count()).select_from(AuditPending)) or 0
        if pending == 0:
            break
        time.sleep(0.2)
    bench.progress(f"settled: {pending} audit events still staged after {time.perf_counter() - started:.1f} s")


def measured_ingest(bench: Bench, measured: list[list[Push]], *, mixed: bool = False) -> None:
    """MEASURED: 8 pushers, each with its own keep-alive client, send their 100-resource Bundles.

    Encounters only, or (`mixed`) Bundles in which every other record is another UK Core type,
    about one in ten labelled PSY by the source and some labelled by the gateway's code list.
    """
    assert bench.server is not None
    bundles = sum(len(pushes) for pushes in measured)
    name = "ingest-mixed" if mixed else "ingest"
    bench.progress(f"{name}: {PUSHERS} pushers × {BUNDLES_PER_PUSHER} Bundles over HTTP (measured)")
    clients = bench.partnership.mixed_pushers if mixed else bench.partnership.pushers
    window, stats = push_phase(bench, name, clients, measured, INGEST_TIME_LIMIT)
    report = bench.report
    section = "ingest, mixed UK Core resources (HTTP)" if mixed else "ingest (HTTP)"
    ok = sum(s.ok for s in stats)
    resources = sum(s.ledger.resources for s in stats)
    latencies = [seconds for s in stats for seconds in s.latencies]
    cpu = window.total_server_cpu()
    report.figure(section, "Bundles acknowledged", ok, f"of {bundles}")
    report.figure(section, "wall time", window.seconds, "s")
    report.figure(
        section,
        "throughput",
        resources / window.seconds if window.seconds else None,
        "resources/s",
        at_least=INGEST_RESOURCES_PER_SECOND_TARGET,
    )
    report.figure(section, "latency p50 per Bundle", percentile(latencies, 0.50) * 1000, "ms")
    report.figure(section, "latency p95 per Bundle", percentile(latencies, 0.95) * 1000, "ms")
    per_cpu = resources / cpu if cpu > 0 else None
    report.figure(section, "resources per server CPU-second", per_cpu, "resources/CPU-s")
    ratio = per_cpu / bench.ceiling_rate if per_cpu and bench.ceiling_rate else None
    report.figure(
        section,
        "gateway ÷ fhir.resources ceiling",
        ratio * 100 if ratio is not None else None,
        "%",
        at_least=CEILING_RATIO_TARGET * 100,
        note="resources per server CPU-s ÷ resources per CPU-s of fhir.resources alone",
    )
    cpu_figures(bench, section, window)
    bench.report.notes.append(
        "Worker shares: a keep-alive connection stays with the worker that accepted it, so the shares show "
        "how the clients' connections were split between the workers as much as how busy each request was."
    )
    bench.progress(
        f"{name}: {ok}/{bundles} Bundles, {resources / max(window.seconds, 1e-9):,.0f} resources/s, "
        f"{per_cpu or 0:,.0f} resources per server CPU-s"
    )


def cpu_figures(
    bench: Bench,
    section: str,
    window: Window,
    *,
    per: int | None = None,
    unit: str = "",
    per_target: float | None = None,
) -> None:
    """Report the server's CPU in a window: in all, per worker with its share, and what else ran."""
    assert bench.server is not None
    report, server = bench.report, bench.server
    total = window.total_server_cpu()
    report.figure(section, "server CPU (supervisor + workers)", total, "CPU-s")
    if per:
        report.figure(section, f"server CPU per {unit}", total / per * 1000, "CPU-ms", at_most=per_target)
    workers_cpu = sum(window.server_cpu.get(pid, 0.0) for pid in server.workers)
    for number, pid in enumerate(server.workers, 1):
        used = window.server_cpu.get(pid, 0.0)
        report.figure(section, f"worker {number} CPU", used, "CPU-s", note=f"pid {pid}")
        report.figure(
            section, f"worker {number} share of workers' CPU", used / workers_cpu * 100 if workers_cpu else None, "%"
        )
    report.figure(section, "supervisor CPU", window.server_cpu.get(server.master, 0.0), "CPU-s")
    report.figure(section, "PostgreSQL CPU (scratch database's backends)", window.postgres_cpu, "CPU-s")
    report.figure(section, "benchmark clients CPU (this process)", window.bench_cpu, "CPU-s")
    other = window.other_cpu()
    capacity = window.seconds * (os.cpu_count() or 1)
    report.figure(section, "other processes' CPU on the machine", other, "CPU-s", note="disturbs the figures if large")
    if capacity and other > OTHER_CPU_WARNING * capacity:
        report.notes.append(
            f"{section}: other processes used {other:.1f} of the {capacity:.0f} CPU-seconds the machine had in the "
            f"phase ({other / capacity:.0%}): the machine was shared, so its speed figures are disturbed."
        )


def seed(bench: Bench) -> None:
    """Not measured: push 500-resource Bundles from 4 pushers over HTTP until the database holds 100,000 items."""
    later = BIG_CHILD_BUNDLES * BIG_CHILD_BUNDLE_SIZE + STATEMENT_PUSHES * PATIENTS_PER_BUNDLE * ENCOUNTERS_PER_PATIENT
    needed = TARGET_ITEMS - bench.tally.ledger.items_created - later
    per_push = SEED_PATIENTS * SEED_ENCOUNTERS_PER_PATIENT
    count = max(0, -(-needed // per_push))
    if count == 0:
        return
    pushes = new_children_pushes(
        bench, count, prefix="bg", patients=SEED_PATIENTS, per_child=SEED_ENCOUNTERS_PER_PATIENT
    )
    shares = [pushes[n::SEEDERS] for n in range(SEEDERS)]
    bench.progress(f"seeding: {count} Bundles of {pushes[0].resources} resources from {SEEDERS} pushers (not measured)")
    window, stats = push_phase(bench, "seed", bench.partnership.seeders, shares, SEED_TIME_LIMIT)
    resources = sum(s.ledger.resources for s in stats)
    ok = sum(s.ok for s in stats)
    section = "seeding (HTTP, not a target)"
    bench.report.figure(
        section, "Bundles acknowledged", ok, f"of {count}", note=f"{pushes[0].resources} resources each"
    )
    bench.report.figure(section, "wall time", window.seconds, "s", note=f"limit {SEED_TIME_LIMIT:.0f} s")
    bench.report.figure(section, "throughput", resources / window.seconds if window.seconds else None, "resources/s")
    cpu = window.total_server_cpu()
    bench.report.figure(section, "resources per server CPU-second", resources / cpu if cpu else None, "resources/CPU-s")
    bench.progress(f"seeding: {ok}/{count} Bundles in {window.seconds:.1f} s")


def push_big_child(bench: Bench) -> bool:
    """Push one child's Patient, then 500 Encounters in 5 Bundles of 100; allocate the child to the team."""
    child = synthetic_child(bench.numbers, bench.rng)
    patient = patient_resource(child, resource_id="big-p0", postcode=child.postcode)
    pushes = [bundle_push([patient], [child.nhs_number])]
    pushes += [encounters_push("big-p0", BIG_CHILD_BUNDLE_SIZE, rng=bench.rng) for _ in range(BIG_CHILD_BUNDLES)]
    stats = PushStats("big-child")
    with httpx.Client(base_url=bench.server_url, timeout=REQUEST_TIMEOUT) as http:
        for push in pushes:
            push_one(http, bench.tokens, bench.partnership.big_child_client, push, stats)
    bench.tally.add_pushes([stats])
    if stats.ok != len(pushes):
        bench.report.check("the big child's pushes were acknowledged", False, "; ".join(stats.problems))
        return False
    keyring = KeyFolder(bench.settings.keys_dir).data_keyring()
    with build_sessionmaker(bench.engine)() as session:
        child_id = child_id_for(session, keyring, child.nhs_number)
        allocate(session, child_id=child_id, team=bench.partnership.team)
        session.commit()
    with bench.engine.connect() as connection:
        bench.in_force = connection.scalar(
            select(func.count())
            .select_from(Item)
            .where(Item.child_id == child_id, Item.status != RecordStatus.SUPERSEDED)
        )
    bench.big_child = child_id
    bench.progress(f"big child: {bench.in_force} items in force, allocated to the member's team")
    return True


def count_push_statements(bench: Bench) -> None:
    """Count the statements of 5 fresh 100-resource Bundles and 1 exact repeat, through the app in-process."""
    fresh = new_children_pushes(
        bench, STATEMENT_PUSHES, prefix="s", patients=PATIENTS_PER_BUNDLE, per_child=ENCOUNTERS_PER_PATIENT
    )
    settings = bench.settings.model_copy(update={"log_level": "WARNING"})
    counts = count_statements(settings, bench.tokens, bench.partnership.in_process_client, fresh)
    bench.tally.ledger.merge(counts.ledger)
    bench.report.check(
        "in-process pushes answered as expected (5 created, 1 exact repeat unchanged)",
        not counts.problems and len(counts.fresh_statements) == len(fresh),
        "; ".join(counts.problems),
    )
    section = "statements (in-process)"
    mean = sum(counts.fresh_statements) / len(counts.fresh_statements) if counts.fresh_statements else None
    resources = counts.resources_per_push
    bench.report.figure(
        section,
        f"per fresh {resources}-resource Bundle",
        mean,
        "statements",
        at_most=STATEMENTS_PER_RESOURCE_TARGET * resources,
        note=f"each of {len(counts.fresh_statements)}: {counts.fresh_statements}",
    )
    bench.report.figure(
        section,
        "per resource",
        mean / resources if mean is not None else None,
        "statements",
        at_most=STATEMENTS_PER_RESOURCE_TARGET,
    )
    executions = counts.fresh_executions
    bench.report.figure(
        section,
        "executions per fresh Bundle (each executemany row)",
        sum(executions) / len(executions) if executions else None,
        "executions",
        note="an executemany counts once above: one round trip, but executed once per row",
    )
    bench.report.figure(section, "exact repeat of a Bundle", counts.repeat_statements, "statements")
    checkouts = counts.fresh_checkouts
    bench.report.figure(
        section,
        "pool checkouts per fresh Bundle",
        sum(checkouts) / len(checkouts) if checkouts else None,
        "checkouts",
        note="each also pings the database (pool_pre_ping), not counted above",
    )
    bench.progress(f"statements: {counts.fresh_statements} per fresh Bundle, {counts.repeat_statements} for the repeat")


def measured_views(bench: Bench) -> None:
    """MEASURED: 20 readers, each with its own keep-alive client, open the big child's view 25 times each."""
    assert bench.server is not None and bench.big_child is not None
    member = bench.partnership.member
    stats = [ViewStats(f"reader-{n}") for n in range(VIEWERS)]
    workers = [(s.name, reader(bench.server_url, bench.tokens, member, bench.big_child, VIEWS_EACH, s)) for s in stats]
    bench.progress(f"views: {VIEWERS} readers × {VIEWS_EACH} views of the big child (measured)")
    window = run_concurrently(workers, server=bench.server, backends=bench.backends, time_limit=VIEW_TIME_LIMIT)
    bench.tally.views += stats
    bench.tally.windows.append(("views", window))
    report, section = bench.report, "views (HTTP)"
    ok = sum(s.ok for s in stats)
    latencies = [seconds for s in stats for seconds in s.latencies]
    report.figure(section, "views answered 200", ok, f"of {VIEWERS * VIEWS_EACH}")
    report.figure(section, "wall time", window.seconds, "s")
    report.figure(section, "throughput", ok / window.seconds if window.seconds else None, "views/s")
    for label, fraction in (("p50", 0.50), ("p95", 0.95), ("p99", 0.99)):
        target = VIEW_P95_MS_TARGET if label == "p95" else None
        report.figure(section, f"latency {label}", percentile(latencies, fraction) * 1000, "ms", at_most=target)
    cpu_figures(bench, section, window, per=ok or None, unit="view", per_target=VIEW_CPU_MS_TARGET)
    seen = sorted((finished, count) for s in stats for finished, count in s.timeline_counts)
    if seen:
        first = seen[0][1]
        report.check(
            "the first view's timeline holds every item in force (as the stored rows say)",
            first == bench.in_force,
            f"timeline {first} entries, {bench.in_force} items in force",
        )
        others = sorted({count for _, count in seen})
        report.check(
            "every view's timeline has as many entries as the first",
            others == [first],
            f"{len(seen)} views parsed, timeline lengths seen {others}",
        )
    bench.progress(f"views: {ok} in {window.seconds:.1f} s, p95 {percentile(latencies, 0.95) * 1000:,.0f} ms")


def measure_view_event(bench: Bench) -> None:
    """Measure the newest view event: canonical bytes and time to hash."""
    size = view_event_size(bench.engine, runs=HASH_RUNS)
    if size is None:
        bench.report.check("a staff:view:opened audit event was recorded", False)
        return
    section = "audit"
    bench.report.figure(
        section,
        "view event canonical size",
        size.canonical_bytes,
        "bytes",
        at_most=AUDIT_EVENT_BYTES_TARGET,
        note=f"a view of {bench.in_force} items; its `items` field has {size.item_entries} group(s)",
    )
    bench.report.check(
        "the view event names every item in force with its decision",
        size.item_decisions == bench.in_force,
        f"{size.item_decisions} item decisions decoded, {bench.in_force} items in force",
    )
    bench.report.figure(section, "time to hash it", size.hash_seconds * 1e6, "µs", note=f"mean of {HASH_RUNS}")


def measure_policy(bench: Bench) -> None:
    """Time the policy engine on the big child's items, as the view decides them."""
    assert bench.big_child is not None
    timing = time_policy(bench.settings, bench.partnership.member, bench.big_child, runs=POLICY_RUNS)
    section = "policy (in-process)"
    if timing.items:
        per_decision = timing.seconds_per_run / timing.items
        bench.report.figure(
            section,
            "decide 500 items",
            per_decision * 500 * 1000,
            "ms",
            note=f"mean of {POLICY_RUNS} runs over {timing.items} items",
        )
        bench.report.figure(section, "per decision", per_decision * 1e6, "µs")
    bench.report.check(
        "the policy shows the member every item in force of the big child",
        timing.shown == timing.items == bench.in_force,
        f"{timing.shown} of {timing.items} shown, {bench.in_force} in force",
    )


def after_server(bench: Bench, env: dict[str, str]) -> None:
    """Check the stored rows against what was acknowledged, the audit trail, and every answer."""
    report, tally = bench.report, bench.tally
    items = check_storage(bench.engine, tally.ledger, report)
    report.figure("database", "items stored", items, "items", at_least=TARGET_ITEMS)
    code, output = audit_verify(env)
    report.check("`gateway audit verify`: intact", code == 0 and "audit trail intact" in output, output.strip()[:300])
    everyone: list[PushStats | ViewStats] = [*tally.pushes, *tally.views]
    retries = sum(s.retries for s in everyone)
    report.figure("requests", "503 answers retried after Retry-After", retries, "retries")
    report.check(
        "no request unanswered",
        not sum(s.unanswered for s in everyone),
        f"{sum(s.unanswered for s in everyone)} unanswered",
    )
    errors = sum(s.server_errors for s in everyone)
    report.check(
        "no 5xx but retried 503s", not errors, f"{errors} answered 5xx{examples(everyone, lambda s: s.server_errors)}"
    )
    refusals = sum(s.client_errors for s in everyone)
    report.check(
        "no 4xx to valid requests",
        not refusals,
        f"{refusals} answered 4xx{examples(everyone, lambda s: s.client_errors)}",
    )
    report.check("every view was the requested child's", not sum(s.wrong for s in tally.views))
    stuck = [f"{name}: {thread}" for name, window in tally.windows for thread in window.still_running]
    crashes = [f"{name}: {crash}" for name, window in tally.windows for crash in window.crashes]
    report.check("every client thread finished in time", not stuck, ", ".join(stuck))
    report.check("no client thread crashed", not crashes, "; ".join(crashes)[:500])


def examples(stats: Sequence[PushStats | ViewStats], failures: Callable[[PushStats | ViewStats], int]) -> str:
    """Return a few problems of the threads that had failures of a kind, for a check's detail."""
    found = [problem for s in stats if failures(s) for problem in s.problems]
    return (" (" + "; ".join(found[:3])[:400] + ")") if found else ""

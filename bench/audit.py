"""The audit log's benchmark, on its own scratch PostgreSQL database: `python -m bench audit` (make bench-audit).

Phases, in order (3, 4 and 5 are measured; results in var/bench-audit-latest.json):
1. set-up: scratch database, keys, migrations;
2. fill (not a target): this process appends 1,000,000 realistic events (views of 50 items and pushes, half
   each) through `audit.record`, 10,000 a transaction, signing a checkpoint every 100,000 (the last at
   1,000,000). One process: `record` holds the trail's lock for all its work, so a second appender would only
   wait (and, behind 10,000-event transactions, could pass the app's lock_timeout);
3. MEASURED verify of the 1,000,000 events (every hash, node and checkpoint signature), in this process, with
   batch sizes 5,000 and 20,000; profiled briefly (cProfile, from a trusted checkpoint) when far over target;
4. MEASURED inclusion proofs: `gateway serve --workers 2` on the same database; 500 random seqs fetched one
   after the other on one keep-alive client against the newest checkpoint, each proof checked against the
   root of the signed note;
5. MEASURED appends: 4 writer processes (spawned), each with its own engine and sessions as the app builds
   them, call `audit.record` and commit for 10 s after a 2 s warm-up: first 1 event a transaction (what a
   request does), then 10. They append on top of the 1,000,000, as they would on a trail in use;
6. checks: seqs run 1..N without a gap, the stored events are the appended ones, and `verify` (from the
   trusted checkpoint of 1,000,000) is ok over what the writers appended.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import cProfile
import io
import multiprocessing
import os
import pstats
import random
import tempfile
import threading
import time
import uuid
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from multiprocessing.queues import Queue
from multiprocessing.sharedctypes import SynchronizedArray
from multiprocessing.synchronize import Barrier
from pathlib import Path
from queue import Empty

import httpx
from sqlalchemy import Engine, func, select, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from audit import (
    Actor,
    ActorType,
    AuditAction,
    AuditCheckpoint,
    AuditEvent,
    AuditPending,
    AuditRecord,
    CheckpointError,
    ItemDecisionRef,
    NoteSigner,
    Outcome,
    ProofError,
    VerificationResult,
    record,
    sign_checkpoint,
    stage,
    verify,
    verify_inclusion,
)
from gateway.auth.principal import Principal, PrincipalKind
from gateway.auth.tokens import mint_access_token
from gateway.keys import KeyFolder
from gateway.ig.checkpointer import integrate_pending
from gateway.kit.db import build_engine, build_sessionmaker
from gateway.settings import Settings
from policies import Agency, DecisionKind, Purpose, Relationship
from tests.serving import gateway_env, log_tail, prepare, scratch_database, serve_gateway

from .client import REQUEST_TIMEOUT, percentile
from .procstat import find_server, machine_busy_seconds, snapshot, spent
from .report import Report

# bench.run imports the starlette test client, which warns that it is deprecated; the writer processes
# import this module afresh (spawn), without the filter bench/__main__.py sets.
warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient` is deprecated")
from .run import OTHER_CPU_WARNING, Progress, run_reported, server_version  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "var" / "bench-audit-latest.json"
PROFILE_RESULTS = ROOT / "var" / "bench-audit-verify-profile.txt"

# The fill (not measured).
EVENTS = 1_000_000
FILL_PER_TRANSACTION = 10_000
CHECKPOINT_EVERY = 100_000

# Verify.
BATCH_SIZES = (5_000, 20_000)
PROFILE_EVENTS = 100_000  # events walked under cProfile, from the trusted checkpoint this far before the end
PROFILE_WHEN_OVER = 2.0  # profile when the best verify takes more than this many times its target
PROFILE_LINES = 15

# Inclusion proofs.
SERVE_WORKERS = 2
PROOFS = 500
PROOF_WARM_UP = 20  # unmeasured requests first, so that the measured ones meet a warm worker
IG_OFFICER = "ig.officer@bench.example"

# Appends from concurrent writers.
WRITERS = 4
WRITE_SECONDS = 10.0
WARM_UP_SECONDS = 2.0
# (mode, events a transaction). Deferred, as a request on PostgreSQL does: a commit stages its events
# and an integrator appends them; inline, as SQLite (and the CLI) does: each commit appends under
# the trail's lock. One event a transaction is what a request writes; ten, a push touching ten children.
PHASES = (("deferred", 1), ("deferred", 10), ("inline", 1), ("inline", 10))
INTEGRATION_INTERVAL = 0.1  # seconds, as GATEWAY_AUDIT_INTEGRATION_INTERVAL_S
WRITER_START_TIMEOUT = 120.0  # seconds the spawned writers may take to import, connect and reach the start line
WRITER_RESULT_TIMEOUT = 60.0  # seconds after a phase's end for every writer's result
WRITER_EXIT_TIMEOUT = 10.0  # seconds the writers have, together, to exit after the last phase
PROBLEMS_KEPT = 3

# Realistic events: a view names 50 items with their decisions; pushes and views alternate.
ITEMS_PER_VIEW = 50
EVENT_POOL = 200  # distinct events each appender cycles through (seq, prev_hash and time differ anyway)
POLICY_VERSION = "default-macpt-isa@2026.1"
DECISIONS = (  # (decision, rule, weight)
    (DecisionKind.DISCLOSE, "cp.health", 40),
    (DecisionKind.DISCLOSE, "cp.police", 20),
    (DecisionKind.DISCLOSE, "cp.education", 10),
    (DecisionKind.DISCLOSE, "cp.social-care", 15),
    (DecisionKind.REDACT, "protect.special-category", 5),
    (DecisionKind.INDICATE, "protect.police-handling-code-c", 4),
    (DecisionKind.WITHHOLD_SILENTLY, "default.deny", 6),
)

# Targets (the performance issue's table).
APPEND_EVENTS_PER_SECOND_TARGET = 5_000
VERIFY_SECONDS_TARGET = 10.0  # for 1,000,000 events
PROOF_P95_MS_TARGET = 5.0


@dataclass(frozen=True)
class Options:
    """What to run: the issue's sizes by default, smaller ones for a quick try."""

    events: int
    writers: int
    seconds: float
    proofs: int
    profile: bool


def parse_options(argv: Sequence[str] | None) -> Options:
    """Read the command line of `python -m bench audit`."""
    parser = argparse.ArgumentParser(prog="python -m bench audit", description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=EVENTS, help="events in the trail verified (default 1,000,000)")
    parser.add_argument("--writers", type=int, default=WRITERS, help="writer processes appending (default 4)")
    parser.add_argument("--seconds", type=float, default=WRITE_SECONDS, help="measured seconds of appends, per mode")
    parser.add_argument("--proofs", type=int, default=PROOFS, help="inclusion proofs fetched (default 500)")
    parser.add_argument("--profile", action="store_true", help="profile verify even when it meets its target")
    args = parser.parse_args(argv)
    if args.events < CHECKPOINT_EVERY or args.events % FILL_PER_TRANSACTION:
        parser.error(f"--events must be a multiple of {FILL_PER_TRANSACTION:,} and at least {CHECKPOINT_EVERY:,}")
    if args.writers < 1 or args.seconds <= 0 or not 1 <= args.proofs <= args.events:
        parser.error("--writers, --seconds and --proofs must be positive (and --proofs at most --events)")
    return Options(args.events, args.writers, args.seconds, args.proofs, args.profile)


# --- events ---------------------------------------------------------------------------------------


def _uuid(rng: random.Random) -> uuid.UUID:
    return uuid.UUID(int=rng.getrandbits(128), version=4)


def view_event(rng: random.Random) -> AuditRecord:
    """A practitioner opens a child's view: 50 item decisions, as child_view.service.audit_view records them."""
    decisions = [(decision, rule) for decision, rule, _ in DECISIONS]
    weights = [weight for _, _, weight in DECISIONS]
    items = [
        ItemDecisionRef(_uuid(rng), decision.value, rule)
        for decision, rule in rng.choices(decisions, weights, k=ITEMS_PER_VIEW)
    ]
    agency = rng.choice([Agency.HEALTH, Agency.POLICE, Agency.EDUCATION, Agency.SOCIAL_CARE])
    return AuditRecord(
        action=AuditAction.STAFF_VIEW_OPENED,
        actor=Actor(ActorType.USER, f"practitioner{rng.randrange(500)}@bench.example", agency.value, "practitioner"),
        outcome=Outcome.SUCCESS,
        child_id=_uuid(rng),
        purpose=Purpose.CHILD_PROTECTION.value,
        lawful_basis="public_task",
        policy_version=POLICY_VERSION,
        items=items,
        detail={"relationship": Relationship.ALLOCATED_TEAM.value, "team_id": str(_uuid(rng))},
        request_id=_uuid(rng).hex,
        trace_id=_uuid(rng).hex,
    )


def push_event(rng: random.Random) -> AuditRecord:
    """An agency system pushes records of a child, as ingest.service records it."""
    return AuditRecord(
        action=AuditAction.CLIENT_RECORDS_PUSHED,
        actor=Actor(ActorType.CLIENT, f"bench-client-{rng.randrange(20)}", Agency.HEALTH.value),
        outcome=Outcome.SUCCESS,
        child_id=_uuid(rng),
        detail={
            "submission": "transaction",
            "items_created": rng.randint(1, 100),
            "identities_created": rng.randint(0, 1),
            "unchanged": rng.randint(0, 5),
        },
        request_id=_uuid(rng).hex,
        trace_id=_uuid(rng).hex,
    )


def event_pool(seed: int) -> list[AuditRecord]:
    """Return EVENT_POOL events, a view and a push alternately."""
    rng = random.Random(seed)
    return [view_event(rng) if n % 2 == 0 else push_event(rng) for n in range(EVENT_POOL)]


def take(pool: Sequence[AuditRecord], start: int, count: int) -> list[AuditRecord]:
    """Return `count` events of the pool from `start` on, cycling."""
    return [pool[(start + n) % len(pool)] for n in range(count)]


# --- measuring a stretch --------------------------------------------------------------------------


def backends(engine: Engine) -> tuple[int, ...]:
    """Return the pids of the PostgreSQL backends connected to the scratch database."""
    with engine.connect() as connection:
        pids = connection.scalars(text("SELECT pid FROM pg_stat_activity WHERE datname = current_database()"))
        return tuple(int(pid) for pid in pids)


@dataclass(frozen=True)
class Usage:
    """A measured stretch: wall seconds, and CPU seconds of this process, of given processes, of PostgreSQL."""

    seconds: float
    own_cpu: float
    processes_cpu: float
    postgres_cpu: float
    machine_busy: float

    def other_cpu(self) -> float:
        """Return the CPU seconds anything else on the machine used (it disturbs the figures)."""
        return max(0.0, self.machine_busy - self.own_cpu - self.processes_cpu - self.postgres_cpu)


class Meter:
    """Starts measuring when made; `stop` returns the Usage since."""

    def __init__(self, engine: Engine, pids: Sequence[int] = ()) -> None:
        self.engine, self.pids = engine, tuple(pids)
        self.processes = snapshot(self.pids)
        self.postgres = snapshot(backends(engine))
        self.machine = machine_busy_seconds()
        self.own = time.process_time()
        self.started = time.perf_counter()

    def stop(self) -> Usage:
        """Return what was used since the meter was made."""
        seconds = time.perf_counter() - self.started
        own = time.process_time() - self.own
        # Backends opened in between are in the second snapshot only: all their CPU counts.
        return Usage(
            seconds=seconds,
            own_cpu=own,
            processes_cpu=sum(spent(self.processes, snapshot(self.pids)).values()),
            postgres_cpu=sum(spent(self.postgres, snapshot(backends(self.engine))).values()),
            machine_busy=machine_busy_seconds() - self.machine,
        )


def cpu_figures(report: Report, section: str, usage: Usage, *, processes: str = "", own: str = "") -> None:
    """Report where the CPU of a stretch went, and whether the machine was shared."""
    if own:
        report.figure(section, f"{own} CPU", usage.own_cpu, "CPU-s")
    if processes:
        report.figure(section, f"{processes} CPU", usage.processes_cpu, "CPU-s")
    report.figure(section, "PostgreSQL CPU (scratch database's backends)", usage.postgres_cpu, "CPU-s")
    other = usage.other_cpu()
    report.figure(section, "other processes' CPU on the machine", other, "CPU-s", note="disturbs the figures if large")
    capacity = usage.seconds * (os.cpu_count() or 1)
    if capacity and other > OTHER_CPU_WARNING * capacity:
        report.notes.append(
            f"{section}: other processes used {other:.1f} of the {capacity:.1f} CPU-seconds the machine had "
            f"({other / capacity:.0%}): the machine was shared, so its speed figures are disturbed."
        )


# --- the run --------------------------------------------------------------------------------------


@dataclass
class AuditBench:
    """What the phases share."""

    options: Options
    report: Report
    progress: Progress
    engine: Engine
    factory: sessionmaker[Session]
    signer: NoteSigner
    settings: Settings
    url: str
    fill_appended: int = 0
    fill_checkpoints: int = 0
    writers_appended: int = 0
    best_batch_size: int = BATCH_SIZES[0]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the audit benchmark; print and save the report; return 0 unless a correctness check failed."""
    options = parse_options(argv)
    return run_reported(
        "the audit benchmark", RESULTS, lambda url, report, progress: run(url, options, report, progress)
    )


def run(base_url: str, options: Options, report: Report, progress: Progress) -> None:
    """Run every phase on a scratch database that is dropped at the end, whatever happens."""
    with (
        tempfile.TemporaryDirectory(prefix="gateway-bench-audit-") as tmp,
        scratch_database(base_url, Path(tmp), prefix="gw_bench_audit") as url,
    ):
        keys_dir = Path(tmp) / "keys"
        env = gateway_env(url, keys_dir)
        progress("scratch database created; creating keys and migrating")
        prepare(env)
        settings = Settings(database_url=url, keys_dir=keys_dir)
        engine = build_engine(url, settings.database_limits())
        try:
            report.machine["postgresql"] = server_version(engine)
            bench = AuditBench(
                options=options,
                report=report,
                progress=progress,
                engine=engine,
                factory=build_sessionmaker(engine),
                signer=KeyFolder(keys_dir).audit_signer(),
                settings=settings,
                url=url,
            )
            fill(bench)
            measure_verify(bench)
            measure_proofs(bench, env, Path(tmp) / "gateway-serve.log")
            measure_appends(bench)
            final_checks(bench)
        finally:
            engine.dispose()
        progress("dropping the scratch database")


# --- fill -----------------------------------------------------------------------------------------


def fill(bench: AuditBench) -> None:
    """Not measured: append the events in 10,000-event transactions, signing a checkpoint every 100,000."""
    target = bench.options.events
    pool = event_pool(seed=1)
    bench.progress(f"fill: appending {target:,} events through audit.record, {FILL_PER_TRANSACTION:,} a transaction")
    started = time.perf_counter()
    size = 0
    while size < target:
        count = min(FILL_PER_TRANSACTION, target - size)
        # Views first, then pushes: record's ORM bulk INSERT sends one statement per run of rows with the same
        # non-null columns, so alternating shapes would make 10,000 one-row INSERTs, whose RETURNING rows
        # SQLAlchemy splices together in quadratic time. The fill is not measured; the events are the same.
        batch = sorted(take(pool, size, count), key=lambda entry: entry.action != AuditAction.STAFF_VIEW_OPENED)
        with bench.factory() as session:
            events = record(session, batch)
            session.commit()
        size = events[-1].seq
        bench.fill_appended += count
        if size // CHECKPOINT_EVERY > (size - count) // CHECKPOINT_EVERY or size == target:
            with bench.factory() as session:
                sign_checkpoint(session, bench.signer)
                session.commit()
            bench.fill_checkpoints += 1
            elapsed = time.perf_counter() - started
            bench.progress(f"fill: {size:,} events, checkpoint signed ({size / elapsed:,.0f} events/s so far)")
    seconds = time.perf_counter() - started
    section = "fill (not a target)"
    bench.report.figure(section, "events appended", bench.fill_appended, "events", note="one process")
    bench.report.figure(section, "wall time", seconds, "s")
    bench.report.figure(
        section,
        "throughput",
        bench.fill_appended / seconds,
        "events/s",
        note=f"audit.record, {FILL_PER_TRANSACTION:,} events a transaction, checkpoints included",
    )


# --- verify ---------------------------------------------------------------------------------------


def measure_verify(bench: AuditBench) -> None:
    """MEASURED: verify the whole trail with each batch size; profile when far over target."""
    section = "verify (in-process)"
    events = bench.options.events
    target = VERIFY_SECONDS_TARGET * events / 1_000_000
    verifier = bench.signer.verifier()
    timings: dict[int, float] = {}
    for batch_size in BATCH_SIZES:
        bench.progress(f"verify: {events:,} events, batch_size {batch_size:,} (measured)")
        with bench.factory() as session:
            meter = Meter(bench.engine)
            result = verify(session, verifier=verifier, batch_size=batch_size)
            usage = meter.stop()
        timings[batch_size] = usage.seconds
        bench.report.check(
            f"verify (batch_size {batch_size:,}): ok over every event and checkpoint, signatures checked",
            whole_trail_verified(result, events, bench.fill_checkpoints),
            describe(result),
        )
        name = f"batch_size {batch_size:,}"
        bench.report.figure(section, f"{name}: wall time", usage.seconds, "s")
        bench.report.figure(section, f"{name}: events/s", result.events_checked / usage.seconds, "events/s")
        cpu_figures(bench.report, f"{section}, {name}", usage, own="this process (verify)")
        bench.progress(
            f"verify: batch_size {batch_size:,} took {usage.seconds:.1f} s "
            f"({result.events_checked / usage.seconds:,.0f} events/s), ok={result.ok}"
        )
    best = min(timings, key=lambda size: timings[size])
    bench.best_batch_size = best
    bench.report.figure(
        section,
        f"verify {events:,} events (best: batch_size {best:,})",
        timings[best],
        "s",
        at_most=target,
        note=f"{events / timings[best]:,.0f} events/s; batch sizes tried: {', '.join(f'{b:,}' for b in BATCH_SIZES)}",
    )
    if bench.options.profile or timings[best] > PROFILE_WHEN_OVER * target:
        profile_verify(bench)


def whole_trail_verified(result: VerificationResult, events: int, checkpoints: int) -> bool:
    """Say whether a verify of the whole trail found it intact, every event and checkpoint checked with its key."""
    return (
        result.ok
        and result.events_checked == events
        and result.checkpoints_checked == checkpoints
        and result.signatures_checked
    )


def describe(result: VerificationResult) -> str:
    """Return a check's detail for a verify result."""
    if not result.ok:
        return (
            f"broken at event {result.first_broken_seq} / checkpoint {result.bad_checkpoint}: {result.problem}; "
            f"{result.events_checked:,} events checked"
        )
    return (
        f"{result.events_checked:,} events, {result.checkpoints_checked} checkpoints"
        f"{' with signatures' if result.signatures_checked else ''}, root {result.root_hash}"
    )


def profile_verify(bench: AuditBench) -> None:
    """Profile verify over the last PROFILE_EVENTS events (from the trusted checkpoint before them)."""
    start = max(0, bench.options.events - PROFILE_EVENTS)
    verifier = bench.signer.verifier()
    with bench.factory() as session:
        stored = session.get(AuditCheckpoint, start)
        trusted = verifier.open(stored.note) if stored is not None else None
        bench.progress(f"verify: profiling {bench.options.events - start:,} events from the checkpoint of {start:,}")
        profiler = cProfile.Profile()
        profiler.enable()
        result = verify(session, verifier=verifier, trusted=trusted, batch_size=bench.best_batch_size)
        profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(PROFILE_LINES)
    text_out = (
        f"cProfile of verify over {result.events_checked:,} events (trusted checkpoint {start:,}, "
        f"batch_size {bench.best_batch_size:,}), top {PROFILE_LINES} by cumulative time\n{out.getvalue()}"
    )
    print(text_out, flush=True)
    PROFILE_RESULTS.parent.mkdir(parents=True, exist_ok=True)
    PROFILE_RESULTS.write_text(text_out)
    bench.report.notes.append(
        f"verify was profiled (cProfile, {result.events_checked:,} events): top {PROFILE_LINES} by cumulative time "
        f"printed above and saved in {PROFILE_RESULTS.relative_to(ROOT)}."
    )


# --- inclusion proofs -----------------------------------------------------------------------------


@dataclass
class ProofTally:
    """What the proof requests found."""

    latencies: list[float] = field(default_factory=list)
    leaves: dict[int, bytes] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    failed: int = 0

    def problem(self, message: str) -> None:
        """Count a request or proof that failed; keep the first few messages."""
        self.failed += 1
        if len(self.problems) < PROBLEMS_KEPT:
            self.problems.append(message)


def ig_officer_token(bench: AuditBench) -> str:
    """Return a staff access token for an IG officer, valid 300 s (the phase takes seconds)."""
    return mint_access_token(
        KeyFolder(bench.settings.keys_dir).signing_keys(),
        issuer=bench.settings.issuer,
        audience=bench.settings.audience,
        principal=Principal(kind=PrincipalKind.STAFF, subject=IG_OFFICER, agency=Agency.SOCIAL_CARE, role="ig_officer"),
        ttl_seconds=300,
    )


def measure_proofs(bench: AuditBench, env: dict[str, str], log_path: Path) -> None:
    """MEASURED: fetch inclusion proofs of random events from the served gateway, one after the other."""
    verifier = bench.signer.verifier()
    tally = ProofTally()
    try:
        with serve_gateway(env, log_path=log_path, workers=SERVE_WORKERS) as server_url:
            server = find_server(int(server_url.rsplit(":", 1)[1]), workers=SERVE_WORKERS)
            bench.progress(f"`gateway serve --workers {SERVE_WORKERS}` ready: {len(server.workers)} workers")
            headers = {"Authorization": f"Bearer {ig_officer_token(bench)}"}
            with httpx.Client(base_url=server_url, timeout=REQUEST_TIMEOUT, headers=headers) as http:
                served = http.get("/api/v1/audit/checkpoint")
                if served.status_code != 200:
                    bench.report.check("GET /api/v1/audit/checkpoint answers 200", False, f"{served.status_code}")
                    return
                try:
                    checkpoint = verifier.open(served.text)
                except CheckpointError as bad:
                    bench.report.check("the served checkpoint's signature verifies", False, str(bad))
                    return
                bench.report.check(
                    "the served checkpoint is the newest signed: the whole trail, signature valid",
                    checkpoint.tree_size == bench.options.events,
                    f"tree size {checkpoint.tree_size:,}",
                )
                rng = random.Random(2026)
                for seq in rng.sample(range(1, checkpoint.tree_size + 1), PROOF_WARM_UP):
                    http.get(f"/api/v1/audit/proof/{seq}", params={"tree_size": checkpoint.tree_size})
                seqs = rng.sample(range(1, checkpoint.tree_size + 1), bench.options.proofs)
                bench.progress(
                    f"proofs: {len(seqs)} inclusion proofs against the checkpoint of {checkpoint.tree_size:,}"
                )
                meter = Meter(bench.engine, server.all)
                for seq in seqs:
                    fetch_proof(http, seq, checkpoint.tree_size, checkpoint.root_hash, tally)
                usage = meter.stop()
    finally:
        if tally.failed:
            print(log_tail(log_path, lines=20), flush=True)
    stored = stored_hashes(bench, list(tally.leaves))
    wrong_leaves = sum(1 for seq, leaf in tally.leaves.items() if stored.get(seq) != leaf)
    report, section = bench.report, "inclusion proofs (HTTP)"
    report.check(
        "every inclusion proof verifies against the signed root, its leaf the stored event's hash",
        tally.failed == 0 and wrong_leaves == 0 and len(tally.leaves) == len(seqs),
        f"{len(tally.leaves)} of {len(seqs)} proofs verified, {wrong_leaves} leaf hashes not the stored event's"
        + (f"; {'; '.join(tally.problems)}" if tally.problems else ""),
    )
    report.figure(section, "proofs answered 200", len(tally.latencies), f"of {len(seqs)}")
    for label, fraction in (("p50", 0.50), ("p95", 0.95), ("p99", 0.99)):
        target = PROOF_P95_MS_TARGET if label == "p95" else None
        report.figure(section, f"latency {label}", percentile(tally.latencies, fraction) * 1000, "ms", at_most=target)
    report.figure(section, "server CPU per proof", usage.processes_cpu / max(1, len(seqs)) * 1000, "CPU-ms")
    cpu_figures(report, section, usage, processes="server (supervisor + workers)", own="benchmark client")
    report.notes.append(
        "Inclusion proofs: one keep-alive client, so one worker answered all of them (sequential requests)."
    )
    bench.progress(f"proofs: p95 {percentile(tally.latencies, 0.95) * 1000:.2f} ms, {tally.failed} failed")


def fetch_proof(http: httpx.Client, seq: int, size: int, root: bytes, tally: ProofTally) -> None:
    """Fetch one proof (timed), then check it against the checkpoint's root (not timed)."""
    started = time.perf_counter()
    try:
        response = http.get(f"/api/v1/audit/proof/{seq}", params={"tree_size": size})
    except httpx.HTTPError as error:
        tally.problem(f"seq {seq}: {type(error).__name__}")
        return
    seconds = time.perf_counter() - started
    if response.status_code != 200:
        tally.problem(f"seq {seq}: answered {response.status_code}")
        return
    tally.latencies.append(seconds)
    try:
        body = response.json()
        leaf = base64.b64decode(body["leaf_hash"], validate=True)
        path = [base64.b64decode(node, validate=True) for node in body["path"]]
        if (body["leaf_index"], body["tree_size"]) != (seq - 1, size):
            raise ProofError(f"proof of leaf {body['leaf_index']} in a tree of {body['tree_size']}")
        verify_inclusion(leaf_index=seq - 1, tree_size=size, leaf_hash=leaf, path=path, root=root)
    except (ValueError, KeyError, TypeError, binascii.Error) as bad:  # ProofError is a ValueError
        tally.problem(f"seq {seq}: {type(bad).__name__}: {bad}")
        return
    tally.leaves[seq] = leaf


def stored_hashes(bench: AuditBench, seqs: list[int]) -> dict[int, bytes]:
    """Return the stored hash of each event asked for."""
    if not seqs:
        return {}
    with bench.engine.connect() as connection:
        rows = connection.execute(select(AuditEvent.seq, AuditEvent.hash).where(AuditEvent.seq.in_(seqs)))
        return {int(seq): bytes.fromhex(hex_hash) for seq, hex_hash in rows}


# --- appends from concurrent writers --------------------------------------------------------------


@dataclass(frozen=True)
class WriterPlan:
    """What one writer process does (sent to it pickled)."""

    url: str
    writer: int
    phases: tuple[tuple[str, int], ...]


@dataclass
class WriterResult:
    """One writer's findings in one phase (sent back pickled)."""

    writer: int
    mode: str
    per_transaction: int
    events_in_window: int = 0
    transactions_in_window: int = 0
    latencies: list[float] = field(default_factory=list)
    failures: int = 0
    problems: list[str] = field(default_factory=list)
    appended: int = 0  # committed by this writer since it started, warm-ups and overruns included


def writer_process(
    plan: WriterPlan, barrier: Barrier, schedule: SynchronizedArray[float], results: Queue[WriterResult | str]
) -> None:
    """One writer: append and commit until the phase's end, for each phase; report each phase's result."""
    try:
        settings = Settings(database_url=plan.url)
        engine = build_engine(settings.database_url, settings.database_limits())
        factories = {"inline": build_sessionmaker(engine), "deferred": build_sessionmaker(engine, deferred_audit=True)}
        pool = event_pool(seed=100 + plan.writer)
        with factories["inline"]() as session:  # connect before the clock starts
            session.execute(text("SELECT 1"))
        appended = cursor = 0
        for mode, per in plan.phases:
            barrier.wait(timeout=WRITER_START_TIMEOUT)  # every writer is ready
            barrier.wait(timeout=WRITER_START_TIMEOUT)  # the schedule is set
            warm_end, end = schedule[0], schedule[1]
            result = WriterResult(plan.writer, mode, per)
            append = record if mode == "inline" else stage
            while time.monotonic() < end:
                batch = take(pool, cursor, per)
                cursor += per
                started = time.monotonic()
                try:
                    with factories[mode]() as session:
                        append(session, batch)
                        session.commit()
                except SQLAlchemyError as error:  # a lock or statement timeout: a request would answer 503
                    result.failures += 1
                    if len(result.problems) < PROBLEMS_KEPT:
                        result.problems.append(f"{type(error).__name__}: {str(error).splitlines()[0][:200]}")
                    continue
                done = time.monotonic()
                appended += per
                if warm_end <= done <= end:
                    result.events_in_window += per
                    result.transactions_in_window += 1
                    result.latencies.append(done - started)
            result.appended = appended
            results.put(result)
        engine.dispose()
    except BaseException as error:  # tell the parent, and free it from the start line
        results.put(f"writer {plan.writer}: {type(error).__name__}: {error}")
        barrier.abort()


class Integrator:
    """The deferred phases' integrator: what each gateway worker's audit worker does, in a thread here."""

    def __init__(self, factory: sessionmaker[Session]) -> None:
        self.factory = factory
        self.stop = threading.Event()
        self.failures: list[str] = []
        self.thread = threading.Thread(target=self._run, name="audit-integrator", daemon=True)

    def _run(self) -> None:
        while not self.stop.wait(INTEGRATION_INTERVAL):
            try:
                integrate_pending(self.factory)
            except SQLAlchemyError as error:
                self.failures.append(f"{type(error).__name__}: {str(error).splitlines()[0][:200]}")

    def finish(self) -> None:
        """Stop, then integrate what is left."""
        self.stop.set()
        self.thread.join(timeout=WRITER_RESULT_TIMEOUT)
        integrate_pending(self.factory)


def staged_count(bench: AuditBench) -> int:
    """Return how many events wait in audit_pending."""
    with bench.engine.connect() as connection:
        return int(connection.scalar(select(func.count()).select_from(AuditPending)) or 0)


def trail_size(bench: AuditBench) -> int:
    """Return the number of events in the trail (integrated)."""
    with bench.engine.connect() as connection:
        return int(connection.scalar(select(func.coalesce(func.max(AuditEvent.seq), 0))) or 0)


def measure_appends(bench: AuditBench) -> None:
    """MEASURED: writer processes append for a fixed time in each mode (deferred, inline) and size."""
    options = bench.options
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(options.writers + 1)
    schedule = context.Array("d", 2)
    results: Queue[WriterResult | str] = context.Queue()
    processes = [
        context.Process(
            target=writer_process,
            args=(WriterPlan(bench.url, n, PHASES), barrier, schedule, results),
            name=f"audit-writer-{n}",
            daemon=True,
        )
        for n in range(options.writers)
    ]
    bench.progress(f"appends: starting {options.writers} writer processes")
    for process in processes:
        process.start()
    rates: dict[tuple[str, int], float] = {}
    crashes: list[str] = []
    try:
        for mode, per in PHASES:
            try:
                barrier.wait(timeout=WRITER_START_TIMEOUT)
            except threading.BrokenBarrierError:
                crashes += drain(results)
                break
            integrator = Integrator(bench.factory) if mode == "deferred" else None
            if integrator is not None:
                integrator.thread.start()
            warm_end = time.monotonic() + WARM_UP_SECONDS
            end = warm_end + options.seconds
            schedule[0], schedule[1] = warm_end, end
            barrier.wait(timeout=WRITER_START_TIMEOUT)
            bench.progress(f"appends: {options.writers} writers, {mode}, {per} event(s) a transaction, {options.seconds:.0f} s")
            time.sleep(max(0.0, warm_end - time.monotonic()))
            first = trail_size(bench)
            meter = Meter(bench.engine, [process.pid for process in processes if process.pid is not None])
            time.sleep(max(0.0, end - time.monotonic()))
            usage = meter.stop()
            integrated = trail_size(bench) - first
            left = staged_count(bench)
            found, crashed = collect(results, options.writers, deadline=end + WRITER_RESULT_TIMEOUT)
            if integrator is not None:
                integrator.finish()
            crashes += crashed
            if crashed or len(found) != options.writers:
                break
            rates[(mode, per)] = append_figures(bench, mode, per, found, usage, integrated=integrated, left=left)
            if integrator is not None:
                bench.report.check(
                    f"the integrator appended every staged event, without a failure ({per} event(s) a transaction)",
                    not integrator.failures and staged_count(bench) == 0,
                    f"{staged_count(bench):,} still staged; failures: {'; '.join(integrator.failures[:3]) or 'none'}",
                )
            bench.writers_appended = sum(one.appended for one in found)
    finally:
        # Writers that ran every phase exit by themselves; the others (a crash, an interruption) are stopped.
        deadline = time.monotonic() + WRITER_EXIT_TIMEOUT
        for process in processes:
            process.join(timeout=max(0.0, deadline - time.monotonic()))
        for process in processes:
            if process.is_alive():
                process.terminate()
                process.join(timeout=WRITER_EXIT_TIMEOUT)
    bench.report.check(
        "every writer process ran every mode to the end",
        not crashes and len(rates) == len(PHASES),
        "; ".join(crashes)[:500],
    )
    judge_appends(bench, rates)


def drain(results: Queue[WriterResult | str]) -> list[str]:
    """Return the crash reports waiting in the queue."""
    found: list[str] = []
    while True:
        try:
            item = results.get(timeout=1.0)
        except Empty:
            return found
        if isinstance(item, str):
            found.append(item)


def collect(
    results: Queue[WriterResult | str], writers: int, *, deadline: float
) -> tuple[list[WriterResult], list[str]]:
    """Wait (bounded) for one result per writer; return the results and any crash reports."""
    found: list[WriterResult] = []
    crashes: list[str] = []
    while len(found) + len(crashes) < writers:
        try:
            item = results.get(timeout=max(0.1, deadline - time.monotonic()))
        except Empty:
            crashes.append(f"{writers - len(found) - len(crashes)} writer(s) sent no result in time")
            break
        if isinstance(item, str):
            crashes.append(item)
        else:
            found.append(item)
    return found, crashes


def append_figures(
    bench: AuditBench, mode: str, per: int, found: list[WriterResult], usage: Usage, *, integrated: int, left: int
) -> float:
    """Report one phase's figures (but its rate, which judge_appends reports); return its events/s.

    Inline, an event is in the trail when its transaction commits. Deferred, it is in the trail when
    integrated: the rate returned is what reached the trail in the window, so that a backlog left
    for later does not count as throughput.
    """
    report = bench.report
    section = f"appends ({mode}, {bench.options.writers} writer processes, {per} event(s) a transaction)"
    events = sum(one.events_in_window for one in found)
    transactions = sum(one.transactions_in_window for one in found)
    failures = sum(one.failures for one in found)
    latencies = [seconds for one in found for seconds in one.latencies]
    rate = events / bench.options.seconds
    report.figure(section, "events committed in the window", events, "events", note=f"{bench.options.seconds:.0f} s")
    report.figure(section, "transactions/s", transactions / bench.options.seconds, "transactions/s")
    report.figure(section, "transaction p50 (append or stage, and commit)", percentile(latencies, 0.50) * 1000, "ms")
    report.figure(section, "transaction p95 (append or stage, and commit)", percentile(latencies, 0.95) * 1000, "ms")
    if mode == "deferred":
        report.figure(section, "events staged (committed by the writers)", rate, "events/s")
        rate = integrated / bench.options.seconds
        report.figure(section, "events integrated into the trail in the window", rate, "events/s")
        report.figure(section, "staged, not yet integrated, at the window's end", left, "events")
    report.figure(
        section,
        "per writer",
        None if not found else rate / len(found),
        "events/s",
        note=", ".join(f"{one.events_in_window / bench.options.seconds:,.0f}" for one in found),
    )
    cpu_figures(report, section, usage, processes="writer processes")
    problems = [problem for one in found for problem in one.problems]
    report.check(
        f"every append transaction committed ({mode}, {per} event(s) a transaction)",
        failures == 0,
        f"{failures} failed" + (f": {'; '.join(problems[:PROBLEMS_KEPT])}" if problems else ""),
    )
    bench.progress(f"appends: {mode}, {per} event(s) a transaction: {rate:,.0f} events/s, {failures} failed")
    return rate


def judge_appends(bench: AuditBench, rates: dict[tuple[str, int], float]) -> None:
    """Report the append rates against the target: judged on deferred appends, one event a transaction,
    unless that misses it; the inline rates are reported beside them (SQLite's way, and the way before)."""
    section = "appends (target)"
    target = APPEND_EVENTS_PER_SECOND_TARGET
    judged = [("deferred", 1), ("deferred", 10)]
    verdict = None
    for index, (mode, per) in enumerate(judged):
        rate = rates.get((mode, per))
        label = f"({'ab'[index]}) {mode}, {per} event(s) a transaction"
        if verdict is None:
            note = "what a request does on PostgreSQL" if per == 1 else "judged because (a) misses"
            bench.report.figure(section, label, rate, "events/s", at_least=target, note=note)
            if rate is not None and rate >= target:
                verdict = f"{label} meets it"
        else:
            bench.report.figure(section, label, rate, "events/s", note="no target: (a) meets it")
    for per in (1, 10):
        bench.report.figure(
            section, f"inline, {per} event(s) a transaction", rates.get(("inline", per)), "events/s",
            note="no target: SQLite's way, and every commit's way before deferred appends",
        )
    bench.report.notes.append(
        f"Append target ({target:,} events/s sustained, {bench.options.writers} writer processes): "
        f"{verdict or 'missed by (a) and (b)'}. The writers appended on top of the filled trail; in the "
        "deferred phases an integrator thread in this process did what each gateway worker's audit worker does."
    )


# --- checks ---------------------------------------------------------------------------------------


def final_checks(bench: AuditBench) -> None:
    """Check the trail after every phase: gap-free seqs, the events appended, and verify over the writers' events."""
    report = bench.report
    with bench.engine.connect() as connection:
        count, low, high = connection.execute(
            select(func.count(), func.min(AuditEvent.seq), func.max(AuditEvent.seq))
        ).one()
    report.check(
        "seqs run 1..N without a gap",
        count > 0 and low == 1 and high == count,
        f"{count:,} events, seqs {low}..{high}",
    )
    appended = bench.fill_appended + bench.writers_appended
    report.check(
        "events stored = events the fill and the writers say they appended",
        count == appended,
        f"{count:,} stored; {bench.fill_appended:,} by the fill, {bench.writers_appended:,} by the writers",
    )
    verifier = bench.signer.verifier()
    with bench.factory() as session:
        signed = sign_checkpoint(session, bench.signer)
        session.commit()
        stored = session.get(AuditCheckpoint, bench.options.events)
        if stored is None:
            report.check("the checkpoint of the filled trail is stored", False)
            return
        bench.progress(f"checks: verifying the {signed.tree_size - stored.tree_size:,} events the writers appended")
        result = verify(
            session, verifier=verifier, trusted=verifier.open(stored.note), batch_size=bench.best_batch_size
        )
    report.check(
        "verify ok over the writers' events (from the trusted checkpoint of the filled trail), "
        "up to a new signed checkpoint",
        result.ok
        and result.events_checked == bench.writers_appended
        and result.checkpoints_checked >= 1
        and result.root_hash == signed.root_hash.hex(),
        describe(result),
    )

"""The large Bundle: one 5,000-entry FHIR transaction pushed alone, its time and the memory it costs.

2,500 Patients without NHS numbers (each is scored against the others: the most linking work and,
before lock striping, the most advisory locks a push can ask for) and an Encounter of each, made
by the project's generator (gateway/demo/generator.py: Faker's made-up people, no NHS number).
Measured: the push over HTTP (wall time, resources per second), the peak resident memory of the
worker that served it (VmHWM, reset just before the push), and, in this process, the peak
Python allocation of parsing it (tracemalloc around the adapter's parse_bundle).
"""

from __future__ import annotations

import time
import tracemalloc
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from adapters.nhs_fhir import parse_bundle
from gateway.demo.generator import encounter_resource, generate, patient_resource

from .procstat import PROC
from .pushes import FHIR_JSON, Push, PushStats, bundle_push, push_one

if TYPE_CHECKING:
    from .run import Bench

LARGE_BUNDLE_ENTRIES = 5_000
LARGE_BUNDLE_SEED = 5_000
LARGE_BUNDLE_TIME_LIMIT = 300.0  # seconds for the one request; a liveness bound, not a target
MIB = 1024 * 1024


def large_bundle_resources(entries: int = LARGE_BUNDLE_ENTRIES, *, seed: int, prefix: str) -> list[dict[str, Any]]:
    """Return `entries` resources: synthetic Patients without NHS numbers, each followed by one of its Encounters."""
    resources: list[dict[str, Any]] = []
    for n, child in enumerate(generate(children=entries // 2, seed=seed).children):
        patient_id = f"{prefix}-p{n}"
        patient = patient_resource(child, resource_id=patient_id, postcode=child.postcode)
        del patient["identifier"]  # no NHS number: linked by score over name, birth date, sex and address
        resources.append(patient)
        resources.append(encounter_resource(child.encounters[0], patient_ref=f"Patient/{patient_id}"))
    return resources


def large_bundle_push(entries: int = LARGE_BUNDLE_ENTRIES, *, seed: int = LARGE_BUNDLE_SEED) -> Push:
    """Serialise the large Bundle as a transaction (no NHS numbers to acknowledge)."""
    return bundle_push(large_bundle_resources(entries, seed=seed, prefix="large"), ())


@dataclass(frozen=True)
class ParseMemory:
    """What parsing one Bundle cost in this process."""

    peak_bytes: int  # tracemalloc's peak over the parse (the body's bytes themselves not counted)
    seconds: float


def parse_memory(body: bytes) -> ParseMemory:
    """Parse and validate a Bundle with the adapter, tracing Python's allocations; return the peak."""
    tracemalloc.start()
    try:
        started = time.perf_counter()
        submission = parse_bundle(body, FHIR_JSON, max_entries=LARGE_BUNDLE_ENTRIES)
        seconds = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert not submission.issues, submission.issues
    return ParseMemory(peak, seconds)


def peak_rss_kib(pid: int) -> tuple[int, int] | None:
    """Return a process's (peak, current) resident memory in KiB, or None when it is gone."""
    try:
        status = (PROC / str(pid) / "status").read_text()
    except OSError:
        return None
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return int(fields["VmHWM"].split()[0]), int(fields["VmRSS"].split()[0])


def reset_peak_rss(pid: int) -> None:
    """Reset a process's peak resident memory (VmHWM) to its current size (Linux: clear_refs 5)."""
    try:
        Path(PROC / str(pid) / "clear_refs").write_text("5")
    except OSError:
        pass  # the process is gone, or the kernel refuses: the peak then covers its whole life


def measure_large_bundle(bench: Bench) -> None:
    """MEASURED, alone: push the 5,000-entry Bundle over HTTP; report time, rate and the worker's peak memory."""
    assert bench.server is not None
    push = large_bundle_push()
    report, section = bench.report, f"large Bundle ({push.resources:,} entries, HTTP, alone)"
    parsed = parse_memory(push.body)
    workers = bench.server.workers
    before = {pid: peak_rss_kib(pid) for pid in workers}
    for pid in workers:
        reset_peak_rss(pid)
    stats = PushStats("large-bundle")
    client = bench.partnership.large_bundle_client
    bench.progress(f"large Bundle: {push.resources:,} entries, {len(push.body) / MIB:.1f} MiB, pushed alone")
    with httpx.Client(base_url=bench.server_url, timeout=LARGE_BUNDLE_TIME_LIMIT) as http:
        bench.tokens.for_client(client)  # minted before the clock starts
        started = time.monotonic()
        entries = push_one(http, bench.tokens, client, push, stats)
        seconds = time.monotonic() - started
    bench.tally.add_pushes([stats])
    # The worker that served the push is the one whose peak rose the most above where it stood.
    rises: dict[int, tuple[int, int]] = {}  # pid → (peak after, rise above its resident size before)
    for pid in workers:
        was, now = before[pid], peak_rss_kib(pid)
        if was is not None and now is not None:
            rises[pid] = (now[0], now[0] - was[1])
    served_by = max(rises, key=lambda pid: rises[pid][1]) if rises else None
    created = sum(1 for status, _location in entries or () if status == "201 Created")
    report.check(
        f"the large Bundle was acknowledged, every entry 201 Created ({push.resources:,})",
        entries is not None and created == push.resources,
        "; ".join(stats.problems) or f"{created:,} created",
    )
    report.figure(section, "body", len(push.body) / MIB, "MiB", note="compact JSON, as generated")
    report.figure(section, "wall time", seconds, "s", note="one request, alone on the server")
    report.figure(section, "throughput", push.resources / seconds if entries is not None else None, "resources/s")
    if served_by is not None:
        peak, rise = rises[served_by]
        report.figure(
            section,
            "peak RSS of the worker that served it",
            peak / 1024,
            "MiB",
            note=f"VmHWM, reset before the push; {rise / 1024:,.0f} MiB above its RSS before (pid {served_by})",
        )
    report.figure(
        section,
        "peak Python allocation of parsing it (in-process)",
        parsed.peak_bytes / MIB,
        "MiB",
        note=f"tracemalloc around adapters.nhs_fhir.parse_bundle ({parsed.seconds:.1f} s traced); the body not counted",
    )
    bench.progress(
        f"large Bundle: {'acknowledged' if entries is not None else 'FAILED'} in {seconds:.1f} s, "
        f"{push.resources / seconds:,.0f} resources/s"
    )

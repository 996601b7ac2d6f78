"""Run client threads together against the served gateway and measure the window they ran in."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .client import MAX_TRIES, REQUEST_TIMEOUT, RETRY_AFTER_CAP
from .procstat import ServerProcesses, machine_busy_seconds, snapshot, spent

START_TIMEOUT = 60.0  # seconds the threads may take to be ready (open their clients) before the phase starts


@dataclass
class Gate:
    """What the threads of one phase share: the start line, the stop signal and the deadline."""

    barrier: threading.Barrier
    stop: threading.Event = field(default_factory=threading.Event)
    deadline: float = 0.0

    def start(self) -> None:
        """Wait (bounded) until every thread and the clock are ready."""
        self.barrier.wait(timeout=START_TIMEOUT)

    def running(self) -> bool:
        """Say whether a thread may start another request."""
        return not self.stop.is_set() and time.monotonic() < self.deadline


Worker = Callable[[Gate], None]


@dataclass(frozen=True)
class Window:
    """How long a phase took and the CPU seconds spent in it, by the server's processes and others."""

    seconds: float
    server_cpu: dict[int, float]
    postgres_cpu: float  # the backends serving the scratch database
    bench_cpu: float  # this process: the client threads
    machine_busy: float  # every core, every process
    still_running: tuple[str, ...]
    crashes: tuple[str, ...]

    def total_server_cpu(self) -> float:
        """Return the CPU seconds of the server's master, workers and helpers together."""
        return sum(self.server_cpu.values())

    def other_cpu(self) -> float:
        """Return the CPU seconds the rest of the machine used: anything else running disturbs the figures."""
        return max(0.0, self.machine_busy - self.total_server_cpu() - self.postgres_cpu - self.bench_cpu)


def run_concurrently(
    workers: list[tuple[str, Worker]],
    *,
    server: ServerProcesses,
    backends: Callable[[], tuple[int, ...]],
    time_limit: float,
) -> Window:
    """Start one thread per worker, release them together, wait for them (bounded), measure the window."""
    gate = Gate(threading.Barrier(len(workers) + 1))
    crashes: list[str] = []

    def guarded(name: str, work: Worker) -> None:
        try:
            work(gate)
        except Exception as error:  # a fault of the benchmark itself: stop the phase, report it
            crashes.append(f"{name}: {error!r}")
            gate.stop.set()
            gate.barrier.abort()  # a thread that never reached the start line must not hold the others

    threads = [threading.Thread(target=guarded, args=(name, work), name=name, daemon=True) for name, work in workers]
    for thread in threads:
        thread.start()
    # Threads read the deadline before each request: this provisional one covers the instant
    # between the release and the exact one set just after it.
    gate.deadline = time.monotonic() + START_TIMEOUT + time_limit
    server_before, pg_before = snapshot(server.all), snapshot(backends())
    bench_before, machine_before = time.process_time(), machine_busy_seconds()
    try:
        gate.barrier.wait(timeout=START_TIMEOUT)
    except threading.BrokenBarrierError:
        gate.stop.set()
    started = time.monotonic()
    gate.deadline = started + time_limit
    # The worst a thread can take past the deadline: one request retried to the limit.
    hard_deadline = gate.deadline + MAX_TRIES * (REQUEST_TIMEOUT + RETRY_AFTER_CAP) + 10
    for thread in threads:
        thread.join(timeout=max(0.0, hard_deadline - time.monotonic()))
    seconds = time.monotonic() - started
    # Backends the pool opened during the phase are in the second list only: all their CPU counts.
    server_after, pg_after = snapshot(server.all), snapshot(backends())
    return Window(
        seconds=seconds,
        server_cpu=spent(server_before, server_after),
        postgres_cpu=sum(spent(pg_before, pg_after).values()),
        bench_cpu=time.process_time() - bench_before,
        machine_busy=machine_busy_seconds() - machine_before,
        still_running=tuple(thread.name for thread in threads if thread.is_alive()),
        crashes=tuple(crashes),
    )

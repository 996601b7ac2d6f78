"""CPU time of the served gateway's processes, read from /proc, and the facts of the machine."""

from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
WORKER_WAIT_SECONDS = 15.0


def cpu_seconds(pid: int) -> float | None:
    """Return a process's user + system CPU seconds so far, or None when it is gone."""
    try:
        stat = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its last ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state), so utime (field 14) and stime (field 15) are 11 and 12.
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def command_line(pid: int) -> list[str]:
    """Return a process's arguments, or [] when it is gone."""
    try:
        raw = (PROC / str(pid) / "cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def children(pid: int) -> list[int]:
    """Return the pids of a process's children (of every one of its threads)."""
    found: list[int] = []
    try:
        tasks = list((PROC / str(pid) / "task").iterdir())
    except OSError:
        return found
    for task in tasks:
        try:
            found += [int(child) for child in (task / "children").read_text().split()]
        except OSError:
            continue
    return sorted(set(found))


@dataclass(frozen=True)
class ServerProcesses:
    """The served gateway: the uvicorn supervisor, its workers, and any helper (resource tracker)."""

    master: int
    workers: tuple[int, ...]
    helpers: tuple[int, ...]

    @property
    def all(self) -> tuple[int, ...]:
        """Return every pid whose CPU counts as the server's."""
        return (self.master, *self.workers, *self.helpers)


def find_server(port: int, *, workers: int) -> ServerProcesses:
    """Find the `gateway serve --port PORT` child of this process and its worker processes."""
    masters = [
        pid
        for pid in children(os.getpid())
        if "serve" in (args := command_line(pid)) and "--port" in args and str(port) in args
    ]
    if len(masters) != 1:
        raise RuntimeError(f"expected one `gateway serve --port {port}` child of this process, found {masters}")
    master = masters[0]
    deadline = time.monotonic() + WORKER_WAIT_SECONDS
    while True:
        # uvicorn's workers are multiprocessing "spawn" children; the resource tracker is another.
        kids = children(master)
        helpers = tuple(pid for pid in kids if any("resource_tracker" in part for part in command_line(pid)))
        found = tuple(pid for pid in kids if pid not in helpers)
        if len(found) >= workers or time.monotonic() > deadline:
            return ServerProcesses(master, found, helpers)
        time.sleep(0.2)


CpuSnapshot = dict[int, float]


def snapshot(pids: tuple[int, ...]) -> CpuSnapshot:
    """Return the CPU seconds so far of each pid still alive."""
    taken: CpuSnapshot = {}
    for pid in pids:
        seconds = cpu_seconds(pid)
        if seconds is not None:
            taken[pid] = seconds
    return taken


def spent(before: CpuSnapshot, after: CpuSnapshot) -> dict[int, float]:
    """Return the CPU seconds each pid used between two snapshots.

    A pid only in `after` was born in between: all its CPU counts. A pid gone by `after` counts 0
    (its last seconds are lost: /proc no longer has them).
    """
    pids = before.keys() | after.keys()
    return {pid: max(0.0, after.get(pid, before.get(pid, 0.0)) - before.get(pid, 0.0)) for pid in pids}


def machine_busy_seconds() -> float:
    """Return the CPU seconds every core of the machine has spent busy (not idle, not waiting on I/O)."""
    fields = [int(value) for value in (PROC / "stat").read_text().splitlines()[0].split()[1:]]
    # user nice system idle iowait irq softirq steal (guest time is already inside user and nice).
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / CLOCK_TICKS


def machine_facts() -> dict[str, str | int]:
    """Return the CPU model, core count, RAM and Python version of this machine."""
    model = "unknown"
    try:
        for line in (PROC / "cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram_gib = "unknown"
    try:
        for line in (PROC / "meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram_gib = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                break
    except OSError:
        pass
    return {
        "cpu_model": model,
        "cores": os.cpu_count() or 0,
        "ram": ram_gib,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }

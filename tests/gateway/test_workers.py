"""`gateway serve --workers 2` on Linux: each worker has its own SO_REUSEPORT socket and a share of the connections.

Which worker holds a connection is read from /proc: a process's open sockets are the links
`socket:[inode]` under /proc/<pid>/fd, and /proc/net/tcp (and tcp6) gives each TCP socket's
state and local port with the same inode. Every request has a timeout and every wait is
bounded; the served gateway is always stopped (tests/serving.py).
"""

from __future__ import annotations

import os
import re
import signal
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.serving import LOOPBACK, gateway_env, log_tail, prepare, run_gateway, scratch_database, serve_gateway

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc; SO_REUSEPORT spreads only on Linux")

WORKERS = 2
# Linux hashes each new connection's addresses and ports to one of the sockets sharing the port,
# so each of these lands on either worker with probability 1/2, independently. The chance that
# one worker holds fewer than MIN_SHARE of CONNECTIONS is 2 * sum(C(40, k), k < 6) / 2**40 ≈ 1.4e-6.
# (With 20 connections and at least 4 each it would be 2.6e-3: too often for a test.)
CONNECTIONS = 40
MIN_SHARE = 6
REQUESTS_PER_CONNECTION = 3
REQUEST_TIMEOUT = 30.0  # seconds
WAIT_TIMEOUT = 30.0  # seconds, for a replacement worker to appear or the server to stop
TCP_LISTEN = "0A"
TCP_ESTABLISHED = "01"
SOCKET_LINK = re.compile(r"socket:\[(\d+)\]")


# --- /proc ------------------------------------------------------------------------------------


def tcp_inodes(port: int, state: str) -> set[int]:
    """Return the inodes of this network namespace's TCP sockets on local `port` in `state`."""
    inodes: set[int] = set()
    for table in (Path("/proc/net/tcp"), Path("/proc/net/tcp6")):
        if not table.exists():
            continue
        for line in table.read_text().splitlines()[1:]:
            fields = line.split()
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            if local_port == port and fields[3] == state and fields[9] != "0":
                inodes.add(int(fields[9]))
    return inodes


def socket_inodes(pid: int) -> set[int]:
    """Return the inodes of the sockets a process holds open (empty once it has exited)."""
    inodes: set[int] = set()
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return inodes
    for fd in fds:
        try:
            match = SOCKET_LINK.fullmatch(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:  # closed meanwhile
            continue
        if match:
            inodes.add(int(match.group(1)))
    return inodes


def children(pid: int) -> set[int]:
    """Return the pids of a process's children."""
    found: set[int] = set()
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for task in tasks:
        try:
            found.update(int(child) for child in Path(f"/proc/{pid}/task/{task}/children").read_text().split())
        except OSError:
            continue
    return found


def has_exited(pid: int) -> bool:
    """Return whether a process is gone or a zombie waiting to be reaped."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


@dataclass(frozen=True)
class Server:
    """The served gateway's processes, and the listening sockets each worker holds."""

    master: int
    listeners: dict[int, set[int]]  # worker pid -> inodes of the listening sockets it holds

    @property
    def workers(self) -> set[int]:
        return set(self.listeners)


def find_server(port: int) -> Server:
    """Find the supervisor listening on `port` (the leader of its session) and its workers."""
    listening = tcp_inodes(port, TCP_LISTEN)
    assert listening, f"nothing listens on port {port}"
    holders = [int(pid) for pid in os.listdir("/proc") if pid.isdigit() and socket_inodes(int(pid)) & listening]
    masters = [pid for pid in holders if _session_leader(pid)]
    assert len(masters) == 1, f"expected one supervisor among the holders of port {port}: {holders}"
    master = masters[0]
    # The supervisor's other children (multiprocessing's resource tracker) hold no listening socket.
    listeners = {pid: socket_inodes(pid) & listening for pid in children(master)}
    return Server(master=master, listeners={pid: inodes for pid, inodes in listeners.items() if inodes})


def _session_leader(pid: int) -> bool:
    try:
        return os.getsid(pid) == pid
    except OSError:
        return False


def connections_per_worker(server: Server, port: int) -> dict[int, int]:
    """Count the established connections on `port` that each worker holds."""
    established = tcp_inodes(port, TCP_ESTABLISHED)
    return {pid: len(socket_inodes(pid) & established) for pid in server.workers}


def wait_for_workers(port: int, *, gone: int) -> Server:
    """Wait until WORKERS workers hold the port, none of them `gone`; return the server then."""
    deadline = time.monotonic() + WAIT_TIMEOUT
    server = find_server(port)
    while time.monotonic() < deadline:
        server = find_server(port)
        if len(server.workers) == WORKERS and gone not in server.workers:
            return server
        time.sleep(0.2)
    raise AssertionError(f"no replacement for worker {gone} within {WAIT_TIMEOUT:.0f} s: {server}")


# --- HTTP -------------------------------------------------------------------------------------


def hold_connections(base_url: str, port: int, server: Server) -> dict[int, int]:
    """Open CONNECTIONS keep-alive connections at once, use each, and count them per worker while all are open."""
    connected = threading.Barrier(CONNECTIONS + 1, timeout=REQUEST_TIMEOUT)
    served = threading.Barrier(CONNECTIONS + 1, timeout=REQUEST_TIMEOUT)
    release = threading.Event()
    errors: list[str] = []

    def reader() -> None:
        try:
            with httpx.Client(base_url=base_url, timeout=REQUEST_TIMEOUT) as http:
                connected.wait()
                for _ in range(REQUESTS_PER_CONNECTION):
                    status = http.get("/healthz").status_code
                    if status != 200:
                        errors.append(f"GET /healthz answered {status}")
                served.wait()
                release.wait(timeout=REQUEST_TIMEOUT)  # keeps the connection open while it is counted
        except (httpx.HTTPError, threading.BrokenBarrierError) as error:
            errors.append(f"{type(error).__name__}: {error}")
            connected.abort()
            served.abort()

    threads = [threading.Thread(target=reader, name=f"reader-{n}", daemon=True) for n in range(CONNECTIONS)]
    for thread in threads:
        thread.start()
    try:
        connected.wait()
        served.wait()
        return connections_per_worker(server, port)
    except threading.BrokenBarrierError:
        raise AssertionError(f"the readers did not all get answers: {errors[:5]}") from None
    finally:
        release.set()
        for thread in threads:
            thread.join(timeout=REQUEST_TIMEOUT)
        assert not errors, errors[:5]


@dataclass(frozen=True)
class Served:
    """A running `gateway serve --workers 2`, and what it was started with."""

    base_url: str
    port: int
    log_path: Path
    env: dict[str, str]


@pytest.fixture
def served(database_url: str, tmp_path: Path) -> Iterator[Served]:
    """Yield a served `gateway serve --workers 2` on a scratch database of the suite's kind."""
    log_path = tmp_path / "gateway-serve.log"
    with scratch_database(database_url, tmp_path, prefix="gw_workers") as url:
        env = gateway_env(url, tmp_path / "keys")
        prepare(env)
        with serve_gateway(env, log_path=log_path, workers=WORKERS) as base_url:
            yield Served(base_url=base_url, port=int(base_url.rsplit(":", 1)[1]), log_path=log_path, env=env)


def assert_spread(per_worker: dict[int, int], log_path: Path) -> None:
    """Assert that both workers hold at least MIN_SHARE of the CONNECTIONS connections."""
    assert sum(per_worker.values()) == CONNECTIONS, f"established per worker: {per_worker}\n{log_tail(log_path)}"
    assert len(per_worker) == WORKERS and min(per_worker.values()) >= MIN_SHARE, (
        f"the connections did not spread over the workers: {per_worker}\n{log_tail(log_path)}"
    )


# --- tests ------------------------------------------------------------------------------------


def test_concurrent_keep_alive_connections_spread_over_both_workers(served: Served) -> None:
    base_url, port, log_path = served.base_url, served.port, served.log_path
    server = find_server(port)
    assert len(server.workers) == WORKERS, f"workers holding port {port}: {server}\n{log_tail(log_path)}"
    # Each worker listens on a socket of its own (one shared socket would be in both sets).
    first, second = server.listeners.values()
    assert len(first) == len(second) == 1 and not first & second, server

    per_worker = hold_connections(base_url, port, server)

    print(f"\n{CONNECTIONS} keep-alive connections per worker: {sorted(per_worker.values())}")
    assert_spread(per_worker, log_path)


def test_a_killed_worker_is_replaced_on_its_socket_and_sigterm_stops_every_process(served: Served) -> None:
    base_url, port, log_path = served.base_url, served.port, served.log_path
    server = find_server(port)
    assert len(server.workers) == WORKERS, f"workers holding port {port}: {server}\n{log_tail(log_path)}"
    killed = min(server.workers)
    killed_listener = server.listeners[killed]

    os.kill(killed, signal.SIGKILL)
    # Fresh connections, about half of them hashed to the killed worker's socket: the supervisor
    # keeps that socket open, so they wait in its backlog for the replacement and are answered.
    statuses = []
    for _ in range(10):
        with httpx.Client(base_url=base_url, timeout=REQUEST_TIMEOUT) as http:
            statuses.append(http.get("/healthz").status_code)
    assert statuses == [200] * 10, f"{statuses}\n{log_tail(log_path)}"

    replaced = wait_for_workers(port, gone=killed)
    assert replaced.master == server.master
    (replacement,) = replaced.workers - server.workers
    assert replaced.listeners[replacement] == killed_listener, "the replacement does not serve the slot's socket"
    assert_spread(hold_connections(base_url, port, replaced), log_path)

    # SIGTERM to the supervisor alone: it stops its workers, then itself.
    os.kill(server.master, signal.SIGTERM)
    deadline = time.monotonic() + WAIT_TIMEOUT
    processes = {server.master, *replaced.workers}
    while time.monotonic() < deadline and not all(has_exited(pid) for pid in processes):
        time.sleep(0.2)
    assert all(has_exited(pid) for pid in processes), f"still running: {processes}\n{log_tail(log_path)}"
    assert "Stopping parent process" in log_path.read_text(), log_tail(log_path)


def test_a_second_server_on_a_served_port_refuses_to_start(served: Served) -> None:
    """SO_REUSEPORT would let a second gateway of the same user quietly share the port; it exits instead."""
    code, output = run_gateway(
        ["serve", "--host", LOOPBACK, "--port", str(served.port), "--workers", str(WORKERS)], served.env, timeout=60
    )

    assert code == 3, output  # uvicorn's STARTUP_FAILURE
    assert "Address already in use" in output, output
    assert len(find_server(served.port).workers) == WORKERS

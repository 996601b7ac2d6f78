"""Run the real `gateway` command for tests: scratch databases, a served gateway, audit verify.

Everything here is bounded: every wait has a timeout, and a served gateway is always stopped
(SIGTERM to its process group, SIGKILL after a grace period) when its context manager exits,
whether the test passed, failed or the gateway never became ready.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

# The console script installed next to the interpreter running the tests (the project's venv).
GATEWAY = Path(sys.executable).parent / "gateway"

LOOPBACK = "127.0.0.1"
COMMAND_TIMEOUT_SECONDS = 120.0
STOP_GRACE_SECONDS = 10.0


class GatewayNotReady(RuntimeError):
    """`gateway serve` exited, or did not answer GET /readyz with 200, in time."""


def free_port() -> int:
    """Return a TCP port on the loopback interface that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        port: int = probe.getsockname()[1]
        return port


def gateway_env(database_url: str, keys_dir: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Return an environment for the `gateway` command: this process's, with the database and keys set.

    Other GATEWAY_ settings are inherited, so that the served gateway agrees with a `Settings()`
    built in the test process (issuer, audience) about the tokens the test mints.
    """
    env = dict(os.environ)
    env.update(
        {
            "GATEWAY_DATABASE_URL": database_url,
            "GATEWAY_KEYS_DIR": str(keys_dir),
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra or {})
    return env


def run_gateway(
    args: list[str], env: Mapping[str, str], *, timeout: float = COMMAND_TIMEOUT_SECONDS
) -> tuple[int, str]:
    """Run one `gateway …` command to completion; return its exit code and its stdout and stderr together."""
    try:
        done = subprocess.run(
            [str(GATEWAY), *args],
            env=dict(env),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as expired:
        # subprocess.run has already killed the command.
        return -1, f"`gateway {' '.join(args)}` did not finish within {timeout:.0f} s: {expired.output!r}"
    return done.returncode, done.stdout + done.stderr


def prepare(env: Mapping[str, str]) -> None:
    """Create the keys and migrate the database named by an environment, failing loudly."""
    for args in (["keys", "create"], ["db", "upgrade"]):
        code, output = run_gateway(args, env)
        if code != 0:
            raise AssertionError(f"`gateway {' '.join(args)}` exited {code}:\n{output}")


def audit_verify(env: Mapping[str, str]) -> tuple[int, str]:
    """Run `gateway audit verify` on an environment's database; return (exit code, output)."""
    return run_gateway(["audit", "verify"], env)


@contextmanager
def scratch_database(database_url: str, tmp_dir: Path, *, prefix: str = "gw_scratch") -> Iterator[str]:
    """Yield the URL of a new, empty database of the same kind as `database_url`; drop it afterwards.

    SQLite: a new file under `tmp_dir`. PostgreSQL: a new database on the same server, created
    and dropped (WITH (FORCE), so a leftover connection cannot keep it alive) from database `postgres`.
    """
    if not database_url.startswith("postgresql"):
        yield f"sqlite:///{tmp_dir / f'{prefix}.sqlite3'}"
        return
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = create_engine(make_url(database_url).set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield make_url(database_url).set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


def log_tail(path: Path, *, lines: int = 60) -> str:
    """Return the last lines of a served gateway's captured output, for assertion messages."""
    try:
        content = path.read_bytes().decode("utf-8", errors="replace")
    except OSError as error:
        return f"(no server log at {path}: {error})"
    tail = content.splitlines()[-lines:]
    return f"--- last {len(tail)} lines of {path} ---\n" + "\n".join(tail)


@dataclass(frozen=True)
class ServedGateway:
    """A running `gateway serve`: its base URL, and its process (the leader of its own process group)."""

    base_url: str
    process: subprocess.Popen[bytes]

    def kill(self) -> None:
        """Kill the whole server at once (SIGKILL to its group): a crash, not a shutdown."""
        _signal_group(self.process, signal.SIGKILL)
        self.process.wait(timeout=STOP_GRACE_SECONDS)


@contextmanager
def serve_gateway(
    env: Mapping[str, str],
    *,
    log_path: Path,
    workers: int = 1,
    ready_timeout: float = 30.0,
) -> Iterator[str]:
    """Start `gateway serve` on a free loopback port, wait until GET /readyz is 200, yield its base URL.

    The server's stdout and stderr go to `log_path` (read it with `log_tail`). On exit, and on any
    failure, its whole process group (the supervisor and its workers) gets SIGTERM, then SIGKILL
    after STOP_GRACE_SECONDS.
    """
    with serve_gateway_process(env, log_path=log_path, workers=workers, ready_timeout=ready_timeout) as served:
        yield served.base_url


@contextmanager
def serve_gateway_process(
    env: Mapping[str, str],
    *,
    log_path: Path,
    workers: int = 1,
    ready_timeout: float = 30.0,
) -> Iterator[ServedGateway]:
    """As serve_gateway, but yield the process too, so that a test can kill it."""
    port = free_port()
    base_url = f"http://{LOOPBACK}:{port}"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [str(GATEWAY), "serve", "--host", LOOPBACK, "--port", str(port), "--workers", str(workers)],
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so that its workers are stopped with it
        )
    try:
        _wait_until_ready(process, base_url, log_path, ready_timeout)
        yield ServedGateway(base_url, process)
    finally:
        _stop(process)


def _wait_until_ready(process: subprocess.Popen[bytes], base_url: str, log_path: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last = "no answer yet"
    with httpx.Client(base_url=base_url, timeout=2.0) as http:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise GatewayNotReady(f"`gateway serve` exited with {process.returncode}\n{log_tail(log_path)}")
            try:
                response = http.get("/readyz")
            except httpx.HTTPError as error:
                last = f"{type(error).__name__}"
            else:
                if response.status_code == 200:
                    return
                last = f"{response.status_code} {response.text[:200]}"
            time.sleep(0.2)
    raise GatewayNotReady(f"GET /readyz not 200 within {timeout:.0f} s (last: {last})\n{log_tail(log_path)}")


def _signal_group(process: subprocess.Popen[bytes], signum: signal.Signals) -> bool:
    """Signal the process group this module started (its id is the leader's pid); False if it is gone."""
    try:
        os.killpg(process.pid, signum)
    except ProcessLookupError:
        return False
    return True


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        _signal_group(process, signal.SIGTERM)
        try:
            process.wait(timeout=STOP_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            _signal_group(process, signal.SIGKILL)
            process.wait(timeout=STOP_GRACE_SECONDS)
    # Workers outlive a supervisor that died first: whatever is left of the group is killed.
    _signal_group(process, signal.SIGKILL)

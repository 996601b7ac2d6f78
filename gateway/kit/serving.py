"""Several uvicorn workers that share the load: each listens on its own SO_REUSEPORT socket.

uvicorn's own supervisor binds one listening socket and hands it to every worker. On one
shared socket the workers do not share the load: the asyncio accept loop of whichever worker
wakes first takes every connection waiting in the backlog, so a burst of keep-alive clients
lands on one worker while the others idle. With one socket per worker, all bound to the same
host and port with SO_REUSEPORT, the Linux kernel hashes each new connection to one of the
sockets, and so to one of the workers.

Only Linux balances this way: BSD and macOS accept SO_REUSEPORT but hand every connection to
one socket. Elsewhere `gateway serve` keeps uvicorn's shared socket.

uvicorn has no option for this, and its supervisor (uvicorn.supervisors.multiprocess) starts
every worker, replacement or not, on the same list of sockets. `ReusePortMultiprocess` is that
supervisor with one change: a worker slot's socket goes to every worker started for the slot.
Health checks, signal handling and the worker's own code stay uvicorn's.
"""

from __future__ import annotations

import logging
import socket
import sys

from uvicorn.config import STARTUP_FAILURE, Config
from uvicorn.supervisors.multiprocess import Multiprocess, Process

logger = logging.getLogger("uvicorn.error")


def reuse_port_spreads_connections() -> bool:
    """Return whether the kernel spreads new connections over sockets sharing a port (Linux)."""
    return sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")


class ReusePortMultiprocess(Multiprocess):
    """uvicorn's worker supervisor, with one SO_REUSEPORT listening socket per worker slot.

    The parent binds each slot's socket and keeps it open for as long as the slot exists. A
    worker started for the slot (at start-up, on SIGHUP, or to replace one that died or hung)
    listens on it, so connections the kernel queued on it while its worker was down wait in its
    backlog for the replacement instead of being refused. SIGTTIN binds a socket for the new
    slot; SIGTTOU closes the retired slot's socket. SIGINT and SIGTERM stop every worker, then
    the parent closes the sockets.
    """

    def __init__(self, config: Config) -> None:
        super().__init__(config, sockets=[])
        family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
        self.address = (config.host, _free_port_or_exit(family, config.host, config.port))
        self.family = family
        self.slot_sockets = [self._bind() for _ in range(self.processes_num)]
        scheme = "https" if config.is_ssl else "http"
        host = f"[{config.host}]" if family == socket.AF_INET6 else config.host
        logger.info(
            "Uvicorn running on %s://%s:%d with %d SO_REUSEPORT sockets (Press CTRL+C to quit)",
            scheme,
            host,
            self.address[1],
            len(self.slot_sockets),
        )

    def _bind(self) -> socket.socket:
        # Listening at once: connections that arrive before the slot's worker is ready wait in the backlog.
        try:
            return socket.create_server(
                self.address,
                family=self.family,
                backlog=self.config.backlog,
                reuse_port=True,
                # As uvicorn binds "::": IPv4 connections too, where the system allows it.
                dualstack_ipv6=self.family == socket.AF_INET6 and socket.has_dualstack_ipv6(),
            )
        except OSError as error:
            logger.error(error)
            sys.exit(STARTUP_FAILURE)

    def _worker(self, slot: int) -> Process:
        return Process(self.config, [self.slot_sockets[slot]])

    def run(self) -> None:
        """Supervise the workers until SIGINT or SIGTERM, then close every slot's socket."""
        try:
            super().run()
        finally:
            for sock in self.slot_sockets:
                sock.close()

    def init_processes(self) -> None:
        """Start one worker per slot, each on its slot's socket."""
        for slot in range(self.processes_num):
            process = self._worker(slot)
            process.start()
            self.processes.append(process)

    def keep_subprocess_alive(self) -> None:
        """Replace a worker that died or stopped answering by a new one on the same slot's socket."""
        # uvicorn 0.54's Multiprocess.keep_subprocess_alive, but for the slot's socket.
        if self.should_exit.is_set():
            return
        for slot, process in enumerate(self.processes):
            if process.is_alive(timeout=self.config.timeout_worker_healthcheck):
                continue
            process.kill()
            process.join()
            if process.exitcode == STARTUP_FAILURE:
                # It failed before it served (app, TLS): every replacement would fail the same way.
                logger.error(f"Child process [{process.pid}] failed to start, stopping the parent process.")
                self.should_exit.set()
                return
            if self.should_exit.is_set():
                return
            logger.info(f"Child process [{process.pid}] died")
            replacement = self._worker(slot)
            replacement.start()
            self.processes[slot] = replacement

    def restart_all(self) -> None:
        """Replace each worker in turn, the new one serving on the slot's socket before the old one stops."""
        # uvicorn 0.54's Multiprocess.restart_all, but for the slot's socket.
        for slot, old_process in enumerate(self.processes):
            if self.should_exit.is_set():
                return
            new_process = self._worker(slot)
            new_process.start()
            if not new_process.wait_until_ready(self.config.timeout_worker_healthcheck, self.should_exit):
                new_process.kill()
                new_process.join()
                if not self.should_exit.is_set():
                    logger.error(
                        f"New child process [{new_process.pid}] was not ready in time; "
                        f"keeping worker [{old_process.pid}] and aborting the restart."
                    )
                return
            old_process.terminate()
            old_process.join()
            self.processes[slot] = new_process

    def handle_ttin(self) -> None:
        """Add a worker slot, with its own socket."""
        logger.info("Received SIGTTIN, increasing the number of processes.")
        self.slot_sockets.append(self._bind())
        self.processes_num += 1
        process = self._worker(len(self.slot_sockets) - 1)
        process.start()
        self.processes.append(process)

    def handle_ttou(self) -> None:
        """Retire the last worker slot and close its socket."""
        logger.info("Received SIGTTOU, decreasing number of processes.")
        if self.processes_num <= 1:
            logger.info("Already reached one process, cannot decrease the number of processes anymore.")
            return
        self.processes_num -= 1
        process = self.processes.pop()
        # Closed first, so that the kernel stops giving the slot connections once its worker closes its copy.
        self.slot_sockets.pop().close()
        process.terminate()
        process.join()


def _free_port_or_exit(family: socket.AddressFamily, host: str, port: int) -> int:
    """Return the port to serve on, or exit as uvicorn does when another server holds it.

    SO_REUSEPORT lets any process of the same user bind a port already served that way, so a
    second gateway started on the port by mistake would quietly take a share of its connections.
    A plain bind first fails then, as it does for uvicorn, and resolves port 0 to a real port.
    """
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            logger.error(error)
            sys.exit(STARTUP_FAILURE)
        bound: int = probe.getsockname()[1]
        return bound

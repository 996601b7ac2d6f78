"""HTTP plumbing of the benchmark: bounded requests with 503 retries, and access tokens re-minted in time."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from gateway.auth.keys import SigningKeys
from gateway.models import Client, TeamMember
from gateway.settings import Settings
from tests.factories import client_token, staff_token

REQUEST_TIMEOUT = 30.0  # seconds; no answer within it counts as unanswered
MAX_TRIES = 5  # a 503 with Retry-After is retried, at most this many tries in all
RETRY_AFTER_CAP = 2.0  # seconds slept at most between tries, whatever Retry-After says
TOKEN_REFRESH_SECONDS = 200.0  # tokens live 300 s: re-mint well before a request could carry a stale one


@dataclass(frozen=True)
class Reply:
    """One request's final answer; status None means no answer in time (or no connection)."""

    status: int | None
    body: bytes
    retries: int
    seconds: float
    error: str | None = None


def send(http: httpx.Client, method: str, url: str, *, headers: dict[str, str], body: bytes | None) -> Reply:
    """Send a request; retry a 503 that carries Retry-After, a bounded number of times."""
    started = time.monotonic()
    retries = 0
    while True:
        try:
            response = http.request(method, url, content=body, headers=headers)
        except httpx.TimeoutException as error:
            reason = f"no answer within {REQUEST_TIMEOUT:.0f} s ({type(error).__name__})"
            return Reply(None, b"", retries, time.monotonic() - started, reason)
        except httpx.TransportError as error:
            return Reply(None, b"", retries, time.monotonic() - started, f"{type(error).__name__}: {error}")
        retry_after = response.headers.get("Retry-After")
        if response.status_code == 503 and retry_after is not None and retries + 1 < MAX_TRIES:
            retries += 1
            time.sleep(_retry_delay(retry_after))
            continue
        return Reply(response.status_code, response.content, retries, time.monotonic() - started)


def _retry_delay(retry_after: str) -> float:
    try:
        seconds = float(retry_after)
    except ValueError:  # an HTTP date: wait the cap
        seconds = RETRY_AFTER_CAP
    return min(max(seconds, 0.0), RETRY_AFTER_CAP)


class Tokens:
    """Access tokens for the registered clients and the staff member, re-minted every 200 s; thread-safe."""

    def __init__(self, keys: SigningKeys, settings: Settings) -> None:
        self._keys = keys
        self._settings = settings
        self._lock = threading.Lock()
        self._minted: dict[str, tuple[float, str]] = {}

    def for_client(self, client: Client) -> str:
        """Return a live access token for a registered client."""
        return self._get(f"client:{client.id}", lambda: client_token(self._keys, self._settings, client))

    def for_staff(self, member: TeamMember) -> str:
        """Return a live access token for a team member."""
        return self._get(f"staff:{member.subject}", lambda: staff_token(self._keys, self._settings, member))

    def _get(self, name: str, mint: Callable[[], str]) -> str:
        with self._lock:
            now = time.monotonic()
            minted = self._minted.get(name)
            if minted is None or now - minted[0] > TOKEN_REFRESH_SECONDS:
                minted = (now, mint())
                self._minted[name] = minted
            return minted[1]


def percentile(values: list[float], fraction: float) -> float:
    """Return the nearest-rank percentile of values (0 for none)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(fraction * len(ordered))))
    return ordered[rank - 1]

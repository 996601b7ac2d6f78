"""The reader threads of the view phase: each opens the big child's merged view a fixed number of times."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field

import httpx

from gateway.models import TeamMember

from .client import REQUEST_TIMEOUT, Tokens, send
from .phase import Gate, Worker


@dataclass
class ViewStats:
    """What one reader thread saw; read only after the thread has finished."""

    name: str
    attempted: int = 0
    ok: int = 0
    retries: int = 0
    unanswered: int = 0
    server_errors: int = 0
    client_errors: int = 0
    wrong: int = 0  # 200 answers that were not the expected view
    latencies: list[float] = field(default_factory=list)
    timeline_counts: list[tuple[float, int]] = field(default_factory=list)  # (answered at, entries)
    problems: list[str] = field(default_factory=list)

    def problem(self, message: str) -> None:
        """Keep a few distinct examples of what went wrong (the counters say how often)."""
        example = f"{self.name}: {message}"
        if len(self.problems) < 3 and example not in self.problems:
            self.problems.append(example)


def timeline_length(body: bytes, child_id: uuid.UUID) -> tuple[int | None, str | None]:
    """Return (number of timeline entries, None) of a view of the child, else (None, what was wrong)."""
    try:
        view = json.loads(body)
        timeline = view["timeline"]
    except (ValueError, KeyError, TypeError) as error:
        return None, f"200 with an unreadable view ({type(error).__name__})"
    if view.get("child_id") != str(child_id) or not isinstance(timeline, list):
        return None, "200 but not the requested child's view"
    return len(timeline), None


def reader(
    base_url: str, tokens: Tokens, member: TeamMember, child_id: uuid.UUID, requests: int, stats: ViewStats
) -> Worker:
    """Return a thread body: its own keep-alive client, then `requests` views of the child, bounded by the deadline."""
    url = f"/api/v1/children/{child_id}/view?purpose=child_protection"

    def work(gate: Gate) -> None:
        with httpx.Client(base_url=base_url, timeout=REQUEST_TIMEOUT) as http:
            tokens.for_staff(member)  # minted before the start line, not on the clock
            gate.start()
            for _ in range(requests):
                if not gate.running():
                    break
                headers = {"Authorization": f"Bearer {tokens.for_staff(member)}"}
                reply = send(http, "GET", url, headers=headers, body=None)
                stats.attempted += 1
                stats.retries += reply.retries
                stats.latencies.append(reply.seconds)
                if reply.status != 200:
                    if reply.status is None:
                        stats.unanswered += 1
                        gate.stop.set()  # the gateway is not answering: stop everyone, fail soon
                    elif reply.status >= 500:
                        stats.server_errors += 1
                    else:
                        stats.client_errors += 1
                    stats.problem(f"view: {reply.error or reply.status}: {reply.body[:160].decode(errors='replace')}")
                    continue
                count, problem = timeline_length(reply.body, child_id)
                if count is None:
                    stats.wrong += 1
                    stats.problem(f"view: {problem}")
                    continue
                stats.ok += 1
                stats.timeline_counts.append((time.monotonic(), count))

    return work

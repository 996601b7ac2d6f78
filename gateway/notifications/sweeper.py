"""Every worker, every GATEWAY_ENCOMPASS_SWEEP_INTERVAL_S: escalate Operation Encompass notices past their deadline.

Each sweep is one short transaction in a thread (the event loop is never blocked); several
workers sweeping at once escalate each notice once (service.escalate_overdue). A failed sweep
is logged by its class name only and the next one tries again.
"""

from __future__ import annotations

import asyncio
import logging

import anyio
from sqlalchemy.orm import Session, sessionmaker

from audit import Actor, ActorType
from gateway.kit.auditor import Auditor, ReviewRules

from .service import escalate_overdue

log = logging.getLogger(__name__)

SWEEPER = Actor(type=ActorType.SYSTEM, id="encompass-deadline-sweep")


def sweep_once(factory: sessionmaker[Session], rules: ReviewRules | None = None) -> int:
    """Escalate what is overdue now, in one transaction; return how many notices."""
    with factory() as session:
        escalated = escalate_overdue(session, Auditor(session, SWEEPER, rules=rules))
        session.commit()
    return escalated


async def run_overdue_sweeper(
    factory: sessionmaker[Session], *, interval_s: float, rules: ReviewRules | None = None
) -> None:
    """Until cancelled: sweep every `interval_s` seconds."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            escalated = await anyio.to_thread.run_sync(sweep_once, factory, rules)
            if escalated:
                log.info("escalated overdue Operation Encompass notices", extra={"notices": escalated})
        except Exception as failure:  # any failure: the sweeper must outlive it, or deadlines pass unseen
            log.warning("overdue notice sweep failed this round", extra={"error": type(failure).__name__})

"""Correctness checks against the stored rows, once the server has stopped (nothing is in flight)."""

from __future__ import annotations

from collections import Counter

from sqlalchemy import Engine, func, select

from gateway.models import Child, ChildIdentifier, Identity, Item

from .pushes import Ledger, VersionKey
from .report import Report


def _stored(engine: Engine, model: type[Identity] | type[Item]) -> Counter[VersionKey]:
    with engine.connect() as connection:
        rows = connection.execute(select(model.client_id, model.source_record_id, model.source_version))
        return Counter((row[0], row[1], row[2]) for row in rows)


def check_storage(engine: Engine, ledger: Ledger, report: Report) -> int:
    """Check every acknowledged version is stored once, nothing else is, one child per NHS number; return items."""
    item_rows = 0
    for label, model, acknowledged, created in (
        ("identities", Identity, ledger.identities, ledger.identities_created),
        ("items", Item, ledger.items, ledger.items_created),
    ):
        stored = _stored(engine, model)
        rows = sum(stored.values())
        twice = sum(1 for count in stored.values() if count > 1)
        missing = len(acknowledged - stored.keys())
        unacknowledged = len(stored.keys() - acknowledged)
        report.check(
            f"{label}: each (client, source record id, version) stored once",
            twice == 0,
            f"{rows:,} rows, {twice} keys stored more than once",
        )
        report.check(
            f"{label}: stored = acknowledged",
            missing == 0 and unacknowledged == 0,
            f"{len(acknowledged):,} acknowledged versions; {missing} acknowledged but missing, "
            f"{unacknowledged} stored but never acknowledged",
        )
        report.check(
            f"{label}: rows = entries answered 201 Created",
            rows == created,
            f"{rows:,} rows, {created:,} entries answered 201 Created",
        )
        if model is Item:
            item_rows = rows
    with engine.connect() as connection:
        children = connection.scalar(select(func.count()).select_from(Child)) or 0
        identifiers = connection.scalar(select(func.count()).select_from(ChildIdentifier)) or 0
        numbered = connection.scalar(select(func.count(func.distinct(ChildIdentifier.child_id)))) or 0
    report.check(
        "one child per NHS number",
        numbered == identifiers == len(ledger.nhs_numbers),
        f"{numbered:,} children with an NHS number, {identifiers:,} child identifiers, "
        f"{len(ledger.nhs_numbers):,} distinct NHS numbers pushed",
    )
    # A Patient without an NHS number makes a child of its own, or joins one it scores as.
    report.check(
        "children without an NHS number: at most one per Patient pushed without one",
        children - numbered <= ledger.unnumbered_patients,
        f"{children - numbered:,} children without an NHS number, "
        f"{ledger.unnumbered_patients:,} Patients pushed without one",
    )
    return item_rows

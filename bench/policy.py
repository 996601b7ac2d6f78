"""The policy engine's benchmark: `python -m bench policy [--items 500] [--runs 300]` (make bench-policy).

In-process, no database: one viewer (the police member of the allocated team), one purpose at a
time, and a 500-item view of every agency built like a busy child's: health attendances (a tenth
of them special category, some of those with an approved request), police incidents and
intelligence (handling codes P and C, a few judged detrimental), school records, a social care
case, some retracted or superseded. The consent state holds a withdrawal, a refusal and an
override in force, read as in force at one moment.

MEASURED: `policies.decide` called once for every item (no per-kind deduplication, which the view
adds on top), whole view per run; the median and p95 of `runs` runs, for each purpose.
Checks: the same arguments give the same decisions; every decision names its rule and policy
version; handling code C, detrimental, retracted and superseded items are never shown; special
category items are shown only on an approved request.
Target (issue 11): a 500-item view decided in under 2 ms (median).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from policies import (
    Agency,
    ConsentFact,
    ConsentState,
    ConsentStatus,
    Decision,
    DecisionKind,
    ItemFacts,
    OverrideFact,
    Purpose,
    RecordKind,
    RecordStatus,
    Relationship,
    Viewer,
    decide,
    default_policy,
)

TARGET_MS = 2.0
NOW = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
KINDS: list[tuple[Agency, RecordKind, str]] = [
    (Agency.HEALTH, RecordKind.ENCOUNTER, "health.urgent_care"),
    (Agency.HEALTH, RecordKind.ENCOUNTER, "health.encounter"),
    (Agency.POLICE, RecordKind.INCIDENT, "police.incident"),
    (Agency.POLICE, RecordKind.INTELLIGENCE, "police.intelligence"),
    (Agency.POLICE, RecordKind.DOMESTIC_ABUSE_NOTIFICATION, "police.domestic_abuse"),
    (Agency.EDUCATION, RecordKind.ATTENDANCE, "education.attendance"),
    (Agency.EDUCATION, RecordKind.EXCLUSION, "education.exclusion"),
    (Agency.SOCIAL_CARE, RecordKind.ENCOUNTER, "social_care.case"),
]


def view_items(count: int, seed: int = 11) -> list[ItemFacts]:
    """Return `count` items of a busy child's view (deterministic for a seed)."""
    rng = random.Random(seed)
    items = []
    for n in range(count):
        agency, kind, category = rng.choice(KINDS)
        labels: frozenset[str] = frozenset()
        if agency is Agency.HEALTH and rng.random() < 0.1:
            labels = frozenset({rng.choice(["PSY", "SEX", "HIV", "ETH", "gender-identity-history"])})
        status = RecordStatus.CURRENT
        if rng.random() < 0.03:
            status = rng.choice([RecordStatus.ENTERED_IN_ERROR, RecordStatus.SUPERSEDED])
        items.append(
            ItemFacts(
                item_id=f"item-{n}",
                agency=agency,
                kind=kind,
                category=category,
                security_labels=labels,
                police_handling_code=rng.choice(["P", "P", "P", "C"]) if agency is Agency.POLICE else None,
                status=status,
                detrimental=rng.random() < 0.02,
                approved_request=f"request-{n}" if labels and rng.random() < 0.5 else None,
            )
        )
    return items


def consent_state() -> ConsentState:
    """A history with a withdrawal, a refusal and an override in force, read at NOW."""
    week = timedelta(days=7)
    return ConsentState.at(
        NOW,
        [
            ConsentFact(ConsentStatus.WITHDRAWN, Purpose.FAMILY_HELP, frozenset({Agency.POLICE}), recorded_at=NOW - week),
            ConsentFact(ConsentStatus.REFUSED, Purpose.FAMILY_HELP, frozenset({Agency.EDUCATION}), recorded_at=NOW - 2 * week),
            ConsentFact(ConsentStatus.GIVEN, Purpose.FAMILY_HELP, recorded_at=NOW - 4 * week),
        ],
        [OverrideFact("override-1", Purpose.FAMILY_HELP, "public_task", NOW - week, NOW + week, frozenset({Agency.EDUCATION}))],
    )


def check(items: Sequence[ItemFacts], decisions: Sequence[Decision], again: Sequence[Decision]) -> list[str]:
    """Return what is wrong with a view's decisions (empty when all is well)."""
    problems = []
    if list(decisions) != list(again):
        problems.append("the same arguments gave different decisions")
    for item, decision in zip(items, decisions, strict=True):
        if not decision.rule_id or not decision.policy_version:
            problems.append(f"{item.item_id}: no rule id or policy version")
        never = item.police_handling_code == "C" or item.detrimental or item.status is not RecordStatus.CURRENT
        if never and decision.shown:
            problems.append(f"{item.item_id}: shown although it never may be ({decision.rule_id})")
        if item.security_labels and decision.shown and item.approved_request is None:
            problems.append(f"{item.item_id}: special category shown without an approved request")
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench policy", description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--items", type=int, default=500)
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--report", type=Path, default=Path("var/bench-policy-latest.json"))
    args = parser.parse_args(argv)
    policy = default_policy()
    viewer = Viewer(Agency.POLICE, "police_officer", Relationship.ALLOCATED_TEAM)
    items = view_items(args.items)
    consent = consent_state()
    report: dict[str, object] = {"items": args.items, "runs": args.runs, "target_ms": TARGET_MS}
    problems: list[str] = []
    worst = 0.0
    for purpose in Purpose:
        decisions = [decide(policy, viewer=viewer, purpose=purpose, item=item, consent=consent) for item in items]
        again = [decide(policy, viewer=viewer, purpose=purpose, item=replace(item), consent=consent) for item in items]
        problems += [f"{purpose}: {p}" for p in check(items, decisions, again)]
        timings = []
        for _ in range(args.runs):
            started = time.perf_counter()
            for item in items:
                decide(policy, viewer=viewer, purpose=purpose, item=item, consent=consent)
            timings.append((time.perf_counter() - started) * 1000)
        median = statistics.median(timings)
        p95 = statistics.quantiles(timings, n=20)[18]
        worst = max(worst, median)
        kinds = Counter(d.kind.value for d in decisions)
        print(
            f"policy: {args.items}-item view, {purpose.value}: median {median:.3f} ms, p95 {p95:.3f} ms "
            f"({median * 1000 / args.items:.2f} µs per decision); "
            + ", ".join(f"{kind} {kinds.get(kind.value, 0)}" for kind in DecisionKind)
        )
        report[purpose.value] = {"median_ms": round(median, 4), "p95_ms": round(p95, 4), "decisions": dict(kinds)}
    report["problems"] = problems
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(json.dumps(report, indent=2))
    for problem in problems:
        print(f"CHECK FAILED: {problem}")
    verdict = "met" if worst < TARGET_MS else "MISSED"
    print(f"policy: target {TARGET_MS} ms per 500-item view: {verdict} (worst median {worst:.3f} ms); report {args.report}")
    return 1 if problems else 0

"""The linking benchmark: `python -m bench linking [--children 10000 100000] [--per-child 2]` (make bench-linking).

For each population size, on its own scratch PostgreSQL database (GATEWAY_BENCH_DATABASE_URL):
1. the project's generator (gateway.demo.population) makes the children, with twins, siblings, moves,
   name variants, typos, swapped birth dates and missing NHS numbers, and their records across agencies
   (`per_child` each), shuffled with a fixed seed so that a child's first record is often not its
   health one;
2. MEASURED: every record goes through `gateway.identity.batch.link_lines`, the code `gateway link batch`
   runs, one transaction per record, audit events staged as the server stages them (integrated after);
3. the outcome of each record is compared with the generator's truth:
   - precision of automatic links: of the records that joined an existing child without a person
     (`exact` or `scored`), the share whose child is theirs (a child belongs to the true child of the
     record that made it);
   - recall: of the records whose true child already had a record before them, the share that joined
     it automatically or were proposed for review with it (a reviewer confirms a right proposal);
   - the share of records sent to review;
   - p50 and p95 time to link one record (its whole transaction, commit included);
4. m and u estimated by expectation-maximisation (gateway.identity.estimation) over the blocked
   candidate pairs of the first 20,000 records of the smallest population, printed beside the
   weights in use (not a target);
5. checks against the stored rows: one identity per record linked, every identity linked to exactly one
   child, the audit trail verifies.
Targets (issue 9, on 100,000 children): precision >= 99.9%, recall >= 97%, review <= 3%, p95 < 10 ms.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from audit import verify
from gateway.demo.population import population, records
from gateway.identity.batch import ClaimLine, claim_of, link_lines, open_scratch
from gateway.identity.blocking import block_keys
from gateway.identity.estimation import estimate, vector_of
from gateway.identity.scoring import DEFAULT_PARAMETERS, Demographics, score
from gateway.identity.service import demographics_of
from gateway.keys import KeyFolder
from gateway.models import Identity, Link, LinkState
from tests.serving import scratch_database

from .client import percentile
from .report import Report
from .run import ROOT, Progress, run_reported

RESULTS = ROOT / "var" / "bench-linking-latest.json"
SEED = 2026
ESTIMATION_SAMPLE = 20_000  # records whose blocked pairs EM runs over


@dataclass(frozen=True)
class Quality:
    """How linking did against the truth."""

    records: int
    automatic: int
    automatic_right: int
    should_join: int
    joined: int
    review: int
    errors: int

    @property
    def precision(self) -> float:
        return self.automatic_right / self.automatic if self.automatic else 1.0

    @property
    def recall(self) -> float:
        return self.joined / self.should_join if self.should_join else 1.0

    @property
    def review_share(self) -> float:
        return self.review / self.records if self.records else 0.0


def evaluate(outputs: Iterable[dict[str, Any]], truths: Sequence[str]) -> Quality:
    """Score linking outputs (in file order, one per record) against each record's true child."""
    owner: dict[str, str] = {}  # gateway child → the true child of the record that made it
    seen: set[str] = set()  # true children with a record already linked
    automatic = automatic_right = should_join = joined = review = errors = count = 0
    for output, truth in zip(outputs, truths, strict=True):
        count += 1
        if "error" in output:
            errors += 1
            continue
        known = truth in seen
        should_join += known
        child, outcome = output["child_id"], output["outcome"]
        if outcome == "review":
            review += 1
            joined += known and owner.get(child) == truth
            owner[output["held_on"]] = truth  # the new child the record waits on
        elif child in owner:  # exact or scored, onto a child made before
            automatic += 1
            right = owner[child] == truth
            automatic_right += right
            joined += known and right
        else:  # a new child (or the first record of one, whatever its outcome)
            owner[child] = truth
        seen.add(truth)
    return Quality(count, automatic, automatic_right, should_join, joined, review, errors)


def _person(line: dict[str, Any]) -> Demographics:
    # Read as `link batch` reads a line, then as the linking service compares a claim.
    return demographics_of(claim_of(ClaimLine.model_validate(line), version="1"))


def estimate_parameters(lines: Sequence[dict[str, Any]], report: Report, progress: Progress) -> None:
    """EM over every blocked candidate pair of these records; print the weights beside those in use."""
    by_key: dict[str, list[int]] = defaultdict(list)
    # A sample is plenty for 28 parameters, and keeps the pairs in memory bounded.
    people = [_person(line) for line in lines[:ESTIMATION_SAMPLE]]
    for index, person in enumerate(people):
        for key in block_keys(person):
            by_key[key].append(index)
    pairs: set[tuple[int, int]] = set()
    for members in by_key.values():
        if len(members) <= 200:  # the service scores at most 40 a claim; a crowd says nothing new
            pairs.update((a, b) for i, a in enumerate(members) for b in members[i + 1 :])
    vectors = [vector_of(score(people[a], people[b]).fields) for a, b in pairs]
    progress(f"estimating m and u over {len(vectors):,} blocked candidate pairs")
    found = estimate(vectors, DEFAULT_PARAMETERS)
    report.figure("estimation", "candidate pairs", len(vectors), "")
    report.figure("estimation", "share that are matches (lambda)", round(found.proportion, 4), "")
    report.figure("estimation", "EM iterations", found.iterations, "", note="converged" if found.converged else "NOT converged")
    in_use = {
        "given": DEFAULT_PARAMETERS.given,
        "family": DEFAULT_PARAMETERS.family,
        "birth_date": DEFAULT_PARAMETERS.birth_date,
        "sex": DEFAULT_PARAMETERS.sex,
        "location": DEFAULT_PARAMETERS.location,
    }
    for field, levels in in_use.items():
        for level, weight in levels.items():
            m, u = found.m[field].get(level), found.u[field].get(level)
            if m is None or u is None:
                continue
            report.figure(
                "estimation",
                f"{field} {level.value}: log2(m/u)",
                round(math.log2(m / u), 2),
                "",
                note=f"in use {weight:.2f}; m {m:.4f}, u {u:.5f}",
            )


def run_population(base_url: str, children: int, per_child: int, report: Report, progress: Progress) -> list[dict[str, Any]]:
    """Link one population on its own scratch database; add its figures and checks to the report."""
    section = f"{children:,} children"
    progress(f"{section}: generating the population and its records")
    lines = list(records(population(children, seed=SEED), seed=SEED, per_child=per_child))
    random.Random(SEED).shuffle(lines)
    truths = [line["truth"] for line in lines]
    with tempfile.TemporaryDirectory(prefix="gateway-bench-linking-") as tmp, scratch_database(
        base_url, Path(tmp), prefix="gw_bench_link"
    ) as url:
        scratch = open_scratch(url, Path(tmp) / "keys", tmp)
        outputs: list[dict[str, Any]] = []
        seconds: list[float] = []
        started = time.monotonic()
        try:
            progress(f"{section}: linking {len(lines):,} records, one transaction each")
            for n, result in enumerate(link_lines((json.dumps(line) for line in lines), factory=scratch.factory, keyring=scratch.keyring), 1):
                outputs.append(result.output)
                if result.seconds is not None:
                    seconds.append(result.seconds)
                if n % 20_000 == 0:
                    progress(f"{section}: {n:,} linked, p95 so far {percentile(seconds, 0.95) * 1000:.2f} ms")
            elapsed = time.monotonic() - started
        finally:
            scratch.close()
        quality = evaluate(outputs, truths)
        outcomes = Counter(output.get("outcome", "error") for output in outputs)
        report.figure(section, "records linked", quality.records, "", note=", ".join(f"{k} {v:,}" for k, v in sorted(outcomes.items())))
        report.figure(section, "precision of automatic links", round(quality.precision * 100, 3), "%", at_least=99.9,
                      note=f"{quality.automatic - quality.automatic_right} wrong of {quality.automatic:,}")
        report.figure(section, "recall (automatic + confirmed review)", round(quality.recall * 100, 2), "%", at_least=97,
                      note=f"{quality.joined:,} of {quality.should_join:,} records whose child was already known")
        report.figure(section, "records sent to review", round(quality.review_share * 100, 2), "%", at_most=3)
        report.figure(section, "time to link one record, p50", round(percentile(seconds, 0.5) * 1000, 2), "ms")
        report.figure(section, "time to link one record, p95", round(percentile(seconds, 0.95) * 1000, 2), "ms", at_most=10)
        report.figure(section, "records linked per second", round(len(seconds) / elapsed, 1), "/s")
        _check_rows(url, tmp, quality, section, report)
    return lines


def _check_rows(url: str, tmp: str, quality: Quality, section: str, report: Report) -> None:
    from gateway.kit.db import build_engine, build_sessionmaker

    engine = build_engine(url)
    try:
        with build_sessionmaker(engine)() as session:
            identities = session.scalar(select(func.count()).select_from(Identity)) or 0
            linked = session.execute(
                select(Link.identity_id, func.count()).where(Link.state == LinkState.LINKED).group_by(Link.identity_id)
            ).all()
            report.check(f"{section}: one identity stored per record linked", identities == quality.records - quality.errors,
                         f"{identities:,} identities, {quality.records - quality.errors:,} records linked")
            report.check(f"{section}: every identity linked to exactly one child",
                         len(linked) == identities and all(count == 1 for _, count in linked))
            result = verify(session, verifier=KeyFolder(Path(tmp) / "keys").audit_signer().verifier())
            report.check(f"{section}: the audit trail verifies", result.ok, f"{result.events_checked:,} events")
            report.check(f"{section}: no record refused", quality.errors == 0, f"{quality.errors} refused")
    finally:
        engine.dispose()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the linking benchmark; print and save the report; 0 unless a correctness check failed."""
    parser = argparse.ArgumentParser(prog="python -m bench linking", description=__doc__.splitlines()[0])
    parser.add_argument("--children", type=int, nargs="+", default=[10_000, 100_000], help="population sizes")
    parser.add_argument("--per-child", type=int, default=2, help="records per child")
    options = parser.parse_args(argv)

    def body(url: str, report: Report, progress: Progress) -> None:
        for n, children in enumerate(sorted(options.children)):
            lines = run_population(url, children, options.per_child, report, progress)
            if n == 0:
                estimate_parameters(lines, report, progress)

    return run_reported("the linking benchmark", RESULTS, body)

"""The attendance import benchmark: `python -m bench education [--rows 10000]` (make bench-education).

On a scratch PostgreSQL database (GATEWAY_BENCH_DATABASE_URL), against `gateway serve --workers 2`:
1. synthetic pupils (the project's generator: names, birth dates, postcodes, UPNs with their check
   letters) across 20 schools, each enrolled by a JSON push to POST /education/v1/records in
   batches of 1,000 (not timed): a termly attendance extract is about pupils the gateway knows;
2. MEASURED: one `POST /education/v1/records.csv` of `rows` attendance rows, one per pupil, linking
   (by UPN), filing, routing and audit included: rows per second of the whole request;
3. MEASURED, information only: the same extract's rows for pupils the gateway has never seen (no
   NHS number, so each is scored against its blocking candidates), `first_rows` of them;
4. checks against the stored rows: every row answered `created`; one attendance item per row, each
   on the child its pupil's enrolment is on; a repeat of the extract stores nothing and answers
   `unchanged`; the audit trail verifies.
Target (issue 10): at least 5,000 rows/s for a 10,000-row extract on the 2-core machine.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import random
import tempfile
import time
from collections.abc import Sequence
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
from faker import Faker
from sqlalchemy import func, select

from audit import verify
from gateway.demo.population import synthetic_upn
from gateway.keys import KeyFolder
from gateway.kit.db import build_engine, build_sessionmaker
from gateway.models import Client, Item
from gateway.settings import Settings
from tests.factories import client_token, make_client
from tests.serving import gateway_env, log_tail, prepare, scratch_database, serve_gateway

from .report import Report
from .run import ROOT, Progress, run_reported

RESULTS = ROOT / "var" / "bench-education-latest.json"
SEED = 2026
WORKERS = 2
SCHOOLS = [f"9{n:05d}" for n in range(1, 21)]
KINDS = ("identity", "enrolment", "attendance", "exclusion", "safeguarding_concern", "education_notice")
ENROLMENT_BATCH = 1000
REQUEST_TIMEOUT_S = 600.0
COLUMNS = [
    "record_id", "version", "upn", "given_names", "family_name", "birth_date", "sex", "postcode", "school_urn",
    "period_start", "period_end", "possible_sessions", "attended_sessions", "absence_I", "absence_M", "absence_N",
    "absence_O",
]


def pupils(count: int, *, seed: int) -> list[dict[str, Any]]:
    """Return synthetic pupils with unique UPNs (the project's generator's), each at one of the schools."""
    rng = random.Random(seed)
    fake = Faker("en_GB")
    fake.seed_instance(seed)
    seen: set[str] = set()
    result: list[dict[str, Any]] = []
    while len(result) < count:
        upn = synthetic_upn(rng)
        if upn in seen:
            continue
        seen.add(upn)
        sex = rng.choice(["male", "female"])
        result.append(
            {
                "upn": upn,
                "given_names": [fake.first_name_male() if sex == "male" else fake.first_name_female()],
                "family_name": fake.last_name(),
                "birth_date": (date(2022, 8, 31) - timedelta(days=rng.randrange(0, 14 * 365))).isoformat(),
                "sex": sex,
                "address": {"lines": [fake.street_address().split("\n")[0]], "postcode": fake.postcode()},
                "school": rng.choice(SCHOOLS),
            }
        )
    return result


def enrolment_batch(chunk: Sequence[dict[str, Any]]) -> bytes:
    """Return an education/v1 JSON batch enrolling these pupils."""
    records = [
        {
            "record_id": f"enrol/{pupil['upn']}",
            "version": "1",
            "kind": "enrolment",
            "pupil": {k: pupil[k] for k in ("upn", "given_names", "family_name", "birth_date", "sex", "address")},
            "school": {"urn": pupil["school"]},
            "details": {"year_group": "5", "start_date": "2026-09-03"},
        }
        for pupil in chunk
    ]
    return json.dumps({"schema": "education/v1", "atomic": False, "records": records}).encode()


def attendance_csv(chunk: Sequence[dict[str, Any]], *, term: str, seed: int) -> bytes:
    """Return a termly attendance extract: one row per pupil, sessions and absence counts by code."""
    rng = random.Random(seed)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(COLUMNS)
    for pupil in chunk:
        illness, medical, unexplained, other = (rng.choice([0, 0, 0, 1, 2, 4]) for _ in range(4))
        possible = 140
        writer.writerow(
            [
                f"att/{term}/{pupil['upn']}", "1", pupil["upn"], " ".join(pupil["given_names"]), pupil["family_name"],
                pupil["birth_date"], pupil["sex"], pupil["address"]["postcode"], pupil["school"], "2026-09-03",
                "2026-10-23", possible, possible - illness - medical - unexplained - other, illness, medical,
                unexplained, other,
            ]
        )
    return out.getvalue().encode()


def run(base_url: str, report: Report, progress: Progress, *, rows: int, first_rows: int) -> None:
    """Enrol, then import the extract over HTTP, on a scratch database dropped at the end."""
    section = f"{rows:,}-row attendance CSV"
    with (
        tempfile.TemporaryDirectory(prefix="gateway-bench-education-") as tmp,
        scratch_database(base_url, Path(tmp), prefix="gw_bench_edu") as url,
    ):
        keys_dir = Path(tmp) / "keys"
        env = gateway_env(url, keys_dir)
        progress("scratch database created; creating keys and migrating")
        prepare(env)
        settings = Settings(database_url=url, keys_dir=keys_dir)
        engine = build_engine(url)
        try:
            with build_sessionmaker(engine)() as session:
                school, _key = make_client(session, agency="education", kinds=KINDS, client_id="bench-school-mis")
                session.commit()
                token = client_token(KeyFolder(keys_dir).signing_keys(), settings, school)
            known = pupils(rows + first_rows, seed=SEED)
            enrolled, unseen = known[:rows], known[rows:]
            extract = attendance_csv(enrolled, term="2026-autumn", seed=SEED)
            first = attendance_csv(unseen, term="2026-autumn", seed=SEED + 1)
            headers = {"Authorization": f"Bearer {token}"}
            log_path = Path(tmp) / "gateway-serve.log"
            try:
                with (
                    serve_gateway(env, log_path=log_path, workers=WORKERS) as server_url,
                    httpx.Client(base_url=server_url, timeout=REQUEST_TIMEOUT_S) as http,
                ):
                    progress(f"enrolling {len(enrolled):,} pupils in batches of {ENROLMENT_BATCH:,}")
                    for start in range(0, len(enrolled), ENROLMENT_BATCH):
                        reply = http.post(
                            "/education/v1/records",
                            content=enrolment_batch(enrolled[start : start + ENROLMENT_BATCH]),
                            headers={**headers, "Content-Type": "application/json"},
                        )
                        reply.raise_for_status()
                    progress(f"importing the {len(extract):,}-byte extract ({rows:,} rows)")
                    answer, seconds = _post_csv(http, headers, extract)
                    report.figure(section, "rows imported per second (one request, linking and audit included)",
                                  round(rows / seconds, 1), "/s", at_least=5000,
                                  note=f"{seconds:.2f} s for {rows:,} rows, pupils known by UPN from enrolment")
                    report.check(f"{section}: every row answered created", answer["summary"]["created"] == rows,
                                 json.dumps(answer["summary"]))
                    progress("importing the same extract again (every row unchanged)")
                    again, again_seconds = _post_csv(http, headers, extract)
                    report.figure(section, "the same extract again, rows per second", round(rows / again_seconds, 1), "/s")
                    report.check(f"{section}: a repeat answers unchanged for every row",
                                 again["summary"]["unchanged"] == rows, json.dumps(again["summary"]))
                    if first_rows:
                        progress(f"importing {first_rows:,} rows of pupils never seen (scored linking)")
                        answer_first, first_seconds = _post_csv(http, headers, first)
                        report.figure(f"{first_rows:,} rows of pupils never seen", "rows imported per second",
                                      round(first_rows / first_seconds, 1), "/s",
                                      note="each pupil new: no NHS number, scored against its blocking candidates")
                        report.check(f"{first_rows:,} unseen pupils: every row created",
                                     answer_first["summary"]["created"] == first_rows, json.dumps(answer_first["summary"]))
            except Exception:
                print(log_tail(log_path, lines=20))
                raise
            progress("server stopped; checking the stored rows and the audit trail")
            with build_sessionmaker(engine)() as session:
                attendance = session.scalar(
                    select(func.count()).select_from(Item).where(Item.kind == "attendance", Item.source_record_id.like("att/2026-autumn/%"))
                ) or 0
                report.check(f"{section}: one attendance item per row", attendance == rows + first_rows,
                             f"{attendance:,} items for {rows + first_rows:,} rows")
                enrolment = Item.__table__.alias("enrolment")
                misfiled = session.scalar(
                    select(func.count())
                    .select_from(Item)
                    .join(enrolment, enrolment.c.source_record_id == func.replace(Item.source_record_id, "att/2026-autumn/", "enrol/"))
                    .where(Item.kind == "attendance", enrolment.c.child_id != Item.child_id)
                ) or 0
                report.check(f"{section}: each row filed on its pupil's child (the enrolment's)", misfiled == 0,
                             f"{misfiled} rows on another child")
                assert session.get(Client, "bench-school-mis") is not None
                result = verify(session, verifier=KeyFolder(keys_dir).audit_signer().verifier())
                report.check("the audit trail verifies", result.ok and result.pending == 0,
                             f"{result.events_checked:,} events, {result.pending} staged")
        finally:
            engine.dispose()


def _post_csv(http: httpx.Client, headers: dict[str, str], body: bytes) -> tuple[dict[str, Any], float]:
    started = time.monotonic()
    reply = http.post("/education/v1/records.csv", content=body, headers={**headers, "Content-Type": "text/csv"})
    seconds = time.monotonic() - started
    reply.raise_for_status()
    answer: dict[str, Any] = reply.json()
    return answer, seconds


def main(argv: Sequence[str] | None = None) -> int:
    """Run the attendance import benchmark; print and save the report; 0 unless a correctness check failed."""
    parser = argparse.ArgumentParser(prog="python -m bench education", description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000, help="rows of the measured extract")
    parser.add_argument("--first-rows", type=int, default=2_000, help="rows of pupils never seen (0: skip)")
    options = parser.parse_args(argv)
    return run_reported(
        "the attendance import benchmark",
        RESULTS,
        lambda url, report, progress: run(url, report, progress, rows=options.rows, first_rows=options.first_rows),
    )

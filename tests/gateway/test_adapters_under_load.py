"""Police and education pushes and the inboxes under concurrent clients: `gateway serve --workers 2` on PostgreSQL.

A force and a school push about the same children at once, four connections of the force's one
client racing each Operation Encompass notice, while the school's designated safeguarding lead acknowledges
notices and the lead practitioner reads notifications, two of each racing. Afterwards the stored
rows say: each record stored once, on the right child; each notice routed once, to the school;
each acknowledgement and read audited once. A second test pushes a large CSV extract while small
police pushes and /healthz must keep being answered.

Every request has a timeout and every loop is bounded in count and time: a hung gateway makes
these tests fail, never hang. Run with `pytest -s` to see the one-line summaries they print.
"""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from audit import AuditAction, AuditEvent
from gateway.auth.principal import Principal, PrincipalKind
from gateway.auth.tokens import mint_access_token
from gateway.demo.population import synthetic_upn
from gateway.identity.service import NHS_NUMBER_SCHEME, UPN_SCHEME
from gateway.keys import KeyFolder
from gateway.kit.crypto import DataKeyring
from gateway.kit.db import build_engine, build_sessionmaker
from gateway.models import (
    ChildIdentifier,
    Identity,
    InboxEntry,
    InboxKind,
    Item,
    Link,
    LinkState,
    SchoolContact,
    SchoolContactRole,
    Team,
)
from gateway.settings import Settings
from policies import Agency, RecordStatus
from tests.factories import add_member, allocate, client_token, make_client, nhs_number, staff_token
from tests.gateway.test_under_load import (
    MAX_TRIES,
    RETRY_AFTER_CAP,
    Partnership,
    Reply,
    audit_problems,
    send,
    set_up,
)
from tests.serving import log_tail, scratch_database, serve_gateway

REQUEST_TIMEOUT = 30.0  # seconds; no answer within it is "unanswered" and fails the test (as send's)
BARRIER_TIMEOUT = 30.0  # seconds the racers wait for one another at a start line
AUDIT_SETTLE_SECONDS = 20.0  # how long the trail may take to be integrated, signed and verify
LOAD_SECONDS = 60.0  # the concurrent phase ends by then, whatever is left to do
POLL_PAUSE = 0.05  # seconds an inbox poller waits after a listing with nothing new in it

URN = "999001"
CHILDREN = 12  # K: pupils enrolled at the school, and the children of every police batch
POLICE = 4  # P: police client threads, racing each round's notices
POLICE_ROUNDS = 6  # batches per police thread (a new notice and incident per child each round)
SCHOOLS = 2  # S: school client threads, racing each round's attendance rows
SCHOOL_ROUNDS = 3  # CSV extracts per school thread
NEW_PUPILS = 2  # pupils new to the gateway in each extract, thread-specific
DSLS = 2  # designated safeguarding lead threads, racing to acknowledge the same notices
LEADS = 2  # lead practitioner threads, racing to mark the same notifications read
INBOX_LIMIT = 200  # every entry of this test fits in one listing (180 notifications, 72 notices)

BIG_CSV_ROWS = 3000
BIG_CSV_TIMEOUT = 120.0
SMALL_PUSHERS = 4
SMALL_PUSH_BOUND = 10.0  # seconds: a small push must not wait for the whole import
MAX_SMALL_PUSHES = 1000  # per pusher, whatever the time
SMALL_PUSH_INTERVAL = 0.05  # seconds between one pusher's pushes
HEALTH_BOUND = 2.0  # seconds: a liveness bound, not a speed target
HEALTH_INTERVAL = 0.1

FORCE_KINDS = ("identity", "incident", "domestic_abuse_notification", "missing_episode", "custody", "intelligence")
SCHOOL_KINDS = ("identity", "enrolment", "attendance", "exclusion", "safeguarding_concern", "education_notice")
JSON = "application/json"
CSV = "text/csv"
DSL_SUBJECT = "dsl@school-999001.load.example"
LA_SUBJECT = "education.safeguarding@la.load.example"
LEAD_SUBJECT = "lead.practitioner@macpt.load.example"
CONTACT = {"officer": "DC Load Tester", "unit": "Public Protection Unit", "phone": "01234 000222"}
POLICE_SUMMARY_MARK = "Officers attended a disturbance"  # in the police record, never in what a school reads
CSV_COLUMNS = (
    "record_id,version,upn,nhs_number,given_names,family_name,birth_date,sex,postcode,school_urn,"
    "period_start,period_end,possible_sessions,attended_sessions,absence_I,absence_N"
)

# Every synthetic pupil of this module is unlike every other (names, birth date, postcode), so
# that only the records meant to be one child can score against one another.
GIVEN = (
    "Aurelia", "Bartholomew", "Clementine", "Dashiell", "Evangeline", "Fitzgerald", "Guinevere", "Horatio",
    "Imogen", "Jago", "Katarina", "Lysander", "Marguerite", "Nathaniel", "Ottoline", "Peregrine", "Rosalind",
    "Sebastian", "Tabitha", "Ulysses", "Valentina", "Wilhelmina", "Xanthe", "Yusuf", "Zenobia", "Augustin",
)
FAMILY = (
    "Achterberg", "Balasubramanian", "Cholmondeley", "Dimitrakopoulos", "Eisenhauer", "Featherstonehaugh",
    "Gallagher-Wynn", "Hoogenboom", "Iwasaki", "Jankowiak", "Kristiansen", "Llewellyn-Price", "Montmorency",
    "Nwachukwu", "Oyelaran", "Papadakis", "Quarterman", "Rautenbach", "Szczepanski", "Trevelyan", "Uchenna",
    "Vanderbilt", "Wojciechowski", "Xenakis", "Yamamoto", "Zimmermann",
)
# The large extract's surnames: FAMILY x SUFFIXES, all distinct, none a surname of the concurrent scenario.
SUFFIXES = ("-Hale", "-Moss", "-Reed", "-Lowe", "-Vale")
LETTERS = "ABDEFGHJLNPQRSTUWXYZ"  # the letters a postcode's inward code may end with

NOW = datetime.now(UTC)
TODAY = NOW.date()
INCIDENT_AT = (NOW - timedelta(days=2)).replace(microsecond=0)
ENROLLED_ON = TODAY - timedelta(days=60)
PERIOD = (TODAY - timedelta(days=50), TODAY - timedelta(days=5))


# --- synthetic pupils -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pupil:
    """A synthetic child as the school and the force both know them."""

    n: int
    upn: str
    nhs: str
    given: str
    family: str
    birth_date: date
    sex: str
    postcode: str
    address_line: str


def _postcode(district: str, n: int) -> str:
    return f"{district} {n % 10}{LETTERS[n // 10 % 20]}{LETTERS[n // 200 % 20]}"


def _pupil(n: int, nhs: str, upns: set[str]) -> Pupil:
    """Return pupil number n of the concurrent scenario (n < 26): names, birth date and postcode its own."""
    return Pupil(
        n=n,
        upn=_fresh_upn(n, upns),
        nhs=nhs,
        given=GIVEN[n],
        family=FAMILY[n],
        birth_date=date(2010, 1, 7) + timedelta(days=97 * n),
        sex="female" if n % 2 == 0 else "male",
        postcode=_postcode("ZZ99", n),
        address_line=f"{n + 11} {FAMILY[(n + 9) % len(FAMILY)]} Gardens",
    )


def _big_pupil(n: int, nhs: str, upns: set[str]) -> Pupil:
    """Return pupil number n of the large extract: a name pair, birth date and postcode no other has."""
    return Pupil(
        n=n,
        upn=_fresh_upn(100_000 + n, upns),
        nhs=nhs,
        given=GIVEN[n % len(GIVEN)],
        family=FAMILY[n // len(GIVEN) % len(FAMILY)] + SUFFIXES[n // (len(GIVEN) * len(FAMILY))],
        birth_date=date(2008, 1, 1) + timedelta(days=n),
        sex="female" if n % 2 == 0 else "male",
        postcode=_postcode("ZZ98", n),
        address_line="",
    )


def _fresh_upn(seed: int, upns: set[str]) -> str:
    """Return a synthetic UPN no other pupil of the module has (main thread only)."""
    for attempt in range(50):
        upn = synthetic_upn(random.Random(seed + 1_000_000 * attempt))
        if upn not in upns:
            upns.add(upn)
            return upn
    raise AssertionError("could not draw a fresh synthetic UPN")


def _fresh_numbers(count: int, taken: set[str]) -> list[str]:
    """Return `count` NHS numbers none of which is in `taken` (which grows); main thread only."""
    numbers: list[str] = []
    for _ in range(count * 20):  # the generator repeats itself now and then; bounded anyway
        if len(numbers) == count:
            break
        number = nhs_number()
        if number not in taken:
            taken.add(number)
            numbers.append(number)
    assert len(numbers) == count, "could not draw enough distinct synthetic NHS numbers"
    return numbers


# --- the served gateway, shared by the module's tests ------------------------------------------------


@dataclass(frozen=True)
class Served:
    """A running `gateway serve --workers 2` on a scratch PostgreSQL database, and who acts on it."""

    base_url: str
    partnership: Partnership
    team_id: uuid.UUID
    police_id: str
    police_token: str
    school_id: str
    school_token: str
    dsl_token: str
    la_token: str
    lead_token: str
    keyring: DataKeyring
    engine: Engine
    log_path: Path
    documented: dict[tuple[str, str], frozenset[int]]  # (method, path template) → the statuses the API documents
    taken: set[str] = field(default_factory=set)  # NHS numbers drawn so far (main thread only)
    upns: set[str] = field(default_factory=set)  # UPNs drawn so far (main thread only)


@pytest.fixture(scope="module")
def served(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    if not database_url.startswith("postgresql"):
        pytest.skip("PostgreSQL load test; the suite runs on SQLite (GATEWAY_TEST_DATABASE_URL is not PostgreSQL)")
    tmp_path = tmp_path_factory.mktemp("adapters_load")
    log_path = tmp_path / "gateway-serve.log"
    with scratch_database(database_url, tmp_path, prefix="gw_adapt_load") as url:
        partnership = set_up(url, tmp_path, clients=0)
        engine = build_engine(url)
        try:
            seeded = _seed(engine, partnership)
            keyring = KeyFolder(partnership.keys_dir).data_keyring()
            with serve_gateway(partnership.env, log_path=log_path, workers=2) as base_url:
                yield Served(
                    base_url=base_url,
                    partnership=partnership,
                    keyring=keyring,
                    engine=engine,
                    log_path=log_path,
                    documented=_documented(base_url),
                    **seeded,
                )
        finally:
            engine.dispose()


def _seed(engine: Engine, partnership: Partnership) -> dict[str, Any]:
    """Register the force and the school, the team's lead practitioner, the school's DSL and the LA's lead."""
    settings = Settings(database_url=partnership.url, keys_dir=partnership.keys_dir)
    keys = KeyFolder(partnership.keys_dir).signing_keys()

    def contact_token(subject: str, role: str) -> str:
        principal = Principal(PrincipalKind.STAFF, subject, Agency.EDUCATION, role)
        return mint_access_token(
            keys, issuer=settings.issuer, audience=settings.audience, principal=principal, ttl_seconds=900
        )

    with build_sessionmaker(engine)() as session:
        police, _key = make_client(session, agency=Agency.POLICE, kinds=FORCE_KINDS, client_id="load-police")
        school, _key = make_client(session, agency=Agency.EDUCATION, kinds=SCHOOL_KINDS, client_id="load-school")
        team = session.get(Team, partnership.team_id)
        assert team is not None
        lead = add_member(session, team, agency="social_care", role="lead_practitioner", subject=LEAD_SUBJECT)
        session.add_all(
            [
                SchoolContact(
                    urn=URN,
                    subject=DSL_SUBJECT,
                    display_name="Load DSL",
                    role=SchoolContactRole.DESIGNATED_SAFEGUARDING_LEAD,
                ),
                SchoolContact(
                    urn=None,
                    subject=LA_SUBJECT,
                    display_name="Load LA lead",
                    role=SchoolContactRole.LA_EDUCATION_SAFEGUARDING_LEAD,
                ),
            ]
        )
        session.commit()
        return {
            "team_id": team.id,
            "police_id": police.id,
            "police_token": client_token(keys, settings, police),
            "school_id": school.id,
            "school_token": client_token(keys, settings, school),
            # Neither contact is a member of any team: an Encompass inbox needs none.
            "dsl_token": contact_token(DSL_SUBJECT, "designated_safeguarding_lead"),
            "la_token": contact_token(LA_SUBJECT, "la_education_safeguarding_lead"),
            "lead_token": staff_token(keys, settings, lead, ttl=900),
        }


def _documented(base_url: str) -> dict[tuple[str, str], frozenset[int]]:
    """Return the statuses the served gateway's OpenAPI document gives each operation."""
    with httpx.Client(base_url=base_url, timeout=REQUEST_TIMEOUT) as http:
        response = http.get("/openapi.json")
    assert response.status_code == 200, response.text[:300]
    documented: dict[tuple[str, str], frozenset[int]] = {}
    for path, operations in response.json()["paths"].items():
        for method, operation in operations.items():
            statuses = {int(status) for status in operation.get("responses", {}) if str(status).isdigit()}
            documented[(method.upper(), str(path))] = frozenset(statuses)
    return documented


# --- HTTP ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Exchange:
    """One request and its final answer (status None: no answer in time, or no connection)."""

    operation: tuple[str, str]  # (method, path template), as the OpenAPI document names it
    status: int | None
    text: str
    retries: int
    started: float  # time.monotonic() when sent
    seconds: float

    @property
    def finished(self) -> float:
        return self.started + self.seconds

    def json(self) -> dict[str, Any]:
        body: dict[str, Any] = json.loads(self.text)
        return body


@dataclass
class Log:
    """What one client thread sent and was answered; read only after the thread has finished."""

    name: str
    exchanges: list[Exchange] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def problem(self, message: str) -> None:
        if len(self.problems) < 5:  # the other checks count; a few examples say what
            self.problems.append(f"{self.name}: {message}")


def _call(
    http: httpx.Client,
    log: Log,
    operation: tuple[str, str],
    url: str,
    token: str,
    *,
    body: bytes | None = None,
    media_type: str | None = None,
) -> Exchange:
    """Send one request (a 503 with Retry-After retried, bounded), log it and return it."""
    headers = {"Authorization": f"Bearer {token}"}
    if media_type is not None:
        headers["Content-Type"] = media_type
    started = time.monotonic()
    reply: Reply = send(http, operation[0], url, headers=headers, body=body, retry_503=True)
    exchange = Exchange(operation, reply.status, reply.text, reply.retries, started, reply.seconds)
    log.exchanges.append(exchange)
    if reply.status != 200:
        log.problem(f"{operation[0]} {url}: {reply.status} {reply.text[:300]}")
    return exchange


def _answer_problems(served: Served, logs: list[Log]) -> list[str]:
    """Every request answered, none 5xx, each status one the API documents for its operation, all 200."""
    problems: list[str] = []
    exchanges = [exchange for log in logs for exchange in log.exchanges]
    unanswered = [e for e in exchanges if e.status is None]
    server_errors = [e for e in exchanges if e.status is not None and e.status >= 500]
    undocumented = [
        e for e in exchanges if e.status is not None and e.status not in served.documented.get(e.operation, frozenset())
    ]
    other = [e for e in exchanges if e.status is not None and e.status != 200 and e.status < 500]
    for label, wrong in (
        ("unanswered", unanswered),
        ("answered 5xx (503s retried after Retry-After as allowed)", server_errors),
        ("answered a status their operation does not document", undocumented),
        ("answered 4xx to valid requests", other),
    ):
        if wrong:
            examples = "; ".join(f"{e.operation[0]} {e.operation[1]} {e.status}: {e.text[:200]}" for e in wrong[:3])
            problems.append(f"{len(wrong)} of {len(exchanges)} requests {label}: {examples}")
    return problems + [message for log in logs for message in log.problems]


def _summary(label: str, logs: list[Log], seconds: float) -> str:
    exchanges = [exchange for log in logs for exchange in log.exchanges]
    statuses = Counter(exchange.status for exchange in exchanges)
    retries = sum(exchange.retries for exchange in exchanges)
    slowest = max((exchange.seconds for exchange in exchanges), default=0.0)
    line = (
        f"[postgresql, 2 workers] {label}: {len(exchanges)} requests, answers {dict(statuses)}, "
        f"503 retries {retries}, slowest {slowest:.2f} s, {seconds:.1f} s"
    )
    print(f"\n{line}")
    return line


def _run_threads(served: Served, targets: list[tuple[str, Callable[[Log], None]]], *, bound: float) -> list[Log]:
    """Run each target in a thread of its own with its own log; wait for all, bounded."""
    logs = [Log(name) for name, _target in targets]

    def run(target: Callable[[Log], None], log: Log) -> None:
        try:
            target(log)
        except Exception as error:  # a fault of the test itself (or a broken barrier) must fail the test
            log.problems.append(f"{log.name} failed: {error!r}")

    threads = [
        threading.Thread(target=run, args=(target, log), name=log.name, daemon=True)
        for (_name, target), log in zip(targets, logs, strict=True)
    ]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + bound
    for thread in threads:
        thread.join(timeout=max(0.0, deadline - time.monotonic()))
    running = [thread.name for thread in threads if thread.is_alive()]
    assert not running, f"client threads still running past every timeout: {running}\n{log_tail(served.log_path)}"
    return logs


def _log_size(served: Served) -> int:
    return served.log_path.stat().st_size if served.log_path.exists() else 0


def _server_log_problems(served: Served, since: int) -> list[str]:
    """What the server logged since `since` (a byte offset) at WARNING or above, or not as a JSON line (a traceback)."""
    with served.log_path.open("rb") as log:
        log.seek(since)
        lines = log.read().decode("utf-8", errors="replace").splitlines()
    wrong: list[str] = []
    for line in lines:
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            wrong.append(line[:200])
            continue
        level = str(record.get("level") or record.get("levelname") or "").upper() if isinstance(record, dict) else ""
        if not isinstance(record, dict) or level in ("WARNING", "ERROR", "CRITICAL"):
            wrong.append(line[:300])
    return [f"the server logged {len(wrong)} warnings, errors or non-JSON lines: {wrong[:5]}"] if wrong else []


def _settled_audit(served: Served) -> list[str]:
    """Wait (bounded) until the running gateway has integrated and signed the trail, and it verifies."""
    deadline = time.monotonic() + AUDIT_SETTLE_SECONDS
    while True:
        problems = audit_problems(served.partnership.env)
        if not problems or time.monotonic() > deadline:
            return problems
        time.sleep(0.5)


# --- what the force and the school send -----------------------------------------------------------------


def _force_child(pupil: Pupil, *, role: str) -> dict[str, Any]:
    """The force's person record of the pupil: its own person id; the NHS number for every other pair of pupils."""
    child: dict[str, Any] = {
        "person_id": f"PER-{pupil.n}",
        "given_names": [pupil.given],
        "family_name": pupil.family,
        "birth_date": pupil.birth_date.isoformat(),
        "sex": pupil.sex,
        "address": {"lines": [pupil.address_line], "postcode": pupil.postcode},
        "role": role,
    }
    if _force_knows_nhs_number(pupil.n):
        child["nhs_number"] = pupil.nhs
    return child


def _force_knows_nhs_number(n: int) -> bool:
    return n % 4 in (0, 1)  # half; not the same half as the allocated children (n even)


def _allocated(n: int) -> bool:
    return n % 2 == 0


def _notice_id(round_no: int, n: int) -> str:
    return f"DA-r{round_no}-{n}"


def _incident_id(thread: int, round_no: int, n: int) -> str:
    return f"INC-t{thread}-r{round_no}-{n}"


def _school_notice(round_no: int, pupil: Pupil) -> str:
    return (
        f"Police attended a domestic abuse incident at {pupil.given}'s home ({_notice_id(round_no, pupil.n)}); "
        f"{pupil.given} was in the house. Please be alert to {pupil.given}'s wellbeing today."
    )


def _police_batch(pupils: list[Pupil], thread: int, round_no: int) -> bytes:
    """One batch about every pupil: a notice (the same for every thread) and an incident (this thread's)."""
    occurred = INCIDENT_AT + timedelta(minutes=round_no)
    records: list[dict[str, Any]] = []
    for pupil in pupils if thread % 2 == 0 else reversed(pupils):  # the same records, in two orders
        records.append(
            {
                "record_id": _notice_id(round_no, pupil.n),
                "version": "1",
                "kind": "domestic_abuse_notification",
                "occurred_at": occurred.isoformat(),
                "child": _force_child(pupil, role="present"),
                "contact": dict(CONTACT),
                "details": {
                    "incident_at": occurred.isoformat(),
                    "child_present": True,
                    "summary": f"{POLICE_SUMMARY_MARK} between the adults of the household; the child was upstairs.",
                    "school_notice": _school_notice(round_no, pupil),
                },
            }
        )
        records.append(
            {
                "record_id": _incident_id(thread, round_no, pupil.n),
                "version": "1",
                "kind": "incident",
                "occurred_at": (occurred + timedelta(seconds=thread + 1)).isoformat(),
                "child": _force_child(pupil, role="victim"),
                "contact": dict(CONTACT),
                "details": {"occurrence_type": "assault", "summary": "Pushed over on the way home; grazed a knee."},
            }
        )
    return json.dumps({"schema": "police/v1", "atomic": False, "records": records}).encode()


def _pupil_json(pupil: Pupil) -> dict[str, Any]:
    return {
        "upn": pupil.upn,
        "nhs_number": pupil.nhs,
        "given_names": [pupil.given],
        "family_name": pupil.family,
        "birth_date": pupil.birth_date.isoformat(),
        "sex": pupil.sex,
        "address": {"lines": [pupil.address_line], "postcode": pupil.postcode},
    }


def _enrolment_id(n: int) -> str:
    return f"enrol/load/{n}"


def _enrolments(pupils: list[Pupil]) -> bytes:
    records = [
        {
            "record_id": _enrolment_id(pupil.n),
            "version": "1",
            "kind": "enrolment",
            "pupil": _pupil_json(pupil),
            "school": {"urn": URN, "name": "Load Test Primary School"},
            "details": {"year_group": "5", "start_date": ENROLLED_ON.isoformat()},
        }
        for pupil in pupils
    ]
    return json.dumps({"schema": "education/v1", "atomic": False, "records": records}).encode()


def _attendance_id(round_no: int, n: int) -> str:
    return f"att/load-r{round_no}/{n}"


def _new_pupil_id(school: int, round_no: int, j: int) -> str:
    return f"att/new-s{school}-r{round_no}/{j}"


def _csv_row(record_id: str, pupil: Pupil) -> str:
    attended = 70 - pupil.n % 8
    ill, unexplained = (70 - attended) // 2, 70 - attended - (70 - attended) // 2
    return ",".join(
        [
            record_id, "1", pupil.upn, pupil.nhs, pupil.given, pupil.family, pupil.birth_date.isoformat(), pupil.sex,
            pupil.postcode, URN, PERIOD[0].isoformat(), PERIOD[1].isoformat(), "70", str(attended),
            str(ill) if ill else "", str(unexplained) if unexplained else "",
        ]
    )


def _csv(rows: list[str]) -> bytes:
    return ("\r\n".join([CSV_COLUMNS, *rows]) + "\r\n").encode()


def _outcomes(exchange: Exchange, log: Log, expected: int) -> list[tuple[str, str]]:
    """Return (record id, status) of each record a 200 answered; note a malformed answer."""
    if exchange.status != 200:
        return []
    try:
        outcomes = [(str(o["record_id"]), str(o["status"])) for o in exchange.json()["outcomes"]]
    except (ValueError, KeyError, TypeError) as error:
        log.problem(f"200 with an unreadable answer ({type(error).__name__}): {exchange.text[:300]}")
        return []
    if len(outcomes) != expected:
        log.problem(f"200 with {len(outcomes)} outcomes for {expected} records")
    rejected = [(record_id, status) for record_id, status in outcomes if status not in ("created", "unchanged")]
    if rejected:
        log.problem(f"records answered other than created or unchanged: {rejected[:5]} {exchange.text[:500]}")
    return outcomes


# --- the concurrent scenario ------------------------------------------------------------------------------


POLICE_RECORDS = ("POST", "/police/v1/records")
EDUCATION_RECORDS = ("POST", "/education/v1/records")
EDUCATION_CSV = ("POST", "/education/v1/records.csv")
ENCOMPASS_INBOX = ("GET", "/api/v1/encompass/inbox")
ACKNOWLEDGE = ("POST", "/api/v1/encompass/inbox/{entry_id}/acknowledge")
NOTIFICATIONS = ("GET", "/api/v1/notifications")
MARK_READ = ("POST", "/api/v1/notifications/{entry_id}/read")


@dataclass
class Scenario:
    """What the client threads of the concurrent phase share."""

    served: Served
    pupils: list[Pupil]
    new_pupils: dict[tuple[int, int], list[Pupil]]  # (school thread, round) → pupils new in that extract
    start: threading.Barrier
    police_round: threading.Barrier
    school_round: threading.Barrier
    deadline: float
    producers_left: int = POLICE + SCHOOLS
    lock: threading.Lock = field(default_factory=threading.Lock)
    producers_done: threading.Event = field(default_factory=threading.Event)
    # Read after the threads finish: what each answer said.
    record_outcomes: list[tuple[str, str, str]] = field(default_factory=list)  # (thread, record id, status)
    seen_notices: dict[str, dict[str, Any]] = field(default_factory=dict)  # entry id → the notice as listed
    acknowledgements: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    reads: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    listings: list[str] = field(default_factory=list)  # the DSL's listings, to look for police text
    seen_notifications: dict[str, dict[str, Any]] = field(default_factory=dict)  # entry id → as listed

    def produced(self) -> None:
        with self.lock:
            self.producers_left -= 1
            if self.producers_left == 0:
                self.producers_done.set()

    def keep(self, outcomes: list[tuple[str, str]], thread: str) -> None:
        with self.lock:
            self.record_outcomes.extend((thread, record_id, status) for record_id, status in outcomes)


def _connect(scenario: Scenario) -> httpx.Client:
    return httpx.Client(base_url=scenario.served.base_url, timeout=REQUEST_TIMEOUT)


def _police_thread(scenario: Scenario, thread: int) -> Callable[[Log], None]:
    def run(log: Log) -> None:
        try:
            with _connect(scenario) as http:
                http.get("/healthz")  # connected before the start, so that the requests leave together
                scenario.start.wait()
                for round_no in range(POLICE_ROUNDS):
                    if time.monotonic() > scenario.deadline:
                        log.problem(f"out of time before round {round_no}")
                        break
                    body = _police_batch(scenario.pupils, thread, round_no)
                    scenario.police_round.wait()  # the force's threads send each round's notices at once
                    exchange = _call(
                        http, log, POLICE_RECORDS, "/police/v1/records", scenario.served.police_token,
                        body=body, media_type=JSON,
                    )
                    scenario.keep(_outcomes(exchange, log, 2 * CHILDREN), log.name)
        finally:
            scenario.produced()

    return run


def _school_thread(scenario: Scenario, school: int) -> Callable[[Log], None]:
    def run(log: Log) -> None:
        try:
            with _connect(scenario) as http:
                http.get("/healthz")
                scenario.start.wait()
                for round_no in range(SCHOOL_ROUNDS):
                    if time.monotonic() > scenario.deadline:
                        log.problem(f"out of time before round {round_no}")
                        break
                    rows = [_csv_row(_attendance_id(round_no, pupil.n), pupil) for pupil in scenario.pupils]
                    new = scenario.new_pupils[(school, round_no)]
                    rows += [_csv_row(_new_pupil_id(school, round_no, j), pupil) for j, pupil in enumerate(new)]
                    scenario.school_round.wait()  # the two extracts' shared rows race
                    exchange = _call(
                        http, log, EDUCATION_CSV, "/education/v1/records.csv", scenario.served.school_token,
                        body=_csv(rows), media_type=CSV,
                    )
                    scenario.keep(_outcomes(exchange, log, len(rows)), log.name)
        finally:
            scenario.produced()

    return run


def _dsl_thread(scenario: Scenario) -> Callable[[Log], None]:
    """List the Encompass inbox and acknowledge every notice not yet acknowledged, until all are."""

    def run(log: Log) -> None:
        token = scenario.served.dsl_token
        with _connect(scenario) as http:
            http.get("/healthz")
            scenario.start.wait()
            while time.monotonic() < scenario.deadline:
                finished = scenario.producers_done.is_set()  # before the listing: it then holds every notice
                listing = _call(http, log, ENCOMPASS_INBOX, f"/api/v1/encompass/inbox?limit={INBOX_LIMIT}", token)
                if listing.status != 200:  # counted as a failure; no answer at all ends the thread
                    if listing.status is None:
                        return
                    time.sleep(POLL_PAUSE)
                    continue
                body = listing.json()
                with scenario.lock:
                    scenario.listings.append(listing.text)
                    for notice in body["notices"]:
                        scenario.seen_notices.setdefault(str(notice["id"]), notice)
                waiting = [str(n["id"]) for n in body["notices"] if n["acknowledged_at"] is None]
                for entry_id in waiting:
                    url = f"/api/v1/encompass/inbox/{entry_id}/acknowledge"
                    answer = _call(http, log, ACKNOWLEDGE, url, token)
                    if answer.status == 200:
                        with scenario.lock:
                            scenario.acknowledgements[entry_id].append(answer.json())
                if finished and not waiting and body["unacknowledged"] == 0:
                    return
                if not waiting:
                    time.sleep(POLL_PAUSE)
            log.problem("out of time with notices still to acknowledge")

    return run


def _lead_thread(scenario: Scenario) -> Callable[[Log], None]:
    """List the lead practitioner's notifications and mark every unread one read, until all are."""

    def run(log: Log) -> None:
        token = scenario.served.lead_token
        with _connect(scenario) as http:
            http.get("/healthz")
            scenario.start.wait()
            while time.monotonic() < scenario.deadline:
                finished = scenario.producers_done.is_set()
                listing = _call(http, log, NOTIFICATIONS, f"/api/v1/notifications?limit={INBOX_LIMIT}", token)
                if listing.status != 200:  # counted as a failure; no answer at all ends the thread
                    if listing.status is None:
                        return
                    time.sleep(POLL_PAUSE)
                    continue
                body = listing.json()
                with scenario.lock:
                    for notification in body["notifications"]:
                        scenario.seen_notifications.setdefault(str(notification["id"]), notification)
                unread = [str(n["id"]) for n in body["notifications"] if n["read_at"] is None]
                for entry_id in unread:
                    answer = _call(http, log, MARK_READ, f"/api/v1/notifications/{entry_id}/read", token)
                    if answer.status == 200:
                        with scenario.lock:
                            scenario.reads[entry_id].append(answer.json())
                if finished and not unread and body["unread"] == 0:
                    return
                if not unread:
                    time.sleep(POLL_PAUSE)
            log.problem("out of time with notifications still unread")

    return run


def _enrol(served: Served, pupils: list[Pupil]) -> dict[int, uuid.UUID]:
    """Phase A: the school enrols the pupils (one batch); return each pupil's child, by NHS number and UPN."""
    log = Log("enrolment")
    with httpx.Client(base_url=served.base_url, timeout=REQUEST_TIMEOUT) as http:
        exchange = _call(
            http, log, EDUCATION_RECORDS, "/education/v1/records", served.school_token,
            body=_enrolments(pupils), media_type=JSON,
        )
    assert exchange.status == 200, f"{exchange.status}: {exchange.text[:500]}\n{log_tail(served.log_path)}"
    statuses = [status for _record_id, status in _outcomes(exchange, log, len(pupils))]
    assert statuses == ["created"] * len(pupils), exchange.text[:1000]
    children: dict[int, uuid.UUID] = {}
    with Session(served.engine) as session:
        for pupil in pupils:
            by_number = _children_of(session, served.keyring, NHS_NUMBER_SCHEME, pupil.nhs)
            by_upn = _children_of(session, served.keyring, UPN_SCHEME, pupil.upn)
            assert len(by_number) == 1 and by_number == by_upn, (pupil.n, by_number, by_upn)
            children[pupil.n] = by_number[0]
    assert len(set(children.values())) == len(pupils), "two enrolled pupils were linked to one child"
    return children


def _allocate(served: Served, children: list[uuid.UUID]) -> None:
    with build_sessionmaker(served.engine)() as session:
        team = session.get(Team, served.team_id)
        assert team is not None
        for child_id in children:
            allocate(session, child_id=child_id, team=team)
        session.commit()


def _children_of(session: Session, keyring: DataKeyring, scheme: str, value: str) -> list[uuid.UUID]:
    index = keyring.blind_index(scheme, value)
    return list(
        session.scalars(
            select(ChildIdentifier.child_id).where(
                ChildIdentifier.scheme == scheme, ChildIdentifier.blind_index == index
            )
        )
    )


# --- the checks after the concurrent phase ------------------------------------------------------------


def _answered_once(scenario: Scenario, record_ids: dict[str, int]) -> list[str]:
    """Each record id raced by several threads: answered created exactly once, unchanged to every other."""
    statuses: dict[str, list[str]] = defaultdict(list)
    for _thread, record_id, status in scenario.record_outcomes:
        statuses[record_id].append(status)
    problems: list[str] = []
    for record_id, senders in sorted(record_ids.items()):
        got = sorted(statuses.get(record_id, []))
        if got != ["created"] + ["unchanged"] * (senders - 1):
            problems.append(f"record {record_id}, sent by {senders} threads at once, was answered {got}")
    return _capped(problems)


def _storage_problems(
    session: Session, served: Served, expected: dict[tuple[str, str], uuid.UUID]
) -> tuple[dict[str, uuid.UUID], list[str]]:
    """Each expected (client, record id) stored as exactly one item, current, on its child. Return item ids."""
    rows = session.execute(
        select(Item.id, Item.client_id, Item.source_record_id, Item.source_version, Item.status, Item.child_id).where(
            Item.client_id.in_((served.police_id, served.school_id))
        )
    ).all()
    stored: dict[tuple[str, str], list[Any]] = defaultdict(list)
    for row in rows:
        stored[(row.client_id, row.source_record_id)].append(row)
    counted: list[str] = []
    misfiled: list[str] = []
    items: dict[str, uuid.UUID] = {}
    for key, child_id in sorted(expected.items()):
        found = stored.get(key, [])
        if len(found) != 1:
            counted.append(f"{key[1]} ({key[0]}): {len(found)} items, expected exactly one")
            continue
        (row,) = found
        if row.status != RecordStatus.CURRENT or row.source_version != "1":
            counted.append(f"{key[1]}: version {row.source_version} {row.status}, expected version 1 current")
        if row.child_id != child_id:
            misfiled.append(f"{key[1]}: filed on child {row.child_id}, expected {child_id}")
        items[key[1]] = row.id
    problems = _capped(counted) + _capped(misfiled)
    other_test = ("att/big/", "INC-B")  # the other test's records
    unexpected = sorted(key[1] for key in stored.keys() - expected.keys() if not key[1].startswith(other_test))
    if unexpected:
        problems.append(f"{len(unexpected)} records stored that nobody sent in this test: {unexpected[:5]}")
    return items, problems


def _police_link_problems(
    session: Session, served: Served, children: dict[int, uuid.UUID]
) -> tuple[list[str], dict[str, Counter[str]]]:
    """The force's person record of each pupil: one identity, linked to the enrolled child.

    With the NHS number, linked on it; without, scored (names, birth date, sex and postcode agree).
    Return the problems, and how the person records were linked (with and without an NHS number).
    """
    rows = session.execute(
        select(Identity.source_record_id, Link.child_id, Link.state, Link.method)
        .join(Link, Link.identity_id == Identity.id)
        .where(Identity.client_id == served.police_id, Identity.source_record_id.startswith("person/PER-"))
    ).all()
    links: dict[str, list[tuple[uuid.UUID, LinkState, Any]]] = defaultdict(list)
    for record_id, child_id, state, method in rows:
        links[record_id].append((child_id, state, method))
    problems: list[str] = []
    methods: dict[str, Counter[str]] = defaultdict(Counter)
    for n, child_id in children.items():
        found = links.get(f"person/PER-{n}", [])
        nhs = "with" if _force_knows_nhs_number(n) else "without"
        methods[f"{nhs} NHS number"].update(f"{state.value}/{method}" for _child, state, method in found)
        linked = [(child, method) for child, state, method in found if state is LinkState.LINKED]
        if len(linked) != 1 or linked[0][0] != child_id:
            problems.append(
                f"the force's person PER-{n} ({nhs} an NHS number) has links {found}, "
                f"expected one, linked to {child_id}"
            )
    return problems, dict(methods)


def _proposals(session: Session, served: Served, record_ids: set[str]) -> list[str]:
    """The proposed links (state review) about these person or pupil records of the force and the school.

    Every synthetic pupil of the module is unlike every other: nothing here should need a person to decide.
    """
    rows = session.execute(
        select(Identity.source_record_id, Link.child_id, Link.score)
        .join(Link, Link.identity_id == Identity.id)
        .where(
            Identity.client_id.in_((served.police_id, served.school_id)),
            Identity.source_record_id.in_(record_ids),
            Link.state == LinkState.REVIEW,
        )
    ).all()
    return [f"{len(rows)} proposed links (state review) about this test's pupils: {rows[:5]}"] if rows else []


def _events(session: Session, action: AuditAction) -> list[AuditEvent]:
    return list(session.scalars(select(AuditEvent).where(AuditEvent.action == action.value)))


def _capped(lines: list[str], limit: int = 8) -> list[str]:
    """The first lines of one kind of problem, and how many more there are."""
    return lines[:limit] + ([f"... and {len(lines) - limit} more like these"] if len(lines) > limit else [])


def _inbox_problems(
    session: Session,
    scenario: Scenario,
    children: dict[int, uuid.UUID],
    items: dict[str, uuid.UUID],
) -> tuple[list[str], str]:
    """Encompass: one entry per notice, to the DSL, acknowledged once. Notifications: one per notifiable item
    of the allocated children, read once. Return the problems and a line of counts."""
    problems: list[str] = []
    notices = {
        items[_notice_id(r, n)]: (r, n)
        for r in range(POLICE_ROUNDS)
        for n in range(CHILDREN)
        if _notice_id(r, n) in items
    }
    incidents = {
        items[_incident_id(t, r, n)]: n
        for t in range(POLICE)
        for r in range(POLICE_ROUNDS)
        for n in range(CHILDREN)
        if _incident_id(t, r, n) in items
    }
    entries = list(session.scalars(select(InboxEntry)))

    # Operation Encompass: each notice once, to the school's DSL, none to the LA's lead.
    encompass = [entry for entry in entries if entry.kind is InboxKind.ENCOMPASS]
    per_item: Counter[uuid.UUID] = Counter(entry.item_id for entry in encompass)
    problems += _capped(
        [
            f"notice {_notice_id(round_no, n)}: {per_item[item_id]} Encompass entries, expected 1"
            for item_id, (round_no, n) in notices.items()
            if per_item[item_id] != 1
        ]
    )
    strays = [entry for entry in encompass if entry.item_id not in notices]
    if strays:
        problems.append(f"{len(strays)} Encompass entries about items that are not this test's notices")
    wrong = [
        (entry.recipient, entry.urn, entry.recipient_role)
        for entry in encompass
        if (entry.recipient, entry.urn, entry.recipient_role) != (DSL_SUBJECT, URN, "designated_safeguarding_lead")
    ]
    if wrong:
        problems.append(f"{len(wrong)} Encompass entries not to the school's DSL: {Counter(wrong)}")
    if any(entry.recipient == LA_SUBJECT for entry in entries):
        problems.append("the LA's education safeguarding lead was sent something, though every child has a school")
    problems += _capped(
        [
            f"the Encompass entry of {_notice_id(*notices[entry.item_id])} is on another child"
            for entry in encompass
            if entry.item_id in notices and entry.child_id != children[notices[entry.item_id][1]]
        ]
    )
    routed = Counter(
        str(event.detail.get("item")) for event in _events(session, AuditAction.ENCOMPASS_NOTICE_ROUTED)
    )
    not_once = {str(item): routed[str(item)] for item in notices if routed[str(item)] != 1}
    if not_once:
        problems.append(f"notices whose routing was audited other than once: {dict(list(not_once.items())[:5])}")
    for action in (AuditAction.ENCOMPASS_NOTICE_UNROUTED, AuditAction.ENCOMPASS_NOTICE_WITHHELD):
        if _events(session, action):
            problems.append(f"the trail holds {action.value} events")

    # Acknowledged once each, however many DSL threads raced; what they read was the notice only.
    unacknowledged = [e.id for e in encompass if e.acknowledged_at is None or e.acknowledged_by != DSL_SUBJECT]
    if unacknowledged:
        problems.append(f"{len(unacknowledged)} of {len(encompass)} notices left unacknowledged")
    acknowledged = Counter(
        str(event.detail.get("entry")) for event in _events(session, AuditAction.ENCOMPASS_NOTICE_ACKNOWLEDGED)
    )
    ack_not_once = {str(e.id): acknowledged[str(e.id)] for e in encompass if acknowledged[str(e.id)] != 1}
    if ack_not_once:
        problems.append(
            f"{len(ack_not_once)} notices acknowledged other than once in the trail (entry: events): "
            f"{dict(list(ack_not_once.items())[:5])}"
        )
    disagreeing: list[str] = []
    for entry in encompass:
        answers = scenario.acknowledgements.get(str(entry.id), [])
        said = {(a["acknowledged_at"], a["acknowledged_by"]) for a in answers}
        stored_at = entry.acknowledged_at
        first = _instant(answers[0]["acknowledged_at"]) if answers else None
        if len(said) > 1 or (first is not None and stored_at is not None and first != stored_at):
            disagreeing.append(f"entry {entry.id}: racing acknowledgements answered {said}, stored {stored_at}")
    problems += _capped(disagreeing)
    raced = sum(1 for answers in scenario.acknowledgements.values() if len(answers) > 1)
    shown: list[str] = []
    for entry in encompass:
        seen = scenario.seen_notices.get(str(entry.id))
        if entry.item_id not in notices:
            continue
        round_no, n = notices[entry.item_id]
        pupil = scenario.pupils[n]
        if seen is None:
            shown.append(f"the DSL never saw the notice {_notice_id(round_no, n)} listed")
        elif (
            seen["notice"] != _school_notice(round_no, pupil)
            or seen["school_urn"] != URN
            or seen["withdrawn"]
            or (seen["pupil"] or {}).get("given_names") != [pupil.given]
            or seen["child_id"] != str(children[n])
        ):
            shown.append(f"the DSL was shown {seen} for {_notice_id(round_no, n)}")
    problems += _capped(shown)
    if any(POLICE_SUMMARY_MARK in listing for listing in scenario.listings):
        problems.append("the DSL's inbox showed the police record's summary, not only the notice")

    # Notifications: one per notifiable new item of an allocated child, to the lead practitioner; read once.
    notifications = [entry for entry in entries if entry.kind is InboxKind.NOTIFICATION]
    per_notified: Counter[uuid.UUID] = Counter(entry.item_id for entry in notifications)
    notifiable = {item_id: n for item_id, (_r, n) in notices.items()} | incidents
    problems += _capped(
        [
            f"item {item_id} of pupil {n} ({'allocated' if _allocated(n) else 'not allocated'}): "
            f"{per_notified[item_id]} notifications, expected {int(_allocated(n))}"
            for item_id, n in notifiable.items()
            if per_notified[item_id] != int(_allocated(n))
        ]
    )
    others = [entry for entry in notifications if entry.item_id not in notifiable]
    if others:
        categories = Counter(entry.category for entry in others)
        problems.append(f"{len(others)} notifications about items not notifiable here: {categories}")
    if any(entry.recipient != LEAD_SUBJECT for entry in notifications):
        problems.append(f"notifications went to {Counter(entry.recipient for entry in notifications)}")
    created = Counter(
        item for event in _events(session, AuditAction.NOTIFICATION_CREATED) for item in event.detail.get("items", [])
    )
    twice = [item for item, count in created.items() if count != 1]
    if twice or set(created) != {str(entry.item_id) for entry in notifications}:
        problems.append(f"notification:item:created names {len(created)} items ({len(twice)} more than once)")
    unread = [entry.id for entry in notifications if entry.acknowledged_at is None]
    if unread:
        problems.append(f"{len(unread)} of {len(notifications)} notifications left unread")
    read = Counter(str(event.detail.get("entry")) for event in _events(session, AuditAction.NOTIFICATION_READ))
    read_not_once = {str(e.id): read[str(e.id)] for e in notifications if read[str(e.id)] != 1}
    if read_not_once:
        problems.append(
            f"{len(read_not_once)} notifications marked read other than once in the trail (entry: events): "
            f"{dict(list(read_not_once.items())[:5])}"
        )
    read_answers = {
        entry_id: {(a["acknowledged_at"], a["acknowledged_by"]) for a in answers}
        for entry_id, answers in scenario.reads.items()
    }
    split_reads = [f"notification {e}: racing reads answered {s}" for e, s in read_answers.items() if len(s) > 1]
    problems += _capped(split_reads)
    raced_reads = sum(1 for answers in scenario.reads.values() if len(answers) > 1)
    # What the lead practitioner was shown: each notification, about an allocated child, saying which kind.
    allocated = {str(child_id) for n, child_id in children.items() if _allocated(n)}
    listed = scenario.seen_notifications
    problems += _capped(
        [f"the lead practitioner never saw notification {e.id}" for e in notifications if str(e.id) not in listed]
        + [
            f"the lead practitioner was shown {shown_to_lead}"
            for shown_to_lead in listed.values()
            if shown_to_lead["kind"] == "notification"
            and (
                shown_to_lead["child_id"] not in allocated
                or shown_to_lead["agency"] != "police"
                or shown_to_lead["record_kind"] not in ("incident", "domestic_abuse_notification")
            )
        ]
    )
    decisions = Counter(str(n["decision"]) for n in listed.values() if n["kind"] == "notification")
    counts = (
        f"{len(encompass)} Encompass entries ({raced} acknowledged by both DSL threads), "
        f"{len(notifications)} notifications ({raced_reads} marked read by both lead threads; "
        f"listed as {dict(decisions)})"
    )
    return problems, counts


def _instant(value: str) -> datetime:
    moment = datetime.fromisoformat(value)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


# --- the tests ---------------------------------------------------------------------------------------


def test_concurrent_police_and_school_pushes_store_route_and_acknowledge_each_record_once(served: Served) -> None:
    numbers = _fresh_numbers(CHILDREN + SCHOOLS * SCHOOL_ROUNDS * NEW_PUPILS, served.taken)
    pupils = [_pupil(n, numbers[n], served.upns) for n in range(CHILDREN)]
    new_pupils: dict[tuple[int, int], list[Pupil]] = {}
    for school in range(SCHOOLS):
        for round_no in range(SCHOOL_ROUNDS):
            first = CHILDREN + (school * SCHOOL_ROUNDS + round_no) * NEW_PUPILS
            drawn = range(first, first + NEW_PUPILS)
            new_pupils[(school, round_no)] = [_pupil(n, numbers[n], served.upns) for n in drawn]

    # Phase A: the school enrols the pupils; half of them have an open case with the team.
    since = _log_size(served)
    children = _enrol(served, pupils)
    _allocate(served, [children[n] for n in range(CHILDREN) if _allocated(n)])

    # Phase B: the force, the school, the DSL and the lead practitioner, all at once.
    threads = POLICE + SCHOOLS + DSLS + LEADS
    scenario = Scenario(
        served=served,
        pupils=pupils,
        new_pupils=new_pupils,
        start=threading.Barrier(threads, timeout=BARRIER_TIMEOUT),
        police_round=threading.Barrier(POLICE, timeout=BARRIER_TIMEOUT),
        school_round=threading.Barrier(SCHOOLS, timeout=BARRIER_TIMEOUT),
        deadline=time.monotonic() + LOAD_SECONDS,
    )
    targets: list[tuple[str, Callable[[Log], None]]] = [
        *((f"police-{t}", _police_thread(scenario, t)) for t in range(POLICE)),
        *((f"school-{s}", _school_thread(scenario, s)) for s in range(SCHOOLS)),
        *((f"dsl-{d}", _dsl_thread(scenario)) for d in range(DSLS)),
        *((f"lead-{d}", _lead_thread(scenario)) for d in range(LEADS)),
    ]
    started = time.monotonic()
    # The worst a thread can take past the deadline: one request retried to the limit.
    bound = BARRIER_TIMEOUT + LOAD_SECONDS + MAX_TRIES * (REQUEST_TIMEOUT + RETRY_AFTER_CAP) + 10
    logs = _run_threads(served, targets, bound=bound)
    summary = _summary(
        f"{POLICE} police, {SCHOOLS} school, {DSLS} DSL and {LEADS} lead practitioner clients at once",
        logs,
        time.monotonic() - started,
    )
    problems = _answer_problems(served, logs)

    # Each raced record: created in one thread's answer, unchanged in the others'.
    raced = {_notice_id(r, n): POLICE for r in range(POLICE_ROUNDS) for n in range(CHILDREN)}
    raced |= {_attendance_id(r, n): SCHOOLS for r in range(SCHOOL_ROUNDS) for n in range(CHILDREN)}
    raced |= {_incident_id(t, r, n): 1 for t in range(POLICE) for r in range(POLICE_ROUNDS) for n in range(CHILDREN)}
    raced |= {
        _new_pupil_id(s, r, j): 1 for s in range(SCHOOLS) for r in range(SCHOOL_ROUNDS) for j in range(NEW_PUPILS)
    }
    problems += _answered_once(scenario, raced)

    problems += _settled_audit(served)
    with Session(served.engine) as session:
        new_children: dict[str, uuid.UUID] = {}
        for (school, round_no), group in new_pupils.items():
            for j, pupil in enumerate(group):
                owners = _children_of(session, served.keyring, UPN_SCHEME, pupil.upn)
                if len(owners) != 1:
                    problems.append(f"new pupil {pupil.n}: its UPN names {owners}")
                    continue
                new_children[_new_pupil_id(school, round_no, j)] = owners[0]
        if set(new_children.values()) & set(children.values()) or len(set(new_children.values())) != len(new_children):
            problems.append("a new pupil was linked to another pupil's child")
        expected: dict[tuple[str, str], uuid.UUID] = {
            (served.school_id, _enrolment_id(n)): children[n] for n in range(CHILDREN)
        }
        expected |= {
            (served.police_id, _notice_id(r, n)): children[n] for r in range(POLICE_ROUNDS) for n in range(CHILDREN)
        }
        expected |= {
            (served.police_id, _incident_id(t, r, n)): children[n]
            for t in range(POLICE)
            for r in range(POLICE_ROUNDS)
            for n in range(CHILDREN)
        }
        expected |= {
            (served.school_id, _attendance_id(r, n)): children[n] for r in range(SCHOOL_ROUNDS) for n in range(CHILDREN)
        }
        expected |= {(served.school_id, record_id): child for record_id, child in new_children.items()}
        items, stored = _storage_problems(session, served, expected)
        problems += stored
        linking, methods = _police_link_problems(session, served, children)
        problems += linking
        everyone = [*pupils, *(pupil for group in new_pupils.values() for pupil in group)]
        problems += _proposals(
            session,
            served,
            {f"pupil/{pupil.upn}" for pupil in everyone} | {f"person/PER-{pupil.n}" for pupil in pupils},
        )
        inbox, counts = _inbox_problems(session, scenario, children, items)
        problems += inbox
    counts += f"; the force's person records linked: {methods}"
    print(counts)

    # The LA's lead has an inbox, and nothing in it.
    with httpx.Client(base_url=served.base_url, timeout=REQUEST_TIMEOUT) as http:
        la = _call(http, Log("la"), ENCOMPASS_INBOX, "/api/v1/encompass/inbox", served.la_token)
    if la.status != 200 or la.json()["notices"]:
        problems.append(f"the LA's lead's inbox answered {la.status}: {la.text[:300]}")
    problems += _settled_audit(served)
    problems += _server_log_problems(served, since)
    assert not problems, "\n".join([summary, counts, *problems, log_tail(served.log_path)])


@dataclass
class BigImport:
    """The large extract's exchange, filled in by its thread."""

    exchange: Exchange | None = None


def test_a_large_csv_import_leaves_small_pushes_and_healthz_answered(served: Served) -> None:
    numbers = _fresh_numbers(BIG_CSV_ROWS + SMALL_PUSHERS, served.taken)
    pupils = [_big_pupil(n, numbers[n], served.upns) for n in range(BIG_CSV_ROWS)]
    extract = _csv([_csv_row(f"att/big/{pupil.n:04d}", pupil) for pupil in pupils])
    force_children = [
        Pupil(
            n=1000 + t,
            upn="",
            nhs=numbers[BIG_CSV_ROWS + t],
            given=GIVEN[t],
            family=f"{FAMILY[t + 10]}-{FAMILY[t + 20]}",
            birth_date=date(2019, 6, 1) + timedelta(days=40 * t),
            sex="female" if t % 2 == 0 else "male",
            postcode=_postcode("ZZ97", t),
            address_line=f"{t + 2} Quayside",
        )
        for t in range(SMALL_PUSHERS)
    ]
    since = _log_size(served)
    big = BigImport()
    importing = threading.Event()
    imported = threading.Event()
    gate = threading.Barrier(SMALL_PUSHERS + 2, timeout=BARRIER_TIMEOUT)
    health: list[tuple[int | None, float]] = []  # (status, seconds): status None for no answer within the bound
    sent_small: dict[str, list[str]] = defaultdict(list)  # pusher → record ids it sent

    def import_csv(log: Log) -> None:
        with httpx.Client(base_url=served.base_url, timeout=BIG_CSV_TIMEOUT) as http:
            http.get("/healthz")
            gate.wait()
            importing.set()
            try:
                big.exchange = _call(
                    http, log, EDUCATION_CSV, "/education/v1/records.csv", served.school_token,
                    body=extract, media_type=CSV,
                )
            finally:
                imported.set()

    def push_small(t: int) -> Callable[[Log], None]:
        def run(log: Log) -> None:
            child = force_children[t]
            with httpx.Client(base_url=served.base_url, timeout=REQUEST_TIMEOUT) as http:
                http.get("/healthz")
                gate.wait()
                for push in range(MAX_SMALL_PUSHES):
                    if imported.is_set() and push > 0:
                        return
                    records = [
                        {
                            "record_id": f"INC-B{t}-{push}-{i}",
                            "version": "1",
                            "kind": "incident",
                            "occurred_at": INCIDENT_AT.isoformat(),
                            "child": {**_force_child(child, role="victim"), "person_id": f"PER-B{t}",
                                      "nhs_number": child.nhs},
                            "contact": dict(CONTACT),
                            "details": {"occurrence_type": "concern for welfare", "summary": "Seen out alone late."},
                        }
                        for i in range(2)
                    ]
                    sent_small[log.name] += [str(record["record_id"]) for record in records]
                    body = json.dumps({"schema": "police/v1", "records": records}).encode()
                    exchange = _call(http, log, POLICE_RECORDS, "/police/v1/records", served.police_token,
                                     body=body, media_type=JSON)
                    if [status for _id, status in _outcomes(exchange, log, 2)] != ["created", "created"]:
                        log.problem(f"small push {push}: {exchange.status} {exchange.text[:300]}")
                    time.sleep(SMALL_PUSH_INTERVAL)

        return run

    def poll_health(log: Log) -> None:
        with httpx.Client(base_url=served.base_url, timeout=HEALTH_BOUND) as http:
            http.get("/healthz")
            gate.wait()
            for _ in range(int((BIG_CSV_TIMEOUT + 10) / HEALTH_INTERVAL)):
                if imported.is_set():
                    return
                asked = time.monotonic()
                try:
                    status: int | None = http.get("/healthz").status_code
                except httpx.HTTPError:
                    status = None
                took = time.monotonic() - asked
                health.append((status, took))
                time.sleep(max(0.0, HEALTH_INTERVAL - took))

    targets: list[tuple[str, Callable[[Log], None]]] = [
        ("big-csv", import_csv),
        *((f"small-{t}", push_small(t)) for t in range(SMALL_PUSHERS)),
        ("healthz", poll_health),
    ]
    started = time.monotonic()
    bound = BARRIER_TIMEOUT + MAX_TRIES * (BIG_CSV_TIMEOUT + RETRY_AFTER_CAP) + 10
    logs = _run_threads(served, targets, bound=bound)
    label = f"a {BIG_CSV_ROWS}-row CSV with {SMALL_PUSHERS} small police pushers and /healthz"
    summary = _summary(label, logs, time.monotonic() - started)
    tail = log_tail(served.log_path)
    exchange = big.exchange
    assert exchange is not None, f"the import never ran: {logs[0].problems}\n{tail}"
    assert exchange.status == 200, f"{summary}\nthe import answered {exchange.status}: {exchange.text[:500]}\n{tail}"
    statuses = Counter(status for _id, status in _outcomes(exchange, logs[0], BIG_CSV_ROWS))
    assert statuses == {"created": BIG_CSV_ROWS}, f"{summary}\nthe import's rows: {dict(statuses)}"
    print(f"the import took {exchange.seconds:.1f} s; /healthz polled {len(health)} times, "
          f"worst {max((took for _s, took in health), default=0.0):.2f} s")

    problems = _answer_problems(served, logs)
    slow_health = [(status, round(took, 2)) for status, took in health if status != 200 or took > HEALTH_BOUND]
    if slow_health or len(health) < 3:
        problems.append(
            f"{len(slow_health)} of {len(health)} /healthz polls not 200 within {HEALTH_BOUND:.0f} s: {slow_health[:5]}"
        )
    small = [e for log in logs[1 : 1 + SMALL_PUSHERS] for e in log.exchanges]
    slow = [round(e.seconds, 2) for e in small if e.seconds > SMALL_PUSH_BOUND]
    if slow:
        problems.append(f"{len(slow)} of {len(small)} small pushes took over {SMALL_PUSH_BOUND:.0f} s: {slow[:10]}")
    # Sent in the second half of the import and answered before it: a push is not queued behind the import.
    halfway = exchange.started + exchange.seconds / 2
    during = {
        log.name: sum(1 for e in log.exchanges if e.started >= halfway and e.finished < exchange.finished)
        for log in logs[1 : 1 + SMALL_PUSHERS]
    }
    if any(count == 0 for count in during.values()):
        problems.append(f"small pushes sent and answered in the import's second half, by pusher: {during}")
    print(
        f"small pushes sent and answered in the import's second half, by pusher: {during}; "
        f"slowest of {len(small)} {max((e.seconds for e in small), default=0.0):.2f} s"
    )

    problems += _settled_audit(served)
    with Session(served.engine) as session:
        rows = session.execute(
            select(Item.source_record_id, Item.child_id).where(
                Item.client_id == served.school_id, Item.source_record_id.startswith("att/big/")
            )
        ).all()
        filed = Counter(record_id for record_id, _child in rows)
        if len(filed) != BIG_CSV_ROWS or any(count != 1 for count in filed.values()):
            problems.append(f"{len(rows)} items for {len(filed)} of the {BIG_CSV_ROWS} rows, expected one each")
        indexes = {served.keyring.blind_index(UPN_SCHEME, pupil.upn): pupil.n for pupil in pupils}
        owner = {
            indexes[index]: child_id
            for index, child_id in session.execute(
                select(ChildIdentifier.blind_index, ChildIdentifier.child_id).where(
                    ChildIdentifier.scheme == UPN_SCHEME, ChildIdentifier.blind_index.in_(indexes)
                )
            )
        }
        misfiled = [record_id for record_id, child in rows if owner.get(int(record_id.rsplit("/", 1)[1])) != child]
        if misfiled or len(set(owner.values())) != BIG_CSV_ROWS:
            problems.append(
                f"{len(misfiled)} rows not on the child of their UPN; {len(set(owner.values()))} children "
                f"for {BIG_CSV_ROWS} pupils"
            )
        problems += _proposals(
            session,
            served,
            {f"pupil/{pupil.upn}" for pupil in pupils} | {f"person/PER-B{t}" for t in range(SMALL_PUSHERS)},
        )
        small_ids = [record_id for ids in sent_small.values() for record_id in ids]
        stored_small = Counter(
            session.scalars(
                select(Item.source_record_id).where(
                    Item.client_id == served.police_id, Item.source_record_id.startswith("INC-B")
                )
            )
        )
        if sorted(stored_small) != sorted(small_ids) or any(count != 1 for count in stored_small.values()):
            problems.append(f"{sum(stored_small.values())} small-push items stored for {len(small_ids)} records sent")
    problems += _server_log_problems(served, since)
    assert not problems, "\n".join([summary, *problems, tail])

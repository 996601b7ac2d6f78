"""Identity linking and its review endpoints under concurrent clients: `gateway serve --workers 2` on PostgreSQL."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, func, or_, select
from sqlalchemy.orm import Session

from audit import AuditAction, AuditEvent
from gateway.demo.generator import DemoChild
from gateway.identity.service import NHS_NUMBER_SCHEME
from gateway.keys import KeyFolder
from gateway.kit.crypto import DataKeyring
from gateway.kit.db import build_engine, build_sessionmaker
from gateway.models import Child, ChildIdentifier, ChildMerge, Identity, Item, Link, LinkState, MergeKind
from gateway.settings import Settings
from tests.factories import add_member, child_bundle, demo_child, encounter, make_team, staff_token
from tests.gateway.helpers import FHIR_JSON
from tests.gateway.test_under_load import Partnership, audit_problems, set_up, synthetic_children
from tests.serving import log_tail, scratch_database, serve_gateway

REQUEST_TIMEOUT = 30.0  # seconds; no answer within it is "unanswered" and fails the test
MAX_TRIES = 5  # a 503 with Retry-After may be retried, at most this many tries in all
RETRY_AFTER_CAP = 2.0  # seconds slept at most between tries, whatever Retry-After says
BARRIER_TIMEOUT = 30.0  # seconds the racers wait for one another at the start line
AUDIT_SETTLE_SECONDS = 20.0  # how long the trail may take to be integrated, signed and verify
CLIENTS = 6  # agency systems pushing the same child at once
OFFICERS = 6  # linking officers deciding the same proposed link at once
CHILDREN = 8  # synthetic children pushed by every client at once
PAIRS = 4  # proposed links raced over
MERGERS = 4  # officers merging (then unmerging) the same child at once
PROBLEM_JSON = "application/problem+json"

# Every synthetic person of this module is unlike every other (names, birth date, address), so
# that only the records meant to be one child can score against one another.
GIVEN = (
    "Amelia", "Oliver", "Isla", "Noah", "Freya", "Arthur", "Maya", "Leo", "Poppy", "Theo", "Ivy", "Jasper", "Rosa",
    "Felix", "Elsie", "Rufus", "Hazel", "Otis", "Mabel", "Ezra", "Nell", "Cyrus", "Wren", "Idris", "Juno", "Bram",
)
FAMILY = (
    "Hargreaves", "Pemberton", "Okonkwo", "Fairweather", "Lindqvist", "Castellano", "Brightwell", "Nakamura",
    "Ashdown", "Ferreira", "Quigley", "Mbeki", "Thistlethwaite", "Vasquez", "Greenhalgh", "Kowalczyk", "Whitlock",
    "Abernethy", "Dunmore", "Ravenscroft", "Underhill", "Yardley", "Zielinski", "Ogunleye", "Blackwood", "Penhaligon",
)


# --- the served gateway, shared by the module's tests ------------------------------------------------


@dataclass(frozen=True)
class Officer:
    """A linking officer: a team member whose role the ISA names in linking_roles."""

    subject: str
    token: str


@dataclass(frozen=True)
class Served:
    """A running `gateway serve --workers 2` on a scratch PostgreSQL database, and how to act on it."""

    base_url: str
    partnership: Partnership
    officers: tuple[Officer, ...]
    keyring: DataKeyring
    engine: Engine
    log_path: Path
    taken: set[str] = field(default_factory=set)  # NHS numbers drawn so far (main thread only)

    def number(self) -> str:
        """Return an NHS number no other child of the module has."""
        return synthetic_children(1, self.taken)[0].nhs_number


@pytest.fixture(scope="module")
def served(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    if not database_url.startswith("postgresql"):
        pytest.skip("PostgreSQL load test; the suite runs on SQLite (GATEWAY_TEST_DATABASE_URL is not PostgreSQL)")
    tmp_path = tmp_path_factory.mktemp("linking_load")
    log_path = tmp_path / "gateway-serve.log"
    with scratch_database(database_url, tmp_path, prefix="gw_link_load") as url:
        partnership = set_up(url, tmp_path, clients=CLIENTS)
        engine = build_engine(url)
        try:
            officers = _officers(engine, partnership)
            keyring = KeyFolder(partnership.keys_dir).data_keyring()
            with serve_gateway(partnership.env, log_path=log_path, workers=2) as base_url:
                yield Served(base_url, partnership, officers, keyring, engine, log_path)
        finally:
            engine.dispose()


def _officers(engine: Engine, partnership: Partnership) -> tuple[Officer, ...]:
    settings = Settings()
    keys = KeyFolder(partnership.keys_dir).signing_keys()
    with build_sessionmaker(engine)() as session:
        unit = make_team(session, name="Linking unit")
        members = [
            add_member(session, unit, agency="social_care", role="linking_officer", subject=f"linking.{n}@load.example")
            for n in range(OFFICERS)
        ]
        session.commit()
        return tuple(Officer(member.subject, staff_token(keys, settings, member)) for member in members)


# --- HTTP -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """One request a racer sends: a FHIR push (content) or a JSON request (body)."""

    name: str
    method: str
    path: str
    token: str
    body: dict[str, Any] | None = None
    content: bytes | None = None


@dataclass(frozen=True)
class Answer:
    """A request's final answer; status None means no answer in time (or the racer failed)."""

    name: str
    status: int | None
    content_type: str
    text: str
    retries: int = 0

    def json(self) -> dict[str, Any]:
        body: dict[str, Any] = json.loads(self.text)
        return body


def _send(http: httpx.Client, call: Call) -> Answer:
    """Send a request; retry a 503 that carries Retry-After (bounded), as a client should."""
    headers = {"Authorization": f"Bearer {call.token}"}
    if call.content is not None:
        headers.update(FHIR_JSON)
    retries = 0
    while True:
        try:
            response = http.request(call.method, call.path, json=call.body, content=call.content, headers=headers)
        except httpx.HTTPError as error:
            return Answer(call.name, None, "", f"no answer: {type(error).__name__}: {error}", retries)
        retry_after = response.headers.get("Retry-After")
        if response.status_code == 503 and retry_after is not None and retries + 1 < MAX_TRIES:
            retries += 1
            time.sleep(min(max(float(retry_after) if retry_after.isdigit() else RETRY_AFTER_CAP, 0.0), RETRY_AFTER_CAP))
            continue
        return Answer(call.name, response.status_code, response.headers.get("content-type", ""), response.text, retries)


def _race(served: Served, calls: list[Call]) -> list[Answer]:
    """Send every call at once, from a thread each released by one barrier; wait for all, bounded."""
    answers: list[Answer | None] = [None] * len(calls)
    gate = threading.Barrier(len(calls), timeout=BARRIER_TIMEOUT)

    def race(index: int, call: Call) -> None:
        try:
            with httpx.Client(base_url=served.base_url, timeout=REQUEST_TIMEOUT) as http:
                http.get("/healthz")  # connected before the start, so that the requests leave together
                gate.wait()
                answers[index] = _send(http, call)
        except Exception as error:  # a fault of the test itself (or a broken barrier) must fail the test
            answers[index] = Answer(call.name, None, "", f"the racer failed: {error!r}")

    threads = [threading.Thread(target=race, args=(n, call), name=call.name, daemon=True) for n, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + BARRIER_TIMEOUT + MAX_TRIES * (REQUEST_TIMEOUT + RETRY_AFTER_CAP) + 5
    for thread in threads:
        thread.join(timeout=max(0.0, deadline - time.monotonic()))
    running = [thread.name for thread in threads if thread.is_alive()]
    assert not running, f"racers still running past every timeout: {running}\n{log_tail(served.log_path)}"
    done = [answer for answer in answers if answer is not None]
    assert len(done) == len(calls)
    unanswered = [f"{answer.name}: {answer.text[:300]}" for answer in done if answer.status is None]
    assert not unanswered, "\n".join([*unanswered, log_tail(served.log_path)])
    return done


def _push(served: Served, client: int, body: bytes) -> list[str]:
    """Push one Bundle as a client, alone; every entry must be created. Return the entries' locations."""
    with httpx.Client(base_url=served.base_url, timeout=REQUEST_TIMEOUT) as http:
        call = Call(f"push-{client}", "POST", "/fhir/R4", served.partnership.client_tokens[client], content=body)
        answer = _send(http, call)
    assert answer.status == 200, f"{answer.status}: {answer.text[:500]}\n{log_tail(served.log_path)}"
    entries = answer.json()["entry"]
    assert all(entry["response"]["status"] == "201 Created" for entry in entries), answer.text[:500]
    return [str(entry["response"]["location"]) for entry in entries]


def _is_problem(answer: Answer, status: int) -> bool:
    return answer.status == status and answer.content_type.startswith(PROBLEM_JSON) and answer.json().get("status") == status


# --- synthetic children ---------------------------------------------------------------------------


def _person(n: int, nhs: str, **overrides: Any) -> DemoChild:
    """Return synthetic person number n: a name, birth date and address no other number shares."""
    values: dict[str, Any] = {
        "given_names": [GIVEN[n]],
        "family_name": FAMILY[n],
        "birth_date": date(2010 + n % 8, 1 + n % 12, 1 + n % 28),
        "sex": "female" if n % 2 == 0 else "male",
        "postcode": f"ZZ{n + 10} {n % 9 + 1}QX",
        "address_lines": [f"{n + 3} {FAMILY[(n + 7) % len(FAMILY)]} Road"],
    }
    values.update(overrides)
    return demo_child(nhs, **values)


def _slipped(family: str) -> str:
    """Return the surname with one letter mistyped (scored "close", not "exact")."""
    middle = len(family) // 2
    return family[:middle] + ("a" if family[middle] != "a" else "e") + family[middle + 1 :]


def _bundle(child: DemoChild, patient_id: str, *, identified: bool, encounters: int = 0) -> bytes:
    """Return a transaction Bundle of the child's Patient (without any identifier unless identified) and Encounters."""
    bundle = child_bundle(child, patient_id=patient_id, encounters=[encounter() for _ in range(encounters)])
    if not identified:
        del bundle["entry"][0]["resource"]["identifier"]
    return json.dumps(bundle).encode()


# --- the database, read after the requests ------------------------------------------------------------


def _child_of_number(session: Session, keyring: DataKeyring, number: str) -> list[uuid.UUID]:
    index = keyring.blind_index(NHS_NUMBER_SCHEME, number)
    return list(
        session.scalars(
            select(ChildIdentifier.child_id).where(
                ChildIdentifier.scheme == NHS_NUMBER_SCHEME, ChildIdentifier.blind_index == index
            )
        )
    )


def _links_of_records(session: Session, prefix: str) -> dict[tuple[str, str], list[tuple[uuid.UUID, LinkState]]]:
    """Return, by (client, source record), the links of every identity whose record id starts so."""
    rows = session.execute(
        select(Identity.client_id, Identity.source_record_id, Link.child_id, Link.state)
        .join(Link, Link.identity_id == Identity.id)
        .where(Identity.source_record_id.startswith(f"Patient/{prefix}"))
    ).all()
    links: dict[tuple[str, str], list[tuple[uuid.UUID, LinkState]]] = defaultdict(list)
    for client_id, record_id, child_id, state in rows:
        links[(client_id, record_id)].append((child_id, state))
    return links


def _proposals_touching(session: Session, prefix: str, children: set[uuid.UUID]) -> int:
    identities = select(Identity.id).where(Identity.source_record_id.startswith(f"Patient/{prefix}"))
    return (
        session.scalar(
            select(func.count())
            .select_from(Link)
            .where(Link.state == LinkState.REVIEW, or_(Link.identity_id.in_(identities), Link.child_id.in_(children)))
        )
        or 0
    )


def _merged_into(session: Session, child_id: uuid.UUID) -> uuid.UUID | None:
    return session.scalar(select(Child.merged_into_id).where(Child.id == child_id))


def _settled_audit(served: Served) -> list[str]:
    """Wait (bounded) until the running gateway has integrated and signed the trail, and it verifies.

    A check that overlaps the integrator or the signer may see the trail mid-append; a broken trail
    stays broken, so the check is repeated until it passes or the time is up.
    """
    deadline = time.monotonic() + AUDIT_SETTLE_SECONDS
    while True:
        problems = audit_problems(served.partnership.env)
        if not problems or time.monotonic() > deadline:
            return problems
        time.sleep(0.5)


def _events(session: Session, action: AuditAction) -> list[AuditEvent]:
    return list(session.scalars(select(AuditEvent).where(AuditEvent.action == action.value)))


def _summary(label: str, answers: list[Answer], started: float) -> str:
    statuses = Counter(answer.status for answer in answers)
    retries = sum(answer.retries for answer in answers)
    line = f"[postgresql, 2 workers] {label}: answers {dict(statuses)}, 503 retries {retries}, {time.monotonic() - started:.1f} s"
    print(f"\n{line}")
    return line


# --- the tests ------------------------------------------------------------------------------------------


def _first_pushes(served: Served, prefix: str, first_person: int, *, identified: bool) -> tuple[list[DemoChild], str]:
    """Have every client push each of CHILDREN new children at once (a Patient each, its own id); check the answers."""
    children = [_person(first_person + k, served.number()) for k in range(CHILDREN)]
    calls = [
        Call(
            f"{prefix}k{k}-c{c}",
            "POST",
            "/fhir/R4",
            served.partnership.client_tokens[c],
            content=_bundle(child, f"{prefix}k{k}-c{c}", identified=identified),
        )
        for k, child in enumerate(children)
        for c in range(CLIENTS)
    ]
    started = time.monotonic()
    answers = _race(served, calls)
    summary = _summary(f"{len(calls)} first pushes of {CHILDREN} children by {CLIENTS} clients at once", answers, started)
    wrong: list[str] = []
    for answer in answers:
        if answer.status != 200:
            wrong.append(f"{answer.name}: {answer.status} {answer.text[:300]}")
            continue
        entries = answer.json()["entry"]
        response = entries[0]["response"] if len(entries) == 1 else {}
        if response.get("status") != "201 Created" or not str(response.get("location")).startswith(
            f"Patient/{answer.name}/_history/"
        ):
            wrong.append(f"{answer.name}: 200 but the entry answered {response or entries}")
    assert not wrong, "\n".join([summary, *wrong[:10], log_tail(served.log_path)])
    return children, summary


def _one_child_each(served: Served, prefix: str) -> tuple[dict[int, set[uuid.UUID]], list[str]]:
    """Return the children each synthetic child's identities are linked to, and what is wrong with their links."""
    with Session(served.engine) as session:
        links = _links_of_records(session, prefix)
        holders: dict[int, set[uuid.UUID]] = defaultdict(set)
        problems: list[str] = []
        for k in range(CHILDREN):
            for c in range(CLIENTS):
                record = (served.partnership.client_ids[c], f"Patient/{prefix}k{k}-c{c}")
                found = links.get(record, [])
                linked = [child_id for child_id, state in found if state is LinkState.LINKED]
                if len(found) != 1 or len(linked) != 1:
                    problems.append(f"{record}: links {found}, expected exactly one, 'linked'")
                holders[k].update(linked)
        every_child = set().union(*holders.values())
        proposals = _proposals_touching(session, prefix, every_child)
    split = {k: len(children) for k, children in holders.items() if len(children) != 1}
    if split:
        problems.append(f"synthetic children held by more than one gateway child (index: children): {split}")
    if len(every_child) != CHILDREN:
        problems.append(f"{CHILDREN} synthetic children are {len(every_child)} gateway children")
    if proposals:
        problems.append(f"{proposals} proposed links (state 'review') were left about them")
    return holders, problems


def test_concurrent_first_pushes_of_one_child_without_identifiers_make_one_child(served: Served) -> None:
    # The first claim makes the child; each other claim, locking the same blocking keys, waits for
    # it, then scores against it and links (identical demographics score far above the threshold).
    _children, summary = _first_pushes(served, "t1-", 0, identified=False)
    _holders, problems = _one_child_each(served, "t1-")
    assert not problems, "\n".join([summary, *problems, log_tail(served.log_path)])


def test_concurrent_first_pushes_of_one_nhs_number_make_one_child(served: Served) -> None:
    children, summary = _first_pushes(served, "t2-", CHILDREN, identified=True)
    holders, problems = _one_child_each(served, "t2-")
    with Session(served.engine) as session:
        for k, child in enumerate(children):
            owners = _child_of_number(session, served.keyring, child.nhs_number)
            if len(owners) != 1 or {owners[0]} != holders[k]:
                problems.append(f"NHS number of child {k}: identifier rows name {owners}, its identities are on {holders[k]}")
            index = served.keyring.blind_index(NHS_NUMBER_SCHEME, child.nhs_number)
            carrying = session.scalar(select(func.count()).select_from(Identity).where(Identity.nhs_number_index == index))
            if carrying != CLIENTS:
                problems.append(f"NHS number of child {k}: {carrying} identities carry it, expected {CLIENTS}")
    assert not problems, "\n".join([summary, *problems, log_tail(served.log_path)])


@dataclass(frozen=True)
class Pair:
    """A proposed link: the scored record's child, and the candidate child it may be."""

    link_id: str
    record_child: uuid.UUID
    candidate_child: uuid.UUID


def _review_pairs(served: Served) -> list[Pair]:
    """Push PAIRS children with an NHS number (client 0), then from client 1 the same given name and
    birth date, the surname one slip off, living elsewhere, with no identifier: each a proposed link."""
    numbers: dict[str, int] = {}
    for p in range(PAIRS):
        n = 2 * CHILDREN + p
        child = _person(n, served.number())
        numbers[child.nhs_number] = p
        _push(served, 0, _bundle(child, f"t3-cand-{p}", identified=True, encounters=1))
        alike = _person(
            n,
            served.number(),
            family_name=_slipped(FAMILY[n]),
            postcode=f"LS{p + 1} 4AB",
            address_lines=[f"{22 + p} Other Road"],
        )
        _push(served, 1, _bundle(alike, f"t3-rec-{p}", identified=False, encounters=1))
    with httpx.Client(base_url=served.base_url, timeout=REQUEST_TIMEOUT) as http:
        queue = http.get(
            "/api/v1/links/review", params={"limit": 100}, headers={"Authorization": f"Bearer {served.officers[0].token}"}
        )
    assert queue.status_code == 200, queue.text
    pairs: dict[int, list[Pair]] = defaultdict(list)
    for link in queue.json()["links"]:
        which = numbers.get(link["candidate"]["nhs_number"])
        if which is not None:
            record, candidate = link["record"], link["candidate"]
            assert record["nhs_number"] is None and record["family_name"] == _slipped(FAMILY[2 * CHILDREN + which])
            record_child, candidate_child = uuid.UUID(record["child_id"]), uuid.UUID(candidate["child_id"])
            assert record_child != candidate_child
            pairs[which].append(Pair(link["link_id"], record_child, candidate_child))
    assert sorted(pairs) == list(range(PAIRS)) and all(len(found) == 1 for found in pairs.values()), (
        f"expected one proposed link per pair, the queue holds {dict(pairs)}: {queue.text[:1000]}"
    )
    return [pairs[p][0] for p in range(PAIRS)]


def test_racing_reviewers_decide_a_proposed_link_once(served: Served) -> None:
    pairs = _review_pairs(served)
    calls = [
        Call(
            f"link{p}-{'confirm' if o % 2 == 0 else 'reject'}-{o}",
            "POST",
            f"/api/v1/links/{pair.link_id}/{'confirm' if o % 2 == 0 else 'reject'}",
            officer.token,
            body={"note": f"decided by officer {o}"},
        )
        for p, pair in enumerate(pairs)
        for o, officer in enumerate(served.officers)
    ]
    started = time.monotonic()
    answers = _race(served, calls)
    summary = _summary(f"{OFFICERS} officers deciding each of {PAIRS} proposed links at once", answers, started)
    problems = _settled_audit(served)

    winners: dict[int, Answer] = {}
    for p in range(PAIRS):
        mine = [answer for answer in answers if answer.name.startswith(f"link{p}-")]
        statuses = sorted(answer.status or 0 for answer in mine)
        if statuses != [200] + [409] * (OFFICERS - 1):
            problems.append(f"link {p}: answers {statuses}: {[a.text[:200] for a in mine if a.status != 409]}")
            continue
        problems += [f"{a.name}: 409 not problem+json: {a.content_type} {a.text[:200]}" for a in mine if a.status == 409 and not _is_problem(a, 409)]
        winners[p] = next(answer for answer in mine if answer.status == 200)
    outcomes: Counter[str] = Counter()
    with Session(served.engine) as session:
        for p, winner in winners.items():
            pair, body = pairs[p], winner.json()
            confirmed = "-confirm-" in winner.name
            outcomes[body["state"]] += 1
            subject = served.officers[int(winner.name.rsplit("-", 1)[1])].subject
            link = session.get(Link, uuid.UUID(pair.link_id))
            assert link is not None
            merges = list(session.scalars(select(ChildMerge).where(ChildMerge.link_id == link.id)))
            merged_into = _merged_into(session, pair.record_child)
            expected_state = LinkState.CONFIRMED if confirmed else LinkState.REJECTED
            if body["state"] != expected_state.value or link.state is not expected_state or link.decided_by != subject:
                problems.append(
                    f"link {p}: {winner.name} won with {body}, the link is {link.state} by {link.decided_by}"
                )
            if confirmed and (len(merges) != 1 or merged_into != pair.candidate_child or body["merge_id"] != str(merges[0].id)):
                problems.append(f"link {p} confirmed: {len(merges)} merges, record's child merged into {merged_into}")
            if not confirmed and (merges or merged_into is not None or body["merge_id"] is not None):
                problems.append(f"link {p} rejected: {len(merges)} merges, record's child merged into {merged_into}")
            # The trail records the one decision, once on each child.
            decided = [
                event.action
                for action in (AuditAction.IDENTITY_LINK_CONFIRMED, AuditAction.IDENTITY_LINK_REJECTED)
                for event in _events(session, action)
                if event.detail.get("link_id") == pair.link_id
            ]
            if decided != [(AuditAction.IDENTITY_LINK_CONFIRMED if confirmed else AuditAction.IDENTITY_LINK_REJECTED).value] * 2:
                problems.append(f"link {p}: the trail records the decisions {decided}")
    print(f"winning decisions: {dict(outcomes)}")
    assert not problems, "\n".join([summary, *problems, log_tail(served.log_path)])


def _pushed_children(served: Served, first_person: int, prefix: str, count: int) -> list[tuple[uuid.UUID, DemoChild]]:
    """Push `count` children with an NHS number, one Encounter each, from client 2; return their ids and persons."""
    children = [_person(first_person + k, served.number()) for k in range(count)]
    for k, child in enumerate(children):
        _push(served, 2, _bundle(child, f"{prefix}{k}", identified=True, encounters=1))
    with Session(served.engine) as session:
        found = [_child_of_number(session, served.keyring, child.nhs_number) for child in children]
    assert all(len(owners) == 1 for owners in found), found
    return [(owners[0], child) for owners, child in zip(found, children, strict=True)]


def test_racing_merges_of_one_child_merge_it_once(served: Served) -> None:
    first = 2 * CHILDREN + PAIRS
    (merged, person), *others = _pushed_children(served, first, "t4-", 4)
    targets = [child_id for child_id, _ in others]
    # A second source's record of the child (the same NHS number), with two Encounters: more to move.
    _push(served, 3, _bundle(person, "t4-again", identified=True, encounters=2))
    into = [targets[0], targets[1], targets[2], targets[0]][:MERGERS]
    calls = [
        Call(
            f"merge-{o}",
            "POST",
            "/api/v1/children/merge",
            served.officers[o].token,
            body={"child_id": str(merged), "into_child_id": str(target), "reason": f"the same child, says officer {o}"},
        )
        for o, target in enumerate(into)
    ]
    started = time.monotonic()
    answers = _race(served, calls)
    summary = _summary(f"{MERGERS} officers merging one child at once", answers, started)

    statuses = sorted(answer.status or 0 for answer in answers)
    assert statuses == [201] + [409] * (MERGERS - 1), "\n".join(
        [summary, *(f"{a.name}: {a.status} {a.text[:300]}" for a in answers), log_tail(served.log_path)]
    )
    losers = [a for a in answers if a.status == 409 and not _is_problem(a, 409)]
    assert not losers, [f"{a.name}: {a.content_type} {a.text[:200]}" for a in losers]
    body = next(answer for answer in answers if answer.status == 201).json()
    winner = uuid.UUID(body["into_child_id"])
    assert body["child_id"] == str(merged) and winner in targets, body

    problems: list[str] = []
    with Session(served.engine) as session:
        if _merged_into(session, merged) != winner:
            problems.append(f"the merged child is merged into {_merged_into(session, merged)}, the winner said {winner}")
        target_merges = {target: _merged_into(session, target) for target in targets}
        if any(target_merges.values()):
            problems.append(f"a target was merged too: {target_merges}")
        merges = session.scalars(select(ChildMerge).where(ChildMerge.child_id == merged, ChildMerge.kind == MergeKind.MERGE)).all()
        if [m.into_child_id for m in merges] != [winner]:
            problems.append(f"merge rows of the child: {[(m.into_child_id, m.merged_by) for m in merges]}")
        records = ("Patient/t4-0", "Patient/t4-again")
        identities = session.execute(
            select(Identity.id, Link.child_id, Link.state).join(Link, Link.identity_id == Identity.id).where(
                Identity.source_record_id.in_(records)
            )
        ).all()
        linked = [(identity_id, child_id) for identity_id, child_id, state in identities if state is LinkState.LINKED]
        if len(linked) != 2 or {child_id for _, child_id in linked} != {winner}:
            problems.append(f"the merged child's identities are linked to {linked}, expected both on {winner}")
        items = session.execute(
            select(Item.child_id).where(Item.identity_id.in_([identity_id for identity_id, *_ in identities]))
        ).scalars().all()
        if Counter(items) != Counter({winner: 3}):
            problems.append(f"the merged child's 3 items are on {Counter(items)}, expected all on {winner}")
        for target in targets:
            held = session.scalar(select(func.count()).select_from(Item).where(Item.child_id == target)) or 0
            if held != (4 if target == winner else 1):
                problems.append(f"child {target} holds {held} items")
        if _child_of_number(session, served.keyring, person.nhs_number) != [winner]:
            problems.append("the merged child's NHS number does not name the child it joined")
    problems += _settled_audit(served)
    assert not problems, "\n".join([summary, *problems, log_tail(served.log_path)])


def test_racing_unmerges_of_one_child_unmerge_it_once(served: Served) -> None:
    first = 2 * CHILDREN + PAIRS + 4
    (merged, _), (into, _) = _pushed_children(served, first, "t5-", 2)
    with httpx.Client(base_url=served.base_url, timeout=REQUEST_TIMEOUT) as http:
        done = _send(
            http,
            Call(
                "merge",
                "POST",
                "/api/v1/children/merge",
                served.officers[0].token,
                body={"child_id": str(merged), "into_child_id": str(into), "reason": "the same child"},
            ),
        )
    assert done.status == 201, done.text
    merge_id = done.json()["merge_id"]
    calls = [
        Call(
            f"unmerge-{o}",
            "POST",
            f"/api/v1/children/{merged}/unmerge",
            served.officers[o].token,
            body={"reason": f"not the same child, says officer {o}"},
        )
        for o in range(MERGERS)
    ]
    started = time.monotonic()
    answers = _race(served, calls)
    summary = _summary(f"{MERGERS} officers unmerging one child at once", answers, started)
    problems = _settled_audit(served)

    statuses = sorted(answer.status or 0 for answer in answers)
    if statuses != [200] + [409] * (MERGERS - 1):
        problems.append(f"answers {statuses}: {[(a.name, a.status, a.text[:200]) for a in answers]}")
    winners = [answer for answer in answers if answer.status == 200]
    problems += [f"{a.name}: {a.content_type} {a.text[:200]}" for a in answers if a.status == 409 and not _is_problem(a, 409)]
    with Session(served.engine) as session:
        if _merged_into(session, merged) is not None:
            problems.append("the child is still merged")
        row = session.get(ChildMerge, uuid.UUID(merge_id))
        assert row is not None
        if winners and row.unmerged_by != winners[0].json()["unmerged_by"]:
            problems.append(f"the merge row says unmerged by {row.unmerged_by}, the first 200 said {winners[0].json()}")
        linked = session.execute(
            select(Link.child_id)
            .join(Identity, Identity.id == Link.identity_id)
            .where(Identity.source_record_id == "Patient/t5-0", Link.state == LinkState.LINKED)
        ).scalars().all()
        if linked != [merged]:
            problems.append(f"the unmerged child's identity is linked to {linked}")
        unmerges = [e for e in _events(session, AuditAction.IDENTITY_CHILD_UNMERGED) if e.detail.get("merge_id") == merge_id]
        if len(unmerges) != 2:
            problems.append(f"the trail records {len(unmerges)} unmerge events for the merge, expected 2 (one per child)")
    assert not problems, "\n".join([summary, *problems, log_tail(served.log_path)])

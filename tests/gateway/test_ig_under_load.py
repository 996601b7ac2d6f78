"""IG officers on a busy gateway: a real `gateway serve` with two workers on PostgreSQL.

While agency systems push and staff open views, IG officers search the trail, fetch proofs (each
checked against the signed root with the public key alone) and subject access reports; several
officers conclude the same review entry at once and exactly one of them wins. Afterwards the
report of a child lists every view of it that was answered 200, and the trail verifies.
"""

from __future__ import annotations

import base64
import random
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from sqlalchemy.orm import Session

from audit import NoteVerifier, Outcome, ProofError, verify_inclusion
from gateway.auth.principal import Principal, PrincipalKind
from gateway.auth.tokens import mint_access_token
from gateway.ig import repository
from gateway.ig.service import DISCLOSURE_ACTIONS
from gateway.keys import KeyFolder
from gateway.kit.db import build_engine, build_sessionmaker
from gateway.models import Team
from gateway.settings import Settings
from policies import Agency
from tests.factories import add_member, make_team, staff_token
from tests.gateway.helpers import FHIR_JSON
from tests.gateway.test_under_load import (
    Partnership,
    allocate_children,
    audit_problems,
    build_push,
    set_up,
    synthetic_children,
)
from tests.serving import log_tail, scratch_database, serve_gateway

SECONDS = 8.0
PUSHERS = 2
VIEWERS = 2
OFFICERS = 3
RACERS = 6  # officers concluding the same review entry at once
REQUEST_TIMEOUT = 30.0
CHILDREN = 6


@dataclass
class Tally:
    """What one client thread saw; read after it finishes."""

    name: str
    ok: int = 0
    problems: list[str] = field(default_factory=list)
    views: dict[str, int] = field(default_factory=dict)  # child id -> views answered 200
    statuses: list[int] = field(default_factory=list)

    def problem(self, message: str) -> None:
        if len(self.problems) < 5:
            self.problems.append(f"{self.name}: {message}")


@dataclass(frozen=True)
class Scene:
    """What the client threads share."""

    base_url: str
    partnership: Partnership
    child_ids: list[str]
    officer: str
    member: str
    verifier: NoteVerifier
    stop: float


def _ig_token(keys_dir: Path, subject: str) -> str:
    settings = Settings()
    principal = Principal(kind=PrincipalKind.STAFF, subject=subject, agency=Agency.SOCIAL_CARE, role="ig_officer")
    return mint_access_token(
        KeyFolder(keys_dir).signing_keys(),
        issuer=settings.issuer,
        audience=settings.audience,
        principal=principal,
        ttl_seconds=300,
    )


def _tokens(partnership: Partnership) -> tuple[str, str]:
    """Return a token for a member of the load team, and one for a social worker on another team."""
    settings = Settings()
    keys = KeyFolder(partnership.keys_dir).signing_keys()
    engine = build_engine(partnership.url)
    try:
        with build_sessionmaker(engine)() as session:
            team = session.get(Team, partnership.team_id)
            assert team is not None
            member = add_member(session, team, agency="health", role="designated_nurse")
            outsider = add_member(session, make_team(session, name="Elsewhere"), agency="social_care", role="social_worker")
            session.commit()
            return staff_token(keys, settings, member), staff_token(keys, settings, outsider)
    finally:
        engine.dispose()


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _pusher(tally: Tally, scene: Scene, index: int) -> None:
    rng = random.Random(index)
    taken: set[str] = set()
    headers = {**FHIR_JSON, **_bearer(scene.partnership.client_tokens[index])}
    with httpx.Client(base_url=scene.base_url, timeout=REQUEST_TIMEOUT) as http:
        round_no = 0
        while time.monotonic() < scene.stop:
            push = build_push(synthetic_children(5, taken), side=0, pool=f"p{index}-{round_no}", rng=rng)
            round_no += 1
            answer = http.post("/fhir/R4", content=push.body, headers=headers)
            if answer.status_code == 200:
                tally.ok += 1
            else:
                tally.problem(f"push answered {answer.status_code}: {answer.text[:200]}")


def _viewer(tally: Tally, scene: Scene, index: int) -> None:
    rng = random.Random(100 + index)
    with httpx.Client(base_url=scene.base_url, timeout=REQUEST_TIMEOUT) as http:
        while time.monotonic() < scene.stop:
            child_id = rng.choice(scene.child_ids)
            answer = http.get(f"/api/v1/children/{child_id}/view?purpose=child_protection", headers=_bearer(scene.member))
            if answer.status_code == 200:
                tally.ok += 1
                tally.views[child_id] = tally.views.get(child_id, 0) + 1
            else:
                tally.problem(f"view answered {answer.status_code}: {answer.text[:200]}")


def _officer(tally: Tally, scene: Scene, index: int) -> None:
    """Search the trail, prove events against the newest signed checkpoint, and ask for a SAR report."""
    rng = random.Random(200 + index)
    headers = _bearer(scene.officer)
    with httpx.Client(base_url=scene.base_url, timeout=REQUEST_TIMEOUT) as http:
        while time.monotonic() < scene.stop:
            searched = http.get("/api/v1/audit/events", params={"limit": 20}, headers=headers)
            note = http.get("/api/v1/audit/checkpoint", headers=headers)
            report = http.get(f"/api/v1/children/{rng.choice(scene.child_ids)}/disclosures", headers=headers)
            if (searched.status_code, note.status_code, report.status_code) != (200, 200, 200):
                tally.problem(f"answered {searched.status_code}, {note.status_code} {note.text[:150]}, {report.status_code}")
                continue
            signed = scene.verifier.open(note.text)
            seq = rng.randrange(1, signed.tree_size + 1)
            proof = http.get(f"/api/v1/audit/proof/{seq}", params={"tree_size": signed.tree_size}, headers=headers)
            if proof.status_code != 200:
                tally.problem(f"proof of {seq} in {signed.tree_size} answered {proof.status_code}: {proof.text[:200]}")
                continue
            body = proof.json()
            try:
                verify_inclusion(
                    leaf_index=seq - 1,
                    tree_size=signed.tree_size,
                    leaf_hash=base64.b64decode(body["leaf_hash"]),
                    path=[base64.b64decode(node) for node in body["path"]],
                    root=signed.root_hash,
                )
            except ProofError as wrong:
                tally.problem(f"proof of {seq} in {signed.tree_size} does not verify: {wrong}")
                continue
            tally.ok += 1


def _racer(tally: Tally, scene: Scene, entry_id: str, start: threading.Barrier) -> None:
    with httpx.Client(base_url=scene.base_url, timeout=REQUEST_TIMEOUT) as http:
        start.wait(timeout=REQUEST_TIMEOUT)
        answer = http.post(
            f"/api/v1/audit/review/{entry_id}",
            json={"outcome": "appropriate", "note": f"checked by {tally.name}"},
            headers=_bearer(scene.officer),
        )
        tally.statuses.append(answer.status_code)


def _run(threads: list[threading.Thread]) -> list[str]:
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + SECONDS + 4 * REQUEST_TIMEOUT
    for thread in threads:
        thread.join(timeout=max(0.0, deadline - time.monotonic()))
    return [thread.name for thread in threads if thread.is_alive()]


def test_ig_officers_read_and_review_while_the_gateway_is_busy(database_url: str, tmp_path: Path) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("PostgreSQL load test; the suite runs on SQLite (GATEWAY_TEST_DATABASE_URL is not PostgreSQL)")
    warm = synthetic_children(CHILDREN, set())
    log_path = tmp_path / "gateway-serve.log"
    with scratch_database(database_url, tmp_path, prefix="gw_ig_load") as url:
        partnership = set_up(url, tmp_path, clients=PUSHERS)
        member, outsider = _tokens(partnership)
        verifier = KeyFolder(partnership.keys_dir).audit_signer().verifier()
        officer = _ig_token(partnership.keys_dir, "ig.officer@load.example")
        with serve_gateway(partnership.env, log_path=log_path, workers=2) as base_url:
            with httpx.Client(base_url=base_url, timeout=REQUEST_TIMEOUT) as http:
                warm_push = build_push(warm, side=0, pool="warm", rng=random.Random(1))
                headers = {**FHIR_JSON, **_bearer(partnership.client_tokens[0])}
                assert http.post("/fhir/R4", content=warm_push.body, headers=headers).status_code == 200
                child_ids = [str(c) for c in allocate_children(partnership, [child.nhs_number for child in warm])]
                # A refusal, for the officers to conclude: it reaches the queue once integrated.
                refused = http.get(f"/api/v1/children/{child_ids[0]}/view?purpose=child_protection", headers=_bearer(outsider))
                assert refused.status_code == 403
                entry_id = _wait_for_refusal(http, officer)
                _wait_for_a_checkpoint(http, officer)
            scene = Scene(base_url, partnership, child_ids, officer, member, verifier, time.monotonic() + SECONDS)

            tallies: list[Tally] = []
            threads: list[threading.Thread] = []

            def add(name: str, target: Callable[..., None], *args: object) -> None:
                tally = Tally(name)
                tallies.append(tally)
                threads.append(threading.Thread(target=target, args=(tally, scene, *args), name=name, daemon=True))

            for index in range(PUSHERS):
                add(f"pusher-{index}", _pusher, index)
            for index in range(VIEWERS):
                add(f"viewer-{index}", _viewer, index)
            for index in range(OFFICERS):
                add(f"officer-{index}", _officer, index)
            start = threading.Barrier(RACERS)
            for index in range(RACERS):
                add(f"racer-{index}", _racer, entry_id, start)
            still_running = _run(threads)

        # The server has stopped, and integrated what its requests staged before it exited.
        problems = audit_problems(partnership.env)
        reported = _disclosures(url, child_ids)

    tail = log_tail(log_path)
    assert not still_running, f"threads still running: {still_running}\n{tail}"
    everyone = [problem for tally in tallies for problem in tally.problems]
    assert not everyone, "\n".join([*everyone, tail])
    assert all(tally.ok > 0 for tally in tallies if not tally.name.startswith("racer")), [(t.name, t.ok) for t in tallies]
    races = sorted(status for tally in tallies for status in tally.statuses)
    assert races == [200] + [409] * (RACERS - 1), races
    for child_id in child_ids:
        views = sum(tally.views.get(child_id, 0) for tally in tallies)
        assert reported[child_id] == views, f"child {child_id}: {views} views answered 200, {reported[child_id]} reported"
    assert not problems, problems


def _disclosures(url: str, child_ids: list[str]) -> dict[str, int]:
    """Return how many disclosures the subject access report lists for each child (as the endpoint builds it)."""
    engine = build_engine(url)
    try:
        with Session(engine) as session:
            return {
                child_id: len(
                    repository.child_events(
                        session, uuid.UUID(child_id), actions=DISCLOSURE_ACTIONS, outcome=Outcome.SUCCESS.value
                    )
                )
                for child_id in child_ids
            }
    finally:
        engine.dispose()


def _wait_for_a_checkpoint(http: httpx.Client, officer: str) -> None:
    """Wait (bounded) for the first signed checkpoint: before it, the checkpoint is rightly a 404."""
    for _ in range(100):
        if http.get("/api/v1/audit/checkpoint", headers=_bearer(officer)).status_code == 200:
            return
        time.sleep(0.05)
    raise AssertionError("no checkpoint was signed within 5 s of the first events")


def _wait_for_refusal(http: httpx.Client, officer: str) -> str:
    """Return the id of the open `refused` entry, once the integrator has put it on the queue."""
    for _ in range(100):
        queue = http.get("/api/v1/audit/review", params={"reason": "refused"}, headers=_bearer(officer))
        assert queue.status_code == 200, queue.text
        entries = queue.json()["entries"]
        if entries:
            entry_id: str = entries[0]["id"]
            return entry_id
        time.sleep(0.05)
    raise AssertionError("the refusal never reached the review queue")

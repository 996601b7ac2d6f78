"""Synthetic FHIR pushes, the pusher threads that send them, and the ledger of what was acknowledged.

Only synthetic data: NHS numbers from the 999 test range (gateway/demo/generator.py), the
made-up names of tests/factories.py, random attendances.
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
from faker import Faker

from gateway.demo.generator import (
    ENCOUNTER_TYPES,
    DemoChild,
    encounter_resource,
    health_record_resource,
    patient_resource,
    synthetic_nhs_number,
    transaction_bundle,
)
from gateway.models import Client
from tests.factories import demo_child

from .client import REQUEST_TIMEOUT, Reply, Tokens, send
from .phase import Gate, Worker

FHIR_JSON = "application/fhir+json"
FIRST_ATTENDANCE = datetime(2024, 1, 1, tzinfo=UTC)
ATTENDANCE_SPAN_MINUTES = 1_000_000  # about two years
CREATED, UNCHANGED = "201 Created", "200 OK"

VersionKey = tuple[str, str, str]  # (client id, source record id, source version)


class NhsNumbers:
    """Distinct synthetic NHS numbers (999 test range), drawn reproducibly; main thread only."""

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(seed)
        self._taken: set[str] = set()

    def draw(self) -> str:
        """Return an NHS number not drawn before."""
        for _ in range(1000):  # the 999 range holds about 900,000 valid numbers: a repeat is rare
            number = synthetic_nhs_number(self._rng)
            if number not in self._taken:
                self._taken.add(number)
                return number
        raise RuntimeError("could not draw a fresh synthetic NHS number")


# Names and addresses as the demo generator makes them (Faker's en_GB), seeded: every child used
# to be "Alex Testington" of one postcode, so every Patient shared every blocking key and linking
# compared each new Patient with every child pushed before it. Then a second measured phase ran
# at about two thirds of the first's rate (linking's candidate query returned 221 rows a push on
# an empty database, 2,043 after 200 pushes) and the figures measured that artefact.
_FAKE = Faker("en_GB")
_FAKE.seed_instance(2026)


def synthetic_child(numbers: NhsNumbers, rng: random.Random) -> DemoChild:
    """Return a made-up child with a fresh synthetic NHS number, name and address."""
    sex = rng.choice(["female", "male"])
    return demo_child(
        numbers.draw(),
        given_names=[_FAKE.first_name_female() if sex == "female" else _FAKE.first_name_male()],
        family_name=_FAKE.last_name(),
        birth_date=date(2009, 1, 1) + timedelta(days=rng.randrange(0, 16 * 365)),
        sex=sex,
        postcode=_FAKE.postcode(),
        address_lines=_FAKE.street_address().split("\n"),
    )


def attendance(rng: random.Random, *, sensitive_share: float) -> dict[str, Any]:
    """Return the generator's description of one made-up attendance, with an id never used before."""
    class_code, class_display, type_code, type_display = rng.choice(ENCOUNTER_TYPES)
    return {
        "id": str(uuid.UUID(int=rng.getrandbits(128))),
        "class_code": class_code,
        "class_display": class_display,
        "type_code": type_code,
        "type_display": type_display,
        "start": FIRST_ATTENDANCE + timedelta(minutes=rng.randrange(ATTENDANCE_SPAN_MINUTES)),
        "sensitive": rng.random() < sensitive_share,
    }


@dataclass(frozen=True)
class Push:
    """A transaction Bundle serialised once, and what it carries."""

    body: bytes
    types: tuple[str, ...]  # resource type of each entry, in order
    nhs_numbers: tuple[str, ...]

    @property
    def resources(self) -> int:
        """Return how many resources the Bundle carries."""
        return len(self.types)


def bundle_push(resources: list[dict[str, Any]], nhs_numbers: Iterable[str]) -> Push:
    """Serialise resources as a FHIR transaction Bundle."""
    body = json.dumps(transaction_bundle(resources), separators=(",", ":")).encode()
    return Push(body, tuple(r["resourceType"] for r in resources), tuple(nhs_numbers))


def children_push(
    children: list[DemoChild],
    *,
    per_child: int,
    id_prefix: str,
    rng: random.Random,
    sensitive_share: float,
    mixed: bool = False,
) -> Push:
    """Return a Bundle of each child's Patient followed by `per_child` new records of that child.

    The records are Encounters; `mixed` makes every other one another UK Core record instead
    (Condition, Observation, Flag, Immunization, AllergyIntolerance, MedicationStatement,
    Appointment, Procedure: gateway.demo.generator.health_record_resource), labelled PSY at the
    same share, some labelled by the gateway's code list besides.
    """
    resources: list[dict[str, Any]] = []
    for position, child in enumerate(children):
        patient_id = f"{id_prefix}-p{position}"
        patient_ref = f"Patient/{patient_id}"
        resources.append(patient_resource(child, resource_id=patient_id, postcode=child.postcode))
        for n in range(per_child):
            visit = attendance(rng, sensitive_share=sensitive_share)
            if mixed and n % 2:
                resources.append(
                    health_record_resource(rng, patient_ref=patient_ref, when=visit["start"], sensitive=visit["sensitive"])
                )
            else:
                resources.append(encounter_resource(visit, patient_ref=patient_ref))
    return bundle_push(resources, (child.nhs_number for child in children))


def encounters_push(patient_id: str, count: int, *, rng: random.Random) -> Push:
    """Return a Bundle of new Encounters of a Patient this client pushed before (none sensitive)."""
    resources = [
        encounter_resource(attendance(rng, sensitive_share=0.0), patient_ref=f"Patient/{patient_id}")
        for _ in range(count)
    ]
    return bundle_push(resources, ())


@dataclass
class Ledger:
    """What the gateway acknowledged: every version it answered for, and how many it said it created."""

    identities: set[VersionKey] = field(default_factory=set)
    items: set[VersionKey] = field(default_factory=set)
    identities_created: int = 0
    items_created: int = 0  # record entries (not Patients) answered 201 Created
    nhs_numbers: set[str] = field(default_factory=set)
    unnumbered_patients: int = 0  # Patients acknowledged without an NHS number (the large Bundle's)
    resources: int = 0

    def acknowledge(self, client_id: str, push: Push, entries: list[tuple[str, str]]) -> None:
        """Record a push's answered entries, (status, location) in entry order."""
        for (status, location), resource_type in zip(entries, push.types, strict=True):
            source_record_id, version = location.rsplit("/_history/", 1)
            key = (client_id, source_record_id, version)
            created = status == CREATED
            if resource_type == "Patient":
                self.identities.add(key)
                self.identities_created += int(created)
            else:
                self.items.add(key)
                self.items_created += int(created)
        self.nhs_numbers.update(push.nhs_numbers)
        self.unnumbered_patients += push.types.count("Patient") - len(push.nhs_numbers)
        self.resources += push.resources

    def merge(self, other: Ledger) -> None:
        """Add another ledger's acknowledgements to this one."""
        self.identities |= other.identities
        self.items |= other.items
        self.identities_created += other.identities_created
        self.items_created += other.items_created
        self.nhs_numbers |= other.nhs_numbers
        self.unnumbered_patients += other.unnumbered_patients
        self.resources += other.resources


def read_answer(status: int | None, body: bytes, push: Push) -> tuple[list[tuple[str, str]] | None, str | None]:
    """Return ((status, location) per entry, None) for a good answer to a push, else (None, what was wrong)."""
    if status is None:
        return None, "unanswered"
    if status != 200:
        return None, f"answered {status}: {body[:160].decode(errors='replace')}"
    try:
        answer = json.loads(body)
        entries = [(entry["response"]["status"], entry["response"]["location"]) for entry in answer["entry"]]
    except (ValueError, KeyError, TypeError) as error:
        return None, f"200 with an unreadable response Bundle ({type(error).__name__})"
    if answer.get("type") != "transaction-response" or len(entries) != push.resources:
        return None, f"200 but not a transaction-response of {push.resources} entries"
    for (entry_status, location), resource_type in zip(entries, push.types, strict=True):
        if entry_status not in (CREATED, UNCHANGED):
            return None, f"200 with an entry answered {entry_status!r}"
        if not (isinstance(location, str) and location.startswith(f"{resource_type}/") and "/_history/" in location):
            return None, "200 with an entry location not <type>/<id>/_history/<version>"
    return entries, None


@dataclass
class PushStats:
    """What one pusher thread did; read only after the thread has finished."""

    name: str
    attempted: int = 0
    ok: int = 0
    retries: int = 0
    unanswered: int = 0
    server_errors: int = 0  # 5xx other than 503s retried after Retry-After
    client_errors: int = 0
    latencies: list[float] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    ledger: Ledger = field(default_factory=Ledger)

    def problem(self, message: str) -> None:
        """Keep a few distinct examples of what went wrong (the counters say how often)."""
        example = f"{self.name}: {message}"
        if len(self.problems) < 3 and example not in self.problems:
            self.problems.append(example)

    def count(self, reply: Reply, client_id: str, push: Push) -> list[tuple[str, str]] | None:
        """Count one final reply to a push and acknowledge its entries; return them, None on failure."""
        self.attempted += 1
        self.retries += reply.retries
        self.latencies.append(reply.seconds)
        entries, problem = read_answer(reply.status, reply.body, push)
        if entries is None:
            if reply.status is None:
                self.unanswered += 1
            elif reply.status >= 500:
                self.server_errors += 1
            else:
                self.client_errors += 1
            self.problem(f"push: {reply.error or problem}")
            return None
        self.ok += 1
        self.ledger.acknowledge(client_id, push, entries)
        return entries


def push_one(
    http: httpx.Client, tokens: Tokens, client: Client, push: Push, stats: PushStats
) -> list[tuple[str, str]] | None:
    """Send one push as a client and count its answer."""
    headers = {"Content-Type": FHIR_JSON, "Authorization": f"Bearer {tokens.for_client(client)}"}
    reply = send(http, "POST", "/fhir/R4", headers=headers, body=push.body)
    return stats.count(reply, client.id, push)


def pusher(base_url: str, tokens: Tokens, client: Client, pushes: list[Push], stats: PushStats) -> Worker:
    """Return a thread body: its own keep-alive client, then each push in turn until done or stopped."""

    def work(gate: Gate) -> None:
        with httpx.Client(base_url=base_url, timeout=REQUEST_TIMEOUT) as http:
            tokens.for_client(client)  # minted before the start line, not on the clock
            gate.start()
            for push in pushes:
                if not gate.running():
                    break
                if push_one(http, tokens, client, push, stats) is None and stats.unanswered:
                    gate.stop.set()  # the gateway is not answering: stop everyone, fail soon

    return work

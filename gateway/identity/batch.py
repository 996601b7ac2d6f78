"""`gateway link batch`: run a file of identity claims through the real linking service, no HTTP.

One JSON object per line:
`{"agency": "health"|"police"|"education", "record_id": "…", "identity": {"given", "family",
"birth_date" (YYYY-MM-DD), "sex" ("F"|"M"), "postcode", "address", "nhs_number" (or null), "upn"
(or null)}}`. Missing keys are unknown; extra top-level keys (such as the generator's `truth`) are
ignored. Each claim is linked in file order, in a transaction of its own, by a client registered
for its agency (`link-batch-<agency>`), exactly as a push would link it; the same record id again
is a later version of that record. One line comes out per line in:
`{"line", "record_id", "child_id", "outcome": "exact"|"scored"|"review"|"new", "score"}`, where a
claim sent to review carries the child it would have joined (and `held_on`, the new child it
waits on until a person decides); or `{"line", "record_id", "error"}`
for a line that could not be read or linked (the rest go on).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import date
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlalchemy import select, text
from sqlalchemy.orm import Session, sessionmaker
from stdnum.gb import nhs, upn

from adapters import IdentityClaim
from gateway.auth.principal import Principal, PrincipalKind
from gateway.kit.auditor import Auditor
from gateway.kit.crypto import DataKeyring
from gateway.models import Client
from policies import Agency

from .scoring import DEFAULT_PARAMETERS, MatchParameters
from .service import ClaimLinked, LinkOutcome, link_claims

AGENCIES = ("health", "police", "education")


class IdentityLine(BaseModel):
    """What a line says of the child; every field may be missing (unknown)."""

    model_config = ConfigDict(extra="forbid")

    given: str | None = Field(default=None, max_length=200)
    family: str | None = Field(default=None, max_length=200)
    birth_date: date | None = None
    sex: Literal["F", "M"] | None = None
    postcode: str | None = Field(default=None, max_length=16)
    address: str | None = Field(default=None, max_length=500)
    nhs_number: str | None = None
    upn: str | None = None

    @field_validator("nhs_number")
    @classmethod
    def _valid_nhs_number(cls, value: str | None) -> str | None:
        if value is not None and not nhs.is_valid(value.replace(" ", "")):
            raise ValueError("not a valid NHS number (10 digits with a correct Modulus 11 check digit)")
        return None if value is None else value.replace(" ", "")

    @field_validator("upn")
    @classmethod
    def _valid_upn(cls, value: str | None) -> str | None:
        if value is not None and not upn.is_valid(value.replace(" ", "").upper()):
            raise ValueError("not a valid UPN (13 characters with a correct check letter)")
        return None if value is None else value.replace(" ", "").upper()


class ClaimLine(BaseModel):
    """One line of the file."""

    model_config = ConfigDict(extra="ignore")

    agency: Literal["health", "police", "education"]
    record_id: str = Field(min_length=1, max_length=255)
    identity: IdentityLine


@dataclass(frozen=True)
class LineResult:
    """What became of one line, and how long linking it took (None for a line not read)."""

    output: dict[str, Any]
    seconds: float | None


def claim_of(line: ClaimLine, version: str) -> IdentityClaim:
    """Return the identity claim a line makes."""
    person = line.identity
    return IdentityClaim(
        source_record_id=line.record_id,
        source_version=version,
        nhs_number=person.nhs_number,
        upn=person.upn,
        other_identifiers=(),
        given_names=(person.given,) if person.given else (),
        family_name=person.family,
        birth_date=person.birth_date,
        sex={"F": "female", "M": "male"}.get(person.sex or ""),
        postcode=person.postcode,
        address_lines=(person.address,) if person.address else (),
    )


def _problem(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "the line"
    # The message, never the input: a line holds a child's name and birth date.
    return f"{where}: {first['msg']}"


def register_clients(factory: sessionmaker[Session]) -> dict[str, Principal]:
    """Make sure a client exists for each agency; return the principal that links as it."""
    principals: dict[str, Principal] = {}
    with factory() as session:
        known = set(session.scalars(select(Client.id).where(Client.id.in_([f"link-batch-{a}" for a in AGENCIES]))))
        for agency in AGENCIES:
            client_id = f"link-batch-{agency}"
            if client_id not in known:
                session.add(
                    Client(
                        id=client_id,
                        name=f"link batch ({agency})",
                        agency=Agency(agency),
                        jwks={"keys": []},  # no key: it can never ask for a token
                        allowed_kinds=["identity"],
                        active=False,
                    )
                )
            principals[agency] = Principal(PrincipalKind.CLIENT, client_id, Agency(agency))
        session.commit()
    return principals


def link_lines(
    lines: Iterable[str],
    *,
    factory: sessionmaker[Session],
    keyring: DataKeyring,
    parameters: MatchParameters = DEFAULT_PARAMETERS,
    clock: Callable[[], float] = time.perf_counter,
) -> Iterator[LineResult]:
    """Link each line's claim in its own transaction, in order; yield one result per non-blank line."""
    principals = register_clients(factory)
    linked = 0
    next_analyze = 200
    for number, raw_line in enumerate(lines, start=1):
        if not raw_line.strip():
            continue
        record_id: str | None = None
        try:
            raw = json.loads(raw_line)
            if isinstance(raw, dict) and isinstance(raw.get("record_id"), str):
                record_id = raw["record_id"]
            line = ClaimLine.model_validate(raw)
        except json.JSONDecodeError as error:
            yield LineResult({"line": number, "record_id": None, "error": f"not JSON: {error.msg}"}, None)
            continue
        except ValidationError as error:
            yield LineResult({"line": number, "record_id": record_id, "error": _problem(error)}, None)
            continue
        principal = principals[line.agency]
        started = clock()
        with factory() as session:
            result = link_claims(
                session,
                principal,
                auditor=Auditor(session, principal.actor()),
                keyring=keyring,
                claims={0: claim_of(line, version=f"line-{number}")},
                parameters=parameters,
            )
            outcome = result.outcomes[0]
            if isinstance(outcome, ClaimLinked):
                session.commit()
            else:
                session.rollback()
        seconds = clock() - started
        linked += 1
        if linked == next_analyze:
            # A bulk load outgrows the planner's statistics long before autovacuum's next look
            # (a fresh database's tables look empty to it, and it then picks scans that are slow
            # at any size): refresh them as the tables grow tenfold, as after any bulk load.
            _analyze(factory)
            next_analyze *= 10
        if isinstance(outcome, ClaimLinked):
            yield LineResult(_output(number, line.record_id, outcome), seconds)
        else:
            yield LineResult({"line": number, "record_id": line.record_id, "error": str(outcome)}, seconds)


def _analyze(factory: sessionmaker[Session]) -> None:
    with factory() as session:
        if session.get_bind().dialect.name == "postgresql":
            session.execute(text("ANALYZE child, child_identifier, identity, identity_block, link"))
            session.commit()


def _output(number: int, record_id: str, outcome: ClaimLinked) -> dict[str, Any]:
    output: dict[str, Any] = {
        "line": number,
        "record_id": record_id,
        "child_id": str(outcome.child_id),
        "outcome": outcome.outcome.value,
        "score": None if outcome.score is None or outcome.outcome is LinkOutcome.EXACT else round(outcome.score, 2),
    }
    if outcome.outcome is LinkOutcome.REVIEW and outcome.proposed_child_id is not None:
        # Reported with the child it would have joined; `held_on` is the new child it waits on.
        output["child_id"], output["held_on"] = str(outcome.proposed_child_id), str(outcome.child_id)
    return output


@dataclass
class Scratch:
    """A database and keys to link into: a temporary SQLite file and keys unless told otherwise."""

    factory: sessionmaker[Session]
    keyring: DataKeyring
    postgresql: bool
    close: Callable[[], None]


def open_scratch(database_url: str | None, keys_dir: Any, work_dir: Any) -> Scratch:
    """Open (and migrate) the database to link into; PostgreSQL stages audit events as the server does."""
    from pathlib import Path

    from gateway.ig.checkpointer import integrate_pending
    from gateway.keys import KeyFolder
    from gateway.kit.db import build_engine, build_sessionmaker
    from gateway.kit.migrate import upgrade

    url = database_url or f"sqlite:///{Path(work_dir) / 'link-batch.db'}"
    folder = KeyFolder(Path(keys_dir))
    folder.path.mkdir(parents=True, exist_ok=True)
    folder.create_missing(audit_origin="link-batch.invalid/audit")
    engine = build_engine(url)
    upgrade(engine)
    postgresql = engine.dialect.name == "postgresql"
    factory = build_sessionmaker(engine, deferred_audit=postgresql)

    def close() -> None:
        if postgresql:
            # What the server's audit worker does in the background: append the staged events.
            integrate_pending(build_sessionmaker(engine), wait=True)
        engine.dispose()

    return Scratch(factory=factory, keyring=folder.data_keyring(), postgresql=postgresql, close=close)

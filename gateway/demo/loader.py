"""Load the synthetic partnership through the real ingest, linking and case services."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from joserfc.jwk import ECKey
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from adapters import ClaimEntry, IdentityClaim, InboundRecord, RecordEntry, Submission, parse_bundle
from audit import sign_checkpoint
from gateway.auth.principal import Principal, PrincipalKind
from gateway.identity.service import NHS_NUMBER_SCHEME
from gateway.ingest.service import ingest
from gateway.keys import KeyFolder
from gateway.kit.auditor import Auditor
from gateway.kit.crypto import DataKeyring
from gateway.kit.db import build_sessionmaker
from gateway.kit.secrets import write_secret_file
from gateway.models import Case, ChildIdentifier, Client, Team, TeamMember
from gateway.settings import Settings
from policies import Agency, RecordKind

from .generator import DemoChild, DemoPartnership, encounter_resource, generate, patient_resource, transaction_bundle

TRUST = "demo-trust-epr"
GP = "demo-gp-system"
POLICE = "demo-police-rms"
SCHOOLS = "demo-school-mis"
DEMO_CLIENTS = [
    (TRUST, "Northshire University Hospitals NHS Trust EPR", Agency.HEALTH, [RecordKind.IDENTITY, RecordKind.ENCOUNTER]),
    (GP, "Riverside Medical Practice GP system", Agency.HEALTH, [RecordKind.IDENTITY, RecordKind.ENCOUNTER]),
    (POLICE, "Northshire Police records management system", Agency.POLICE, [RecordKind.IDENTITY, RecordKind.INCIDENT]),
    (SCHOOLS, "Northshire schools MIS", Agency.EDUCATION, [RecordKind.IDENTITY, RecordKind.ENROLMENT]),
]
TEAM_NAME = "Northshire MACPT"


def demo_client_key_path(settings: Settings, client_id: str) -> Path:
    """Return where a demo client's private key is kept (so `dev-assertion` can sign as it)."""
    return settings.keys_dir / "demo-clients" / f"{client_id}.jwk"


@dataclass(frozen=True)
class DemoSummary:
    """What was loaded, and how to try it."""

    children: int
    allocated_child: uuid.UUID
    unallocated_child: uuid.UUID
    loaded_now: bool

    def as_dict(self) -> dict[str, str | int]:
        """Return the ids a walk-through needs, for `var/demo.json`."""
        return {
            "children": self.children,
            "allocated_child": str(self.allocated_child),
            "unallocated_child": str(self.unallocated_child),
        }

    def describe(self, *, host: str, port: int) -> str:
        """Return the instructions printed when the demo starts."""
        base = f"http://{host}:{port}"
        state = "loaded" if self.loaded_now else "already loaded"
        return f"""
Demo partnership {state}: {self.children} synthetic children, team "{TEAM_NAME}".

  API docs:          {base}/docs
  A child on the team's list:      {self.allocated_child}
  A child on no team's list (403): {self.unallocated_child}

  # a staff token for the team's police member, then the child's view:
  TOKEN=$(gateway dev-token --subject police.member@northshire.example --agency police --role police_officer)
  curl -s -H "Authorization: Bearer $TOKEN" \\
    "{base}/api/v1/children/{self.allocated_child}/view?purpose=child_protection"

  # an agency system's token, the real way (signed client assertion):
  curl -s {base}/oauth/token -d grant_type=client_credentials \\
    -d client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer \\
    -d client_assertion=$(gateway dev-assertion {TRUST})

  # an information governance officer: who saw the child, and the audit log's signed checkpoint
  IG=$(gateway dev-token --subject ig.officer@northshire.example --agency social_care --role ig_officer)
  curl -s -H "Authorization: Bearer $IG" "{base}/api/v1/children/{self.allocated_child}/disclosures"
  curl -s -H "Authorization: Bearer $IG" {base}/api/v1/audit/checkpoint

  gateway audit verify
"""


def load_demo(settings: Settings, engine: Engine, *, children: int, seed: int) -> DemoSummary:
    """Load the demo partnership once; on later runs, describe what is there."""
    factory = build_sessionmaker(engine)
    keyring = KeyFolder(settings.keys_dir).data_keyring()
    partnership = generate(children=children, seed=seed)
    with factory.begin() as session:
        if session.scalar(select(Team).where(Team.name == TEAM_NAME)) is None:
            _load(session, settings, keyring, partnership)
            loaded_now = True
        else:
            loaded_now = False
        allocated = _child_id(session, keyring, next(c for c in partnership.children if c.allocated))
        unallocated = _child_id(session, keyring, next(c for c in partnership.children if not c.allocated))
    with factory.begin() as session:
        # The loaded partnership's first signed checkpoint (the server signs the rest as events arrive).
        sign_checkpoint(session, KeyFolder(settings.keys_dir).audit_signer())
    return DemoSummary(len(partnership.children), allocated, unallocated, loaded_now)


def _load(session: Session, settings: Settings, keyring: DataKeyring, partnership: DemoPartnership) -> None:
    for client_id, name, agency, kinds in DEMO_CLIENTS:
        session.add(Client(id=client_id, name=name, agency=agency, jwks=_client_jwks(settings, client_id),
                           allowed_kinds=[str(kind) for kind in kinds]))
    team = Team(name=partnership.team_name, local_authority=partnership.local_authority)
    other_team = Team(name="Westshire MACPT", local_authority="Westshire Council")
    session.add_all([team, other_team])
    session.flush()
    for member in partnership.members:
        session.add(TeamMember(team_id=team.id, subject=member.subject, display_name=member.display_name,
                               agency=Agency(member.agency), role=member.role))
    outsider = partnership.outsider
    session.add(TeamMember(team_id=other_team.id, subject=outsider.subject, display_name=outsider.display_name,
                           agency=Agency(outsider.agency), role=outsider.role))
    session.flush()
    lead = partnership.members[0]
    principals = {cid: Principal(PrincipalKind.CLIENT, cid, agency) for cid, _n, agency, _k in DEMO_CLIENTS}
    for index, child in enumerate(partnership.children):
        _push_health(session, keyring, principals[TRUST], principals[GP], index, child)
        if index % 3 == 0:
            _push_police(session, keyring, principals[POLICE], index, child)
        if (datetime(2026, 11, 1, tzinfo=UTC).date() - child.birth_date).days > 5 * 365:
            _push_school(session, keyring, principals[SCHOOLS], index, child)
        if child.allocated:
            session.add(Case(child_id=_child_id(session, keyring, child), team_id=team.id,
                             lead_practitioner=lead.display_name))
    session.flush()


def _push(session: Session, keyring: DataKeyring, principal: Principal, submission: Submission) -> None:
    auditor = Auditor(session, principal.actor())
    ingest(session, principal, auditor=auditor, keyring=keyring, submission=submission)


def _push_health(
    session: Session, keyring: DataKeyring, trust: Principal, gp: Principal, index: int, child: DemoChild
) -> None:
    patient_id = f"trust-patient-{index}"
    resources = [patient_resource(child, resource_id=patient_id, postcode=child.postcode)]
    resources += [encounter_resource(e, patient_ref=f"Patient/{patient_id}") for e in child.encounters]
    for principal, bundle in (
        (trust, transaction_bundle(resources)),
        (gp, transaction_bundle([patient_resource(child, resource_id=f"gp-{index}", postcode=child.gp_postcode)])),
    ):
        body = json.dumps(bundle).encode()
        _push(session, keyring, principal, parse_bundle(body, "application/fhir+json", max_entries=len(resources)))


def _claim(child: DemoChild, source_record_id: str) -> IdentityClaim:
    return IdentityClaim(
        source_record_id=source_record_id,
        source_version="1",
        nhs_number=child.nhs_number,
        other_identifiers=(),
        given_names=tuple(child.given_names),
        family_name=child.family_name,
        birth_date=child.birth_date,
        sex=child.sex,
        postcode=child.postcode,
        address_lines=tuple(child.address_lines),
    )


def _push_records(
    session: Session, keyring: DataKeyring, principal: Principal, claim: IdentityClaim, records: list[InboundRecord]
) -> None:
    # Police and education wire formats get their adapters in a later issue; until then the demo
    # hands the ingest service the Submission those adapters will produce.
    entries: list[ClaimEntry | RecordEntry] = [ClaimEntry(0, "records[0]", claim)]
    entries += [RecordEntry(i + 1, f"records[{i + 1}]", f"records[{i + 1}].subject", r) for i, r in enumerate(records)]
    _push(session, keyring, principal, Submission(atomic=True, label="records", entries=tuple(entries)))


def _push_police(session: Session, keyring: DataKeyring, principal: Principal, index: int, child: DemoChild) -> None:
    person = f"Person/police-{index}"
    when = datetime(2026, 10, 1, 21, 30, tzinfo=UTC) - timedelta(days=index * 3)
    record = InboundRecord(
        source_record_id=f"Incident/police-{index}-1",
        source_version="1",
        kind="incident",
        category="police.incident",
        occurred_at=when,
        summary="Domestic abuse incident at the home address; the child was present",
        security_labels=frozenset(),
        entered_in_error=False,
        subject_ref=person,
        payload={"incident_type": "domestic_abuse", "child_present": True},
    )
    _push_records(session, keyring, principal, _claim(child, person), [record])


def _push_school(session: Session, keyring: DataKeyring, principal: Principal, index: int, child: DemoChild) -> None:
    pupil = f"Pupil/school-{index}"
    record = InboundRecord(
        source_record_id=f"Enrolment/school-{index}",
        source_version="1",
        kind="enrolment",
        category="education.enrolment",
        occurred_at=datetime(2026, 9, 3, 8, 45, tzinfo=UTC),
        summary="Enrolled at Northshire Community School, year group by age",
        security_labels=frozenset(),
        entered_in_error=False,
        subject_ref=pupil,
        payload={"school": "Northshire Community School"},
    )
    _push_records(session, keyring, principal, _claim(child, pupil), [record])


def _child_id(session: Session, keyring: DataKeyring, child: DemoChild) -> uuid.UUID:
    index = keyring.blind_index(NHS_NUMBER_SCHEME, child.nhs_number)
    child_id = session.scalar(
        select(ChildIdentifier.child_id).where(
            ChildIdentifier.scheme == NHS_NUMBER_SCHEME, ChildIdentifier.blind_index == index
        )
    )
    assert child_id is not None, "the demo child was not linked"
    return child_id


def _client_jwks(settings: Settings, client_id: str) -> dict[str, Any]:
    path = demo_client_key_path(settings, client_id)
    if path.exists():
        key = ECKey.import_key(json.loads(path.read_text()))
    else:
        key = ECKey.generate_key("P-384", private=True, auto_kid=True)
        write_secret_file(path, json.dumps(key.as_dict(private=True)).encode())
    return {"keys": [key.as_dict(private=False)]}

"""Load the synthetic partnership through the real ingest, linking and case services."""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from joserfc.jwk import ECKey
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from adapters import Adapter, Submission, parse_bundle
from adapters.education import EducationAdapter
from adapters.police import PoliceAdapter
from audit import sign_checkpoint
from gateway.auth.principal import Principal, PrincipalKind
from gateway.identity.service import NHS_NUMBER_SCHEME
from gateway.ingest.service import ingest
from gateway.keys import KeyFolder
from gateway.kit.auditor import Auditor
from gateway.kit.crypto import DataKeyring
from gateway.kit.db import build_sessionmaker
from gateway.kit.secrets import write_secret_file
from gateway.mais.service import PERSON_INFO_QUERY
from gateway.models import Case, ChildIdentifier, Client, SchoolContact, SchoolContactRole, Team, TeamMember
from gateway.notifications.routing import Routing, routing_for
from gateway.settings import Settings
from policies import Agency, RecordKind

from .population import synthetic_upn
from .generator import (
    CP_IS_FLAG_SYSTEM,
    SNOMED,
    DemoChild,
    DemoPartnership,
    encounter_resource,
    generate,
    patient_resource,
    transaction_bundle,
)

TRUST = "demo-trust-epr"
GP = "demo-gp-system"
POLICE = "demo-police-rms"
SCHOOLS = "demo-school-mis"
POLICE_KINDS = [RecordKind.IDENTITY, RecordKind.INCIDENT, RecordKind.DOMESTIC_ABUSE_NOTIFICATION,
                RecordKind.MISSING_EPISODE, RecordKind.CUSTODY, RecordKind.INTELLIGENCE]
EDUCATION_KINDS = [RecordKind.IDENTITY, RecordKind.ENROLMENT, RecordKind.ATTENDANCE, RecordKind.EXCLUSION,
                   RecordKind.SAFEGUARDING_CONCERN, RecordKind.EDUCATION_NOTICE]
# Every health record kind the FHIR adapter files (adapters/ukcore.py), and the identity claims.
HEALTH_KINDS = [RecordKind.IDENTITY, RecordKind.ENCOUNTER, RecordKind.CONDITION, RecordKind.OBSERVATION, RecordKind.FLAG,
                RecordKind.CARE_TEAM, RecordKind.RELATED_PERSON, RecordKind.EPISODE_OF_CARE, RecordKind.APPOINTMENT,
                RecordKind.IMMUNIZATION, RecordKind.ALLERGY_INTOLERANCE, RecordKind.MEDICATION, RecordKind.PROCEDURE,
                RecordKind.DOCUMENT_REFERENCE, RecordKind.QUESTIONNAIRE_RESPONSE, RecordKind.HEALTH_RECORD]
# The trust and the force also query ($person-info-query): PERSON_INFO_QUERY beside the kinds they push.
DEMO_CLIENTS: list[tuple[str, str, Agency, Sequence[str]]] = [
    (TRUST, "Northshire University Hospitals NHS Trust EPR", Agency.HEALTH,
     [*HEALTH_KINDS, RecordKind.CONSENT, PERSON_INFO_QUERY]),
    (GP, "Riverside Medical Practice GP system", Agency.HEALTH, HEALTH_KINDS),
    (POLICE, "Northshire Police records management system", Agency.POLICE, [*POLICE_KINDS, PERSON_INFO_QUERY]),
    (SCHOOLS, "Northshire schools MIS", Agency.EDUCATION, EDUCATION_KINDS),
]
POLICE_ADAPTER = PoliceAdapter()
EDUCATION_ADAPTER = EducationAdapter()
DEMO_TODAY = date(2026, 11, 1)
DEMO_SCHOOL_URN = "999001"
# Who receives Operation Encompass notices: the school's DSL (not on any MACPT), and the LA's lead.
DEMO_SCHOOL_CONTACTS = [
    (DEMO_SCHOOL_URN, "dsl@northshire-community-school.example", "Designated safeguarding lead",
     SchoolContactRole.DESIGNATED_SAFEGUARDING_LEAD),
    (None, "education.safeguarding@northshire.example", "Education safeguarding lead",
     SchoolContactRole.LA_EDUCATION_SAFEGUARDING_LEAD),
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
    session.add_all(
        SchoolContact(urn=urn, subject=subject, display_name=name, role=role)
        for urn, subject, name, role in DEMO_SCHOOL_CONTACTS
    )
    session.flush()
    lead = partnership.members[0]
    principals = {cid: Principal(PrincipalKind.CLIENT, cid, agency) for cid, _n, agency, _k in DEMO_CLIENTS}
    pusher = _Pusher(session, keyring, routing_for(settings, settings.load_policy()))
    for index, child in enumerate(partnership.children):
        _push_health(pusher, principals[TRUST], principals[GP], index, child)
        if (DEMO_TODAY - child.birth_date).days > 5 * 365:
            _push_school(pusher, principals[SCHOOLS], index, child)
        if child.allocated:
            session.add(Case(child_id=_child_id(session, keyring, child), team_id=team.id,
                             lead_practitioner=lead.subject, opened_by=lead.subject))
            session.flush()
        # After the school and the case: the notice reaches the school's DSL, the lead practitioner is told.
        if index % 3 == 0:
            _push_police(pusher, principals[POLICE], index, child)
    session.flush()


@dataclass(frozen=True)
class _Pusher:
    """Pushes as a client would, through the ingest service (linking, routing and audit included)."""

    session: Session
    keyring: DataKeyring
    routing: Routing

    def push(self, principal: Principal, submission: Submission) -> None:
        auditor = Auditor(self.session, principal.actor())
        ingest(self.session, principal, auditor=auditor, keyring=self.keyring, routing=self.routing, submission=submission)

    def push_batch(self, principal: Principal, adapter: Adapter, batch: dict[str, Any]) -> None:
        """Push a police/v1 or education/v1 batch as its bytes, parsed as the HTTP route parses them."""
        body = json.dumps(batch).encode()
        self.push(principal, adapter.parse(body, "application/json", max_entries=len(batch["records"])))


def _push_health(
    pusher: _Pusher, trust: Principal, gp: Principal, index: int, child: DemoChild
) -> None:
    patient_id = f"trust-patient-{index}"
    resources = [patient_resource(child, resource_id=patient_id, postcode=child.postcode)]
    resources += [encounter_resource(e, patient_ref=f"Patient/{patient_id}") for e in child.encounters]
    gp_patient = f"gp-{index}"
    gp_resources = [patient_resource(child, resource_id=gp_patient, postcode=child.gp_postcode)]
    if child.allocated and index % 4 == 0:
        gp_resources += _gp_records(index, f"Patient/{gp_patient}")
    for principal, bundle in (
        (trust, transaction_bundle(resources)),
        (gp, transaction_bundle(gp_resources)),
    ):
        body = json.dumps(bundle).encode()
        pusher.push(principal, parse_bundle(body, "application/fhir+json", max_entries=len(bundle["entry"])))


def _gp_records(index: int, patient_ref: str) -> list[dict[str, Any]]:
    """What the GP system holds about some allocated children: a CP-IS style child protection plan
    flag (a key fact of the view), the health visiting team, and a health review the child was
    not brought to."""
    plan_start = DEMO_TODAY - timedelta(days=60)
    review = datetime(2026, 10, 14, 10, 0, tzinfo=UTC)
    return [
        {
            "resourceType": "Flag", "id": f"gp-{index}-cp-plan", "status": "active",
            "code": {"coding": [{"system": CP_IS_FLAG_SYSTEM, "code": "child-protection-plan",
                                 "display": "Child protection plan"}]},
            "subject": {"reference": patient_ref}, "period": {"start": plan_start.isoformat()},
        },
        {
            "resourceType": "CareTeam", "id": f"gp-{index}-care-team", "status": "active",
            "subject": {"reference": patient_ref},
            "participant": [
                {"role": [{"coding": [{"system": SNOMED, "code": "159001000", "display": "Health visitor"}]}],
                 "member": {"display": "Robin Demo-Visitor"}},
                {"role": [{"coding": [{"system": SNOMED, "code": "62247001", "display": "General practitioner"}]}],
                 "member": {"display": "Dr Alex Demo-GP"}},
            ],
        },
        {
            "resourceType": "Appointment", "id": f"gp-{index}-review", "status": "noshow",
            "serviceType": [{"coding": [{"system": SNOMED, "code": "310080006", "display": "Paediatric service"}]}],
            "start": review.isoformat(), "end": (review + timedelta(minutes=30)).isoformat(),
            "participant": [{"actor": {"reference": patient_ref}, "status": "accepted"}],
        },
    ]


def police_person(child: DemoChild, index: int, *, role: str) -> dict[str, Any]:
    """Return demo child `index` as the force's records system holds them (police/v1 `child`)."""
    person: dict[str, Any] = {
        "person_id": f"PER-{index:06d}",
        "given_names": list(child.given_names),
        "family_name": child.family_name,
        "birth_date": child.birth_date.isoformat(),
        "sex": child.sex,
        "address": {"lines": list(child.address_lines), "postcode": child.postcode},
        "role": role,
    }
    # Most police records carry no NHS number: every other child's link by name, birth date and address.
    if index % 2 == 0:
        person["nhs_number"] = child.nhs_number
    return person


POLICE_CONTACT = {"officer": "DC Demo Officer", "unit": "Northshire Public Protection Unit", "phone": "01234 567890"}


def _police_batch(index: int, child: DemoChild) -> dict[str, Any]:
    """The police/v1 batch a force would send about one child: an Operation Encompass notice, and more for some."""
    when = datetime(2026, 10, 1, 21, 30, tzinfo=UTC) - timedelta(days=index * 3)
    name = child.given_names[0]
    records: list[dict[str, Any]] = [
        {
            "record_id": f"OCC-{index:06d}-1",
            "version": "1",
            "kind": "domestic_abuse_notification",
            "occurred_at": when.isoformat(),
            "child": police_person(child, index, role="present"),
            "persons": [{"person_id": f"PER-{index:06d}-A", "given_names": ["Casey"], "family_name": child.family_name,
                         "role": "victim", "relationship_to_child": "parent"}],
            "locations": [{"location_id": f"LOC-{index:06d}", "description": "child's home address",
                           "address": {"lines": list(child.address_lines), "postcode": child.postcode}}],
            "contact": POLICE_CONTACT,
            "details": {
                "incident_at": when.isoformat(),
                "child_present": True,
                "summary": "Officers attended an argument between the parents at the family home; the child was present.",
                "school_notice": f"Police attended a domestic abuse incident at {name}'s home; {name} was present. "
                "Please be alert to their wellbeing today.",
            },
        }
    ]
    if index % 6 == 0:
        for suffix, code, conditions in (("2", "P", None), ("3", "C", "Not to be shared outside the MACPT police member.")):
            grading: dict[str, Any] = {"source_evaluation": "2", "intelligence_assessment": "B", "handling_code": code}
            if conditions:
                grading["handling_conditions"] = conditions
            records.append(
                {
                    "record_id": f"INT-{index:06d}-{suffix}",
                    "version": "1",
                    "kind": "intelligence",
                    "occurred_at": (when - timedelta(days=30)).isoformat(),
                    "child": police_person(child, index, role="subject"),
                    "contact": {"officer": "DS Demo Analyst", "unit": "Northshire Child Exploitation Team"},
                    "details": {"text": "Seen in the company of older youths near the station after school.",
                                "grading": grading},
                }
            )
    return {"schema": "police/v1", "atomic": True, "records": records}


def _push_police(pusher: _Pusher, principal: Principal, index: int, child: DemoChild) -> None:
    pusher.push_batch(principal, POLICE_ADAPTER, _police_batch(index, child))


def _push_school(pusher: _Pusher, principal: Principal, index: int, child: DemoChild) -> None:
    upn = synthetic_upn(random.Random(index))
    pupil = {
        "upn": upn,
        "given_names": list(child.given_names),
        "family_name": child.family_name,
        "birth_date": child.birth_date.isoformat(),
        "sex": child.sex,
        "address": {"lines": list(child.address_lines), "postcode": child.postcode},
    }
    if index % 2 == 1:
        pupil["nhs_number"] = child.nhs_number
    school = {"urn": DEMO_SCHOOL_URN, "name": "Northshire Community School"}
    batch = {
        "schema": "education/v1",
        "atomic": True,
        "records": [
            {
                "record_id": f"ENR-{index:06d}",
                "version": "1",
                "kind": "enrolment",
                "pupil": pupil,
                "school": school,
                "details": {"year_group": str(min(11, max(1, (DEMO_TODAY - child.birth_date).days // 365 - 5))),
                            "start_date": "2026-09-03"},
            },
            {
                "record_id": f"ATT-{index:06d}-2026A",
                "version": "1",
                "kind": "attendance",
                "pupil": pupil,
                "school": school,
                "details": {"period_start": "2026-09-03", "period_end": "2026-10-23", "possible_sessions": 72,
                            "attended_sessions": 72 - index % 9, "absences": {"I": index % 9}},
            },
        ],
    }
    pusher.push_batch(principal, EDUCATION_ADAPTER, batch)


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

"""POST /fhir/R4/Patient/$person-info-query: match and a contact under the ISA, never records; always audited."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import date
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from fhir.resources.R4B import get_fhir_model_class
from httpx import Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from audit import AuditAction, AuditEvent
from gateway.auth.keys import SigningKeys
from gateway.demo.generator import DemoChild
from gateway.kit.crypto import DataKeyring
from gateway.mais.service import NO_UNIQUE_MATCH, PERSON_INFO_QUERY, QUERY_MAX_BYTES, REFERRED
from gateway.models import Client, PersonQueryReferral, ReferralStatus, Team, TeamMember
from gateway.settings import Settings
from policies import load_policy_text
from tests.factories import (
    add_member,
    allocate,
    child_bundle,
    client_token,
    demo_child,
    make_client,
    make_team,
    nhs_number,
    staff_token,
)
from tests.gateway.helpers import child_id_for, push

QUERY = "/fhir/R4/Patient/$person-info-query"
S47 = "http://www.legislation.gov.uk/ukpga/1989/41/section/47"
S47_AS_THE_STANDARD_WRITES_IT = "https://www.legislation.gov.uk/ukpga/1989/41/section/47"
S17 = "http://www.legislation.gov.uk/ukpga/1989/41/section/17"
EDUCATION_ACT = "http://www.legislation.gov.uk/ukpga/1996/56/section/7"
BIRTH_DATE = date(2016, 7, 2)
QUERY_ACTIONS = (
    AuditAction.CLIENT_PERSON_QUERY_ANSWERED,
    AuditAction.CLIENT_PERSON_QUERY_REFERRED,
    AuditAction.CLIENT_PERSON_QUERY_DENIED,
    AuditAction.CLIENT_PERSON_QUERY_REJECTED,
)


def patient(child: DemoChild | None = None, *, with_nhs: bool = True, **fields: Any) -> dict[str, Any]:
    """Return the Patient of a query about a child (its NHS number, name and birth date)."""
    resource: dict[str, Any] = {"resourceType": "Patient"}
    if child is not None:
        if with_nhs:
            resource["identifier"] = [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": child.nhs_number}]
        resource["name"] = [{"family": child.family_name, "given": list(child.given_names)}]
        resource["birthDate"] = child.birth_date.isoformat()
    resource.update(fields)
    return resource


def parameters(resource: dict[str, Any] | None, reason: str | None = S47) -> dict[str, Any]:
    entries: list[dict[str, Any]] = []
    if resource is not None:
        entries.append({"name": "resource", "resource": resource})
    if reason is not None:
        entries.append({"name": "reason", "valueUri": reason})
    return {"resourceType": "Parameters", "parameter": entries}


def named(answer: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return [parameter for parameter in answer["parameter"] if parameter["name"] == name]


def valid_parameters(answer: dict[str, Any]) -> dict[str, Any]:
    """Check that an answer is a valid FHIR Parameters (fhir.resources), and return it."""
    get_fhir_model_class("Parameters").model_validate(answer)
    return answer


def query_events(session: Session) -> list[AuditEvent]:
    return list(session.scalars(select(AuditEvent).where(AuditEvent.action.in_(QUERY_ACTIONS)).order_by(AuditEvent.seq)))


@dataclass
class World:
    """The app, a health system that pushes children, a querying police system and a team."""

    http: TestClient
    app: FastAPI
    session: Session
    settings: Settings
    signing_keys: SigningKeys
    keyring: DataKeyring
    pusher: Client
    querier: Client
    team: Team
    lead: TeamMember

    def child(self, child: DemoChild, *, allocated: bool = True, patient_id: str = "p1") -> uuid.UUID:
        """Push a child's Patient from the health system; open a case for it with the team if asked."""
        response = push(self.http, client_token(self.signing_keys, self.settings, self.pusher), child_bundle(child, patient_id=patient_id))
        assert response.status_code == 200, response.text
        child_id = child_id_for(self.session, self.keyring, child.nhs_number)
        if allocated:
            allocate(self.session, child_id=child_id, team=self.team)
        return child_id

    def ask(
        self, body: dict[str, Any] | bytes, *, client: Client | None = None, token: str | None = None,
        content_type: str = "application/fhir+json",
    ) -> Response:
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        token = token or client_token(self.signing_keys, self.settings, client or self.querier)
        response: Response = self.http.post(
            QUERY, content=content, headers={"Content-Type": content_type, "Authorization": f"Bearer {token}"}
        )
        return response

    def answer(self, body: dict[str, Any] | bytes, **kwargs: Any) -> dict[str, Any]:
        response = self.ask(body, **kwargs)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("application/fhir+json")
        return valid_parameters(response.json())


@pytest.fixture
def world(
    client: TestClient, app: FastAPI, session: Session, settings: Settings, signing_keys: SigningKeys, keyring: DataKeyring
) -> World:
    pusher, _ = make_client(session)
    querier, _ = make_client(session, agency="police", kinds=(PERSON_INFO_QUERY,))
    team = make_team(session, name="Northshire MACPT")
    lead = add_member(session, team, agency="social_care", role="lead_practitioner")
    lead.display_name = "Sam Lead"
    session.flush()
    return World(client, app, session, settings, signing_keys, keyring, pusher, querier, team, lead)


def maisie(**overrides: Any) -> DemoChild:
    values: dict[str, Any] = {"given_names": ["Maisie"], "family_name": "Okonkwo-Reid", "birth_date": BIRTH_DATE}
    values.update(overrides)
    return demo_child(**values)


def test_a_permitted_query_for_a_child_with_an_open_case_answers_match_and_the_teams_contact(world: World) -> None:
    child = maisie()
    child_id = world.child(child)

    response = world.ask(parameters(patient(child)))

    assert response.status_code == 200, response.text
    answer = valid_parameters(response.json())
    assert named(answer, "match") == [{"name": "match", "valueBoolean": True}]
    [contact] = named(answer, "contact")
    organization = contact["resource"]
    get_fhir_model_class("Organization").model_validate(organization)
    assert organization["name"] == "Northshire MACPT"
    assert organization["partOf"] == {"display": "Testshire Council"}
    assert organization["contact"] == [{"name": {"text": "Sam Lead"}}]
    # Never the child's id, records or any identifier of the child.
    for secret in (str(child_id), child.nhs_number, child.family_name, "Maisie", BIRTH_DATE.isoformat()):
        assert secret not in response.text
    event = query_events(world.session)[-1]
    assert event.action == AuditAction.CLIENT_PERSON_QUERY_ANSWERED
    assert (event.child_id, event.actor_id, event.actor_agency) == (child_id, world.querier.id, "police")
    assert (event.lawful_basis, event.policy_version) == ("public_task", "2026.1")
    assert event.detail["reason"] == S47
    assert (event.detail["decision"], event.detail["rule"], event.detail["match"]) == ("permit", "piq.s47", True)
    assert event.detail["contacts"] == [str(world.team.id)]
    # The staff search's keyed hash of the same terms: IG can tell both were about the same number.
    assert event.detail["terms"] == world.keyring.blind_index("search", f"nhs_number={child.nhs_number}")


def test_the_lead_named_by_the_case_is_the_contact_and_one_contact_is_given_per_open_case(world: World) -> None:
    child = maisie()
    child_id = world.child(child)
    other_team = make_team(world.session, name="Southshire MACPT")
    named_lead = add_member(world.session, other_team, agency="health", role="designated_nurse")
    named_lead.display_name = "Dana Named"
    allocate(world.session, child_id=child_id, team=other_team).lead_practitioner = named_lead.subject
    world.session.flush()

    answer = world.answer(parameters(patient(child), S47_AS_THE_STANDARD_WRITES_IT))

    contacts = [c["resource"] for c in named(answer, "contact")]
    assert [(c["name"], c["contact"][0]["name"]["text"]) for c in contacts] == [
        ("Northshire MACPT", "Sam Lead"),
        ("Southshire MACPT", "Dana Named"),
    ]


def test_a_team_with_no_lead_is_a_contact_without_a_name(world: World) -> None:
    child = maisie()
    world.lead.active = False
    world.child(child)

    answer = world.answer(parameters(patient(child)))

    [contact] = named(answer, "contact")
    assert contact["resource"]["name"] == "Northshire MACPT" and "contact" not in contact["resource"]


def test_without_an_nhs_number_the_name_and_birth_date_match_as_the_staff_search_does(world: World) -> None:
    child = maisie()
    child_id = world.child(child)
    # The surname with a space for its hyphen still matches, as linking's comparison allows.
    query = patient(None, name=[{"family": "Okonkwo Reid", "given": ["Maisie"]}], birthDate=BIRTH_DATE.isoformat())

    answer = world.answer(parameters(query))

    assert named(answer, "match")[0]["valueBoolean"] is True
    event = query_events(world.session)[-1]
    assert event.child_id == child_id
    assert event.detail["criteria"] == ["family_name", "given_name", "birth_date"]


def test_a_child_known_here_but_not_open_to_a_team_is_no_match_and_audited_with_the_child(world: World) -> None:
    child = maisie()
    child_id = world.child(child, allocated=False)

    answer = world.answer(parameters(patient(child)))

    assert named(answer, "match") == [{"name": "match", "valueBoolean": False}]
    assert named(answer, "contact") == []
    event = query_events(world.session)[-1]
    assert (event.child_id, event.detail["candidates"], event.detail["open_cases"]) == (child_id, 1, 0)
    assert event.lawful_basis is None  # nothing was disclosed


def test_nobody_matching_is_match_false_with_the_same_words_as_two_matching(world: World) -> None:
    twin_a, twin_b = maisie(), maisie()
    world.child(twin_a, patient_id="a")
    world.child(twin_b, patient_id="b")
    by_demographics = patient(twin_a, with_nhs=False)

    two = world.answer(parameters(by_demographics))
    nobody = world.answer(parameters(patient(maisie(nhs=nhs_number()))))

    assert two == nobody  # two candidates say no more than none
    assert named(two, "match") == [{"name": "match", "valueBoolean": False}]
    assert named(two, "outcome")[0]["resource"]["issue"][0]["diagnostics"] == NO_UNIQUE_MATCH
    two_event, nobody_event = query_events(world.session)[-2:]
    assert (two_event.child_id, two_event.detail["candidates"], two_event.detail["match"]) == (None, 2, False)
    assert (nobody_event.child_id, nobody_event.detail["candidates"]) == (None, 0)


def test_a_reason_no_rule_names_is_denied_by_default_and_nothing_is_matched(world: World) -> None:
    child = maisie()
    world.child(child)

    known = world.ask(parameters(patient(child), EDUCATION_ACT))
    unknown = world.ask(parameters(patient(maisie(nhs=nhs_number())), EDUCATION_ACT))

    assert known.status_code == unknown.status_code == 403
    assert known.headers["content-type"].startswith("application/fhir+json")
    assert known.json() == unknown.json()  # a refusal says nothing about whether the child is known
    get_fhir_model_class("OperationOutcome").model_validate(known.json())
    assert known.json()["issue"][0]["code"] == "forbidden"
    event = query_events(world.session)[-2]
    assert event.action == AuditAction.CLIENT_PERSON_QUERY_DENIED and event.outcome == "denied"
    assert event.child_id is None and "terms" not in event.detail and "candidates" not in event.detail
    assert (event.detail["reason"], event.detail["decision"], event.detail["rule"]) == (EDUCATION_ACT, "deny", None)


def test_a_rule_that_denies_an_agency_wins_over_one_that_permits_it(world: World) -> None:
    shipped = world.app.state.policy
    world.app.state.policy = load_policy_text(
        json.dumps(
            {
                **shipped.model_dump(mode="json", exclude={"person_info_queries"}),
                "person_info_queries": [
                    {"id": "all", "description": "d", "reasons": [S47], "agencies": ["police"], "decision": "permit"},
                    {"id": "no-police", "description": "d", "reasons": [S47], "agencies": ["police"], "decision": "deny"},
                ],
            }
        )
    )
    child = maisie()
    world.child(child)

    response = world.ask(parameters(patient(child)))

    assert response.status_code == 403
    assert query_events(world.session)[-1].detail["rule"] == "no-police"


def test_a_query_for_review_waits_on_the_allocated_teams_queue_and_answers_no_match(world: World) -> None:
    child = maisie()
    child_id = world.child(child)

    answer = world.answer(parameters(patient(child), S17))

    assert named(answer, "match") == []
    assert named(answer, "outcome")[0]["resource"]["issue"][0]["diagnostics"] == REFERRED
    [reference] = named(answer, "reference")
    assert reference["valueIdentifier"]["system"] == "urn:macpt-gateway:person-info-query"
    [referral] = world.session.scalars(select(PersonQueryReferral)).all()
    assert str(referral.query_id) == reference["valueIdentifier"]["value"]
    assert (referral.child_id, referral.team_id, referral.status) == (child_id, world.team.id, ReferralStatus.PENDING)
    assert (referral.client_id, referral.agency, referral.reason) == (world.querier.id, "police", S17)
    # The lead practitioner's queue: the referrals of the teams they lead.
    queue = world.session.scalars(
        select(PersonQueryReferral).join(TeamMember, TeamMember.team_id == PersonQueryReferral.team_id).where(
            TeamMember.subject == world.lead.subject, TeamMember.role == "lead_practitioner"
        )
    ).all()
    assert [entry.id for entry in queue] == [referral.id]
    event = query_events(world.session)[-1]
    assert event.action == AuditAction.CLIENT_PERSON_QUERY_REFERRED
    assert (event.child_id, event.detail["decision"], event.detail["rule"]) == (child_id, "review", "piq.s17-s11")
    assert (event.detail["query"], event.detail["referred_to"]) == (str(referral.query_id), [str(world.team.id)])


def test_a_query_for_review_about_nobody_answers_alike_and_queues_nothing(world: World) -> None:
    answer = world.answer(parameters(patient(maisie()), S17))

    assert named(answer, "outcome")[0]["resource"]["issue"][0]["diagnostics"] == REFERRED
    assert len(named(answer, "reference")) == 1 and named(answer, "match") == []
    assert world.session.scalars(select(PersonQueryReferral)).all() == []
    event = query_events(world.session)[-1]
    assert (event.action, event.child_id, event.detail["referred_to"]) == (
        AuditAction.CLIENT_PERSON_QUERY_REFERRED, None, []
    )


def test_an_invalid_nhs_number_is_422_naming_the_identifier(world: World) -> None:
    bad = patient(None, identifier=[{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9434765918"}])

    response = world.ask(parameters(bad))

    assert response.status_code == 422
    outcome = response.json()
    get_fhir_model_class("OperationOutcome").model_validate(outcome)
    [issue] = outcome["issue"]
    assert issue["expression"] == ["Parameters.parameter[resource].resource.identifier[0].value"]
    assert "Modulus 11" in issue["diagnostics"] and "9434765918" not in response.text
    event = query_events(world.session)[-1]
    assert (event.action, event.outcome) == (AuditAction.CLIENT_PERSON_QUERY_REJECTED, "failure")
    assert "9434765918" not in json.dumps(event.detail)


@pytest.mark.parametrize(
    ("body", "expression"),
    [
        (parameters(patient(maisie()), reason=None), "Parameters.parameter[reason]"),
        (parameters(None), "Parameters.parameter[resource]"),
        (parameters(patient(maisie()), reason="not a uri"), "Parameters.parameter[reason].valueUri"),
        (parameters(patient(None, birthDate="2016-07-02")), "Parameters.parameter[resource].resource.name"),
        (parameters(patient(None, name=[{"family": "Reid"}])), "Parameters.parameter[resource].resource.birthDate"),
        (parameters(patient(None, name=[{"family": "--"}], birthDate="2016")), "Parameters.parameter[resource].resource.birthDate"),
        (parameters(patient(None, name=[{"family": "1234"}], birthDate="2016-07-02")), "Parameters.parameter[resource].resource.name"),
        (parameters({"resourceType": "Organization", "name": "x"}), "Parameters.parameter[resource].resource"),
        (
            {"resourceType": "Parameters", "parameter": [{"name": "onlyCertainMatches", "valueBoolean": True}]},
            "Parameters.parameter[0].name",
        ),
    ],
)
def test_a_query_that_cannot_be_answered_is_422_naming_the_field(world: World, body: dict[str, Any], expression: str) -> None:
    response = world.ask(body)

    assert response.status_code == 422, response.text
    assert expression in [e for issue in response.json()["issue"] for e in issue.get("expression", [])]
    assert query_events(world.session)[-1].action == AuditAction.CLIENT_PERSON_QUERY_REJECTED


def test_two_reasons_or_two_nhs_numbers_are_refused(world: World) -> None:
    body = parameters(
        patient(
            None,
            identifier=[
                {"system": "https://fhir.nhs.uk/Id/nhs-number", "value": nhs_number()},
                {"system": "https://fhir.nhs.uk/Id/nhs-number", "value": nhs_number()},
            ],
        )
    )
    body["parameter"].append({"name": "reason", "valueUri": S17})

    response = world.ask(body)

    assert response.status_code == 422
    expressions = {e for issue in response.json()["issue"] for e in issue["expression"]}
    assert expressions == {"Parameters.parameter[reason]", "Parameters.parameter[resource].resource.identifier"}


def test_a_body_that_is_not_a_valid_parameters_is_400(world: World) -> None:
    not_parameters = world.ask(patient(maisie()))
    not_json = world.ask(b"{")

    assert (not_parameters.status_code, not_json.status_code) == (400, 400)
    assert [e.action for e in query_events(world.session)[-2:]] == [AuditAction.CLIENT_PERSON_QUERY_REJECTED] * 2


def test_a_query_in_fhir_xml_is_answered(world: World) -> None:
    child = maisie()
    world.child(child)
    xml = f"""<?xml version="1.0" encoding="UTF-8"?>
<Parameters xmlns="http://hl7.org/fhir">
  <parameter>
    <name value="resource"/>
    <resource>
      <Patient>
        <identifier><system value="https://fhir.nhs.uk/Id/nhs-number"/><value value="{child.nhs_number}"/></identifier>
        <name><family value="{child.family_name}"/><given value="Maisie"/></name>
        <birthDate value="{BIRTH_DATE.isoformat()}"/>
      </Patient>
    </resource>
  </parameter>
  <parameter><name value="reason"/><valueUri value="{S47}"/></parameter>
</Parameters>"""

    answer = world.answer(xml.encode(), content_type="application/fhir+xml")

    assert named(answer, "match")[0]["valueBoolean"] is True


def test_a_wrong_content_type_is_415_and_audited(world: World) -> None:
    response = world.ask(b"resource=x&reason=y", content_type="application/x-www-form-urlencoded")

    assert response.status_code == 415
    assert "application/fhir+json" in response.json()["issue"][0]["diagnostics"]
    event = query_events(world.session)[-1]
    assert (event.action, event.detail["reason_refused"]) == (AuditAction.CLIENT_PERSON_QUERY_REJECTED, "media_type")


def test_a_body_over_the_limit_is_413_and_audited(world: World) -> None:
    body = parameters(patient(maisie(), text={"status": "generated", "div": "x" * QUERY_MAX_BYTES}))

    response = world.ask(body)

    assert response.status_code == 413
    assert query_events(world.session)[-1].detail["reason_refused"] == "too_large"


def test_a_staff_token_is_refused(world: World) -> None:
    token = staff_token(world.signing_keys, world.settings, world.lead)

    response = world.ask(parameters(patient(maisie())), token=token)

    assert response.status_code == 403
    assert response.headers["content-type"].startswith("application/fhir+json")
    assert "agency systems" in response.json()["issue"][0]["diagnostics"]
    assert query_events(world.session) == []


def test_an_inactive_client_is_refused_and_audited(world: World) -> None:
    world.querier.active = False
    world.session.flush()

    response = world.ask(parameters(patient(maisie())))

    assert response.status_code == 403
    event = query_events(world.session)[-1]
    assert (event.detail["reason_refused"], event.outcome) == ("client_inactive", "denied")


def test_a_client_not_registered_for_queries_is_refused(world: World) -> None:
    child = maisie()
    world.child(child)

    response = world.ask(parameters(patient(child)), client=world.pusher)

    assert response.status_code == 403
    assert PERSON_INFO_QUERY in response.json()["issue"][0]["diagnostics"]
    assert query_events(world.session)[-1].detail["reason_refused"] == "client_not_registered"


def test_every_query_is_audited_with_its_reason_and_no_personal_value(world: World) -> None:
    child = maisie(given_names=["Zanele"], family_name="Quartermaine")
    world.child(child)
    queries = [
        parameters(patient(child), S47),  # permit, matched
        parameters(patient(child, with_nhs=False), S47),  # permit, by demographics
        parameters(patient(child), S17),  # review
        parameters(patient(child), EDUCATION_ACT),  # deny
        parameters(patient(child), reason=None),  # refused input
    ]

    statuses = [world.ask(query).status_code for query in queries]

    assert statuses == [200, 200, 200, 403, 422]
    events = query_events(world.session)
    assert [event.action for event in events] == [
        AuditAction.CLIENT_PERSON_QUERY_ANSWERED,
        AuditAction.CLIENT_PERSON_QUERY_ANSWERED,
        AuditAction.CLIENT_PERSON_QUERY_REFERRED,
        AuditAction.CLIENT_PERSON_QUERY_DENIED,
        AuditAction.CLIENT_PERSON_QUERY_REJECTED,
    ]
    assert [event.detail.get("reason") for event in events[:4]] == [S47, S47, S17, EDUCATION_ACT]
    for event in events:
        stored = json.dumps(event.detail).casefold()
        for personal in (child.nhs_number, "zanele", "quartermaine", BIRTH_DATE.isoformat()):
            assert personal not in stored, (event.action, personal)

"""Operation Encompass notices and notifications: routed in the push, read, acknowledged, escalated.

Records go through the real ingest service (linking, filing, routing and audit) as the police and
education adapters hand them over; the inboxes are read over HTTP as staff read them.
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from adapters import (
    ClaimEntry,
    EntryStatus,
    IdentityClaim,
    InboundRecord,
    InvolvedPerson,
    RecordEntry,
    SchoolPlacement,
    Submission,
)
from audit import AuditAction, ReviewReason, decode_items
from gateway.auth.keys import SigningKeys
from gateway.auth.principal import Principal, PrincipalKind
from gateway.auth.tokens import mint_access_token
from gateway.ingest.service import ingest
from gateway.kit.auditor import Auditor
from gateway.kit.crypto import DataKeyring
from gateway.models import Client, InboxEntry, InboxKind, ReviewEntry, SchoolContact, SchoolContactRole
from gateway.notifications.routing import Routing
from gateway.notifications.service import escalate_overdue
from gateway.notifications.sweeper import SWEEPER
from gateway.settings import Settings
from policies import Agency, CaseStatus, default_policy
from tests.factories import add_member, allocate, make_client, make_team, staff_token
from tests.gateway.helpers import get_view, last_event

LONDON = ZoneInfo("Europe/London")
URN = "999001"
ROUTING = Routing(default_policy())


# -- the deadline -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arrived", "due"),
    [
        (datetime(2026, 11, 23, 21, 30, tzinfo=LONDON), datetime(2026, 11, 24, 8, 30, tzinfo=LONDON)),  # Mon night
        (datetime(2026, 11, 24, 7, 0, tzinfo=LONDON), datetime(2026, 11, 24, 8, 30, tzinfo=LONDON)),  # before school
        (datetime(2026, 11, 24, 8, 30, tzinfo=LONDON), datetime(2026, 11, 25, 8, 30, tzinfo=LONDON)),  # at the bell
        (datetime(2026, 11, 27, 17, 0, tzinfo=LONDON), datetime(2026, 11, 30, 8, 30, tzinfo=LONDON)),  # Friday
        (datetime(2026, 11, 28, 12, 0, tzinfo=LONDON), datetime(2026, 11, 30, 8, 30, tzinfo=LONDON)),  # Saturday
        (datetime(2026, 3, 28, 23, 0, tzinfo=UTC), datetime(2026, 3, 30, 8, 30, tzinfo=LONDON)),  # clocks go forward
    ],
)
def test_a_notice_is_due_at_the_start_of_the_next_school_day(arrived: datetime, due: datetime) -> None:
    deadline = ROUTING.deadline_after(arrived.astimezone(UTC))

    assert deadline == due and deadline.tzinfo == UTC


def test_the_school_day_start_is_configurable() -> None:
    early = Routing(default_policy(), school_day_start=time(8, 0))

    assert early.deadline_after(datetime(2026, 11, 24, 7, 59, tzinfo=UTC)) == datetime(2026, 11, 24, 8, 0, tzinfo=UTC)


# -- pushing through the ingest service --------------------------------------------------------


def _principal(client: Client) -> Principal:
    return Principal(PrincipalKind.CLIENT, client.id, client.agency)


def _claim(person: str, *, given: str = "Ada", family: str = "Testchild", upn: str | None = None) -> IdentityClaim:
    return IdentityClaim(
        source_record_id=person,
        source_version="1",
        nhs_number=None,
        upn=upn,
        other_identifiers=(),
        given_names=(given,),
        family_name=family,
        birth_date=date(2016, 5, 4),
        sex="female",
        postcode="ZZ99 3VZ",
        address_lines=("1 Test Row",),
    )


def _record(record_id: str, subject: str, **fields: Any) -> InboundRecord:
    base: dict[str, Any] = {
        "source_record_id": record_id,
        "source_version": "1",
        "kind": "domestic_abuse_notification",
        "category": "police.domestic_abuse",
        "occurred_at": datetime(2026, 11, 23, 21, 30, tzinfo=UTC),
        "summary": "Domestic abuse incident at the home address; the child was present",
        "security_labels": frozenset(),
        "entered_in_error": False,
        "subject_ref": subject,
        "payload": {"record_id": record_id},
        "notice": "Police attended a domestic abuse incident at Ada's home last night. Ada was present.",
        "contact": "DC Example, Public Protection Unit",
    }
    base.update(fields)
    return InboundRecord(**base)


def _push(session: Session, keyring: DataKeyring, client: Client, claim: IdentityClaim, *records: InboundRecord) -> None:
    entries: list[ClaimEntry | RecordEntry] = [ClaimEntry(0, "records[0].child", claim)]
    entries += [RecordEntry(i + 1, f"records[{i}]", f"records[{i}].child", r) for i, r in enumerate(records)]
    outcomes = ingest(
        session,
        _principal(client),
        auditor=Auditor(session, _principal(client).actor()),
        keyring=keyring,
        routing=ROUTING,
        submission=Submission(atomic=True, label="test batch", entries=tuple(entries)),
    )
    session.commit()  # the audit events are appended at commit
    assert all(o.status is not EntryStatus.REJECTED for o in outcomes), outcomes


def _police(session: Session) -> Client:
    kinds = ("identity", "incident", "domestic_abuse_notification", "missing_episode", "custody", "intelligence")
    return make_client(session, agency=Agency.POLICE, kinds=kinds)[0]


def _school(session: Session) -> Client:
    kinds = ("identity", "enrolment", "attendance", "exclusion", "safeguarding_concern", "education_notice")
    return make_client(session, agency=Agency.EDUCATION, kinds=kinds)[0]


def _enrol(session: Session, keyring: DataKeyring, school: Client, claim: IdentityClaim, placement: SchoolPlacement) -> None:
    record = _record(
        f"enrol-{uuid.uuid4().hex[:6]}",
        claim.source_record_id,
        kind="enrolment" if placement.urn else "education_notice",
        category="education.enrolment" if placement.urn else "education.ehe_cme",
        summary="Enrolled",
        notice=None,
        contact=None,
        school=placement,
    )
    _push(session, keyring, school, claim, record)


def _contact(session: Session, urn: str | None, role: SchoolContactRole) -> SchoolContact:
    contact = SchoolContact(
        urn=urn, subject=f"dsl.{uuid.uuid4().hex[:8]}@school.test.example", display_name="Test DSL", role=role
    )
    session.add(contact)
    session.flush()
    return contact


def _token(keys: SigningKeys, settings: Settings, subject: str, agency: Agency, role: str) -> dict[str, str]:
    principal = Principal(PrincipalKind.STAFF, subject, agency, role)
    token = mint_access_token(
        keys, issuer=settings.issuer, audience=settings.audience, principal=principal, ttl_seconds=300
    )
    return {"Authorization": f"Bearer {token}"}


def _entries(session: Session, recipient: str, kind: InboxKind = InboxKind.ENCOMPASS) -> list[InboxEntry]:
    session.expire_all()
    return list(session.scalars(select(InboxEntry).where(InboxEntry.recipient == recipient, InboxEntry.kind == kind)))


@pytest.fixture
def lead_of_school(session: Session) -> tuple[SchoolContact, SchoolContact]:
    """The school's DSL, and the LA's education safeguarding lead."""
    return (
        _contact(session, URN, SchoolContactRole.DESIGNATED_SAFEGUARDING_LEAD),
        _contact(session, None, SchoolContactRole.LA_EDUCATION_SAFEGUARDING_LEAD),
    )


# -- Operation Encompass -------------------------------------------------------------------------


def test_a_notice_reaches_the_dsl_of_the_childs_school_who_reads_the_notice_only_and_acknowledges_it(
    client: TestClient,
    session: Session,
    settings: Settings,
    signing_keys: SigningKeys,
    keyring: DataKeyring,
    lead_of_school: tuple[SchoolContact, SchoolContact],
) -> None:
    dsl, la_lead = lead_of_school
    police, school = _police(session), _school(session)
    pupil = _claim("pupil/A123", upn=None)
    _enrol(session, keyring, school, pupil, SchoolPlacement(URN, "on_roll", date(2026, 9, 3)))
    # The police know the child by their own person id; scored matching links the two.
    _push(session, keyring, police, _claim("person/P-77"), _record("DA-1", "person/P-77"))

    (entry,) = _entries(session, dsl.subject)
    assert entry.urn == URN and entry.deadline == ROUTING.deadline_after(entry.created_at)
    assert _entries(session, la_lead.subject) == []  # the school has a DSL: the LA is not told
    routed = last_event(session, AuditAction.ENCOMPASS_NOTICE_ROUTED)
    assert routed.child_id == entry.child_id and routed.detail["routed_to"] == "school"
    assert routed.lawful_basis == "public_task"

    headers = _token(signing_keys, settings, dsl.subject, Agency.EDUCATION, "designated_safeguarding_lead")
    inbox = client.get("/api/v1/encompass/inbox", headers=headers)
    assert inbox.status_code == 200, inbox.text
    body = inbox.json()
    (notice,) = body["notices"]
    assert body["unacknowledged"] == 1
    assert notice["notice"].startswith("Police attended a domestic abuse incident")
    assert notice["pupil"] == {"given_names": ["Ada"], "family_name": "Testchild", "birth_date": "2016-05-04"}
    assert notice["contact"] == "DC Example, Public Protection Unit" and notice["school_urn"] == URN
    assert "summary" not in notice and "Domestic abuse incident at the home address" not in inbox.text
    listed = last_event(session, AuditAction.ENCOMPASS_INBOX_LISTED)
    assert listed.actor_id == dsl.subject and listed.child_id == entry.child_id
    assert decode_items(listed.items) == [(entry.item_id, "disclose", "encompass.notice")]

    acknowledged = client.post(f"/api/v1/encompass/inbox/{entry.id}/acknowledge", headers=headers)
    again = client.post(f"/api/v1/encompass/inbox/{entry.id}/acknowledge", headers=headers)
    assert acknowledged.status_code == again.status_code == 200
    assert acknowledged.json()["acknowledged_at"] == again.json()["acknowledged_at"]  # once
    assert acknowledged.json()["late"] is False
    event = last_event(session, AuditAction.ENCOMPASS_NOTICE_ACKNOWLEDGED)
    assert event.actor_id == dsl.subject and event.detail["late"] is False
    assert client.get("/api/v1/encompass/inbox", headers=headers).json()["unacknowledged"] == 0


def test_someone_elses_notice_is_not_found_and_a_non_contact_has_no_inbox(
    client: TestClient,
    session: Session,
    settings: Settings,
    signing_keys: SigningKeys,
    keyring: DataKeyring,
    lead_of_school: tuple[SchoolContact, SchoolContact],
) -> None:
    dsl, la_lead = lead_of_school
    police, school = _police(session), _school(session)
    pupil = _claim("pupil/B1")
    _enrol(session, keyring, school, pupil, SchoolPlacement(URN, "on_roll", date(2026, 9, 3)))
    _push(session, keyring, police, _claim("person/P-1"), _record("DA-2", "person/P-1"))
    (entry,) = _entries(session, dsl.subject)

    la_headers = _token(signing_keys, settings, la_lead.subject, Agency.EDUCATION, "la_lead")
    stranger = _token(signing_keys, settings, "nosy@test.example", Agency.EDUCATION, "teacher")

    assert client.post(f"/api/v1/encompass/inbox/{entry.id}/acknowledge", headers=la_headers).status_code == 404
    assert client.get("/api/v1/encompass/inbox", headers=la_headers).json()["notices"] == []
    refused = client.get("/api/v1/encompass/inbox", headers=stranger)
    assert refused.status_code == 403 and "safeguarding contact" in refused.json()["detail"]
    assert last_event(session, AuditAction.ENCOMPASS_INBOX_LISTED).outcome == "denied"
    assert _entries(session, dsl.subject)[0].acknowledged_at is None


@pytest.mark.parametrize(
    "placement",
    [
        SchoolPlacement(None, "elective_home_education", date(2026, 10, 1)),
        SchoolPlacement(None, "missing_education", date(2026, 10, 1)),
        SchoolPlacement(URN, "left", date(2026, 10, 1)),
        None,
    ],
    ids=["ehe", "cme", "left", "never-placed"],
)
def test_a_child_with_no_current_school_goes_to_the_las_education_safeguarding_lead(
    session: Session,
    keyring: DataKeyring,
    lead_of_school: tuple[SchoolContact, SchoolContact],
    placement: SchoolPlacement | None,
) -> None:
    dsl, la_lead = lead_of_school
    police, school = _police(session), _school(session)
    pupil = _claim("pupil/C1")
    _enrol(session, keyring, school, pupil, SchoolPlacement(URN, "on_roll", date(2025, 9, 3)))
    if placement is not None:
        _enrol(session, keyring, school, replace(pupil, source_version="2"), placement)
    else:  # a child the schools never placed (a different child, the police's only)
        pupil = _claim("person/none", given="Zed", family="Otherchild")
    _push(session, keyring, police, _claim("person/P-2", given=pupil.given_names[0], family=pupil.family_name or ""),
          _record("DA-3", "person/P-2"))

    assert _entries(session, dsl.subject) == []
    (entry,) = _entries(session, la_lead.subject)
    assert entry.urn is None and entry.recipient_role == "la_education_safeguarding_lead"
    assert last_event(session, AuditAction.ENCOMPASS_NOTICE_ROUTED).detail["routed_to"] == "local_authority"


def test_a_school_with_no_registered_dsl_falls_back_to_the_la_and_with_nobody_the_failure_is_flagged(
    session: Session, keyring: DataKeyring
) -> None:
    police, school = _police(session), _school(session)
    pupil = _claim("pupil/D1")
    _enrol(session, keyring, school, pupil, SchoolPlacement("999777", "on_roll", date(2026, 9, 3)))

    _push(session, keyring, police, _claim("person/P-3"), _record("DA-4", "person/P-3"))

    unrouted = last_event(session, AuditAction.ENCOMPASS_NOTICE_UNROUTED)
    assert unrouted.outcome == "failure" and unrouted.detail["recipients"] == 0
    assert unrouted.detail["review"] == [ReviewReason.ENCOMPASS_UNACKNOWLEDGED.value]
    session.expire_all()
    assert session.scalar(select(ReviewEntry).where(ReviewEntry.seq == unrouted.seq)) is not None

    la_lead = _contact(session, None, SchoolContactRole.LA_EDUCATION_SAFEGUARDING_LEAD)
    _push(session, keyring, police, _claim("person/P-3"), _record("DA-5", "person/P-3"))
    (entry,) = _entries(session, la_lead.subject)
    assert entry.urn is None


@pytest.mark.parametrize(
    ("change", "rule"),
    [
        ({"detrimental": True}, "builtin.detrimental"),
        ({"security_labels": frozenset({"PSY"})}, "builtin.special-category"),
        ({"entered_in_error": True}, "builtin.entered-in-error"),
    ],
)
def test_the_isa_decides_first_no_notice_for_a_detrimental_sensitive_or_retracted_record(
    session: Session, keyring: DataKeyring, lead_of_school: tuple[SchoolContact, SchoolContact], change: dict[str, Any],
    rule: str,
) -> None:
    dsl, _la = lead_of_school
    police, school = _police(session), _school(session)
    pupil = _claim("pupil/E1")
    _enrol(session, keyring, school, pupil, SchoolPlacement(URN, "on_roll", date(2026, 9, 3)))

    _push(session, keyring, police, _claim("person/P-4"), _record("DA-6", "person/P-4", **change))

    assert _entries(session, dsl.subject) == []
    assert last_event(session, AuditAction.ENCOMPASS_NOTICE_WITHHELD).detail["rule"] == rule


def test_a_new_version_of_a_notice_is_not_a_second_notice_and_a_later_retraction_withdraws_it(
    client: TestClient,
    session: Session,
    settings: Settings,
    signing_keys: SigningKeys,
    keyring: DataKeyring,
    lead_of_school: tuple[SchoolContact, SchoolContact],
) -> None:
    dsl, _la = lead_of_school
    police, school = _police(session), _school(session)
    pupil = _claim("pupil/F1")
    _enrol(session, keyring, school, pupil, SchoolPlacement(URN, "on_roll", date(2026, 9, 3)))
    _push(session, keyring, police, _claim("person/P-5"), _record("DA-7", "person/P-5"))

    _push(session, keyring, police, _claim("person/P-5"), _record("DA-7", "person/P-5", source_version="2"))
    assert len(_entries(session, dsl.subject)) == 1

    _push(session, keyring, police, _claim("person/P-5"),
          _record("DA-7", "person/P-5", source_version="3", entered_in_error=True))
    headers = _token(signing_keys, settings, dsl.subject, Agency.EDUCATION, "designated_safeguarding_lead")
    (notice,) = client.get("/api/v1/encompass/inbox", headers=headers).json()["notices"]
    assert notice["withdrawn"] is True and notice["notice"] is None and notice["pupil"] is None


def test_a_notice_nobody_acknowledged_by_its_deadline_is_escalated_once_to_ig_and_the_lead_practitioner(
    client: TestClient,
    session: Session,
    settings: Settings,
    signing_keys: SigningKeys,
    keyring: DataKeyring,
    lead_of_school: tuple[SchoolContact, SchoolContact],
) -> None:
    dsl, _la = lead_of_school
    police, school = _police(session), _school(session)
    pupil = _claim("pupil/G1")
    _enrol(session, keyring, school, pupil, SchoolPlacement(URN, "on_roll", date(2026, 9, 3)))
    _push(session, keyring, police, _claim("person/P-6"), _record("DA-8", "person/P-6"))
    (entry,) = _entries(session, dsl.subject)
    team = make_team(session)
    allocate(session, child_id=entry.child_id, team=team)
    lead = add_member(session, team, agency="social_care", role="lead_practitioner")
    auditor = Auditor(session, SWEEPER)
    assert entry.deadline is not None

    assert escalate_overdue(session, auditor, now=entry.deadline - timedelta(minutes=1)) == 0
    assert escalate_overdue(session, auditor, now=entry.deadline + timedelta(minutes=1)) == 1
    assert escalate_overdue(session, auditor, now=entry.deadline + timedelta(minutes=2)) == 0  # once
    session.commit()

    overdue = last_event(session, AuditAction.ENCOMPASS_NOTICE_OVERDUE)
    assert overdue.child_id == entry.child_id and overdue.detail["lead_practitioners_told"] == 1
    assert session.scalar(select(ReviewEntry.reason).where(ReviewEntry.seq == overdue.seq)) == "encompass_unacknowledged"
    (escalation,) = _entries(session, lead.subject, InboxKind.ENCOMPASS_OVERDUE)
    assert escalation.about_entry_id == entry.id

    listed = client.get("/api/v1/notifications", headers={"Authorization": f"Bearer {staff_token(signing_keys, settings, lead)}"})
    messages = [n["message"] for n in listed.json()["notifications"] if n["kind"] == "encompass_overdue"]
    assert messages == ["An Operation Encompass notice to the child's school was not acknowledged by the start of the school day."]


def test_an_acknowledged_notice_is_never_escalated(
    session: Session, keyring: DataKeyring, lead_of_school: tuple[SchoolContact, SchoolContact]
) -> None:
    dsl, _la = lead_of_school
    deputy = _contact(session, URN, SchoolContactRole.DEPUTY_DESIGNATED_SAFEGUARDING_LEAD)
    police, school = _police(session), _school(session)
    pupil = _claim("pupil/H1")
    _enrol(session, keyring, school, pupil, SchoolPlacement(URN, "on_roll", date(2026, 9, 3)))
    _push(session, keyring, police, _claim("person/P-7"), _record("DA-9", "person/P-7"))
    (to_dsl,) = _entries(session, dsl.subject)
    (to_deputy,) = _entries(session, deputy.subject)
    to_deputy.acknowledged_at = datetime.now(UTC)  # the deputy has it: the school has it
    session.flush()
    assert to_dsl.deadline is not None

    assert escalate_overdue(session, Auditor(session, SWEEPER), now=to_dsl.deadline + timedelta(hours=1)) == 0


# -- notifications -------------------------------------------------------------------------------


def test_a_notifiable_record_for_a_child_with_an_open_case_reaches_the_lead_practitioner_as_the_view_would_show_it(
    client: TestClient, session: Session, settings: Settings, signing_keys: SigningKeys, keyring: DataKeyring
) -> None:
    police = _police(session)
    _push(session, keyring, police, _claim("person/P-8"), _record("INC-0", "person/P-8", kind="incident",
                                                                     category="police.incident", notice=None))
    child_id = last_event(session, AuditAction.CLIENT_RECORDS_PUSHED).child_id
    assert child_id is not None
    team = make_team(session)
    allocate(session, child_id=child_id, team=team)
    lead = add_member(session, team, agency="social_care", role="lead_practitioner")
    police_member = add_member(session, team, agency="police", role="police_officer")

    missing = _record("MISS-1", "person/P-8", kind="missing_episode", category="police.missing_episode", notice=None)
    withheld = _record("INC-1", "person/P-8", kind="incident", category="police.incident", notice=None, detrimental=True)
    intelligence = _record("INT-1", "person/P-8", kind="intelligence", category="police.intelligence", notice=None,
                           police_handling_code="C", grading="2/B/C")
    sensitive = _record("INC-2", "person/P-8", kind="incident", category="police.incident", notice=None,
                        security_labels=frozenset({"gender-identity-history"}))
    _push(session, keyring, police, _claim("person/P-8"), missing, withheld, intelligence, sensitive)

    assert _entries(session, police_member.subject, InboxKind.NOTIFICATION) == []  # the lead practitioner only
    headers = {"Authorization": f"Bearer {staff_token(signing_keys, settings, lead)}"}
    body = client.get("/api/v1/notifications", headers=headers).json()
    # Intelligence is not notifiable in the shipped ISA; the other three are, each as the view decides it.
    by_item = {n["message"]: n for n in body["notifications"]}
    assert sorted((n["record_kind"], n["decision"]) for n in body["notifications"]) == [
        ("incident", "indicate"), ("incident", "indicate"), ("missing_episode", "disclose")
    ]
    assert body["unread"] == 3
    assert "New police record: missing episode. Open the child's view to read it." in by_item
    assert any("s16LA" in message for message in by_item) and any("gender identity" in m for m in by_item)
    listed = last_event(session, AuditAction.NOTIFICATIONS_LISTED)
    assert listed.child_id == child_id and len(decode_items(listed.items)) == 3
    created = last_event(session, AuditAction.NOTIFICATION_CREATED)
    assert len(created.detail["items"]) == 3

    # The police retract the missing episode: the view would no longer show it, nor does the inbox.
    _push(session, keyring, police, _claim("person/P-8"), replace(missing, source_version="2", entered_in_error=True))
    after = client.get("/api/v1/notifications", headers=headers).json()
    assert [n["record_kind"] for n in after["notifications"]] == ["incident", "incident"]
    by_kind = {(n["record_kind"], n["decision"]): n for n in body["notifications"]}

    entry_id = by_kind[("missing_episode", "disclose")]["id"]
    read = client.post(f"/api/v1/notifications/{entry_id}/read", headers=headers)
    assert read.status_code == 200 and last_event(session, AuditAction.NOTIFICATION_READ).actor_id == lead.subject
    other = {"Authorization": f"Bearer {staff_token(signing_keys, settings, police_member)}"}
    assert client.post(f"/api/v1/notifications/{entry_id}/read", headers=other).status_code == 404

    incident_id = next(n["id"] for n in after["notifications"])
    client.post(f"/api/v1/notifications/{incident_id}/read", headers=headers)
    assert client.get("/api/v1/notifications", headers=headers).json()["unread"] == 1


def test_no_notification_without_an_open_case_and_none_listed_once_the_case_closes(
    client: TestClient, session: Session, settings: Settings, signing_keys: SigningKeys, keyring: DataKeyring
) -> None:
    police = _police(session)
    incident = {"kind": "incident", "category": "police.incident", "notice": None}
    _push(session, keyring, police, _claim("person/P-9"), _record("INC-9", "person/P-9", **incident))
    child_id = last_event(session, AuditAction.CLIENT_RECORDS_PUSHED).child_id
    assert child_id is not None
    session.expire_all()
    assert session.scalars(select(InboxEntry).where(InboxEntry.kind == InboxKind.NOTIFICATION)).all() == []

    team = make_team(session)
    case = allocate(session, child_id=child_id, team=team)
    lead = add_member(session, team, agency="social_care", role="lead_practitioner")
    _push(session, keyring, police, _claim("person/P-9"), _record("INC-10", "person/P-9", **incident))
    headers = {"Authorization": f"Bearer {staff_token(signing_keys, settings, lead)}"}
    assert len(client.get("/api/v1/notifications", headers=headers).json()["notifications"]) == 1

    case.status = CaseStatus.CLOSED
    session.flush()
    assert client.get("/api/v1/notifications", headers=headers).json()["notifications"] == []


def test_a_police_record_shows_its_people_locations_and_grading_in_the_view_and_c_names_the_contact(
    client: TestClient, session: Session, settings: Settings, signing_keys: SigningKeys, keyring: DataKeyring
) -> None:
    police = _police(session)
    incident = _record(
        "INC-20",
        "person/P-20",
        kind="incident",
        category="police.incident",
        notice=None,
        people=(InvolvedPerson("suspect", "Sam Adult", date(1990, 1, 1), "mother's partner"),),
        locations=("child's home address (ZZ99)",),
    )
    graded = _record("INT-20", "person/P-20", kind="intelligence", category="police.intelligence", notice=None,
                     police_handling_code="P", grading="2/B/P", summary="Intelligence graded 2/B/P: seen with adults")
    conditional = _record("INT-21", "person/P-20", kind="intelligence", category="police.intelligence", notice=None,
                          police_handling_code="C", grading="1/A/C", contact="DS Holder, Child Exploitation Team")
    _push(session, keyring, police, _claim("person/P-20"), incident, graded, conditional)
    child_id = last_event(session, AuditAction.CLIENT_RECORDS_PUSHED).child_id
    assert child_id is not None
    team = make_team(session)
    allocate(session, child_id=child_id, team=team)
    member = add_member(session, team, agency="health", role="health_visitor")

    view = get_view(client, staff_token(signing_keys, settings, member), child_id).json()

    assert view["people"] == [
        {"name": "Sam Adult", "role": "suspect", "relationship": "mother's partner", "birth_date": "1990-01-01",
         "item_id": view["people"][0]["item_id"], "agency": "police"}
    ]
    assert [loc["description"] for loc in view["locations"]] == ["child's home address (ZZ99)"]
    gradings = {t["summary"]: t["grading"] for t in view["timeline"]}
    assert gradings["Intelligence graded 2/B/P: seen with adults"] == "2/B/P"
    assert all(t["grading"] != "1/A/C" for t in view["timeline"])
    (withheld,) = [w for w in view["withheld"] if w["rule_id"] == "builtin.police-handling-c"]
    assert withheld["ask"] == "the police member of the MACPT, or DS Holder, Child Exploitation Team"
    assert "police hold further information" in withheld["reason"]

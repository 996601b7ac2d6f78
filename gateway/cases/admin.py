"""Managing teams, their members and cases: who may, what is checked, what is audited.

- A partnership administrator (a staff token whose role is `partnership_admin`, any agency)
  creates and changes teams and puts members on them. Anyone else sees only the teams they are
  an active member of; every other team route refuses them, audited.
- An active member of a team whose role there is `team_manager` or `lead_practitioner` opens a
  case on it; the team manager or the case's lead practitioner changes and closes it; any
  active member reads the team's cases. A membership counts only when the token's agency is the
  membership's (as in the access query, cases/repository.py).
- Every change is audited in its transaction, every refusal audited on its own. The audit
  detail holds ids and field names only: never a name, an NHS number or a reason's words.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import date

from sqlalchemy.orm import Session

from audit import AuditAction, Outcome
from gateway.auth.principal import Principal
from gateway.identity.service import NHS_NUMBER_SCHEME
from gateway.kit.auditor import Auditor
from gateway.kit.crypto import ChildErased, DataKeyring
from gateway.kit.db import lock_all_for_transaction
from gateway.kit.errors import Conflict, ErrorDetail, Forbidden, NotFound, ValidationFailed
from gateway.models import Case, Team, TeamMember, utcnow
from policies import CaseStatus

from . import repository
from .schemas import (
    CaseClose,
    CaseCreate,
    CaseRead,
    CasesRead,
    CaseUpdate,
    MemberCreate,
    MemberRead,
    MemberUpdate,
    TeamCreate,
    TeamRead,
    TeamsRead,
    TeamUpdate,
)

PARTNERSHIP_ADMIN = "partnership_admin"
TEAM_MANAGER = "team_manager"
LEAD_PRACTITIONER = "lead_practitioner"
# Who may open a case on their team.
CASE_OPENERS = frozenset({TEAM_MANAGER, LEAD_PRACTITIONER})


# -- teams ---------------------------------------------------------------------------------------


def create_team(session: Session, principal: Principal, *, auditor: Auditor, data: TeamCreate) -> TeamRead:
    """Create a team (partnership administrators only)."""
    _require_admin(principal, auditor, "create_team")
    team = Team(name=data.name, local_authority=data.local_authority, active=True, created_at=utcnow())
    session.add(team)
    session.flush()
    auditor.record(AuditAction.STAFF_TEAM_CREATED, Outcome.SUCCESS, detail={"team_id": str(team.id)})
    return _team_read(team, [])


def get_teams(session: Session, principal: Principal, *, auditor: Auditor) -> TeamsRead:
    """Return every team to an administrator, the teams they are an active member of to anyone else."""
    admin = _is_admin(principal)
    teams = repository.get_teams(session, member=None if admin else principal)
    members = repository.get_members(session, team_ids=[team.id for team in teams])
    auditor.record(AuditAction.STAFF_TEAMS_LISTED, Outcome.SUCCESS, detail={"teams": len(teams), "as_admin": admin})
    return TeamsRead(teams=[_team_read(team, members[team.id]) for team in teams])


def get_team(session: Session, principal: Principal, *, auditor: Auditor, team_id: uuid.UUID) -> TeamRead:
    """Return a team and its members, to an administrator or one of its active members."""
    if not _is_admin(principal) and repository.get_membership(session, principal, team_id=team_id) is None:
        # The same refusal whether or not the team exists.
        raise _refuse_admin(
            auditor, "get_team", team_id, "You are not a member of this team. This refusal has been recorded."
        )
    team = _existing_team(session, team_id)
    auditor.record(AuditAction.STAFF_TEAMS_LISTED, Outcome.SUCCESS, detail={"team_id": str(team.id)})
    return _team_read(team, repository.get_members(session, team_ids=[team.id])[team.id])


def update_team(
    session: Session, principal: Principal, *, auditor: Auditor, team_id: uuid.UUID, data: TeamUpdate
) -> TeamRead:
    """Rename, move or (de)activate a team; a team with open cases is not deactivated."""
    _require_admin(principal, auditor, "update_team", team_id)
    if data.active is False:
        # Excludes the case openings on this team (they take it shared) until this commits.
        lock_all_for_transaction(session, [("team", str(team_id))])
    team = _existing_team(session, team_id, for_update=True)
    changes = {
        name: value for name, value in data.model_dump(exclude_unset=True).items() if getattr(team, name) != value
    }
    if changes.get("active") is False:
        open_cases = repository.count_open_cases(session, team_id=team.id)
        if open_cases:
            raise Conflict(
                f"This team has {open_cases} open case(s); close them before deactivating it.",
                errors=[ErrorDetail("body.active", "the team has open cases")],
            )
    for name, value in changes.items():
        setattr(team, name, value)
    if changes:
        session.flush()
        auditor.record(
            AuditAction.STAFF_TEAM_UPDATED, Outcome.SUCCESS, detail={"team_id": str(team.id), "fields": sorted(changes)}
        )
    return _team_read(team, repository.get_members(session, team_ids=[team.id])[team.id])


def add_member(
    session: Session, principal: Principal, *, auditor: Auditor, team_id: uuid.UUID, data: MemberCreate
) -> MemberRead:
    """Put a staff member on a team; a deactivated member of the same subject is reactivated."""
    _require_admin(principal, auditor, "add_member", team_id)
    team = _existing_team(session, team_id)
    # Two administrators adding the same person at once: the second waits, then finds the first's row.
    lock_all_for_transaction(session, [("team_member", str(team.id), data.subject)])
    member = repository.get_member_by_subject(session, team_id=team.id, subject=data.subject)
    reactivated = member is not None
    if member is None:
        member = TeamMember(team_id=team.id, subject=data.subject, added_at=utcnow())
        session.add(member)
    elif member.active:
        raise Conflict(
            "This person is already an active member of the team; change their role with "
            f"PATCH /api/v1/teams/{team.id}/members/{member.id}.",
            errors=[ErrorDetail("body.subject", "already an active member of this team")],
        )
    else:
        member.added_at = utcnow()
    member.display_name = data.display_name
    member.agency = data.agency
    member.role = data.role
    member.active = True
    member.deactivated_at = None
    session.flush()
    auditor.record(
        AuditAction.STAFF_MEMBER_ADDED,
        Outcome.SUCCESS,
        detail={
            "team_id": str(team.id),
            "member_id": str(member.id),
            "agency": member.agency.value,
            "role": member.role,
            "reactivated": reactivated,
        },
    )
    return MemberRead.model_validate(member)


def update_member(
    session: Session,
    principal: Principal,
    *,
    auditor: Auditor,
    team_id: uuid.UUID,
    member_id: uuid.UUID,
    data: MemberUpdate,
) -> MemberRead:
    """Change an active member's role or display name."""
    _require_admin(principal, auditor, "update_member", team_id)
    member = _existing_member(session, team_id, member_id)
    if not member.active:
        raise Conflict("This member was deactivated; add them to the team again to reactivate them.")
    changes = {
        name: value for name, value in data.model_dump(exclude_unset=True).items() if getattr(member, name) != value
    }
    for name, value in changes.items():
        setattr(member, name, value)
    if changes:
        session.flush()
        detail: dict[str, object] = {"team_id": str(team_id), "member_id": str(member.id), "fields": sorted(changes)}
        if "role" in changes:
            detail["role"] = member.role
        auditor.record(AuditAction.STAFF_MEMBER_UPDATED, Outcome.SUCCESS, detail=detail)
    return MemberRead.model_validate(member)


def deactivate_member(
    session: Session, principal: Principal, *, auditor: Auditor, team_id: uuid.UUID, member_id: uuid.UUID
) -> MemberRead:
    """Take a member off a team: from now on they open none of its children."""
    _require_admin(principal, auditor, "deactivate_member", team_id)
    member = _existing_member(session, team_id, member_id)
    if not member.active:
        raise Conflict("This member is already deactivated.")
    member.active = False
    member.deactivated_at = utcnow()
    session.flush()
    auditor.record(
        AuditAction.STAFF_MEMBER_DEACTIVATED,
        Outcome.SUCCESS,
        detail={
            "team_id": str(team_id),
            "member_id": str(member.id),
            # Cases that still name them as lead: for the team manager to hand over.
            "open_cases_led": repository.count_open_cases(session, team_id=team_id, lead_practitioner=member.subject),
        },
    )
    return MemberRead.model_validate(member)


def _is_admin(principal: Principal) -> bool:
    return principal.role == PARTNERSHIP_ADMIN


def _require_admin(principal: Principal, auditor: Auditor, operation: str, team_id: uuid.UUID | None = None) -> None:
    if not _is_admin(principal):
        raise _refuse_admin(
            auditor,
            operation,
            team_id,
            "Only a partnership administrator may manage teams and their members. This refusal has been recorded.",
        )


def _refuse_admin(auditor: Auditor, operation: str, team_id: uuid.UUID | None, message: str) -> Forbidden:
    detail = {"operation": operation, **({} if team_id is None else {"team_id": str(team_id)})}
    return auditor.refuse(Forbidden(message), AuditAction.STAFF_ADMIN_REFUSED, detail=detail)


def _existing_team(session: Session, team_id: uuid.UUID, *, for_update: bool = False) -> Team:
    team = repository.get_team(session, team_id=team_id, for_update=for_update)
    if team is None:
        raise NotFound("No such team.")
    return team


def _existing_member(session: Session, team_id: uuid.UUID, member_id: uuid.UUID) -> TeamMember:
    member = repository.get_member(session, team_id=team_id, member_id=member_id)
    if member is None:
        raise NotFound("No such member of this team.")
    return member


def _team_read(team: Team, members: Sequence[TeamMember]) -> TeamRead:
    return TeamRead(
        id=team.id,
        name=team.name,
        local_authority=team.local_authority,
        active=team.active,
        created_at=team.created_at,
        members=[MemberRead.model_validate(member) for member in members],
    )


# -- cases ---------------------------------------------------------------------------------------


def open_case(
    session: Session, principal: Principal, *, auditor: Auditor, keyring: DataKeyring, data: CaseCreate
) -> CaseRead:
    """Allocate a child to a team: one open case per child and team."""
    if (data.child_id is None) == (data.nhs_number is None):
        raise ValidationFailed(
            "Give the child as exactly one of child_id and nhs_number.",
            errors=[
                ErrorDetail("body.child_id", "give this or nhs_number, not both"),
                ErrorDetail("body.nhs_number", "give this or child_id, not both"),
            ],
        )
    membership = repository.get_membership(session, principal, team_id=data.team_id)
    if membership is None or membership.role not in CASE_OPENERS:
        raise _refuse_case(
            auditor,
            "Only a team manager or a lead practitioner who is an active member of the team may open a case "
            "on it. This refusal has been recorded.",
            reason="not_a_member" if membership is None else "role",
            team_id=data.team_id,
            child_id=data.child_id,
        )
    # Shared: openings on this team run side by side, but not beside the team's deactivation.
    lock_all_for_transaction(session, [], shared=[("team", str(data.team_id))])
    team = _existing_team(session, data.team_id)
    if not team.active:
        raise Conflict(
            "This team is deactivated; no case can be opened on it.",
            errors=[ErrorDetail("body.team_id", "deactivated")],
        )
    _check_lead(session, team.id, data.lead_practitioner)
    _check_looked_after(data.looked_after, data.looked_after_since)
    child_id = _find_child(session, auditor, keyring, data)
    # Two managers opening the same child's case at once: the second waits here, then sees the first's.
    lock_all_for_transaction(session, [("case", str(team.id), str(child_id))])
    existing = repository.get_open_case(session, team_id=team.id, child_id=child_id)
    if existing is not None:
        raise Conflict(f"This child already has an open case with this team (case {existing.id}).")
    case = Case(
        child_id=child_id,
        team_id=team.id,
        status=CaseStatus.OPEN,
        lead_practitioner=data.lead_practitioner,
        opened_at=utcnow(),
        opened_by=principal.subject,
        looked_after=data.looked_after,
        looked_after_since=data.looked_after_since,
    )
    if data.cp_plan is not None:
        case.cp_plan_start, case.cp_plan_category, case.cp_plan_end = (
            data.cp_plan.start,
            data.cp_plan.category,
            data.cp_plan.end,
        )
    session.add(case)
    session.flush()
    auditor.record(
        AuditAction.STAFF_CASE_OPENED,
        Outcome.SUCCESS,
        child_id=child_id,
        detail={
            "case_id": str(case.id),
            "team_id": str(team.id),
            "found_by": "child_id" if data.child_id is not None else "nhs_number",
            "fields": sorted(
                name for name in ("cp_plan", "looked_after", "looked_after_since") if name in data.model_fields_set
            ),
        },
    )
    return CaseRead.of_case(case)


def get_cases(
    session: Session,
    principal: Principal,
    *,
    auditor: Auditor,
    team_id: uuid.UUID | None,
    status: CaseStatus | None,
    limit: int,
) -> CasesRead:
    """Return the cases of the caller's teams (of one, when named), newest first; audited per case."""
    if team_id is not None and repository.get_membership(session, principal, team_id=team_id) is None:
        raise _refuse_case(
            auditor,
            "You are not a member of this team. This refusal has been recorded.",
            reason="not_a_member",
            team_id=team_id,
        )
    cases = repository.get_cases(session, principal, team_id=team_id, status=status, limit=limit)
    for case in cases:
        _audit_read(auditor, case)
    return CasesRead(cases=[CaseRead.of_case(case) for case in cases])


def get_case(session: Session, principal: Principal, *, auditor: Auditor, case_id: uuid.UUID) -> CaseRead:
    """Return one case of the caller's teams."""
    case, _membership = _case_of_member(session, principal, auditor, case_id)
    _audit_read(auditor, case)
    return CaseRead.of_case(case)


def update_case(
    session: Session, principal: Principal, *, auditor: Auditor, case_id: uuid.UUID, data: CaseUpdate
) -> CaseRead:
    """Change an open case's lead practitioner, child protection plan or looked-after status."""
    case = _case_to_change(session, principal, auditor, case_id)
    fields = data.model_fields_set
    if "lead_practitioner" in fields and data.lead_practitioner is not None:
        _check_lead(session, case.team_id, data.lead_practitioner)
    looked_after = case.looked_after if data.looked_after is None else data.looked_after
    if "looked_after_since" in fields:
        since = data.looked_after_since
    else:
        since = case.looked_after_since if looked_after else None  # no longer looked after: no "since" either
    _check_looked_after(looked_after, since)
    before = _facts(case)
    if data.lead_practitioner is not None:
        case.lead_practitioner = data.lead_practitioner
    if "cp_plan" in fields:
        plan = data.cp_plan
        case.cp_plan_start = None if plan is None else plan.start
        case.cp_plan_category = None if plan is None else plan.category
        case.cp_plan_end = None if plan is None else plan.end
    case.looked_after, case.looked_after_since = looked_after, since
    changed = sorted(name for name, value in _facts(case).items() if before[name] != value)
    if changed:
        session.flush()
        auditor.record(
            AuditAction.STAFF_CASE_UPDATED,
            Outcome.SUCCESS,
            child_id=case.child_id,
            detail={"case_id": str(case.id), "team_id": str(case.team_id), "fields": changed},
        )
    return CaseRead.of_case(case)


def close_case(
    session: Session, principal: Principal, *, auditor: Auditor, case_id: uuid.UUID, data: CaseClose
) -> CaseRead:
    """Close an open case: the team's members no longer open the child through it."""
    case = _case_to_change(session, principal, auditor, case_id)
    case.status = CaseStatus.CLOSED
    case.closed_at = utcnow()
    case.closed_by = principal.subject
    case.close_reason = data.reason
    session.flush()
    auditor.record(
        AuditAction.STAFF_CASE_CLOSED,
        Outcome.SUCCESS,
        child_id=case.child_id,
        detail={"case_id": str(case.id), "team_id": str(case.team_id)},
    )
    return CaseRead.of_case(case)


def _refuse_case(
    auditor: Auditor,
    message: str,
    *,
    reason: str,
    team_id: uuid.UUID | None = None,
    case_id: uuid.UUID | None = None,
    child_id: uuid.UUID | None = None,
    error: type[Forbidden] | type[NotFound] = Forbidden,
) -> Forbidden | NotFound:
    detail = {"reason": reason}
    detail.update(
        {name: str(value) for name, value in (("team_id", team_id), ("case_id", case_id)) if value is not None}
    )
    outcome = Outcome.DENIED if error is Forbidden else Outcome.FAILURE
    return auditor.refuse(error(message), AuditAction.STAFF_CASE_REFUSED, outcome, child_id=child_id, detail=detail)


def _case_of_member(
    session: Session, principal: Principal, auditor: Auditor, case_id: uuid.UUID, *, for_update: bool = False
) -> tuple[Case, TeamMember]:
    case = repository.get_case(session, case_id=case_id, for_update=for_update)
    membership = None if case is None else repository.get_membership(session, principal, team_id=case.team_id)
    if case is None or membership is None:
        # The same refusal whether or not the case exists: an id reveals nothing.
        raise _refuse_case(
            auditor,
            "You are not a member of this case's team. This refusal has been recorded.",
            reason="not_a_member",
            case_id=case_id,
            team_id=None if case is None else case.team_id,
            child_id=None if case is None else case.child_id,
        )
    return case, membership


def _case_to_change(session: Session, principal: Principal, auditor: Auditor, case_id: uuid.UUID) -> Case:
    case, membership = _case_of_member(session, principal, auditor, case_id, for_update=True)
    if membership.role != TEAM_MANAGER and case.lead_practitioner != principal.subject:
        raise _refuse_case(
            auditor,
            "Only the team manager or the case's lead practitioner may change or close it. "
            "This refusal has been recorded.",
            reason="role",
            case_id=case.id,
            team_id=case.team_id,
            child_id=case.child_id,
        )
    if case.status is not CaseStatus.OPEN:
        raise Conflict("This case is closed; it cannot be changed or closed again. Open a new case instead.")
    return case


def _check_lead(session: Session, team_id: uuid.UUID, subject: str) -> None:
    member = repository.get_member_by_subject(session, team_id=team_id, subject=subject)
    if member is None or not member.active or member.role != LEAD_PRACTITIONER:
        raise ValidationFailed(
            "lead_practitioner must be the sign-in subject of an active member of the team whose role is "
            "lead_practitioner.",
            errors=[ErrorDetail("body.lead_practitioner", "not an active lead_practitioner member of the team")],
        )


def _check_looked_after(looked_after: bool, since: date | None) -> None:
    if since is not None and not looked_after:
        raise ValidationFailed(
            "looked_after_since is only for a child who is looked after (looked_after true).",
            errors=[ErrorDetail("body.looked_after_since", "the child is not looked after")],
        )


def _find_child(session: Session, auditor: Auditor, keyring: DataKeyring, data: CaseCreate) -> uuid.UUID:
    if data.nhs_number is not None:
        found = repository.get_child_id_by_identifier(
            session, scheme=NHS_NUMBER_SCHEME, blind_index=keyring.blind_index(NHS_NUMBER_SCHEME, data.nhs_number)
        )
        if found is None:
            raise _refuse_case(
                auditor,
                "No child with that NHS number.",
                reason="no_child_with_nhs_number",
                team_id=data.team_id,
                error=NotFound,
            )
        child_id = found
    else:
        assert data.child_id is not None  # exactly one of the two, checked first
        child_id = data.child_id
    child = repository.get_child(session, child_id=child_id)
    if child is None:
        raise NotFound("No such child.", errors=[ErrorDetail("body.child_id", "no such child")])
    if child.merged_into_id is not None:
        raise Conflict("This child was merged; open the case on the child it was merged into.")
    if child.wrapped_data_key is None:
        raise ChildErased()
    return child_id


def _facts(case: Case) -> dict[str, object]:
    """The changeable facts of a case, by the name the API gives each."""
    return {
        "lead_practitioner": case.lead_practitioner,
        "cp_plan": (case.cp_plan_start, case.cp_plan_category, case.cp_plan_end),
        "looked_after": case.looked_after,
        "looked_after_since": case.looked_after_since,
    }


def _audit_read(auditor: Auditor, case: Case) -> None:
    auditor.record(
        AuditAction.STAFF_CASES_LISTED,
        Outcome.SUCCESS,
        child_id=case.child_id,
        detail={"case_id": str(case.id), "team_id": str(case.team_id)},
    )

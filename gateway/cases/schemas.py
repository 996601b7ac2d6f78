"""Teams, members and cases: what the management endpoints read and answer."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationInfo, field_validator
from stdnum.gb import nhs

from gateway.models import Case, PlanCategory
from policies import Agency, CaseStatus

# One line of text: no control characters (PostgreSQL refuses NUL; the rest have no place in a name).
Line = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, pattern=r"^[^\x00-\x1f\x7f]*$")]
Name = Annotated[Line, StringConstraints(max_length=200)]
Subject = Annotated[Line, StringConstraints(max_length=255)]
Role = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_]*$")]
# Free text over several lines (tabs and line breaks allowed, other control characters not).
FreeText = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=1, max_length=2000, pattern=r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*$"
    ),
]

ROLE_DESCRIPTION = (
    "The member's role on this team: lowercase letters, digits and underscores, starting with a letter "
    "(lead_practitioner, team_manager, health_practitioner, police_officer, education_officer, linking_officer…)."
)
NOT_NULL = "may not be null: leave the field out to keep its current value"


def _not_null(value: Any) -> Any:
    # Validators do not run on defaults: this sees only a null the caller sent.
    if value is None:
        raise ValueError(NOT_NULL)
    return value


class MemberRead(BaseModel):
    """A staff member on a team."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    subject: str = Field(description="The member's sign-in subject (as their staff token names them).")
    display_name: str
    agency: Agency
    role: str = Field(description=ROLE_DESCRIPTION)
    active: bool = Field(description="False once deactivated: the member then opens none of the team's children.")
    added_at: datetime
    deactivated_at: datetime | None


class TeamRead(BaseModel):
    """A MACPT team and its members (active and deactivated)."""

    id: uuid.UUID
    name: str
    local_authority: str
    active: bool = Field(description="A deactivated team keeps its history; no case can be opened on it.")
    created_at: datetime
    members: list[MemberRead]


class TeamsRead(BaseModel):
    """Teams the caller may see: every team for a partnership administrator, their own for anyone else."""

    teams: list[TeamRead]


class TeamCreate(BaseModel):
    """A new MACPT team."""

    model_config = ConfigDict(extra="forbid")

    name: Name = Field(description="The team's name, e.g. Northshire MACPT.")
    local_authority: Name = Field(description="The local authority the team serves.")


class TeamUpdate(BaseModel):
    """Change a team: only the fields given change."""

    model_config = ConfigDict(extra="forbid")

    name: Name | None = Field(default=None, description="A new name.")
    local_authority: Name | None = Field(default=None, description="A new local authority.")
    active: bool | None = Field(
        default=None, description="False deactivates the team (refused while it has open cases); true reactivates it."
    )

    _present = field_validator("name", "local_authority", "active")(_not_null)


class MemberCreate(BaseModel):
    """Put a staff member on a team (a deactivated member with this subject is reactivated)."""

    model_config = ConfigDict(extra="forbid")

    subject: Subject = Field(description="The member's sign-in subject, exactly as their staff token names them.")
    display_name: Name = Field(description="The name colleagues know them by (shown as a case's lead practitioner).")
    agency: Agency = Field(description="The agency they belong to: their staff token must name the same one.")
    role: Role = Field(description=ROLE_DESCRIPTION)


class MemberUpdate(BaseModel):
    """Change a member's role or display name: only the fields given change."""

    model_config = ConfigDict(extra="forbid")

    role: Role | None = Field(default=None, description=ROLE_DESCRIPTION)
    display_name: Name | None = Field(default=None)

    _present = field_validator("role", "display_name")(_not_null)


class ChildProtectionPlanWrite(BaseModel):
    """A child protection plan: when it started, its category, and when it ended (if it has)."""

    model_config = ConfigDict(extra="forbid")

    start: date = Field(description="The day the plan started.")
    category: PlanCategory = Field(description="The category of abuse or neglect the plan is under.")
    end: date | None = Field(default=None, description="The day the plan ended; not before its start.")

    @field_validator("end")
    @classmethod
    def _not_before_start(cls, end: date | None, info: ValidationInfo) -> date | None:
        start = info.data.get("start")  # absent when the start itself was invalid: reported there
        if end is not None and start is not None and end < start:
            raise ValueError("must not be before the plan's start")
        return end


class ChildProtectionPlanRead(BaseModel):
    """A child protection plan as recorded on a case."""

    start: date
    category: PlanCategory
    end: date | None = Field(description="None while the plan is in force.")

    @classmethod
    def of_case(cls, case: Case) -> ChildProtectionPlanRead | None:
        """Return the case's plan, or None when it has none."""
        if case.cp_plan_start is None or case.cp_plan_category is None:
            return None
        return cls(start=case.cp_plan_start, category=case.cp_plan_category, end=case.cp_plan_end)


class CaseCreate(BaseModel):
    """Open a case: allocate a child, named by its id or its NHS number, to a team."""

    model_config = ConfigDict(extra="forbid")

    team_id: uuid.UUID = Field(
        description="The team to allocate the child to; you must be its team manager or a lead practitioner on it."
    )
    child_id: uuid.UUID | None = Field(default=None, description="The child; give this or nhs_number, not both.")
    nhs_number: str | None = Field(
        default=None, max_length=20, description="The child's NHS number (10 digits); give this or child_id, not both."
    )
    lead_practitioner: Subject = Field(
        description="The sign-in subject of an active member of the team whose role is lead_practitioner."
    )
    cp_plan: ChildProtectionPlanWrite | None = Field(default=None, description="The child's protection plan, if any.")
    looked_after: bool = Field(default=False, description="The child is looked after by the local authority.")
    looked_after_since: date | None = Field(default=None, description="Since when (only when looked_after).")

    @field_validator("nhs_number")
    @classmethod
    def _valid_nhs_number(cls, value: str | None) -> str | None:
        if value is None:
            return None
        compact = str(nhs.compact(value))
        if not nhs.is_valid(compact):
            raise ValueError("not a valid NHS number: 10 digits with a correct Modulus 11 check digit")
        return compact


class CaseUpdate(BaseModel):
    """Change a case: only the fields given change."""

    model_config = ConfigDict(extra="forbid")

    lead_practitioner: Subject | None = Field(
        default=None, description="The sign-in subject of an active lead_practitioner member of the case's team."
    )
    cp_plan: ChildProtectionPlanWrite | None = Field(
        default=None, description="The whole plan (give the end to record that it ended); null removes it."
    )
    looked_after: bool | None = Field(default=None, description="False also clears looked_after_since.")
    looked_after_since: date | None = Field(default=None, description="Since when the child is looked after.")

    _present = field_validator("lead_practitioner", "looked_after")(_not_null)


class CaseClose(BaseModel):
    """Close a case: its team's members no longer open the child."""

    model_config = ConfigDict(extra="forbid")

    reason: FreeText = Field(description="Why the case is closed (kept on the case, never in the audit trail).")


class CaseRead(BaseModel):
    """A child's allocation to a team, and the key facts its view shows."""

    id: uuid.UUID
    child_id: uuid.UUID
    team_id: uuid.UUID
    status: CaseStatus
    lead_practitioner: str | None = Field(description="The lead practitioner's sign-in subject.")
    opened_at: datetime
    opened_by: str | None
    closed_at: datetime | None
    closed_by: str | None
    close_reason: str | None
    cp_plan: ChildProtectionPlanRead | None
    looked_after: bool
    looked_after_since: date | None

    @classmethod
    def of_case(cls, case: Case) -> CaseRead:
        """Return the case as the API shows it."""
        return cls(
            id=case.id,
            child_id=case.child_id,
            team_id=case.team_id,
            status=case.status,
            lead_practitioner=case.lead_practitioner,
            opened_at=case.opened_at,
            opened_by=case.opened_by,
            closed_at=case.closed_at,
            closed_by=case.closed_by,
            close_reason=case.close_reason,
            cp_plan=ChildProtectionPlanRead.of_case(case),
            looked_after=case.looked_after,
            looked_after_since=case.looked_after_since,
        )


class CasesRead(BaseModel):
    """Cases of the caller's teams, newest first."""

    cases: list[CaseRead]

"""The merged view's shape (ARCHITECTURE.md §9): filled stage by stage, never reshaped."""

from __future__ import annotations

import uuid
from datetime import date, datetime

from pydantic import BaseModel, ConfigDict, Field

from gateway.cases.schemas import ChildProtectionPlanRead
from policies import Agency, ConsentStatus, DecisionKind, Purpose, RecordKind, RecordStatus, Relationship


class SourceRead(BaseModel):
    """Which agency system a fact came from."""

    model_config = ConfigDict(from_attributes=True)

    agency: Agency = Field(description="The source's agency.")
    client_id: str = Field(validation_alias="id", description="The registered source system.")
    name: str = Field(description="The source system's name, e.g. the trust's EPR.")


class IdentityRead(BaseModel):
    """One source's claim about who the child is."""

    source: SourceRead
    nhs_number: str | None = Field(description="NHS number as the source gave it.")
    given_names: list[str]
    family_name: str | None
    birth_date: date | None
    sex: str | None = Field(description="FHIR administrative gender.")
    postcode: str | None
    address_lines: list[str]
    received_at: datetime = Field(description="When the gateway received this version.")
    link_method: str = Field(
        description="How it was linked: nhs_number, upn, source_record (a later version of a record "
        "linked before), scored (demographics above the upper threshold), new (no child matched), "
        "manual (a person confirmed it, or merged two children)."
    )


class ConflictValue(BaseModel):
    """One of the differing values, and who claims it."""

    value: str
    sources: list[str] = Field(description="Client ids of the sources that give this value.")


class ConflictRead(BaseModel):
    """Sources disagree about a field: a practitioner should look."""

    field: str
    values: list[ConflictValue]


class TeamRead(BaseModel):
    """The MACPT team allocated to the child."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    local_authority: str


class HealthFlagRead(BaseModel):
    """A CP-IS style flag a health system raised (a FHIR Flag), shown only where its record is disclosed."""

    code: str = Field(description="child-protection-plan, looked-after or unborn-child-protection-plan.")
    label: str
    since: date | None
    until: date | None
    agency: Agency
    item_id: uuid.UUID


class KeyFactsRead(BaseModel):
    """The facts a strategy meeting needs first (CP-IS flags join them with the health adapter)."""

    open_case: bool = Field(description="The child has an open case with the allocated team.")
    allocated_team: TeamRead | None = Field(description="None when opened under break-glass and no team has the child's case.")
    lead_practitioner: str | None = Field(
        description="The case's lead practitioner: their display name on the team (as stored, for older cases)."
    )
    child_protection_plan: ChildProtectionPlanRead | None = Field(
        description="The child protection plan recorded on the case (start, category, end), if any."
    )
    looked_after: bool = Field(description="The case records the child as looked after by the local authority.")
    looked_after_since: date | None = Field(description="Since when the child is looked after, if recorded.")
    health_flags: list[HealthFlagRead] = Field(
        default_factory=list,
        description="CP-IS style flags in force (active, period covering today) on health records this viewer is "
        "shown: child protection plan, looked after, unborn baby child protection plan.",
    )


class DecisionRead(BaseModel):
    """What decided an item's disclosure, and on what basis."""

    kind: DecisionKind
    rule_id: str
    policy_version: str
    lawful_basis: str | None
    reason: str


class TimelineEntry(BaseModel):
    """One disclosed item."""

    item_id: uuid.UUID
    source: SourceRead
    kind: RecordKind
    category: str
    occurred_at: datetime | None
    received_at: datetime
    status: RecordStatus
    summary: str
    grading: str | None = Field(
        default=None, description="Police intelligence's 3x5x2 grading (source/intelligence/handling), e.g. 2/B/P."
    )
    redacted_fields: list[str]
    decision: DecisionRead


class PersonRead(BaseModel):
    """Someone a disclosed record involves besides the child (POLE: a person in the event)."""

    name: str
    role: str = Field(description="Their part in the event: victim, witness, suspect, present, parent…")
    relationship: str | None = Field(description="To the child, as the source put it.")
    birth_date: date | None
    item_id: uuid.UUID = Field(description="The record that names them.")
    agency: Agency


class LocationRead(BaseModel):
    """A place a disclosed record involves."""

    description: str
    item_id: uuid.UUID
    agency: Agency


class WithheldRead(BaseModel):
    """Items withheld for one reason, where the rule says the viewer is to be told."""

    agency: Agency
    reason: str
    ask: str | None = Field(description="Whom to ask about the withheld information.")
    rule_id: str
    count: int
    item_ids: list[uuid.UUID] = Field(
        description="The opaque ids of the items withheld: name one in POST /api/v1/children/{child_id}/requests."
    )
    requestable: bool = Field(
        description="Whether a request to see could open these items (the ISA names their special category)."
    )


class ConsentRead(BaseModel):
    """A recorded consent decision (empty agencies or categories mean all)."""

    id: uuid.UUID
    status: ConsentStatus
    purpose: Purpose
    given_by: str
    giver_relationship: str | None
    agencies: list[Agency]
    categories: list[str]
    period_start: datetime | None
    period_end: datetime | None
    recorded_at: datetime
    in_force: bool = Field(description="In force now: the newest decision of its scope whose period covers now.")
    note: str | None = Field(description="The family's stated wishes, as recorded.")


class OverrideRead(BaseModel):
    """A recorded decision to share without or against consent."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    purpose: Purpose
    agencies: list[Agency]
    categories: list[str]
    lawful_basis: str
    decided_by: str
    approved_by: str | None
    created_at: datetime
    expires_at: datetime | None


class ConsentStateRead(BaseModel):
    """The consent state: every decision (newest first, those in force marked), the family's stated
    wishes, and the overrides in force."""

    records: list[ConsentRead] = Field(description="The whole history, newest first.")
    stated_wishes: list[str] = Field(
        description="Refusals and withdrawals in force, in words: shown for every purpose, since for child "
        "protection they do not stop sharing but the team must know them."
    )
    overrides: list[OverrideRead] = Field(description="Overrides in force now.")


class LinkingEventRead(BaseModel):
    """Records merged into or out of this child, or one record moved because its identifier changed."""

    merge_id: uuid.UUID
    kind: str = Field(description="merge (a whole child) or move (one record whose identifier changed).")
    direction: str = Field(description="into_this_child or out_of_this_child.")
    other_child_id: uuid.UUID
    source_records: int
    at: datetime
    by: str
    reason: str | None
    unmerged_at: datetime | None
    unmerged_by: str | None
    unmerge_reason: str | None


class LinkingRead(BaseModel):
    """How this child's records came together: merges, unmerges, moves, and pairs awaiting review."""

    merged_into: uuid.UUID | None = Field(description="Set while this child's records are merged into another child.")
    proposed_links: int = Field(description="Records that may be this child, waiting on the linking review queue.")
    history: list[LinkingEventRead]


class PolicyRead(BaseModel):
    """The ISA that decided this view."""

    id: str
    version: str


class ChildViewRead(BaseModel):
    """One child, one purpose: identities, key facts, timeline, people and places, consent, withheld."""

    child_id: uuid.UUID
    purpose: Purpose
    generated_at: datetime
    policy: PolicyRead
    relationship: Relationship = Field(description="Why the viewer may see this child.")
    identities: list[IdentityRead]
    conflicts: list[ConflictRead]
    key_facts: KeyFactsRead
    timeline: list[TimelineEntry] = Field(description="Disclosed items, newest first.")
    people: list[PersonRead] = Field(description="People the disclosed records involve, newest record first.")
    locations: list[LocationRead] = Field(description="Places the disclosed records involve, newest record first.")
    consent: ConsentStateRead
    withheld: list[WithheldRead]
    linking: LinkingRead

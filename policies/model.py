"""The policy engine's vocabulary: purposes, viewers, items, consent and decisions."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Purpose(StrEnum):
    """Why a viewer is looking (ARCHITECTURE.md §5)."""

    CHILD_PROTECTION = "child_protection"
    FAMILY_HELP = "family_help"


class DecisionKind(StrEnum):
    """What the viewer gets of one item."""

    DISCLOSE = "disclose"
    REDACT = "redact"
    INDICATE = "indicate"
    WITHHOLD_SILENTLY = "withhold_silently"


class Relationship(StrEnum):
    """Why the viewer may open this child at all."""

    ALLOCATED_TEAM = "allocated_team"
    BREAK_GLASS = "break_glass"
    # The designated safeguarding lead of the child's school (or the LA's education safeguarding
    # lead) receiving an Operation Encompass notice: the notice alone, never the child's view.
    OPERATION_ENCOMPASS = "operation_encompass"
    NONE = "none"


class ConsentStatus(StrEnum):
    """The state of a consent decision."""

    GIVEN = "given"
    REFUSED = "refused"
    WITHDRAWN = "withdrawn"


class Agency(StrEnum):
    """The agencies of a safeguarding partnership; every client and staff member belongs to one."""

    HEALTH = "health"
    POLICE = "police"
    EDUCATION = "education"
    SOCIAL_CARE = "social_care"


class RecordStatus(StrEnum):
    """Lifecycle of a stored version of a source record (an item or an identity)."""

    CURRENT = "current"
    SUPERSEDED = "superseded"
    ENTERED_IN_ERROR = "entered_in_error"


class CaseStatus(StrEnum):
    """Whether a child's allocation to a team is in force."""

    OPEN = "open"
    CLOSED = "closed"


class RecordKind(StrEnum):
    """What a source pushes (ARCHITECTURE.md §6); a client is registered for some of these.

    `identity` is a source's claim about who a child is (a FHIR Patient, a police Person, a
    school's pupil record); the others are items. Members are added as adapters learn each kind.
    """

    IDENTITY = "identity"
    ENCOUNTER = "encounter"
    # police (adapters/police)
    INCIDENT = "incident"
    DOMESTIC_ABUSE_NOTIFICATION = "domestic_abuse_notification"
    MISSING_EPISODE = "missing_episode"
    CUSTODY = "custody"
    INTELLIGENCE = "intelligence"
    # education (adapters/education)
    ENROLMENT = "enrolment"
    ATTENDANCE = "attendance"
    EXCLUSION = "exclusion"
    SAFEGUARDING_CONCERN = "safeguarding_concern"
    EDUCATION_NOTICE = "education_notice"


AGENCIES = frozenset(Agency)

# The first category vocabulary: `<agency>.<kind of fact>`. ISA rules name these.
CATEGORIES = frozenset(
    {
        "health.encounter",
        "health.urgent_care",
        "health.condition",
        "health.observation",
        "health.flag",
        "health.care_team",
        "health.related_person",
        "police.incident",
        "police.domestic_abuse",
        "police.missing_episode",
        "police.custody",
        "police.intelligence",
        "police.pole",
        "education.enrolment",
        "education.attendance",
        "education.exclusion",
        "education.safeguarding_concern",
        "education.ehe_cme",
        "social_care.case",
    }
)


@dataclass(frozen=True)
class Viewer:
    """Who is looking: their agency, role, and relationship to the child."""

    agency: Agency
    role: str
    relationship: Relationship


@dataclass(frozen=True)
class ItemFacts:
    """What the engine may know of an item: never its contents."""

    item_id: str
    agency: Agency
    kind: RecordKind
    category: str
    security_labels: frozenset[str] = frozenset()
    police_handling_code: str | None = None
    status: RecordStatus = RecordStatus.CURRENT
    detrimental: bool = False


@dataclass(frozen=True)
class ConsentFact:
    """One consent decision: for a purpose, over agencies and (optionally) categories."""

    status: ConsentStatus
    purpose: Purpose
    agencies: frozenset[Agency]
    categories: frozenset[str] = frozenset()

    def covers(self, purpose: Purpose, agency: Agency, category: str) -> bool:
        """Say whether this decision speaks of that purpose, agency and category."""
        return (
            self.purpose is purpose
            and agency in self.agencies
            and (not self.categories or category in self.categories)
        )


@dataclass(frozen=True)
class ConsentState:
    """Every consent decision about a child, newest first."""

    facts: tuple[ConsentFact, ...] = ()

    def status_for(self, purpose: Purpose, agency: Agency, category: str) -> ConsentStatus | None:
        """Return the newest decision that covers this purpose, agency and category, if any."""
        for fact in self.facts:
            if fact.covers(purpose, agency, category):
                return fact.status
        return None


@dataclass(frozen=True)
class Decision:
    """The answer for one item, with the rule, policy version, lawful basis and a human reason."""

    kind: DecisionKind
    rule_id: str
    policy_version: str
    lawful_basis: str | None
    reason: str
    redacted_fields: tuple[str, ...] = ()
    ask: str | None = None

    @property
    def shown(self) -> bool:
        """Say whether the viewer sees the item (whole or redacted)."""
        return self.kind in (DecisionKind.DISCLOSE, DecisionKind.REDACT)


AGENCY_MEMBER = {
    Agency.HEALTH: "the health member of the MACPT",
    Agency.POLICE: "the police member of the MACPT",
    Agency.EDUCATION: "the education member of the MACPT",
    Agency.SOCIAL_CARE: "the lead child protection practitioner",
}


def member_to_ask(agency: Agency) -> str:
    """Return whom a viewer should ask about an agency's withheld information."""
    return AGENCY_MEMBER[agency]



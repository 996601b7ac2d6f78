"""The policy engine's vocabulary: purposes, viewers, items, consent and decisions."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
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
    # A FHIR Consent: stored in the consent registry (gateway/consents), never as an item.
    CONSENT = "consent"
    # health: UK Core R4 resources (adapters/ukcore.py maps each resource type to one of these)
    CONDITION = "condition"
    OBSERVATION = "observation"
    FLAG = "flag"
    CARE_TEAM = "care_team"
    RELATED_PERSON = "related_person"
    EPISODE_OF_CARE = "episode_of_care"
    APPOINTMENT = "appointment"
    IMMUNIZATION = "immunization"
    ALLERGY_INTOLERANCE = "allergy_intolerance"
    MEDICATION = "medication"
    PROCEDURE = "procedure"
    DOCUMENT_REFERENCE = "document_reference"
    QUESTIONNAIRE_RESPONSE = "questionnaire_response"
    # Any other valid FHIR resource about a child (it names a Patient as its subject or patient),
    # stored and summarised generically.
    HEALTH_RECORD = "health_record"
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
        "health.episode_of_care",
        "health.appointment",
        "health.immunisation",
        "health.allergy",
        "health.medication",
        "health.procedure",
        "health.document",
        "health.questionnaire_response",
        "health.other",
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


# The HL7 v3 ActCode information sensitivity codes (the value set v3-ActInformationSensitivityPolicy,
# and the two role sensitivities that matter for a child: ADOL, PRS), and confidentiality R
# (restricted) / V (very restricted). Each is a special category: withheld unless a rule names it.
SPECIAL_CATEGORY_LABELS = {
    "SEX": "sexual health",
    "STD": "sexually transmitted infection",
    "HIV": "HIV",
    "ETH": "substance misuse",
    "PSY": "mental health",
    "R": "restricted (confidentiality R)",
    "V": "very restricted (confidentiality V)",
    "GDIS": "genetic disease information",
    "BH": "behavioural health",
    "MH": "mental health",
    "PSYTHPN": "psychotherapy notes",
    "COGN": "cognitive disability",
    "DVD": "developmental disability",
    "EMOTDIS": "emotional disturbance",
    "SUD": "substance use disorder",
    "ETHUD": "alcohol use disorder",
    "OPIOIDUD": "opioid use disorder",
    "SDV": "sexual assault, abuse or domestic violence",
    "SCA": "sickle cell",
    "SICKLE": "sickle cell",
    "MST": "military sexual trauma",
    "SPI": "specially protected information",
    "TBOO": "taboo",
    "ADOL": "adolescent information",
    "PRS": "sensitive at the patient's request",
}
# Gender identity history: disclosing it can be an offence (Gender Recognition Act 2004 s22). No
# v3 ActCode code covers it (GDIS is genetic disease information, a special category above), so
# the gateway's own code system defines it (urn:macpt-gateway:CodeSystem:sharing, beside the
# s16LA mark; adapters/nhs_fhir.py and the README document it). An ISA rule opens it to a
# request only by naming it: "*" does not.
GENDER_IDENTITY_HISTORY = "gender-identity-history"
GENDER_IDENTITY_LABELS = frozenset({GENDER_IDENTITY_HISTORY})


@dataclass(frozen=True)
class Viewer:
    """Who is looking: their agency, role, and relationship to the child."""

    agency: Agency
    role: str
    relationship: Relationship


@dataclass(frozen=True)
class ItemFacts:
    """What the engine may know of an item: never its contents.

    `approved_request` is the id of a request to see this item that was approved for this viewer
    and purpose (gateway/sharing): the only fact the engine reads that is about one viewer.
    """

    item_id: str
    agency: Agency
    kind: RecordKind
    category: str
    security_labels: frozenset[str] = frozenset()
    police_handling_code: str | None = None
    status: RecordStatus = RecordStatus.CURRENT
    detrimental: bool = False
    approved_request: str | None = None


def _in_period(at: datetime, start: datetime | None, end: datetime | None) -> bool:
    return (start is None or start <= at) and (end is None or at < end)


@dataclass(frozen=True)
class ConsentFact:
    """One consent decision: for a purpose, over agencies and categories (empty means all).

    `recorded_at` is when it was recorded: a decision recorded after a moment did not exist at
    that moment, so a withdrawal stops disclosure from when it was recorded, not before.
    """

    status: ConsentStatus
    purpose: Purpose
    agencies: frozenset[Agency] = frozenset()
    categories: frozenset[str] = frozenset()
    recorded_at: datetime | None = None
    period_start: datetime | None = None
    period_end: datetime | None = None

    def covers(self, purpose: Purpose, agency: Agency, category: str) -> bool:
        """Say whether this decision speaks of that purpose, agency and category."""
        return (
            self.purpose is purpose
            and (not self.agencies or agency in self.agencies)
            and (not self.categories or category in self.categories)
        )

    def in_force(self, at: datetime) -> bool:
        """Say whether this decision had been recorded, and its period covered `at`."""
        return (self.recorded_at is None or self.recorded_at <= at) and _in_period(
            at, self.period_start, self.period_end
        )


@dataclass(frozen=True)
class OverrideFact:
    """A recorded decision to share without or against consent, while it is in force."""

    override_id: str
    purpose: Purpose
    lawful_basis: str
    starts_at: datetime
    expires_at: datetime
    agencies: frozenset[Agency] = frozenset()
    categories: frozenset[str] = frozenset()

    def covers(self, purpose: Purpose, agency: Agency, category: str) -> bool:
        """Say whether this override speaks of that purpose, agency and category (empty means all)."""
        return (
            self.purpose is purpose
            and (not self.agencies or agency in self.agencies)
            and (not self.categories or category in self.categories)
        )

    def in_force(self, at: datetime) -> bool:
        """Say whether the override applies at `at` (from its start, until it expires)."""
        return _in_period(at, self.starts_at, self.expires_at)


@dataclass(frozen=True)
class ConsentState:
    """The consent decisions and overrides in force at one moment, newest decision first.

    Built by `ConsentState.at(moment, …)` from a child's whole history, so the engine itself
    never reads a clock: a view at time T is decided on what was in force at T.
    """

    facts: tuple[ConsentFact, ...] = ()
    overrides: tuple[OverrideFact, ...] = ()

    @classmethod
    def at(
        cls, moment: datetime, facts: Iterable[ConsentFact], overrides: Iterable[OverrideFact] = ()
    ) -> ConsentState:
        """Return what was in force at `moment`: decisions newest first (by when recorded), live overrides."""
        live = [fact for fact in facts if fact.in_force(moment)]
        # Stable: decisions recorded at the same instant keep the caller's order (newest first).
        live.sort(key=lambda fact: fact.recorded_at or moment, reverse=True)
        return cls(
            facts=tuple(live),
            overrides=tuple(override for override in overrides if override.in_force(moment)),
        )

    def status_for(self, purpose: Purpose, agency: Agency, category: str) -> ConsentStatus | None:
        """Return the newest decision that covers this purpose, agency and category, if any."""
        for fact in self.facts:
            if fact.covers(purpose, agency, category):
                return fact.status
        return None

    def override_for(self, purpose: Purpose, agency: Agency, category: str) -> OverrideFact | None:
        """Return an override in force for this purpose, agency and category, if any."""
        for override in self.overrides:
            if override.covers(purpose, agency, category):
                return override
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
    # A withheld item that a request to see could open (a rule names its special category).
    requestable: bool = False

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



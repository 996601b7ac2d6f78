"""The information-sharing agreement (ISA) file: YAML, validated strictly, loaded once."""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import Any, Literal, cast

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from .model import (
    AGENCIES,
    CATEGORIES,
    GENDER_IDENTITY_LABELS,
    Decision,
    SPECIAL_CATEGORY_LABELS,
    Agency,
    DecisionKind,
    Purpose,
    Relationship,
)

# What a rule's `special_categories` may name: the sensitivity labels, or "*" for all of them but
# gender identity history, which a rule must name itself.
SPECIAL_CATEGORY_NAMES = frozenset(SPECIAL_CATEGORY_LABELS) | GENDER_IDENTITY_LABELS


class PolicyError(ValueError):
    """The ISA file is wrong; the message names the file and the field."""


class Rule(BaseModel):
    """One permission of the ISA: who may see what, for which purpose, on what basis."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1)
    description: str
    purposes: tuple[Purpose, ...] = Field(min_length=1)
    source_agencies: tuple[Agency, ...] = Field(min_length=1)
    categories: tuple[str, ...] = Field(min_length=1)
    viewer_agencies: tuple[Agency, ...] = Field(min_length=1)
    viewer_relationships: tuple[Relationship, ...] = (Relationship.ALLOCATED_TEAM,)
    requires_consent: bool = False
    # Special category labels this rule lets an approved request to see open (for the one
    # requester who stated a justification): "*" for all but gender identity history.
    special_categories: tuple[str, ...] = ()
    decision: Literal[DecisionKind.DISCLOSE, DecisionKind.REDACT]
    redact_fields: tuple[str, ...] = ()
    lawful_basis: str
    reason: str = Field(min_length=1)

    @field_validator("source_agencies", "viewer_agencies", mode="before")
    @classmethod
    def _known_agencies(cls, agencies: object) -> object:
        # Before pydantic's own enum check, so that the message names the unknown agency.
        listed = agencies if isinstance(agencies, list | tuple) else ()
        unknown = sorted({str(a) for a in listed} - AGENCIES)
        if unknown:
            raise ValueError(f"unknown agency {unknown[0]!r}; expected one of {sorted(AGENCIES)}")
        return agencies

    @field_validator("categories")
    @classmethod
    def _known_categories(cls, categories: tuple[str, ...]) -> tuple[str, ...]:
        unknown = sorted(set(categories) - CATEGORIES - {"*"})
        if unknown:
            raise ValueError(f"unknown category {unknown[0]!r}; see policies.model.CATEGORIES or use '*'")
        return categories

    @field_validator("special_categories")
    @classmethod
    def _known_labels(cls, labels: tuple[str, ...]) -> tuple[str, ...]:
        unknown = sorted(set(labels) - SPECIAL_CATEGORY_NAMES - {"*"})
        if unknown:
            raise ValueError(f"unknown special category {unknown[0]!r}; expected one of {sorted(SPECIAL_CATEGORY_NAMES)} or '*'")
        return labels

    def opens(self, labels: frozenset[str]) -> bool:
        """Say whether an approved request may open an item with these special category labels under this rule."""
        named = set(self.special_categories)
        if "*" in named:
            named |= set(SPECIAL_CATEGORY_LABELS)
        return bool(labels) and labels <= named

    @model_validator(mode="after")
    def _redaction_names_fields(self) -> Rule:
        if self.decision is DecisionKind.REDACT and not self.redact_fields:
            raise ValueError("redact_fields is required when decision is redact")
        if self.decision is DecisionKind.DISCLOSE and self.redact_fields:
            raise ValueError("redact_fields is only allowed when decision is redact")
        return self

    def matches_category(self, category: str) -> bool:
        """Say whether this rule speaks of a category."""
        return "*" in self.categories or category in self.categories


class QueryDecision(StrEnum):
    """What the ISA says to another agency's query about a person ($person-info-query)."""

    PERMIT = "permit"  # answer whether the child is known, with the allocated team as a contact
    REVIEW = "review"  # answer nothing yet: the allocated team's lead practitioner decides
    DENY = "deny"  # refuse the query; nothing about any child is matched or said


# Strictest first: when several rules cover a query, the strictest decides.
_QUERY_STRICTNESS = (QueryDecision.DENY, QueryDecision.REVIEW, QueryDecision.PERMIT)
_LEGISLATION_HOST = "legislation.gov.uk"
_URI = re.compile(r"^https?://[^\s/]+(?:/\S*)?$", re.IGNORECASE)


def normalise_reason(uri: str) -> str:
    """Return a reason URI in the one form rules are compared in (pure).

    The MAIS standard's example is `https://www.legislation.gov.uk/ukpga/1989/41/section/47`;
    legislation.gov.uk's own identifier is `http://www.legislation.gov.uk/id/ukpga/1989/41/section/47`.
    Both name the same section, so scheme (http or https), a leading `www.`, the host's case, a
    trailing slash and, for legislation.gov.uk, the `/id` prefix are not told apart.
    """
    text = uri.strip()
    scheme, _, rest = text.partition("://")
    if not rest or scheme.lower() not in ("http", "https"):
        return text
    host, slash, path = rest.partition("/")
    host = host.lower().removeprefix("www.")
    path = (slash + path).rstrip("/")
    if host == _LEGISLATION_HOST and path.startswith("/id/"):
        path = path[len("/id"):]
    return f"http://{host}{path}"


class PersonInfoQueryRule(BaseModel):
    """One rule for other agencies' queries: for these reasons, from these agencies, this decision."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1)
    description: str
    # Legislation URIs, e.g. http://www.legislation.gov.uk/ukpga/1989/41/section/47 (Children Act 1989 s47).
    reasons: tuple[str, ...] = Field(min_length=1)
    # The querying client's agency.
    agencies: tuple[Agency, ...] = Field(min_length=1)
    decision: QueryDecision
    # A key of lawful_bases: the basis a permitted answer discloses on (none for a refusal).
    lawful_basis: str | None = None

    @field_validator("reasons")
    @classmethod
    def _uris(cls, reasons: tuple[str, ...]) -> tuple[str, ...]:
        for reason in reasons:
            if not _URI.match(reason):
                raise ValueError(f"reason {reason!r} is not an http(s) URI, e.g. a legislation.gov.uk section")
        return reasons

    def covers(self, reason: str, agency: Agency) -> bool:
        """Say whether this rule speaks of a query for this (normalised) reason from this agency."""
        return agency in self.agencies and reason in {normalise_reason(r) for r in self.reasons}


@dataclass(frozen=True)
class QueryVerdict:
    """The ISA's answer to one query: the decision, the rule (None: no rule applied), and why."""

    decision: QueryDecision
    rule_id: str | None
    policy_version: str
    lawful_basis: str | None
    reason: str


# The scope a rule is looked up by: purpose, source agency, category, viewer agency, relationship.
ScopeKey = tuple[Purpose, Agency, str, Agency, Relationship]


class Policy(BaseModel):
    """A loaded ISA, compiled into lookups when it loads (`rules_for`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    _compiled: CompiledPolicy | None = PrivateAttr(default=None)

    id: str = Field(min_length=1)
    version: str = Field(min_length=1)
    title: str
    lawful_bases: dict[str, str] = Field(min_length=1)
    rules: tuple[Rule, ...]
    # Staff roles that work the identity-linking review queue and merge or unmerge children,
    # besides the lead practitioner of a case (who may decide pairs about their own child).
    linking_roles: tuple[str, ...] = ("linking_officer",)
    # Staff roles, besides the allocated team's lead practitioner, that may record an override
    # (sharing without or against consent). None by default.
    override_roles: tuple[str, ...] = ()
    # Categories whose new records reach the allocated team's lead practitioner's inbox when the
    # child has an open case (CP-IS's promise, for every agency). None by default: an ISA opts in.
    notifiable_categories: tuple[str, ...] = ()
    # Other agencies' queries ($person-info-query): none by default, so every query is refused.
    person_info_queries: tuple[PersonInfoQueryRule, ...] = ()

    @field_validator("notifiable_categories")
    @classmethod
    def _known_notifiable(cls, categories: tuple[str, ...]) -> tuple[str, ...]:
        unknown = sorted(set(categories) - CATEGORIES)
        if unknown:
            raise ValueError(f"unknown category {unknown[0]!r}; see policies.model.CATEGORIES")
        return categories

    @model_validator(mode="after")
    def _consistent(self) -> Policy:
        seen: set[str] = set()
        for index, rule in enumerate(self.rules):
            if rule.id in seen:
                raise ValueError(f"rules.{index}.id: duplicate rule id {rule.id!r}")
            seen.add(rule.id)
            if rule.lawful_basis not in self.lawful_bases:
                raise ValueError(
                    f"rules.{index}.lawful_basis: {rule.lawful_basis!r} is not a key of lawful_bases"
                )
        return self

    @model_validator(mode="after")
    def _consistent_queries(self) -> Policy:
        seen: set[str] = set()
        for index, rule in enumerate(self.person_info_queries):
            if rule.id in seen:
                raise ValueError(f"person_info_queries.{index}.id: duplicate rule id {rule.id!r}")
            seen.add(rule.id)
            if rule.lawful_basis is not None and rule.lawful_basis not in self.lawful_bases:
                raise ValueError(
                    f"person_info_queries.{index}.lawful_basis: {rule.lawful_basis!r} is not a key of lawful_bases"
                )
        return self

    def decide_person_info_query(self, *, reason: str, agency: Agency) -> QueryVerdict:
        """Decide another agency's query for a reason: the strictest covering rule, else deny.

        The decision depends on the reason and the querying agency only, never on the child: so
        a refusal can be given before anything is matched, and says nothing about anyone.
        """
        wanted = normalise_reason(reason)
        covering = [rule for rule in self.person_info_queries if rule.covers(wanted, agency)]
        for decision in _QUERY_STRICTNESS:
            rule = next((r for r in covering if r.decision is decision), None)
            if rule is not None:
                return QueryVerdict(decision, rule.id, self.version, rule.lawful_basis, rule.description)
        return QueryVerdict(
            QueryDecision.DENY,
            None,
            self.version,
            None,
            "No rule of the ISA permits queries for this reason from this agency (deny by default).",
        )

    def model_post_init(self, context: Any, /) -> None:
        """Compile the rules into lookups when the policy loads (see CompiledPolicy)."""
        self.compiled()

    def compiled(self) -> CompiledPolicy:
        """Return this policy's lookups, compiling them on first use.

        Read from pydantic's private dict directly: a private attribute read through the model's
        `__getattr__` costs more than the lookup it guards, and this runs once per decision.
        `model_copy` copies the private dict, so lookups compiled for another object are rebuilt.
        """
        private = cast(dict[str, Any], self.__pydantic_private__)
        compiled = private["_compiled"]
        if compiled is None or compiled.owner != id(self):
            compiled = private["_compiled"] = CompiledPolicy(self)
        return cast(CompiledPolicy, compiled)

    def decision_of(self, rule: Rule) -> Decision:
        """Return the Decision a rule of this policy takes when it applies (one object per rule, built at load)."""
        return self.compiled().decisions[rule.id]

    def rules_for(
        self, purpose: Purpose, source: Agency, category: str, viewer: Agency, relationship: Relationship
    ) -> tuple[Rule, ...]:
        """Return the rules whose scope covers this item and viewer, in file order."""
        return self.compiled().rules_for(purpose, source, category, viewer, relationship)


class CompiledPolicy:
    """A policy's rules as lookups: the rules of each scope in file order, and each rule's Decision.

    Every scope of the vocabulary is compiled at once; a category outside it (which only a '*'
    rule can match) is found by scanning, once, then kept.
    """

    __slots__ = ("owner", "rules", "scopes", "decisions")

    def __init__(self, policy: Policy) -> None:
        self.owner = id(policy)
        self.rules = policy.rules
        self.decisions = {
            rule.id: Decision(
                DecisionKind(rule.decision), rule.id, policy.version, rule.lawful_basis, rule.reason, rule.redact_fields
            )
            for rule in policy.rules
        }
        self.scopes: dict[ScopeKey, tuple[Rule, ...]] = {
            key: self._scan(key)
            for key in itertools.product(Purpose, Agency, sorted(CATEGORIES), Agency, Relationship)
        }

    def rules_for(
        self, purpose: Purpose, source: Agency, category: str, viewer: Agency, relationship: Relationship
    ) -> tuple[Rule, ...]:
        """Return the rules whose scope covers this item and viewer, in file order."""
        key = (purpose, source, category, viewer, relationship)
        rules = self.scopes.get(key)
        if rules is None:
            rules = self.scopes[key] = self._scan(key)
        return rules

    def _scan(self, key: ScopeKey) -> tuple[Rule, ...]:
        purpose, source, category, viewer, relationship = key
        return tuple(
            rule
            for rule in self.rules
            if purpose in rule.purposes
            and source in rule.source_agencies
            and rule.matches_category(category)
            and viewer in rule.viewer_agencies
            and relationship in rule.viewer_relationships
        )


# A check across fields names its field at the start of its message ("rules.1.id: …").
_NAMED_IN_MESSAGE = re.compile(r"^Value error, ((?:[A-Za-z_]\w*|\d+)(?:\.(?:[A-Za-z_]\w*|\d+))*): ")


def load_policy_text(text: str, *, source: str = "<text>") -> Policy:
    """Parse and validate an ISA from YAML text; a PolicyError names the source, the line and the field."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        raise PolicyError(f"{where}: not valid YAML ({exc.__class__.__name__})") from None
    if not isinstance(data, dict):
        raise PolicyError(f"{source}: the ISA must be a YAML mapping")
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        path: tuple[str | int, ...] = tuple(first["loc"])
        named = _NAMED_IN_MESSAGE.match(first["msg"])
        if not path and named:
            path = tuple(int(part) if part.isdigit() else part for part in named.group(1).split("."))
        location = ".".join(str(part) for part in path) or "(top level)"
        raise PolicyError(f"{source}:{_line_of(text, path)}: {location}: {first['msg']}") from None


def _line_of(text: str, path: tuple[str | int, ...]) -> int:
    """Return the 1-based line of the YAML node at `path` (or of the deepest part of it that exists)."""
    node = yaml.compose(text, Loader=yaml.SafeLoader)
    assert node is not None  # the text loaded as a mapping above
    for part in path:
        child = None
        if isinstance(node, yaml.MappingNode):
            child = next((value for key, value in node.value if key.value == part), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            child = node.value[part]
        if child is None:
            break
        node = child
    return int(node.start_mark.line) + 1


ISA_SCHEMA_ID = "urn:macpt-gateway:schema:isa:v1"


def isa_json_schema() -> dict[str, Any]:
    """Return the JSON Schema of the ISA file (shipped as policies/isa/schema.json, for editors and checks).

    The model's own schema, with the vocabulary the validators check spelled out as enums, so
    that an editor can offer the categories. The cross-field checks (rule ids unique, lawful
    bases defined) are the loader's: `gateway policy check` runs them.
    """
    schema = Policy.model_json_schema()
    categories = {"enum": sorted(CATEGORIES)}
    schema["$defs"]["Rule"]["properties"]["categories"]["items"] = {"enum": sorted(CATEGORIES | {"*"})}
    schema["$defs"]["Rule"]["properties"]["special_categories"]["items"] = {"enum": sorted(SPECIAL_CATEGORY_NAMES | {"*"})}
    schema["properties"]["notifiable_categories"]["items"] = categories
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": ISA_SCHEMA_ID, **schema}


def load_policy(path: Path) -> Policy:
    """Load an ISA file."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise PolicyError(f"{path}: cannot be read ({exc.strerror})") from None
    return load_policy_text(text, source=str(path))


def default_policy() -> Policy:
    """Load the ISA shipped with the gateway."""
    text = resources.files("policies").joinpath("isa/default.yaml").read_text()
    return load_policy_text(text, source="policies/isa/default.yaml")

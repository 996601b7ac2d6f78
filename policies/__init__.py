"""The policy engine: who may see what of a child, for which purpose, and why."""

from .engine import decide
from .isa import Policy, PolicyError, Rule, default_policy, load_policy, load_policy_text
from .model import (
    AGENCIES,
    CATEGORIES,
    Agency,
    CaseStatus,
    ConsentFact,
    ConsentState,
    ConsentStatus,
    Decision,
    DecisionKind,
    ItemFacts,
    Purpose,
    RecordKind,
    RecordStatus,
    Relationship,
    Viewer,
    member_to_ask,
)

__all__ = [
    "AGENCIES",
    "CATEGORIES",
    "Agency",
    "CaseStatus",
    "ConsentFact",
    "ConsentState",
    "ConsentStatus",
    "Decision",
    "DecisionKind",
    "ItemFacts",
    "Policy",
    "PolicyError",
    "Purpose",
    "RecordKind",
    "RecordStatus",
    "Relationship",
    "Rule",
    "Viewer",
    "decide",
    "default_policy",
    "load_policy",
    "load_policy_text",
    "member_to_ask",
]

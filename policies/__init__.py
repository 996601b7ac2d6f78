"""The policy engine: who may see what of a child, for which purpose, and why."""

from .engine import decide, decide_all
from .isa import Policy, PolicyError, Rule, default_policy, load_policy, load_policy_text
from .model import (
    AGENCIES,
    CATEGORIES,
    ConsentFact,
    ConsentState,
    ConsentStatus,
    Decision,
    DecisionKind,
    ItemFacts,
    Purpose,
    Relationship,
    Viewer,
)

__all__ = [
    "AGENCIES",
    "CATEGORIES",
    "ConsentFact",
    "ConsentState",
    "ConsentStatus",
    "Decision",
    "DecisionKind",
    "ItemFacts",
    "Policy",
    "PolicyError",
    "Purpose",
    "Relationship",
    "Rule",
    "Viewer",
    "decide",
    "decide_all",
    "default_policy",
    "load_policy",
    "load_policy_text",
]

"""Every ORM model of the gateway, in one place (the audit log's lives in `audit`)."""

from .base import Base, utcnow
from .child import Child, ChildIdentifier, ChildMerge, Identity, IdentityBlock, Link, LinkMethod, LinkState, MergeKind
from .client import Client, UsedAssertion
from .consent import Consent, Override
from .item import Item, ItemContent
from .review import ReviewEntry, ReviewOutcome, ReviewStatus
from .team import Case, Team, TeamMember

__all__ = [
    "Base",
    "Case",
    "Child",
    "ChildIdentifier",
    "ChildMerge",
    "Client",
    "Consent",
    "Identity",
    "IdentityBlock",
    "Item",
    "ItemContent",
    "Link",
    "LinkMethod",
    "LinkState",
    "MergeKind",
    "Override",
    "ReviewEntry",
    "ReviewOutcome",
    "ReviewStatus",
    "Team",
    "TeamMember",
    "UsedAssertion",
    "utcnow",
]

"""Every ORM model of the gateway, in one place (the audit log's lives in `audit`)."""

from .base import Agency, Base, utcnow
from .child import Child, ChildIdentifier, Identity, Link, LinkMethod, LinkState, RecordStatus
from .client import Client, UsedAssertion
from .consent import Consent, Override
from .item import Item
from .team import Case, Team, TeamMember

__all__ = [
    "Agency",
    "Base",
    "Case",
    "Child",
    "ChildIdentifier",
    "Client",
    "Consent",
    "Identity",
    "Item",
    "Link",
    "LinkMethod",
    "LinkState",
    "Override",
    "RecordStatus",
    "Team",
    "TeamMember",
    "UsedAssertion",
    "utcnow",
]

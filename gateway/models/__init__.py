"""Every ORM model of the gateway, in one place (the audit log's lives in `audit`)."""

from .base import Base, utcnow
from .child import Child, ChildIdentifier, ChildMerge, Identity, IdentityBlock, Link, LinkMethod, LinkState, MergeKind
from .client import Client, UsedAssertion
from .consent import Consent, Override
from .inbox import (
    DeliveryStatus,
    InboxEntry,
    InboxKind,
    SchoolContact,
    SchoolContactRole,
    SchoolPlacement,
    TeamWebhook,
    WebhookDelivery,
)
from .item import AlertDetail, Item, ItemContent, ItemDetail, PersonDetail
from .person_query import PersonQueryReferral, ReferralStatus
from .policy import PolicyVersion
from .review import ReviewEntry, ReviewOutcome, ReviewStatus
from .sharing import BreakGlass, RequestStatus, SeeRequest
from .team import Case, PlanCategory, Team, TeamMember

__all__ = [
    "AlertDetail",
    "Base",
    "BreakGlass",
    "Case",
    "Child",
    "ChildIdentifier",
    "ChildMerge",
    "Client",
    "DeliveryStatus",
    "Consent",
    "Identity",
    "InboxEntry",
    "InboxKind",
    "IdentityBlock",
    "Item",
    "ItemContent",
    "ItemDetail",
    "Link",
    "LinkMethod",
    "LinkState",
    "MergeKind",
    "Override",
    "PersonDetail",
    "PersonQueryReferral",
    "PlanCategory",
    "PolicyVersion",
    "ReferralStatus",
    "RequestStatus",
    "ReviewEntry",
    "ReviewOutcome",
    "ReviewStatus",
    "SchoolContact",
    "SchoolContactRole",
    "SchoolPlacement",
    "SeeRequest",
    "Team",
    "TeamMember",
    "TeamWebhook",
    "UsedAssertion",
    "WebhookDelivery",
    "utcnow",
]

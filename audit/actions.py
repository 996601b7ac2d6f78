"""The vocabulary of the audit trail: actions shaped `source:subject:action`, outcomes, actors."""

from __future__ import annotations

from enum import StrEnum


class AuditAction(StrEnum):
    """What happened. New actions are added here, never spelled inline."""

    CLIENT_TOKEN_ISSUED = "client:token:issued"
    CLIENT_TOKEN_REFUSED = "client:token:refused"
    CLIENT_RECORDS_PUSHED = "client:records:pushed"
    CLIENT_RECORDS_REJECTED = "client:records:rejected"
    IDENTITY_LINK_CREATED = "identity:link:created"
    STAFF_VIEW_OPENED = "staff:view:opened"
    STAFF_VIEW_REFUSED = "staff:view:refused"
    STAFF_SEARCH_PERFORMED = "staff:search:performed"


class Outcome(StrEnum):
    """How it ended."""

    SUCCESS = "success"
    DENIED = "denied"
    FAILURE = "failure"


class ActorType(StrEnum):
    """Who acted: a person, an agency system, or the gateway itself."""

    USER = "user"
    CLIENT = "client"
    SYSTEM = "system"

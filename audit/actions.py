"""The vocabulary of the audit trail: actions shaped `source:subject:action`, outcomes, actors."""

from __future__ import annotations

from enum import StrEnum


class AuditAction(StrEnum):
    """What happened. New actions are added here, never spelled inline."""

    CLIENT_TOKEN_ISSUED = "client:token:issued"
    CLIENT_TOKEN_REFUSED = "client:token:refused"
    CLIENT_RECORDS_PUSHED = "client:records:pushed"
    CLIENT_RECORDS_REJECTED = "client:records:rejected"
    CLIENT_RECORDS_RETRACTED = "client:records:retracted"
    IDENTITY_LINK_CREATED = "identity:link:created"
    IDENTITY_LINK_PROPOSED = "identity:link:proposed"
    IDENTITY_LINK_CONFIRMED = "identity:link:confirmed"
    IDENTITY_LINK_REJECTED = "identity:link:rejected"
    IDENTITY_LINK_REFUSED = "identity:link:refused"
    IDENTITY_RECORD_MOVED = "identity:record:moved"
    IDENTITY_REVIEW_LISTED = "identity:review:listed"
    IDENTITY_CHILD_MERGED = "identity:child:merged"
    IDENTITY_CHILD_UNMERGED = "identity:child:unmerged"
    ENCOMPASS_NOTICE_ROUTED = "encompass:notice:routed"
    ENCOMPASS_NOTICE_UNROUTED = "encompass:notice:unrouted"
    ENCOMPASS_NOTICE_WITHHELD = "encompass:notice:withheld"
    ENCOMPASS_NOTICE_ACKNOWLEDGED = "encompass:notice:acknowledged"
    ENCOMPASS_NOTICE_OVERDUE = "encompass:notice:overdue"
    ENCOMPASS_INBOX_LISTED = "encompass:inbox:listed"
    NOTIFICATION_CREATED = "notification:item:created"
    NOTIFICATIONS_LISTED = "staff:notifications:listed"
    NOTIFICATION_READ = "staff:notification:read"
    NOTIFICATION_WEBHOOK_FAILED = "notification:webhook:failed"
    STAFF_TEAM_CREATED = "staff:team:created"
    STAFF_TEAM_UPDATED = "staff:team:updated"
    STAFF_TEAMS_LISTED = "staff:teams:listed"
    STAFF_MEMBER_ADDED = "staff:member:added"
    STAFF_MEMBER_UPDATED = "staff:member:updated"
    STAFF_MEMBER_DEACTIVATED = "staff:member:deactivated"
    STAFF_ADMIN_REFUSED = "staff:admin:refused"
    STAFF_CASE_OPENED = "staff:case:opened"
    STAFF_CASE_UPDATED = "staff:case:updated"
    STAFF_CASE_CLOSED = "staff:case:closed"
    STAFF_CASE_REFUSED = "staff:case:refused"
    STAFF_CASES_LISTED = "staff:cases:listed"
    STAFF_CONSENT_RECORDED = "staff:consent:recorded"
    STAFF_CONSENTS_LISTED = "staff:consents:listed"
    CLIENT_CONSENT_IMPORTED = "client:consent:imported"
    STAFF_OVERRIDE_RECORDED = "staff:override:recorded"
    STAFF_OVERRIDE_REFUSED = "staff:override:refused"
    STAFF_BREAK_GLASS_STARTED = "staff:break-glass:started"
    STAFF_BREAK_GLASS_REFUSED = "staff:break-glass:refused"
    STAFF_REQUEST_CREATED = "staff:request:created"
    STAFF_REQUESTS_LISTED = "staff:requests:listed"
    STAFF_REQUEST_DECIDED = "staff:request:decided"
    STAFF_REQUEST_REFUSED = "staff:request:refused"
    SYSTEM_POLICY_LOADED = "system:policy:loaded"
    SYSTEM_POLICY_REJECTED = "system:policy:rejected"
    IG_POLICY_EXPLAINED = "ig:policy:explained"
    STAFF_VIEW_OPENED = "staff:view:opened"
    STAFF_VIEW_REFUSED = "staff:view:refused"
    STAFF_SEARCH_PERFORMED = "staff:search:performed"
    IG_ACCESS_REFUSED = "ig:access:refused"
    IG_AUDIT_SEARCHED = "ig:audit:searched"
    IG_DISCLOSURES_REPORTED = "ig:disclosures:reported"
    IG_REVIEW_RECORDED = "ig:review:recorded"
    # Another agency's $person-info-query: answered (permit), referred to the lead practitioner
    # (review), refused by the ISA (deny), or rejected (the client or the query cannot be taken).
    CLIENT_PERSON_QUERY_ANSWERED = "client:person-query:answered"
    CLIENT_PERSON_QUERY_REFERRED = "client:person-query:referred"
    CLIENT_PERSON_QUERY_DENIED = "client:person-query:denied"
    CLIENT_PERSON_QUERY_REJECTED = "client:person-query:rejected"
    # A lead practitioner's queue of referred queries: listed, one decided (share the contact or
    # decline), or a decision refused (not theirs to decide, or the child erased).
    STAFF_PERSON_QUERIES_LISTED = "staff:person-queries:listed"
    STAFF_PERSON_QUERY_DECIDED = "staff:person-query:decided"
    STAFF_PERSON_QUERY_REFUSED = "staff:person-query:refused"


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


class ReviewReason(StrEnum):
    """Why an event needs an IG officer's look. A feature flags the event it records with one.

    The reasons travel in the event itself (`detail["review"]`), so the queue can be checked
    against the tamper-evident trail.
    """

    REFUSED = "refused"
    VOLUME = "volume"
    OUT_OF_HOURS = "out_of_hours"
    BREAK_GLASS = "break_glass"
    OVERRIDE = "override"
    # A view that disclosed an item on an approved request to see it.
    REQUEST_APPROVED = "request_approved"
    MERGE = "merge"
    UNMERGE = "unmerge"
    ENCOMPASS_UNACKNOWLEDGED = "encompass_unacknowledged"

"""The audit trail: append-only, hash-chained, each event an RFC 9162 Merkle leaf."""

from .actions import ActorType, AuditAction, Outcome
from .log import (
    Actor,
    AppendOnlyViolation,
    AuditRecord,
    ItemDecisionRef,
    VerificationResult,
    decode_items,
    install_append_only_guard,
    record,
    verify,
)
from .models import AuditBase, AuditEvent

__all__ = [
    "Actor",
    "ActorType",
    "AppendOnlyViolation",
    "AuditAction",
    "AuditBase",
    "AuditEvent",
    "AuditRecord",
    "ItemDecisionRef",
    "Outcome",
    "VerificationResult",
    "decode_items",
    "install_append_only_guard",
    "record",
    "verify",
]

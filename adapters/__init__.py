"""Adapters: each inbound format turned into our own types (`Submission`, `IdentityClaim`, `InboundRecord`)."""

from .nhs_fhir import NHS_NUMBER_SYSTEM, NhsFhirAdapter, operation_outcome, parse_bundle, parse_resource, resource_response
from .types import (
    Adapter,
    AdapterError,
    ClaimEntry,
    Entry,
    EntryOutcome,
    EntryStatus,
    IdentityClaim,
    InboundRecord,
    Issue,
    RecordEntry,
    RejectedEntry,
    Rendered,
    Submission,
    TooManyEntries,
)

__all__ = [
    "NHS_NUMBER_SYSTEM",
    "Adapter",
    "AdapterError",
    "ClaimEntry",
    "Entry",
    "EntryOutcome",
    "EntryStatus",
    "IdentityClaim",
    "InboundRecord",
    "Issue",
    "NhsFhirAdapter",
    "RecordEntry",
    "RejectedEntry",
    "Rendered",
    "Submission",
    "TooManyEntries",
    "operation_outcome",
    "parse_bundle",
    "parse_resource",
    "resource_response",
]

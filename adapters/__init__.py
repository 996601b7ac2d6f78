"""Adapters: each inbound format turned into our own types (`InboundRecord`, `IdentityClaim`)."""

from .nhs_fhir import NHS_NUMBER_SYSTEM, operation_outcome, parse_bundle, parse_resource, response_bundle
from .types import AdapterError, EntryResponse, EntryResult, IdentityClaim, InboundRecord, Issue, ParsedBundle

__all__ = [
    "NHS_NUMBER_SYSTEM",
    "AdapterError",
    "EntryResponse",
    "EntryResult",
    "IdentityClaim",
    "InboundRecord",
    "Issue",
    "ParsedBundle",
    "operation_outcome",
    "parse_bundle",
    "parse_resource",
    "response_bundle",
]

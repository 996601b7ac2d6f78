"""The consent registry as FHIR: registry rows handed to the adapter as plain values (adapters/fhir_consent.py)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from adapters.fhir_consent import ConsentExport, ConsentSource, ConsentTerms, consent_bundle
from gateway.models import Consent


def to_bundle(child_id: uuid.UUID, consents: Sequence[Consent]) -> dict[str, Any]:
    """Return a child's consent decisions as a FHIR R4 collection Bundle of Consent resources (no notes)."""
    return consent_bundle([_export(child_id, consent) for consent in consents])


def _export(child_id: uuid.UUID, consent: Consent) -> ConsentExport:
    source = None
    if consent.client_id is not None and consent.source_record_id is not None and consent.source_version is not None:
        source = ConsentSource(consent.client_id, consent.source_record_id, consent.source_version)
    return ConsentExport(
        id=str(consent.id),
        child_id=str(child_id),
        terms=ConsentTerms(
            status=consent.status.value,
            purpose=consent.purpose.value,
            given_by=consent.given_by,
            giver_relationship=consent.giver_relationship or "",
            agencies=tuple(consent.agencies),
            categories=tuple(consent.categories),
            period_start=consent.period_start,
            period_end=consent.period_end,
        ),
        recorded_at=consent.recorded_at,
        source=source,
    )

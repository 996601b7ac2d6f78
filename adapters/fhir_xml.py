"""FHIR resources as XML: the answers the gateway gives a client that asked for XML.

The gateway builds every FHIR answer as JSON-shaped data (adapters/nhs_fhir.py); this module
turns one into FHIR XML through fhir.resources' own models, which also checks that it is valid
FHIR, so that no XML is written by hand. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

XML_MEDIA_TYPE = "application/fhir+xml"


class NotSerialisable(ValueError):
    """The data is not a FHIR resource fhir.resources can write (unknown type, or invalid)."""


def to_xml(resource: Mapping[str, Any]) -> bytes:
    """Return a FHIR resource, given as JSON-shaped data, as FHIR XML (UTF-8, with its declaration)."""
    resource_type = resource.get("resourceType")
    if not isinstance(resource_type, str):
        raise NotSerialisable("the data has no resourceType")
    try:
        model_class = get_fhir_model_class(resource_type)
    except (KeyError, ValueError):  # fhir.resources raises either, by version
        raise NotSerialisable(f"{resource_type!r} is not a FHIR R4 resource type") from None
    try:
        model = model_class.model_validate(dict(resource))
    except ValidationError as error:
        # Only where each error is, never the values: a resource may hold personal data.
        where = sorted({".".join(str(part) for part in e["loc"]) for e in error.errors()})
        raise NotSerialisable(f"the {resource_type} is not valid FHIR at: {', '.join(where)}") from None
    # Annotated as str, but fhir.resources 8 returns the serialised bytes; either is taken.
    xml: str | bytes = model.model_dump_xml()
    return xml if isinstance(xml, bytes) else xml.encode()


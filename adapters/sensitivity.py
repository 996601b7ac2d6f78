"""Label what the source did not: a record's codes of sexual health, HIV, termination of pregnancy,
fertility, gender identity services or mental health give it the sensitivity label the policy
decides on (ARCHITECTURE.md §5).

A source's own `meta.security` labels are carried as they are; this adds labels, never removes
one. The code list is data (`adapters/sensitivity_codes.json`), not code, so that a partnership's
clinical safety officer can read and extend it: SNOMED CT concepts matched exactly, ICD-10 codes
matched by prefix (`F` is the whole mental and behavioural chapter, `F64` gender identity).
Written here rather than taken from a terminology server: the gateway must label offline, per
record, in microseconds, and a list a person can review is the point.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

SNOMED = "http://snomed.info/sct"
ICD10_SYSTEMS = frozenset({"http://hl7.org/fhir/sid/icd-10", "http://hl7.org/fhir/sid/icd-10-uk"})


@dataclass(frozen=True)
class Classifier:
    """Sensitivity labels by SNOMED CT concept and by ICD-10 prefix."""

    version: str
    by_snomed: Mapping[str, frozenset[str]]
    by_icd10_prefix: Mapping[str, frozenset[str]]

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> Classifier:
        """Build a classifier from the code list's JSON shape (see sensitivity_codes.json)."""
        by_snomed: dict[str, set[str]] = {}
        by_prefix: dict[str, set[str]] = {}
        for label, codes in data["labels"].items():
            for code in codes.get("snomed", []):
                by_snomed.setdefault(str(code), set()).add(label)
            for prefix in codes.get("icd10_prefixes", []):
                by_prefix.setdefault(_icd10(str(prefix)), set()).add(label)
        return cls(
            version=str(data["version"]),
            by_snomed={code: frozenset(labels) for code, labels in by_snomed.items()},
            by_icd10_prefix={prefix: frozenset(labels) for prefix, labels in by_prefix.items()},
        )

    def labels_for(self, codings: Iterable[Mapping[str, Any]]) -> frozenset[str]:
        """Return the labels the codings call for (empty when none is on the list)."""
        labels: set[str] = set()
        for coding in codings:
            code = coding.get("code")
            if not isinstance(code, str):
                continue
            system = coding.get("system")
            if system == SNOMED:
                labels |= self.by_snomed.get(code, frozenset())
            elif system in ICD10_SYSTEMS:
                normalised = _icd10(code)
                # Every prefix of the code, from the chapter letter to the whole code.
                for end in range(1, len(normalised) + 1):
                    labels |= self.by_icd10_prefix.get(normalised[:end], frozenset())
        return frozenset(labels)


def _icd10(code: str) -> str:
    return code.strip().upper().replace(".", "")


def shipped_classifier() -> Classifier:
    """Return the classifier of the shipped code list."""
    text = resources.files("adapters").joinpath("sensitivity_codes.json").read_text()
    return Classifier.from_mapping(json.loads(text))


DEFAULT_CLASSIFIER = shipped_classifier()

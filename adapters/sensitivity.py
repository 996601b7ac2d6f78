"""Label what the source did not: a record's codes of sexual health, HIV, termination of pregnancy,
fertility, gender identity services or mental health give it the sensitivity label the policy
decides on (ARCHITECTURE.md §5).

A source's own `meta.security` labels are carried as they are; this adds labels, never removes
one. The code list is data (`adapters/sensitivity_codes.json`), not code, so that a partnership's
clinical safety officer can read and extend it: SNOMED CT concepts matched exactly, ICD-10 codes
matched by prefix (`F` is the whole mental and behavioural chapter, `F64` gender identity), and
codes of any other system (a local service type, an NHS treatment function code) matched exactly.
A partnership extends the shipped list with its own file of the same shape
(GATEWAY_SENSITIVITY_CODES_PATH): its codes are added to the shipped ones, never replacing them.
Written here rather than taken from a terminology server: the gateway must label offline, per
record, in microseconds, and a list a person can review is the point.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

SNOMED = "http://snomed.info/sct"
ICD10_SYSTEMS = frozenset({"http://hl7.org/fhir/sid/icd-10", "http://hl7.org/fhir/sid/icd-10-uk"})
_K = TypeVar("_K")


@dataclass(frozen=True)
class Classifier:
    """Sensitivity labels by SNOMED CT concept and by ICD-10 prefix."""

    version: str
    by_snomed: Mapping[str, frozenset[str]]
    by_icd10_prefix: Mapping[str, frozenset[str]]
    by_code: Mapping[tuple[str, str], frozenset[str]] = field(default_factory=dict)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> Classifier:
        """Build a classifier from the code list's JSON shape (see sensitivity_codes.json).

        Raises ValueError naming the element that is not of that shape.
        """
        if not isinstance(data, Mapping) or not isinstance(data.get("version"), str) or not data["version"]:
            raise ValueError("version: a non-empty string is required")
        labels = data.get("labels")
        if not isinstance(labels, Mapping):
            raise ValueError("labels: an object of label → codes is required")
        by_snomed: dict[str, set[str]] = {}
        by_prefix: dict[str, set[str]] = {}
        by_code: dict[tuple[str, str], set[str]] = {}
        for label, codes in labels.items():
            if not isinstance(codes, Mapping):
                raise ValueError(f"labels.{label}: an object is required")
            for code in _strings(codes, "snomed", label):
                by_snomed.setdefault(code, set()).add(label)
            for prefix in _strings(codes, "icd10_prefixes", label):
                by_prefix.setdefault(_icd10(prefix), set()).add(label)
            listed = codes.get("codes", [])
            if not isinstance(listed, list):
                raise ValueError(f"labels.{label}.codes: a list of {{system, code}} objects is required")
            for position, coding in enumerate(listed):
                if not (isinstance(coding, Mapping) and isinstance(coding.get("system"), str)
                        and isinstance(coding.get("code"), str) and coding["system"] and coding["code"].strip()):
                    raise ValueError(f"labels.{label}.codes[{position}]: an object with a system and a code is required")
                system, code = coding["system"], coding["code"].strip()
                # A SNOMED CT or ICD-10 code listed here matches as it would under snomed or
                # icd10_prefixes (an ICD-10 code then also covers its subdivisions).
                if system == SNOMED:
                    by_snomed.setdefault(code, set()).add(label)
                elif system in ICD10_SYSTEMS:
                    by_prefix.setdefault(_icd10(code), set()).add(label)
                else:
                    by_code.setdefault((system, code), set()).add(label)
        return cls(
            version=data["version"],
            by_snomed={code: frozenset(labels) for code, labels in by_snomed.items()},
            by_icd10_prefix={prefix: frozenset(labels) for prefix, labels in by_prefix.items()},
            by_code={key: frozenset(labels) for key, labels in by_code.items()},
        )

    @property
    def labels(self) -> frozenset[str]:
        """Every label this classifier can give."""
        found: set[str] = set()
        for table in (self.by_snomed, self.by_icd10_prefix, self.by_code):
            for labels in table.values():
                found |= labels
        return frozenset(found)

    def extended_with(self, other: Classifier) -> Classifier:
        """Return this classifier with another's codes added: a code on both lists gives both labels."""
        return Classifier(
            version=f"{self.version}+{other.version}",
            by_snomed=_union(self.by_snomed, other.by_snomed),
            by_icd10_prefix=_union(self.by_icd10_prefix, other.by_icd10_prefix),
            by_code=_union(self.by_code, other.by_code),
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
            elif self.by_code and isinstance(system, str):
                labels |= self.by_code.get((system, code), frozenset())
        return frozenset(labels)


def _icd10(code: str) -> str:
    return code.strip().upper().replace(".", "")


def _strings(codes: Mapping[str, Any], element: str, label: str) -> list[str]:
    values = codes.get(element, [])
    if not isinstance(values, list) or not all(isinstance(v, str) and v.strip() for v in values):
        raise ValueError(f"labels.{label}.{element}: a list of non-empty strings is required")
    return [v.strip() for v in values]


def _union(first: Mapping[_K, frozenset[str]], second: Mapping[_K, frozenset[str]]) -> dict[_K, frozenset[str]]:
    merged = dict(first)
    for key, labels in second.items():
        merged[key] = merged.get(key, frozenset()) | labels
    return merged


def shipped_classifier() -> Classifier:
    """Return the classifier of the shipped code list."""
    text = resources.files("adapters").joinpath("sensitivity_codes.json").read_text()
    return Classifier.from_mapping(json.loads(text))


def load_classifier(extension: Path | None) -> Classifier:
    """Return the shipped classifier, extended with a partnership's own code list if one is given.

    Raises ValueError (naming the file and the element) for a file that is not a code list.
    """
    shipped = shipped_classifier()
    if extension is None:
        return shipped
    try:
        data = json.loads(extension.read_text(encoding="utf-8"))
        return shipped.extended_with(Classifier.from_mapping(data))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, ValueError) as exc:
        raise ValueError(f"{extension}: not a sensitivity code list: {exc}") from None


DEFAULT_CLASSIFIER = shipped_classifier()

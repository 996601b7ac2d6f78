"""A partnership's sensitivity code list is checked against the policy's labels when the gateway starts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import Engine

from adapters.sensitivity import DEFAULT_CLASSIFIER, SNOMED
from gateway.app import create_app
from gateway.settings import Settings

LOCAL = "https://example.org/CodeSystem/local-service"


def code_list(path: Path, *labels: str) -> Path:
    """Write a code list giving each label one local code, named after it."""
    path.write_text(
        json.dumps({"version": "partnership-1", "labels": {label: {"codes": [{"system": LOCAL, "code": f"code-{label}"}]}
                                                          for label in labels}}),
        encoding="utf-8",
    )
    return path


def test_without_a_file_the_shipped_list_is_used() -> None:
    assert Settings(sensitivity_codes_path=None).load_classifier() == DEFAULT_CLASSIFIER


def test_a_file_of_labels_the_policy_knows_is_added(tmp_path: Path) -> None:
    path = code_list(tmp_path / "codes.json", "PSY", "SDV", "gender-identity-history")

    classifier = Settings(sensitivity_codes_path=path).load_classifier()

    assert classifier.version == f"{DEFAULT_CLASSIFIER.version}+partnership-1"
    for label in ("PSY", "SDV", "gender-identity-history"):
        assert classifier.labels_for([{"system": LOCAL, "code": f"code-{label}"}]) == {label}
    assert classifier.labels_for([{"system": SNOMED, "code": "86406008"}]) == {"HIV"}  # shipped, kept


def test_a_label_the_policy_does_not_know_is_refused(tmp_path: Path) -> None:
    path = code_list(tmp_path / "codes.json", "PSY", "XYZ")

    with pytest.raises(ValueError) as raised:
        Settings(sensitivity_codes_path=path).load_classifier()

    message = str(raised.value)
    assert message.startswith(f"{path}: labels XYZ are not special categories the policy knows")
    assert "PSY," not in message.split("(")[0]  # only the unknown label is named as unknown


def test_a_file_that_is_not_a_code_list_is_refused_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "codes.json"
    path.write_text("[]", encoding="utf-8")

    with pytest.raises(ValueError, match="codes.json: not a sensitivity code list"):
        Settings(sensitivity_codes_path=path).load_classifier()


def test_the_app_starts_with_a_code_list_of_known_labels(settings: Settings, engine: Engine, tmp_path: Path) -> None:
    path = code_list(tmp_path / "codes.json", "SDV")

    app = create_app(settings.model_copy(update={"sensitivity_codes_path": path}), engine=engine)

    assert app.state.classifier.labels_for([{"system": LOCAL, "code": "code-SDV"}]) == {"SDV"}


def test_the_app_does_not_start_with_a_label_the_policy_does_not_know(
    settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    path = code_list(tmp_path / "codes.json", "XYZ")

    with pytest.raises(ValueError, match="labels XYZ are not special categories"):
        create_app(settings.model_copy(update={"sensitivity_codes_path": path}), engine=engine)

"""The policy benchmark's checks: it runs small, and its check catches what must never be shown."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from bench.policy import check, main, view_items
from policies import Decision, DecisionKind


def test_a_small_run_passes_its_checks_and_writes_its_report(tmp_path: Path) -> None:
    report = tmp_path / "policy.json"

    assert main(["--items", "60", "--runs", "3", "--report", str(report)]) == 0

    written = json.loads(report.read_text())
    assert written["problems"] == [] and written["child_protection"]["median_ms"] > 0
    assert sum(written["family_help"]["decisions"].values()) == 60


def test_the_check_catches_a_handling_code_c_item_shown_and_a_rule_missing() -> None:
    items = [replace(view_items(1)[0], police_handling_code="C")]
    shown = [Decision(DecisionKind.DISCLOSE, "", "v", "public_task", "shown")]

    problems = check(items, shown, [Decision(DecisionKind.INDICATE, "x", "v", None, "other")])

    assert any("never may be" in p for p in problems)
    assert any("no rule id" in p for p in problems)
    assert any("different decisions" in p for p in problems)

"""The linking benchmark's scoring of outcomes against the truth (bench/linking.py evaluate)."""

from __future__ import annotations

from typing import Any

from bench.linking import evaluate


def _out(child: str, outcome: str, held_on: str | None = None) -> dict[str, Any]:
    line: dict[str, Any] = {"child_id": child, "outcome": outcome, "score": None}
    if held_on is not None:
        line["held_on"] = held_on
    return line


def test_right_wrong_missed_and_reviewed_links_are_counted() -> None:
    outputs = [
        _out("A", "new"),  # t1 makes A
        _out("A", "exact"),  # t1 joins A: right
        _out("B", "new"),  # t2 makes B
        _out("B", "scored"),  # t3 joins t2's child: wrong (and t3 is new, so no recall owed)
        _out("C", "new"),  # t2 again, as a new child: missed
        _out("A", "review", held_on="D"),  # t1 proposed for A: counts for recall, waits on D
        _out("D", "scored"),  # t1 again joins D (made for t1): right
        {"line": 8, "record_id": "x", "error": "too weak"},
    ]
    truths = ["t1", "t1", "t2", "t3", "t2", "t1", "t1", "t4"]

    quality = evaluate(outputs, truths)

    assert (quality.records, quality.errors, quality.review) == (8, 1, 1)
    assert (quality.automatic, quality.automatic_right) == (3, 2)
    assert (quality.should_join, quality.joined) == (4, 3)
    assert round(quality.precision, 4) == round(2 / 3, 4)
    assert quality.recall == 0.75
    assert quality.review_share == 1 / 8

"""The benchmark's findings: figures against their targets, correctness checks, printed and saved as JSON."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Figure:
    """One measured number; `meets` is None for a figure with no target (information only)."""

    section: str
    name: str
    value: float | int | None
    unit: str
    target: str = ""
    meets: bool | None = None
    note: str = ""

    def shown_value(self) -> str:
        """Return the value as printed (integers whole, small numbers with more digits)."""
        if self.value is None:
            return "n/a"
        if isinstance(self.value, int):
            return f"{self.value:,}"
        if abs(self.value) >= 100:
            return f"{self.value:,.0f}"
        if abs(self.value) >= 1:
            return f"{self.value:.2f}"
        return f"{self.value:.4f}"

    def verdict(self) -> str:
        """Return "meets", "misses" or "" (no target)."""
        if self.meets is None:
            return ""
        return "meets" if self.meets else "misses"


@dataclass(frozen=True)
class Check:
    """One correctness check: any failure makes the run exit 1."""

    name: str
    ok: bool
    detail: str = ""


@dataclass
class Report:
    """Everything the run found, in the order it was found."""

    machine: dict[str, Any] = field(default_factory=dict)
    figures: list[Figure] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    run_seconds: float = 0.0

    def figure(
        self,
        section: str,
        name: str,
        value: float | int | None,
        unit: str,
        *,
        at_most: float | None = None,
        at_least: float | None = None,
        target: str = "",
        note: str = "",
    ) -> None:
        """Add a figure; a bound (at_most or at_least) makes it a target that is met or missed."""
        meets: bool | None = None
        if at_most is not None:
            target = target or f"<= {at_most:g}"
            meets = value is not None and value <= at_most
        elif at_least is not None:
            target = target or f">= {at_least:g}"
            meets = value is not None and value >= at_least
        self.figures.append(Figure(section, name, value, unit, target, meets, note))

    def check(self, name: str, ok: bool, detail: str = "") -> None:
        """Add a correctness check."""
        self.checks.append(Check(name, ok, detail))

    @property
    def correct(self) -> bool:
        """Say whether every correctness check passed (and there was at least one)."""
        return bool(self.checks) and all(check.ok for check in self.checks)

    def render(self) -> str:
        """Return the report as text tables."""
        lines = ["", "== machine =="]
        lines += [f"  {key:<12} {value}" for key, value in self.machine.items()]
        rows = [
            (f.section, f.name, f"{f.shown_value()} {f.unit}".strip(), f.target, f.verdict(), f.note)
            for f in self.figures
        ]
        headers = ("phase", "figure", "value", "target", "verdict", "note")
        widths = [max(len(str(row[i])) for row in [headers, *rows]) for i in range(5)]
        lines += ["", "== figures =="]
        lines.append("  " + "  ".join(h.ljust(w) for h, w in zip(headers[:5], widths, strict=True)) + "  note")
        lines.append("  " + "  ".join("-" * w for w in widths) + "  ----")
        for row in rows:
            cells = "  ".join(str(cell).ljust(w) for cell, w in zip(row[:5], widths, strict=True))
            lines.append(f"  {cells}  {row[5]}".rstrip())
        lines += ["", "== correctness checks =="]
        for check in self.checks:
            lines.append(
                f"  [{'ok' if check.ok else 'FAIL'}] {check.name}" + (f": {check.detail}" if check.detail else "")
            )
        if self.notes:
            lines += ["", "== notes =="]
            lines += [f"  - {note}" for note in self.notes]
        missed = [f"{f.section}: {f.name}" for f in self.figures if f.meets is False]
        lines += [
            "",
            f"run time {self.run_seconds:.0f} s; targets met {sum(f.meets is True for f in self.figures)}, "
            f"missed {len(missed)}; correctness: {'all checks pass' if self.correct else 'FAILED'}",
        ]
        return "\n".join(lines)

    def save(self, path: Path) -> None:
        """Write the report as JSON."""
        path.parent.mkdir(parents=True, exist_ok=True)
        document = {
            "machine": self.machine,
            "run_seconds": round(self.run_seconds, 1),
            "correct": self.correct,
            "figures": [{**asdict(f), "verdict": f.verdict()} for f in self.figures],
            "checks": [asdict(c) for c in self.checks],
            "notes": self.notes,
        }
        path.write_text(json.dumps(document, indent=2) + "\n")

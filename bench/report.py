"""Figures, targets and the table the benchmark prints and writes."""

from __future__ import annotations

import math
import os
import platform
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


def p99(values: Sequence[float]) -> float:
    """The 99th percentile by nearest rank: the smallest value at least 99 % are at or below.

    With 100 samples it is the second largest; with fewer than 100, the largest.
    """
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]


@dataclass
class Figure:
    """One row of the table: a measured value, its target, and whether it met it.

    ``value`` is what the target is checked against and ``limit`` the target; ``fail_at``
    is where a quick run fails (twice the target, or as the issue sets it).
    """

    number: str
    name: str
    median: str
    p99: str
    target: str = "no target"
    value: float | None = None
    limit: float | None = None
    fail_at: float | None = None
    valid: bool = True

    @property
    def result(self) -> str:
        if not self.valid:
            return "INVALID"
        if self.limit is None or self.value is None:
            return "-"
        return "PASS" if self.value <= self.limit else "MISS"

    @property
    def far_off(self) -> bool:
        """More than twice the target (or invalid): what fails a quick run."""
        if not self.valid:
            return True
        if self.fail_at is None or self.value is None:
            return False
        return self.value > self.fail_at


@dataclass
class Report:
    """The whole run: its parameters, its figures and what was noticed on the way."""

    mode: str
    parameters: list[str]
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    started: datetime = field(default_factory=lambda: datetime.now(UTC))
    seconds: float = 0.0

    def add(self, figure: Figure) -> Figure:
        self.figures.append(figure)
        return figure

    def misses(self) -> list[Figure]:
        return [f for f in self.figures if f.result in ("MISS", "INVALID")]

    def far_off(self) -> list[Figure]:
        return [f for f in self.figures if f.far_off]

    def markdown(self) -> str:
        lines = [
            f"# polaris-bot benchmark ({self.mode} run)",
            "",
            f"- Date: {self.started.strftime('%Y-%m-%d %H:%M UTC')}; took {self.seconds:.0f} s",
            f"- Machine: {machine()}",
            *(f"- {p}" for p in self.parameters),
            "",
            "| # | Figure | Median | p99 | Target | Result |",
            "|---|---|---|---|---|---|",
        ]
        for f in sorted(self.figures, key=lambda f: f.number):
            lines.append(
                f"| {f.number} | {f.name} | {f.median} | {f.p99} | {f.target} | {f.result} |"
            )
        if self.notes:
            lines += ["", "Notes:", ""]
            lines += [f"- {note}" for note in self.notes]
        return "\n".join(lines) + "\n"

    def write(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.markdown(), encoding="utf-8")
        return path


def machine() -> str:
    """nproc, CPU model and Python version: what a reader needs to compare runs."""
    try:
        nproc = len(os.sched_getaffinity(0))
    except AttributeError:
        nproc = os.cpu_count() or 0
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"nproc {nproc}, CPU {model}, Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}"
    )


def ms(seconds: float) -> str:
    return "n/a" if math.isnan(seconds) else f"{seconds * 1000:.1f} ms"


def secs(seconds: float) -> str:
    return "n/a" if math.isnan(seconds) else f"{seconds:.2f} s"


def mb(size: float | None) -> str:
    """Bytes as decimal megabytes, the unit of the memory target."""
    return "n/a" if size is None else f"{size / 1e6:.1f} MB"

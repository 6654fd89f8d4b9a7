"""Collects measurements, prints them as a table, writes them as JSON lines."""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable, Iterable
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

import psutil

RESULTS = Path(__file__).parent / "results" / "results.jsonl"


@dataclass
class Report:
    run_id: str
    rows: list[dict[str, object]] = field(default_factory=list)
    notes: list[dict[str, object]] = field(default_factory=list)

    def add(self, bench: str, impl: str, samples_s: list[float],
            baseline: str | list[str] | None = None) -> None:
        ordered = sorted(samples_s)
        row: dict[str, object] = {
            "run": self.run_id, "bench": bench, "impl": impl, "n": len(ordered),
            "median_s": statistics.median(ordered),
            "p99_s": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))],
        }
        baselines = [baseline] if isinstance(baseline, str) else baseline or []
        ratios = {}
        for name in baselines:
            base = next(r for r in self.rows if r["bench"] == bench and r["impl"] == name)
            mine = float(row["median_s"])  # type: ignore[arg-type]
            # A median of 0 (a latency under the clock's millisecond) has no finite ratio.
            ratios[name] = float(base["median_s"]) / mine if mine else float("inf")  # type: ignore[arg-type]
        if ratios:
            row["ratio_vs"] = ratios
        self.rows.append(row)
        self._write(row)

    def note(self, bench: str, impl: str, facts: dict[str, object]) -> None:
        """Measurements that are not timings (counts, rates, CPU shares)."""
        row = {"run": self.run_id, "bench": bench, "impl": impl, "facts": facts}
        self.notes.append(row)
        self._write(row)

    def _write(self, row: dict[str, object]) -> None:
        RESULTS.parent.mkdir(exist_ok=True)
        with RESULTS.open("a") as out:
            out.write(json.dumps(row) + "\n")

    def print(self) -> None:
        print(f"{'bench':<16} {'impl':<34} {'p50 ms':>9} {'p99 ms':>9}  ratio")
        for r in self.rows:
            ratio = ", ".join(f"{v:.1f}x faster than {k}" for k, v in
                              dict(r.get("ratio_vs") or {}).items())  # type: ignore[call-overload]
            print(f"{r['bench']:<16} {r['impl']:<34} {float(r['median_s']) * 1e3:9.2f} "  # type: ignore[arg-type]
                  f"{float(r['p99_s']) * 1e3:9.2f}  {ratio}")  # type: ignore[arg-type]
        for note in self.notes:
            print(f"{note['bench']:<16} {note['impl']:<34} {json.dumps(note['facts'])}")


def timed(call: Callable[[], object], repeat: int, *, warm: int = 0) -> list[float]:
    """Seconds each of `repeat` calls took, after `warm` untimed ones."""
    for _ in range(warm):
        call()
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        samples.append(time.perf_counter() - start)
    return samples


def cpu_s(processes: Iterable[psutil.Process]) -> float:
    """The CPU seconds (user and system) `processes` have used so far, from the OS; one that
    is gone counts nothing."""
    total = 0.0
    for process in processes:
        with suppress(psutil.NoSuchProcess):
            times = process.cpu_times()
            total += times.user + times.system
    return total

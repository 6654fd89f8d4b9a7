"""Benchmarks: `python -m benchmarks [--quick]` prints a table and appends JSON lines to
benchmarks/results/results.jsonl. Ratios against peers measured in the same run."""

from __future__ import annotations

import argparse
import time

from benchmarks import js_invocation
from benchmarks.report import Report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="few repetitions: proves they run")
    args = parser.parse_args()
    report = Report(time.strftime("%Y%m%dT%H%M%S"))
    js_invocation.run(report, quick=args.quick)
    report.print()


if __name__ == "__main__":
    main()

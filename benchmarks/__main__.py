"""Benchmarks: `python -m benchmarks [--quick]` prints a table and appends JSON lines to
benchmarks/results/results.jsonl. Ratios against peers measured in the same run."""

from __future__ import annotations

import argparse
import time

from benchmarks import (
    cardinality,
    cluster,
    footprint,
    ingest,
    js_data,
    js_invocation,
    last_window,
    postgres_runs,
    rollup,
    scheduler,
    trust,
    tsl_compile,
    tsl_rollup,
    ws_rollup,
)
from benchmarks.report import Report

BENCHES = {"rollup": rollup.run, "ingest": ingest.run, "js_invocation": js_invocation.run,
           "js_data": js_data.run, "scheduler": scheduler.run,
           "tsl_compile": tsl_compile.run, "tsl_rollup": tsl_rollup.run, "ws_rollup": ws_rollup.run,
           "cardinality": cardinality.run, "cluster": cluster.run,
           "postgres_runs": postgres_runs.run, "footprint": footprint.run, "trust": trust.run,
           "last_window": last_window.run}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="few repetitions: proves they run")
    parser.add_argument("names", nargs="*", choices=[[], *BENCHES], metavar="NAME",
                        help=f"which to run (default: all of {', '.join(BENCHES)})")
    args = parser.parse_args()
    report = Report(time.strftime("%Y%m%dT%H%M%S"))
    for name in args.names or BENCHES:
        BENCHES[name](report, quick=args.quick)
    report.print()


if __name__ == "__main__":
    main()

"""The service side of host calls: one router that serves a run's calls by the table of
`tsq.hostcalls`, each op by its handler here.

A router is made for one attempt of one run (`RunServices`): the store ops reach that run's
loop's connector, `artifact.put` keeps files with that run, `loop.run` starts steps of its
pipeline. Each handler gets the call as the contract decoded it and returns what the contract
encodes; errors leave as they are raised, and the worker supervisor maps them to the
rejection the handler sees (`tsq.hostcalls.rejection`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from tsq.connectors.base import Connector, grouping, sampling
from tsq.errors import HostError
from tsq.hostcalls import (
    OPS,
    HostAnswer,
    KeptFile,
    LoopCall,
    Read,
    Replace,
    Side,
    numbers_only,
)
from tsq.kernels import bucketize
from tsq.lineprotocol import ParsedBatch
from tsq.selector import Selector
from tsq.series import SeriesSet

__all__ = ["HANDLERS", "HostRouter", "RunServices"]


@dataclass(frozen=True)
class RunServices:
    """What one attempt of a run may use through its host calls."""

    connector: Connector  # its loop's connector
    named: Callable[[str], Connector]  # a connector of its loop file, by name
    keep: Callable[[KeptFile], dict[str, Any]]  # artifact.put → the artifact as listed
    run_loop: Callable[[LoopCall], dict[str, Any]]  # loop.run → {result, runId}


def _select(run: RunServices, read: Read) -> SeriesSet:
    return run.connector.select(read.selector, read.start, read.end)


def _sampled(run: RunServices, read: Read) -> SeriesSet:
    """TSL's reads; with `sample`, bucketed by the connector when it samples itself (InfluxDB's
    GROUP BY time), else here: only the buckets cross to the worker. With `sample.group` too,
    grouped by the connector when it groups itself (Prometheus's `avg by`), else here: only the
    groups cross."""
    if read.sample is None:
        return _select(run, read)
    sample = read.sample
    if sample.group is not None:
        grouped = grouping(run.connector)
        if grouped is not None:
            return grouped.select_grouped(read.selector, read.start, read.end, sample.grid,
                                          sample.aggregator, sample.fills, sample.group)
        return sample.group.apply(_sampled(run, replace(read, sample=replace(sample,
                                                                              group=None))))
    pushed = sampling(run.connector)
    if pushed is not None:
        return pushed.select_sampled(read.selector, read.start, read.end, sample.grid,
                                     sample.aggregator, sample.fills)
    return bucketize(numbers_only(_select(run, read), "sampleBy"), sample.grid,
                     sample.aggregator, sample.fills)


def _write_js(run: RunServices, given: ParsedBatch | SeriesSet) -> int:
    """db.write: series, or line protocol whose good lines are written before PartialWrite."""
    if isinstance(given, SeriesSet):
        return run.connector.write(given)
    written = sum(run.connector.write(part) for part in (given.numbers, given.strings))
    if given.errors:
        raise HostError("PartialWrite", given.error_message())
    return written


def _write(run: RunServices, series: SeriesSet) -> int:
    return run.connector.write(series)


def _replace(run: RunServices, call: Replace) -> dict[str, int]:
    connector = run.connector
    deleted = sum(connector.delete(Selector(name), call.start, call.end)
                  for name in set(call.series.names))
    return {"written": connector.write(call.series), "deleted": deleted}


def _describe(run: RunServices, read: Read) -> list[tuple[str, dict[str, str]]]:
    return run.connector.describe(read.selector)


def _delete(run: RunServices, read: Read) -> int:
    return run.connector.delete(read.selector, read.start, read.end)


def _keep(run: RunServices, file: KeptFile) -> dict[str, Any]:
    return run.keep(file)


def _run_loop(run: RunServices, call: LoopCall) -> dict[str, Any]:
    return run.run_loop(call)


# Every service op of the contract, and what serves it (a guard test checks they agree).
HANDLERS: Mapping[str, Callable[[RunServices, Any], Any]] = {
    "db.select": _select,
    "db.write": _write_js,
    "db.delete": _delete,
    "series.select": _sampled,
    "series.write": _write,
    "series.replace": _replace,
    "series.describe": _describe,
    "series.delete": _delete,
    "artifact.put": _keep,
    "loop.run": _run_loop,
}


class HostRouter:
    """The host of one run attempt: (op, args, arrays) → its answer, by the tables."""

    def __init__(self, services: RunServices) -> None:
        self.services = services

    def __call__(self, op: str, args: dict[str, Any], arrays: list[Any]) -> HostAnswer:
        contract, handler = OPS.get(op), HANDLERS.get(op)
        if contract is None or contract.side is not Side.SERVICE or handler is None:
            raise HostError("TypeError", f"{op} is no host call the service serves; it serves "
                                         f"{', '.join(HANDLERS)}")
        services = self.services
        if "connector" in args:  # `{connector: "name"}`: another back-end of the loop file
            args = dict(args)
            services = replace(services, connector=services.named(str(args.pop("connector"))))
        call = contract.decode(args, arrays)
        return contract.encode(call, handler(services, call))

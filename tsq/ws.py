"""WarpScript from Python: run a script on tsq's stack VM, optionally on a connector.

    >>> from tsq import ws
    >>> ws.execute("1 2 +")
    [3]
    >>> ws.execute("[ 'token' 'cpu' {} NOW 1 h ] FETCH", connector=store)
    [[<GTS cpu{…}>, …]]

The stack comes back top first, as Warp 10's /api/v0/exec answers it; GTS are
`tsq.runtimes.ws.values.Gts` objects (`to_json()` gives Warp 10's `{c, l, a, v}` shape). Errors
raise `tsq.errors.WarpScriptError` with the line and column of the word at fault.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tsq.series import SeriesSet

__all__ = ["execute", "stack_json", "stack_series"]


def execute(script: str, *, connector: Any = None, variables: Mapping[str, Any] | None = None,
            now_us: int | None = None, timeout_s: float | None = None) -> list[Any]:
    """Run `script` and return its stack, top first. `connector` (any tsq connector, e.g. the
    embedded store) serves FETCH/FIND/UPDATE/DELETE; `variables` are stored before the script
    runs; `now_us` fixes NOW (epoch µs); `timeout_s` ends a script that runs longer."""
    from tsq.runtimes.ws.vm import Limits, Vm
    vm = Vm(connector=connector, variables=variables, now_us=now_us,
            limits=Limits(timeout_s=timeout_s))
    return vm.execute(Vm.compile(script))


def stack_json(stack: list[Any]) -> list[Any]:
    """The stack as JSON values (GTS as `{c, l, a, la, v}`, NaN as null)."""
    from tsq.runtimes.ws.jsonstack import to_json
    result: list[Any] = to_json(stack)
    return result


def stack_series(stack: list[Any]) -> SeriesSet:
    """Every GTS on the stack (in lists too), top first, as one SeriesSet with epoch-ns times;
    series holding strings or booleans are left out."""
    from tsq.runtimes.ws.gtswords import to_series
    from tsq.runtimes.ws.values import Gts

    found: list[Gts] = []
    pending: list[Any] = [stack]  # a stack of its own: lists nest as deep as a script likes
    while pending:
        value = pending.pop()
        if isinstance(value, Gts):
            found.append(value)
        elif isinstance(value, list):
            pending.extend(reversed(value))
    numeric = [g for g in found if g.values.dtype.kind in "if"]
    series = to_series(numeric)
    return SeriesSet(series.names, series.labels, series.timestamps * 1000,
                     series.values.astype("float64"), series.offsets)

"""The host-call contract: one table of ops that the worker and the service agree on, and one
mapping of errors to what a handler's promise rejects with."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tsq.connectors.base import Capabilities
from tsq.connectors.embedded import EmbeddedStore
from tsq.errors import BadRequest, HostError, TslError
from tsq.hostcalls import OPS, Side, rejection
from tsq.hostrouter import HANDLERS, HostRouter, RunServices
from tsq.kernels import Aggregator, Buckets, Fill, Grouping
from tsq.runtimes.js import WORKER_OPS
from tsq.runtimes.tsl.evaluate import Evaluation
from tsq.runtimes.tsl.runtime import HostConnector
from tsq.selector import Selector
from tsq.series import SeriesSet


def test_every_op_is_served_on_its_side_and_nothing_else_is() -> None:
    assert set(HANDLERS) == {op for op, row in OPS.items() if row.side is Side.SERVICE}
    assert set(WORKER_OPS) == {op for op, row in OPS.items() if row.side is Side.WORKER}


@pytest.mark.parametrize(("error", "expected"), [
    (HostError("LoopNotFound", "Loop.run('x'): no loop"), ("LoopNotFound", "Loop.run('x'): no loop")),
    (BadRequest("bad selector"), ("BadRequest", "bad selector")),
    (TslError("Cannot parsed query", caret="select(\n       ^"),
     ("TslError", "Cannot parsed query\nselect(\n       ^")),
    (OSError("disk full"), ("InternalError", "tsq could not serve db.write: disk full")),
])
def test_errors_reject_with_one_mapping(error: Exception, expected: tuple[str, str]) -> None:
    assert rejection(error, "db.write") == expected
    assert HostError(*expected).kind == expected[0]


def test_the_router_refuses_what_the_service_does_not_serve() -> None:
    router = HostRouter(RunServices(connector=None, named=dict, keep=dict,  # type: ignore[arg-type]
                                    run_loop=dict))
    for op in ("tsl", "db.nope"):
        with pytest.raises(HostError, match=f"{op} is no host call the service serves") as caught:
            router(op, {}, [])
        assert caught.value.kind == "TypeError"


# -- a sampleBy and the group after it cross as one read ------------------------------------------

SOURCE = ('select("cpu").from(0, 300000).sampleBy(1m, mean, "none")'
          '.groupBy(["dc"], max).rename("cpu_1m")')


class _Grouping:
    """A connector that groups in its back-end: it records what it was asked for."""

    capabilities = Capabilities(sampling=True, grouping=True)

    def __init__(self, store: EmbeddedStore) -> None:
        self.store = store
        self.asked: list[Grouping] = []

    def select_grouped(self, selector: Selector, start: int | None, end: int | None,
                       grid: Buckets, aggregator: Aggregator, fills: Sequence[Fill],
                       group: Grouping) -> SeriesSet:
        self.asked.append(group)
        return group.apply(self.store.select_sampled(selector, start, end, grid, aggregator,
                                                     fills))


@pytest.mark.parametrize("groups_itself", [False, True])
def test_a_group_after_sampleby_is_served_whole_by_the_service(tmp_path: Path,
                                                              groups_itself: bool) -> None:
    """The worker sends the group with its sampleBy: a connector that groups gets both, another
    one samples and the service's kernels group, and the worker gets the groups either way,
    equal to the kernels' over the raw points."""
    store = EmbeddedStore(tmp_path / "store.duckdb")
    rng = np.random.default_rng(5)
    stamps = np.arange(0, 300 * 10**9, 7 * 10**9)
    store.write(SeriesSet.from_series([
        ("cpu", {"dc": dc, "host": host}, stamps, rng.uniform(0, 9, len(stamps)))
        for dc, host in (("gra", "a"), ("gra", "b"), ("rbx", "c"))]))
    connector: Any = _Grouping(store) if groups_itself else store
    router = HostRouter(RunServices(connector=connector, named=lambda name: connector,
                                    keep=lambda file: {}, run_loop=lambda call: {}))
    calls: list[dict[str, Any]] = []

    def host(op: str, args: dict[str, Any], arrays: list[Any]) -> Any:
        calls.append(args)
        return router(op, args, arrays)

    found = Evaluation(HostConnector(host)).run(SOURCE)
    expected = Evaluation(_Plain(store)).run(SOURCE)
    assert [dict(s.labels) for s in found] == [{"dc": "gra"}, {"dc": "rbx"}]
    assert found.timestamps.tolist() == expected.timestamps.tolist()
    # the store buckets its points in the order it holds them, so a mean's sum is added in
    # another order than the kernels' over sorted points: equal within rounding
    np.testing.assert_allclose(found.values, expected.values, rtol=1e-12)
    [call] = calls
    assert call["sample"]["group"] == {"labels": ["dc"], "aggregator": ["max", None],
                                       "without": False}
    if groups_itself:
        assert connector.asked == [Grouping(("dc",), Aggregator("max"))]
    store.close()


class _Plain:
    """The store read raw: every method in the kernels."""

    capabilities = Capabilities()

    def __init__(self, store: EmbeddedStore) -> None:
        self.select = store.select

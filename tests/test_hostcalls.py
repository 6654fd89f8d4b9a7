"""The host-call contract: one table of ops that the worker and the service agree on, and one
mapping of errors to what a handler's promise rejects with."""

from __future__ import annotations

import pytest

from tsq.errors import BadRequest, HostError, TslError
from tsq.hostcalls import OPS, Side, rejection
from tsq.hostrouter import HANDLERS, HostRouter, RunServices
from tsq.runtimes.js import WORKER_OPS


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

"""TSL from Python: compile a query to WarpScript or PromQL, or evaluate it on a connector.

    >>> from tsq import tsl
    >>> tsl.compile('select("cpu").last(1h).sampleBy(1m, last)', "promql", now=now)
    [{'query': 'cpu', 'start': '…', 'end': '…', 'step': '1m', 'instant_query': False}]
    >>> tsl.evaluate('select("cpu").last(1h).sampleBy(1m, mean)', store)
    SeriesSet(...)

Errors raise `tsq.errors.TslError`; where the reference implementation (ovh/tsl) has a message
for the mistake, the message is the reference's.
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal

from tsq import querybudget
from tsq.errors import TslError
from tsq.runtimes.tsl.binder import parse
from tsq.series import SeriesSet

__all__ = ["compile", "evaluate"]

Target = Literal["warpscript", "promql"]


def compile(source: str, target: Target, *, token: str = "TOKEN",
            now: datetime | None = None) -> str | builtins.list[dict[str, Any]]:
    """`source` as WarpScript text (target "warpscript") or as the PromQL requests, one per
    statement: `{query, start, end, step, instant_query}` (target "promql"). `now` (timezone-aware)
    is the time `last()` counts back from; the current time by default."""
    if target == "warpscript":
        from tsq.runtimes.tsl.warpscript import to_warpscript
        return to_warpscript(parse(source, token=token))
    if target == "promql":
        from tsq.runtimes.tsl.promql import to_promql
        moment = now or datetime.now(UTC)
        if moment.tzinfo is None:
            raise TslError("now must be a timezone-aware datetime, e.g. datetime.now(UTC)")
        return [request.to_json() for request in to_promql(parse(source, token=token), now=moment)]
    raise TslError(f"unknown compile target {target!r}; expected 'warpscript' or 'promql'")


def evaluate(source: str, connector: Any, *, variables: Mapping[str, Any] | None = None,
             now: datetime | None = None) -> SeriesSet:
    """Run `source` on `connector` (any tsq connector, e.g. the embedded store) and return the
    series its statements produce, in statement order. `variables` become TSL variables
    (strings, numbers, booleans, or durations given as strings like "5m")."""
    from tsq.runtimes.tsl.evaluate import Evaluation
    return Evaluation(connector, now=now).run(source, variables or {})


def query(source: str, connector: Any, *, variables: Mapping[str, Any] | None = None,
          now: datetime | None = None) -> dict[str, Any]:
    """What `POST /v1/query` answers: `{series}` (all statements' series, joined), plus `{meta}`
    for names()/labels()/attributes()/selectors() statements."""
    from tsq.runtimes.tsl.evaluate import Evaluation
    results = Evaluation(connector, now=now).run_all(source, dict(variables or {}))
    joined = results.joined()
    querybudget.allow(joined.points, "the answer")  # the statements' series together
    answer: dict[str, Any] = {"series": joined.to_json()}
    if results.meta:
        answer["meta"] = results.meta
    return answer

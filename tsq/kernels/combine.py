"""Operators across series sets, tick by tick: `add(a, b)`, `greaterThan(a, b)`, `mask(a, b)`.

Series of the operands are matched one to one, as in PromQL: by all their labels, by only the
labels given with `on`, or by all but those given with `ignoring`. For each match, the operator
applies at the timestamps every operand has (sample first, so the ticks line up). The result has
the matching labels and the first operand's name. Comparisons, `and` and `or` give 1 or 0;
`mask(a, b)` keeps b's values where a is true (non-zero), `negmask` where it is false.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import reduce
from typing import Any

import numpy as np
import numpy.typing as npt

from tsq.errors import BadRequest
from tsq.series import SeriesSet

__all__ = ["OPERATORS", "apply"]

Array = npt.NDArray[Any]
Key = tuple[tuple[str, str], ...]


def _truth(values: Array) -> Array:
    truth: Array = (values != 0) & ~np.isnan(values)
    return truth


OPERATORS: dict[str, Callable[[Array, Array], Array]] = {
    "add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide,
    "equal": lambda a, b: (a == b).astype(np.float64),
    "notEqual": lambda a, b: (a != b).astype(np.float64),
    "greaterThan": lambda a, b: (a > b).astype(np.float64),
    "greaterOrEqual": lambda a, b: (a >= b).astype(np.float64),
    "lessThan": lambda a, b: (a < b).astype(np.float64),
    "lessOrEqual": lambda a, b: (a <= b).astype(np.float64),
    "and": lambda a, b: (_truth(a) & _truth(b)).astype(np.float64),
    "or": lambda a, b: (_truth(a) | _truth(b)).astype(np.float64),
}
MASKS = {"mask": True, "negmask": False}
BINARY_ONLY = ("sub", "div", "mask", "negmask")


def apply(op: str, operands: Sequence[SeriesSet], *, on: Sequence[str] | None = None,
          ignoring: Sequence[str] | None = None) -> SeriesSet:
    if op not in OPERATORS and op not in MASKS:
        raise BadRequest(f"unknown operator {op!r}; expected one of "
                         f"{', '.join([*OPERATORS, *MASKS])}")
    if len(operands) < 2 or (op in BINARY_ONLY and len(operands) != 2):
        raise BadRequest(f"{op} needs {'exactly' if op in BINARY_ONLY else 'at least'} two "
                         f"operands, got {len(operands)}")
    if on is not None and ignoring is not None:
        raise BadRequest("give `on` or `ignoring`, not both")
    indexed = [_by_key(operand, on, ignoring, position)
               for position, operand in enumerate(operands)]
    keys = [key for key in indexed[0] if all(key in other for other in indexed[1:])]
    out: list[tuple[str, dict[str, str], Array, Array]] = []
    for key in keys:
        members = [operand[indexed_index[key]] for operand, indexed_index in
                   zip(operands, indexed, strict=True)]
        common = reduce(np.intersect1d, [m.timestamps for m in members])
        values = [m.values[np.searchsorted(m.timestamps, common)].astype(np.float64)
                  for m in members]
        with np.errstate(divide="ignore", invalid="ignore"):
            if op in MASKS:
                chosen = _truth(values[0]) == MASKS[op]
                common, result = common[chosen], values[1][chosen]
            else:
                result = reduce(OPERATORS[op], values)
        out.append((members[0].name, dict(key), common, result))
    return SeriesSet.from_series(out)


def _by_key(operand: SeriesSet, on: Sequence[str] | None, ignoring: Sequence[str] | None,
            position: int) -> dict[Key, int]:
    found: dict[Key, int] = {}
    for index, labels in enumerate(operand.labels):
        if on is not None:
            key = tuple(sorted((k, labels[k]) for k in on if k in labels))
        else:
            dropped = set(ignoring or ())
            key = tuple(sorted((k, v) for k, v in labels.items() if k not in dropped))
        if key in found:
            raise BadRequest(f"operand {position + 1} has several series for {dict(key)}; "
                             f"match them one to one with on(...) or ignoring(...), or group "
                             f"them first")
        found[key] = index
    return found

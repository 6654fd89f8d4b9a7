"""A stack as Warp 10's /api/v0/exec answers it: JSON, GTS as `{c, l, a, la, v}`, NaN and
infinities as null (JSON has no NaN), macros as their text, sets as lists."""

from __future__ import annotations

import math
from typing import Any

import orjson

from tsq.errors import WarpScriptError

from .values import Function, Gts, Macro, Mark

__all__ = ["MAX_DEPTH", "text_of", "to_json", "to_json_text"]

# Lists and maps nested deeper than this cannot be answered: the walk is recursive, and JSON
# encoders refuse a few hundred levels (orjson 255) with an error of their own.
MAX_DEPTH = 128


def to_json(value: Any, depth: int = 0) -> Any:
    if isinstance(value, bool) or value is None or isinstance(value, int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, list | set | tuple):
        return [to_json(v, _deeper(depth)) for v in value]
    if isinstance(value, dict):
        return {_key(k): to_json(v, _deeper(depth)) for k, v in value.items()}
    if isinstance(value, Gts):
        return value.to_json()
    if isinstance(value, Macro):
        return {"macro": repr(value)}
    if isinstance(value, Function):
        return repr(value)
    if isinstance(value, Mark):
        return "MARK"
    return repr(value)


def _deeper(depth: int) -> int:
    if depth >= MAX_DEPTH:
        raise WarpScriptError(f"the stack holds LISTs or MAPs nested deeper than {MAX_DEPTH} "
                              f"levels (the limit), which cannot be answered as JSON",
                              kind="limit")
    return depth + 1


def to_js(value: Any, depth: int = 0) -> Any:
    """A stack value as JavaScript's ws() resolves it: JSON, with each GTS as db.select gives a
    series, `{name, labels, timestamps, values}`, its times in epoch milliseconds."""
    if isinstance(value, Gts):
        order = value.ticks.argsort(kind="stable")
        return {"name": value.name, "labels": dict(value.labels),
                "timestamps": (value.ticks[order] / 1000).tolist(),
                "values": [to_json(v.item() if hasattr(v, "item") else v)
                           for v in value.values[order]]}
    if isinstance(value, list | set | tuple):
        return [to_js(v, _deeper(depth)) for v in value]
    if isinstance(value, dict):
        return {_key(k): to_js(v, _deeper(depth)) for k, v in value.items()}
    return to_json(value, depth)


def _key(key: Any) -> str:
    if isinstance(key, str):
        return key
    from .vm import to_string
    return to_string(key)


def to_json_text(value: Any) -> str:
    return orjson.dumps(to_json(value)).decode()


def text_of(value: Any) -> str:
    from .vm import to_string
    return to_string(value)

"""Runtimes, one package per language, behind the protocol in `base`.

The table below is the single place that says which runtimes exist and which file extensions
imply them; the loop-file validator and the workers both read it.
"""

from __future__ import annotations

import posixpath
from functools import cache

from tsq.runtimes.base import Runtime

__all__ = ["create_runtime", "get_runtime", "runtime_for_file", "runtime_names"]

EXTENSIONS = {".js": "js", ".mjs": "js", ".cjs": "js", ".tsl": "tsl", ".mc2": "ws", ".ws": "ws"}


def runtime_names() -> tuple[str, ...]:
    return ("js", "tsl")


def runtime_for_file(file_name: str) -> str | None:
    return EXTENSIONS.get(posixpath.splitext(file_name)[1].lower())


def create_runtime(name: str, *, max_result_bytes: int = 1 << 20) -> Runtime:
    if name == "js":
        from tsq.runtimes.js import JsRuntime

        return JsRuntime(max_result_bytes=max_result_bytes)
    if name == "tsl":
        from tsq.runtimes.tsl.runtime import TslRuntime

        return TslRuntime(max_result_bytes=max_result_bytes)
    if name == "rollup":  # the loop file's `rollup:` shorthand: a TSL loop that replaces
        from tsq.runtimes.tsl.rollup import RollupRuntime

        return RollupRuntime(max_result_bytes=max_result_bytes)
    raise KeyError(f"unknown runtime {name!r}; known: {', '.join(runtime_names())}")


@cache
def get_runtime(name: str) -> Runtime:
    """The shared, default-configured runtime `name` (used to compile at deploy time)."""
    return create_runtime(name)

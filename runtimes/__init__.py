"""Runtimes, one package per language, behind the protocol in `base`.

`RUNTIMES` is the one table of the languages a worker can run: the class that runs each (imported
only when used, as sqlglot loads its dialects), the handler extensions that imply it, and
whether a loop file may name it. Adding a runtime is one module and one row here; the loop-file
validator, the service and the workers all read this table.
"""

from __future__ import annotations

import importlib
import posixpath
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache

from tsq.runtimes.base import Runtime

__all__ = ["PLANNED_EXTENSIONS", "RUNTIMES", "RuntimeEntry", "create_runtime", "get_runtime",
           "runtime_for_file", "runtime_names"]


@dataclass(frozen=True)
class RuntimeEntry:
    implementation: str  # "package.module:Class", a Runtime taking max_result_bytes
    extensions: tuple[str, ...] = ()
    in_loop_files: bool = True  # False: made by a shorthand (`rollup:`), never named by users


RUNTIMES: Mapping[str, RuntimeEntry] = {
    "js": RuntimeEntry("tsq.runtimes.js:JsRuntime", (".js", ".mjs", ".cjs")),
    "tsl": RuntimeEntry("tsq.runtimes.tsl.runtime:TslRuntime", (".tsl",)),
    "ws": RuntimeEntry("tsq.runtimes.ws.runtime:WsRuntime", (".mc2", ".ws")),
    # The loop file's `rollup:` shorthand: a TSL loop whose run replaces its window.
    "rollup": RuntimeEntry("tsq.runtimes.tsl.rollup:RollupRuntime", in_loop_files=False),
}
# Extensions of languages tsq knows but cannot run yet: a handler named so is refused at deploy
# with that reason rather than "unknown extension". (Empty today: every language runs.)
PLANNED_EXTENSIONS: Mapping[str, str] = {}


def runtime_names() -> tuple[str, ...]:
    """The runtimes a loop file may name (`runtime:`) or imply by a handler's extension."""
    return tuple(name for name, entry in RUNTIMES.items() if entry.in_loop_files)


def runtime_for_file(file_name: str) -> str | None:
    extension = posixpath.splitext(file_name)[1].lower()
    for name, entry in RUNTIMES.items():
        if extension in entry.extensions:
            return name
    return PLANNED_EXTENSIONS.get(extension)


def create_runtime(name: str, *, max_result_bytes: int = 1 << 20) -> Runtime:
    try:
        entry = RUNTIMES[name]
    except KeyError:
        raise KeyError(f"unknown runtime {name!r}; known: {', '.join(RUNTIMES)}") from None
    module, _, attribute = entry.implementation.partition(":")
    runtime: Runtime = getattr(importlib.import_module(module), attribute)(
        max_result_bytes=max_result_bytes)
    return runtime


@cache
def get_runtime(name: str) -> Runtime:
    """The shared, default-configured runtime `name` (used to compile at deploy time)."""
    return create_runtime(name)

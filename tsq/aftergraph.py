"""The `after:` graph: which loops run when another loop's scheduled run succeeds.

One place builds it from loop specs, for deploy (unknown names, cycles), the loop store (what is
deployed) and the dispatcher (whom to start after a success).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from tsq.model import LoopSpec

__all__ = ["Follows", "cycles", "followers", "follows"]

Follows = dict[str, set[str]]  # loop name → the loops it runs after, within one project


def follows(specs: Iterable[LoopSpec]) -> Follows:
    return {spec.name: {e.after for e in spec.events if e.after} for spec in specs}


def followers(specs: Iterable[LoopSpec]) -> dict[tuple[str, str], list[tuple[str, str]]]:
    """(project, loop) → the (loop, event) pairs that run after it, across projects."""
    found: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for spec in specs:
        for event in spec.events:
            if event.after:
                found.setdefault((spec.project, event.after), []).append((spec.name, event.name))
    return found


def cycles(graph: Mapping[str, Iterable[str]], starts: Iterable[str]) -> list[list[str]]:
    """One cycle per start loop that lies on one, as a closed list of names."""
    found: list[list[str]] = []
    reported: set[frozenset[str]] = set()
    for start in starts:
        path = _path_back(graph, start)
        if path and frozenset(path) not in reported:
            reported.add(frozenset(path))
            found.append(path)
    return found


def _path_back(graph: Mapping[str, Iterable[str]], start: str) -> list[str] | None:
    """A path start → … → start through `graph`, if there is one (iterative DFS)."""
    stack: list[tuple[str, list[str]]] = [(start, [start])]
    visited: set[str] = set()
    while stack:
        node, path = stack.pop()
        for successor in sorted(graph.get(node, ())):
            if successor == start:
                return [*path, start]
            if successor not in visited:
                visited.add(successor)
                stack.append((successor, [*path, successor]))
    return None

"""The `after:` graph, built once from loop specs for deploy, the loop store and dispatch."""

from __future__ import annotations

from tsq import aftergraph
from tsq.loopfile import load_loop_file
from tsq.model import LoopSpec

TEXT = """project: {project}
functions:
  raw:
    handler: h.js
    events: [{{tick: {{rate: R/2026-01-01T00:00:00Z/PT1M/ET30S}}}}]
  rollup:
    handler: h.js
    events: [{{after-raw: {{after: raw}}}}]
  report:
    handler: h.js
    events: [{{after-rollup: {{after: rollup}}}}, {{also-raw: {{after: raw}}}}]
"""


def specs(project: str) -> list[LoopSpec]:
    loops = load_loop_file(TEXT.format(project=project), "loops.yml", {"h.js": "x"}.get,
                           lambda *_: None)
    return [loop.spec for loop in loops]


def test_follows_and_followers() -> None:
    assert aftergraph.follows(specs("a")) == {"raw": set(), "rollup": {"raw"},
                                              "report": {"rollup", "raw"}}
    assert aftergraph.followers([*specs("a"), *specs("b")]) == {
        ("a", "raw"): [("rollup", "after-raw"), ("report", "also-raw")],
        ("a", "rollup"): [("report", "after-rollup")],
        ("b", "raw"): [("rollup", "after-raw"), ("report", "also-raw")],
        ("b", "rollup"): [("report", "after-rollup")]}


def test_cycles_once_each() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"d"}, "e": {"a"}}
    assert aftergraph.cycles(graph, ["a", "b", "d", "e"]) == [["a", "b", "c", "a"], ["d", "d"]]

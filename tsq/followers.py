"""Whom a successful run sets off: the runs of the loops that follow its loop (`after:`), for
the same window and scheduled time, at the versions its pipeline pinned."""

from __future__ import annotations

from tsq import aftergraph
from tsq.clock import Clock, now_ms
from tsq.errors import NotFound
from tsq.loopstore import LoopStore
from tsq.run import Run
from tsq.runlog import LogLine
from tsq.runpolicy import LIMITED_TRIGGERS
from tsq.runstore import NewRun, RunStore, run_key

__all__ = ["Followers"]


class Followers:
    """The `after:` graph of the deployed loops (cached until `forget`) and the runs it makes."""

    def __init__(self, runs: RunStore, loops: LoopStore, clock: Clock) -> None:
        self.runs = runs
        self.loops = loops
        self.clock = clock
        self._map: dict[tuple[str, str], list[tuple[str, str]]] | None = None
        self._vanished: dict[tuple[str, str], list[tuple[str, str, int]]] | None = None

    def forget(self) -> None:
        """The loops changed: the next success reads the graph again."""
        self._map = None
        self._vanished = None

    def of(self, final: Run, logs: list[LogLine]) -> list[NewRun]:
        """The runs of the loops that follow `final`'s (`after:`), at the versions its pipeline
        pinned; a follower that is not part of the pipeline says why in `final`'s log."""
        runs: list[NewRun] = []
        # Followers deleted since the pipeline started were part of it: they are not run, and
        # the run they would have followed says so (the live graph no longer names them).
        following = [*self._follower_map().get((final.project, final.loop), []),
                     *((loop, event) for loop, event, deleted_ms
                       in self._vanished_map().get((final.project, final.loop), [])
                       if deleted_ms >= final.pipeline_ms)]
        if following and not self._on_schedule(final):
            return runs
        for loop, event in following:
            try:
                version = self.loops.version_at(final.project, loop,
                                                final.pipeline_ms)
            except NotFound as exc:
                logs.append(LogLine(now_ms(self.clock), "warning",
                                    f"after: {loop} does not run: {exc.message}"))
                continue
            follower = version.spec.event(event)
            if follower is None or follower.after != final.loop:
                continue  # the pinned version does not follow this loop
            runs.append(NewRun(
                project=final.project, loop=loop, event=event, version_id=version.id,
                trigger="after", params=dict(follower.params),
                key=run_key(loop, event, final.when_ms), scheduled_ms=final.when_ms,
                window=final.window,
                pipeline_id=final.pipeline_id, pipeline_ms=final.pipeline_ms))
        return runs

    def _on_schedule(self, run: Run) -> bool:
        """Whether `run` works for a scheduled time: its pipeline began with a scheduled or
        backfilled run. A run by hand (which may cover a window too) triggers no `after:`
        followers: they would take the keys of that time's own runs, and a test run of one
        loop should not set off the rest of its pipeline."""
        root = self.runs.get(run.pipeline_id) if run.is_step else run
        return root.trigger in LIMITED_TRIGGERS

    def followed(self) -> set[tuple[str, str]]:
        """(project, loop) of every loop that other loops run `after:`."""
        return set(self._follower_map())

    def _vanished_map(self) -> dict[tuple[str, str], list[tuple[str, str, int]]]:
        """Like `_follower_map`, for the deleted loops: (loop, event, when it was deleted)."""
        vanished = self._vanished
        if vanished is None:
            vanished = {}
            for loop, deleted_ms in self.loops.deleted():
                for followed, pairs in aftergraph.followers([loop.latest.spec]).items():
                    vanished.setdefault(followed, []).extend(
                        (name, event, deleted_ms) for name, event in pairs)
            self._vanished = vanished
        return vanished

    def _follower_map(self) -> dict[tuple[str, str], list[tuple[str, str]]]:
        followers = self._map
        if followers is None:
            followers = aftergraph.followers(loop.latest.spec for loop in self.loops.live())
            self._map = followers
        return followers

"""One project's part of the shared embedded store: what a loop's `db.*`, `tsl()`, WarpScript
`FETCH`/`UPDATE`, rollups and retentions reach when its loop file names no other connector, and
what a token for one project reaches through the points endpoints.

Every project's series live in the one store, told apart by a label, `__project__`. Series
without it are shared: what operators write (Telegraf, `tsq write`, tokens for every project)
and what loops of the `default` project write, so the points stored before projects keep their
place. A project reads, and may delete, its own series and the shared ones; no other project's.
A view adds the matcher `__project__=~"|P"` to every selector it is given (so a handler asking
for `cpu{__project__="other"}` finds nothing: matchers are ANDed), sets the label on every series
it writes (whatever label a handler gave) and takes it off every series it returns. Tokens for
every project see the whole store, the label included.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from tsq.connectors.base import Connector, Prepared, grouping, preparing, sampling
from tsq.selector import Matcher, Selector
from tsq.series import SeriesSet

if TYPE_CHECKING:
    from tsq.kernels import Aggregator, Buckets, Fill, Grouping

__all__ = ["DEFAULT_PROJECT", "PROJECT_LABEL", "ProjectView"]

PROJECT_LABEL = "__project__"
DEFAULT_PROJECT = "default"  # a loop file without `project:`; its series carry no label


class ProjectView:
    def __init__(self, inner: Connector, project: str) -> None:
        self.inner = inner
        self.project = project
        self.capabilities = inner.capabilities
        self._value = "" if project == DEFAULT_PROJECT else project  # "": the label absent
        self._matcher = (Matcher.of(PROJECT_LABEL, "=~", f"|{re.escape(project)}")
                         if self._value else Matcher.of(PROJECT_LABEL, "=", ""))

    def __repr__(self) -> str:
        return f"<project {self.project} of {self.inner!r}>"

    def select(self, selector: Selector, start: int | None = None,
               end: int | None = None) -> SeriesSet:
        return self._out(self.inner.select(self._in(selector), start, end))

    def select_sampled(self, selector: Selector, start: int | None, end: int | None,
                       buckets: Buckets, aggregator: Aggregator,
                       fills: Sequence[Fill] = ()) -> SeriesSet:
        inner = sampling(self.inner)
        assert inner is not None  # called only when the capabilities (the inner's) say so
        return self._out(inner.select_sampled(self._in(selector), start, end, buckets,
                                              aggregator, fills))

    def select_grouped(self, selector: Selector, start: int | None, end: int | None,
                       buckets: Buckets, aggregator: Aggregator, fills: Sequence[Fill],
                       group: Grouping) -> SeriesSet:
        inner = grouping(self.inner)
        assert inner is not None
        return self._out(inner.select_grouped(self._in(selector), start, end, buckets,
                                              aggregator, fills, group))

    def write(self, series: SeriesSet) -> int:
        return self.inner.write(self._marked_set(series))

    def prepare(self, series: SeriesSet) -> Prepared:
        inner = preparing(self.inner)
        assert inner is not None  # called only when the capabilities (the inner's) say so
        return inner.prepare(self._marked_set(series))

    def write_prepared(self, prepared: Any) -> int:
        """A write this view's `prepare` made (its series marked as the project's)."""
        inner = preparing(self.inner)
        assert inner is not None
        return inner.write_prepared(prepared)

    def writes_quickly(self, points: int) -> bool:
        inner = preparing(self.inner)
        assert inner is not None  # called only when the capabilities (the inner's) say so
        return inner.writes_quickly(points)

    def _marked_set(self, series: SeriesSet) -> SeriesSet:
        return dataclasses.replace(series, labels=tuple(self._marked(labels)
                                                        for labels in series.labels))

    def delete(self, selector: Selector, start: int | None = None,
               end: int | None = None) -> int:
        return self.inner.delete(self._in(selector), start, end)

    def names(self) -> list[str]:
        return sorted({name for name, _ in self.inner.describe(Selector(
            matchers=(self._matcher,)))})

    def labels(self, selector: Selector | None = None) -> dict[str, list[str]]:
        found = self.inner.labels(self._in(selector or Selector()))
        found.pop(PROJECT_LABEL, None)
        return found

    def describe(self, selector: Selector) -> list[tuple[str, dict[str, str]]]:
        return [(name, _unmarked(labels))
                for name, labels in self.inner.describe(self._in(selector))]

    def close(self) -> None:
        """The store is shared: it is closed with the service, not with a view."""

    def _in(self, selector: Selector) -> Selector:
        return dataclasses.replace(selector, matchers=(*selector.matchers, self._matcher))

    def _out(self, found: SeriesSet) -> SeriesSet:
        if not any(PROJECT_LABEL in labels for labels in found.labels):
            return found
        return dataclasses.replace(found, labels=tuple(_unmarked(labels)
                                                       for labels in found.labels))

    def _marked(self, labels: Mapping[str, str]) -> dict[str, str]:
        marked = _unmarked(labels)
        if self._value:
            marked[PROJECT_LABEL] = self._value
        return marked


def _unmarked(labels: Mapping[str, str]) -> dict[str, str]:
    return {key: value for key, value in labels.items() if key != PROJECT_LABEL}

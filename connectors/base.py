"""The Connector protocol: what every time-series back-end offers tsq. Series are named by
selectors (tsq.selector); time ranges are `[start, end)` in epoch nanoseconds, either bound
optional.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast

from tsq.selector import Selector
from tsq.series import SeriesSet

if TYPE_CHECKING:  # annotations only: the kernels need not load with the protocol
    from tsq.kernels import Aggregator, Buckets, Fill, Grouping

__all__ = ["Capabilities", "Connector", "ConnectorClass", "GroupingConnector", "Prepared",
           "PreparingConnector", "SamplingConnector", "grouping", "label_values", "preparing",
           "sampling"]

@dataclass(frozen=True)
class Capabilities:
    """What a back-end can do itself, beyond the protocol; the engine does the rest."""

    sampling: bool = False  # bucketize in the back-end: the connector is a SamplingConnector
    grouping: bool = False  # and group the buckets there too: it is a GroupingConnector
    nan: bool = True  # stores NaN (InfluxDB does not: its connector drops such points)
    strings: bool = True  # stores string values (Prometheus does not: a write of them is refused)
    replaces: bool = True  # a point written again at a held timestamp replaces the old one
    range_delete: bool = True  # deletes a time range (VictoriaMetrics deletes whole series only)
    prepares: bool = False  # does part of a write ahead: the connector is a PreparingConnector


class Connector(Protocol):
    capabilities: Capabilities

    def select(self, selector: Selector, start: int | None = None,
               end: int | None = None) -> SeriesSet:
        """The matching series with their points in `[start, end)`, sorted by time."""

    def write(self, series: SeriesSet) -> int:
        """Store the points (a point at an existing timestamp replaces it); how many."""

    def delete(self, selector: Selector, start: int | None = None,
               end: int | None = None) -> int:
        """Remove the matching points in `[start, end)`; how many."""

    def names(self) -> list[str]:
        """Every series name, sorted."""

    def labels(self, selector: Selector | None = None) -> dict[str, list[str]]:
        """Label keys of the matching series (all: None) → their values, sorted."""

    def describe(self, selector: Selector) -> list[tuple[str, dict[str, str]]]:
        """The matching series without their points, (name, labels), in `select`'s order."""

    def close(self) -> None: ...


class SamplingConnector(Connector, Protocol):
    """A connector whose `capabilities.sampling` is set: it also buckets in the back-end."""

    def select_sampled(self, selector: Selector, start: int | None, end: int | None,
                       buckets: Buckets, aggregator: Aggregator,
                       fills: Sequence[Fill] = ()) -> SeriesSet:
        """`select`, then `tsq.kernels.bucketize`: only the buckets come back."""


class GroupingConnector(SamplingConnector, Protocol):
    """A connector whose `capabilities.grouping` is set: it also groups the buckets (TSL's
    groupBy right after sampleBy), in the back-end where that is exact, else in tsq."""

    def select_grouped(self, selector: Selector, start: int | None, end: int | None,
                       buckets: Buckets, aggregator: Aggregator, fills: Sequence[Fill],
                       group: Grouping) -> SeriesSet:
        """`select_sampled`, then `group.apply`: only the groups come back."""


class Prepared(Protocol):
    """A write `PreparingConnector.prepare` began: its series, and what was done ahead."""

    @property
    def series(self) -> SeriesSet: ...


class PreparingConnector(Connector, Protocol):
    """A connector whose `capabilities.prepares` is set: part of a write can be done ahead,
    on another thread, while the write before it is stored (the embedded store looks up the
    series off its write lock). `write(s)` is `write_prepared(prepare(s))`."""

    def prepare(self, series: SeriesSet) -> Prepared:
        """What `write_prepared` takes: `series` with the work that needs no lock done."""

    def write_prepared(self, prepared: Any) -> int:
        """`write` of the series `prepare` was given; still right if the store changed since."""

    def writes_quickly(self, points: int) -> bool:
        """Whether a write of `points` numbers would now be stored without waiting for other
        work or doing more than its own (a server then stores it on its event loop)."""


def label_values(described: Iterable[tuple[str, Mapping[str, str]]]) -> dict[str, list[str]]:
    """`labels()` from `describe()`: each label key of the series → its values, sorted."""
    values: dict[str, set[str]] = {}
    for _, labels in described:
        for key, value in labels.items():
            values.setdefault(key, set()).add(value)
    return {key: sorted(found) for key, found in sorted(values.items())}


def sampling(connector: Connector) -> SamplingConnector | None:
    """`connector` as a SamplingConnector when its capabilities say it samples, else None.
    The flag is the connector's promise; the protocol cannot be checked at run time."""
    return cast(SamplingConnector, connector) if connector.capabilities.sampling else None


def grouping(connector: Connector) -> GroupingConnector | None:
    """`connector` as a GroupingConnector when its capabilities say it groups, else None."""
    flags = connector.capabilities
    return cast(GroupingConnector, connector) if flags.sampling and flags.grouping else None


def preparing(connector: Connector) -> PreparingConnector | None:
    """`connector` as a PreparingConnector when its capabilities say it prepares, else None."""
    return cast(PreparingConnector, connector) if connector.capabilities.prepares else None


class ConnectorClass(Protocol):
    """An implementation as `CONNECTORS` names it: made from its loop-file configuration."""

    @classmethod
    def open(cls, config: Mapping[str, Any], data_dir: Path) -> Connector:
        """A connector for `config` (the loop file's keys); `data_dir` holds tsq's own files."""
        ...

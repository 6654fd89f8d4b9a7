"""The connectors the service has open: one per back-end that deployed loops name.

A loop's spec keeps the connector its loop file declared (`LoopSpec.connector`: its type and
keys); every host call of its runs, its retention and its rollup reach that connector, through
`for_loop`. Back-ends are opened on first use, by the class `CONNECTORS` names, and kept by
what identifies them (`instance_key`), so loops naming the same one share it; the default, for
`/write`, `/v1/query` and loops that name none, is the embedded store in the data directory.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from tsq.connectors import instance_key, load_connector_class, plain_config
from tsq.connectors.base import Connector, preparing
from tsq.errors import HostError
from tsq.model import LoopSpec
from tsq.projectview import ProjectView
from tsq.series import SeriesSet

__all__ = ["DEFAULT_CONNECTOR", "Connections"]

DEFAULT_CONNECTOR: Mapping[str, Any] = {"type": "embedded"}


# Told of every write that went through tsq to a connector (its instance key and the points):
# how late points reach the rollups that covered their time (tsq.late).
WriteListener = Callable[[tuple[Any, ...], SeriesSet], None]


class Connections:
    def __init__(self, data_dir: Path, on_write: WriteListener | None = None,
                 default: Mapping[str, Any] = DEFAULT_CONNECTOR) -> None:
        """`default` is what `/write`, `/v1/query` and loops naming no connector use: the
        embedded store here, or, in a cluster process that does not own it, the owner's."""
        self.data_dir = data_dir
        self.on_write = on_write
        self._default = default
        self._open: dict[tuple[Any, ...], Connector] = {}
        self._views: dict[tuple[int, str], ProjectView] = {}
        self._lock = threading.Lock()  # one instance per back-end, however many runs ask

    @property
    def default(self) -> Connector:
        return self.of(self._default)

    def default_if_open(self) -> Connector | None:
        """The default connector if it is open already: never opening it (the embedded store
        replays its logs), nor waiting while another connector opens."""
        return self._open.get(instance_key(plain_config(self._here(self._default))))

    def for_loop(self, spec: LoopSpec) -> Connector:
        return self._for_project(spec.connector or DEFAULT_CONNECTOR, spec.project)

    def key_for(self, spec: LoopSpec) -> tuple[Any, ...]:
        """The instance key of `spec`'s connector: what `on_write` names it by."""
        return instance_key(plain_config(self._here(spec.connector or DEFAULT_CONNECTOR)))

    def named_for(self, spec: LoopSpec) -> Callable[[str], Connector]:
        """The connectors `spec`'s loop file declares, by name (`{connector: "name"}` in a host
        call); HostError naming the declared ones for any other name."""
        def named(name: str) -> Connector:
            config = spec.connectors.get(name)
            if config is None:
                declared = ", ".join(sorted(spec.connectors)) or "none"
                raise HostError("TypeError", f"no connector named {name!r} in the loop file of "
                                             f"{spec.name} (declared: {declared})")
            return self._for_project(config, spec.project)
        return named

    def of(self, config: Mapping[str, Any]) -> Connector:
        """The open connector for `config`, opened now if no loop used it before."""
        plain = plain_config(self._here(config))
        key = instance_key(plain)
        connector = self._open.get(key)
        if connector is not None:  # not behind the lock, which another's opening may hold
            return connector
        with self._lock:
            connector = self._open.get(key)
            if connector is None:
                connector = load_connector_class(key[0]).open(plain, self.data_dir)
                if self.on_write is not None:
                    _watch_writes(connector, key, self.on_write)
                self._open[key] = connector
            return connector

    def project_view(self, project: str) -> Connector:
        """The default store as `project` sees it (tsq.projectview)."""
        return self._for_project(DEFAULT_CONNECTOR, project)

    def _for_project(self, config: Mapping[str, Any], project: str) -> Connector:
        """The connector for `config` as a loop of `project` sees it: the embedded store, which
        every project shares, through the project's view of it (tsq.projectview); any other
        back-end as the loop file configured it."""
        connector = self.of(config)
        if config.get("type") != DEFAULT_CONNECTOR["type"]:
            return connector
        key = (id(connector), project)
        view = self._views.get(key)
        if view is None:
            view = self._views.setdefault(key, ProjectView(connector, project))
        return view

    def _here(self, config: Mapping[str, Any]) -> Mapping[str, Any]:
        """The embedded store is the default wherever it lives (its owner's, in a cluster)."""
        return self._default if config.get("type") == DEFAULT_CONNECTOR["type"] else config

    def opened(self) -> list[Connector]:
        """The connectors open now (none is opened by asking)."""
        with self._lock:
            return list(self._open.values())

    def close(self) -> None:
        with self._lock:
            opened, self._open = list(self._open.values()), {}
        for connector in opened:
            connector.close()



def _watch_writes(connector: Connector, key: tuple[Any, ...], listener: WriteListener) -> None:
    """Tell `listener` of every write to `connector`. The instance's own `write` is replaced
    rather than the connector wrapped, so it stays an instance of its class for every caller
    (and its optional methods, such as `select_sampled`, stay as they are). A connector that
    prepares writes has its `write_prepared` replaced: its `write` calls that."""
    prepares = preparing(connector)
    if prepares is not None:
        write_prepared = prepares.write_prepared

        def watched_prepared(prepared: Any) -> int:
            written = write_prepared(prepared)
            listener(key, prepared.series)
            return written

        setattr(connector, "write_prepared", watched_prepared)  # noqa: B010
        return
    write = connector.write

    def watched(series: SeriesSet) -> int:
        written = write(series)
        listener(key, series)
        return written

    setattr(connector, "write", watched)  # noqa: B010 (mypy forbids assigning a method)

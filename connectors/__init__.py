"""Time-series back-ends, one module each, behind the protocol in `base`.

`CONNECTORS` is the one table of connector types: what each needs in a loop file and where its
implementation lives (imported only when used, as sqlglot loads its dialects). A type whose
module is None is known (a loop file may name it) but not built yet: deploy refuses it rather
than let the loop read and write the embedded store in its place. Adding a connector is its module
(a `ConnectorClass`: the `Connector` protocol and `open(config, data_dir)`) and its row here.

The service opens one connector per distinct configuration (`instance_key`): the keys a type
reads identify it, so loops that name the same back-end, under any name, share one instance,
and every `embedded` connector is the data directory's store.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit, urlunsplit

if TYPE_CHECKING:
    from tsq.connectors.base import ConnectorClass

__all__ = ["CONNECTORS", "SECRET_KEYS", "ConnectorType", "implemented", "instance_key",
           "load_connector_class", "plain_config", "public_url"]

# May be `{secret: …}`: never shown back.
SECRET_KEYS = frozenset({"token", "read_token", "write_token", "password"})


@dataclass(frozen=True)
class ConnectorType:
    requires: tuple[str, ...]  # loop-file keys a connector of this type must have
    module: str | None  # "package.module:Class" of the implementation, None until it exists
    options: tuple[str, ...] = ()  # the other loop-file keys it reads
    one_of: tuple[str, ...] = ()  # options of which it needs at least one

    @property
    def keys(self) -> tuple[str, ...]:
        return ("type", *self.requires, *self.options)


CONNECTORS: Mapping[str, ConnectorType] = {
    "embedded": ConnectorType((), "tsq.connectors.embedded:EmbeddedStore"),
    "influxdb": ConnectorType(("url",), "tsq.connectors.influxdb:InfluxDB",
                              ("database", "bucket", "org", "token", "username", "password",
                               "retention_policy", "version"), one_of=("database", "bucket")),
    "prometheus": ConnectorType(("url",), "tsq.connectors.prometheus:Prometheus",
                                ("token", "username", "password")),
    "victoriametrics": ConnectorType(("url",), "tsq.connectors.prometheus:VictoriaMetrics",
                                     ("token", "username", "password")),
    "warp10": ConnectorType(("url",), "tsq.connectors.warp10:Warp10",
                            ("token", "read_token", "write_token")),
}


def implemented() -> tuple[str, ...]:
    return tuple(name for name, kind in CONNECTORS.items() if kind.module is not None)


def plain_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """`config` with each `{secret: value}` replaced by its value, for the connector itself."""
    return {key: value["secret"] if isinstance(value, Mapping) and "secret" in value else value
            for key, value in config.items()}


def public_url(url: str) -> str:
    """`url` without user or password: what tsq shows of a back-end, never a secret."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def instance_key(config: Mapping[str, Any]) -> tuple[Any, ...]:
    """What identifies the back-end `config` (a loop file's connector) names: its type and the
    keys that type reads, not the name the loop file gave it."""
    name = str(config.get("type", "embedded"))
    kind = CONNECTORS[name]
    return (name, *(str(config.get(key)) for key in (*kind.requires, *kind.options)))


def load_connector_class(name: str) -> ConnectorClass:
    kind = CONNECTORS[name]
    if kind.module is None:
        raise KeyError(f"connector type {name!r} has no implementation yet")
    module, _, attribute = kind.module.partition(":")
    return cast("ConnectorClass", getattr(importlib.import_module(module), attribute))

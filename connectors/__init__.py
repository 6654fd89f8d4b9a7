"""Time-series back-ends, one module each, behind the protocol in `base`.

`CONNECTORS` is the one table of connector types: what each needs in a loop file and where its
implementation lives (imported only when used, as sqlglot loads its dialects). A type whose
module is None is known (a loop file may name it) but not built yet: deploy refuses it rather
than let the loop read and write the embedded store in its place.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["CONNECTORS", "ConnectorType", "implemented", "load_connector_class"]


@dataclass(frozen=True)
class ConnectorType:
    requires: tuple[str, ...]  # loop-file keys a connector of this type must have
    module: str | None  # "package.module:Class" of the implementation, None until it exists


CONNECTORS: Mapping[str, ConnectorType] = {
    "embedded": ConnectorType((), "tsq.connectors.embedded:EmbeddedStore"),
    "influxdb": ConnectorType(("url",), None),
    "prometheus": ConnectorType(("url",), None),
    "warp10": ConnectorType(("url",), None),
}


def implemented() -> tuple[str, ...]:
    return tuple(name for name, kind in CONNECTORS.items() if kind.module is not None)


def load_connector_class(name: str) -> type:
    kind = CONNECTORS[name]
    if kind.module is None:
        raise KeyError(f"connector type {name!r} has no implementation yet")
    module, _, attribute = kind.module.partition(":")
    return getattr(importlib.import_module(module), attribute)  # type: ignore[no-any-return]

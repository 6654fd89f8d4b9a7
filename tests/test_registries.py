"""The runtime and connector tables: each row names a real implementation, and what the loop
file accepts follows from the tables alone."""

from __future__ import annotations

import pytest

from tsq.connectors import CONNECTORS, ConnectorType, implemented, load_connector_class
from tsq.runtimes import (
    PLANNED_EXTENSIONS,
    RUNTIMES,
    create_runtime,
    runtime_for_file,
    runtime_names,
)


@pytest.mark.parametrize("name", list(RUNTIMES))
def test_each_runtime_row_builds_the_runtime_it_names(name: str) -> None:
    assert create_runtime(name).name == name


def test_extensions_imply_their_runtime() -> None:
    assert {ext: runtime_for_file(f"h{ext}") for ext in (".js", ".MJS", ".tsl", ".ws")} == {
        ".js": "js", ".MJS": "js", ".tsl": "tsl", ".ws": "ws"}
    assert runtime_for_file("h.py") is None
    assert set(PLANNED_EXTENSIONS.values()).isdisjoint(RUNTIMES)


def test_loop_files_name_only_user_runtimes() -> None:
    assert runtime_names() == ("js", "tsl", "ws")  # `rollup` comes only from the shorthand


def test_unknown_runtime() -> None:
    with pytest.raises(KeyError, match="unknown runtime 'cobol'; known: js, tsl, ws, rollup"):
        create_runtime("cobol")


def test_each_implemented_connector_loads() -> None:
    assert implemented() == ("embedded", "influxdb", "prometheus", "victoriametrics", "warp10")
    assert [load_connector_class(name).__name__ for name in implemented()] == [
        "EmbeddedStore", "InfluxDB", "Prometheus", "VictoriaMetrics", "Warp10"]
    assert set(CONNECTORS) == set(implemented())  # no type is left unbuilt


def test_a_type_without_an_implementation_cannot_be_loaded(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(CONNECTORS, "unbuilt",  # type: ignore[arg-type]
                        ConnectorType(("url",), None))
    with pytest.raises(KeyError, match="has no implementation yet"):
        load_connector_class("unbuilt")


def test_the_layering_contract_names_every_core_module() -> None:
    """A core module left out of the import-linter contract could import a plug-in unseen."""
    import tomllib

    from tests.conftest import ROOT

    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    [core] = [c for c in contracts["contracts"] if c["name"].startswith("Core reaches")]
    # tsq.tsl and tsq.ws: the TSL and WarpScript runtimes' public facades, plug-ins' own API
    plugins = {"runtimes", "connectors", "grammar", "migrations", "tsl", "ws"}
    modules = {f"tsq.{path.stem}" for path in (ROOT / "tsq").glob("*.py")
               if path.stem not in ("__init__", "__main__", *plugins)}
    modules |= {f"tsq.{path.name}" for path in (ROOT / "tsq").iterdir()
                if (path / "__init__.py").exists() and path.name not in plugins}
    assert modules - set(core["source_modules"]) == set()

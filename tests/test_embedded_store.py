"""The embedded DuckDB store keeps the connector contract, survives reopening, and rolls back a
write that fails half way."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.connector_contract import CPU, ConnectorContract, S
from tsq.connectors.base import parse_selector
from tsq.connectors.embedded import EmbeddedStore
from tsq.errors import Conflict
from tsq.series import SeriesSet


class TestEmbeddedStore(ConnectorContract):
    @pytest.fixture
    def connector(self, tmp_path: Path) -> Iterator[EmbeddedStore]:
        store = EmbeddedStore(tmp_path / "points.duckdb")
        yield store
        store.close()


def test_points_survive_reopening(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path / "p.duckdb")
    store.write(SeriesSet.from_series(CPU))
    store.close()
    again = EmbeddedStore(tmp_path / "p.duckdb")
    try:
        assert again.names() == ["cpu", "mem"]
        assert sum(s.points for s in [again.select(parse_selector("cpu"))]) == 6
    finally:
        again.close()


def test_a_type_conflict_writes_nothing(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path / "p.duckdb")
    try:
        store.write(SeriesSet.from_series([("up", {}, [S], [1.0])]))
        with pytest.raises(Conflict, match="holds double values"):
            store.write(SeriesSet.from_series(
                [("up", {}, [2 * S], np.array(["yes"], dtype=object))]))
        assert list(store.select(parse_selector("up"))[0].values) == [1.0]
    finally:
        store.close()

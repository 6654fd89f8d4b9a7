"""A run's init time (the runtime's set-up before the handler runs) is recorded apart from its
duration, and shown by the API and `tsq runs show`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import tsq
from tsq.config import Settings
from tsq.service import Service

pytestmark = pytest.mark.slow

FILES = {"h.js": "export default async () => { const t = Date.now(); "
                 "while (Date.now() - t < 30) {} return 1 }",
         "q.tsl": 'select("cpu").last(1m)\n'}


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    made = Service(Settings.load(Path(tmp_path_factory.mktemp("data"))))
    made.deploy("functions:\n  busy:\n    handler: h.js\n  query:\n    handler: q.tsl\n",
                "loops.yml", FILES.get)
    yield made
    made.close()


def test_a_javascript_run_records_its_init_apart_from_its_duration(service: Service) -> None:
    first = service.run("busy")
    again = service.run("busy")
    for run in (first, again):
        assert run.result == 1 and run.init_ms is not None and run.duration_ms is not None
        assert 0 < run.init_ms < run.duration_ms  # the handler's 30 ms are not init
    stored = service.runs.get(again.id)
    assert stored.init_ms == pytest.approx(again.init_ms)
    assert service.runs.get(again.id).to_json()["init_ms"] == pytest.approx(again.init_ms)


def test_other_runtimes_and_the_cli_show_it(service: Service) -> None:
    run = service.run("query")
    assert run.status == "success" and run.init_ms is not None and run.init_ms >= 0
    busy = service.run("busy")
    service.close()  # the CLI opens the data directory itself
    shown = tsq(service.settings.data_dir, "runs", "show", busy.id)
    assert f"ms (init {busy.init_ms:.2f} ms)" in shown.stdout

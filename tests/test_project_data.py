"""A loop reaches only its project's points and the shared ones in the embedded store
(tsq.projectview): through `db.*` in JavaScript, `select` in TSL and `FETCH` in WarpScript,
whatever label it asks for or writes."""

from __future__ import annotations

from typing import Any

import httpx
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tsq.connectors.embedded import EmbeddedStore
from tsq.projectview import PROJECT_LABEL, ProjectView
from tsq.selector import parse_selector
from tsq.series import SeriesSet

WRITE_AND_READ = """export default async (event) => {
  if (event.params.write) {
    await db.write("pd_cpu,host=" + event.params.host + " value=" + event.params.value + " 1000000000");
    // a label naming another project is overwritten with the loop's own
    await db.write("pd_cpu,host=forged,__project__=alpha value=666 1000000000");
  }
  const found = await db.select("pd_cpu");
  const forged = await db.select('pd_cpu{__project__="alpha"}');
  const deleted = event.params.delete ? await db.delete('pd_cpu{host="a"}') : null;
  return {hosts: found.map((s) => s.labels.host).sort(), forged: forged.length,
          labels: found.map((s) => Object.keys(s.labels).sort().join(",")), deleted};
}"""
TSL = 'select("pd_cpu").from(0)'
WARPSCRIPT = "[ 'unused' 'pd_cpu' {} 0 NOW ] FETCH SIZE"


def deploy(api: httpx.Client, project: str, name: str, handler: str, source: str) -> None:
    content = f"project: {project}\nfunctions:\n  {name}:\n    handler: {handler}\n"
    answer = api.post("/v1/loops", json={"content": content, "files": {handler: source}})
    assert answer.status_code == 201, answer.text


def run(api: httpx.Client, project: str, name: str, **params: Any) -> Any:
    answer = api.post(f"/v1/loops/{name}/run", params={"project": project},
                      json={"params": params})
    assert answer.status_code == 200, answer.text
    return answer.json()["result"]


def test_each_project_sees_and_deletes_only_its_own_points(api: httpx.Client) -> None:
    for project in ("alpha", "beta", "default"):
        deploy(api, project, "pd-js", "pd.js", WRITE_AND_READ)
    alpha = run(api, "alpha", "pd-js", write=True, host="a", value=1)
    beta = run(api, "beta", "pd-js", write=True, host="b", value=2)
    assert alpha == {"hosts": ["a", "forged"], "forged": 2, "labels": ["host", "host"],
                     "deleted": None}
    # beta's forged point went to beta, not alpha; its selector for alpha's label finds nothing
    assert beta == {"hosts": ["b", "forged"], "forged": 0, "labels": ["host", "host"],
                    "deleted": None}
    assert run(api, "default", "pd-js")["hosts"] == []
    # beta deleting host "a" deletes nothing of alpha's
    assert run(api, "beta", "pd-js", delete=True)["deleted"] == {"deleted": 0}
    assert run(api, "alpha", "pd-js")["hosts"] == ["a", "forged"]

    # a token for every project sees the whole store, with the label that tells projects apart
    every = api.post("/v1/query", json={"tsl": TSL}).json()["series"]
    assert sorted((s["labels"].get(PROJECT_LABEL), s["labels"]["host"]) for s in every) == [
        ("alpha", "a"), ("alpha", "forged"), ("beta", "b"), ("beta", "forged")]


def test_tsl_and_warpscript_loops_read_only_their_project(api: httpx.Client) -> None:
    deploy(api, "gamma", "pd-writer", "w.js", WRITE_AND_READ)
    run(api, "gamma", "pd-writer", write=True, host="g", value=3)
    for project in ("gamma", "delta"):
        deploy(api, project, "pd-tsl", "q.tsl", TSL)
        deploy(api, project, "pd-ws", "q.mc2", WARPSCRIPT)
    mine = run(api, "gamma", "pd-tsl")["series"]
    assert sorted(s["labels"]["host"] for s in mine) == ["forged", "g"]
    assert all(PROJECT_LABEL not in s["labels"] for s in mine)
    assert run(api, "delta", "pd-tsl")["series"] == []
    assert run(api, "gamma", "pd-ws") == {"stack": [2]}  # FETCH: two GTS of its own
    assert run(api, "delta", "pd-ws") == {"stack": [0]}


# -- the view on its own -----------------------------------------------------------------------

@pytest.fixture
def store(tmp_path: Any) -> Any:
    opened = EmbeddedStore.open({"type": "embedded"}, tmp_path)
    yield opened
    opened.close()


def one(name: str, labels: dict[str, str], values: list[float]) -> SeriesSet:
    stamps = np.arange(1, len(values) + 1, dtype=np.int64)
    return SeriesSet.from_series([(name, labels, stamps, np.asarray(values, np.float64))])


LABELS = st.dictionaries(st.sampled_from(["host", "dc", PROJECT_LABEL]),
                         st.sampled_from(["a", "b", "alpha", "beta", ""]), max_size=3)


@given(labels=LABELS, project=st.sampled_from(["alpha", "beta", "default"]))
def test_a_projects_points_are_its_own_and_the_default_projects_are_shared(
        tmp_path_factory: Any, labels: dict[str, str], project: str) -> None:
    store = EmbeddedStore.open({"type": "embedded"}, tmp_path_factory.mktemp("view"))
    try:
        views = {name: ProjectView(store, name) for name in ("alpha", "beta", "default")}
        views[project].write(one("m", labels, [1.0, 2.0]))
        expected = {k: v for k, v in labels.items() if k != PROJECT_LABEL and v}
        [back] = views[project].select(parse_selector("m"))
        assert {k: v for k, v in back.labels.items() if v} == expected
        assert views[project].names() == ["m"]
        assert PROJECT_LABEL not in views[project].labels()
        shared = project == "default"
        for other, view in views.items():
            if other != project:
                assert len(view.select(parse_selector("m"))) == int(shared), other
                assert view.names() == (["m"] if shared else []), other
                if not shared:
                    assert view.delete(parse_selector("m")) == 0, other
        assert views[project].delete(parse_selector("m")) == 2
        assert store.select(parse_selector("m")).timestamps.size == 0
    finally:
        store.close()

"""The done-when of the time-series core, end to end on a real server with real workers: points
written over HTTP are read by a JavaScript loop with db.select, rolled up, written back with
db.write and read back; db.delete and the errors a handler can meet."""

from __future__ import annotations

import httpx

from tests.conftest import deploy, run
from tsq.selector import parse_selector
from tsq.service import Service

ROLLUP = """
export default async function (event) {
  const raw = await db.select('jsdb_cpu{dc="gra"}', {start: "2026-01-01T00:00:00Z", end: 2 * 60000 + 1767225600000});
  const rollup = raw.map(s => {
    const times = [], values = [];
    for (let i = 0; i < s.timestamps.length; i += 6) {
      let sum = 0; for (let j = i; j < i + 6; j++) sum += s.values[j];
      times.push(s.timestamps[i]); values.push(sum / 6);
    }
    return {name: "jsdb_cpu_1m", labels: s.labels, timestamps: Float64Array.from(times), values: Float64Array.from(values)};
  });
  const written = await db.write(rollup);
  await db.write(raw.rename("jsdb_copy"));
  return {series: raw.length, typed: raw[0].values instanceof Float64Array, written,
          back: (await db.select('jsdb_copy{host="web01"}'))[0].values.length};
}
"""


def test_a_js_loop_reads_rolls_up_and_writes_back(api: httpx.Client, service: Service) -> None:
    base = 1767225600  # 2026-01-01T00:00:00Z, seconds
    lines = [f"jsdb_cpu,dc=gra,host=web0{h} value={h * 100 + i} {base + 10 * i}"
             for h in (1, 2) for i in range(18)]
    lines.append(f"jsdb_cpu,dc=rbx,host=db01 value=7 {base}")
    assert api.post("/write", params={"precision": "s"},
                    content="\n".join(lines).encode()).status_code == 204
    assert deploy(api, "jsdb-rollup", ROLLUP).status_code == 201
    answer = run(api, "jsdb-rollup")
    assert answer.status_code == 200, answer.text
    result = answer.json()["result"]
    assert result["series"] == 2 and result["typed"] is True
    assert result["written"] == {"written": 4} and result["back"] == 12
    rolled = {s.labels["host"]: (s.timestamps.tolist(), s.values.tolist())
              for s in service.store.select(parse_selector("jsdb_cpu_1m"))}
    minute = base * 10**9
    assert rolled == {"web01": ([minute, minute + 60 * 10**9], [102.5, 108.5]),
                      "web02": ([minute, minute + 60 * 10**9], [202.5, 208.5])}


def test_db_delete_and_line_protocol_from_js(api: httpx.Client, service: Service) -> None:
    source = """export default async () => {
      await db.write("jsdb_lp,host=a value=1 1000000\\njsdb_lp,host=a value=2 2000000\\njsdb_lp,host=a value=3 3000000");
      const removed = await db.delete('jsdb_lp{host="a"}', {start: 2, end: 3});
      const left = await db.select("jsdb_lp");
      return {removed, left: Array.from(left[0].timestamps)};
    }"""
    assert deploy(api, "jsdb-delete", source).status_code == 201
    result = run(api, "jsdb-delete").json()["result"]
    assert result == {"removed": {"deleted": 1}, "left": [1, 3]}


def test_db_errors_reach_the_handler_as_rejections(api: httpx.Client) -> None:
    source = """export default async () => {
      const seen = [];
      for (const attempt of [
          () => db.select(42),
          () => db.select('cpu{host=}'),
          () => db.write([{name: "x", labels: {}, timestamps: [1, 2], values: [1]}]),
          () => db.write("jsdb_bad value=oops 1"),
          () => db.select("jsdb_cpu", {start: "not a date"}),
      ]) {
        try { await attempt(); seen.push("no error"); } catch (e) { seen.push(e.name + ": " + e.message); }
      }
      return seen;
    }"""
    assert deploy(api, "jsdb-errors", source).status_code == 201
    seen = run(api, "jsdb-errors").json()["result"]
    assert seen[0].startswith("TypeError: db.select needs a selector string")
    assert seen[1].startswith("BadRequest: bad selector 'cpu{host=}' at column 10")
    assert seen[2] == "RangeError: series x: 2 timestamps but 1 values"
    assert seen[3].startswith("PartialWrite: partial write: 1 line(s)")
    assert seen[4].startswith("TypeError: start must be epoch milliseconds")


def test_tsl_from_javascript(api: httpx.Client) -> None:
    base = 1767225600
    lines = [f"jstsl_cpu,dc={dc} value={v} {base + 60 * i}"
             for dc, scale in (("gra", 1), ("rbx", 10)) for i, v in enumerate(range(0, 5 * scale, scale))]
    assert api.post("/write", params={"precision": "s"},
                    content="\n".join(lines).encode()).status_code == 204
    source = """export default async () => {
      const q = 'select("jstsl_cpu").where("dc=${dc}").from(a, b).sampleBy(2m, sum, "none")';
      const found = await tsl(q, {dc: "rbx", a: START, b: END});
      let error = null;
      try { await tsl('select("jstsl_cpu").last(1h'); } catch (e) { error = e.name + ": " + e.message; }
      return {names: found.map(s => s.name), typed: found[0].values instanceof Float64Array,
              times: Array.from(found[0].timestamps), values: Array.from(found[0].values), error};
    }""".replace("START", str(base * 1000)).replace("END", str((base + 300) * 1000))
    assert deploy(api, "jstsl", source).status_code == 201
    answer = run(api, "jstsl")
    assert answer.status_code == 200, answer.text
    result = answer.json()["result"]
    assert result["names"] == ["jstsl_cpu"] and result["typed"] is True
    assert result["times"] == [base * 1000, (base + 120) * 1000, (base + 240) * 1000]
    assert result["values"] == [10.0, 50.0, 40.0]   # [0:00, 0:02), [0:02, 0:04), [0:04, 0:06)
    assert result["error"].startswith("TslError: Cannot parsed query: missing closing parenthesis")


def test_ws_from_javascript(api: httpx.Client, service: Service) -> None:
    base = 1767225600
    lines = [f"jsws_cpu,dc={dc} value={v} {base + 60 * i}"
             for dc, scale in (("gra", 1), ("rbx", 10)) for i, v in enumerate(range(0, 5 * scale, scale))]
    assert api.post("/write", params={"precision": "s"},
                    content="\n".join(lines).encode()).status_code == 204
    source = """export default async () => {
      const script = "[ 'token' 'jsws_cpu' { 'dc' $dc } $t 1 s * 5 m ] FETCH " +
                     "0 GET DUP 'jsws_copy' RENAME 'token' UPDATE 42 'answer' { 'a' [ 1.5 NaN ] }";
      const stack = await ws(script, {dc: "rbx", t: END});
      let error = null;
      try { await ws("1\\n  DUPP"); } catch (e) { error = e.name + ": " + e.message; }
      let fault = null;
      try { await ws("1\\n  0 /"); } catch (e) { fault = e.name + ": " + e.message; }
      return {stack, error, fault};
    }""".replace("END", str(base + 240))
    assert deploy(api, "jsws", source).status_code == 201
    answer = run(api, "jsws")
    assert answer.status_code == 200, answer.text
    result = answer.json()["result"]
    # top first: the map, the string, the number, then the GTS (FETCH reads (end - 5m, end])
    [extra, name, number, gts] = result["stack"]
    assert (extra, name, number) == ({"a": [1.5, None]}, "answer", 42)
    assert gts["name"] == "jsws_copy" and gts["labels"] == {"dc": "rbx"}
    assert gts["timestamps"] == [(base + 60 * i) * 1000 for i in range(5)]
    assert gts["values"] == [0.0, 10.0, 20.0, 30.0, 40.0]
    assert result["error"] == ("WarpScriptError: unknown function 'DUPP'; did you mean DUP? "
                               "(line 2, col 3)")
    assert result["fault"].startswith("WarpScriptError: ") and "(line 2, col 5)" in result["fault"]
    [written] = service.store.select(parse_selector("jsws_copy"))
    assert written.values.tolist() == [0.0, 10.0, 20.0, 30.0, 40.0]

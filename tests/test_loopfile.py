from __future__ import annotations

import pytest

from tsq.connectors import CONNECTORS, ConnectorType, implemented
from tsq.errors import CompileError, InvalidLoopFile
from tsq.loopfile import load_loop_file

OVH_EXAMPLE = """\
functions:
  cpu-by-cell:
    handler: apps.js
    runtime: js
    timeout: 30
    environment:
      THRESHOLD: "0.9"
    events:
      - agra:
          rate: R/2018-01-01T00:00:00Z/PT5M/ET1M
          params: {cell: ovh-a-gra}
      - rbx:
          rate: R/2018-01-01T00:00:00Z/PT5M/ET1M
          params: {cell: ovh-a-rbx}
"""


def no_compile(runtime: str, source: str, file_name: str) -> None:
    if "(" in source and ")" not in source:
        raise CompileError("SyntaxError: Unexpected end of input", file=file_name, line=1, col=9)


def load(text: str, files: dict[str, str] | None = None, deployed: dict[str, list[str]] | None = None):  # type: ignore[no-untyped-def]
    files = files if files is not None else {"apps.js": "x"}
    return load_loop_file(text, "loops.yml", files.get, no_compile,
                          deployed_after=lambda project: deployed or {})


def problems(text: str, **options: object) -> list[str]:
    with pytest.raises(InvalidLoopFile) as raised:
        load(text, **options)  # type: ignore[arg-type]
    return [str(p) for p in raised.value.problems]


def test_ovh_shape_works_unchanged() -> None:
    [loop] = load(OVH_EXAMPLE)
    assert loop.spec.name == "cpu-by-cell" and loop.spec.environment == {"THRESHOLD": "0.9"}
    assert [(e.name, e.params["cell"]) for e in loop.spec.events] == [("agra", "ovh-a-gra"),
                                                                      ("rbx", "ovh-a-rbx")]


def test_every_problem_with_its_position() -> None:
    text = OVH_EXAMPLE.replace("PT5M/ET1M\n          params: {cell: ovh-a-rbx}",
                               "PT0S/ET1M\n          params: {cell: ovh-a-rbx}")
    text = text.replace("timeout: 30", "timeout: -1\n    memroy: 64")
    assert problems(text) == [
        'loops.yml:6:5: functions.cpu-by-cell.memroy: unknown key "memroy"; did you mean "memory"?',
        "loops.yml:5:14: functions.cpu-by-cell.timeout: -1 is out of range; expected 0.001 to 3600 seconds",
        "loops.yml:14:17: functions.cpu-by-cell.events[1].rbx.rate: Null period "
        "R/2018-01-01T00:00:00Z/PT0S/ET1M: the period must be longer than zero",
    ]


def test_malformed_yaml() -> None:
    [problem] = problems("functions:\n  a: [\n")
    assert problem.startswith("loops.yml:3:1: not valid YAML")


def test_missing_handler_and_compile_error() -> None:
    text = "functions:\n  a:\n    handler: a.js\n  b:\n    handler: b.js\n"
    found = problems(text, files={"b.js": "f("})
    assert found == [
        'loops.yml:3:14: functions.a.handler: handler file "a.js" not found (paths are relative to loops.yml)',
        "b.js:1:9: functions.b.handler: SyntaxError: Unexpected end of input",
    ]


def test_after_cycles_and_unknown_targets() -> None:
    text = ("functions:\n  a:\n    handler: apps.js\n    events:\n      - x: {after: b}\n"
            "  b:\n    handler: apps.js\n    events:\n      - y: {after: a}\n"
            "  c:\n    handler: apps.js\n    events:\n      - z: {after: nowhere}\n")
    found = problems(text)
    assert any("cycle: a → b → a" in p for p in found)
    assert any("unknown loop 'nowhere'" in p for p in found)


def test_cycle_through_a_deployed_loop() -> None:
    text = "functions:\n  a:\n    handler: apps.js\n    events:\n      - x: {after: old}\n"
    found = problems(text, deployed={"old": ["a"]})
    assert found == ["loops.yml:5:20: functions.a.events[0].x.after: `after:` triggers form a "
                     "cycle: a → old → a"]


def test_duplicate_keys_and_bad_names() -> None:
    text = "functions:\n  Bad Name:\n    handler: apps.js\n    handler: apps.js\n"
    found = problems(text)
    assert any("duplicate key" in p for p in found)
    assert any('bad loop name "Bad Name"' in p for p in found)


def test_unknown_connector_and_runtime() -> None:
    text = ("connectors:\n  local: {type: embedded}\n"
            "functions:\n  a:\n    handler: apps.js\n    connector: locall\n"
            "  b:\n    handler: q.ws\n")
    found = problems(text, files={"apps.js": "x", "q.ws": "NOW"})
    assert any('unknown connector \'locall\'; did you mean "local"?' in p for p in found)
    assert not any("q.ws" in p for p in found)   # WarpScript handlers run



@pytest.fixture
def unbuilt(monkeypatch: pytest.MonkeyPatch) -> str:
    """Every type tsq knows is built now: a row without a module stands in for the next one."""
    monkeypatch.setitem(CONNECTORS, "unbuilt",  # type: ignore[arg-type]
                        ConnectorType(("url",), None))
    return "unbuilt"


def test_a_connector_not_built_yet_is_refused_not_embedded(unbuilt: str) -> None:
    """A loop naming such a connector used to deploy and then read and write the embedded
    store in its place, silently."""
    text = (f"connectors:\n  main: {{type: {unbuilt}, url: http://127.0.0.1:8086}}\n"
            "functions:\n  a:\n    handler: apps.js\n")
    found = problems(text, files={"apps.js": "x"})
    assert found == [f"loops.yml:2:16: connectors.main.type: connector type '{unbuilt}' is not "
                     f"available in this version of tsq (available: {', '.join(implemented())}); "
                     f"its loops would not reach {unbuilt}, so nothing is deployed"]


def test_a_warp10_connector_deploys_with_its_tokens() -> None:
    text = ("connectors:\n  main: {type: warp10, url: http://127.0.0.1:8080, "
            "read_token: {secret: r}, write_token: {secret: w}}\n"
            "functions:\n  a:\n    handler: apps.js\n")
    [loop] = load(text, files={"apps.js": "x"})
    assert loop.spec.name == "a"


def test_scheduling_keys() -> None:
    [loop] = load("functions:\n  f:\n    handler: apps.js\n    catchup: all\n"
                  "    max_concurrency: 4\n    retries: {max: 2, backoff: 500ms}\n"
                  "    notify: {webhook: http://127.0.0.1:9000/hook}\n")
    spec = loop.spec
    assert (spec.catchup, spec.max_concurrency) == ("all", 4)
    assert (spec.retries.max, spec.retries.backoff_s) == (2, 0.5)
    assert spec.notify == {"webhook": "http://127.0.0.1:9000/hook"}


def test_url_targets_instead_of_a_handler() -> None:
    [loop] = load("functions:\n  ping:\n    target: http://127.0.0.1:9000/task\n"
                  "    events:\n      - a: {rate: R/2026-01-01T00:00:00Z/PT1M/ET1S}\n"
                  "      - b: {rate: R/2026-01-01T00:00:00Z/PT1M/ET1S, "
                  "target: https://example.org/other}\n", files={})
    assert loop.spec.runtime == "http" and loop.source == ""
    assert loop.spec.target_of("a") == "http://127.0.0.1:9000/task"
    assert loop.spec.target_of("b") == "https://example.org/other"


def test_bad_scheduling_keys_are_reported_with_positions() -> None:
    found = problems("functions:\n  f:\n    handler: apps.js\n    target: ftp://x\n"
                     "    max_concurrency: 0\n    catchup: sometimes\n"
                     "  g:\n    timeout: 3\n")
    assert any("loops.yml:4:13: functions.f.target" in p and "http(s)://" in p for p in found)
    assert any("functions.f.max_concurrency: 0 is out of range" in p for p in found)
    assert any("functions.f.catchup: unknown catchup policy 'sometimes'" in p for p in found)
    assert any("functions.g" in p and "or `target:`" in p for p in found)
    both = problems("functions:\n  f:\n    handler: apps.js\n    target: http://127.0.0.1/x\n")
    assert any("functions.f.target: a loop has one of `handler:`" in p
               and "this one has handler and target" in p for p in both)


def test_a_connector_is_checked_against_its_own_row() -> None:
    text = ("connectors:\n"
            "  influx: {type: influxdb, url: http://127.0.0.1:8086, token: {secrte: x}}\n"
            "  prom: {type: prometheus, url: http://127.0.0.1:9090, database: x}\n"
            "functions:\n  a:\n    handler: apps.js\n    connector: influx\n")
    found = problems(text, files={"apps.js": "x"})
    assert "loops.yml:2:11: connectors.influx: connector type influxdb needs one of " \
           "'database', 'bucket'" in found
    assert any('connectors.influx.token.secrte: unknown key "secrte"; did you mean "secret"?'
               in p for p in found)
    assert any("connectors.prom.database: connector type prometheus has no 'database'; its "
               "keys are type, url, token, username, password" in p for p in found)

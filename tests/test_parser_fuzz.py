"""Fuzzing the languages users write: TSL, WarpScript and the loop file.

Whatever the text, parsing and running it ends in a result or a `TsqError` that says what is
wrong, within a bounded time: never another exception (the API would answer 500) and never a hang.
The generators build text from each language's own vocabulary, so most examples get past the
first token and reach the binder, the evaluator and the VM's words, where the interesting
mistakes are. Each finding these tests made is also a named regression test below.
"""

from __future__ import annotations

import os
import signal
import string
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tsq import querybudget, tsl, ws
from tsq.connectors.embedded import EmbeddedStore
from tsq.errors import CompileError, InvalidLoopFile, TsqError
from tsq.loopfile import load_loop_file
from tsq.runtimes.tsl.ast import KEYWORDS
from tsq.runtimes.ws.vm import Vm
from tsq.series import SeriesSet

T0 = 1609459200
NOW = datetime.fromtimestamp(T0 + 600, UTC)
# CI's budget; set TSQ_FUZZ_EXAMPLES to search longer on a workstation
EXAMPLES = int(os.environ.get("TSQ_FUZZ_EXAMPLES", "250"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
SECONDS_PER_EXAMPLE = 10


@contextmanager
def bounded(seconds: int = SECONDS_PER_EXAMPLE) -> Iterator[None]:
    """Fail the example, rather than hang the suite, if it runs longer than `seconds`."""
    def expire(signum: int, frame: Any) -> None:
        raise TimeoutError(f"the example ran longer than {seconds} s")
    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def only_tsq_errors(action: Callable[[], object]) -> None:
    """Run `action`; a TsqError is a fine answer, and must say something."""
    with bounded():
        try:
            action()
        except TsqError as error:
            assert str(error).strip(), f"{type(error).__name__} without a message"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedStore]:
    store = EmbeddedStore(tmp_path_factory.mktemp("fuzz") / "points.duckdb")
    stamps = (T0 + 10 * np.arange(60)) * 10**9
    store.write(SeriesSet.from_series([
        ("cpu", {"dc": "gra", "host": "a"}, stamps, np.arange(60.0)),
        ("cpu", {"dc": "rbx", "host": "b"}, stamps, np.where(np.arange(60) % 7, 1.5, np.nan)),
        ("mem", {"dc": "gra"}, stamps[::6], -np.arange(10.0)),
    ]))
    yield store
    store.close()


# --- TSL ---------------------------------------------------------------------------------------

METHODS = sorted(KEYWORDS)
TSL_STRINGS = ["cpu", "mem", "~c.*", "dc", "host=a", "dc~g.*", "host!=b", "(a+)+$", "mean", "",
               "2021-01-01T00:00:00Z", "'", "\\n", "5m", "previous", "interpolate", "a,b"]
tsl_literal = st.one_of(
    st.sampled_from(TSL_STRINGS).map(lambda s: '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'),
    st.integers(-10**20, 10**20).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.sampled_from(["1s", "5m", "1h", "-2h", "1d", "0s", "1M", "1w", "3y", "1ms", "1us", "1ns",
                     "999999999999d", "1x", "+5m"]),
    st.sampled_from(["true", "false", "nil", "mean", "last", "sum", "max", "previous", "*"]),
)


def tsl_call(argument: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    named = st.tuples(st.sampled_from(["span", "count", "fill", "relative", "keepDistinct", "x"]),
                      argument).map("=".join)
    arguments = st.lists(st.one_of(argument, named), max_size=4).map(",".join)
    return st.tuples(st.sampled_from(METHODS), arguments).map(lambda p: f"{p[0]}({p[1]})")


def tsl_chain(argument: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    head = st.one_of(
        st.sampled_from(TSL_STRINGS[:3]).map(lambda n: f'select("{n}")'),
        tsl_call(argument),
        st.sampled_from(["v", "x", "cpu"]),
        st.lists(tsl_literal, max_size=3).map(lambda items: "[" + ",".join(items) + "]"),
    )
    return st.tuples(head, st.lists(tsl_call(argument), max_size=6)).map(
        lambda p: ".".join([p[0], *p[1]]))


tsl_argument = st.recursive(tsl_literal, tsl_chain, max_leaves=6)
tsl_statement = st.one_of(
    tsl_chain(tsl_argument),
    st.tuples(st.sampled_from(["v", "x", "cpu"]), st.one_of(tsl_chain(tsl_argument), tsl_literal))
    .map(lambda p: f"{p[0]} = {p[1]}"),
)
tsl_script = st.lists(tsl_statement, min_size=1, max_size=3).map("\n".join)
TSL_TOKENS = ["select", "(", ")", ".", ",", "=", "[", "]", '"cpu"', "'", '"', "1m", "-", "*",
              "where", "sampleBy", "/*", "*/", "//", "\n", " ", "1.5", "µ", "\\", "last", "\t"]
tsl_noise = st.lists(st.one_of(st.sampled_from(TSL_TOKENS), st.text(max_size=3)),
                     max_size=30).map("".join)


def tsl_everything(source: str, store: EmbeddedStore) -> None:
    """Compile to both targets and evaluate under the API's budget, as POST /v1/query does."""
    for target in ("warpscript", "promql"):
        only_tsq_errors(lambda target=target: tsl.compile(source, target, now=NOW))  # type: ignore[misc]
    budget = querybudget.QueryBudget(timeout_s=5.0, max_points=200_000)

    def evaluate() -> None:
        with querybudget.budgeted(budget):
            tsl.query(source, store, now=NOW)
    only_tsq_errors(evaluate)


@FUZZ
@given(source=tsl_script)
def test_tsl_from_its_grammar_gives_results_or_tsl_errors(source: str, store: EmbeddedStore) -> None:
    tsl_everything(source, store)


@FUZZ
@given(source=tsl_noise)
def test_tsl_noise_gives_tsl_errors(source: str, store: EmbeddedStore) -> None:
    tsl_everything(source, store)


# --- WarpScript --------------------------------------------------------------------------------

WS_WORDS = sorted(Vm.WORDS)
ws_value = st.one_of(
    st.integers(-2**70, 2**70).map(str),
    st.floats().map(lambda f: repr(f) if np.isfinite(f) else "NaN"),
    st.sampled_from(["'cpu'", "'~c.*'", "'dc'", "'gra'", "''", "'(a+)+$'", "'2021-01-01T00:00:00Z'",
                     "'token'", "$x", "'x'", "!$x", "@m", "NOW", "1 h", "{ }", "[ ]", "NULL",
                     "'dc=gra'", "0x7fffffffffffffff", "true", "false"]),
)
ws_word = st.sampled_from(WS_WORDS)
ws_token = st.one_of(ws_value, ws_word, ws_word, st.sampled_from(["[", "]", "{", "}", "<%", "%>"]))
ws_script = st.lists(ws_token, max_size=25).map(" ".join)
WS_FETCH = "[ 'token' '~.*' {} NOW 1 h ] FETCH 'g' STORE "
ws_noise = st.lists(st.one_of(st.sampled_from(["<%", "%>", "'", "<'\n", "\n'>", "/*", "*/", "//",
                                               "#", " ", "\n", "[", "{", "$", "@", "%2", "0x"]),
                              st.text(max_size=3)), max_size=30).map("".join)


def ws_everything(script: str, store: EmbeddedStore) -> None:
    only_tsq_errors(lambda: ws.stack_json(ws.execute(script, connector=store, timeout_s=3.0,
                                                     now_us=(T0 + 600) * 10**6)))


@FUZZ
@given(script=ws_script)
def test_warpscript_from_its_words_gives_results_or_warpscript_errors(
        script: str, store: EmbeddedStore) -> None:
    ws_everything(script, store)


@FUZZ
@given(script=ws_script)
def test_warpscript_words_on_fetched_series(script: str, store: EmbeddedStore) -> None:
    ws_everything(WS_FETCH + script.replace("$x", "$g"), store)


@FUZZ
@given(script=ws_noise)
def test_warpscript_noise_gives_warpscript_errors(script: str, store: EmbeddedStore) -> None:
    ws_everything(script, store)


# --- the loop file -----------------------------------------------------------------------------

LOOP_KEYS = ["handler", "runtime", "timeout", "memory", "environment", "events", "rate", "params",
             "after", "target", "project", "connector", "retries", "max_concurrency", "notify",
             "webhook", "window", "catchup", "description", "secrets", "functions", "backfill",
             "retention", "rollup", "source", "mode"]
yaml_scalar = st.one_of(
    st.none(), st.booleans(), st.integers(-10**20, 10**20), st.floats(),
    st.sampled_from(["apps.js", "q.tsl", "s.mc2", "js", "tsl", "warpscript", "R/PT5M", "PT1M",
                     "R/2018-01-01T00:00:00Z/PT5M/ET1M", "http://127.0.0.1:1/x", "../x.js",
                     "/etc/passwd", "a", "", "always", "skip", "0.5", "64MB", "default"]),
    st.text(string.printable, max_size=8),
)
yaml_value = st.recursive(
    yaml_scalar,
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.sampled_from(LOOP_KEYS) | st.text(max_size=4),
                                            inner, max_size=4)),
    max_leaves=12)
loop_body = st.dictionaries(st.sampled_from(LOOP_KEYS), yaml_value, max_size=6)
loop_document = st.one_of(
    st.dictionaries(st.sampled_from(["functions", "project", "connectors", "x"]),
                    st.dictionaries(st.sampled_from(["a", "b-c", "Bad Name", ""]), loop_body,
                                    max_size=3) | yaml_value,
                    max_size=3),
    yaml_value,
)
LOOP_FILES = {"apps.js": "export async function handler() { return 1 }",
              "q.tsl": 'select("cpu").last(5m)', "s.mc2": "1 2 +"}


def no_compile(runtime: str, source: str, file_name: str) -> None:
    if "(" in source and ")" not in source:
        raise CompileError("SyntaxError: Unexpected end of input", file=file_name, line=1, col=1)


def load(text: str) -> None:
    load_loop_file(text, "loops.yml", LOOP_FILES.get, no_compile,
                   deployed_after=lambda project: {"a": ["b-c"]})


@FUZZ
@given(document=loop_document)
def test_loop_files_from_their_keys_load_or_list_problems(document: Any) -> None:
    text = yaml.safe_dump(document, sort_keys=False)
    with bounded():
        try:
            load(text)
        except InvalidLoopFile as error:
            assert error.problems and all(p.file == "loops.yml" for p in error.problems)


@FUZZ
@given(text=st.lists(st.one_of(st.sampled_from(["functions:\n", "  a:\n", "    handler: apps.js\n",
                                                "    events:\n", "      - rate: R/PT1M\n", ":",
                                                "- ", "{", "[", "&a ", "*a ", "!!python/none ",
                                                "'", '"', "\t", "    ", "<<: *a\n", "---\n"]),
                               st.text(max_size=4)), max_size=20).map("".join))
def test_loop_file_noise_lists_problems(text: str) -> None:
    with bounded():
        try:
            load(text)
        except InvalidLoopFile as error:
            assert error.problems



# --- what the fuzzing found --------------------------------------------------------------------

def test_a_connector_that_is_not_a_name_is_a_problem_not_a_crash() -> None:
    text = "functions:\n  a:\n    handler: apps.js\n    connector: [x]\n"
    with pytest.raises(InvalidLoopFile) as raised:
        load(text)
    assert [str(p) for p in raised.value.problems] == [
        "loops.yml:4:16: functions.a.connector: expected the name of a connector declared under "
        "`connectors:`, got a list (['x'])"]


def test_an_unknown_yaml_tag_is_a_problem_at_its_place() -> None:
    with pytest.raises(InvalidLoopFile) as raised:
        load("functions:\n  a: !!python/none x\n")
    [problem] = raised.value.problems
    assert (problem.line, problem.col) == (2, 6)
    assert "could not determine a constructor for the tag" in problem.message

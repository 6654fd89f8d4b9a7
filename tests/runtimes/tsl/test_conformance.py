"""The TSL conformance cases (tests/conformance/tsl_*.jsonl), each a test that keeps its
`source`: TSL → WarpScript text and TSL → PromQL requests exactly as the reference (ovh/tsl@14e119e)
produces them, or the reference's error message.

Cases where the reference crashes (`reference_panics`) have no output to match; tsq must answer
them with a TslError that says what is wrong, never a crash, and that is what they assert.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import pytest

from tests.conftest import CONFORMANCE
from tsq import tsl
from tsq.errors import TslError


def _cases(name: str) -> list[Any]:
    lines = (CONFORMANCE / name).read_text().splitlines()
    cases = [json.loads(line) for line in lines if line.strip()]
    return [pytest.param(case, id=f"{index}:{case['source']}") for index, case in enumerate(cases)]


def _outcome(run: Any) -> tuple[str, Any]:
    try:
        return "ok", run()
    except TslError as error:
        return "error", error.message


def _expected(case: dict[str, Any], key: str) -> list[tuple[str, Any]]:
    options = [case, *case.get("variants", [])]
    return [("ok", option[key]) if key in option else ("error", option["error"]) for option in options]


def _normalised(requests: Any) -> Any:
    """Variants written by the case generator spell `instant_query` as `instant`."""
    if not isinstance(requests, list):
        return requests
    return [{("instant_query" if k == "instant" else k): v for k, v in r.items()} for r in requests]


@pytest.mark.parametrize("case", _cases("tsl_warpscript.jsonl"))
def test_warpscript(case: dict[str, Any]) -> None:
    outcome = _outcome(lambda: tsl.compile(case["tsl"], "warpscript", token=case["token"]))
    if case.get("reference_panics"):
        assert outcome[0] == "error" and "at line" in outcome[1], outcome
        return
    assert outcome in _expected(case, "warpscript")


@pytest.mark.parametrize("case", _cases("tsl_promql.jsonl"))
def test_promql(case: dict[str, Any]) -> None:
    now = datetime.fromisoformat(case["now"].replace("Z", "+00:00"))
    outcome = _outcome(lambda: tsl.compile(case["tsl"], "promql", now=now))
    if case.get("reference_panics"):
        assert outcome[0] == "error" and "at line" in outcome[1], outcome
        return
    expected = [(kind, _normalised(value)) for kind, value in _expected(case, "promql")]
    assert outcome in expected


def test_the_conformance_files_are_there() -> None:
    """A lost or emptied case file would make the cases above vanish silently."""
    assert len(_cases("tsl_warpscript.jsonl")) >= 200
    assert len(_cases("tsl_promql.jsonl")) >= 200


def test_parse_errors_point_at_the_place_with_a_caret() -> None:
    with pytest.raises(TslError) as caught:
        tsl.compile('select("cpu")\n  .sampleBy(1m mean)', "warpscript")
    error = caught.value
    assert (error.line, error.char) == (2, 16)
    assert error.caret == "  .sampleBy(1m mean)\n               ^"
    assert "missing comma between arguments" in error.message


@pytest.mark.parametrize(("source", "label"), [
    ('select("cpu").names', "a method needs parentheses"),
    ('select("cpu"', "missing closing parenthesis"),
    ("select('cpu)", "a string is not closed on its line"),
])
def test_friendly_labels_for_common_mistakes(source: str, label: str) -> None:
    with pytest.raises(TslError, match=label):
        tsl.compile(source, "warpscript")


def test_unknown_variable_in_a_list_is_an_error_not_a_crash() -> None:
    with pytest.raises(TslError, match='Error when parsing "test" in "sortBy" function'):
        tsl.compile('select("a").last(1h).sortBy(attributes, [test, "l1"])', "warpscript")


def test_a_bad_escape_names_its_place() -> None:
    with pytest.raises(TslError) as caught:
        tsl.compile(r'select("a\qb")', "warpscript")
    assert (caught.value.line, caught.value.char) == (1, 10)
    assert caught.value.caret.endswith("^")

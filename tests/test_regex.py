"""Users' regular expressions run on RE2: a pattern that backtracks for seconds in Python's `re`
matches in linear time, patterns RE2 cannot match are refused with the reason, and syntax
errors read as they always have."""

from __future__ import annotations

import time

import httpx
import pytest

from tsq import ws
from tsq.errors import BadRequest, WarpScriptError
from tsq.regex import RegexError, compile_user
from tsq.selector import parse_selector

EVIL = "(a+)+$"
LONG_VALUES = ["a" * 26 + f"{i % 10}!" for i in range(200)]  # 28 characters, never matching


def test_a_pathological_selector_over_many_long_labels_is_fast() -> None:
    selector = parse_selector(f'cpu{{host=~"{EVIL}"}}')
    started = time.perf_counter()
    matched = [v for v in LONG_VALUES if selector.matches("cpu", {"host": v})]
    assert matched == []
    assert time.perf_counter() - started < 2  # Python's re took 10 s for one such value


def test_a_pathological_where_through_the_api_is_fast(api: httpx.Client) -> None:
    lines = "\n".join(f"evil,host={v} value=1 1700000000000000000" for v in LONG_VALUES[:50])
    assert api.post("/write", content=lines.encode()).status_code == 204
    started = time.perf_counter()
    answer = api.post("/v1/query", json={
        "tsl": f'select("evil").where("host~{EVIL}").from(0)'})
    assert answer.status_code == 200, answer.text
    assert answer.json()["series"] == []
    assert time.perf_counter() - started < 2


@pytest.mark.parametrize(("pattern", "reason"), [
    (r"(a)\1", "RE2 does not support backreferences"),
    (r"(?P<x>a)(?P=x)", "RE2 does not support backreferences"),
    (r"a(?=b)", "RE2 does not support lookahead"),
    (r"a(?!b)", "RE2 does not support lookahead"),
    (r"(?<=a)b", "RE2 does not support lookbehind"),
    (r"(?<!a)b", "RE2 does not support lookbehind"),
    (r"a++", "RE2 does not support possessive quantifiers"),
    (r"a{1001}", "RE2 repeats at most 1000 times"),
])
def test_what_re2_cannot_match_is_refused_with_the_reason(pattern: str, reason: str) -> None:
    with pytest.raises(RegexError, match=reason):
        compile_user(pattern)
    quoted = pattern.replace("\\", "\\\\")
    with pytest.raises(BadRequest, match=f"for label 'host': {reason}"):
        parse_selector(f'cpu{{host=~"{quoted}"}}')


def test_syntax_errors_keep_their_messages() -> None:
    with pytest.raises(BadRequest) as raised:
        parse_selector('cpu{host=~"["}')
    assert raised.value.message == ("bad regular expression '[' for label 'host': "
                                    "unterminated character set at position 0")


def test_re2_matches_what_selectors_use() -> None:
    selector = parse_selector(r'cpu{host=~"web0[1-3]|db.*", dc!~"(?i)GRA", n=~"\\d+"}')
    assert selector.matches("cpu", {"host": "web02", "dc": "bhs", "n": "12"})
    assert not selector.matches("cpu", {"host": "web04", "dc": "bhs", "n": "12"})
    assert not selector.matches("cpu", {"host": "dbx", "dc": "gra", "n": "12"})
    assert not selector.matches("cpu", {"host": "web01", "dc": "bhs", "n": "1x"})


def test_tsl_and_warpscript_regex_words_refuse_with_the_reason(api: httpx.Client) -> None:
    answer = api.post("/v1/query", json={
        "tsl": 'select("evil").from(0).renameLabelValue("host", "(a)\\\\1", "x")'})
    assert answer.status_code == 400, answer.text
    assert "RE2 does not support backreferences" in answer.json()["error"]["message"]
    with pytest.raises(WarpScriptError, match="RE2 does not support lookahead"):
        ws.execute("'ab' 'a(?=b)' MATCH", connector=None)
    assert ws.stack_json(ws.execute("'web01' '(web)(0[0-9])' MATCH", connector=None)) == [
        ["web01", "web", "01"]]
    assert ws.stack_json(ws.execute("'a-b' '(\\\\w)-(\\\\w)' '$2-$1' REPLACE",
                                    connector=None)) == ["b-a"]


def test_a_bad_set_label_from_name_is_a_400_not_a_500(api: httpx.Client) -> None:
    answer = api.post("/v1/query", json={
        "tsl": 'select("evil").from(0).setLabelFromName("k", "(")'})
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["type"] == "TslError" and "bad regular expression '('" in error["message"]

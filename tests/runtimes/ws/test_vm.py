"""The VM's own behaviour: syntax errors with their place, faults kept apart from the script's
FAIL/ASSERT, and limits that end hostile scripts with a clear error."""

from __future__ import annotations

import pytest

from tsq import ws
from tsq.errors import WarpScriptError
from tsq.runtimes.ws.vm import Limits, Vm


def _error(script: str, **limits: int | float) -> WarpScriptError:
    with pytest.raises(WarpScriptError) as raised:
        Vm(limits=Limits(**limits)).execute(Vm.compile(script))  # type: ignore[arg-type]
    return raised.value


@pytest.mark.parametrize(("script", "line", "col", "message"), [
    ("1 2\n  <% 3", 2, 3, "a macro opened with <% is not closed with %>"),
    ("1 %>", 1, 3, "%> closes no macro"),
    ("'abc", 1, 1, "a string opened with ' is not closed on its line"),
    ("1\n2 SWAPP", 2, 3, "unknown function 'SWAPP'; did you mean SWAP?"),
    ("'a\\qb'", 1, 3, "bad escape \\q"),
    ("/* open", 1, 1, "a comment opened with /* is not closed"),
])
def test_syntax_errors_name_the_place(script: str, line: int, col: int, message: str) -> None:
    error = _error(script)
    assert (error.kind, error.line, error.col) == ("syntax", line, col)
    assert message in error.reason


def test_literals_and_comments() -> None:
    assert ws.execute("0x1F -7 .5 1e3 NaN ISNaN true 'a%2Bb' \"q\\'\" # hash\n"
                      "// line\n/* block */ <'\nmulti\n'>") == [
        "multi", "q'", "a+b", True, True, 1000.0, 0.5, -7, 31]


def test_variables_early_binding_and_macros() -> None:
    assert ws.execute("1 'x' STORE <% !$x $x + %> 'm' STORE 10 'x' STORE @m") == [11]
    assert ws.execute("[ 1 2 ] [ 'a' 'b' ] STORE $b $a") == [1, 2]


def test_a_fault_is_not_a_failure() -> None:
    fault = _error("1 +")
    assert (fault.kind, fault.line, fault.col) == ("fault", 1, 3)
    assert "the stack is empty" in fault.reason
    fail = _error("false ASSERT")
    assert fail.kind == "fail" and "assertion failed" in fail.reason
    assert _error("'bad input' MSGFAIL").reason == "bad input"
    inner = _error("<% 1 'x' + %> 'm' STORE\n@m")
    assert (inner.line, inner.col) == (1, 10)  # the word inside the macro


@pytest.mark.parametrize(("script", "limits", "message"), [
    ("<% true %> <% %> WHILE", {"maxops": 10_000}, "MAXOPS"),
    ("<% true %> <% %> WHILE", {"maxloop_ms": 50}, "MAXLOOP"),
    ("<% @f %> 'f' STORE @f", {}, "MAXRECURSION"),
    ("1 100000 <% %> FOR", {"maxdepth": 1000}, "MAXDEPTH"),
    ("[ 1 ] 1 30 <% DROP DUP APPEND %> FOR", {"max_items": 100_000}, "limit of 100000"),
    ("<% true %> <% %> WHILE", {"timeout_s": 0.2}, "time limit"),
    ("NEWGTS 0 NaN NaN NaN 1 ADDVALUE 1000000000 NaN NaN NaN 1 ADDVALUE "
     "[ SWAP bucketizer.sum 0 1 0 ] BUCKETIZE", {}, "MAXBUCKETS"),
])
def test_hostile_scripts_end_on_a_limit(script: str, limits: dict[str, float],
                                        message: str) -> None:
    error = _error(script, **limits)
    assert error.kind == "limit" and message in error.reason


def test_limits_can_be_lowered_not_raised() -> None:
    assert "hard limit" in _error("1000000000000 MAXOPS").reason
    assert "MAXOPS" in _error("100 MAXOPS 1 1000 <% DROP %> FOR").reason


def test_frameworks_on_the_documented_example() -> None:
    """bucketizer_mean.md: buckets (449,800] and (98,449], newest first."""
    script = ("NEWGTS 'testname' RENAME { 'label0' '42' } RELABEL "
              + " ".join(f"{t} NaN NaN NaN {v} ADDVALUE" for t, v in
                         zip(range(100, 900, 100), (10, 9, 8, 7, 6, 5, 4, 42), strict=True))
              + " [ SWAP bucketizer.mean 0 0 2 ] BUCKETIZE 0 GET")
    [gts] = ws.execute(script)
    assert gts.to_json()["v"] == [[800, 14.25], [449, 8.5]]
    assert (gts.lastbucket, gts.bucketspan, gts.bucketcount) == (800, 351, 2)


@pytest.mark.parametrize("factor", ["1e300", "NaN", "Infinity", "-1e19"])
def test_timescale_out_of_a_long_is_a_fault_that_names_it(factor: str) -> None:
    """Ticks scaled past a LONG had wrapped around (numpy's cast of inf): now a clear fault."""
    error = _error(f"NEWGTS 'cpu' RENAME 1000 NaN NaN NaN 1.5 ADDVALUE {factor} TIMESCALE")
    assert "TIMESCALE: scaling cpu's ticks by" in error.reason
    assert "leaves the range of a LONG" in error.reason


def test_timescale_within_a_long_scales_the_ticks() -> None:
    assert ws.execute("NEWGTS 1000 NaN NaN NaN 1.5 ADDVALUE 0.5 TIMESCALE TICKS") == [[500]]

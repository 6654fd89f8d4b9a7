"""TSL → PromQL on hand-built syntax trees, independent of the parser. Expected strings are the
reference's (ovh/tsl@14e119e, as recorded in tests/conformance/tsl_promql.jsonl), plus Go
standard library behaviour the generator reproduces (ParseDuration, FormatFloat, Sprintf)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from tsq.errors import TslError
from tsq.runtimes.tsl import promql
from tsq.runtimes.tsl.ast import (
    Create,
    Field,
    From,
    Instruction,
    Last,
    Match,
    Method,
    Operator,
    Pos,
    Prefix,
    Select,
    Tok,
    Where,
)
from tsq.runtimes.tsl.promql import PromRequest, to_promql, to_promql_one

NOW = datetime(2021, 1, 1, tzinfo=UTC)
ORIGIN = Pos()
HOUR = {"start": "1609455600", "end": "1609459200", "step": "1m", "instant_query": False}


def _sampler(span: str = "1m", aggregator: Tok = Tok.LAST, pos: Pos = ORIGIN) -> Method:
    return Method(Tok.SAMPLEBY, {
        Prefix.SPAN: Field(Tok.DURATIONVAL, span, Prefix.SPAN),
        Prefix.SAMPLE_AGGREGATOR: Field(aggregator, aggregator.text, Prefix.SAMPLE_AGGREGATOR),
    }, pos=pos)


def _select(*methods: Method, metric: str = "sys.cpu.nice", last: str = "1h",
            where: tuple[Where, ...] = (Where("host", "web01"),)) -> Instruction:
    select = Select(metric=metric, metric_kind=Tok.STRING, where=where,
                    last=Last(last, is_duration=True), has_last=True, time_set=True,
                    methods=(_sampler(), *methods))
    return Instruction(select=select, has_select=True)


def _value(tok: Tok, lit: str, prefix: Prefix = Prefix.VALUE) -> dict[Prefix, Field]:
    return {prefix: Field(tok, lit, prefix)}


def _query(instruction: Instruction) -> str:
    return to_promql_one(instruction, NOW).query


def _message(instruction: Instruction) -> str:
    with pytest.raises(TslError) as caught:
        to_promql([instruction], now=NOW)
    return caught.value.message


def test_select_with_where_and_last() -> None:
    [request] = to_promql([_select()], now=NOW)
    assert request.to_json() == {"query": 'sys.cpu.nice{host="web01"}', **HOUR}


def test_where_operators_and_go_quoting() -> None:
    where = (Where("a", "x", Match.EQUAL), Where("b", 'y"z', Match.NOT_EQUAL),
             Where("c", ".*", Match.REGEX), Where("d", "\n", Match.NOT_REGEX))
    assert _query(_select(where=where)) == \
        'sys.cpu.nice{a="x",b!="y\\"z",c=~".*",d!~"\\n"}'


def test_a_percent_in_a_where_key_is_read_as_a_format_verb() -> None:
    # The reference formats with Sprintf(key + op + "%q", value).
    assert _query(_select(where=(Where("a%s", "v"),))) == 'sys.cpu.nice{av=%!q(MISSING)}'
    assert _query(_select(where=(Where("a%%", "v"),))) == 'sys.cpu.nice{a%="v"}'
    assert _query(_select(where=(Where("a%", "v"),))) == 'sys.cpu.nice{a%!=(string=v)%!q(MISSING)}'
    assert _query(_select(where=(Where("a", "v"), Where("b", "w", Match.NOT_REGEX)))) == \
        'sys.cpu.nice{a="v",b!~"w"}'


@pytest.mark.parametrize(("template", "text"), [
    ("%q", '"v"'), ("%#q", "`v`"), ("%s!", "v!"), ("%5s|", "    v|"), ("%-3s|", "v  |"),
    ("%.0s|", "|"), ("%x", "76"), ("%d", "%!d(string=v)"), ("x", "x%!(EXTRA string=v)"),
    ("%", "%!(NOVERB)%!(EXTRA string=v)"),
])
def test_go_sprintf_with_one_string(template: str, text: str) -> None:
    assert promql._go_sprintf(template, "v") == text


def test_operator_with_on_and_group_left() -> None:
    foo = _select(metric="foo", where=())
    bar = _select(metric="bar", where=())
    operator = Operator(Tok.ADDSERIES, (foo, bar), labels=("host",),
                        group=Field(Tok.GROUPLEFT, "group_left"), group_labels=("dc",))
    instruction = Instruction(operator=operator, is_operator=True)
    assert to_promql_one(instruction, NOW).to_json() == {
        "query": "foo + on(host) group_left(dc) bar", **HOUR}


def test_operator_operands_must_share_their_time_range() -> None:
    foo = _select(metric="foo", where=())
    bar = _select(metric="bar", where=(), last="2h")
    operator = Operator(Tok.MULSERIES, (foo, bar), pos=Pos(0, 3))
    assert _message(Instruction(operator=operator, is_operator=True)) == (
        "Cannot execute query on prometheus back-end: expects same time properties for each"
        " metrics selector of an operator at method mul at line 1, char 4")


def test_shift_goes_inside_the_over_time_function() -> None:
    shift = Method(Tok.SHIFT, _value(Tok.DURATIONVAL, "1h"))
    mean = Method(Tok.MEAN, _value(Tok.DURATIONVAL, "5m", Prefix.SAMPLING))
    assert _query(_select(shift, mean)) == 'avg_over_time(sys.cpu.nice{host="web01"}[5m] offset 1h)'


def test_a_lone_shift_leaves_an_unbalanced_parenthesis() -> None:
    shift = Method(Tok.SHIFT, _value(Tok.DURATIONVAL, "2m"))
    assert _query(_select(shift)) == 'sys.cpu.nice{host="web01"} offset 2m)'


def test_window_mean_takes_its_pre_as_the_range() -> None:
    window = Method(Tok.WINDOW, {Prefix.PRE: Field(Tok.INTEGER, "0"),
                                 Prefix.POST: Field(Tok.INTEGER, "0"),
                                 Prefix.AGGREGATOR: Field(Tok.MEAN)})
    assert _query(_select(window)) == 'avg_over_time(sys.cpu.nice{host="web01"}[0])'


def test_group_by_percentile_divides_by_a_hundred() -> None:
    group = Method(Tok.GROUPBY, {Prefix.AGGREGATOR: Field(Tok.PERCENTILE, "percentile")},
                   {0: Field(Tok.NUMBER, "42.0")})
    assert _query(_select(group)) == 'quantile(0.42,sys.cpu.nice{host="web01"})'


def test_group_without_says_by() -> None:
    group = Method(Tok.GROUPWITHOUT, {Prefix.AGGREGATOR: Field(Tok.SUM, "sum")},
                   {0: Field(Tok.STRING, "dc")})
    assert _query(_select(group)) == 'sum(sys.cpu.nice{host="web01"}) by (dc)'


def test_functions_nest_outward_and_arithmetic_follows() -> None:
    methods = (Method(Tok.ABS), Method(Tok.TOPN, _value(Tok.INTEGER, "2", Prefix.N)),
               Method(Tok.MAXWITH, _value(Tok.INTEGER, "3")),
               Method(Tok.ADDSERIES, _value(Tok.INTEGER, "2")))
    assert _query(_select(*methods)) == \
        'clamp_min(topk(2,abs(sys.cpu.nice{host="web01"})),3) + 2'


def test_keep_last_values_makes_an_instant_query() -> None:
    request = to_promql_one(_select(Method(Tok.KEEPLASTVALUES)), NOW)
    assert (request.query, request.instant_query) == ('sys.cpu.nice{host="web01"}', True)


def test_from_copies_its_literals() -> None:
    select = Select(metric="a", from_=From(Field(Tok.INTEGER, "1346846400000000"),
                                           Field(Tok.INTEGER, "1346847000006000"), has_end=True),
                    has_from=True, methods=(_sampler(),))
    request = to_promql_one(Instruction(select=select, has_select=True), NOW)
    assert (request.start, request.end) == ("1346846400000000", "1346847000006000")


def test_default_range_is_the_hour_before_now_in_seconds_with_millis() -> None:
    now = datetime(2021, 1, 1, 1, 0, 0, 123456, tzinfo=timezone(timedelta(hours=1)))
    select = Select(metric="a", methods=(_sampler("30s"),))
    request = to_promql_one(Instruction(select=select, has_select=True), now)
    assert request == PromRequest("a", "1609455600.123", "1609459200.123", "30s", False)


@pytest.mark.parametrize(("instruction", "message"), [
    (Instruction(select=Select(metric="a", pos=Pos(0, 0)), has_select=True),
     "expects a default sample for each select statement at line 1, char 1"),
    (Instruction(select=Select(metric="a", methods=(_sampler("1m", Tok.MEAN, Pos(0, 11)),)),
                 has_select=True),
     "steps are used to control query jump to sample data. Only the last aggregator is allowed"
     " in sampleBy methods at line 1, char 12"),
    (_select(Method(Tok.TIMESPLIT, pos=Pos(0, 80))),
     "operator timesplit not supported in TSL for prometheus at line 1, char 81"),
    (_select(Method(Tok.RATE, pos=Pos(0, 80))),
     "over_time function expects one mapper sampling for rate at line 1, char 81"),
    (_select(Method(Tok.KEEPLASTVALUES, _value(Tok.INTEGER, "2"), pos=Pos(0, 80))),
     "keepLastValues can't be applied with an argument as it call instant values query in"
     " Prometheus at line 1, char 81"),
    (_select(Method(Tok.KEEPLASTVALUES), Method(Tok.ABS, pos=Pos(1, 2))),
     "keepLastValues need to be the last method call on a Prometheus query at line 2, char 3"),
])
def test_backend_errors(instruction: Instruction, message: str) -> None:
    assert _message(instruction) == "Cannot execute query on prometheus back-end: " + message


def test_last_uses_go_parse_duration() -> None:
    assert _message(_select(last="1d")) == 'time: unknown unit "d" in duration "1d"'


def test_connect_only_and_create_statements() -> None:
    assert to_promql([], now=NOW) == []
    request = to_promql_one(Instruction(create=Create()), NOW)
    assert request.to_json() == {"query": "", "start": "", "end": "", "step": "",
                                 "instant_query": False}


@pytest.mark.parametrize(("text", "nanos"), [
    ("1h", 3_600_000_000_000), ("1.5m", 90_000_000_000), ("-2s", -2_000_000_000),
    ("+1ms", 1_000_000), ("1µs", 1_000), ("1h2m", 3_720_000_000_000), ("0", 0),
    (".5s", 500_000_000), ("-9223372036854775808ns", -(1 << 63)),
])
def test_go_parse_duration(text: str, nanos: int) -> None:
    assert promql._go_parse_duration(text) == nanos


@pytest.mark.parametrize(("text", "message"), [
    ("", 'time: invalid duration ""'),
    ("1", 'time: missing unit in duration "1"'),
    (".s", 'time: invalid duration ".s"'),
    ("1w", 'time: unknown unit "w" in duration "1w"'),
    ("1é", 'time: unknown unit "\\xc3\\xa9" in duration "1\\xc3\\xa9"'),
    ("9223372036854775808ns", 'time: invalid duration "9223372036854775808ns"'),
])
def test_go_parse_duration_errors(text: str, message: str) -> None:
    with pytest.raises(TslError) as caught:
        promql._go_parse_duration(text)
    assert caught.value.message == message


@pytest.mark.parametrize(("value", "text"), [
    (1609459200.0, "1609459200"), (1609459200.123, "1609459200.123"), (0.42, "0.42"),
    (1e22, "10000000000000000000000"), (1e-7, "0.0000001"), (-0.0, "-0"),
    (float("inf"), "+Inf"), (float("nan"), "NaN"),
])
def test_go_format_float(value: float, text: str) -> None:
    assert promql._go_format_float(value) == text


@pytest.mark.parametrize(("text", "value"), [
    ("42", 42.0), ("42.5", 42.5), (".5", 0.5), ("1e2", 100.0), ("0x1p-2", 0.25),
    ("1_000", None), (" 1", None), ("1e400", None), ("", None), ("+nan", None),
])
def test_go_parse_float(text: str, value: float | None) -> None:
    assert promql._go_parse_float(text) == value

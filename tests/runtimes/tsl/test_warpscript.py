"""The TSL → WarpScript generator on syntax trees built by hand, independent of the parser.

Expected texts are the reference's (ovh/tsl@14e119e) output: most come from the conformance
file tests/conformance/tsl_warpscript.jsonl (their `source` is named), the others from running the reference on the TSL in the test's
docstring.
"""

from __future__ import annotations

import pytest

from tsq.errors import TslError
from tsq.runtimes.tsl.ast import (
    Connect,
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
from tsq.runtimes.tsl.warpscript import to_warpscript

HEAD = "NOW 'now' STORE\n\n"
MERGE = "<% DROP DUP DUP ATTRIBUTES SWAP LABELS APPEND RELABEL %> LMAP"


def _select(select: Select, token: str = "TOKEN") -> Instruction:
    return Instruction(connect=Connect(token=token), select=select, has_select=True)


def _last_hour(metric: str, *methods: Method) -> Instruction:
    return _select(Select(metric=metric, metric_kind=Tok.STRING, has_last=True, time_set=True,
                          last=Last(last="1h", is_duration=True), methods=methods))


def _sample_by(span: str, aggregator: Tok) -> Method:
    return Method(Tok.SAMPLEBY, {
        Prefix.SPAN: Field(Tok.DURATIONVAL, span, Prefix.SPAN),
        Prefix.SAMPLE_AGGREGATOR: Field(aggregator, aggregator.text, Prefix.SAMPLE_AGGREGATOR)})


def test_fetch_between_two_dates() -> None:
    """ovh/tsl:README.md:query-example"""
    select = Select(
        metric="sys.cpu.nice", metric_kind=Tok.STRING, where=(Where("host", "web01"),),
        from_=From(Field(Tok.INTEGER, "1346846400000"), Field(Tok.INTEGER, "1346847000005"),
                   has_end=True),
        has_from=True, time_set=True)
    assert to_warpscript([_select(select)]) == (
        HEAD + "[ 'TOKEN' 'sys.cpu.nice' { 'host'  'web01' } 1346846400000  ISO8601 "
        f"1346847000005  ISO8601 ] FETCH \n{MERGE}\n\n")


def test_find_without_time_range() -> None:
    """ovh/tsl:spec/doc.md:L58"""
    where = (Where("dc", "lga"), Where("web", ".*", Match.REGEX))
    select = Select(metric="sys.cpu.nice", metric_kind=Tok.STRING, where=where)
    assert to_warpscript([_select(select)]) == (
        HEAD + f"[ 'TOKEN' 'sys.cpu.nice' {{ 'dc'  'lga' 'web'  '~.*' }} ] FIND\n{MERGE}\n\n")


def test_relative_sampling_then_group_by() -> None:
    """The variant of ovh/tsl:spec/doc.md (`.sampleBy(1m, mean).groupBy(["host","dc"],mean)`)
    with the labels in source order."""
    group = Method(Tok.GROUPBY, {Prefix.AGGREGATOR: Field(Tok.MEAN, "mean")},
                   {0: Field(Tok.STRING, "host"), 1: Field(Tok.STRING, "dc")})
    select = Select(
        metric="sys.cpu.nice", metric_kind=Tok.STRING,
        from_=From(Field(Tok.INTEGER, "1346846400000000"), Field(Tok.INTEGER, "1346847000006000"),
                   has_end=True),
        has_from=True, time_set=True, methods=(_sample_by("1m", Tok.MEAN), group))
    assert to_warpscript([_select(select)]) == (
        HEAD + "[ 'TOKEN' 'sys.cpu.nice' {} 1346846400000000  ISO8601 1346847000006000  ISO8601 ] FETCH \n"
        f"{MERGE}\n"
        "'raw' STORE $raw 1346847000006000  1346847000006000  1346847000006000  1 m  / 1 m  * - TIMECLIP NONEMPTY \n"
        "<% SIZE 0 > %>\n"
        "  <% [ $raw bucketizer.mean 1346847000006000  1 m  / 1 m  * 1 m  + 1 m  1346847000006000  1346846400000000  -  1 m  / ] BUCKETIZE INTERPOLATE FILLPREVIOUS FILLNEXT UNBUCKETIZE %> \n"
        "  <% [ $raw bucketizer.mean 1346847000006000  1 m  / 1 m  *  1 m  1346847000006000  1346846400000000  -  1 m  / ] BUCKETIZE INTERPOLATE FILLPREVIOUS FILLNEXT UNBUCKETIZE %> IFTE\n"
        "<% DROP DUP DUP LASTTICK 'tick' STORE <% SIZE 0 > $tick 1346847000006000  > && %> <%  DUP $tick ATTICK 4 GET 'value' STORE DUP SIZE 1 - SHRINK 1346847000006000  NaN NaN NaN $value SETVALUE %> IFT %> LMAP\n"
        '[ SWAP [ "host" "dc" ] reducer.mean ] REDUCE \n\n')


def test_operator_indents_its_operands() -> None:
    """ovh/tsl:spec/doc.md:inline:add(...).on("host")"""
    operands = (_last_hour("foo", _sample_by("1m", Tok.LAST)),
                _last_hour("bar", _sample_by("1m", Tok.LAST)))
    add = Instruction(operator=Operator(Tok.ADDSERIES, operands, labels=("host",)),
                      is_operator=True)
    sampled = (
        "  <% DROP DUP DUP ATTRIBUTES SWAP LABELS APPEND RELABEL %> LMAP\n"
        "  'raw' STORE $raw $now $now $now 1 m  / 1 m  * - TIMECLIP NONEMPTY \n"
        "  <% SIZE 0 > %>\n"
        "  <% [ $raw bucketizer.last $now 1 m  / 1 m  * 1 m  + 1 m  1 h 1 m  / ] BUCKETIZE INTERPOLATE FILLPREVIOUS FILLNEXT UNBUCKETIZE %> \n"
        "    <% [ $raw bucketizer.last $now 1 m  / 1 m  *  1 m  1 h 1 m  / ] BUCKETIZE INTERPOLATE FILLPREVIOUS FILLNEXT UNBUCKETIZE %> IFTE\n"
        "  <% DROP DUP DUP LASTTICK 'tick' STORE <% SIZE 0 > $tick $now > && %> <%  DUP $tick ATTICK 4 GET 'value' STORE DUP SIZE 1 - SHRINK $now NaN NaN NaN $value SETVALUE %> IFT %> LMAP\n")
    assert to_warpscript([add]) == (
        HEAD + "[ \n"
        "  [ 'TOKEN' 'foo' {} $now 1 h ] FETCH   \n" + sampled
        + "  [ 'TOKEN' 'bar' {} $now 1 h ] FETCH   \n" + sampled
        + '  [ "host" ] \n  op.add \n] \nAPPLY \n\n')


def test_group_left_is_refused() -> None:
    """ovh/tsl:spec/doc.md:inline:add(...).on("host").groupLeft("dc")"""
    operands = (_last_hour("foo"), _last_hour("bar"))
    operator = Operator(Tok.ADDSERIES, operands, labels=("host",),
                        group=Field(Tok.GROUPLEFT, "group_left"), group_labels=("dc",))
    with pytest.raises(TslError) as caught:
        to_warpscript([Instruction(operator=operator, is_operator=True)])
    assert caught.value.message == ("Cannot execute query on warp 10 back-end: TSL doesn't allow "
                                    "groupLeftmethods at line 1, char 1")


def test_filter_by_name_needs_an_operator() -> None:
    """ovh/tsl:spec/doc.md:inline:.filterByName("test")"""
    method = Method(Tok.FILTERBYNAME, unnamed={0: Field(Tok.STRING, "test")}, pos=Pos(0, 14))
    select = Select(metric="foo", metric_kind=Tok.STRING, methods=(method,))
    with pytest.raises(TslError) as caught:
        to_warpscript([_select(select)])
    assert caught.value.message == ('Cannot execute query on warp 10 back-end: Error when parsing '
                                    'field "test" in "filterByName" function at line 1, char 15')


def test_authenticate_with_the_first_token() -> None:
    select = Select(metric="foo", metric_kind=Tok.STRING, has_last=True, time_set=True,
                    last=Last(last="10"))
    script = to_warpscript([_select(select, token="TOK")], allow_authenticate=True)
    assert script == (
        HEAD + "'TOK' AUTHENTICATE\n"
        "'stack.maxops.hard' STACKATTRIBUTE DUP <% ISNULL ! %> <% MAXOPS %> <% DROP %> IFTE\n"
        "'fetch.limit.hard' STACKATTRIBUTE DUP <% ISNULL ! %> <% LIMIT %> <% DROP %> IFTE\n"
        f"[ 'TOK' 'foo' {{}} $now -10 ] FETCH \n{MERGE}\n\n")


def test_mapper_text_goes_through_sprintf() -> None:
    """select('foo').join('%'): the reference formats the mapper with fmt.Sprintf."""
    join = Method(Tok.JOIN, {Prefix.PRE: Field(Tok.INTEGER, "1", Prefix.PRE),
                             Prefix.VALUE: Field(Tok.STRING, "%", Prefix.VALUE)})
    select = Select(metric="foo", metric_kind=Tok.STRING, methods=(join,))
    assert to_warpscript([_select(select)]) == (
        HEAD + f"[ 'TOKEN' 'foo' {{}} ] FIND\n{MERGE}\n[ SWAP '%!'(MISSING) mapper.join 1 0 0 ] MAP \n\n")


def test_a_variable_used_twice_shares_its_arguments() -> None:
    """a = select('foo').addSuffix('.s') then `a` twice: the reference prefixes the suffix's
    `+` again on the second use, as both share the method's argument map."""
    suffix = Method(Tok.ADDNAMESUFFIX, unnamed={0: Field(Tok.STRING, ".s")})
    instruction = _select(Select(metric="foo", metric_kind=Tok.STRING, methods=(suffix,)))
    find = f"[ 'TOKEN' 'foo' {{}} ] FIND\n{MERGE}\n"
    assert to_warpscript([instruction, instruction]) == (
        HEAD + find + " '%2B.s' RENAME\n\n" + find + " '%2B%2B.s' RENAME\n\n")
    # each script starts afresh
    assert to_warpscript([instruction]) == HEAD + find + " '%2B.s' RENAME\n\n"

"""TSL syntax tree → `Instruction`s: names resolved, arguments checked, variables expanded.

This is where TSL's rules live, method by method, following the reference (ovh/tsl
`genericParser.go`) so that the same query gives the same tree and the same message. The
argument checker `_fields` follows the reference's `ParseFields` exactly, quirks included (the set
of accepted types grows from one argument to the next), because user-visible behaviour hangs on
it. Each method's accepted argument types are data: `Accept` tables below.
"""

from __future__ import annotations

import base64
import functools
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace

from tsq import querybudget
from tsq.errors import TslError

from .ast import (
    EMPTY,
    Connect,
    Create,
    CreateSeries,
    DataPoint,
    Field,
    From,
    Instruction,
    Last,
    Match,
    Method,
    Operator,
    Policy,
    Pos,
    Prefix,
    Select,
    Tok,
    Where,
)
from .goquote import go_quote as q
from .messages import parse_error, with_caret
from .syntax import Assign, Call, Chain, ListLit, Node, Tk, first_token, parse_script

__all__ = ["Value", "bind", "parse"]

T = Tok
P = Prefix


Value = str | int | float | bool


def parse(source: str, *, token: str = "", api: str = "", variables: Sequence[str] = (),
          values: Mapping[str, Value] | None = None) -> tuple[Instruction, ...]:
    """The statements of a TSL script that produce series, in order. `variables` names native
    variables the back-end provides (the reference's variable list); `values` are variables
    defined before the script, as if it began with `name = value` lines (a string such as "5m"
    is a duration)."""
    if len(source) > PARSED_CHARS:
        return bind(_syntax(source), source, token=token, api=api, variables=variables,
                    values=values)
    if not values:
        return _bound(source, token, api, tuple(variables))
    return bind(_parsed(source), source, token=token, api=api, variables=variables,
                values=values)


# Scripts parsed lately, by their text, and bound where no values were given: a dashboard asks
# the same queries again and again, and parsing and binding were 0.4 and 0.2-0.5 ms of a 7 ms
# query of a small day. The syntax trees and the instructions are immutable (binding does not
# depend on the time: `now` is the evaluation's); a script that fails is not kept, and one
# longer than PARSED_CHARS is parsed each time. A run's values change with every run, so it
# binds afresh.
PARSED_KEPT = 256
PARSED_CHARS = 4096


@functools.lru_cache(maxsize=PARSED_KEPT)
def _parsed(source: str) -> tuple[Assign | Chain, ...]:
    return _syntax(source)


@functools.lru_cache(maxsize=PARSED_KEPT)
def _bound(source: str, token: str, api: str, variables: tuple[str, ...]
           ) -> tuple[Instruction, ...]:
    return bind(_parsed(source), source, token=token, api=api, variables=variables)


def _syntax(source: str) -> tuple[Assign | Chain, ...]:
    try:
        return tuple(parse_script(source))
    except TslError as error:
        raise with_caret(error, source.replace("\r\n", "\n")) from None


def bind(script: Sequence[Assign | Chain], source: str, *, token: str = "", api: str = "",
         variables: Sequence[str] = (), values: Mapping[str, Value] | None = None
         ) -> tuple[Instruction, ...]:
    """`parse` for a script whose syntax tree is already at hand (a loop parses its file once
    and binds it again for each run's variables)."""
    try:
        binder = _Binder(token, api, variables)
        binder.define(values or {})
        return binder.script(script)
    except TslError as error:
        raise with_caret(error, source.replace("\r\n", "\n")) from None


def _f(tok: Tok, prefix: Prefix | None = None) -> Field:
    return Field(tok, prefix=prefix)


Accept = Mapping[int, Sequence[Field]]

_AGGREGATORS_SAMPLE = [_f(T.STRING, P.SAMPLE_AGGREGATOR), *(_f(t) for t in (
    T.MEAN, T.MAX, T.FIRST, T.LAST, T.MIN, T.SUM, T.JOIN, T.MEDIAN, T.COUNT, T.ANDL, T.ORL,
    T.PERCENTILE))]
_SAMPLE_OPTIONS = [
    _f(T.DURATIONVAL, P.SPAN), _f(T.TRUE, P.RELATIVE), _f(T.FALSE, P.RELATIVE),
    _f(T.STRING, P.FILL), _f(T.FILL, P.FILL), _f(T.INTERNALLIST, P.FILL), _f(T.INTEGER, P.COUNT),
    _f(T.FILL), _f(T.STRING), _f(T.INTERNALLIST), _f(T.TRUE), _f(T.FALSE), _f(T.NUMBER),
    _f(T.INTEGER)]
_SAMPLE_SPAN = [_f(T.DURATIONVAL), _f(T.DURATIONVAL, P.SPAN), _f(T.INTEGER, P.COUNT),
                _f(T.NATIVEVARIABLE, P.SPAN), _f(T.NATIVEVARIABLE, P.COUNT), _f(T.INTEGER)]
_BY_AGGREGATORS = [*(_f(t) for t in (
    T.MEAN, T.MAX, T.LAST, T.FIRST, T.MIN, T.SUM, T.MEDIAN, T.COUNT, T.ANDL, T.ORL, T.PERCENTILE,
    T.NAMES, T.SELECTORS, T.LABELS, T.ATTRIBUTES)), _f(T.INTEGER, P.AGGREGATOR), _f(T.INTEGER)]
_BY_PARAMS = [_f(T.INTEGER, P.AGGREGATOR), _f(T.INTEGER), _f(T.STRING), _f(T.INTERNALLIST)]
_GROUP_AGGREGATORS = [_f(T.STRING, P.AGGREGATOR), *(_f(t) for t in (
    T.MEAN, T.MAX, T.MIN, T.SUM, T.JOIN, T.MEDIAN, T.COUNT, T.ANDL, T.ORL, T.JOIN, T.PERCENTILE))]
_GROUP_LABELS = [_f(T.INTERNALLIST), _f(T.STRING), _f(T.NATIVEVARIABLE)]
_GROUP_OPTIONS = [_f(T.STRING), _f(T.NUMBER), _f(T.INTEGER), _f(T.FALSE, P.KEEP_DISTINCT),
                  _f(T.TRUE, P.KEEP_DISTINCT), _f(T.FALSE), _f(T.TRUE)]
_WINDOW_AGGREGATORS = [_f(T.STRING, P.AGGREGATOR), *(_f(t) for t in (
    T.SUM, T.DELTA, T.MEAN, T.MEDIAN, T.MIN, T.MAX, T.COUNT, T.STDDEV, T.STDVAR, T.FIRST, T.JOIN,
    T.ANDL, T.ORL, T.PERCENTILE, T.LAST))]
_WINDOW_ARGS = [_f(T.INTEGER, P.PRE), _f(T.DURATIONVAL, P.PRE), _f(T.DURATIONVAL, P.SAMPLING),
                _f(T.INTEGER, P.POST), _f(T.DURATIONVAL, P.POST), _f(T.INTEGER, P.OCCURRENCES),
                _f(T.INTEGER), _f(T.STRING), _f(T.DURATIONVAL)]
_NUMBERS = [_f(T.INTEGER), _f(T.NEGINTEGER), _f(T.NUMBER), _f(T.NEGNUMBER)]
_OPERATOR_ARGS: dict[Tok, tuple[Accept, int, int]] = {   # accepted, max, min
    T.TIMECLIP: ({0: [_f(T.INTEGER), _f(T.NUMBER), _f(T.NOW), _f(T.STRING)],
                  1: [_f(T.INTEGER), _f(T.NUMBER), _f(T.DURATIONVAL), _f(T.STRING)]}, 2, 2),
    T.TIMEMODULO: ({0: [_f(T.INTEGER), _f(T.NOW)], 1: [_f(T.STRING)]}, 2, 2),
    T.TIMESPLIT: ({0: [_f(T.INTEGER), _f(T.DURATIONVAL), _f(T.NOW)], 1: [_f(T.INTEGER)],
                   2: [_f(T.STRING)]}, 3, 3),
    T.QUANTIZE: ({0: [_f(T.STRING)], 1: [_f(T.INTEGER), _f(T.NUMBER), _f(T.INTERNALLIST)],
                  2: [_f(T.INTEGER), _f(T.NUMBER), _f(T.DURATIONVAL)]}, 3, 2),
}

_SERIES_OPERATORS = {T.ADDSERIES, T.ANDL, T.DIVSERIES, T.EQUAL, T.GREATEROREQUAL, T.GREATERTHAN,
                     T.LESSOREQUAL, T.LESSTHAN, T.MULSERIES, T.NOTEQUAL, T.ORL, T.SUBSERIES}
_MASKS = {T.MASK, T.NEGMASK}
_META = {T.NAMES, T.LABELS, T.SELECTORS, T.ATTRIBUTES}
_RE_ZERO_ONLY = re.compile(r"^\s*0+\s*$")
_DURATION = re.compile(r"-?[0-9]+[A-Za-zµ][A-Za-z0-9µ]*")
_WHERE_OPS = (Match.EQUAL, Match.REGEX, Match.NOT_EQUAL, Match.NOT_REGEX)
_DEFAULT_SAMPLER = Method(T.SAMPLEBY, {P.SAMPLE_AGGREGATOR: Field(T.ILLEGAL, "last"),
                                       P.SPAN: Field(T.ILLEGAL, "1m")})


@dataclass(frozen=True)
class _Variable:
    name: str
    tok: Tok
    lit: str = ""
    instruction: Instruction = field(default_factory=Instruction)
    items: tuple[Field, ...] = ()


@dataclass
class _Binder:
    token: str
    api: str
    native: Sequence[str]
    variables: dict[str, _Variable] = field(default_factory=dict)
    samplers_count: str = "100"

    def __post_init__(self) -> None:
        for name in self.native:
            self.variables[name] = _Variable(name, T.NATIVEVARIABLE, name)

    def define(self, values: Mapping[str, Value]) -> None:
        for name, value in values.items():
            if isinstance(value, bool):
                self.variables[name] = _Variable(name, T.TRUE if value else T.FALSE)
            elif isinstance(value, int):
                self.variables[name] = _Variable(name, T.NEGINTEGER if value < 0 else T.INTEGER, str(value))
            elif isinstance(value, float):
                self.variables[name] = _Variable(name, T.NEGNUMBER if value < 0 else T.NUMBER, repr(value))
            else:
                kind = T.DURATIONVAL if _DURATION.fullmatch(value) else T.STRING
                self.variables[name] = _Variable(name, kind, value)

    # -- statements -------------------------------------------------------------------------

    def script(self, statements: Sequence[Assign | Chain]) -> tuple[Instruction, ...]:
        connect = Connect(api=self.api, token=self.token)
        out: list[Instruction] = []
        for statement in statements:
            querybudget.check()  # an ad-hoc script of thousands of statements stops in time
            if isinstance(statement, Assign):
                self.variables[statement.name.lit] = self.declare(statement)
                continue
            instruction, connect = self.chain(statement, connect, intern=False, load=False)
            if instruction.has_select or instruction.is_operator:
                out.append(instruction)
        return tuple(out)

    def statement(self, node: Node | Assign, connect: Connect, *, intern: bool,
                  load: bool) -> Instruction:
        if isinstance(node, Assign):
            where = f"at line {node.name.pos.line + 1}, char {node.name.pos.char + 1}"
            if intern:
                raise TslError(f"cannot declared a variable inside an operator {where}")
            raise TslError(f"a variable cannot be declared inside a variable {where}")
        chain = node if isinstance(node, Chain) else Chain(node, (), ())
        return self.chain(chain, connect, intern=intern, load=load)[0]

    def chain(self, chain: Chain, connect: Connect, *, intern: bool,
              load: bool) -> tuple[Instruction, Connect]:
        instruction = Instruction(connect=connect)
        steps = chain.steps
        for index, step in enumerate(steps):
            head = first_token(step)
            rest = [s for s in steps[index + 1:] if isinstance(s, Call)]
            if head.tok is T.CONNECT:
                where = f"at {head.pos.line + 1}, char {head.pos.char + 1}"
                if intern:
                    raise TslError(f'function "connect" isn\'t allowed in an operator {where}')
                if load:
                    raise TslError(f'function "connect" isn\'t allowed when declaring a variable {where}')
                instruction = self.connect(_call(step), instruction)
                connect = instruction.connect
                continue
            if head.tok is T.CREATE:
                instruction = self.create(_call(step), instruction)
                return self.series_ops(instruction, rest, intern), connect
            if head.tok is T.SELECT:
                instruction = self.select(_call(step), instruction)
                return self.post_select(instruction, rest, intern), connect
            if head.tok in _SERIES_OPERATORS or head.tok in _MASKS:
                most = 2 if head.tok in _MASKS else -1
                instruction = self.operator(_call(step), instruction, most, load)
                return self.post_operator(instruction, rest, intern), connect
            if head.tok is T.IDENT and isinstance(step, Tk):
                return self.use_variable(head, instruction.connect, rest, intern), connect
            if head.tok is T.IDENT and isinstance(step, Call):
                self.lookup(head)
                raise _unexpected_start(step.lpar)
            raise _unexpected_start(head)
        return instruction, connect

    def lookup(self, name: Tk) -> _Variable:
        variable = self.variables.get(name.lit)
        if variable is None:
            raise parse_error(f"Variable {q(name.lit)} doesn't exists", name.pos)
        return variable

    def use_variable(self, name: Tk, connect: Connect, rest: Sequence[Call],
                     intern: bool) -> Instruction:
        variable = self.lookup(name)
        instruction = _with_connect(variable.instruction, connect)
        if variable.tok is T.NATIVEVARIABLE:
            native = Method(T.NATIVEVARIABLE, {}, {0: Field(T.STRING, name.lit)}, name.pos)
            select = replace(instruction.select, methods=(native, *instruction.select.methods),
                             is_variable=True)
            instruction = replace(instruction, select=select, has_select=True)
            return self.post_select(instruction, rest, intern) if rest else instruction
        if not rest:
            return instruction
        if variable.tok is T.SELECT:
            return self.post_select(instruction, rest, intern)
        if variable.tok is T.GTSLIST:
            return self.series_ops(instruction, rest, intern)
        if variable.tok is T.MULTIPLESERIESOPERATOR:
            return self.post_operator(instruction, rest, intern)
        raise _unexpected_start(rest[0].name)

    def declare(self, assign: Assign) -> _Variable:
        name, value = assign.name.lit, assign.value
        if isinstance(value, ListLit) or (isinstance(value, Chain) and isinstance(value.head, ListLit)):
            listed = self.list_field("Variable " + name, value, Field(T.INTERNALLIST))
            return _Variable(name, T.INTERNALLIST, "", items=listed.items)
        if isinstance(value, Tk) and value.tok in (T.STRING, T.INTEGER, T.NUMBER, T.DURATIONVAL,
                                                   T.TRUE, T.FALSE, T.NEGINTEGER, T.NEGNUMBER):
            return _Variable(name, value.tok, value.lit)
        instruction = self.statement(value, Connect(), intern=True, load=True)
        if instruction.has_select:
            kind = T.GTSLIST if instruction.select.methods else T.SELECT
        elif instruction.is_operator:
            kind = T.MULTIPLESERIESOPERATOR
        else:
            raise parse_error('Unvalid variable type "ILLEGAL"', first_token(value).pos)
        return _Variable(name, kind, instruction=instruction)

    # -- chains after the head --------------------------------------------------------------

    def post_select(self, instruction: Instruction, calls: Sequence[Call],
                    intern: bool) -> Instruction:
        time_set = instruction.select.time_set if instruction.has_select else False
        for index, call in enumerate(calls):
            tok, pos = call.name.tok, call.name.pos
            if tok in _META:
                if intern or instruction.is_operator or instruction.select.time_set or \
                        index + 1 < len(calls):
                    message = f"Function {q(tok.text)}, expects to stand on a single select statement"
                    raise parse_error(message, pos)
                return self.meta(call, instruction)
            if tok is T.WHERE:
                instruction = self.where(call, instruction)
            elif tok is T.ATTRIBUTEPOLICY:
                instruction = self.attribute_policy(call, instruction)
            elif tok in (T.FROM, T.LAST):
                if time_set:
                    raise parse_error(f"Found {q(tok.text)} function or a time function is already set", pos)
                time_set = True
                instruction = self.from_(call, instruction) if tok is T.FROM else self.last(call, instruction)
            else:
                return self.series_ops(instruction, calls[index:], intern)
        return instruction

    def post_operator(self, instruction: Instruction, calls: Sequence[Call],
                      intern: bool) -> Instruction:
        for index, call in enumerate(calls):
            tok, pos = call.name.tok, call.name.pos
            op = instruction.operator
            if tok is T.ON:
                if op.is_ignoring:
                    raise parse_error('Conflict with function "on", can\'t be applied with ignoring function', pos)
                labels = self.label_list(call)
                instruction = replace(instruction, operator=replace(op, labels=op.labels + labels))
            elif tok is T.IGNORING:
                if not op.is_on:
                    raise parse_error('Conflict with function "ignoring", can\'t be applied with on function', pos)
                labels = self.label_list(call)
                ignoring = (op.labels if _is_single_list(call) else op.ignoring) + labels
                instruction = replace(instruction, operator=replace(op, ignoring=ignoring))
            elif tok in (T.GROUPLEFT, T.GROUPRIGHT):
                instruction = self.group_side(call, instruction)
            else:
                return self.series_ops(instruction, calls[index:], intern)
        return instruction

    def series_ops(self, instruction: Instruction, calls: Sequence[Call],
                   intern: bool) -> Instruction:
        # Methods may continue a variable's chain (`x = select(…).sampleBy(…)`, then
        # `x.groupBy(…)`): what the variable sampled counts as sampled here too.
        sampled = any(method.op in (T.SAMPLEBY, T.SAMPLE) for method in instruction.select.methods)
        for call in calls:
            tok = call.name.tok
            handler = _SERIES_METHODS.get(tok)
            if handler is not None:
                instruction = handler(self, call, instruction, sampled)
                sampled = sampled or tok in (T.SAMPLEBY, T.SAMPLE)
                continue
            if tok is T.IDENT:
                self.lookup(call.name)
                raise _unexpected_start(call.lpar)
            message = f"Unvalid method found {q(_tokstr(call.name))}, a time series method or end of statement is expected"
            raise parse_error(message, call.name.pos)
        return instruction

    # -- heads ------------------------------------------------------------------------------

    def connect(self, call: Call, instruction: Instruction) -> Instruction:
        fields = self.fields("select", call, {}, 4)
        lits = [fields[i].lit for i in sorted(fields)]
        kind = lits[0] if lits else ""
        connect = Connect(type=kind, pos=call.name.pos)
        if kind == "warp10":
            if len(lits) not in (2, 3):
                raise parse_error("error", call.name.pos)
            connect = replace(connect, api=lits[1], token=lits[2] if len(lits) == 3 else "")
        elif kind in ("prom", "prometheus"):
            if len(lits) == 2:
                connect = replace(connect, api=lits[1])
            elif len(lits) == 4:
                connect = replace(connect, api=lits[1], token=_basic_auth(lits[2], lits[3]))
        return replace(instruction, connect=connect)

    def select(self, call: Call, instruction: Instruction) -> Instruction:
        fields = self.fields("select", call, {0: [_f(T.IDENT), _f(T.ASTERISK), _f(T.STRING)]}, 1)
        metric = fields.get(0, EMPTY)
        select = Select(pos=call.name.pos)
        if metric.tok is T.STRING:
            select = replace(select, metric=metric.lit, metric_kind=T.STRING)
        elif metric.tok is T.ASTERISK:
            select = replace(select, select_all=True, metric_kind=T.ASTERISK)
        elif metric.tok is T.NATIVEVARIABLE:
            select = replace(select, metric=metric.lit, metric_kind=T.NATIVEVARIABLE)
        return replace(instruction, select=select, has_select=True)

    def create(self, call: Call, instruction: Instruction) -> Instruction:
        series: list[CreateSeries] = []
        select = instruction.select
        for arg in call.args:
            node = arg.value
            if not isinstance(node, Chain) or not isinstance(node.head, Call) or \
                    node.head.name.tok is not T.SERIES:
                head = first_token(node)
                message = f"Unvalid method found {q(_tokstr(head))}, expect a creation method as series or a closing )"
                raise parse_error(message, head.pos)
            created = self.create_series(node)
            if created.values:
                select = replace(select, has_from=True, from_=From(
                    start=Field(T.IDENT, "$minCreateTick"), end=Field(T.IDENT, "$maxCreateTick"),
                    has_end=True))
            series.append(created)
        return replace(instruction, select=select, has_select=True,
                       create=Create(tuple(series), call.name.pos))

    def create_series(self, chain: Chain) -> CreateSeries:
        assert isinstance(chain.head, Call)
        fields = self.fields("select", chain.head, {0: [_f(T.IDENT), _f(T.ASTERISK), _f(T.STRING)]}, 1)
        metric = fields.get(0, EMPTY)
        created = CreateSeries(metric=metric if metric.tok in (T.STRING, T.NATIVEVARIABLE) else EMPTY)
        for call in chain.calls:
            if call.name.tok is T.SETLABELS:
                wheres = self.where_fields(call)
                created = replace(created, where=created.where + wheres)
            elif call.name.tok is T.SETVALUES:
                created = self.set_values(call, created)
            else:
                message = f"Unvalid method found {q(_tokstr(call.name))}, expect setLabels or setValues on a created series"
                raise parse_error(message, call.name.pos)
        return created

    def set_values(self, call: Call, created: CreateSeries) -> CreateSeries:
        has_end = False
        values = list(created.values)
        end = Field(T.ILLEGAL)
        for arg in call.args:
            node = arg.value
            head = first_token(node)
            if isinstance(node, Tk) and node.tok in (T.NUMBER, T.INTEGER, T.DURATIONVAL,
                                                     T.NEGINTEGER, T.NEGNUMBER, T.STRING):
                if node.tok is T.STRING and node.lit != "now":
                    raise _bad_set_value(node)
                if has_end:
                    message = f"single end date value was previously set in setValues, found {q(_tokstr(node))}"
                    raise parse_error(message, node.pos)
                end, has_end = Field(node.tok, node.lit), True
            elif isinstance(node, ListLit):
                values.append(_data_point(node))
            else:
                raise _bad_set_value(head)
        return replace(created, values=tuple(values), end=end)

    def operator(self, call: Call, instruction: Instruction, most: int, load: bool) -> Instruction:
        operands: list[Instruction] = []
        for index, arg in enumerate(call.args):
            if most > -1 and index + 1 > most:
                raise parse_error(f"Operator {q(call.name.tok.text)} expects at most {most} parameters", call.name.pos)
            node = arg.value
            if isinstance(node, Tk) and node.tok is T.IDENT:
                operands.append(self.use_variable(node, instruction.connect, [], True))
            elif isinstance(node, Chain) and isinstance(node.head, Tk) and node.head.tok is T.IDENT:
                operands.append(self.use_variable(node.head, instruction.connect, node.calls, True))
            else:
                operands.append(self.statement(node, instruction.connect, intern=True, load=load))
        if len(operands) < 2:
            raise parse_error(f"Operator {q(call.name.tok.text)} expects at least 2 parameters", call.name.pos)
        operator = Operator(op=call.name.tok, operands=tuple(operands), pos=call.name.pos)
        return replace(instruction, operator=operator, is_operator=True)

    # -- select clauses ---------------------------------------------------------------------

    def meta(self, call: Call, instruction: Instruction) -> Instruction:
        tok = call.name.tok
        fields = self.fields(tok.text, call, {}, 1 if tok in (T.LABELS, T.ATTRIBUTES) else 0)
        method = Method(tok, {}, dict(fields), call.name.pos, _args(fields))
        return replace(instruction, is_meta=True, select=_append(instruction.select, method))

    def attribute_policy(self, call: Call, instruction: Instruction) -> Instruction:
        fields = self.fields("attributePolicy", call, {}, 1)
        if not fields:
            raise parse_error('The "attributePolicy" function expects at least 1 "STRING" parameter(s)', call.name.pos)
        try:
            policy = Policy(fields[0].lit)
        except ValueError:
            raise parse_error('In "attributePolicy" function expects parameter must be one of "merge", "split" or "remove"', call.name.pos) from None
        return replace(instruction, select=replace(instruction.select, attribute_policy=policy))

    def where(self, call: Call, instruction: Instruction) -> Instruction:
        wheres = self.where_fields(call)
        return replace(instruction, select=replace(instruction.select, where=instruction.select.where + wheres))

    def where_fields(self, call: Call) -> tuple[Where, ...]:
        name, pos = call.name.tok.text, call.name.pos
        fields = self.fields(name, call, {0: [_f(T.STRING), _f(T.INTERNALLIST)]}, -1)
        if not fields:
            raise parse_error(f"Function {q(name)}, expects at least one string parameter or a string list", pos)
        if fields[0].tok is T.INTERNALLIST and len(fields) > 1:
            raise parse_error(f"Function {q(name)}, got both a string list and a string parameter", pos)
        listed = fields[0].items if fields[0].tok is T.INTERNALLIST else tuple(fields[i] for i in sorted(fields))
        out: list[Where] = []
        for item in listed:
            if item.tok is T.NATIVEVARIABLE:
                out.append(Where(key=item.lit, kind=T.NATIVEVARIABLE))
                continue
            if fields[0].tok is T.INTERNALLIST and item.tok is not T.STRING:
                raise parse_error(f"Function {q(name)} expects only strings as fields clauses", pos)
            out.append(_where_field(item.lit, pos))
        return tuple(out)

    def from_(self, call: Call, instruction: Instruction) -> Instruction:
        plain = [_f(T.STRING), _f(T.NUMBER), _f(T.INTEGER)]
        accept = {0: [_f(T.STRING, P.FROM), _f(T.NUMBER, P.FROM), _f(T.INTEGER, P.FROM), *plain],
                  1: [_f(T.STRING, P.TO), _f(T.NUMBER, P.TO), _f(T.INTEGER, P.TO), *plain]}
        fields = self.fields("from", call, accept, 2)
        if not fields:
            raise parse_error('Function "from" expects at least one parameter, got ""', call.name.pos)
        span = From(start=fields[0], end=fields.get(1, EMPTY), has_end=len(fields) == 2, pos=call.name.pos)
        select = replace(instruction.select, from_=span, has_from=True, has_last=False, time_set=True)
        return replace(instruction, select=select)

    def last(self, call: Call, instruction: Instruction) -> Instruction:
        options = [_f(T.DURATIONVAL, P.SHIFT), _f(T.INTEGER, P.TIMESTAMP), _f(T.NUMBER, P.TIMESTAMP),
                   _f(T.STRING, P.DATE), _f(T.NATIVEVARIABLE, P.SHIFT),
                   _f(T.NATIVEVARIABLE, P.TIMESTAMP), _f(T.NATIVEVARIABLE, P.DATE),
                   _f(T.DURATIONVAL), _f(T.INTEGER), _f(T.NUMBER), _f(T.STRING)]
        fields = self.fields("last", call, {0: [_f(T.INTEGER), _f(T.DURATIONVAL)], 1: options, 2: options}, 3)
        first, pos = fields.get(0, EMPTY), call.name.pos
        if first.tok is T.INTEGER:
            last = Last(last=first.lit, pos=pos)
        elif first.tok is T.NATIVEVARIABLE:
            last = Last(last=first.lit, pos=pos, kind=first.tok)
        elif first.tok is T.DURATIONVAL:
            last = Last(last=first.lit, is_duration=True, pos=pos)
        else:
            raise parse_error(f'Function "last" expects its first parameter to be an INTEGER or a DURATIONVAL, got {q(first.lit)}', pos)
        chosen: dict[Prefix, Field] = {}
        for index in (1, 2):
            if index in fields:
                key = _last_option(fields[index], pos)
                chosen[key] = fields[index]
        select = replace(instruction.select, last=replace(last, options=chosen), has_last=True,
                         has_from=False, time_set=True)
        return replace(instruction, select=select)

    # -- operator clauses -------------------------------------------------------------------

    def label_list(self, call: Call) -> tuple[str, ...]:
        name, pos = call.name.tok.text, call.name.pos
        fields = self.fields(name, call, {0: [_f(T.INTERNALLIST), _f(T.STRING)]}, -1)
        listed = fields[0].items if len(fields) == 1 and fields[0].tok is T.INTERNALLIST else \
            tuple(fields[i] for i in sorted(fields))
        for item in listed:
            if item.tok is not T.STRING:
                raise parse_error(f'When encounters {q(name)} keyword, expects only labels key as "STRING"', pos)
        return tuple(item.lit for item in listed)

    def group_side(self, call: Call, instruction: Instruction) -> Instruction:
        tok, pos, op = call.name.tok, call.name.pos, instruction.operator
        if not op.labels and not op.ignoring:
            raise parse_error(f"Found function {q(tok.text)}, this function expects to find on or ignoring function before on current operator", pos)
        if op.group.lit:
            raise parse_error(f"Found function {q(tok.text)}, or a group method was already defined for this operator", pos)
        group = Field(tok, "group_left" if tok is T.GROUPLEFT else "group_right")
        fields = self.fields(tok.text, call, {}, -1)
        labels: list[str] = []
        for index in sorted(fields):
            item = fields[index]
            if item.tok is not T.STRING:
                raise parse_error(f'When encounters {q(tok.text)} keyword, expects only labels key as "STRING"', pos)
            if item.lit in op.labels:
                raise parse_error(f"In function {q(tok.text)} keyword, label {q(item.lit)} must not occur in ON and GROUP clause at once", pos)
            labels.append(item.lit)
        operator = replace(op, group=group, group_labels=op.group_labels + tuple(labels))
        return replace(instruction, operator=operator)

    # -- series methods ---------------------------------------------------------------------

    def sample_by(self, call: Call, instruction: Instruction, sampled: bool) -> Instruction:
        tok, pos = call.name.tok, call.name.pos
        if tok is T.SAMPLE:
            accept: dict[int, Sequence[Field]] = {0: _AGGREGATORS_SAMPLE, **dict.fromkeys(range(1, 5), _SAMPLE_OPTIONS)}
        else:
            accept = {0: _SAMPLE_SPAN, 1: _AGGREGATORS_SAMPLE, **dict.fromkeys(range(2, 6), _SAMPLE_OPTIONS)}
        fields = self.fields(tok.text, call, accept, len(accept))
        if len(fields) < (1 if tok is T.SAMPLE else 2):
            message = ('The "aggregator" method expects at least one parameter an aggregator' if tok is T.SAMPLE
                       else f'The {q(tok.text)} method expects at least two parameters: a "span" or a "count" and a "aggregator"')
            raise parse_error(message, pos)
        named: dict[Prefix, Field] = {}
        unnamed: dict[int, Field] = {}
        skipped: set[int] = set()
        for index, given in _unskipped(fields, skipped):
            item = given   # rewritten below as the reference rewrites its fields
            if item.prefix is not None:
                named[P.FILL_VALUE if item.tok is T.FILL else item.prefix] = item
                continue
            if index == 0:   # for sample() too: the reference files its aggregator under "from"
                prefix = {T.DURATIONVAL: P.SPAN, T.INTEGER: P.COUNT, T.NATIVEVARIABLE: P.SPAN}.get(item.tok)
                item = replace(item, prefix=prefix)
                named[prefix if prefix is not None else P.FROM] = item
                continue
            if index == 1:
                if item.tok not in (T.STRING, T.NUMBER, T.INTEGER):
                    item = replace(item, prefix=P.SAMPLE_AGGREGATOR, lit=item.tok.text)
                if item.tok in (T.JOIN, T.PERCENTILE):
                    self.value_aggregator(unnamed, skipped, call, item, fields, index)
                named[item.prefix if item.prefix is not None else P.FROM] = item
                continue
            prefix, item = self.sample_option(call, item)
            named[prefix] = item
        has_span, has_count = P.SPAN in named, P.COUNT in named
        select = instruction.select
        if has_span and not has_count and not select.has_from and not select.last.is_duration \
                and not select.is_variable:
            raise parse_error(f"In {q(tok.text)} function, got a span when select was done on a counted item. Use also an integer number as sample count in that case", pos)
        if tok is T.SAMPLE:
            if has_span or has_count:
                raise parse_error(f"In {q(tok.text)} function, no span or count can be set", pos)
            if select.has_last and not select.last.is_duration:
                raise parse_error(f"In {q(tok.text)} function, cannot work on Integer last values", pos)
            named[P.COUNT] = Field(T.INTEGER, self.samplers_count)
        return _add(instruction, Method(tok, named, unnamed, pos, _args(fields)))

    def sample_option(self, call: Call, item: Field) -> tuple[Prefix, Field]:
        tok, pos = call.name.tok, call.name.pos
        if item.tok is T.DURATIONVAL:
            return P.SPAN, replace(item, prefix=P.SPAN)
        if item.tok is T.FILL:
            return P.FILL_VALUE, replace(item, prefix=P.FILL_VALUE)
        if item.tok is T.STRING:
            return P.FILL, replace(item, prefix=P.FILL)
        if item.tok is T.INTERNALLIST:
            for inner in item.items:
                if inner.tok is not T.STRING:
                    raise parse_error(f'Exect a valid field string for "fill" in function {q(tok.text)}', pos)
                if inner.lit not in ("previous", "next", "interpolate"):
                    raise parse_error(f'Unvalid string "" in function {q(tok.text)}, expects one of "previous", "next" or "interpolate"', pos)
            return P.FILL, replace(item, prefix=P.FILL)
        if item.tok is T.INTEGER:
            return P.COUNT, replace(item, prefix=P.COUNT)
        if item.tok in (T.TRUE, T.FALSE):
            return P.RELATIVE, replace(item, prefix=P.RELATIVE, lit=item.tok.text)
        raise parse_error(f"Unexpected field {q(item.lit or item.tok.text)} in function {q(tok.text)}", pos)

    def value_aggregator(self, unnamed: dict[int, Field], skipped: set[int], call: Call,
                         item: Field, fields: Mapping[int, Field], index: int) -> None:
        """The parameter after `join` (a separator), `percentile` (0 ≤ p < 100), `labels` or
        `attributes` (keys), stored as the method's first unnamed argument."""
        tok, pos = call.name.tok, call.name.pos
        kinds = {T.JOIN: {T.STRING: "string", T.NATIVEVARIABLE: "Nat vatiable"},
                 T.PERCENTILE: {T.NUMBER: "a decimal number", T.INTEGER: "an integer number",
                                T.NATIVEVARIABLE: "Nat vatiable"},
                 T.LABELS: {T.STRING: "string", T.INTERNALLIST: "a list", T.NATIVEVARIABLE: "Nat vatiable"},
                 T.ATTRIBUTES: {T.STRING: "string", T.INTERNALLIST: "a list", T.NATIVEVARIABLE: "Nat vatiable"},
                 }.get(item.tok, {})
        following = fields.get(index + 1, EMPTY)
        if following.tok not in kinds:
            expected = " or ".join(kinds.values())
            raise parse_error(f"In {q(tok.text)} method, {q(item.tok.text)} expects one {q(expected)} parameter", pos)
        if item.tok is T.PERCENTILE:
            following = _percentile(following, f"In {q(tok.text)} method, {q(item.tok.text)} expects", pos)
        unnamed[0] = following
        skipped.add(index + 1)

    def operator_by(self, call: Call, instruction: Instruction, sampled: bool) -> Instruction:
        tok, pos = call.name.tok, call.name.pos
        with_n = tok in (T.BOTTOMNBY, T.TOPNBY, T.BOTTOMN, T.TOPN)
        named: dict[Prefix, Field] = {}
        unnamed: dict[int, Field] = {}
        skipped: set[int] = set()
        if not with_n:
            fields = self.fields(tok.text, call, {0: _BY_AGGREGATORS, 1: _BY_PARAMS}, 2)
            if fields:
                item = fields[0]
                if item.tok is not T.INTEGER:
                    item = replace(item, lit=item.tok.text)
                named[P.AGGREGATOR] = item
                if item.tok in (T.PERCENTILE, T.ATTRIBUTES, T.LABELS):
                    self.value_aggregator(unnamed, skipped, call, item, fields, 0)
                elif len(fields) > 1:
                    raise parse_error(f"{q(tok.text)} expects at most 1 field(s)", pos)
            return _add(instruction, Method(tok, named, unnamed, pos, _args(fields)))
        fields = self.fields(tok.text, call, {1: _BY_AGGREGATORS, 0: _BY_PARAMS, 2: _BY_PARAMS}, 3)
        if not fields:
            raise parse_error(f"The {q(tok.text)} function expects at least a parameter: the n value number", pos)
        for index, given in _unskipped(fields, skipped):
            item = given   # rewritten below as the reference rewrites its fields
            if index == 0 and item.tok is T.INTEGER:
                if _RE_ZERO_ONLY.match(call.name.lit):   # the reference tests the method name here
                    raise parse_error(f"The {q(tok.text)} function cannot work with \"\" param, expect a value > 0", pos)
                named[P.N] = item
            elif index == 1:
                if item.tok is not T.STRING:
                    item = replace(item, lit=item.tok.text)
                named[P.AGGREGATOR] = item
                if item.tok in (T.PERCENTILE, T.ATTRIBUTES, T.LABELS):
                    self.value_aggregator(unnamed, skipped, call, item, fields, index)
                elif len(fields) > 2:
                    raise parse_error(f"{q(tok.text)} expects at most 2 field(s)", pos)
            else:
                raise parse_error(f"The {q(tok.text)} function encountered an error when parsing its parameter", pos)
        return _add(instruction, Method(tok, named, unnamed, pos, _args(fields)))

    def group_by(self, call: Call, instruction: Instruction, sampled: bool) -> Instruction:
        tok, pos = call.name.tok, call.name.pos
        if tok is T.GROUP:
            fields = self.fields(tok.text, call, {0: _GROUP_AGGREGATORS, 1: _GROUP_OPTIONS, 2: _GROUP_OPTIONS}, 3)
            if not fields:
                raise parse_error(f"The {q(tok.text)} function expects at least one parameter an aggregator", pos)
        else:
            accept = {0: _GROUP_LABELS, 1: _GROUP_AGGREGATORS, 2: _GROUP_OPTIONS, 3: _GROUP_OPTIONS}
            fields = self.fields(tok.text, call, accept, -1)
            if len(fields) < 2:
                raise parse_error(f"The {q(tok.text)} function expects at least two parameters an aggregator and a label key string or a list of labels key string", pos)
        named: dict[Prefix, Field] = {}
        unnamed: dict[int, Field] = {}
        skipped: set[int] = set()
        for index, given in _unskipped(fields, skipped):
            item = given   # rewritten below as the reference rewrites its fields
            if item.tok is T.INTERNALLIST:
                for position, inner in enumerate(item.items):
                    if inner.tok is not T.STRING:
                        raise parse_error(f"The {q(tok.text)} function expects only label key string", pos)
                    unnamed[position] = inner
            elif item.tok not in (T.STRING, T.FALSE, T.TRUE, T.NATIVEVARIABLE) or item.prefix is P.AGGREGATOR:
                if item.tok not in (T.STRING, T.NUMBER, T.INTEGER, T.NATIVEVARIABLE):
                    item = replace(item, lit=item.tok.text)
                if item.tok in (T.JOIN, T.PERCENTILE):
                    self.value_aggregator(unnamed, skipped, call, item, fields, index)
                named[P.AGGREGATOR] = item
            elif item.tok in (T.STRING, T.NATIVEVARIABLE):
                unnamed[0] = item
            else:
                named[P.KEEP_DISTINCT] = item
        if not sampled:
            instruction = _add(instruction, _DEFAULT_SAMPLER)
        return _add(instruction, Method(tok, named, unnamed, pos, _args(fields)))

    def n_strings(self, call: Call, instruction: Instruction, sampled: bool) -> Instruction:
        tok, pos = call.name.tok, call.name.pos
        count = {T.REMOVELABELS: -1, T.FILTERBYLABELS: -1, T.FILTERWITHOUTLABELS: -1,
                 T.RENAMELABELKEY: 2, T.RENAMEBY: -1}.get(tok, 1)
        fields = self.fields(tok.text, call, {}, count)
        least = {T.RENAMEBY: 1, T.REMOVELABELS: 0}.get(tok, count)
        if len(fields) < least:
            raise parse_error(f'The {q(tok.text)} function expects at least {least} "STRING" parameter(s)', pos)
        return _add(instruction, Method(tok, {}, dict(fields), pos, _args(fields)))

    def rename_label_value(self, call: Call, instruction: Instruction, sampled: bool) -> Instruction:
        tok, pos = call.name.tok, call.name.pos
        fields = self.fields(tok.text, call, {}, 3)
        if len(fields) < 2:
            raise parse_error(f'The {q(tok.text)} function expects at least 2 "STRING" parameter(s)', pos)
        if len(fields) == 2:
            fields = {0: fields[0], 1: Field(T.STRING, ".*"), 2: fields[1]}
        return _add(instruction, Method(tok, {}, dict(fields), pos, _args(fields)))

    def set_label_from_name(self, call: Call, instruction: Instruction, sampled: bool) -> Instruction:
        tok, pos = call.name.tok, call.name.pos
        fields = self.fields(tok.text, call, {}, 2)
        if not fields:
            raise parse_error(f'The {q(tok.text)} function expects at least one "STRING" parameter', pos)
        return _add(instruction, Method(tok, {}, dict(fields), pos, _args(fields)))

    def single_number(self, call: Call, instruction: Instruction, sampled: bool) -> Instruction:
        tok = {T.KEEPFIRSTVALUE: T.KEEPFIRSTVALUES, T.KEEPLASTVALUE: T.KEEPLASTVALUES}.get(call.name.tok, call.name.tok)
        accept = [_f(T.INTEGER)] if tok is T.SHRINK else _NUMBERS
        fields = self.fields(tok.text, call, {0: accept}, 1)
        if len(fields) < (0 if tok in (T.KEEPFIRSTVALUES, T.KEEPLASTVALUES) else 1):
            raise parse_error(f'The {q(tok.text)} function expects at least one "NUMBER" parameter', call.name.pos)
        return _add(instruction, Method(tok, _as_values(fields), {}, call.name.pos, _args(fields)))

    def operators(self, call: Call, instruction: Instruction, sampled: bool) -> Instruction:
        tok, pos = call.name.tok, call.name.pos
        accept, most, least = _OPERATOR_ARGS[tok]
        fields = self.fields(tok.text, call, accept, most)
        if len(fields) < least:
            raise parse_error(f"The {q(tok.text)} function expects at least {least} parameter(s)", pos)
        return _add(instruction, Method(tok, {}, dict(fields), pos, _args(fields)))

    def boolean(self, call: Call, instruction: Instruction, sampled: bool) -> Instruction:
        tok = call.name.tok
        fields = self.fields(tok.text, call, {0: [_f(T.TRUE), _f(T.FALSE)]}, 1)
        if not fields:
            raise parse_error(f"The {q(tok.text)} function expects at least one boolean parameter", call.name.pos)
        return _add(instruction, Method(tok, _as_values(fields), {}, call.name.pos, _args(fields)))

    def time_operator(self, call: Call, instruction: Instruction, sampled: bool) -> Instruction:
        tok = call.name.tok
        fields = self.fields(tok.text, call, {0: [_f(T.DURATIONVAL)]}, 1)
        if len(fields) < (0 if tok is T.RATE else 1):
            raise parse_error(f'The {q(tok.text)} function expects at least one "DURATIONVAL" parameter', call.name.pos)
        instruction = _add(instruction, Method(tok, _as_values(fields), {}, call.name.pos, _args(fields)))
        if tok is T.RATE:
            instruction = replace(instruction, select=replace(instruction.select, has_rate=True))
        return instruction

    def window_operator(self, call: Call, instruction: Instruction, sampled: bool) -> Instruction:
        tok, pos = call.name.tok, call.name.pos
        accept: dict[int, Sequence[Field]] = {}
        if tok is T.JOIN:
            accept[len(accept)] = [_f(T.STRING)]
        if tok is T.PERCENTILE:
            accept[len(accept)] = [_f(T.INTEGER), _f(T.NUMBER)]
        added = len(accept)
        accept[added] = [_f(T.INTEGER, P.PRE), _f(T.DURATIONVAL, P.PRE), _f(T.DURATIONVAL, P.SAMPLING),
                         _f(T.INTEGER), _f(T.DURATIONVAL)]
        accept[added + 1] = [_f(T.INTEGER, P.POST), _f(T.DURATIONVAL, P.POST), _f(T.INTEGER), _f(T.DURATIONVAL)]
        fields = self.fields(tok.text, call, accept, len(accept))
        named: dict[Prefix, Field] = {}
        unnamed: dict[int, Field] = {}
        if len(fields) == added:
            named[P.PRE] = Field(T.INTEGER, "0" if tok is T.FINITE else "1", P.PRE)
        if len(fields) == added + 1:
            item = fields[added]
            if item.tok is not T.DURATIONVAL:
                raise parse_error(f'The {q(tok.text)} function expects one a sampler (duration) parameter or two a "pre" and a "post" parameters', pos)
            if item.prefix is None:
                item = replace(item, prefix=P.SAMPLING)
            assert item.prefix is not None
            named[item.prefix] = item
            if not sampled:
                instruction = _add(instruction, replace(_DEFAULT_SAMPLER, pos=pos))
        is_duration = False
        for index in sorted(fields):
            item = fields[index]
            if index < added:
                if tok is T.PERCENTILE:
                    item = _percentile(item, f"In {q(tok.text)} method expects", pos)
                named[P.VALUE] = replace(item, prefix=P.VALUE)
                continue
            if item.tok is T.DURATIONVAL:
                is_duration = True
            if item.prefix is None:
                item = replace(item, prefix=P.PRE if index == added else P.POST)
            assert item.prefix is not None
            named[item.prefix] = item
        if is_duration and not sampled:
            instruction = _add(instruction, replace(_DEFAULT_SAMPLER, pos=pos))
        return _add(instruction, Method(tok, named, unnamed, pos, _args(fields)))

    def no_operator(self, call: Call, instruction: Instruction, sampled: bool) -> Instruction:
        tok = call.name.tok
        if self.fields(tok.text, call, {}, 0):
            raise parse_error(f"The {q(tok.text)} function expects no parameter", call.name.pos)
        return _add(instruction, Method(tok, {}, {}, call.name.pos))

    def aggregator_function(self, call: Call, instruction: Instruction, sampled: bool) -> Instruction:
        tok, pos = call.name.tok, call.name.pos
        accept: dict[int, Sequence[Field]] = {0: _WINDOW_AGGREGATORS}
        most = 2
        if tok is T.WINDOW:
            accept.update({1: _WINDOW_ARGS, 2: _WINDOW_ARGS, 3: _WINDOW_ARGS})
            most = 4
        else:
            accept[1] = [_f(T.INTEGER)]
        fields = self.fields(tok.text, call, accept, most)
        if not fields:
            raise parse_error(f"The {q(tok.text)} function expects at least 1 parameter", pos)
        pre = "max.tick.sliding.window" if tok is T.CUMULATIVE else "0"
        named: dict[Prefix, Field] = {P.PRE: Field(T.INTEGER, pre), P.POST: Field(T.INTEGER, "0")}
        unnamed: dict[int, Field] = {}
        skipped: set[int] = set()
        for index, given in _unskipped(fields, skipped):
            item = given   # rewritten below as the reference rewrites its fields
            if item.prefix is not None:
                named[item.prefix] = item
            elif index == 0:
                named[P.AGGREGATOR] = item
                if item.tok in (T.JOIN, T.PERCENTILE):
                    self.value_aggregator(unnamed, skipped, call, item, fields, index)
                elif tok is not T.WINDOW and len(fields) > 1:
                    raise parse_error(f"Found \"\", {q(tok.text)} does not expected a field with type {q(fields[1].tok.text)}", pos)
            elif index in (2, 3):
                prefix = P.PRE if index == 2 else P.POST
                named[prefix] = replace(item, prefix=prefix)
        return _add(instruction, Method(tok, named, unnamed, pos, _args(fields)))

    # -- arguments --------------------------------------------------------------------------

    def fields(self, function: str, call: Call, accept: Accept, most: int) -> dict[int, Field]:
        """The reference's ParseFields: each argument checked against the types accepted at its
        position (named `prefix=value` forms included), variables substituted, templates
        expanded. Types accepted at earlier positions stay accepted later, as in the reference."""
        out: dict[int, Field] = {}
        allowed: list[Field] = []
        for index, arg in enumerate(call.args):
            head, value = (arg.name, arg.value) if arg.name is not None else (first_token(arg.value), arg.value)
            named_ok = False
            if index in accept:
                prefixed = []
                for option in accept[index]:
                    if option.prefix is not None and head.tok is not T.STRING and \
                            option.prefix.text in (head.lit, head.tok.text):
                        prefixed.append(option)
                    elif option.prefix is None:
                        allowed.append(option)
                if prefixed and arg.name is not None:
                    head, allowed, named_ok = first_token(value), prefixed, True
            else:
                allowed = [_f(T.STRING)]
            allowed.append(_f(T.NATIVEVARIABLE))
            node: Node = value if (named_ok or arg.name is None) else head
            out[index] = self.field(function, node, head, allowed)
            if arg.name is not None and not named_ok:
                assert arg.eq is not None
                raise parse_error('Expect a , or closing fields with a ), got "="', arg.eq.pos)
            _no_trailing(node)
            if most > -1 and index + 1 > most:
                raise parse_error(f"{q(function)} expects at most {most} field(s)", arg.end.pos)
        return out

    def field(self, function: str, node: Node, head: Tk, allowed: Sequence[Field]) -> Field:
        for option in allowed:
            if head.tok is T.IDENT:
                variable = self.variables.get(head.lit)
                if variable is None:
                    raise parse_error(f"Error when parsing {q(head.lit)} in {q(function)} function, this variable isn't declared", head.pos)
                if variable.tok is option.tok:
                    if variable.tok is T.INTERNALLIST:
                        items = variable.items
                        if isinstance(node, Chain):
                            items = self.list_methods(function, items, node.calls)
                        return replace(option, lit=variable.lit, items=items)
                    return replace(option, lit=variable.lit)
            elif head.tok is T.LBRACKET and option.tok is T.INTERNALLIST:
                return self.list_field(function, node, option)
            elif head.tok is T.FILL and option.tok is T.FILL:
                return self.fill_value(node, option)
            elif head.tok is option.tok:
                lit = self.template(head.lit, head.pos, function) if head.tok is T.STRING else head.lit
                return replace(option, lit=lit)
        raise parse_error(f"Found {q(head.lit)}, {q(function)} does not expected a field with type {q(head.tok.text)}", head.pos)

    def fill_value(self, node: Node, option: Field) -> Field:
        call = node.head if isinstance(node, Chain) else None
        if not isinstance(call, Call):
            raise parse_error("'fill()' method expected an opening '(', got \"\"", first_token(node).pos)
        if len(call.args) != 1 or call.args[0].name is not None:
            where = call.args[1].value if len(call.args) > 1 else call.rpar
            raise parse_error(f"'fill()' method expected a closing ')', got {q(_tokstr(first_token(where)))}", first_token(where).pos)
        value = first_token(call.args[0].value)
        if value.tok is T.STRING:
            lit = f"'{value.lit}'"
        elif value.tok in (T.NUMBER, T.INTEGER, T.NEGNUMBER, T.NEGINTEGER):
            lit = value.lit
        elif value.tok in (T.IDENT, T.NATIVEVARIABLE):
            lit = "$" + value.lit
        elif value.tok in (T.TRUE, T.FALSE):
            lit = value.tok.text
        else:
            raise parse_error(f"Unexpected type of field for the 'fill()' method. Expect a native type, got {q(_tokstr(value))}", value.pos)
        return replace(option, lit=lit)

    def list_field(self, function: str, node: Node, option: Field) -> Field:
        listed = node.head if isinstance(node, Chain) else node
        assert isinstance(listed, ListLit)
        items: list[Field] = []
        for item in listed.items:
            tok, lit = item.tok, item.lit
            if tok is T.STRING:
                lit = self.template(lit, Pos(), function)
            if tok is T.IDENT:
                variable = self.variables.get(lit)
                if variable is None:   # the reference crashes here; say what is wrong instead
                    raise parse_error(f"Error when parsing {q(lit)} in {q(function)} function, this variable isn't declared", item.pos)
                tok, lit = (T.NATIVEVARIABLE, lit) if variable.tok is T.NATIVEVARIABLE else (variable.tok, variable.lit)
            items.append(Field(tok, lit))
        calls = node.calls if isinstance(node, Chain) else ()
        return replace(option, items=self.list_methods(function, tuple(items), calls))

    def list_methods(self, function: str, items: tuple[Field, ...], calls: Sequence[Call]) -> tuple[Field, ...]:
        for call in calls:
            if call.name.tok is T.ADDSERIES:
                added = self.fields("add", call, {0: [_f(T.STRING), _f(T.NATIVEVARIABLE)]}, 1)
                items = (*items, added.get(0, EMPTY))
            elif call.name.tok is T.REMOVE:
                removed = self.fields("remove", call, {0: [_f(T.STRING)]}, 1).get(0, EMPTY)
                index = next((i for i, item in enumerate(items) if item.lit == removed.lit), None)
                if index is not None:
                    items = items[:index] + items[index + 1:]
        return items

    def template(self, lit: str, pos: Pos, function: str) -> str:
        """`"${x}"` inside strings: the variable's literal, or a list as `[a, b]`."""
        if "${" not in lit and "}" not in lit:
            return lit
        result = lit
        for index, part in enumerate(lit.split("${")):
            if index == 0 or "}" not in part:
                continue
            name = part.split("}")[0]
            variable = self.variables.get(name)
            if variable is None and function == "renameTemplate" and name.strip().startswith("this."):
                result = result.replace("${" + name + "}", "${" + name.strip() + "}", 1)
                continue
            if variable is None:
                raise parse_error(f"Error when parsing template {q(lit)} in {q(function)} function, {q(name.strip())} variable isn't declared", pos)
            if variable.tok is T.INTERNALLIST:
                inner = ", ".join(self.template(item.lit, pos, function) for item in variable.items)
                result = lit.replace("${" + name + "}", f"[{inner}]", 1)
            if variable.tok is T.NATIVEVARIABLE:
                result = lit.replace("${" + name + "}", "${this.nativevariable." + name + "}")
            else:
                result = result.replace("${" + name + "}", variable.lit)
        return result


_Handler = Callable[[_Binder, Call, Instruction, bool], Instruction]
_SERIES_METHODS: dict[Tok, _Handler] = {
    **dict.fromkeys((T.SAMPLEBY, T.SAMPLE), _Binder.sample_by),
    **dict.fromkeys((T.ADDSERIES, T.SUBSERIES, T.MULSERIES, T.DIVSERIES, T.EQUAL, T.MAXWITH,
                     T.MINWITH, T.NOTEQUAL, T.GREATERTHAN, T.GREATEROREQUAL, T.LESSTHAN,
                     T.LESSOREQUAL, T.LOGN, T.SHRINK, T.KEEPFIRSTVALUES, T.KEEPLASTVALUES,
                     T.KEEPFIRSTVALUE, T.KEEPLASTVALUE, T.TIMESCALE), _Binder.single_number),
    **dict.fromkeys(_OPERATOR_ARGS, _Binder.operators),
    **dict.fromkeys((T.ANDL, T.ORL), _Binder.boolean),
    **dict.fromkeys((T.SHIFT, T.RATE), _Binder.time_operator),
    **dict.fromkeys((T.DELTA, T.MEAN, T.MEDIAN, T.MIN, T.MAX, T.COUNT, T.STDDEV, T.STDVAR, T.SUM,
                     T.JOIN, T.PERCENTILE, T.FINITE), _Binder.window_operator),
    **dict.fromkeys((T.ADDNAMEPREFIX, T.ADDNAMESUFFIX, T.RENAME, T.RENAMEBY, T.RENAMETEMPLATE,
                     T.STORE, T.FILTERBYNAME, T.FILTERBYLASTVALUE, T.REMOVELABELS,
                     T.FILTERBYLABELS, T.FILTERWITHOUTLABELS, T.RENAMELABELKEY), _Binder.n_strings),
    T.RENAMELABELVALUE: _Binder.rename_label_value,
    T.SETLABELFROMNAME: _Binder.set_label_from_name,
    **dict.fromkeys((T.ABS, T.CEIL, T.CUMULATIVESUM, T.DAY, T.FLOOR, T.HOUR, T.LN, T.LOG2, T.LOG10,
                     T.MINUTE, T.MONTH, T.ROUND, T.RESETS, T.SQRT, T.TIMESTAMP, T.WEEKDAY, T.YEAR,
                     T.TOBOOLEAN, T.TODOUBLE, T.TOLONG, T.TOSTRING), _Binder.no_operator),
    **dict.fromkeys((T.CUMULATIVE, T.WINDOW), _Binder.aggregator_function),
    **dict.fromkeys((T.SORTBY, T.SORTDESCBY, T.BOTTOMNBY, T.TOPNBY, T.SORT, T.SORTDESC, T.BOTTOMN,
                     T.TOPN), _Binder.operator_by),
    **dict.fromkeys((T.GROUPBY, T.GROUP, T.GROUPWITHOUT), _Binder.group_by),
}
# ANDL/ORL reach operators as series operators at a statement's head, and `.and(true)` here.
_SERIES_METHODS[T.ADDSERIES] = _Binder.single_number


# -- helpers ---------------------------------------------------------------------------------

def _call(step: Call | Tk | ListLit) -> Call:
    if isinstance(step, Call):
        return step
    head = first_token(step)
    raise parse_error(f"Expect a (, got {q(_tokstr(head))}", head.pos)


def _tokstr(tk: Tk) -> str:
    return tk.lit or tk.tok.text


def _unexpected_start(tk: Tk) -> TslError:
    return TslError(f"unexpected reserved keyword to start instruction at line {tk.pos.line + 1}, char {tk.pos.char + 1}",
                    line=tk.pos.line + 1, char=tk.pos.char + 1)


def _no_trailing(node: Node) -> None:
    """A value followed by more than the reference reads as one argument (`mean(1)`, `x.y()`)."""
    if isinstance(node, Chain):
        if isinstance(node.head, Call) and node.head.name.tok is not T.FILL:
            raise parse_error('Expect a , or closing fields with a ), got "("', node.head.lpar.pos)
        if isinstance(node.head, Tk) and node.calls and node.calls[0].name.tok not in (T.ADDSERIES, T.REMOVE):
            raise parse_error('Expect a , or closing fields with a ), got "."', node.dots[0].pos)


def _is_single_list(call: Call) -> bool:
    return len(call.args) == 1 and isinstance(call.args[0].value, ListLit)


def _with_connect(instruction: Instruction, connect: Connect) -> Instruction:
    if instruction.is_operator:
        operands = tuple(_with_connect(o, connect) for o in instruction.operator.operands)
        instruction = replace(instruction, operator=replace(instruction.operator, operands=operands))
    return replace(instruction, connect=connect)


def _append(select: Select, method: Method) -> Select:
    return replace(select, methods=(*select.methods, method))


def _add(instruction: Instruction, method: Method) -> Instruction:
    return replace(instruction, select=_append(instruction.select, method))


def _unskipped(fields: Mapping[int, Field], skipped: set[int]) -> Iterator[tuple[int, Field]]:
    """The arguments in order, less those an aggregator took as its parameter on the way."""
    for index in sorted(fields):
        if index not in skipped:
            yield index, fields[index]


def _args(fields: Mapping[int, Field]) -> tuple[Field, ...]:
    return tuple(fields[i] for i in sorted(fields))


def _as_values(fields: Mapping[int, Field]) -> dict[Prefix, Field]:
    out: dict[Prefix, Field] = {}
    for index in sorted(fields):
        item = fields[index]
        prefix = item.prefix if item.prefix is not None else P.VALUE
        out[prefix] = replace(item, prefix=prefix)
    return out


def _percentile(item: Field, lead: str, pos: Pos) -> Field:
    if item.tok is T.NUMBER:
        try:
            value = float(item.lit)
        except ValueError:
            value = -1.0
        if not 0 <= value < 100:
            raise parse_error(f"{lead} percentile parameter to be included in [0.0, 100.0[", pos)
    if item.tok is T.INTEGER:
        if not 0 <= int(item.lit) < 100:
            raise parse_error(f"{lead} percentile parameter to be included in [0, 100[", pos)
        return replace(item, tok=T.NUMBER, lit=item.lit + ".0")
    return item


def _where_field(lit: str, pos: Pos) -> Where:
    """`k=v`, `k~re`, `k!=v`, `k!~re`: the operator occurring earliest in the string wins."""
    best: Where | None = None
    best_index = -1
    for op in _WHERE_OPS:
        if op.value not in lit:
            continue
        index = lit.index(op.value)
        if best_index != -1 and index > best_index:
            continue
        best_index = index
        key, *rest = lit.split(op.value)
        best = Where(key=key, value="".join(rest), op=op)
    if best is None:
        raise parse_error(f'Error when parsing field {q(lit)} in "where" function', pos)
    return best


def _last_option(item: Field, pos: Pos) -> Prefix:
    if item.prefix is not None:
        if item.prefix in (P.SHIFT, P.TIMESTAMP, P.DATE):
            return item.prefix
        raise parse_error(f'Function "last" expects its second parameter to shift, timestamp or a date, got {q(item.lit)}', pos)
    by_kind = {T.INTEGER: P.TIMESTAMP, T.DURATIONVAL: P.SHIFT, T.STRING: P.DATE, T.NATIVEVARIABLE: P.UNKNOWN}
    if item.tok in by_kind:
        return by_kind[item.tok]
    raise parse_error(f'Function "last" expects its second parameter to be a DURATIONVAL shift, an INTEGER timestamp or a STRING date, got {q(item.lit)}', pos)


def _data_point(listed: ListLit) -> DataPoint:
    ticks = (T.NUMBER, T.DURATIONVAL, T.INTEGER, T.NEGINTEGER, T.NEGNUMBER)
    if not listed.items:
        raise parse_error('Unvalid param found in setValue expect a tick as Number or duration, found "]"', listed.rsq.pos)
    tick = listed.items[0]
    if tick.tok not in ticks:
        raise parse_error(f"Unvalid param found in setValue expect a tick as Number or duration, found {q(_tokstr(tick))}", tick.pos)
    if len(listed.items) < 2:
        raise parse_error('Expect a , at SetValues statement between tick and value, got "]"', listed.rsq.pos)
    value = listed.items[1]
    if value.tok not in (*ticks, T.STRING):
        raise parse_error(f"Unvalid param found in setValue expect a tick as Number or duration, found {q(_tokstr(value))}", value.pos)
    if len(listed.items) > 2:
        extra = listed.items[2]
        raise parse_error(f"Expect a closing ] in set Values, got {q(_tokstr(extra))}", extra.pos)
    return DataPoint(Field(tick.tok, tick.lit), Field(value.tok, value.lit))


def _bad_set_value(tk: Tk) -> TslError:
    return parse_error(f"Unvalid param found in setValue expect or a lastTick long, or now string, or a set of values, found {q(_tokstr(tk))}", tk.pos)


def _basic_auth(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()

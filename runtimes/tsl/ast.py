"""The TSL syntax tree: frozen dataclasses shared by the parser, the WarpScript and PromQL
compilers and native evaluation.

The shapes follow the reference implementation (ovh/tsl `tsl/statements.go`) closely on purpose:
the compilers must reproduce the reference output byte for byte, and its output depends on details
such as which methods were given named arguments (`Method.named`) and which positional ones
(`Method.unnamed`). Positions are zero-based, as in the reference; messages add one.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

__all__ = [
    "EMPTY",
    "KEYWORDS",
    "Connect",
    "Create",
    "CreateSeries",
    "DataPoint",
    "Field",
    "From",
    "Instruction",
    "Last",
    "Match",
    "Method",
    "Operator",
    "Policy",
    "Pos",
    "Prefix",
    "Select",
    "Tok",
    "Where",
]


class Tok(enum.Enum):
    """Token kinds. `text` is the reference's `Token.String()`: the method or keyword name as
    written in the docs, an upper-case name for some literal kinds, and "" for the others (the
    reference prints "" for INTEGER in its messages, and so must we)."""

    ILLEGAL = enum.auto()
    EOF = enum.auto()
    IDENT = enum.auto()
    BOUNDPARAM = enum.auto()
    NUMBER = enum.auto()
    INTEGER = enum.auto()
    NEGNUMBER = enum.auto()
    NEGINTEGER = enum.auto()
    DURATIONVAL = enum.auto()
    STRING = enum.auto()
    TRUE = enum.auto()
    FALSE = enum.auto()
    ASTERISK = enum.auto()
    EQ = enum.auto()
    GTSLIST = enum.auto()
    MULTIPLESERIESOPERATOR = enum.auto()
    NATIVEVARIABLE = enum.auto()
    LPAREN = enum.auto()
    RPAREN = enum.auto()
    LBRACKET = enum.auto()
    RBRACKET = enum.auto()
    COMMA = enum.auto()
    DOT = enum.auto()
    INTERNALLIST = enum.auto()
    # keywords
    ABS = enum.auto()
    ADDNAMESUFFIX = enum.auto()
    ADDNAMEPREFIX = enum.auto()
    ADDSERIES = enum.auto()
    ANDL = enum.auto()
    ATTRIBUTEPOLICY = enum.auto()
    ATTRIBUTES = enum.auto()
    BOTTOMN = enum.auto()
    BOTTOMNBY = enum.auto()
    CEIL = enum.auto()
    CONNECT = enum.auto()
    COUNT = enum.auto()
    CREATE = enum.auto()
    CUMULATIVE = enum.auto()
    CUMULATIVESUM = enum.auto()
    DAY = enum.auto()
    DELTA = enum.auto()
    DIVSERIES = enum.auto()
    EQUAL = enum.auto()
    FILL = enum.auto()
    FILTERBYLABELS = enum.auto()
    FILTERBYNAME = enum.auto()
    FILTERBYLASTVALUE = enum.auto()
    FILTERWITHOUTLABELS = enum.auto()
    FINITE = enum.auto()
    FIRST = enum.auto()
    FLOOR = enum.auto()
    FROM = enum.auto()
    GREATEROREQUAL = enum.auto()
    GREATERTHAN = enum.auto()
    GROUP = enum.auto()
    GROUPLEFT = enum.auto()
    GROUPRIGHT = enum.auto()
    GROUPBY = enum.auto()
    GROUPWITHOUT = enum.auto()
    HOUR = enum.auto()
    IGNORING = enum.auto()
    JOIN = enum.auto()
    KEEPFIRSTVALUES = enum.auto()
    KEEPLASTVALUES = enum.auto()
    KEEPFIRSTVALUE = enum.auto()
    KEEPLASTVALUE = enum.auto()
    LABELS = enum.auto()
    LAST = enum.auto()
    LESSOREQUAL = enum.auto()
    LESSTHAN = enum.auto()
    LN = enum.auto()
    LOG2 = enum.auto()
    LOG10 = enum.auto()
    LOGN = enum.auto()
    MASK = enum.auto()
    MAX = enum.auto()
    MAXWITH = enum.auto()
    MEAN = enum.auto()
    MEDIAN = enum.auto()
    MIN = enum.auto()
    MINWITH = enum.auto()
    MINUTE = enum.auto()
    MONTH = enum.auto()
    MULSERIES = enum.auto()
    NAMES = enum.auto()
    NEGMASK = enum.auto()
    NOTEQUAL = enum.auto()
    NOW = enum.auto()
    ON = enum.auto()
    ORL = enum.auto()
    PERCENTILE = enum.auto()
    PROM = enum.auto()
    PROMETHEUS = enum.auto()
    QUANTIZE = enum.auto()
    RATE = enum.auto()
    REMOVE = enum.auto()
    REMOVELABELS = enum.auto()
    RENAME = enum.auto()
    RENAMEBY = enum.auto()
    RENAMELABELKEY = enum.auto()
    RENAMELABELVALUE = enum.auto()
    RENAMETEMPLATE = enum.auto()
    RESETS = enum.auto()
    ROUND = enum.auto()
    SAMPLE = enum.auto()
    SAMPLEBY = enum.auto()
    SELECT = enum.auto()
    SELECTORS = enum.auto()
    SERIES = enum.auto()
    SETLABELFROMNAME = enum.auto()
    SETLABELS = enum.auto()
    SETVALUES = enum.auto()
    SHIFT = enum.auto()
    SHRINK = enum.auto()
    SORT = enum.auto()
    SORTBY = enum.auto()
    SORTDESC = enum.auto()
    SORTDESCBY = enum.auto()
    SQRT = enum.auto()
    STDDEV = enum.auto()
    STDVAR = enum.auto()
    STORE = enum.auto()
    SUBSERIES = enum.auto()
    SUM = enum.auto()
    TIMECLIP = enum.auto()
    TIMEMODULO = enum.auto()
    TIMESTAMP = enum.auto()
    TIMESCALE = enum.auto()
    TIMESPLIT = enum.auto()
    TOBOOLEAN = enum.auto()
    TODOUBLE = enum.auto()
    TOLONG = enum.auto()
    TOPN = enum.auto()
    TOPNBY = enum.auto()
    TOSTRING = enum.auto()
    WARP = enum.auto()
    WEEKDAY = enum.auto()
    WHERE = enum.auto()
    WINDOW = enum.auto()
    YEAR = enum.auto()

    @property
    def text(self) -> str:
        return _TEXT.get(self, "")

    @property
    def is_keyword(self) -> bool:
        return self in _KEYWORD_TEXT


_KEYWORD_TEXT: dict[Tok, str] = {
    Tok.ABS: "abs", Tok.ADDNAMESUFFIX: "addSuffix", Tok.ADDNAMEPREFIX: "addPrefix",
    Tok.ADDSERIES: "add", Tok.ANDL: "and", Tok.ATTRIBUTEPOLICY: "attributePolicy",
    Tok.ATTRIBUTES: "attributes", Tok.BOTTOMN: "bottomN", Tok.BOTTOMNBY: "bottomNBy",
    Tok.CEIL: "ceil", Tok.CONNECT: "connect", Tok.COUNT: "count", Tok.CREATE: "create",
    Tok.CUMULATIVE: "cumulative", Tok.CUMULATIVESUM: "cumulativeSum", Tok.DAY: "day",
    Tok.DELTA: "delta", Tok.DIVSERIES: "div", Tok.EQUAL: "equal", Tok.FILL: "fill",
    Tok.FILTERBYLABELS: "filterByLabels", Tok.FILTERBYNAME: "filterByName",
    Tok.FILTERBYLASTVALUE: "filterByLastValue", Tok.FILTERWITHOUTLABELS: "filterWithoutLabels",
    Tok.FINITE: "finite", Tok.FIRST: "first", Tok.FLOOR: "floor", Tok.FROM: "from",
    Tok.GREATEROREQUAL: "greaterOrEqual", Tok.GREATERTHAN: "greaterThan", Tok.GROUP: "group",
    Tok.GROUPLEFT: "groupLeft", Tok.GROUPRIGHT: "groupRight", Tok.GROUPBY: "groupBy",
    Tok.GROUPWITHOUT: "groupWithout", Tok.HOUR: "hour", Tok.IGNORING: "ignoring",
    Tok.JOIN: "join", Tok.KEEPFIRSTVALUES: "keepFirstValues",
    Tok.KEEPLASTVALUES: "keepLastValues", Tok.KEEPFIRSTVALUE: "keepFirstValue",
    Tok.KEEPLASTVALUE: "keepLastValue", Tok.LABELS: "labels", Tok.LAST: "last",
    Tok.LESSOREQUAL: "lessOrEqual", Tok.LESSTHAN: "lessThan", Tok.LN: "ln", Tok.LOG2: "log2",
    Tok.LOG10: "log10", Tok.LOGN: "logN", Tok.MASK: "mask", Tok.MAX: "max",
    Tok.MAXWITH: "maxWith", Tok.MEAN: "mean", Tok.MEDIAN: "median", Tok.MIN: "min",
    Tok.MINWITH: "minWith", Tok.MINUTE: "minute", Tok.MONTH: "month", Tok.MULSERIES: "mul",
    Tok.NAMES: "names", Tok.NEGMASK: "negmask", Tok.NOTEQUAL: "notEqual", Tok.NOW: "now",
    Tok.ON: "on", Tok.ORL: "or", Tok.PERCENTILE: "percentile", Tok.PROM: "prom",
    Tok.PROMETHEUS: "prometheus", Tok.QUANTIZE: "quantize", Tok.RATE: "rate",
    Tok.REMOVE: "remove", Tok.REMOVELABELS: "removeLabels", Tok.RENAME: "rename",
    Tok.RENAMEBY: "renameBy", Tok.RENAMELABELKEY: "renameLabelKey",
    Tok.RENAMELABELVALUE: "renameLabelValue", Tok.RENAMETEMPLATE: "renameTemplate",
    Tok.RESETS: "resets", Tok.ROUND: "round", Tok.SAMPLE: "sample", Tok.SAMPLEBY: "sampleBy",
    Tok.SELECT: "select", Tok.SELECTORS: "selectors", Tok.SERIES: "series",
    Tok.SETLABELFROMNAME: "setLabelFromName", Tok.SETLABELS: "setLabels",
    Tok.SETVALUES: "setValues", Tok.SHIFT: "shift", Tok.SHRINK: "shrink", Tok.SORT: "sort",
    Tok.SORTBY: "sortBy", Tok.SORTDESC: "sortDesc", Tok.SORTDESCBY: "sortDescBy",
    Tok.SQRT: "sqrt", Tok.STDDEV: "stddev", Tok.STDVAR: "stdvar", Tok.STORE: "store",
    Tok.SUBSERIES: "sub", Tok.SUM: "sum", Tok.TIMECLIP: "timeclip",
    Tok.TIMEMODULO: "timemodulo", Tok.TIMESTAMP: "timestamp", Tok.TIMESCALE: "timescale",
    Tok.TIMESPLIT: "timesplit", Tok.TOBOOLEAN: "toboolean", Tok.TODOUBLE: "todouble",
    Tok.TOLONG: "tolong", Tok.TOPN: "topN", Tok.TOPNBY: "topNBy", Tok.TOSTRING: "tostring",
    Tok.WARP: "warp10", Tok.WEEKDAY: "weekday", Tok.WHERE: "where", Tok.WINDOW: "window",
    Tok.YEAR: "year",
}

_TEXT: dict[Tok, str] = {
    Tok.ILLEGAL: "ILLEGAL", Tok.EOF: "EOF", Tok.IDENT: "IDENT", Tok.NUMBER: "NUMBER",
    Tok.DURATIONVAL: "DURATIONVAL", Tok.STRING: "STRING", Tok.TRUE: "TRUE", Tok.FALSE: "FALSE",
    Tok.GTSLIST: "GTSLIST", Tok.ASTERISK: "*", Tok.EQ: "=", Tok.LPAREN: "(", Tok.RPAREN: ")",
    Tok.COMMA: ",", Tok.DOT: ".", **_KEYWORD_TEXT,
}

# Identifier → keyword, case-insensitively (the reference lowercases before its lookup).
KEYWORDS: Mapping[str, Tok] = MappingProxyType(
    {text.lower(): tok for tok, text in _KEYWORD_TEXT.items()}
    | {"true": Tok.TRUE, "false": Tok.FALSE})


class Prefix(enum.Enum):
    """Named-argument prefixes (`span=1m`). `text` is what a user writes before the `=`; two
    prefixes share "aggregator" (sampleBy's and the other methods'), as in the reference."""

    FROM = enum.auto()
    TO = enum.auto()
    SHIFT = enum.auto()
    TIMESTAMP = enum.auto()
    DATE = enum.auto()
    RELATIVE = enum.auto()
    FILL = enum.auto()
    FILL_VALUE = enum.auto()
    COUNT = enum.auto()              # the reference's SampleAuto
    SAMPLE_AGGREGATOR = enum.auto()
    SPAN = enum.auto()
    VALUE = enum.auto()
    PRE = enum.auto()
    POST = enum.auto()
    SAMPLING = enum.auto()
    OCCURRENCES = enum.auto()
    AGGREGATOR = enum.auto()
    N = enum.auto()
    KEEP_DISTINCT = enum.auto()
    NOW = enum.auto()
    UNKNOWN = enum.auto()

    @property
    def text(self) -> str:
        return _PREFIX_TEXT[self]


_PREFIX_TEXT: dict[Prefix, str] = {
    Prefix.FROM: "from", Prefix.TO: "to", Prefix.SHIFT: "shift", Prefix.TIMESTAMP: "timestamp",
    Prefix.DATE: "date", Prefix.RELATIVE: "relative", Prefix.FILL: "fill",
    Prefix.FILL_VALUE: "fillValue", Prefix.COUNT: "count", Prefix.SAMPLE_AGGREGATOR: "aggregator",
    Prefix.SPAN: "span", Prefix.VALUE: "mapperValue", Prefix.PRE: "pre", Prefix.POST: "post",
    Prefix.SAMPLING: "sampler", Prefix.OCCURRENCES: "occurrences", Prefix.AGGREGATOR: "aggregator",
    Prefix.N: "n", Prefix.KEEP_DISTINCT: "keepDistinct", Prefix.NOW: "now",
    Prefix.UNKNOWN: "unknown",
}


class Policy(enum.Enum):
    MERGE = "merge"
    SPLIT = "split"
    REMOVE = "remove"


class Match(enum.Enum):
    EQUAL = "="
    NOT_EQUAL = "!="
    REGEX = "~"
    NOT_REGEX = "!~"


@dataclass(frozen=True)
class Pos:
    line: int = 0
    char: int = 0


@dataclass(frozen=True)
class Field:
    """One argument (the reference's InternalField). `items` holds a list's elements."""

    tok: Tok
    lit: str = ""
    prefix: Prefix | None = None
    items: tuple[Field, ...] = ()

    @property
    def has_prefix(self) -> bool:
        return self.prefix is not None


EMPTY = Field(Tok.ILLEGAL)


@dataclass(frozen=True)
class Where:
    key: str
    value: str = ""
    op: Match = Match.EQUAL
    kind: Tok = Tok.STRING


@dataclass(frozen=True)
class Last:
    last: str = ""
    is_duration: bool = False
    options: Mapping[Prefix, Field] = field(default_factory=dict)
    pos: Pos = Pos()
    kind: Tok | None = None


@dataclass(frozen=True)
class From:
    start: Field = EMPTY
    end: Field = EMPTY
    has_end: bool = False
    pos: Pos = Pos()


@dataclass(frozen=True)
class Method:
    """A `.name(args)` call on series (the reference's FrameworkStatement)."""

    op: Tok
    named: Mapping[Prefix, Field] = field(default_factory=dict)
    unnamed: Mapping[int, Field] = field(default_factory=dict)
    pos: Pos = Pos()
    # The arguments as written (variables substituted): native evaluation reads these, since
    # `named`/`unnamed` keep the reference's quirks (a percentile can overwrite a label there).
    args: tuple[Field, ...] = ()


@dataclass(frozen=True)
class Select:
    metric: str = "select"
    metric_kind: Tok | None = None
    select_all: bool = False
    where: tuple[Where, ...] = ()
    last: Last = Last()
    from_: From = From()
    has_from: bool = False
    has_last: bool = False
    time_set: bool = False
    methods: tuple[Method, ...] = ()
    has_rate: bool = False
    pos: Pos = Pos()
    attribute_policy: Policy = Policy.MERGE
    is_variable: bool = False


@dataclass(frozen=True)
class DataPoint:
    tick: Field
    value: Field


@dataclass(frozen=True)
class CreateSeries:
    metric: Field = EMPTY
    where: tuple[Where, ...] = ()
    values: tuple[DataPoint, ...] = ()
    end: Field = EMPTY


@dataclass(frozen=True)
class Create:
    series: tuple[CreateSeries, ...] = ()
    pos: Pos = Pos()


@dataclass(frozen=True)
class Connect:
    type: str = ""
    api: str = ""
    token: str = ""
    pos: Pos = Pos()


@dataclass(frozen=True)
class Operator:
    """`add(a, b, …)` and its kin, with their `.on/.ignoring/.groupLeft/.groupRight`."""

    op: Tok = Tok.ILLEGAL
    operands: tuple[Instruction, ...] = ()
    labels: tuple[str, ...] = ()
    ignoring: tuple[str, ...] = ()
    is_ignoring: bool = False
    is_on: bool = False
    group: Field = EMPTY
    group_labels: tuple[str, ...] = ()
    pos: Pos = Pos()


@dataclass(frozen=True)
class Instruction:
    """One statement: a select or create chain, or an operator over other instructions."""

    connect: Connect = Connect()
    select: Select = Select()
    create: Create = Create()
    operator: Operator = Operator()
    is_meta: bool = False
    has_select: bool = False
    is_operator: bool = False

"""TSL source → a light syntax tree, with lark's LALR parser over grammar/tsl.lark.

The tree keeps every token as the reference scanner would see it (`Tk`: kind, literal, position),
because the reference's messages quote those. Syntax errors come back as `TslError` with the line,
the column, a caret under the place and, where `match_examples` recognises the mistake, a label
saying what is wrong.
"""

from __future__ import annotations

import importlib.resources
from dataclasses import dataclass
from functools import cache

from lark import Lark, Token, Transformer, UnexpectedCharacters, UnexpectedEOF, UnexpectedInput
from lark.exceptions import UnexpectedToken, VisitError

from tsq.errors import TslError

from .ast import KEYWORDS, Pos, Tok
from .messages import with_caret

__all__ = ["Arg", "Assign", "Call", "Chain", "ListLit", "Node", "Tk", "first_token", "parse_script"]

# Package data, found as an installed wheel or a source tree finds it (not through parent folders).
GRAMMAR = importlib.resources.files("tsq.grammar").joinpath("tsl.lark")
# Calls and lists nested deeper than this are refused before parsing: the tree is walked
# recursively (here, by the binder, by every compiler), and a script nested a few hundred deep
# would exhaust Python's stack. Real queries nest a handful of levels.
MAX_NESTING = 64
_OPENING = frozenset({"LPAR", "LSQB"})
_CLOSING = frozenset({"RPAR", "RSQB"})


@dataclass(frozen=True)
class Tk:
    tok: Tok
    lit: str
    pos: Pos


@dataclass(frozen=True)
class ListLit:
    lsq: Tk
    items: tuple[Tk, ...]
    rsq: Tk


@dataclass(frozen=True)
class Arg:
    name: Tk | None        # `span` in span=1m
    eq: Tk | None
    value: Node
    end: Tk                # the comma or closing parenthesis after the argument


@dataclass(frozen=True)
class Call:
    name: Tk
    lpar: Tk
    args: tuple[Arg, ...]
    rpar: Tk


@dataclass(frozen=True)
class Chain:
    head: Call | Tk | ListLit
    calls: tuple[Call, ...]
    dots: tuple[Tk, ...]

    @property
    def steps(self) -> tuple[Call | Tk | ListLit, ...]:
        return (self.head, *self.calls)


@dataclass(frozen=True)
class Assign:
    name: Tk
    eq: Tk
    value: Node


Node = Tk | ListLit | Chain


def first_token(node: Node | Call) -> Tk:
    if isinstance(node, Tk):
        return node
    if isinstance(node, Call):
        return node.name
    if isinstance(node, ListLit):
        return node.lsq
    return first_token(node.head)


_PUNCTUATION = {"LPAR": Tok.LPAREN, "RPAR": Tok.RPAREN, "LSQB": Tok.LBRACKET, "RSQB": Tok.RBRACKET,
                "COMMA": Tok.COMMA, "DOT": Tok.DOT, "EQUAL": Tok.EQ, "STAR": Tok.ASTERISK}
_STRING_ESCAPES = {"n": "\n", "\\": "\\", '"': '"', "'": "'"}


def _tk(token: Token) -> Tk:
    pos = Pos(token.line - 1 if token.line else 0, token.column - 1 if token.column else 0)
    kind, text = token.type, str(token)
    if kind == "NAME":
        keyword = KEYWORDS.get(text.lower())
        return Tk(keyword, "", pos) if keyword else Tk(Tok.IDENT, text, pos)
    if kind == "STRING":
        if text.startswith("'"):   # the reference places a single-quoted string one char early
            pos = Pos(pos.line, max(pos.char - 1, 0))
        return Tk(Tok.STRING, _unescape(text, pos), pos)
    if kind in ("INTEGER", "NUMBER", "DURATION"):
        negative = text.startswith("-")
        digits = text.lstrip("+")
        tok = {"INTEGER": Tok.NEGINTEGER if negative else Tok.INTEGER,
               "NUMBER": Tok.NEGNUMBER if negative else Tok.NUMBER,
               "DURATION": Tok.DURATIONVAL}[kind]
        return Tk(tok, digits, pos)
    return Tk(_PUNCTUATION[kind], "", pos)


def _unescape(quoted: str, pos: Pos) -> str:
    body, out, i = quoted[1:-1], [], 0
    while i < len(body):
        ch = body[i]
        if ch == "\\":
            escaped = body[i + 1]
            if escaped not in _STRING_ESCAPES:
                raise TslError(f"bad escape \\{escaped} in string at line {pos.line + 1}, char "
                               f"{pos.char + i + 2}: only \\n \\\\ \\\" and \\' are escapes in TSL",
                               line=pos.line + 1, char=pos.char + i + 2)
            out.append(_STRING_ESCAPES[escaped])
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


class _ToSyntax(Transformer[Token, list["Assign | Chain"]]):
    def __default_token__(self, token: Token) -> Tk:
        return _tk(token)

    def start(self, children: list[Assign | Chain]) -> list[Assign | Chain]:
        return children

    def assignment(self, children: list[object]) -> Assign:
        name, eq, value = children
        assert isinstance(name, Tk) and isinstance(eq, Tk)
        return Assign(name, eq, _node(value))

    def literal(self, children: list[Tk]) -> Tk:
        return children[0]

    def chain(self, children: list[object]) -> Chain:
        head = children[0]
        assert isinstance(head, Call | Tk | ListLit)
        calls = tuple(c for c in children[1:] if isinstance(c, Call))
        dots = tuple(c for c in children[1:] if isinstance(c, Tk))
        return Chain(head, calls, dots)

    def list_value(self, children: list[Tk]) -> ListLit:
        items = tuple(c for c in children[1:-1] if c.tok is not Tok.COMMA)
        return ListLit(children[0], items, children[-1])

    def call(self, children: list[object]) -> Call:
        name, lpar, *middle, rpar = children
        assert isinstance(name, Tk) and isinstance(lpar, Tk) and isinstance(rpar, Tk)
        parts = middle[0] if middle else []
        assert isinstance(parts, list)
        args: list[Arg] = []
        for i, part in enumerate(parts):
            if isinstance(part, Arg):
                following = parts[i + 1] if i + 1 < len(parts) else rpar
                args.append(Arg(part.name, part.eq, part.value, following))
        return Call(name, lpar, tuple(args), rpar)

    def args(self, children: list[object]) -> list[object]:
        return children

    def named(self, children: list[object]) -> Arg:
        name, eq, value = children
        assert isinstance(name, Tk) and isinstance(eq, Tk)
        return Arg(name, eq, _node(value), eq)

    def positional(self, children: list[object]) -> Arg:
        value = _node(children[0])
        return Arg(None, None, value, first_token(value))


def _node(value: object) -> Node:
    """Arguments and assigned values: a lone name or list stands for itself, not a chain."""
    if isinstance(value, Chain) and not value.calls and not isinstance(value.head, Call):
        return value.head
    assert isinstance(value, Tk | ListLit | Chain)
    return value


@cache
def _lark() -> Lark:
    return Lark(GRAMMAR.read_text(encoding="utf-8"), parser="lalr", maybe_placeholders=False)


# Mistakes lark's match_examples can name, each with a few scripts that make it.
_EXAMPLES: dict[str, list[str]] = {
    "a method needs parentheses, even with no arguments: .names()": [
        'select("a").names', 'select("a").names.last(1h)', "select('a').abs\n"],
    "missing closing parenthesis": [
        'select("a"', 'select("a").last(1h', 'select("a").where("a=b", "c=d"',
        'add(select("a"), select("b")'],
    "missing comma between arguments": [
        'select("a").sampleBy(1m mean)', 'select("a").where("a=b" "c=d")',
        'add(select("a") select("b"))'],
    "a statement must start with select, create, connect, an operator or a variable": [
        '.select("a")', '1m', '"cpu"', "(select('a'))"],
    "a string is not closed on its line": ['select("a)', "select('a)"],
}


def parse_script(source: str) -> list[Assign | Chain]:
    text = source.replace("\r\n", "\n").replace("\r", "\n")
    _check_nesting(text)
    try:
        tree = _lark().parse(text)
    except UnexpectedInput as error:
        raise _syntax_error(error, text) from None
    try:
        result = _ToSyntax().transform(tree)
    except VisitError as error:
        if isinstance(error.orig_exc, TslError):
            raise with_caret(error.orig_exc, text) from None
        raise
    assert isinstance(result, list)
    return result


def _check_nesting(text: str) -> None:
    """TslError at the first parenthesis or bracket that opens level MAX_NESTING + 1. The
    lexer reads the tokens without recursion (strings are skipped as the parser skips them);
    text it cannot read is left for the parser to report."""
    depth = 0
    try:
        for token in _lark().lex(text, dont_ignore=False):
            if token.type in _OPENING:
                depth += 1
                if depth > MAX_NESTING:
                    raise _too_deep(token, text)
            elif token.type in _CLOSING:
                depth = max(depth - 1, 0)
    except UnexpectedInput:
        return


def _too_deep(token: Token, text: str) -> TslError:
    line, char = token.line or 1, token.column or 1
    message = (f"Cannot parsed query: calls and lists nested deeper than {MAX_NESTING} levels "
               f"(the limit) at line {line}, char {char}; name the inner parts (x = …) and use "
               f"the names instead")
    return with_caret(TslError(message, line=line, char=char), text)


def _syntax_error(error: UnexpectedInput, text: str) -> TslError:
    label = error.match_examples(_lark().parse, _EXAMPLES, use_accepts=True)
    line, column = max(error.line, 1), max(error.column, 1)
    if isinstance(error, UnexpectedEOF):
        lines = text.split("\n")
        line, column = len(lines), len(lines[-1]) + 1
        found = "the end of the query"
    elif isinstance(error, UnexpectedCharacters):
        found = repr(error.char)
    elif isinstance(error, UnexpectedToken):
        found = repr(str(error.token)) if error.token.type != "$END" else "the end of the query"
    else:  # pragma: no cover - lark has no other kinds
        found = "this"
    what = label or "syntax error"
    message = f"Cannot parsed query: {what}; found {found} at line {line}, char {column}"
    return with_caret(TslError(message, line=line, char=column), text)

"""WarpScript text → code the VM runs, with lark's LALR parser over grammar/warpscript.lark.

Code is a tuple of `Op`s, each one word of the text with its line and column. Literals become
pushes, `$x` a load, `!$x` an early binding (replaced by x's value when the macro holding it is
pushed), `@x` a load and EVAL, `<% … %>` a `Macro` push, and every other word the function the
VM's table names; a word the table does not know is a syntax error here, before anything runs,
as Warp 10 refuses it when it parses.
"""

from __future__ import annotations

import importlib.resources
import math
import re
from collections.abc import Callable, Mapping
from functools import cache
from typing import Any, NamedTuple
from urllib.parse import unquote

from lark import Lark, Token, Tree, UnexpectedCharacters, UnexpectedEOF, UnexpectedInput
from lark.exceptions import UnexpectedToken

from tsq.errors import WarpScriptError

from .values import Macro

__all__ = ["CONSTANTS", "EARLY", "LOAD", "MACRO", "PUSH", "RUN", "WORD", "Op", "read"]

GRAMMAR = importlib.resources.files("tsq.grammar").joinpath("warpscript.lark")

# Op kinds
PUSH, WORD, LOAD, EARLY, RUN, MACRO = range(6)

CONSTANTS: Mapping[str, Any] = {
    "true": True, "false": False, "T": True, "F": False, "TRUE": True,
    "FALSE": False, "NULL": None, "NaN": math.nan,
    "Infinity": math.inf, "-Infinity": -math.inf, "+Infinity": math.inf,
}
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", "'": "'", '"': '"', "0": "\0",
            "b": "\b", "f": "\f"}
_NAME = re.compile(r"[^\s$!@]+")
# Macros nested deeper than this are refused before parsing: the reader and the VM walk them
# recursively, and a script nested a few hundred deep would exhaust Python's stack.
MAX_NESTING = 64


class Op(NamedTuple):
    kind: int
    payload: Any
    line: int
    col: int
    text: str


Word = Callable[[Any], None]


@cache
def _lark() -> Lark:
    return Lark(GRAMMAR.read_text(encoding="utf-8"), parser="lalr", lexer="basic",
                maybe_placeholders=False)


def read(text: str, words: Mapping[str, Word], *, line: int = 0, col: int = 0) -> Macro:
    """The code of a whole script, as one macro (WarpScriptError with line:col if it is bad)."""
    source = text.replace("\r\n", "\n").replace("\r", "\n")
    _check_nesting(source)
    try:
        tree = _lark().parse(source)
    except UnexpectedInput as error:
        raise _syntax_error(error, source) from None
    ops, early = _ops(tree.children, words)
    return Macro(ops, line or 1, col or 1, early)


def _ops(children: list[Any], words: Mapping[str, Word]) -> tuple[tuple[Op, ...], bool]:
    ops: list[Op] = []
    early = False
    for child in children:
        if isinstance(child, Tree):  # a macro: its first and last children are <% and %>
            opening = child.children[0]
            assert isinstance(opening, Token)
            inner, inner_early = _ops(child.children[1:-1], words)
            macro = Macro(inner, opening.line or 0, opening.column or 0, inner_early)
            ops.append(Op(MACRO, macro, macro.line, macro.col, "<%"))
            early = early or inner_early
            continue
        op = _op(child, words)
        early = early or op.kind == EARLY
        ops.append(op)
    return tuple(ops), early


def _op(token: Token, words: Mapping[str, Word]) -> Op:
    line, col, text = token.line or 0, token.column or 0, str(token)
    kind = token.type
    if kind == "STRING":
        return Op(PUSH, _string(text[1:-1], line, col), line, col, text)
    if kind == "MULTILINE":
        body = text[2:].split("\n", 1)[1]
        return Op(PUSH, body[:body.rfind("\n")], line, col, text[:2])
    if kind == "NUMBER":
        return Op(PUSH, _number(text), line, col, text)
    if text in CONSTANTS:
        return Op(PUSH, CONSTANTS[text], line, col, text)
    for prefix, op_kind in (("!$", EARLY), ("$", LOAD), ("@", RUN)):
        if text.startswith(prefix) and len(text) > len(prefix):
            name = text[len(prefix):]
            if not _NAME.fullmatch(name):
                break
            return Op(op_kind, name, line, col, text)
    function = words.get(text)
    if function is None and text[:1] in "'\"":
        raise WarpScriptError(f"a string opened with {text[0]} is not closed on its line",
                              line=line, col=col, kind="syntax", word=text[0])
    if function is None and text.startswith("/*"):
        raise WarpScriptError("a comment opened with /* is not closed with */", line=line,
                              col=col, kind="syntax", word="/*")
    if function is None:
        raise WarpScriptError(f"unknown function {text!r}{_hint(text, words)}", line=line,
                              col=col, kind="syntax", word=text)
    return Op(WORD, function, line, col, text)


def _hint(text: str, words: Mapping[str, Word]) -> str:
    import difflib
    close = difflib.get_close_matches(text, list(words), n=1)
    if close:
        return f"; did you mean {close[0]}?"
    upper = text.upper()
    return f"; did you mean {upper}?" if upper in words else ""


def _number(text: str) -> int | float:
    sign = -1 if text.startswith("-") else 1
    digits = text.lstrip("+-")
    if digits[:2].lower() == "0x":
        return sign * int(digits[2:], 16)
    if any(c in digits for c in ".eE"):
        return float(text)
    return int(text)


def _string(body: str, line: int, col: int) -> str:
    if "\\" in body:
        out, i = [], 0
        while i < len(body):
            char = body[i]
            if char != "\\":
                out.append(char)
                i += 1
                continue
            escaped = body[i + 1]
            if escaped == "u" and re.fullmatch(r"[0-9a-fA-F]{4}", body[i + 2:i + 6]):
                out.append(chr(int(body[i + 2:i + 6], 16)))
                i += 6
            elif escaped in _ESCAPES:
                out.append(_ESCAPES[escaped])
                i += 2
            else:
                raise WarpScriptError(
                    f"bad escape \\{escaped} in a string; the escapes are \\n \\t \\r \\\\ "
                    f"\\' \\\" \\uXXXX, and %XX for any byte", line=line, col=col + i + 1,
                    kind="syntax", word="\\" + escaped)
        body = "".join(out)
    return unquote(body, errors="strict") if "%" in body else body


def _syntax_error(error: UnexpectedInput, text: str) -> WarpScriptError:
    line, col = max(error.line, 1), max(error.column, 1)
    if isinstance(error, UnexpectedEOF) or (
            isinstance(error, UnexpectedToken) and error.token.type == "$END"):
        opened = _unclosed_macro(text)
        lines = text.split("\n")
        line, col = opened or (len(lines), len(lines[-1]) + 1)
        message = ("a macro opened with <% is not closed with %>" if opened
                   else "the script ends too early")
        return WarpScriptError(message, line=line, col=col, kind="syntax", word="<%")
    if isinstance(error, UnexpectedToken) and error.token.type == "MACRO_CLOSE":
        return WarpScriptError("%> closes no macro: there is no <% open before it", line=line,
                               col=col, kind="syntax", word="%>")
    if isinstance(error, UnexpectedCharacters):
        rest = text.split("\n")[line - 1][col - 1:]
        if rest[:1] in "'\"":
            return WarpScriptError(f"a string opened with {rest[0]} is not closed on its line",
                                   line=line, col=col, kind="syntax", word=rest[0])
        if rest.startswith("<'"):
            return WarpScriptError("a multi-line string <' needs '> alone at the start of a "
                                   "later line", line=line, col=col, kind="syntax", word="<'")
        if rest.startswith("/*"):
            return WarpScriptError("a comment opened with /* is not closed with */",
                                   line=line, col=col, kind="syntax", word="/*")
    return WarpScriptError("syntax error", line=line, col=col, kind="syntax")


def _check_nesting(text: str) -> None:
    """WarpScriptError at the first <% that opens level MAX_NESTING + 1, found by the lexer,
    which reads without recursion; text it cannot read is left for the parser to report."""
    depth = 0
    try:
        for token in _lark().lex(text):
            if token.type == "MACRO_OPEN":
                depth += 1
                if depth > MAX_NESTING:
                    raise WarpScriptError(
                        f"macros nested deeper than {MAX_NESTING} levels (the limit); store "
                        f"inner macros in variables and call them with @name instead",
                        line=token.line or 1, col=token.column or 1, kind="limit", word="<%")
            elif token.type == "MACRO_CLOSE":
                depth = max(depth - 1, 0)
    except UnexpectedInput:
        return


def _unclosed_macro(text: str) -> tuple[int, int] | None:
    """Where the innermost macro left open starts, by the same tokens the grammar reads."""
    opened: list[tuple[int, int]] = []
    try:
        for token in _lark().lex(text):
            if token.type == "MACRO_OPEN":
                opened.append((token.line or 1, token.column or 1))
            elif token.type == "MACRO_CLOSE" and opened:
                opened.pop()
    except UnexpectedInput:
        pass
    return opened[-1] if opened else None

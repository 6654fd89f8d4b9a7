"""The two error shapes of the reference implementation, kept verbatim so that messages match it:
parse errors ("Cannot parsed query: …") and errors of a compiler for one back-end ("Cannot execute
query on warp 10 back-end: …"). Positions arrive zero-based and are printed one-based."""

from __future__ import annotations

from tsq.errors import TslError

from .ast import Pos

__all__ = ["backend_error", "parse_error", "with_caret"]


def parse_error(message: str, pos: Pos) -> TslError:
    line, char = pos.line + 1, pos.char + 1
    return TslError(f"Cannot parsed query: {message} at line {line}, char {char}",
                    line=line, char=char)


def backend_error(backend: str, message: str, pos: Pos) -> TslError:
    line, char = pos.line + 1, pos.char + 1
    message = f"Cannot execute query on {backend} back-end: {message} at line {line}, char {char}"
    return TslError(message, line=line, char=char)


def with_caret(error: TslError, source: str) -> TslError:
    """The same error with the offending source line and a caret under the place it names."""
    if error.line is None or error.char is None or error.caret:
        return error
    lines = source.split("\n")
    if not 1 <= error.line <= len(lines):
        return error
    text = lines[error.line - 1]
    caret = f"{text}\n{' ' * (error.char - 1)}^"
    return TslError(error.message, line=error.line, char=error.char, caret=caret)

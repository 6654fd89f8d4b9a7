"""Regular expressions written by users (selectors, TSL's and WarpScript's regex words), matched
in time linear in the text.

Python's `re` backtracks: `(a+)+$` against label values of 27 characters took ten seconds and
held the GIL, so one selector could stall the whole service. RE2 guarantees linear time (and
is what Prometheus matches selectors with). It has no backreferences, lookaround or possessive
quantifiers; a pattern that needs them is refused with that reason. A pattern that is not a
regular expression at all is refused with Python's message, as before, so a typo reads the same.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any, Protocol

import re2

__all__ = ["Pattern", "RegexError", "compile_user"]

# What RE2 says about a pattern Python accepts → what tsq tells the user.
_UNSUPPORTED = (
    (re.compile(r"invalid escape sequence: \\[1-9]"), "RE2 does not support backreferences"),
    (re.compile(r"invalid perl operator: \(\?[=!]"), "RE2 does not support lookahead"),
    (re.compile(r"invalid perl operator: \(\?<[=!]"), "RE2 does not support lookbehind"),
    (re.compile(r"bad repetition operator: [*+?}]\+"), "RE2 does not support possessive "
                                                         "quantifiers"),
    (re.compile(r"invalid repetition size"), "RE2 repeats at most 1000 times"),
    (re.compile(r"pattern too large"), "the pattern is too large for RE2"),
)


class Pattern(Protocol):
    """The part of a compiled RE2 pattern tsq uses (the same names as `re.Pattern`)."""

    def fullmatch(self, text: str) -> Any: ...
    def search(self, text: str) -> Any: ...
    def sub(self, repl: str, text: str, count: int = 0) -> str: ...


class RegexError(ValueError):
    """A pattern tsq cannot match; the message says why, the caller says where."""


@lru_cache(maxsize=512)
def compile_user(pattern: str) -> Pattern:
    try:
        re.compile(pattern)  # only to word a syntax error as users have always seen it
    except re.error as exc:
        raise RegexError(str(exc)) from None
    options = re2.Options()
    options.log_errors = False  # RE2 would print every refused pattern on stderr
    try:
        compiled: Pattern = re2.compile(pattern, options)
    except re2.error as exc:
        raise RegexError(_reason(pattern, exc)) from None
    return compiled


def _reason(pattern: str, error: Exception) -> str:
    said = error.args[0] if error.args else ""
    text = said.decode(errors="replace") if isinstance(said, bytes) else str(said)
    if "(?P=" in pattern and "(?P" in text:  # RE2 says no more than "invalid perl operator"
        return f"RE2 does not support backreferences ({text})"
    for found, reason in _UNSUPPORTED:
        if found.search(text):
            return f"{reason} ({text})"
    return f"RE2 cannot match it ({text})"

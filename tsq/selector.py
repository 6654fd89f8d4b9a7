"""Series selectors, as PromQL writes them: `cpu{dc="gra", host=~"web0.*"}`, with matchers
`=`, `!=`, `=~` and `!~` (regular expressions match the whole value, as in Prometheus); the name
may be left out (`{dc="gra"}`) or matched like a label through `__name__`. Regular expressions
are RE2's (`tsq.regex`), as in Prometheus: matched in linear time, without backreferences or
lookaround.

They are shared by the loop file, the kernels, the host calls and every connector.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from tsq.errors import BadRequest
from tsq.regex import Pattern, RegexError, compile_user

__all__ = ["NAME_LABEL", "Matcher", "Selector", "parse_selector"]

NAME_LABEL = "__name__"
OPERATORS = ("=~", "!~", "!=", "=")
_NAME = re.compile(r"[A-Za-z_:][A-Za-z0-9_:.\-]*")
_LABEL = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")


@dataclass(frozen=True)
class Matcher:
    label: str
    op: str  # one of OPERATORS
    value: str
    pattern: Pattern | None = field(default=None, compare=False, repr=False)

    @classmethod
    def of(cls, label: str, op: str, value: str) -> Matcher:
        if op not in OPERATORS:
            raise BadRequest(f"unknown label matcher {op!r}; expected one of "
                             f"{', '.join(OPERATORS)}")
        pattern = None
        if op in ("=~", "!~"):
            try:
                pattern = compile_user(value)
            except RegexError as exc:
                raise BadRequest(f"bad regular expression {value!r} for label {label!r}: "
                                 f"{exc}") from None
        return cls(label, op, value, pattern)

    def matches(self, value: str | None) -> bool:
        text = value or ""  # a missing label matches "" (PromQL)
        if self.pattern is not None:
            found = self.pattern.fullmatch(text) is not None
            return found if self.op == "=~" else not found
        return (text == self.value) if self.op == "=" else (text != self.value)


@dataclass(frozen=True)
class Selector:
    name: str | None = None  # exact name; None: any (or matched through __name__)
    matchers: tuple[Matcher, ...] = ()

    def matches(self, name: str, labels: dict[str, str]) -> bool:
        if self.name is not None and name != self.name:
            return False
        return all(m.matches(name if m.label == NAME_LABEL else labels.get(m.label))
                   for m in self.matchers)

    def __str__(self) -> str:
        inner = ", ".join(f'{m.label}{m.op}"{_quote(m.value)}"' for m in self.matchers)
        return f"{self.name or ''}{{{inner}}}" if inner or not self.name else self.name


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def parse_selector(text: str) -> Selector:
    """`name{label op "value", …}`; BadRequest with the column of the first problem."""
    parser = _SelectorParser(text)
    return parser.selector()


class _SelectorParser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.at = 0

    def fail(self, expected: str) -> BadRequest:
        shown = self.text[self.at:self.at + 12] or "the end"
        return BadRequest(f"bad selector {self.text!r} at column {self.at + 1}: expected "
                          f"{expected}, found {shown!r} (a selector looks like "
                          f'cpu{{dc="gra", host=~"web.*"}})')

    def skip_space(self) -> None:
        while self.at < len(self.text) and self.text[self.at].isspace():
            self.at += 1

    def take(self, pattern: re.Pattern[str]) -> str | None:
        found = pattern.match(self.text, self.at)
        if found is None:
            return None
        self.at = found.end()
        return found.group()

    def selector(self) -> Selector:
        self.skip_space()
        name = self.take(_NAME)
        self.skip_space()
        matchers: list[Matcher] = []
        if self.at < len(self.text) and self.text[self.at] == "{":
            self.at += 1
            matchers = self.matchers()
        self.skip_space()
        if self.at != len(self.text):
            raise self.fail("`{` or the end")
        if name is None and not matchers:
            raise self.fail("a series name or label matchers")
        return Selector(name, tuple(matchers))

    def matchers(self) -> list[Matcher]:
        found: list[Matcher] = []
        while True:
            self.skip_space()
            if self.text.startswith("}", self.at):
                self.at += 1
                return found
            label = self.take(_LABEL)
            if label is None:
                raise self.fail("a label name or `}`")
            self.skip_space()
            op = next((o for o in OPERATORS if self.text.startswith(o, self.at)), None)
            if op is None:
                raise self.fail("one of = != =~ !~")
            self.at += len(op)
            self.skip_space()
            found.append(Matcher.of(label, op, self.string()))
            self.skip_space()
            if self.text.startswith(",", self.at):
                self.at += 1
            elif not self.text.startswith("}", self.at):
                raise self.fail("`,` or `}`")

    def string(self) -> str:
        if self.at >= len(self.text) or self.text[self.at] not in "\"'":
            raise self.fail("a quoted value")
        quote, self.at = self.text[self.at], self.at + 1
        chars: list[str] = []
        while self.at < len(self.text):
            char = self.text[self.at]
            if char == "\\" and self.at + 1 < len(self.text):
                chars.append(self.text[self.at + 1])
                self.at += 2
                continue
            self.at += 1
            if char == quote:
                return "".join(chars)
            chars.append(char)
        raise self.fail(f"a closing {quote}")

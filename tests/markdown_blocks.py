"""The code blocks of a Markdown page, with the test directives written above them.

A directive is an HTML comment on the line right above a fence, so GitHub shows nothing of it:

    <!-- test: skip: make test runs this very test -->
    <!-- test: file loops.yml -->
    <!-- test: expect "deployed hello" -->

| directive | meaning |
|---|---|
| `skip: REASON` | the block is not run; the reason is required |
| `file NAME` | the block is written to NAME in the working directory (for the commands below it) |
| `same-as PATH` | the block is the repository file PATH, word for word (an example shown in full) |
| `expect "TEXT"` | the block's output (stdout and stderr of all its commands) contains TEXT |
| `fails` | the block's last command must exit non-zero, with no traceback (a documented mistake) |
| `let NAME = run of LOOP` | NAME in the block's commands is the id of LOOP's newest run |
| `let NAME = job` | NAME is the `id` of the newest backfill job the commands printed |

A `sh` block runs command by command (a command may span lines), a `python` block runs as a
script; any other language needs `file`, `same-as` or `skip`, and a block without a language is
refused (say `text` for a figure), so that no block escapes the contract by accident.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Block", "Directive", "blocks"]

FENCE = re.compile(r"^(?P<indent> *)```(?P<info>[^`]*)$")
DIRECTIVE = re.compile(r"^\s*<!--\s*test:\s*(?P<body>.*?)\s*-->\s*$")
KNOWN = ("skip", "file", "same-as", "expect", "fails", "let")


@dataclass(frozen=True)
class Directive:
    verb: str
    argument: str


@dataclass(frozen=True)
class Block:
    page: Path
    line: int  # of the opening fence, 1-based
    language: str
    text: str
    directives: tuple[Directive, ...] = field(default=())

    @property
    def where(self) -> str:
        return f"{self.page.name}:{self.line}"

    def argument(self, verb: str) -> str | None:
        return next((d.argument for d in self.directives if d.verb == verb), None)

    def arguments(self, verb: str) -> list[str]:
        return [d.argument for d in self.directives if d.verb == verb]


def blocks(page: Path) -> list[Block]:
    """Every fenced block of `page`, in order; a malformed directive is a ValueError naming its
    line, as a typo there would silently drop a check."""
    lines = page.read_text(encoding="utf-8").splitlines()
    found: list[Block] = []
    index = 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if opening is None:
            index += 1
            continue
        end = next((j for j in range(index + 1, len(lines))
                    if lines[j].strip() == "```"), None)
        if end is None:
            raise ValueError(f"{page.name}:{index + 1}: a code block that is never closed")
        indent = len(opening["indent"])
        text = "\n".join(line[indent:] for line in lines[index + 1:end]) + "\n"
        found.append(Block(page, index + 1, opening["info"].strip().split(" ")[0], text,
                           tuple(_directives_above(page, lines, index))))
        index = end + 1
    return found


def _directives_above(page: Path, lines: list[str], fence: int) -> list[Directive]:
    directives: list[Directive] = []
    above = fence - 1
    while above >= 0 and (matched := DIRECTIVE.match(lines[above])):
        directives.insert(0, _directive(f"{page.name}:{above + 1}", matched["body"]))
        above -= 1
    return directives


def _directive(where: str, body: str) -> Directive:
    verb, _, rest = body.partition(" ")
    verb = verb.rstrip(":")
    if verb not in KNOWN:
        raise ValueError(f"{where}: unknown test directive {verb!r}; known: {', '.join(KNOWN)}")
    rest = rest.strip()
    if verb == "expect":
        rest = " ".join(shlex.split(rest))
    if verb in ("skip", "file", "same-as", "expect", "let") and not rest:
        raise ValueError(f"{where}: the test directive {verb!r} needs an argument")
    return Directive(verb, rest)

"""A loop's secret values, taken out of everything its runs leave behind.

A handler holds its secrets in the clear (`env.API_KEY`), and whatever it logs, returns or
throws is stored with its run and sent to its webhook. So before a run's log lines, result,
error or artifacts are stored, every secret value of its loop (tsq.masking's table: secret
environment variables, connector tokens and passwords, the credentials in its URLs) of at
least MIN_SECRET characters is replaced by MASK, as it is and percent-encoded. Shorter values
would match ordinary text everywhere, and four characters of a secret reveal little.

This happens in the service, where runs end (tsq.dispatcher settles them, tsq.runlog flushes a
long run's lines, tsq.pipeline keeps its files), never in the worker that ran the handler.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any
from urllib.parse import quote, unquote

from tsq.masking import MASK, secret_values
from tsq.model import LoopSpec
from tsq.outcomes import RunError, RunResult
from tsq.runlog import LogLine

__all__ = ["MIN_SECRET", "Redactor", "redacted_result", "redactor_for", "scrubber_for"]

MIN_SECRET = 4
# Redactors of this many versions are kept (a version never changes). Every run asks twice, and
# making one walks the whole spec (50-100 µs): a limit below the number of live loops would make
# every scheduled run pay it. One without secrets is a few hundred bytes.
KEPT = 1 << 16


class Redactor:
    def __init__(self, secrets: Iterable[str]) -> None:
        forms = {form for secret in secrets if len(secret) >= MIN_SECRET
                 for form in (secret, quote(secret, safe=""), unquote(secret))
                 if len(form) >= MIN_SECRET}
        # longest first, so a secret that contains another is masked whole
        ordered = sorted(forms, key=lambda form: (-len(form), form))
        self.pattern = re.compile("|".join(map(re.escape, ordered))) if ordered else None
        self.binary = re.compile(b"|".join(re.escape(form.encode()) for form in ordered)
                                 ) if ordered else None

    def text(self, text: str) -> str:
        return text if self.pattern is None else self.pattern.sub(MASK, text)

    def value(self, value: Any) -> Any:
        """A JSON value with its strings (keys too) redacted."""
        if self.pattern is None:
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self.value(key): self.value(item) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return [self.value(item) for item in value]
        return value

    def data(self, data: bytes) -> bytes:
        return data if self.binary is None else self.binary.sub(MASK.encode(), data)

    def lines(self, lines: list[LogLine]) -> list[LogLine]:
        if self.pattern is None:
            return lines
        return [replace(line, message=self.text(line.message)) for line in lines]

    def result(self, result: RunResult) -> RunResult:
        if self.pattern is None:
            return result
        error = result.error and RunError(self.text(result.error.type),
                                          self.text(result.error.message),
                                          self.text(result.error.stack))
        return replace(result, result=self.value(result.result), error=error)


_kept: dict[str, Redactor] = {}
_lock = threading.Lock()


def redactor_for(version_id: str, spec: LoopSpec) -> Redactor:
    """The redactor of a version's secrets (made once per version)."""
    found = _kept.get(version_id)
    if found is None:
        found = Redactor(secret_values(spec.to_json(reveal_secrets=True)))
        with _lock:
            if len(_kept) >= KEPT:
                _kept.clear()
            _kept[version_id] = found
    return found


def redacted_result(version_id: str, spec: LoopSpec, result: RunResult) -> RunResult:
    """`result` with the version's secrets masked. A result without any text (a number, a
    list of them, nothing) and without an error has nothing to mask, and needs no look at the
    spec: making a version's redactor costs 50-100 µs, paid by each of ten thousand loops at
    their first run as a service starts."""
    if result.error is None and not _holds_text(result.result):
        return result
    return redactor_for(version_id, spec).result(result)


def scrubber_for(version_id: str, spec: LoopSpec) -> Callable[[list[LogLine]], list[LogLine]]:
    """What masks the version's secrets in a run's log lines, making its redactor only when
    there are lines (most runs log nothing)."""
    return lambda lines: redactor_for(version_id, spec).lines(lines) if lines else lines


def _holds_text(value: Any) -> bool:
    if isinstance(value, list | tuple):
        return any(_holds_text(item) for item in value)
    return isinstance(value, str | dict) and bool(value)  # a JSON object's keys are text

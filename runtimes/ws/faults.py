"""How a word fails: the VM's faults, its limits, and the script's own failures, kept apart."""

from __future__ import annotations

from typing import Any

from .reader import Op
from .values import type_name

__all__ = ["Fail", "Fault", "LimitHit", "describe", "is_number"]


class Fault(Exception):
    """The VM refuses a word. `op` is filled in with the word at fault as it propagates."""

    kind = "fault"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        self.op: Op | None = None


class LimitHit(Fault):
    """A limit stopped the script: MAXOPS, MAXDEPTH, MAXLOOP, a size cap, the run's time."""

    kind = "limit"


class Fail(Fault):
    """The script's own FAIL, ASSERT or MSGFAIL."""

    kind = "fail"


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def describe(value: Any) -> str:
    """A value as messages name it: its type, then its text cut short."""
    shown = repr(value)
    return f"{type_name(value)} {shown[:40] + '…' if len(shown) > 40 else shown}"

"""What a query did, and where. While a query is explained (`explaining()`), each part that
does work says so (`note`): a connector what it sent its back-end (the part pushed down), the
TSL evaluator each method tsq's kernels computed. Outside `explaining()` a note costs one
context-variable read: its text is a function, called only while explaining."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

__all__ = ["explaining", "note"]

Step = dict[str, str]  # {"where": "influxdb connector \"x\" at …" or "tsq", "step": "…"}
_STEPS: ContextVar[list[Step] | None] = ContextVar("tsq_explain_steps", default=None)


@contextmanager
def explaining() -> Iterator[list[Step]]:
    """The steps noted until the block ends, in order."""
    steps: list[Step] = []
    token = _STEPS.set(steps)
    try:
        yield steps
    finally:
        _STEPS.reset(token)


def note(where: str, step: str | Callable[[], str]) -> None:
    """Record `step` (or what it makes: the text is built only while explaining)."""
    steps = _STEPS.get()
    if steps is not None:
        steps.append({"where": where, "step": step if isinstance(step, str) else step()})

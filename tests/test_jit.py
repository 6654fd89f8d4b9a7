"""tsq.jit: numba's compiled code, cached where a cache can be written and compiled in memory
where it cannot (numba refuses to decorate then)."""

from __future__ import annotations

import math
from typing import Any
from unittest.mock import patch

import numba
import pytest

from tsq import jit


def _twice(x: int) -> int:
    return 2 * x


def test_a_function_compiles_and_runs_where_it_can_be_cached() -> None:
    compiled = jit.machine_code(_twice)
    assert compiled(21) == 42
    assert compiled._cache.__class__.__name__ == "FunctionCache"


def test_without_a_writable_cache_it_compiles_in_memory(caplog: pytest.LogCaptureFixture) -> None:
    def refusing(**options: Any) -> Any:
        if options.get("cache"):
            raise RuntimeError("cannot cache function '_twice': no locator available for file")
        return numba.njit(**options)

    with patch.object(jit, "njit", refusing):
        compiled = jit.machine_code(_twice)
    assert compiled(21) == 42
    assert "numba cannot cache _twice" in caplog.text


def _divided(x: float, y: float) -> float:
    return x / y


def test_a_helper_is_copied_into_its_callers_and_divides_as_ieee_does() -> None:
    helper = jit.inlined_machine_code(_divided)
    assert helper.targetoptions["inline"] == "always"
    assert helper(3.0, 2.0) == 1.5
    # numba's numpy error model: no check for a zero divisor, so no ZeroDivisionError
    assert helper(1.0, 0.0) == math.inf

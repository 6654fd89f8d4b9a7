"""tsq.jit: numba's compiled code, cached where a cache can be written and compiled in memory
where it cannot (numba refuses to decorate then)."""

from __future__ import annotations

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


def _thrice(x: int) -> int:
    return 3 * x


_inlined_thrice = jit.inlined_machine_code(_thrice)


def _thrice_plus_one(x: int) -> int:
    return _inlined_thrice(x) + 1


def test_a_helper_is_copied_into_its_callers_and_never_compiled_alone() -> None:
    caller = jit.machine_code(_thrice_plus_one)
    assert caller(4) == 13
    assert _inlined_thrice.targetoptions["inline"] == "always"
    assert caller.signatures and not _inlined_thrice.signatures  # what `loaded()` checks rely on

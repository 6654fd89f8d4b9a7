"""Two sets of (series id, time, value) columns, each sorted by series id, merged into one in a
compiled pass (numba): the head's chunks as they grow (`connectors/head.py`).

numpy merges them by scattering the newer points to where `searchsorted` places them and the
older ones around them: two boolean-masked passes a column, about 35 ns a point for two chunks
of half a million. One pass comparing the two sides' ids takes a few. A stable merge: a
series' points from the older side come before its points from the newer.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from tsq.jit import machine_code

__all__ = ["loaded", "merge_by_series", "warm"]

Columns = tuple[npt.NDArray[np.int32], npt.NDArray[np.int64], npt.NDArray[np.float64]]


@machine_code
def _merge(older_sid: Any, older_ts: Any, older_value: Any, newer_sid: Any, newer_ts: Any,
           newer_value: Any, sid: Any, ts: Any, value: Any) -> None:  # pragma: no cover
    i = 0
    j = 0
    for k in range(len(sid)):
        if j == len(newer_sid) or (i < len(older_sid) and older_sid[i] <= newer_sid[j]):
            sid[k] = older_sid[i]
            ts[k] = older_ts[i]
            value[k] = older_value[i]
            i += 1
        else:
            sid[k] = newer_sid[j]
            ts[k] = newer_ts[j]
            value[k] = newer_value[j]
            j += 1


def merge_by_series(older: Columns, newer: Columns) -> Columns:
    """`older` and `newer` (each sorted by series id) as one sorted by series id, each series'
    older points first."""
    size = len(older[0]) + len(newer[0])
    merged = (np.empty(size, np.int32), np.empty(size, np.int64), np.empty(size, np.float64))
    _merge(*older, *newer, *merged)
    return merged


def loaded() -> bool:
    """Whether the merge is compiled (or loaded from numba's cache) in this process."""
    return bool(_merge.signatures)


def warm() -> None:
    """Load the compiled merge (from numba's cache: some 30 ms) before a write needs it."""
    one = (np.zeros(1, np.int32), np.zeros(1, np.int64), np.zeros(1, np.float64))
    merge_by_series(one, one)

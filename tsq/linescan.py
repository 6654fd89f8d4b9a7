"""A plain line-protocol batch read by one compiled pass (numba) over its bytes.

`/write` spent about half of its time in pandas' CSV reader, twice over (the lines, then their
fields). This pass finds each line's series key, its fields and its timestamp at once, hashing
keys and field names as it goes, and reads numbers itself where that is exact: a decimal of at
most 15 significant digits and a power of ten within 10^±22 is one IEEE multiplication or
division of two exact doubles, which rounds correctly (Clinger's fast path); integers (`12i`,
`7u`) of up to 18 digits convert exactly as Python's would. Anything else, or any line it does
not take whole (escapes, quotes, comments, booleans, NaN, a carriage return, a timestamp that
is not plain digits), makes it give up on the batch, and `tsq.lineprotocol` parses that batch
as before: both must agree, which a property test holds them to.

numba compiles the pass on first use and caches it on disk; `tsq.lineprotocol` calls it only
for batches large enough to be worth it, so a small write never loads numba.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from tsq.jit import inlined_machine_code, machine_code

__all__ = ["Scanned", "loaded", "scan"]

FNV_OFFSET = np.uint64(0xCBF29CE484222325)  # FNV-1a, 64 bits: keys and names by their bytes
FNV_PRIME = np.uint64(0x100000001B3)
POWERS = np.array([10.0**k for k in range(23)])  # exact doubles: 10^0 … 10^22
NEWLINE, SPACE, COMMA, EQUALS = 10, 32, 44, 61
INT64_MAX = 2**63 - 1


@dataclass(frozen=True)
class Scanned:
    """A batch's lines and fields. Byte offsets are into the UTF-8 body. Keys and names come
    as distinct ones (`key_first`: the first line of each) and each line's or field's code."""

    key_start: npt.NDArray[np.int64]  # each line's series key: measurement and tags
    key_end: npt.NDArray[np.int64]
    key_first: npt.NDArray[np.intp]
    key_code: npt.NDArray[np.intp]
    stamp: npt.NDArray[np.int64]  # each line's timestamp as written (0 when it has none)
    has_stamp: npt.NDArray[np.bool_]
    field_line: npt.NDArray[np.int64]  # each field's line, in order
    name_start: npt.NDArray[np.int64]
    name_end: npt.NDArray[np.int64]
    name_first: npt.NDArray[np.intp]
    name_code: npt.NDArray[np.intp]
    value: npt.NDArray[np.float64]

    def keys(self, body: bytes) -> list[str]:
        return _texts(body, self.key_start, self.key_end, self.key_first)

    def names(self, body: bytes) -> list[str]:
        return _texts(body, self.name_start, self.name_end, self.name_first)


def loaded() -> bool:
    """Whether the pass is compiled (or loaded from numba's cache) in this process: its two
    entry points (the helpers are copied into them, never compiled alone)."""
    return bool(_scan.signatures and _coded.signatures)


def scan(body: bytes) -> Scanned | None:
    """The lines of `body`, or None when one of them is not plain."""
    raw = np.frombuffer(body, dtype=np.uint8)
    # bounds of the lines and fields, counted by numpy: six times quicker than a compiled loop
    # over the bytes (a field has one '='; a tag too, so that is a bound)
    found = _scan(raw, POWERS, np.count_nonzero(raw == NEWLINE) + 1,
                  np.count_nonzero(raw == EQUALS))
    if found is None:
        return None
    (key_start, key_end, key_hash, stamp, has_stamp, field_line, name_start, name_end,
     name_hash, value) = found
    keys = _distinct(raw, key_start, key_end, key_hash)
    names = _distinct(raw, name_start, name_end, name_hash)
    if keys is None or names is None:
        return None
    return Scanned(key_start, key_end, *keys, stamp, has_stamp, field_line, name_start, name_end,
                   *names, value)


def _distinct(raw: npt.NDArray[np.uint8], start: npt.NDArray[np.int64],
              end: npt.NDArray[np.int64], hashes: npt.NDArray[np.uint64]
              ) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]] | None:
    """The first of each distinct hash and each one's code, in the order they first come;
    None unless every one holds the same bytes as the first of its hash (a collision: the
    batch goes to the other parsers)."""
    first = np.empty(len(hashes), np.intp)
    code = np.empty(len(hashes), np.intp)
    distinct = _coded(raw, start, end, hashes, first, code)
    return (first[:distinct], code) if distinct >= 0 else None


def _texts(body: bytes, start: npt.NDArray[np.int64], end: npt.NDArray[np.int64],
           first: npt.NDArray[np.intp]) -> list[str]:
    return [body[a:b].decode() for a, b in zip(start[first].tolist(), end[first].tolist(),
                                                strict=True)]


@machine_code
def _coded(raw: Any, start: Any, end: Any, hashes: Any, first: Any,
           code: Any) -> int:  # pragma: no cover - compiled, tested through scan
    """`_distinct` by an open-addressing table of the hashes (one probe each, mostly), the
    bytes of each compared with the first of its hash; -1 on a collision."""
    size = 2
    while size < 2 * len(hashes):
        size *= 2
    table = np.full(size, -1, np.int64)  # each slot's code
    distinct = 0
    for k in range(len(hashes)):
        h = hashes[k]
        slot = np.int64(h & np.uint64(size - 1))
        while True:
            found = table[slot]
            if found < 0:  # a new one
                table[slot] = distinct
                first[distinct] = k
                code[k] = distinct
                distinct += 1
                break
            f = first[found]
            if hashes[f] == h:
                if not _same(raw, start[k], end[k], start[f], end[f]):
                    return -1
                code[k] = found
                break
            slot = (slot + 1) & (size - 1)
    return distinct


@inlined_machine_code
def _same(raw: Any, a: int, a_end: int, b: int, b_end: int) -> bool:  # pragma: no cover
    if a_end - a != b_end - b:
        return False
    for j in range(a_end - a):  # noqa: SIM110 - a loop numba compiles
        if raw[a + j] != raw[b + j]:
            return False
    return True


@machine_code
def _scan(raw: Any, powers: Any, lines: int, fields: int  # noqa: PLR0912
          ) -> Any:  # pragma: no cover - compiled, tested through scan
    """One pass over the lines of `raw`: at most `lines` of them with at most `fields`
    fields in all."""
    n = len(raw)
    key_start = np.empty(lines, np.int64)
    key_end = np.empty(lines, np.int64)
    key_hash = np.empty(lines, np.uint64)
    stamp = np.zeros(lines, np.int64)
    has_stamp = np.zeros(lines, np.bool_)
    field_line = np.empty(fields, np.int64)
    name_start = np.empty(fields, np.int64)
    name_end = np.empty(fields, np.int64)
    name_hash = np.empty(fields, np.uint64)
    value = np.empty(fields, np.float64)
    line = 0
    field = 0
    i = 0
    while i < n:
        if raw[i] == NEWLINE:  # a blank line
            i += 1
            continue
        i = _spanned(raw, i, n, SPACE, True, key_start, key_end, key_hash, line)
        if i < 0:
            return None
        i += 1
        while True:  # fields: name=value, separated by commas
            i = _spanned(raw, i, n, EQUALS, False, name_start, name_end, name_hash, field)
            if i < 0:
                return None
            field_line[field] = line
            i += 1
            start = i
            while i < n and raw[i] != COMMA and raw[i] != SPACE and raw[i] != NEWLINE:
                i += 1
            ok, number = _number(raw, start, i, powers)
            if not ok:
                return None
            value[field] = number
            field += 1
            if i < n and raw[i] == COMMA:
                i += 1
                continue
            break
        if i < n and raw[i] == SPACE:  # the timestamp
            i += 1
            ok, when, i = _integer(raw, i, n)
            if not ok:
                return None
            stamp[line] = when
            has_stamp[line] = True
        if i < n:
            if raw[i] != NEWLINE:
                return None
            i += 1
        line += 1
    if line == 0:
        return None
    return (key_start[:line], key_end[:line], key_hash[:line], stamp[:line], has_stamp[:line],
            field_line[:field], name_start[:field], name_end[:field], name_hash[:field],
            value[:field])


@inlined_machine_code
def _spanned(raw: Any, i: int, n: int, stop: int, key: bool, starts: Any, ends: Any,
             hashes: Any, k: int) -> Any:  # pragma: no cover - compiled
    """The key or name from i, noted at k (its start, end and hash); its end, or -1 when it
    is empty, holds a byte it may not, or runs to the end of the body."""
    end, h = _token(raw, i, n, stop, key)
    if end == i or end >= n:
        return -1
    starts[k] = i
    ends[k] = end
    hashes[k] = h
    return end


@inlined_machine_code
def _token(raw: Any, i: int, n: int, stop: int, key: bool) -> Any:  # pragma: no cover
    """Where a series key (up to a space) or a field name (up to '=') ends, and its hash; the
    end is n when a byte it may not hold comes first: a control byte, '"', '#', a backslash,
    and in a name a space or a comma too."""
    h = FNV_OFFSET
    while i < n and raw[i] != stop:
        c = raw[i]
        if c < SPACE or c in (34, 35, 92) or (not key and c in (SPACE, COMMA)):
            return n, h
        h = (h ^ np.uint64(c)) * FNV_PRIME
        i += 1
    return i, h


@inlined_machine_code
def _integer(raw: Any, i: int, n: int) -> Any:  # pragma: no cover - compiled
    """A timestamp: [+-]digits up to the end of the line, within int64."""
    negative = False
    if i < n and raw[i] in (43, 45):  # '+', '-'
        negative = raw[i] == 45
        i += 1
    total = np.uint64(0)
    digits = 0
    while i < n and 48 <= raw[i] <= 57:
        if digits >= 19:
            return False, 0, i
        total = total * np.uint64(10) + np.uint64(raw[i] - 48)
        digits += 1
        i += 1
    if digits == 0 or total > np.uint64(INT64_MAX):
        return False, 0, i
    signed = np.int64(total)
    return True, -signed if negative else signed, i


@inlined_machine_code
def _number(raw: Any, start: int, end: int, powers: Any) -> Any:  # noqa: PLR0912 - one pass
    """A field's value where it converts exactly here; (False, 0) otherwise."""
    i = start
    negative = False
    if i < end and raw[i] in (43, 45):
        negative = raw[i] == 45
        i += 1
    mantissa = 0
    digits = 0  # significant ones
    exponent = 0
    seen = False
    dot = False
    while i < end:
        c = raw[i]
        if 48 <= c <= 57:
            seen = True
            if mantissa == 0 and c == 48:  # a leading zero
                if dot:
                    exponent -= 1
            else:
                if digits >= 18:
                    return False, 0.0
                mantissa = mantissa * 10 + (c - 48)
                digits += 1
                if dot:
                    exponent -= 1
        elif c == 46 and not dot:  # '.'
            dot = True
        else:
            break
        i += 1
    if not seen:
        return False, 0.0
    if i < end and raw[i] in (105, 117):  # 'i', 'u': an integer
        if i + 1 != end or dot or (raw[i] == 117 and negative):
            return False, 0.0
        return True, float(-mantissa if negative else mantissa)
    if i < end and raw[i] in (69, 101):  # 'E', 'e'
        ok, scale, i = _scale(raw, i + 1, end)
        if not ok:
            return False, 0.0
        exponent += scale
    if i != end or digits > 15:
        return False, 0.0
    if mantissa == 0:
        return True, -0.0 if negative else 0.0
    if exponent < -22 or exponent > 22:
        return False, 0.0
    number = float(mantissa) * powers[exponent] if exponent >= 0 else \
        float(mantissa) / powers[-exponent]
    return True, -number if negative else number


@inlined_machine_code
def _scale(raw: Any, i: int, end: int) -> Any:  # pragma: no cover - compiled
    """An exponent's [+-]digits (held below 1000 in size: beyond 22 it is refused anyway)."""
    negative = False
    if i < end and raw[i] in (43, 45):
        negative = raw[i] == 45
        i += 1
    scale = 0
    digits = 0
    while i < end and 48 <= raw[i] <= 57:
        if scale < 1000:
            scale = scale * 10 + (raw[i] - 48)
        digits += 1
        i += 1
    return digits > 0, -scale if negative else scale, i

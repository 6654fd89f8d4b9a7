"""The compiled half of tsq.kernels.blocks (numba): encoding, decoding, and decoding into the
cells of a sampled read. Imported only where blocks are, so that a small read never loads numba.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from tsq.jit import machine_code
from tsq.kernels.compiled import bucket_at

__all__ = ["HEADER_WORDS", "MINI", "accumulate_all", "decode_all", "encode_all"]

MINI = 128  # values a miniblock packs at one width
MAX_SCALE = 15  # decimal digits a value may have to be kept as an integer (10^15 < 2^53)
HEADER_WORDS = 4  # count and format, first time, first step, first value
ALL = np.uint64(0xFFFFFFFFFFFFFFFF)


@machine_code
def _bits(value: Any) -> int:  # pragma: no cover - compiled
    n = 0
    while value:
        n += 1
        value >>= np.uint64(1)
    return n


@machine_code
def _zigzag(value: int) -> Any:  # pragma: no cover - compiled
    return np.uint64((value << 1) ^ (value >> 63))


@machine_code
def _unzigzag(value: Any) -> Any:  # pragma: no cover - compiled
    return np.int64(value >> np.uint64(1)) ^ -np.int64(value & np.uint64(1))


@machine_code
def _layout(n: int, at: int) -> tuple[int, int, int]:  # pragma: no cover - compiled
    """A stream of `n` values at `at`: its miniblocks, where their widths are, where the
    miniblocks begin."""
    minis = (n + MINI - 1) // MINI
    return minis, at, at + (minis + 7) // 8


@machine_code
def _put_stream(stream: Any, words: Any, at: int) -> int:  # pragma: no cover - compiled
    """`stream` bit-packed into `words` from `at`: the widths, then the miniblocks."""
    n = len(stream)
    minis, widths_at, at = _layout(n, at)
    for m in range(minis):
        low, high = m * MINI, min(n, m * MINI + MINI)
        widest = np.uint64(0)
        for i in range(low, high):
            widest |= stream[i]
        width = _bits(widest)
        words[widths_at + m // 8] |= np.uint64(width) << np.uint64(8 * (m % 8))
        if width == 0:
            continue
        bit = 0
        for i in range(low, high):
            word = at + (bit >> 6)
            offset = bit & 63
            words[word] |= stream[i] << np.uint64(offset)
            if offset + width > 64:
                words[word + 1] |= stream[i] >> np.uint64(64 - offset)
            bit += width
        at += (bit + 63) >> 6
    return at


@machine_code
def _get_stream(words: Any, at: int, n: int, out: Any) -> int:  # pragma: no cover - compiled
    """The `n` values `_put_stream` packed from `at` into `out`; where the stream ends."""
    minis, widths_at, at = _layout(n, at)
    for m in range(minis):
        low, high = m * MINI, min(n, m * MINI + MINI)
        width = int((words[widths_at + m // 8] >> np.uint64(8 * (m % 8))) & np.uint64(0xFF))
        if width == 0:
            for i in range(low, high):
                out[i] = np.uint64(0)
            continue
        mask = ALL if width == 64 else (np.uint64(1) << np.uint64(width)) - np.uint64(1)
        bit = 0
        for i in range(low, high):
            # the value's bits from its word and the next, without a branch (a block ends
            # with a spare word for the last): a branch on whether it straddles two words is
            # mispredicted about once in five values
            word = at + (bit >> 6)
            offset = np.uint64(bit & 63)
            value = (words[word] >> offset) | \
                ((words[word + 1] << (np.uint64(63) - offset)) << np.uint64(1))
            out[i] = value & mask
            bit += width
        at += (bit + 63) >> 6
    return at


@machine_code
def _width_words(n: int) -> int:  # pragma: no cover - compiled
    """Words the widths of a stream of `n` values take."""
    return ((n + MINI - 1) // MINI + 7) // 8


@machine_code
def _steady(words: Any, at: int, n: int) -> bool:  # pragma: no cover - compiled
    """Whether the stream of `n` values at `at` is all zeros (every miniblock 0 bits wide)."""
    for w in range(_width_words(n)):  # noqa: SIM110 - numba compiles loops, not generators
        if words[at + w]:
            return False
    return True


@machine_code
def _scale_of(values: Any) -> int:  # pragma: no cover - compiled
    """The fewest decimal digits that give every value back bit for bit as an integer over a
    power of ten; -1 if none up to MAX_SCALE do."""
    for scale in range(MAX_SCALE + 1):
        power = 10.0 ** scale
        fits = True
        for value in values:
            scaled = np.round(value * power)
            if not (abs(scaled) < 2.0**53 and scaled / power == value) or \
                    (value == 0.0 and math.copysign(1.0, value) < 0):
                fits = False
                break
        if fits:
            return scale
    return -1


@machine_code
def encode_all(stamps: Any, values: Any, offsets: Any, room: Any, words: Any,
                sizes: Any) -> None:  # pragma: no cover - compiled
    longest = 0
    for b in range(len(offsets) - 1):
        longest = max(longest, offsets[b + 1] - offsets[b])
    stream = np.empty(max(longest, 1), np.uint64)
    for b in range(len(offsets) - 1):
        low, high = offsets[b], offsets[b + 1]
        n = high - low
        at = room[b]
        times = stamps[low:high]
        numbers = values[low:high]
        scale = _scale_of(numbers)
        words[at] = np.uint64(n) | (np.uint64(1 if scale >= 0 else 0) << np.uint64(32)) | \
            (np.uint64(max(scale, 0)) << np.uint64(40))
        words[at + 1] = np.uint64(times[0])
        step = times[1] - times[0] if n > 1 else 0
        words[at + 2] = np.uint64(step)
        for i in range(2, n):
            now = times[i] - times[i - 1]
            stream[i - 2] = _zigzag(now - step)
            step = now
        at = _put_stream(stream[:max(n - 2, 0)], words, at + HEADER_WORDS)
        if scale >= 0:
            power = 10.0 ** scale
            previous = np.int64(np.round(numbers[0] * power))
            words[room[b] + 3] = np.uint64(previous)
            for i in range(1, n):
                current = np.int64(np.round(numbers[i] * power))
                stream[i - 1] = _zigzag(current - previous)
                previous = current
        else:
            bits = numbers.view(np.uint64)
            words[room[b] + 3] = bits[0]
            for i in range(1, n):
                stream[i - 1] = bits[i] ^ bits[i - 1]
        at = _put_stream(stream[:n - 1], words, at)
        sizes[b] = at - room[b] + 1  # and a spare word: the decoder reads a word ahead


@machine_code
def _decode(words: Any, at: int, stamps: Any, values: Any,
            stream: Any) -> None:  # pragma: no cover - compiled
    """The block at `at` into `stamps` and `values` (as long as the block), `stream` scratch."""
    header = words[at]
    n = int(header & np.uint64(0xFFFFFFFF))
    if n != len(stamps):
        raise ValueError("a block holds another number of points than its row says")
    decimal = (header >> np.uint64(32)) & np.uint64(1)
    scale = int((header >> np.uint64(40)) & np.uint64(0xFF))
    stamp = np.int64(words[at + 1])
    step = np.int64(words[at + 2])
    stamps[0] = stamp
    if n > 1:
        stamp += step
        stamps[1] = stamp
    if _steady(words, at + HEADER_WORDS, max(n - 2, 0)):  # every step the same
        for i in range(2, n):
            stamps[i] = stamps[0] + i * step
        end = at + HEADER_WORDS + _width_words(max(n - 2, 0))
    else:
        end = _get_stream(words, at + HEADER_WORDS, max(n - 2, 0), stream)
        for i in range(2, n):
            step += _unzigzag(stream[i - 2])
            stamp += step
            stamps[i] = stamp
    _get_stream(words, end, n - 1, stream)
    if decimal:
        power = 10.0 ** scale
        current = np.int64(words[at + 3])
        values[0] = current / power
        for i in range(1, n):
            current += _unzigzag(stream[i - 1])
            values[i] = current / power
    else:
        bits = values[:n].view(np.uint64)
        previous = words[at + 3]
        bits[0] = previous
        for i in range(1, n):
            previous ^= stream[i - 1]
            bits[i] = previous


@machine_code
def decode_all(words: Any, starts: Any, counts: Any, stamps: Any,
                values: Any) -> None:  # pragma: no cover - compiled
    longest = 1
    for n in counts:
        longest = max(longest, n)
    stream = np.empty(longest, np.uint64)
    at = 0
    for b in range(len(counts)):
        n = counts[b]
        _decode(words, starts[b], stamps[at:at + n], values[at:at + n], stream)
        at += n


@machine_code
def accumulate_all(words: Any, starts: Any, counts: Any, ids: Any, rank_of: Any,
                    ranked: bool, anchor: int, span: int, right: bool, first: int, width: int,
                    op: int, after: int, upto: int, totals: Any,
                    sums: Any) -> None:  # pragma: no cover - compiled
    longest = 1
    for n in counts:
        longest = max(longest, n)
    stream = np.empty(longest, np.uint64)
    stamps = np.empty(longest, np.int64)
    values = np.empty(longest, np.float64)
    for b in range(len(counts)):
        n = counts[b]
        _decode(words, starts[b], stamps[:n], values[:n], stream)
        rank = rank_of[ids[b]] if ranked else ids[b]
        _add_block(stamps[:n], values[:n], rank * width - first, anchor, span, right, op, after,
                   upto, totals, sums)


@machine_code
def _add_block(stamps: Any, values: Any, row: int, anchor: int, span: int, right: bool,
               op: int, after: int, upto: int, totals: Any,
               counts: Any) -> None:  # pragma: no cover - compiled
    """A block's points in (after, upto] added into their cells, `row + bucket`: a bucket's
    points are reduced in registers (they come in time order) and added once."""
    n = len(stamps)
    i = 0
    while i < n and stamps[i] <= after:
        i += 1
    while i < n and stamps[i] <= upto:
        bucket, high = bucket_at(stamps[i], anchor, span, right)
        last = min(high - 1, upto)
        total = 0.0 if op == 0 else (np.inf if op == 1 else -np.inf)
        count = 0
        while i < n and stamps[i] <= last:
            value = values[i]
            i += 1
            if not np.isnan(value):
                count += 1
                total = _combined(total, value, op)
        if count:
            counts[row + bucket] += count
            totals[row + bucket] = _combined(totals[row + bucket], total, op)


@machine_code
def _combined(total: float, value: float, op: int) -> float:  # pragma: no cover - compiled
    """A sum (op 0), a minimum (1) or a maximum (2) with one more value; a count's (3) unused."""
    if op == 0:
        return total + value
    if op == 1:
        return min(total, value)
    if op == 2:
        return max(total, value)
    return total

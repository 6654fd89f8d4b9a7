"""The compiled half of tsq.kernels.blocks (numba): encoding, decoding, and decoding into the
cells of a sampled read. Imported only where blocks are, so that a small read never loads numba.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from tsq.jit import machine_code
from tsq.kernels.compiled import bucket_at, combined, fold_row

__all__ = ["HEADER_WORDS", "MINI", "accumulate_all", "accumulate_groups_all", "decode_all",
           "encode_all"]

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
        width = _width(words, widths_at, m)
        if width == 0:
            for i in range(low, high):
                out[i] = np.uint64(0)
            continue
        mask = _mask(width)
        bit = 0
        for i in range(low, high):
            out[i] = _unpacked(words, at, bit, mask)
            bit += width
        at += (bit + 63) >> 6
    return at


@machine_code
def _width(words: Any, widths_at: int, m: int) -> int:  # pragma: no cover - compiled
    """The width of miniblock `m` of the stream whose widths are at `widths_at`."""
    return int((words[widths_at + m // 8] >> np.uint64(8 * (m % 8))) & np.uint64(0xFF))


@machine_code
def _mask(width: int) -> Any:  # pragma: no cover - compiled
    return ALL if width == 64 else (np.uint64(1) << np.uint64(width)) - np.uint64(1)


@machine_code
def _unpacked(words: Any, at: int, bit: int, mask: Any) -> Any:  # pragma: no cover - compiled
    """The value `bit` bits from word `at`, `mask` wide: from its word and the next, without
    a branch (a block ends with a spare word for the last; a branch on whether a value
    straddles two words is mispredicted about once in five values)."""
    word = at + (bit >> 6)
    offset = np.uint64(bit & 63)
    return ((words[word] >> offset) |
            ((words[word + 1] << (np.uint64(63) - offset)) << np.uint64(1))) & mask


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
    _decode_values(words, at, _decode_times(words, at, stamps, stream), values, stream)


@machine_code
def _decode_times(words: Any, at: int, stamps: Any,
                  stream: Any) -> int:  # pragma: no cover - compiled
    """The times of the block at `at` into `stamps` (as long as the block, or the header
    disagrees: an error), `stream` scratch; where its values' stream begins."""
    header = words[at]
    n = int(header & np.uint64(0xFFFFFFFF))
    if n != len(stamps):
        raise ValueError("a block holds another number of points than its row says")
    stamp = np.int64(words[at + 1])
    step = np.int64(words[at + 2])
    stamps[0] = stamp
    if n > 1:
        stamp += step
        stamps[1] = stamp
    if _steady(words, at + HEADER_WORDS, max(n - 2, 0)):  # every step the same
        for i in range(2, n):
            stamps[i] = stamps[0] + i * step
        return int(at + HEADER_WORDS + _width_words(max(n - 2, 0)))
    end = int(_get_stream(words, at + HEADER_WORDS, max(n - 2, 0), stream))
    for i in range(2, n):
        step += _unzigzag(stream[i - 2])
        stamp += step
        stamps[i] = stamp
    return end


@machine_code
def _decimal(header: Any) -> bool:  # pragma: no cover - compiled
    return bool((header >> np.uint64(32)) & np.uint64(1))


@machine_code
def _power(header: Any) -> float:  # pragma: no cover - compiled
    return 10.0 ** int((header >> np.uint64(40)) & np.uint64(0xFF))


@machine_code
def _decode_values(words: Any, at: int, end: int, values: Any,
                   stream: Any) -> None:  # pragma: no cover - compiled
    """The values of the block at `at`, their stream at `end`, into `values`."""
    n = len(values)
    _get_stream(words, end, n - 1, stream)
    if _decimal(words[at]):
        power = _power(words[at])
        current = np.int64(words[at + 3])
        values[0] = current / power
        for i in range(1, n):
            current += _unzigzag(stream[i - 1])
            values[i] = current / power
    else:
        bits = values.view(np.uint64)
        previous = words[at + 3]
        bits[0] = previous
        for i in range(1, n):
            previous ^= stream[i - 1]
            bits[i] = previous


@machine_code
def _summable(words: Any, at: int, end: int, n: int) -> bool:  # pragma: no cover - compiled
    """Whether the block at `at` (its values' stream at `end`) holds decimals whose integers
    a bucket can sum without overflow: each is at most the first plus every delta the
    miniblocks' widths allow, and a bucket holds at most `n` of them."""
    if not _decimal(words[at]):
        return False
    bound = abs(float(np.int64(words[at + 3])))
    minis, widths_at, _ = _layout(n - 1, end)
    for m in range(minis):
        width = _width(words, widths_at, m)
        if width:
            bound += min(MINI, n - 1 - m * MINI) * 2.0 ** (width - 1)
    return bound * n < 2.0**62
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
    stream, stamps, values = _scratch(counts)
    for b in range(len(counts)):
        rank = rank_of[ids[b]] if ranked else ids[b]
        _add_one(words, starts[b], counts[b], rank * width - first, anchor, span, right, op,
                 after, upto, totals, sums, stream, stamps, values)


@machine_code
def accumulate_groups_all(words: Any, starts: Any, counts: Any, ranks: Any, group_of: Any,
                          anchor: int, span: int, right: bool, first: int, width: int,
                          op: int, after: int, upto: int, empty: float, cell_op: int,
                          group_op: int, group_totals: Any,
                          group_counts: Any) -> None:  # pragma: no cover - compiled
    """The blocks (in order of their series' `ranks`) added into one series' cells at a
    time, which are reduced into its group's (`fold_row`) once its last block is in."""
    stream, stamps, values = _scratch(counts)
    totals = np.full(width, empty)
    sums = np.zeros(width)
    for b in range(len(counts)):
        _add_one(words, starts[b], counts[b], -first, anchor, span, right, op, after, upto,
                 totals, sums, stream, stamps, values)
        if b + 1 == len(counts) or ranks[b + 1] != ranks[b]:  # the series is complete
            fold_row(totals, sums, 0, width, cell_op, group_of[ranks[b]] * width, group_op,
                     group_totals, group_counts)
            totals[:] = empty
            sums[:] = 0.0


@machine_code
def _scratch(counts: Any) -> tuple[Any, Any, Any]:  # pragma: no cover - compiled
    """Buffers for the stream, the times and the values of the longest of blocks of
    `counts` points, reused block after block (they stay in the cache)."""
    longest = 1
    for n in counts:
        longest = max(longest, n)
    return np.empty(longest, np.uint64), np.empty(longest, np.int64), \
        np.empty(longest, np.float64)


@machine_code
def _add_one(words: Any, at: int, n: int, row: int, anchor: int, span: int, right: bool,
             op: int, after: int, upto: int, totals: Any, sums: Any, stream: Any, stamps: Any,
             values: Any) -> None:  # pragma: no cover - compiled
    """The block of `n` points at `at` added into the cells from `row` (`accumulate_all`),
    `stream`, `stamps` and `values` scratch."""
    summed = op in (0, 3)  # what the integers' running sums answer
    if summed and n > 1 and _steady(words, at + HEADER_WORDS, n - 2):
        end = at + HEADER_WORDS + _width_words(n - 2)
        if _summable(words, at, end, n):  # every step the same: no time is made either
            if n != int(words[at] & np.uint64(0xFFFFFFFF)):
                raise ValueError("a block holds another number of points than its row says")
            running = stream[:n].view(np.int64)
            _running_sums(words, end, n, np.int64(words[at + 3]), running)
            _add_steady_sums(np.int64(words[at + 1]), np.int64(words[at + 2]), running,
                             _power(words[at]), row, anchor, span, right, op, after, upto,
                             totals, sums)
            return
    end = _decode_times(words, at, stamps[:n], stream)
    if summed and _summable(words, at, end, n):
        running = stream[:n].view(np.int64)
        _running_sums(words, end, n, np.int64(words[at + 3]), running)
        _add_sums(stamps[:n], running, _power(words[at]), row, anchor, span, right, op,
                  after, upto, totals, sums)
    else:
        _decode_values(words, at, end, values[:n], stream)
        _add_block(stamps[:n], values[:n], row, anchor, span, right, op, after, upto,
                   totals, sums)


@machine_code
def _running_sums(words: Any, at: int, n: int, current: Any,
                  sums: Any) -> None:  # pragma: no cover - compiled
    """A decimal block's integers summed as they come: `sums[i]` is the sum of its first
    i + 1 integers, the first `current`, each next one the zigzag delta `_put_stream` packed
    at `at` away from the one before. Unpacked and summed in one pass, never written out."""
    total = current
    sums[0] = total
    minis, widths_at, at = _layout(n - 1, at)
    for m in range(minis):
        low, high = m * MINI, min(n - 1, m * MINI + MINI)
        width = _width(words, widths_at, m)
        if width == 0:  # the same step again and again
            for i in range(low, high):
                total += current
                sums[i + 1] = total
            continue
        mask = _mask(width)
        bit = 0
        for i in range(low, high):
            current += _unzigzag(_unpacked(words, at, bit, mask))
            total += current
            sums[i + 1] = total
            bit += width
        at += (bit + 63) >> 6


@machine_code
def _add_steady_sums(start: int, step: int, sums: Any, power: float, row: int, anchor: int,
                     span: int, right: bool, op: int, after: int, upto: int, totals: Any,
                     counts: Any) -> None:  # pragma: no cover - compiled
    """`_add_sums` for a block whose times are `start + i * step`: where each bucket's points
    begin and end is found from the last bucket's by adding (a quotient and a remainder by
    `step`), without a time or a division a bucket."""
    n = len(sums)
    low = 0 if after < start else min(n, (after - start) // step + 1)
    high = n if upto >= start + (n - 1) * step else (upto - start) // step + 1 \
        if upto >= start else 0
    i = low
    whole, part = span // step, span % step  # a bucket's span in steps
    bucket = 0
    ahead = 0  # the next bucket's first point: `ahead` + (`rest` > 0) steps from the start
    rest = 0
    while i < high:
        end = ahead + (1 if rest else 0)
        if end <= i:  # the first bucket, or one after buckets without a point
            bucket, edge = bucket_at(start + i * step, anchor, span, right)
            ahead, rest = (edge - start) // step, (edge - start) % step
            end = ahead + (1 if rest else 0)
        end = min(end, high)
        counts[row + bucket] += end - i
        if op == 0:
            before = sums[i - 1] if i else 0
            totals[row + bucket] += (sums[end - 1] - before) / power
        i = end
        bucket += 1
        ahead += whole
        rest += part
        if rest >= step:
            rest -= step
            ahead += 1


@machine_code
def _add_sums(stamps: Any, sums: Any, power: float, row: int, anchor: int, span: int,
              right: bool, op: int, after: int, upto: int, totals: Any,
              counts: Any) -> None:  # pragma: no cover - compiled
    """`_add_block` for a sum, a mean or a count of a decimal block from the running sums of
    its integers (`_running_sums`): a bucket's sum is the difference of two, exact, divided
    once by the power of ten; no value is made. None is NaN."""
    n = len(stamps)
    i = 0
    while i < n and stamps[i] <= after:
        i += 1
    placed = False
    bucket = 0
    high = 0
    while i < n and stamps[i] <= upto:
        stamp = stamps[i]
        # the next bucket is mostly the one after, found without a division
        if placed and high <= stamp < high + span:
            bucket += 1
            high += span
        else:
            bucket, high = bucket_at(stamp, anchor, span, right)
            placed = True
        last = min(high - 1, upto)
        start = i
        i += 1
        while i < n and stamps[i] <= last:
            i += 1
        counts[row + bucket] += i - start
        if op == 0:
            before = sums[start - 1] if start else 0
            totals[row + bucket] += (sums[i - 1] - before) / power


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
                total = combined(total, value, op)
        if count:
            counts[row + bucket] += count
            totals[row + bucket] = combined(totals[row + bucket], total, op)

"""Prometheus remote write 1.0 request bodies: a `WriteRequest` protobuf message, compressed with
snappy's block format, as `/api/v1/write` of Prometheus and VictoriaMetrics take it.

The three messages tsq sends are tiny (from prometheus/prompb):

    WriteRequest { repeated TimeSeries timeseries = 1; }
    TimeSeries   { repeated Label labels = 1; repeated Sample samples = 2; }
    Label        { string name = 1; string value = 2; }
    Sample       { double value = 1; int64 timestamp = 2; }   // milliseconds

No maintained package ships them as generated classes, and generating them would make protoc a
build step, so they are encoded here by hand: a length-delimited field is its tag, its length
and its bytes; a double is tag 0x09 and 8 little-endian bytes; an int64 is tag 0x10 and a
varint (two's complement on 64 bits when negative). Snappy comes from cramjam.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping, Sequence

import cramjam

__all__ = ["encode_request", "snappy_request", "varint"]

_LENGTH_DELIMITED = 2
_DOUBLE_TAG = b"\x09"  # field 1, 64-bit
_TIMESTAMP_TAG = b"\x10"  # field 2, varint


def varint(number: int) -> bytes:
    """`number` as a protobuf varint; a negative int64 is its 64-bit two's complement."""
    number &= (1 << 64) - 1
    out = bytearray()
    while number > 0x7F:
        out.append(number & 0x7F | 0x80)
        number >>= 7
    out.append(number)
    return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    return varint(number << 3 | _LENGTH_DELIMITED) + varint(len(payload)) + payload


def _label(name: str, value: str) -> bytes:
    return _field(1, _field(1, name.encode()) + _field(2, value.encode()))


def _series(labels: Mapping[str, str], stamps: Sequence[int], values: Sequence[float]) -> bytes:
    """One TimeSeries: labels sorted by name, as the protocol asks."""
    head = b"".join(_label(name, labels[name]) for name in sorted(labels))
    samples = b"".join(
        _field(2, _DOUBLE_TAG + struct.pack("<d", value) + _TIMESTAMP_TAG + varint(stamp))
        for stamp, value in zip(stamps, values, strict=True))
    return head + samples


def encode_request(series: Iterable[tuple[Mapping[str, str], Sequence[int], Sequence[float]]]
                   ) -> bytes:
    """A WriteRequest of (labels with `__name__`, timestamps in ms, values) series."""
    return b"".join(_field(1, _series(*one)) for one in series)


def snappy_request(series: Iterable[tuple[Mapping[str, str], Sequence[int], Sequence[float]]]
                   ) -> bytes:
    """`encode_request`, snappy-compressed: the body of a remote write request."""
    return bytes(cramjam.snappy.compress_raw(encode_request(series)))

"""tsq.linescan's own guards; its agreement with the other line-protocol parsers is held by
tests/test_lineprotocol.py."""

from __future__ import annotations

import numpy as np

from tsq import linescan


def test_keys_sharing_a_hash_but_not_their_bytes_give_the_batch_up() -> None:
    raw = np.frombuffer(b"cpu,a=1cpu,a=2cpu,a=1", np.uint8)
    start, end = np.array([0, 7, 14]), np.array([7, 14, 21])
    collided = np.array([5, 5, 5], np.uint64)  # as if FNV-1a had mapped both keys to 5
    assert linescan._distinct(raw, start, end, collided) is None
    first, code = linescan._distinct(raw, start, end, np.array([5, 9, 5], np.uint64)) or ((), ())
    assert list(first) == [0, 1] and list(code) == [0, 1, 0]


def test_distinct_hashes_in_one_slot_of_the_table_stay_apart() -> None:
    """Three keys make a table of 8 slots: hashes 5 and 13 both start at slot 5, and the
    second is found by probing on, each time (a probe that stops at the first occupied slot
    would give the third the first one's code)."""
    raw = np.frombuffer(b"cpu,a=1cpu,a=2cpu,a=2", np.uint8)
    start, end = np.array([0, 7, 14]), np.array([7, 14, 21])
    first, code = linescan._distinct(raw, start, end, np.array([5, 13, 13], np.uint64)) or \
        ((), ())
    assert list(first) == [0, 1] and list(code) == [0, 1, 1]


def test_a_scan_names_each_distinct_key_and_field_once() -> None:
    body = b"cpu,host=a value=1 10\ncpu,host=b value=2,idle=3i 20\ncpu,host=a value=4"
    scanned = linescan.scan(body)
    assert scanned is not None
    assert scanned.keys(body) == ["cpu,host=a", "cpu,host=b"]  # in the order they come
    keys = scanned.keys(body)
    assert [keys[c] for c in scanned.key_code] == ["cpu,host=a", "cpu,host=b", "cpu,host=a"]
    names = scanned.names(body)
    assert [names[c] for c in scanned.name_code] == ["value", "value", "idle", "value"]
    assert scanned.value.tolist() == [1.0, 2.0, 3.0, 4.0]
    assert scanned.stamp.tolist() == [10, 20, 0] and scanned.has_stamp.tolist() == [
        True, True, False]


def test_once_a_batch_is_scanned_the_pass_counts_as_loaded() -> None:
    # what a server asks before it gives a mid-sized write to the scan (tsq.lineprotocol)
    assert linescan.scan(b"cpu,host=a value=1 1\ncpu,host=b value=2 2\n") is not None
    assert linescan.loaded()

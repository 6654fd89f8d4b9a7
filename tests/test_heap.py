"""The server's C heap keeps large freed blocks (tsq.heap)."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_glibc_takes_the_thresholds_and_the_single_arena() -> None:
    # in a process of its own: the thresholds stay with the process that set them
    done = subprocess.run([sys.executable, "-c",
                           "from tsq.heap import keep_large_blocks; print(keep_large_blocks())"],
                          capture_output=True, text=True, check=True, timeout=60)
    assert done.stdout.strip() == "True"


def test_a_refused_setting_is_reported_not_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    from tsq import heap

    monkeypatch.setattr(heap.ctypes.util, "find_library", lambda _name: "libnot-a-libc.so.9")
    assert heap.keep_large_blocks() is False

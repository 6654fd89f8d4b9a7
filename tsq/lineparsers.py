"""Where a server parses line protocol: on the writing thread, or, while a parse is already
running there, in a helper process, so that concurrent writers use a second core.

Parsing holds the GIL (pandas' C reader and the checks around it), so writes parsed on several
threads at once take turns on one core, and handing the GIL over every few hundred
microseconds made them slower than one at a time. One parse runs in the server process; a
write arriving meanwhile sends its body to the helper and waits (the GIL free) for the
SeriesSets, while the server goes on storing what was parsed. A single writer never pays the
trip to the helper. The helper is started with the server (a CLI call parses in place) and dies
with the thread that started it (`tsq.parentage`); if it dies, the write is parsed here and a
new helper starts with the next one.
"""

from __future__ import annotations

import logging
import multiprocessing
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from tsq.lineprotocol import SCAN_CHARS, ParsedBatch, parse_lines
from tsq.parentage import die_with_parent

__all__ = ["WRITE_PATH", "CompiledLoad", "LineParsers"]

log = logging.getLogger(__name__)

# Smaller bodies are parsed in place: the trip to the helper (the body there, the SeriesSets
# back) costs about what parsing a few hundred lines does
HELPED_FROM_BYTES = 32 * 1024
WARM_BODY = "\n".join(f"warm value={n}.5 {n}" for n in range(SCAN_CHARS // 16))


class CompiledLoad:
    """numba's code for a write (the line-protocol scan, the head's merge), loaded once a
    process in a thread: half a second of CPU from numba's cache. `tsq serve` begins it first
    thing, beside its own imports, and waits for it before it answers; elsewhere the first
    large write begins it. Until it is done, writes are read by pandas' reader. The blocks'
    codec is loaded after it, while the server answers."""

    def __init__(self) -> None:
        self._finished = threading.Event()  # loaded, or failed to
        self.codec_loaded = threading.Event()  # the blocks' codec, afterwards (or failed to)
        self._loaded = False
        self._lock = threading.Lock()
        self._begun = False

    def ready(self) -> bool:
        """Whether the code is loaded; if not, begin loading it."""
        if self._loaded:
            return True
        with self._lock:
            if not self._begun:
                self._begun = True
                threading.Thread(target=self._load, name="tsq-line-scan", daemon=True).start()
        return False

    def wait(self, timeout: float) -> bool:
        """Begin loading if not begun; wait up to `timeout` seconds; whether it is loaded."""
        return self.ready() or (self._finished.wait(timeout) and self._loaded)

    def _load(self) -> None:
        try:
            parse_lines(WARM_BODY)
            from tsq.kernels import sortedmerge  # numba: imported here, not by a CLI call

            sortedmerge.warm()
        except Exception:  # numba missing or broken: pandas' reader goes on reading
            log.exception("the compiled line-protocol scan could not be loaded")
        else:
            self._loaded = True
        finally:
            self._finished.set()
        # Then, while writes come in, the blocks' codec: a write that fills the buffer of the
        # past encodes it (the first encode loaded it in 0.1-0.3 s, every writer waiting)
        try:
            from tsq.kernels import blocks

            blocks.warm()
        except Exception:  # the first write into blocks loads it, or says why it cannot
            log.exception("the compiled block codec could not be loaded")
        finally:
            self.codec_loaded.set()


WRITE_PATH = CompiledLoad()  # the process's


class LineParsers:
    def __init__(self, compiled: CompiledLoad = WRITE_PATH) -> None:
        self.compiled = compiled
        self._here = threading.Lock()
        self._helper: ProcessPoolExecutor | None = None
        self._helped = False  # a server's parsers: `start` makes them so
        self._lock = threading.Lock()

    def start(self) -> None:
        """Use a helper process from now on, started now (its imports take half a second).
        The helper parses a batch large enough for the compiled scan meanwhile, so that
        numba is loaded there (and, once after an install, compiles the scan) before a write
        waits for it; here, `compiled` loads it in a thread."""
        self._helped = True
        parse_lines("warm value=1 0")  # the imports here too: not in the first write
        self._started().submit(parse_lines, WARM_BODY)
        self.compiled.ready()

    def parse(self, body: str, precision: str) -> ParsedBatch:
        scan = not self._helped or self.compiled.ready()
        if not self._helped or len(body) < HELPED_FROM_BYTES:
            with self._here:
                return parse_lines(body, precision, scan=scan)
        if self._here.acquire(blocking=False):
            try:
                return parse_lines(body, precision, scan=scan)
            finally:
                self._here.release()
        now = time.time_ns()  # the request's time, for lines without one
        try:
            return self._started().submit(parse_lines, body, precision, now).result()
        except BrokenProcessPool:
            log.warning("the line-protocol helper process died; parsing here, and starting "
                        "another with the next write")
            with self._lock:
                self._helper = None
            return parse_lines(body, precision, now)

    def close(self) -> None:
        with self._lock:
            helper, self._helper = self._helper, None
        if helper is not None:
            helper.shutdown(wait=False, cancel_futures=True)

    def _started(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._helper is None:
                self._helper = ProcessPoolExecutor(
                    max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                    initializer=die_with_parent)
            return self._helper

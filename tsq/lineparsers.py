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

__all__ = ["LineParsers"]

log = logging.getLogger(__name__)

# Smaller bodies are parsed in place: the trip to the helper (the body there, the SeriesSets
# back) costs about what parsing a few hundred lines does
HELPED_FROM_BYTES = 32 * 1024
WARM_BODY = "\n".join(f"warm value={n}.5 {n}" for n in range(SCAN_CHARS // 16))


class LineParsers:
    def __init__(self) -> None:
        self._here = threading.Lock()
        self._helper: ProcessPoolExecutor | None = None
        self._helped = False  # a server's parsers: `start` makes them so
        self._lock = threading.Lock()
        self._scanner = threading.Event()  # the compiled scan is loaded here
        self._loading = False

    def start(self) -> None:
        """Use a helper process from now on, started now (its imports take half a second).
        The helper parses a batch large enough for the compiled scan meanwhile, so that
        numba is loaded there (and, once after an install, compiles the scan) before a write
        waits for it. Here, the first write starts loading it in a thread (half a second of
        CPU, not spent at every start: a restart catching up on thousands of loops needs it),
        and the writes until it is loaded are read by pandas' reader instead of waiting."""
        self._helped = True
        parse_lines("warm value=1 0")  # the imports here too: not in the first write
        self._started().submit(parse_lines, WARM_BODY)

    def parse(self, body: str, precision: str) -> ParsedBatch:
        scan = not self._helped or self._scanner_loaded()
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

    def _scanner_loaded(self) -> bool:
        """Whether the compiled scan is loaded here; if not, begin loading it in a thread."""
        if self._scanner.is_set():
            return True
        with self._lock:
            if not self._loading:
                self._loading = True
                threading.Thread(target=self._load_scanner, name="tsq-line-scan",
                                 daemon=True).start()
        return False

    def _load_scanner(self) -> None:
        try:
            parse_lines(WARM_BODY)
        except Exception:  # numba missing or broken: pandas' reader goes on reading
            log.exception("the compiled line-protocol scan could not be loaded")
            return
        self._scanner.set()

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

"""How line protocol is parsed: by one compiled pass over the bytes (`tsq.linescan`) once numba's
code is loaded (`CompiledLoad`), by pandas' reader until then in a server, which does not make a
write wait for the load.

A server parses its line-protocol writes on one thread (`tsq.linewrites`), one group at a time,
while another stores the group before; a write alone on its event loop's thread.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

from tsq.lineprotocol import SCAN_CHARS, ParsedBatch, parse_joined, parse_lines

__all__ = ["WRITE_PATH", "CompiledLoad", "LineParsers"]

log = logging.getLogger(__name__)

WARM_BODY = "\n".join(f"warm value={n}.5 {n}" for n in range(SCAN_CHARS // 16))


class CompiledLoad:
    """numba's code for a write (the line-protocol scan, the head's merge), loaded once a
    process in a thread: half a second of CPU from numba's cache. `tsq serve` begins it once
    its app is built, beside the service's start, and waits for it before it answers;
    elsewhere the first large write begins it. Until it is done, writes are read by pandas'
    reader. The blocks' codec is loaded after it, while the server answers."""

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
        # Then, while writes come in, what a full buffer of the past is written with: the
        # blocks' codec (the first encode loaded it in 0.1-0.3 s) and the buffer's sort
        try:
            from tsq.kernels import blocks, pastsort

            blocks.warm()
            try:
                pastsort.warm()
            except Exception:  # numpy sorts the buffer instead
                log.exception("the compiled sort of the buffer of the past could not be loaded")
        except Exception:  # the first write into blocks loads it, or says why it cannot
            log.exception("the compiled block codec could not be loaded")
        finally:
            self.codec_loaded.set()


WRITE_PATH = CompiledLoad()  # the process's


class LineParsers:
    def __init__(self, compiled: CompiledLoad = WRITE_PATH) -> None:
        self.compiled = compiled
        self._serving = False  # a server's parsers: `start` makes them so

    def start(self) -> None:
        """Parse as a server does from now on: with the compiled scan once it is loaded, whose
        loading begins now, in a thread."""
        self._serving = True
        parse_lines("warm value=1 0")  # the imports: not in the first write
        self.compiled.ready()

    def parse(self, body: str, precision: str) -> ParsedBatch:
        return parse_lines(body, precision, scan=self._scanning())

    def parse_joined(self, bodies: Sequence[str], precision: str
                     ) -> tuple[ParsedBatch, list[int]] | None:
        """`tsq.lineprotocol.parse_joined`: None until the compiled scan is loaded."""
        return parse_joined(bodies, precision, scan=self._scanning())

    def _scanning(self) -> bool:
        return not self._serving or self.compiled.ready()

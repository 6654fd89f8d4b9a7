"""The server's log lines on stderr: text for people, or one JSON object a line for collectors.

Plain `logging`: every module logs to `logging.getLogger(__name__)` and this module only decides
where lines go and how they look, so libraries' loggers (uvicorn's, APScheduler's) take the same
path. Fields passed as `extra={...}` become keys of a JSON line (and stay out of the text one,
whose message already says them).
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

import orjson

__all__ = ["JsonFormatter", "setup"]

# What every LogRecord has; anything else on a record came from `extra=`.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime", "taskName"}
# Chatty at INFO about their own machinery (APScheduler: every job added; uvicorn: its startup
# lines and an access line that the API's own request line replaces).
_QUIET = {"apscheduler": logging.WARNING, "uvicorn": logging.WARNING,
          "uvicorn.error": logging.WARNING, "uvicorn.access": logging.WARNING}
TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """`{"time", "level", "logger", "message", …extra fields, "exception"?}` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        data.update((key, value) for key, value in vars(record).items()
                    if key not in _STANDARD and not key.startswith("_"))
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(data, default=str).decode()


def setup(level: str = "info", fmt: str = "text", stream: TextIO | None = None) -> None:
    """Send tsq's lines at `level` and up (and other libraries' warnings) to `stream`."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    logging.getLogger("tsq").setLevel(level.upper())
    for name, quiet in _QUIET.items():
        logger = logging.getLogger(name)
        # --log-level debug shows their INFO lines too, except the duplicate access line.
        logger.setLevel(logging.DEBUG if level == "debug" and name != "uvicorn.access"
                        else quiet)
        logger.handlers.clear()
        logger.propagate = True

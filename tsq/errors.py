"""Every error tsq raises on purpose, in one tree.

    TsqError                     anything tsq reports to a user
    ├── ConfigError              bad settings (data dir, database URL, worker limits)
    ├── InvalidLoopFile          a loop file with problems; .problems lists every one of them
    ├── CompileError             a handler that does not parse (file, line, column)
    ├── ScheduleError            a Metronome schedule that does not parse
    ├── TslError                 a TSL query that does not parse, compile or evaluate
    ├── WarpScriptError          a WarpScript script that does not parse or fails (line, col)
    ├── NotFound                 an unknown loop, version or run
    ├── Conflict                 a request that contradicts the current state
    ├── BadRequest               a malformed API request (wrong content type, bad JSON)
    │   └── PayloadTooLarge      a body or value over its size limit
    ├── QueryTooLarge            a query whose answer would hold more points than
    │                            max_query_points (413; .details names the limit)
    ├── QueryTimeout             a query that ran past query_timeout_s (504)
    ├── TooManyRequests          more work queued than a bound allows (429); .retry_after_s
    │                            is when to try again (the API's Retry-After header)
    ├── ServerUnavailable        the CLI could not reach the server it was pointed at
    ├── OutboundRefused          a URL tsq would call (a target, a webhook, a connector) whose
    │                            address the outbound policy refuses (tsq.outbound)
    ├── WorkerError              a worker process could not be started or died unexpectedly
    ├── ConnectorError           a back-end (InfluxDB, Prometheus, …) failed a request; the
    │   │                        message names the connector, its URL and the query
    │   ├── ConnectorUnavailable     refused, timed out, or answered 5xx
    │   ├── ConnectorAuthError       the credentials were refused (401, 403)
    │   ├── ConnectorQueryError      the server refused the query (4xx, or an error in its answer)
    │   ├── ConnectorBadAnswer       an answer tsq cannot read
    │   └── ConnectorUnsupported     the server cannot do it (a delete it has no API for)
    └── HostError                a handler's host call (db.select, Loop.run, …) that failed;
                                 .kind is the error type its promise rejects with

A run that fails (the handler threw, timed out, ran out of memory) is *not* an exception: it is a
run record whose status says how it ended. Exceptions are for requests that cannot be carried out.

Each class carries the HTTP status the API answers with, so the API maps errors by data, not by
a chain of `except` clauses. `to_json` is what the API sends and `from_json` what a client makes
of it again: the same class, message and fields, so an error reads the same over HTTP as locally.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

__all__ = [
    "BadRequest",
    "CompileError",
    "ConfigError",
    "Conflict",
    "ConnectorAuthError",
    "ConnectorBadAnswer",
    "ConnectorError",
    "ConnectorQueryError",
    "ConnectorUnavailable",
    "ConnectorUnsupported",
    "HostError",
    "InvalidLoopFile",
    "NotFound",
    "OutboundRefused",
    "PartialWrite",
    "PayloadTooLarge",
    "Problem",
    "QueryTimeout",
    "QueryTooLarge",
    "ScheduleError",
    "ServerUnavailable",
    "TooManyRequests",
    "TslError",
    "TsqError",
    "WarpScriptError",
    "WorkerError",
]


class TsqError(Exception):
    """Base of every error tsq reports; `details` is extra JSON for API clients."""

    http_status: ClassVar[int] = 500

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = details or {}

    @property
    def type(self) -> str:
        return type(self).__name__

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, "message": self.message, "details": self.details}

    @classmethod
    def from_json(cls, message: str, details: dict[str, Any]) -> TsqError:
        """The error `to_json` described. Classes whose constructor takes other fields than
        `details` override `_from_details`; details that do not fit them (another server
        version) give a plain TsqError with the message as sent, rather than a half-built
        instance whose fields are missing."""
        try:
            return cls._from_details(message, details)
        except (KeyError, TypeError, ValueError):
            return TsqError(message, details=details)

    @classmethod
    def _from_details(cls, message: str, details: dict[str, Any]) -> TsqError:
        return cls(message, details=details)


class ConfigError(TsqError):
    http_status = 500


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a loop file, located as precisely as the file allows."""

    file: str
    line: int | None
    col: int | None
    path: str
    message: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}:{self.col}"
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"

    def to_json(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "line": self.line,
            "col": self.col,
            "path": self.path,
            "message": self.message,
        }


class InvalidLoopFile(TsqError):
    http_status = 422

    def __init__(self, problems: list[Problem]) -> None:
        count = len(problems)
        head = f"the loop file has {count} problem{'s' if count != 1 else ''}; nothing was deployed"
        super().__init__(
            head + "\n" + "\n".join(f"  {p}" for p in problems),
            details={"problems": [p.to_json() for p in problems]},
        )
        self.problems = problems

    @classmethod
    def _from_details(cls, message: str, details: dict[str, Any]) -> TsqError:
        return cls([Problem(**problem) for problem in details["problems"]])


class CompileError(TsqError):
    """A handler that does not compile. line and col are 1-based."""

    http_status = 422

    def __init__(self, message: str, *, file: str, line: int | None, col: int | None) -> None:
        where = file if line is None else f"{file}:{line}:{col}"
        super().__init__(f"{where}: {message}",
                         details={"file": file, "line": line, "col": col, "reason": message})
        self.reason = message
        self.file = file
        self.line = line
        self.col = col

    @classmethod
    def _from_details(cls, message: str, details: dict[str, Any]) -> TsqError:
        return cls(details["reason"], file=details["file"], line=details["line"],
                   col=details["col"])


class TslError(TsqError):
    """A TSL query that cannot be parsed, compiled for a target or evaluated. The message is the
    reference implementation's where it has one ("Cannot parsed query: … at line L, char C");
    `line` and `char` are 1-based, and `caret` shows the source line with a ^ under the place."""

    http_status = 400

    def __init__(self, message: str, *, line: int | None = None, char: int | None = None,
                 caret: str = "") -> None:
        super().__init__(message, details={"line": line, "char": char, "caret": caret})
        self.line = line
        self.char = char
        self.caret = caret

    @classmethod
    def _from_details(cls, message: str, details: dict[str, Any]) -> TsqError:
        return cls(message, line=details["line"], char=details["char"], caret=details["caret"])

    @property
    def with_place(self) -> str:
        """The message, then the source line with its caret when there is one."""
        return f"{self.message}\n{self.caret}" if self.caret else self.message


class WarpScriptError(TsqError):
    """A WarpScript script that does not parse or that fails as it runs. `line` and `col` are
    1-based and place the word at fault (None when no word is: a limit hit between words).
    `kind` says whose the failure is: "syntax" (the text), "fault" (the VM refused a word: an
    empty stack, a wrong type, an unknown variable), "limit" (MAXOPS, MAXLOOP, the run's time,
    a size cap) or "fail" (the script's own FAIL, ASSERT or MSGFAIL)."""

    http_status = 400

    def __init__(self, message: str, *, line: int | None = None, col: int | None = None,
                 kind: str = "fault", word: str = "") -> None:
        where = f" (line {line}, col {col})" if line is not None else ""
        super().__init__(f"{message}{where}",
                         details={"line": line, "col": col, "kind": kind, "word": word,
                                  "reason": message})
        self.reason = message
        self.line = line
        self.col = col
        self.kind = kind
        self.word = word

    @classmethod
    def _from_details(cls, message: str, details: dict[str, Any]) -> TsqError:
        return cls(details["reason"], line=details["line"], col=details["col"],
                   kind=details["kind"], word=details["word"])


class ScheduleError(TsqError):
    http_status = 422


class NotFound(TsqError):
    http_status = 404


class Conflict(TsqError):
    http_status = 409


class Unauthorized(TsqError):
    """No token, or one tsq does not know (mistyped, revoked): the API answers 401."""

    http_status = 401


class Forbidden(TsqError):
    """A valid token without the role or the project the request needs: 403."""

    http_status = 403


class BadRequest(TsqError):
    http_status = 400


class PartialWrite(BadRequest):
    """Some lines of a write were bad: the good ones were written, the bad ones are listed."""


class PayloadTooLarge(BadRequest):
    http_status = 413


class QueryTooLarge(TsqError):
    """A query whose answer would pass `max_query_points`. Not a BadRequest: the TSL evaluator
    turns those into TslErrors (400), and this one must keep its 413 and its details."""

    http_status = 413


class QueryTimeout(TsqError):
    http_status = 504


class TooManyRequests(TsqError):
    """More work waiting than `details["limit"]` allows; the API answers 429 with a
    Retry-After of `retry_after_s`, an estimate of when room frees up."""

    http_status = 429

    def __init__(self, message: str, *, retry_after_s: int,
                 details: dict[str, Any] | None = None) -> None:
        super().__init__(message, details={**(details or {}), "retry_after_s": retry_after_s})
        self.retry_after_s = retry_after_s

    @classmethod
    def _from_details(cls, message: str, details: dict[str, Any]) -> TsqError:
        return cls(message, retry_after_s=int(details["retry_after_s"]), details=details)


class ServerUnavailable(TsqError):
    http_status = 503


class OutboundRefused(TsqError):
    """A loopback, private, link-local, … destination that `outbound_allow` does not name."""

    http_status = 403


class WorkerError(TsqError):
    http_status = 500


class ConnectorError(TsqError):
    """A back-end's failure. Never carries a secret: URLs are shown without credentials."""

    http_status = 502


class ConnectorUnavailable(ConnectorError):
    http_status = 503


class ConnectorAuthError(ConnectorError):
    http_status = 502


class ConnectorQueryError(ConnectorError):
    http_status = 400


class ConnectorBadAnswer(ConnectorError):
    http_status = 502


class ConnectorUnsupported(ConnectorError):
    http_status = 501


class HostError(TsqError):
    """A host call that failed. A handler's promise rejects with an error of type `kind`
    (TypeError, PartialWrite, LoopNotFound, …) and this message; `tsq.hostcalls` maps every
    other error to a kind, so this is the one form a failed call takes across the pipe."""

    http_status = 500

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message, details={"kind": str(kind)})
        self.kind = str(kind)

    @classmethod
    def _from_details(cls, message: str, details: dict[str, Any]) -> TsqError:
        return cls(str(details["kind"]), message)

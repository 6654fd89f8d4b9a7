"""What a deployed loop is: its spec, as validated from a loop file, and its handler source.

A `LoopSpec` is plain data (JSON in the store). Its version id is a content hash of the spec and
the handler source, so deploying the same thing twice creates nothing new.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson

from tsq.masking import mask_spec

__all__ = [
    "DEFAULT_MAX_CONCURRENCY",
    "DEFAULT_MEMORY_MB",
    "DEFAULT_TIMEOUT_S",
    "URL_RUNTIME",
    "EventSpec",
    "History",
    "LoopSpec",
    "Retries",
    "version_id",
]

DEFAULT_TIMEOUT_S = 30.0
DEFAULT_MEMORY_MB = 128
DEFAULT_MAX_CONCURRENCY = 1
URL_RUNTIME = "http"  # the runtime of a loop whose `target:` is a URL instead of a handler


@dataclass(frozen=True)
class EventSpec:
    name: str
    rate: str | None = None  # a Metronome schedule
    after: str | None = None  # run when that loop succeeds, for the same window
    params: dict[str, Any] = field(default_factory=dict)
    target: str | None = None  # a URL POSTed instead of running the handler


@dataclass(frozen=True)
class Retries:
    max: int = 0
    backoff_s: float = 10.0


DAY_MS = 86_400_000


@dataclass(frozen=True)
class History:
    """How long a loop's runs are kept (a loop file's `history:`; tsq.history sweeps)."""

    keep_ms: int = 30 * DAY_MS  # a run that succeeded, after it ended
    keep_failed_ms: int = 90 * DAY_MS  # a run that ended any other way
    max_artifacts_mb: int = 512  # the loop's artifacts, all runs together

    def kept_for_ms(self, status: str) -> int:
        return self.keep_ms if status == "success" else self.keep_failed_ms

    def to_json(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True)
class LoopSpec:
    project: str
    name: str
    runtime: str
    handler: str  # the handler's file name, relative to the loop file
    timeout_s: float = DEFAULT_TIMEOUT_S
    memory_mb: int = DEFAULT_MEMORY_MB
    connector: dict[str, Any] = field(default_factory=lambda: {"type": "embedded"})
    environment: dict[str, str] = field(default_factory=dict)
    secrets: frozenset[str] = frozenset()  # names in `environment` never shown back
    retries: Retries = Retries()
    catchup: str = "epsilon"
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY  # scheduled runs of this loop at once
    notify: dict[str, str] = field(default_factory=dict)
    target: str | None = None  # a URL POSTed instead of running a handler
    events: tuple[EventSpec, ...] = ()
    rollup: dict[str, Any] | None = None  # the `rollup:` shorthand this TSL loop came from
    retention: dict[str, Any] | None = None  # a retention step (tsq.retention)
    # Every connector its loop file declares, by name: `{connector: "name"}` in a host call
    connectors: dict[str, dict[str, Any]] = field(default_factory=dict)
    # The loop file's `history:` (its own over the file's), as History.to_json; None: defaults
    history: dict[str, int] | None = None

    def history_policy(self) -> History:
        return History(**self.history) if self.history else History()

    def event(self, name: str) -> EventSpec | None:
        return next((event for event in self.events if event.name == name), None)

    def target_of(self, event: str) -> str | None:
        """The URL a run of `event` POSTs to, or None when it runs the handler."""
        spec = self.event(event)
        return (spec.target if spec is not None else None) or self.target

    def to_json(self, *, reveal_secrets: bool = False) -> dict[str, Any]:
        """The spec as JSON; every secret-bearing field (tsq.masking) masked unless
        `reveal_secrets` (for the store and the runs themselves, never for a reader)."""
        data = asdict(self)
        data["secrets"] = sorted(self.secrets)
        return data if reveal_secrets else mask_spec(data)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LoopSpec:
        return cls(
            **{
                **data,
                "secrets": frozenset(data.get("secrets", ())),
                "retries": Retries(**data.get("retries", {})),
                "events": tuple(EventSpec(**event) for event in data.get("events", ())),
            }
        )


def version_id(spec: LoopSpec, handler_source: str, secret_key: bytes) -> str:
    """sha256 of the canonical spec + source. Each secret enters as its HMAC under `secret_key` (the
    data directory's, tsq.datafiles): a new secret is a new version, yet the id, which anyone
    who may list loops sees, cannot be used to guess the secret. A spec without secrets has
    the id it had before secrets were keyed."""
    digest = hashlib.sha256()
    canonical = mask_spec(spec.to_json(reveal_secrets=True), lambda secret: "hmac:" + hmac.new(
        secret_key, secret.encode(), hashlib.sha256).hexdigest())
    for key in ("connectors", "history"):  # hashed only when set: earlier versions keep their ids
        if not canonical[key]:
            del canonical[key]
    digest.update(orjson.dumps(canonical, option=orjson.OPT_SORT_KEYS))
    digest.update(b"\0")
    digest.update(handler_source.encode())
    return digest.hexdigest()

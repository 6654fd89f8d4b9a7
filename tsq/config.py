"""Settings, from arguments first, then `TSQ_*` environment variables, then defaults."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from tsq import datadir
from tsq.errors import ConfigError

__all__ = ["PipelineLimits", "Settings"]


@dataclass(frozen=True)
class PipelineLimits:
    max_depth: int = 8  # loops calling loops, counting the first
    max_steps: int = 1000  # runs in one pipeline: a loop calling loops in a loop stops here


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    database_url: str
    workers: int = 2
    worker_memory_mb: int = 2048  # RLIMIT_DATA of each worker process
    max_body_bytes: int = 16 << 20  # largest API request body
    max_result_bytes: int = 1 << 20  # largest JSON result of a run
    pipeline_limits: PipelineLimits = PipelineLimits()

    @classmethod
    def load(cls, data_dir: str | Path | None = None, database_url: str | None = None) -> Settings:
        env = os.environ
        directory = datadir.locate(data_dir)
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot create the data directory {directory}: {exc.strerror}; "
                              f"set --data-dir or TSQ_DATA_DIR to a writable place") from None
        url = database_url or env.get("TSQ_DATABASE_URL") or f"sqlite:///{directory / 'tsq.db'}"
        return cls(
            data_dir=directory,
            database_url=url,
            workers=_int_env("TSQ_WORKERS", 2, 1, 256),
            worker_memory_mb=_int_env("TSQ_WORKER_MEMORY_MB", 2048, 256, 1 << 20),
            max_body_bytes=_int_env("TSQ_MAX_BODY_MB", 16, 1, 4096) << 20,
            max_result_bytes=_int_env("TSQ_MAX_RESULT_KB", 1024, 1, 1 << 20) << 10,
            pipeline_limits=PipelineLimits(
                max_depth=_int_env("TSQ_PIPELINE_MAX_DEPTH", 8, 1, 100),
                max_steps=_int_env("TSQ_PIPELINE_MAX_STEPS", 1000, 1, 1_000_000)),
        )

    @property
    def server_file(self) -> Path:
        """Where a running `tsq serve` writes its URL, so the CLI can find it."""
        return self.data_dir / "server.json"


def _int_env(name: str, default: int, low: int, high: int) -> int:
    text = os.environ.get(name)
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise ConfigError(f"{name}={text!r} is not a whole number") from None
    if not low <= value <= high:
        raise ConfigError(f"{name}={value} is out of range; expected {low} to {high}")
    return value

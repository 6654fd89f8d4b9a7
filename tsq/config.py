"""Settings: a command-line flag, else a `TSQ_*` environment variable, else the config file, else
the default (docs/configuration.md).

The config file is `--config PATH` of `tsq serve`, else `TSQ_CONFIG`, else `tsq.toml` in the data
directory when there is one. Every setting is one `Option` below, which holds its only default,
its environment variable (`TSQ_` + the key in capitals) and its flag (`--` + the key with
dashes), so the file, the environment, the flags and the docs cannot drift apart.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tsq import datadir, datafiles
from tsq.errors import ConfigError

__all__ = ["CONFIG_FILE", "OPTIONS", "ROLES", "ClusterSettings", "Option", "PipelineLimits",
           "Settings", "WorkLimits"]

CONFIG_FILE = "tsq.toml"  # looked for in the data directory
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("text", "json")
AUTH_MODES = ("tokens", "off")


@dataclass(frozen=True)
class Option:
    """One setting of tsq.toml; `shift` scales it into Settings (MiB or KiB → bytes)."""

    key: str
    default: int | str | None
    meaning: str
    low: int = 0
    high: int = 0
    choices: tuple[str, ...] = ()
    shift: int = 0

    @property
    def env(self) -> str:
        return f"TSQ_{self.key.upper()}"

    @property
    def flag(self) -> str:
        return f"--{self.key.replace('_', '-')}"

    @property
    def expected(self) -> str:
        """What a valid value looks like, for error messages."""
        if self.choices:
            return f"one of {', '.join(self.choices)}"
        if isinstance(self.default, int):
            return f"a whole number from {self.low} to {self.high}"
        return "a string"

    def check(self, value: object, where: str) -> int | str:
        """`value` if it is valid; ConfigError naming `where` (the file and key, the variable or
        the flag) and what is expected if not."""
        wanted = int if isinstance(self.default, int) else str
        if self.choices and isinstance(value, str):
            value = value.lower()
        # bool is an int to Python, but `workers = true` is a mistake, not 1.
        if not isinstance(value, wanted) or isinstance(value, bool):
            raise ConfigError(f"{where} = {value!r} is not valid; expected {self.expected}")
        if isinstance(value, int) and not self.low <= value <= self.high:
            raise ConfigError(f"{where} = {value} is out of range; expected {self.expected}")
        if isinstance(value, str) and self.choices and value not in self.choices:
            raise ConfigError(f"{where} = {value!r} is not valid; expected {self.expected}")
        return value

    def parse_env(self, text: str) -> int | str:
        if not isinstance(self.default, int):
            return self.check(text, self.env)
        try:
            number = int(text)
        except ValueError:
            raise ConfigError(f"{self.env}={text!r} is not valid; expected {self.expected}"
                              ) from None
        return self.check(number, self.env)


OPTIONS: tuple[Option, ...] = (
    Option("host", "127.0.0.1", "the address `tsq serve` listens on"),
    Option("port", 8080, "the port `tsq serve` listens on (0: any free port)", 0, 65535),
    Option("allowed_hosts", "", "host names the API answers to besides loopback and --host, "
                                "comma-separated ('*': any)"),
    Option("outbound_allow", "", "loopback, private and link-local destinations loops may call "
                                 "(CIDRs, host or host:port, comma-separated; '*': any)"),
    Option("auth", "tokens", "API requests need a token (docs/security.md); 'off' only on a "
                             "loopback address", choices=AUTH_MODES),
    Option("workers", 2, "worker processes running handlers", 1, 256),
    Option("worker_memory_mb", 2048, "memory a worker process may add after start-up, MiB",
           256, 1 << 20),
    Option("max_body_mb", 16, "largest API request body, MiB", 1, 4096, shift=20),
    Option("max_result_kb", 1024, "largest JSON result of a run, KiB", 1, 1 << 20, shift=10),
    Option("query_timeout_s", 30, "seconds an ad-hoc query (/v1/query, /api/v0/exec) may run "
                                  "before it is stopped and answered 504", 1, 3600),
    Option("max_query_points", 1_000_000, "points an ad-hoc query's answer may hold; a larger "
                                          "one is refused with 413", 1, 1_000_000_000),
    Option("max_queued_queries", 100, "ad-hoc queries waiting for a query thread; past it a "
                                      "query is refused with 429", 1, 100_000),
    Option("max_queued_runs", 1000, "runs by hand (POST /v1/loops/{name}/run) waiting for a "
                                    "worker; past it a run is refused with 429", 1, 1_000_000),
    Option("max_project_runs", 0, "runs by hand of one project in progress (running or "
                                  "waiting); past it the project's runs are refused with 429 "
                                  "(0: no limit)", 0, 1_000_000),
    Option("project_runs_per_minute", 0, "runs by hand of one project a minute, in bursts of "
                                         "up to a minute's; past it 429 (0: no limit)",
           0, 100_000_000),
    Option("project_points_per_s", 0, "points one project may write a second, in bursts of "
                                      "up to 10 s' worth; past it 429 (0: no limit)",
           0, 1_000_000_000),
    Option("project_query_s_per_minute", 0, "seconds of ad-hoc query time one project may use "
                                            "a minute, in bursts of up to a minute's; past it "
                                            "429 (0: no limit)", 0, 1_000_000),
    Option("max_concurrent_writes", 64, "writes (line protocol, GTS) being stored at once; "
                                        "past it a write is refused with 429", 1, 100_000),
    Option("pipeline_max_depth", 8, "loops calling loops, counting the first", 1, 100),
    Option("pipeline_max_steps", 1000, "runs in one pipeline", 1, 1_000_000),
    Option("log_level", "info", "the least severe server log lines shown",
           choices=LOG_LEVELS),
    Option("log_format", "text", "server log lines as text or as JSON objects",
           choices=LOG_FORMATS),
    Option("database_url", None, "where loops and runs are kept (SQLAlchemy URL; default: "
                                 "SQLite tsq.db in the data directory)"),
    Option("store_head_minutes", 120, "minutes of the newest points the embedded store keeps "
                                      "in memory (its head, docs/store.md) beside its file",
           0, 10080),
    Option("store_past_points", 524288, "points written behind the embedded store's head "
                                        "(into the past) held in memory, logged, before they "
                                        "go into its table together (0: each write at once)",
           0, 100_000_000),
    Option("store_cache_mb", 256, "MiB of blocks of recent reads the embedded store keeps in "
                                  "memory for the reads after them (0: none)", 0, 1_048_576),
    Option("cluster", "", "the NATS JetStream URL of the cluster this process joins "
                          "(docs/scale-out.md; empty: tsq is this one process)"),
    Option("role", "api,scheduler,worker", "what this cluster process does, comma-separated: "
                                           "api, scheduler, worker"),
    Option("store_url", "", "in a cluster, the URL of the api process whose embedded store "
                            "this process reads and writes (empty: its own)"),
    Option("cluster_name", "tsq", "the prefix of the cluster's NATS streams and buckets"),
    Option("cluster_ack_wait_s", 30, "seconds a silent worker process keeps its runs before "
                                     "another takes them over", 1, 3600),
    Option("cluster_max_deliver", 3, "deliveries of a run's message before a run whose "
                                     "workers keep dying is recorded interrupted", 2, 100),
    Option("cluster_lease_ttl_s", 3, "seconds after which a silent leading scheduler is "
                                     "replaced", 1, 60),
)
ROLES = ("api", "scheduler", "worker")
BY_KEY = {option.key: option for option in OPTIONS}


@dataclass(frozen=True)
class WorkLimits:
    """The bounds on the API's work (docs/configuration.md, "Bounded work")."""

    timeout_s: int = 30  # an ad-hoc query's deadline
    max_points: int = 1_000_000  # points in an ad-hoc query's answer
    max_queued_queries: int = 100  # ad-hoc queries waiting for a query thread
    max_queued_runs: int = 1000  # runs by hand waiting for a worker
    max_project_runs: int = 0  # runs by hand of one project in progress (0: no limit)
    project_runs_per_minute: int = 0  # runs by hand of one project a minute (0: no limit)
    project_points_per_s: int = 0  # points one project writes a second (0: no limit)
    project_query_s_per_minute: int = 0  # query seconds one project uses a minute (0: no limit)
    max_concurrent_writes: int = 64  # writes being stored at once


@dataclass(frozen=True)
class PipelineLimits:
    max_depth: int  # loops calling loops, counting the first
    max_steps: int  # runs in one pipeline: a loop calling loops in a loop stops here


@dataclass(frozen=True)
class ClusterSettings:
    """How this process takes part in a cluster (docs/scale-out.md)."""

    url: str  # NATS
    roles: frozenset[str]
    store_url: str  # "": this process owns the embedded store
    name: str
    ack_wait_s: int
    max_deliver: int
    lease_ttl_s: int


@dataclass(frozen=True)
class Settings:
    """Resolved settings; the defaults are those of OPTIONS (Settings.load applies them)."""

    data_dir: Path
    database_url: str
    workers: int
    worker_memory_mb: int  # RLIMIT_DATA of each worker process, beyond its size at start-up
    max_body_bytes: int  # largest API request body
    max_result_bytes: int  # largest JSON result of a run
    work_limits: WorkLimits
    pipeline_limits: PipelineLimits
    host: str
    port: int
    allowed_hosts: str
    outbound_allow: str
    auth: str  # "tokens": every API request but the health checks needs one; "off": none
    log_level: str
    log_format: str
    config_file: Path | None = None  # the file the settings were read from, if any
    cluster: ClusterSettings | None = None  # None: one process, no cluster
    store_head_minutes: int = 120  # the span the embedded store keeps in memory
    store_past_points: int = 524288  # points behind the head the embedded store holds back
    store_cache_mb: int = 256  # blocks of recent reads the embedded store keeps in memory

    @classmethod
    def load(cls, data_dir: str | Path | None = None, database_url: str | None = None, *,
             config: str | Path | None = None,
             flags: Mapping[str, int | str | None] | None = None) -> Settings:
        """Settings from `flags` (keys of OPTIONS; None: not given), the environment, the
        config file and the defaults, in that order."""
        env = os.environ
        directory = _data_dir(data_dir)
        path = _config_path(config or env.get("TSQ_CONFIG") or None, directory)
        values = _resolve({**(flags or {}), "database_url": database_url}, env,
                          _read_file(path) if path else {})
        number = {option.key: int(value) for option in OPTIONS
                  if isinstance(value := values[option.key], int)}
        text = {option.key: value for option in OPTIONS
                if isinstance(value := values[option.key], str)}
        return cls(
            data_dir=directory,
            database_url=text.get("database_url") or f"sqlite:///{directory / 'tsq.db'}",
            workers=number["workers"],
            worker_memory_mb=number["worker_memory_mb"],
            max_body_bytes=number["max_body_mb"] << BY_KEY["max_body_mb"].shift,
            max_result_bytes=number["max_result_kb"] << BY_KEY["max_result_kb"].shift,
            work_limits=WorkLimits(timeout_s=number["query_timeout_s"],
                                     max_points=number["max_query_points"],
                                     max_queued_queries=number["max_queued_queries"],
                                     max_queued_runs=number["max_queued_runs"],
                                     max_project_runs=number["max_project_runs"],
                                     project_runs_per_minute=number["project_runs_per_minute"],
                                     project_points_per_s=number["project_points_per_s"],
                                     project_query_s_per_minute=number[
                                         "project_query_s_per_minute"],
                                     max_concurrent_writes=number["max_concurrent_writes"]),
            pipeline_limits=PipelineLimits(max_depth=number["pipeline_max_depth"],
                                           max_steps=number["pipeline_max_steps"]),
            host=text["host"],
            port=number["port"],
            allowed_hosts=text["allowed_hosts"],
            outbound_allow=text["outbound_allow"],
            auth=_auth(text["auth"], text["host"]),
            log_level=text["log_level"],
            log_format=text["log_format"],
            config_file=path,
            cluster=_cluster(text, number),
            store_head_minutes=number["store_head_minutes"],
            store_past_points=number["store_past_points"],
            store_cache_mb=number["store_cache_mb"],
        )

    @property
    def server_file(self) -> Path:
        """Where a running `tsq serve` writes its URL, so the CLI can find it."""
        return self.data_dir / "server.json"

    @property
    def lock_file(self) -> Path:
        """Locked by the running `tsq serve` (and holding its pid): one server per directory."""
        return self.data_dir / "server.lock"


def _auth(mode: str, host: str) -> str:
    """Tokens may be off only where no other machine can connect."""
    if mode == "off" and not _loopback(host):
        raise ConfigError(f"auth = 'off' with host = {host!r} would let anyone who reaches "
                          f"{host} deploy code and read every project; listen on 127.0.0.1, "
                          f"or keep auth = 'tokens' (TSQ_AUTH, --auth)")
    return mode


def _loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a name: it may resolve anywhere
        return False


def _cluster(text: Mapping[str, str], number: Mapping[str, int]) -> ClusterSettings | None:
    if not text["cluster"]:
        return None
    roles = frozenset(role.strip().lower() for role in text["role"].split(",") if role.strip())
    unknown = sorted(roles - set(ROLES))
    if unknown or not roles:
        raise ConfigError(f"role = {text['role']!r} is not valid; expected a comma-separated "
                          f"list of {', '.join(ROLES)}")
    if not text["cluster"].startswith(("nats://", "tls://")):
        raise ConfigError(f"cluster = {text['cluster']!r} is not a NATS URL; expected "
                          f"nats://HOST:4222")
    return ClusterSettings(url=text["cluster"], roles=roles, store_url=text["store_url"],
                           name=text["cluster_name"], ack_wait_s=number["cluster_ack_wait_s"],
                           max_deliver=number["cluster_max_deliver"],
                           lease_ttl_s=number["cluster_lease_ttl_s"])


def _data_dir(given: str | Path | None) -> Path:
    directory = datadir.locate(given)
    try:
        datafiles.private_directory(directory)
    except OSError as exc:
        raise ConfigError(f"cannot create the data directory {directory}: {exc.strerror}; "
                          f"set --data-dir or TSQ_DATA_DIR to a writable place") from None
    return directory


def _config_path(given: str | Path | None, directory: Path) -> Path | None:
    """The file named by --config or TSQ_CONFIG (which must exist), else the data directory's
    tsq.toml if there is one."""
    if given is None:
        default = directory / CONFIG_FILE
        return default if default.is_file() else None
    path = Path(given).expanduser()
    if not path.is_file():
        raise ConfigError(f"the config file {path} does not exist (named by --config or "
                          f"TSQ_CONFIG)")
    return path


def _read_file(path: Path) -> dict[str, int | str]:
    """The settings of a TOML file, each checked; ConfigError naming the file and key if not."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the config file {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    return {key: _option(path, key).check(value, f"{path}: {key}")
            for key, value in data.items()}


def _option(path: Path, key: str) -> Option:
    option = BY_KEY.get(key)
    if option is None:
        close = difflib.get_close_matches(key, BY_KEY, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ConfigError(f"{path}: unknown key {key!r}; {hint}the keys are "
                          f"{', '.join(BY_KEY)}")
    return option


def _resolve(flags: Mapping[str, Any], env: Mapping[str, str],
             file: Mapping[str, int | str]) -> dict[str, int | str | None]:
    values: dict[str, int | str | None] = {}
    for option in OPTIONS:
        flag, text = flags.get(option.key), env.get(option.env)
        if flag is not None:
            values[option.key] = option.check(flag, option.flag)
        elif text:
            values[option.key] = option.parse_env(text)
        elif option.key in file:
            values[option.key] = file[option.key]
        else:
            values[option.key] = option.default
    return values

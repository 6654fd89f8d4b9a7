"""Loop files (`loops.yml`): parse, validate every part, report every problem at once.

A loop file is validated completely before anything is deployed: each problem becomes a
`Problem` with the file, line, column and document path, and `load_loop_file` raises
`InvalidLoopFile` with all of them. The accepted shape is OVH Loops' (`functions: NAME: {handler,
runtime, timeout, environment, events: [- EVENT: {rate, params}]}`) plus tsq's optional keys.
"""

from __future__ import annotations

import difflib
import posixpath
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from tsq import aftergraph, metronome
from tsq.connectors import CONNECTORS, SECRET_KEYS, implemented
from tsq.errors import BadRequest, CompileError, InvalidLoopFile, Problem, ScheduleError
from tsq.handlerpaths import WHAT_IS_RIGHT, outside
from tsq.model import (
    DEFAULT_MAX_CONCURRENCY,
    DEFAULT_MEMORY_MB,
    DEFAULT_TIMEOUT_S,
    URL_RUNTIME,
    EventSpec,
    History,
    LoopSpec,
    Retries,
)
from tsq.runtimes import runtime_for_file, runtime_names
from tsq.selector import parse_selector
from tsq.shorthands import (
    GROUP_AGGREGATES,
    ROLLUP_AGGREGATES,
    SPAN,
    RetentionSpec,
    RollupSpec,
    duration_ms,
    rollup_tsl,
    spec_json,
)
from tsq.yamlpos import DocPath, Positions, YamlSyntaxError, format_path, load

__all__ = ["Deployable", "FileReader", "load_loop_file"]

FileReader = Callable[[str], "str | None"]  # relative path → text, None when missing
Compiler = Callable[[str, str, str], None]  # (runtime, source, file name); raises CompileError
UrlCheck = Callable[[str], "str | None"]  # a URL tsq would call → why it may not (tsq.outbound)

NAME = re.compile(r"[a-z0-9][a-z0-9\-_.]{0,62}")
EVENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9\-_.]{0,62}")
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
DURATION_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
URL = re.compile(r"https?://[^\s/]+(/\S*)?")
SERIES_NAME = re.compile(r"[A-Za-z_:][A-Za-z0-9_:.\-]*")

TOP_KEYS = ("project", "connectors", "history", "functions")
FUNCTION_KEYS = (
    "handler", "runtime", "timeout", "memory", "connector", "environment",
    "retries", "catchup", "max_concurrency", "notify", "target", "events", "description",
    "rollup", "retention", "history",
)
ROLLUP_KEYS = ("from", "to", "span", "aggregate", "by", "late", "offset")
LATE_KEYS = ("within",)
RETENTION_KEYS = ("select", "keep", "covered_by", "lookback")
BODIES = ("handler", "target", "rollup", "retention")  # what a loop does: exactly one of these
EVENT_KEYS = ("rate", "after", "params", "target")
RETRY_KEYS = ("max", "backoff")
HISTORY_KEYS = ("keep", "keep_failed", "max_artifacts_mb")
MAX_ARTIFACTS_MB = 102_400  # 100 GiB
NOTIFY_KEYS = ("webhook",)
CATCHUP_POLICIES = ("none", "epsilon", "all")
CONNECTOR_KEYS = tuple(dict.fromkeys(key for row in CONNECTORS.values() for key in row.keys))
MAX_TIMEOUT_S = 3600.0
MEMORY_RANGE_MB = (16, 4096)
MAX_CONCURRENCY = 64
MAX_HANDLER_BYTES = 1 << 20


@dataclass(frozen=True)
class Deployable:
    """One validated loop, ready to be stored as a version."""

    spec: LoopSpec
    source: str


def load_loop_file(
    text: str,
    file_name: str,
    read: FileReader,
    compile_handler: Compiler,
    deployed_after: Callable[[str], Mapping[str, Iterable[str]]] | None = None,
    check_url: UrlCheck | None = None,
) -> list[Deployable]:
    """Validate a loop file; return its loops or raise InvalidLoopFile listing every problem.

    `deployed_after(project)` maps loops already deployed in the project to the loops they run
    after; it resolves `after:` references and finds cycles that cross files. `check_url` says
    why a URL the loops would call (a target, a webhook, a connector's) is refused, if it is.
    """
    try:
        document, positions = load(text)
    except YamlSyntaxError as exc:
        raise InvalidLoopFile(
            [Problem(file_name, exc.line, exc.col, "", f"not valid YAML: {exc.message}")]
        ) from None
    checker = _Checker(file_name, positions, read, compile_handler, check_url)
    loops = checker.document(document)
    if loops:
        deployed = deployed_after(loops[0].spec.project) if deployed_after else {}
        checker.after_references(loops, dict(deployed))
    if checker.problems:
        raise InvalidLoopFile(checker.problems)
    return loops


class _Checker:
    def __init__(
        self, file_name: str, positions: Positions, read: FileReader, compile_handler: Compiler,
        check_url: UrlCheck | None = None,
    ) -> None:
        self.file_name = file_name
        self.check_url = check_url
        self.positions = positions
        self.read = read
        self.compile_handler = compile_handler
        self.problems: list[Problem] = []
        self.after_paths: dict[str, DocPath] = {}
        for path in positions.duplicates:
            self.report(path, f'duplicate key "{path[-1]}"; each key may appear once', key=True)

    # -- reporting -------------------------------------------------------------------------

    def report(self, path: DocPath, message: str, *, key: bool = False) -> None:
        mark = self.positions.of_key(path) if key else self.positions.of_value(path)
        line, col = mark if mark else (None, None)
        self.problems.append(Problem(self.file_name, line, col, format_path(path), message))

    def mapping(self, value: Any, path: DocPath, allowed: tuple[str, ...]) -> dict[str, Any]:
        """`value` as a mapping with only `allowed` keys; reports and drops anything else."""
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.report(path, f"expected a mapping with keys {', '.join(allowed)}, "
                              f"got {_describe(value)}")
            return {}
        for key in value:
            if key not in allowed:
                self.report((*path, key), _unknown_key(str(key), allowed), key=True)
        return {key: item for key, item in value.items() if key in allowed}

    def string(self, value: Any, path: DocPath, pattern: re.Pattern[str] | None = None,
               hint: str = "") -> str | None:
        if not isinstance(value, str):
            self.report(path, f"expected a string{hint and ' ' + hint}, got {_describe(value)}")
            return None
        if pattern is not None and not pattern.fullmatch(value):
            self.report(path, f'"{value}" is not valid; expected {hint}')
            return None
        return value

    def number(self, value: Any, path: DocPath, low: float, high: float, unit: str) -> float | None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.report(path, f"expected a number of {unit}, got {_describe(value)}")
            return None
        if not low <= value <= high:
            self.report(path, f"{value} is out of range; expected {low:g} to {high:g} {unit}")
            return None
        return float(value)

    # -- the document ----------------------------------------------------------------------

    def document(self, document: Any) -> list[Deployable]:
        if document is None:
            self.report((), "the loop file is empty; it needs a `functions:` mapping")
            return []
        top = self.mapping(document, (), TOP_KEYS)
        project = "default"
        if "project" in top:
            project = self.string(top["project"], ("project",), NAME,
                                  "a name like `monitoring` ([a-z0-9][a-z0-9-_.]*)") or project
        connectors = self.connectors(top.get("connectors"))
        history = self.history(top.get("history"), ("history",), None)
        functions = top.get("functions")
        if not isinstance(functions, dict) or not functions:
            if "functions" in top or isinstance(document, dict):
                self.report(("functions",), "expected a mapping of loop names to loop "
                                            "definitions, e.g. `functions: {my-loop: {handler: "
                                            "my-loop.js}}`")
            return []
        loops = [self.function(project, str(name), body, connectors, history)
                 for name, body in functions.items()]
        return [loop for loop in loops if loop is not None]

    def connectors(self, value: Any) -> dict[str, dict[str, Any]]:
        result: dict[str, dict[str, Any]] = {}
        if value is None:
            return result
        if not isinstance(value, dict):
            self.report(("connectors",), f"expected a mapping of connector names to "
                                         f"definitions, got {_describe(value)}")
            return result
        for name, body in value.items():
            config = self.connector(("connectors", name), body)
            if config is not None:
                result[str(name)] = config
        return result

    def connector(self, path: DocPath, body: Any) -> dict[str, Any] | None:
        """One entry of `connectors:`; None when its type is unknown or not built yet."""
        config = self.mapping(body, path, CONNECTOR_KEYS)
        kind = str(config.get("type"))
        where = (*path, "type") if "type" in config else path
        if kind not in CONNECTORS:
            self.report(where, f"unknown connector type {config.get('type')!r}; expected "
                               f"one of {', '.join(CONNECTORS)}")
            return None
        if CONNECTORS[kind].module is None:
            self.report(where, f"connector type {kind!r} is not available in this version "
                               f"of tsq (available: {', '.join(implemented())}); its loops "
                               f"would not reach {kind}, so nothing is deployed")
            return None
        for required in CONNECTORS[kind].requires:
            if required not in config:
                self.report(path, f'connector type {kind} needs "{required}"')
        either = CONNECTORS[kind].one_of
        if either and not any(key in config for key in either):
            self.report(path, f"connector type {kind} needs one of "
                              f"{', '.join(repr(key) for key in either)}")
        for key, item in config.items():
            if key not in CONNECTORS[kind].keys:
                self.report((*path, key), f"connector type {kind} has no {key!r}; its keys are "
                                          f"{', '.join(CONNECTORS[kind].keys)}", key=True)
            elif key in SECRET_KEYS and isinstance(item, dict):
                if not isinstance(self.mapping(item, (*path, key), ("secret",)).get("secret"),
                                  str):
                    self.report((*path, key), 'expected `{secret: "value"}` with a string')
            elif isinstance(item, bool) or not isinstance(item, str | int | float):
                self.report((*path, key), f"expected a string, got {_describe(item)}")
        if "url" in config:
            self.called_url(config["url"], (*path, "url"))
        return config

    def history(self, value: Any, path: DocPath, base: dict[str, int] | None
                ) -> dict[str, int] | None:
        """`history: {keep: 30d, keep_failed: 90d, max_artifacts_mb: 512}`, key by key over
        `base` (the file's, for a loop's own); None when neither says anything."""
        if value is None:
            return base
        fields = self.mapping(value, path, HISTORY_KEYS)
        policy = dict(base or History().to_json())
        for key in ("keep", "keep_failed"):
            if key in fields and (text := self.span(fields[key], (*path, key))) is not None:
                policy[f"{key}_ms"] = duration_ms(text)
        if "max_artifacts_mb" in fields:
            size = self.number(fields["max_artifacts_mb"], (*path, "max_artifacts_mb"), 1,
                               MAX_ARTIFACTS_MB, "MiB")
            if size is not None:
                policy["max_artifacts_mb"] = int(size)
        return policy

    def function(self, project: str, name: str, body: Any,
                 connectors: dict[str, dict[str, Any]],
                 history: dict[str, int] | None = None) -> Deployable | None:
        path: DocPath = ("functions", name)
        if not NAME.fullmatch(name):
            self.report(path, f'bad loop name "{name}"; expected [a-z0-9][a-z0-9-_.]{{0,62}}',
                        key=True)
        fields = self.mapping(body, path, FUNCTION_KEYS)
        if not isinstance(body, dict):
            return None
        target = self.url(fields, path, "target")
        handler = None
        given = [key for key in BODIES if key in fields]
        if len(given) > 1:
            self.report((*path, given[1]), f"a loop has one of `handler:` (a function), "
                                           f"`target:` (a URL to POST), `rollup:` or "
                                           f"`retention:`; this one has {' and '.join(given)}")
        elif not given:
            self.report(path, "a loop needs `handler:`, the file that holds its function (or "
                              "`target:`, a URL that tsq POSTs to, or a `rollup:` or "
                              "`retention:` shorthand)")
        if "handler" in fields:
            handler = self.handler(fields["handler"], (*path, "handler"))
        runtime: str | None = URL_RUNTIME
        source: str | None = ""
        rollup = retention = None
        if "rollup" in fields:
            runtime, rollup = "rollup", self.rollup(fields["rollup"], (*path, "rollup"))
            source = self.generated(rollup_tsl(rollup), (*path, "rollup")) if rollup else None
        elif "retention" in fields:
            runtime = "retention"
            retention = self.retention(fields["retention"], (*path, "retention"))
        elif target is None:
            runtime = self.runtime(fields, path, handler)
            source = self.handler_source(handler, runtime, (*path, "handler"))
        spec = LoopSpec(
            project=project,
            name=name,
            runtime=runtime or "",
            handler=handler or "",
            timeout_s=self.optional_number(fields, path, "timeout", DEFAULT_TIMEOUT_S,
                                           (0.001, MAX_TIMEOUT_S), "seconds"),
            memory_mb=int(self.optional_number(fields, path, "memory", DEFAULT_MEMORY_MB,
                                               MEMORY_RANGE_MB, "MiB")),
            connector=self.connector_ref(fields, path, connectors),
            connectors={name: {"name": name, **config} for name, config in connectors.items()},
            **self.environment(fields.get("environment"), (*path, "environment")),
            retries=self.retries(fields.get("retries"), (*path, "retries")),
            catchup=self.catchup(fields, path),
            max_concurrency=int(self.optional_number(
                fields, path, "max_concurrency", DEFAULT_MAX_CONCURRENCY, (1, MAX_CONCURRENCY),
                "runs at once")),
            notify=self.notify(fields.get("notify"), (*path, "notify")),
            target=target,
            events=self.events(fields.get("events"), (*path, "events")),
            rollup=spec_json(rollup) if rollup else None,
            retention=spec_json(retention) if retention else None,
            history=self.history(fields.get("history"), (*path, "history"), history),
        )
        if source is None or runtime is None:
            return None
        return Deployable(spec, source)

    def rollup(self, value: Any, path: DocPath) -> RollupSpec | None:
        fields = self.mapping(value, path, ROLLUP_KEYS)
        missing = [key for key in ("from", "to", "span") if key not in fields]
        if missing:
            self.report(path, f"a rollup needs {', '.join(f'`{k}:`' for k in missing)}, e.g. "
                              f"`rollup: {{from: cpu, to: cpu_1m, span: 1m, aggregate: mean, "
                              f"by: [dc]}}`")
            return None
        source = self.selector(fields["from"], (*path, "from"), named=True)
        target = self.string(fields["to"], (*path, "to"), SERIES_NAME,
                             "a series name like cpu_1m")
        span = self.span(fields["span"], (*path, "span"))
        aggregate = str(fields.get("aggregate", "mean"))
        if aggregate not in ROLLUP_AGGREGATES:
            self.report((*path, "aggregate"), _unknown_choice("aggregate", aggregate,
                                                              ROLLUP_AGGREGATES))
        by = None
        if "by" in fields:
            labels = fields["by"]
            if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
                self.report((*path, "by"), f"expected a list of label names like [dc, host], "
                                           f"got {_describe(labels)}")
            else:
                by = tuple(labels)
                if ROLLUP_AGGREGATES.get(aggregate, "") is None:
                    self.report((*path, "aggregate"), (
                        f"{aggregate} cannot be combined across the series of a group; with "
                        f"`by:` use one of {', '.join(GROUP_AGGREGATES)}"))
        late = self.late(fields["late"], (*path, "late")) if "late" in fields else None
        offset = self.span(fields["offset"], (*path, "offset")) if "offset" in fields else None
        if source is None or target is None or span is None or (
                aggregate not in ROLLUP_AGGREGATES):
            return None
        return RollupSpec(source, target, span, aggregate, by, late_within_ms=late,
                          offset_ms=duration_ms(offset) if offset else 0)

    def late(self, value: Any, path: DocPath) -> int | None:
        """`late: {within: 7d}`: how far back late points make a rollup run a window again."""
        fields = self.mapping(value, path, LATE_KEYS)
        if "within" not in fields:
            self.report(path, "late needs `within:`, the horizon, e.g. `late: {within: 7d}`")
            return None
        within = self.span(fields["within"], (*path, "within"))
        return None if within is None else duration_ms(within)

    def retention(self, value: Any, path: DocPath) -> RetentionSpec | None:
        fields = self.mapping(value, path, RETENTION_KEYS)
        missing = [key for key in ("select", "keep") if key not in fields]
        if missing:
            self.report(path, f"a retention needs {', '.join(f'`{k}:`' for k in missing)}, "
                              f"e.g. `retention: {{select: cpu, keep: 7d, covered_by: "
                              f"[cpu-1m]}}`")
            return None
        select = self.selector(fields["select"], (*path, "select"), named=False)
        keep = self.span(fields["keep"], (*path, "keep"))
        covered_by: tuple[str, ...] = ()
        if "covered_by" in fields:
            names = fields["covered_by"]
            if not isinstance(names, list) or not all(isinstance(n, str) and NAME.fullmatch(n)
                                                      for n in names):
                self.report((*path, "covered_by"), f"expected a list of loop names like "
                                                   f"[cpu-1m, cpu-1h], got {_describe(names)}")
            else:
                covered_by = tuple(names)
                for name in names:
                    self.after_paths.setdefault(name, (*path, "covered_by"))
        lookback = self.span(fields["lookback"], (*path, "lookback")) if "lookback" in fields \
            else None
        if select is None or keep is None:
            return None
        keep_ms = duration_ms(keep)
        return RetentionSpec(select, keep_ms, covered_by,
                             duration_ms(lookback) if lookback else 4 * keep_ms)

    def selector(self, value: Any, path: DocPath, *, named: bool) -> str | None:
        """A selector's text if it parses (and, when `named`, has a series name)."""
        text = self.string(value, path, hint='(a selector like cpu or cpu{dc="gra"})')
        if text is None:
            return None
        try:
            unnamed = parse_selector(text).name is None
        except BadRequest as exc:
            self.report(path, exc.message)
            return None
        if named and unnamed:
            self.report(path, f"{text!r} needs a series name, like cpu")
            return None
        return text

    def generated(self, source: str, path: DocPath) -> str | None:
        """A shorthand's generated TSL, compiled now so that a problem shows at deploy."""
        try:
            self.compile_handler("rollup", source, "rollup")
        except CompileError as exc:
            self.report(path, f"the rollup's query does not compile: {exc.reason}\n{source}")
            return None
        return source

    def span(self, value: Any, path: DocPath) -> str | None:
        return self.string(str(value) if isinstance(value, int | float) else value, path,
                           SPAN, 'a duration like "1m", "1h", "7d" or "2w"')

    def runtime(self, fields: dict[str, Any], path: DocPath, handler: str | None) -> str | None:
        known = runtime_names()
        if "runtime" in fields:
            runtime = fields["runtime"]
            if runtime not in known:
                self.report((*path, "runtime"), _unknown_choice("runtime", runtime, known))
                return None
            return str(runtime)
        if handler is None:
            return None
        inferred = runtime_for_file(handler)
        if inferred is None:
            self.report((*path, "handler"), f'cannot tell the runtime of "{handler}" from its '
                                            f"extension; set `runtime:` to one of "
                                            f"{', '.join(known)}")
        elif inferred not in known:
            self.report((*path, "handler"), f'"{handler}" is a {inferred} handler, and this '
                                            f"tsq runs only {', '.join(known)} handlers so far")
            return None
        return inferred

    def handler(self, value: Any, path: DocPath) -> str | None:
        """The handler's file name, if it names a file the loop file may name: nothing
        outside the loop file's directory is looked at, or even asked for."""
        handler = self.string(value, path, hint="(a file name)")
        escape = None if handler is None else outside(handler)
        if escape is not None:
            self.report(path, f'handler "{handler}" {escape}; {WHAT_IS_RIGHT}')
            return None
        return handler

    def handler_source(self, handler: str | None, runtime: str | None,
                       path: DocPath) -> str | None:
        if handler is None:
            return None
        source = self.read(handler)
        if source is None:
            self.report(path, f'handler file "{handler}" not found (paths are relative to '
                              f"{posixpath.basename(self.file_name)})")
            return None
        if len(source.encode()) > MAX_HANDLER_BYTES:
            self.report(path, f'handler file "{handler}" is larger than 1 MiB')
            return None
        if runtime is not None:
            try:
                self.compile_handler(runtime, source, handler)
            except CompileError as exc:
                self.problems.append(Problem(exc.file, exc.line, exc.col, format_path(path),
                                             exc.reason))
                return None
        return source

    def optional_number(self, fields: dict[str, Any], path: DocPath, key: str, default: float,
                        bounds: tuple[float, float], unit: str) -> float:
        if key not in fields:
            return default
        value = self.number(fields[key], (*path, key), bounds[0], bounds[1], unit)
        return default if value is None else value

    def connector_ref(self, fields: dict[str, Any], path: DocPath,
                      connectors: dict[str, dict[str, Any]]) -> dict[str, Any]:
        if "connector" not in fields:
            return connectors.get("main", {"type": "embedded"})
        name = fields["connector"]
        if not isinstance(name, str):
            self.report((*path, "connector"), f"expected the name of a connector declared under "
                                              f"`connectors:`, got {_describe(name)}")
            return {"type": "embedded"}
        if name not in connectors:
            declared = sorted(connectors)
            self.report((*path, "connector"), _unknown_choice("connector", name, declared)
                        if declared else f"unknown connector {name!r}; declare it under "
                                         f"`connectors:` first")
            return {"type": "embedded"}
        return {"name": name, **connectors[name]}

    def environment(self, value: Any, path: DocPath) -> dict[str, Any]:
        env: dict[str, str] = {}
        secrets: set[str] = set()
        if value is None:
            return {"environment": env, "secrets": frozenset()}
        if not isinstance(value, dict):
            self.report(path, f"expected a mapping of variable names to values, "
                              f"got {_describe(value)}")
            return {"environment": env, "secrets": frozenset()}
        for key, item in value.items():
            item_path = (*path, key)
            if not ENV_NAME.fullmatch(str(key)):
                self.report(item_path, f'bad variable name "{key}"; '
                                       f"expected [A-Za-z_][A-Za-z0-9_]*", key=True)
            if isinstance(item, dict):
                secret = self.mapping(item, item_path, ("secret",)).get("secret")
                if isinstance(secret, str | int | float) and not isinstance(secret, bool):
                    env[str(key)], secrets = str(secret), secrets | {str(key)}
                else:
                    self.report(item_path, "expected `{secret: \"value\"}` with a string value")
            elif isinstance(item, str | int | float | bool):
                env[str(key)] = str(item).lower() if isinstance(item, bool) else str(item)
            else:
                self.report(item_path, f"expected a string, a number or {{secret: …}}, "
                                       f"got {_describe(item)}")
        return {"environment": env, "secrets": frozenset(secrets)}

    def retries(self, value: Any, path: DocPath) -> Retries:
        fields = self.mapping(value, path, RETRY_KEYS)
        count = self.optional_number(fields, path, "max", 0, (0, 20), "retries")
        backoff = 10.0
        if "backoff" in fields:
            backoff = self.duration(fields["backoff"], (*path, "backoff")) or backoff
        return Retries(max=int(count), backoff_s=backoff)

    def duration(self, value: Any, path: DocPath) -> float | None:
        text = self.string(value, path, DURATION, 'a duration like "500ms", "10s", "5m" or "1h"')
        if text is None:
            return None
        match = DURATION.fullmatch(text)
        assert match is not None
        return float(match.group(1)) * DURATION_SECONDS[match.group(2)]

    def catchup(self, fields: dict[str, Any], path: DocPath) -> str:
        policy = fields.get("catchup", "epsilon")
        if policy not in CATCHUP_POLICIES:
            self.report((*path, "catchup"), _unknown_choice("catchup policy", policy,
                                                            CATCHUP_POLICIES))
            return "epsilon"
        return str(policy)

    def notify(self, value: Any, path: DocPath) -> dict[str, str]:
        url = self.url(self.mapping(value, path, NOTIFY_KEYS), path, "webhook")
        return {"webhook": url} if url else {}

    def url(self, fields: dict[str, Any], path: DocPath, key: str) -> str | None:
        if key not in fields:
            return None
        return self.called_url(fields[key], (*path, key))

    def called_url(self, value: Any, path: DocPath) -> str | None:
        """A URL tsq will call, if it is one and the outbound policy allows it."""
        url = self.string(value, path, URL, "an http(s):// URL")
        refusal = None if url is None or self.check_url is None else self.check_url(url)
        if refusal is not None:
            self.report(path, refusal)
            return None
        return url

    def events(self, value: Any, path: DocPath) -> tuple[EventSpec, ...]:
        if value is None:
            return ()
        if not isinstance(value, list):
            self.report(path, f"expected a list of events (`- name: {{rate: …}}`), "
                              f"got {_describe(value)}")
            return ()
        events = [self.event(item, (*path, index)) for index, item in enumerate(value)]
        seen: set[str] = set()
        for index, event in enumerate(events):
            if event is not None and event.name in seen:
                self.report((*path, index, event.name), f'duplicate event name "{event.name}"',
                            key=True)
            seen |= {event.name} if event else set()
        return tuple(event for event in events if event is not None)

    def event(self, item: Any, path: DocPath) -> EventSpec | None:
        if not isinstance(item, dict) or len(item) != 1:
            self.report(path, "expected one event as `- NAME: {rate: R/…/PT5M/ET1M, params: "
                              "{…}}` or `- NAME: {after: other-loop}`")
            return None
        [(name, body)] = item.items()
        event_path = (*path, name)
        if not EVENT_NAME.fullmatch(str(name)):
            self.report(event_path, f'bad event name "{name}"; expected '
                                    f"[A-Za-z0-9][A-Za-z0-9-_.]{{0,62}}", key=True)
        fields = self.mapping(body, event_path, EVENT_KEYS)
        if ("rate" in fields) == ("after" in fields):
            self.report(event_path, "an event needs exactly one of `rate:` (a schedule) or "
                                    "`after:` (a loop name)")
        rate = self.rate(fields.get("rate"), (*event_path, "rate")) if "rate" in fields else None
        after = None
        if "after" in fields:
            after = self.string(fields["after"], (*event_path, "after"), NAME, "a loop name")
            if after:
                self.after_paths.setdefault(after, (*event_path, "after"))
        params = fields.get("params") or {}
        if not isinstance(params, dict):
            self.report((*event_path, "params"), f"expected a mapping, got {_describe(params)}")
            params = {}
        target = self.url(fields, event_path, "target")
        return EventSpec(name=str(name), rate=rate, after=after, params=params, target=target)

    def rate(self, value: Any, path: DocPath) -> str | None:
        text = self.string(value, path, hint=f"(a schedule like {metronome.EXAMPLE})")
        if text is None:
            return None
        try:
            metronome.parse(text)
        except ScheduleError as exc:
            self.report(path, exc.message)
            return None
        return text

    # -- across loops ----------------------------------------------------------------------

    def after_references(self, loops: list[Deployable],
                         deployed_after: dict[str, Iterable[str]]) -> None:
        graph = {name: set(targets) for name, targets in deployed_after.items()}
        graph.update(aftergraph.follows(loop.spec for loop in loops))
        for loop in loops:
            for event in loop.spec.events:
                if event.after and event.after not in graph:
                    self.report(self._after_path(loop, event), _unknown_choice(
                        "loop", event.after, sorted(graph), what="after"))
        for loop in loops:
            self.coverage(loop, graph)
        for cycle in aftergraph.cycles(graph, [loop.spec.name for loop in loops]):
            first = next(loop for loop in loops if loop.spec.name == cycle[0])
            event = next(e for e in first.spec.events if e.after == cycle[1])
            self.report(self._after_path(first, event),
                        f"`after:` triggers form a cycle: {' → '.join(cycle)}")

    def coverage(self, loop: Deployable, graph: dict[str, set[str]]) -> None:
        """A retention names rollups that exist, and has at least one."""
        retention = loop.spec.retention
        if retention is None:
            return
        path: DocPath = ("functions", loop.spec.name, "retention")
        named = retention["covered_by"]
        for name in named:
            if name not in graph:
                self.report((*path, "covered_by"), _unknown_choice("loop", name, sorted(graph),
                                                                   what="covered_by"))
        if not named and not any(e.after for e in loop.spec.events):
            self.report(path, "a retention deletes only what rollups cover: name them in "
                              "`covered_by: [cpu-1m]`, or run it `after:` a rollup")

    def _after_path(self, loop: Deployable, event: EventSpec) -> DocPath:
        index = loop.spec.events.index(event)
        return ("functions", loop.spec.name, "events", index, event.name, "after")



def _unknown_key(key: str, allowed: tuple[str, ...]) -> str:
    guess = difflib.get_close_matches(key, allowed, n=1)
    hint = f'; did you mean "{guess[0]}"?' if guess else f"; allowed keys: {', '.join(allowed)}"
    return f'unknown key "{key}"{hint}'


def _unknown_choice(kind: str, value: Any, allowed: Iterable[str], what: str = "") -> str:
    options = list(allowed)
    guess = difflib.get_close_matches(str(value), options, n=1)
    hint = f'; did you mean "{guess[0]}"?' if guess else (
        f"; expected one of {', '.join(options)}" if options else "")
    return f"unknown {kind} {value!r}{' in ' + what if what else ''}{hint}"


def _describe(value: Any) -> str:
    if value is None:
        return "nothing"
    kind = {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean",
            int: "a number", float: "a number"}.get(type(value), type(value).__name__)
    shown = repr(value)
    return f"{kind} ({shown[:40]}{'…' if len(shown) > 40 else ''})"

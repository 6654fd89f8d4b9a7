"""YAML loaded into plain Python values, with the line and column of every key and value kept.

PyYAML composes a node tree that carries marks; this module walks it once and returns the
values together with a `Positions` table keyed by document path, so a validator can say
`loops.yml:17:17: functions.x.events[0].agra.rate: …` without carrying nodes around.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

__all__ = ["DocPath", "Positions", "YamlSyntaxError", "format_path", "load"]

DocPath = tuple[str | int, ...]
Mark = tuple[int, int]  # 1-based line and column
# Mappings and lists nested deeper than this are refused: PyYAML composes, and this module
# walks, recursively, and a few hundred levels exhaust Python's stack. A loop file nests a
# handful of levels; event params a few more.
MAX_NESTING = 64


def format_path(path: DocPath) -> str:
    """`("functions", "x", "events", 0, "agra")` → `functions.x.events[0].agra`."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


@dataclass
class Positions:
    values: dict[DocPath, Mark] = field(default_factory=dict)
    keys: dict[DocPath, Mark] = field(default_factory=dict)
    duplicates: list[DocPath] = field(default_factory=list)

    def of_value(self, path: DocPath) -> Mark | None:
        """The value's position, or the nearest enclosing one that is known."""
        for end in range(len(path), -1, -1):
            mark = self.values.get(path[:end])
            if mark is not None:
                return mark
        return None

    def of_key(self, path: DocPath) -> Mark | None:
        return self.keys.get(path) or self.of_value(path)


@dataclass
class YamlSyntaxError(Exception):
    message: str
    line: int | None
    col: int | None


def load(text: str) -> tuple[Any, Positions]:
    """Parse one YAML document; raise YamlSyntaxError with the position of the first error."""
    positions = Positions()
    try:
        _check_nesting(text)
        root = yaml.compose(text, Loader=_Loader)
        # constructing scalars can fail too: an unknown tag such as `!!python/none`
        return (None if root is None else _Walker(positions).value(root, ())), positions
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        reason = " ".join(part for part in (exc.context, exc.problem) if part)
        line, col = (mark.line + 1, mark.column + 1) if mark else (None, None)
        raise YamlSyntaxError(reason or "not valid YAML", line, col) from None
    except yaml.YAMLError as exc:
        raise YamlSyntaxError(str(exc), None, None) from None


_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _check_nesting(text: str) -> None:
    """YamlSyntaxError where a mapping or list opens level MAX_NESTING + 1, found in the
    parser's events, which come without recursion."""
    depth = 0
    for event in yaml.parse(text, Loader=_Loader):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_NESTING:
                mark = event.start_mark
                line, col = (mark.line + 1, mark.column + 1) if mark else (None, None)
                raise YamlSyntaxError(f"mappings and lists nested deeper than {MAX_NESTING} "
                                      f"levels (the limit); a loop file needs a handful",
                                      line, col)
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


class _Walker:
    def __init__(self, positions: Positions) -> None:
        self.positions = positions
        self.constructor = yaml.constructor.SafeConstructor()

    def value(self, node: yaml.Node, path: DocPath) -> Any:
        self.positions.values[path] = _mark(node)
        if isinstance(node, yaml.MappingNode):
            return self.mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            return [self.value(item, (*path, index)) for index, item in enumerate(node.value)]
        return self.constructor.construct_object(node, deep=True)

    def mapping(self, node: yaml.MappingNode, path: DocPath) -> dict[Any, Any]:
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = self.constructor.construct_object(key_node, deep=True)
            key = key if isinstance(key, str | int) else str(key)
            child = (*path, key)
            if key in result:
                self.positions.duplicates.append(child)
            self.positions.keys[child] = _mark(key_node)
            result[key] = self.value(value_node, child)
        return result


def _mark(node: yaml.Node) -> Mark:
    return node.start_mark.line + 1, node.start_mark.column + 1

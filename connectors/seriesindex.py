"""The embedded store's series, indexed by name and by label, as Prometheus and InfluxDB keep
them: an inverted index (a posting per name and per label value: the ids of the series that
have it), so finding a series costs the same with ten series stored or a million.

A selector's exact name and its `=` matchers of a non-empty value each name a posting; the
candidates are their intersection (the smallest first: C set operations, no Python loop per
series), and only the other matchers (`!=`, `=~`, `!~`, and `=""`, which a series without the
label also matches) are checked one candidate at a time, by `Matcher.matches` itself, so the
semantics are the selector's. A selector with no name and no exact matcher checks every series.

Most label values name one series (a host), so a posting of one series is the id itself, not a
set (a million one-element sets would cost 200 MB). Readers take no lock: a writer changes one
dictionary entry or one set at a time, and a reader copies what it reads in one C call.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from tsq.selector import NAME_LABEL, Matcher, Selector

__all__ = ["Entry", "SeriesIndex"]

Posting = int | set[int]  # the ids of the series holding a name or a label value


@dataclass(slots=True)
class Entry:
    id: int
    name: str
    labels: dict[str, str]
    kind: str
    key: str  # the labels as canonical JSON: (name, key) names the series
    newest: int | None = None  # the newest timestamp stored
    # where its stored points may be, rows of its table or blocks: a write over its past
    # looks only there (false only when it is sure none are)
    rows: bool = False
    blocks: bool = False


class SeriesIndex:
    def __init__(self) -> None:
        self._by_key: dict[tuple[str, str], Entry] = {}
        self._by_id: dict[int, Entry] = {}
        self._names: dict[str, Posting] = {}
        self._labels: dict[str, dict[str, Posting]] = {}
        self.version = 0  # goes up with every series added or removed

    def __len__(self) -> int:
        return len(self._by_id)

    def get(self, name: str, key: str) -> Entry | None:
        return self._by_key.get((name, key))

    def by_id(self, sid: int) -> Entry | None:
        return self._by_id.get(sid)

    def entries(self) -> list[Entry]:
        return list(self._by_id.values())

    def add(self, entry: Entry) -> None:
        """Index a new series; its entry first, so a posting never names an unknown id."""
        self.version += 1
        self._by_key[(entry.name, entry.key)] = self._by_id[entry.id] = entry
        _post(self._names, entry.name, entry.id)
        for label, value in entry.labels.items():
            _post(self._labels.setdefault(label, {}), value, entry.id)

    def extend(self, entries: Iterable[Entry]) -> None:
        """Index many series at once, as `add` one at a time does (opening a store): each
        posting gathered as a list first, then made once."""
        self.version += 1
        names: dict[str, list[int]] = {}
        labels: dict[str, dict[str, list[int]]] = {}
        for entry in entries:
            self._by_key[(entry.name, entry.key)] = self._by_id[entry.id] = entry
            names.setdefault(entry.name, []).append(entry.id)
            for label, value in entry.labels.items():
                labels.setdefault(label, {}).setdefault(value, []).append(entry.id)
        _merge(self._names, names)
        for label, values in labels.items():
            _merge(self._labels.setdefault(label, {}), values)

    def remove(self, entry: Entry) -> None:
        """Forget a series `add` indexed (a write rolled back): its postings first."""
        self.version += 1
        _unpost(self._names, entry.name, entry.id)
        for label, value in entry.labels.items():
            values = self._labels[label]
            _unpost(values, value, entry.id)
            if not values:
                del self._labels[label]
        del self._by_key[(entry.name, entry.key)], self._by_id[entry.id]
        # and again once it is gone: a lookup made while it went (the store's `prepare`, off
        # its lock) may have found it, and must find the version changed
        self.version += 1

    def names(self) -> list[str]:
        return sorted(self._names)

    def label_values(self) -> dict[str, list[str]]:
        """Every label key → its values, sorted: what `labels()` of every series gives."""
        return {label: sorted(values) for label, values in sorted(self._labels.copy().items())}

    def matching(self, selector: Selector) -> list[Entry]:
        """The series `selector` matches, in no particular order."""
        required: list[Posting] = []
        rest: list[Matcher] = []
        if selector.name is not None:
            required.append(self._names.get(selector.name, set()))
        for matcher in selector.matchers:
            if matcher.op == "=" and matcher.value:
                postings = self._names if matcher.label == NAME_LABEL else \
                    self._labels.get(matcher.label, {})
                required.append(postings.get(matcher.value, set()))
            else:
                rest.append(matcher)
        candidates = self._entries(_intersection(required))
        if not rest:
            return candidates
        residue = Selector(None, tuple(rest))
        return [e for e in candidates if residue.matches(e.name, e.labels)]

    def _entries(self, ids: Iterable[int] | None) -> list[Entry]:
        if ids is None:
            return list(self._by_id.values())
        found = [self._by_id.get(sid) for sid in ids]  # None: rolled back meanwhile
        return [entry for entry in found if entry is not None]


def _post(postings: dict[str, Posting], value: str, sid: int) -> None:
    held = postings.get(value)
    if held is None:
        postings[value] = sid
    elif isinstance(held, int):
        postings[value] = {held, sid}
    else:
        held.add(sid)


def _merge(postings: dict[str, Posting], gathered: dict[str, list[int]]) -> None:
    for value, ids in gathered.items():
        held = postings.get(value)
        if held is not None:
            ids.extend([held] if isinstance(held, int) else held)
        postings[value] = ids[0] if len(ids) == 1 else set(ids)


def _unpost(postings: dict[str, Posting], value: str, sid: int) -> None:
    held = postings[value]
    if isinstance(held, int):
        del postings[value]
        return
    held.discard(sid)
    if len(held) == 1:
        postings[value] = next(iter(held))


def _size(posting: Posting) -> int:
    return 1 if isinstance(posting, int) else len(posting)


def _intersection(required: list[Posting]) -> Iterable[int] | None:
    """The ids in every posting; None when nothing is required (every series matches)."""
    if not required:
        return None
    smallest, *others = sorted(required, key=_size)
    if isinstance(smallest, int):
        return [smallest] if all(smallest == p if isinstance(p, int) else smallest in p
                                 for p in others) else []
    found = set(smallest)  # a copy, made in one call: a writer may add to the posting
    for posting in others:
        found = found & ({posting} if isinstance(posting, int) else posting)
        if not found:
            break
    return found

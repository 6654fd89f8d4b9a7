"""The series index finds exactly the series a selector's own `matches` accepts, whatever the
matchers (exact, negative, regular expressions, empty values, `__name__`), also after series
were added and removed again."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tsq.connectors.base import label_values
from tsq.connectors.seriesindex import Entry, SeriesIndex
from tsq.selector import NAME_LABEL, Matcher, Selector

NAMES = ("cpu", "mem", "disk")
KEYS = ("dc", "host", NAME_LABEL)
VALUES = ("", "a", "b", "ab", "cpu")
PATTERNS = ("", "a.*", "b|", ".+", "cpu|mem")

label_sets = st.dictionaries(st.sampled_from(KEYS), st.sampled_from(VALUES), max_size=3)
matchers = st.one_of(
    st.builds(Matcher.of, st.sampled_from(KEYS), st.sampled_from(("=", "!=")),
              st.sampled_from(VALUES + NAMES)),
    st.builds(Matcher.of, st.sampled_from(KEYS), st.sampled_from(("=~", "!~")),
              st.sampled_from(PATTERNS)))
selectors = st.builds(Selector, st.none() | st.sampled_from((*NAMES, "nope")),
                      st.lists(matchers, max_size=3).map(tuple))


def indexed(series: list[tuple[str, dict[str, str]]], bulk: int = 0
            ) -> tuple[SeriesIndex, list[Entry]]:
    """The series indexed one at a time, the first `bulk` of them at once (as a store opens)."""
    entries: dict[tuple[str, str], Entry] = {}
    for sid, (name, labels) in enumerate(series, start=1):
        entries.setdefault((name, repr(sorted(labels.items()))),
                           Entry(sid, name, labels, "double", repr(sorted(labels.items()))))
    index, unique = SeriesIndex(), list(entries.values())
    index.extend(unique[:bulk])
    for entry in unique[bulk:]:
        index.add(entry)
    return index, unique


@settings(max_examples=300, deadline=None)
@given(series=st.lists(st.tuples(st.sampled_from(NAMES), label_sets), max_size=25),
       selector=selectors, removed=st.sets(st.integers(1, 25)), bulk=st.integers(0, 25))
def test_the_index_matches_what_the_selector_matches(
        series: list[tuple[str, dict[str, str]]], selector: Selector, removed: set[int],
        bulk: int) -> None:
    index, entries = indexed(series, bulk)
    for entry in entries:
        if entry.id in removed:
            index.remove(entry)
    kept = [e for e in entries if e.id not in removed]
    expected = sorted(e.id for e in kept if selector.matches(e.name, e.labels))
    assert sorted(e.id for e in index.matching(selector)) == expected
    assert index.names() == sorted({e.name for e in kept})
    assert index.label_values() == label_values((e.name, e.labels) for e in kept)
    assert len(index) == len(kept)


def test_a_label_value_of_one_series_is_its_id_and_grows_into_a_set() -> None:
    index, [web1, web2, _] = indexed([("cpu", {"host": "web"}), ("cpu", {"host": "web", "x": "1"}),
                                      ("cpu", {"host": "db"})])
    assert [e.id for e in index.matching(Selector("cpu", (Matcher.of("host", "=", "db"),)))] \
        == [3]
    assert sorted(e.id for e in index.matching(Selector(None, (Matcher.of("host", "=", "web"),)))
                  ) == [web1.id, web2.id]
    index.remove(web2)
    assert [e.id for e in index.matching(Selector(None, (Matcher.of("host", "=", "web"),)))] \
        == [web1.id]
    assert index.label_values() == {"host": ["db", "web"]}

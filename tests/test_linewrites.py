"""A server's line-protocol writes taken by one thread, those that waited stored together: as if
written one after another, each answered for its own lines, an error its own write's."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import CancelledError
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast
from unittest.mock import patch

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tsq import lineprotocol, linewrites
from tsq.config import Settings
from tsq.errors import Conflict, PartialWrite
from tsq.lineprotocol import parse_joined, parse_lines
from tsq.linewrites import LineWrite, LineWrites, Outcome
from tsq.selector import Selector
from tsq.series import SeriesSet
from tsq.service import Service

POINT = st.tuples(st.sampled_from(["a", "b"]), st.sampled_from([{}, {"h": "x"}, {"h": "y"}]),
                  st.integers(0, 5), st.floats(-10, 10))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(POINT, max_size=8), min_size=1, max_size=4))
def test_merged_sets_hold_the_points_of_writing_them_one_after_another(
        writes: list[list[tuple[str, dict[str, str], int, float]]]) -> None:
    expected: dict[tuple[str, tuple[tuple[str, str], ...]], dict[int, float]] = {}
    sets = []
    for write in writes:
        one: dict[tuple[str, tuple[tuple[str, str], ...]], dict[int, float]] = {}
        for name, labels, ts, value in write:
            key = (name, tuple(sorted(labels.items())))
            one.setdefault(key, {})[ts] = value
            expected.setdefault(key, {})[ts] = value  # the last write of a time wins
        sets.append(SeriesSet.from_series([
            (name, dict(labels), list(points), list(points.values()))
            for (name, labels), points in one.items()]).normalized())
    merged = SeriesSet.merged(sets)
    found = {(s.name, tuple(sorted(s.labels.items()))): dict(zip(
        s.timestamps.tolist(), s.values.tolist(), strict=True)) for s in merged}
    assert {key: points for key, points in found.items() if points} == \
        {key: points for key, points in expected.items() if points}
    assert len(found) == len({key for key, points in found.items() if points})  # one a series
    for series in merged:  # each in time order, as a write of one set is
        assert series.timestamps.tolist() == sorted(series.timestamps.tolist())


@contextmanager
def joining_any() -> Iterator[None]:
    """Writes of a few lines parsed as one too (they are parsed one by one otherwise, as
    quick), the compiled scan loaded if it is not."""
    with patch.object(lineprotocol, "LOADED_SCAN_CHARS", 0), \
            patch.object(lineprotocol, "SCAN_CHARS", 0):
        yield


def test_a_few_lines_are_parsed_write_by_write() -> None:
    assert parse_joined(["a value=1 1", "a value=2 2"], "s") is None
    with joining_any():
        assert parse_joined(["a value=1 1", "a value=2 2"], "s") is not None


LINE = st.tuples(st.sampled_from(["a", "b"]), st.sampled_from(["", ",h=x", ",h=y,z=1"]),
                 st.sampled_from(["value", "f", "value=1,f"]), st.integers(0, 5),
                 st.integers(-1000, 1000))


def _points(series: SeriesSet) -> dict[Any, tuple[list[int], list[float]]]:
    return {(s.name, tuple(sorted(s.labels.items()))): (s.timestamps.tolist(),
                                                        s.values.tolist()) for s in series}


@settings(max_examples=100, deadline=None)
@given(st.lists(st.lists(LINE, min_size=1, max_size=8), min_size=1, max_size=4),
       st.booleans())
def test_writes_parsed_as_one_are_their_batches_merged(
        writes: list[list[tuple[str, str, str, int, int]]], newline_after: bool) -> None:
    """Several writes' lines parsed as one batch hold the points of each parsed alone, merged
    as if written one after another; and each write's number of points is its own."""
    bodies = ["\n".join(f"{name}{tags} {field}={value / 100} {ts}"
                         for name, tags, field, ts, value in write) + "\n" * newline_after
              for write in writes]
    with joining_any():
        joined = parse_joined(bodies, "s")
    assert joined is not None
    batch, points = joined
    alone = [parse_lines(body, "s") for body in bodies]
    assert points == [one.points for one in alone] and batch.points == sum(points)
    assert _points(batch.numbers) == _points(SeriesSet.merged([one.numbers for one in alone]))


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    svc = Service(Settings.load(tmp_path))
    yield svc
    svc.close()


def _values(service: Service, name: str) -> list[float]:
    return [float(v) for s in service.points().select(Selector(name)) for v in s.values]


def test_a_bad_write_among_others_fails_alone(service: Service) -> None:
    """A write the store refuses (numbers into a series of text) fails alone; the others of its
    group are stored, a partly bad one answered as when written alone."""
    service.write_lines('words value="text" 1')
    outcomes = service.write_lines_together([
        LineWrite("fine value=1 1", "s", None),
        LineWrite("words value=2 2", "s", None),
        LineWrite("fine value=3 3\nnot a line", "s", None),
        LineWrite("fine value=4 4", "s", None)])
    assert outcomes[0] == {"written": 1} and outcomes[3] == {"written": 1}
    assert isinstance(outcomes[1], Conflict)
    assert isinstance(outcomes[2], PartialWrite) and outcomes[2].details["written"] == 1
    assert _values(service, "fine") == [1.0, 3.0, 4.0]


def test_writes_parsed_as_one_that_the_store_refuses_are_each_written_alone(
        service: Service, monkeypatch: pytest.MonkeyPatch) -> None:
    """Plain writes are parsed as one batch; when the store refuses it, each is written alone,
    so that the refusal is the one bad write's."""
    service.write_lines('words value="text" 1')
    joined: list[int] = []
    real = service.line_parsers.parse_joined

    def parse_joined(bodies: list[str], precision: str) -> Any:
        found = real(bodies, precision)
        joined.append(len(bodies) if found is not None else 0)
        return found

    monkeypatch.setattr(service.line_parsers, "parse_joined", parse_joined)
    monkeypatch.setattr(lineprotocol, "LOADED_SCAN_CHARS", 0)
    monkeypatch.setattr(lineprotocol, "SCAN_CHARS", 0)
    outcomes = service.write_lines_together([
        LineWrite("fine value=1 1", "s", None),
        LineWrite("words value=2 2", "s", None),
        LineWrite("fine value=3 3\nfine value=4 4", "s", None),
        LineWrite("fine value=5 5", "ms", None)])  # another precision: parsed apart
    assert joined == [3]
    assert outcomes[0] == {"written": 1} and outcomes[2] == {"written": 2}
    assert outcomes[3] == {"written": 1}
    assert isinstance(outcomes[1], Conflict)
    assert _values(service, "fine") == [5.0, 1.0, 3.0, 4.0]  # 5 ms, then 1, 3 and 4 s


def test_the_last_write_of_a_time_stays_whatever_the_precisions_between(
        service: Service) -> None:
    """Writes of one precision are parsed as one only in a row: a write of another precision
    between them stays between them."""
    with joining_any():
        outcomes = service.write_lines_together([
            LineWrite("order value=1 1000000000", "ns", None),
            LineWrite("order value=2 1000", "ms", None),
            LineWrite("order value=3 1000", "ms", None),  # parsed with the one before
            LineWrite("order value=4 1", "s", None),
            LineWrite("order value=5 1000000000", "ns", None)])
    assert outcomes == [{"written": 1}] * 5
    assert _values(service, "order") == [5.0]


def test_writes_of_several_projects_go_to_their_own_points(service: Service) -> None:
    outcomes = service.write_lines_together([LineWrite("mine value=1 1", "s", "p1"),
                                             LineWrite("mine value=2 1", "s", "p2")])
    assert outcomes == [{"written": 1}, {"written": 1}]
    assert [float(s.values[0]) for s in service.points("p1").select(Selector("mine"))] == [1.0]
    assert [float(s.values[0]) for s in service.points("p2").select(Selector("mine"))] == [2.0]


def test_the_writing_thread_takes_what_waited_together_and_lives_through_errors() -> None:
    groups: list[list[str]] = []
    held = threading.Event()

    def together(writes: list[LineWrite]) -> list[Outcome]:
        groups.append([w.body for w in writes])
        if len(groups) == 1:
            assert held.wait(10)
        if any(w.body == "boom" for w in writes):
            raise RuntimeError("boom")
        return [{"written": len(w.body)} for w in writes]

    writes = LineWrites(together)
    try:
        first = writes.submit("one", "ns", None)
        deadline = time.monotonic() + 10
        while not groups:
            assert time.monotonic() < deadline
            time.sleep(0.005)
        waiting = [writes.submit(body, "ns", None) for body in ("two", "three", "gone")]
        assert waiting[2].cancel()  # its caller went away before it began: never stored
        held.set()
        assert [f.result(10) for f in (first, *waiting[:2])] == [
            {"written": 3}, {"written": 3}, {"written": 5}]
        with pytest.raises(CancelledError):
            waiting[2].result(0)
        failed = writes.submit("boom", "ns", None)
        with pytest.raises(RuntimeError, match="boom"):
            failed.result(10)
        assert writes.submit("after", "ns", None).result(10) == {"written": 5}
        assert groups == [["one"], ["two", "three"], ["boom"], ["after"]]
    finally:
        writes.close()


def test_closing_stores_what_waits_then_takes_no_more() -> None:
    taken: list[str] = []

    def together(writes: list[LineWrite]) -> list[Any]:
        time.sleep(0.05)
        taken.extend(w.body for w in writes)
        return [{"written": 1} for _ in writes]

    writes = LineWrites(together)
    answers = [writes.submit(str(n), "ns", None) for n in range(5)]
    writes.close()
    assert all(a.done() and a.result() == {"written": 1} for a in answers)
    assert taken == ["0", "1", "2", "3", "4"]
    with pytest.raises(RuntimeError, match="closing"):
        writes.submit("late", "ns", None)


def test_a_group_is_parsed_while_the_one_before_it_is_stored() -> None:
    storing = threading.Event()
    parsed_meanwhile = threading.Event()
    let_go = threading.Event()
    prepared: list[list[str]] = []

    def prepare(writes: list[LineWrite]) -> list[str]:
        bodies = [w.body.upper() for w in writes]
        prepared.append(bodies)
        if storing.is_set():
            parsed_meanwhile.set()
        return bodies

    def store(bodies: list[str]) -> list[Outcome]:
        if bodies == ["ONE"]:
            storing.set()
            assert let_go.wait(10)
        return [{"written": body} for body in bodies]

    writes = LineWrites(store, prepare)
    try:
        first = writes.submit("one", "ns", None)
        assert storing.wait(10)
        second = writes.submit("two", "ns", None)
        assert parsed_meanwhile.wait(10)  # parsed while "one" is still being stored
        assert not first.done() and not second.done()
        let_go.set()
        assert [first.result(10), second.result(10)] == [{"written": "ONE"}, {"written": "TWO"}]
        assert prepared == [["ONE"], ["TWO"]]
    finally:
        let_go.set()
        writes.close()


def test_a_group_that_cannot_be_parsed_gets_the_error_and_the_next_is_stored() -> None:
    stored: list[list[str]] = []

    def prepare(writes: list[LineWrite]) -> list[str]:
        if any(w.body == "bad" for w in writes):
            raise ValueError("bad")
        return [w.body for w in writes]

    def store(bodies: list[str]) -> list[Outcome]:
        stored.append(bodies)
        return [{"written": len(body)} for body in bodies]

    writes = LineWrites(store, prepare)
    try:
        with pytest.raises(ValueError, match="bad"):
            writes.submit("bad", "ns", None).result(10)
        assert writes.submit("good", "ns", None).result(10) == {"written": 4}
        assert stored == [["good"]]
    finally:
        writes.close()


def test_a_store_that_answers_too_few_writes_fails_them_and_the_thread_lives_on() -> None:
    writes = LineWrites(lambda group: [{"written": 1}] if group[0].body == "fine" else [])
    try:
        with pytest.raises(RuntimeError, match="answered 0 of 1 writes"):
            writes.submit("lost", "ns", None).result(10)
        assert writes.submit("fine", "ns", None).result(10) == {"written": 1}
    finally:
        writes.close()


def _here_when_free(writes: LineWrites, body: str) -> dict[str, Any]:
    """`stored_here` once the last answer's callbacks ran (they follow its waiters' wake-up)."""
    return cast(dict[str, Any], _here_when_free_answer(writes, body, lambda _: True).result(0))


def _until(done: Any) -> None:
    deadline = time.monotonic() + 10
    while not done():
        assert time.monotonic() < deadline
        time.sleep(0.005)


def test_a_write_alone_is_stored_on_the_callers_thread_unless_another_is_in_hand(
        monkeypatch: pytest.MonkeyPatch) -> None:
    storing, held = threading.Event(), threading.Event()
    stored: list[tuple[str, str]] = []

    def store(group: list[LineWrite]) -> list[Outcome]:
        stored.extend((w.body, threading.current_thread().name) for w in group)
        if group[0].body == "held":
            storing.set()
            assert held.wait(10)
        if group[0].body == "boom":
            raise RuntimeError("boom")
        return [{"written": w.body} for w in group]

    writes = LineWrites(store)
    here = threading.current_thread().name
    try:
        assert writes.stored_here("alone", "ns", None, lambda _: True).result(0) == {
            "written": "alone"}
        with pytest.raises(RuntimeError, match="boom"):
            writes.stored_here("boom", "ns", None, lambda _: True).result(0)
        first = writes.submit("held", "ns", None)
        assert storing.wait(10)
        assert writes.stored_here("meanwhile", "ns", None, lambda _: True) is None  # in hand
        # the parsing thread waits for the write thread to take "queued": "gone" stays queued
        queued = writes.submit("queued", "ns", None)
        _until(lambda: writes._prepared.qsize() == 1)
        gone = writes.submit("gone", "ns", None)
        assert gone.cancel()  # in hand no more, never stored
        held.set()
        assert [first.result(10), queued.result(10)] == [{"written": "held"},
                                                          {"written": "queued"}]
        assert _here_when_free(writes, "after") == {"written": "after"}
        monkeypatch.setattr(linewrites, "HERE_MAX_CHARS", 4)
        assert writes.stored_here("large", "ns", None, lambda _: True) is None
        assert writes.submit("large", "ns", None).result(10) == {"written": "large"}
        assert stored == [("alone", here), ("boom", here), ("held", "tsq-write"),
                          ("queued", "tsq-write"), ("after", here), ("large", "tsq-write")]
    finally:
        held.set()
        writes.close()
    assert writes.stored_here("closed", "ns", None, lambda _: True) is None


def test_a_write_parsed_here_that_the_store_would_not_take_at_once_goes_to_the_write_thread(
        ) -> None:
    stored: list[tuple[str, str]] = []
    asked: list[list[str]] = []
    held = threading.Event()

    def prepare(group: list[LineWrite]) -> list[str]:
        if group[0].body == "bad":
            raise ValueError("bad")
        return [w.body.upper() for w in group]

    def store(bodies: list[str]) -> list[Outcome]:
        stored.extend((body, threading.current_thread().name) for body in bodies)
        if bodies == ["SLOW"]:
            assert held.wait(10)
        return [{"written": body} for body in bodies]

    def quick(prepared: list[str]) -> bool:
        asked.append(prepared)
        if prepared == ["BROKEN"]:
            raise RuntimeError("the store is closed")
        return prepared not in (["SLOW"], ["BROKEN"])

    writes = LineWrites(store, prepare)
    here = threading.current_thread().name
    try:
        assert writes.stored_here("fast", "ns", None, quick).result(0) == {"written": "FAST"}
        slow = writes.stored_here("slow", "ns", None, quick)
        assert slow is not None and not slow.done()  # handed over: the caller goes on
        held.set()
        assert slow.result(10) == {"written": "SLOW"}
        with pytest.raises(ValueError, match="bad"):  # not parsed: its error, stored nowhere
            _here_when_free(writes, "bad")
        broken = _here_when_free_answer(writes, "broken", quick)  # `quick` failing: threads
        assert broken.result(10) == {"written": "BROKEN"}
        assert asked == [["FAST"], ["SLOW"], ["BROKEN"]]  # of what was parsed, on this thread
        assert _here_when_free(writes, "again") == {"written": "AGAIN"}
        assert stored == [("FAST", here), ("SLOW", "tsq-write"), ("BROKEN", "tsq-write"),
                          ("AGAIN", here)]
    finally:
        held.set()
        writes.close()


def _here_when_free_answer(writes: LineWrites, body: str, quick: Any) -> Any:
    deadline = time.monotonic() + 10
    while (answer := writes.stored_here(body, "ns", None, quick)) is None:
        assert time.monotonic() < deadline
        time.sleep(0.005)
    return answer


def test_closing_waits_for_a_write_stored_here() -> None:
    storing, held = threading.Event(), threading.Event()

    def store(group: list[LineWrite]) -> list[Outcome]:
        storing.set()
        assert held.wait(10)
        return [{"written": 1} for _ in group]

    writes = LineWrites(store)
    answers: list[Any] = []
    caller = threading.Thread(target=lambda: answers.append(
        writes.stored_here("here", "ns", None, lambda _: True)))
    closer = threading.Thread(target=writes.close)
    caller.start()
    try:
        assert storing.wait(10)
        closer.start()
        closer.join(0.2)
        assert closer.is_alive()  # waits for the write in hand
    finally:
        held.set()
        caller.join(10)
        if closer.ident is not None:
            closer.join(10)
        else:
            writes.close()
    assert not closer.is_alive() and answers[0].result(0) == {"written": 1}

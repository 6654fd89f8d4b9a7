"""tsq.isotime, the one parser of times written as text: every aware datetime survives a round
trip through its ISO-8601 text, nanoseconds survive too, a time without an offset is UTC, and
what is ambiguous is refused with the field's name and an example."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tsq import tsl
from tsq.errors import BadRequest, TslError
from tsq.isotime import parse_ns, parse_time, time_field
from tsq.series import SeriesSet

offsets = st.integers(-23 * 60 - 59, 23 * 60 + 59).map(lambda m: timezone(timedelta(minutes=m)))
aware = st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30),
                     timezones=offsets)


@given(aware, st.sampled_from(["auto", "seconds", "milliseconds", "microseconds"]))
def test_an_aware_datetime_round_trips(moment: datetime, timespec: str) -> None:
    text = moment.isoformat(timespec=timespec)
    expected = moment if timespec in ("auto", "microseconds") else moment.replace(
        microsecond=moment.microsecond // 1000 * 1000 if timespec == "milliseconds" else 0)
    parsed = parse_time(text, "t")
    assert parsed == expected and parsed.utcoffset() == moment.utcoffset()
    assert parse_time(text.replace("+00:00", "Z"), "t") == expected


@given(st.integers(-(10**18), 4 * 10**18))
def test_nanoseconds_round_trip(ns: int) -> None:
    seconds, nanos = divmod(ns, 10**9)
    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=seconds)
    assert parse_ns(f"{moment:%Y-%m-%dT%H:%M:%S}.{nanos:09d}Z", "t") == ns


@pytest.mark.parametrize("text", [
    "2026-01-01T00:00:00Z", "2026-01-01t00:00:00z", "2026-01-01 00:00:00Z",
    "2026-01-01T01:00:00+01:00", "2026-01-01T01:00:00+0100", "2025-12-31T23:00:00-01:00",
    "2026-01-01T00:00:00", "2026-01-01T00:00", "2026-01-01", " 2026-01-01T00:00:00.000Z ",
])
def test_the_forms_people_type_mean_one_instant(text: str) -> None:
    assert parse_time(text, "t") == datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(("text", "why"), [
    ("2026-01-01T00:00:00 CET", "not an ISO-8601 time"),   # a zone name: which offset?
    ("2026-W01-4", "not an ISO-8601 time"),                # week date
    ("2026-001", "not an ISO-8601 time"),                  # ordinal date
    ("20260101T000000Z", "not an ISO-8601 time"),          # no separators
    ("1767225600", "not an ISO-8601 time"),                # seconds? milliseconds?
    ("01/02/2026", "not an ISO-8601 time"),                # January 2 or February 1?
    ("2026-01-01T00:00:00.1234567890Z", "not an ISO-8601 time"),   # beyond nanoseconds
    ("2026-02-30T00:00:00Z", "not a valid time (day is out of range for month)"),
    ("2026-01-01T24:00:00Z", "not a valid time"),
    ("2026-01-01T23:59:60Z", "not a valid time"),
    ("", "not an ISO-8601 time"),
])
def test_what_is_ambiguous_or_wrong_is_refused_with_the_field_and_an_example(
        text: str, why: str) -> None:
    with pytest.raises(BadRequest) as bad:
        parse_time(text, "window.start")
    assert bad.value.message.startswith(f"window.start {text!r} is ")
    assert why in bad.value.message and "2026-01-01T00:00:00Z" in bad.value.message


def test_a_json_field_must_be_text() -> None:
    with pytest.raises(BadRequest, match="at must be an ISO-8601 time string like "
                                         "2026-01-01T00:00:00Z, not 1767225600"):
        time_field(1767225600, "at")
    assert time_field("2026-01-01T01:00:00+01:00", "at") == datetime(2026, 1, 1, tzinfo=UTC)


def test_tsl_reads_times_with_the_same_rules(tmp_path: object) -> None:
    from tsq.connectors.embedded import EmbeddedStore

    store = EmbeddedStore(f"{tmp_path}/points.duckdb")
    try:
        store.write(SeriesSet.from_series([("x", {}, [1767225600 * 10**9], [1.0])]))
        # one second before the point, which every convention of a window's start includes
        for text in ("2025-12-31T23:59:59", "2025-12-31T23:59:59Z", "2026-01-01T00:59:59+01:00"):
            found = tsl.evaluate(f'select("x").from("{text}", "2026-01-01T00:00:01Z")', store)
            assert found.timestamps.tolist() == [1767225600 * 10**9], text
        with pytest.raises(TslError, match="from\\(\\)'s start '2026-01-01 CET' is not an "
                                           "ISO-8601 time"):
            tsl.evaluate('select("x").from("2026-01-01 CET", "2026-01-02T00:00:00Z")', store)
    finally:
        store.close()

"""Metronome schedules: `R<n>/<start>/<period>/ET<epsilon>`, the grammar of OVH's Metronome.

The k-th scheduled time is always `start + k·period`, computed from the start, never from the
previous time, so month-end clamping does not drift (Jan 31 + P1M → Feb 28 → Mar 31).

- time mode (the period contains `T`): a fixed number of seconds; Y counts 365 days and M
  (before `T`) 30 days, as Metronome does;
- date mode (no `T`): calendar arithmetic in the start's UTC offset, the day clamped to the end
  of the month.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from tsq.errors import BadRequest, ScheduleError
from tsq.isotime import parse_time

__all__ = ["Period", "Schedule", "parse"]

EXAMPLE = "R/2018-01-01T00:00:00Z/PT5M/ET1M"

_REPEAT = re.compile(r"R(\d*)")
_INSTANT = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)", re.IGNORECASE)
_PERIOD = re.compile(
    r"P(?:(?P<Y>\d+)Y)?(?:(?P<Mo>\d+)M)?(?:(?P<W>\d+)W)?(?:(?P<D>\d+)D)?"
    r"(?P<T>T(?:(?P<H>\d+)H)?(?:(?P<Mi>\d+)M)?(?:(?P<S>\d+)S)?)?"
)
_EPSILON = re.compile(r"ET(?=\d)(?:(?P<H>\d+)H)?(?:(?P<Mi>\d+)M)?(?:(?P<S>\d+)S)?")

_DAY = 86_400
_SECONDS_PER_UNIT = {"Y": 365 * _DAY, "Mo": 30 * _DAY, "W": 7 * _DAY, "D": _DAY,
                     "H": 3600, "Mi": 60, "S": 1}


@dataclass(frozen=True)
class Period:
    """An ISO-8601 duration. `seconds` is used in time mode, the calendar fields in date mode."""

    months: int
    days: int
    seconds: int
    time_mode: bool

    @property
    def is_null(self) -> bool:
        return self.seconds == 0 if self.time_mode else self.months == 0 and self.days == 0

    def times(self, start: datetime, k: int) -> datetime:
        """`start + k·period` (k may be negative)."""
        if self.time_mode:
            return start + timedelta(seconds=k * self.seconds)
        return _add_months(start, k * self.months) + timedelta(days=k * self.days)


@dataclass(frozen=True)
class Schedule:
    text: str
    repeat: int | None  # None: forever; n: runs at k = 0..n
    start: datetime
    period: Period
    epsilon: timedelta

    def time_at(self, k: int) -> datetime:
        return self.period.times(self.start, k)

    def next_at_or_after(self, when: datetime) -> datetime | None:
        """Metronome's Init: the first scheduled time at or after `when`, None once exhausted."""
        return self._time_or_none(self._first_index_at_or_after(_aware(when)))

    def fire_times(self, start: datetime, end: datetime) -> Iterator[datetime]:
        """Every scheduled time in `[start, end)`, oldest first."""
        end = _aware(end)
        k = self._first_index_at_or_after(_aware(start))
        while self.repeat is None or k <= self.repeat:
            t = self.time_at(k)
            if t >= end:
                return
            yield t
            k += 1

    def latest_at_or_before(self, when: datetime) -> datetime | None:
        """The newest scheduled time at or before `when` (the end of the latest complete
        period), None before the first one."""
        when = _aware(when)
        if when < self.start:
            return None
        k = self._first_index_at_or_after(when)
        if self.time_at(k) != when:
            k -= 1
        return self.time_at(k if self.repeat is None else min(k, self.repeat))

    def neighbours(self, t: datetime) -> tuple[datetime | None, datetime | None]:
        """The scheduled times just before and just after `t` (None past either end)."""
        t = _aware(t)
        k = self._first_index_at_or_after(t)
        after = self._time_or_none(k + 1 if self.time_at(k) == t else k)
        before = self.latest_at_or_before(t - timedelta(microseconds=1))
        return before, after

    def window(self, t: datetime) -> tuple[datetime, datetime]:
        """`[previous step, t)`: the interval a run scheduled at `t` is responsible for."""
        k = self.index_of(t)
        return self.time_at(k - 1), self.time_at(k)

    def plan(self, current: datetime | None, now: datetime) -> datetime | None:
        """Metronome's Plan: advance one period when `current` is past, None once exhausted."""
        if current is None or current >= _aware(now):
            return current
        return self._time_or_none(self.index_of(current) + 1)

    def index_of(self, t: datetime) -> int:
        """k such that `t == start + k·period`; ScheduleError if `t` is not a scheduled time."""
        t = _aware(t)
        k = self._first_index_at_or_after(t)
        if self.time_at(k) != t:
            raise ScheduleError(
                f"{t.isoformat()} is not a scheduled time of {self.text}; "
                f"the nearest ones are {self.time_at(k - 1).isoformat()} and "
                f"{self.time_at(k).isoformat()}"
            )
        return k

    def _time_or_none(self, k: int) -> datetime | None:
        return None if self.repeat is not None and k > self.repeat else self.time_at(k)

    def _first_index_at_or_after(self, when: datetime) -> int:
        if when <= self.start:
            return 0
        if self.period.time_mode:
            micros = (when - self.start) // timedelta(microseconds=1)
            return -(-micros // (self.period.seconds * 1_000_000))
        return self._search_calendar(when)

    def _search_calendar(self, when: datetime) -> int:
        # time_at is increasing in k, so find the first k with time_at(k) >= when by bisection.
        hi = 1
        while self.time_at(hi) < when:
            hi *= 2
        lo = hi // 2
        while lo < hi:
            mid = (lo + hi) // 2
            if self.time_at(mid) < when:
                lo = mid + 1
            else:
                hi = mid
        return lo


def parse(text: str) -> Schedule:
    """Parse `R<n>/<start>/<period>/ET<epsilon>`; ScheduleError names the bad part."""
    parts = text.split("/")
    if len(parts) != 4:
        raise ScheduleError(
            f"Bad schedule {text}: expected R<n>/<start>/<period>/ET<epsilon>, e.g. {EXAMPLE}"
        )
    repeat_text, start_text, period_text, epsilon_text = parts
    return Schedule(
        text=text,
        repeat=_parse_repeat(repeat_text, text),
        start=_parse_start(start_text, text),
        period=_parse_period(period_text, text),
        epsilon=_parse_epsilon(epsilon_text, text),
    )


def _parse_repeat(part: str, text: str) -> int | None:
    match = _REPEAT.fullmatch(part)
    if match is None:
        raise ScheduleError(
            f'Bad repeat {text}: bad repeat "{part}"; write R (forever) or R<n> (n+1 runs)'
        )
    return int(match.group(1)) if match.group(1) else None


def _parse_start(part: str, text: str) -> datetime:
    # Stricter than tsq.isotime on purpose: Metronome's grammar (Go's RFC 3339) wants the
    # seconds and an offset, where tsq reads a time without one as UTC; a schedule copied
    # from Metronome must mean the same instant, and one tsq accepts must work there too.
    if _INSTANT.fullmatch(part) is None:
        raise ScheduleError(
            f'Bad start {text}: bad start "{part}"; write an RFC 3339 instant with an offset, '
            "e.g. 2018-01-01T00:00:00Z or 2018-01-01T02:00:00+02:00"
        )
    try:
        instant = parse_time(part, "start")
    except BadRequest as exc:
        raise ScheduleError(f'Bad start {text}: bad start "{part}": {exc.message}') from None
    return instant.replace(microsecond=0)  # one-second granularity


def _parse_period(part: str, text: str) -> Period:
    match = _PERIOD.fullmatch(part)
    if match is None or part == "P":
        raise ScheduleError(
            f'Bad period {text}: bad period "{part}"; write an ISO-8601 duration such as '
            "PT5M, PT1H30M, P1D or P1M"
        )
    fields = {unit: int(value) for unit, value in match.groupdict().items()
              if unit != "T" and value is not None}
    time_mode = match.group("T") is not None
    period = Period(
        months=12 * fields.get("Y", 0) + fields.get("Mo", 0),
        days=7 * fields.get("W", 0) + fields.get("D", 0),
        seconds=sum(_SECONDS_PER_UNIT[unit] * value for unit, value in fields.items()),
        time_mode=time_mode,
    )
    if not time_mode and any(fields.get(unit) for unit in ("H", "Mi", "S")):
        raise ScheduleError(f'Bad period {text}: hours, minutes and seconds need "T" in "{part}"')
    if period.is_null:
        raise ScheduleError(f"Null period {text}: the period must be longer than zero")
    return period


def _parse_epsilon(part: str, text: str) -> timedelta:
    match = _EPSILON.fullmatch(part)
    if match is None:
        raise ScheduleError(
            f'Bad epsilon {text}: bad epsilon "{part}"; write ET followed by a time duration, '
            "e.g. ET1M, ET30S, ET1M30S or ET6H"
        )
    return timedelta(seconds=sum(_SECONDS_PER_UNIT[unit] * int(value)
                                 for unit, value in match.groupdict().items() if value))


def _add_months(when: datetime, months: int) -> datetime:
    month_index = when.year * 12 + when.month - 1 + months
    year, month = divmod(month_index, 12)
    day = min(when.day, calendar.monthrange(year, month + 1)[1])
    return when.replace(year=year, month=month + 1, day=day)


def _aware(when: datetime) -> datetime:
    if when.tzinfo is None:
        raise ScheduleError(
            f"{when.isoformat()} has no time zone; give an aware datetime (e.g. with tzinfo=UTC)"
        )
    return when

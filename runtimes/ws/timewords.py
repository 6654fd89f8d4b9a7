"""Time words: NOW, ISO8601, TOTIMESTAMP, TSELEMENTS, ADDMONTHS, DURATION, …

Times are LONGs in platform units, microseconds since the epoch (Warp 10's default), UTC.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from tsq.errors import BadRequest
from tsq.isotime import parse_ns

from .faults import Fault

if TYPE_CHECKING:
    from .vm import Vm

__all__ = ["WORDS", "iso8601", "to_timestamp"]

STU = 1_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_DURATION = re.compile(r"P(?:(\d+)W)?(?:(\d+)D)?(?:T?(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?")


def iso8601(tick: int) -> str:
    """`2016-02-29T13:00:00.000000Z`, as Warp 10's ISO8601 writes microseconds."""
    moment = _EPOCH + timedelta(microseconds=tick)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond:06d}Z"


def to_timestamp(text: str) -> int:
    try:
        return parse_ns(text, "TOTIMESTAMP") // 1000
    except BadRequest as error:
        raise Fault(error.message) from None


def _now(vm: Vm) -> None:
    vm.stack.append(vm.now_us if vm.now_us is not None
                    else int(datetime.now(UTC).timestamp() * STU))


def _iso8601(vm: Vm) -> None:
    value = vm.pop()
    if isinstance(value, str):  # a time zone was given: only UTC is known
        if value not in ("UTC", "Z", "GMT"):
            raise Fault(f"ISO8601: time zone {value!r} is not supported; tsq writes UTC")
        value = vm.pop()
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Fault(f"ISO8601 needs a timestamp (LONG), got {value!r}")
    vm.stack.append(iso8601(int(value)))


def _totimestamp(vm: Vm) -> None:
    vm.stack.append(to_timestamp(vm.pop_str("an ISO-8601 STRING (TOTIMESTAMP)")))


def _moment(vm: Vm, word: str) -> datetime:
    top = vm.pop()
    if isinstance(top, str):
        if top not in ("UTC", "Z", "GMT"):
            raise Fault(f"{word}: time zone {top!r} is not supported; tsq works in UTC")
        top = vm.pop()
    if isinstance(top, bool) or not isinstance(top, int):
        raise Fault(f"{word} needs a timestamp (LONG), got {top!r}")
    return _EPOCH + timedelta(microseconds=top)


def _tselements(vm: Vm) -> None:
    moment = _moment(vm, "TSELEMENTS")
    vm.stack.append([moment.year, moment.month, moment.day, moment.hour, moment.minute,
                     moment.second, moment.microsecond, moment.isoweekday(),
                     moment.timetuple().tm_yday])


def _from_tselements(vm: Vm) -> None:
    parts = vm.pop_list("a LIST [Y M D h m s µs] (TSELEMENTS->)")
    fields = [int(p) for p in parts[:7]] + [1, 1, 1, 0, 0, 0, 0][len(parts):]
    try:
        year, month, day, hour, minute, second, micros = fields[:7]
        moment = (datetime(year, month, day, hour, minute, second, tzinfo=UTC)
                  + timedelta(microseconds=micros))
    except ValueError as error:
        raise Fault(f"TSELEMENTS->: {error}") from None
    vm.stack.append(_ticks(moment))


def _ticks(moment: datetime) -> int:
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * STU + delta.microseconds


def _add_months(moment: datetime, months: int) -> datetime:
    total = moment.year * 12 + moment.month - 1 + months
    year, month = divmod(total, 12)
    day = min(moment.day, calendar.monthrange(year, month + 1)[1])
    return moment.replace(year=year, month=month + 1, day=day)


def _shift(word: str, months_per: int, days_per: int) -> Callable[[Vm], None]:
    def run(vm: Vm) -> None:
        count = vm.pop_long(f"a count ({word})")
        moment = _moment(vm, word)
        shifted = (_add_months(moment, count * months_per) if months_per
                   else moment + timedelta(days=count * days_per))
        vm.stack.append(_ticks(shifted))
    return run


def _duration(vm: Vm) -> None:
    text = vm.pop_str("an ISO-8601 duration (DURATION)")
    found = _DURATION.fullmatch(text)
    if not found or text in ("P", "PT") or ("M" in text and "T" not in text):
        raise Fault(f"DURATION: {text!r} is not an ISO-8601 duration like PT1H30M or P2DT3H; "
                    f"months and years have no fixed length")
    weeks, days, hours, minutes, seconds = (float(g) if g else 0.0 for g in found.groups())
    total = ((weeks * 7 + days) * 86_400 + hours * 3_600 + minutes * 60 + seconds) * STU
    vm.stack.append(round(total))


WORDS: Mapping[str, Callable[[Vm], None]] = {
    "NOW": _now, "ISO8601": _iso8601, "TOTIMESTAMP": _totimestamp, "TSELEMENTS": _tselements,
    "TSELEMENTS->": _from_tselements, "ADDMONTHS": _shift("ADDMONTHS", 1, 0),
    "ADDYEARS": _shift("ADDYEARS", 12, 0), "ADDDAYS": _shift("ADDDAYS", 0, 1),
    "DURATION": _duration,
}

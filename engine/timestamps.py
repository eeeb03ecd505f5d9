"""Event times as integer microseconds since the Unix epoch (UTC), and ISO 8601 durations.

Integers keep window arithmetic exact: a window index is ``time_us // size_us``.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta

import ciso8601

US = 1_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# RFC 3339 date-time with seconds, ASCII digits only: YYYY-MM-DD, then ``T``, ``t`` or a space,
# hh:mm:ss, an optional fraction of any length after ``.``, and ``Z``/``z``, an offset ±hh:mm or
# nothing (UTC). Ranges (month, day, hour ≤ 23, minute ≤ 59, second ≤ 60, offset hour ≤ 23 and
# minute ≤ 59) are checked after the match.
_TIME = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt ]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]+))?"
    r"(?:[Zz]|([+-])([0-9]{2}):([0-9]{2}))?"
)
# ciso8601 (C) parses RFC 3339 with a zone, fast and strictly (but for ordinal dates, checked
# after it); times without a zone (UTC here) and leap seconds, which a datetime cannot hold, go
# through _TIME.
_rfc3339 = ciso8601.parse_rfc3339
_day_cache: dict[str, int] = {}

# Event times outside [EARLIEST_EVENT, host clock + AHEAD_LIMIT] are not plausible: one such
# record would stretch a stream's time span (and the memory that follows it) or make every other
# event of its device expire. The bound for the files' formats; serial boards have their own rule.
EARLIEST_EVENT = 946_684_800 * US  # 2000-01-01T00:00:00Z
AHEAD_LIMIT = 86_400 * US  # one day ahead of the host clock
_latest = 0  # host clock + AHEAD_LIMIT when last looked at; refreshed only when exceeded


class TimeOutOfRange(ValueError):
    """A well-formed event time outside the plausible range (see :func:`parse_event_time`)."""


def parse_time(text: str) -> int:
    """Parse an RFC 3339 timestamp with seconds into microseconds; no zone means UTC.

    Raises ValueError for anything else.
    """
    try:
        d = _rfc3339(text) - _EPOCH
    except (ValueError, TypeError, OverflowError):
        if not isinstance(text, str):
            raise ValueError(f"not a timestamp: {type(text).__name__}") from None
        return _parse_slow(text)
    if text[7] != "-":  # ciso8601 also reads ISO ordinal dates (2026-332)
        return _parse_slow(text)
    return (d.days * 86400 + d.seconds) * US + d.microseconds


def parse_event_time(text: str) -> int:
    """:func:`parse_time` for an event's time: also raises :class:`TimeOutOfRange` when the time
    is before 2000-01-01T00:00:00Z or more than a day ahead of the host clock."""
    # parse_time, repeated: this runs once per event, and a call costs as much as the check.
    try:
        d = _rfc3339(text) - _EPOCH
    except (ValueError, TypeError, OverflowError):
        return check_event_time(parse_time(text))
    if text[7] != "-":
        return check_event_time(_parse_slow(text))
    us = (d.days * 86400 + d.seconds) * US + d.microseconds
    if EARLIEST_EVENT <= us <= _latest:
        return us
    return check_event_time(us)


def check_event_time(us: int) -> int:
    """``us`` when it is a plausible event time, else :class:`TimeOutOfRange`."""
    global _latest
    if us > _latest:  # the cached bound may be stale: look at the clock again
        _latest = time.time_ns() // 1000 + AHEAD_LIMIT
    if EARLIEST_EVENT <= us <= _latest:
        return us
    raise TimeOutOfRange("event time out of range")


def _parse_slow(text: str) -> int:
    m = _TIME.fullmatch(text)
    if m is None:
        raise ValueError(f"not a timestamp: {text[:40]!r}")
    y, mo, d, hh, mi, ss, frac, sign, zh, zm = m.groups()
    h, mn, s = int(hh), int(mi), int(ss)
    if h > 23 or mn > 59 or s > 60 or (sign and (int(zh) > 23 or int(zm) > 59)):
        raise ValueError(f"not a timestamp: {text[:40]!r}")
    day_key = text[:10]
    day = _day_cache.get(day_key)
    if day is None:
        try:
            date = datetime(int(y), int(mo), int(d), tzinfo=UTC)
        except ValueError:
            raise ValueError(f"not a timestamp: {text[:40]!r}") from None
        day = (date - _EPOCH).days * 86400
        if len(_day_cache) > 4096:
            _day_cache.clear()
        _day_cache[day_key] = day
    us = (day + h * 3600 + mn * 60 + s) * US
    if frac:
        us += int((frac[:6] + "00000")[:6])
    if sign:
        offset = (int(zh) * 3600 + int(zm) * 60) * US
        us += -offset if sign == "+" else offset
    return us


def format_time(us: int) -> str:
    """RFC 3339 UTC with ``Z``; fractions only when the time has them."""
    dt = _EPOCH + timedelta(microseconds=us)
    if us % US:
        return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


_DURATION = re.compile(r"P(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?$")


def parse_duration(text: str) -> int:
    """Parse an ISO 8601 duration of weeks, days, hours, minutes and whole seconds into seconds.

    Years and months are refused: their length is not fixed.
    """
    if not isinstance(text, str):
        raise ValueError("expected an ISO 8601 duration string such as 'PT15M'")
    m = _DURATION.match(text.strip().upper())
    if m is None or text.strip().upper() in ("P", "PT") or text.strip().upper().endswith("T"):
        raise ValueError(f"{text!r} is not an ISO 8601 duration of whole seconds (e.g. 'PT15M')")
    w, d, h, mi, s = (int(g) if g else 0 for g in m.groups())
    return (((w * 7 + d) * 24 + h) * 60 + mi) * 60 + s


def format_duration(seconds: int) -> str:
    """The shortest ISO 8601 spelling of a whole number of seconds (``PT15M``, ``P1DT2H``)."""
    if seconds == 0:
        return "PT0S"
    d, rest = divmod(seconds, 86400)
    h, rest = divmod(rest, 3600)
    m, s = divmod(rest, 60)
    out = "P" + (f"{d}D" if d else "")
    if h or m or s:
        out += "T" + (f"{h}H" if h else "") + (f"{m}M" if m else "") + (f"{s}S" if s else "")
    return out

"""Event times as integer microseconds since the Unix epoch (UTC), and ISO 8601 durations.

Integers keep window arithmetic exact: a window index is ``time_us // size_us``.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

US = 1_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# YYYY-MM-DD[T ]hh:mm:ss[.fraction][Z|±hh:mm]; the fraction may have any number of digits
# (IoT Hub writes seven).
_TIME = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:[.,](\d+))?\s*"
    r"(Z|z|[+-]\d{2}:?\d{2})?$"
)
_day_cache: dict[str, int] = {}
_fromiso = datetime.fromisoformat
_NAIVE_EPOCH = datetime(1970, 1, 1)


def parse_time(text: str) -> int:
    """Parse an RFC 3339 / ISO 8601 timestamp into microseconds; no zone means UTC.

    Raises ValueError for anything else.
    """
    # datetime.fromisoformat (C) reads the common spellings, seven-digit fractions included.
    try:
        dt = _fromiso(text)
    except (ValueError, TypeError):
        if not isinstance(text, str):
            raise ValueError(f"not a timestamp: {type(text).__name__}") from None
        return _parse_slow(text)
    if len(text) < 19:  # a date alone, or no seconds: not an event time
        raise ValueError(f"not a timestamp: {text[:40]!r}")
    d = dt - (_EPOCH if dt.tzinfo is not None else _NAIVE_EPOCH)
    return (d.days * 86400 + d.seconds) * US + d.microseconds


def _parse_slow(text: str) -> int:
    m = _TIME.match(text.strip())
    if m is None:
        raise ValueError(f"not a timestamp: {text[:40]!r}")
    y, mo, d, hh, mi, ss, frac, zone = m.groups()
    day_key = text[:10]
    day = _day_cache.get(day_key)
    if day is None:
        day = int((datetime(int(y), int(mo), int(d), tzinfo=UTC) - _EPOCH).total_seconds())
        if len(_day_cache) > 4096:
            _day_cache.clear()
        _day_cache[day_key] = day
    h, mn, s = int(hh), int(mi), int(ss)
    if h > 23 or mn > 59 or s > 60:
        raise ValueError(f"not a timestamp: {text[:40]!r}")
    us = (day + h * 3600 + mn * 60 + s) * US
    if frac:
        us += int((frac + "000000")[:6])
    if zone and zone not in "Zz":
        sign = -1 if zone[0] == "-" else 1
        digits = zone[1:].replace(":", "")
        us -= sign * (int(digits[:2]) * 3600 + int(digits[2:]) * 60) * US
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

"""Helpers shared by the JSON decoders: field checks that raise ``BadRecord`` with a reason.

Reasons name the field, never its value: quarantine reasons are counted by their text, and a
value (a hostile one: deeply nested, huge) has no place there.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from engine.timestamps import TimeOutOfRange, parse_event_time

# A weight (``count``, ``HitCount``) is an integer from 0 to this bound, the same as the rules'
# thresholds (Azure's int32): far beyond any real aggregate, and sums stay within SQLite's int64.
MAX_WEIGHT = 2**31 - 1
_MAX_DIGITS = len(str(MAX_WEIGHT))
# An integer that orjson and msgspec read alike: orjson makes a float of a JSON integer beyond
# 64 bits, so the fast paths (msgspec) leave integers outside int64 to the decoders.
JsonInt = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]


class BadRecord(Exception):
    """A record lacks what its format requires; the message is the quarantine reason."""


def poison_reason(exc: BaseException) -> str:
    """The quarantine reason for a record that made a decoder fail unexpectedly (any exception
    but :class:`BadRecord`): its kind, never its message, which may quote the record."""
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    return f"undecodable record ({type(exc).__name__})"


def type_name(value: Any) -> str:
    """The JSON (or MessagePack) name of a value's type, for reasons."""
    if value is None:
        return "null"
    return _TYPE_NAMES.get(type(value), "an unknown type")


_TYPE_NAMES: dict[type, str] = {
    bool: "a boolean",
    int: "a number",
    float: "a number",
    str: "a string",
    list: "an array",
    tuple: "an array",
    dict: "an object",
    bytes: "binary",
}


def need_str(obj: dict[str, Any], key: str, what: str | None = None) -> str:
    value = obj.get(key)
    if value is None:
        raise BadRecord(f"missing {what or key}")
    if not isinstance(value, str):
        raise BadRecord(f"wrong type: {key} is {type_name(value)}, not a string")
    if not value:
        raise BadRecord(f"missing {what or key}")
    return value


def need_time(obj: dict[str, Any], key: str) -> int:
    """The event time at ``key``: an RFC 3339 string within the plausible range
    (:func:`engine.timestamps.parse_event_time`)."""
    try:
        return parse_event_time(obj.get(key))  # type: ignore[arg-type]
    except ValueError:
        return event_time(need_str(obj, key, "time"), key)  # raises with the reason


def event_time(text: str, key: str) -> int:
    """``text`` as an event time; BadRecord ``bad time`` or ``time out of range``."""
    try:
        return parse_event_time(text)
    except TimeOutOfRange:
        raise BadRecord(f"time out of range: {key}") from None
    except ValueError:
        raise BadRecord(f"bad time: {key}") from None


def weight_of(value: Any, key: str) -> int:
    """A weight: an integer from 0 to :data:`MAX_WEIGHT`, as a number (a whole float too) or a
    string of ASCII digits; bools are refused."""
    if isinstance(value, bool):
        raise BadRecord(f"wrong type: {key} is a boolean")
    if isinstance(value, int):
        w = value
    elif isinstance(value, str):
        digits = value.strip()
        if not (digits.isdigit() and digits.isascii()):
            raise BadRecord(f"bad value: {key} is not a whole number")
        # int() of thousands of digits is slow (and refused past 4,300): look at the length.
        if len(digits.lstrip("0")) > _MAX_DIGITS:
            raise BadRecord(f"weight out of range: {key}")
        w = int(digits)
    elif isinstance(value, float):
        if not value.is_integer():  # also NaN and the infinities
            raise BadRecord(f"bad value: {key} is not a whole number")
        if not 0 <= value <= MAX_WEIGHT:
            raise BadRecord(
                f"weight out of range: {key}" if value > 0 else f"bad value: {key} is negative"
            )
        w = int(value)
    else:
        raise BadRecord(f"wrong type: {key} is {type_name(value)}, not a count")
    if w < 0:
        raise BadRecord(f"bad value: {key} is negative")
    if w > MAX_WEIGHT:
        raise BadRecord(f"weight out of range: {key}")
    return w


_PROTOCOLS = {
    "amqp": "amqp",
    "amqpws": "amqp",
    "amqp_websocket_only": "amqp",
    "amqp_ws": "amqp",
    "mqtt": "mqtt",
    "mqttws": "mqtt",
    "mqtt_websocket_only": "mqtt",
    "mqtt_ws": "mqtt",
    "http": "http",
    "https": "http",
}


# The spellings IoT Hub and SDKs actually write, looked up as they are before any folding.
_AS_WRITTEN = {
    **_PROTOCOLS,
    **{k.capitalize(): v for k, v in _PROTOCOLS.items()},
    "MqttWs": "mqtt",
    "AmqpWs": "amqp",
    "MQTT": "mqtt",
    "AMQP": "amqp",
    "HTTP": "http",
    "HTTPS": "http",
}


# Every spelling fold_protocol knows without trimming or case-folding it.
PROTOCOL_SPELLINGS = (*_AS_WRITTEN, *_PROTOCOLS)


def fold_protocol(value: Any) -> str | None:
    """``Amqp``/``AmqpWs`` → amqp, ``Mqtt``/``MqttWs`` → mqtt, ``Http``/``Https`` → http."""
    if type(value) is not str:
        return None
    folded = _AS_WRITTEN.get(value)
    return folded if folded is not None else _PROTOCOLS.get(value.strip().lower())


def is_unauthorized(value: Any) -> bool:
    """401 or a 401xxx code, as a number or a string (anything else is not a status)."""
    kind = type(value)
    if kind is str:
        return value.strip().startswith("401")
    if kind is int or kind is float:
        return str(value).startswith("401")
    return False

"""Helpers shared by the JSON decoders: field checks that raise ``BadRecord`` with a reason."""

from __future__ import annotations

from typing import Any

from engine.timestamps import parse_time


class BadRecord(Exception):
    """A record lacks what its format requires; the message is the quarantine reason."""


def need_str(obj: dict[str, Any], key: str, what: str | None = None) -> str:
    value = obj.get(key)
    if value is None:
        raise BadRecord(f"missing {what or key}")
    if not isinstance(value, str):
        raise BadRecord(f"wrong type: {key} is {type(value).__name__}, not a string")
    if not value:
        raise BadRecord(f"missing {what or key}")
    return value


def need_time(obj: dict[str, Any], key: str) -> int:
    text = need_str(obj, key, "time")
    try:
        return parse_time(text)
    except ValueError:
        raise BadRecord(f"bad time: {key} {text[:40]!r}") from None


def weight_of(value: Any, key: str) -> int:
    """A weight: a non-negative int or a numeric string (bools are refused)."""
    if isinstance(value, bool):
        raise BadRecord(f"wrong type: {key} is a boolean")
    if isinstance(value, int):
        w = value
    elif (isinstance(value, str) and value.strip().isdigit() and value.isascii()) or (
        isinstance(value, float) and value.is_integer()
    ):
        w = int(value)
    else:
        raise BadRecord(f"wrong type: {key} is {value!r:.40}, not a count")
    if w < 0:
        raise BadRecord(f"bad value: {key} is negative")
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


def fold_protocol(value: Any) -> str | None:
    """``Amqp``/``AmqpWs`` → amqp, ``Mqtt``/``MqttWs`` → mqtt, ``Http``/``Https`` → http."""
    if type(value) is not str:
        return None
    folded = _AS_WRITTEN.get(value)
    return folded if folded is not None else _PROTOCOLS.get(value.strip().lower())


def is_unauthorized(value: Any) -> bool:
    """401 or a 401xxx code, as an int or a string."""
    if value is None or isinstance(value, bool):
        return False
    return str(value).strip().startswith("401")

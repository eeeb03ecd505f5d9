"""hub-messages: messages as IoT Hub routes them, one record each.

A record is what IoT Hub message routing writes to a storage account — Avro
(``Microsoft.Azure.Devices.Message``: ``EnqueuedTimeUtc``, ``Properties``, ``SystemProperties``,
``Body``) or its JSON encoding, one object per line — or what Event Hubs Capture writes for the
built-in endpoint (``Microsoft.ServiceBus.Messaging.EventData``: the same fields and
``SequenceNumber``, ``Offset``). The container framing is ``engine.avrostream``'s; this module
maps one decoded record (a dict) to events.

- device: the system property ``connectionDeviceId`` (storage) or
  ``iothub-connection-device-id`` (Capture); for IoT Hub's own notifications also their
  ``deviceId`` application property;
- time: the enqueued time;
- telemetry → a device-to-cloud message of unknown protocol (``catalogue.D2C_UNKNOWN``: the
  evaluator takes the device's connect protocol); twin change notifications → twin updates;
  connection-state and lifecycle notifications → stored, their device known; a security message
  (the Defender interface id in a property, or an ``mti`` property) also yields its agent events,
  JSON or Azure RTOS FlatBuffers.
"""

from __future__ import annotations

import base64
import binascii
import re
from datetime import UTC, datetime
from typing import Any

import orjson

from engine import catalogue as c
from engine.event import Event, new_event
from engine.formats import rtos_security, security_messages
from engine.formats.common import BadRecord, type_name
from engine.timestamps import EARLIEST_EVENT, US, TimeOutOfRange, check_event_time, parse_event_time

NAME = "hub-messages"
SECURITY_INTERFACE = "urn:azureiot:Security:SecurityAgent:1"
# The Avro record schema IoT Hub routing writes to a storage endpoint ("Query Avro data by using
# Azure Data Lake Analytics", MicrosoftDocs/azure-docs articles/iot-hub/iot-hub-query-avro-data.md).
# The reader takes the schema from each file; this is for writing such files (samples, tests).
ROUTING_SCHEMA: dict[str, Any] = {
    "type": "record",
    "name": "Message",
    "namespace": "Microsoft.Azure.Devices",
    "fields": [
        {"name": "EnqueuedTimeUtc", "type": "string"},
        {"name": "Properties", "type": {"type": "map", "values": "string"}},
        {"name": "SystemProperties", "type": {"type": "map", "values": "string"}},
        {"name": "Body", "type": ["null", "bytes"]},
    ],
}
TELEMETRY = "Telemetry"

# ``iothub-message-source`` values (lower case) -> the name of their event, and the rule the
# event counts toward. Telemetry is "Telemetry" on the built-in endpoint ("deviceMessages" in
# some routing examples); storage records of telemetry carry no source at all.
_TWIN = "twinChangeEvents"
_SOURCES: dict[str, tuple[str, int]] = {
    "telemetry": (TELEMETRY, c.D2C_UNKNOWN),
    "devicemessages": (TELEMETRY, c.D2C_UNKNOWN),
    "twinchangeevents": (_TWIN, c.TWIN_UPDATES),
    "deviceconnectionstateevents": ("deviceConnectionStateEvents", 0),
    "devicelifecycleevents": ("deviceLifecycleEvents", 0),
    "digitaltwinchangeevents": ("digitalTwinChangeEvents", 0),
}
# The ``iothub-message-schema`` application property of IoT Hub's notifications, for records
# whose system properties lost the source.
_SCHEMAS = {
    "twinchangenotification": "twinchangeevents",
    "deviceconnectionstatenotification": "deviceconnectionstateevents",
    "devicelifecyclenotification": "devicelifecycleevents",
    "digitaltwinchangenotification": "digitaltwinchangeevents",
}
# System properties IoT Hub stamps on every message a device sends ("anti-spoofing
# properties"): a record that has one is the device's own, whatever its application properties
# claim.
_DEVICE_STAMPS = ("connectionAuthMethod", "iothub-connection-auth-method")
# Event Hubs Capture writes EnqueuedTimeUtc as .NET's invariant "M/d/yyyy h:mm:ss AM", in UTC.
_CAPTURE_TIME = re.compile(
    r"([0-9]{1,2})/([0-9]{1,2})/([0-9]{4}) ([0-9]{1,2}):([0-9]{2}):([0-9]{2}) ([AP])M"
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def sniff(obj: Any) -> bool:
    """The JSON encoding of routed messages: an object with ``EnqueuedTimeUtc`` and
    ``SystemProperties`` or ``Body``."""
    return (
        isinstance(obj, dict)
        and "EnqueuedTimeUtc" in obj
        and ("SystemProperties" in obj or "Body" in obj)
    )


def decode(rec: Any, pos: int, out: list[Event], bad: list[tuple[int | None, str]]) -> None:
    """Append the events of one routed message. A message that lacks what it needs raises
    BadRecord; a security message whose body does not decode keeps the message's own event and
    reports its fault in ``bad`` as (event index or None, reason)."""
    if type(rec) is not dict:
        raise BadRecord("not a JSON object")
    system = rec.get("SystemProperties")
    if type(system) is not dict:
        system = _map(rec, "SystemProperties")
    props = rec.get("Properties")
    if type(props) is not dict:
        props = _map(rec, "Properties")
    source = _text(system.get("iothub-message-source"))
    if source is None and not any(k in system for k in _DEVICE_STAMPS):
        schema = _text(props.get("iothub-message-schema"))
        source = _SCHEMAS.get(schema.lower()) if schema is not None else None
    if source is None:
        name, rule = TELEMETRY, c.D2C_UNKNOWN
    else:
        name, rule = _SOURCES.get(source.lower(), (source, 0))
        if name != TELEMETRY:
            op = _text(props.get("opType"))
            if op:
                name = f"{name}/{op}"
    device = _device(system, props if name != TELEMETRY else None)
    time = _enqueued_time(rec, system)
    out.append(new_event((time, device, name, rule, False, 0, None, 1, False, pos)))
    if name == TELEMETRY and _is_security(props, system):
        try:
            _security(rec, props, system, device, time, pos, out, bad)
        except BadRecord as exc:
            bad.append((None, str(exc)))


def record_json(rec: Any) -> bytes:
    """A record as the quarantine keeps it: the JSON encoding, a binary body in base64."""
    try:
        return orjson.dumps(rec, default=_bytes_as_base64)
    except (TypeError, orjson.JSONEncodeError):  # too deep or unencodable: its outline only
        return repr(rec)[:4096].encode("utf-8", "backslashreplace")


def _bytes_as_base64(value: Any) -> str:
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(value).decode()
    raise TypeError


# -- fields -----------------------------------------------------------------------------------------


def _map(rec: dict[str, Any], key: str) -> dict[str, Any]:
    value = rec.get(key)
    if value is None:
        return {}
    if type(value) is not dict:
        raise BadRecord(f"wrong type: {key} is {type_name(value)}, not an object")
    return value


def _text(value: Any) -> str | None:
    """A property as text: Capture's map values may be bytes (or numbers: not text)."""
    if type(value) is str:
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return None


def _device(system: dict[str, Any], notification: dict[str, Any] | None) -> str:
    for key in ("connectionDeviceId", "iothub-connection-device-id"):
        value = system.get(key)
        if value is not None:
            device = _text(value)
            if device is None:
                raise BadRecord(f"wrong type: {key} is {type_name(value)}, not a string")
            if device:
                return device
    if notification is not None:
        # IoT Hub's own notifications also name the device in an application property.
        device = _text(notification.get("deviceId"))
        if device:
            return device
    raise BadRecord("missing device")


def _enqueued_time(rec: dict[str, Any], system: dict[str, Any]) -> int:
    stamp = rec.get("EnqueuedTimeUtc")
    if type(stamp) is str:
        try:
            return parse_event_time(stamp)
        except TimeOutOfRange:
            raise BadRecord("time out of range: EnqueuedTimeUtc") from None
        except ValueError:
            pass
    elif stamp is not None:
        raise BadRecord(f"wrong type: EnqueuedTimeUtc is {type_name(stamp)}, not a string")
    # Capture's own time has whole seconds only: IoT Hub's enqueued time, when the record has
    # it, is the exact one.
    exact = _system_time(system)
    if exact is not None:
        return exact
    if stamp is None:
        raise BadRecord("missing time")
    m = _CAPTURE_TIME.fullmatch(stamp)
    if m is None:
        raise BadRecord("bad time: EnqueuedTimeUtc")
    month, day, year, hour, minute, second, half = m.groups()
    h = int(hour)
    if not 1 <= h <= 12:
        raise BadRecord("bad time: EnqueuedTimeUtc")
    h = h % 12 + (12 if half == "P" else 0)
    try:
        when = datetime(int(year), int(month), int(day), h, int(minute), int(second), tzinfo=UTC)
    except ValueError:
        raise BadRecord("bad time: EnqueuedTimeUtc") from None
    try:
        return check_event_time(int((when - _EPOCH).total_seconds()) * US)
    except TimeOutOfRange:
        raise BadRecord("time out of range: EnqueuedTimeUtc") from None


def _system_time(system: dict[str, Any]) -> int | None:
    """``iothub-enqueuedtime`` (milliseconds since the epoch, or RFC 3339 text), if usable."""
    value = system.get("iothub-enqueuedtime", system.get("enqueuedTime"))
    try:
        if type(value) is int or type(value) is float:
            us = int(value * 1000)
            return check_event_time(us) if us >= EARLIEST_EVENT else None
        text = _text(value)
        return parse_event_time(text) if text is not None else None
    except (ValueError, OverflowError):
        return None


# -- security messages ------------------------------------------------------------------------------


_SECURITY_BYTES = SECURITY_INTERFACE.encode()


def _is_security(props: dict[str, Any], system: dict[str, Any]) -> bool:
    if "mti" in props:
        return True
    for values in (props.values(), system.values()):
        if SECURITY_INTERFACE in values or _SECURITY_BYTES in values:
            return True
    return False


def _security(
    rec: dict[str, Any],
    props: dict[str, Any],
    system: dict[str, Any],
    device: str,
    time: int,
    pos: int,
    out: list[Event],
    bad: list[tuple[int | None, str]],
) -> None:
    """Decode a security message's body into agent events of ``device``."""
    body = _body(rec.get("Body"), system)
    mti = props.get("mti")
    if mti is not None:
        encoding = rtos_security.check_mti(mti, encoding=None).encoding
        if encoding not in (rtos_security.JSON_ENCODING, rtos_security.FLATBUFFERS_ENCODING):
            rtos_security.check_mti(mti)  # raises with the reason
        flatbuffers = encoding == rtos_security.FLATBUFFERS_ENCODING
    else:  # the interface id alone: the body says which
        flatbuffers = isinstance(body, bytes) and body.lstrip()[:1] not in (b"{", b"")
    if flatbuffers:
        if not isinstance(body, bytes):
            raise BadRecord("FlatBuffers: body is not binary")
        # A board without a real-time clock: the enqueued time stands in for its clock.
        events, faults = rtos_security.decode_message(body, device, pos, host_now=time)
        out += events
        bad += [(None, f.reason) for f in faults]
        return
    if isinstance(body, bytes):
        try:
            body = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise BadRecord("bad JSON in message body") from None
    start = len(out)
    try:
        security_messages.decode_message(body, device, pos, out, bad, None)
    except BadRecord:
        del out[start:]
        raise


def _body(body: Any, system: dict[str, Any]) -> Any:
    """The message body: bytes (Avro), or what the JSON encoding holds — a JSON value when the
    message was JSON in UTF-8, else its bytes in base64."""
    if body is None or isinstance(body, bytes):
        return body or b""
    if type(body) is not str:
        return body  # a JSON value, written as such
    content = (_text(system.get("contentType")) or "").lower()
    encoding = (_text(system.get("contentEncoding")) or "").lower()
    if content.startswith("application/json") and encoding in ("utf-8", "utf8"):
        return body.encode()
    try:
        return base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        return body.encode()

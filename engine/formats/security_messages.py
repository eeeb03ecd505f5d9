"""security-messages: Defender for IoT security-agent messages, one per line.

Envelopes: ``{"deviceId", "body": message}``, ``az iot hub monitor-events --output json``
(``{"event": {"origin", "payload": message}}``), or a bare message with ``DeviceId``. The same
message mapping serves frames from serial boards.
"""

from __future__ import annotations

from typing import Any

import orjson

from engine import catalogue as c
from engine.event import Event, new_event
from engine.formats.common import BadRecord, event_time, poison_reason, weight_of
from engine.timestamps import US, parse_event_time, parse_time

NAME = "security-messages"

EARLIEST_BOARD_TIME = parse_time("2020-01-01T00:00:00Z")
BOARD_AHEAD_LIMIT = 5 * 60 * US


def sniff(obj: Any) -> bool:
    if not isinstance(obj, dict):
        return False
    if "body" in obj and "deviceId" in obj:
        return True
    event = obj.get("event")
    if isinstance(event, dict) and "origin" in event and "payload" in event:
        return True
    return isinstance(obj.get("Events"), list)


def unwrap(obj: Any) -> tuple[str | None, Any]:
    """The device id the envelope names (or None) and the message inside it."""
    if not isinstance(obj, dict):
        raise BadRecord("not a JSON object")
    if "body" in obj:
        device, message = obj.get("deviceId"), obj["body"]
    elif isinstance(obj.get("event"), dict):
        event = obj["event"]
        device, message = event.get("origin"), event.get("payload")
    else:
        device, message = obj.get("DeviceId"), obj
    if isinstance(message, str | bytes):
        try:
            message = orjson.loads(message)
        except orjson.JSONDecodeError:
            raise BadRecord("bad JSON in message body") from None
    if device is not None and not isinstance(device, str):
        raise BadRecord("wrong type: device id is not a string")
    return device or None, message


def decode(obj: Any, pos: int, out: list[Event], bad: list[tuple[int, str]]) -> None:
    """Decode one enveloped message from a file."""
    device, message = unwrap(obj)
    if device is None and isinstance(message, dict):
        inner = message.get("DeviceId")
        device = inner if isinstance(inner, str) and inner else None
    if device is None:
        raise BadRecord("missing device")
    decode_message(message, device, pos, out, bad, None)


def decode_message(
    message: Any,
    device: str,
    pos: int,
    out: list[Event],
    bad: list[tuple[int, str]],
    host_now: int | None,
) -> None:
    """Append one event per payload item of every event of ``message``.

    A broken event is reported in ``bad`` as (index, reason) and the others are kept; the reason
    does not name the index, so that reasons group by cause.
    ``host_now`` is given for serial boards: a time that is missing, unreadable, before 2020 or
    more than five minutes ahead of it is replaced by it and the event marked host-timed.
    """
    if not isinstance(message, dict):
        raise BadRecord("message is not an object")
    events = message.get("Events")
    if not isinstance(events, list):
        raise BadRecord("missing Events" if events is None else "wrong type: Events is not a list")
    for index, ev in enumerate(events):
        try:
            _decode_event(ev, device, pos, out, host_now)
        except BadRecord as exc:
            bad.append((index, str(exc)))
        except Exception as exc:  # a poison event: quarantined, the message's others are kept
            bad.append((index, poison_reason(exc)))


def _decode_event(ev: Any, device: str, pos: int, out: list[Event], host_now: int | None) -> None:
    if not isinstance(ev, dict):
        raise BadRecord("event is not an object")
    name = ev.get("Name")
    if not isinstance(name, str) or not name:
        raise BadRecord("missing Name" if name is None else "wrong type: Name")
    payload = ev.get("Payload")
    if not isinstance(payload, list):
        raise BadRecord("missing Payload" if payload is None else "wrong type: Payload")
    stamp = ev.get("TimestampUTC")
    host_timed = False
    if host_now is None:
        if stamp is None:
            raise BadRecord("missing TimestampUTC")
        try:
            time = parse_event_time(stamp)
        except ValueError:
            if not isinstance(stamp, str):
                raise BadRecord("wrong type: TimestampUTC") from None
            time = event_time(stamp, "TimestampUTC")  # raises with the reason
    else:
        time = _board_time(stamp, host_now)
        if time is None:
            time, host_timed = host_now, True
    # Check every item before appending any, so a bad item quarantines the event whole.
    if not payload:
        # An empty event (a heartbeat, an empty periodic snapshot) is still a sign of life:
        # stored as one event that counts toward nothing, so the device becomes known.
        out.append(new_event((time, device, name, 0, False, 0, None, 1, host_timed, pos)))
        return
    start = len(out)
    try:
        for item in payload:
            out.append(_item_event(name, item, time, device, pos, host_timed))
    except Exception:  # BadRecord, or a poison item
        del out[start:]
        raise


def _board_time(stamp: Any, host_now: int) -> int | None:
    if not isinstance(stamp, str):
        return None
    try:
        time = parse_time(stamp)
    except ValueError:
        return None
    if time < EARLIEST_BOARD_TIME or time > host_now + BOARD_AHEAD_LIMIT:
        return None
    return time


def _item_event(name: str, item: Any, time: int, device: str, pos: int, host: bool) -> Event:
    if not isinstance(item, dict):
        raise BadRecord("payload item is not an object")
    extra = item.get("ExtraDetails")
    weight = 1
    if isinstance(extra, dict) and "HitCount" in extra:
        weight = weight_of(extra["HitCount"], "ExtraDetails.HitCount")
    if name == "ConnectionCreate":
        direction = item.get("Direction")
        allow = 0
        if isinstance(direction, str):
            d = direction.lower()
            if d.startswith("out"):
                allow = c.CONNECTION_TO_IP
            elif d.startswith("in"):
                allow = c.CONNECTION_FROM_IP
        address = item.get("RemoteAddress")
        if address is None:
            allow = 0
        elif type(address) is not str:
            address = _text(address, "RemoteAddress")
        return new_event(
            (time, device, name, c.ACTIVE_CONNECTIONS, False, allow, address, weight, host, pos)
        )
    if name == "Login":
        result = item.get("Result")
        result = result.lower() if isinstance(result, str) else ""
        if result in ("fail", "failed", "failure"):
            return new_event(
                (time, device, name, c.FAILED_LOGINS, False, 0, None, weight, host, pos)
            )
        if result in ("success", "succeeded"):
            user = item.get("UserName") or item.get("UserId")
            if user is not None and type(user) is not str:
                user = _text(user, "UserName" if item.get("UserName") else "UserId")
            return new_event(
                (
                    time,
                    device,
                    name,
                    0,
                    False,
                    c.LOCAL_USER if user else 0,
                    user or None,
                    weight,
                    host,
                    pos,
                )
            )
        return new_event((time, device, name, 0, False, 0, None, weight, host, pos))
    if name == "ProcessCreate":
        exe = item.get("Executable")
        if exe is not None and not isinstance(exe, str):
            raise BadRecord("wrong type: Executable")
        return new_event(
            (time, device, name, 0, False, c.PROCESS if exe else 0, exe or None, weight, host, pos)
        )
    return new_event((time, device, name, 0, False, 0, None, weight, host, pos))


def _text(value: Any, key: str) -> str:
    """A value that is not a string, checked as text: a number (or a boolean) as its text; an
    array, an object or binary data is no name or address (BadRecord)."""
    if type(value) in (int, float, bool):
        return str(value)
    raise BadRecord(f"wrong type: {key}")

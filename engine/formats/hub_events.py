"""hub-events: iotwatch's JSON-lines feed of hub-side operations.

``{"time", "deviceId", "moduleId"?, "op", "protocol"?, "status"?, "count"?}``
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from engine import catalogue as c
from engine.event import Event, new_event
from engine.formats.common import (
    MAX_WEIGHT,
    PROTOCOL_SPELLINGS,
    BadRecord,
    JsonInt,
    fold_protocol,
    is_unauthorized,
    need_str,
    need_time,
    weight_of,
)
from engine.timestamps import parse_event_time

NAME = "hub-events"

_MESSAGE_OPS = {"d2c": c.D2C, "c2d": c.C2D, "c2d-reject": c.C2D_REJECTED}
# Common statuses that are certainly not 401/401xxx: skip the string test for them.
_PLAIN_STATUS = frozenset({200, 201, 202, 204, 400, 403, 404, 409, 412, 429, 500, 503})
_OPS = {
    "method": c.DIRECT_METHODS,
    "upload": c.FILE_UPLOADS,
    "purge": c.QUEUE_PURGES,
    "twin-update": c.TWIN_UPDATES,
}


def sniff(obj: Any) -> bool:
    return isinstance(obj, dict) and "op" in obj and "deviceId" in obj


def decode(obj: Any, pos: int, out: list[Event]) -> None:
    """Append the record's event to ``out``; raise BadRecord when it lacks what it needs."""
    if type(obj) is not dict:
        raise BadRecord("not a JSON object")
    get = obj.get
    op = get("op")
    if op.__class__ is not str:
        raise BadRecord("missing op" if op is None else "wrong type: op is not a string")
    by_protocol = _MESSAGE_OPS.get(op)
    protocol = None
    if by_protocol is not None:
        protocol = fold_protocol(get("protocol"))
        if protocol is None:
            raw = get("protocol")
            if raw is None:
                raise BadRecord("missing protocol")
            if type(raw) is not str:
                raise BadRecord("wrong type: protocol is not a string")
            raise BadRecord("unknown protocol")
        rule = by_protocol[protocol]
    else:
        rule = _OPS.get(op)
        if rule is None:
            raise BadRecord("unknown op")
    stamp = get("time")
    try:
        time = parse_event_time(stamp)  # type: ignore[arg-type]
    except (ValueError, TypeError):
        time = need_time(obj, "time")  # raises with the precise reason
    device = get("deviceId")
    if type(device) is not str or not device:
        device = need_str(obj, "deviceId", "device")
    count = get("count")
    if count is None:
        weight = 1
    elif type(count) is int and 0 <= count <= MAX_WEIGHT:
        weight = count
    else:
        weight = weight_of(count, "count")
    module = get("moduleId")
    if module is not None and type(module) is not str:
        raise BadRecord("wrong type: moduleId is not a string")
    status = get("status")
    unauthorized = status is not None and (
        status == 401
        or (not (type(status) is int and status in _PLAIN_STATUS) and is_unauthorized(status))
    )
    out.append(new_event((time, device, op, rule, unauthorized, 0, protocol, weight, False, pos)))


# -- the fast path ----------------------------------------------------------------------------


class _Record(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """The common, valid shape of a record, decoded and type-checked in C. Every field is typed
    narrowly (no floats, no nesting, no unknown keys): msgspec validates what it decodes but only
    skims what it skips, so nothing is skipped."""

    time: str
    deviceId: str
    op: str
    moduleId: str | None = None
    protocol: str | None = None
    status: JsonInt | str | None = None
    count: Annotated[int, msgspec.Meta(ge=0, le=MAX_WEIGHT)] | None = None


_decode_record = msgspec.json.Decoder(_Record).decode
_new = tuple.__new__
# (op, protocol as written) -> (rule, folded protocol), for every op and spelling the decoder
# reads without a question: one lookup instead of three. A pair not here (another spelling,
# a protocol on an op that has none) takes the general path below.
_RULE_OF: dict[tuple[str, str | None], tuple[int, str | None]] = {
    **{
        (op, spelling): (by_protocol[folded], folded)
        for op, by_protocol in _MESSAGE_OPS.items()
        for spelling in PROTOCOL_SPELLINGS
        if (folded := fold_protocol(spelling)) is not None
    },
    **{(op, None): (rule, None) for op, rule in _OPS.items()},
}


def decode_line(line: bytes, pos: int, out: list[Event]) -> int:
    """Decode one line that holds a valid record of the common shape and append its event to
    ``out``; the number of records: 1. 0: the line holds something else (bad JSON, another
    shape, a value :func:`decode` refuses or reads in a way this does not) and nothing was
    appended: :func:`decode` decides, the single source of truth for what is quarantined and
    why."""
    try:
        r = _decode_record(line)
    except msgspec.DecodeError:  # ValidationError included
        return 0
    op = r.op
    known = _RULE_OF.get((op, r.protocol))
    if known is not None:
        rule, protocol = known
    else:
        by_protocol = _MESSAGE_OPS.get(op)
        if by_protocol is not None:
            protocol = fold_protocol(r.protocol)
            if protocol is None:
                return 0
            rule = by_protocol[protocol]
        else:
            rule = _OPS.get(op)
            if rule is None:
                return 0
            protocol = None
    try:
        time = parse_event_time(r.time)
    except ValueError:
        return 0
    device = r.deviceId
    if not device:
        return 0
    count = r.count
    status = r.status
    unauthorized = status is not None and (
        status == 401
        or (not (type(status) is int and status in _PLAIN_STATUS) and is_unauthorized(status))
    )
    out.append(
        _new(
            Event,
            (
                time,
                device,
                op,
                rule,
                unauthorized,
                0,
                protocol,
                1 if count is None else count,
                False,
                pos,
            ),
        )
    )
    return 1

"""hub-events: iotwatch's JSON-lines feed of hub-side operations.

``{"time", "deviceId", "moduleId"?, "op", "protocol"?, "status"?, "count"?}``
"""

from __future__ import annotations

from typing import Any

from engine import catalogue as c
from engine.event import Event
from engine.formats.common import BadRecord, fold_protocol, is_unauthorized, need_str, need_time
from engine.formats.common import weight_of

NAME = "hub-events"

_MESSAGE_OPS = {"d2c": c.D2C, "c2d": c.C2D, "c2d-reject": c.C2D_REJECTED}
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
    if not isinstance(obj, dict):
        raise BadRecord("not a JSON object")
    op = obj.get("op")
    by_protocol = _MESSAGE_OPS.get(op)  # type: ignore[arg-type]
    protocol = None
    if by_protocol is not None:
        protocol = fold_protocol(obj.get("protocol"))
        if protocol is None:
            raw = obj.get("protocol")
            raise BadRecord("missing protocol" if raw is None else f"unknown protocol {raw!r:.40}")
        rule = by_protocol[protocol]
    else:
        rule = _OPS.get(op)  # type: ignore[arg-type]
        if rule is None:
            raise BadRecord("missing op" if op is None else f"unknown op {op!r:.40}")
    time = need_time(obj, "time")
    device = need_str(obj, "deviceId", "device")
    count = obj.get("count")
    weight = 1 if count is None else weight_of(count, "count")
    module = obj.get("moduleId")
    if module is not None and not isinstance(module, str):
        raise BadRecord("wrong type: moduleId is not a string")
    out.append(
        Event(
            time,
            device,
            op,
            rule,
            is_unauthorized(obj.get("status")),
            0,
            protocol,
            weight,
            False,
            pos,
        )
    )

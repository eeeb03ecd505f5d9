"""hub-log: Azure IoT Hub resource logs (storage-account JSON lines or Event Hubs ``records``)."""

from __future__ import annotations

from typing import Any

import orjson

from engine import catalogue as c
from engine.event import Event, new_event
from engine.formats.common import BadRecord, fold_protocol, is_unauthorized, need_str, need_time

NAME = "hub-log"


def sniff(obj: Any) -> bool:
    if isinstance(obj, dict) and isinstance(obj.get("records"), list):
        return True
    return isinstance(obj, dict) and "operationName" in obj and "category" in obj


def records_of(obj: Any) -> list[Any]:
    """The resource-log records of one parsed line: a ``{"records": [...]}`` batch or one record."""
    if isinstance(obj, dict) and isinstance(obj.get("records"), list):
        return obj["records"]
    return [obj]


def decode(obj: Any, pos: int, out: list[Event]) -> None:
    """Append the event of one resource-log record; raise BadRecord when it lacks what it needs."""
    if not isinstance(obj, dict):
        raise BadRecord("not a JSON object")
    props = obj.get("properties")
    if isinstance(props, str):
        try:
            props = orjson.loads(props)
        except orjson.JSONDecodeError:
            raise BadRecord("bad JSON in properties") from None
    if not isinstance(props, dict):
        raise BadRecord("missing properties" if props is None else "wrong type: properties")
    time = need_time(obj, "time")
    device = need_str(props, "deviceId", "device")
    category = obj.get("category")
    operation = obj.get("operationName")
    if not isinstance(category, str) or not isinstance(operation, str):
        raise BadRecord("missing category or operationName")
    cat = category.lower()
    op = operation.lower()
    protocol = fold_protocol(props.get("protocol"))
    rule = 0
    if cat == "directmethods" and op == "send":
        rule = c.DIRECT_METHODS
    elif cat in ("d2ctwinoperations", "c2dtwinoperations") and op == "update":
        rule = c.TWIN_UPDATES
    elif cat == "fileuploadoperations" and op == "ingress":
        rule = c.FILE_UPLOADS
    elif cat == "devicetelemetry" and op == "ingress" and protocol is not None:
        rule = c.D2C[protocol]
    unauthorized = is_unauthorized(obj.get("resultType")) or is_unauthorized(
        props.get("statusCode")
    )
    out.append(
        new_event(
            (
                time,
                device,
                f"{category}/{operation}",
                rule,
                unauthorized,
                0,
                protocol,
                1,
                False,
                pos,
            )
        )
    )

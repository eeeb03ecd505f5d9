"""hub-log: Azure IoT Hub resource logs (storage-account JSON lines or Event Hubs ``records``)."""

from __future__ import annotations

from typing import Any

import orjson

from engine import catalogue as c
from engine.event import MAX_RAW, Event, HubRecord, new_event
from engine.formats.common import BadRecord, fold_protocol, is_unauthorized, need_str, need_time

NAME = "hub-log"

# The categories whose records are about one device: their documented properties carry
# ``deviceId`` ("Azure IoT Hub monitoring data reference", resource logs). A record of one of
# them without its device is broken; a record of any other category (Routes, JobsOperations,
# TwinQueries, Configurations, DistributedTracing's ingress and egress logs, categories added
# later) may be hub-wide by design. Lower case, as compared.
PER_DEVICE = frozenset(
    {
        "c2dcommands",
        "c2dtwinoperations",
        "d2ctwinoperations",
        "connections",
        "deviceidentityoperations",
        "devicestreams",
        "devicetelemetry",
        "directmethods",
        "fileuploadoperations",
    }
)


def sniff(obj: Any) -> bool:
    if isinstance(obj, dict) and isinstance(obj.get("records"), list):
        return True
    return isinstance(obj, dict) and "operationName" in obj and "category" in obj


def records_of(obj: Any) -> list[Any]:
    """The resource-log records of one parsed line: a ``{"records": [...]}`` batch or one record."""
    if isinstance(obj, dict) and isinstance(obj.get("records"), list):
        return obj["records"]
    return [obj]


def decode(
    obj: Any, pos: int, out: list[Event], hub: list[HubRecord] | None = None, raw: bytes = b""
) -> None:
    """Append the event of one resource-log record, or, for a hub-wide record without a device,
    its :class:`HubRecord` to ``hub`` (``raw``: the record's bytes); raise BadRecord when it lacks
    what it needs."""
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
    category = obj.get("category")
    operation = obj.get("operationName")
    device = props.get("deviceId")
    if type(device) is not str or not device:
        if (
            (device is None or device == "")
            and hub is not None
            and isinstance(category, str)
            and isinstance(operation, str)
            and category.lower() not in PER_DEVICE
        ):
            result = obj.get("resultType")
            result = None if result is None or result == "" else str(result)
            hub.append(HubRecord(pos, time, category, operation, result, raw[:MAX_RAW]))
            return
        device = need_str(props, "deviceId", "device")  # raises with the reason
    if not isinstance(category, str) or not isinstance(operation, str):
        raise BadRecord("missing category or operationName")
    cat = category.lower()
    op = operation.lower()
    raw_protocol = props.get("protocol")
    protocol = fold_protocol(raw_protocol)
    rule = 0
    if cat == "directmethods" and op == "send":
        rule = c.DIRECT_METHODS
    elif cat in ("d2ctwinoperations", "c2dtwinoperations") and op == "update":
        rule = c.TWIN_UPDATES
    elif cat == "fileuploadoperations" and op == "ingress":
        rule = c.FILE_UPLOADS
    elif cat == "devicetelemetry" and op == "ingress":
        if protocol is not None:
            rule = c.D2C[protocol]
        elif raw_protocol is None:
            # Real DeviceTelemetry records name no protocol: the evaluator takes the device's
            # connect protocol (SPEC §2). One that names an unknown protocol counts toward none.
            rule = c.D2C_UNKNOWN
    elif cat == "connections" and op == "deviceconnect" and protocol is not None:
        rule = c.CONNECT  # the device's protocol from now on; value is the folded protocol
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

"""hub-log: Azure IoT Hub resource logs (storage-account JSON lines or Event Hubs ``records``)."""

from __future__ import annotations

from typing import Any

import msgspec
import orjson

from engine import catalogue as c
from engine.event import MAX_RAW, Event, HubRecord, new_event
from engine.formats.common import (
    BadRecord,
    JsonInt,
    fold_protocol,
    is_unauthorized,
    need_str,
    need_time,
)
from engine.timestamps import parse_event_time

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
    out.append(
        _event(
            time,
            device,
            category,
            operation,
            props.get("protocol"),
            obj.get("resultType"),
            props.get("statusCode"),
            pos,
        )
    )


def _event(
    time: int,
    device: str,
    category: str,
    operation: str,
    raw_protocol: Any,
    result: Any,
    status: Any,
    pos: int,
) -> Event:
    """The event of a valid per-device record (both paths build it here)."""
    cat = category.lower()
    op = operation.lower()
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
    unauthorized = is_unauthorized(result) or is_unauthorized(status)
    return new_event(
        (time, device, f"{category}/{operation}", rule, unauthorized, 0, protocol, 1, False, pos)
    )


# -- the fast path ----------------------------------------------------------------------------

# A value the fast path lets through where the decoder does not look, or looks at a scalar: no
# floats (orjson refuses some that msgspec reads), no nesting, integers within int64.
Scalar = str | JsonInt | bool | None


class _Properties(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """``properties`` as the categories document them; another key takes the slow path.
    Unknown keys are refused rather than skipped: msgspec only skims what it skips."""

    deviceId: str
    protocol: Scalar = None
    statusCode: Scalar = None
    authType: Scalar = None
    authenticationType: Scalar = None
    maskedIpAddress: Scalar = None
    sdkVersion: Scalar = None
    messageSize: Scalar = None
    messageSizeInBytes: Scalar = None
    messageId: Scalar = None
    batching: Scalar = None
    deliveryCount: Scalar = None
    deliveryAcknowledgement: Scalar = None
    expiryTime: Scalar = None
    timeInSystem: Scalar = None
    ttl: Scalar = None
    EventProcessedUtcTime: Scalar = None
    EventEnqueuedUtcTime: Scalar = None
    endpointName: Scalar = None
    endpointType: Scalar = None
    errorMessage: Scalar = None
    details: Scalar = None
    methodName: Scalar = None
    RequestSize: Scalar = None
    ResponseSize: Scalar = None
    requestSize: Scalar = None
    responseSize: Scalar = None
    blobUri: Scalar = None
    moduleId: Scalar = None
    isRoutingEnabled: Scalar = None
    parentSpanId: Scalar = None
    callerLocalTimeUtc: Scalar = None
    calleeLocalTimeUtc: Scalar = None
    jobId: Scalar = None
    startTimeUtc: Scalar = None
    duration: Scalar = None


class _Record(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """One resource-log record with the common schema's top-level fields."""

    time: str
    category: str
    operationName: str
    properties: str | _Properties
    resultType: Scalar = None
    resourceId: Scalar = None
    tenantId: Scalar = None
    level: Scalar = None
    Level: Scalar = None
    resultSignature: Scalar = None
    resultDescription: Scalar = None
    durationMs: Scalar = None
    callerIpAddress: Scalar = None
    correlationId: Scalar = None
    operationVersion: Scalar = None
    location: Scalar = None


class _Batch(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """An Event Hubs ``{"records": [...]}`` batch."""

    records: list[_Record]


_decode_record = msgspec.json.Decoder(_Record).decode
_decode_batch = msgspec.json.Decoder(_Batch).decode
_decode_properties = msgspec.json.Decoder(_Properties).decode


def decode_line(line: bytes, pos: int, out: list[Event]) -> int:
    """Decode one line of valid per-device records of the common shape (one record, or a
    ``records`` batch) and append their events to ``out``; the number of records. 0: the line
    holds something else (bad JSON, another shape, a hub-wide or broken record, a value
    :func:`decode` reads in a way this does not) and nothing was appended: :func:`decode`
    decides, the single source of truth for what is quarantined and why."""
    try:
        try:
            events = [_fast_event(_decode_record(line), pos)]
        except msgspec.DecodeError:  # not one record: a batch (fails at its first key if not)
            events = [_fast_event(r, pos) for r in _decode_batch(line).records]
    except (msgspec.DecodeError, _NotCommon):  # ValidationError included
        return 0
    out += events
    return len(events)


class _NotCommon(Exception):
    """A record the fast path leaves to :func:`decode`."""


def _fast_event(r: _Record, pos: int) -> Event:
    props = r.properties
    if type(props) is str:
        props = _decode_properties(props)  # DecodeError: not the common shape
    device = props.deviceId  # type: ignore[union-attr]
    if not device:
        raise _NotCommon
    try:
        time = parse_event_time(r.time)
    except ValueError:
        raise _NotCommon from None
    return _event(
        time,
        device,
        r.category,
        r.operationName,
        props.protocol,  # type: ignore[union-attr]
        r.resultType,
        props.statusCode,  # type: ignore[union-attr]
        pos,
    )

"""hub-log records as the decoder sees them: hub-wide records (SPEC §2, "Hub-wide records") and
the protocol pseudo events (SPEC §2, "Protocol of a hub message": the input side)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from engine import catalogue as c
from engine.event import HubRecord
from engine.formats import hub_log
from engine.formats.common import BadRecord
from engine.jsonstream import JsonStream
from engine.timestamps import parse_time

T = "2026-11-28T10:00:00Z"


def record(category: str, operation: str, **props: Any) -> dict[str, Any]:
    return {
        "time": T,
        "category": category,
        "operationName": operation,
        "resultType": "",
        "properties": orjson.dumps(props).decode(),
    }


def decode(rec: dict[str, Any]) -> tuple[list[Any], list[HubRecord]]:
    out: list[Any] = []
    hub: list[HubRecord] = []
    hub_log.decode(rec, 7, out, hub, b"raw")
    return out, hub


@pytest.mark.parametrize(
    ("props", "rule", "value"),
    [
        ({"deviceId": "d", "protocol": "MqttWs"}, c.D2C["mqtt"], "mqtt"),
        ({"deviceId": "d", "protocol": "Amqp"}, c.D2C["amqp"], "amqp"),
        # Real DeviceTelemetry records carry no protocol: the evaluator resolves it.
        ({"deviceId": "d"}, c.D2C_UNKNOWN, None),
        # A protocol that does not fold is the record's own, unknown one: no rule at all.
        ({"deviceId": "d", "protocol": "Coap"}, 0, None),
    ],
)
def test_telemetry_without_protocol_is_a_message_of_unknown_protocol(
    props: dict[str, Any], rule: int, value: str | None
) -> None:
    (event,), hub = decode(record("DeviceTelemetry", "ingress", **props))
    assert (event.rule, event.value, event.weight, event.device) == (rule, value, 1, "d")
    assert hub == []


@pytest.mark.parametrize(
    ("operation", "props", "rule", "value"),
    [
        ("deviceConnect", {"deviceId": "d", "protocol": "AmqpWs"}, c.CONNECT, "amqp"),
        ("deviceConnect", {"deviceId": "d", "protocol": "Https"}, c.CONNECT, "http"),
        ("deviceConnect", {"deviceId": "d"}, 0, None),  # no protocol to take
        ("deviceDisconnect", {"deviceId": "d", "protocol": "Mqtt"}, 0, "mqtt"),
    ],
)
def test_a_connect_with_a_protocol_is_a_connect_pseudo_event(
    operation: str, props: dict[str, Any], rule: int, value: str | None
) -> None:
    (event,), _ = decode(record("Connections", operation, **props))
    assert (event.name, event.rule, event.value) == (f"Connections/{operation}", rule, value)
    assert not event.unauthorized and event.allow == 0


@pytest.mark.parametrize(
    ("category", "operation", "props"),
    [
        ("Routes", "endpointUnhealthy", {"deviceId": None, "endpointName": "sb"}),
        ("JobsOperations", "jobCompleted", {"jobId": "j"}),
        ("TwinQueries", "query", {"query": "SELECT *"}),
        ("Configurations", "ReadManyConfigurations", {"configurationId": ""}),
        ("DistributedTracing", "DiagnosticIoTHubIngress", {"isRoutingEnabled": "true"}),
        ("DistributedTracing", "DiagnosticIoTHubEgress", {"endpointName": "eh"}),
        ("SomeFutureCategory", "op", {"deviceId": ""}),
    ],
)
def test_hub_wide_records_are_hub_records(
    category: str, operation: str, props: dict[str, Any]
) -> None:
    events, hub = decode({**record(category, operation, **props), "resultType": "403004"})
    assert events == []
    assert hub == [HubRecord(7, parse_time(T), category, operation, "403004", b"raw")]


def test_a_hub_wide_record_with_a_device_is_that_device_s_event() -> None:
    (event,), hub = decode(record("DistributedTracing", "DiagnosticIoTHubD2C", deviceId="d"))
    assert (event.device, event.name, event.rule) == (
        "d",
        "DistributedTracing/DiagnosticIoTHubD2C",
        0,
    )
    assert hub == []


@pytest.mark.parametrize("category", sorted(hub_log.PER_DEVICE))
def test_a_per_device_record_without_its_device_is_still_quarantined(category: str) -> None:
    with pytest.raises(BadRecord, match=r"^missing device$"):
        decode(record(category, "x"))


def test_hub_wide_records_still_need_a_time() -> None:
    with pytest.raises(BadRecord, match=r"^bad time: time$"):
        decode({**record("Routes", "x"), "time": "UTC timestamp"})


def test_batch_elements_keep_their_own_bytes_and_their_index_apart_from_the_reason() -> None:
    batch = {
        "records": [
            record("Routes", "endpointUnhealthy", deviceId=None),
            record("DirectMethods", "send", deviceId="d"),
            {**record("DirectMethods", "send", deviceId="d"), "time": "later"},
        ]
    }
    line = orjson.dumps(batch)
    stream = JsonStream()
    stream.feed(line + b"\n")
    events, bad = stream.take()
    (hub,) = stream.take_hub()
    assert orjson.loads(hub.raw) == batch["records"][0]  # the element, not the whole line
    assert [e.name for e in events] == ["DirectMethods/send"]
    ((reason, part, raw),) = [(b.reason, b.part, b.raw) for b in bad]
    assert (reason, part, raw) == ("bad time: time", 2, line)
    assert stream.records == 3

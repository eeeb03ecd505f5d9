"""hub-messages (SPEC §2): routed IoT Hub messages in Avro (IoT Hub message routing to storage,
Event Hubs Capture) and routing's JSON encoding.

Test files are written with fastavro in the record schemas Microsoft documents:

- routing to storage: "Query Avro data by using Azure Data Lake Analytics" (MicrosoftDocs/
  azure-docs ``articles/iot-hub/iot-hub-query-avro-data.md``): record ``Message``, namespace
  ``Microsoft.Azure.Devices``, fields ``EnqueuedTimeUtc`` (string), ``Properties`` and
  ``SystemProperties`` (maps of strings), ``Body`` (null or bytes);
- Event Hubs Capture: "Exploring captured Avro files in Azure Event Hubs" (``articles/event-hubs/
  explore-captured-avro-files.md``): record ``EventData``, namespace
  ``Microsoft.ServiceBus.Messaging``, fields ``SequenceNumber`` (long), ``Offset``,
  ``EnqueuedTimeUtc`` (strings), ``SystemProperties``, ``Properties`` (maps of long, double,
  string or bytes), ``Body`` (null or bytes).

Property names and values follow "Create and read IoT Hub messages", "Azure IoT Hub
non-telemetry event schemas" and IoT Central's storage export example (``SystemProperties``
``connectionDeviceId``, ``contentType``, ``contentEncoding``, ``enqueuedTime``).
"""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import fastavro
import orjson
import pytest

from engine import catalogue as c
from engine.avrostream import MAGIC, AvroStream, HubMessagesFile, file_decoder
from engine.formats import hub_messages as hm
from engine.formats.common import BadRecord
from engine.jsonstream import JsonStream, sniff
from engine.timestamps import US, format_time, parse_time
from tests.conftest import agent_event, config_from, run_replay
from tests.test_rtos_security import event, g, message, network, process, word

ROUTING_SCHEMA = hm.ROUTING_SCHEMA
CAPTURE_SCHEMA = {
    "type": "record",
    "name": "EventData",
    "namespace": "Microsoft.ServiceBus.Messaging",
    "fields": [
        {"name": "SequenceNumber", "type": "long"},
        {"name": "Offset", "type": "string"},
        {"name": "EnqueuedTimeUtc", "type": "string"},
        {
            "name": "SystemProperties",
            "type": {"type": "map", "values": ["long", "double", "string", "bytes"]},
        },
        {
            "name": "Properties",
            "type": {"type": "map", "values": ["long", "double", "string", "bytes"]},
        },
        {"name": "Body", "type": ["null", "bytes"]},
    ],
}
T0 = parse_time("2026-11-28T10:00:00Z")
AUTH = '{"scope":"device","type":"sas","issuer":"iothub","acceptingIpFilterRule":null}'


def enqueued(seconds: int) -> str:
    """Routing's EnqueuedTimeUtc: seven fractional digits."""
    return format_time(T0 + seconds * US).replace("Z", ".0000000Z").replace(".000000.", ".")


def telemetry(device: str, seconds: int, body: Any = None, **props: str) -> dict[str, Any]:
    """A device-to-cloud message as routing writes it to storage."""
    return {
        "EnqueuedTimeUtc": enqueued(seconds),
        "Properties": props,
        "SystemProperties": {
            "connectionDeviceId": device,
            "connectionAuthMethod": AUTH,
            "connectionDeviceGenerationId": "637051167384630591",
            "contentType": "application/json",
            "contentEncoding": "utf-8",
            "enqueuedTime": enqueued(seconds),
        },
        "Body": orjson.dumps(body if body is not None else {"temperature": 21.5}),
    }


def notification(device: str, seconds: int, source: str, schema: str, op: str) -> dict[str, Any]:
    """One of IoT Hub's own notifications (non-telemetry events) as routed."""
    return {
        "EnqueuedTimeUtc": enqueued(seconds),
        "Properties": {
            "hubName": "bench-hub",
            "deviceId": device,
            "opType": op,
            "iothub-message-schema": schema,
            "operationTimestamp": enqueued(seconds),
        },
        "SystemProperties": {
            "correlationId": "4d1f1e2e74f",
            "connectionDeviceId": device,
            "contentType": "application/json",
            "contentEncoding": "utf-8",
            "enqueuedTime": enqueued(seconds),
            "iothub-message-source": source,
        },
        "Body": b'{"version": 7}',
    }


def twin_change(device: str, seconds: int) -> dict[str, Any]:
    return notification(device, seconds, "twinChangeEvents", "twinChangeNotification", "updateTwin")


def connected(device: str, seconds: int) -> dict[str, Any]:
    rec = notification(
        device,
        seconds,
        "deviceConnectionStateEvents",
        "deviceConnectionStateNotification",
        "deviceConnected",
    )
    rec["Body"] = (
        b'{"sequenceNumber":"000000000000000001D8713FF7E0851400000002000000000000000000000007"}'
    )
    return rec


def created(device: str, seconds: int) -> dict[str, Any]:
    return notification(
        device,
        seconds,
        "deviceLifecycleEvents",
        "deviceLifecycleNotification",
        "createDeviceIdentity",
    )


def json_security(device: str, seconds: int, *events: dict[str, Any]) -> dict[str, Any]:
    """A Defender security message as a device SDK sends it: the interface id as the
    ``iothub-interface-id`` property (what the SDKs set for a security message)."""
    body = {"AgentVersion": "1.0", "MessageSchemaVersion": "1.0", "Events": list(events)}
    return telemetry(device, seconds, body, **{"iothub-interface-id": hm.SECURITY_INTERFACE})


def rtos_security(device: str, seconds: int, buf: bytes) -> dict[str, Any]:
    """An Azure RTOS security module's FlatBuffers message: ``mti`` 2.3-1-0-0."""
    rec = telemetry(device, seconds, None, mti="2.3-1-0-0")
    rec["Body"] = buf
    rec["SystemProperties"].update(contentType="application/octet-stream", contentEncoding="")
    return rec


def avro_file(
    records: list[dict[str, Any]], schema: dict[str, Any] = ROUTING_SCHEMA, **kw: Any
) -> bytes:
    out = io.BytesIO()
    fastavro.writer(out, fastavro.parse_schema(schema), records, **kw)
    return out.getvalue()


def capture_record(device: str, n: int, body: bytes, when: str, **system: Any) -> dict[str, Any]:
    """An Event Hubs Capture record of the built-in endpoint."""
    return {
        "SequenceNumber": n,
        "Offset": str(4096 * n),
        "EnqueuedTimeUtc": when,
        "SystemProperties": {
            "iothub-connection-device-id": device,
            "iothub-connection-auth-method": AUTH,
            "iothub-connection-auth-generation-id": "637051167384630591",
            "iothub-message-source": "Telemetry",
            **system,
        },
        "Properties": {},
        "Body": body,
    }


def decode_all(data: bytes, pieces: int = 1) -> AvroStream:
    stream = AvroStream()
    step = max(1, len(data) // pieces)
    for i in range(0, len(data), step):
        stream.feed(data[i : i + step])
    stream.finish()
    return stream


def brief(stream: AvroStream | JsonStream) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    events, bad = stream.take()
    return (
        [
            (e.time, e.device, e.name, e.rule, e.allow, e.value, e.weight, e.host_timed)
            for e in events
        ],
        [(b.reason, b.part) for b in bad],
    )


# -- the mapping ------------------------------------------------------------------------------------


def test_routed_shapes_map_to_their_events() -> None:
    ok = agent_event("ProcessCreate", "2026-11-28T09:59:00Z", {"Executable": "/bin/sh"})
    records = [
        telemetry("d1", 1),
        twin_change("d1", 2),
        connected("d1", 3),
        created("d2", 4),
        json_security("d1", 5, ok),
    ]
    events, bad = brief(decode_all(avro_file(records)))
    assert bad == []
    assert events == [
        (T0 + 1 * US, "d1", "Telemetry", c.D2C_UNKNOWN, 0, None, 1, False),
        (T0 + 2 * US, "d1", "twinChangeEvents/updateTwin", c.TWIN_UPDATES, 0, None, 1, False),
        (T0 + 3 * US, "d1", "deviceConnectionStateEvents/deviceConnected", 0, 0, None, 1, False),
        (T0 + 4 * US, "d2", "deviceLifecycleEvents/createDeviceIdentity", 0, 0, None, 1, False),
        # A security message is a device-to-cloud message too, and its events are agent events,
        # timed by their own TimestampUTC.
        (T0 + 5 * US, "d1", "Telemetry", c.D2C_UNKNOWN, 0, None, 1, False),
        (T0 - 60 * US, "d1", "ProcessCreate", 0, c.PROCESS, "/bin/sh", 1, False),
    ]


@pytest.mark.parametrize("codec", ["null", "deflate"])
@pytest.mark.parametrize("pieces", [1, 7, 1000])
def test_avro_round_trip_in_any_chunking(codec: str, pieces: int) -> None:
    records = [telemetry(f"d{i % 3}", i) for i in range(200)]
    data = avro_file(records, codec=codec, sync_interval=512)
    stream = decode_all(data, pieces)
    events, bad = brief(stream)
    assert bad == [] and stream.records == 200
    assert [(t, d) for t, d, *_ in events] == [(T0 + i * US, f"d{i % 3}") for i in range(200)]
    assert stream.offset == stream.resume_offset == len(data) and not stream.holding


def test_rtos_flatbuffers_security_message() -> None:
    buf = message(
        event(g.Payload.NetworkActivity, network([(word(10, 0, 0, 5), word(203, 0, 113, 66))])),
        event(g.Payload.Process, process("/tmp/.x/miner", g.ProcessEventType.EXEC, 3)),
        event(g.Payload.Heartbeat, lambda b: (g.HeartbeatStart(b), g.HeartbeatEnd(b))[1], time=0),
    )
    events, bad = brief(decode_all(avro_file([rtos_security("board", 30, buf)])))
    assert bad == []
    t = T0 // US
    assert events == [
        (T0 + 30 * US, "board", "Telemetry", c.D2C_UNKNOWN, 0, None, 1, False),
        (
            t * US,
            "board",
            "NetworkActivity",
            c.ACTIVE_CONNECTIONS,
            c.CONNECTION_TO_IP,
            "203.0.113.66",
            1,
            False,
        ),
        (t * US, "board", "ProcessExec", 0, c.PROCESS, "/tmp/.x/miner", 3, False),
        # No clock on the board: the enqueued time stands in, and the event says so.
        (T0 + 30 * US, "board", "Heartbeat", 0, 0, None, 1, True),
    ]


def test_security_message_recognised_by_interface_id_alone() -> None:
    buf = message(event(g.Payload.Process, process("/bin/sh", g.ProcessEventType.EXEC)))
    rec = telemetry("board", 1, None, **{"$.ifid": hm.SECURITY_INTERFACE})
    rec["Body"] = buf
    events, bad = brief(decode_all(avro_file([rec])))
    assert bad == [] and [e[2] for e in events] == ["Telemetry", "ProcessExec"]


@pytest.mark.parametrize(
    ("mti", "body", "reason"),
    [
        ("3.0-1-0-0", b"\x00" * 16, "mti: unsupported schema major version (iotwatch reads 2.x)"),
        ("2.3-7-0-0", b"\x00" * 16, "mti: encoding is an unknown encoding, not FlatBuffers"),
        ("two", b"\x00" * 16, "mti: not major.minor-encoding-…"),
        ("2.3-1-0-0", b"\x00" * 16, "FlatBuffers: Message vtable malformed"),
        ("2.3-0-0-0", b"{not json", "bad JSON in message body"),
        ("2.3-0-0-0", b"[]", "message is not an object"),
    ],
)
def test_an_undecodable_security_body_keeps_the_message(mti: str, body: bytes, reason: str) -> None:
    rec = telemetry("board", 1, None, mti=mti)
    rec["Body"] = body
    events, bad = brief(decode_all(avro_file([rec])))
    assert [e[2] for e in events] == ["Telemetry"]  # still a device-to-cloud message
    assert bad == [(reason, 0)]


def test_a_bad_event_of_a_json_security_message_is_quarantined_alone() -> None:
    ok = agent_event("Login", "2026-11-28T09:59:00Z", {"Result": "Fail"})
    broken = {"Name": "Login", "TimestampUTC": "2026-11-28T09:59:00Z", "Payload": "x"}
    events, bad = brief(decode_all(avro_file([json_security("d", 1, broken, ok)])))
    assert [e[2] for e in events] == ["Telemetry", "Login"]
    assert bad == [("wrong type: Payload", 0)]


def test_event_hubs_capture_file() -> None:
    body = orjson.dumps({"temperature": 20})
    records = [
        # IoT Hub's own enqueued time (ms) is exact; Capture's EnqueuedTimeUtc has seconds only.
        capture_record(
            "d1",
            1,
            body,
            "11/28/2026 10:00:01 AM",
            **{"iothub-enqueuedtime": (T0 + 1_250_000) // 1000},
        ),
        capture_record("d1", 2, body, "11/28/2026 10:00:02 AM"),
        capture_record("d2", 3, body, "11/28/2026 1:05:00 PM"),
        capture_record("d2", 4, body, "11/28/2026 12:00:00 AM"),
    ]
    events, bad = brief(decode_all(avro_file(records, CAPTURE_SCHEMA, codec="deflate")))
    assert bad == []
    assert [(t, d, n, r) for t, d, n, r, *_ in events] == [
        (T0 + 1_250_000, "d1", "Telemetry", c.D2C_UNKNOWN),
        (T0 + 2 * US, "d1", "Telemetry", c.D2C_UNKNOWN),
        (parse_time("2026-11-28T13:05:00Z"), "d2", "Telemetry", c.D2C_UNKNOWN),
        (parse_time("2026-11-28T00:00:00Z"), "d2", "Telemetry", c.D2C_UNKNOWN),
    ]


def test_capture_property_values_may_be_bytes() -> None:
    buf = message(event(g.Payload.Process, process("/bin/sh", g.ProcessEventType.EXEC)))
    rec = capture_record("board", 1, buf, "11/28/2026 10:00:01 AM")
    rec["SystemProperties"]["iothub-connection-device-id"] = b"board"
    rec["Properties"] = {"mti": b"2.3-1-0-0", "seq": 7, "ratio": 0.5}
    events, bad = brief(decode_all(avro_file([rec], CAPTURE_SCHEMA)))
    assert bad == [] and [(e[1], e[2]) for e in events] == [
        ("board", "Telemetry"),
        ("board", "ProcessExec"),
    ]


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"SystemProperties": {}}, "missing device"),
        ({"EnqueuedTimeUtc": "UTC timestamp"}, "bad time: EnqueuedTimeUtc"),
        ({"EnqueuedTimeUtc": "2100-01-01T00:00:00Z"}, "time out of range: EnqueuedTimeUtc"),
        ({"EnqueuedTimeUtc": "2/30/2026 1:00:00 PM"}, "bad time: EnqueuedTimeUtc"),
        ({"EnqueuedTimeUtc": "2/3/2026 13:00:00 PM"}, "bad time: EnqueuedTimeUtc"),
    ],
)
def test_records_that_lack_what_they_need_are_quarantined(
    change: dict[str, Any], reason: str
) -> None:
    rec = {**telemetry("d", 1), **change}
    if "EnqueuedTimeUtc" in change:
        rec["SystemProperties"] = {"connectionDeviceId": "d"}
    good = telemetry("d", 2)
    stream = decode_all(avro_file([rec, good]))
    events, bad = brief(stream)
    assert [e[1] for e in events] == ["d"] and bad == [(reason, 0)]
    assert stream.records == 2


def test_quarantine_keeps_the_record_as_json_with_its_part() -> None:
    rec = {**telemetry("d", 1), "SystemProperties": {}}
    stream = AvroStream()
    data = avro_file([telemetry("d", 0), rec])
    stream.feed(data)
    stream.finish()
    (b,) = stream.take()[1]
    assert b.part == 1 and b.reason == "missing device"
    assert b.pos == data.index(b"", fastavro_header_end(data))
    raw = orjson.loads(b.raw)
    assert raw["SystemProperties"] == {} and base64.b64decode(raw["Body"]) == rec["Body"]


def fastavro_header_end(data: bytes) -> int:
    from engine.avrostream import header_end

    end = header_end(data)
    assert end is not None
    return end


def test_a_device_set_property_cannot_make_telemetry_a_notification() -> None:
    """Telemetry carries IoT Hub's anti-spoofing stamp; an application property that claims to
    be a twin change notification does not change what it counts as."""
    rec = telemetry(
        "d", 1, None, **{"iothub-message-schema": "twinChangeNotification", "opType": "updateTwin"}
    )
    events, _ = brief(decode_all(avro_file([rec])))
    assert [(e[2], e[3]) for e in events] == [("Telemetry", c.D2C_UNKNOWN)]


def test_a_notification_without_its_system_source_is_known_by_its_schema() -> None:
    rec = twin_change("d", 1)
    del rec["SystemProperties"]["iothub-message-source"]
    del rec["SystemProperties"]["connectionDeviceId"]  # the application property names it too
    events, _ = brief(decode_all(avro_file([rec])))
    assert [(e[1], e[2], e[3]) for e in events] == [
        ("d", "twinChangeEvents/updateTwin", c.TWIN_UPDATES)
    ]


# -- framing ----------------------------------------------------------------------------------------


def test_a_partial_block_waits_and_resumes_at_its_start() -> None:
    data = avro_file([telemetry("d", i) for i in range(50)], sync_interval=256)
    end = fastavro_header_end(data)
    cut = len(data) - 40
    stream = AvroStream()
    stream.feed(data[:cut])
    assert stream.holding and end < stream.resume_offset < cut
    events, _ = stream.take()
    # A restart at the committed offset, with the header read again, decodes the rest.
    again = AvroStream(stream.resume_offset, data[:end])
    again.feed(data[stream.resume_offset :])
    again.finish()
    rest, bad = again.take()
    assert bad == [] and len(events) + len(rest) == 50
    assert [e.time for e in events + rest] == [T0 + i * US for i in range(50)]


def test_a_file_cut_short_quarantines_its_last_block() -> None:
    data = avro_file([telemetry("d", i) for i in range(50)], sync_interval=256)
    stream = decode_all(data[:-40])
    events, bad = brief(stream)
    assert bad == [("Avro: truncated block", None)] and 0 < len(events) < 50


def test_a_damaged_block_is_quarantined_alone() -> None:
    data = bytearray(avro_file([telemetry("d", i) for i in range(60)], sync_interval=256))
    end = fastavro_header_end(bytes(data))
    sync = bytes(data[end - 16 : end])
    marks = [i for i in range(end, len(data)) if data[i : i + 16] == sync]
    assert len(marks) >= 4
    data[marks[1] - 30] ^= 0xFF  # a byte inside the second block's records (null codec)
    data[marks[2] + 2] ^= 0x80  # the third block's length prefix
    stream = decode_all(bytes(data), 5)
    events, bad = brief(stream)
    reasons = [r for r, _ in bad]
    assert 0 < len(reasons) <= 3 and all(r.startswith("Avro: ") for r in reasons), reasons
    assert 30 <= len(events) < 60  # every intact block decoded


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"Obj\x01\x02", "Avro: truncated header"),
        (b"Obj\x01\x02\x06ab", "Avro: truncated header"),
        (b"Obj\x01" + b"\x7f" * 20, "Avro: malformed header"),
        (b"PK\x03\x04" + b"\x00" * 40, "Avro: not an object container file"),
        (b"Obj\x01\x02\x04xy\x08abcd\x00" + b"s" * 16 + b"\x02\x02", "Avro: bad header (KeyError)"),
    ],
)
def test_an_unusable_header_is_one_quarantined_record(data: bytes, reason: str) -> None:
    stream = decode_all(data)
    events, bad = brief(stream)
    assert events == [] and [r for r, _ in bad] == [reason] and stream.records == 1


def test_hub_messages_file_tells_avro_from_json_by_its_first_bytes() -> None:
    data = avro_file([telemetry("d", 1)])
    for pieces in ([data], [data[:2], data[2:3], data[3:]]):
        f = HubMessagesFile()
        for p in pieces:
            f.feed(p)
        f.finish()
        assert [e.name for e in f.take()[0]] == ["Telemetry"]
    line = orjson.dumps(json_line(telemetry("d", 1))) + b"\n"
    f = HubMessagesFile()
    f.feed(line[:2])
    f.feed(line[2:])
    f.finish()
    assert [e.name for e in f.take()[0]] == ["Telemetry"]
    assert isinstance(file_decoder("hub-log"), JsonStream)


# -- the JSON encoding ------------------------------------------------------------------------------


def json_line(rec: dict[str, Any], base64_body: bool = False) -> dict[str, Any]:
    """A routed message in routing's JSON encoding: a JSON body as JSON, others in base64."""
    out = dict(rec)
    body = rec["Body"]
    if base64_body:
        out["Body"] = base64.b64encode(body).decode()
    else:
        out["Body"] = orjson.loads(body)
    return out


def test_json_encoding_is_sniffed_and_decoded() -> None:
    ok = agent_event("ProcessCreate", "2026-11-28T09:59:00Z", {"Executable": "/bin/sh"})
    buf = message(event(g.Payload.Process, process("/bin/x", g.ProcessEventType.EXEC)))
    lines = [
        json_line(telemetry("d1", 1)),
        json_line(twin_change("d1", 2)),
        json_line(json_security("d1", 3, ok)),
        json_line(rtos_security("board", 4, buf), base64_body=True),
    ]
    assert sniff(lines[0]) == hm.NAME
    stream = JsonStream()
    stream.feed(b"".join(orjson.dumps(x) + b"\n" for x in lines))
    stream.finish()
    events, bad = brief(stream)
    assert stream.format == hm.NAME and bad == []
    assert [(e[1], e[2]) for e in events] == [
        ("d1", "Telemetry"),
        ("d1", "twinChangeEvents/updateTwin"),
        ("d1", "Telemetry"),
        ("d1", "ProcessCreate"),
        ("board", "Telemetry"),
        ("board", "ProcessExec"),
    ]


def test_json_encoding_body_as_plain_json_text() -> None:
    ok = agent_event("Login", "2026-11-28T09:59:00Z", {"Result": "Fail"})
    rec = json_security("d", 1, ok)
    rec["Body"] = rec["Body"].decode()  # JSON text, with contentType/contentEncoding JSON/UTF-8
    out: list[Any] = []
    bad: list[tuple[int | None, str]] = []
    hm.decode(rec, 0, out, bad)
    assert [e.name for e in out] == ["Telemetry", "Login"] and bad == []


def test_decoder_refuses_what_is_not_a_record() -> None:
    with pytest.raises(BadRecord, match="not a JSON object"):
        hm.decode([], 0, [], [])
    with pytest.raises(BadRecord, match="wrong type: SystemProperties is a string, not an object"):
        hm.decode({"EnqueuedTimeUtc": enqueued(1), "SystemProperties": "x"}, 0, [], [])
    with pytest.raises(BadRecord, match="wrong type: connectionDeviceId is a number, not a string"):
        hm.decode(
            {"EnqueuedTimeUtc": enqueued(1), "SystemProperties": {"connectionDeviceId": 5}},
            0,
            [],
            [],
        )


# -- replay and the protocol pseudo events ---------------------------------------------------------

CONFIG = """
[engine]
lateness = "PT1M"
horizon = "P1D"

[groups.default.rules.TwinUpdatesNotInAllowedRange]
min = 0
max = 1
window = "PT15M"

[groups.default.rules.ProcessNotAllowed]
allow = ["ok"]
"""


def test_replay_sniffs_avro_and_stores_everything(tmp_path: Path) -> None:
    buf = message(event(g.Payload.Process, process("/tmp/.x/miner", g.ProcessEventType.EXEC)))
    records = [
        telemetry("d", 1),
        twin_change("d", 2),
        twin_change("d", 3),
        rtos_security("board", 4, buf),
    ]
    path = tmp_path / "00.avro"
    data = avro_file(records)
    assert data.startswith(MAGIC) and b"\x00" in data  # sniffed as Avro before the NUL test
    path.write_bytes(data)
    config = config_from(tmp_path, CONFIG)
    db = tmp_path / "r.db"
    alerts, summary = run_replay(config, [path], db=str(db))
    assert summary.lines()[0] == "records 4, events 5, expired 0, quarantined 0, alerts 2"
    assert sorted(a["rule"] for a in alerts) == [
        "ProcessNotAllowed",
        "TwinUpdatesNotInAllowedRange",
    ]
    forced, _ = run_replay(config, [f"hub-messages:{path}"])
    assert forced == alerts
    import sqlite3

    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT format, offset FROM streams").fetchone() == (
            "hub-messages",
            len(data),
        )
        rules = conn.execute("SELECT rule FROM events WHERE name = 'Telemetry'").fetchall()
    assert rules == [(c.D2C_UNKNOWN,), (c.D2C_UNKNOWN,)]


def test_a_block_whose_content_does_not_decode_is_quarantined_alone() -> None:
    """Framing intact, compressed content damaged: that block is lost from the record it failed
    at (its index is the quarantine's part), the blocks after it decode."""
    data = bytearray(
        avro_file([telemetry("d", i) for i in range(60)], codec="deflate", sync_interval=1024)
    )
    end = fastavro_header_end(bytes(data))
    sync = bytes(data[end - 16 : end])
    marks = [i for i in range(end, len(data)) if data[i : i + 16] == sync]
    data[marks[1] - 20] ^= 0xFF  # inside the second block's deflated records
    stream = decode_all(bytes(data))
    events, bad = brief(stream)
    ((reason, part),) = bad
    assert reason.startswith("Avro: undecodable block (") and part is not None
    assert 40 < len(events) < 60 and events[-1][0] == T0 + 59 * US


def test_resuming_a_file_whose_header_is_unusable_quarantines_nothing_again(tmp_path: Path) -> None:
    path = tmp_path / "bad.avro"
    path.write_bytes(b"Obj\x01\x02\x04xy\x08abcd\x00" + b"s" * 16 + b"\x02\x02rest")
    first = HubMessagesFile()
    first.feed(path.read_bytes())
    first.finish()
    assert [b.reason for b in first.take()[1]] == ["Avro: bad header (KeyError)"]
    resumed = HubMessagesFile(first.resume_offset, path)
    resumed.feed(b"more")
    resumed.finish()
    assert resumed.take() == ([], []) and resumed.records == 0

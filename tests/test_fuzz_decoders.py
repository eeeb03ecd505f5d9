"""Fuzzing every decoder (SPEC §7): arbitrary bytes and mutated valid records — truncated, bytes
flipped, values replaced by deep nesting, huge numbers or implausible times — mixed with valid
records and fed in arbitrary pieces. Nothing raises out of a decoder, and every valid record in
the same input yields exactly the events it yields alone.

Example counts are kept modest (100 per test: the whole suite must stay well under 15 minutes on
2 cores); set ``FUZZ_EXAMPLES=2000`` in the environment to dig deeper. Decoding runs under the
interpreter's default recursion limit, which Hypothesis raises while a test runs.
"""

from __future__ import annotations

import base64
import contextlib
import io
import os
import sys
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import fastavro
import msgpack
import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.avrostream import AvroStream, HubMessagesFile
from engine.capture import CaptureStream
from engine.event import Event
from engine.formats.hub_messages import ROUTING_SCHEMA as ROUTING_RECORD
from engine.formats.rtos import security_message_generated as g
from engine.formats.serial import encode_frame, encode_payload
from engine.jsonstream import JsonStream
from engine.timestamps import parse_time
from tests import test_rtos_security as r

FUZZ = settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "100")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
HOST_TIME = parse_time("2026-11-28T12:00:00Z")
MARK = "\x00MARK"

# --- valid records ----------------------------------------------------------------------------

devices = st.sampled_from(["d1", "d2", "lab-3", "cam-ü"])
stamps = st.builds(
    lambda m, s, f: f"2026-11-28T10:{m:02d}:{s:02d}{f}Z",
    st.integers(0, 59),
    st.integers(0, 59),
    st.sampled_from(["", ".250", ".1234567"]),
)
protocols = st.sampled_from(["mqtt", "Mqtt", "AmqpWs", "https"])

hub_events = st.builds(
    lambda t, d, op, p, extra: {"time": t, "deviceId": d, "op": op, "protocol": p, **extra},
    stamps,
    devices,
    st.sampled_from(["d2c", "c2d", "c2d-reject", "method", "upload", "purge", "twin-update"]),
    protocols,
    st.fixed_dictionaries(
        {},
        optional={
            "count": st.one_of(st.integers(0, 1000), st.integers(0, 99).map(str)),
            "status": st.sampled_from([200, 401, "401003", 500]),
            "moduleId": st.one_of(st.none(), st.just("m")),
        },
    ),
)


def _log(t: str, d: str, cat_op: tuple[str, str], props_as_text: bool, extra: dict) -> dict:
    props: dict[str, Any] = {"deviceId": d, **extra}
    return {
        "time": t,
        "category": cat_op[0],
        "operationName": cat_op[1],
        "resultType": "Success",
        "properties": orjson.dumps(props).decode() if props_as_text else props,
    }


hub_log_records = st.builds(
    _log,
    stamps,
    devices,
    st.sampled_from(
        [
            ("DirectMethods", "send"),
            ("D2CTwinOperations", "update"),
            ("FileUploadOperations", "ingress"),
            ("DeviceTelemetry", "ingress"),
            ("Connections", "deviceConnect"),
        ]
    ),
    st.booleans(),
    st.fixed_dictionaries({}, optional={"protocol": protocols, "statusCode": st.just(401)}),
)
hub_log = st.one_of(
    hub_log_records, st.lists(hub_log_records, min_size=1, max_size=3).map(lambda r: {"records": r})
)

items = {
    "ConnectionCreate": st.fixed_dictionaries(
        {"Direction": st.sampled_from(["Out", "In"]), "RemoteAddress": st.ip_addresses().map(str)}
    ),
    "Login": st.fixed_dictionaries(
        {"Result": st.sampled_from(["Success", "Fail"]), "UserName": st.sampled_from(["root", "u"])}
    ),
    "ProcessCreate": st.fixed_dictionaries(
        {"Executable": st.sampled_from(["/bin/sh", "ok"])},
        optional={"ExtraDetails": st.fixed_dictionaries({"HitCount": st.integers(0, 50)})},
    ),
    "Heartbeat": st.just({}),
}
agent_events = st.sampled_from(sorted(items)).flatmap(
    lambda name: st.builds(
        lambda t, payload: {
            "Name": name,
            "Category": "Triggered",
            "TimestampUTC": t,
            "Payload": payload,
        },
        stamps,
        st.lists(items[name], max_size=3) if name != "Heartbeat" else st.just([]),
    )
)
messages = st.builds(
    lambda events: {"AgentVersion": "1", "MessageSchemaVersion": "1.0", "Events": events},
    st.lists(agent_events, min_size=1, max_size=3),
)
security_messages = st.one_of(
    st.builds(lambda d, m: {"deviceId": d, "body": m}, devices, messages),
    st.builds(lambda d, m: {"event": {"origin": d, "payload": m}}, devices, messages),
    st.builds(lambda d, m: {**m, "DeviceId": d}, devices, messages),
)


def _routed(kind: str, d: str, t: str, message: dict) -> dict:
    """A routed message in routing's JSON encoding (see tests/test_hub_messages.py)."""
    system = {
        "connectionDeviceId": d,
        "connectionAuthMethod": '{"scope":"device","type":"sas","issuer":"iothub"}',
        "contentType": "application/json",
        "contentEncoding": "utf-8",
        "enqueuedTime": t,
    }
    rec: dict[str, Any] = {"EnqueuedTimeUtc": t, "Properties": {}, "SystemProperties": system}
    if kind == "telemetry":
        rec["Body"] = {"temperature": 21.5}
    elif kind == "twin":
        del system["connectionAuthMethod"]
        system["iothub-message-source"] = "twinChangeEvents"
        rec["Properties"] = {"deviceId": d, "opType": "updateTwin"}
        rec["Body"] = {"version": 3}
    elif kind == "json-security":
        rec["Properties"] = {"iothub-interface-id": "urn:azureiot:Security:SecurityAgent:1"}
        rec["Body"] = message
    else:  # an Azure RTOS FlatBuffers security message, its body in base64
        rec["Properties"] = {"mti": "2.3-1-0-0"}
        system["contentType"] = "application/octet-stream"
        rec["Body"] = base64.b64encode(r.one_of_each()).decode()
    return rec


hub_messages = st.builds(
    _routed,
    st.sampled_from(["telemetry", "twin", "json-security", "rtos-security"]),
    devices,
    stamps,
    messages,
)
FORMATS = {
    "hub-events": hub_events,
    "hub-log": hub_log,
    "hub-messages": hub_messages,
    "security-messages": security_messages,
}

# --- mutations --------------------------------------------------------------------------------

# "deep" (nesting a decoder can parse but not print) comes as often as all the others together.
REPLACEMENTS = st.one_of(
    st.just("deep"),
    st.sampled_from(
        [
            "deeper",
            2**64 - 1,
            10**300,
            1e300,
            -1,
            "9" * 400,
            "9999-12-31T23:59:59Z",
            "0001-01-01T00:30:00+01:00",
            "2026-W48-5T10:00:00Z",
            "\x9b\u202e\x00",
            None,
            True,
            [],
            {},
        ]
    ),
)


def paths(obj: Any, at: tuple = ()) -> list[tuple]:
    """The key paths (dict keys and list indexes) of ``obj``'s scalar values, where decoders look
    at types and values, and of its empty containers."""
    if isinstance(obj, dict) and obj:
        return [p for k, v in obj.items() for p in paths(v, (*at, k))]
    if isinstance(obj, list) and obj:
        return [p for i, v in enumerate(obj) for p in paths(v, (*at, i))]
    return [at] if at else []


def replaced(obj: Any, path: tuple, value: Any) -> Any:
    obj = orjson.loads(orjson.dumps(obj))  # a copy
    target = obj
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return obj


def json_with(obj: Any, path: tuple, value: Any) -> bytes:
    """``obj`` as JSON with the value at ``path`` replaced by ``value`` (deep nesting and numbers
    orjson cannot write are spliced in as text)."""
    if value in ("deep", "deeper") or (isinstance(value, int) and value > 2**64 - 1):
        text = orjson.dumps(replaced(obj, path, MARK))
        # As deep as orjson reads (1,024 levels in all), deeper than repr() can print (~1,000).
        depth = 1022 - len(path) if value == "deep" else 5000
        literal = b"[" * depth + b"]" * depth if isinstance(value, str) else str(value).encode()
        return text.replace(orjson.dumps(MARK), literal, 1)
    return orjson.dumps(replaced(obj, path, value))


def packed_with(obj: Any, path: tuple, value: Any) -> bytes:
    if value in ("deep", "deeper") or (isinstance(value, int) and value > 2**64 - 1):
        text = msgpack.packb(replaced(obj, path, MARK), use_bin_type=True)
        depth = 1022 - len(path) if value == "deep" else 2000  # msgpack reads 1,024 levels
        literal = b"\x91" * depth + b"\xc0" if isinstance(value, str) else b"\xcb" + b"\x7f" * 8
        return text.replace(msgpack.packb(MARK), literal, 1)
    return msgpack.packb(replaced(obj, path, value), use_bin_type=True)


@st.composite
def mutant(draw: st.DrawFn, valid: Any, serial: bool) -> bytes:
    """One broken record made from ``valid``: bytes as they would be written to the stream."""
    encode = msgpack.packb if serial else orjson.dumps
    raw = encode(valid)
    # Replaced values find the decoders' edge cases best: they come half the time.
    kind = draw(
        st.sampled_from(["value", "value", "value", "random", "truncate", "flip", "splice"])
    )
    if kind == "random":
        out = draw(st.binary(max_size=200))
    elif kind == "truncate":
        out = raw[: draw(st.integers(0, len(raw) - 1))]
    elif kind == "flip":
        out = bytearray(raw)
        for _ in range(draw(st.integers(1, 4))):
            i = draw(st.integers(0, len(out) - 1))
            out[i] ^= draw(st.integers(1, 255))
        out = bytes(out)
    elif kind == "value":
        path = draw(st.sampled_from(paths(valid)))
        value = draw(REPLACEMENTS)
        out = (packed_with if serial else json_with)(valid, path, value)
    else:  # a piece of the record in the middle of another
        i = draw(st.integers(0, len(raw)))
        out = raw[:i] + draw(st.binary(max_size=20)) + raw[i:]
    if serial:
        # A frame with a valid CRC (so that the MessagePack decoder sees it), or bytes as they are.
        return encode_payload(out) if draw(st.booleans()) else out
    return out.replace(b"\n", b" ")  # one line: a mutant never swallows the next record's line


# --- the test ---------------------------------------------------------------------------------


@contextlib.contextmanager
def default_recursion_limit() -> Iterator[None]:
    """Hypothesis raises the recursion limit while a test runs; decoders must hold under the
    interpreter's default (1000), where the repr of a value 1,000 levels deep fails."""
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(1000)
    try:
        yield
    finally:
        sys.setrecursionlimit(old)


def without_pos(events: list[Event]) -> list[Event]:
    return [e._replace(pos=0) for e in events]


def decode_alone(fmt: str, record: bytes) -> list[Event]:
    if fmt == "serial":
        stream: Any = CaptureStream(HOST_TIME, "board")
    else:
        stream = JsonStream(fmt)
    stream.feed(record)
    stream.finish()
    events, bad = stream.take()
    assert bad == [], bad  # a valid record is valid by itself
    return without_pos(events)


def run_fuzz(fmt: str, data: st.DataObject) -> None:
    serial = fmt == "serial"
    valid = data.draw(
        st.lists(security_messages.map(_frame_message) if serial else FORMATS[fmt], max_size=6)
    )
    parts: list[tuple[bytes, bool]] = []
    if valid:
        parts.append((data.draw(mutant(data.draw(st.sampled_from(valid)), serial)), False))
    for record in valid:
        for _ in range(data.draw(st.integers(0, 2))):
            source = data.draw(st.sampled_from(valid))
            parts.append((data.draw(mutant(source, serial)), False))
        parts.append(((encode_frame(record) if serial else orjson.dumps(record)), True))
    if data.draw(st.booleans()):
        parts.append((data.draw(st.binary(max_size=300)), False))
    # Assemble; remember where each valid record starts.
    text = bytearray()
    starts: dict[int, bytes] = {}
    for raw, ok in parts:
        if serial:
            if ok:
                starts[len(text) + 1] = raw  # a frame's position is after its leading 0x00
            text += raw
        else:
            if ok:
                starts[len(text)] = raw
            text += raw + b"\n"
    text = bytes(text)
    stream: Any = CaptureStream(HOST_TIME, "board") if serial else JsonStream(fmt)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(text)), max_size=6)))
    start = 0
    with default_recursion_limit():
        for cut in [*cuts, len(text)]:
            stream.feed(text[start:cut])  # must not raise, whatever the bytes
            start = cut
        stream.finish()
    events, bad = stream.take()
    by_pos: dict[int, list[Event]] = defaultdict(list)
    for event in events:
        by_pos[event.pos].append(event)
    for pos, raw in starts.items():
        assert without_pos(by_pos.get(pos, [])) == decode_alone(fmt, raw), pos
        assert not [b for b in bad if b.pos == pos], pos
    assert stream.records >= len(starts)


def _frame_message(envelope: dict) -> dict:
    """A security message as a board frames it: the message with its ``DeviceId``."""
    if "body" in envelope:
        return {**envelope["body"], "DeviceId": envelope["deviceId"]}
    if "event" in envelope:
        return {**envelope["event"]["payload"], "DeviceId": envelope["event"]["origin"]}
    return envelope


@FUZZ
@given(st.data())
def test_fuzz_hub_events_decoder(data: st.DataObject) -> None:
    run_fuzz("hub-events", data)


@FUZZ
@given(st.data())
def test_fuzz_hub_log_decoder(data: st.DataObject) -> None:
    run_fuzz("hub-log", data)


@FUZZ
@given(st.data())
def test_fuzz_security_messages_decoder(data: st.DataObject) -> None:
    run_fuzz("security-messages", data)


@FUZZ
@given(st.data())
def test_fuzz_hub_messages_json_decoder(data: st.DataObject) -> None:
    run_fuzz("hub-messages", data)


@FUZZ
@given(st.data())
def test_fuzz_serial_frame_decoder(data: st.DataObject) -> None:
    run_fuzz("serial", data)


@FUZZ
@given(st.sampled_from([*FORMATS, "serial", None]), st.binary(max_size=2000), st.data())
def test_fuzz_arbitrary_bytes_never_raise(
    fmt: str | None, blob: bytes, data: st.DataObject
) -> None:
    """Arbitrary bytes, in arbitrary pieces, through every decoder (a sniffing one included)."""
    stream: Any = CaptureStream(HOST_TIME) if fmt == "serial" else JsonStream(fmt)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(blob)), max_size=5)))
    settles = [fmt != "serial" and data.draw(st.booleans()) for _ in range(len(cuts) + 1)]
    give_up = data.draw(st.booleans())
    start = 0
    with default_recursion_limit():
        for cut, settle in zip([*cuts, len(blob)], settles, strict=True):
            stream.feed(blob[start:cut])
            start = cut
            if settle:
                stream.settle(give_up=give_up)
        stream.finish()
    events, bad = stream.take()
    # Every quarantined item comes from a record the stream counted; one record can give several
    # (a security message quarantines each bad event of it: in an Avro container's deflate
    # block one flipped byte can damage every event of a message alike, by back-references).
    assert stream.records >= len({b.pos for b in bad})
    for event in events:
        assert isinstance(event.device, str) and event.device
        assert 0 <= event.weight <= 2**31 - 1


# --- Azure RTOS FlatBuffers -------------------------------------------------------------------


def _rtos_buffers() -> list[bytes]:
    """Valid FlatBuffers ``Message`` buffers, built as the RTOS tests build them."""
    exec_ = g.ProcessEventType.EXEC
    return [
        r.one_of_each(),
        r.message(r.event(g.Payload.Heartbeat, r.heartbeat)),
        r.message(r.event(g.Payload.Process, r.process("/bin/sh", exec_, 3), time=r.T0 + 7)),
        r.message(
            r.event(
                g.Payload.NetworkActivity, r.network([(r.word(10, 0, 0, 5), r.word(1, 2, 3, 4))])
            ),
            r.event(g.Payload.Heartbeat, r.heartbeat, time=0),  # host-timed on serial
        ),
    ]


@st.composite
def flat_mutant(draw: st.DrawFn, buf: bytes) -> bytes:
    kind = draw(st.sampled_from(["random", "truncate", "flip", "splice"]))
    if kind == "random":
        return draw(st.binary(max_size=300))
    if kind == "truncate":
        return buf[: draw(st.integers(0, len(buf) - 1))]
    out = bytearray(buf)
    if kind == "flip":
        for _ in range(draw(st.integers(1, 6))):
            i = draw(st.integers(0, len(out) - 1))
            out[i] ^= draw(st.integers(1, 255))
        return bytes(out)
    i = draw(st.integers(0, len(out)))
    return bytes(out[:i]) + draw(st.binary(max_size=24)) + bytes(out[i:])


RTOS_BUFFERS = _rtos_buffers()


@FUZZ
@given(st.data())
def test_fuzz_rtos_flatbuffers_decoder(data: st.DataObject) -> None:
    """RTOS FlatBuffers messages as serial frames (with a valid CRC, so that the verifier and the
    reader see every mutant), mixed with mutants of them."""
    buffers = RTOS_BUFFERS
    valid = data.draw(st.lists(st.sampled_from(buffers), max_size=5))
    frames: list[tuple[bytes, bool]] = []
    for buf in valid:
        for _ in range(data.draw(st.integers(0, 2))):
            frames.append(
                (encode_payload(data.draw(flat_mutant(data.draw(st.sampled_from(buffers))))), False)
            )
        frames.append((encode_payload(buf), True))
    text = bytearray()
    starts: dict[int, bytes] = {}
    for raw, ok in frames:
        if ok:
            starts[len(text) + 1] = raw
        text += raw
    stream = CaptureStream(HOST_TIME, "board")
    with default_recursion_limit():
        stream.feed(bytes(text))
        stream.finish()
    events, bad = stream.take()
    by_pos: dict[int, list[Event]] = defaultdict(list)
    for event in events:
        by_pos[event.pos].append(event)
    for pos, raw in starts.items():
        assert without_pos(by_pos.get(pos, [])) == decode_alone("serial", raw), pos
        assert not [b for b in bad if b.pos == pos], pos


# --- Avro containers of routed messages -------------------------------------------------------

ROUTING_SCHEMA = fastavro.parse_schema(ROUTING_RECORD)


def _avro_record(rec: dict) -> dict:
    body = rec["Body"]
    return {**rec, "Body": base64.b64decode(body) if isinstance(body, str) else orjson.dumps(body)}


def _avro_file(records: list[dict], codec: str, sync_interval: int) -> bytes:
    out = io.BytesIO()
    fastavro.writer(out, ROUTING_SCHEMA, records, codec=codec, sync_interval=sync_interval)
    return out.getvalue()


def _avro_events(data: bytes, cuts: list[int], wrapped: bool) -> tuple[list[Event], list[Any], Any]:
    stream: Any = HubMessagesFile() if wrapped else AvroStream()
    start = 0
    with default_recursion_limit():
        for cut in [*cuts, len(data)]:
            stream.feed(data[start:cut])
            start = cut
            stream.settle(give_up=True)
        stream.finish()
    events, bad = stream.take()
    return events, bad, stream


@FUZZ
@given(
    st.lists(hub_messages.map(_avro_record), min_size=1, max_size=8),
    st.sampled_from(["null", "deflate"]),
    st.sampled_from([1, 200, 16000]),
    st.data(),
)
def test_fuzz_avro_container_decoder(
    records: list[dict], codec: str, sync_interval: int, data: st.DataObject
) -> None:
    """A valid container decodes the same in any pieces; damaged ones (truncated, bytes flipped
    or spliced in, anywhere: header, block lengths, records, sync markers) never raise, and every
    block they leave intact decodes as in the valid file."""
    valid = _avro_file(records, codec, sync_interval)
    whole, bad, stream = _avro_events(valid, [], False)
    assert bad == [] and stream.records == len(records) and not stream.holding
    cuts = sorted(data.draw(st.lists(st.integers(0, len(valid)), max_size=6)))
    assert _avro_events(valid, cuts, data.draw(st.booleans()))[0] == whole
    kind = data.draw(st.sampled_from(["truncate", "flip", "splice", "random"]))
    if kind == "truncate":
        broken = valid[: data.draw(st.integers(0, len(valid) - 1))]
    elif kind == "random":
        broken = b"Obj\x01" + data.draw(st.binary(max_size=400))
    else:
        out = bytearray(valid)
        for _ in range(data.draw(st.integers(1, 4))):
            i = data.draw(st.integers(0, len(out) - 1))
            if kind == "flip":
                out[i] ^= data.draw(st.integers(1, 255))
            else:
                out[i:i] = data.draw(st.binary(min_size=1, max_size=20))
        broken = bytes(out)
    events, bad, stream = _avro_events(broken, cuts, data.draw(st.booleans()))
    # Every quarantined item comes from a record the stream counted; one record can give several
    # (a security message quarantines each bad event of it: in an Avro container's deflate
    # block one flipped byte can damage every event of a message alike, by back-references).
    assert stream.records >= len({b.pos for b in bad})
    for event in events:
        assert isinstance(event.device, str) and event.device
        assert 0 <= event.weight <= 2**31 - 1
    # Blocks are decoded whole or not at all: each position's events are the valid file's.
    mine: dict[int, list[Event]] = defaultdict(list)
    for event in whole:
        mine[event.pos].append(event)
    if kind == "truncate":
        for event in events:
            assert event in mine[event.pos]

"""Azure RTOS security messages (FlatBuffers, schema 2.3): decoding, verification, mti, serial.

Buffers are built here with the flatbuffers ``Builder`` and the flatc-generated builder
functions, never with the decoder's code. Expected address texts are derived from the security
module's source (NetX Duo ``addons/azure_iot/azure_iot_security_module``, release 6.2.0):
``collector_network_activity.c`` keeps each address word "in network byte order" (the bytes of
the IP header as they lie in memory), ``serializer/network_activity.c`` passes that uint32 to
flatcc unchanged, and flatcc stores a uint32 little-endian — on the little-endian boards the
module runs on, the four buffer bytes are the address bytes in network order.
"""

from __future__ import annotations

import os
import re
import struct
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import flatbuffers
import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import catalogue as c
from engine.capture import CaptureStream
from engine.event import Bad
from engine.formats import rtos_security as rs
from engine.formats.common import BadRecord
from engine.formats.rtos import security_message_generated as g
from engine.formats.serial import Frame, encode_frame, encode_payload, split
from engine.timestamps import US, parse_time
from tests.conftest import config_from, run_replay

T0 = parse_time("2026-11-28T10:00:00Z") // US  # Unix seconds
HOST = parse_time("2026-11-28T12:00:00Z")  # µs: a receiving host's clock

Build = Callable[[flatbuffers.Builder], int]


# --- building buffers -------------------------------------------------------------------------


def word(*address: int) -> int:
    """The uint32 the module stores for an IPv4 address: its bytes in network order, read as
    the little-endian board reads memory (``word(192, 168, 1, 10) == 0x0A01A8C0``)."""
    return int.from_bytes(bytes(address), "little")


def words6(text: str) -> list[int]:
    """The four uint32 words the module stores for an IPv6 address (each as in ``word``)."""
    import ipaddress

    raw = ipaddress.IPv6Address(text).packed
    return [int.from_bytes(raw[i : i + 4], "little") for i in range(0, 16, 4)]


def vector(b: flatbuffers.Builder, start: Callable[..., None], offsets: list[int]) -> int:
    start(b, len(offsets))
    for off in reversed(offsets):
        b.PrependUOffsetTRelative(off)
    return b.EndVector()


def common(
    b: flatbuffers.Builder,
    local_port: int = 50000,
    remote_port: int = 443,
    protocol: int = g.Protocol.TCP,
    exe: str | None = None,
) -> int:
    exe_off = b.CreateString(exe) if exe is not None else None
    g.NetworkActivityCommonStart(b)
    g.NetworkActivityCommonAddLocalPort(b, local_port)
    g.NetworkActivityCommonAddRemotePort(b, remote_port)
    g.NetworkActivityCommonAddBytesIn(b, 100)
    g.NetworkActivityCommonAddBytesOut(b, 40)
    g.NetworkActivityCommonAddProtocol(b, protocol)
    if exe_off is not None:
        g.NetworkActivityCommonAddExecutable(b, exe_off)
    return g.NetworkActivityCommonEnd(b)


def network(v4: list[tuple[int, int]] = (), v6: list[tuple[str, str]] = ()) -> Build:  # type: ignore[assignment]
    """A NetworkActivity payload: IPv4 (local word, remote word) and IPv6 (local, remote) pairs."""

    def build(b: flatbuffers.Builder) -> int:
        recs4 = []
        for local, remote in v4:
            com = common(b)
            g.NetworkActivityV4Start(b)
            g.NetworkActivityV4AddAddresses(b, g.CreateIPv4Addresses(b, local, remote))
            g.NetworkActivityV4AddCommon(b, com)
            recs4.append(g.NetworkActivityV4End(b))
        recs6 = []
        for local, remote in v6:
            com = common(b, protocol=g.Protocol.UDP)
            g.NetworkActivityV6Start(b)
            g.NetworkActivityV6AddAddresses(
                b, g.CreateIPv6Addresses(b, words6(local), words6(remote))
            )
            g.NetworkActivityV6AddCommon(b, com)
            recs6.append(g.NetworkActivityV6End(b))
        vec4 = vector(b, g.NetworkActivityStartIpv4ActivityVector, recs4) if recs4 else None
        vec6 = vector(b, g.NetworkActivityStartIpv6ActivityVector, recs6) if recs6 else None
        g.NetworkActivityStart(b)
        if vec4 is not None:
            g.NetworkActivityAddIpv4Activity(b, vec4)
        if vec6 is not None:
            g.NetworkActivityAddIpv6Activity(b, vec6)
        return g.NetworkActivityEnd(b)

    return build


def process(exe: str | None, event_type: int | None = None, hit_count: int | None = None) -> Build:
    def build(b: flatbuffers.Builder) -> int:
        exe_off = b.CreateString(exe) if exe is not None else None
        cmd = b.CreateString(f"{exe} --flag")
        g.ProcessStart(b)
        if exe_off is not None:
            g.ProcessAddExecutable(b, exe_off)
        g.ProcessAddProcessId(b, 42)
        g.ProcessAddCommandline(b, cmd)
        if event_type is not None:
            g.ProcessAddEventType(b, event_type)
        if hit_count is not None:
            g.ProcessAddHitCount(b, hit_count)
        return g.ProcessEnd(b)

    return build


def system_information(b: flatbuffers.Builder) -> int:
    os_info, kernel, hw = (b.CreateString(s) for s in ("Azure RTOS", "ThreadX 6.2", "STM32L4"))
    g.SystemInformationStart(b)
    g.SystemInformationAddOsInfo(b, os_info)
    g.SystemInformationAddKernelInfo(b, kernel)
    g.SystemInformationAddHwInfo(b, hw)
    return g.SystemInformationEnd(b)


def listening_ports(b: flatbuffers.Builder) -> int:
    g.ListeningPortsStartIpv4PortsVector(b, 1)
    g.CreateListeningPortsV4(b, word(0, 0, 0, 0), 80, g.Protocol.TCP)
    v4 = b.EndVector()
    g.ListeningPortsStartIpv6PortsVector(b, 1)
    g.CreateListeningPortsV6(b, words6("fe80::1"), 5683, g.Protocol.UDP)
    v6 = b.EndVector()
    g.ListeningPortsStart(b)
    g.ListeningPortsAddIpv4Ports(b, v4)
    g.ListeningPortsAddIpv6Ports(b, v6)
    return g.ListeningPortsEnd(b)


def heartbeat(b: flatbuffers.Builder) -> int:
    g.HeartbeatStart(b)
    return g.HeartbeatEnd(b)


def baseline(b: flatbuffers.Builder) -> int:
    checks = []
    for check_id, result in (("CIS-1.1", g.Result.PASS), ("CIS-2.4", g.Result.FAIL)):
        id_off = b.CreateString(check_id)
        g.BaselineCheckStart(b)
        g.BaselineCheckAddId(b, id_off)
        g.BaselineCheckAddResult(b, result)
        checks.append(g.BaselineCheckEnd(b))
    vec = vector(b, g.BaselineStartBaselineChecksVector, checks)
    g.BaselineStart(b)
    g.BaselineAddBaselineChecks(b, vec)
    return g.BaselineEnd(b)


def log(b: flatbuffers.Builder) -> int:
    msg, name = b.CreateString("collector started"), b.CreateString("core.c")
    g.RecordStart(b)
    g.RecordAddMessage(b, msg)
    g.RecordAddLevel(b, g.Level.INFO)
    g.RecordAddFilename(b, name)
    rec = g.RecordEnd(b)
    vec = vector(b, g.LogStartLogsVector, [rec])
    g.LogStart(b)
    g.LogAddLogs(b, vec)
    return g.LogEnd(b)


def event(kind: int, payload: Build, time: int | None = T0) -> Build:
    def build(b: flatbuffers.Builder) -> int:
        off = payload(b)
        g.EventStart(b)
        g.EventAddId(b, g.CreateUUID(b, list(range(16))))
        if time is not None:
            g.EventAddTime(b, time)
        g.EventAddCollectionInterval(b, 60)
        g.EventAddPayloadType(b, kind)
        g.EventAddPayload(b, off)
        return g.EventEnd(b)

    return build


def message(*events: Build, module_id: str | None = "asc-module-1") -> bytes:
    b = flatbuffers.Builder(256)
    offs = [e(b) for e in events]
    sid = b.CreateString(module_id) if module_id is not None else None
    evs = vector(b, g.MessageStartEventsVector, offs)
    g.MessageStart(b)
    if sid is not None:
        g.MessageAddSecurityModuleId(b, sid)
    g.MessageAddSecurityModuleVersion(b, (3 << 24) | (5 << 16))
    g.MessageAddEvents(b, evs)
    b.Finish(g.MessageEnd(b))
    return bytes(b.Output())


def decode(buf: bytes, host_now: int | None = None) -> tuple[list, list[Bad]]:
    return rs.decode_message(buf, "board", 7, host_now)


def one_of_each() -> bytes:
    return message(
        event(g.Payload.NetworkActivity, network([(word(10, 0, 0, 5), word(8, 8, 8, 8))])),
        event(g.Payload.Process, process("/bin/sh", g.ProcessEventType.EXEC, 2)),
        event(g.Payload.SystemInformation, system_information),
        event(g.Payload.ListeningPorts, listening_ports),
        event(g.Payload.Heartbeat, heartbeat),
        event(g.Payload.Baseline, baseline),
        event(g.Payload.Log, log),
    )


# --- addresses --------------------------------------------------------------------------------


def test_ipv4_address_word_is_network_order_bytes_read_little_endian() -> None:
    # 192.168.1.10: the header bytes c0 a8 01 0a, held as the uint32 0x0A01A8C0 on the board.
    assert word(192, 168, 1, 10) == 0x0A01A8C0
    buf = message(
        event(g.Payload.NetworkActivity, network([(word(10, 0, 0, 5), word(192, 168, 1, 10))]))
    )
    # The buffer holds the addresses' bytes in network order, local then remote.
    assert bytes([10, 0, 0, 5, 192, 168, 1, 10]) in buf
    (ev,), bad = decode(buf)
    assert bad == []
    assert ev.value == "192.168.1.10"
    assert rs.ipv4_text(0x0A01A8C0) == "192.168.1.10"
    assert rs.ipv4_text(0x0100007F) == "127.0.0.1"


@pytest.mark.parametrize(
    ("text", "rfc5952"),
    [
        ("2001:0DB8:0000:0000:0008:0800:200C:417A", "2001:db8::8:800:200c:417a"),
        ("2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"),  # the first of two equal runs
        ("2001:0:0:1:0:0:0:1", "2001:0:0:1::1"),  # the longest run
        ("::ffff:10.0.0.1", "::ffff:10.0.0.1"),  # RFC 5952 §5: mapped IPv4 written mixed
        ("::ffff:a00:1", "::ffff:10.0.0.1"),
        ("::10.0.0.1", "::a00:1"),  # IPv4-compatible (deprecated): plain groups
        ("fe80::1", "fe80::1"),
    ],
)
def test_ipv6_address_words_and_rfc5952_text(text: str, rfc5952: str) -> None:
    buf = message(event(g.Payload.NetworkActivity, network(v6=[("fe80::2", text)])))
    import ipaddress

    assert ipaddress.IPv6Address(text).packed in buf  # 16 bytes in network order
    (ev,), bad = decode(buf)
    assert bad == []
    assert ev.value == rfc5952


def test_ipv6_words_by_hand() -> None:
    # 2001:db8::1 is 20 01 0d b8 | 00 00 00 00 | 00 00 00 00 | 00 00 00 01 on the wire.
    assert rs.ipv6_text([0xB80D0120, 0, 0, 0x01000000]) == "2001:db8::1"


# --- mapping ----------------------------------------------------------------------------------


def test_network_activity_records_are_outbound_connections() -> None:
    buf = message(
        event(
            g.Payload.NetworkActivity,
            network(
                [(word(10, 0, 0, 5), word(10, 1, 2, 3)), (word(10, 0, 0, 5), word(8, 8, 8, 8))],
                [("2001:db8::5", "2001:db8::1")],
            ),
        )
    )
    events, bad = decode(buf)
    assert bad == []
    assert [(e.name, e.rule, e.allow, e.value, e.weight) for e in events] == [
        ("NetworkActivity", c.ACTIVE_CONNECTIONS, c.CONNECTION_TO_IP, "10.1.2.3", 1),
        ("NetworkActivity", c.ACTIVE_CONNECTIONS, c.CONNECTION_TO_IP, "8.8.8.8", 1),
        ("NetworkActivity", c.ACTIVE_CONNECTIONS, c.CONNECTION_TO_IP, "2001:db8::1", 1),
    ]
    assert all(
        (e.time, e.device, e.pos, e.host_timed, e.unauthorized)
        == (T0 * US, "board", 7, False, False)
        for e in events
    )


def test_empty_network_activity_is_a_sign_of_life() -> None:
    (ev,), bad = decode(message(event(g.Payload.NetworkActivity, network())))
    assert (ev.name, ev.rule, ev.allow, ev.value, bad) == ("NetworkActivity", 0, 0, None, [])


@pytest.mark.parametrize(
    ("event_type", "hit_count", "expected"),
    [
        (g.ProcessEventType.EXEC, None, ("ProcessExec", c.PROCESS, 1)),  # hit_count defaults to 1
        (g.ProcessEventType.EXEC, 7, ("ProcessExec", c.PROCESS, 7)),
        (g.ProcessEventType.FORK, 7, ("ProcessFork", 0, 1)),
        (g.ProcessEventType.EXIT, None, ("ProcessExit", 0, 1)),
        (None, 3, ("ProcessFork", 0, 1)),  # event_type defaults to FORK
    ],
)
def test_process_exec_counts_with_its_hit_count_fork_and_exit_are_stored(
    event_type: int | None, hit_count: int | None, expected: tuple[str, int, int]
) -> None:
    buf = message(event(g.Payload.Process, process("/usr/bin/curl", event_type, hit_count)))
    (ev,), bad = decode(buf)
    assert bad == []
    assert (ev.name, ev.allow, ev.weight) == expected
    assert (ev.rule, ev.value) == (0, "/usr/bin/curl")


def test_exec_without_executable_checks_nothing() -> None:
    (ev,), _ = decode(message(event(g.Payload.Process, process(None, g.ProcessEventType.EXEC))))
    assert (ev.name, ev.allow, ev.value) == ("ProcessExec", 0, None)


def test_every_payload_type_decodes_and_only_connections_and_exec_count() -> None:
    events, bad = decode(one_of_each())
    assert bad == []
    assert [(e.name, e.rule, e.allow, e.value, e.weight) for e in events] == [
        ("NetworkActivity", c.ACTIVE_CONNECTIONS, c.CONNECTION_TO_IP, "8.8.8.8", 1),
        ("ProcessExec", 0, c.PROCESS, "/bin/sh", 2),
        ("SystemInformation", 0, 0, "Azure RTOS / ThreadX 6.2 / STM32L4", 1),
        ("ListeningPorts", 0, 0, "TCP 0.0.0.0:80", 1),
        ("ListeningPorts", 0, 0, "UDP [fe80::1]:5683", 1),
        ("Heartbeat", 0, 0, None, 1),
        ("Baseline", 0, 0, "CIS-1.1 PASS", 1),
        ("Baseline", 0, 0, "CIS-2.4 FAIL", 1),
        ("Log", 0, 0, "INFO: collector started", 1),
    ]


def test_a_payload_type_newer_than_the_schema_is_stored() -> None:
    (ev,), bad = decode(message(event(9, heartbeat)))
    assert (ev.name, ev.rule, ev.allow, bad) == ("UnknownPayload", 0, 0, [])


# --- times ------------------------------------------------------------------------------------


def test_event_without_time_is_quarantined_alone_where_no_host_clock_stands_in() -> None:
    buf = message(
        event(g.Payload.Heartbeat, heartbeat, time=None),
        event(g.Payload.Heartbeat, heartbeat, time=rs.TIME_FAILED),
        event(g.Payload.Heartbeat, heartbeat),
    )
    events, bad = decode(buf)
    assert [e.time for e in events] == [T0 * US]
    assert [b.reason for b in bad] == [
        "FlatBuffers: event has no time",
        "FlatBuffers: event time is the module's clock-failure value",
    ]
    assert all(b.pos == 7 and b.raw == buf for b in bad)


@pytest.mark.parametrize(
    ("seconds", "host_timed"),
    [
        (None, True),  # absent: 0
        (0, True),
        (parse_time("2019-12-31T23:59:59Z") // US, True),
        (parse_time("2020-01-01T00:00:00Z") // US, False),
        (HOST // US + 300, False),  # five minutes ahead is still the board's
        (HOST // US + 301, True),
        (rs.TIME_FAILED, True),  # itime_time() failed: (uint32)-1
        (T0, False),
    ],
)
def test_board_time_rule_with_a_host_clock(seconds: int | None, host_timed: bool) -> None:
    (ev,), bad = decode(message(event(g.Payload.Heartbeat, heartbeat, seconds)), HOST)
    assert bad == []
    assert ev.host_timed is host_timed
    assert ev.time == (HOST if host_timed else seconds * US)  # type: ignore[operator]


# --- verification -----------------------------------------------------------------------------


def flatcc_style_heartbeat() -> bytes:
    """A Heartbeat message laid out as flatcc lays out buffers: vtables clustered after the
    tables that use them, so every table's vtable offset is negative. (flatc reads this buffer
    as {"security_module_id": "m", "events": [{"time": T0, "payload_type": "Heartbeat", …}]}.)"""
    b = bytearray(100)
    struct.pack_into("<I", b, 0, 4)  # root: the Message table at 4
    struct.pack_into("<iII", b, 4, 4 - 68, 16 - 8, 24 - 12)  # vtable at 68; id; events
    struct.pack_into("<I2s", b, 16, 1, b"m\x00")  # the string "m"
    struct.pack_into("<II", b, 24, 1, 32 - 28)  # events: one Event, at 32
    struct.pack_into("<i16sIIB", b, 32, 32 - 80, bytes(range(16)), T0, 64 - 56, 4)
    struct.pack_into("<i", b, 64, 64 - 94)  # the Heartbeat table
    struct.pack_into("<6H", b, 68, 12, 12, 4, 0, 0, 8)  # Message vtable: ids 0 and 3
    struct.pack_into("<7H", b, 80, 14, 32, 4, 20, 0, 28, 24)  # Event vtable: ids 0, 1, 3, 4
    struct.pack_into("<2H", b, 94, 4, 4)  # Heartbeat vtable: no fields
    return bytes(b)


def test_flatcc_layout_with_vtables_after_tables_reads() -> None:
    buf = flatcc_style_heartbeat()
    assert rs.verify(buf) is None
    (ev,), bad = decode(buf)
    assert (ev.name, ev.time, bad) == ("Heartbeat", T0 * US, [])


def test_valid_buffers_verify() -> None:
    assert rs.verify(one_of_each()) is None


@pytest.mark.parametrize(
    ("buf", "reason"),
    [
        (b"", "FlatBuffers: buffer too short for a Message"),
        (b"\x0c\x00\x00\x00" * 2, "FlatBuffers: buffer too short for a Message"),
        (b"\xff" * 64, "FlatBuffers: Message table out of bounds"),
        (message(module_id=None), "FlatBuffers: Message lacks a required field"),
        (message(event(0, heartbeat)), "FlatBuffers: Event payload has no type"),
    ],
)
def test_invalid_buffers_are_quarantined_whole_with_a_reason(buf: bytes, reason: str) -> None:
    assert rs.verify(buf) == reason
    assert decode(buf) == ([], [Bad(7, reason, buf)])


def test_every_truncation_is_rejected_or_still_whole() -> None:
    buf = one_of_each()
    whole = decode(buf)
    for n in range(len(buf)):
        events, bad = decode(buf[:n])
        if rs.verify(buf[:n]) is None:
            # Only trailing alignment padding was cut: nothing the message refers to.
            assert (events, [b.reason for b in bad]) == (whole[0], [])
        else:
            assert events == [] and len(bad) == 1


def test_shared_references_cannot_multiply_the_work() -> None:
    """Elements that all point at one table could make reading cost far more than the buffer's
    size; the verifier caps the tables it visits (a writer never shares tables anyway)."""
    b = flatbuffers.Builder(64)
    hb = event(g.Payload.Heartbeat, heartbeat)(b)
    evs = vector(b, g.MessageStartEventsVector, [hb] * 5000)
    sid = b.CreateString("x")
    g.MessageStart(b)
    g.MessageAddSecurityModuleId(b, sid)
    g.MessageAddEvents(b, evs)
    b.Finish(g.MessageEnd(b))
    buf = bytes(b.Output())
    assert decode(buf) == ([], [Bad(7, "FlatBuffers: too many tables for the buffer's size", buf)])


def test_verifier_layouts_match_the_generated_code() -> None:
    """The verifier's field ids and sizes are those flatc generated from the schema."""
    source = Path(g.__file__).read_text()
    sizes = {"Bool": 1, "Int8": 1, "Uint8": 1, "Int16": 2, "Uint16": 2, "Int32": 4, "Uint32": 4}
    sizes |= {"Int64": 8, "Uint64": 8, "Float32": 4, "Float64": 8}
    generated: dict[str, set[tuple[int, object]]] = {}
    for table, how, slot in re.findall(
        r"^def (\w+?)Add\w+\(builder, \w+\): builder\.Prepend(\w+)Slot\((\d+),", source, re.M
    ):
        kind: object = sizes.get(how, "struct" if how == "Struct" else "offset")
        generated.setdefault(table, set()).add((int(slot), kind))
    for table in re.findall(r"^def (\w+)Start\(builder\): builder\.StartObject\(0\)", source, re.M):
        generated.setdefault(table, set())
    layouts = [v for v in vars(rs).values() if isinstance(v, rs._Layout)]
    layouts += list(rs._PAYLOADS.values())
    mine: dict[str, set[tuple[int, object]]] = {}
    for layout in layouts:
        fields = set()
        for fid, kind, arg, _required in layout.fields:
            if kind == rs._SCALAR:
                fields.add((fid, arg))
            elif kind == rs._STRUCT:
                fields.add((fid, "struct"))
            else:
                fields.add((fid, "offset"))
        mine[layout.name] = fields
    assert mine == generated


# --- mti --------------------------------------------------------------------------------------


def test_mti_of_the_rtos_module_is_accepted() -> None:
    assert rs.check_mti("2.3-1-0-0") == rs.Mti(2, 3, 1, 0, 0)
    assert rs.check_mti(b"2.3-1-0-0") == rs.Mti(2, 3, 1, 0, 0)
    assert rs.check_mti("2.4-1-1") == rs.Mti(2, 4, 1, 1, None)  # a newer minor version reads
    assert rs.check_mti("2.3-0-0-0", encoding=None).encoding == rs.JSON_ENCODING


@pytest.mark.parametrize(
    ("mti", "reason"),
    [
        ("3.0-1-0-0", "mti: unsupported schema major version (iotwatch reads 2.x)"),
        ("1.0-1-0-0", "mti: unsupported schema major version (iotwatch reads 2.x)"),
        ("2.3-0-0-0", "mti: encoding is JSON, not FlatBuffers"),
        ("2.3-7-0-0", "mti: encoding is an unknown encoding, not FlatBuffers"),
        ("2.3", "mti: not major.minor-encoding-…"),
        ("2-1-0-0", "mti: not major.minor-encoding-…"),
        ("2.x-1-0-0", "mti: not major.minor-encoding-…"),
        ("", "mti: not major.minor-encoding-…"),
        ("２.3-1-0-0", "mti: not major.minor-encoding-…"),  # a fullwidth digit is no digit here
        (None, "mti: missing"),
        (23, "mti: not a string"),
    ],
)
def test_mti_other_versions_and_encodings_are_refused(mti: object, reason: str) -> None:
    with pytest.raises(BadRecord) as exc:
        rs.check_mti(mti)
    assert str(exc.value) == reason


# --- serial -----------------------------------------------------------------------------------


def test_the_same_bytes_as_a_serial_frame() -> None:
    buf = one_of_each()
    assert buf[0] not in (*range(0x80, 0x90), 0xDE, 0xDF)
    data = b"boot\r\n" + encode_payload(buf) + b"ok\r\n"
    items = split(data)
    assert items[1] == Frame(7, buf)
    stream = CaptureStream(HOST, "bench-board-1")
    stream.feed(data)
    stream.finish()
    events, bad = stream.take()
    assert bad == []
    assert events == rs.decode_message(buf, "bench-board-1", 7, HOST)[0]
    assert [line.text for line in stream.take_console()] == ["boot", "ok"]


def test_serial_flatbuffers_frame_without_a_device_is_quarantined() -> None:
    buf = one_of_each()
    stream = CaptureStream(HOST)
    stream.feed(encode_payload(buf))
    stream.finish()
    assert stream.take() == ([], [Bad(1, "missing device", buf)])


def test_serial_flatbuffers_frame_without_board_time_is_host_timed() -> None:
    buf = message(event(g.Payload.Process, process("/bin/x", g.ProcessEventType.EXEC), time=0))
    stream = CaptureStream(HOST, "b")
    stream.feed(encode_payload(buf))
    stream.finish()
    (ev,), bad = stream.take()
    assert (ev.time, ev.host_timed, bad) == (HOST, True, [])


def test_serial_frame_that_is_neither_msgpack_nor_flatbuffers_says_both() -> None:
    (item,) = split(encode_payload(b"\x10\x00\x00\x00garbage!"))
    assert isinstance(item, Bad)
    assert item.reason.startswith("msgpack: ")
    assert item.reason.endswith("; FlatBuffers: Message table out of bounds")


def test_msgpack_frames_still_decode_beside_flatbuffers_frames() -> None:
    msg = {"DeviceId": "x", "Events": []}
    items = split(encode_frame(msg) + encode_payload(one_of_each()))
    assert [type(i.message) for i in items if isinstance(i, Frame)] == [dict, bytes]


# --- replay -----------------------------------------------------------------------------------

CONFIG = """
[engine]
lateness = "PT1M"
quiet = "PT10M"

[groups.default.rules.ConnectionToIpNotAllowed]
allow = ["10.0.0.0/8", "2001:db8::/32"]

[groups.default.rules.ProcessNotAllowed]
allow = ["ok"]

[groups.default.rules.ActiveConnectionsNotInAllowedRange]
min = 0
max = 2
window = "PT15M"
"""


def test_replay_of_a_capture_with_flatbuffers_frames_raises_alerts(tmp: Path) -> None:
    config = config_from(tmp, CONFIG)
    at = T0 + 5 * 60  # 10:05
    frames = [
        message(
            event(
                g.Payload.NetworkActivity,
                network(
                    [
                        (word(10, 0, 0, 5), word(10, 1, 2, 3)),
                        (word(10, 0, 0, 5), word(8, 8, 8, 8)),
                    ],
                    [("2001:db8::5", "2001:db8::1")],
                ),
                at,
            )
        ),
        message(
            event(g.Payload.Process, process("/bin/evil", g.ProcessEventType.EXEC, 3), at + 60),
            event(g.Payload.Process, process("/usr/bin/ok", g.ProcessEventType.EXEC), at + 60),
            event(g.Payload.Process, process("/bin/forked", g.ProcessEventType.FORK), at + 60),
        ),
        message(event(g.Payload.Heartbeat, heartbeat, T0 + 40 * 60)),
    ]
    path = tmp / "bench-board-1.capture"
    path.write_bytes(b"booting\r\n" + b"".join(encode_payload(f) + b"tick\r\n" for f in frames))
    stamp = datetime(2026, 11, 28, 12, 0, tzinfo=UTC).timestamp()
    os.utime(path, (stamp, stamp))
    alerts, summary = run_replay(config, [f"serial-capture:{path}"])
    assert summary.quarantined == {}
    assert (summary.records, summary.events) == (3, 7)
    got = {
        (a["rule"], a["device"], a.get("value")): a.get("occurrences", a.get("counts"))
        for a in alerts
    }
    assert got == {
        ("ConnectionToIpNotAllowed", "bench-board-1", "8.8.8.8"): 1,
        ("ProcessNotAllowed", "bench-board-1", "/bin/evil"): 3,
        ("ActiveConnectionsNotInAllowedRange", "bench-board-1", None): [3],
    }


# --- fuzz -------------------------------------------------------------------------------------

SAMPLES = [
    one_of_each(),
    flatcc_style_heartbeat(),
    message(event(g.Payload.NetworkActivity, network(v6=[("::1", "2001:db8::1")]))),
    message(event(g.Payload.Process, process("/bin/x", g.ProcessEventType.EXEC, 5))),
]


def check_never_raises(buf: bytes) -> None:
    events, bad = rs.decode_message(buf, "d", 0, HOST)
    for b in bad:
        # The verifier lets nothing through that the generated reader would choke on.
        assert b.reason != "FlatBuffers: unreadable Message"
        # Reasons are grouped by text: no positions or values (digits only in type names).
        text = b.reason.replace("V4", "").replace("V6", "")
        assert text and not any(ch.isdigit() for ch in text), b.reason
        assert b.raw == buf[: len(b.raw)]
    assert events or bad or rs.verify(buf) is None


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=512))
def test_fuzz_arbitrary_bytes_never_raise(buf: bytes) -> None:
    check_never_raises(buf)
    split(encode_payload(buf))  # nor out of the serial splitter


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(SAMPLES),
    st.lists(st.tuples(st.integers(0, 4096), st.integers(0, 255)), max_size=6),
    st.integers(0, 4096),
)
def test_fuzz_mutated_and_truncated_buffers_never_raise(
    sample: bytes, edits: list[tuple[int, int]], cut: int
) -> None:
    buf = bytearray(sample)
    for at, value in edits:
        buf[at % len(buf)] = value
    check_never_raises(bytes(buf[: cut % (len(buf) + 1)]))
    check_never_raises(bytes(buf))


def test_msgpack_is_not_taken_for_flatbuffers() -> None:
    assert rs.verify(msgpack.packb({"Events": []})) is not None


def test_every_single_byte_change_is_read_safely() -> None:
    """Deterministic companion to the fuzz tests: each byte set to 0x00, 0xFF, or flipped."""
    sample = one_of_each()
    for at in range(len(sample)):
        for value in {0x00, 0xFF, sample[at] ^ 0x01}:
            buf = bytearray(sample)
            buf[at] = value
            check_never_raises(bytes(buf))

"""SPEC §2 "serial" and §7: the wire format of Azure RTOS boards, and the board simulator."""

from __future__ import annotations

import zlib
from collections import Counter
from unittest import mock

import msgpack
import pytest
from cobs import cobs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.event import MAX_RAW, Bad, ConsoleLine
from engine.formats import serial
from engine.formats.serial import (
    MAX_CHUNK,
    MAX_CONSOLE_LINE,
    MAX_FRAME,
    Frame,
    FrameSplitter,
    encode_frame,
    encode_payload,
    split,
)
from engine.simulators.board import HUB_ADDRESS, MINER, US, BoardSimulator, capture
from engine.timestamps import parse_time

T0 = parse_time("2026-11-28T10:00:00Z")
MSG = {
    "AgentVersion": "6.4.1.0",
    "AgentId": "a",
    "MessageSchemaVersion": "1.0",
    "DeviceId": "board-1",
    "Events": [{"Name": "ProcessCreate", "Payload": [{"Executable": "/bin/x"}]}],
}


def feed_in_pieces(data: bytes, cuts: list[int]) -> tuple[list, FrameSplitter]:
    splitter = FrameSplitter()
    items = []
    prev = 0
    for cut in [*sorted(cuts), len(data)]:
        items += splitter.feed(data[prev:cut])
        prev = max(prev, cut)
    return items + splitter.flush(), splitter


def counters(s: FrameSplitter) -> tuple[int, int, int, int]:
    return s.frames, s.crc_errors, s.console_lines, s.bad


def corrupt(frame: bytes) -> bytes:
    """Flip one data byte (never a COBS code byte, never to 0x00) of an encoded frame."""
    body = bytearray(frame[1:-1])
    codes, i = set(), 0
    while i < len(body):
        codes.add(i)
        i += body[i]
    j = max(k for k in range(len(body)) if k not in codes)
    body[j] = body[j] ^ 0x40 or 0x41
    return b"\x00" + bytes(body) + b"\x00"


# --- the frame ------------------------------------------------------------------------------


def test_serial_frame_is_0x00_cobs_of_payload_and_crc32_le_0x00():
    packed = msgpack.packb(MSG)
    data = encode_frame(MSG)
    assert data[0] == 0 and data[-1] == 0 and 0 not in data[1:-1]
    decoded = cobs.decode(data[1:-1])
    assert decoded == packed + zlib.crc32(packed).to_bytes(4, "little")


def test_serial_frame_round_trip():
    messages = [MSG, {"Events": []}, {"Events": [{"Name": "Heartbeat", "Payload": []}], 1: "x"}]
    items = split(b"".join(encode_frame(m) for m in messages))
    assert [i.message for i in items] == messages
    assert all(isinstance(i, Frame) for i in items)


def test_serial_positions_are_absolute_byte_offsets():
    a = b"boot ok\r\n"
    f = encode_frame(MSG)
    data = a + f + b"x\n" + f
    items = split(data)
    assert items == [
        ConsoleLine(0, "boot ok"),
        Frame(len(a) + 1, MSG),
        ConsoleLine(len(a) + len(f), "x"),
        Frame(len(a) + len(f) + 3, MSG),
    ]
    # A splitter started at an offset (a resumed capture) reports positions from there.
    assert [i.pos for i in split(data, pos=1000)] == [1000 + i.pos for i in items]


def test_serial_end_of_input_delimits_the_last_chunk():
    items = split(encode_frame(MSG)[:-1])
    assert items == [Frame(1, MSG)]


# --- console text ---------------------------------------------------------------------------


def test_serial_other_chunks_are_console_text_split_into_lines():
    data = b"Starting Azure thread\r\n\r\nInitializing DHCP\n\tIP address: 10.0.0.5\r\nno newline"
    s = FrameSplitter()
    items = s.feed(data) + s.flush()
    assert [i.text for i in items] == [
        "Starting Azure thread",
        "",
        "Initializing DHCP",
        "\tIP address: 10.0.0.5",
        "no newline",
    ]
    assert s.console_lines == 5 and s.frames == s.crc_errors == s.bad == 0


def test_serial_console_line_continues_across_a_frame():
    data = b"Telemetry mess" + encode_frame(MSG) + b"age sent.\r\n"
    items = split(data)
    assert items == [Frame(15, MSG), ConsoleLine(0, "Telemetry message sent.")]


def test_serial_console_line_continues_across_several_frames_and_empty_chunks():
    f = encode_frame(MSG)
    data = b"a" + f + b"\x00\x00" + f + b"b\r" + f + b"\n"
    items = split(data)
    assert [type(i) for i in items] == [Frame, Frame, Frame, ConsoleLine]
    assert items[-1] == ConsoleLine(0, "ab")


def test_serial_empty_chunks_produce_nothing():
    s = FrameSplitter()
    assert s.feed(b"\x00" * 1000) + s.flush() == []
    assert counters(s) == (0, 0, 0, 0)
    f = encode_frame(MSG)
    assert split(b"\x00\x00" + f + b"\x00\x00\x00" + f) == [Frame(3, MSG), Frame(len(f) + 6, MSG)]


def test_serial_invalid_utf8_console_text_is_replaced_not_dropped():
    items = split(b"temp \xff\xfe ok\r\ncaf\xc3\xa9\n")
    assert items == [ConsoleLine(0, "temp \ufffd\ufffd ok"), ConsoleLine(12, "café")]


def test_serial_utf8_sequence_split_by_a_frame_is_rejoined():
    data = b"caf\xc3" + encode_frame(MSG) + b"\xa9\n"
    assert split(data)[-1] == ConsoleLine(0, "café")


def test_serial_garbage_is_console_text():
    garbage = bytes(range(1, 256)) * 3 + b"\x00\xf8\xf8\x80\x00"
    f = encode_frame(MSG)
    s = FrameSplitter()
    items = s.feed(garbage + f + garbage + f) + s.flush()
    assert [i.message for i in items if isinstance(i, Frame)] == [MSG, MSG]
    assert s.bad == 0 and s.console_lines > 0


def test_serial_long_console_line_is_cut_into_bounded_pieces():
    line = b"x" * (3 * MAX_CONSOLE_LINE + 10)
    items = split(b"> " + line + b"\r\nnext\n")
    texts = [i.text for i in items]
    assert "".join(texts[:-1]) == "> " + line.decode()
    assert all(len(t) <= MAX_CONSOLE_LINE for t in texts)
    assert [i.pos for i in items[:-1]] == [k * MAX_CONSOLE_LINE for k in range(4)]
    assert items[-1] == ConsoleLine(len(line) + 4, "next")


@pytest.mark.parametrize("char", ["é", "€", "😀"])
@pytest.mark.parametrize("shift", [0, 1, 2, 3])
def test_serial_long_console_line_is_not_cut_inside_a_utf8_character(char, shift):
    text = "x" * shift + char * MAX_CONSOLE_LINE
    items = split(text.encode() + b"\n")
    assert "".join(i.text for i in items) == text
    assert all(len(i.text.encode()) <= MAX_CONSOLE_LINE for i in items)


def test_serial_piece_positions_of_a_long_line_interrupted_by_frames():
    f = encode_frame(MSG)
    half = MAX_CONSOLE_LINE // 2 + 7
    data = b"a" * half + f + b"b" * half + f + b"c" * half + b"\n"
    lines = [i for i in split(data) if isinstance(i, ConsoleLine)]
    assert "".join(line.text for line in lines) == "a" * half + "b" * half + "c" * half
    # The second piece starts in the run of b's after the first frame.
    start_b = half + len(f)
    assert lines[1].pos == start_b + (MAX_CONSOLE_LINE - half)


# --- faults (SPEC §7) -------------------------------------------------------------------------


def test_serial_crc_failure_is_console_text_not_a_frame_and_counted():
    s = FrameSplitter()
    bad = corrupt(encode_frame(MSG))
    items = s.feed(b"ok\n" + bad + b"\n" + encode_frame(MSG)) + s.flush()
    assert [type(i) for i in items[:-1]] == [ConsoleLine] * (len(items) - 1)
    assert items[-1] == Frame(5 + len(bad), MSG)
    # The bytes of the damaged frame are kept as console text.
    assert "".join(i.text for i in items[1:-1]).startswith(
        bad[1:-1].split(b"\n")[0].decode("utf-8", "replace")
    )
    assert s.crc_errors == 1 and s.frames == 1 and s.bad == 0


def test_serial_crc_failure_of_printable_text_is_not_counted():
    # "#" is COBS code 35: a 35-byte line COBS-decodes by chance and fails its CRC.
    line = b"#" + b"a" * 34
    assert len(cobs.decode(line)) >= 5
    s = FrameSplitter()
    assert s.feed(b"\x00" + line + b"\x00") + s.flush() == [ConsoleLine(1, line.decode())]
    assert s.crc_errors == 0


def test_serial_frame_needs_more_than_its_crc():
    # Four zero bytes are the CRC-32 of an empty payload: still not a frame.
    assert cobs.decode(b"\x01" * 5) == bytes(4)
    s = FrameSplitter()
    assert s.feed(b"\x00" + b"\x01" * 5 + b"\x00") + s.flush() == [ConsoleLine(1, "\x01" * 5)]
    assert counters(s) == (0, 0, 1, 0)


def test_serial_valid_crc_bad_msgpack_is_quarantined_with_reason():
    packed = msgpack.packb(MSG)
    data = b"x\n" + encode_payload(packed[:20]) + encode_frame(MSG)
    s = FrameSplitter()
    items = s.feed(data) + s.flush()
    assert isinstance(items[1], Bad)
    assert items[1].pos == 3
    assert items[1].reason == "msgpack: Unpack failed: incomplete input"
    assert items[1].raw == encode_payload(packed[:20])[1:-1]
    assert items[2] == Frame(len(encode_payload(packed[:20])) + 3, MSG)
    assert (s.frames, s.bad) == (1, 1)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"\xc1", "msgpack: FormatError"),
        (msgpack.packb({"a": 1}) + b"\x01", "msgpack: unpack(b) received extra data."),
        (msgpack.packb([1, 2]), "msgpack: not a map (list)"),
        (b"\x81\xa1a\xa2\xff\xfe", "msgpack: invalid UTF-8"),
        (b"\x91" * 2000 + b"\xc0", "msgpack: nested too deeply"),
    ],
)
def test_serial_valid_crc_that_is_not_a_msgpack_map_is_quarantined(payload, reason):
    (item,) = split(encode_payload(payload))
    assert isinstance(item, Bad) and item.reason.startswith(reason)


def test_serial_frame_over_64_kib_is_quarantined():
    def of_size(n: int) -> dict:
        m = {"Events": [], "pad": ""}
        for _ in range(3):  # the string header grows with the string
            overhead = len(msgpack.packb(m)) - len(m["pad"])
            m["pad"] = "p" * (n - 4 - overhead)
        assert len(msgpack.packb(m)) + 4 == n
        return m

    at_limit = of_size(MAX_FRAME)
    over = of_size(MAX_FRAME + 1)
    s = FrameSplitter()
    items = s.feed(encode_frame(at_limit) + encode_frame(over) + encode_frame(MSG)) + s.flush()
    assert items[0] == Frame(1, at_limit)
    assert isinstance(items[1], Bad) and items[1].reason == "frame over 64 KiB"
    assert len(items[1].raw) == MAX_RAW
    assert items[2].message == MSG
    assert (s.frames, s.bad) == (2, 1)


def test_serial_chunk_longer_than_the_bound_is_console_text():
    # Oversized frames are recognised up to MAX_CHUNK encoded bytes; a longer chunk cannot be
    # told from console text.
    for size, frames_bad in ((MAX_CHUNK, 1), (MAX_CHUNK + 1, 0)):
        payload = next(
            b"\x01" * n
            for n in range(size - 600, size)
            if len(encode_payload(b"\x01" * n)) == size + 2
        )
        data = encode_payload(payload) + encode_frame(MSG)
        for cuts in ([], [1 + MAX_CHUNK], list(range(0, len(data), 1000))):
            items, s = feed_in_pieces(data, cuts)
            assert s.bad == frames_bad and s.frames == 1
            frames = [i for i in items if isinstance(i, Frame)]
            assert frames == [Frame(len(data) - len(encode_frame(MSG)) + 1, MSG)]


def test_serial_crlf_ending_does_not_count_toward_the_line_bound():
    line = b"y" * MAX_CONSOLE_LINE
    assert split(line + b"\r\n") == [ConsoleLine(0, line.decode())]
    assert [i.text for i in split(line + b"\rz\n")] == [line.decode(), "\rz"]


def test_serial_memory_is_bounded_without_0x00():
    s = FrameSplitter()
    block = bytes(range(1, 256)) * 64 + b"\n" + b"z" * 5000
    lines = 0
    for _ in range(200):  # ~4.2 MB without a single 0x00
        lines += len(s.feed(block))
        assert len(s._buf) <= MAX_CHUNK and len(s._line) <= MAX_CONSOLE_LINE + 1
    assert lines > 0
    # The run ends: the splitter leaves console mode and finds the next frame.
    items = s.feed(encode_frame(MSG)) + s.flush()
    assert [i.message for i in items if isinstance(i, Frame)] == [MSG]


def test_serial_partial_frame_at_end_is_console_text():
    s = FrameSplitter()
    f = encode_frame(MSG)
    items = s.feed(f + f[: len(f) // 2]) + s.flush()
    assert [type(i) for i in items] == [Frame, ConsoleLine]
    assert items[1].pos == len(f) + 1 and s.frames == 1


# --- chunking does not matter -----------------------------------------------------------------


def sample_stream() -> bytes:
    f = encode_frame(MSG)
    return (
        b"boot\r\nhalf "
        + f
        + b"line\r\n\x00\x00"
        + corrupt(f)
        + b"\xff\xfe\x00"
        + encode_payload(b"\xc1")
        + b"caf\xc3"
        + f
        + b"\xa9 tail"
    )


def test_serial_frame_split_at_every_byte_boundary():
    data = sample_stream()
    whole, ref = feed_in_pieces(data, [])
    assert sum(isinstance(i, Frame) for i in whole) == 2
    for cut in range(len(data) + 1):
        items, s = feed_in_pieces(data, [cut])
        assert items == whole, cut
        assert counters(s) == counters(ref)
    items, s = feed_in_pieces(data, list(range(len(data))))
    assert items == whole and counters(s) == counters(ref)


scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1), st.text(max_size=20)
)
messages = st.dictionaries(
    st.text(max_size=10),
    st.recursive(scalars, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(), c)),
    max_size=5,
)
console = st.binary(max_size=60).map(lambda b: b.replace(b"\x00", b"")) | st.sampled_from(
    [b"\r\n", b"\n", b"Telemetry message sent.\r\n", b"\xc3", b"\xa9\r"]
)
garbage = st.binary(min_size=1, max_size=40)


@st.composite
def streams(draw: st.DrawFn) -> tuple[bytes, list[dict], list[int]]:
    parts: list[bytes] = []
    sent: list[dict] = []
    for kind in draw(st.lists(st.sampled_from("fcg"), max_size=12)):
        if kind == "f":
            sent.append(draw(messages))
            parts.append(encode_frame(sent[-1]))
        else:
            parts.append(draw(console if kind == "c" else garbage))
    data = b"".join(parts)
    cuts = draw(st.lists(st.integers(0, len(data)), max_size=8))
    return data, sent, cuts


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(streams())
def test_serial_any_chunking_gives_identical_items(stream):
    data, sent, cuts = stream
    whole, ref = feed_in_pieces(data, [])
    items, s = feed_in_pieces(data, cuts)
    assert items == whole
    assert counters(s) == counters(ref)
    # Every frame is found, whatever surrounds it: it brings its own 0x00 delimiters.
    assert [i.message for i in whole if isinstance(i, Frame)] == sent
    assert ref.console_lines == sum(isinstance(i, ConsoleLine) for i in whole)


@settings(max_examples=300, deadline=None)
@given(streams(), st.integers(8, 40), st.integers(4, 12))
def test_serial_any_chunking_gives_identical_items_at_the_memory_bounds(stream, chunk, line):
    data, _, cuts = stream
    with (
        mock.patch.object(serial, "MAX_CHUNK", chunk),
        mock.patch.object(serial, "MAX_CONSOLE_LINE", line),
    ):
        whole, ref = feed_in_pieces(data, [])
        items, s = feed_in_pieces(data, cuts)
    assert items == whole
    assert counters(s) == counters(ref)
    assert all(len(i.text) <= line for i in whole if isinstance(i, ConsoleLine))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=30).map(lambda b: b.replace(b"\x00", b"")), max_size=10))
def test_serial_console_text_without_frames_is_its_lines(chunks):
    text = b"\n".join(chunks)
    items = split(text)
    expected = text.split(b"\n")
    if expected[-1] == b"":
        expected.pop()
    assert [i.text for i in items] == [
        (c[:-1] if c.endswith(b"\r") else c).decode("utf-8", "replace") for c in expected
    ]


# --- the board simulator ----------------------------------------------------------------------


def frames_of(data: bytes) -> list[dict]:
    return [i.message for i in split(data) if isinstance(i, Frame)]


def events_of(data: bytes) -> list[dict]:
    return [e for m in frames_of(data) for e in m["Events"]]


def test_simulator_is_deterministic_for_a_seed():
    a = capture(7, T0, 600, "bench-1", "rtc")
    assert a == capture(7, T0, 600, "bench-1", "rtc")
    assert a != capture(8, T0, 600, "bench-1", "rtc")


def test_simulator_output_does_not_depend_on_how_often_it_is_polled():
    sim = BoardSimulator("bench-1", 3, T0)
    polled = b"".join(sim.next_chunk(T0 + k * 700_000) for k in range(-2, 600 * 10 // 7 + 1))
    polled += sim.next_chunk(T0 + 600 * US)
    assert polled == capture(3, T0, 600, "bench-1", "rtc")


def test_simulator_frames_are_security_messages_with_device_id():
    data = capture(1, T0, 900, "bench-1", "rtc")
    s = FrameSplitter()
    items = s.feed(data) + s.flush()
    assert s.crc_errors == s.bad == 0 and s.frames > 50
    for m in (i.message for i in items if isinstance(i, Frame)):
        assert {"AgentVersion", "AgentId", "MessageSchemaVersion", "Events"} <= m.keys()
        assert m["DeviceId"] == "bench-1"
        for e in m["Events"]:
            keys = {"Name", "Category", "EventType", "IsEmpty", "Id", "Payload"}
            assert keys <= e.keys()
            assert isinstance(e["Payload"], list)
    texts = [i.text for i in items if isinstance(i, ConsoleLine)]
    for needle in ("ThreadX", "NetX Duo", "DHCP", "SNTP time sync", "Connected to IoT Hub"):
        assert any(needle in t for t in texts), needle
    assert sum(t.startswith("Telemetry message sent") for t in texts) > 100


def test_simulator_without_device_sends_no_device_id():
    assert all("DeviceId" not in m for m in frames_of(capture(1, T0, 120, None, "rtc")))


def test_simulator_events_cover_the_agent_rules():
    events = events_of(capture(2, T0, 900, "bench-1", "rtc"))
    names = Counter(e["Name"] for e in events)
    for name in ("ProcessCreate", "ConnectionCreate", "Login", "Heartbeat", "SystemInformation"):
        assert names[name] > 0, name
    items = [(e["Name"], p) for e in events for p in e["Payload"]]
    remote = [p["RemoteAddress"] for n, p in items if n == "ConnectionCreate"]
    assert HUB_ADDRESS in remote and any(r.startswith("203.0.113.") for r in remote)
    assert {p["Direction"] for n, p in items if n == "ConnectionCreate"} == {"In", "Out"}
    assert MINER in {p["Executable"] for n, p in items if n == "ProcessCreate"}
    assert {p["Result"] for n, p in items if n == "Login"} == {"Success", "Fail"}
    hits = [p["ExtraDetails"]["HitCount"] for _, p in items if "ExtraDetails" in p]
    assert {type(h) for h in hits} == {int, str}
    aggregated = [e for e in events if e["Category"] == "Aggregated"]
    assert aggregated and all("ExtraDetails" in e["Payload"][0] for e in aggregated)


def test_simulator_rtc_clock_writes_real_event_times():
    data = capture(4, T0, 300, "bench-1", "rtc")
    stamps = [e["TimestampUTC"] for e in events_of(data)]
    times = [parse_time(s) for s in stamps]
    assert all(T0 <= t <= T0 + 300 * US for t in times)
    assert all(s.endswith("Z") and s[10] in "T " for s in stamps)
    # Each firmware writes one style; both occur.
    firsts = [events_of(capture(k, T0, 30, None, "rtc"))[0]["TimestampUTC"] for k in range(12)]
    assert {s[10] for s in firsts} == {"T", " "}


def test_simulator_without_clock_writes_times_before_2020_or_none():
    events = events_of(capture(5, T0, 300, "bench-1", "none"))
    stamps = [e.get("TimestampUTC") for e in events]
    assert None in stamps
    early = parse_time("2020-01-01T00:00:00Z")
    assert all(parse_time(s) < early for s in stamps if s is not None)


def test_simulator_messages_fit_in_a_frame():
    data = capture(6, T0, 3600, "bench-1", "rtc")
    assert all(len(msgpack.packb(m)) + 4 <= MAX_FRAME for m in frames_of(data))


@pytest.mark.parametrize("clock", ["rtc", "none"])
@pytest.mark.parametrize("seed", [1, 2, 3, 99])
def test_simulator_faults_are_counted_and_lose_no_frame(seed, clock):
    clean = capture(seed, T0, 600, "bench-1", clock)
    faulty = capture(seed, T0, 600, "bench-1", clock, faults=True)
    s = FrameSplitter()
    items = s.feed(faulty) + s.flush()
    assert [i.message for i in items if isinstance(i, Frame)] == frames_of(clean)
    assert s.crc_errors == 1
    assert s.bad == 1
    (bad,) = [i for i in items if isinstance(i, Bad)]
    assert bad.reason.startswith("msgpack: ")
    assert faulty[bad.pos : bad.pos + len(bad.raw)] == bad.raw
    assert not faulty.endswith(b"\x00")  # the partial frame at the end

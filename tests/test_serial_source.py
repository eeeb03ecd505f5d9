"""SerialSource on real ports: a pseudo-terminal pair and a local TCP server stand in for boards."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine.capture import CaptureStream
from engine.event import Bad, ConsoleLine, Event
from engine.formats.serial import encode_frame
from engine.serial_source import (
    CLOSED,
    FOLLOWING,
    RECONNECTING,
    PortInfo,
    SerialSource,
    by_id_names,
    list_ports,
)

FAST = {"backoff_initial": 0.02, "backoff_max": 0.2, "read_timeout": 0.05}
T0 = "2026-11-28T10:00:00Z"


def message(i: int, command: str = "") -> dict[str, Any]:
    """A security message whose one ProcessCreate names frame ``i``."""
    item = {"Executable": f"/bin/p{i}", "CommandLine": command}
    event = {"Name": "ProcessCreate", "TimestampUTC": T0, "Payload": [item]}
    return {"AgentVersion": "1.0", "Events": [event]}


def frame(i: int) -> bytes:
    return encode_frame(message(i))


def corrupt(data: bytes) -> bytes:
    """A frame with one data byte changed: the CRC fails."""
    b = bytearray(data)
    b[len(b) // 2] ^= 0x40 if b[len(b) // 2] ^ 0x40 else 0x41
    return bytes(b)


def board_stream() -> bytes:
    """Console text, frames, garbage, a CRC error and an oversized frame, as one stream."""
    big = encode_frame(message(99, "x" * 70_000))  # CRC passes, but over 64 KiB
    return b"".join(
        [
            b"boot line 1\r\nboot line 2\r\n",
            frame(0),
            b"\x00\xff\x13\x11garbage\x01\x00",
            corrupt(frame(1)),
            frame(2),
            big,
            frame(3),
            b"tail text\r\n",
            frame(4),
        ]
    )


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


class Reader:
    """Consumes a source the way the live session does, decoding with ``CaptureStream``."""

    def __init__(self, source: SerialSource, device: str = "bench") -> None:
        self.source = source
        self.stream = CaptureStream(0, device)
        self.events: list[Event] = []
        self.bad: list[Bad] = []
        self.console: list[ConsoleLine] = []
        self.data = bytearray()
        self.ticks = 0
        self.delay = 0.0  # seconds spent per chunk: a slow consumer
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        async for data, received in self.source.chunks():
            assert received > 1_600_000_000_000_000  # µs since the epoch
            self.stream.host_time = received
            if data:
                self.data += data
                self.stream.feed(data)
            else:
                self.ticks += 1
                self.stream.finish()
            events, bad = self.stream.take()
            self.events += events
            self.bad += bad
            self.console += self.stream.take_console()
            if self.delay:
                await asyncio.sleep(self.delay)

    @property
    def values(self) -> list[str | None]:
        return [e.value for e in self.events]

    @property
    def lines(self) -> list[str]:
        return [line.text for line in self.console]

    async def close(self) -> None:
        self.source.stop()
        await asyncio.wait_for(self.task, 2)
        assert self.source.join(1)
        assert self.source.state == CLOSED


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class Pty:
    """A pseudo-terminal pair; the source opens ``path`` (the slave, or a link to it)."""

    def __init__(self, link: Path | None = None) -> None:
        self.master, self.slave = os.openpty()
        self.path = os.ttyname(self.slave)
        self.link = link
        if link is not None:
            tmp = link.with_name(link.name + ".tmp")
            tmp.symlink_to(self.path)
            tmp.replace(link)

    async def write(self, data: bytes) -> None:
        await asyncio.to_thread(write_all, self.master, data)

    def unplug(self) -> None:
        os.close(self.master)
        os.close(self.slave)
        if self.link is not None:
            self.link.unlink()


class TcpBoard:
    """A TCP server on 127.0.0.1 that serves one client at a time."""

    def __init__(self, port: int = 0) -> None:
        self.listener = socket.create_server(("127.0.0.1", port))
        self.port = self.listener.getsockname()[1]
        self.conn: socket.socket | None = None

    @property
    def url(self) -> str:
        return f"socket://127.0.0.1:{self.port}"

    async def accept(self) -> None:
        self.listener.settimeout(5)
        self.conn, _ = await asyncio.to_thread(self.listener.accept)

    async def write(self, data: bytes) -> None:
        assert self.conn is not None
        await asyncio.to_thread(self.conn.sendall, data)

    def drop(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.listener.close()


def check_board_stream(reader: Reader) -> None:
    assert reader.values == ["/bin/p0", "/bin/p2", "/bin/p3", "/bin/p4"]
    assert all(e.device == "bench" and not e.host_timed for e in reader.events)
    assert [b.reason for b in reader.bad] == ["frame over 64 KiB"]
    splitter = reader.stream.splitter
    assert (splitter.frames, splitter.crc_errors, splitter.bad) == (4, 1, 1)
    assert reader.lines[:2] == ["boot line 1", "boot line 2"]
    # Console text continues across frames: the damaged chunks end up in the line "tail text" ends.
    assert reader.lines[-1].endswith("tail text")


async def test_pty_frames_garbage_crc_split_and_oversized() -> None:
    pty = Pty()
    source = SerialSource(pty.path, 921_600, **FAST)
    reader = Reader(source)
    try:
        await until(lambda: source.state == FOLLOWING)
        data = board_stream()
        cut = data.index(frame(2)) + 7  # inside frame 2: it arrives in two reads
        await pty.write(data[:cut])
        await until(lambda: len(reader.data) == cut)
        await asyncio.sleep(0.05)
        await pty.write(data[cut:])
        await until(lambda: len(reader.values) == 4)
        assert bytes(reader.data) == data  # raw mode: 0x11, 0x13, CR, NUL pass untouched
        check_board_stream(reader)
        assert source.bytes_read == len(data)
    finally:
        await reader.close()
        pty.unplug()


async def test_tcp_frames_garbage_crc_split_and_oversized() -> None:
    board = TcpBoard()
    source = SerialSource(board.url, **FAST)
    reader = Reader(source)
    try:
        await board.accept()
        await until(lambda: source.state == FOLLOWING)
        data = board_stream()
        cut = data.index(frame(2)) + 7
        await board.write(data[:cut])
        await until(lambda: len(reader.data) == cut)
        await board.write(data[cut:])
        await until(lambda: len(reader.values) == 4)
        check_board_stream(reader)
    finally:
        await reader.close()
        board.drop()


async def test_pty_unplugged_and_plugged_back_behind_a_link(tmp_path: Path) -> None:
    link = tmp_path / "usb-Board_0001-if00"
    pty = Pty(link)
    states: list[str] = []
    source = SerialSource(str(link), on_state=lambda s: states.append(s.state), **FAST)
    reader = Reader(source)
    try:
        await until(lambda: source.state == FOLLOWING)
        await pty.write(frame(0) + frame(1) + frame(2)[:9])  # unplugged in the middle of frame 2
        await until(lambda: len(reader.values) == 2)
        pty.unplug()
        await until(lambda: source.state == RECONNECTING)
        assert source.error
        assert source.next_retry is not None
        await asyncio.sleep(0.1)  # a few failed attempts while the link is gone
        assert source.state == RECONNECTING
        pty = Pty(link)
        await until(lambda: source.state == FOLLOWING and source.reconnects == 1)
        await pty.write(b"".join(frame(i) for i in range(3, 8)))
        await until(lambda: len(reader.values) == 7)
        assert reader.values == [f"/bin/p{i}" for i in (0, 1, 3, 4, 5, 6, 7)]
        assert states[:3] == [FOLLOWING, RECONNECTING, RECONNECTING]
        assert states[-1] == FOLLOWING
    finally:
        await reader.close()
        pty.unplug()


async def test_tcp_server_dropped_and_back_on_the_same_port() -> None:
    board = TcpBoard()
    port = board.port
    source = SerialSource(board.url, **FAST)
    reader = Reader(source)
    try:
        await board.accept()
        # pyserial discards what arrived before its open() returned: write once following.
        await until(lambda: source.state == FOLLOWING)
        await board.write(b"".join(frame(i) for i in range(5)))
        await until(lambda: len(reader.values) == 5)
        board.drop()
        await until(lambda: source.state == RECONNECTING)
        await asyncio.sleep(0.1)  # connections are refused meanwhile
        assert source.state == RECONNECTING
        assert source.reconnects == 0
        board = TcpBoard(port)
        await board.accept()
        await until(lambda: source.state == FOLLOWING and source.reconnects == 1)
        await board.write(b"".join(frame(i) for i in range(5, 10)))
        await until(lambda: len(reader.values) == 10)
        assert reader.values == [f"/bin/p{i}" for i in range(10)]
        assert reader.bad == []
    finally:
        await reader.close()
        board.drop()


async def test_slow_consumer_gets_every_byte_in_order() -> None:
    """Backpressure: the bounded queue stalls the reader, the pty stalls the writer; no loss."""
    pty = Pty()
    source = SerialSource(pty.path, max_chunks=2, read_size=512, **FAST)
    reader = Reader(source)
    reader.delay = 0.001
    try:
        await until(lambda: source.state == FOLLOWING)
        data = os.urandom(300_000)
        await pty.write(data)
        await until(lambda: len(reader.data) == len(data))
        assert bytes(reader.data) == data
    finally:
        await reader.close()
        pty.unplug()


async def test_fast_board_loses_no_frame() -> None:
    pty = Pty()
    source = SerialSource(pty.path, 921_600, **FAST)
    reader = Reader(source)
    sent = 0
    stop = threading.Event()

    def board() -> None:
        nonlocal sent
        while not stop.is_set():
            batch = b"".join(frame(sent + i) for i in range(100)) + b"console text\r\n"
            write_all(pty.master, batch)
            sent += 100

    try:
        await until(lambda: source.state == FOLLOWING)
        writer = asyncio.create_task(asyncio.to_thread(board))
        await asyncio.sleep(0.5)
        stop.set()
        await writer
        await until(lambda: len(reader.events) == sent)
        assert reader.values == [f"/bin/p{i}" for i in range(sent)]
        assert reader.stream.splitter.crc_errors == 0
        assert sent >= 1000
    finally:
        await reader.close()
        pty.unplug()


async def test_idle_tick_releases_console_text_without_delimiter() -> None:
    pty = Pty()
    source = SerialSource(pty.path, idle=0.1, **FAST)
    reader = Reader(source)
    try:
        await until(lambda: source.state == FOLLOWING)
        await pty.write(b"login: ")
        await until(lambda: "login: " in reader.lines)
        assert reader.ticks >= 1
    finally:
        await reader.close()
        pty.unplug()


async def test_missing_port_retries_with_backoff_and_stops_promptly(tmp_path: Path) -> None:
    source = SerialSource(str(tmp_path / "ttyACM9"), backoff_initial=0.02, backoff_max=0.1)
    reader = Reader(source)
    await until(lambda: source.state == RECONNECTING)
    assert "ttyACM9" in (source.error or "")
    first = source.next_retry
    await until(lambda: source.next_retry != first)
    assert source.info()["state"] == RECONNECTING
    started = time.monotonic()
    await reader.close()
    assert time.monotonic() - started < 0.5
    assert reader.events == []


async def test_stop_event_ends_iteration() -> None:
    pty = Pty()
    source = SerialSource(pty.path, **FAST)
    stop = asyncio.Event()
    seen: list[bytes] = []

    async def consume() -> None:
        async for data, _ in source.chunks(stop):
            seen.append(data)

    task = asyncio.create_task(consume())
    try:
        await until(lambda: source.state == FOLLOWING)
        await pty.write(b"hello\r\n")
        await until(lambda: b"hello\r\n" in seen)
        stop.set()
        await asyncio.wait_for(task, 1)
        assert source.join(1)
        assert source.state == CLOSED
    finally:
        with contextlib.suppress(Exception):
            await source.aclose()
        pty.unplug()


def test_by_id_names_resolve_links(tmp_path: Path) -> None:
    devices = tmp_path / "dev"
    devices.mkdir()
    (devices / "ttyACM0").touch()
    (devices / "ttyUSB0").touch()
    by_id = tmp_path / "by-id"
    by_id.mkdir()
    (by_id / "usb-STMicro_STLINK_0001-if02").symlink_to("../dev/ttyACM0")
    (by_id / "usb-FTDI_FT232R_A1-if00-port0").symlink_to(devices / "ttyUSB0")
    (by_id / "usb-Other_Board-if00").symlink_to("../dev/ttyACM0")
    names = by_id_names(by_id)
    assert names == {
        os.path.realpath(devices / "ttyACM0"): [
            str(by_id / "usb-Other_Board-if00"),
            str(by_id / "usb-STMicro_STLINK_0001-if02"),
        ],
        os.path.realpath(devices / "ttyUSB0"): [str(by_id / "usb-FTDI_FT232R_A1-if00-port0")],
    }
    assert by_id_names(tmp_path / "missing") == {}


def test_list_ports_runs() -> None:
    ports = list_ports()
    assert all(isinstance(p, PortInfo) and p.device for p in ports)
    assert [p.device for p in ports] == sorted(p.device for p in ports)


async def test_pyserial_url_without_file_descriptor() -> None:
    """loop:// has no fileno (nor has rfc2217://): the blocking read path follows it."""
    source = SerialSource("loop://", **FAST)
    reader = Reader(source)
    try:
        await until(lambda: source.state == FOLLOWING)
        assert reader.data == b""
    finally:
        await reader.close()

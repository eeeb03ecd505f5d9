"""Serial benchmark: a board writing frames through a pty as fast as 921,600 baud allows (and
unthrottled), read by ``SerialSource`` + ``CaptureStream`` in-process and by
``iotwatch run --headless`` with a serial source.

The board is a subprocess (``serial_line.py _board``) that writes COBS/CRC-32 frames, each carrying a
sequence number in its ProcessCreate ``Executable``, with a console line every few frames, to the
pty master with blocking writes: a reader that falls behind slows the board down (the kernel's
pty buffer fills) instead of losing bytes, so every missing frame is a frame the reading side
lost. Reports frames sent and received, CRC-valid frames lost (must be 0), CRC errors, frames/s
and MB/s. A benchmark, not a test: it exits non-zero only when something broke (a crash, a lost
or duplicated frame).

Console lines (mode ``console``): a board that prints the getting-started firmware's console as
fast as the reader takes it (a small frame after every hundred lines), read with the built-in
console patterns and without them, in the same run: lines/s each way and their ratio.

Usage: ``python bench/serial_line.py [--seconds N] [--quick] [--repeat K] [--no-headless]
[--modes line,unthrottled,console]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import tty
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import msgpack
import orjson
import psutil
from cobs import cobs

from engine.capture import CaptureStream
from engine.formats.console import BUILTIN
from engine.formats.serial import encode_frame, encode_payload

BAUD = 921_600
LINE_BYTES_S = BAUD // 10  # 8N1: ten bits on the wire per byte
DEVICE = "bench-board"
SEQ = "/usr/bin/seq-"
WARMUP = "/usr/bin/warmup"
CONSOLE_EVERY = 10  # a console line after every tenth frame
WRITE_EVERY = 0.002  # s between paced writes of the board
UNTHROTTLED_WRITE = 64 * 1024


def _stamp() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}"


def message(seq: int | str, exe: str | None = None, stamp: str | None = None) -> dict[str, object]:
    """A security message as a board sends it: one ProcessCreate numbered ``seq`` (ten digits)."""
    stamp = stamp or _stamp()
    digits = seq if isinstance(seq, str) else f"{seq:010d}"
    exe = exe or f"{SEQ}{digits}"
    return {
        "AgentVersion": "6.4.1.0",
        "AgentId": "3f1c2a9e-7b4d-4e21-9c0a-5d8e6f7a8b9c",
        "MessageSchemaVersion": "1.0",
        "DeviceId": DEVICE,
        "Events": [
            {
                "EventType": "Security",
                "Category": "Triggered",
                "Name": "ProcessCreate",
                "IsEmpty": False,
                "PayloadSchemaVersion": "1.0",
                "Id": f"00000000-0000-4000-8000-00{digits}",
                "TimestampLocal": stamp + "+00:00",
                "TimestampUTC": stamp + "Z",
                "Payload": [
                    {
                        "Executable": exe,
                        "ProcessId": 4242,
                        "ParentProcessId": 1,
                        "UserName": "root",
                        "UserId": "0",
                        "CommandLine": f"{exe} --job {digits}",
                    }
                ],
            }
        ],
    }


class FrameMaker:
    """``encode_frame(message(seq))``, fast: the MessagePack of a message whose sequence number
    is a ten-digit string is packed once per timestamp, the digits are put in by ``join``."""

    HOLE = "@" * 10

    def __init__(self) -> None:
        self.stamp = ""
        self.parts: list[bytes] = []
        self.tick()

    def tick(self) -> None:
        """Use the current time for the frames that follow."""
        stamp = _stamp()
        if stamp != self.stamp:
            self.stamp = stamp
            packed = msgpack.packb(message(self.HOLE, stamp=stamp), use_bin_type=True)
            self.parts = packed.split(self.HOLE.encode())

    def frame(self, seq: int, damaged: bool = False) -> bytes:
        """Frame ``seq``; ``damaged``: one bit of the payload flipped after the CRC was taken,
        as line noise would."""
        payload = (b"%010d" % seq).join(self.parts)
        if not damaged:
            return encode_payload(payload)
        crc = zlib.crc32(payload).to_bytes(4, "little")
        bad = bytearray(payload)
        bad[len(bad) // 2] ^= 0x01
        encoded: bytes = cobs.encode(bytes(bad) + crc)
        return b"\x00" + encoded + b"\x00"


# --------------------------------------------------------------------------------------------------
# The board (a subprocess: ``serial_line.py _board FD BYTES_PER_S SECONDS DAMAGE``)
# --------------------------------------------------------------------------------------------------


def board_main(argv: Sequence[str]) -> int:
    """Write numbered frames to the pty master ``FD`` for SECONDS, paced at BYTES_PER_S (0:
    unthrottled), every DAMAGE-th frame damaged (0: none); print what was written as JSON."""
    fd, rate, seconds, damage = int(argv[0]), int(argv[1]), float(argv[2]), int(argv[3])
    os.set_blocking(fd, True)
    seq = console = written = damaged = 0
    buf = bytearray()
    maker = FrameMaker()
    assert maker.frame(7) == encode_frame(message(7, stamp=maker.stamp))
    plan = Plan("", seconds, damage)

    def more() -> None:
        nonlocal seq, console, damaged
        hit = plan.is_damaged(seq)
        damaged += hit
        buf.extend(maker.frame(seq, hit))
        seq += 1
        if seq % CONSOLE_EVERY == 0:
            buf.extend(f"telemetry: frames={seq} temp=23.{seq % 10}C heap=81%\r\n".encode())
            console += 1

    def flush() -> None:
        nonlocal written
        data = bytes(buf)
        buf.clear()
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        written += len(data)

    t0 = time.monotonic()
    while (now := time.monotonic()) - t0 < seconds:
        if rate:
            due = rate * (now - t0) - written
            maker.tick()
            while len(buf) < due:
                more()
            flush()
            time.sleep(WRITE_EVERY)
        else:
            maker.tick()
            while len(buf) < UNTHROTTLED_WRITE:
                more()
            flush()
    t1 = time.monotonic()
    report = {
        "frames": seq,
        "damaged": damaged,
        "console": console,
        "bytes": written,
        "start": t0,
        "end": t1,
    }
    sys.stdout.write(orjson.dumps(report).decode() + "\n")
    return 0


# --------------------------------------------------------------------------------------------------
# Runs
# --------------------------------------------------------------------------------------------------


@dataclass
class Plan:
    """What the board does in one run."""

    mode: str  # line | unthrottled
    seconds: float
    damage: int  # every damage-th frame has a flipped bit (0: none)

    @property
    def rate(self) -> int:
        return LINE_BYTES_S if self.mode == "line" else 0

    def is_damaged(self, seq: int) -> bool:
        return self.damage > 0 and seq % self.damage == self.damage - 1


@dataclass
class Result:
    """One run: a plan and a reader (in-process or headless)."""

    mode: str
    reader: str
    sent: int  # frames
    damaged: int  # of them, sent with a flipped bit
    sent_bytes: int
    board_s: float
    received: int = 0  # CRC-valid frames received (in-process) or stored (headless)
    lost: int = 0  # CRC-valid frames sent but not received
    duplicates: int = 0
    accepted_damaged: int = 0  # damaged frames taken for valid ones
    crc_errors: int | None = None  # None: not observable (headless)
    bad: int = 0
    console: int = 0
    bytes_read: int = 0
    span_s: float = 0.0  # the board's first write .. the last frame received or stored
    drain_s: float = 0.0  # the board's end .. the last frame received or stored
    cpu_pct: float = 0.0  # of the reading process, over span_s

    @property
    def frames_s(self) -> float:
        return self.received / self.span_s if self.span_s else 0.0

    @property
    def mb_s(self) -> float:
        return self.bytes_read / self.span_s / 1e6 if self.span_s else 0.0

    @property
    def board_bytes_s(self) -> float:
        return self.sent_bytes / self.board_s if self.board_s else 0.0


def _result(plan: Plan, reader: str, sent: dict[str, float], seqs: list[int]) -> Result:
    """Tally the sequence numbers that came through against what the board sent."""
    frames = int(sent["frames"])
    seen = {s for s in seqs if 0 <= s < frames}
    damaged = {s for s in seen if plan.is_damaged(s)}
    valid = frames - int(sent["damaged"])
    return Result(
        plan.mode,
        reader,
        frames,
        int(sent["damaged"]),
        int(sent["bytes"]),
        sent["end"] - sent["start"],
        received=len(seen) - len(damaged),
        lost=valid - (len(seen) - len(damaged)),
        duplicates=len(seqs) - len(set(seqs)),
        accepted_damaged=len(damaged),
    )


class Pty:
    """A raw pty pair held open by the benchmark; the board writes to ``master``."""

    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)  # no echo, no CR/LF mapping, no line buffer
        self.path = os.ttyname(self.slave)

    def close(self) -> None:
        for fd in (self.master, self.slave):
            with contextlib.suppress(OSError):
                os.close(fd)


def _board_cmd(pty: Pty, plan: Plan) -> list[str]:
    here = str(Path(__file__).resolve())
    args = (pty.master, plan.rate, plan.seconds, plan.damage)
    return [sys.executable, here, "_board", *map(str, args)]


def _seq(value: str | None) -> int | None:
    if value is None or not value.startswith(SEQ):
        return None
    return int(value[len(SEQ) :])


def _cpu(proc: psutil.Process) -> float:
    """CPU seconds of ``proc`` so far, all threads."""
    times = proc.cpu_times()
    return float(times.user + times.system)


async def in_process(plan: Plan) -> Result:
    """The board into a pty, read by ``SerialSource`` + ``CaptureStream`` on this loop."""
    pty = Pty()
    try:
        return await _in_process(pty, plan)
    finally:
        pty.close()


async def _in_process(pty: Pty, plan: Plan) -> Result:
    from engine.serial_source import FOLLOWING, SerialSource

    source = SerialSource(pty.path, BAUD)
    stream = CaptureStream(time.time_ns() // 1000, DEVICE)
    stop = asyncio.Event()
    following = asyncio.Event()
    seqs: list[int] = []
    last = 0.0
    console = 0

    async def read() -> None:
        nonlocal last, console
        async for data, received in source.chunks(stop):
            stream.host_time = received
            if data:
                stream.feed(data)
            else:  # idle or a state change: what the session does too
                stream.finish()
                if source.state == FOLLOWING:
                    following.set()
            events, _bad = stream.take()
            console += len(stream.take_console())
            for ev in events:
                seq = _seq(ev.value)
                if seq is not None:
                    seqs.append(seq)
            if events:
                last = time.monotonic()

    task = asyncio.create_task(read())
    await asyncio.wait_for(following.wait(), 10)
    me = psutil.Process()
    cpu0 = _cpu(me)
    board = await asyncio.create_subprocess_exec(
        *_board_cmd(pty, plan), stdout=asyncio.subprocess.PIPE, pass_fds=(pty.master,)
    )
    out, _ = await board.communicate()
    if board.returncode != 0:
        raise RuntimeError(f"the board exited {board.returncode}")
    sent = orjson.loads(out)
    valid = sent["frames"] - sent["damaged"]
    deadline = time.monotonic() + 10
    while len(seqs) < valid and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    cpu1 = _cpu(me)
    await asyncio.sleep(0.2)  # anything more would be a duplicate
    stop.set()
    await task
    source.stop()
    await asyncio.to_thread(source.join, 5.0)
    r = _result(plan, "in-process", sent, seqs)
    r.crc_errors, r.bad, r.console = stream.splitter.crc_errors, stream.splitter.bad, console
    r.bytes_read = source.bytes_read
    r.span_s = last - sent["start"]
    r.drain_s = max(0.0, last - sent["end"])
    r.cpu_pct = (cpu1 - cpu0) / r.span_s * 100 if r.span_s else 0.0
    return r


def iotwatch_command() -> list[str]:
    """The ``iotwatch`` console script of this interpreter's environment."""
    here = str(Path(sys.executable).parent)
    script = shutil.which("iotwatch", path=here) or shutil.which("iotwatch")
    return [script] if script else [sys.executable, "-m", "tui.cli"]


def _stored(db: Path) -> tuple[int, int, int]:
    """(events, console lines, quarantined) of the serial stream, committed so far."""
    try:
        conn = sqlite3.connect(db.as_uri() + "?mode=ro", uri=True)
        try:
            row = conn.execute(
                "SELECT events, quarantined FROM streams WHERE kind = 'serial'"
            ).fetchone()
            (console,) = conn.execute("SELECT max(id) FROM console").fetchone()
        finally:
            conn.close()
    except sqlite3.Error:
        return 0, 0, 0
    return (row[0], console or 0, row[1]) if row else (0, 0, 0)


def headless(plan: Plan, folder: Path) -> Result:
    """The board into a pty that ``iotwatch run --headless`` reads; count what it stores."""
    pty = Pty()
    proc: subprocess.Popen[bytes] | None = None
    db = folder / f"serial-{plan.mode}.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    config = folder / f"serial-{plan.mode}.toml"
    config.write_text(
        f'[[sources]]\ntype = "serial"\nport = "{pty.path}"\nbaudrate = {BAUD}\n'
        f'device = "{DEVICE}"\n'
    )
    err = folder / f"serial-{plan.mode}.stderr"
    cmd = [*iotwatch_command(), "run", "--headless", "--config", str(config), "--db", str(db)]
    try:
        with err.open("wb") as err_file:
            proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err_file
            )
            return _headless(proc, pty, plan, db)
    finally:
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        pty.close()
        if proc is not None and proc.returncode not in (0, None):
            print(f"iotwatch exited {proc.returncode}: {err.read_text()[-2000:]}", file=sys.stderr)


def _headless(proc: subprocess.Popen[bytes], pty: Pty, plan: Plan, db: Path) -> Result:
    # pyserial empties the input when it opens the port: warm-up frames until one is stored.
    os.set_blocking(pty.master, False)
    deadline = time.monotonic() + 60
    while _stored(db)[0] == 0:
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("iotwatch did not store a warm-up frame")
        with contextlib.suppress(BlockingIOError):
            os.write(pty.master, encode_frame(message(0, WARMUP)))
        time.sleep(0.05)
    time.sleep(0.3)  # warm-up frames still in flight
    base = _stored(db)
    os.set_blocking(pty.master, True)
    ps = psutil.Process(proc.pid)
    cpu0 = _cpu(ps)
    board = subprocess.run(
        _board_cmd(pty, plan), stdout=subprocess.PIPE, pass_fds=(pty.master,), check=True
    )
    sent = orjson.loads(board.stdout)
    valid = sent["frames"] - sent["damaged"]
    last, last_t = base, time.monotonic()
    while last[0] - base[0] < valid and time.monotonic() - last_t < 5:
        time.sleep(0.01)
        now = _stored(db)
        if now != last:
            last, last_t = now, time.monotonic()
    cpu1 = _cpu(ps)
    proc.send_signal(signal.SIGTERM)
    proc.wait(30)
    conn = sqlite3.connect(db.as_uri() + "?mode=ro", uri=True)
    try:
        query = "SELECT value FROM events WHERE value GLOB ?"
        seqs = [_seq(v) for (v,) in conn.execute(query, (SEQ + "*",))]
    finally:
        conn.close()
    r = _result(plan, "headless", sent, [s for s in seqs if s is not None])
    r.bad, r.console = last[2] - base[2], last[1] - base[1]
    r.bytes_read = round(sent["bytes"] * r.received / valid) if valid else 0  # about
    r.span_s = last_t - sent["start"]
    r.drain_s = max(0.0, last_t - sent["end"])
    r.cpu_pct = (cpu1 - cpu0) / r.span_s * 100 if r.span_s else 0.0
    return r


# --------------------------------------------------------------------------------------------------
# Console lines: the built-in patterns on and off
# --------------------------------------------------------------------------------------------------

# What a getting-started board prints in its main loop, one round; 7 of the 12 lines are
# patterned (5 telemetry, a direct method, a twin update), the others are text.
CONSOLE_ROUND = (
    'Telemetry message sent: {"humidity":31.01,"temperature":25.62,"pressure":927.3}.',
    'Telemetry message sent: {"magnetometerX":177,"magnetometerY":-36,"magnetometerZ":-346.5}.',
    'Telemetry message sent: {"accelerometerX":-22.5,"accelerometerY":0.54,"accelerometerZ":1049.01}.',
    'Telemetry message sent: {"gyroscopeX":0,"gyroscopeY":0,"gyroscopeZ":0}.',
    "Receive direct method: setLedState",
    "\tPayload: true",
    "LED is turned ON",
    'Device twin property sent: {"ledState":true}',
    "WARNING: Wi-Fi RSSI low (-84 dBm)",
    'Telemetry message sent: {"temperature":23.40,"humidity":41.07}.',
    "",
    "\tUpdating telemetryInterval to 10",
)
CONSOLE_PATTERNED = sum(BUILTIN.match(line) is not None for line in CONSOLE_ROUND)
CONSOLE_FRAME_EVERY = 100  # lines between frames: the security module's frames delimit the text
CONSOLE_WRITE = 64 * 1024
CONSOLE_TARGET = 50_000  # lines/s with the built-in patterns


def console_board_main(argv: Sequence[str]) -> int:
    """Write console lines to the pty master ``FD`` for SECONDS as fast as they are read, a
    small frame after every hundred; print what was written as JSON."""
    fd, seconds = int(argv[0]), float(argv[1])
    os.set_blocking(fd, True)
    frame = encode_frame({"DeviceId": DEVICE, "Events": [{"Name": "Heartbeat", "Payload": []}]})
    lines = [(line + "\r\n").encode() for line in CONSOLE_ROUND]
    sent = frames = written = 0

    def flush(data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]

    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        buf = bytearray()
        while len(buf) < CONSOLE_WRITE:
            buf += lines[sent % len(lines)]
            sent += 1
            if sent % CONSOLE_FRAME_EVERY == 0:
                buf += frame
                frames += 1
        flush(bytes(buf))
        written += len(buf)
    t1 = time.monotonic()
    flush(frame)  # the last lines are released by a frame, as the next message would
    frames += 1
    report = {
        "lines": sent,
        "frames": frames,
        "bytes": written + len(frame),
        "start": t0,
        "end": t1,
    }
    sys.stdout.write(orjson.dumps(report).decode() + "\n")
    return 0


@dataclass
class ConsoleResult:
    """One console run: patterns on or off, read in-process or by ``iotwatch run --headless``."""

    patterns: bool
    reader: str
    sent: int  # lines
    received: int = 0  # lines received (in-process) or stored (headless)
    events: int = 0  # events made by patterns
    expected_events: int = 0
    bytes_read: int = 0
    span_s: float = 0.0  # the board's first write .. the last line received or stored
    cpu_pct: float = 0.0  # of the reading process, over span_s

    @property
    def lines_s(self) -> float:
        return self.received / self.span_s if self.span_s else 0.0

    @property
    def lost(self) -> int:
        return self.sent - self.received


def _patterned(sent: int) -> int:
    """Patterned lines among the first ``sent`` lines of the board's rounds."""
    rounds, rest = divmod(sent, len(CONSOLE_ROUND))
    return rounds * CONSOLE_PATTERNED + sum(
        BUILTIN.match(line) is not None for line in CONSOLE_ROUND[:rest]
    )


def _console_cmd(pty: Pty, seconds: float) -> list[str]:
    here = str(Path(__file__).resolve())
    return [sys.executable, here, "_console", str(pty.master), str(seconds)]


async def console_in_process(seconds: float, patterns: bool) -> ConsoleResult:
    """The console board into a pty, read by ``SerialSource`` + ``CaptureStream`` (built-in
    patterns, or none) on this loop, fed and flushed as the live session does."""
    from engine.serial_source import FOLLOWING, SerialSource

    pty = Pty()
    try:
        source = SerialSource(pty.path, BAUD)
        stream = CaptureStream(
            time.time_ns() // 1000, DEVICE, patterns=BUILTIN if patterns else None
        )
        stop = asyncio.Event()
        following = asyncio.Event()
        received = events = 0
        last = 0.0

        async def read() -> None:
            nonlocal received, events, last
            async for data, at in source.chunks(stop):
                stream.host_time = at
                if data:
                    stream.feed(data)
                else:
                    stream.finish()
                    if source.state == FOLLOWING:
                        following.set()
                got, _bad = stream.take()
                lines = stream.take_console()
                events += sum(1 for e in got if e.name != "Heartbeat")
                if lines:
                    received += len(lines)
                    last = time.monotonic()

        task = asyncio.create_task(read())
        await asyncio.wait_for(following.wait(), 10)
        me = psutil.Process()
        cpu0 = _cpu(me)
        board = await asyncio.create_subprocess_exec(
            *_console_cmd(pty, seconds), stdout=asyncio.subprocess.PIPE, pass_fds=(pty.master,)
        )
        out, _ = await board.communicate()
        if board.returncode != 0:
            raise RuntimeError(f"the console board exited {board.returncode}")
        sent = orjson.loads(out)
        deadline = time.monotonic() + 10
        while received < sent["lines"] and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        cpu1 = _cpu(me)
        stop.set()
        await task
        source.stop()
        await asyncio.to_thread(source.join, 5.0)
    finally:
        pty.close()
    r = ConsoleResult(patterns, "in-process", sent["lines"], received, events)
    r.expected_events = _patterned(sent["lines"]) if patterns else 0
    r.bytes_read = source.bytes_read
    r.span_s = last - sent["start"]
    r.cpu_pct = (cpu1 - cpu0) / r.span_s * 100 if r.span_s else 0.0
    return r


def _stored_console(db: Path) -> tuple[int, int]:
    """(console lines, events) of the serial stream, committed so far."""
    try:
        conn = sqlite3.connect(db.as_uri() + "?mode=ro", uri=True)
        try:
            (lines,) = conn.execute("SELECT count(*) FROM console").fetchone()
            (events,) = conn.execute(
                "SELECT coalesce(sum(events), 0) FROM streams WHERE kind = 'serial'"
            ).fetchone()
        finally:
            conn.close()
    except sqlite3.Error:
        return 0, 0
    return lines, events


def console_headless(seconds: float, patterns: bool, folder: Path) -> ConsoleResult:
    """The console board into a pty that ``iotwatch run --headless`` reads (the built-in
    patterns, or ``builtin_patterns = false``); count what it stores."""
    pty = Pty()
    tag = "on" if patterns else "off"
    db = folder / f"console-{tag}.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    config = folder / f"console-{tag}.toml"
    config.write_text(
        f'[[sources]]\ntype = "serial"\nport = "{pty.path}"\nbaudrate = {BAUD}\n'
        f'device = "{DEVICE}"\nbuiltin_patterns = {"true" if patterns else "false"}\n'
    )
    cmd = [*iotwatch_command(), "run", "--headless", "--config", str(config), "--db", str(db)]
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    try:
        os.set_blocking(pty.master, False)
        deadline = time.monotonic() + 60
        while _stored_console(db)[1] == 0:  # warm-up frames until one is stored
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("iotwatch did not store a warm-up frame")
            with contextlib.suppress(BlockingIOError):
                os.write(pty.master, encode_frame(message(0, WARMUP)))
            time.sleep(0.05)
        time.sleep(0.3)  # warm-up frames still in flight
        base = _stored_console(db)
        os.set_blocking(pty.master, True)
        ps = psutil.Process(proc.pid)
        cpu0 = _cpu(ps)
        board = subprocess.run(
            _console_cmd(pty, seconds), stdout=subprocess.PIPE, pass_fds=(pty.master,), check=True
        )
        sent = orjson.loads(board.stdout)
        last, last_t = base, time.monotonic()
        while last[0] - base[0] < sent["lines"] and time.monotonic() - last_t < 5:
            time.sleep(0.01)
            now = _stored_console(db)
            if now != last:
                last, last_t = now, time.monotonic()
        cpu1 = _cpu(ps)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        pty.close()
    r = ConsoleResult(patterns, "headless", sent["lines"], last[0] - base[0])
    r.events = last[1] - base[1] - sent["frames"]  # each frame's heartbeat is an event too
    r.expected_events = _patterned(sent["lines"]) if patterns else 0
    r.bytes_read = sent["bytes"]
    r.span_s = last_t - sent["start"]
    r.cpu_pct = (cpu1 - cpu0) / r.span_s * 100 if r.span_s else 0.0
    return r


def console_report(results: dict[tuple[str, bool], list[ConsoleResult]]) -> list[str]:
    """The best run of each (reader, patterns) by lines/s and the on/off ratio; what broke."""
    print()
    print(
        f"console lines: the getting-started mix ({CONSOLE_PATTERNED} of {len(CONSOLE_ROUND)} "
        f"lines patterned), a frame every {CONSOLE_FRAME_EVERY} lines, best of the runs"
    )
    print(
        f"{'reader':<11} {'patterns':<8} {'sent':>10} {'received':>10} {'lost':>5} "
        f"{'events':>9} {'lines/s':>9} {'MB/s':>6} {'cpu %':>5}"
    )
    broken = []
    best: dict[tuple[str, bool], ConsoleResult] = {}
    for (reader, on), rs in results.items():
        b = best[(reader, on)] = max(rs, key=lambda r: r.lines_s)
        mb = b.bytes_read / b.span_s / 1e6 if b.span_s else 0.0
        print(
            f"{reader:<11} {'on' if on else 'off':<8} {b.sent:>10,} {b.received:>10,} "
            f"{b.lost:>5} {b.events:>9,} {b.lines_s:>9,.0f} {mb:>6.2f} {b.cpu_pct:>5.0f}"
        )
        tag = f"console/{reader}/patterns {'on' if on else 'off'}"
        for r in rs:
            if r.lost:
                broken.append(f"{tag}: {r.lost} lines lost")
            if r.events != r.expected_events:
                broken.append(f"{tag}: {r.events} events, {r.expected_events} patterned lines")
    for reader in dict.fromkeys(r for r, _ in best):
        on_, off = best.get((reader, True)), best.get((reader, False))
        if on_ and off and off.lines_s:
            met = "met" if on_.lines_s >= CONSOLE_TARGET else "NOT met"
            print(
                f"{reader}: patterns on/off = {on_.lines_s / off.lines_s:.2f} "
                f"({on_.lines_s:,.0f} vs {off.lines_s:,.0f} lines/s); target "
                f"{CONSOLE_TARGET:,} lines/s with patterns: {met}"
            )
    return broken


# --------------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Run every (mode, reader) pair, best of K, and report."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["_board"]:
        return board_main(args_list[1:])
    if args_list[:1] == ["_console"]:
        return console_board_main(args_list[1:])
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=10.0, help="seconds the board writes (10)")
    p.add_argument("--quick", action="store_true", help="3 s per run")
    p.add_argument("--repeat", type=int, default=1, metavar="K", help="best of K runs (1)")
    p.add_argument("--no-headless", action="store_true", help="skip iotwatch run --headless")
    p.add_argument(
        "--modes",
        default="line,unthrottled,console",
        help="frames at the line rate, unthrottled, and console lines with patterns on and off "
        "(line,unthrottled,console)",
    )
    p.add_argument(
        "--damage",
        type=int,
        default=1000,
        metavar="N",
        help="flip a bit in every N-th frame, as line noise would (1000; 0: none)",
    )
    args = p.parse_args(args_list)
    seconds = 3.0 if args.quick else args.seconds
    modes = [m for m in args.modes.split(",") if m]
    if args.repeat < 1 or seconds <= 0 or args.damage < 0:
        p.error("--repeat and --seconds must be positive, --damage at least 0")
    if not modes or not set(modes) <= {"line", "unthrottled", "console"}:
        p.error("--modes: line, unthrottled and/or console")
    readers = ["in-process"] + ([] if args.no_headless else ["headless"])
    sample = encode_frame(message(123_456))
    print(
        f"serial: {len(sample)}-byte frames (COBS + CRC-32), a console line every "
        f"{CONSOLE_EVERY} frames, "
        + (f"every {args.damage}th frame damaged, " if args.damage else "")
        + f"{seconds:g} s per run, best of {args.repeat}; line rate {BAUD:,} baud = "
        f"{LINE_BYTES_S:,} B/s"
    )
    results: dict[tuple[str, str], list[Result]] = {}
    console: dict[tuple[str, bool], list[ConsoleResult]] = {}
    folder = Path(tempfile.mkdtemp(prefix="iotwatch-serial-"))
    try:
        for k in range(args.repeat):
            for mode in modes:
                if mode == "console":
                    for reader in readers:
                        for on in (True, False):  # the same run: the ratio compares like with like
                            if reader == "in-process":
                                c = asyncio.run(console_in_process(seconds, on))
                            else:
                                c = console_headless(seconds, on, folder)
                            console.setdefault((reader, on), []).append(c)
                            print(
                                f"  run {k + 1}: console    {reader:<10} patterns "
                                f"{'on ' if on else 'off'} {c.received:>9,} lines "
                                f"{c.lines_s:>9,.0f} lines/s, {c.events:,} events, "
                                f"cpu {c.cpu_pct:.0f} %",
                                flush=True,
                            )
                    continue
                plan = Plan(mode, seconds, args.damage)
                for reader in readers:
                    if reader == "in-process":
                        r = asyncio.run(in_process(plan))
                    else:
                        r = headless(plan, folder)
                    results.setdefault((mode, reader), []).append(r)
                    print(f"  run {k + 1}: {_row(r)}", flush=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    broken = console_report(console) if console else []
    return report(results, broken)


def report(results: dict[tuple[str, str], list[Result]], broken: list[str] | None = None) -> int:
    """The best run of each (mode, reader) by frames/s; losses over every run."""
    broken = list(broken or [])
    if not results:
        for text in broken:
            print(f"BROKEN: {text}", file=sys.stderr)
        return 1 if broken else 0
    print()
    print("best of the runs by frames/s (crc err: not observable through the headless engine)")
    print(
        f"{'mode':<12} {'reader':<11} {'sent':>8} {'damaged':>7} {'received':>9} {'lost':>5} "
        f"{'crc err':>7} {'console':>7} {'frames/s':>9} {'MB/s':>7} {'board B/s':>11} "
        f"{'drain s':>7} {'cpu %':>5}"
    )
    for (mode, reader), rs in results.items():
        b = max(rs, key=lambda r: r.frames_s)
        crc = "-" if b.crc_errors is None else f"{b.crc_errors:,}"
        print(
            f"{mode:<12} {reader:<11} {b.sent:>8,} {b.damaged:>7,} {b.received:>9,} {b.lost:>5} "
            f"{crc:>7} {b.console:>7,} {b.frames_s:>9,.0f} {b.mb_s:>7.3f} "
            f"{b.board_bytes_s:>11,.0f} {b.drain_s:>7.2f} {b.cpu_pct:>5.0f}"
        )
        for r in rs:
            wrong = []
            if r.lost:
                wrong.append(f"{r.lost} CRC-valid frames lost")
            if r.duplicates:
                wrong.append(f"{r.duplicates} duplicated")
            if r.accepted_damaged:
                wrong.append(f"{r.accepted_damaged} damaged frames accepted")
            if r.crc_errors is not None and r.crc_errors != r.damaged:
                wrong.append(f"{r.crc_errors} CRC errors counted, {r.damaged} frames damaged")
            if r.bad:
                wrong.append(f"{r.bad} frames quarantined")
            if wrong:
                broken.append(f"{mode}/{reader}: " + ", ".join(wrong))
    line = [r for (m, _), rs in results.items() if m == "line" for r in rs]
    if line:
        worst = min(r.board_bytes_s for r in line)
        print(
            f"\nline rate held: {'yes' if worst >= 0.98 * LINE_BYTES_S else 'NO'} (the board "
            f"wrote {worst:,.0f} B/s at worst of {LINE_BYTES_S:,}; a slow reader holds it back)"
        )
    lost = sum(r.lost for rs in results.values() for r in rs)
    print(
        f"CRC-valid frames lost: {lost} over every run (target 0: {'met' if not lost else 'NOT met'})"
    )
    for text in broken:
        print(f"BROKEN: {text}", file=sys.stderr)
    return 1 if broken else 0


def _row(r: Result) -> str:
    crc = "-" if r.crc_errors is None else str(r.crc_errors)
    return (
        f"{r.mode:<11} {r.reader:<10} sent {r.sent:>7,} received {r.received:>7,} "
        f"lost {r.lost} crc {crc} {r.frames_s:>8,.0f} frames/s {r.mb_s:6.3f} MB/s "
        f"board {r.board_bytes_s:>10,.0f} B/s drain {r.drain_s:.2f} s cpu {r.cpu_pct:.0f} %"
    )


if __name__ == "__main__":
    sys.exit(main())

"""A serial stream from a board: frames become events, other chunks console lines.

Used for raw captures (``serial-capture:PATH``) and, fed as bytes arrive, for live ports.
"""

from __future__ import annotations

import reprlib

from engine.event import MAX_RAW, Bad, ConsoleLine, Event
from engine.formats import rtos_security, security_messages
from engine.formats.common import BadRecord, poison_reason
from engine.formats.serial import Frame, FrameSplitter

FORMAT = "serial"


class CaptureStream:
    """Decodes a board's byte stream. ``host_time`` (µs) stands in for events whose board time is
    missing or implausible; ``device`` names the board when frames carry no ``DeviceId``."""

    def __init__(self, host_time: int, device: str | None = None, offset: int = 0) -> None:
        self.format = FORMAT
        self.host_time = host_time
        self.device = device
        self.records = 0
        self.offset = offset
        self.splitter = FrameSplitter()
        self.events: list[Event] = []
        self.bad: list[Bad] = []
        self.console: list[ConsoleLine] = []

    def feed(self, data: bytes) -> None:
        self._handle(self.splitter.feed(data))
        self.offset += len(data)

    def finish(self) -> None:
        self._handle(self.splitter.flush())

    def take(self) -> tuple[list[Event], list[Bad]]:
        events, bad = self.events, self.bad
        self.events, self.bad = [], []
        return events, bad

    def take_console(self) -> list[ConsoleLine]:
        lines, self.console = self.console, []
        return lines

    def _handle(self, items: list[Frame | ConsoleLine | Bad]) -> None:
        for item in items:
            if isinstance(item, Frame):
                self.records += 1
                self._frame(item)
            elif isinstance(item, ConsoleLine):
                self.console.append(item)
            else:
                self.records += 1
                self.bad.append(item)

    def _frame(self, frame: Frame) -> None:
        message = frame.message
        if isinstance(message, bytes):  # Azure RTOS FlatBuffers: it names no hub device
            if self.device is None:
                self.bad.append(Bad(frame.pos, "missing device", message[:MAX_RAW]))
                return
            events, bad = rtos_security.decode_message(
                message, self.device, frame.pos, self.host_time, verified=True
            )
            self.events += events
            self.bad += bad
            return
        device = message.get("DeviceId")
        if not isinstance(device, str) or not device:
            device = self.device
        if device is None:
            self.bad.append(Bad(frame.pos, "missing device", _raw(frame)))
            return
        bad: list[tuple[int, str]] = []
        events = self.events
        start = len(events)
        try:
            security_messages.decode_message(
                message, device, frame.pos, events, bad, self.host_time
            )
        except BadRecord as exc:
            self.bad.append(Bad(frame.pos, str(exc), _raw(frame)))
        except Exception as exc:  # a poison frame never stops the stream
            del events[start:]
            bad = []
            self.bad.append(Bad(frame.pos, poison_reason(exc), _raw(frame)))
        for _index, reason in bad:
            self.bad.append(Bad(frame.pos, reason, _raw(frame)))


def _raw(frame: Frame) -> bytes:
    """What a quarantine keeps of a frame: its payload (a frame made in code has none: then its
    message packed again, or failing that a bounded text of it)."""
    if frame.payload:
        return frame.payload[:MAX_RAW]
    import msgpack

    try:
        return msgpack.packb(frame.message)[:MAX_RAW]
    except Exception:  # too deep or not packable
        return reprlib.repr(frame.message).encode()[:MAX_RAW]

"""A serial stream from a board: frames become events, other chunks console lines, and console
lines that a pattern matches events too.

Used for raw captures (``serial-capture:PATH``) and, fed as bytes arrive, for live ports.
"""

from __future__ import annotations

import re
import reprlib

from engine.event import MAX_RAW, Bad, ConsoleLine, Event
from engine.formats import rtos_security, security_messages
from engine.formats.common import BadRecord, poison_reason
from engine.formats.console import BUILTIN, Compiled, ConsolePatterns, mark
from engine.formats.serial import Frame, FrameSplitter

FORMAT = "serial"


class CaptureStream:
    """Decodes a board's byte stream. ``host_time`` (µs) stands in for events whose board time is
    missing or implausible, and is every console line's receive time; ``device`` names the board
    when frames carry no ``DeviceId``.

    Console lines go through ``patterns`` (the built-in ones unless told otherwise; None: none).
    A patterned event's device is the one its line names (a ``device`` group), else ``device``,
    else the device id the board printed last (a ``device`` pattern: ``Device id: …``); without
    any the line is counted in ``unattributed`` and left as text. A matched line is a record;
    one whose groups cannot be used (a count that is no number …) is quarantined with the reason
    ``console pattern: …``. Counters: ``patterned`` lines that became events.
    """

    def __init__(
        self,
        host_time: int,
        device: str | None = None,
        offset: int = 0,
        patterns: ConsolePatterns | None = BUILTIN,
    ) -> None:
        self.format = FORMAT
        self.host_time = host_time
        self.device = device
        self.records = 0
        self.offset = offset
        self.splitter = FrameSplitter()
        self.events: list[Event] = []
        self.bad: list[Bad] = []
        self.console: list[ConsoleLine] = []
        self.patterns = patterns if patterns else None
        self.console_device: str | None = None  # the device id the board printed last
        self.patterned = 0
        self.unattributed = 0

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
        patterns = self.patterns
        for item in items:
            if isinstance(item, ConsoleLine):
                item.time = self.host_time
                if patterns is not None:
                    hit = patterns.match(item.text)
                    if hit is not None:
                        self._patterned(item, *hit)
                self.console.append(item)
            elif isinstance(item, Frame):
                self.records += 1
                self._frame(item)
            else:
                self.records += 1
                self.bad.append(item)

    def _patterned(self, line: ConsoleLine, alt: Compiled, m: re.Match[str]) -> None:
        """A console line that a pattern matched: an event, a device id, or a quarantined line."""
        if alt.pattern.op == "device":
            device = m.group(alt.device)
            if device:
                self.console_device = device
                line.event = f"device {device}"
            return
        device = self.device or self.console_device
        if not alt.device and device is None:
            self.unattributed += 1
            return
        self.records += 1
        try:
            event = alt.event(m, line.pos, self.host_time, device)
        except BadRecord as exc:
            reason = f"console pattern: {exc}"
        except Exception as exc:  # a line never stops the stream
            reason = f"console pattern: {poison_reason(exc)}"
        else:
            self.events.append(event)
            self.patterned += 1
            line.event = mark(event)
            return
        self.bad.append(Bad(line.pos, reason, line.text.encode("utf-8", "replace")[:MAX_RAW]))
        line.event = "✖ " + reason

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

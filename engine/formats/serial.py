"""The serial wire format of Azure RTOS boards: COBS frames with a CRC-32, between console text.

A board writes each security message as ``0x00, COBS(payload ‖ CRC-32(payload) LE), 0x00`` where
the payload is a MessagePack map. Every 0x00-delimited chunk that COBS-decodes and passes its CRC
is a frame; every other chunk is console text. The end of the input delimits its last chunk.

``FrameSplitter`` cuts a byte stream that arrives in arbitrary pieces into ``Frame``,
``ConsoleLine`` and ``Bad`` items; its output does not depend on how the stream was cut.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Any

import msgpack
from cobs import cobs

from engine.event import MAX_RAW, Bad, ConsoleLine
from engine.formats import rtos_security

MAX_FRAME = 64 * 1024  # payload + CRC, before COBS
MAX_CHUNK = 2 * MAX_FRAME + (2 * MAX_FRAME) // 254 + 1  # COBS size of a frame of twice MAX_FRAME
MAX_CONSOLE_LINE = 4096  # bytes; a longer console line is cut into pieces of at most this size

_CRC = 4
_MAP_MARKERS = frozenset([*range(0x80, 0x90), 0xDE, 0xDF])  # fixmap, map 16, map 32
# Bytes that never occur in console text a board prints (C0 controls but tab, LF, CR; DEL).
_CONTROL = bytes([*range(0x01, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F])


@dataclass(frozen=True, slots=True)
class Frame:
    """A security message decoded from a frame that starts at byte ``pos`` of the stream: a
    MessagePack map, or the verified bytes of an Azure RTOS FlatBuffers ``Message``. ``payload``
    is a MessagePack frame's payload as it came (what a quarantine keeps of it)."""

    pos: int
    message: dict[Any, Any] | bytes
    payload: bytes = field(default=b"", compare=False, repr=False)


SerialItem = Frame | ConsoleLine | Bad


def encode_payload(payload: bytes) -> bytes:
    """Frame raw payload bytes: ``0x00, COBS(payload ‖ CRC-32 LE), 0x00``."""
    return b"\x00" + cobs.encode(payload + zlib.crc32(payload).to_bytes(_CRC, "little")) + b"\x00"


def encode_frame(message: dict[Any, Any]) -> bytes:
    """Frame a security message as a board writes it to its UART."""
    return encode_payload(msgpack.packb(message, use_bin_type=True))


def split(data: bytes, pos: int = 0) -> list[SerialItem]:
    """Split a whole capture (its end delimits the last chunk)."""
    splitter = FrameSplitter(pos)
    return splitter.feed(data) + splitter.flush()


def _msgpack_reason(e: Exception) -> str:
    """Why a payload did not unpack, without the values or positions some messages quote
    (reasons are counted by their text)."""
    if isinstance(e, UnicodeDecodeError):
        return "invalid UTF-8"
    if isinstance(e, msgpack.StackError | RecursionError):
        return "nested too deeply"
    return str(e) or type(e).__name__


def _looks_binary(chunk: bytes) -> bool:
    if len(chunk.translate(None, _CONTROL)) != len(chunk):
        return True
    try:
        chunk.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


def _cut(line: bytes | bytearray) -> int | None:
    """Where to cut an over-long console line, or None while it may still stay whole.

    A line may hold ``MAX_CONSOLE_LINE`` bytes plus the ``\\r`` of a ``\\r\\n`` ending. The cut
    backs off (at most 3 bytes) so as not to split a UTF-8 sequence.
    """
    n = len(line)
    if n <= MAX_CONSOLE_LINE or (n == MAX_CONSOLE_LINE + 1 and line[-1] == 0x0D):
        return None
    k = MAX_CONSOLE_LINE
    while k > MAX_CONSOLE_LINE - 3 and line[k] & 0xC0 == 0x80:
        k -= 1
    return k


class FrameSplitter:
    """Incremental splitter of a board's byte stream into frames, console lines and bad frames.

    Positions are absolute byte offsets in the stream: a frame's (or bad frame's) is the first
    byte of its chunk (after the leading 0x00), a console line's is its first byte. A console
    line may continue across frames; its text is the UTF-8 (``errors="replace"``) of its bytes
    without the ``\\n`` and a trailing ``\\r``.

    A chunk that passes its CRC but holds more than ``MAX_FRAME`` bytes, or no MessagePack map,
    is a ``Bad`` whose ``raw`` is the chunk as it was on the wire (COBS-encoded, at most
    ``MAX_RAW`` bytes): ``raw`` is the stream's bytes at ``pos``.

    Memory is bounded: a chunk longer than ``MAX_CHUNK`` is console text up to the next 0x00, and
    a console line longer than ``MAX_CONSOLE_LINE`` bytes (plus the ``\r`` of a ``\r\n``) is
    emitted in pieces, cut between UTF-8 characters.

    Counters: ``frames``, ``bad`` and ``console_lines`` count emitted items. ``crc_errors``
    counts chunks that looked like damaged frames: they COBS-decode to at least 5 bytes, fail
    the CRC, and hold a byte that is no console text (a C0 control other than tab, LF and CR,
    DEL, or invalid UTF-8). They are console text all the same, as the wire format says.
    """

    __slots__ = (
        "_buf",
        "_chunk_pos",
        "_console",
        "_line",
        "_line_end",
        "_segs",
        "bad",
        "console_lines",
        "crc_errors",
        "frames",
        "offset",
    )

    def __init__(self, pos: int = 0) -> None:
        self.offset = pos  # stream position of the next byte to be fed
        self.frames = 0
        self.crc_errors = 0
        self.console_lines = 0
        self.bad = 0
        self._buf = bytearray()  # the unfinished chunk
        self._chunk_pos = pos  # stream position of the unfinished chunk
        self._console = False  # the unfinished chunk outgrew MAX_CHUNK: console text to 0x00
        self._line = bytearray()  # the unfinished console line
        self._segs: list[tuple[int, int]] = []  # (index in _line, stream position) of its runs
        self._line_end = -1  # stream position just after the last byte of _line

    @property
    def pending_pos(self) -> int:
        """Stream position of the unfinished chunk: every byte before it has been classified.

        Bytes of an unfinished console line before it are not yet emitted.
        """
        return self._chunk_pos

    def feed(self, data: bytes) -> list[SerialItem]:
        """Take the next bytes of the stream; return the items they complete."""
        out: list[SerialItem] = []
        if not data:
            return out
        pos = self.offset
        self.offset += len(data)
        parts = bytes(data).split(b"\x00")
        last = len(parts) - 1
        for i, part in enumerate(parts):
            if i < last:
                self._end_chunk(part, pos, out)
                pos += len(part) + 1
                self._chunk_pos = pos
            else:
                self._extend(part, pos, out)
        return out

    def flush(self) -> list[SerialItem]:
        """End of input: finish the unfinished chunk and console line.

        The splitter stays usable; what follows is a new stream section at ``offset``.
        """
        out: list[SerialItem] = []
        self._end_chunk(b"", self.offset, out)
        self._chunk_pos = self.offset
        if self._line:
            self._emit_line(out)
        return out

    def _extend(self, part: bytes, pos: int, out: list[SerialItem]) -> None:
        if not part:
            return
        if self._console:
            self._text(part, pos, out)
            return
        self._buf += part
        if len(self._buf) > MAX_CHUNK:
            text = bytes(self._buf)
            self._buf.clear()
            self._console = True
            self._text(text, self._chunk_pos, out)

    def _end_chunk(self, part: bytes, pos: int, out: list[SerialItem]) -> None:
        if self._console:
            self._console = False
            self._text(part, pos, out)
            return
        if self._buf:
            self._buf += part
            chunk = bytes(self._buf)
            self._buf.clear()
        else:
            chunk = part
        if not chunk:
            return
        if len(chunk) > MAX_CHUNK:
            self._text(chunk, self._chunk_pos, out)
        else:
            self._chunk(chunk, self._chunk_pos, out)

    def _chunk(self, chunk: bytes, pos: int, out: list[SerialItem]) -> None:
        try:
            decoded = cobs.decode(chunk)
        except cobs.DecodeError:
            self._text(chunk, pos, out)
            return
        if len(decoded) > _CRC:
            body = decoded[:-_CRC]
            if zlib.crc32(body) == int.from_bytes(decoded[-_CRC:], "little"):
                out.append(self._frame(chunk, body, len(decoded), pos))
                return
            if _looks_binary(chunk):
                self.crc_errors += 1
        self._text(chunk, pos, out)

    def _frame(self, chunk: bytes, body: bytes, size: int, pos: int) -> Frame | Bad:
        if size > MAX_FRAME:
            return self._bad(pos, "frame over 64 KiB", chunk)
        flat = ""
        if body[0] not in _MAP_MARKERS:  # not MessagePack: an Azure RTOS FlatBuffers message?
            reason = rtos_security.verify(body)
            if reason is None:
                self.frames += 1
                return Frame(pos, body)
            flat = f"; {reason}"
        try:
            message = msgpack.unpackb(body, raw=False, strict_map_key=False)
        except Exception as e:  # msgpack raises several unrelated types on malformed input
            return self._bad(pos, f"msgpack: {_msgpack_reason(e)}{flat}", chunk)
        if not isinstance(message, dict):
            return self._bad(pos, f"msgpack: not a map ({type(message).__name__}){flat}", chunk)
        self.frames += 1
        return Frame(pos, message, body)

    def _bad(self, pos: int, reason: str, chunk: bytes) -> Bad:
        self.bad += 1
        return Bad(pos, reason, chunk[:MAX_RAW])

    def _text(self, data: bytes, pos: int, out: list[SerialItem]) -> None:
        """Console bytes ``data`` found at stream position ``pos``."""
        start = 0
        n = len(data)
        while start < n:
            nl = data.find(b"\n", start)
            if nl < 0:
                self._append(data[start:], pos + start)
                self._cut_line(out)
                return
            if not self._line and nl - start <= MAX_CONSOLE_LINE:
                # The common case, kept free of the bookkeeping of a line in pieces.
                line = data[start:nl]
                if line.endswith(b"\r"):
                    line = line[:-1]
                self.console_lines += 1
                out.append(ConsoleLine(pos + start, line.decode("utf-8", "replace")))
            else:
                self._append(data[start:nl], pos + start)
                self._cut_line(out)
                self._emit_line(out)
            start = nl + 1

    def _append(self, data: bytes, pos: int) -> None:
        if not data:
            return
        if not self._line:
            self._segs = [(0, pos)]
        elif pos != self._line_end:
            self._segs.append((len(self._line), pos))
        self._line += data
        self._line_end = pos + len(data)

    def _cut_line(self, out: list[SerialItem]) -> None:
        while (k := _cut(self._line)) is not None:
            self._emit(self._line[:k], self._segs[0][1], out)
            del self._line[:k]
            segs = [(i - k, p) for i, p in self._segs if i > k]
            if not segs or segs[0][0] != 0:
                i, p = next((i, p) for i, p in reversed(self._segs) if i <= k)
                segs.insert(0, (0, p + k - i))
            self._segs = segs

    def _emit_line(self, out: list[SerialItem]) -> None:
        line = self._line[:-1] if self._line.endswith(b"\r") else self._line
        self._emit(line, self._segs[0][1], out)
        self._line = bytearray()
        self._segs = []

    def _emit(self, line: bytes | bytearray, pos: int, out: list[SerialItem]) -> None:
        self.console_lines += 1
        out.append(ConsoleLine(pos, line.decode("utf-8", "replace")))

"""Avro object container files of routed hub messages, read incrementally.

IoT Hub message routing (to a storage account) and Event Hubs Capture write Avro object
container files: a header (magic ``Obj\\x01``, metadata with the schema and codec, a 16-byte
sync marker), then blocks, each ``record count, byte size, records, sync marker``. fastavro
decodes the header, the codecs and the records; this module only finds where each block ends,
which fastavro's readers (made for whole files) cannot say of a file that is still growing or was
cut short. So a block is decoded once it is complete, a partial block waits for the rest of the
file, and a damaged block is quarantined alone: the next sync marker says where reading resumes.

``HubMessagesFile`` is the decoder of a ``hub-messages`` file: an Avro container or the JSON
encoding of routing (one object per line), told apart by the first bytes.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from fastavro import block_reader, reader
from fastavro.read import BLOCK_READERS

from engine.event import MAX_RAW, Bad, Event, HubRecord
from engine.formats import hub_messages
from engine.formats.common import BadRecord, poison_reason
from engine.jsonstream import JsonStream

MAGIC = b"Obj\x01"
SYNC = 16  # bytes of a sync marker
MAX_HEADER = 1 << 20  # a longer header (schema, metadata) is not a routed-messages file
MAX_BLOCK = 64 << 20  # a block claiming more is damaged: IoT Hub messages are at most 256 KB


class _Damaged(Exception):
    """The bytes are not what an Avro container holds there; the message is the reason."""


def _long(buf: bytes | bytearray, p: int) -> tuple[int, int] | None:
    """The zig-zag varint ``long`` at ``p`` and the position after it; None if ``buf`` ends
    first."""
    shift = n = 0
    end = len(buf)
    while True:
        if p >= end:
            return None
        b = buf[p]
        p += 1
        n |= (b & 0x7F) << shift
        if not b & 0x80:
            return (n >> 1) ^ -(n & 1), p
        shift += 7
        if shift > 63:
            raise _Damaged("Avro: malformed length")


def header_end(buf: bytes | bytearray) -> int | None:
    """Where the container header at the start of ``buf`` ends (after its sync marker); None
    while ``buf`` holds only part of it. Raises _Damaged for anything but a header."""
    if len(buf) < len(MAGIC):
        return None
    if buf[: len(MAGIC)] != MAGIC:
        raise _Damaged("Avro: not an object container file")
    p = len(MAGIC)
    while True:  # the metadata map: blocks of (key, value) pairs, ending with a count of 0
        got = _long(buf, p)
        if got is None:
            return None
        count, p = got
        if count == 0:
            break
        if count < 0:  # a negative count is followed by the block's byte size
            got = _long(buf, p)
            if got is None:
                return None
            p, count = got[1], -count
        for _ in range(2 * count):  # each entry is a string key and a bytes value
            got = _long(buf, p)
            if got is None:
                return None
            size, p = got
            if size < 0:
                raise _Damaged("Avro: malformed header")
            p += size
            if p > MAX_HEADER:
                raise _Damaged("Avro: header over 1 MiB")
            if p > len(buf):
                return None
    return p + SYNC if len(buf) >= p + SYNC else None


class AvroStream:
    """Decodes an Avro container file of routed messages, fed in pieces.

    ``offset`` is the file position of the first byte not consumed: the start of the block
    being waited for, which is where a restart resumes (with ``header``, the file's header,
    read again from the file: blocks cannot be read without it).
    """

    format = hub_messages.NAME

    def __init__(self, offset: int = 0, header: bytes | None = None) -> None:
        self.offset = offset
        self.records = 0
        self.events: list[Event] = []
        self.bad: list[Bad] = []
        self._buf = bytearray()
        self._header: bytes | None = None
        self._sync = b""
        self._dead = False  # the header is unusable: nothing after it can be read
        self._damage: tuple[int, bytearray] | None = None  # (start, first bytes) of a damaged run
        # Resuming, an unusable header was quarantined when the file was first read: only skip.
        self._quiet = offset > 0
        if header is not None:
            self._set_header(header, offset)
        elif offset:
            self._fail(offset, "Avro: header unreadable", b"")
        self._quiet = False

    # -- the decoder interface ------------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        """Consume ``data``; complete blocks are decoded, a partial block is kept."""
        if self._dead:
            self.offset += len(data)
            return
        self._buf += data
        self._parse(final=False)

    def finish(self) -> None:
        """End of the file: what is held (a cut-off header or block) is quarantined."""
        if not self._dead:
            self._parse(final=True)
        self._flush_damage()

    def settle(self, give_up: bool = False) -> None:
        """An idle file keeps its partial block: the writer may still complete it (Avro files
        are written whole; a partial one is being copied)."""

    @property
    def holding(self) -> bool:
        return bool(self._buf)

    @property
    def pending(self) -> int:
        return len(self._buf)

    @property
    def resume_offset(self) -> int:
        return self._damage[0] if self._damage is not None else self.offset

    def take(self) -> tuple[list[Event], list[Bad]]:
        events, bad = self.events, self.bad
        self.events, self.bad = [], []
        return events, bad

    def take_hub(self) -> list[HubRecord]:
        return []

    # -- framing --------------------------------------------------------------------------------

    def _set_header(self, header: bytes, at: int) -> None:
        try:
            codec = reader(io.BytesIO(header)).codec
            if codec not in BLOCK_READERS:
                raise _Damaged(f"Avro: unknown codec {codec[:40]!r}")
        except _Damaged as exc:
            self._fail(at, str(exc), header)
        except Exception as exc:  # a schema fastavro cannot read, a malformed header
            self._fail(at, f"Avro: bad header ({type(exc).__name__})", header)
        else:
            self._header = header
            self._sync = header[-SYNC:]

    def _fail(self, at: int, reason: str, raw: bytes) -> None:
        """The header is unusable: one quarantined record, and the rest of the file is skipped."""
        if not self._quiet:
            self.records += 1
            self.bad.append(Bad(at, reason, bytes(raw[:MAX_RAW])))
        self._dead = True
        self.offset += len(self._buf)
        self._buf = bytearray()

    def _parse(self, final: bool) -> None:
        buf = self._buf
        if self._header is None:
            try:
                end = header_end(buf)
            except _Damaged as exc:
                self._fail(self.offset, str(exc), buf)
                return
            if end is None:
                if final and buf:
                    self._fail(self.offset, "Avro: truncated header", buf)
                return
            header = bytes(buf[:end])
            del buf[:end]
            self.offset += end
            self._set_header(header, self.offset - end)
            if self._dead:
                return
        sync = self._sync
        p = 0
        spans: list[tuple[int, int]] = []
        n = len(buf)
        while p < n:
            if self._damage is not None:  # looking for the sync marker that ends the damage
                q = buf.find(sync, p)
                if q < 0:
                    keep = p if final else max(p, n - SYNC + 1)
                    self._damaged(buf, p, n if final else keep)
                    p = n if final else keep
                    break
                self._damaged(buf, p, q + SYNC)
                p = q + SYNC
                self._flush_damage()
                continue
            try:
                end = self._block_end(buf, p)
            except _Damaged:
                self._decode(spans)
                spans = []
                self._damage = (self.offset + p, bytearray())
                continue
            if end is None:  # partial: wait for the rest (at the end of the file: damaged)
                if final:
                    self._decode(spans)
                    spans = []
                    self._damage = (self.offset + p, bytearray())
                    if buf.find(sync, p + 1) < 0:
                        self._damaged(buf, p, n)
                        p = n
                        self._flush_damage("Avro: truncated block")
                    continue
                break
            spans.append((p, end))
            p = end
        self._decode(spans)
        del buf[:p]
        self.offset += p

    def _block_end(self, buf: bytearray, p: int) -> int | None:
        """Where the block at ``p`` ends, after its sync marker; None if it is not all there yet.
        Raises _Damaged when it cannot be a block."""
        got = _long(buf, p)
        if got is None:
            return None
        count, q = got
        got = _long(buf, q)
        if got is None:
            return None
        size, q = got
        if count < 0 or size < 0 or size > MAX_BLOCK:
            raise _Damaged("Avro: malformed block")
        end = q + size + SYNC
        if end > len(buf):
            return None
        if buf[end - SYNC : end] != self._sync:
            raise _Damaged("Avro: sync marker not found")
        return end

    def _damaged(self, buf: bytearray, start: int, stop: int) -> None:
        """Bytes ``start:stop`` belong to the damaged run being skipped; its first bytes are kept."""
        assert self._damage is not None
        raw = self._damage[1]
        if len(raw) < MAX_RAW:
            raw += buf[start : min(stop, start + MAX_RAW - len(raw))]

    def _flush_damage(self, reason: str = "Avro: damaged block") -> None:
        if self._damage is not None:
            at, raw = self._damage
            self._damage = None
            self.records += 1
            self.bad.append(Bad(at, reason, bytes(raw)))

    # -- records --------------------------------------------------------------------------------

    def _decode(self, spans: list[tuple[int, int]]) -> None:
        """Decode the complete blocks ``spans`` (positions in the buffer) with fastavro."""
        header = self._header
        assert header is not None
        buf = self._buf
        i = 0
        while i < len(spans):
            data = header + bytes(buf[spans[i][0] : spans[-1][1]])
            done = 0  # records of block i decoded so far
            try:
                blocks = block_reader(io.BytesIO(data), handle_unicode_errors="replace")
                for block in blocks:
                    pos = self.offset + spans[i][0]
                    for record in block:
                        self._record(record, pos, done)
                        done += 1
                    i += 1
                    done = 0
            except Exception as exc:  # the rest of block i does not decode: it alone is lost
                start, stop = spans[i]
                self.records += 1
                self.bad.append(
                    Bad(
                        self.offset + start,
                        f"Avro: undecodable block ({type(exc).__name__})",
                        bytes(buf[start : min(stop, start + MAX_RAW)]),
                        done,
                    )
                )
                i += 1

    def _record(self, record: Any, pos: int, index: int) -> None:
        self.records += 1
        events = self.events
        start = len(events)
        bad: list[tuple[int | None, str]] = []
        try:
            hub_messages.decode(record, pos, events, bad)
        except BadRecord as exc:
            bad = [(None, str(exc))]
        except Exception as exc:  # a poison record never stops the stream
            del events[start:]
            bad = [(None, poison_reason(exc))]
        if bad:
            raw = hub_messages.record_json(record)[:MAX_RAW]
            self.bad += [Bad(pos, reason, raw, index) for _, reason in bad]


class HubMessagesFile:
    """The decoder of a ``hub-messages`` file: an Avro container (it starts with ``Obj\\x01``)
    or routing's JSON encoding, decided by its first bytes. Resuming a file at ``offset`` > 0
    reads its start again from ``path``."""

    format = hub_messages.NAME

    def __init__(self, offset: int = 0, path: str | Path | None = None) -> None:
        self._start = offset
        self._head = b""
        self._inner: AvroStream | JsonStream | None = None
        if offset and path is not None:
            self._inner = _resume(path, offset)

    def _decoder(self, data: bytes, final: bool) -> AvroStream | JsonStream | None:
        if self._inner is None:
            head = self._head + data
            if len(head) < len(MAGIC) and MAGIC.startswith(head) and not final:
                self._head = head  # too short to tell yet
                return None
            avro = head.startswith(MAGIC)
            self._inner = AvroStream(self._start) if avro else JsonStream(self.format, self._start)
            self._head = b""
            if head != data:  # replay what waited, then the new bytes
                self._inner.feed(head[: len(head) - len(data)])
        return self._inner

    def feed(self, data: bytes) -> None:
        inner = self._decoder(data, final=False)
        if inner is not None:
            inner.feed(data)

    def finish(self) -> None:
        inner = self._decoder(b"", final=True) if self._head else self._inner
        if inner is not None:
            inner.finish()

    def settle(self, give_up: bool = False) -> None:
        if self._inner is not None:
            self._inner.settle(give_up)

    @property
    def holding(self) -> bool:
        return bool(self._head) or (self._inner is not None and self._inner.holding)

    @property
    def pending(self) -> int:
        return len(self._head) + (self._inner.pending if self._inner is not None else 0)

    @property
    def resume_offset(self) -> int:
        return self._inner.resume_offset if self._inner is not None else self._start

    @property
    def offset(self) -> int:
        return self._inner.offset if self._inner is not None else self._start

    @property
    def records(self) -> int:
        return self._inner.records if self._inner is not None else 0

    def take(self) -> tuple[list[Event], list[Bad]]:
        return self._inner.take() if self._inner is not None else ([], [])

    def take_hub(self) -> list[HubRecord]:
        return []


def _resume(path: str | Path, offset: int) -> AvroStream | JsonStream:
    """The decoder that goes on at ``offset`` in ``path``: Avro needs the file's header."""
    try:
        with open(path, "rb") as f:
            head = f.read(MAX_HEADER + SYNC)
    except OSError:
        head = b""
    if not head.startswith(MAGIC):
        return JsonStream(hub_messages.NAME, offset)
    try:
        end = header_end(head)
    except _Damaged:
        end = None
    return AvroStream(offset, head[:end] if end is not None else None)


def file_decoder(fmt: str, offset: int = 0, path: str | Path | None = None) -> Any:
    """The decoder of a followed file of format ``fmt`` from ``offset``."""
    if fmt == hub_messages.NAME:
        return HubMessagesFile(offset, path)
    return JsonStream(fmt, offset)

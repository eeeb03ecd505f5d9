"""A JSON-lines stream: framing, format sniffing and decoding into events, incrementally.

Bytes arrive in arbitrary pieces; a partial last line waits for its newline (or, in a live
session, for :meth:`JsonStream.settle`). A record is a line, or a pretty-printed document that
opens with ``{``/``[`` at column 0 and closes at column 0 (as ``az iot hub monitor-events`` prints
them).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import orjson

from engine.event import MAX_LINE, MAX_RAW, Bad, Event, HubRecord
from engine.formats import hub_events, hub_log, hub_messages, security_messages
from engine.formats.common import BadRecord, poison_reason

FORMATS = (hub_log.NAME, hub_events.NAME, hub_messages.NAME, security_messages.NAME)
_SNIFF_ORDER = (hub_log, hub_events, hub_messages, security_messages)

# The status lines ``az iot hub monitor-events`` prints on stdout beside its JSON, as the Azure
# IoT CLI extension writes them (azext_iot/monitor/utility.py ``generate_on_start_string``,
# telemetry.py, handlers/common_handler.py; "Digital Twin" in releases before 0.9). They are
# skipped: not records, not quarantined.
_STATUS_LINE = re.compile(
    rb"Starting (?:Digital Twin )?event monitor,(?: filtering on device: .*,)?"
    rb" use ctrl-c to stop\.\.\."
    rb"|Stopping event monitor\.\.\."
    rb"|Successfully parsed [0-9]+ message\(s\)\."
)
_SNIFF_LINES = 32  # how many non-blank first lines decide whether a file is console text


def is_status_line(line: bytes) -> bool:
    """Whether ``line`` is one of ``az iot hub monitor-events``'s status lines."""
    return _STATUS_LINE.fullmatch(line.strip()) is not None


def is_console_text(head: bytes) -> bool:
    """Whether a file that starts with ``head`` (no NUL byte in it) is a board's console text
    rather than JSON: none of its first non-blank lines opens a JSON value (``{``, ``[``) or is
    an ``az iot hub monitor-events`` status line. An empty file is not console text."""
    lines = [ln.strip() for ln in head.split(b"\n")[: _SNIFF_LINES * 4]]
    lines = [ln for ln in lines if ln][:_SNIFF_LINES]
    if not lines:
        return False
    return not any(ln[:1] in (b"{", b"[") or is_status_line(ln) for ln in lines)


# Per format, the fast path for one plain line (see ``JsonStream.__init__``): it appends the
# events of the records it takes and returns how many records that was (0: none, the line is
# left to the decoder).
_FAST: dict[str, Callable[[bytes, int, list[Event]], int]] = {
    hub_events.NAME: hub_events.decode_line,
    hub_log.NAME: hub_log.decode_line,
}


def sniff(obj: Any) -> str | None:
    """The format a parsed record belongs to, or None."""
    for module in _SNIFF_ORDER:
        if module.sniff(obj):
            return module.NAME
    return None


class JsonStream:
    """Decodes one JSON-lines stream. Results accumulate in ``events`` and ``bad``.

    ``offset`` is the absolute position of the first byte not yet consumed (the kept partial line
    starts there).
    """

    def __init__(self, fmt: str | None = None, offset: int = 0, *, fast: bool = True) -> None:
        """``fast``: plain lines go through their format's fast path first (``decode_line``),
        which takes the common, valid records and leaves everything else to the decoder;
        False decodes every line with the decoder alone (the reference the fast paths are
        tested against)."""
        if fmt is not None and fmt not in FORMATS:
            raise ValueError(f"unknown format {fmt!r}")
        self.fast = fast
        self.format = fmt
        self.offset = offset
        self.records = 0
        self.events: list[Event] = []
        self.bad: list[Bad] = []
        self.hub: list[HubRecord] = []
        self._buf = b""
        self._skipping = False  # inside an over-long line, dropping bytes until its newline
        self._doc: list[bytes] = []  # lines of a multi-line document being collected
        self._doc_pos = 0
        self._doc_len = 0

    def feed(self, data: bytes) -> None:
        """Consume ``data``; complete lines are decoded, a partial last line is kept."""
        buf = self._buf + data if self._buf else data
        lines = buf.split(b"\n")
        rest = lines.pop()
        pos = self.offset
        loads = orjson.loads
        line_slow = self._line
        record = self._record
        events = self.events
        # hub-events lines, the most numerous, go straight to their decoder.
        direct = hub_events.decode if self.format == hub_events.NAME else None
        fast = _FAST.get(self.format) if self.fast else None  # type: ignore[arg-type]
        records = 0
        # The first line is the rest of an over-long one: dropped.
        skipping = self._skipping and bool(lines)
        if skipping:
            self._skipping = False
        # Only the careful path can open a document or learn the format: plain is refreshed
        # after it, not read from self for every line.
        plain = not self._doc and self.format is not None
        for line in lines:
            size = len(line) + 1
            if skipping:
                skipping = False
            elif not plain or size > MAX_LINE or size == 1 or line[0] != 0x7B:
                # anything but a plain "{...}" line of a known format takes the careful path
                line_slow(line, pos)
                plain = not self._doc and self.format is not None
                if direct is None and self.format == hub_events.NAME:
                    direct = hub_events.decode
                if fast is None and self.fast:
                    fast = _FAST.get(self.format)  # type: ignore[arg-type]
            elif fast is not None and (taken := fast(line, pos, events)):
                records += taken
            else:
                try:
                    obj = loads(line)
                except orjson.JSONDecodeError:
                    line_slow(line, pos)  # it may open a document
                    plain = not self._doc and self.format is not None
                else:
                    if direct is not None:
                        records += 1
                        try:
                            direct(obj, pos, events)
                        except BadRecord as exc:
                            self.bad.append(Bad(pos, str(exc), line[:MAX_RAW]))
                        except Exception as exc:  # a poison record never stops the stream
                            self.bad.append(Bad(pos, poison_reason(exc), line[:MAX_RAW]))
                    else:
                        record(obj, pos, line)
            pos += size
        self.records += records
        if self._skipping:
            pos += len(rest)
            rest = b""
        elif len(rest) > MAX_LINE:
            self.records += 1
            self.bad.append(Bad(pos, "line over 1 MiB", rest[:MAX_RAW]))
            self._skipping = True
            pos += len(rest)
            rest = b""
        self.offset = pos
        self._buf = rest

    @property
    def resume_offset(self) -> int:
        """Where a restart must begin so that nothing is lost: before any record not yet whole."""
        return self._doc_pos if self._doc else self.offset

    def finish(self) -> None:
        """End of input: a last line without newline is a record too; a pending document is bad."""
        if self._buf:
            buf, self._buf = self._buf, b""
            self._line(buf, self.offset)
            self.offset += len(buf)
        self._skipping = False
        self._flush_doc("unterminated JSON document")

    def settle(self, give_up: bool = False) -> None:
        """The stream has been idle: decode what it holds back that cannot change any more.

        A partial last line (no newline yet) that is a whole JSON value by itself, or that closes
        the open pretty-printed document, is decoded now — a writer may end its last record
        without a newline, and a valid record cannot grow into another one. With ``give_up``,
        anything held is decoded: a partial line (quarantined if it is no record) and an open
        document (quarantined as unterminated). ``offset`` moves past what was decoded; bytes
        that continue the line later are read as a line of their own.
        """
        buf = self._buf
        if not give_up:
            if not buf or self._skipping:
                return
            line = buf[:-1] if buf.endswith(b"\r") else buf
            if self._doc and line[:1] in (b"}", b"]"):
                line = b"\n".join([*self._doc, line])
            elif line.lstrip()[:1] not in (b"{", b"["):
                return
            try:
                orjson.loads(line)
            except orjson.JSONDecodeError:
                return
        if buf:
            self._buf = b""
            self._line(buf, self.offset)
            self.offset += len(buf)
        if give_up:
            self._flush_doc("unterminated JSON document")

    @property
    def holding(self) -> bool:
        """Whether bytes are held back: a partial line or an open document."""
        return bool(self._buf or self._doc)

    @property
    def pending(self) -> int:
        """Bytes held back in a partial line."""
        return len(self._buf)

    def take(self) -> tuple[list[Event], list[Bad]]:
        """Hand over the decoded events and bad records and start new lists."""
        events, bad = self.events, self.bad
        self.events, self.bad = [], []
        return events, bad

    def take_hub(self) -> list[HubRecord]:
        """Hand over the hub-wide records decoded so far (hub-log)."""
        hub, self.hub = self.hub, []
        return hub

    # -- records ------------------------------------------------------------------------------

    def _line(self, line: bytes, pos: int) -> None:
        if self._doc:
            self._doc_line(line, pos)
            return
        if line.endswith(b"\r"):
            line = line[:-1]
        if not line.strip():
            return
        if len(line) > MAX_LINE:
            self.records += 1
            self.bad.append(Bad(pos, "line over 1 MiB", line[:MAX_RAW]))
            return
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            if line[:1] in (b"{", b"[") and str(exc).startswith("unexpected end of data"):
                self._doc = [line]
                self._doc_pos = pos
                self._doc_len = len(line)
                return
            if is_status_line(line):
                return  # printed by az iot hub monitor-events beside the JSON: no record
            self.records += 1
            self.bad.append(Bad(pos, _json_reason(exc), line[:MAX_RAW]))
            return
        self._record(obj, pos, line)

    def _doc_line(self, line: bytes, pos: int) -> None:
        if line[:1] in (b"{", b"["):
            # A new document at column 0: the one being collected was truncated.
            self._flush_doc("truncated JSON document")
            self._line(line, pos)
            return
        self._doc.append(line)
        self._doc_len += len(line) + 1
        if self._doc_len > MAX_LINE:
            self._flush_doc("document over 1 MiB")
            return
        if line[:1] in (b"}", b"]"):
            text = b"\n".join(self._doc)
            try:
                obj = orjson.loads(text)
            except orjson.JSONDecodeError:
                return
            self._doc = []
            self._record(obj, self._doc_pos, text)

    def _flush_doc(self, reason: str) -> None:
        if self._doc:
            text = b"\n".join(self._doc)
            self.records += 1
            self.bad.append(Bad(self._doc_pos, reason, text[:MAX_RAW]))
            self._doc = []

    def _record(self, obj: Any, pos: int, raw: bytes) -> None:
        fmt = self.format
        if fmt is None:
            fmt = sniff(obj)
            if fmt is None:
                self.records += 1
                self.bad.append(Bad(pos, "unknown format", raw[:MAX_RAW]))
                return
            self.format = fmt
        events = self.events
        if fmt == hub_events.NAME:
            self.records += 1
            try:
                hub_events.decode(obj, pos, events)
            except BadRecord as exc:
                self.bad.append(Bad(pos, str(exc), raw[:MAX_RAW]))
            except Exception as exc:  # a poison record never stops the stream
                self.bad.append(Bad(pos, poison_reason(exc), raw[:MAX_RAW]))
        elif fmt == hub_log.NAME:
            hub = self.hub
            for index, record in enumerate(hub_log.records_of(obj)):
                self.records += 1
                whole = record is obj
                stored = len(hub)
                try:
                    hub_log.decode(record, pos, events, hub, raw if whole else b"")
                except Exception as exc:  # BadRecord, or a poison record
                    why = str(exc) if isinstance(exc, BadRecord) else poison_reason(exc)
                    # The element's index goes in ``part``, never in the reason: reasons group
                    # by cause, and the raw line holds the whole batch.
                    self.bad.append(Bad(pos, why, raw[:MAX_RAW], None if whole else index))
                else:
                    if not whole and len(hub) > stored:  # a hub record keeps its own element
                        hub[-1] = hub[-1]._replace(raw=_element_raw(record))
        else:
            self.records += 1
            bad: list[tuple[int | None, str]] = []
            start = len(events)
            decode = hub_messages.decode if fmt == hub_messages.NAME else security_messages.decode
            try:
                decode(obj, pos, events, bad)  # type: ignore[arg-type]
            except BadRecord as exc:
                self.bad.append(Bad(pos, str(exc), raw[:MAX_RAW]))
            except Exception as exc:  # a poison record never stops the stream
                del events[start:]
                bad = []
                self.bad.append(Bad(pos, poison_reason(exc), raw[:MAX_RAW]))
            for index, reason in bad:
                self.bad.append(Bad(pos, reason, raw[:MAX_RAW], index))


def _element_raw(record: Any) -> bytes:
    """The bytes a hub record keeps of one element of a ``records`` batch."""
    try:
        return orjson.dumps(record)[:MAX_RAW]
    except (TypeError, orjson.JSONEncodeError):  # nested too deeply to write again
        return b""


def _json_reason(exc: orjson.JSONDecodeError) -> str:
    text = str(exc)
    if "UTF-8" in text:
        return "invalid UTF-8"
    return "bad JSON: " + text.split(":", 1)[0]

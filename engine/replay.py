"""Replay: evaluate finished inputs (files and serial captures) and optionally store everything.

Inputs are read interleaved, always advancing the stream that is furthest behind in event time,
so the watermark moves and finished windows leave memory early. The result does not depend on
that order (see ``engine.evaluator``).
"""

from __future__ import annotations

import heapq
import os
import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from engine.alert import Alert
from engine.avrostream import MAGIC, HubMessagesFile
from engine.bulkwriter import BulkWriter
from engine.capture import CaptureStream
from engine.collector import few_collections
from engine.config import Config
from engine.config_log import text_of
from engine.evaluator import Evaluator
from engine.event import Bad, ConsoleLine, Event, HubRecord
from engine.formats import hub_messages
from engine.jsonstream import FORMATS, JsonStream, is_console_text
from engine.store import Batch, Store, StoreFault, start_fault
from engine.watermark import StreamClock

CAPTURE = "serial-capture"
CHUNK = 256 * 1024
SNIFF_BYTES = 64 * 1024
BATCH_ROWS = 20_000


class InputError(Exception):
    """An input cannot be opened; the message names it."""


@dataclass(frozen=True, slots=True)
class InputSpec:
    """One replay input: a path and its forced format (None: sniffed)."""

    path: str
    format: str | None

    @classmethod
    def parse(cls, text: str) -> InputSpec:
        """``PATH`` or ``FORMAT:PATH`` (FORMAT: hub-log, hub-events, hub-messages,
        security-messages, serial-capture)."""
        head, sep, rest = text.partition(":")
        if sep and (head in FORMATS or head == CAPTURE):
            return cls(rest, head)
        return cls(text, None)


class Decoder(Protocol):
    format: str | None
    records: int
    offset: int

    def feed(self, data: bytes) -> None: ...
    def finish(self) -> None: ...
    def take(self) -> tuple[list[Event], list[Bad]]: ...


@dataclass
class Summary:
    """What a replay read and raised."""

    records: int = 0
    events: int = 0
    expired: int = 0
    quarantined: Counter[str] = field(default_factory=Counter)
    alerts: Counter[str] = field(default_factory=Counter)
    console: int = 0
    hub_records: int = 0  # valid hub-wide records: stored, no device, no event

    def lines(self) -> list[str]:
        """The summary as ``replay`` prints it. The first line's format is fixed (scripts parse
        it); the lines after it are indented ``  WHAT  N  [DETAIL]``."""
        out = [
            f"records {self.records}, events {self.events}, expired {self.expired}, "
            f"quarantined {sum(self.quarantined.values())}, alerts {sum(self.alerts.values())}"
        ]
        if self.hub_records:
            out.append(f"  hub records {self.hub_records:>8}")
        for reason, n in sorted(self.quarantined.items(), key=lambda kv: (-kv[1], kv[0])):
            out.append(f"  quarantined {n:>8}  {reason}")
        for rule, n in sorted(self.alerts.items()):
            out.append(f"  alerts      {n:>8}  {rule}")
        return out


@dataclass(eq=False)
class _Input:
    spec: InputSpec
    decoder: Decoder
    clock: StreamClock
    file: object
    size: int
    stream_id: int = 0
    done: bool = False
    read: int = 0
    quarantined: int = 0


def open_decoder(spec: InputSpec, first: bytes) -> Decoder:
    """The decoder for ``spec``, whose file starts with ``first``. An unforced file that starts
    with Avro's magic bytes is a container of routed hub messages. An unforced file with a NUL
    byte near its start is a serial capture: frames are delimited by 0x00, which JSON text never
    contains; so is one whose first lines are console text, neither JSON nor status lines. Its
    frames without a device id (and its console lines) belong to the device named by the file's
    base name without its extension."""
    if spec.format == hub_messages.NAME or (spec.format is None and first.startswith(MAGIC)):
        return HubMessagesFile()  # an Avro container (binary: checked before the NUL test)
    if spec.format == CAPTURE or (
        spec.format is None and (b"\x00" in first or is_console_text(first))
    ):
        mtime = int(os.stat(spec.path).st_mtime * 1_000_000)
        return CaptureStream(host_time=mtime, device=Path(spec.path).stem or None)
    return JsonStream(spec.format)


async def replay(
    config: Config,
    specs: Sequence[InputSpec],
    db: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[list[Alert], Summary]:
    """Evaluate ``specs`` under ``config``; store everything in ``db`` when given."""
    evaluator = Evaluator(config)
    inputs: list[_Input] = []
    try:
        for spec in specs:
            try:
                f = open(spec.path, "rb")  # noqa: SIM115 - closed in the finally below
            except OSError as exc:
                raise InputError(f"{spec.path}: {exc.strerror}") from None
            size = os.fstat(f.fileno()).st_size
            first = f.read(SNIFF_BYTES)
            f.seek(0)
            decoder = open_decoder(spec, first)
            hub_lines = False
            if isinstance(decoder, CaptureStream):  # console lines: the configuration's patterns
                decoder.patterns = config.capture_patterns()
                hub_lines = decoder.patterns is not None and decoder.patterns.hub
            clock = evaluator.add_stream(spec.path, decoder.format, hub_lines=hub_lines)
            inputs.append(_Input(spec, decoder, clock, f, size))
        writer = await _prepare(db, config, inputs) if db else None
        try:
            with few_collections():
                return _run(evaluator, inputs, writer, progress)
        except BaseException:
            if writer is not None:
                writer.abort()
            raise
    finally:
        for item in inputs:
            item.file.close()  # type: ignore[attr-defined]


async def _prepare(db: str, config: Config, inputs: list[_Input]) -> BulkWriter:
    """Set up a new database for a bulk load and start its writer process. A database that
    cannot be set up raises StoreError (a start-up fault)."""
    store = await Store.open(db)
    try:
        if await store.count("events"):
            raise InputError(f"{store.path}: the database already holds events; use a new file")
        await store.save_config(config)
        await store.drop_event_index()
        for item in inputs:
            kind = "capture" if isinstance(item.decoder, CaptureStream) else "file"
            item.stream_id = await store.add_stream(kind, item.decoder.format, item.spec.path)
    except (sqlite3.Error, StoreFault) as exc:
        raise start_fault(store.path, exc) from None
    finally:
        await store.close()
    return BulkWriter(db)


def _run(
    evaluator: Evaluator,
    inputs: list[_Input],
    writer: BulkWriter | None,
    progress: Callable[[int, int], None] | None,
) -> tuple[list[Alert], Summary]:
    summary = Summary()
    total = sum(i.size for i in inputs)
    done_bytes = 0
    batch = Batch()
    if writer is not None:
        # The configuration every event is evaluated under, for a live session on this file.
        batch.configs.append((0, time.time_ns() // 1000, text_of(evaluator.config)))
    # Streams furthest behind in event time go first; those not started yet before all.
    heap = [(-1, n, item) for n, item in enumerate(inputs)]
    heapq.heapify(heap)
    # Quick replays print nothing: the first report comes after two seconds.
    last_progress = time.monotonic() + 1.5
    while heap:
        _, n, item = heapq.heappop(heap)
        data = item.file.read(CHUNK)  # type: ignore[attr-defined]
        decoder = item.decoder
        if data:
            decoder.feed(data)
            item.read += len(data)
            done_bytes += len(data)
        else:
            decoder.finish()
            item.done = True
        _drain(evaluator, item, batch, summary, writer is not None)
        if item.done:
            evaluator.finish_stream(item.clock)
            summary.records += decoder.records
        else:
            latest = item.clock.latest
            heapq.heappush(heap, (latest if latest is not None else -1, n, item))
        if writer is not None and len(batch) >= BATCH_ROWS:
            batch = _flush(writer, evaluator, inputs, batch)
        if progress is not None and time.monotonic() - last_progress > 0.5:
            last_progress = time.monotonic()
            progress(done_bytes, total)
    if writer is not None:
        # The last events first, so the writer builds the events index while the final
        # windows are evaluated here.
        batch = _flush(writer, evaluator, inputs, batch)
        writer.build_index()
    alerts = evaluator.finish()
    summary.events = evaluator.events
    summary.expired = evaluator.expired
    for alert in alerts:
        summary.alerts[alert.rule.name] += 1
    if writer is not None:
        _flush(writer, evaluator, inputs, batch, final=True)
        writer.close()
    return alerts, summary


def _drain(evaluator: Evaluator, item: _Input, batch: Batch, summary: Summary, keep: bool) -> None:
    events, bad = item.decoder.take()
    if events and not item.clock.feeds:
        evaluator.set_format(item.clock, item.decoder.format)
    evaluator.process(item.clock, events, batch.events if keep else None, item.stream_id)
    if evaluator.poisoned:
        bad = [*bad, *evaluator.take_poisoned()]
    item.quarantined += len(bad)
    for b in bad:
        summary.quarantined[b.reason] += 1
    if keep and bad:
        batch.bad.extend((item.stream_id, b.pos, b.reason, b.raw, b.part) for b in bad)
    take_hub = getattr(item.decoder, "take_hub", None)
    if take_hub is not None:
        hub: list[HubRecord] = take_hub()
        if hub:
            summary.hub_records += len(hub)
            if keep:
                sid = item.stream_id
                batch.hub.extend(
                    (sid, h.pos, h.time, h.category, h.operation, h.result, h.raw) for h in hub
                )
    take_console = getattr(item.decoder, "take_console", None)
    if take_console is not None:
        lines: list[ConsoleLine] = take_console()
        summary.console += len(lines)
        if keep:
            host = item.decoder.host_time  # type: ignore[attr-defined]
            batch.console.extend((item.stream_id, ln.pos, host, ln.text) for ln in lines)


def _flush(
    writer: BulkWriter,
    evaluator: Evaluator,
    inputs: list[_Input],
    batch: Batch,
    final: bool = False,
) -> Batch:
    devices = evaluator.devices.values() if final else evaluator.new_devices
    batch.devices = [
        (d.id, d.name, evaluator.config.devices.group_of(d.name), int(d.declared), d.first, d.last)
        for d in devices
    ]
    evaluator.new_devices = []
    batch.alerts = evaluator.book.take_changes()
    batch.streams = [
        (
            i.decoder.offset,
            i.decoder.records,
            i.clock.events,
            i.clock.expired,
            i.quarantined,
            i.clock.latest,
            i.decoder.format,
            "done" if i.done else "open",
            i.stream_id,
        )
        for i in inputs
    ]
    writer.put(batch)
    return Batch()

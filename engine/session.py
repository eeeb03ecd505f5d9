"""A live session: sources followed as they grow, evaluated continuously, committed in batches.

Every batch commits events together with the offsets of the files they came from, so a process
killed at any moment resumes exactly where its committed data ends (see ``engine.restore``).
Windows also close by the wall clock once every source has caught up, so a silent device is
noticed without new data. Alert changes reach listeners after the batch that holds them is
committed, coalesced per batch.

Faults are loud and lose nothing: a batch stays pending until it is written; while the database
is busy or full the sources stop reading (backpressure) and the write is retried with backoff;
any other store failure stops the session (``failure``, then ``run`` raises SessionFailed). A
background task that fails is reported, never silent.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import os
import sqlite3
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypeVar

from engine import checkpoint, operator
from engine.alert import RESOLVED, WITHDRAWN, Alert
from engine.avrostream import file_decoder
from engine.capture import CaptureStream
from engine.config import Config, ConfigError, SourceConfig, load_config
from engine.config_log import same_rules, text_of
from engine.episode import NEVER, RangeTrack
from engine.evaluator import Evaluator
from engine.event import Bad, ConsoleLine
from engine.restore import Restored, StreamRow, restore
from engine.store import SCHEMA_VERSION, Batch, Rejected, Store, StoreFault, start_fault
from engine.timestamps import US
from engine.watermark import StreamClock, feeds_of

log = logging.getLogger("iotwatch.session")

T = TypeVar("T")
Clock = Callable[[], int]
AlertListener = Callable[[list[tuple[str, Alert]]], None]
# (port, lines): each line with its receive time and what a console pattern made of it.
ConsoleListener = Callable[[str, list[ConsoleLine]], None]


class Counter(NamedTuple):
    """The current window of one (device, range rule), for the live counters. A named tuple:
    a console takes thousands a second on the engine's loop, and a frozen dataclass costs four
    times as much to build."""

    device: str
    group: str
    rule: str
    count: int
    min: int
    max: int
    start: int  # µs
    end: int
    history: tuple[int, ...]  # the last final windows' counts, oldest first
    alerting: bool  # an open alert of this rule and device


@dataclass(slots=True)
class StoreStatus:
    """A store fault the session is riding out: reading is paused until a write succeeds."""

    kind: str  # busy | full
    reason: str  # one line, naming the file
    since: int  # µs, wall clock: the first failed write
    attempts: int = 1
    pending: int = 0  # rows waiting to be written


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What the console shows at one moment. While ``store`` is set (the database is busy or
    full) every source shows ``paused`` with the reason as its error."""

    now: int
    sources: list[SourceStatus]
    counters: list[Counter]
    store: StoreStatus | None = None


def _counting(newest: RangeTrack, now: int) -> RangeTrack | None:
    """The track of a (device, rule) whose window holds ``now``: after a rule change the new
    track starts at a window boundary ahead, and until then the one it replaced is counting
    (a disabled rule's track counts until that boundary too). None when no track counts now
    (a rule just enabled, before its first window)."""
    track: RangeTrack | None = newest
    while track is not None:
        if track.start * track.size <= now < track.stop * track.size:
            return track
        track = track.previous
    # No window holds now: a device whose first window lies ahead (a clock ahead of ours) still
    # shows its active track; a successor waiting for its first window shows nothing yet.
    if newest.stop == NEVER and newest.start == newest.first and newest.previous is None:
        return newest
    return None


class SessionFailed(Exception):
    """The session could not go on (a fatal store error, a failed ticker); one line."""


class _Stopping(Exception):
    """A store call gave up waiting for a writable database because the session stops."""


HISTORY = 12  # final window counts kept per track for the console's sparklines
# A partial last line of a file that has been idle this long is decoded when it is a whole record
# (the writer left out the final newline); after GIVE_UP_PARTIAL, whatever it holds (a broken line
# is quarantined). The second is long: a block-buffered writer may leave a line half-written for
# minutes. See docs/live.md.
SETTLE_PARTIAL = 2.0  # seconds
GIVE_UP_PARTIAL = 600.0
RETRY_FIRST = 0.1  # seconds before the first retry of a busy or full database; doubling
RETRY_MAX = 2.0  # at most this (a busy database also waits its busy timeout per try)
REMIND_EVERY = 60.0  # seconds between reminders that a store fault goes on
ALERT_COMMIT_GAP = 0.01  # seconds: alert changes bring a commit forward at most this often
DEVICES_EVERY = 5.0  # seconds between writes of every device's last-seen time
SERIAL_GLOB_POLL = 0.5  # seconds between looks at a serial source's glob for boards
# Seconds between checkpoints of the evaluator's state: a restart evaluates again at most the
# events of this long (plus whatever a stop without a final commit left).
CHECKPOINT_EVERY = 60.0


def wall_clock() -> int:
    """The host clock in µs since the epoch."""
    return time.time_ns() // 1000


@dataclass(eq=False)
class StreamHandle:
    """One stream being followed: its store row, decoder and clock."""

    id: int
    kind: str  # file | serial
    name: str  # path or port
    identity: str
    decoder: Any  # JsonStream | AvroStream | HubMessagesFile | CaptureStream
    clock: StreamClock
    records_base: int = 0  # records committed before this process started
    quarantined: int = 0
    last_event: int | None = None
    released: bool = False  # let go: committed once more, then no longer
    fed_at: float = 0.0  # time.monotonic() when bytes last arrived
    status: SourceStatus | None = None  # of the source it belongs to


@dataclass
class SourceStatus:
    """What the console's sources strip shows for one configured source."""

    kind: str
    target: str
    state: str = "starting"  # following | caught-up | reconnecting | error | stopped
    error: str | None = None
    events: int = 0
    quarantined: int = 0
    last_event: int | None = None
    streams: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


class Session:
    """Runs sources, evaluation and the store writer until stopped."""

    def __init__(
        self,
        config: Config,
        store: Store,
        *,
        clock: Clock = wall_clock,
        poll_interval: float = 0.025,
        commit_interval: float = 0.1,
        commit_rows: int = 5000,
        tick_interval: float = 0.25,
        history: int = 0,
        retry_first: float | None = None,
        retry_max: float | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.clock = clock
        self.poll_interval = poll_interval
        self.commit_interval = commit_interval
        self.commit_rows = commit_rows
        self.tick_interval = tick_interval
        self.history = history  # final counts per track for a console's sparklines; 0: none
        self.retry_first = RETRY_FIRST if retry_first is None else retry_first
        self.retry_max = RETRY_MAX if retry_max is None else retry_max
        self.listeners: list[AlertListener] = []
        self.console_listeners: list[ConsoleListener] = []
        self.status: list[SourceStatus] = [
            SourceStatus(s.type, s.path or s.port or "") for s in config.sources
        ]
        self.evaluator: Evaluator | None = None
        self.streams: dict[str, StreamHandle] = {}  # by identity
        self._stored: dict[str, Any] = {}  # stream rows of earlier runs, by identity
        self._batch = Batch()
        self._changes: dict[int, Alert] = {}
        self._opened: set[int] = set()
        self._resolved: set[int] = set()
        self._notes = Notes()  # the changes of the batch being written
        self.checkpoint_every = CHECKPOINT_EVERY
        self._checkpoint_due = 0.0  # set at start from checkpoint_every
        self._checkpointed = -1  # evaluator.events at the last checkpoint
        self.checkpoint_seconds = 0.0  # how long the last checkpoint took to take
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._lock = asyncio.Lock()
        self.restored: Restored | None = None
        self._silences: list[operator.Silence] = []
        self.config_poll = 1.0
        self._devices_due = 0.0
        self._alerted = asyncio.Event()  # an alert changed since the last commit
        self.config_error: str | None = None  # why the last change of the file was refused
        self.settle_partial = SETTLE_PARTIAL
        self.give_up_partial = GIVE_UP_PARTIAL
        self.store_status: StoreStatus | None = None  # a busy or full database, while it lasts
        self.failure: str | None = None  # why the session stopped on its own; one line
        self._writable = asyncio.Event()  # clear while the store is busy or full
        self._writable.set()
        self._reminded = self._fault_began = 0.0  # time.monotonic()
        self._leaving: list[StreamHandle] = []  # released, until a commit has written them
        self._reading: set[int] = set()  # indexes of the file sources running
        self._catching_up: set[int] = set()  # sources to poll once after a fault, before the
        # wall clock closes windows again

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Rebuild state from the store and start every source. A database that cannot be
        read or written raises StoreError (a start-up fault)."""
        try:
            await self.store.save_config(self.config)
            self.restored = await restore(self.store, self.config)
            self._silences = await operator.silences(self.store, self.clock())
        except (sqlite3.Error, StoreFault) as exc:
            raise start_fault(self.store.path, exc) from None
        evaluator = self.evaluator = self.restored.evaluator
        evaluator.book.listener = self._on_change
        evaluator.wall = self.clock()
        self._checkpointed = evaluator.events if self.restored.checkpoint else -1
        self._checkpoint_due = time.monotonic() + self.checkpoint_every
        in_force = self.restored.config
        if not self.restored.logged or in_force is None or not same_rules(in_force, self.config):
            # The rules changed while the session was stopped (or none were logged): they
            # apply from now on, and the store logs them so a restart applies them here too.
            if self.restored.logged and in_force is not None:
                evaluator.reconfigure(self.config, now=evaluator.wall)
            self._batch.configs.append((0, evaluator.wall, text_of(self.config)))
        for row in self.restored.streams:
            if row.identity:
                self._stored[row.identity] = row
        self._discovering = sum(1 for s in self.config.sources if s.type != "serial")
        self._all_discovered = asyncio.Event()
        if not self._discovering:
            self._all_discovered.set()
        for index, (source, status) in enumerate(
            zip(self.config.sources, self.status, strict=True)
        ):
            if source.type == "serial":
                work = self._serial_source(source, status)
            else:
                work = self._file_source(source, status, index)
            self._spawn(f"{source.type} source {source.path or source.port}", work, status)
        self._spawn("the commit ticker", self._ticker())
        if self.config.path is not None:
            seen = _stamp(self.config.path)  # now, not when the task first runs
            self._spawn("the configuration watcher", self._watch_config(self.config.path, seen))

    async def run(self, started: Callable[[], None] | None = None) -> None:
        """Start, call ``started()``, then run until ``stop()``; commit what is left on the way
        out. Raises SessionFailed when the session stopped on its own or its last batch could
        not be written."""
        await self.start()
        if started is not None:
            started()
        try:
            await self._stop.wait()
        finally:
            await self.close()
        if self.failure is not None:
            raise SessionFailed(self.failure)

    def stop(self) -> None:
        self._stop.set()

    async def close(self) -> None:
        self._stop.set()
        self._writable.set()  # sources waiting for room let go
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        if not await self.commit(final=True) and self.failure is None and self.store_status:
            self.failure = (
                f"{self.store_status.reason}; the last {len(self._batch):,} rows were not "
                "committed (files are read again from their committed offsets at the next start)"
            )

    # -- background tasks ---------------------------------------------------------------------

    def _spawn(
        self, name: str, work: Coroutine[Any, Any, None], status: SourceStatus | None = None
    ) -> None:
        task = asyncio.create_task(work, name=name)
        task.add_done_callback(lambda done: self._ended(name, done, status))
        self._tasks.append(task)

    def _ended(self, name: str, task: asyncio.Task[None], status: SourceStatus | None) -> None:
        """A background task ended; its failure is reported, never silent. A source's shows on
        its status and in the log, and the session goes on; any other task's stops the
        session."""
        if task.cancelled():
            return
        exc = task.exception()
        if exc is None or isinstance(exc, _Stopping):
            return
        reason = _one_line(exc)
        log.debug("%s failed", name, exc_info=exc)
        if status is None:
            self._fail(f"{name} failed: {reason}")
            return
        status.state, status.error = "error", reason
        log.error("%s failed: %s", name, reason)

    # -- sources --------------------------------------------------------------------------------

    async def _file_source(self, source: SourceConfig, status: SourceStatus, index: int) -> None:
        from engine.tail import FileTail

        assert source.path is not None
        resume = {
            identity: row.offset
            for identity, row in self._stored.items()
            if row.kind == "file" and row.format in (None, source.type)
        }
        tail = FileTail(source.path, resume)
        next_settle = 0.0
        self._reading.add(index)
        try:
            first = True
            while not self._stop.is_set():
                chunks = await asyncio.to_thread(tail.poll)
                if first:
                    # Every source's files hold the watermark before any source's events are
                    # evaluated, so a slower source's backlog is not late on arrival.
                    for chunk in chunks:
                        await self._file_stream(source, chunk)
                    await self._discovered()
                    first = False
                for chunk in chunks:
                    handle = await self._file_stream(source, chunk, status)
                    if chunk.data:
                        self._feed(handle, chunk.data, None, status)
                    handle.clock.holding = not chunk.caught_up
                for gone in tail.released():
                    self._release(gone.identity, status)
                if time.monotonic() >= next_settle:
                    next_settle = time.monotonic() + min(self.settle_partial, 1.0)
                    self._settle_partial_lines(tail, status)
                status.streams = sum(1 for s in tail.streams() if s.identity)
                status.state = "caught-up" if tail.caught_up else "following"
                self._catching_up.discard(index)
                await self._backpressure()
                if tail.caught_up:
                    await self._sleep(self.poll_interval)
                else:
                    await asyncio.sleep(0)
        except _Stopping:
            pass
        except Exception as exc:  # a source never takes the session down
            if first:
                await self._discovered()
            log.debug("file source %s failed", source.path, exc_info=True)
            log.error("file source %s failed: %s", source.path, _one_line(exc))
            status.state, status.error = "error", _one_line(exc)
            for handle in self.streams.values():
                if handle.kind == "file":
                    handle.clock.holding = False
        finally:
            self._reading.discard(index)
            self._catching_up.discard(index)
            tail.close()

    def _settle_partial_lines(self, tail: Any, status: SourceStatus) -> None:
        """Decode the partial last lines of this source's files that have stayed unchanged while
        their file was idle (see ``SETTLE_PARTIAL``); what they yield is committed with the
        offset past them, like any other record."""
        now = time.monotonic()
        for stream in tail.streams():
            handle = self.streams.get(stream.identity)
            if handle is None or stream.state != "caught-up" or not handle.decoder.holding:
                continue
            idle = now - handle.fed_at
            if idle >= self.settle_partial:
                handle.decoder.settle(give_up=idle >= self.give_up_partial)
                self._drain(handle, status)

    async def _discovered(self) -> None:
        """Wait until every file source has found its files."""
        self._discovering -= 1
        if self._discovering <= 0:
            self._all_discovered.set()
        await self._all_discovered.wait()

    async def _file_stream(
        self, source: SourceConfig, chunk: Any, status: SourceStatus | None = None
    ) -> StreamHandle:
        stream = chunk.stream
        handle = self.streams.get(stream.identity)
        if handle is not None and not chunk.restarted:
            return handle
        if handle is not None:  # truncated in place with the same first bytes: start over
            self._release(stream.identity, None)
        stored = self._stored.get(stream.identity)
        evaluator = self.evaluator
        assert evaluator is not None
        if stored is not None and not chunk.restarted:
            sid, clock, base = stored.id, stored.clock, stored.records
            clock.holding = True  # until it has caught up with what was written meanwhile
            clock.lateness = None if source.lateness is None else source.lateness * US
        else:
            sid = await self._retrying(
                lambda: self.store.add_stream("file", source.type, stream.path, stream.identity)
            )
            clock, base = evaluator.add_stream(stream.path, source.type, source.lateness), 0
        decoder = file_decoder(source.type, chunk.offset, stream.path)
        handle = StreamHandle(sid, "file", stream.path, stream.identity, decoder, clock, base)
        handle.status = status
        if stored is not None and not chunk.restarted:
            handle.quarantined = stored.quarantined
        self.streams[stream.identity] = handle
        return handle

    def _release(self, identity: str, status: SourceStatus | None) -> None:
        """A file was rotated away and drained (or truncated): its last line is a record too."""
        handle = self.streams.get(identity)
        if handle is None:
            return
        handle.decoder.finish()
        self._drain(handle, status)
        handle.clock.holding = False
        handle.released = True
        # Should the file come back into the glob, it goes on from here under the same row.
        self._stored[identity] = StreamRow(
            handle.id,
            "file",
            handle.decoder.format,
            handle.name,
            identity,
            handle.decoder.resume_offset,
            handle.records_base + handle.decoder.records,
            handle.quarantined,
            handle.clock,
        )

    async def _serial_source(self, source: SourceConfig, status: SourceStatus) -> None:
        """A serial source: one port, or every board a glob port finds (see ``_serial_glob``).
        Console lines go through the source's patterns."""
        assert source.port is not None
        if source.is_glob:
            await self._serial_glob(source, status)
            return
        status.streams = 1
        await self._serial_board(source, status, source.port, source.device, None)

    async def _serial_glob(self, source: SourceConfig, status: SourceStatus) -> None:
        """Every board that ``source.port`` (a glob) finds, each a stream of its own named by
        :func:`engine.serial_source.board_device`. The glob is looked at every
        ``SERIAL_GLOB_POLL`` seconds: a board that appears is opened; a board that vanishes
        stays (its source reconnects, shown as unplugged) and is reopened as soon as its path is
        back. ``status.extra["boards"]`` holds each board's state, by path."""
        from engine.serial_source import board_device, glob_ports

        assert source.port is not None
        boards: dict[str, dict[str, Any]] = {}
        status.extra = {"boards": boards}
        status.state = "opening"
        tasks: dict[str, asyncio.Task[None]] = {}
        ports: dict[str, Any] = {}  # path -> its SerialSource, once started
        seen: set[str] = set()  # the paths found by the last look
        try:
            while not self._stop.is_set():
                found = await asyncio.to_thread(glob_ports, source.port)
                for path in found:
                    if path not in tasks:
                        device = board_device(path, source.boards)
                        info = boards[path] = {"device": device, "state": "opening"}
                        tasks[path] = asyncio.create_task(
                            self._serial_board(source, status, path, device, info, ports),
                            name=f"serial board {path}",
                        )
                    elif path not in seen and path in ports:
                        ports[path].retry_now()  # plugged back in: no need to wait the backoff
                seen = set(found)
                for path, task in tasks.items():
                    if task.done() and not task.cancelled() and task.exception() is not None:
                        info = boards[path]
                        info["state"], info["error"] = "error", _one_line(task.exception())  # type: ignore[arg-type]
                status.streams = len(tasks)
                states = {b.get("state") for b in boards.values()}
                status.state = (
                    "following"
                    if "following" in states
                    else "reconnecting"
                    if "reconnecting" in states
                    else "opening"
                )
                status.error = next(
                    (f"{p}: {b['error']}" for p, b in boards.items() if b.get("error")), None
                )
                await self._sleep(SERIAL_GLOB_POLL)
        finally:
            for task in tasks.values():
                task.cancel()
            for task in tasks.values():
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            status.state = "stopped"

    async def _serial_board(
        self,
        source: SourceConfig,
        status: SourceStatus,
        port_name: str,
        device: str | None,
        info: dict[str, Any] | None,
        ports: dict[str, Any] | None = None,
    ) -> None:
        """Follow one board at ``port_name`` as the stream ``serial:PORT``. Its state goes to
        ``status`` (one port) or to ``info`` (a board of a glob)."""
        from engine.serial_source import SerialSource

        assert self.evaluator is not None
        identity = f"serial:{port_name}"
        stored = self._stored.get(identity)
        patterns = source.console_patterns()
        hub_lines = patterns is not None and patterns.hub
        if stored is not None:
            sid, clock = stored.id, stored.clock
            clock.lateness = None if source.lateness is None else source.lateness * US
            clock.feeds = feeds_of("serial", hub_lines)
        else:
            sid = await self._retrying(
                lambda: self.store.add_stream("serial", "serial", port_name, identity)
            )
            clock = self.evaluator.add_stream(port_name, "serial", source.lateness, hub_lines)
        clock.holding = False  # a live port is read as it happens: it holds nothing
        decoder = CaptureStream(self.clock(), device, patterns=patterns)
        handle = StreamHandle(sid, "serial", port_name, identity, decoder, clock)
        handle.status = status
        if stored is not None:
            handle.records_base, handle.quarantined = stored.records, stored.quarantined
        self.streams[identity] = handle
        port = SerialSource(port_name, source.baudrate)
        if ports is not None:
            ports[port_name] = port
        events0 = clock.events
        try:
            async for data, received in port.chunks(self._stop):
                if data:
                    self._feed(handle, data, received, status)
                else:  # idle: release console text that waits for a delimiter
                    decoder.host_time = received
                    decoder.finish()
                    self._drain(handle, status)
                splitter = decoder.splitter
                extra = {
                    **port.info(),
                    "frames": splitter.frames,
                    "crc_errors": splitter.crc_errors,
                    "bad": splitter.bad,
                    "patterned": decoder.patterned,
                    "device": device,
                }
                if info is None:
                    status.state = port.state
                    status.error = port.error
                    status.extra = extra
                else:
                    info.clear()
                    info.update(extra, events=clock.events - events0)
                await self._backpressure()
        finally:
            port.stop()
            if info is None:
                status.state = "stopped"
            else:
                info["state"] = "stopped"

    def _feed(
        self, handle: StreamHandle, data: bytes, received: int | None, status: SourceStatus
    ) -> None:
        decoder = handle.decoder
        if received is not None:
            decoder.host_time = received
        handle.fed_at = time.monotonic()
        decoder.feed(data)
        self._drain(handle, status)

    def _drain(self, handle: StreamHandle, status: SourceStatus | None) -> None:
        evaluator = self.evaluator
        assert evaluator is not None
        events, bad = handle.decoder.take()
        batch = self._batch
        evaluator.process(handle.clock, events, batch.events, handle.id)
        if evaluator.poisoned:
            bad = [*bad, *evaluator.take_poisoned()]
            log.error("%s: an event could not be evaluated; it is quarantined", handle.name)
        if events:
            last = max(ev.time for ev in events)
            handle.last_event = max(last, handle.last_event or last)
            if status is not None:
                status.events += len(events)
                status.last_event = handle.last_event
        if bad:
            handle.quarantined += len(bad)
            if status is not None:
                status.quarantined += len(bad)
            batch.bad.extend(_bad_rows(handle.id, bad))
        take_hub = getattr(handle.decoder, "take_hub", None)
        if take_hub is not None:
            sid = handle.id
            batch.hub.extend(
                (sid, h.pos, h.time, h.category, h.operation, h.result, h.raw) for h in take_hub()
            )
        take_console = getattr(handle.decoder, "take_console", None)
        if take_console is not None:
            host = handle.decoder.host_time
            lines = take_console()
            batch.console.extend((handle.id, ln.pos, host, ln.text) for ln in lines)
            if lines:
                for listener in self.console_listeners:
                    listener(handle.name, lines)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)

    async def _backpressure(self) -> None:
        """A source's check after each read: past ``commit_rows`` pending rows, commit now;
        while the database cannot take them, wait here. Reading stops, nothing read is
        dropped, and memory stays bounded by a batch plus one read per source."""
        while len(self._batch) >= self.commit_rows and not self._stop.is_set():
            if self.store_status is None and await self.commit():
                continue
            if self._stop.is_set():
                return
            waiting = asyncio.ensure_future(self._writable.wait())
            stopping = asyncio.ensure_future(self._stop.wait())
            try:
                await asyncio.wait({waiting, stopping}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiting.cancel()
                stopping.cancel()

    async def _retrying(self, call: Callable[[], Awaitable[T]]) -> T:
        """``await call()`` (a store write outside the batches) until it succeeds: a busy or full
        database is waited out with backoff; a fatal fault stops the session and is raised."""
        delay = self.retry_first
        while True:
            try:
                return await call()
            except StoreFault as exc:
                if not exc.transient:
                    self._fail(str(exc))
                    raise
                self._faulted(exc)
            if self._stop.is_set():
                raise _Stopping
            await self._sleep(delay)
            delay = min(delay * 2, self.retry_max)

    # -- the clock and commits --------------------------------------------------------------------

    async def _ticker(self) -> None:
        """Close windows by the wall clock and commit, on a steady beat; an alert change brings
        the next commit forward, so it reaches listeners within a few milliseconds."""
        # Not before every file source has claimed its files: restored streams hold nothing
        # until then, and the wall clock would close windows their backlog still fills.
        await self._all_discovered.wait()
        next_commit = 0.0
        delay = self.retry_first
        while not self._stop.is_set():
            assert self.evaluator is not None
            # Not while reading is paused by a store fault, nor until every file source has
            # looked again afterwards: what was written meanwhile is not late.
            if self.store_status is None and not self._catching_up:
                self.evaluator.advance(self.clock())
            now = time.monotonic()
            if self.store_status is not None:
                self._alerted.clear()  # retries keep their backoff
            if now >= next_commit or self._alerted.is_set():
                self._alerted.clear()
                if await self.commit(retry=True):
                    next_commit, delay = now + self.commit_interval, self.retry_first
                else:
                    next_commit = time.monotonic() + delay
                    delay = min(delay * 2, self.retry_max)
            await self._wait(min(self.tick_interval, self.commit_interval, delay))
            await asyncio.sleep(ALERT_COMMIT_GAP)  # at most one early commit per gap

    async def _wait(self, seconds: float) -> None:
        """Sleep ``seconds``, or less if the session stops or an alert changes."""
        stop = asyncio.ensure_future(self._stop.wait())
        alerted = asyncio.ensure_future(self._alerted.wait())
        try:
            await asyncio.wait(
                {stop, alerted}, timeout=seconds, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            stop.cancel()
            alerted.cancel()

    async def commit(self, final: bool = False, *, retry: bool = False) -> bool:
        """Write the pending batch with every stream's offset in one transaction, then tell the
        listeners what changed. True when written (or when there was nothing to write).

        Nothing leaves the pending batch before it is written: a busy or full database keeps
        it all for the next try (``store_status`` says why; the ticker retries with backoff,
        and only its ``retry`` calls and ``final`` write while the fault lasts); any other
        failure stops the session (``failure``). The write runs to its end even if the caller
        is cancelled, so a stopping session never loses a batch in flight."""
        if self.evaluator is None or self.failure is not None:
            return False
        return await asyncio.shield(self._commit(final, retry))

    async def _commit(self, final: bool, retry: bool) -> bool:
        evaluator = self.evaluator
        assert evaluator is not None
        async with self._lock:
            if self.failure is not None or (self.store_status and not (retry or final)):
                return False
            try:
                batch, handles = self._take_batch(evaluator, final)
            except Exception as exc:
                self._fail(f"preparing a commit failed: {_one_line(exc)}")
                return False
            if batch is None:
                return True
            try:
                rejected = await self.store.write(batch)
            except StoreFault as exc:
                if not exc.transient:
                    self._fail(str(exc))
                    return False
                # Everything goes back in front of what was read meanwhile; the streams'
                # offsets and the silenced ids are taken afresh at the next try.
                batch.streams, batch.silenced = [], []
                batch.absorb(self._batch)
                self._batch = batch
                self._faulted(exc, quiet=final)
                return False
            except Exception as exc:
                self._fail(f"{self.store.path}: writing a batch failed: {_one_line(exc)}")
                return False
            self._leaving = [h for h in self._leaving if h not in handles]
            if rejected:
                self._set_apart(rejected)
            self._recovered()
            try:
                self._notify()
            except Exception as exc:  # the batch is stored; a listener must not stop commits
                log.error("telling the alert listeners failed: %s", _one_line(exc))
            return True

    def _take_batch(
        self, evaluator: Evaluator, final: bool
    ) -> tuple[Batch | None, list[StreamHandle]]:
        """The pending batch made ready to write (devices, alert changes, every stream's row),
        and the handles whose rows it holds; None when there is nothing to write."""
        batch, self._batch = self._batch, Batch()
        # New devices at once; every device's first/last seen every few seconds.
        everyone = final or time.monotonic() >= self._devices_due
        if everyone:
            self._devices_due = time.monotonic() + DEVICES_EVERY
        devices = evaluator.devices.values() if everyone else evaluator.new_devices
        group_of = self.config.devices.group_of
        changes = Batch(
            devices=[
                (d.id, d.name, group_of(d.name), int(d.declared), d.first, d.last) for d in devices
            ]
        )
        evaluator.new_devices = []
        book = evaluator.book
        changes.alerts = book.take_changes()
        changes.amendments = book.take_amendments()
        batch.absorb(changes)  # after what an earlier, failed try left pending
        # What listeners hear once this batch is written: the changes it holds, merged with
        # those of an earlier try that failed.
        notes = self._notes
        notes.changes.update(self._changes)
        notes.opened |= self._opened
        notes.resolved |= self._resolved
        self._changes, self._opened, self._resolved = {}, set(), set()
        # An alert opened and withdrawn before any commit showed it is neither stored nor
        # announced.
        notes.hidden = {i for i in notes.opened if notes.changes[i].state == WITHDRAWN}
        if notes.hidden:
            batch.alerts = [a for a in batch.alerts if a.id not in notes.hidden]
            batch.amendments = [r for r in batch.amendments if r[0] not in notes.hidden]
        if self._silences:
            now = self.clock()
            self._silences = [s for s in self._silences if s.until > now]
            batch.silenced = [
                a.id
                for a in batch.alerts
                if any(s.covers(a.rule.id, a.device, a.value, now) for s in self._silences)
            ]
        # A released stream's last row goes out with this batch; it stays due until written.
        # First: should its file have come back under the same row, the live handle's row
        # is the one that stays.
        for identity in [i for i, h in self.streams.items() if h.released]:
            self._leaving.append(self.streams.pop(identity))
        handles = [*self._leaving, *self.streams.values()]
        batch.streams = [
            (
                h.decoder.resume_offset if h.kind == "file" else 0,
                h.records_base + h.decoder.records,
                h.clock.events,
                h.clock.expired,
                h.quarantined,
                h.clock.latest,
                h.decoder.format,
                "released" if h.released else "open",
                h.id,
            )
            for h in handles
        ]
        if not batch.counts() and not self._leaving and not final:
            self._batch = batch  # nothing was added meanwhile: no await since the swap
            return None, handles
        # The evaluator's state now is exactly the state after the batch's last event: no
        # event was evaluated since the swap (no await).
        if (final or time.monotonic() >= self._checkpoint_due) and (
            evaluator.events != self._checkpointed or batch.configs
        ):
            started = time.perf_counter()
            state = checkpoint.dump(evaluator, self._clocks(), SCHEMA_VERSION)
            batch.checkpoint = (self.clock(), state)
            self._checkpointed = evaluator.events
            self._checkpoint_due = time.monotonic() + self.checkpoint_every
            self.checkpoint_seconds = time.perf_counter() - started
        return batch, handles

    def _clocks(self) -> dict[int, StreamClock]:
        """Every stream's clock by store id: restored ones and those opened since."""
        clocks = {row.id: row.clock for row in self.restored.streams} if self.restored else {}
        clocks.update((h.id, h.clock) for h in self._leaving)
        clocks.update((h.id, h.clock) for h in self.streams.values())
        clocks.update((row.id, row.clock) for row in self._stored.values())
        return clocks

    # -- store faults -----------------------------------------------------------------------------

    def _faulted(self, exc: StoreFault, quiet: bool = False) -> None:
        """A write failed on a busy or full database: pause reading and say so, once."""
        status = self.store_status
        now = time.monotonic()
        if status is None or status.kind != exc.kind:
            if status is None:
                self._fault_began = now
            self.store_status = StoreStatus(exc.kind, str(exc), wall_clock())
            self._reminded = now
            if not quiet:
                log.warning("%s; reading paused, retrying", exc)
        else:
            status.attempts += 1
            if now - self._reminded >= REMIND_EVERY and not quiet:
                self._reminded = now
                log.warning("%s (still, for %.0f s); reading paused, retrying", exc, self._lasted())
        assert self.store_status is not None
        self.store_status.pending = len(self._batch)
        self._writable.clear()

    def _recovered(self) -> None:
        """A write succeeded: a fault that was on is over; reading resumes."""
        if self.store_status is None:
            return
        log.warning(
            "%s: writable again after %.1f s; reading resumed", self.store.path, self._lasted()
        )
        self.store_status = None
        self._catching_up = set(self._reading)
        self._writable.set()

    def _lasted(self) -> float:
        """Seconds since the fault began."""
        return time.monotonic() - self._fault_began

    def _fail(self, reason: str) -> None:
        """The session cannot go on: keep the one-line reason and stop."""
        if self.failure is None:
            self.failure = reason
            log.debug("session failed: %s", reason)
        self._writable.set()
        self.stop()

    def _set_apart(self, rejected: list[Rejected]) -> None:
        """Rows a commit could not store as they were: count and report them."""
        by_id = {h.id: h for h in self.streams.values()}
        for r in rejected:
            handle = by_id.get(r.stream) if r.table == "events" else None
            if handle is not None and r.action == "quarantined":
                handle.quarantined += 1
                if handle.status is not None:
                    handle.status.quarantined += 1
        first = rejected[0]
        log.warning(
            "%s: %d rows could not be stored as they were (%s: %s): events went to the "
            "quarantine, other rows were stored with such values clamped",
            self.store.path,
            len(rejected),
            first.table,
            first.reason,
        )

    async def _watch_config(self, path: str, seen: tuple[int, int] | None) -> None:
        """Reload the configuration file when it changes; an invalid one is refused (the error is
        kept in ``config_error``) and the previous configuration stays in force."""
        while not self._stop.is_set():
            await self._sleep(self.config_poll)
            now = _stamp(path)
            if now is None or now == seen:
                continue
            seen = now
            try:
                config = load_config(path)
            except ConfigError as exc:
                self.config_error = str(exc)
                log.warning("configuration refused: %s", exc)
                continue
            except Exception as exc:  # the watcher goes on; the change is reported
                self.config_error = _one_line(exc)
                log.error("configuration not read: %s", _one_line(exc))
                continue
            self.config_error = None
            await self.apply_config(config)

    # -- what the console asks for ----------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        """A consistent picture for the console, taken on the session's loop: every source, and
        the current window of every (device, enabled range rule) with its last final counts."""
        evaluator = self.evaluator
        assert evaluator is not None
        now = self.clock()
        counters = []
        for dev in evaluator.devices.values():
            for newest in dev.tracks.values():
                track = _counting(newest, now)
                if track is None:
                    continue
                index = min(max(now // track.size, track.next), track.stop - 1)
                alerts = track.alerts
                counters.append(
                    Counter(
                        dev.name,
                        track.group,
                        track.rule.name,
                        track.pending.get(index, 0),
                        track.min,
                        track.max,
                        index * track.size,
                        (index + 1) * track.size,
                        track.recent(self.history),
                        bool(alerts) and any(a.state == "open" for a in alerts),
                    )
                )
        sources = [copy.copy(s) for s in self.status]
        fault = copy.copy(self.store_status)
        if fault is not None:
            for s in sources:
                if s.state != "error":
                    s.state, s.error = "paused", f"{fault.reason}; reading paused, retrying"
        return Snapshot(now, sources, counters, fault)

    def add_console_listener(self, listener: ConsoleListener) -> None:
        """``listener(port, lines)`` hears every console line a board prints (``ConsoleLine``:
        its text, receive time and pattern mark; the listener must not change them)."""
        self.console_listeners.append(listener)

    async def apply_config(self, config: Config) -> None:
        """Use ``config`` from now on (rules from the next window, allow-lists from the next
        event) and store it. Sources are not restarted: a changed [[sources]] table takes effect
        at the next start."""
        await self.commit()
        assert self.evaluator is not None
        if not same_rules(config, self.config):
            now = self.clock()
            self.evaluator.reconfigure(config, now=now)
            # Logged between the events it came between: a restart applies it at that point.
            self._batch.configs.append((len(self._batch.events), now, text_of(config)))
        self.evaluator.configure_sources(config)
        self.config = config
        await self._retrying(lambda: self.store.save_config(config))
        await self.commit()

    async def silence(
        self, rule: int, device: str, value: str | None, until: int
    ) -> operator.Silence:
        """Silence (rule, device[, value]) until ``until`` (µs); covered alerts are marked."""
        entry = await operator.silence(self.store, rule, device, value, self.clock(), until)
        self._silences.append(entry)
        return entry

    async def unsilence(self, silence_id: int) -> bool:
        """Lift silence ``silence_id`` now: alerts that change from now on are not marked, and
        its open alerts lose the mark; False when it was not in force."""
        now = self.clock()
        self._silences = [s for s in self._silences if s.id != silence_id]
        return await operator.unsilence(self.store, silence_id, now, self._silences)

    # -- alert changes ----------------------------------------------------------------------------

    def _on_change(self, change: str, alert: Alert) -> None:
        self._alerted.set()
        self._changes[alert.id] = alert
        if change == "opened":
            self._opened.add(alert.id)
        elif change == "resolved":
            self._resolved.add(alert.id)

    def _notify(self) -> None:
        """Tell the listeners what the batch just written changed, one entry per change:
        ``opened``, ``updated``, ``resolved`` or ``withdrawn``."""
        notes, self._notes = self._notes, Notes()
        if not self.listeners:
            return
        out: list[tuple[str, Alert]] = []
        for aid, alert in notes.changes.items():
            if aid in notes.hidden:
                continue
            kinds = ["opened"] if aid in notes.opened else []
            if alert.state == WITHDRAWN:
                kinds.append("withdrawn")
            elif aid in notes.resolved and alert.state == RESOLVED:
                kinds.append("resolved")
            out.extend((k, alert) for k in kinds or ["updated"])
        for listener in self.listeners:
            listener(out)


@dataclass
class Notes:
    """The alert changes a batch holds, told to the listeners once it is written."""

    changes: dict[int, Alert] = field(default_factory=dict)
    opened: set[int] = field(default_factory=set)
    resolved: set[int] = field(default_factory=set)
    hidden: set[int] = field(default_factory=set)


def _stamp(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size)


def _bad_rows(stream_id: int, bad: list[Bad]) -> list[tuple[Any, ...]]:
    return [(stream_id, b.pos, b.reason, b.raw, b.part) for b in bad]


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__

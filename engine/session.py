"""A live session: sources followed as they grow, evaluated continuously, committed in batches.

Every batch commits events together with the offsets of the files they came from, so a process
killed at any moment resumes exactly where its committed data ends (see ``engine.restore``).
Windows also close by the wall clock once every source has caught up, so a silent device is
noticed without new data. Alert changes reach listeners after the batch that holds them is
committed, coalesced per batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from engine import operator
from engine.alert import RESOLVED, WITHDRAWN, Alert
from engine.capture import CaptureStream
from engine.config import Config, ConfigError, SourceConfig, load_config
from engine.episode import NEVER
from engine.evaluator import Evaluator
from engine.event import Bad
from engine.jsonstream import JsonStream
from engine.restore import Restored, StreamRow, restore
from engine.store import Batch, Store
from engine.timestamps import US
from engine.watermark import StreamClock

log = logging.getLogger("iotwatch.session")

Clock = Callable[[], int]
AlertListener = Callable[[list[tuple[str, Alert]]], None]
ConsoleListener = Callable[[str, list[str]], None]


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


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What the console shows at one moment."""

    now: int
    sources: list[SourceStatus]
    counters: list[Counter]


HISTORY = 12  # final window counts kept per track for the console's sparklines
# A partial last line of a file that has been idle this long is decoded when it is a whole record
# (the writer left out the final newline); after GIVE_UP_PARTIAL, whatever it holds (a broken line
# is quarantined). The second is long: a block-buffered writer may leave a line half-written for
# minutes. See docs/live.md.
SETTLE_PARTIAL = 2.0  # seconds
GIVE_UP_PARTIAL = 600.0
ALERT_COMMIT_GAP = 0.01  # seconds: alert changes bring a commit forward at most this often
DEVICES_EVERY = 5.0  # seconds between writes of every device's last-seen time


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
    decoder: Any  # JsonStream | CaptureStream
    clock: StreamClock
    records_base: int = 0  # records committed before this process started
    quarantined: int = 0
    last_event: int | None = None
    released: bool = False  # let go: committed once more, then no longer
    fed_at: float = 0.0  # time.monotonic() when bytes last arrived


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
    ) -> None:
        self.config = config
        self.store = store
        self.clock = clock
        self.poll_interval = poll_interval
        self.commit_interval = commit_interval
        self.commit_rows = commit_rows
        self.tick_interval = tick_interval
        self.history = history  # final counts per track for a console's sparklines; 0: none
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

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Rebuild state from the store and start every source."""
        await self.store.save_config(self.config)
        self.restored = await restore(self.store, self.config)
        self._silences = await operator.silences(self.store, self.clock())
        evaluator = self.evaluator = self.restored.evaluator
        evaluator.book.listener = self._on_change
        evaluator.wall = self.clock()
        for row in self.restored.streams:
            if row.identity:
                self._stored[row.identity] = row
        self._discovering = sum(1 for s in self.config.sources if s.type != "serial")
        self._all_discovered = asyncio.Event()
        if not self._discovering:
            self._all_discovered.set()
        for source, status in zip(self.config.sources, self.status, strict=True):
            runner = self._file_source if source.type != "serial" else self._serial_source
            self._tasks.append(asyncio.create_task(runner(source, status)))
        self._tasks.append(asyncio.create_task(self._ticker()))
        if self.config.path is not None:
            seen = _stamp(self.config.path)  # now, not when the task first runs
            self._tasks.append(asyncio.create_task(self._watch_config(self.config.path, seen)))

    async def run(self, started: Callable[[], None] | None = None) -> None:
        """Start, call ``started()``, then run until ``stop()``; commit what is left on the way
        out."""
        await self.start()
        if started is not None:
            started()
        try:
            await self._stop.wait()
        finally:
            await self.close()

    def stop(self) -> None:
        self._stop.set()

    async def close(self) -> None:
        self._stop.set()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        await self.commit(final=True)

    # -- sources --------------------------------------------------------------------------------

    async def _file_source(self, source: SourceConfig, status: SourceStatus) -> None:
        from engine.tail import FileTail

        assert source.path is not None
        resume = {
            identity: row.offset
            for identity, row in self._stored.items()
            if row.kind == "file" and row.format in (None, source.type)
        }
        tail = FileTail(source.path, resume)
        next_settle = 0.0
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
                    handle = await self._file_stream(source, chunk)
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
                if len(self._batch) >= self.commit_rows:
                    await self.commit()
                if tail.caught_up:
                    await self._sleep(self.poll_interval)
                else:
                    await asyncio.sleep(0)
        except Exception as exc:  # a source never takes the session down
            if first:
                await self._discovered()
            log.exception("file source %s failed", source.path)
            status.state, status.error = "error", str(exc)
            for handle in self.streams.values():
                if handle.kind == "file":
                    handle.clock.holding = False
        finally:
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

    async def _file_stream(self, source: SourceConfig, chunk: Any) -> StreamHandle:
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
            sid = await self.store.add_stream("file", source.type, stream.path, stream.identity)
            clock, base = evaluator.add_stream(stream.path, source.type, source.lateness), 0
        decoder = JsonStream(source.type, chunk.offset)
        handle = StreamHandle(sid, "file", stream.path, stream.identity, decoder, clock, base)
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
        from engine.serial_source import SerialSource

        assert source.port is not None and self.evaluator is not None
        identity = f"serial:{source.port}"
        stored = self._stored.get(identity)
        if stored is not None:
            sid, clock = stored.id, stored.clock
            clock.lateness = None if source.lateness is None else source.lateness * US
        else:
            sid = await self.store.add_stream("serial", "serial", source.port, identity)
            clock = self.evaluator.add_stream(source.port, "serial", source.lateness)
        clock.holding = False  # a live port is read as it happens: it holds nothing
        decoder = CaptureStream(self.clock(), source.device)
        handle = StreamHandle(sid, "serial", source.port, identity, decoder, clock)
        if stored is not None:
            handle.records_base, handle.quarantined = stored.records, stored.quarantined
        self.streams[identity] = handle
        port = SerialSource(source.port, source.baudrate)
        status.streams = 1
        try:
            async for data, received in port.chunks(self._stop):
                status.state = port.state
                status.error = port.error
                if data:
                    self._feed(handle, data, received, status)
                else:  # idle: release console text that waits for a delimiter
                    decoder.host_time = received
                    decoder.finish()
                    self._drain(handle, status)
                splitter = decoder.splitter
                status.extra = {
                    **port.info(),
                    "frames": splitter.frames,
                    "crc_errors": splitter.crc_errors,
                    "bad": splitter.bad,
                }
                if len(self._batch) >= self.commit_rows:
                    await self.commit()
        finally:
            port.stop()
            status.state = "stopped"

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
        take_console = getattr(handle.decoder, "take_console", None)
        if take_console is not None:
            host = handle.decoder.host_time
            lines = take_console()
            batch.console.extend((handle.id, ln.pos, host, ln.text) for ln in lines)
            if lines:
                for listener in self.console_listeners:
                    listener(handle.name, [ln.text for ln in lines])

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)

    # -- the clock and commits --------------------------------------------------------------------

    async def _ticker(self) -> None:
        """Close windows by the wall clock and commit, on a steady beat; an alert change brings
        the next commit forward, so it reaches listeners within a few milliseconds."""
        # Not before every file source has claimed its files: restored streams hold nothing
        # until then, and the wall clock would close windows their backlog still fills.
        await self._all_discovered.wait()
        next_commit = 0.0
        while not self._stop.is_set():
            assert self.evaluator is not None
            self.evaluator.advance(self.clock())
            now = time.monotonic()
            if now >= next_commit or self._alerted.is_set():
                self._alerted.clear()
                await self.commit()
                next_commit = now + self.commit_interval
            await self._wait(min(self.tick_interval, self.commit_interval))
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

    async def commit(self, final: bool = False) -> None:
        """Write the pending batch with every stream's offset in one transaction, then tell the
        listeners what changed."""
        evaluator = self.evaluator
        if evaluator is None:
            return
        async with self._lock:
            batch, self._batch = self._batch, Batch()
            # New devices at once; every device's first/last seen every few seconds.
            everyone = final or time.monotonic() >= self._devices_due
            if everyone:
                self._devices_due = time.monotonic() + DEVICES_EVERY
            devices = evaluator.devices.values() if everyone else evaluator.new_devices
            group_of = self.config.devices.group_of
            batch.devices = [
                (d.id, d.name, group_of(d.name), int(d.declared), d.first, d.last) for d in devices
            ]
            evaluator.new_devices = []
            # What listeners hear after this commit: the changes this batch holds.
            changes, opened, resolved = self._changes, self._opened, self._resolved
            self._changes, self._opened, self._resolved = {}, set(), set()
            # An alert opened and withdrawn between two commits was never shown: it is neither
            # stored nor announced.
            hidden = {i for i in opened if changes[i].state == WITHDRAWN}
            book = evaluator.book
            batch.alerts = [a for a in book.take_changes() if a.id not in hidden]
            batch.amendments = [r for r in book.take_amendments() if r[0] not in hidden]
            if self._silences:
                now = self.clock()
                self._silences = [s for s in self._silences if s.until > now]
                batch.silenced = [
                    a.id
                    for a in batch.alerts
                    if any(s.covers(a.rule.id, a.device, a.value, now) for s in self._silences)
                ]
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
                for h in self.streams.values()
            ]
            for identity in [i for i, h in self.streams.items() if h.released]:
                del self.streams[identity]
            if not (len(batch) or batch.devices or batch.alerts) and not final:
                return
            await self.store.write(batch)
            self._notify(changes, opened, resolved, hidden)

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
            for track in dev.tracks.values():
                if track.stop != NEVER:
                    continue
                index = max(now // track.size, track.next)
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
        return Snapshot(now, [copy.copy(s) for s in self.status], counters)

    def add_console_listener(self, listener: ConsoleListener) -> None:
        """``listener(port, lines)`` hears every console line a board prints."""
        self.console_listeners.append(listener)

    async def apply_config(self, config: Config) -> None:
        """Use ``config`` from now on (rules from the next window, allow-lists from the next
        event) and store it. Sources are not restarted: a changed [[sources]] table takes effect
        at the next start."""
        await self.commit()
        assert self.evaluator is not None
        self.evaluator.reconfigure(config)
        self.evaluator.configure_sources(config)
        self.config = config
        await self.store.save_config(config)
        await self.commit()

    async def silence(
        self, rule: int, device: str, value: str | None, until: int
    ) -> operator.Silence:
        """Silence (rule, device[, value]) until ``until`` (µs); covered alerts are marked."""
        entry = await operator.silence(self.store, rule, device, value, self.clock(), until)
        self._silences.append(entry)
        return entry

    # -- alert changes ----------------------------------------------------------------------------

    def _on_change(self, change: str, alert: Alert) -> None:
        self._alerted.set()
        self._changes[alert.id] = alert
        if change == "opened":
            self._opened.add(alert.id)
        elif change == "resolved":
            self._resolved.add(alert.id)

    def _notify(
        self, changes: dict[int, Alert], opened: set[int], resolved: set[int], hidden: set[int]
    ) -> None:
        """Tell the listeners what the commit just written changed, one entry per change:
        ``opened``, ``updated``, ``resolved`` or ``withdrawn``."""
        if not self.listeners:
            return
        out: list[tuple[str, Alert]] = []
        for aid, alert in changes.items():
            if aid in hidden:
                continue
            kinds = ["opened"] if aid in opened else []
            if alert.state == WITHDRAWN:
                kinds.append("withdrawn")
            elif aid in resolved and alert.state == RESOLVED:
                kinds.append("resolved")
            out.extend((k, alert) for k in kinds or ["updated"])
        for listener in self.listeners:
            listener(out)


def _stamp(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size)


def _bad_rows(stream_id: int, bad: list[Bad]) -> list[tuple[Any, ...]]:
    return [(stream_id, b.pos, b.reason, b.raw) for b in bad]

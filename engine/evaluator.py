"""The windowed evaluation engine: events in, alerts out (SPEC §4, contract version 2).

Results depend only on the events of each stream and each device's own order within its stream:
not on chunking, on the order in which streams are read, or on how the devices of a stream
interleave. Every device keeps its own clock: an event is *expired* (stored, not counted) only
when it is more than ``horizon`` older than what the same stream already showed for the same
device, or, live, than the wall clock. Every other event is counted, however late it arrives.

Two modes share the counting rules:

- **replay** (default): windows are counted and judged once, at :meth:`Evaluator.finish`, which
  is what a replay reports (final episodes only);
- **incremental** (a live session, and a restart rebuilding one): windows are judged as each
  data source completes them, alerts are raised and resolved as that happens, and an event that
  lands in a judged window amends it (see :class:`engine.episode.RangeTrack`).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from engine import catalogue as c
from engine.alert import OPEN, RESOLVED, Alert, AlertBook
from engine.config import Config
from engine.episode import NEVER, AllowEpisodes, RangeTrack, final_runs
from engine.event import MAX_RAW, Bad, Event
from engine.timestamps import US
from engine.watermark import DATA_SOURCES, StreamClock, Watermark, feeds_of

Matcher = Callable[[str], bool]
_PROTOCOLS = frozenset(c.PROTOCOLS)


def _protocol_at(connects: list[tuple[int, str]], t: int) -> str | None:
    """The protocol of the latest connection at or before ``t``."""
    i = bisect.bisect_right(connects, (t, "\uffff"))
    return connects[i - 1][1] if i else None


RangeSpec = tuple[c.RuleType, int, int, int, str]  # rule, min, max, window (µs), severity
# Replay counts every range rule of a device in one dict keyed by window index * RULE_SPAN + rule
# id (see Device.counts); rule ids are below it.
RULE_SPAN = 128
assert all(rt.id < RULE_SPAN for rt in c.BY_NAME.values())


class Plan:
    """The enabled rules of one security group, keyed by rule id."""

    __slots__ = ("allow", "name", "range", "sizes")

    def __init__(self, config: Config, key: str) -> None:
        group = config.group(key)
        self.name = group.name
        self.range: dict[int, RangeSpec] = {}
        self.allow: dict[int, tuple[c.RuleType, Matcher, str]] = {}
        for name, rule in group.range_rules.items():
            if rule.enabled:
                rt = c.BY_NAME[name]
                self.range[rt.id] = (rt, rule.min, rule.max, rule.window * US, rule.severity)
        for name, rule in group.allow_rules.items():
            if rule.enabled:
                rt = c.BY_NAME[name]
                self.allow[rt.id] = (rt, rule.matcher.allows, rule.severity)
        # rule id -> window size (µs) of the enabled range rules
        self.sizes: dict[int, int] = {rule_id: spec[3] for rule_id, spec in self.range.items()}


class Counts:
    """Replay: the window counts of one (range rule, device), judged at the end."""

    __slots__ = ("counts", "size", "spec")

    def __init__(self, spec: RangeSpec) -> None:
        self.spec = spec
        self.size = spec[3]
        self.counts: dict[int, int] = {}


class Device:
    """What the engine knows of one device."""

    __slots__ = (
        "connects",
        "counts",
        "declared",
        "first",
        "id",
        "last",
        "name",
        "plan",
        "tracks",
        "unknown",
    )

    def __init__(self, id: int, name: str, plan: Plan, declared: bool) -> None:
        self.id = id
        self.name = name
        self.plan = plan
        self.declared = declared
        self.first: int | None = None  # known from (µs); None: not known yet
        self.last: int | None = None  # latest non-expired event time
        # rule id -> RangeTrack (incremental, the newest version of the rule) or Counts (replay)
        self.tracks: dict[int, Any] = {}
        # Replay: the window counts of all its range rules, keyed by window index * RULE_SPAN +
        # rule id, added into the Counts of ``tracks`` at the end. One dict per device rather
        # than one per (rule, device): a replay touches the devices in no order, and one object
        # fewer to reach per event is less time waiting for memory (1M hub-events lines: 1.2 s
        # instead of 1.7 s of evaluation).
        self.counts: dict[int, int] = {}
        # (time, protocol) of the device's connection records, from every hub stream, in order
        self.connects: list[tuple[int, str]] = []
        # messages without a protocol: [time, kind, weight, protocol counted under (live)]
        self.unknown: list[list[Any]] = []


class Evaluator:
    """Evaluates the rules of a configuration over streams of events."""

    wall: int | None = None  # the wall clock of a live session (µs); None in replay

    def __init__(
        self,
        config: Config,
        book: AlertBook | None = None,
        device_ids: dict[str, int] | None = None,
        *,
        incremental: bool = False,
    ) -> None:
        self.config = config
        self.incremental = incremental
        self.book = book if book is not None else AlertBook(live=incremental)
        self.horizon = config.horizon * US
        self.quiet = config.quiet * US
        self.watermark = Watermark(config.lateness * US)
        self.devices: dict[str, Device] = {}
        self.plans: dict[str, Plan] = {}
        self.allow: dict[tuple[int, str, str], AllowEpisodes] = {}
        self.t_first: int | None = None
        self.events = 0
        self.expired = 0
        self.new_devices: list[Device] = []  # devices created since the store last took them
        # Events that made evaluation fail (a bug's trace, never a stop): the caller quarantines
        # them. Their effect on the state is what they did before failing.
        self.poisoned: list[tuple[Event, Exception]] = []
        # Ids of devices the store already knows (a restart keeps them).
        self._device_ids = dict(device_ids or {})
        self._next_device_id = max(self._device_ids.values(), default=0) + 1
        # incremental: the tracks by (data source, window size), and how far the wall clock
        # completed each group
        self._tracks_by_size: dict[tuple[str, int], list[RangeTrack]] = {}
        self._swept: dict[tuple[str, int], int] = {}
        self._marks: dict[str, int | None] = {}

    # -- streams ----------------------------------------------------------------------------------

    def add_stream(
        self,
        name: str,
        fmt: str | None = None,
        lateness: int | None = None,
        hub_lines: bool = False,
    ) -> StreamClock:
        """A new stream of format ``fmt`` (None: not known yet) whose source waits ``lateness``
        seconds (None: ``[engine] lateness``); ``hub_lines``: a serial stream whose console
        patterns make IoT Hub events."""
        late = None if lateness is None else lateness * US
        return self.watermark.add(name, feeds_of(fmt, hub_lines), late)

    @staticmethod
    def set_format(stream: StreamClock, fmt: str | None) -> None:
        """The stream's format became known (sniffed from its first record)."""
        if not stream.feeds:
            stream.feeds = feeds_of(fmt)

    def finish_stream(self, stream: StreamClock) -> None:
        """A replay input has ended: it no longer holds any data source."""
        stream.holding = False

    def configure_sources(self, config: Config) -> None:
        """Live: the configured sources decide which data sources the wall clock completes, and
        how long after a window's end (the largest lateness of the sources feeding each)."""
        wall: dict[str, int] = {}
        for source in config.sources:
            lateness = config.lateness_of(source) * US
            patterns = source.console_patterns() if source.type == "serial" else None
            for ds in feeds_of(source.type, patterns is not None and patterns.hub):
                wall[ds] = max(wall.get(ds, 0), lateness)
        self.watermark.wall_lateness = wall

    # -- events -----------------------------------------------------------------------------------

    def process(
        self,
        stream: StreamClock,
        events: Iterable[Event],
        rows: list[Any] | None = None,
        stream_id: int = 0,
        expired_flags: Sequence[bool] | None = None,
    ) -> int:
        """Evaluate ``events`` of ``stream`` in stream order; return how many were expired.

        With ``rows``, append the store's row for each event (``engine.store.EventRow``): the
        event's fields but its device name, after ``(stream_id, device id, expired)``.
        ``expired_flags`` forces expiry (a restart re-reads
        stored events as they were recorded).
        """
        devices = self.devices
        horizon = self.horizon
        seen = stream.devices
        wall = self.wall
        floor = wall - horizon if wall is not None else None
        incremental = self.incremental
        if incremental:
            # One mark per data source for the whole batch: only this stream moves during it,
            # so a mark can only be lower than the true one, and judging later is always safe.
            marks = self._marks = {ds: self.watermark.mark(ds, wall) for ds in DATA_SOURCES}
        latest = stream.latest
        n = expired = 0
        for i, ev in enumerate(events):
            n += 1
            try:
                t, device, name, rule, unauthorized, allow, value, weight, host, pos = ev
                dev = devices.get(device)
                if dev is None:
                    dev = self._device(device)
                mine = seen.get(device)
                if mine is None or t > mine:
                    if not host:  # the host's receive time is not the device's clock
                        seen[device] = t
                    is_expired = floor is not None and t < floor
                else:
                    is_expired = t < mine - horizon or (floor is not None and t < floor)
                if expired_flags is not None:
                    is_expired = expired_flags[i]
                if latest is None or t > latest:
                    latest = stream.latest = t
                if is_expired:
                    expired += 1
                else:
                    if dev.first is None or t < dev.first:
                        self._known(dev, t)
                    if dev.last is None or t > dev.last:
                        dev.last = t
                    if incremental:
                        if rule:
                            # The common case, inlined: one window of the newest rule version.
                            track = dev.tracks.get(rule)
                            if track is not None:
                                index = t // track.size
                                if index != track.cur:
                                    track.cur = index
                                    mark = marks[track.source]
                                    if mark is not None and mark // track.size > track.next:
                                        track.finalize(mark // track.size, floor)
                                if track.next <= index < track.stop:
                                    pending = track.pending
                                    count = pending.get(index, 0) + weight
                                    pending[index] = count
                                    if count > track.max:
                                        track.above_max(index, count)
                                else:
                                    self._count(track, t, weight)
                            elif rule >= c.CONNECT:
                                self._protocol(dev, rule, t, weight, value)
                    elif rule:
                        size = dev.plan.sizes.get(rule)
                        if size is not None:
                            key = t // size * RULE_SPAN + rule
                            counts = dev.counts
                            counts[key] = counts.get(key, 0) + weight
                        elif rule >= c.CONNECT:
                            self._protocol(dev, rule, t, weight, value)
                    if unauthorized:
                        self._also_unauthorized(dev, t, weight, floor)
                if allow:
                    self._allow(dev.plan, ev)
                if rows is not None:
                    # The stored row: no device name (the store keeps the device's id), which
                    # would otherwise be packed, piped and unpacked once per event for nothing.
                    rows.append(
                        (
                            stream_id,
                            dev.id,
                            is_expired,
                            t,
                            name,
                            rule,
                            unauthorized,
                            allow,
                            value,
                            weight,
                            host,
                            pos,
                        )
                    )
            except Exception as exc:  # a poison event never stops its stream: the caller
                self.poisoned.append((ev, exc))  # quarantines it (see take_poisoned)
                n -= 1
        stream.events += n
        stream.expired += expired
        self.events += n
        self.expired += expired
        return expired

    def take_poisoned(self) -> list[Bad]:
        """The events that made evaluation fail since the last call, as quarantine entries."""
        out, self.poisoned = self.poisoned, []
        return [
            Bad(ev.pos, f"not evaluable ({type(exc).__name__})", repr(ev).encode()[:MAX_RAW])
            for ev, exc in out
        ]

    def _also_unauthorized(self, dev: Device, t: int, weight: int, floor: int | None) -> None:
        """An event that failed as unauthorized counts toward UnauthorizedOperations… too."""
        track = dev.tracks.get(c.UNAUTHORIZED)
        if track is None:
            return
        index = t // track.size
        if not self.incremental:
            track.counts[index] = track.counts.get(index, 0) + weight
            return
        if index != track.cur:
            track.cur = index
            mark = self._marks[track.source]
            if mark is not None and mark // track.size > track.next:
                track.finalize(mark // track.size, floor)
        self._count(track, t, weight)

    def _count(self, track: RangeTrack, t: int, weight: int) -> None:
        """Count into the version of the rule that evaluates ``t``'s window (a rule change
        leaves earlier windows to the track it replaced); not at all when no version does."""
        index = t // track.size
        while index < track.start and track.previous is not None:
            track = track.previous
            index = t // track.size
        if track.start <= index < track.stop:
            track.add(index, weight, self.wall)

    # -- the protocol of a hub message (SPEC §2) -------------------------------------------------

    def _protocol(self, dev: Device, rule: int, t: int, weight: int, value: str | None) -> None:
        """A connection record, or a message without a protocol: it takes the protocol of the
        device's latest connection at or before its time, from any hub stream. A replay
        resolves them at the end; live, a connection that arrives later moves the messages it
        now covers to its protocol (an amendment like any other)."""
        if rule == c.CONNECT:
            if value in _PROTOCOLS:
                bisect.insort(dev.connects, (t, value))
                if self.incremental and dev.unknown:
                    self._reassign(dev)
            return
        if rule not in c.BY_PROTOCOL:
            return
        if not self.incremental:
            dev.unknown.append([t, rule, weight, None])
            return
        protocol = _protocol_at(dev.connects, t)
        dev.unknown.append([t, rule, weight, protocol])
        if protocol is not None:
            self._count_as(dev, rule, protocol, t, weight)
        if len(dev.unknown) > 64 and self.wall is not None:
            # Live: no connection can reach a message beyond the horizon any more.
            floor = self.wall - self.horizon
            dev.unknown = [m for m in dev.unknown if m[0] >= floor]

    def _reassign(self, dev: Device) -> None:
        """Live: move the messages whose protocol a new connection changed."""
        for message in dev.unknown:
            t, kind, weight, old = message
            new = _protocol_at(dev.connects, t)
            if new != old:
                message[3] = new
                if old is not None:
                    self._count_as(dev, kind, old, t, -weight)
                if new is not None:
                    self._count_as(dev, kind, new, t, weight)

    def _count_as(self, dev: Device, kind: int, protocol: str, t: int, weight: int) -> None:
        track = dev.tracks.get(c.BY_PROTOCOL[kind][protocol])
        if track is not None:
            self._count(track, t, weight)

    def _resolve_protocols(self, dev: Device) -> None:
        """Replay, at the end: count each message without a protocol under its connection's."""
        for t, kind, weight, _ in dev.unknown:
            protocol = _protocol_at(dev.connects, t)
            if protocol is None:
                continue
            counts = dev.tracks.get(c.BY_PROTOCOL[kind][protocol])
            if counts is not None:
                index = t // counts.size
                counts.counts[index] = counts.counts.get(index, 0) + weight

    def _allow(self, plan: Plan, ev: Event) -> None:
        spec = plan.allow.get(ev.allow)
        if spec is None:
            return
        rule, allows, severity = spec
        value = ev.value or ""
        if allows(value):
            return
        key = (ev.allow, ev.device, value)
        episodes = self.allow.get(key)
        if episodes is None:
            episodes = self.allow[key] = AllowEpisodes(
                self.book, rule, ev.device, value, plan.name, severity, self.quiet
            )
        episodes.violation(ev.time, ev.weight, self.wall)

    # -- devices ----------------------------------------------------------------------------------

    def _plan(self, device: str) -> Plan:
        key = self.config.devices.group_of(device)
        plan = self.plans.get(key)
        if plan is None:
            plan = self.plans[key] = Plan(self.config, key)
        return plan

    def _device(self, name: str) -> Device:
        known = self._device_ids.get(name)
        if known is None:
            known = self._next_device_id
            self._next_device_id += 1
        dev = Device(known, name, self._plan(name), name in self.config.devices.declared)
        if not self.incremental:
            dev.tracks = {rule_id: Counts(spec) for rule_id, spec in dev.plan.range.items()}
        self.devices[name] = dev
        self.new_devices.append(dev)
        return dev

    def _known(self, dev: Device, t: int) -> None:
        """``t`` is the earliest non-expired event of ``dev`` so far (or of the whole input)."""
        if self.t_first is None or t < self.t_first:
            self.t_first = t
            for name in self.config.devices.declared:
                declared = self.devices.get(name) or self._device(name)
                self._known_from(declared, t)
        if dev.first is None or t < dev.first:
            self._known_from(dev, t)

    def _known_from(self, dev: Device, t: int) -> None:
        if dev.first is not None and t >= dev.first:
            return
        earlier = dev.first is not None
        dev.first = t
        if not self.incremental:
            return
        if earlier:
            for track in dev.tracks.values():
                while track is not None:
                    track.known_from(t // track.size, self.wall)
                    track = track.previous
            return
        floor = self.wall - self.horizon if self.wall is not None else None
        for rule_id, spec in dev.plan.range.items():
            track = self._track(dev, spec, t // spec[3])
            dev.tracks[rule_id] = track
            swept = self._swept.get((track.source, track.size))
            if swept is not None:  # live: windows the wall clock completed are complete
                track.finalize(swept, floor)

    def _track(self, dev: Device, spec: RangeSpec, start: int) -> RangeTrack:
        rule, lo, hi, size, severity = spec
        assert dev.first is not None
        track = RangeTrack(
            self.book,
            rule,
            dev.name,
            dev.plan.name,
            severity,
            lo,
            hi,
            size,
            dev.first // size,
            start,
        )
        self._tracks_by_size.setdefault((track.source, size), []).append(track)
        return track

    # -- configuration changes --------------------------------------------------------------------

    def reconfigure(self, config: Config, now: int | None = None) -> None:
        """Apply a new configuration while running: allow-lists from the next event, range rules
        and device groups from the next window (of the wall clock, else of the latest event),
        timing at once. ``now`` (µs) is the moment of the change (default: the wall clock, else
        the latest event). (Sources are the session's: see :meth:`configure_sources`.)"""
        self.config = config
        self.watermark.lateness = config.lateness * US
        self.horizon = config.horizon * US
        self.quiet = config.quiet * US
        for episodes in self.allow.values():
            episodes.quiet = self.quiet
        self.plans = {}
        if now is None:
            now = (
                self.wall
                if self.wall is not None
                else max((d.last for d in self.devices.values() if d.last is not None), default=0)
            )
        for dev in self.devices.values():
            dev.plan = self._plan(dev.name)
            dev.declared = dev.name in config.devices.declared
            if dev.first is not None and self.incremental:
                self._replan_tracks(dev, now)

    def _replan_tracks(self, dev: Device, now: int) -> None:
        plan = dev.plan
        for rule_id in set(dev.tracks) | set(plan.range):
            newest: RangeTrack | None = dev.tracks.get(rule_id)
            active = newest if newest is not None and newest.stop == NEVER else None
            spec = plan.range.get(rule_id)
            if active is not None and spec is not None:
                _rule, lo, hi, size, severity = spec
                same = (active.min, active.max, active.size, active.severity, active.group)
                if same == (lo, hi, size, severity, plan.name):
                    continue
            if active is None and spec is None:
                continue  # disabled before, still disabled
            size_now = active.size if active is not None else spec[3]  # type: ignore[index]
            boundary = (now // size_now + 1) * size_now
            if spec is not None:
                # The new rule starts with its first whole window from the boundary on; the old
                # one keeps evaluating until then, so no time goes unwatched.
                boundary = -(-boundary // spec[3]) * spec[3]
            moved: dict[int, int] = {}
            if active is not None:
                moved = active.retire(-(-boundary // active.size))
            if spec is None:
                continue  # the retired track stays in place: its windows can still be amended
            track = self._track(dev, spec, boundary // spec[3])
            track.previous = newest  # a disabled (retired) version stays in the chain too
            if active is not None and active.size == track.size:
                for index, count in moved.items():
                    track.add(index, count, self.wall)
            dev.tracks[rule_id] = track

    # -- the wall clock ---------------------------------------------------------------------------

    def advance(self, now: int) -> None:
        """Live: complete windows by the wall clock ``now`` (µs) where no holding stream holds
        them, and resolve allow-list alerts whose quiet period has passed."""
        self.wall = now
        floor = now - self.horizon
        marks = {ds: self.watermark.mark(ds, now) for ds in DATA_SOURCES}
        for (source, size), tracks in self._tracks_by_size.items():
            mark = marks[source]
            if mark is None:
                continue
            upto = mark // size
            if upto > self._swept.get((source, size), -1):
                self._swept[(source, size)] = upto
                for track in tracks:
                    track.finalize(upto, floor)
        for episodes in self.allow.values():
            episodes.settle(now)

    # -- closing ----------------------------------------------------------------------------------

    def finish(self) -> list[Alert]:
        """End of a replay: windows ending at or before ``T_last`` of their data source are
        complete; allow-list alerts are settled against ``T_last(Agent)``. Returns every alert
        that is not withdrawn, in SPEC order."""
        last = {ds: self.watermark.last(ds) for ds in DATA_SOURCES}
        for dev in self.devices.values():
            if dev.counts:
                self._merge_counts(dev)
            if dev.unknown and not self.incremental:
                self._resolve_protocols(dev)
            if dev.first is None:
                continue
            for track in dev.tracks.values():
                if self.incremental:
                    while track is not None:
                        t_last = last[track.source]
                        if t_last is not None:
                            track.finalize(t_last // track.size)
                        track = track.previous
                else:
                    self._judge(dev, track, last[track.spec[0].source])
        t_agent = last[c.AGENT]
        if t_agent is not None:
            for episodes in self.allow.values():
                episodes.settle(t_agent)
        return sorted(self.book.alerts.values(), key=lambda a: a.key)

    @staticmethod
    def _merge_counts(dev: Device) -> None:
        """Replay: add the device's counts (see Device.counts) into the Counts of its rules."""
        tracks = dev.tracks
        for key, n in dev.counts.items():
            index, rule = divmod(key, RULE_SPAN)
            counts = tracks[rule].counts
            counts[index] = counts.get(index, 0) + n
        dev.counts = {}

    def _judge(self, dev: Device, track: Counts, t_last: int | None) -> None:
        """Replay: the episodes of one (rule, device) from its final counts."""
        rule, lo, hi, size, severity = track.spec
        assert dev.first is not None
        upto = t_last // size if t_last is not None else -NEVER
        book = self.book
        for first, counts, resolved in final_runs(track.counts, dev.first // size, upto, lo, hi):
            alert = book.new(rule, dev.name, dev.plan.name, severity)
            alert.first, alert.size, alert.counts = first, size, counts
            alert.min, alert.max = lo, hi
            alert.span_windows()
            alert.state = RESOLVED if resolved else OPEN
            book.opened(alert)

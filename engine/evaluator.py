"""The windowed evaluation engine: events in, alerts out (SPEC §4).

Results depend only on the set of events of each stream and the order within each stream, not on
how streams are interleaved or chunked: windows become final only behind the watermark, where no
non-late event can still arrive, and allow-list episodes merge violations in any order.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from engine import catalogue as c
from engine.alert import Alert, AlertBook
from engine.config import Config
from engine.episode import NEVER, AllowEpisodes, RangeTrack
from engine.event import Event
from engine.timestamps import US
from engine.watermark import StreamClock, Watermark

Matcher = Callable[[str], bool]


def _owner(track: RangeTrack | None, t: int) -> RangeTrack | bool | None:
    """The track that evaluates ``t``'s window: ``track``, or a retired predecessor; None when no
    track evaluates it (the rule was disabled); False when that window is already final."""
    while track is not None:
        index = t // track.size
        if index >= track.stop:
            return None
        if index >= track.next:
            return track
        if track.previous is None:
            return False
        track = track.previous
    return None


class Plan:
    """The enabled rules of one security group, keyed by rule id."""

    __slots__ = ("allow", "name", "range")

    def __init__(self, config: Config, key: str) -> None:
        group = config.group(key)
        self.name = group.name
        self.range: dict[int, tuple[c.RuleType, int, int, int, str]] = {}
        self.allow: dict[int, tuple[c.RuleType, Matcher, str]] = {}
        for name, rule in group.range_rules.items():
            if rule.enabled:
                rt = c.BY_NAME[name]
                self.range[rt.id] = (rt, rule.min, rule.max, rule.window * US, rule.severity)
        for name, rule in group.allow_rules.items():
            if rule.enabled:
                rt = c.BY_NAME[name]
                self.allow[rt.id] = (rt, rule.matcher.allows, rule.severity)


class Device:
    """What the engine knows of one device."""

    __slots__ = ("declared", "first", "id", "last", "name", "plan", "tracks")

    def __init__(self, id: int, name: str, plan: Plan, declared: bool) -> None:
        self.id = id
        self.name = name
        self.plan = plan
        self.declared = declared
        self.first: int | None = None  # known from (µs); None: not known yet
        self.last: int | None = None  # latest non-late event time
        self.tracks: dict[int, RangeTrack] = {}


class Evaluator:
    """Evaluates the rules of a configuration over streams of events."""

    def __init__(
        self,
        config: Config,
        book: AlertBook | None = None,
        device_ids: dict[str, int] | None = None,
    ) -> None:
        self.config = config
        self.book = book if book is not None else AlertBook()
        self.lateness = config.lateness * US
        self.quiet = config.quiet * US
        self.watermark = Watermark(self.lateness)
        self.devices: dict[str, Device] = {}
        self.plans: dict[str, Plan] = {}
        self.allow: dict[tuple[int, str, str], AllowEpisodes] = {}
        self.t_first: int | None = None
        self.t_last: int | None = None
        self.events = 0
        self.late = 0
        self.new_devices: list[Device] = []  # devices created since the store last took them
        # Ids of devices the store already knows (a restart keeps them).
        self._device_ids = dict(device_ids or {})
        self._next_device_id = max(self._device_ids.values(), default=0) + 1
        self._tracks_by_size: dict[int, list[RangeTrack]] = {}
        self.history = 0  # final counts each track keeps (a live console's sparklines); 0: none
        self._swept: dict[int, int] = {}

    # -- streams ----------------------------------------------------------------------------------

    def add_stream(self, name: str) -> StreamClock:
        return self.watermark.add(name)

    def finish_stream(self, stream: StreamClock) -> None:
        """A replay input has ended: it no longer holds the watermark."""
        stream.holding = False

    # -- events -----------------------------------------------------------------------------------

    def process(
        self,
        stream: StreamClock,
        events: Iterable[Event],
        rows: list[Any] | None = None,
        stream_id: int = 0,
        late_flags: Sequence[bool] | None = None,
    ) -> list[bool]:
        """Evaluate ``events`` of ``stream`` in stream order; return whether each was late.

        With ``rows``, append the store's row for each event: ``(stream_id, device id, late)``
        followed by the event's fields. ``late_flags`` forces lateness (a restart re-reads stored
        events with the lateness they were recorded with).
        """
        lateness = self.lateness
        devices = self.devices
        # One watermark for the whole batch: only this stream advances during it, so the value
        # can only be lower than the true one, and finalizing less early is always safe.
        self._mark = self.watermark.value(self.wall)
        # Live: no window ends after this, so a later event cannot be in a window the wall
        # clock closed.
        closed_until = (
            max((upto * size for size, upto in self._swept.items()), default=None)
            if self.wall is not None
            else None
        )
        unauthorized_rule = c.UNAUTHORIZED
        latest = stream.latest
        t_last = self.t_last
        flags: list[bool] = []
        n = late = 0
        for ev in events:
            t, device, _name, rule, unauthorized, allow, _value, weight, _host, _pos = ev
            dev = devices.get(device)
            if dev is None:
                dev = self._device(device)
            is_late = False
            if (latest is not None and t < latest - lateness) or (
                late_flags is not None and late_flags[n]
            ):
                is_late = True
            elif (
                closed_until is not None
                and t < closed_until
                and (rule or unauthorized)
                and self._wall_late(dev, ev)
            ):
                is_late = True
                if latest is None or t > latest:
                    latest = stream.latest = t
            else:
                if latest is None or t > latest:
                    latest = stream.latest = t
                if dev.first is None or t < dev.first:
                    self._known(dev, t)
                if dev.last is None or t > dev.last:
                    dev.last = t
                if t_last is None or t > t_last:
                    t_last = self.t_last = t
                if unauthorized:
                    tracks = dev.tracks
                    first = tracks.get(rule) if rule else None
                    second = tracks.get(unauthorized_rule)
                    if (first is not None or second is not None) and not self._count(
                        first, second, t, weight
                    ):
                        is_late = True
                elif rule:
                    # The common case, inlined: one window of one rule.
                    track = dev.tracks.get(rule)
                    if track is not None:
                        index = t // track.size
                        if index != track.cur:
                            track.cur = index
                            mark = self._mark
                            if mark is not None and mark // track.size > track.next:
                                track.finalize(mark // track.size)
                        if index < track.next or index >= track.stop:
                            # A window before a rule change belongs to the track it replaced.
                            is_late = not self._count_retired(track, t, weight)
                        else:
                            pending = track.pending
                            count = pending.get(index, 0) + weight
                            pending[index] = count
                            if count > track.max:
                                track.above_max(index, count)
            if allow:
                self._allow(dev.plan, ev)
            if is_late:
                late += 1
            flags.append(is_late)
            if rows is not None:
                rows.append((stream_id, dev.id, is_late) + ev)  # noqa: RUF005 - concatenation is faster
            n += 1
        stream.events += n
        stream.late += late
        self.events += n
        self.late += late
        return flags

    def _count(self, first: RangeTrack | None, second: RangeTrack | None, t: int, w: int) -> bool:
        """Count into the event's windows; False when a window is already final (late)."""
        targets = []
        for track in (first, second):
            if track is None:
                continue
            index = t // track.size
            if index != track.cur:
                track.cur = index
                mark = self._mark
                if mark is not None:
                    track.finalize(mark // track.size)
            target = _owner(track, t)
            if target is False:
                return False
            if target is not None:
                targets.append(target)
        for track in targets:
            track.add(t // track.size, w)
        return True

    def _count_retired(self, track: RangeTrack, t: int, w: int) -> bool:
        """Count into the retired track that still owns ``t``'s window; False: late."""
        target = _owner(track, t)
        if target is False:
            return False
        if target is not None:
            target.add(t // target.size, w)
        return True

    wall: int | None = None  # the wall clock of a live session (µs); None in replay
    _mark: int | None = None  # the watermark in force for the batch being processed

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
        self.devices[name] = dev
        self.new_devices.append(dev)
        return dev

    def _known(self, dev: Device, t: int) -> None:
        """``t`` is the earliest non-late event of ``dev`` so far (or of the whole input)."""
        if self.t_first is None or t < self.t_first:
            self.t_first = t
            for name in self.config.devices.declared:
                declared = self.devices.get(name) or self._device(name)
                self._known_from(declared, t)
        if dev.first is None or t < dev.first:
            self._known_from(dev, t)

    def _known_from(self, dev: Device, t: int) -> None:
        if dev.first is None:
            dev.first = t
            book, name = self.book, dev.plan.name
            for rule_id, (rule, lo, hi, size, severity) in dev.plan.range.items():
                track = RangeTrack(book, rule, dev.name, name, severity, lo, hi, size, t // size)
                if self.history:
                    track.history = deque(maxlen=self.history)
                dev.tracks[rule_id] = track
                self._tracks_by_size.setdefault(size, []).append(track)
                if size in self._swept:  # live: windows the wall clock closed are final
                    track.finalize(self._swept[size])
        elif t < dev.first:
            dev.first = t
            for track in dev.tracks.values():
                track.known_from(t // track.size)

    # -- configuration changes --------------------------------------------------------------------

    def reconfigure(self, config: Config) -> None:
        """Apply a new configuration while running: allow-lists from the next event, range rules
        and device groups from the next window (of the wall clock, else of the latest event)."""
        self.config = config
        self.lateness = self.watermark.lateness = config.lateness * US
        self.quiet = config.quiet * US
        for episodes in self.allow.values():
            episodes.quiet = self.quiet
        self.plans = {}
        now = self.wall if self.wall is not None else (self.t_last or 0)
        for dev in self.devices.values():
            dev.plan = self._plan(dev.name)
            dev.declared = dev.name in config.devices.declared
            if dev.first is not None:
                self._replan_tracks(dev, now)

    def _replan_tracks(self, dev: Device, now: int) -> None:
        plan = dev.plan
        for rule_id in set(dev.tracks) | set(plan.range):
            old = dev.tracks.get(rule_id)
            if old is not None and old.stop != NEVER:
                old = None if rule_id not in plan.range else old  # already retired
            spec = plan.range.get(rule_id)
            if old is not None and spec is not None:
                _rule, lo, hi, size, severity = spec
                if (old.min, old.max, old.size, old.severity, old.group) == (
                    lo,
                    hi,
                    size,
                    severity,
                    plan.name,
                ):
                    continue
            if old is None and spec is None:
                continue  # disabled before, still disabled
            size_now = old.size if old is not None else spec[3]  # type: ignore[index]
            boundary = (now // size_now + 1) * size_now
            if spec is not None:
                # The new rule starts with its first whole window from the boundary on; the old
                # one keeps evaluating until then, so no time goes unwatched.
                boundary = -(-boundary // spec[3]) * spec[3]
            moved: dict[int, int] = {}
            if old is not None:
                moved = old.retire(-(-boundary // old.size))
            if spec is None:
                continue  # the retired track stays in place to finish its windows
            rule, lo, hi, size, severity = spec
            track = RangeTrack(
                self.book, rule, dev.name, plan.name, severity, lo, hi, size, dev.first // size
            )  # type: ignore[operator]
            track.next = max(track.first, boundary // size)
            if self.history:
                track.history = deque(maxlen=self.history)
            track.previous = old
            if old is not None and old.size == size:
                for index, count in moved.items():
                    track.add(index, count)
            dev.tracks[rule_id] = track
            self._tracks_by_size.setdefault(size, []).append(track)

    # -- the wall clock ---------------------------------------------------------------------------

    def _wall_late(self, dev: Device, ev: Event) -> bool:
        """Live: a window the event would count into was already closed by the wall clock."""
        swept = self._swept
        for rule in (ev.rule, c.UNAUTHORIZED if ev.unauthorized else 0):
            spec = dev.plan.range.get(rule) if rule else None
            if spec is not None and ev.time // spec[3] < swept.get(spec[3], -1):
                return True
        return False

    def advance(self, now: int) -> None:
        """Live: close windows by the wall clock ``now`` (µs) where no holding stream holds them,
        and resolve allow-list alerts whose quiet period has passed."""
        self.wall = now
        mark = self.watermark.value(now)
        if mark is not None:
            for size, tracks in self._tracks_by_size.items():
                upto = mark // size
                if upto > self._swept.get(size, -1):
                    self._swept[size] = upto
                    for track in tracks:
                        track.finalize(upto)
        for episodes in self.allow.values():
            episodes.settle(now)

    # -- closing ----------------------------------------------------------------------------------

    def finish(self) -> list[Alert]:
        """End of a replay: windows ending at or before ``T_last`` are complete; every alert's
        state is decided against ``T_last``. Returns all alerts in SPEC order."""
        t_last = self.t_last
        if t_last is not None:
            for dev in self.devices.values():
                for track in dev.tracks.values():
                    track.finalize(t_last // track.size)
            for episodes in self.allow.values():
                episodes.settle(t_last)
        return sorted(self.book.alerts.values(), key=lambda a: a.key)

"""Episodes: how out-of-range windows and allow-list violations become alerts (SPEC §4)."""

from __future__ import annotations

from bisect import bisect_left
from collections import deque

from engine.alert import OPEN, RESOLVED, Alert, AlertBook
from engine.catalogue import RuleType

NEVER = 1 << 62  # a window index no track reaches


class RangeTrack:
    """Window counts and range episodes of one (range rule, device).

    Windows ``>= next`` are not final yet; their counts wait in ``pending``. ``alerts`` are the
    track's unresolved alerts in window order: the first may reach back into final windows (the
    current run), the others lie wholly in pending windows that are already above ``max``
    (raised early). A run only ever grows, so alerts merge but never split.
    """

    __slots__ = (
        "alerts",
        "book",
        "cur",
        "device",
        "first",
        "group",
        "history",
        "max",
        "min",
        "next",
        "pending",
        "previous",
        "rule",
        "severity",
        "size",
        "stop",
    )

    def __init__(
        self,
        book: AlertBook,
        rule: RuleType,
        device: str,
        group: str,
        severity: str,
        lo: int,
        hi: int,
        size: int,
        first: int,
    ) -> None:
        self.book = book
        self.rule = rule
        self.device = device
        self.group = group
        self.severity = severity
        self.min = lo
        self.max = hi
        self.size = size
        self.first = first  # the device's first (partial) window
        self.next = first  # the first window not yet final
        self.pending: dict[int, int] = {}
        self.alerts: list[Alert] = []
        self.cur = -1  # the window last counted into; finalizing is checked when it changes
        self.history: deque[int] | None = None  # the last final counts, when a console wants them
        self.stop = NEVER  # a rule change retired this track from this window on
        self.previous: RangeTrack | None = None  # the track this one replaced, still finishing

    def known_from(self, first: int) -> None:
        """The device turned out to be known earlier (nothing is final yet)."""
        if first < self.first:
            self.first = first
            self.next = first

    def add(self, index: int, weight: int) -> None:
        """Count ``weight`` into window ``index`` (not final); raise early above ``max``."""
        pending = self.pending
        count = pending.get(index, 0) + weight
        pending[index] = count
        if count > self.max:
            self.above_max(index, count)

    def above_max(self, index: int, count: int) -> None:
        """Pending window ``index`` has reached ``count`` above ``max``: raise or update its alert."""
        for alert in self.alerts:
            offset = index - alert.first
            if 0 <= offset < len(alert.counts):
                alert.counts[offset] = count
                self.book.updated(alert)
                return
        self._raise_early()

    def retire(self, stop: int) -> dict[int, int]:
        """The rule changed: evaluate windows before ``stop`` only, then resolve what is open.
        Returns the counts already pending for windows from ``stop`` on (for the successor)."""
        self.stop = stop
        moved = {i: c for i, c in self.pending.items() if i >= stop}
        for i in moved:
            del self.pending[i]
        keep = []
        for alert in self.alerts:
            if alert.first >= stop:  # raised early for a window this track no longer evaluates
                self.book.withdrawn(alert)
                continue
            if alert.first + len(alert.counts) > stop:
                del alert.counts[stop - alert.first :]
                self._touch(alert)
            keep.append(alert)
        self.alerts = keep
        if self.next >= stop:
            self._close()
        return moved

    def _close(self) -> None:
        for alert in self.alerts:
            self.book.resolved(alert)
        self.alerts = []

    def finalize(self, upto: int) -> None:
        """Make windows ``next .. upto - 1`` final."""
        if upto > self.stop:
            upto = self.stop
            if self.next >= upto:
                if self.alerts:
                    self._close()
                return
        if self.next >= upto:
            return
        pending = self.pending
        if len(pending) == 1:
            # The usual case: one window waiting.
            (index,) = pending
            if index < upto:
                if index > self.next:
                    self._final_zeros(self.next, index - self.next)
                self._final(index, pending.pop(index))
                self.next = index + 1
        elif pending:
            for index in sorted(i for i in pending if i < upto):
                if index > self.next:
                    self._final_zeros(self.next, index - self.next)
                self._final(index, pending.pop(index))
                self.next = index + 1
        if self.next < upto:
            self._final_zeros(self.next, upto - self.next)
            self.next = upto
        if self.next >= self.stop and self.alerts:
            self._close()

    # -- internals --------------------------------------------------------------------------------

    def _is_out(self, index: int, count: int) -> bool:
        return count > self.max or (count < self.min and index != self.first)

    def _final(self, index: int, count: int) -> None:
        if self.history is not None:
            self.history.append(count)
        if self._is_out(index, count):
            self._extend(index, [count])
        else:
            self._in_range(index)

    def _final_zeros(self, index: int, n: int) -> None:
        if n <= 0:
            return
        if index == self.first:
            self._final(index, 0)
            index, n = index + 1, n - 1
            if n == 0:
                return
        if self.history is not None:
            self.history.extend([0] * min(n, self.history.maxlen or n))
        if self.min > 0:
            self._extend(index, [0] * n)
        else:
            self._in_range(index)

    def _in_range(self, index: int) -> None:
        """Window ``index`` is final and in range: the run that ends before it is resolved."""
        alerts = self.alerts
        if alerts and alerts[0].first < index and alerts[0].first + len(alerts[0].counts) == index:
            alert = alerts.pop(0)
            self.book.resolved(alert)

    def _extend(self, index: int, counts: list[int]) -> None:
        """Final out-of-range windows ``index ..`` join the current run, or start one."""
        alerts = self.alerts
        end = index + len(counts)
        head = alerts[0] if alerts else None
        if head is not None and head.first <= index < head.first + len(head.counts):
            # Already in the run (raised early): the count is already there.
            return
        if head is not None and head.first + len(head.counts) == index:
            head.counts.extend(counts)
            self._touch(head)
            if len(alerts) > 1 and alerts[1].first == end:
                self._absorb(head, alerts.pop(1))
            return
        if head is not None and head.first == end:
            head.counts[:0] = counts
            head.first = index
            self._touch(head)
            return
        alert = self._new(index, counts)
        alerts.insert(0, alert)
        self.book.opened(alert)

    def _raise_early(self) -> None:
        """Rebuild the provisional runs of pending windows that are already above ``max``."""
        hi = self.max
        outs = sorted(i for i, c in self.pending.items() if c > hi)
        runs: list[list[int]] = []
        for i in outs:
            if runs and runs[-1][-1] == i - 1:
                runs[-1].append(i)
            else:
                runs.append([i])
        alerts = self.alerts
        head = alerts[0] if alerts and alerts[0].first < self.next else None
        provisional = alerts[1:] if head is not None else alerts[:]
        result: list[Alert] = [head] if head is not None else []
        for run in runs:
            counts = [self.pending[i] for i in run]
            lo, hi_end = run[0], run[-1] + 1
            overlapping = [
                a for a in provisional if a.first < hi_end and lo < a.first + len(a.counts)
            ]
            if head is not None and lo == self.next:
                # The run continues the current one: the head absorbs any early alert in it.
                del head.counts[self.next - head.first :]
                head.counts.extend(counts)
                for other in overlapping:
                    provisional.remove(other)
                    self.book.merged(other, head)
                self._touch(head)
                continue
            if overlapping:
                keep = min(overlapping, key=lambda a: a.id)
                keep.first = lo
                keep.counts = counts
                for other in overlapping:
                    if other is not keep:
                        provisional.remove(other)
                        self.book.merged(other, keep)
                self._touch(keep)
                result.append(keep)
            else:
                alert = self._new(lo, counts)
                self.book.opened(alert)
                result.append(alert)
        self.alerts = result

    def _new(self, index: int, counts: list[int]) -> Alert:
        alert = self.book.new(self.rule, self.device, self.group, self.severity)
        alert.first = index
        alert.size = self.size
        alert.counts = counts
        alert.min = self.min
        alert.max = self.max
        alert.span_windows()
        return alert

    def _touch(self, alert: Alert) -> None:
        alert.span_windows()
        self.book.updated(alert)

    def _absorb(self, keep: Alert, other: Alert) -> None:
        keep.counts.extend(other.counts)
        keep.span_windows()
        self.book.merged(other, keep)


class AllowEpisodes:
    """The allow-list alerts of one (rule, device, value): violations at most ``quiet`` apart
    form one alert. Violations may arrive in any order (late events count here too)."""

    __slots__ = (
        "alerts",
        "book",
        "device",
        "group",
        "quiet",
        "rule",
        "severity",
        "starts",
        "value",
    )

    def __init__(
        self,
        book: AlertBook,
        rule: RuleType,
        device: str,
        value: str,
        group: str,
        severity: str,
        quiet: int,
    ) -> None:
        self.book = book
        self.rule = rule
        self.device = device
        self.value = value
        self.group = group
        self.severity = severity
        self.quiet = quiet
        self.alerts: list[Alert] = []  # in time order, disjoint, gaps > quiet
        self.starts: list[int] = []

    def violation(self, time: int, weight: int, clock: int | None) -> Alert:
        """Record a violation at ``time``; ``clock`` (µs) decides whether the alert is resolved."""
        alerts, quiet = self.alerts, self.quiet
        # Fast path: in time order, joining the latest alert.
        if alerts and alerts[-1].end <= time <= alerts[-1].end + quiet:
            alert = alerts[-1]
            alert.end = time
            alert.occurrences += weight
            self._state(alert, clock)
            self.book.updated(alert)
            return alert
        i = bisect_left(self.starts, time)
        # Candidates: the alert before ``time`` and the one at/after it.
        before = alerts[i - 1] if i > 0 and time <= alerts[i - 1].end + quiet else None
        after = alerts[i] if i < len(alerts) and alerts[i].start - quiet <= time else None
        if before is None and after is None:
            alert = self.book.new(self.rule, self.device, self.group, self.severity)
            alert.value = self.value
            alert.start = alert.end = time
            alert.occurrences = weight
            alerts.insert(i, alert)
            self.starts.insert(i, time)
            self._state(alert, clock)
            self.book.opened(alert)
            return alert
        if before is not None and after is not None:
            keep, other = (before, after) if before.id < after.id else (after, before)
            keep.start = before.start
            keep.end = after.end
            keep.occurrences += other.occurrences + weight
            alerts[i - 1 : i + 1] = [keep]
            self.starts[i - 1 : i + 1] = [keep.start]
            self._state(keep, clock)
            self.book.merged(other, keep)
            return keep
        alert = before if before is not None else after
        assert alert is not None
        if time < alert.start:
            alert.start = time
            self.starts[i if after is not None else i - 1] = time
        if time > alert.end:
            alert.end = time
        alert.occurrences += weight
        self._state(alert, clock)
        self.book.updated(alert)
        return alert

    def settle(self, clock: int) -> None:
        """Resolve the alerts whose quiet period has passed by ``clock``."""
        for alert in self.alerts:
            if alert.state == OPEN and alert.end + self.quiet <= clock:
                self.book.resolved(alert)

    def _state(self, alert: Alert, clock: int | None) -> None:
        alert.state = RESOLVED if clock is not None and alert.end + self.quiet <= clock else OPEN

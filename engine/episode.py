"""Episodes: how out-of-range windows and allow-list violations become alerts (SPEC §4).

A range alert is a maximal run of consecutive out-of-range windows of one (rule, device). Which
windows are out of range is a function of three things only: each window's count, which windows
are complete, and the device's first (partial) window. A replay knows all three at its end and
computes the episodes once (:func:`final_runs`). A live session judges windows as they complete
and must amend them when a late event lands in a judged window (:class:`RangeTrack`); after every
change its alerts are again exactly the runs of that function, which is what makes a live session
converge to the replay of its events.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left

from engine.alert import OPEN, RESOLVED, Alert, AlertBook
from engine.catalogue import RuleType

NEVER = 1 << 62  # a window index no track reaches
TRIM_STEP = 16  # judged counts are dropped in steps of at least this many windows
KEEP_HISTORY = 12  # judged counts kept behind the newest for the console's sparklines

Run = tuple[int, list[int], bool]  # first window, counts, resolved


def _zeros(n: int) -> array[int]:
    return array("q", bytes(8 * n))


def final_runs(counts: dict[int, int], first: int, upto: int, lo: int, hi: int) -> list[Run]:
    """The range episodes of one (rule, device) from its window counts.

    ``counts`` maps window index → count (windows absent count 0); ``first`` is the device's first
    (partial) window; windows before ``upto`` are complete. A run is resolved when the window
    after it is complete. With ``lo == 0`` only windows above ``hi`` can be out of range, so the
    work is proportional to the windows that have counts, not to the time span.
    """
    runs: list[Run] = []
    cur: list[int] | None = None
    start = 0
    if lo == 0:
        for i in sorted(counts):
            n = counts[i]
            if n <= hi or i < first:
                continue
            if cur is not None and start + len(cur) == i:
                cur.append(n)
            else:
                if cur is not None:
                    runs.append((start, cur, start + len(cur) < upto))
                start, cur = i, [n]
        if cur is not None:
            runs.append((start, cur, start + len(cur) < upto))
        return runs
    end = max(upto, max(counts) + 1 if counts else upto)
    get = counts.get
    for i in range(first, end):
        n = get(i, 0)
        if n > hi or (n < lo and i < upto and i != first):
            if cur is None:
                start, cur = i, [n]
            else:
                cur.append(n)
        elif cur is not None:
            runs.append((start, cur, i < upto))
            cur = None
    if cur is not None:
        runs.append((start, cur, False))
    return runs


class RangeTrack:
    """Window counts and range alerts of one (range rule, device) in a live session.

    The track evaluates windows ``start .. stop - 1`` (a rule change retires a track at ``stop``
    and a successor starts there). Windows before ``next`` are complete: their counts stay in
    ``judged`` (window ``base + k`` at ``judged[k]``) while a late event can still reach them;
    windows from ``next`` on wait in ``pending``. ``alerts`` are the track's alerts that can
    still change, in window order: always exactly the maximal runs of out-of-range windows.
    """

    __slots__ = (
        "alerts",
        "base",
        "book",
        "cur",
        "device",
        "first",
        "group",
        "judged",
        "max",
        "min",
        "next",
        "pending",
        "previous",
        "rule",
        "severity",
        "size",
        "source",
        "start",
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
        start: int | None = None,
    ) -> None:
        self.book = book
        self.rule = rule
        self.source = rule.source
        self.device = device
        self.group = group
        self.severity = severity
        self.min = lo
        self.max = hi
        self.size = size
        self.first = first  # the device's first (partial) window
        self.start = first if start is None else max(start, first)
        self.next = self.start  # the first window not complete yet
        self.stop = NEVER  # a rule change retired this track from this window on
        self.pending: dict[int, int] = {}
        self.base = self.start
        self.judged: array[int] = array("q")
        self.alerts: list[Alert] = []
        self.cur = -1  # the window last counted into; completion is checked when it changes
        self.previous: RangeTrack | None = None  # the track this one replaced, still amendable

    # -- counting ---------------------------------------------------------------------------------

    def count_at(self, index: int) -> int:
        if index >= self.next:
            return self.pending.get(index, 0)
        return self.judged[index - self.base]

    def add(self, index: int, weight: int, at: int | None) -> None:
        """Count ``weight`` into window ``index`` (``start <= index < stop``); ``at`` is the wall
        clock that stamps an amendment. A negative weight takes a count back (a message moved
        to another protocol)."""
        if index >= self.next:
            pending = self.pending
            before = pending.get(index, 0)
            count = before + weight
            if count:
                pending[index] = count
            else:
                pending.pop(index, None)
            if count > self.max:
                self.above_max(index, count)
            elif before > self.max:  # a count moved away (see Evaluator._reassign)
                self._rejudge(index, index)
            return
        k = index - self.base
        before = self.judged[k]
        after = before + weight
        self.judged[k] = after
        if after != before:
            self._rejudge(index, index, (at, index, before, after))

    def above_max(self, index: int, count: int) -> None:
        """Incomplete window ``index`` has ``count`` above ``max``: raise early, or update."""
        for alert in self.alerts:
            offset = index - alert.first
            if 0 <= offset < len(alert.counts):
                alert.counts[offset] = count
                self.book.updated(alert)
                return
        self._rejudge(index, index)

    def recent(self, n: int) -> tuple[int, ...]:
        """The counts of the last ``n`` complete windows that are still kept, oldest first."""
        return tuple(self.judged[-n:]) if n else ()

    # -- completion ---------------------------------------------------------------------------

    def finalize(self, upto: int, floor: int | None = None) -> None:
        """Windows before ``upto`` are complete. ``floor`` (µs): no event before it can still
        be counted, so older judged counts may be dropped."""
        if upto > self.stop:
            upto = self.stop
        lo = self.next
        if upto > lo:
            self.judged.extend(_zeros(upto - lo))
            pending = self.pending
            if pending:
                base, judged = self.base, self.judged
                for index in [i for i in pending if i < upto]:
                    judged[index - base] = pending.pop(index)
            self.next = upto
            self._rejudge(lo, upto - 1)
        if floor is not None:
            self.trim(floor // self.size)
            previous = self.previous
            if previous is not None and previous.stop * previous.size <= floor:
                self.previous = None  # nothing can reach the retired rule's windows any more

    def trim(self, floor: int) -> None:
        """Forget judged counts and alerts that no event can change any more: windows before
        ``floor``, keeping the last few for the console."""
        floor = min(floor, self.next - KEEP_HISTORY)
        if floor - self.base < TRIM_STEP:
            return
        del self.judged[: floor - self.base]
        self.base = floor
        alerts = self.alerts
        if alerts and alerts[0].first + len(alerts[0].counts) < floor:
            # An alert is kept while the window after it can still change; the others are
            # final: the store has (or is about to write) their last state.
            keep = [a for a in alerts if a.first + len(a.counts) >= floor]
            for alert in alerts[: len(alerts) - len(keep)]:
                self.book.forget(alert)
            self.alerts = keep

    def known_from(self, first: int, at: int | None) -> None:
        """The device turned out to be known from window ``first``, earlier than before."""
        old = self.first
        if first >= old:
            return
        self.first = first
        if self.previous is None and first < self.start:
            if self.next == self.start:  # nothing judged yet: the new windows wait too
                self.start = self.next = self.base = first
                return
            self.judged[0:0] = _zeros(self.base - first)
            self.start = self.base = first
        lo = max(first, self.start, self.base)
        hi = min(old, self.next - 1, self.stop - 1)
        if lo <= hi:
            count = self.count_at(old) if self.start <= old < self.stop else 0
            self._rejudge(lo, hi, (at, old, count, count))

    # -- rule changes -------------------------------------------------------------------------

    def retire(self, stop: int) -> dict[int, int]:
        """The rule changed: this track evaluates windows before ``stop`` only. Returns the
        counts already pending for windows from ``stop`` on (for the successor)."""
        stop = max(stop, self.next, self.start)
        self.stop = stop
        moved = {i: n for i, n in self.pending.items() if i >= stop}
        for i in moved:
            del self.pending[i]
        keep = []
        for alert in self.alerts:
            if alert.first >= stop:  # raised early for a window this track no longer evaluates
                self.book.withdrawn(alert)
                continue
            if alert.first + len(alert.counts) > stop:
                del alert.counts[stop - alert.first :]
                alert.span_windows()
                self.book.updated(alert)
            keep.append(alert)
        self.alerts = keep
        if self.next >= stop > self.start:
            self._rejudge(stop - 1, stop - 1)  # its last window decides whether a run ended
        return moved

    # -- judging ------------------------------------------------------------------------------

    def _is_out(self, index: int, count: int) -> bool:
        return count > self.max or (count < self.min and index < self.next and index != self.first)

    def _resolved(self, after: int) -> bool:
        """Whether a run ending before window ``after`` is over: that window is complete (or
        belongs to the successor and this track is complete)."""
        return after < self.next or (after >= self.stop and self.next >= self.stop)

    def _rejudge(
        self, lo: int, hi: int, note: tuple[int | None, int, int, int] | None = None
    ) -> None:
        """Windows ``lo .. hi`` may have changed state: rebuild the runs around them and bring
        the alerts up to date. ``note`` = (wall clock, window, count before, count after) marks an
        amendment: a change to windows that were already judged."""
        alerts = self.alerts
        n = len(alerts)
        j0 = n
        while j0 > 0 and alerts[j0 - 1].first + len(alerts[j0 - 1].counts) >= lo:
            j0 -= 1
        j1 = j0
        while j1 < n and alerts[j1].first <= hi + 1:
            j1 += 1
        touched = alerts[j0:j1]
        # Out-of-range segments, in window order: what the touched alerts keep outside lo..hi,
        # and the windows of lo..hi that are out now. Whole alerts are sliced, never walked:
        # an alert can span weeks of windows.
        changed: list[tuple[int, list[int]]] = []
        for i in range(lo, hi + 1):
            count = self.count_at(i)
            if self._is_out(i, count):
                if changed and changed[-1][0] + len(changed[-1][1]) == i:
                    changed[-1][1].append(count)
                else:
                    changed.append((i, [count]))
        if not touched and not changed:
            return
        before = [(a.first, a.counts[: lo - a.first]) for a in touched if a.first < lo]
        after = [
            (max(a.first, hi + 1), a.counts[max(a.first, hi + 1) - a.first :])
            for a in touched
            if a.first + len(a.counts) > hi + 1
        ]
        runs: list[tuple[int, list[int]]] = []
        for first, counts in (*before, *changed, *after):
            if runs and runs[-1][0] + len(runs[-1][1]) == first:
                runs[-1] = (runs[-1][0], runs[-1][1] + counts)
            else:
                runs.append((first, counts))
        book = self.book
        amend = note is not None
        taken: list[Alert] = []
        result: list[Alert] = []
        for first, counts in runs:
            last = first + len(counts) - 1
            over = [
                a
                for a in touched
                if a not in taken and a.first <= last and first <= a.first + len(a.counts) - 1
            ]
            state = RESOLVED if self._resolved(last + 1) else OPEN
            if over:
                # The oldest alert the run overlaps continues; the others are merged into it
                # unless a later run continues them.
                keep = min(over, key=lambda a: a.id)
                taken.append(keep)
                changed = keep.first != first or keep.counts != counts
                keep.first, keep.counts = first, counts
                keep.span_windows()
                if amend:
                    self._note(keep, note)
                if state != keep.state:
                    if state == RESOLVED:
                        book.resolved(keep)
                    else:
                        keep.state = OPEN
                        book.updated(keep)
                elif changed:
                    book.updated(keep)
            else:
                keep = self._new(first, counts)
                keep.state = state
                book.opened(keep)  # first: it may take over a stored alert's id
                if amend:
                    self._note(keep, note)
            result.append(keep)
        for alert in touched:
            if alert in taken:
                continue
            if amend:
                self._note(alert, note)
            end = alert.first + len(alert.counts) - 1
            into = next(
                (
                    k
                    for k in result
                    if k.first <= end and alert.first <= k.first + len(k.counts) - 1
                ),
                None,
            )
            book.withdrawn(alert, into)
        alerts[j0:j1] = result

    def _note(self, alert: Alert, note: tuple[int | None, int, int, int] | None) -> None:
        assert note is not None
        at, window, before, after = note
        self.book.amended(alert, at or 0, window * self.size, before, after)

    def _new(self, index: int, counts: list[int]) -> Alert:
        alert = self.book.new(self.rule, self.device, self.group, self.severity)
        alert.first = index
        alert.size = self.size
        alert.counts = counts
        alert.min = self.min
        alert.max = self.max
        alert.span_windows()
        return alert


class AllowEpisodes:
    """The allow-list alerts of one (rule, device, value): violations at most ``quiet`` apart
    form one alert. Violations may arrive in any order (expired events count here too); one
    that arrives out of time order amends the alert it lands in."""

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
        """Record a violation at ``time``; ``clock`` (µs, live) decides whether the alert is
        resolved."""
        alerts, quiet, book = self.alerts, self.quiet, self.book
        # Fast path: in time order, joining the latest alert.
        if alerts and alerts[-1].end <= time <= alerts[-1].end + quiet:
            alert = alerts[-1]
            alert.end = time
            alert.occurrences += weight
            self._state(alert, clock)
            book.updated(alert)
            return alert
        i = bisect_left(self.starts, time)
        # Candidates: the alert before ``time`` and the one at/after it.
        before = alerts[i - 1] if i > 0 and time <= alerts[i - 1].end + quiet else None
        after = alerts[i] if i < len(alerts) and alerts[i].start - quiet <= time else None
        if before is None and after is None:
            alert = book.new(self.rule, self.device, self.group, self.severity)
            alert.value = self.value
            alert.start = alert.end = time
            alert.occurrences = weight
            alerts.insert(i, alert)
            self.starts.insert(i, time)
            self._state(alert, clock)
            book.opened(alert)
            return alert
        if before is not None and after is not None:
            keep, other = (before, after) if before.id < after.id else (after, before)
            keep.start = before.start
            keep.end = after.end
            keep.occurrences += other.occurrences + weight
            alerts[i - 1 : i + 1] = [keep]
            self.starts[i - 1 : i + 1] = [keep.start]
            self._state(keep, clock)
            self._amended(keep, time, clock)
            book.updated(keep)
            book.withdrawn(other, keep)
            return keep
        alert = before if before is not None else after
        assert alert is not None
        if time < alert.end:
            self._amended(alert, time, clock)
        if time < alert.start:
            alert.start = time
            self.starts[i if after is not None else i - 1] = time
        if time > alert.end:
            alert.end = time
        alert.occurrences += weight
        self._state(alert, clock)
        book.updated(alert)
        return alert

    def settle(self, clock: int) -> None:
        """Resolve the alerts whose quiet period has passed by ``clock``."""
        for alert in self.alerts:
            if alert.state == OPEN and alert.end + self.quiet <= clock:
                self.book.resolved(alert)

    def _state(self, alert: Alert, clock: int | None) -> None:
        alert.state = RESOLVED if clock is not None and alert.end + self.quiet <= clock else OPEN

    def _amended(self, alert: Alert, time: int, clock: int | None) -> None:
        self.book.amended(alert, clock or 0, time, alert.occurrences, alert.occurrences)

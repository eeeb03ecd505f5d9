"""The dashboard: the sources strip, the live counters and the newest alerts.

Counters are one row per (device, enabled range rule): the current window's count against
``[min, max]`` (▲ above max, ▼ below min, in colour too), the time left in the window, and a
sparkline of the last windows. The filter takes ``d:``/``g:``/``r:`` terms, and ``!`` keeps only
rows that are out of range or alerting.

A fleet has thousands of counters and every one changes every second, so the counters are a
``VirtualTable``: the worker filters and sorts them, and cells are built only for the rows on
screen. The sources strip and the newest alerts are ``VirtualTable``s too: a ``DataTable`` keys
its render caches by an update count that every changed cell bumps, so a table refreshed every
second filled its caches (10,000 cells, 1,000 rows and lines) with renders it would never use
again — tens of megabytes and 100,000 objects for the collector to walk.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, ClassVar

from rich.cells import cell_len
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.widgets import Input, Static

from engine.session import Counter, Snapshot, SourceStatus
from tui.bridge import Bridge
from tui.panes import (
    LivePane,
    TextFilter,
    cell,
    fmt_span,
    fmt_time,
    short_rule,
    sparkline,
)
from tui.panes.alerts import ALERT_SQL, AlertRow, alert_cells
from tui.panes.alerts import COLUMNS as ALERT_COLUMNS
from tui.safe import safe
from tui.widgets.filter import FilterInput
from tui.widgets.virtual_table import Rows, VirtualTable

NEWEST = 8  # alerts beneath the counters

STATE_STYLE = {
    "following": ("●", "green"),
    "caught-up": ("●", "green"),
    "opening": ("◌", "yellow"),
    "starting": ("◌", "yellow"),
    "reconnecting": ("↻", "yellow"),
    "paused": ("‖", "bold yellow"),  # the database is busy or full: reading waits
    "error": ("✖", "bold red"),
    "closed": ("■", "dim"),
    "stopped": ("■", "dim"),
}

TARGET_WIDTH = 28  # the strip fits 120 columns


def tail_cut(text: str, width: int = TARGET_WIDTH) -> Text:
    """``text`` made safe and, when longer than ``width``, cut at the front: a path's end (the
    file name, a glob) is what tells sources apart."""
    shown = safe(text, 10_000)
    if cell_len(shown.plain) <= width:
        return shown
    plain, room = shown.plain, width - 1
    start = len(plain)
    while start > 0 and room - cell_len(plain[start - 1]) >= 0:
        start -= 1
        room -= cell_len(plain[start])
    return Text("…" + plain[start:], no_wrap=True, end="")


SOURCE_COLUMNS: tuple[tuple[str, str, int], ...] = (
    ("kind", "Source", 17),
    ("target", "Path / port", TARGET_WIDTH),
    ("state", "State", 14),
    ("rate", "Events/s", 8),
    ("events", "Events", 9),
    ("last", "Last event (UTC)", 16),
    ("quarantined", "Quarantined", 11),
)
COUNTER_COLUMNS: tuple[tuple[str, str, int | None], ...] = (
    ("device", "Device", 20),
    ("group", "Group", 10),
    ("rule", "Rule", 24),
    ("count", "Count", 9),
    ("range", "Range", 11),
    ("left", "Left", 7),
    ("history", "Last windows", 12),
    ("alert", "Alert", 7),
)
NEWEST_COLUMNS = ("id", "state", "severity", "rule", "device", "value", "start", "amount")


@dataclass(frozen=True)
class DashboardData:
    sources: list[SourceStatus]
    taken: float  # time.monotonic() when taken
    counters: Rows
    summary: str
    alerts: list[AlertRow] | None
    config_error: str | None


def counter_out(c: Counter) -> int:
    """1 above max, -1 below min, 0 in range (the current, possibly incomplete, window)."""
    if c.count > c.max:
        return 1
    if c.count < c.min:
        return -1
    return 0


# A counter row as the table keeps it: a plain tuple of strings and numbers, which the garbage
# collector stops tracking (thousands of rows live a second each; see engine.collector).
CounterRow = tuple[str, str, str, int, int, int, int, tuple[int, ...], bool]


def counter_row(c: Counter, now: int) -> CounterRow:
    """What the table shows of ``c`` at ``now``: device, group, rule, count, min, max, seconds
    left in the window, history, alerting."""
    left = (c.end - now) // 1_000_000
    return (c.device, c.group, c.rule, c.count, c.min, c.max, left, c.history, c.alerting)


def counter_cells(row: CounterRow) -> tuple[Text, ...]:
    """The cells of one counter row."""
    device, group, rule, count, low, high, left, history, alerting = row
    if count > high:
        shown = cell(f"▲ {count}", "bold red")
    elif count < low:
        shown = cell(f"▼ {count}", "yellow")
    else:
        shown = cell(f"  {count}", "green")
    return (
        safe(device, 64),
        safe(group, 64),
        cell(short_rule(rule)),
        shown,
        cell(f"{low}–{high}"),
        cell(fmt_span(left)),
        sparkline(history, low, high),
        cell("● open", "bold red") if alerting else cell(""),
    )


def own_cells(cells: tuple[Text, ...]) -> tuple[Text, ...]:
    """A row whose data is its cells already (the few rows of the sources strip)."""
    return cells


def newest_cells(a: AlertRow) -> tuple[Text, ...]:
    return alert_cells(a, NEWEST_COLUMNS)


class SourcesTable(VirtualTable, can_focus=False):
    """One row per source, keyed by its index; nothing to select."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(
            SOURCE_COLUMNS, own_cells, zebra_stripes=False, show_cursor=False, **kwargs
        )


class NewestTable(VirtualTable):
    """The newest alerts, keyed by id, newest first; ``Enter`` opens one."""

    def __init__(self, **kwargs: Any) -> None:
        widths = {k: (k, label, width) for k, label, width in ALERT_COLUMNS}
        columns = [widths[k] for k in NEWEST_COLUMNS]
        super().__init__(columns, newest_cells, zebra_stripes=False, **kwargs)


class Counters(VirtualTable):
    """One row per (device, range rule), keyed ``device\\0rule``, sorted by device and rule."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(COUNTER_COLUMNS, counter_cells, **kwargs)


class Dashboard(LivePane):
    """Sources, counters, newest alerts."""

    needs_snapshot: ClassVar[bool] = True

    DEFAULT_CSS = """
    Dashboard { height: 1fr; }
    Dashboard #sources { height: auto; max-height: 8; }
    Dashboard .problem { height: auto; color: $error; padding: 0 1; display: none; }
    Dashboard .problem.shown { display: block; }
    Dashboard #counter-bar { height: 1; margin-top: 1; }
    Dashboard #counter-bar Static { width: auto; padding: 0 1; color: $text-muted; }
    Dashboard #counter-filter { height: 1; border: none; width: 1fr; padding: 0 1; }
    Dashboard Counters { height: 1fr; }
    Dashboard #newest-title { height: 1; padding: 0 1; color: $text-muted; margin-top: 1; }
    Dashboard #newest { height: 9; }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("slash", "focus_filter", "Filter", id="dashboard.filter"),
    ]

    def __init__(self, bridge: Bridge, **kwargs: Any) -> None:
        super().__init__(bridge, **kwargs)
        self.filter = TextFilter()
        self.only_out = False
        self._sources: list[tuple[str, tuple[Text, ...]]] = []
        self._summary = ""
        self._previous: dict[int, tuple[int, float]] = {}  # source index → (events, taken)
        self._alerts_seen = -1
        self.newest_rows: dict[str, AlertRow] = {}

    def compose(self) -> ComposeResult:
        yield SourcesTable(id="sources")
        yield Static(id="source-errors", classes="problem", markup=False)
        yield Static(id="config-error", classes="problem", markup=False)
        with Horizontal(id="counter-bar"):
            yield Static("Counters", id="counter-title", markup=False)
            yield FilterInput(
                placeholder="filter: text, d:device g:group r:rule, ! = out of range only",
                id="counter-filter",
                compact=True,
            )
            yield Static("", id="counter-summary", markup=False)
        yield Counters(id="counters")
        yield Static("Newest alerts", id="newest-title", markup=False)
        yield NewestTable(id="newest")

    @on(Input.Changed, "#counter-filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        words = event.value.split()
        self.only_out = "!" in words
        self.filter = TextFilter(" ".join(w for w in words if w != "!"))
        self.app.refresh_now()  # type: ignore[attr-defined]

    def action_focus_filter(self) -> None:
        self.query_one("#counter-filter", FilterInput).summon()

    @on(VirtualTable.RowSelected, "#newest")
    def _open_alert(self, event: VirtualTable.RowSelected) -> None:
        event.stop()
        alert = self.newest_rows.get(event.key)
        if alert is not None:
            self.app.open_alert(alert.id)  # type: ignore[attr-defined]

    # -- refresh ------------------------------------------------------------------------------

    def gather_args(self) -> Any:
        return getattr(self.app, "alerts_version", 0), self.filter, self.only_out

    def gather(self, snapshot: Any, args: Any) -> Any:
        version, flt, only_out = args
        alerts = None
        if version != self._alerts_seen:
            rows = self.bridge.query(ALERT_SQL + " ORDER BY a.id DESC LIMIT ?", (NEWEST,))
            alerts = [AlertRow.from_db(r) for r in rows]
        session = self.bridge.session
        error = getattr(session, "config_error", None) if session is not None else None
        rows, summary = self._plan_counters(snapshot, flt, only_out)
        return version, DashboardData(
            snapshot.sources, time.monotonic(), rows, summary, alerts, error
        )

    def show(self, data: Any) -> None:
        version, d = data
        self._show_sources(d)
        self.query_one(Counters).set_rows(d.counters)
        if d.summary != self._summary:  # a new text width means a new layout: only on change
            self._summary = d.summary
            self.query_one("#counter-summary", Static).update(d.summary)
        if d.alerts is not None:
            self._alerts_seen = version
            self.newest_rows = {str(a.id): a for a in d.alerts}  # newest first, as queried
            self.query_one(NewestTable).set_rows(Rows(list(self.newest_rows.items())))
        banner = self.query_one("#config-error", Static)
        if d.config_error:
            banner.update(safe(f"Configuration refused (the previous one stays): {d.config_error}"))
        banner.set_class(bool(d.config_error), "shown")

    def _show_sources(self, d: DashboardData) -> None:
        rows: list[tuple[str, tuple[Text, ...]]] = []
        errors: list[Text] = []
        for i, s in enumerate(d.sources):
            prev = self._previous.get(i)
            rate: Text
            if prev is None or d.taken <= prev[1]:
                rate = cell("-", "dim")
            else:
                per_s = max(0.0, (s.events - prev[0]) / (d.taken - prev[1]))
                rate = cell(f"{per_s:,.0f}" if per_s >= 10 else f"{per_s:.1f}")
            self._previous[i] = (s.events, d.taken)
            symbol, style = STATE_STYLE.get(s.state, ("?", ""))
            kind = s.kind + (f" ×{s.streams}" if s.kind != "serial" and s.streams > 1 else "")
            cells = (
                cell(kind),
                tail_cut(s.target),
                cell(f"{symbol} {s.state}", style),
                rate,
                cell(f"{s.events:,}"),
                cell(fmt_time(s.last_event)),
                cell(f"{s.quarantined:,}", "yellow" if s.quarantined else ""),
            )
            rows.append((str(i), cells))
            if s.error:
                errors.append(Text(f"{s.kind} {i + 1}: ", style="bold"))
                errors[-1].append_text(safe(s.error, 300))
        if rows != self._sources:  # most seconds something changed (events/s, the count)
            self._sources = rows
            self.query_one(SourcesTable).set_rows(Rows(rows))
        box = self.query_one("#source-errors", Static)
        if errors:
            box.update(Text("\n").join(errors))
        box.set_class(bool(errors), "shown")

    @staticmethod
    def _plan_counters(snap: Snapshot, flt: TextFilter, only_out: bool) -> tuple[Rows, str]:
        """Worker thread: the counter rows to show, filtered and sorted, and the summary."""
        rows: list[tuple[str, CounterRow]] = []
        out_total = alerting = 0
        now = snap.now
        for c in snap.counters:
            out = counter_out(c)
            out_total += out != 0
            alerting += c.alerting
            if only_out and not (out or c.alerting):
                continue
            if flt and not flt.matches(device=c.device, group=c.group, rule=c.rule):
                continue
            rows.append((f"{c.device}\0{c.rule}", counter_row(c, now)))
        rows.sort(key=lambda r: r[0])
        summary = (
            f"{len(rows)} of {len(snap.counters)} · {out_total} out of range · {alerting} alerting"
        )
        return Rows(rows), summary

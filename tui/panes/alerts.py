"""The alerts pane: every alert, filterable by state, severity, rule, device and group.

Rows come from the database (the engine writes an alert before it tells the console), so the
operator's own columns — acknowledged, resolved by hand, silenced, notes — are shown beside the
evaluated state. Withdrawn alerts (late data left nothing out of range, or another alert took
them over) stay in the list, dimmed and struck through; amended ones carry a ``±`` flag.
``Enter`` opens the detail; ``a``/``r``/``n``/``s``/``u`` act on the selected alert (``a`` and
``r`` again undo), ``S`` lists the silences in force.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.widgets import Input, Select, Static

from engine.catalogue import BY_ID, RULE_TYPES
from tui.bridge import Bridge
from tui.panes import LivePane, TextFilter, cell, fmt_time, short_rule
from tui.safe import safe
from tui.widgets.filter import FilterInput
from tui.widgets.virtual_table import Rows, VirtualTable

ALERT_LIMIT = 5000  # the newest alerts the pane keeps in view

ALERT_SQL = """
SELECT a.id, a.rule, a.device, a.grp, a.value, a.start_us, a.end_us, a.state, a.severity,
       a.window_s, a.min, a.max, a.counts, a.occurrences, a.acknowledged_us, a.closed_by_hand_us,
       a.silenced, (SELECT count(*) FROM alert_notes n WHERE n.alert = a.id), a.amended,
       a.merged_into
FROM alerts a
"""

STATES: tuple[tuple[str, str], ...] = (
    ("any state", "all"),
    ("open", "open"),
    ("open, not acknowledged", "unacked"),
    ("resolved", "resolved"),
    ("acknowledged", "acked"),
    ("resolved by hand", "byhand"),
    ("silenced", "silenced"),
    ("amended", "amended"),
    ("withdrawn", "withdrawn"),
    ("any state but withdrawn", "current"),
)
SEVERITIES = ("High", "Medium", "Low", "Informational")
SEVERITY_STYLE = {"High": "bold red", "Medium": "yellow", "Low": "", "Informational": "dim"}


@dataclass(frozen=True, slots=True)
class AlertRow:
    """One stored alert with the operator's columns."""

    id: int
    rule_id: int
    device: str
    group: str
    value: str | None
    start: int
    end: int
    state: str
    severity: str
    window: int | None
    min: int | None
    max: int | None
    counts: tuple[int, ...]
    occurrences: int | None
    acknowledged: int | None
    closed: int | None  # resolved by hand at (µs)
    silenced: bool
    notes: int
    amended: bool = False
    merged_into: int | None = None

    @classmethod
    def from_db(cls, row: tuple[Any, ...]) -> AlertRow:
        counts: tuple[int, ...] = ()
        if row[12]:
            try:
                counts = tuple(int(c) for c in json.loads(row[12]))
            except (ValueError, TypeError):
                counts = ()
        return cls(
            int(row[0]),
            int(row[1]),
            str(row[2]),
            str(row[3]),
            None if row[4] is None else str(row[4]),
            int(row[5]),
            int(row[6]),
            str(row[7]),
            str(row[8]),
            row[9],
            row[10],
            row[11],
            counts,
            row[13],
            row[14],
            row[15],
            bool(row[16]),
            int(row[17]),
            bool(row[18]),
            None if row[19] is None else int(row[19]),
        )

    @property
    def rule(self) -> str:
        rule = BY_ID.get(self.rule_id)
        return rule.name if rule is not None else f"rule {self.rule_id}"

    @property
    def is_range(self) -> bool:
        rule = BY_ID.get(self.rule_id)
        return rule is not None and rule.kind == "range"

    @property
    def active(self) -> bool:
        """Open and not resolved by hand."""
        return self.state == "open" and self.closed is None

    @property
    def withdrawn(self) -> bool:
        return self.state == "withdrawn"

    def state_cell(self) -> Text:
        """The state and the flags: A acknowledged, S silenced, N notes, ± amended."""
        if self.withdrawn:
            text = cell("⊘ withdrawn", "dim strike")
            text.append(" ")
        elif self.closed is not None:
            text = cell("✔ by hand  ", "dim")  # resolved by hand
        elif self.state == "open":
            text = cell("● open     ", "bold red" if self.acknowledged is None else "yellow")
        else:
            text = cell("○ resolved ", "green")
        text.append("A" if self.acknowledged is not None else "·", style="cyan")
        text.append("S" if self.silenced else "·", style="magenta")
        text.append("N" if self.notes else "·", style="blue")
        text.append("±" if self.amended else "·", style="yellow")
        return text

    def severity_cell(self) -> Text:
        short = {"Medium": "Med", "Informational": "Info"}.get(self.severity, self.severity)
        return cell(short[:4], SEVERITY_STYLE.get(self.severity, ""))

    def amount_cell(self) -> Text:
        """``counts`` of a range alert (against its range), or ``×occurrences``."""
        if self.withdrawn:
            return cell(f"into #{self.merged_into}" if self.merged_into else "—", "dim")
        if not self.is_range:
            return cell(f"×{self.occurrences or 0}")
        text = Text(no_wrap=True, end="")
        for i, c in enumerate(self.counts[-4:]):
            if i:
                text.append(" ")
            high = self.max is not None and c > self.max
            text.append(f"{'▲' if high else '▼'}{c}", style="red" if high else "yellow")
        if len(self.counts) > 4:
            text.append(f" +{len(self.counts) - 4}", style="dim")
        return text

    def matches(self, flt: AlertFilter) -> bool:
        s = flt.state
        if s == "open" and not self.active:
            return False
        if s == "unacked" and not (self.active and self.acknowledged is None):
            return False
        if s == "resolved" and self.state != "resolved":
            return False
        if s == "acked" and self.acknowledged is None:
            return False
        if s == "byhand" and self.closed is None:
            return False
        if s == "silenced" and not self.silenced:
            return False
        if s == "amended" and not self.amended:
            return False
        if s == "withdrawn" and not self.withdrawn:
            return False
        if s == "current" and self.withdrawn:
            return False
        if flt.severity and self.severity != flt.severity:
            return False
        if flt.rule and self.rule != flt.rule:
            return False
        return flt.text.matches(
            device=self.device, group=self.group, rule=self.rule, value=self.value
        )


@dataclass(frozen=True)
class AlertFilter:
    """What the alerts pane shows."""

    state: str = "all"
    severity: str = ""
    rule: str = ""
    text: TextFilter = field(default_factory=TextFilter)


def load_alerts(bridge: Bridge, limit: int = ALERT_LIMIT) -> list[AlertRow]:
    """The newest ``limit`` alerts, newest first (blocking)."""
    rows = bridge.query(ALERT_SQL + " ORDER BY a.id DESC LIMIT ?", (limit,))
    return [AlertRow.from_db(r) for r in rows]


def load_alert(bridge: Bridge, alert_id: int) -> AlertRow | None:
    """One alert, or None when there is none of that id."""
    rows = bridge.query(ALERT_SQL + " WHERE a.id = ?", (alert_id,))
    return AlertRow.from_db(rows[0]) if rows else None


COLUMNS: tuple[tuple[str, str, int], ...] = (
    ("id", "#", 4),
    ("state", "State      ASN±", 16),
    ("severity", "Sev", 4),
    ("rule", "Rule", 23),
    ("device", "Device", 14),
    ("group", "Group", 8),
    ("value", "Value", 12),
    ("start", "Start (UTC)", 14),
    ("amount", "Counts", 9),
)
COLUMN_KEYS = tuple(key for key, _, _ in COLUMNS)


def alert_cells(a: AlertRow, columns: tuple[str, ...] = COLUMN_KEYS) -> tuple[Any, ...]:
    """The cells of ``a`` for ``columns``; device strings go through ``safe``."""
    cells = {
        "id": cell(a.id),
        "state": a.state_cell(),
        "severity": a.severity_cell(),
        "rule": cell(short_rule(a.rule)),
        "device": safe(a.device, 64),
        "group": safe(a.group, 64),
        "value": safe(a.value or "", 64),
        "start": cell(fmt_time(a.start)),
        "amount": a.amount_cell(),
    }
    return tuple(cells[c] for c in columns)


class AlertsTable(VirtualTable):
    """The alerts, one row per alert keyed by its id, newest first."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "select_cursor", "Detail", id="alerts.detail"),
    ]

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(COLUMNS, alert_cells, **kwargs)


class AlertsPane(LivePane):
    """Every alert in a table with filters and actions."""

    DEFAULT_CSS = """
    AlertsPane { height: 1fr; }
    AlertsPane #alert-filters { height: 3; }
    AlertsPane #alert-filters Select { width: 26; }
    AlertsPane #alert-filters #alert-rule { width: 34; }
    AlertsPane #alert-filters Input { width: 1fr; }
    AlertsPane AlertsTable { height: 1fr; }
    AlertsPane #alert-summary { height: 1; color: $text-muted; padding: 0 1; }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("a", "act('acknowledge')", "Acknowledge", id="alerts.acknowledge"),
        Binding("r", "act('resolve')", "Resolve", id="alerts.resolve"),
        Binding("n", "act('note')", "Note", id="alerts.note"),
        Binding("s", "act('silence')", "Silence", id="alerts.silence"),
        Binding("u", "act('unsilence')", "Unsilence", show=False, id="alerts.unsilence"),
        Binding("S", "silences", "Silences", show=False, id="alerts.silences"),
        Binding("v", "act('allow')", "Allow value", id="alerts.allow"),
        Binding("slash", "focus_filter", "Filter", id="alerts.filter"),
    ]

    def __init__(self, bridge: Bridge, **kwargs: Any) -> None:
        super().__init__(bridge, **kwargs)
        self.filter = AlertFilter()
        self.rows: dict[str, AlertRow] = {}
        self._seen: tuple[int, AlertFilter] | None = None

    def compose(self) -> ComposeResult:
        with Horizontal(id="alert-filters"):
            yield Select(
                [(label, value) for label, value in STATES],
                value="all",
                allow_blank=False,
                id="alert-state",
            )
            yield Select(
                [("any severity", ""), *((s, s) for s in SEVERITIES)],
                value="",
                allow_blank=False,
                id="alert-severity",
            )
            yield Select(
                [("any rule", ""), *((r.name, r.name) for r in RULE_TYPES)],
                value="",
                allow_blank=False,
                id="alert-rule",
            )
            yield FilterInput(
                placeholder="filter: text, d:device g:group r:rule v:value", id="alert-text"
            )
        yield AlertsTable(id="alerts-table")
        yield Static(id="alert-summary", markup=False)

    # -- filters ------------------------------------------------------------------------------

    @on(Select.Changed)
    @on(Input.Changed, "#alert-text")
    def _filters_changed(self) -> None:
        state = self.query_one("#alert-state", Select).value
        severity = self.query_one("#alert-severity", Select).value
        rule = self.query_one("#alert-rule", Select).value
        text = self.query_one("#alert-text", Input).value
        self.filter = AlertFilter(
            state if isinstance(state, str) else "all",
            severity if isinstance(severity, str) else "",
            rule if isinstance(rule, str) else "",
            TextFilter(text),
        )
        self.app.refresh_now()  # type: ignore[attr-defined]

    def action_focus_filter(self) -> None:
        self.query_one("#alert-text", FilterInput).summon()

    # -- refresh ------------------------------------------------------------------------------

    def gather_args(self) -> Any:
        version = getattr(self.app, "alerts_version", 0)
        key = (version, self.filter)
        if key == self._seen:
            return None  # nothing changed since the last look: no query at all
        return key

    def gather(self, snapshot: Any, args: Any) -> Any:
        if args is None:
            return None
        version, flt = args
        alerts = load_alerts(self.bridge)  # newest first
        shown = [a for a in alerts if a.matches(flt)]
        return version, flt, alerts, shown, Rows([(str(a.id), a) for a in shown])

    def show(self, data: Any) -> None:
        if data is None:
            return
        version, flt, alerts, shown, table_rows = data
        self._seen = (version, flt)
        self.rows = {str(a.id): a for a in shown}
        self.query_one(AlertsTable).set_rows(table_rows)
        active = sum(1 for a in alerts if a.active)
        withdrawn = sum(1 for a in alerts if a.withdrawn)
        self.query_one("#alert-summary", Static).update(
            f"{len(shown)} shown of {len(alerts)}"
            + (f" (the newest {ALERT_LIMIT})" if len(alerts) >= ALERT_LIMIT else "")
            + f" · {active} open"
            + (f" · {withdrawn} withdrawn" if withdrawn else "")
        )

    # -- actions ------------------------------------------------------------------------------

    def selected(self) -> AlertRow | None:
        """The alert under the cursor."""
        key = self.query_one(AlertsTable).cursor_key
        return None if key is None else self.rows.get(key)

    @on(VirtualTable.RowSelected, "#alerts-table")
    def _open_detail(self, event: VirtualTable.RowSelected) -> None:
        event.stop()
        alert = self.rows.get(event.key)
        if alert is not None:
            self.app.open_alert(alert.id)  # type: ignore[attr-defined]

    def action_silences(self) -> None:
        self.app.show_silences()  # type: ignore[attr-defined]

    def action_act(self, what: str) -> None:
        alert = self.selected()
        if alert is None:
            self.app.notify("No alert selected", severity="warning")
            return
        self.app.alert_action(what, alert)  # type: ignore[attr-defined]

"""The alert detail: what the rule means, what to do, the windows or occurrences, the notes, and
the evidence — the stored events behind the alert."""

from __future__ import annotations

from typing import Any, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import DataTable, Static
from textual.worker import Worker, WorkerState

from engine.catalogue import BY_ID, BY_PROTOCOL, UNAUTHORIZED
from engine.export import protocol_of_sql
from engine.timestamps import format_duration
from tui.bridge import Bridge
from tui.panes import cell, fmt_full_time, fmt_time
from tui.panes.alerts import AlertRow, load_alert
from tui.safe import safe
from tui.widgets.kv_editor import RowTable

EVIDENCE_LIMIT = 500
# per-protocol rule id -> (pseudo rule id of its messages without a protocol, the protocol)
_UNKNOWN_OF = {
    rule: (pseudo, protocol)
    for pseudo, rules in BY_PROTOCOL.items()
    for protocol, rule in rules.items()
}
AMENDMENT_LIMIT = 50  # the newest amendments the detail lists

EVIDENCE_COLUMNS: tuple[tuple[str, str, int], ...] = (
    ("time", "Time (UTC)", 15),
    ("event", "Event", 26),
    ("value", "Value", 30),
    ("weight", "Weight", 6),
    ("flags", "Flags", 12),
    ("stream", "Stream", 30),
)


def evidence(bridge: Bridge, alert: AlertRow) -> tuple[list[tuple[Any, ...]], int]:
    """The stored events behind ``alert`` (the first ``EVIDENCE_LIMIT``) and how many there are.

    A range alert: the device's events of its rule inside its windows (for unauthorized operations,
    every event flagged unauthorized). An allow-list alert: the events whose checked value is the
    offending one, from the first to the last violation."""
    if alert.is_range:
        where = "d.name = ? AND e.time_us >= ? AND e.time_us < ? AND " + (
            "e.unauthorized = 1" if alert.rule_id == UNAUTHORIZED else "e.rule = ?"
        )
        params: tuple[Any, ...] = (alert.device, alert.start, alert.end)
        if alert.rule_id != UNAUTHORIZED:
            params += (alert.rule_id,)
        kind = _UNKNOWN_OF.get(alert.rule_id)
        if kind is not None:  # messages without a protocol that count under this one
            pseudo, protocol = kind
            where = where[: -len("e.rule = ?")] + (
                f"(e.rule = ? OR (e.rule = {pseudo} AND ({protocol_of_sql('e')}) = '{protocol}'))"
            )
    else:
        where = "d.name = ? AND e.time_us >= ? AND e.time_us <= ? AND e.allow = ? AND e.value = ?"
        params = (alert.device, alert.start, alert.end, alert.rule_id, alert.value)
    base = "FROM events e JOIN devices d ON d.id = e.device JOIN streams s ON s.id = e.stream"
    rows = bridge.query(
        f"SELECT e.time_us, e.name, e.value, e.weight, e.expired, e.host_timed, s.name {base}"
        f" WHERE {where} ORDER BY e.time_us, e.id LIMIT ?",
        (*params, EVIDENCE_LIMIT),
    )
    (total,) = bridge.query(f"SELECT count(*) {base} WHERE {where}", params)[0]
    return rows, int(total)


def notes(bridge: Bridge, alert_id: int) -> list[tuple[int, str]]:
    return [
        (int(at), str(text))
        for at, text in bridge.query(
            "SELECT at_us, text FROM alert_notes WHERE alert = ? ORDER BY id", (alert_id,)
        )
    ]


def amendments(bridge: Bridge, alert_id: int) -> tuple[list[tuple[int, int, int, int]], int]:
    """The newest ``AMENDMENT_LIMIT`` amendments of an alert, oldest first, and how many."""
    rows = bridge.query(
        "SELECT at_us, window_us, count_before, count_after FROM amendments WHERE alert = ?"
        " ORDER BY id DESC LIMIT ?",
        (alert_id, AMENDMENT_LIMIT),
    )
    (total,) = bridge.query("SELECT count(*) FROM amendments WHERE alert = ?", (alert_id,))[0]
    return [tuple(int(x) for x in r) for r in reversed(rows)], int(total)  # type: ignore[misc]


def describe(
    a: AlertRow,
    notes_: list[tuple[int, str]],
    amended: tuple[list[tuple[int, int, int, int]], int] = ([], 0),
) -> Text:
    """The alert's fields, literal where they came from devices or files."""
    rule = BY_ID.get(a.rule_id)
    t = Text(end="")
    t.append((rule.display_name if rule else a.rule) + "\n", style="bold")
    t.append(f"{a.rule}  ·  {rule.alert_type if rule else ''}  ·  {a.severity}\n", style="dim")

    def field(name: str, value: Text | str) -> None:
        t.append(f"{name:<13}", style="bold")
        t.append_text(value if isinstance(value, Text) else Text(value))
        t.append("\n")

    field("Device", safe(a.device, 500))
    field("Group", safe(a.group, 200))
    if a.value is not None:
        field("Value", safe(a.value, 500))
    if a.withdrawn:
        state = Text("withdrawn", style="dim strike")
        why = (
            f" — merged into alert #{a.merged_into}"
            if a.merged_into
            else " — late data left no window of it out of range"
        )
        state.append(why, style="dim")
    else:
        state = Text(a.state, style="red" if a.state == "open" else "green")
    if a.amended:
        state.append("  · amended by late data", style="yellow")
    if a.acknowledged is not None:
        state.append(f"  · acknowledged {fmt_full_time(a.acknowledged)}", style="cyan")
    if a.closed is not None:
        state.append(f"  · resolved by hand {fmt_full_time(a.closed)}", style="dim")
    if a.silenced:
        state.append("  · silenced", style="magenta")
    field("State", state)
    field("From", fmt_full_time(a.start))
    field("To", fmt_full_time(a.end))
    if a.is_range:
        field("Window", f"{format_duration(a.window or 0)}, allowed [{a.min}, {a.max}]")
        counts = Text()
        size = (a.window or 0) * 1_000_000
        for i, c in enumerate(a.counts):
            high = a.max is not None and c > a.max
            if i:
                counts.append("\n" + " " * 13)
            counts.append(f"{fmt_time(a.start + i * size)}  ")
            counts.append(f"{'▲' if high else '▼'} {c}", style="bold red" if high else "yellow")
            counts.append(" above max" if high else " below min", style="dim")
        field("Counts", counts)
    else:
        field("Occurrences", str(a.occurrences or 0))
    if rule is not None:
        t.append("\nWhat it means\n", style="bold underline")
        t.append(rule.description + "\n")
        t.append("\nWhat to do\n", style="bold underline")
        t.append(rule.remediation + "\n")
    rows, total = amended
    if rows:
        t.append("\nAmendments\n", style="bold underline")
        if total > len(rows):
            t.append(f"the newest {len(rows)} of {total}\n", style="dim")
        for at, window, before, after in rows:
            t.append(f"{fmt_full_time(at)}  ", style="dim")
            if not a.is_range:
                t.append(f"a violation at {fmt_full_time(window)} arrived out of order\n")
            elif before == after:
                t.append(f"window {fmt_time(window)} judged again (the device is known earlier)\n")
            else:
                t.append(f"window {fmt_time(window)}: {before} → {after}\n")
    if notes_:
        t.append("\nNotes\n", style="bold underline")
        for at, text in notes_:
            t.append(f"{fmt_full_time(at)}  ", style="dim")
            t.append_text(safe(text, 2000))
            t.append("\n")
    return t


class AlertDetail(ModalScreen[None]):
    """One alert in full; the actions act on it and the view follows at once."""

    DEFAULT_CSS = """
    AlertDetail { align: center middle; }
    AlertDetail > Vertical {
        width: 96%; height: 94%; border: thick $primary; background: $surface; padding: 0 1;
    }
    AlertDetail #detail-body { height: 1fr; }
    AlertDetail #detail-text { height: auto; }
    AlertDetail #evidence-title { margin-top: 1; text-style: bold; }
    AlertDetail #evidence { height: auto; max-height: 16; }
    AlertDetail #detail-keys { height: 1; color: $text-muted; }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Close", id="detail.close"),
        Binding("a", "act('acknowledge')", "Acknowledge", id="detail.acknowledge"),
        Binding("r", "act('resolve')", "Resolve", id="detail.resolve"),
        Binding("n", "act('note')", "Note", id="detail.note"),
        Binding("s", "act('silence')", "Silence", id="detail.silence"),
        Binding("u", "act('unsilence')", "Unsilence", show=False, id="detail.unsilence"),
        Binding("v", "act('allow')", "Allow value", id="detail.allow"),
    ]

    def __init__(self, bridge: Bridge, alert_id: int) -> None:
        super().__init__()
        self.bridge = bridge
        self.alert_id = alert_id
        self.alert: AlertRow | None = None
        self._evidence_loaded = False

    def compose(self) -> ComposeResult:
        with Vertical():
            with VerticalScroll(id="detail-body"):
                yield Static(f"Alert #{self.alert_id}: loading…", id="detail-text", markup=False)
                yield Static("Evidence", id="evidence-title", markup=False)
                table = RowTable(id="evidence", zebra_stripes=True)  # Home/End: first/last
                for key, label, width in EVIDENCE_COLUMNS:
                    table.add_column(label, key=key, width=width)
                yield table
            yield Static(
                "a acknowledge · r resolve by hand (again: undo) · n note · s silence · "
                "u unsilence · v allow · Esc close",
                id="detail-keys",
                markup=False,
            )

    def on_mount(self) -> None:
        self.reload()

    def reload(self) -> None:
        """Read the alert (and, the first time, its evidence) again."""
        self.run_worker(self._load, thread=True, exit_on_error=False, name="detail", group="detail")

    def _load(self) -> Any:
        alert = load_alert(self.bridge, self.alert_id)
        if alert is None:
            return None, [], ([], 0), None
        rows = None if self._evidence_loaded else evidence(self.bridge, alert)
        return alert, notes(self.bridge, self.alert_id), amendments(self.bridge, alert.id), rows

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.name != "detail" or event.state != WorkerState.SUCCESS:
            return  # errors: the app's handler tells the operator
        event.stop()
        alert, notes_, amended, ev = event.worker.result
        text = self.query_one("#detail-text", Static)
        if alert is None:
            text.update(f"Alert #{self.alert_id} does not exist.")
            return
        self.alert = alert
        text.update(describe(alert, notes_, amended))
        if ev is not None:
            self._evidence_loaded = True
            rows, total = ev
            table = self.query_one("#evidence", DataTable)
            for i, (at, name, value, weight, expired, host_timed, stream) in enumerate(rows):
                flags = " ".join(
                    f for f, on in (("expired", expired), ("host-timed", host_timed)) if on
                )
                table.add_row(
                    cell(fmt_time(at)),
                    safe(name, 80),
                    safe(value or "", 200),
                    cell(weight),
                    cell(flags, "yellow"),
                    safe(stream, 200),
                    key=str(i),
                )
            shown = f"{len(rows)} of {total}" if total > len(rows) else str(total)
            self.query_one("#evidence-title", Static).update(
                f"Evidence: {shown} stored event{'s' if total != 1 else ''}"
            )

    def action_close(self) -> None:
        self.dismiss(None)

    def action_act(self, what: str) -> None:
        if self.alert is not None:
            self.app.alert_action(what, self.alert)  # type: ignore[attr-defined]

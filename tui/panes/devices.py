"""The devices pane: every known or expected device, its group, when it was seen, its events by
source and its open alerts. ``g`` moves the selected device to another group, ``e`` declares an
expected device; both give the running engine a new configuration (an exact ``[devices]`` entry).

Events by source are counted incrementally (only events stored since the last look), so the pane
costs the same on a database of a thousand events as on one of a hundred million; the table is a
``VirtualTable``, so it costs the same for ten devices as for ten thousand.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.widgets import Input, Static

from engine.config import Config, DeviceMap
from tui.bridge import Bridge
from tui.panes import LivePane, TextFilter, cell, fmt_time
from tui.safe import safe
from tui.widgets.filter import FilterInput
from tui.widgets.virtual_table import Rows, VirtualTable

FORMATS = ("hub-log", "hub-events", "security-messages", "serial")
COLUMNS: tuple[tuple[str, str, int], ...] = (
    ("device", "Device", 20),
    ("group", "Group", 10),
    ("kind", "Known", 8),
    ("first", "First seen", 14),
    ("last", "Last seen", 14),
    ("hub-log", "Hub log", 7),
    ("hub-events", "Hub ev.", 7),
    ("security-messages", "Agent", 7),
    ("serial", "Serial", 6),
    ("open", "Open", 5),
)


@dataclass(frozen=True, slots=True)
class DeviceRow:
    name: str
    group: str
    declared: bool
    seen: bool
    first: int | None
    last: int | None
    events: tuple[int, ...]  # per FORMATS
    open_alerts: int


def device_cells(r: DeviceRow) -> tuple[Text, ...]:
    """The cells of one device's row."""
    kind = (
        cell("expected", "yellow")
        if not r.seen
        else cell("declared", "cyan")
        if r.declared
        else cell("seen")
    )
    return (
        safe(r.name, 64),
        safe(r.group, 64),
        kind,
        cell(fmt_time(r.first)),
        cell(fmt_time(r.last)),
        *(cell(f"{n:,}" if n else "·", "" if n else "dim") for n in r.events),
        cell(r.open_alerts or "·", "bold red" if r.open_alerts else "dim"),
    )


class DevicesTable(VirtualTable):
    """One row per device, keyed by its name, sorted by name."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(COLUMNS, device_cells, **kwargs)


def moved(config: Config, device: str, group: str) -> Config:
    """``config`` with ``device`` mapped to ``group`` by an exact entry (which also declares it)."""
    dm = config.devices
    exact = {**dm.exact, device: group.lower()}
    return config.replace(devices=DeviceMap(exact, dm.patterns, dm.default))


def group_names(config: Config) -> list[str]:
    """Every group a device can be put in: the configured ones and ``default``."""
    names = {key for key in config.groups} | {config.devices.default}
    return sorted(names)


class DevicesPane(LivePane):
    """Known and expected devices."""

    DEFAULT_CSS = """
    DevicesPane { height: 1fr; }
    DevicesPane #device-bar { height: 1; }
    DevicesPane #device-filter { width: 1fr; height: 1; border: none; padding: 0 1; }
    DevicesPane #device-summary { width: auto; padding: 0 1; color: $text-muted; }
    DevicesPane DevicesTable { height: 1fr; }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("g", "move", "Move to group", id="devices.move"),
        Binding("e", "declare", "Declare expected", id="devices.declare"),
        Binding("slash", "focus_filter", "Filter", id="devices.filter"),
    ]

    def __init__(self, bridge: Bridge, **kwargs: Any) -> None:
        super().__init__(bridge, **kwargs)
        self.filter = TextFilter()
        self.rows: dict[str, DeviceRow] = {}
        self._summary = ""
        # Incremental event counts: the last event id counted, and counts by (device, format).
        self._counted_to = 0
        self._counts: dict[tuple[str, str], int] = {}
        self._last: dict[str, int] = {}  # latest non-expired event time by device
        self._stream_format: dict[int, str] = {}

    def compose(self) -> ComposeResult:
        with Horizontal(id="device-bar"):
            yield FilterInput(
                placeholder="filter: text, d:device g:group", id="device-filter", compact=True
            )
            yield Static("", id="device-summary", markup=False)
        yield DevicesTable(id="devices-table")

    @on(Input.Changed, "#device-filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.filter = TextFilter(event.value)
        self.app.refresh_now()  # type: ignore[attr-defined]

    def action_focus_filter(self) -> None:
        self.query_one("#device-filter", FilterInput).summon()

    # -- refresh ------------------------------------------------------------------------------

    def gather_args(self) -> Any:
        return self.bridge.config, self.filter

    def gather(self, snapshot: Any, args: Any) -> Any:
        config, flt = args
        q = self.bridge.query
        for sid, fmt in q("SELECT id, coalesce(format, kind) FROM streams"):
            self._stream_format[int(sid)] = str(fmt)
        (top,) = q("SELECT coalesce(max(id), 0) FROM events")[0]
        if top > self._counted_to:
            for name, stream, n, last in q(
                "SELECT d.name, e.stream, count(*), max(CASE WHEN e.expired = 0 THEN e.time_us END)"
                " FROM events e JOIN devices d ON d.id = e.device"
                " WHERE e.id > ? AND e.id <= ? GROUP BY d.name, e.stream",
                (self._counted_to, top),
            ):
                key = (str(name), self._stream_format.get(int(stream), "?"))
                self._counts[key] = self._counts.get(key, 0) + int(n)
                if last is not None and last > self._last.get(key[0], -1):
                    self._last[key[0]] = int(last)
            self._counted_to = int(top)
        open_alerts = dict(
            q(
                "SELECT device, count(*) FROM alerts WHERE state = 'open'"
                " AND closed_by_hand_us IS NULL GROUP BY device"
            )
        )
        rows: list[DeviceRow] = []
        seen = set()
        for name, declared, first, last in q(
            "SELECT name, declared, first_us, last_us FROM devices"
        ):
            name = str(name)
            seen.add(name)
            last = max(last or -1, self._last.get(name, -1))
            last = None if last < 0 else last
            rows.append(
                DeviceRow(
                    name,
                    config.devices.group_of(name),
                    name in config.devices.declared or bool(declared),
                    last is not None,
                    first,
                    last,
                    tuple(self._counts.get((name, f), 0) for f in FORMATS),
                    int(open_alerts.get(name, 0)),
                )
            )
        for name in config.devices.declared - seen:  # expected, not yet heard from
            rows.append(
                DeviceRow(
                    name,
                    config.devices.group_of(name),
                    True,
                    False,
                    None,
                    None,
                    (0,) * len(FORMATS),
                    int(open_alerts.get(name, 0)),
                )
            )
        total = len(rows)
        rows = [r for r in rows if flt.matches(device=r.name, group=r.group)]
        rows.sort(key=lambda r: r.name)
        return total, rows, Rows([(r.name, r) for r in rows])

    def show(self, data: Any) -> None:
        total, rows, table_rows = data
        self.rows = {r.name: r for r in rows}
        self.query_one(DevicesTable).set_rows(table_rows)
        summary = f"{len(rows)} of {total} devices"
        if summary != self._summary:  # Static.update lays the screen out again: only on change
            self._summary = summary
            self.query_one("#device-summary", Static).update(summary)

    # -- actions ------------------------------------------------------------------------------

    def selected(self) -> DeviceRow | None:
        key = self.query_one(DevicesTable).cursor_key
        return None if key is None else self.rows.get(key)

    def action_move(self) -> None:
        device = self.selected()
        if device is None:
            self.app.notify("No device selected", severity="warning")
            return
        self.app.move_device(device.name, device.group)  # type: ignore[attr-defined]

    def action_declare(self) -> None:
        self.app.declare_device()  # type: ignore[attr-defined]

"""The console's export action, driven by Textual's pilot on the real app and a real engine: the
dialog takes the filters of the view it is opened from, checks them inline, and runs
``engine.export.export`` in a thread worker; the results are opened with plain ``sqlite3``/``csv``."""

from __future__ import annotations

import csv
import re
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from textual.command import CommandPalette
from textual.message import Message
from textual.pilot import Pilot
from textual.widgets import Button, Checkbox, Input, ProgressBar, Select, Static

from engine.export import ALERT_FIELDS, ExportCancelled, ExportFilter
from engine.timestamps import format_time
from tests.test_app import (
    CONFIG,
    SIZE,
    US,
    append,
    console,
    d2c,
    db_rows,
    make_config,
    now_us,
    process,
    refreshed,
    wait_for,
)
from tests.test_securityalert import HUB
from tui.app import IotwatchApp
from tui.bridge import Bridge
from tui.panes.alerts import AlertsTable
from tui.panes.dashboard import Counters
from tui.panes.devices import DevicesTable
from tui.screens.dialogs import ErrorDialog
from tui.screens.export import (
    ExportDialog,
    ExportProgress,
    device_pattern,
    from_text,
    view_filter,
    with_suffix_of,
)


@pytest.fixture
def live(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Bridge, Path]]:
    """A started engine on a temporary database; the current folder is ``tmp_path`` (where the
    dialog's default file name points)."""
    monkeypatch.chdir(tmp_path)
    bridge = Bridge(make_config(tmp_path), str(tmp_path / "iotwatch.db"))
    bridge.start()
    try:
        yield bridge, tmp_path
    finally:
        bridge.stop()


async def open_export(pilot: Pilot[Any]) -> ExportDialog:
    """Press the export key (focus must not be in a text field, where Ctrl+E is "line end")."""
    await pilot.press("ctrl+e")
    dialog = await wait_for(
        pilot,
        lambda: pilot.app.screen if isinstance(pilot.app.screen, ExportDialog) else None,
        what="the export dialog",
    )
    await pilot.pause()
    return dialog


def field(dialog: ExportDialog, name: str) -> Input:
    return dialog.query_one(f"#export-{name}", Input)


def shown(dialog: ExportDialog, widget_id: str) -> str:
    """The text of an inline message, "" when it is hidden."""
    box = dialog.query_one(widget_id, Static)
    return str(box.render()) if box.has_class("shown") else ""


async def submit(pilot: Pilot[Any], dialog: ExportDialog) -> None:
    """Enter in the file field (a notification may lie over the Export button)."""
    field(dialog, "file").focus()
    await pilot.press("enter")


def notes(app: IotwatchApp) -> list[tuple[str, str]]:
    return [(str(n.message), n.severity) for n in app._notifications]


async def test_export_from_the_alerts_view(live: tuple[Bridge, Path]) -> None:
    bridge, folder = live
    db = bridge.db
    t = now_us() - 2 * US
    append(
        folder / "hub.jsonl",
        [d2c(d, t + i * 1000) for d in ("sensor-1", "sensor-2", "lab-1") for i in range(3)],
    )
    append(
        folder / "agent.jsonl",
        [process("sensor-1", t, "/bin/bad"), process("sensor-2", t, "/bin/evil")],
    )
    captured: list[Message] = []
    app = console(bridge)
    async with app.run_test(size=SIZE, notifications=True, message_hook=captured.append) as pilot:
        await pilot.press("2")
        table = app.query_one(AlertsTable)
        await wait_for(pilot, lambda: table.row_count == 2, what="two alerts")
        await wait_for(
            pilot,
            lambda: db_rows(db, "SELECT count(*) FROM events")[0][0] == 11,
            what="the events stored",
        )
        (mine,) = db_rows(
            db,
            "SELECT count(*) FROM events e JOIN devices d ON d.id = e.device WHERE d.name = ?",
            ("sensor-1",),
        )[0]
        # The view: one device, one group, open alerts only.
        app.query_one("#alert-text", Input).value = "d:sensor-1 g:def"
        app.query_one("#alert-state", Select).value = "open"
        await refreshed(pilot)
        assert table.row_count == 1
        table.focus()
        dialog = await open_export(pilot)
        # Carried over where they map onto the export's filters; the rest is said, not dropped.
        assert field(dialog, "devices").value == "*sensor-1*"
        assert field(dialog, "groups").value == "default"
        assert field(dialog, "since").value == field(dialog, "until").value == ""
        assert re.fullmatch(r"iotwatch-export-\d{8}-\d{6}\.sqlite", field(dialog, "file").value)
        assert dialog.query_one("#export-format", Select).value == "sqlite"
        assert dialog.query_one("#export-force", Checkbox).value is False
        assert "state 'open'" in str(dialog.query_one("#export-left-out", Static).render())

        # Filters are checked as they are typed, and a wrong one keeps the dialog open.
        field(dialog, "since").value = "yesterday"
        await pilot.pause()
        assert "not an RFC 3339 time" in shown(dialog, "#export-time-error")
        await submit(pilot, dialog)
        assert app.screen is dialog and dialog.worker is None
        field(dialog, "since").value = format_time(t - 3600 * US)
        field(dialog, "until").value = format_time(t - 7200 * US)
        await pilot.pause()
        assert "earlier than until" in shown(dialog, "#export-time-error")
        field(dialog, "until").value = ""
        field(dialog, "groups").value = "default nowhere"
        await pilot.pause()
        assert shown(dialog, "#export-time-error") == ""
        assert "nowhere" in shown(dialog, "#export-groups-note")  # a warning, not a refusal
        field(dialog, "groups").value = "default"

        # SQLite: only the filtered device, a sound file.
        field(dialog, "file").value = "view.sqlite"
        await submit(pilot, dialog)
        await wait_for(pilot, lambda: app.screen is not dialog, what="the export")
        assert any("view.sqlite" in m and f"{mine} events" in m for m, _ in notes(app))
        stages = {m.stage for m in captured if isinstance(m, ExportProgress)}
        assert "indexes" in stages  # the last stage (progress messages coalesce)
        conn = sqlite3.connect(folder / "view.sqlite")
        try:
            assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
            assert conn.execute("SELECT name FROM devices").fetchall() == [("sensor-1",)]
            assert conn.execute(
                "SELECT d.name, count(*) FROM events e JOIN devices d ON d.id = e.device"
                " GROUP BY d.name"
            ).fetchall() == [("sensor-1", mine)]
            assert conn.execute("SELECT device, value FROM alerts").fetchall() == [
                ("sensor-1", "/bin/bad")
            ]
            meta = dict(conn.execute("SELECT key, value FROM meta"))
            assert meta["filter_devices"] == '["*sensor-1*"]'
            assert meta["filter_since"] == format_time(t - 3600 * US)
        finally:
            conn.close()

        # CSV: the format changes the name's suffix; the alerts of the filtered device.
        dialog = await open_export(pilot)
        dialog.query_one("#export-format", Select).value = "csv"
        await pilot.pause()
        assert field(dialog, "file").value.endswith(".csv")
        field(dialog, "file").value = "view.csv"
        await submit(pilot, dialog)
        await wait_for(pilot, lambda: app.screen is not dialog, what="the CSV export")
        raw = (folder / "view.csv").read_bytes()
        assert raw.endswith(b"\r\n")
        rows = list(csv.reader(raw.decode("utf-8").splitlines()))
        assert rows[0] == list(ALERT_FIELDS)
        assert [(r[5], r[14]) for r in rows[1:]] == [("sensor-1", "/bin/bad")]

        # An existing file without "Replace": an error, the file untouched, the dialog still
        # open to fix it; with "Replace" it is replaced.
        before = (folder / "view.sqlite").read_bytes()
        mtime = (folder / "view.sqlite").stat().st_mtime_ns
        dialog = await open_export(pilot)
        field(dialog, "file").value = "view.sqlite"
        await submit(pilot, dialog)
        await wait_for(
            pilot,
            lambda: any("already exists" in m and s == "error" for m, s in notes(app)),
            what="the error notification",
        )
        await wait_for(pilot, lambda: dialog.worker is None, what="the dialog back to editing")
        assert app.screen is dialog and "Replace" in shown(dialog, "#export-error")
        assert (folder / "view.sqlite").read_bytes() == before
        assert (folder / "view.sqlite").stat().st_mtime_ns == mtime
        assert sorted(p.name for p in folder.iterdir() if p.name.startswith(".view")) == []
        dialog.query_one("#export-force", Checkbox).value = True
        await submit(pilot, dialog)
        await wait_for(pilot, lambda: app.screen is not dialog, what="the replacing export")
        assert (folder / "view.sqlite").stat().st_mtime_ns != mtime
        assert app.is_running


async def test_a_securityalert_export_names_the_configured_hub(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The console's export passes ``[engine] hub`` on, as ``iotwatch export`` does."""
    monkeypatch.chdir(tmp_path)
    text = CONFIG.replace("[engine]\n", f'[engine]\nhub = "{HUB}"\n', 1)
    assert text != CONFIG
    bridge = Bridge(make_config(tmp_path, text), str(tmp_path / "iotwatch.db"))
    bridge.start()
    try:
        append(tmp_path / "agent.jsonl", [process("sensor-1", now_us() - 2 * US, "/bin/bad")])
        app = console(bridge)
        async with app.run_test(size=SIZE, notifications=True) as pilot:
            await pilot.press("2")
            table = app.query_one(AlertsTable)
            await wait_for(pilot, lambda: table.row_count == 1, what="the alert")
            table.focus()
            dialog = await open_export(pilot)
            dialog.query_one("#export-format", Select).value = "securityalert"
            await pilot.pause()
            field(dialog, "file").value = "alerts.json"
            await submit(pilot, dialog)
            await wait_for(pilot, lambda: app.screen is not dialog, what="the export")
        lines = (tmp_path / "alerts.json").read_text().splitlines()
        assert [orjson.loads(x)["ResourceId"] for x in lines] == [HUB]
    finally:
        bridge.stop()


async def test_filters_of_other_views_cancel_and_failures(
    live: tuple[Bridge, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    bridge, folder = live
    t = now_us() - 2 * US
    append(folder / "hub.jsonl", [d2c("sensor-1", t), d2c("lab-1", t)])
    app = console(bridge)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        # The dashboard: its d:/g: terms; "!" is not an export filter.
        counters = app.query_one(Counters)
        await wait_for(pilot, lambda: counters.row_count >= 1, what="the counters")
        app.query_one("#counter-filter", Input).value = "g:la d:lab-* !"
        counters.focus()
        dialog = await open_export(pilot)
        assert (field(dialog, "devices").value, field(dialog, "groups").value) == ("lab-*", "lab")
        assert "out of range" in str(dialog.query_one("#export-left-out", Static).render())
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, ExportDialog)

        # Devices: the selected device, exactly. (A digit pressed while a table of the current tab
        # has the focus does not switch tabs — TabbedContent follows the focus back — so the
        # focus is let go first.)
        app.screen.set_focus(None)
        await pilot.press("3")
        devices = app.query_one(DevicesTable)
        await wait_for(pilot, lambda: devices.row_count == 2, what="two devices")
        devices.focus()
        devices.move_cursor(row=1)
        dialog = await open_export(pilot)
        assert field(dialog, "devices").value == "sensor-1"
        await pilot.press("escape")

        # The command palette has it too; progress is shown and Cancel stops the worker.
        entered = threading.Event()

        def slow(src: Any, out: Any, **kw: Any) -> Any:
            kw["progress"]("events", 1, 4)
            entered.set()
            assert kw["cancel"].wait(10)
            raise ExportCancelled("export cancelled")

        monkeypatch.setattr("tui.screens.export.export", slow)
        await pilot.press("ctrl+p")
        await wait_for(pilot, lambda: isinstance(app.screen, CommandPalette))
        await pilot.press(*"export the database")
        await pilot.pause(0.3)
        await pilot.press("enter")
        dialog = await wait_for(
            pilot, lambda: app.screen if isinstance(app.screen, ExportDialog) else None
        )
        await submit(pilot, dialog)
        await wait_for(pilot, entered.is_set, what="the worker")
        bar = dialog.query_one("#export-progress", ProgressBar)
        await wait_for(pilot, lambda: bar.progress == 1 and bar.total == 4, what="progress")
        assert "events 25%" in str(dialog.query_one("#export-stage", Static).render())
        assert [w.name for w in app.workers if w.name == "export"] == ["export"]
        assert dialog.query_one("#cancel", Button).has_focus  # Enter cancels
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.screen is not dialog, what="cancelled")
        assert any("cancelled" in m for m, _ in notes(app))

        # A failure that is not an ExportError (a bug) is an error dialog, never a crash.
        def broken(src: Any, out: Any, **kw: Any) -> Any:
            raise RuntimeError("boom [/x]")

        monkeypatch.setattr("tui.screens.export.export", broken)
        devices.focus()
        dialog = await open_export(pilot)
        await submit(pilot, dialog)
        await wait_for(pilot, lambda: isinstance(app.screen, ErrorDialog), what="error dialog")
        await pilot.press("escape")
        assert app.screen is dialog and "boom [/x]" in shown(dialog, "#export-error")
        assert app.is_running


def test_text_filters_map_onto_export_filters() -> None:
    groups = ["default", "lab", "lab2"]
    assert from_text("d:cam-* D:Sens g:LAB", groups) == (
        ("cam-*", "*Sens*"),
        ("lab", "lab2"),
        ["several d: terms (the export keeps devices matching any of them)"],
    )
    assert from_text("g:lab? r:Mqtt v:/bin/sh boom", groups) == (
        (),
        ("lab2",),
        ["text 'r:Mqtt'", "text 'v:/bin/sh'", "text 'boom'"],
    )
    assert from_text("g:nowhere", groups) == ((), ("nowhere",), [])  # as empty as the view
    # A device id with a space, a comma or a control character still selects that device.
    hostile = "cam 1,\x1b[2J"
    assert device_pattern(hostile) == "cam?1??[2J"
    assert ExportFilter(devices=(device_pattern(hostile),)).device_selected(hostile, None)
    assert with_suffix_of("a.sqlite", "securityalert") == "a.json"
    assert with_suffix_of("a.json", "jsonl") == "a.jsonl"
    assert with_suffix_of("notes.txt", "csv") == "notes.txt"
    assert view_filter("Rules", object(), groups).devices == ()

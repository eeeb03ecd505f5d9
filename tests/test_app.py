"""The console, driven by Textual's pilot on a real engine (a ``Bridge`` over a temporary database)
fed by source files the tests append to."""

from __future__ import annotations

import asyncio
import gc
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from rich.segment import Segment
from textual.command import CommandPalette
from textual.message import Message
from textual.pilot import Pilot
from textual.strip import Strip
from textual.widgets import DataTable, Input, Select, TabbedContent
from textual.widgets._footer import FooterKey

from engine.config import Config, load_config
from tests.conftest import agent_event, security_message
from tui.app import AlertsChanged, IotwatchApp
from tui.bridge import Bridge
from tui.panes.alerts import AlertsPane, AlertsTable
from tui.panes.allowlists import AllowlistsPane
from tui.panes.boards import BoardsPane
from tui.panes.dashboard import Counters, Dashboard
from tui.panes.devices import DevicesPane, DevicesTable
from tui.panes.rules import RulesPane
from tui.screens.detail import AlertDetail
from tui.screens.dialogs import ErrorDialog, GroupDialog, HelpDialog, NoteDialog, SilenceDialog
from tui.widgets.filter import FilterInput
from tui.widgets.virtual_table import VirtualTable

SIZE = (120, 36)
US = 1_000_000

CONFIG = """
[engine]
lateness = "PT1M"
quiet = "PT10M"

[[sources]]
type = "hub-events"
path = "hub.jsonl"

[[sources]]
type = "security-messages"
path = "agent.jsonl"

[groups.default.rules.MqttD2CMessagesNotInAllowedRange]
min = 0
max = 3
window = "PT1M"

[groups.default.rules.ProcessNotAllowed]
allow = ["ok"]

[groups.lab.rules.MqttD2CMessagesNotInAllowedRange]
max = 100
window = "PT1M"

[devices]
"lab-*" = "lab"
"""


# -- helpers (the other console tests use them too) ----------------------------------------------


def stamp(us: int) -> str:
    """RFC 3339 UTC with milliseconds."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(us // US)) + f".{us % US // 1000:03d}Z"


def now_us() -> int:
    return time.time_ns() // 1000


async def early_in_minute() -> int:
    """Now, once at least 10 s of the current one-minute window are left (tests of counters
    must not see their window end under them)."""
    left = 60 - (time.time() % 60)
    if left < 10:
        await asyncio.sleep(left + 0.05)
    return now_us()


def append(path: Path, records: list[Any]) -> None:
    """Append JSON lines to a source file, as a device or a log shipper would."""
    with path.open("ab") as f:
        f.write(b"".join(orjson.dumps(r) + b"\n" for r in records))


def d2c(device: str, at: int, count: int = 1) -> dict[str, Any]:
    return {"time": stamp(at), "deviceId": device, "op": "d2c", "protocol": "mqtt", "count": count}


def process(device: str, at: int, exe: str) -> dict[str, Any]:
    item = {"Executable": exe, "ProcessId": 7, "CommandLine": exe, "UserName": "root"}
    return security_message(device, agent_event("ProcessCreate", stamp(at), item))


def login(device: str, at: int, user: str) -> dict[str, Any]:
    item = {"UserName": user, "Result": "Success", "RemoteAddress": "10.0.0.9"}
    return security_message(device, agent_event("Login", stamp(at), item))


def make_config(folder: Path, text: str = CONFIG) -> Config:
    (folder / "hub.jsonl").touch()
    (folder / "agent.jsonl").touch()
    path = folder / "iotwatch.toml"
    path.write_text(text)
    return load_config(path)


def db_rows(db: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Read the database directly, as another program would."""
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


async def wait_for(
    pilot: Pilot[Any], predicate: Callable[[], Any], timeout: float = 10.0, what: str = ""
) -> Any:
    """Let the app run until ``predicate()`` is true."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        await pilot.pause(0.05)


async def refreshed(pilot: Pilot[Any], times: int = 1) -> None:
    """Wait until the app has finished ``times`` more refreshes of the visible pane."""
    app = pilot.app
    assert isinstance(app, IotwatchApp)
    if not hasattr(app.active_pane(), "gather"):  # a pane that refreshes itself
        await pilot.pause(0.3)
        return
    target = app.refreshes + times
    app.refresh_now()
    await wait_for(pilot, lambda: app.refreshes >= target, what="a refresh")
    await pilot.pause()


def screen_text(app: Any) -> str:
    """What the terminal shows, as text (the rendered strips of the screen)."""
    return "\n".join(strip.text for strip in app.screen._compositor.render_strips())


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[tuple[Bridge, Path]]:
    """A started engine on a temporary database, its sources in ``tmp_path``."""
    config = make_config(tmp_path)
    bridge = Bridge(config, str(tmp_path / "iotwatch.db"))
    bridge.start()
    try:
        yield bridge, tmp_path
    finally:
        bridge.stop()


def console(bridge: Bridge, **kwargs: Any) -> IotwatchApp:
    return IotwatchApp(bridge, interval=0.2, **kwargs)


# -- tests ---------------------------------------------------------------------------------------


async def test_every_tab_and_dialog_opens(engine: tuple[Bridge, Path]) -> None:
    bridge, _ = engine
    app = console(bridge)
    async with app.run_test(size=SIZE) as pilot:
        tabs = app.query_one("#tabs", TabbedContent)
        expected = {
            "1": ("dashboard", Dashboard),
            "2": ("alerts", AlertsPane),
            "3": ("devices", DevicesPane),
            "4": ("allowlists", AllowlistsPane),
            "5": ("rules", RulesPane),
            "6": ("boards", BoardsPane),
        }
        for key, (tab, pane_type) in expected.items():
            await pilot.press(key)
            await pilot.pause()
            assert tabs.active == tab
            assert isinstance(app.active_pane(), pane_type)
            assert app.active_pane().is_mounted
        await pilot.press("1")
        await refreshed(pilot)
        assert "Counters" in screen_text(app)
        await pilot.press("f1")
        assert isinstance(app.screen, HelpDialog)
        assert "acknowledge" in screen_text(app)
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpDialog)
        await pilot.press("ctrl+p")
        await wait_for(pilot, lambda: isinstance(app.screen, CommandPalette))
        await pilot.press(*"refresh every 5")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.interval == 5.0, what="palette command")
        assert not isinstance(app.screen, CommandPalette)
        await pilot.press("p")
        assert app.paused and app.sub_title == "paused"
        await pilot.press("p")
        assert not app.paused
        await pilot.press("i")
        assert app.interval == 10.0
        theme = app.theme
        await pilot.press("ctrl+t")
        assert app.theme != theme
        app.set_theme("ansi-dark")
        await pilot.pause()
        assert app.theme == "ansi-dark"


async def test_counters_alerts_and_dialogs_pause_refresh(engine: tuple[Bridge, Path]) -> None:
    bridge, folder = engine
    captured: list[Message] = []
    app = console(bridge)
    async with app.run_test(size=SIZE, message_hook=captured.append) as pilot:
        t = await early_in_minute()
        append(folder / "hub.jsonl", [d2c("sensor-1", t, 5), d2c("lab-1", t, 5)])
        dashboard = app.query_one(Dashboard)
        counters = app.query_one(Counters)
        await wait_for(pilot, lambda: counters.row_count == 2, what="two counters")
        await wait_for(pilot, lambda: dashboard.newest_rows, what="an alert on the dashboard")
        assert any(isinstance(m, AlertsChanged) for m in captured)
        text = screen_text(app)
        assert "▲ 5" in text  # sensor-1: above its max of 3, by symbol as well as colour
        assert "sensor-1" in text and "lab-1" in text
        # The filter keeps out-of-range rows only.
        await pilot.click("#counter-filter")
        await pilot.press("!")
        await refreshed(pilot)
        assert counters.row_count == 1
        await pilot.press("backspace", *"g:lab")
        await refreshed(pilot)
        assert counters.row_count == 1
        assert "lab-1" in screen_text(app)
        # A dialog open: the refresh does no work.
        app.query_one(Counters).focus()
        await pilot.press("f1")
        before = app.refreshes
        await pilot.pause(0.8)
        assert app.refreshes == before
        await pilot.press("escape")
        await refreshed(pilot)


async def test_acknowledge_resolve_note_silence(engine: tuple[Bridge, Path]) -> None:
    bridge, folder = engine
    db = bridge.db
    app = console(bridge)
    async with app.run_test(size=SIZE) as pilot:
        t = now_us() - 2 * US
        append(folder / "agent.jsonl", [process("sensor-9", t, "/bin/bad")])
        await pilot.press("2")
        pane = app.query_one(AlertsPane)
        table = app.query_one(AlertsTable)
        await wait_for(pilot, lambda: table.row_count == 1, what="the alert")
        alert = pane.selected()
        assert alert is not None and alert.value == "/bin/bad" and alert.device == "sensor-9"
        table.focus()

        await pilot.press("a")
        await wait_for(
            pilot,
            lambda: db_rows(db, "SELECT acknowledged_us FROM alerts WHERE id = ?", (alert.id,))[0][
                0
            ],
            what="acknowledged in the database",
        )
        await refreshed(pilot)
        assert pane.selected().acknowledged is not None  # type: ignore[union-attr]
        assert "A··" in table.get_row(str(alert.id))[1].plain

        await pilot.press("n")
        assert isinstance(app.screen, NoteDialog)
        await pilot.press(*"rebooted; [/x] checked")
        await pilot.press("enter")
        await wait_for(
            pilot,
            lambda: db_rows(db, "SELECT text FROM alert_notes WHERE alert = ?", (alert.id,)),
            what="the note",
        )
        assert db_rows(db, "SELECT text FROM alert_notes")[0][0] == "rebooted; [/x] checked"

        await pilot.press("s")
        assert isinstance(app.screen, SilenceDialog)
        app.screen.query_one("#silence-period", Select).value = 86400
        await pilot.click("#scope-all")  # every value of the rule on this device
        await pilot.click("#ok")
        await wait_for(pilot, lambda: db_rows(db, "SELECT * FROM silences"), what="the silence")
        rule, device, value, start, until = db_rows(
            db, "SELECT rule, device, value, from_us, until_us FROM silences"
        )[0]
        assert (rule, device, value) == (alert.rule_id, "sensor-9", None)
        assert abs(until - start - 86400 * US) < 5 * US
        # The open alert is marked at once; a new offending value on that device from now on is
        # recorded, marked silenced.
        append(folder / "agent.jsonl", [process("sensor-9", now_us(), "/bin/other")])
        await wait_for(pilot, lambda: table.row_count == 2, what="the silenced alert")
        assert db_rows(db, "SELECT value, silenced FROM alerts ORDER BY id") == [
            ("/bin/bad", 1),
            ("/bin/other", 1),
        ]
        assert table.get_row_at(0)[1].plain.endswith("·S··")
        table.move_cursor(row=1)

        # The detail: texts, windows or occurrences, the evidence; and an action from there.
        table.focus()
        await pilot.press("enter")
        assert isinstance(app.screen, AlertDetail)
        detail = app.screen
        evidence = detail.query_one("#evidence", DataTable)
        await wait_for(pilot, lambda: evidence.row_count == 1, what="the evidence")
        text = screen_text(app)
        assert "Custom alert - " in text and "What to do" in text
        assert "Occurrences" in text and "rebooted; [/x] checked" in text
        await pilot.press("r")
        await wait_for(
            pilot,
            lambda: db_rows(db, "SELECT closed_by_hand_us FROM alerts WHERE id = ?", (alert.id,))[
                0
            ][0],
            what="resolved by hand",
        )
        await wait_for(pilot, lambda: "resolved by hand" in screen_text(app), what="shown")
        await pilot.press("escape")
        await refreshed(pilot)
        assert "✔ by hand" in table.get_row(str(alert.id))[1].plain
        # Filters: the alert resolved by hand is not open any more.
        app.query_one("#alert-state", Select).value = "open"
        await refreshed(pilot)
        assert table.row_count == 1 and pane.selected().value == "/bin/other"  # type: ignore[union-attr]
        app.query_one("#alert-state", Select).value = "byhand"
        await refreshed(pilot)
        assert table.row_count == 1
        app.query_one("#alert-text", Input).value = "d:nobody"
        await refreshed(pilot)
        assert table.row_count == 0


async def test_devices_move_and_declare(engine: tuple[Bridge, Path]) -> None:
    bridge, folder = engine
    app = console(bridge)
    async with app.run_test(size=SIZE) as pilot:
        t = now_us() - 2 * US
        append(folder / "hub.jsonl", [d2c("sensor-1", t), d2c("sensor-2", t)])
        await pilot.press("3")
        pane = app.query_one(DevicesPane)
        table = pane.query_one(DevicesTable)
        await wait_for(pilot, lambda: table.row_count == 2, what="two devices")
        assert pane.rows["sensor-1"].events[1] == 1  # hub-events
        table.focus()
        assert pane.selected() is not None and pane.selected().name == "sensor-1"  # type: ignore[union-attr]
        await pilot.press("g")
        assert isinstance(app.screen, GroupDialog)
        app.screen.query_one("#group", Select).value = "lab"
        await pilot.click("#ok")
        await wait_for(
            pilot, lambda: bridge.config.devices.group_of("sensor-1") == "lab", what="moved"
        )
        await wait_for(pilot, lambda: pane.rows["sensor-1"].group == "lab", what="shown moved")
        # The file says so too (it was rewritten, its previous text kept beside it).
        await wait_for(
            pilot,
            lambda: load_config(folder / "iotwatch.toml").devices.group_of("sensor-1") == "lab",
            what="the file written",
        )
        assert (folder / "iotwatch.toml.bak").exists()

        await pilot.press("e")
        assert isinstance(app.screen, GroupDialog)
        await pilot.click("#ok")  # no id: refused inline
        assert isinstance(app.screen, GroupDialog)
        await pilot.click("#device-id")
        await pilot.press(*"spare-*")
        await pilot.click("#ok")
        assert isinstance(app.screen, GroupDialog)  # a glob is not a device
        await pilot.click("#device-id")
        await pilot.press("end", *["backspace"] * 2, *"-7")
        await pilot.press("enter")
        await wait_for(pilot, lambda: "spare-7" in pane.rows, what="declared device")
        assert pane.rows["spare-7"].declared and not pane.rows["spare-7"].seen
        assert "spare-7" in bridge.config.devices.declared


async def test_worker_errors_become_dialogs_and_notifications(
    engine: tuple[Bridge, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    bridge, folder = engine
    app = console(bridge)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        append(folder / "agent.jsonl", [process("sensor-9", now_us() - US, "/bin/bad")])
        await pilot.press("2")
        table = app.query_one(AlertsTable)
        await wait_for(pilot, lambda: table.row_count == 1, what="the alert")
        table.focus()

        def broken(alert_id: int) -> Any:
            raise RuntimeError("database is locked [/x]")

        monkeypatch.setattr(bridge, "acknowledge", broken)
        await pilot.press("a")
        await wait_for(pilot, lambda: isinstance(app.screen, ErrorDialog), what="error dialog")
        assert "database is locked [/x]" in screen_text(app)
        await pilot.press("escape")

        calls = 0
        real = bridge.query

        def flaky(sql: str, params: tuple[Any, ...] = ()) -> Any:
            nonlocal calls
            calls += 1
            if calls == 1:
                raise sqlite3.OperationalError("disk I/O error [$accent]")
            return real(sql, params)

        monkeypatch.setattr(bridge, "query", flaky)
        app.alerts_version += 1
        await wait_for(pilot, lambda: calls >= 2, what="a refresh after the failure")
        assert any("disk I/O error [$accent]" in str(n.message) for n in app._notifications)
        assert app.is_running


def test_run_console_wiring(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Bare ``iotwatch`` without ./iotwatch.toml says what to do in one line, with status 2."""
    from tui import cli

    monkeypatch.chdir(tmp_path)
    assert cli.main([]) == 2
    started: list[tuple[Config, str]] = []
    monkeypatch.setattr("tui.app.run_console", lambda config, db: started.append((config, db)) or 0)
    make_config(tmp_path)
    assert cli.main([]) == 0
    assert cli.main(["run"]) == 0
    assert [db for _, db in started] == ["iotwatch.db", "iotwatch.db"]


async def test_alert_changes_coalesce() -> None:
    """Alert changes that pile up while the UI is busy wake it once."""
    first, second = AlertsChanged(), AlertsChanged()
    assert second.can_replace(first)
    await asyncio.sleep(0)


async def test_allow_the_offending_value_from_an_alert(engine: tuple[Bridge, Path]) -> None:
    bridge, folder = engine
    app = console(bridge)
    async with app.run_test(size=SIZE) as pilot:
        append(folder / "agent.jsonl", [process("sensor-9", now_us() - US, "/usr/bin/helper")])
        await pilot.press("2")
        table = app.query_one(AlertsTable)
        await wait_for(pilot, lambda: table.row_count == 1, what="the alert")
        table.focus()
        await pilot.press("enter")
        await wait_for(
            pilot,
            lambda: isinstance(app.screen, AlertDetail) and app.screen.alert is not None,
            what="the detail",
        )
        await pilot.press("v")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "ConfirmAddValue")
        assert app.query_one("#tabs", TabbedContent).active == "allowlists"
        await pilot.press("y")
        await wait_for(
            pilot,
            lambda: (
                "/usr/bin/helper"
                in bridge.config.groups["default"].allow_rules["ProcessNotAllowed"].values
            ),
            what="the value allowed",
        )
        # Persisted (the file is written after the engine took the edit).
        await wait_for(
            pilot,
            lambda: "/usr/bin/helper" in (folder / "iotwatch.toml").read_text(),
            what="the file written",
        )
        # The engine allows it from the next event: no new alert.
        append(folder / "agent.jsonl", [process("sensor-9", now_us(), "/usr/bin/helper")])
        await pilot.pause(0.6)
        assert len(db_rows(bridge.db, "SELECT id FROM alerts")) == 1


async def test_number_keys_switch_tabs_while_a_table_has_focus(
    engine: tuple[Bridge, Path],
) -> None:
    bridge, _ = engine
    app = console(bridge)
    async with app.run_test(size=SIZE) as pilot:
        tabs = app.query_one("#tabs", TabbedContent)
        for key, tab in (("2", "alerts"), ("3", "devices"), ("1", "dashboard"), ("3", "devices")):
            table = app.active_pane().query("DataTable, VirtualTable").first()
            table.focus()
            await pilot.pause()
            await pilot.press(key)
            await pilot.pause()
            await pilot.pause()
            assert tabs.active == tab, (key, tabs.active)


async def test_moving_the_focus_leaves_no_old_footer_keys_alive(
    engine: tuple[Bridge, Path],
) -> None:
    """The footer is composed again on every focus change; the keys it replaced must go (an
    operator tabbing around for an hour would otherwise pile up hundreds of megabytes)."""

    def detached() -> int:
        gc.collect()
        return sum(1 for o in gc.get_objects() if isinstance(o, FooterKey) and not o.is_attached)

    bridge, _ = engine
    app = console(bridge)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        before = detached()
        for _ in range(30):
            await pilot.press("tab")
            await pilot.pause()
        assert app.query(FooterKey)  # the footer shows keys
        assert detached() - before <= 0


async def test_refreshing_the_dashboard_keeps_no_stale_renders(
    engine: tuple[Bridge, Path],
) -> None:
    """The sources strip and the newest alerts change every refresh. A ``DataTable`` keys its
    render caches by an update count every change bumps, so it kept each refresh's renders
    (up to 10,000 cells and 1,000 lines a table): segments and strips grew with every refresh
    for the first quarter of an hour of a live console."""

    def rendered() -> int:
        gc.collect()
        return sum(1 for o in gc.get_objects() if type(o) in (Segment, Strip))

    bridge, folder = engine
    app = console(bridge)
    async with app.run_test(size=SIZE) as pilot:

        async def refreshes(n: int, first: int) -> None:
            for i in range(first, first + n):
                at = now_us()
                append(folder / "hub.jsonl", [d2c("sensor-1", at)])
                append(folder / "agent.jsonl", [process("sensor-2", at, f"/tmp/x{i}")])
                await pilot.pause(0.05)
                done = app.refreshes
                await wait_for(pilot, lambda d=done: app.refreshes >= d + 2, what="refreshes")

        await refreshes(5, 0)
        before = rendered()
        await refreshes(30, 5)
        assert app.query_one("#newest", VirtualTable).row_count == 8  # new alerts kept coming
        assert rendered() - before < 300  # a DataTable: about 17,000


async def test_the_footer_is_not_composed_again_when_its_keys_stay_the_same(
    engine: tuple[Bridge, Path],
) -> None:
    bridge, _ = engine
    app = console(bridge)
    async with app.run_test(size=SIZE) as pilot:
        app.query_one(Counters).focus()
        await pilot.pause()
        await pilot.pause()
        keys = set(app.query(FooterKey))
        assert keys
        app.query_one("#newest", VirtualTable).focus()  # a table with the same keys in the footer
        await pilot.pause()
        await pilot.pause()
        assert set(app.query(FooterKey)) == keys
        app.query_one("#counter-filter", FilterInput).summon()  # an input: other keys
        await pilot.pause()
        await pilot.pause()
        assert set(app.query(FooterKey)) != keys


def test_a_long_source_path_keeps_its_end_in_the_sources_strip() -> None:
    from rich.cells import cell_len

    from tui.panes.dashboard import tail_cut

    path = "/var/log/iothub/" + "x" * 80 + "/device-*.jsonl"
    cut = tail_cut(path, 36)
    assert cut.plain.startswith("…") and cut.plain.endswith("/device-*.jsonl")
    assert cell_len(cut.plain) == 36
    assert tail_cut("/dev/ttyUSB0", 36).plain == "/dev/ttyUSB0"
    wide = tail_cut("/data/" + "数" * 40 + "\x1b[2J.jsonl", 36)  # wide characters, an escape
    assert cell_len(wide.plain) <= 36 and "\x1b" not in wide.plain
    assert wide.plain.endswith("␛[2J.jsonl")

"""Operator workflows of the console, driven by Textual's pilot on the real app, a real engine and
its SQLite database: one state vocabulary, undoing operator actions, the silences list, the
command palette acting on what is on screen, Escape/Tab/Home/End, declaring a known device,
notifications clear of dialog buttons."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textual.command import CommandList, CommandPalette
from textual.errors import NoWidget
from textual.geometry import Region
from textual.pilot import Pilot
from textual.widgets import Button, DataTable, Input, Select, Static
from textual.widgets._toast import Toast

from engine.catalogue import RANGE_RULES
from tests.test_app import (
    SIZE,
    US,
    append,
    console,
    d2c,
    db_rows,
    early_in_minute,
    engine,  # noqa: F401 - the fixture
    now_us,
    process,
    refreshed,
    screen_text,
    wait_for,
)
from tui.bridge import Bridge
from tui.panes.alerts import STATES, AlertsPane, AlertsTable
from tui.panes.allowlists import AllowlistsPane
from tui.panes.dashboard import Counters
from tui.panes.devices import DevicesPane, DevicesTable
from tui.panes.rules import RulesPane
from tui.screens.detail import AlertDetail
from tui.screens.dialogs import HELP, GroupDialog, NoteDialog, SilenceDialog, SilencesDialog
from tui.widgets.filter import FilterInput

D2C = "MqttD2CMessagesNotInAllowedRange"
DOCS = Path(__file__).resolve().parent.parent / "docs"


async def an_alert(pilot: Pilot[Any], folder: Path) -> tuple[AlertsPane, AlertsTable, int]:
    """Raise one allow-list alert (sensor-9 ran /bin/bad) and select it on the Alerts tab."""
    app = pilot.app
    append(folder / "agent.jsonl", [process("sensor-9", now_us() - 2_000_000, "/bin/bad")])
    await pilot.press("2")
    pane = app.query_one(AlertsPane)
    table = app.query_one(AlertsTable)
    await wait_for(pilot, lambda: table.row_count == 1, what="the alert")
    table.focus()
    alert = pane.selected()
    assert alert is not None
    return pane, table, alert.id


def column(db: str, name: str, alert_id: int) -> Any:
    return db_rows(db, f"SELECT {name} FROM alerts WHERE id = ?", (alert_id,))[0][0]


async def palette_names(pilot: Pilot[Any], query: str) -> list[str]:
    """Open the command palette, type ``query`` and return the commands it offers."""
    app = pilot.app
    await pilot.press("ctrl+p")
    palette = await wait_for(
        pilot, lambda: app.screen if isinstance(app.screen, CommandPalette) else None
    )
    await pilot.press(*query)
    await pilot.pause(0.5)
    results = palette.query_one(CommandList)
    names = []
    for i in range(results.option_count):
        prompt = results.get_option_at_index(i).prompt
        names.append(getattr(prompt, "plain", str(prompt)).split("\n")[0])  # not its help
    return names


# -- one vocabulary ------------------------------------------------------------------------------


async def test_resolved_by_hand_is_one_name_everywhere(engine: tuple[Bridge, Path]) -> None:  # noqa: F811
    bridge, folder = engine
    app = console(bridge)
    async with app.run_test(size=SIZE) as pilot:
        _pane, table, alert_id = await an_alert(pilot, folder)
        await pilot.press("r")
        await wait_for(pilot, lambda: column(bridge.db, "closed_by_hand_us", alert_id))
        await refreshed(pilot)
        assert "✔ by hand" in table.get_row(str(alert_id))[1].plain
        app.query_one("#alert-state", Select).value = "byhand"
        await refreshed(pilot)
        assert table.row_count == 1
        await pilot.press("enter")
        await wait_for(pilot, lambda: "resolved by hand 20" in screen_text(app), what="detail")
    # Every place the console and its documentation name the state uses the same words.
    labels = [label for label, _ in STATES]
    assert "resolved by hand" in labels
    texts = [HELP, *labels, (DOCS / "console.md").read_text()]
    for text in texts:
        assert "closed by hand" not in text and "✔ closed" not in text


# -- undoing operator actions; the silences in force ---------------------------------------------


async def test_unacknowledge_reopen_unsilence_and_the_silences_list(
    engine: tuple[Bridge, Path],  # noqa: F811
) -> None:
    bridge, folder = engine
    db = bridge.db
    app = console(bridge)
    async with app.run_test(size=SIZE) as pilot:
        _pane, table, alert_id = await an_alert(pilot, folder)

        # a acknowledges; a again un-acknowledges.
        await pilot.press("a")
        await wait_for(pilot, lambda: column(db, "acknowledged_us", alert_id), what="acked")
        await refreshed(pilot)
        assert table.get_row(str(alert_id))[1].plain.endswith("A···")
        await pilot.press("a")
        await wait_for(pilot, lambda: column(db, "acknowledged_us", alert_id) is None)
        await refreshed(pilot)
        assert table.get_row(str(alert_id))[1].plain.endswith("····")

        # r resolves by hand; r again reopens: the evaluated state shows again.
        await pilot.press("r")
        await wait_for(pilot, lambda: column(db, "closed_by_hand_us", alert_id), what="resolved")
        await refreshed(pilot)
        await pilot.press("r")
        await wait_for(pilot, lambda: column(db, "closed_by_hand_us", alert_id) is None)
        await refreshed(pilot)
        assert table.get_row(str(alert_id))[1].plain.startswith("● open")

        # s silences; S lists the silence; u there lifts it and the alert loses its mark.
        await pilot.press("s")
        assert isinstance(app.screen, SilenceDialog)
        await pilot.click("#ok")
        await wait_for(pilot, lambda: column(db, "silenced", alert_id) == 1, what="silenced")
        await pilot.press("S")
        dialog = await wait_for(
            pilot, lambda: app.screen if isinstance(app.screen, SilencesDialog) else None
        )
        silences = dialog.query_one("#silences", DataTable)
        await wait_for(pilot, lambda: silences.row_count == 1, what="the silence listed")
        assert "sensor-9" in screen_text(app) and "/bin/bad" in screen_text(app)
        await pilot.press("u")
        await wait_for(pilot, lambda: silences.row_count == 0, what="the silence lifted")
        assert "No silence is in force." in str(
            dialog.query_one("#silences-empty", Static).render()
        )
        (until, start), now = db_rows(db, "SELECT until_us, from_us FROM silences")[0], now_us()
        assert start <= until <= now  # it ended when lifted; the row stays as a record
        assert column(db, "silenced", alert_id) == 0
        await pilot.press("escape")
        await refreshed(pilot)

        # u on the alert lifts the silences that cover it; with none, it says so.
        await pilot.press("s")
        await pilot.click("#ok")
        await wait_for(pilot, lambda: column(db, "silenced", alert_id) == 1, what="silenced")
        await pilot.press("u")
        await wait_for(pilot, lambda: column(db, "silenced", alert_id) == 0, what="unsilenced")
        assert db_rows(db, "SELECT count(*) FROM silences WHERE until_us > ?", (now_us(),)) == [
            (0,)
        ]
        # A silence lifted stays lifted: a new offending value is not marked.
        append(folder / "agent.jsonl", [process("sensor-9", now_us(), "/bin/other")])
        await wait_for(pilot, lambda: table.row_count == 2, what="a second alert")
        assert db_rows(db, "SELECT silenced FROM alerts ORDER BY id") == [(0,), (0,)]


# -- the command palette acts on what is on screen ------------------------------------------------


async def test_the_palette_acts_on_the_visible_pane_only(engine: tuple[Bridge, Path]) -> None:  # noqa: F811
    bridge, folder = engine
    app = console(bridge)
    async with app.run_test(size=SIZE) as pilot:
        _pane, _table, alert_id = await an_alert(pilot, folder)
        assert "Acknowledge the selected alert" in await palette_names(pilot, "acknowledge")
        await pilot.press("escape")

        # The alert is still selected on the hidden Alerts tab: no command reaches it.
        await pilot.press("1")
        await pilot.pause()
        names = await palette_names(pilot, "acknowledge")
        assert "Acknowledge the selected alert" not in names
        await pilot.press("escape")
        app.act_selected("acknowledge")
        await pilot.pause(0.5)
        assert column(bridge.db, "acknowledged_us", alert_id) is None
        assert any("Alerts tab" in str(n.message) for n in app._notifications)

        # The allow-list editor's keys and the boards' keys are in the palette on their tabs.
        await pilot.press("4")
        await pilot.pause()
        names = await palette_names(pilot, "allow-lists")
        for name in ("Allow-lists: Add", "Allow-lists: Remove", "Allow-lists: New group"):
            assert name in names, names
        await pilot.press("escape")
        await pilot.press("6")
        await pilot.pause()
        names = await palette_names(pilot, "boards")
        for name in ("Boards: Search", "Boards: Save log", "Boards: Times"):
            assert name in names, names
        assert not any(n.startswith("Allow-lists:") for n in await palette_names(pilot, ""))
        await pilot.press("escape")

        # From the palette, an allow-list command acts on the editor on screen.
        await pilot.press("4")
        await pilot.pause()
        await palette_names(pilot, "allow-lists: add")
        await pilot.press("enter")
        editor = app.query_one(AllowlistsPane).editor
        await wait_for(pilot, lambda: editor.input.has_focus, what="the editor's input")


# -- Escape, Tab, Home and End --------------------------------------------------------------------


async def test_tab_passes_filters_and_escape_leaves_them(engine: tuple[Bridge, Path]) -> None:  # noqa: F811
    bridge, folder = engine
    app = console(bridge)
    async with app.run_test(size=SIZE) as pilot:
        append(folder / "hub.jsonl", [d2c("sensor-1", now_us() - 2_000_000)])
        for key, filter_id in (
            ("1", "#counter-filter"),
            ("2", "#alert-text"),
            ("3", "#device-filter"),
        ):
            await pilot.press(key)
            await pilot.pause()
            box = app.query_one(filter_id, FilterInput)
            # Round the whole focus chain: Tab never lands in the filter.
            for _ in range(len(app.screen.focus_chain) + 1):
                await pilot.press("tab")
                assert not box.has_focus, (key, app.focused)
            # / (from the pane's table) enters it, Escape gives the keys back to the table, the
            # filter stays applied.
            app.screen.set_focus(None)
            app._focus_pane(app._active_tab())
            await pilot.press("slash")
            assert box.has_focus
            await pilot.press(*"sensor")
            await pilot.press("escape")
            assert not box.has_focus and app.focused is not None
            assert app.focused.__class__.__name__ in ("Counters", "AlertsTable", "DevicesTable")
            assert box.value == "sensor"
            # Enter leaves it too; a click enters it.
            await pilot.click(filter_id)
            assert box.has_focus
            await pilot.press("enter")
            assert not box.has_focus
        # Out of the filter, digits switch tabs again.
        await pilot.press("5")
        await pilot.pause()
        assert app._active_tab() == "rules"

        # Escape leaves an editor's input even when it is empty.
        await pilot.press("4")
        await pilot.pause()
        editor = app.query_one(AllowlistsPane).editor
        editor.table.focus()
        await pilot.press("a")
        assert editor.input.has_focus and editor.input.value == ""
        await pilot.press("escape")
        assert editor.table.has_focus
        await pilot.press("3")
        await pilot.pause()
        assert app._active_tab() == "devices"


async def test_home_and_end_in_the_rules_and_allow_list_tables(engine: tuple[Bridge, Path]) -> None:  # noqa: F811
    bridge, _ = engine
    app = console(bridge)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("5")
        await pilot.pause()
        table = app.query_one(RulesPane).table
        table.focus()
        await pilot.press("end")
        assert table.cursor_row == table.row_count - 1 == 15
        assert app.query_one(RulesPane).rule == RANGE_RULES[-1].name
        await pilot.press("home")
        assert table.cursor_row == 0
        assert app.query_one(RulesPane).rule == RANGE_RULES[0].name

        await pilot.press("4")
        await pilot.pause()
        pane = app.query_one(AllowlistsPane)
        pane.show_list("default", "ProcessNotAllowed")
        editor = pane.editor
        for value in ("a", "b", "c"):
            pane.add_value("default", "ProcessNotAllowed", value, confirm=False)
            await wait_for(pilot, lambda v=value: v in editor.values, what=value)
        editor.table.focus()
        await pilot.press("end")
        assert editor.table.cursor_row == len(editor.values) - 1 == 3
        await pilot.press("home")
        assert editor.table.cursor_row == 0


# -- declaring an expected device ----------------------------------------------------------------


async def test_declaring_a_known_device_keeps_its_group(engine: tuple[Bridge, Path]) -> None:  # noqa: F811
    bridge, folder = engine
    app = console(bridge)
    async with app.run_test(size=SIZE) as pilot:
        t = now_us() - 2_000_000
        append(folder / "hub.jsonl", [d2c("lab-3", t), d2c("sensor-1", t)])
        await pilot.press("3")
        pane = app.query_one(DevicesPane)
        table = pane.query_one(DevicesTable)
        await wait_for(pilot, lambda: table.row_count == 2, what="two devices")
        table.focus()

        # lab-3 is in lab by its pattern: declaring it keeps it there (not "default", the first).
        await pilot.press("e")
        dialog = app.screen
        assert isinstance(dialog, GroupDialog)
        await pilot.click("#device-id")
        await pilot.press(*"lab-3")
        assert dialog.query_one("#group", Select).value == "lab"
        assert "Known device, in group lab" in str(dialog.query_one("#group-now", Static).render())
        await pilot.press("enter")
        await wait_for(pilot, lambda: "lab-3" in bridge.config.devices.declared, what="declared")
        assert bridge.config.devices.group_of("lab-3") == "lab"
        await wait_for(pilot, lambda: pane.rows["lab-3"].declared, what="shown declared")
        assert pane.rows["lab-3"].group == "lab"

        # A new id: the group its [devices] patterns give it, said as such.
        await pilot.press("e")
        dialog = app.screen
        await pilot.click("#device-id")
        await pilot.press(*"lab-99")
        assert dialog.query_one("#group", Select).value == "lab"
        assert "New device" in str(dialog.query_one("#group-now", Static).render())
        dialog.query_one("#device-id", Input).value = "spare-1"
        await pilot.pause()
        assert dialog.query_one("#group", Select).value == "default"
        await pilot.press("escape")


# -- notifications and dialogs --------------------------------------------------------------------


async def test_notifications_do_not_cover_dialog_buttons(engine: tuple[Bridge, Path]) -> None:  # noqa: F811
    bridge, folder = engine
    app = console(bridge)
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        _pane, _table, _alert_id = await an_alert(pilot, folder)
        await pilot.press("n")
        assert isinstance(app.screen, NoteDialog)
        for i in range(3):
            app.notify(f"notification {i} " + "x" * 80, timeout=30, markup=False)
        await pilot.pause(0.3)
        screen = app.screen

        def shown(widget: Any) -> Region:
            """The part of ``widget`` on screen (a toast scrolled out of its rack shows none)."""
            try:
                return screen.find_widget(widget).visible_region
            except NoWidget:
                return Region()

        toasts = [shown(t) for t in screen.query(Toast)]
        assert any(toasts), "a notification is on screen"
        buttons = [shown(b) for b in screen.query(Button)]
        assert len(buttons) == 2 and all(buttons)
        for toast in toasts:
            for button in buttons:
                assert not toast.overlaps(button), (toast, button)


async def test_an_alert_detail_is_the_view_for_the_palette(engine: tuple[Bridge, Path]) -> None:  # noqa: F811
    bridge, folder = engine
    app = console(bridge)
    async with app.run_test(size=SIZE) as pilot:
        _pane, _table, alert_id = await an_alert(pilot, folder)
        await pilot.press("enter")
        detail = await wait_for(
            pilot, lambda: app.screen if isinstance(app.screen, AlertDetail) else None
        )
        await wait_for(pilot, lambda: detail.alert is not None, what="the detail loaded")
        await palette_names(pilot, "acknowledge the selected")
        await pilot.press("enter")
        await wait_for(pilot, lambda: column(bridge.db, "acknowledged_us", alert_id), what="ack")
        assert isinstance(app.screen, AlertDetail)


# -- the counters after a rule change --------------------------------------------------------------


async def test_counters_show_the_window_that_is_counting_after_a_rule_change(
    engine: tuple[Bridge, Path],  # noqa: F811
) -> None:
    bridge, folder = engine
    app = console(bridge)
    async with app.run_test(size=SIZE) as pilot:
        t = await early_in_minute()
        append(folder / "hub.jsonl", [d2c("sensor-1", t, 2)])
        counters = app.query_one(Counters)
        await wait_for(pilot, lambda: counters.row_count == 1, what="the counter")

        # The rule's window goes from one minute to five, from its next window on.
        await pilot.press("5")
        await pilot.pause()
        rules = app.query_one(RulesPane)
        rules.table.focus()
        rules.table.move_cursor(row=[r.name for r in RANGE_RULES].index(D2C))
        await pilot.press("e")
        window = rules.query_one("#rl-window", Input)
        window.value = "PT5M"
        window.focus()
        await pilot.press("enter")
        await wait_for(
            pilot,
            lambda: bridge.config.group("default").range_rules[D2C].window == 300,
            what="the new window applied",
        )

        # Until the five-minute window starts, the one-minute window is the one counting, and
        # the counters show it: its count, at most a minute left.
        snapshot = bridge.snapshot().result(5)
        (counter,) = [c for c in snapshot.counters if c.device == "sensor-1"]
        assert counter.end - counter.start == 60 * US
        assert counter.start <= snapshot.now < counter.end
        assert counter.count == 2
        await pilot.press("1")
        await refreshed(pilot, 2)
        row = counters.get_row_at(0)
        assert row[3].plain.strip() == "2"
        left = row[5].plain
        assert left.endswith("s") and not left.startswith(("1m", "2m", "3m", "4m", "5m")), left

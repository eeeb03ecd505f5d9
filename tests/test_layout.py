"""The console at small and large terminals, its colours, and what the counters say: a real engine
(a ``Bridge`` over a temporary database, its clock set by the test) under Textual's pilot.

- at 80×24 the dashboard keeps at least five counter rows, the footer keeps Help and Quit, and
  Help and the Export dialog fit the screen with their buttons on it;
- in-range counts are the text's own colour, out-of-range ones carry ▲/▼ and a colour;
- a device quiet for longer than its shortest window is marked, in the counters and devices;
- after a rule's window changes, the counters show the old window until the new one starts.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from textual.geometry import Region

from engine.config import Config, DeviceMap, Group, RangeRule, SourceConfig
from engine.timestamps import parse_time
from tests.test_app import append, d2c, refreshed, screen_text, wait_for
from tui.app import IotwatchApp
from tui.bridge import Bridge
from tui.panes.dashboard import Counters, NewestTable, SourcesTable, counter_cells
from tui.panes.devices import DevicesPane, DevicesTable
from tui.screens.dialogs import HelpDialog
from tui.screens.export import ExportDialog

US = 1_000_000
NOW = parse_time("2026-11-28T10:07:30Z")
D2C = "MqttD2CMessagesNotInAllowedRange"
C2D = "MqttC2DMessagesNotInAllowedRange"


class Clock:
    """The engine's clock, moved by the test."""

    def __init__(self, us: int) -> None:
        self.us = us

    def __call__(self) -> int:
        return self.us


def config(folder: Path, window: int = 60, sources: int = 4) -> Config:
    rules = {
        D2C: RangeRule(D2C, True, 1, 3, window, "Medium"),
        C2D: RangeRule(C2D, True, 0, 5, 300),
    }
    files = [folder / f"hub-{i}.jsonl" for i in range(sources)]
    for f in files:
        f.touch()
    return Config(
        path=None,
        lateness=60,
        quiet=600,
        sources=tuple(SourceConfig("hub-events", str(f), format="hub-events") for f in files),
        groups={"default": Group("default", rules, {})},
        devices=DeviceMap({"expected-1": "default"}),
    )


def settle(predicate: Callable[[], Any], what: str) -> None:
    deadline = time.monotonic() + 10
    while not predicate():
        assert time.monotonic() < deadline, f"no {what}"
        time.sleep(0.02)


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[tuple[Bridge, Clock, Path]]:
    """An engine on four hub-event files, its clock at NOW; eight devices sent messages in the
    last minute (dev-3 five, over its max), one (quiet-1) last did two minutes ago."""
    clock = Clock(NOW)
    bridge = Bridge(config(tmp_path), str(tmp_path / "iotwatch.db"), clock=clock)
    bridge.start()
    try:
        records = [d2c("quiet-1", NOW - 130 * US)]
        for i in range(8):
            records += [d2c(f"dev-{i}", NOW - 20 * US + k) for k in range(5 if i == 3 else 2)]
        append(tmp_path / "hub-0.jsonl", records)
        settle(lambda: bridge.query("SELECT count(*) FROM events")[0][0] == 20, "events")
        yield bridge, clock, tmp_path
    finally:
        bridge.stop()


def region_of(app: IotwatchApp, selector: str) -> Region:
    return app.screen.query_one(selector).region


async def test_at_80x24_the_dashboard_keeps_five_counter_rows(
    fleet: tuple[Bridge, Clock, Path],
) -> None:
    bridge, _, _ = fleet
    app = IotwatchApp(bridge, interval=0.2, notify_alerts=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.query_one(Counters).row_count >= 18, what="counters")
        await refreshed(pilot, 2)
        counters = app.query_one(Counters)
        assert counters.region.height >= 1 + 5  # the header and five rows
        sources = app.query_one(SourcesTable)
        assert sources.display and sources.region.height >= 2  # four sources: the strip shrank
        newest = app.query_one(NewestTable)
        screen = Region(0, 0, 80, 24)
        for widget in (counters, sources, newest):
            assert screen.contains_region(widget.region) or not widget.display
        assert newest.styles.max_height is not None
        assert not newest.display or newest.styles.max_height.value < 1 + 8  # shrunk
        text = screen_text(app)
        assert "f1 Help" in text and "q Quit" in text
        # Taller: the strip shows every source, the newest alerts may have their eight rows.
        await pilot.resize_terminal(80, 50)
        await pilot.pause(0.2)
        assert sources.region.height == 1 + 4
        assert newest.display and newest.styles.max_height.value == 1 + 8
        assert counters.region.height >= 1 + 18  # and the counters the rest


async def test_the_footer_keeps_help_and_quit_at_any_width(
    fleet: tuple[Bridge, Clock, Path],
) -> None:
    bridge, _, _ = fleet
    app = IotwatchApp(bridge, interval=0.2, notify_alerts=False)
    async with app.run_test(size=(120, 24)) as pilot:
        for tab in ("2", "3", "4", "5", "1"):
            await pilot.press(tab)
            for width in (120, 80, 60):
                await pilot.resize_terminal(width, 24)
                await pilot.pause(0.1)
                footer = screen_text(app).splitlines()[-1]
                assert "f1 Help" in footer and "q Quit" in footer, (tab, width, footer)


async def test_help_and_export_fit_80x24_with_their_buttons_on_screen(
    fleet: tuple[Bridge, Clock, Path],
) -> None:
    bridge, _, _ = fleet
    app = IotwatchApp(bridge, interval=0.2, notify_alerts=False)
    screen = Region(0, 0, 80, 24)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("f1")
        await wait_for(pilot, lambda: isinstance(app.screen, HelpDialog), what="help")
        await pilot.pause(0.1)
        assert screen.contains_region(region_of(app, "HelpDialog > Vertical"))
        assert screen.contains_region(region_of(app, "#ok"))
        assert "Tabs" in screen_text(app)
        await pilot.press("escape", "ctrl+e")
        await wait_for(pilot, lambda: isinstance(app.screen, ExportDialog), what="export")
        await pilot.pause(0.1)
        assert screen.contains_region(region_of(app, "ExportDialog > Vertical"))
        for button in ("#ok", "#cancel"):
            assert screen.contains_region(region_of(app, button))
        # The fields below the fold are reached by scrolling the body, not off the screen.
        until = app.screen.query_one("#export-until")
        until.focus()
        await pilot.pause(0.2)
        assert screen.contains_region(until.region)


def test_in_range_counts_are_neutral_out_of_range_ones_marked() -> None:
    row = ("d", "g", D2C, 2, 1, 3, 30, (2, 5, 0), False, 4, False)
    count = counter_cells(row)[3]
    assert count.plain.strip() == "2" and not count.style  # the text's own colour
    bars = counter_cells(row)[6]
    # 2 is in range (no style of its own), 5 above and 0 below are red.
    assert [(s.start, s.end, str(s.style)) for s in bars.spans] == [
        (1, 2, "bold red"),
        (2, 3, "bold red"),
    ]
    above = counter_cells((*row[:3], 7, *row[4:]))[3]
    below = counter_cells((*row[:3], 0, *row[4:]))[3]
    assert (above.plain, str(above.style)) == ("▲ 7", "bold red")
    assert (below.plain, str(below.style)) == ("▼ 0", "yellow")


async def test_a_silent_device_is_marked_in_the_counters_and_devices(
    fleet: tuple[Bridge, Clock, Path],
) -> None:
    bridge, _, _ = fleet
    app = IotwatchApp(bridge, interval=0.2, notify_alerts=False)
    async with app.run_test(size=(160, 40)) as pilot:
        table = app.query_one(Counters)
        await wait_for(pilot, lambda: table.row_count >= 18, what="counters")
        await refreshed(pilot)
        seen = {key.split("\0")[0]: table.get_row(key)[7].plain for key in table.rows.keys}
        # quiet-1 sent nothing for 130 s, longer than its shortest window (60 s).
        assert seen["quiet-1"] == "◌ 2m10s" and seen["expected-1"] == "◌ never"
        assert seen["dev-0"] == "20s"
        assert str(table.get_row(f"quiet-1\0{D2C}")[0].style) == "dim"
        assert "◌ 2m10s" in screen_text(app)
        await pilot.press("3")
        devices = app.query_one(DevicesTable)
        await wait_for(pilot, lambda: devices.row_count >= 10, what="devices")
        known = {key: devices.get_row(key)[2].plain for key in devices.rows.keys}
        assert known["quiet-1"] == "◌ silent" and known["dev-0"] == "seen"
        assert known["expected-1"] == "expected"
        assert app.query_one(DevicesPane).rows["quiet-1"].silent


def counter_of(bridge: Bridge, device: str, rule: str) -> Any:
    counters = bridge.snapshot().result(10).counters
    return next(c for c in counters if (c.device, c.rule) == (device, rule))


def test_after_a_window_change_the_counters_show_the_window_still_counting(
    fleet: tuple[Bridge, Clock, Path],
) -> None:
    bridge, clock, folder = fleet
    before = counter_of(bridge, "dev-0", D2C)
    assert (before.start, before.end) == (
        NOW // (60 * US) * 60 * US,
        (NOW // (60 * US) + 1) * 60 * US,
    )
    assert before.count == 2
    bridge.apply_config(config(folder, window=300)).result(10)
    # The new five-minute window starts at the next five-minute boundary after this minute;
    # until then the one-minute window is the one counting, and the counters say so.
    after = counter_of(bridge, "dev-0", D2C)
    assert (after.start, after.end, after.count) == (before.start, before.end, 2)
    assert after.start <= clock.us < after.end
    boundary = -(-before.end // (300 * US)) * 300 * US
    clock.us = boundary - US  # the old track's last window
    last = counter_of(bridge, "dev-0", D2C)
    assert (last.start, last.end) == (boundary - 60 * US, boundary)
    clock.us = boundary + US
    settle(
        lambda: (
            counter_of(bridge, "dev-0", D2C).end - counter_of(bridge, "dev-0", D2C).start
            == 300 * US
        ),
        "the new window",
    )
    new = counter_of(bridge, "dev-0", D2C)
    assert (new.start, new.end) == (boundary, boundary + 300 * US)

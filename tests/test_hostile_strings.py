"""Hostile strings from devices and files: markup, escape sequences, C1 bytes, huge ids. They go
in through the real inputs (source files the engine tails, the database, engine callbacks) and
must come out literally, with control characters made visible, through every surface — without a
crash and without a single control byte of theirs reaching the terminal."""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.text import Text

from tests.test_app import (
    SIZE,
    agent_event,
    append,
    d2c,
    login,
    now_us,
    process,
    refreshed,
    security_message,
    stamp,
    wait_for,
)
from tui.app import IotwatchApp
from tui.bridge import Bridge
from tui.panes.alerts import AlertsPane, AlertsTable
from tui.panes.devices import DevicesPane, DevicesTable
from tui.safe import plain, safe
from tui.screens.detail import AlertDetail, describe
from tui.screens.dialogs import GroupDialog, NoteDialog, SilenceDialog

HOSTILE = (
    "[/x]",
    "[$accent]",
    "[B]",
    "[b]bold[/b]",
    "\x1b[31mred",
    "\x1b]0;title\x07",
    "c1\x9b2J",
    "trailing\\",
    "nul\x00del\x7f",
    "tab\tnew\nline\r",
    "bidi\u202eevil\u2066x\u061c",
    "zero\u200bwidth\u200d\ufeff",
    "L" * 10_000,
)
GROUP = "[$accent]"  # a group name from the configuration file, markup-shaped

CONFIG = f"""
[[sources]]
type = "hub-events"
path = "hub.jsonl"

[[sources]]
type = "security-messages"
path = "agent.jsonl"

[groups.default.rules.MqttD2CMessagesNotInAllowedRange]
max = 1
window = "PT1M"

[groups.default.rules.ProcessNotAllowed]
allow = ["ok"]

[groups.default.rules.LocalUserNotAllowed]
allow = ["operator"]

[groups."{GROUP}".rules.MqttD2CMessagesNotInAllowedRange]
max = 1
window = "PT1M"

[devices]
"evil*" = "{GROUP}"
"""

# Any C0 control (tab and newline included: a cell is one line), DEL, C1 control, or a
# bidirectional or zero-width character (they reorder or hide what the screen shows).
CONTROL = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060\u2066-\u2069\ufeff]"
)


def assert_clean(app: Any, export: bool = False) -> None:
    """Nothing on the screen carries a control character (and, with ``export``, the exported
    screen has no ESC either)."""
    for y, strip in enumerate(app.screen._compositor.render_strips()):
        for segment in strip:
            bad = CONTROL.search(segment.text)
            assert bad is None, f"control {bad.group()!r} on line {y}: {segment.text[:80]!r}"
    if export:
        svg = app.export_screenshot()
        assert "\x1b" not in svg and "\x9b" not in svg


# -- safe() itself --------------------------------------------------------------------------------


@pytest.mark.parametrize("s", HOSTILE)
def test_safe_is_literal_and_visible(s: str) -> None:
    text = safe(s)
    assert isinstance(text, Text)
    assert not text.spans and not text.style  # no markup was interpreted
    assert CONTROL.search(text.plain) is None
    assert text.plain == plain(s)
    if len(s) <= 500:
        assert len(text.plain) >= len(s)
    else:
        assert len(text.plain) == 500 and text.plain.endswith("…")


def test_safe_mapping() -> None:
    assert plain("\x1b[31m") == "␛[31m"
    assert plain("\x00\x07\t\n\r") == "␀␇␉␊␍"
    assert plain("\x7f") == "␡"
    assert plain("\x9b") == "\\x9b"
    assert plain("a\u202eb\u2066c\u061c") == "a\\u202eb\\u2066c\\u061c"
    assert plain("z\u200bw\u200dj\u2060\ufeff") == "z\\u200bw\\u200dj\\u2060\\ufeff"
    assert plain("a\\") == "a\\"
    assert plain("[/x] [$accent] [B]") == "[/x] [$accent] [B]"
    assert plain("é ✓ 漢") == "é ✓ 漢"
    assert plain("abcdef", limit=4) == "abc…"
    assert plain(None) == "" and plain(42) == "42"
    assert safe("x", style="red").style == "red"


# -- the app --------------------------------------------------------------------------------------


@pytest.fixture
def hostile_engine(tmp_path: Path) -> Iterator[tuple[Bridge, Path]]:
    from tests.test_app import make_config

    config = make_config(tmp_path, CONFIG)
    bridge = Bridge(config, str(tmp_path / "iotwatch.db"))
    bridge.start()
    try:
        yield bridge, tmp_path
    finally:
        bridge.stop()


def feed(folder: Path) -> None:
    """Device ids, users and processes made of hostile strings, through the source files."""
    t = now_us() - 3 * 1_000_000
    hub, agent = [], []
    for i, s in enumerate(HOSTILE):
        hub.append(d2c(f"dev{i}{s}", t, 3))
        agent.append(process(f"dev{i}{s}", t, f"/bin/{s}"))
        agent.append(login(f"dev{i}{s}", t, s))
    hub.append(d2c(f"evil{HOSTILE[4]}", t, 3))
    # An event whose name no rule uses, for the evidence columns' sake.
    agent.append(
        security_message("dev0[/x]", agent_event(f"Odd{HOSTILE[5]}", stamp(t), {"k": HOSTILE[0]}))
    )
    append(folder / "hub.jsonl", hub)
    append(folder / "agent.jsonl", agent)


async def test_hostile_strings_through_every_surface(
    hostile_engine: tuple[Bridge, Path],
) -> None:
    bridge, folder = hostile_engine
    app = IotwatchApp(bridge, interval=0.2)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        feed(folder)
        # Dashboard: sources, counters, newest alerts, and the new-alert notifications.
        await wait_for(
            pilot,
            lambda: len(bridge.query("SELECT id FROM alerts")) >= 3 * len(HOSTILE),
            what="the alerts",
            timeout=20,
        )
        await refreshed(pilot, 2)
        assert app._notifications  # alert notifications carry device ids and values
        assert_clean(app, export=True)
        assert "dev0[/x]" in "\n".join(s.text for s in app.screen._compositor.render_strips())
        if bridge.on_console is not None:  # the boards pane listens: console lines too
            import threading

            lines = [f"console {s}" for s in HOSTILE]
            worker = threading.Thread(target=bridge.on_console, args=("/dev/ttyEVIL\x1b[2J", lines))
            worker.start()
            worker.join()
        # Every tab.
        for key in "23456":
            await pilot.press(key)
            await refreshed(pilot)
            assert_clean(app)
        # Alerts: every one in detail, with a hostile note; the action dialogs.
        await pilot.press("2")
        await refreshed(pilot)
        pane = app.query_one(AlertsPane)
        table = app.query_one(AlertsTable)
        assert table.row_count >= 3 * len(HOSTILE)
        first = next(iter(pane.rows.values()))
        bridge.add_note(first.id, "note " + "".join(HOSTILE[:9])).result(10)
        # Every alert's detail text, then the detail screen of one alert of each hostile string
        # that carries its own device id (the 10,000-character one among them).
        for alert in pane.rows.values():
            text = describe(alert, [(0, "note " + HOSTILE[4])])
            assert CONTROL.search(text.plain.replace("\n", "")) is None
        for row in range(0, table.row_count, 6):
            table.move_cursor(row=row)
            table.focus()
            await pilot.press("enter")
            assert isinstance(app.screen, AlertDetail)
            detail = app.screen
            await wait_for(pilot, lambda d=detail: d.alert is not None, what="the detail")  # type: ignore[misc]
            await pilot.pause()
            assert_clean(app, export=row == 0)
            if row == 0:
                for key, dialog in (("n", NoteDialog), ("s", SilenceDialog)):
                    await pilot.press(key)
                    assert isinstance(app.screen, dialog)
                    await pilot.pause()
                    assert_clean(app)
                    await pilot.press("escape")
            await pilot.press("escape")
        # Devices: every device, and the move dialog on a hostile one.
        await pilot.press("3")
        await refreshed(pilot)
        devices = app.query_one(DevicesPane)
        assert len(devices.rows) >= len(HOSTILE)
        device_table = devices.query_one(DevicesTable)
        device_table.focus()
        device_table.move_cursor(row=device_table.row_count - 1)
        await pilot.press("g")
        assert isinstance(app.screen, GroupDialog)
        await pilot.pause()
        assert_clean(app)
        await pilot.press("escape")
        # Notifications with hostile text from the engine's log.
        import logging

        logging.getLogger("iotwatch.session").warning("source %s failed", HOSTILE[4] + HOSTILE[0])
        await pilot.pause(0.2)
        assert_clean(app)
        assert app.is_running


def test_no_escape_sequence_of_theirs_reaches_a_real_terminal(tmp_path: Path) -> None:
    """``iotwatch`` on ./iotwatch.toml under a pseudo-terminal: the bytes written to the terminal
    hold none of the devices' escape sequences (Textual's own are fine)."""
    from tests.test_app import make_config
    from tests.test_demo import run_in_pty

    make_config(tmp_path, CONFIG)
    feed(tmp_path)
    output = run_in_pty(
        [sys.executable, "-c", "import sys; from tui.cli import main; sys.exit(main([]))"],
        cwd=tmp_path,
        ready=lambda text: "dev0[/x]" in text and "Newest alerts" in text,
        timeout=20,
    )
    raw = output.raw
    for s in ("\x1b[31mred", "\x1b]0;title", "\x9b2J", "\x00del"):
        assert s.encode("utf-8", "surrogatepass") not in raw
    assert b"\xc2\x9b" not in raw  # C1 CSI as UTF-8
    assert "␛[31mred".encode() in raw
    time.sleep(0)

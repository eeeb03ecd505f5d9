"""The Boards pane at the bench, in the real console (``IotwatchApp`` on a real engine) reading a
board on a real pseudo-terminal that prints the getting-started firmware's console (the MXChip
quickstart transcript, tests/data/README.md) and a few complaints: search (``/``, ``n``, ``N``),
WARNING/ERROR highlighting, pattern marks, receive times (``t``), saving the log (``s``), and a
compact board list."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.style import Style
from textual.widgets import Input, OptionList
from textual.widgets._footer import FooterKey

from engine.config import load_config
from engine.formats.serial import encode_frame
from engine.simulators.pty import PtyEndpoint
from tests.test_app import wait_for
from tui.app import IotwatchApp
from tui.bridge import Bridge
from tui.panes.boards import BoardConsole, BoardsPane, ConsoleLog, SaveLogDialog

SIZE = (140, 40)
TRANSCRIPT = (
    Path(__file__).resolve().parent / "data" / "mxchip-az3166-getting-started-console.capture.bin"
)
COMPLAINTS = (
    b"WARNING: Wi-Fi RSSI low (-85 dBm)\r\n"
    b"ERROR: failed to request properties (0x00000001)\r\n"
    b"[bold]not markup[/bold] \x1b[31m\r\n"
)
FRAME = encode_frame({"Events": [{"Name": "Heartbeat", "Payload": []}]})  # releases the text


@pytest.fixture
def bench(tmp_path: Path) -> Iterator[tuple[Bridge, PtyEndpoint]]:
    board = PtyEndpoint(tmp_path / "usb-MXCHIP_AZ3166-if00")
    board.open()
    (tmp_path / "iotwatch.toml").write_text(
        f'[[sources]]\ntype = "serial"\nport = "{board.address}"\ndevice = "mxchip-1"\n'
    )
    bridge = Bridge(load_config(tmp_path / "iotwatch.toml"), str(tmp_path / "bench.db"))
    bridge.start()
    try:
        yield bridge, board
    finally:
        bridge.stop()
        board.close()


async def boards_tab(
    pilot: Any, bridge: Bridge, board: PtyEndpoint
) -> tuple[BoardConsole, ConsoleLog]:
    """Show the Boards tab and have the board print its console; the log, focused."""
    app = pilot.app
    await pilot.press("6")
    pane = app.query_one(BoardsPane)
    console = pane.console(board.address)
    assert console is not None
    await wait_for(pilot, lambda: console.stats.get("state") == "following", what="the board")
    board.write(TRANSCRIPT.read_bytes() + COMPLAINTS + FRAME)
    log = console.log_widget
    await wait_for(pilot, lambda: any("not markup" in line for line in log.lines), what="lines")
    log.focus()
    await pilot.pause()
    return console, log


def row(log: ConsoleLog, start: str) -> int:
    return next(y for y, line in enumerate(log.lines) if line.startswith(start) or start in line)


def styles(log: ConsoleLog, y: int, needle: str) -> list[Style]:
    """The styles of the rendered segments of row ``y`` that hold ``needle``'s characters."""
    strip = log._render_line(y, 0, 5000)
    text = "".join(s.text for s in strip)
    at = text.index(needle)
    out, pos = [], 0
    for segment in strip:
        end = pos + len(segment.text)
        if end > at and pos < at + len(needle) and segment.style is not None:
            out.append(segment.style)
        pos = end
    return out


def has(log: ConsoleLog, y: int, needle: str, component: str) -> bool:
    """Whether ``needle`` in row ``y`` is drawn with the component's colour (or background)."""
    want = log.get_component_rich_style(component, partial=True)
    found = styles(log, y, needle)
    return bool(found) and all(
        (want.color is None or s.color == want.color)
        and (want.bgcolor is None or s.bgcolor == want.bgcolor)
        for s in found
    )


async def test_search_next_previous_and_wrap(bench: tuple[Bridge, PtyEndpoint]) -> None:
    bridge, board = bench
    app = IotwatchApp(bridge, interval=0.2)
    async with app.run_test(size=SIZE) as pilot:
        console, log = await boards_tab(pilot, bridge, board)
        telemetry = [y for y, line in enumerate(log.lines) if "Telemetry message sent" in line]
        assert len(telemetry) == 4
        await pilot.press("slash")
        box = console.query_one("#search", Input)
        assert box.has_focus
        await pilot.press(*"MESSAGE SENT", "enter")  # case does not matter
        assert not box.display and log.has_focus
        assert log.current == telemetry[-1]  # the newest match on screen
        footer = str(console.query_one("#footer").render())
        assert "search MESSAGE SENT: 4 of 4 (n/N)" in footer
        await pilot.press("N")
        assert log.current == telemetry[2]
        await pilot.press("N", "N", "N")
        assert log.current == telemetry[-1]  # wrapped round the top
        await pilot.press("n")
        assert log.current == telemetry[0]  # and round the bottom
        # The current match and the others are highlighted, nothing else.
        assert has(log, telemetry[0], "message sent", "console-log--current")
        assert has(log, telemetry[1], "message sent", "console-log--match")
        assert not has(log, telemetry[1], "Telemetry", "console-log--match")
        # A search that finds nothing says so; Escape closes the box and keeps the search.
        await pilot.press("slash")
        box.value = "no such text"
        await pilot.press("enter")
        assert log.current is None and "not found" in str(console.query_one("#footer").render())
        await pilot.press("slash", "escape")
        assert log.has_focus and console.search_text == "no such text"


async def test_warnings_errors_and_pattern_marks_are_highlighted(
    bench: tuple[Bridge, PtyEndpoint],
) -> None:
    bridge, board = bench
    app = IotwatchApp(bridge, interval=0.2)
    async with app.run_test(size=SIZE) as pilot:
        _, log = await boards_tab(pilot, bridge, board)
        warning, error = row(log, "WARNING: Wi-Fi"), row(log, "ERROR: failed")
        plain = row(log, "Initializing DHCP")
        assert has(log, warning, "Wi-Fi RSSI low", "console-log--warning")
        assert has(log, error, "failed to request", "console-log--error")
        assert not has(log, plain, "Initializing", "console-log--warning")
        assert not has(log, plain, "Initializing", "console-log--error")
        # What each line became, as the engine's patterns said.
        marked = {line.split("  ◂ ")[1] for line in log.lines if "  ◂ " in line}
        assert marked == {"device mydevice", "connect mqtt", "twin-update", "d2c mqtt", "method"}
        method = row(log, "Receive direct method: setLedState")
        assert log.lines[method] == "Receive direct method: setLedState  ◂ method"
        assert has(log, method, "◂ method", "console-log--mark")
        # Device text stays text: markup shown as written, the escape made visible.
        hostile = row(log, "[bold]not markup[/bold]")
        assert log.lines[hostile] == "[bold]not markup[/bold] ␛[31m"


async def test_receive_times_toggle(bench: tuple[Bridge, PtyEndpoint]) -> None:
    bridge, board = bench
    app = IotwatchApp(bridge, interval=0.2)
    async with app.run_test(size=SIZE) as pilot:
        started = time.time()
        console, log = await boards_tab(pilot, bridge, board)
        before = list(log.lines)
        await pilot.press("t")
        stamp = re.compile(r"(\d\d):(\d\d):(\d\d)\.(\d{3}) ")
        assert len(log.lines) == len(before)
        for line, old in zip(log.lines, before, strict=True):
            m = stamp.match(line)
            assert m is not None and line[m.end() :] == old
        # The time is when the engine received the line (UTC, to the millisecond).
        hh, mm, ss = (int(x) for x in stamp.match(log.lines[-1]).groups()[:3])  # type: ignore[union-attr]
        now = time.gmtime(started)
        assert (
            abs((hh * 3600 + mm * 60 + ss) - (now.tm_hour * 3600 + now.tm_min * 60 + now.tm_sec))
            < 30
        )
        assert has(log, len(log.lines) - 1, log.lines[-1][:12], "console-log--time")
        # Lines that arrive now get their time too; t again takes the times away.
        board.write(b"later line\r\n" + FRAME)
        await wait_for(pilot, lambda: log.lines[-1].endswith(" later line"), what="a new line")
        assert stamp.match(log.lines[-1])
        await pilot.press("t")
        assert log.lines[: len(before)] == before and log.lines[-1] == "later line"
        assert not console.times


async def test_save_the_visible_log(bench: tuple[Bridge, PtyEndpoint], tmp_path: Path) -> None:
    bridge, board = bench
    app = IotwatchApp(bridge, interval=0.2)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        _, log = await boards_tab(pilot, bridge, board)
        await pilot.press("t")
        await pilot.press("s")
        assert isinstance(app.screen, SaveLogDialog)
        path_input = app.screen.query_one("#save-path", Input)
        assert re.fullmatch(r"mxchip-1-console-\d{8}T\d{6}Z\.log", path_input.value)
        target = tmp_path / "saved"
        target.mkdir()
        path_input.value = str(target / "bench.log")
        await pilot.press("enter")
        await wait_for(pilot, lambda: (target / "bench.log").exists(), what="the file")
        await pilot.pause(0.1)
        saved = (target / "bench.log").read_text(encoding="utf-8")
        assert saved.splitlines() == list(log.lines)
        assert "Receive direct method: setLedState  ◂ method" in saved
        assert any("Saved" in n.message for n in app._notifications)
        # An existing file is never replaced.
        await pilot.press("s")
        dialog = app.screen
        assert isinstance(dialog, SaveLogDialog)
        dialog.query_one("#save-path", Input).value = str(target / "bench.log")
        await pilot.press("enter")
        assert app.screen is dialog
        assert "exists" in str(dialog.query_one("#save-error").render())
        await pilot.press("escape")
        assert (target / "bench.log").read_text(encoding="utf-8") == saved


async def test_one_board_has_no_board_list_and_the_footer_shows_the_keys(
    bench: tuple[Bridge, PtyEndpoint],
) -> None:
    bridge, board = bench
    app = IotwatchApp(bridge, interval=0.2)
    async with app.run_test(size=SIZE) as pilot:
        await boards_tab(pilot, bridge, board)
        pane = app.query_one(BoardsPane)
        board_list = pane.query_one("#board-list", OptionList)
        assert pane.has_class("-single") and not board_list.display
        keys = {k.description for k in app.query(FooterKey)}
        assert {"Search", "Next match", "Previous match", "Times", "Save log", "Follow"} <= keys
        # A second board brings the list back.
        pane.add_lines("socket://127.0.0.1:9", ["another board"])
        await pilot.pause()
        assert not pane.has_class("-single") and board_list.display
        assert board_list.option_count == 2
        # One console on show at a time; the list switches.
        first, second = pane.consoles.values()
        assert first.display and not second.display
        board_list.highlighted = 1
        await pilot.pause()
        assert second.display and not first.display and pane.current() is second

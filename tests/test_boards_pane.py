"""The board consoles: hostile console text, pause-on-scroll with the new-lines badge, bounded
history, no work while hidden, and a live board (``board_server``) read by a real engine."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from textual.app import App, ComposeResult
from textual.widgets import Label, TabbedContent, TabPane

from engine.config import Config, SourceConfig
from engine.simulators.pty import board_server
from tests.test_editors import PaneApp
from tui.bridge import Bridge
from tui.panes.boards import LINE_LIMIT, MAX_LINES, BoardConsole, BoardsPane

SIZE = (120, 30)
PORT = "socket://127.0.0.1:9"  # never opened: the lines are fed by hand

HOSTILE = [
    "[/x]",
    "[$accent]",
    "[B]",
    "\x1b[31mred\x1b[0m",
    "C1 \x9b31m CSI",
    "bell \x07 backspace \x08 nul \x00",
    "x" * 10_000,
    "tab\there",
    "",
    "line\u2028separator",
]


@pytest.fixture
def bridge(tmp_path: Path) -> Iterator[Bridge]:
    b = Bridge(Config(path=None), str(tmp_path / "boards.db"))
    b.start()
    try:
        yield b
    finally:
        b.stop()


def rendered(console: BoardConsole) -> list[str]:
    """The text of every rendered row of the console's log (what reaches the terminal)."""
    log = console.log_widget
    rows = []
    for y in range(log.line_count):
        strip = log._render_line(y, 0, 20_000)
        rows.append("".join(segment.text for segment in strip))
    return rows


async def feed(pilot: Any, pane: BoardsPane, lines: list[str], port: str = PORT) -> None:
    pane.add_lines(port, lines)
    await pilot.pause()  # a new port's console is mounted first
    pane.flush_now()
    await pilot.pause()


async def test_hostile_console_lines_are_shown_literally(bridge: Bridge) -> None:
    app = PaneApp(lambda: BoardsPane(bridge))
    async with app.run_test(size=SIZE) as pilot:
        pane = app.query_one(BoardsPane)
        await pilot.pause()
        await feed(pilot, pane, HOSTILE)
        console = pane.console(PORT)
        assert console is not None and console.log_widget.line_count == len(HOSTILE)
        rows = rendered(console)
        text = "\n".join(rows)
        for bad in ("\x1b", "\x9b", "\x07", "\x08", "\x00", "\u2028"):
            assert bad not in text
        assert rows[0].startswith("[/x]") and rows[1].startswith("[$accent]")
        assert rows[2].startswith("[B]")
        assert rows[3].startswith("␛[31mred␛[0m")
        assert rows[4].startswith("C1 \\x9b31m CSI")
        assert len(rows[6].rstrip()) == LINE_LIMIT and rows[6].rstrip().endswith("…")
        assert rows[7].startswith("tab     here")
        # Markup in the port name is not interpreted either.
        pane.add_lines("[bold]evil[/bold]", ["x"])
        await pilot.pause()
        assert "[bold]evil[/bold]" in pane.consoles
        screen = app.export_screenshot()  # renders the whole screen: no crash
        assert "\x1b" not in screen and "\x9b" not in screen


async def test_scrolling_up_pauses_and_counts_new_lines(bridge: Bridge) -> None:
    app = PaneApp(lambda: BoardsPane(bridge))
    async with app.run_test(size=SIZE) as pilot:
        pane = app.query_one(BoardsPane)
        await pilot.pause()
        await feed(pilot, pane, [f"boot {i}" for i in range(200)])
        console = pane.console(PORT)
        assert console is not None
        log = console.log_widget
        assert log.line_count == 200 and log.is_vertical_scroll_end and not console.paused

        log.focus()
        await pilot.press("pageup")
        await pilot.pause()
        assert console.paused
        top = log.scroll_y
        await feed(pilot, pane, [f"new {i}" for i in range(30)])
        assert console.new_lines == 30 and log.line_count == 200  # the view does not move
        assert log.scroll_y == top
        footer = str(console.query_one("#footer", Label).content)
        assert "30 new lines" in footer
        await feed(pilot, pane, ["one more"])
        assert "31 new lines" in str(console.query_one("#footer", Label).content)

        await pilot.press("end")
        await pilot.pause()
        assert not console.paused and console.new_lines == 0
        assert log.line_count == 231 and log.lines[-1] == "one more"
        assert log.is_vertical_scroll_end
        await feed(pilot, pane, ["after"])
        assert log.lines[-1] == "after" and log.is_vertical_scroll_end

        # g (top) pauses too; G resumes; scrolling back to the bottom resumes as well.
        await pilot.press("g")
        await pilot.pause()
        assert console.paused
        await feed(pilot, pane, ["held"])
        await pilot.press("G")
        await pilot.pause()
        assert not console.paused and log.lines[-1] == "held"
        await pilot.press("pageup")
        await feed(pilot, pane, ["held 2"])
        assert console.paused
        log.scroll_end(animate=False, immediate=True)
        await pilot.pause()
        assert not console.paused and log.lines[-1] == "held 2"


async def test_line_count_is_bounded(bridge: Bridge) -> None:
    app = PaneApp(lambda: BoardsPane(bridge))
    async with app.run_test(size=SIZE) as pilot:
        pane = app.query_one(BoardsPane)
        await pilot.pause()
        await feed(pilot, pane, [f"line {i}" for i in range(MAX_LINES + 7000)])
        console = pane.console(PORT)
        assert console is not None
        log = console.log_widget
        assert log.line_count == MAX_LINES and log.lines[-1] == f"line {MAX_LINES + 6999}"
        log.focus()
        await pilot.press("home")
        await pilot.pause()
        assert console.paused
        await feed(pilot, pane, [f"more {i}" for i in range(MAX_LINES + 10)])
        assert console.new_lines == MAX_LINES + 10  # counted, though only the last are kept
        await pilot.press("end")
        await pilot.pause()
        assert log.line_count == MAX_LINES and log.lines[-1] == f"more {MAX_LINES + 9}"


class TabbedApp(App[None]):
    def __init__(self, bridge: Bridge) -> None:
        super().__init__()
        self.bridge = bridge

    def compose(self) -> ComposeResult:
        with TabbedContent(id="tabs"):
            with TabPane("Other", id="other"):
                yield Label("another pane")
            with TabPane("Boards", id="boards"):
                yield BoardsPane(self.bridge)


async def test_hidden_pane_does_no_work(bridge: Bridge) -> None:
    app = TabbedApp(bridge)
    async with app.run_test(size=SIZE) as pilot:
        pane = app.query_one(BoardsPane)
        await pilot.pause()
        assert not pane.shown
        pane.add_lines(PORT, [f"quiet {i}" for i in range(MAX_LINES + 50)])
        await pilot.pause(0.3)
        console = pane.console(PORT)
        assert console is not None
        assert console.log_widget.line_count == 0 and console.pending == MAX_LINES
        assert pane._flush_timer is None  # nothing scheduled while hidden

        app.query_one(TabbedContent).active = "boards"
        await pilot.pause(0.3)
        assert pane.shown and console.pending == 0
        assert console.log_widget.line_count == MAX_LINES
        assert console.log_widget.lines[-1] == f"quiet {MAX_LINES + 49}"


async def test_live_board_lines_arrive_and_history_comes_back(tmp_path: Path) -> None:
    server = board_server("bench-board-1", seed=3, tcp_port=0, speed=40)
    server.start()
    db = str(tmp_path / "live.db")
    port = server.address
    config = Config(path=None, sources=(SourceConfig("serial", port=port, device="b1"),))
    bridge = Bridge(config, db)
    bridge.start()
    try:
        app = PaneApp(lambda: BoardsPane(bridge))
        async with app.run_test(size=SIZE) as pilot:
            pane = app.query_one(BoardsPane)
            bridge.on_console = pane.post_lines  # what the shell does
            console = pane.console(port)
            assert console is not None
            deadline = time.monotonic() + 15
            while console.log_widget.line_count < 3 or console.stats.get("frames", 0) < 1:
                assert time.monotonic() < deadline, "no console lines or frames from the board"
                await pilot.pause(0.2)
                await pane.refresh_stats()
            assert console.stats["state"] == "following"
            assert console.stats["crc_errors"] == 0
            status = str(console.query_one("#status").render())
            assert "following" in status and "frames" in status and "CRC errors 0" in status
            assert any("temperature" in line.lower() or "telemetry" in line.lower()
                       for line in console.log_widget.lines)  # fmt: skip
            await asyncio.sleep(0.3)  # committed
            shown = list(console.log_widget.lines)
            bridge.on_console = None
    finally:
        bridge.stop()
        server.stop()

    # A later console without the board in its configuration shows what the database kept.
    later = Bridge(Config(path=None), db)
    later.start()
    try:
        app = PaneApp(lambda: BoardsPane(later))
        async with app.run_test(size=SIZE) as pilot:
            pane = app.query_one(BoardsPane)
            await pilot.app.workers.wait_for_complete()
            pane.flush_now()
            await pilot.pause()
            console = pane.console(port)
            assert console is not None and console.history_done
            history = list(console.log_widget.lines)
            assert history[: len(shown)] == shown
    finally:
        later.stop()


def test_lines_printed_before_the_console_listens_wait_for_it(tmp_path: Path) -> None:
    """The bridge keeps a board's lines while no console listens and hands them over first."""
    from engine.event import ConsoleLine

    b = Bridge(Config(path=None), str(tmp_path / "early.db"))
    b._console("/dev/ttyA", [ConsoleLine(0, "boot", 1), ConsoleLine(6, "one", 1)])
    b._console("/dev/ttyB", [ConsoleLine(0, "other", 2)])
    heard: list[tuple[str, list[str]]] = []
    b.on_console = lambda port, lines: heard.append((port, [ln.text for ln in lines]))
    b._console("/dev/ttyA", [ConsoleLine(10, "two", 3)])
    assert heard == [
        ("/dev/ttyA", ["boot", "one"]),
        ("/dev/ttyB", ["other"]),
        ("/dev/ttyA", ["two"]),
    ]
    b.on_console = None
    b._console("/dev/ttyA", [ConsoleLine(14, "three", 4)])
    assert len(heard) == 3 and next(iter(b._early["/dev/ttyA"])).text == "three"


async def test_a_line_both_in_the_history_and_heard_live_is_shown_once(bridge: Bridge) -> None:
    from engine.event import ConsoleLine

    app = PaneApp(lambda: BoardsPane(bridge))
    async with app.run_test(size=SIZE) as pilot:
        pane = app.query_one(BoardsPane)
        await pilot.app.workers.wait_for_complete()
        console = pane._add_console(PORT)
        console.history_done = False
        await pilot.pause()
        early = [ConsoleLine(0, "boot", 100), ConsoleLine(5, "stored and heard", 100)]
        console.add_lines(early)  # heard before the history was read
        console.set_history([*early, ConsoleLine(22, "stored only", 200)])
        console.add_lines([ConsoleLine(22, "stored only", 200), ConsoleLine(34, "new", 300)])
        console.add_lines([ConsoleLine(0, "after a restart", 400)])  # positions start again
        pane.flush_now()
        await pilot.pause()
        assert list(console.log_widget.lines) == [
            "boot",
            "stored and heard",
            "stored only",
            "new",
            "after a restart",
        ]

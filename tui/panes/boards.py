"""Board consoles: the console text of every serial board, its connection and frame counters.

One console per serial source of the configuration (and per serial port the database remembers,
for its history). Lines arrive from the engine (:meth:`BoardsPane.add_lines` on the UI thread, or
:meth:`BoardsPane.post_lines` from any thread) and are written in batches, only while the pane is
visible: a hidden pane just keeps the last :data:`MAX_LINES` lines it was given.

Scrolling up pauses the console (Toolong's way): new lines no longer move the view, a badge counts
them, and ``End``/``G`` (or scrolling back to the bottom) shows them and follows again.

Every console line is device data: tabs are expanded, control characters made visible
(``tui.safe.plain``) and the ``Log`` widget never interprets markup.

Counters come from the session on its own loop (``bridge.call`` of :func:`read_board_stats`):
the frame splitter's ``frames``, ``crc_errors`` and ``bad`` of the stream (since this process
started) and the source's ``SourceStatus`` (state, error, events). Frames per second are the
rate over the last samples the console took. The pane follows the app's refresh protocol
(``gather_args``/``gather``/``show``); :meth:`BoardsPane.refresh_stats` does the same by itself.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import sqlite3
import time
from collections.abc import Iterable, Sequence
from typing import Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.message import Message
from textual.timer import Timer
from textual.widget import Widget
from textual.widgets import ContentSwitcher, Label, Log, OptionList, Static
from textual.widgets.option_list import Option

from tui.bridge import Bridge
from tui.safe import plain, safe

MAX_LINES = 5000  # lines kept per console (shown, held while paused, waiting while hidden)
LINE_LIMIT = 1000  # characters shown of one console line
FLUSH_DELAY = 0.1  # seconds: lines arriving meanwhile are written together
RATE_SAMPLES = 10  # samples of the frame counter that the frames/s rate spans
CALL_TIMEOUT = 10.0
STATE_STYLE = {
    "following": "bold green",
    "caught-up": "bold green",
    "opening": "yellow",
    "starting": "yellow",
    "reconnecting": "bold yellow",
    "error": "bold red",
    "closed": "red",
    "stopped": "red",
    "history": "dim",
}

_HISTORY_SQL = """
SELECT line FROM (
    SELECT c.id, c.line FROM console c JOIN streams s ON s.id = c.stream
    WHERE s.kind = 'serial' AND s.name = ? AND c.time_us < ?
    ORDER BY c.id DESC LIMIT ?
) ORDER BY id
"""
_PORTS_SQL = "SELECT name FROM streams WHERE kind = 'serial' ORDER BY id"


async def read_board_stats(bridge: Bridge) -> dict[str, dict[str, Any]]:
    """On the session's loop: per serial port, the splitter's counters and the source status.

    A read-only look at ``session.streams`` and ``session.status`` (the engine exposes no
    accessor for these yet).
    """
    session = bridge.session
    out: dict[str, dict[str, Any]] = {}
    if session is None:
        return out
    for handle in list(session.streams.values()):
        if handle.kind != "serial":
            continue
        splitter = getattr(handle.decoder, "splitter", None)
        out[handle.name] = {
            "frames": getattr(splitter, "frames", 0),
            "crc_errors": getattr(splitter, "crc_errors", 0),
            "bad": getattr(splitter, "bad", 0),
            "console_lines": getattr(splitter, "console_lines", 0),
            "quarantined": handle.quarantined,
        }
    for status in session.status:
        if status.kind == "serial":
            out.setdefault(status.target, {}).update(
                state=status.state,
                error=status.error,
                events=status.events,
                last_event=status.last_event,
            )
    return out


def console_text(line: str) -> str:
    """A console line as the log shows it: tabs expanded, control characters visible, cut."""
    return plain(line.expandtabs(8), LINE_LIMIT) or " "


class ConsoleLog(Log):
    """The scrolling text of one board; End/G follows, Home/g goes to the top (pausing)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("end,G", "follow", "Follow", key_display="End/G", id="boards.follow"),
        Binding("home,g", "top", "Top", key_display="Home/g", show=False, id="boards.top"),
    ]

    def __init__(self, console: BoardConsole, **kwargs: Any) -> None:
        super().__init__(max_lines=MAX_LINES, auto_scroll=False, **kwargs)
        self.console = console

    def action_follow(self) -> None:
        self.console.follow()

    def action_top(self) -> None:
        self.scroll_home(animate=False)


class BoardConsole(Widget):
    """One board: a status line, its console log and a footer with the new-lines badge."""

    DEFAULT_CSS = """
    BoardConsole {
        height: 1fr;
        layout: vertical;
    }
    BoardConsole > #status {
        height: auto;
        padding: 0 1;
        background: $boost;
    }
    BoardConsole > ConsoleLog {
        height: 1fr;
    }
    BoardConsole > #footer {
        height: 1;
        width: 1fr;
        padding: 0 1;
        color: $text-muted;
    }
    BoardConsole.-paused > #footer {
        background: $warning 30%;
        color: $text;
        text-style: bold;
    }
    """

    def __init__(self, port: str, *, device: str | None = None, id: str | None = None) -> None:
        super().__init__(id=id)
        self.port = port
        self.device = device
        self.paused = False
        self.new_lines = 0  # lines that arrived while paused
        self.received = 0  # lines given to this console
        self._arrived = 0  # lines given since the last flush
        self._history: list[str] = []  # read before the console was mounted
        self.history_done = False
        self.stats: dict[str, Any] = {}
        self.rate: float | None = None
        self._incoming: collections.deque[str] = collections.deque(maxlen=MAX_LINES)
        self._held: collections.deque[str] = collections.deque(maxlen=MAX_LINES)
        self._samples: collections.deque[tuple[float, int]] = collections.deque(maxlen=RATE_SAMPLES)

    def compose(self) -> ComposeResult:
        yield Static(self._status_text(), id="status")
        yield ConsoleLog(self, id="log")
        yield Label(self._footer_text(), id="footer")

    def on_mount(self) -> None:
        self.watch(self.log_widget, "scroll_y", self._scrolled, init=False)
        self._write_history()

    @property
    def log_widget(self) -> ConsoleLog:
        return self.query_one(ConsoleLog)

    @property
    def pending(self) -> int:
        """Lines given to the console and not yet written to the log."""
        return len(self._incoming)

    # -- lines ------------------------------------------------------------------------------------

    def add_lines(self, lines: Iterable[str]) -> None:
        """Queue raw console lines (cheap: nothing is rendered until :meth:`flush`)."""
        lines = list(lines)
        self.received += len(lines)
        self._arrived += len(lines)  # the inbox keeps the last MAX_LINES of them
        self._incoming.extend(lines)

    def set_history(self, lines: Sequence[str]) -> None:
        """The lines the database held before this console started, shown first."""
        if not self.history_done:
            self.history_done = True
            if lines:
                self._history = [console_text(line) for line in lines[-MAX_LINES:]]
                if self.is_mounted:
                    self._write_history()

    def _write_history(self) -> None:
        history, self._history = self._history, []
        if history:
            self._write(history)

    def flush(self) -> None:
        """Write the queued lines (following) or hold them and count them (paused)."""
        if not self._incoming or not self.is_mounted:
            return
        lines = [console_text(line) for line in self._incoming]
        arrived, self._arrived = self._arrived, 0
        self._incoming.clear()
        if self.paused:
            self._held.extend(lines)
            self.new_lines += arrived
            self._update_footer()
        else:
            self._write(lines)

    def _write(self, lines: list[str]) -> None:
        log = self.log_widget
        log.write_lines(lines, scroll_end=False)
        if not self.paused:
            log.scroll_end(animate=False, immediate=True, x_axis=False)
        self._update_footer()

    def follow(self) -> None:
        """Show the held lines, go to the end and follow new lines again."""
        self.paused = False
        self.remove_class("-paused")
        held = list(self._held)
        self._held.clear()
        self.new_lines = 0
        self._write(held)  # older than what still waits in the inbox
        self.flush()

    def _scrolled(self, old: float, new: float) -> None:
        log = self.log_widget
        at_end = new >= log.max_scroll_y
        if at_end and self.paused:
            self.follow()
        elif not at_end and not self.paused:
            self.paused = True
            self.add_class("-paused")
            self._update_footer()

    # -- status -----------------------------------------------------------------------------------

    def update_stats(self, stats: dict[str, Any], now: float | None = None) -> None:
        """New counters from the engine; the frames/s rate is taken over the last samples."""
        now = time.monotonic() if now is None else now
        frames = stats.get("frames")
        if isinstance(frames, int):
            if self._samples and frames < self._samples[-1][1]:
                self._samples.clear()  # the stream restarted
            self._samples.append((now, frames))
            (t0, f0), (t1, f1) = self._samples[0], self._samples[-1]
            self.rate = (f1 - f0) / (t1 - t0) if t1 > t0 else None
        self.stats = stats
        if self.is_mounted:
            self.query_one("#status", Static).update(self._status_text())

    def state(self) -> str:
        """The source's state (``following``, ``reconnecting`` …), ``starting`` before any."""
        return str(self.stats.get("state") or "starting")

    def _status_text(self) -> Text:
        s = self.stats
        state = self.state()
        text = Text.assemble(
            ("● ", STATE_STYLE.get(state, "")),
            (state, STATE_STYLE.get(state, "bold")),
            "  ",
            safe(self.port, 120, "bold"),
        )
        if self.device:
            text.append_text(Text.assemble(" → ", safe(self.device, 80)))
        if s.get("error") and state not in ("following", "caught-up"):
            text.append_text(Text.assemble("  ", safe(s["error"], 160, "red")))
        if "frames" in s:
            rate = "…" if self.rate is None else f"{self.rate:.2f}/s"
            crc = int(s.get("crc_errors", 0))
            text.append("\n")
            text.append_text(
                Text.assemble(
                    f"frames {int(s['frames']):,} ({rate})",
                    "  │  ",
                    (f"CRC errors {crc:,}", "bold red" if crc else ""),
                    "  │  ",
                    f"bad frames {int(s.get('bad', 0)):,}",
                    "  │  ",
                    f"events {int(s.get('events', 0)):,}",
                    "  │  ",
                    f"lines {int(s.get('console_lines', 0)):,}",
                )
            )
        return text

    def _footer_text(self) -> Text:
        if self.paused:
            return Text(f"▼ {self.new_lines:,} new lines  (End/G: show them and follow)")
        count = self.log_widget.line_count if self.is_mounted else 0
        return Text(f"following · {count:,} lines (last {MAX_LINES:,} kept) · scroll up to pause")

    def _update_footer(self) -> None:
        if self.is_mounted:
            self.query_one("#footer", Label).update(self._footer_text())


class BoardsPane(Widget):
    """The consoles of the serial boards, one at a time, with a list of boards on the left."""

    DEFAULT_CSS = """
    BoardsPane {
        height: 1fr;
    }
    BoardsPane > Horizontal {
        height: 1fr;
    }
    BoardsPane #board-list {
        width: 34;
        height: 1fr;
    }
    BoardsPane #consoles {
        width: 1fr;
        height: 1fr;
    }
    BoardsPane #no-boards {
        padding: 1 2;
        color: $text-muted;
    }
    """

    needs_snapshot: ClassVar[bool] = False

    class _Inbox(Message):
        """Lines wait in the pane's inbox (posted from the engine's thread; coalesces)."""

        def can_replace(self, message: Message) -> bool:
            return isinstance(message, BoardsPane._Inbox)

    def __init__(
        self,
        bridge: Bridge,
        *,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.bridge = bridge
        self.started = bridge.clock()  # console history is what the database held before this
        self.shown = False
        self._consoles: dict[str, BoardConsole] = {}
        self._inbox: collections.deque[tuple[str, list[str]]] = collections.deque()
        self._flush_timer: Timer | None = None
        self._history_started = False
        self._history_loaded = False
        for source in bridge.config.sources:
            if source.type == "serial" and source.port and source.port not in self._consoles:
                self._consoles[source.port] = self._new_console(source.port, source.device)

    def _new_console(self, port: str, device: str | None = None) -> BoardConsole:
        return BoardConsole(port, device=device, id=f"board-{len(self._consoles)}")

    def compose(self) -> ComposeResult:
        with Horizontal():
            yield OptionList(
                *[Option(self._label(c), id=c.id) for c in self._consoles.values()],
                id="board-list",
            )
            with ContentSwitcher(id="consoles", initial=self._first_id()):
                yield from self._consoles.values()
                yield Static(
                    'No serial boards: add a [[sources]] table with type = "serial" to the '
                    "configuration.",
                    id="no-boards",
                    markup=False,
                )

    def _first_id(self) -> str:
        for console in self._consoles.values():
            return console.id or ""
        return "no-boards"

    @property
    def consoles(self) -> dict[str, BoardConsole]:
        """The consoles by port."""
        return dict(self._consoles)

    def console(self, port: str) -> BoardConsole | None:
        return self._consoles.get(port)

    def current(self) -> BoardConsole | None:
        """The console on show."""
        current = self.query_one("#consoles", ContentSwitcher).current
        return next((c for c in self._consoles.values() if c.id == current), None)

    # -- visibility -------------------------------------------------------------------------------

    def on_show(self) -> None:
        self.shown = True
        if not self._history_started:
            self._history_started = True
            self._load_history()
        self._schedule_flush()

    def on_hide(self) -> None:
        self.shown = False

    # -- lines ------------------------------------------------------------------------------------

    def add_lines(self, port: str, lines: list[str]) -> None:
        """Console ``lines`` of the board on ``port`` (UI thread). Cheap while hidden."""
        console = self._consoles.get(port)
        if console is None:
            console = self._add_console(port)
        console.add_lines(lines)
        self._schedule_flush()

    def post_lines(self, port: str, lines: list[str]) -> None:
        """Like :meth:`add_lines`, from any thread (the engine's ``on_console``); never blocks."""
        self._inbox.append((port, list(lines)))
        self.post_message(self._Inbox())

    @on(_Inbox)
    def _drain_inbox(self) -> None:
        while self._inbox:
            port, lines = self._inbox.popleft()
            self.add_lines(port, lines)

    def _add_console(self, port: str, device: str | None = None) -> BoardConsole:
        console = self._consoles[port] = self._new_console(port, device)
        if self._history_loaded:
            console.history_done = True  # the database had nothing for it when it was read
        if self.is_mounted:
            switcher = self.query_one("#consoles", ContentSwitcher)
            switcher.mount(console)
            self.call_after_refresh(self._schedule_flush)
            self.query_one("#board-list", OptionList).add_option(
                Option(self._label(console), id=console.id)
            )
            if switcher.current == "no-boards":
                switcher.current = console.id
                self.query_one("#board-list", OptionList).highlighted = 0
        return console

    def _schedule_flush(self) -> None:
        if self.shown and self._flush_timer is None:
            self._flush_timer = self.set_timer(FLUSH_DELAY, self._flush, name="boards-flush")

    def _flush(self) -> None:
        self._flush_timer = None
        if not self.shown:
            return
        console = self.current()
        if console is not None and console.history_done:
            with self.app.batch_update():
                console.flush()

    def flush_now(self) -> None:
        """Write what waits for the console on show (tests; the timer does it otherwise)."""
        if self._flush_timer is not None:
            self._flush_timer.stop()
        self._flush()

    @on(OptionList.OptionHighlighted, "#board-list")
    def _board_chosen(self, event: OptionList.OptionHighlighted) -> None:
        if event.option.id:
            self.query_one("#consoles", ContentSwitcher).current = event.option.id
            self._schedule_flush()

    # -- history ----------------------------------------------------------------------------------

    @work(group="boards-history", exit_on_error=False)
    async def _load_history(self) -> None:
        ports = list(self._consoles)
        history = await asyncio.to_thread(self._read_history, ports)
        for port, lines in history.items():
            console = self._consoles.get(port)
            if console is None:
                console = self._add_console(port)
                console.stats = {"state": "history"}
            console.set_history(lines)
        for console in self._consoles.values():
            console.set_history([])
        self._history_loaded = True
        self._schedule_flush()

    def _read_history(self, ports: list[str]) -> dict[str, list[str]]:
        """Worker thread: the last console lines of every serial port the database knows."""
        out: dict[str, list[str]] = {}
        try:
            known = [str(row[0]) for row in self.bridge.query(_PORTS_SQL)]
            for port in dict.fromkeys([*ports, *known]):
                rows = self.bridge.query(_HISTORY_SQL, (port, self.started, MAX_LINES))
                out[port] = [str(row[0]) for row in rows]
        except (sqlite3.Error, AssertionError):
            pass  # no database to read (in memory, not created yet): no history
        return out

    # -- counters (the app's refresh protocol) ----------------------------------------------------

    def gather_args(self) -> None:
        return None

    def gather(self, snapshot: Any, args: Any) -> dict[str, dict[str, Any]]:
        """Worker thread: the boards' counters, read on the session's loop."""
        if self.bridge.session is None or self.bridge.loop is None:
            return {}
        return self.bridge.call(read_board_stats(self.bridge)).result(CALL_TIMEOUT)

    def show(self, data: dict[str, dict[str, Any]]) -> None:
        """UI thread: show the counters and connection states."""
        now = time.monotonic()
        board_list = self.query_one("#board-list", OptionList)
        for port, stats in data.items():
            console = self._consoles.get(port)
            if console is None:
                console = self._add_console(port)
            console.update_stats(stats, now)
        for console in self._consoles.values():
            if console.id:
                # OptionDoesNotExist: the option is not there yet (mounting).
                with contextlib.suppress(Exception):
                    board_list.replace_option_prompt(console.id, self._label(console))

    async def refresh_stats(self) -> None:
        """Read and show the counters once (what the app's refresh does while visible)."""
        data = await asyncio.to_thread(self.gather, None, None)
        self.show(data)

    def _label(self, console: BoardConsole) -> Text:
        state = console.state()
        return Text.assemble(
            ("● ", STATE_STYLE.get(state, "")),
            safe(console.port, 60),
            "\n  ",
            (state, "dim"),
        )

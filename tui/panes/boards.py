"""Board consoles: the console text of every serial board, its connection and frame counters.

One console per serial board: each port of the configuration, each board a glob port finds, and
each serial port the database remembers (for its history). Lines arrive from the engine
(:meth:`BoardsPane.add_lines` on the UI thread, or :meth:`BoardsPane.post_lines` from any thread)
as ``ConsoleLine`` (text, receive time, what a console pattern made of it) or plain strings, and
are written in batches, only while the pane is visible: a hidden pane just keeps the last
:data:`MAX_LINES` lines it was given.

Scrolling up pauses the console (Toolong's way): new lines no longer move the view, a badge counts
them, and ``End``/``G`` (or scrolling back to the bottom) shows them and follows again.

For bench work: ``t`` shows each line's receive time (UTC, to the millisecond), ``/`` searches the
log (``n`` the next match down, ``N`` up; both wrap), lines with WARNING or ERROR words are
coloured, a line a console pattern turned into an event ends with ``◂`` and that event
(``d2c mqtt``, ``method`` …), and ``s`` saves the log as shown to a file. With one board the
board list is hidden.

Every console line is device data: tabs are expanded, control characters made visible
(``tui.safe.plain``) and the ``Log`` widget never interprets markup; styles are applied by
position, never by markup in the text.

Counters come from the session on its own loop (``bridge.call`` of :func:`read_board_stats`):
the frame splitter's ``frames``, ``crc_errors`` and ``bad`` of the stream (since this process
started) and the source's ``SourceStatus`` (state, error, events; for a glob port, each board's
in ``extra["boards"]``). Frames per second are the rate over the last samples the console
took. The pane follows the app's refresh protocol (``gather_args``/``gather``/``show``);
:meth:`BoardsPane.refresh_stats` does the same by itself.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import fnmatch
import os
import re
import sqlite3
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

from rich.style import Style
from rich.text import Text
from textual import events, on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.css.query import NoMatches
from textual.message import Message
from textual.strip import Strip
from textual.timer import Timer
from textual.widget import Widget
from textual.widgets import Button, ContentSwitcher, Input, Label, Log, OptionList, Static
from textual.widgets.option_list import Option

from engine.config import is_port_glob
from engine.event import ConsoleLine
from engine.formats.console import BUILTIN, ConsolePatterns, mark_of
from tui.bridge import Bridge
from tui.safe import plain, safe
from tui.screens.dialogs import DIALOG_CSS, Dialog

MAX_LINES = 5000  # lines kept per console (shown, held while paused, waiting while hidden)
LINE_LIMIT = 1000  # characters shown of one console line
MARK_LIMIT = 60  # characters shown of a pattern's mark
FLUSH_DELAY = 0.1  # seconds: lines arriving meanwhile are written together
RATE_SAMPLES = 10  # samples of the frame counter that the frames/s rate spans
CALL_TIMEOUT = 10.0
STATE_STYLE = {
    "following": "bold green",
    "caught-up": "bold green",
    "opening": "yellow",
    "starting": "yellow",
    "reconnecting": "bold yellow",
    "unplugged": "bold yellow",
    "error": "bold red",
    "closed": "red",
    "stopped": "red",
    "history": "dim",
}

_HISTORY_SQL = """
SELECT pos, time_us, line FROM (
    SELECT c.id, c.pos, c.time_us, c.line FROM console c JOIN streams s ON s.id = c.stream
    WHERE s.kind = 'serial' AND s.name = ?
    ORDER BY c.id DESC LIMIT ?
) ORDER BY id
"""
_PORTS_SQL = "SELECT name FROM streams WHERE kind = 'serial' ORDER BY id"

# Levels of a console line: the words firmware puts in front of its complaints.
NORMAL, WARNING, ERROR = 0, 1, 2
_ERROR_WORDS = re.compile(
    r"\b(?:ERROR|Error|FATAL|Fatal|FAIL|FAILED|Fail|Failed|failed|[Ff]ailure)\b"
)
_WARNING_WORDS = re.compile(r"\b(?:WARNING|Warning|WARN)\b")
TIME_WIDTH = 12  # HH:MM:SS.mmm
NO_TIME = "--:--:--.---"
MARK_SEP = "  ◂ "
_FILE_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


async def read_board_stats(bridge: Bridge) -> dict[str, dict[str, Any]]:
    """On the session's loop: per serial board (by port), the splitter's counters and the
    source status (for a board of a glob port, its own state from ``extra["boards"]``).

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
        decoder = handle.decoder
        splitter = getattr(decoder, "splitter", None)
        out[handle.name] = {
            "frames": getattr(splitter, "frames", 0),
            "crc_errors": getattr(splitter, "crc_errors", 0),
            "bad": getattr(splitter, "bad", 0),
            "console_lines": getattr(splitter, "console_lines", 0),
            "patterned": getattr(decoder, "patterned", 0),
            "quarantined": handle.quarantined,
        }
    for status in session.status:
        if status.kind != "serial":
            continue
        boards = status.extra.get("boards")
        if boards is None and is_port_glob(status.target):
            continue  # a glob whose boards are not looked for yet
        if isinstance(boards, dict):
            for port, info in list(boards.items()):
                entry = out.setdefault(port, {})
                entry.update(
                    state=info.get("state"),
                    error=info.get("error"),
                    events=info.get("events", 0),
                    device=info.get("device"),
                    unplugged=bool(info.get("unplugged")),
                )
            continue
        out.setdefault(status.target, {}).update(
            state=status.state,
            error=status.error,
            events=status.events,
            last_event=status.last_event,
            unplugged=bool(status.extra.get("unplugged")),
        )
    return out


def console_text(line: str) -> str:
    """A console line as the log shows it: tabs expanded, control characters visible, cut."""
    return plain(line.expandtabs(8), LINE_LIMIT) or " "


def level_of(text: str) -> int:
    """``ERROR`` for a line with an error word (ERROR, Error, FAIL, Failed …), ``WARNING`` for
    one with WARNING or WARN, else ``NORMAL``."""
    if _ERROR_WORDS.search(text):
        return ERROR
    if _WARNING_WORDS.search(text):
        return WARNING
    return NORMAL


class Entry(NamedTuple):
    """A console line as a console keeps it: shown text, receive time (µs; 0: unknown), level,
    and the event a pattern made of it (shown text; None: none)."""

    text: str
    time: int
    level: int
    mark: str | None


def entry_of(line: ConsoleLine) -> Entry:
    text = console_text(line.text)
    mark = plain(line.event, MARK_LIMIT) if line.event else None
    return Entry(text, line.time, level_of(text), mark)


def line_time(us: int) -> str:
    """``HH:MM:SS.mmm`` (UTC) of a receive time; dashes when unknown."""
    if us <= 0:
        return NO_TIME
    return time.strftime("%H:%M:%S", time.gmtime(us // 1_000_000)) + f".{us // 1000 % 1000:03d}"


def display(entry: Entry, times: bool) -> str:
    """The row of ``entry`` in the log: [time ]text[  ◂ mark]."""
    text = f"{line_time(entry.time)} {entry.text}" if times else entry.text
    return f"{text}{MARK_SEP}{entry.mark}" if entry.mark else text


class ConsoleLog(Log):
    """The scrolling text of one board; End/G follows, Home/g goes to the top (pausing).

    Keeps an :class:`Entry` per row beside ``Log``'s text and styles rows by position: the
    time dim, WARNING and ERROR lines coloured, a pattern's mark in the accent colour, search
    matches highlighted (the current one more)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("end,G", "follow", "Follow", key_display="End/G", id="boards.follow"),
        Binding("home,g", "top", "Top", key_display="Home/g", show=False, id="boards.top"),
    ]
    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "console-log--time",
        "console-log--warning",
        "console-log--error",
        "console-log--mark",
        "console-log--match",
        "console-log--current",
    }
    DEFAULT_CSS = """
    ConsoleLog > .console-log--time { color: $text-muted; }
    ConsoleLog > .console-log--warning { color: $text-warning; }
    ConsoleLog > .console-log--error { color: $text-error; text-style: bold; }
    ConsoleLog > .console-log--mark { color: $text-accent; text-style: bold; }
    ConsoleLog > .console-log--match { background: $warning 50%; }
    ConsoleLog > .console-log--current { background: $accent; color: $text; text-style: bold; }
    """

    def __init__(self, console: BoardConsole, **kwargs: Any) -> None:
        super().__init__(max_lines=MAX_LINES, auto_scroll=False, **kwargs)
        self.console = console
        self.entries: list[Entry] = []  # one per row of ``lines``
        self.times = False  # rows start with their receive time
        self.query = ""  # the search, lower-cased ("" none)
        self.current: int | None = None  # the row of the current match
        self._styles: dict[str, Style] | None = None

    def action_follow(self) -> None:
        self.console.follow()

    def action_top(self) -> None:
        self.scroll_home(animate=False)

    # -- rows ---------------------------------------------------------------------------------

    def write_entries(self, entries: list[Entry]) -> None:
        """Append rows (``Log`` prunes the oldest beyond ``MAX_LINES``; so does this)."""
        times = self.times
        self.entries.extend(entries)
        self.write_lines([display(e, times) for e in entries], scroll_end=False)

    def _prune_max_lines(self) -> None:
        remove = len(self._lines) - (self.max_lines or len(self._lines))
        super()._prune_max_lines()
        if remove > 0:
            del self.entries[:remove]
            if self.current is not None:
                self.current = self.current - remove if self.current >= remove else None

    def clear(self) -> ConsoleLog:
        super().clear()
        self.entries = []
        self.current = None
        return self

    def rewrite(self) -> None:
        """Write every row again (the time column was switched on or off)."""
        entries = self.entries
        current = self.current
        self.clear()
        self.write_entries(entries)
        self.current = current
        self.refresh()

    # -- search -------------------------------------------------------------------------------

    def matches(self) -> list[int]:
        """The rows holding the search text."""
        query = self.query
        if not query:
            return []
        return [y for y, line in enumerate(self._lines) if query in line.lower()]

    def find(self, start: int, step: int) -> int | None:
        """The first row after ``start`` (``step`` 1: down, -1: up, wrapping; ``start`` itself
        last) that holds the search text."""
        n = len(self._lines)
        query = self.query
        if not query or not n:
            return None
        for k in range(1, n + 1):
            y = (start + step * k) % n
            if query in self._lines[y].lower():
                return y
        return None

    def set_search(self, query: str, current: int | None) -> None:
        self.query = query.lower()
        self.current = current
        self.refresh()

    # -- rendering ----------------------------------------------------------------------------

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._styles = None

    def _style(self, name: str) -> Style:
        if self._styles is None:
            self._styles = {
                c: self.get_component_rich_style(c, partial=True) for c in self.COMPONENT_CLASSES
            }
        return self._styles[name]

    def _render_line_strip(self, y: int, rich_style: Style) -> Strip:
        """``Log``'s row, styled by position (the text itself is never markup)."""
        selection = self.text_selection
        line = self._process_line(self._lines[y])
        text = Text(line, no_wrap=True)
        text.stylize(rich_style)
        entry = self.entries[y] if y < len(self.entries) else None
        if entry is not None:
            start = 0
            if self.times:
                text.stylize(self._style("console-log--time"), 0, TIME_WIDTH)
                start = TIME_WIDTH + 1
            end = start + len(entry.text)
            if entry.level == ERROR:
                text.stylize(self._style("console-log--error"), start, end)
            elif entry.level == WARNING:
                text.stylize(self._style("console-log--warning"), start, end)
            if entry.mark:
                text.stylize(self._style("console-log--mark"), end, len(line))
        if self.query:
            style = self._style(
                "console-log--current" if y == self.current else "console-log--match"
            )
            lower = line.lower()
            size = len(self.query)
            at = lower.find(self.query)
            while at >= 0:
                text.stylize(style, at, at + size)
                at = lower.find(self.query, at + size)
        if selection is not None and (span := selection.get_span(y - self._clear_y)) is not None:
            begin, stop = span
            if stop == -1:
                stop = len(text)
            text.stylize(self.screen.get_component_rich_style("screen--selection"), begin, stop)
        return Strip(text.render(self.app.console), text.cell_len)


class SearchInput(Input):
    """The search box of a console: Enter searches, Escape (or leaving it) closes it."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Close", show=False, id="boards.search.close"),
    ]

    def __init__(self, console: BoardConsole, **kwargs: Any) -> None:
        super().__init__(placeholder="search this board's log (Enter; Escape closes)", **kwargs)
        self.console = console

    def action_close(self) -> None:
        self.console.close_search()

    def on_blur(self, event: events.Blur) -> None:
        self.console.close_search(focus=False)


class BoardConsole(Widget):
    """One board: a status line, its console log, a search box and a footer with the badge."""

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
    BoardConsole > #search {
        display: none;
        height: 3;
    }
    BoardConsole.-searching > #search {
        display: block;
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
        self._history: list[Entry] = []  # read before the console was mounted
        self.history_done = False
        self._history_keys: set[tuple[int, int]] | None = None  # (pos, time) of history lines
        self._history_last = 0  # the newest receive time in the history
        self.stats: dict[str, Any] = {}
        self.rate: float | None = None
        self.times = False  # shown once mounted
        self.search_text = ""  # as typed
        self._incoming: collections.deque[ConsoleLine] = collections.deque(maxlen=MAX_LINES)
        self._held: collections.deque[Entry] = collections.deque(maxlen=MAX_LINES)
        self._samples: collections.deque[tuple[float, int]] = collections.deque(maxlen=RATE_SAMPLES)

    def compose(self) -> ComposeResult:
        yield Static(self._status_text(), id="status")
        yield ConsoleLog(self, id="log")
        yield SearchInput(self, id="search")
        yield Label(self._footer_text(), id="footer")

    def on_mount(self) -> None:
        self.watch(self.log_widget, "scroll_y", self._scrolled, init=False)
        self.log_widget.times = self.times
        self._write_history()

    @property
    def log_widget(self) -> ConsoleLog:
        return self.query_one(ConsoleLog)

    @property
    def pending(self) -> int:
        """Lines given to the console and not yet written to the log."""
        return len(self._incoming)

    # -- lines ------------------------------------------------------------------------------------

    def add_lines(self, lines: Iterable[str | ConsoleLine]) -> None:
        """Queue console lines (cheap: nothing is rendered until :meth:`flush`). A plain string
        is a line received now. A line the history already showed is dropped (see
        :meth:`set_history`)."""
        now = time.time_ns() // 1000
        items = [
            line if isinstance(line, ConsoleLine) else ConsoleLine(0, str(line), now)
            for line in lines
        ]
        if self._history_keys is not None:
            items = self._new(items)
        self.received += len(items)
        self._arrived += len(items)  # the inbox keeps the last MAX_LINES of them
        self._incoming.extend(items)

    def set_history(self, lines: Sequence[str | ConsoleLine]) -> None:
        """The last lines the database holds for this board, shown first.

        Lines may reach the console both ways (stored before the history was read, and heard
        live — what the engine printed before the console listened comes late): a live line
        with the position and receive time of a history line is that line, and is dropped,
        until a line newer than the whole history arrives."""
        if not self.history_done:
            self.history_done = True
            if lines:
                history = [
                    line if isinstance(line, ConsoleLine) else ConsoleLine(0, line)
                    for line in lines[-MAX_LINES:]
                ]
                self._history_keys = {(ln.pos, ln.time) for ln in history if ln.time}
                self._history_last = max((ln.time for ln in history), default=0)
                kept = self._new(list(self._incoming))
                self._arrived -= len(self._incoming) - len(kept)
                self.received -= len(self._incoming) - len(kept)
                self._incoming.clear()
                self._incoming.extend(kept)
                self._history = [entry_of(line) for line in history]
                if self.is_mounted:
                    self._write_history()

    def _new(self, items: list[ConsoleLine]) -> list[ConsoleLine]:
        """``items`` without the lines the history holds."""
        keys = self._history_keys
        if keys is None:
            return items
        kept = [ln for ln in items if (ln.pos, ln.time) not in keys]
        if any(ln.time > self._history_last for ln in kept):
            self._history_keys = None  # lines come in order: none older follows
        return kept

    def _write_history(self) -> None:
        history, self._history = self._history, []
        if history:
            self._write(history)

    def flush(self) -> None:
        """Write the queued lines (following) or hold them and count them (paused)."""
        if not self._incoming or not self.is_mounted:
            return
        entries = [entry_of(line) for line in self._incoming]
        arrived, self._arrived = self._arrived, 0
        self._incoming.clear()
        if self.paused:
            self._held.extend(entries)
            self.new_lines += arrived
            self._update_footer()
        else:
            self._write(entries)

    def _write(self, entries: list[Entry]) -> None:
        log = self.log_widget
        log.write_entries(entries)
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

    # -- bench tools ------------------------------------------------------------------------------

    def set_times(self, on: bool) -> None:
        """Show (or hide) each line's receive time."""
        self.times = on
        if self.is_mounted:
            log = self.log_widget
            log.times = on
            top = log.scroll_y
            log.rewrite()
            if self.paused:
                log.scroll_to(y=top, animate=False, immediate=True)
            else:
                log.scroll_end(animate=False, immediate=True, x_axis=False)

    def open_search(self) -> None:
        """Show the search box, holding the last search."""
        box = self.query_one(SearchInput)
        box.value = self.search_text
        self.add_class("-searching")
        box.focus()

    def close_search(self, focus: bool = True) -> None:
        if not self.has_class("-searching"):
            return
        self.remove_class("-searching")
        if focus and self.is_mounted:
            self.log_widget.focus()

    @on(Input.Submitted, "#search")
    def _search_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.close_search()
        self.search(event.value)

    def search(self, text: str) -> int | None:
        """Search for ``text`` (case-insensitive): the newest match on or above the last row on
        screen becomes current and is shown. Returns its row (None: no match)."""
        self.search_text = text
        log = self.log_widget
        log.set_search(text, None)
        if not text:
            self._update_footer()
            return None
        bottom = min(int(log.scroll_y) + log.scrollable_content_region.height, len(log.lines))
        return self._go(log.find(bottom, -1))

    def next_match(self, step: int) -> int | None:
        """The next match down (``step`` 1) or up (-1), wrapping; None when there is none."""
        log = self.log_widget
        if not log.query:
            return None
        start = log.current
        if start is None:
            start = int(log.scroll_y) - 1 if step > 0 else int(log.scroll_y) + 1
        return self._go(log.find(start, step))

    def _go(self, row: int | None) -> int | None:
        log = self.log_widget
        log.current = row
        if row is not None:
            height = log.scrollable_content_region.height
            if not int(log.scroll_y) <= row < int(log.scroll_y) + height:
                log.scroll_to(y=max(0, row - height // 2), animate=False, immediate=True)
        log.refresh()
        self._update_footer()
        return row

    def visible_text(self) -> str:
        """The log as shown (times and marks included), one line per row."""
        return "".join(line + "\n" for line in self.log_widget.lines)

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
        device = stats.get("device")
        if isinstance(device, str) and device:
            self.device = device
        if self.is_mounted:
            self.query_one("#status", Static).update(self._status_text())

    def state(self) -> str:
        """The source's state (``following``, ``unplugged``, ``reconnecting`` …), ``starting``
        before any."""
        state = str(self.stats.get("state") or "starting")
        if state == "reconnecting" and self.stats.get("unplugged"):
            return "unplugged"
        return state

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
                    f"events {int(s.get('events', 0) or 0):,}",
                    "  │  ",
                    f"lines {int(s.get('console_lines', 0)):,}",
                    "  │  ",
                    f"patterned {int(s.get('patterned', 0)):,}",
                )
            )
        return text

    def _footer_text(self) -> Text:
        if self.paused:
            text = Text(f"▼ {self.new_lines:,} new lines  (End/G: show them and follow)")
        else:
            count = self.log_widget.line_count if self.is_mounted else 0
            text = Text(
                f"following · {count:,} lines (last {MAX_LINES:,} kept) · scroll up to pause"
            )
        if self.search_text and self.is_mounted:
            log = self.log_widget
            found = log.matches()
            text.append(" · search ")
            text.append_text(safe(self.search_text, 40, "bold"))
            if not found:
                text.append(": not found")
            elif log.current in found:
                text.append(f": {found.index(log.current) + 1} of {len(found)} (n/N)")
            else:
                text.append(f": {len(found)} matches (n/N)")
        return text

    def _update_footer(self) -> None:
        if self.is_mounted:
            self.query_one("#footer", Label).update(self._footer_text())


def default_log_name(console: BoardConsole, now: float | None = None) -> str:
    """A file name for a saved console: its device (or port) and the UTC time, e.g.
    ``bench-board-1-console-20261128T100000Z.log``; only letters, digits, ``.``, ``_``, ``-``."""
    who = console.device or os.path.basename(console.port.rstrip("/")) or "board"
    who = _FILE_NAME_UNSAFE.sub("_", who).strip("._-")[:60] or "board"
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() if now is None else now))
    return f"{who}-console-{stamp}.log"


class SaveLogDialog(Dialog):
    """Asks where to save a console's log; answers the path (an existing file is refused)."""

    DEFAULT_CSS = DIALOG_CSS.format(name="SaveLogDialog")

    def __init__(self, port: str, lines: int, path: str) -> None:
        super().__init__()
        self.port, self.lines, self.path = port, lines, path

    def compose(self) -> ComposeResult:
        with Vertical():
            title = Text(f"Save {self.lines:,} lines of ", style="bold")
            title.append_text(safe(self.port, 120))
            yield Static(title, classes="title")
            yield Input(self.path, id="save-path")
            yield Static(
                "As shown: receive times and pattern marks included.", classes="hint", markup=False
            )
            yield Static("", classes="error", id="save-error", markup=False)
            with Horizontal(classes="buttons"):
                yield Button("Cancel", id="cancel")
                yield Button("Save", variant="primary", id="ok")

    @on(Input.Submitted)
    @on(Button.Pressed, "#ok")
    def _ok(self) -> None:
        text = self.query_one("#save-path", Input).value.strip()
        error = self.query_one("#save-error", Static)
        if not text:
            error.update("A file name, please.")
            return
        path = Path(os.path.expanduser(text))
        if path.exists():
            error.update(f"{plain(str(path), 200)} exists: choose another name.")
            return
        self.dismiss(str(path))

    @on(Button.Pressed, "#cancel")
    def _cancel(self) -> None:
        self.dismiss(None)


class BoardsPane(Widget):
    """The consoles of the serial boards, one at a time, with a list of boards on the left (none
    while there is only one board: its status line names it)."""

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
    BoardsPane.-single #board-list {
        display: none;
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

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("slash", "search", "Search", key_display="/", id="boards.search"),
        Binding("n", "next_match", "Next match", id="boards.next_match"),
        Binding("N", "previous_match", "Previous match", id="boards.previous_match"),
        Binding("t", "toggle_times", "Times", id="boards.times"),
        Binding("s", "save", "Save log", id="boards.save"),
    ]

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
        self.shown = False
        self.times = False  # every console shows its lines' receive times
        self._consoles: dict[str, BoardConsole] = {}
        self._inbox: collections.deque[tuple[str, list[str | ConsoleLine]]] = collections.deque()
        self._flush_timer: Timer | None = None
        self._history_started = False
        self._history_loaded = False
        for source in bridge.config.sources:
            port = source.port
            # A glob's boards get their consoles as they are found.
            if (
                source.type == "serial"
                and port
                and not source.is_glob
                and port not in self._consoles
            ):
                self._consoles[port] = self._new_console(port, source.device)
        self.set_class(len(self._consoles) == 1, "-single")

    def _new_console(self, port: str, device: str | None = None) -> BoardConsole:
        console = BoardConsole(port, device=device, id=f"board-{len(self._consoles)}")
        console.times = self.times
        return console

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

    def add_lines(self, port: str, lines: Sequence[str | ConsoleLine]) -> None:
        """Console ``lines`` of the board on ``port`` (UI thread). Cheap while hidden."""
        console = self._consoles.get(port)
        if console is None:
            console = self._add_console(port)
        console.add_lines(lines)
        self._schedule_flush()

    def post_lines(self, port: str, lines: Sequence[str | ConsoleLine]) -> None:
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
        self.set_class(len(self._consoles) == 1, "-single")
        if self._history_loaded:
            console.history_done = True  # the database had nothing for it when it was read
        if self.is_mounted:
            switcher = self.query_one("#consoles", ContentSwitcher)
            console.display = False  # the switcher shows one console: the current one
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

    def _read_history(self, ports: list[str]) -> dict[str, list[ConsoleLine]]:
        """Worker thread: the last console lines of every serial port the database knows."""
        out: dict[str, list[ConsoleLine]] = {}
        try:
            known = [str(row[0]) for row in self.bridge.query(_PORTS_SQL)]
            for port in dict.fromkeys([*ports, *known]):
                rows = self.bridge.query(_HISTORY_SQL, (port, MAX_LINES))
                patterns = self._patterns(port)
                out[port] = [
                    ConsoleLine(int(pos), str(line), int(at or 0), mark_of(patterns, str(line)))
                    for pos, at, line in rows
                ]
        except (sqlite3.Error, AssertionError):
            pass  # no database to read (in memory, not created yet): no history
        return out

    def _patterns(self, port: str) -> ConsolePatterns | None:
        """The console patterns of the source that reads ``port`` (the built-in ones for a port
        the configuration no longer names)."""
        for source in self.bridge.config.sources:
            if source.type != "serial" or not source.port:
                continue
            if source.port == port or (source.is_glob and fnmatch.fnmatchcase(port, source.port)):
                return source.console_patterns()
        return BUILTIN

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
        try:
            board_list = self.query_one("#board-list", OptionList)
        except NoMatches:  # the console is closing: its widgets are going away
            return
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
        port = console.port
        name = os.path.basename(port) if port.startswith("/") else port
        text = Text.assemble(("● ", STATE_STYLE.get(state, "")), safe(name, 60), "\n  ")
        text.append(state, "dim")
        if console.device:
            text.append_text(Text.assemble((" → ", "dim"), safe(console.device, 40, "dim")))
        return text

    # -- bench tools ------------------------------------------------------------------------------

    def action_search(self) -> None:
        """``/``: search the log of the board on show."""
        console = self.current()
        if console is None:
            self.app.bell()
            return
        console.open_search()

    def action_next_match(self) -> None:
        """``n``: the next match down (wrapping)."""
        self._step(1)

    def action_previous_match(self) -> None:
        """``N``: the next match up (wrapping)."""
        self._step(-1)

    def _step(self, step: int) -> None:
        console = self.current()
        if console is None or not console.search_text:
            self.app.bell()
            return
        if console.next_match(step) is None:
            self.app.bell()

    def action_toggle_times(self) -> None:
        """``t``: show or hide every line's receive time, on every board."""
        self.times = not self.times
        for console in self._consoles.values():
            console.set_times(self.times)

    def action_save(self) -> None:
        """``s``: save the log of the board on show, as shown, to a file."""
        console = self.current()
        if console is None or not console.is_mounted:
            self.app.bell()
            return
        lines = console.log_widget.line_count
        dialog = SaveLogDialog(console.port, lines, default_log_name(console))
        self.app.push_screen(dialog, lambda path: self._save(console, path))

    def _save(self, console: BoardConsole, path: str | None) -> None:
        if path is not None:
            self._write_log(path, console.visible_text(), console.log_widget.line_count)

    @work(group="boards-save", exit_on_error=False)
    async def _write_log(self, path: str, text: str, lines: int) -> None:
        def write() -> None:
            with open(path, "x", encoding="utf-8") as f:  # never replaces a file
                f.write(text)

        try:
            await asyncio.to_thread(write)
        except OSError as exc:
            self.notify(
                f"Not saved: {plain(path, 200)}: {exc.strerror or exc}",
                severity="error",
                markup=False,
            )
            return
        self.notify(f"Saved {lines:,} lines to {plain(path, 200)}", markup=False)

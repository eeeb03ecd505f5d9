"""The operator console (Textual): dashboard, alerts, devices, allow-lists, rules, boards.

The engine runs on the bridge's thread; the console only renders. One timer drives the refresh:
it fires, a thread worker reads what the visible pane shows (a session snapshot, database reads),
the pane updates its tables by key inside ``batch_update``, and only then is the timer armed
again, so polls never overlap. Hidden tabs and an open dialog (or the command palette) do no
work. Alert changes arrive on the engine's thread and are handed over as a coalescing message.
Every worker error becomes a notification or an error dialog, never a crash.
"""

from __future__ import annotations

import collections
import logging
import sys
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from dataclasses import replace
from functools import partial
from typing import Any, ClassVar

from textual import on
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.command import CommandPalette, DiscoveryHit, Hit, Hits, Provider
from textual.message import Message
from textual.screen import ModalScreen
from textual.timer import Timer
from textual.widgets import Header, TabbedContent, TabPane
from textual.worker import Worker, WorkerState

from engine import collector
from engine.config import Config
from engine.export import ExportCancelled, ExportError, ExportResult
from engine.session import Clock, wall_clock
from tui import signals, textual_fixes
from tui.bridge import Bridge
from tui.panes.alerts import AlertRow, AlertsPane
from tui.panes.allowlists import AllowlistsPane
from tui.panes.boards import BoardsPane
from tui.panes.dashboard import Dashboard
from tui.panes.devices import DevicesPane, group_names, moved
from tui.panes.rules import RulesPane
from tui.safe import plain
from tui.screens.detail import AlertDetail
from tui.screens.dialogs import (
    ErrorDialog,
    GroupDialog,
    HelpDialog,
    NoteDialog,
    SilenceDialog,
    SilenceRequest,
    SilencesDialog,
)
from tui.screens.export import (
    ExportDialog,
    ExportRequest,
    done_message,
    export_message,
    view_filter,
)
from tui.widgets import apply_edit, error_text
from tui.widgets.footer import LeanFooter

textual_fixes.apply()  # before any widget renders (see tui.textual_fixes)

US = 1_000_000
INTERVALS = (0.5, 1.0, 2.0, 5.0, 10.0)
THEMES = ("textual-dark", "textual-light", "ansi-dark", "nord", "gruvbox", "tokyo-night")
TABS: tuple[tuple[str, str], ...] = (
    ("dashboard", "Dashboard"),
    ("alerts", "Alerts"),
    ("devices", "Devices"),
    ("allowlists", "Allow-lists"),
    ("rules", "Rules"),
    ("boards", "Boards"),
)
CALL_TIMEOUT = 15.0  # seconds an engine call may take before the console gives up on it
NOTIFY_NEW = 3  # opened alerts notified one by one per batch; more are summed up
# The palette's commands for the alert on screen: (name, AlertAction, key).
ALERT_COMMANDS: tuple[tuple[str, str, str], ...] = (
    ("Open the selected alert", "open", "enter"),
    ("Acknowledge the selected alert", "acknowledge", "a"),
    ("Un-acknowledge the selected alert", "unacknowledge", "a"),
    ("Resolve the selected alert by hand", "resolve", "r"),
    ("Reopen the selected alert (undo resolved by hand)", "reopen", "r"),
    ("Add a note to the selected alert", "note", "n"),
    ("Silence the selected alert's rule and device", "silence", "s"),
    ("Unsilence the selected alert (lift the silences that cover it)", "unsilence", "u"),
    ("Allow the selected alert's value (add it to its group's allow-list)", "allow", "v"),
)


class Refused(Exception):
    """An operator's action the engine or the configuration refused; ``str`` says why."""


class AlertsChanged(Message):
    """The engine changed alerts; the changes wait in the app's queue. Coalesces."""

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, AlertsChanged)


class Gathered(Message):
    """A refresh worker's reads for ``pane``."""

    def __init__(self, pane: Any, data: Any) -> None:
        super().__init__()
        self.pane = pane
        self.data = data


class EngineLog(Message):
    """A warning the engine logged (from any thread)."""

    def __init__(self, level: int, text: str) -> None:
        super().__init__()
        self.level = level
        self.text = text


class EngineFailed(Message):
    """The session stopped on its own (a fatal store error): the console exits with status 1
    and the reason is printed after the screen is restored."""

    def __init__(self, reason: str) -> None:
        super().__init__()
        self.reason = reason


class _ToApp(logging.Handler):
    """Engine log records become notifications instead of text on the terminal."""

    def __init__(self, app: IotwatchApp) -> None:
        super().__init__(logging.WARNING)
        self.app = app

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
            if record.exc_info and record.exc_info[1] is not None:
                text += f": {record.exc_info[1]}"
            self.app.post_message(EngineLog(record.levelno, text))
        except Exception:  # a log record must never take anything down
            pass


class IotwatchCommands(Provider):
    """The console's commands for the palette: the global ones, and the actions of what is on
    screen under the palette (the visible tab's pane and its widgets, or an alert's detail), so
    a command never acts on a row of a hidden tab."""

    def _commands(self) -> list[tuple[str, Callable[[], Any], str]]:
        app = self.app
        assert isinstance(app, IotwatchApp)
        out: list[tuple[str, Callable[[], Any], str]] = []
        for tab, title in TABS:
            out.append((f"Show {title}", partial(app.show_tab, tab), f"switch to the {title} tab"))
        out += [
            ("Pause / resume live refresh", app.action_toggle_pause, "stop or restart polling"),
            ("Refresh now", app.refresh_now, "read the engine and the database once"),
            ("Help", app.action_help, "keys and what the screens show"),
            ("Next theme", app.action_next_theme, "cycle the console's colours"),
            (
                "Export the database (filters from the current view)",
                app.action_export,
                "key ctrl+e: a SQLite file, or the alerts as CSV / JSON lines",
            ),
            ("Declare an expected device", app.declare_device, ""),
            ("Silences in force (unsilence)", app.show_silences, "key S on the Alerts tab"),
            ("Quit", app.action_quit, "stop the engine and leave"),
        ]
        out += app.view_commands()
        for seconds in INTERVALS:
            out.append(
                (
                    f"Refresh every {seconds:g} s",
                    partial(app.set_interval_seconds, seconds),
                    "how often live data is read",
                )
            )
        for theme in THEMES:
            out.append((f"Theme: {theme}", partial(app.set_theme, theme), "colours"))
        return out

    async def discover(self) -> Hits:
        for name, callback, help_text in self._commands():
            yield DiscoveryHit(name, callback, help=help_text or None)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for name, callback, help_text in self._commands():
            score = matcher.match(name)
            if score > 0:
                yield Hit(score, matcher.highlight(name), callback, help=help_text or None)


class IotwatchApp(App[int]):
    """The console on a started :class:`Bridge`."""

    TITLE = "iotwatch"
    COMMANDS = App.COMMANDS | {IotwatchCommands}
    CSS = """
    Screen { layers: base; }
    TabbedContent { height: 1fr; }
    TabPane { padding: 0; }
    /* Over a dialog, notifications keep to the top third: its buttons are at its bottom. */
    ModalScreen > ToastRack { dock: top; align: right top; margin-bottom: 0; max-height: 30%; }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("f1", "help", "Help", id="app.help"),
        Binding("1", "show_tab('dashboard')", "Dashboard", show=False, id="app.tab.dashboard"),
        Binding("2", "show_tab('alerts')", "Alerts", show=False, id="app.tab.alerts"),
        Binding("3", "show_tab('devices')", "Devices", show=False, id="app.tab.devices"),
        Binding("4", "show_tab('allowlists')", "Allow-lists", show=False, id="app.tab.allowlists"),
        Binding("5", "show_tab('rules')", "Rules", show=False, id="app.tab.rules"),
        Binding("6", "show_tab('boards')", "Boards", show=False, id="app.tab.boards"),
        Binding("p", "toggle_pause", "Pause", id="app.pause"),
        Binding("i", "next_interval", "Interval", id="app.interval"),
        Binding("ctrl+t", "next_theme", "Theme", id="app.theme"),
        Binding("ctrl+e", "export", "Export", id="app.export"),
        Binding("q", "quit", "Quit", id="app.quit"),
    ]

    def __init__(
        self,
        bridge: Bridge,
        *,
        interval: float = 1.0,
        title: str | None = None,
        notify_alerts: bool = True,
        on_first_data: Callable[[], None] | None = None,
    ) -> None:
        super().__init__()
        self.bridge = bridge
        # Called once, after the first frame that shows live data (run_console: settle the
        # garbage collector when the widgets, the style sheet and the first rows exist).
        self._on_first_data = on_first_data
        self.interval = interval
        self.paused = False
        self.notify_alerts = notify_alerts
        self.alerts_version = 0  # bumped whenever alerts may have changed
        self.refreshes = 0  # completed refreshes (tests wait on it)
        if title:
            self.title = title
        self._timer: Timer | None = None
        self._busy = False
        self._again = False
        self._changes: collections.deque[list[tuple[str, dict[str, Any]]]] = collections.deque()
        self._panes: dict[str, Any] = {}
        self._log_handler: _ToApp | None = None
        self._refresh_failed = False
        self.leaving = False  # exit() was called: widgets may already be going away
        self._export_cancels: dict[Worker[Any], threading.Event] = {}

    # -- layout -------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False, icon="◉")
        panes = {
            "dashboard": Dashboard(self.bridge, id="dashboard-pane"),
            "alerts": AlertsPane(self.bridge, id="alerts-pane"),
            "devices": DevicesPane(self.bridge, id="devices-pane"),
            "allowlists": AllowlistsPane(self.bridge),
            "rules": RulesPane(self.bridge),
            "boards": BoardsPane(self.bridge),
        }
        self._panes = panes
        with TabbedContent(id="tabs", initial="dashboard"):
            for tab, title in TABS:
                with TabPane(title, id=tab):
                    yield panes[tab]
        yield LeanFooter()

    def on_mount(self) -> None:
        self._update_subtitle()
        self.bridge.on_alerts = self._engine_alerts
        self.bridge.on_failure = lambda reason: self.post_message(EngineFailed(reason))
        boards = self._panes.get("boards")
        if hasattr(boards, "post_lines"):  # console lines, from the engine's thread
            self.bridge.on_console = boards.post_lines
        handler = self._log_handler = _ToApp(self)
        logging.getLogger("iotwatch").addHandler(handler)
        self._poll()

    def exit(self, result: int | None = None, return_code: int = 0, message: Any = None) -> None:
        # A refresh that ends while the app closes must not reach for widgets being removed.
        self.leaving = True
        super().exit(result, return_code, message)

    def on_unmount(self) -> None:
        self.bridge.on_alerts = None
        self.bridge.on_console = None
        self.bridge.on_failure = None
        if self._log_handler is not None:
            logging.getLogger("iotwatch").removeHandler(self._log_handler)
        for cancel in self._export_cancels.values():  # quitting: a running export stops
            cancel.set()

    def _update_subtitle(self) -> None:
        state = "paused" if self.paused else f"refresh {self.interval:g} s"
        self.sub_title = state

    # -- the refresh loop ---------------------------------------------------------------------

    def active_pane(self) -> Any:
        """The pane of the visible tab."""
        try:
            active = self.query_one("#tabs", TabbedContent).active
        except Exception:
            return None
        return self._panes.get(active)

    def _arm(self) -> None:
        if self._timer is not None:
            self._timer.stop()
        self._timer = self.set_timer(self.interval, self._poll, name="refresh")

    def refresh_now(self) -> None:
        """Refresh the visible pane as soon as possible (after a running refresh, if any)."""
        if self._busy:
            self._again = True
            return
        self._poll()

    def _poll(self) -> None:
        """Start one refresh of the visible pane; the timer is re-armed when it has been shown."""
        if self._timer is not None:
            # Called early (refresh_now): the pending timer would start a second poll chain.
            self._timer.stop()
        self._timer = None
        if self.leaving:
            return
        if self.paused or self._busy:
            return self._arm() if not self._busy else None
        pane = self.active_pane()
        if (
            pane is None
            or isinstance(self.screen, ModalScreen)
            or not all(hasattr(pane, m) for m in ("gather", "show"))
        ):
            self._arm()  # nothing visible to refresh, or a dialog is open: no work
            return
        args = pane.gather_args() if hasattr(pane, "gather_args") else None
        snapshot = getattr(pane, "needs_snapshot", False)
        self._busy = True
        self.run_worker(
            partial(self._gather, pane, snapshot, args),
            thread=True,
            exit_on_error=False,
            name="refresh",
            group="refresh",
            description="refresh",
        )

    def _gather(self, pane: Any, snapshot: bool, args: Any) -> None:
        """Worker thread: the session snapshot (if the pane wants it) and the pane's reads,
        posted as a message. Not returned: a finished worker lives on in a reference cycle until
        a full collection, and with it thousands of rows (see engine.collector)."""
        snap = self.bridge.snapshot().result(CALL_TIMEOUT) if snapshot else None
        self.post_message(Gathered(pane, pane.gather(snap, args)))

    @on(Gathered)
    def _gathered(self, message: Gathered) -> None:
        # Posted before the worker's end, so it is handled before _refreshed.
        self.show_gathered(message.pane, message.data)

    def show_gathered(self, pane: Any, data: Any) -> None:
        """Show what a refresh worker read, if its pane is still the visible one."""
        self._refresh_failed = False
        if pane is self.active_pane() and pane.is_mounted and not self.leaving:
            with self.batch_update():
                pane.show(data)
            if self._on_first_data is not None:
                first, self._on_first_data = self._on_first_data, None
                self.call_after_refresh(first)

    def _refreshed(self, worker: Worker[Any]) -> None:
        self._busy = False
        if worker.state == WorkerState.SUCCESS:
            self.refreshes += 1
        elif worker.state == WorkerState.ERROR and not self._refresh_failed:
            self._refresh_failed = True  # told once per run of failures, not every second
            self.notify(
                plain(f"Refresh failed: {worker.error!r}", 300), severity="error", markup=False
            )
        if self._again:
            self._again = False
            self._poll()
        else:
            self._arm()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """The one handler of every worker's end: refreshes, operator actions, dialog loads."""
        worker = event.worker
        if worker.name == "refresh":
            if event.state in (WorkerState.SUCCESS, WorkerState.ERROR, WorkerState.CANCELLED):
                self._refreshed(worker)
            return
        if worker.name == "export":
            self._exported(worker, event.state)
            return
        if event.state == WorkerState.SUCCESS and worker.name.startswith("action:"):
            message = worker.result
            if message:
                self.notify(plain(message, 300), markup=False)
            self.alerts_version += 1
            self.refresh_now()
            if isinstance(self.screen, AlertDetail):
                self.screen.reload()
        elif event.state == WorkerState.ERROR:
            error = worker.error
            what = worker.description or worker.name or "work"
            text = str(error) if isinstance(error, Refused) else f"{type(error).__name__}: {error}"
            if worker.name.startswith("action:"):
                self.push_screen(ErrorDialog(f"Could not {what}", text))
            else:
                self.notify(plain(f"{what} failed: {text}", 300), severity="error", markup=False)

    # -- engine notifications -----------------------------------------------------------------

    def _engine_alerts(self, changes: list[tuple[str, dict[str, Any]]]) -> None:
        """Engine thread: queue the changes and wake the UI (the message coalesces)."""
        self._changes.append(changes)
        self.post_message(AlertsChanged())

    @on(AlertsChanged)
    def _alerts_changed(self) -> None:
        opened: list[dict[str, Any]] = []
        while self._changes:
            for change, record in self._changes.popleft():
                if change == "opened":
                    opened.append(record)
        self.alerts_version += 1
        if not (opened and self.notify_alerts):
            return
        for record in opened[:NOTIFY_NEW]:
            where = str(record.get("device", "?"))
            if record.get("value") is not None:
                where += f" · {record['value']}"
            self.notify(
                plain(where, 200),
                title=plain(f"New alert: {record.get('rule', '?')}", 120),
                severity="warning",
                markup=False,
            )
        if len(opened) > NOTIFY_NEW:
            self.notify(f"… and {len(opened) - NOTIFY_NEW} more new alerts", markup=False)

    @on(EngineFailed)
    def _engine_failed(self, message: EngineFailed) -> None:
        self.exit(return_code=1)

    @on(EngineLog)
    def _engine_log(self, message: EngineLog) -> None:
        severity = "error" if message.level >= logging.ERROR else "warning"
        self.notify(plain(message.text, 400), severity=severity, markup=False, timeout=8)

    # -- navigation and settings --------------------------------------------------------------

    def show_tab(self, tab: str) -> None:
        # A widget focused in the old tab would pull the tabs back to itself: let go, switch,
        # then give the keys to the new tab's first widget that takes them.
        self.set_focus(None)
        self.query_one("#tabs", TabbedContent).active = tab
        self.call_after_refresh(self._focus_pane, tab)

    def _focus_pane(self, tab: str) -> None:
        # A table, not an input: digits must go on switching tabs.
        pane = self._panes.get(tab)
        if pane is not None and self.focused is None:
            tables = [t for t in pane.query("DataTable, VirtualTable") if t.focusable and t.display]
            if tables:
                tables[0].focus()

    def action_show_tab(self, tab: str) -> None:
        self.show_tab(tab)

    def run_pane_action(self, tab: str, action: str, widget: Any = None) -> None:
        """Show ``tab`` and run ``action`` of its pane, or of ``widget`` in it (the palette)."""
        self.show_tab(tab)
        target = widget if widget is not None else self._panes.get(tab)
        if target is not None:
            self.call_after_refresh(target.run_action, action)

    def _base_screen(self) -> Any:
        """The screen the operator looks at, under the command palette if it is open."""
        for screen in reversed(self.screen_stack):
            if not isinstance(screen, CommandPalette):
                return screen
        return self.screen

    def _alerts_visible(self) -> bool:
        base = self._base_screen()
        if isinstance(base, AlertDetail):
            return True
        return not isinstance(base, ModalScreen) and self._active_tab() == "alerts"

    def _active_tab(self) -> str:
        try:
            return str(self.query_one("#tabs", TabbedContent).active)
        except Exception:
            return ""

    def view_commands(self) -> list[tuple[str, Callable[[], Any], str]]:
        """The palette's commands for what is on screen: an alert's actions (its detail, or the
        Alerts tab), else the keys of the visible tab's pane and of the widgets in it."""
        out: list[tuple[str, Callable[[], Any], str]] = []
        if self._alerts_visible():
            for name, what, key in ALERT_COMMANDS:
                out.append((name, partial(self.act_selected, what), f"key {key}"))
            return out
        base = self._base_screen()
        tab = self._active_tab()
        pane = self._panes.get(tab)
        if isinstance(base, ModalScreen) or pane is None:
            return out
        title = dict(TABS).get(tab, tab)
        seen: set[str] = set()
        for widget in [pane, *pane.query("*")]:
            for binding in type(widget).__dict__.get("BINDINGS", []):
                if not (isinstance(binding, Binding) and binding.description and binding.id):
                    continue
                if binding.id in seen or binding.id.startswith(("app.", "filter.")):
                    continue
                seen.add(binding.id)
                target = None if widget is pane else widget
                out.append(
                    (
                        f"{title}: {binding.description}",
                        partial(self.run_pane_action, tab, binding.action, target),
                        f"key {binding.key_display or binding.key}",
                    )
                )
        return out

    @on(TabbedContent.TabActivated)
    def _tab_changed(self, event: TabbedContent.TabActivated) -> None:
        if event.tabbed_content.id == "tabs":
            self.refresh_now()

    def action_toggle_pause(self) -> None:
        self.paused = not self.paused
        self._update_subtitle()
        self.notify("Live refresh paused" if self.paused else "Live refresh resumed")
        if not self.paused:
            self.refresh_now()

    def set_interval_seconds(self, seconds: float) -> None:
        self.interval = seconds
        self._update_subtitle()
        if not self._busy:
            self._arm()

    def action_next_interval(self) -> None:
        later = [s for s in INTERVALS if s > self.interval]
        self.set_interval_seconds(later[0] if later else INTERVALS[0])
        self.notify(f"Refresh every {self.interval:g} s")

    def set_theme(self, theme: str) -> None:
        if theme in self.available_themes:
            self.theme = theme

    def action_next_theme(self) -> None:
        themes = [t for t in THEMES if t in self.available_themes]
        index = themes.index(self.theme) if self.theme in themes else -1
        self.theme = themes[(index + 1) % len(themes)]
        self.notify(f"Theme: {self.theme}")

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpDialog):
            self.push_screen(HelpDialog())

    # -- alert actions ------------------------------------------------------------------------

    def selected_alert(self) -> AlertRow | None:
        """The alert the operator is looking at: the open detail, else the row of the Alerts tab
        when that tab is on screen (never the row of a hidden tab)."""
        base = self._base_screen()
        if isinstance(base, AlertDetail):
            return base.alert
        if not self._alerts_visible():
            return None
        pane = self._panes.get("alerts")
        return pane.selected() if isinstance(pane, AlertsPane) else None

    def act_selected(self, what: str) -> None:
        """Run ``what`` on the alert on screen (the palette: no toggling, the name says it)."""
        alert = self.selected_alert()
        if alert is None:
            self.notify("Select an alert on the Alerts tab first", severity="warning")
            return
        if what == "open":
            self.open_alert(alert.id)
        else:
            self.alert_action(what, alert, toggle=False)

    def open_alert(self, alert_id: int) -> None:
        self.push_screen(AlertDetail(self.bridge, alert_id))

    def alert_action(self, what: str, alert: AlertRow, *, toggle: bool = True) -> None:
        """Acknowledge, resolve by hand, note, silence or unsilence ``alert``, or undo an
        acknowledgement or a resolution (``acknowledge``/``resolve`` on an alert that has one
        undo it); persisted by the engine."""
        bridge = self.bridge
        if toggle and what == "acknowledge" and alert.acknowledged is not None:
            what = "unacknowledge"
        if toggle and what == "resolve" and alert.closed is not None:
            what = "reopen"
        if what == "acknowledge":
            self._engine_call(
                f"acknowledge alert #{alert.id}",
                lambda: bridge.acknowledge(alert.id),
                f"Alert #{alert.id} acknowledged (a again un-acknowledges)",
            )
        elif what == "unacknowledge":
            self._engine_call(
                f"un-acknowledge alert #{alert.id}",
                lambda: bridge.unacknowledge(alert.id),
                f"Alert #{alert.id} no longer acknowledged",
            )
        elif what == "resolve":
            self._engine_call(
                f"resolve alert #{alert.id} by hand",
                lambda: bridge.resolve_by_hand(alert.id),
                f"Alert #{alert.id} resolved by hand (r again reopens it)",
            )
        elif what == "reopen":
            self._engine_call(
                f"reopen alert #{alert.id}",
                lambda: bridge.reopen(alert.id),
                f"Alert #{alert.id} no longer resolved by hand",
            )
        elif what == "unsilence":
            self._unsilence(alert)
        elif what == "allow":
            pane = self._panes.get("allowlists")
            if alert.is_range or alert.value is None:
                self.notify("Only an allow-list alert has a value to allow", severity="warning")
            elif isinstance(pane, AllowlistsPane):
                if isinstance(self.screen, AlertDetail):
                    self.screen.dismiss(None)
                self.show_tab("allowlists")
                pane.add_value(alert.group, alert.rule, alert.value)  # asks for confirmation
        elif what == "note":

            def noted(text: str | None) -> None:
                if text:
                    self._engine_call(
                        f"add a note to alert #{alert.id}",
                        lambda: bridge.add_note(alert.id, text),
                        f"Note added to alert #{alert.id}",
                    )

            self.push_screen(NoteDialog(alert.id, alert.device), noted)
        elif what == "silence":

            def silenced(req: SilenceRequest | None) -> None:
                if req is None:
                    return
                until = bridge.clock() + req.seconds * US
                scope = "value" if req.value is not None else "every value"
                self._engine_call(
                    f"silence alert #{alert.id}'s rule and device",
                    lambda: bridge.silence(req.rule_id, req.device, req.value, until),
                    f"Silenced {alert.rule} on {alert.device}"
                    + (f" ({scope})" if alert.value is not None else ""),
                )

            self.push_screen(
                SilenceDialog(alert.rule_id, alert.rule, alert.device, alert.value), silenced
            )

    def _unsilence(self, alert: AlertRow) -> None:
        """Lift every silence in force that covers ``alert`` (in a worker)."""
        bridge = self.bridge

        def work() -> str:
            now = bridge.clock()
            covering = [
                s
                for s in bridge.silences()
                if s.covers(alert.rule_id, alert.device, alert.value, now)
            ]
            if not covering:
                raise Refused(f"No silence in force covers alert #{alert.id}")
            for s in covering:
                bridge.unsilence(s.id).result(CALL_TIMEOUT)
            return f"Unsilenced {alert.rule} on {alert.device}"

        what = f"unsilence alert #{alert.id}"
        self.run_worker(
            work, thread=True, exit_on_error=False, name=f"action:{what}", description=what
        )

    def show_silences(self) -> None:
        """The silences in force, to lift one."""
        if any(isinstance(s, SilencesDialog) for s in self.screen_stack):
            return
        bridge = self.bridge

        def lift(silence_id: int) -> bool:
            lifted = bool(bridge.unsilence(silence_id).result(CALL_TIMEOUT))
            self.call_from_thread(self._silence_lifted)
            return lifted

        self.push_screen(SilencesDialog(bridge.silences, lift, bridge.clock))

    def _silence_lifted(self) -> None:
        self.alerts_version += 1
        self.refresh_now()

    def _engine_call(self, what: str, call: Callable[[], Future[Any]], done: str) -> None:
        """Run ``call`` (an engine future) in a worker; ``done`` is notified on success."""

        def work() -> str:
            call().result(CALL_TIMEOUT)
            return done

        self.run_worker(
            work, thread=True, exit_on_error=False, name=f"action:{what}", description=what
        )

    # -- device actions -----------------------------------------------------------------------

    def move_device(self, device: str, current: str) -> None:
        def chosen(answer: tuple[str, str] | None) -> None:
            if answer is not None and answer[1] != current:
                name, group = answer
                self.edit_config(
                    f"move {name} to group {group}",
                    lambda config: moved(config, name, group),
                    f"{name} moves to group {group} from its next window",
                )

        self.push_screen(GroupDialog(group_names(self.bridge.config), device, current), chosen)

    def declare_device(self) -> None:
        def chosen(answer: tuple[str, str] | None) -> None:
            if answer is not None:
                name, group = answer
                self.edit_config(
                    f"declare {name}",
                    lambda config: moved(config, name, group),
                    f"{name} is expected (group {group})",
                )

        config = self.bridge.config
        devices = self._panes.get("devices")
        seen = devices.rows if isinstance(devices, DevicesPane) else {}
        self.push_screen(
            GroupDialog(
                group_names(config),
                group_of=lambda d: self.bridge.config.devices.group_of(d),
                known=lambda d: d in seen or d in self.bridge.config.devices.declared,
            ),
            chosen,
        )

    def edit_config(self, what: str, edit: Callable[[Config], Config], done: str) -> None:
        """Give the engine ``edit(config in force)`` and write the file when there is one (the
        editors' path, ``tui.widgets.apply_edit``, which serializes edits)."""

        async def work() -> str:
            outcome = await apply_edit(self.bridge, edit)
            if outcome.error is not None:
                raise Refused(error_text(outcome.error))
            if outcome.failure is not None:
                raise Refused(outcome.failure)
            if outcome.save_error is not None:
                self.notify(
                    plain(f"Applied, but not saved: {outcome.save_error}", 400),
                    severity="warning",
                    markup=False,
                )
            return done

        self.run_worker(work(), exit_on_error=False, name=f"action:{what}", description=what)

    # -- export -------------------------------------------------------------------------------

    def action_export(self) -> None:
        """Open the export dialog with the filters of the visible tab."""
        if any(isinstance(s, ExportDialog) for s in self.screen_stack):
            return
        tabs = self.query_one("#tabs", TabbedContent)
        origin = dict(TABS).get(str(tabs.active), "")
        groups = group_names(self.bridge.config)
        view = view_filter(origin, self.active_pane(), groups)
        self.push_screen(ExportDialog(self.bridge.db, view, self.start_export, groups))

    def start_export(self, request: ExportRequest, dialog: ExportDialog) -> Worker[ExportResult]:
        """Run ``request`` in a thread worker; progress goes to ``dialog``, the outcome to
        :meth:`_exported` (through the one worker handler)."""
        # The dialog keeps its own request to cancel: replace() shares its cancel event.
        request = replace(request, hub=self.bridge.config.hub)
        worker = self.run_worker(
            partial(request.run, dialog.post_progress),
            thread=True,
            exit_on_error=False,
            name="export",
            group="export",
            description=f"export to {request.out}",
        )
        self._export_cancels[worker] = request.cancel
        return worker

    def _exported(self, worker: Worker[Any], state: WorkerState) -> None:
        """An export ended: notify, and tell its dialog (which closes, or shows why not)."""
        if state not in (WorkerState.SUCCESS, WorkerState.ERROR, WorkerState.CANCELLED):
            return
        self._export_cancels.pop(worker, None)
        if state == WorkerState.CANCELLED:  # the console is closing
            return
        dialog = next(
            (s for s in self.screen_stack if isinstance(s, ExportDialog) and s.worker is worker),
            None,
        )
        error = worker.error if state == WorkerState.ERROR else None
        result = worker.result if state == WorkerState.SUCCESS else None
        if isinstance(result, ExportResult):
            self.notify(plain(done_message(result), 400), title="Export done", markup=False)
        elif isinstance(error, ExportCancelled):
            self.notify("Export cancelled: nothing was written", severity="warning")
        elif isinstance(error, ExportError):
            self.notify(
                plain(export_message(error), 400),
                title="Export failed",
                severity="error",
                markup=False,
                timeout=10,
            )
        elif error is not None:  # a bug, not a refusal: the details in a dialog
            self.push_screen(ErrorDialog("Could not export", f"{type(error).__name__}: {error}"))
        if dialog is not None:
            dialog.finished(result if isinstance(result, ExportResult) else None, error)


# -- running it ---------------------------------------------------------------------------------


def run_app(app: IotwatchApp) -> int:
    """Run ``app`` in the terminal; the exit status."""
    result = app.run()
    return int(result or 0) if app.return_code in (None, 0) else int(app.return_code or 1)


def run_console(
    config: Config,
    db: str,
    *,
    clock: Clock = wall_clock,
    title: str | None = None,
    on_stop: Iterable[Callable[[], None]] = (),
) -> int:
    """Start the engine for ``config`` on ``db``, run the console until the operator quits, then
    stop the engine (it commits what it has)."""
    # Engine log records must not be written over the screen: they become notifications.
    logging.getLogger("iotwatch").propagate = False
    collector.steady_malloc()  # before the engine's threads start
    # SIGTERM, SIGHUP and SIGINT end the console as q does (tui.signals).
    with signals.stopping() as on_signal:
        bridge = Bridge(config, db, clock=clock)
        try:
            bridge.start()
            # The engine's restored state, the modules, the widgets and the style sheet stay:
            # the collector walks them no more once the first data is on screen.
            app = IotwatchApp(bridge, title=title, on_first_data=collector.settle)
            on_signal.app = app
            status = run_app(app)
        except signals.SignalStop:  # before the console ran: nothing to show, a clean stop
            status = 0
        finally:
            on_signal.closing = True
            stopper = threading.Thread(target=bridge.stop, daemon=True)
            stopper.start()
            stopper.join(15)
            for stop in on_stop:
                stop()
    if bridge.failure is not None:  # the engine stopped on its own: one line, status 1
        print(f"iotwatch: {bridge.failure}", file=sys.stderr)
        return 1
    return status

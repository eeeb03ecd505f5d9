"""Small dialogs: a note, a silence, the silences in force, a device's group, an expected device,
a confirmation, an error, the help.

Each returns its answer with ``dismiss`` (None when cancelled) and never renders device data as
markup.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, RadioButton, RadioSet, Select, Static
from textual.worker import Worker, WorkerState

from engine.catalogue import BY_ID
from engine.operator import Silence
from tui.safe import plain, safe
from tui.widgets.kv_editor import RowTable

DIALOG_CSS = """
{name} {{ align: center middle; }}
{name} > Vertical {{
    width: 76; height: auto; max-height: 90%;
    border: thick $primary; background: $surface; padding: 1 2;
}}
{name} .title {{ text-style: bold; margin-bottom: 1; }}
{name} .hint {{ color: $text-muted; }}
{name} .error {{ color: $error; height: auto; }}
{name} Horizontal.buttons {{ height: auto; margin-top: 1; align-horizontal: right; }}
{name} Horizontal.buttons Button {{ margin-left: 1; }}
"""


class Dialog(ModalScreen[Any]):
    """A modal box with a title; Escape cancels."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel", id="dialog.cancel"),
    ]

    def action_cancel(self) -> None:
        self.dismiss(None)


class NoteDialog(Dialog):
    """Asks for a note on an alert."""

    DEFAULT_CSS = DIALOG_CSS.format(name="NoteDialog")

    def __init__(self, alert_id: int, subject: str) -> None:
        super().__init__()
        self.alert_id = alert_id
        self.subject = subject

    def compose(self) -> ComposeResult:
        with Vertical():
            title = Text(f"Note on alert #{self.alert_id}: ", style="bold")
            title.append_text(safe(self.subject, 120))
            yield Static(title, classes="title")
            yield Input(placeholder="what you found, what you did", id="note-text")
            yield Static("", classes="error", id="note-error", markup=False)
            with Horizontal(classes="buttons"):
                yield Button("Cancel", id="cancel")
                yield Button("Add note", variant="primary", id="ok")

    @on(Input.Submitted)
    @on(Button.Pressed, "#ok")
    def _ok(self) -> None:
        text = self.query_one("#note-text", Input).value.strip()
        if not text:
            self.query_one("#note-error", Static).update("A note needs some text.")
            return
        self.dismiss(text)

    @on(Button.Pressed, "#cancel")
    def _cancel(self) -> None:
        self.dismiss(None)


PERIODS: tuple[tuple[str, int], ...] = (
    ("15 minutes", 15 * 60),
    ("1 hour", 3600),
    ("4 hours", 4 * 3600),
    ("1 day", 86400),
    ("7 days", 7 * 86400),
    ("30 days", 30 * 86400),
)


@dataclass(frozen=True)
class SilenceRequest:
    """What to silence and for how long (seconds)."""

    rule_id: int
    device: str
    value: str | None
    seconds: int


class SilenceDialog(Dialog):
    """Silence (rule, device[, value]) for a chosen period."""

    DEFAULT_CSS = DIALOG_CSS.format(name="SilenceDialog")

    def __init__(self, rule_id: int, rule: str, device: str, value: str | None) -> None:
        super().__init__()
        self.rule_id, self.rule, self.device, self.value = rule_id, rule, device, value

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static("Silence alerts", classes="title", markup=False)
            what = Text("Rule ", style="")
            what.append(self.rule, style="bold")
            what.append("\nDevice ")
            what.append_text(safe(self.device, 200, style="bold"))
            yield Static(what)
            if self.value is not None:
                with RadioSet(id="silence-scope"):
                    label = Text("only the value ")
                    label.append_text(safe(self.value, 60, style="bold"))
                    yield RadioButton(label, value=True, id="scope-value")
                    yield RadioButton("every value of this rule and device", id="scope-all")
            yield Label("For", classes="hint")
            yield Select(
                [(label, seconds) for label, seconds in PERIODS],
                value=3600,
                allow_blank=False,
                id="silence-period",
            )
            yield Static(
                "Silenced alerts are still recorded, marked silenced.",
                classes="hint",
                markup=False,
            )
            with Horizontal(classes="buttons"):
                yield Button("Cancel", id="cancel")
                yield Button("Silence", variant="warning", id="ok")

    @on(Button.Pressed, "#ok")
    def _ok(self) -> None:
        value = self.value
        if value is not None:
            scope = self.query_one("#silence-scope", RadioSet).pressed_button
            if scope is not None and scope.id == "scope-all":
                value = None
        seconds = self.query_one("#silence-period", Select).value
        assert isinstance(seconds, int)
        self.dismiss(SilenceRequest(self.rule_id, self.device, value, seconds))

    @on(Button.Pressed, "#cancel")
    def _cancel(self) -> None:
        self.dismiss(None)


class GroupDialog(Dialog):
    """Move a device to another group, or declare an expected device (``device`` None).

    When declaring, the group follows the id as it is typed: the group the device is in now
    (``group_of``: its exact entry, else the first matching pattern, else ``default``), so
    declaring a known device never moves it unless another group is chosen; ``known`` says
    whether the id is a device already seen or expected, which the dialog then says.
    """

    DEFAULT_CSS = DIALOG_CSS.format(name="GroupDialog")

    def __init__(
        self,
        groups: list[str],
        device: str | None = None,
        current: str = "",
        *,
        group_of: Callable[[str], str] | None = None,
        known: Callable[[str], bool] | None = None,
    ) -> None:
        super().__init__()
        self.groups = groups
        self.device = device
        self.current = current
        self.group_of = group_of
        self.known = known

    def compose(self) -> ComposeResult:
        with Vertical():
            if self.device is None:
                yield Static("Declare an expected device", classes="title", markup=False)
                yield Input(placeholder="device id (exact, no * ? [)", id="device-id")
                yield Static(
                    "A declared device is known from the first event of the session, so its "
                    "silence is noticed.",
                    classes="hint",
                    markup=False,
                )
            else:
                title = Text("Move ", style="bold")
                title.append_text(safe(self.device, 120))
                yield Static(title, classes="title")
            yield Label("Group", classes="hint")
            current = self._preselect(self.current)
            yield Select(
                [(plain(g, 60), g) for g in self.groups],
                value=current,
                allow_blank=False,
                id="group",
            )
            yield Static("", classes="hint", id="group-now", markup=False)
            yield Static("", classes="error", id="group-error", markup=False)
            with Horizontal(classes="buttons"):
                yield Button("Cancel", id="cancel")
                yield Button("Apply", variant="primary", id="ok")

    def _preselect(self, group: str) -> str:
        if group in self.groups:
            return group
        return "default" if "default" in self.groups else self.groups[0]

    @on(Input.Changed, "#device-id")
    def _id_changed(self, event: Input.Changed) -> None:
        device = event.value.strip()
        if self.group_of is None or not device:
            self.query_one("#group-now", Static).update("")
            return
        group = self._preselect(self.group_of(device))
        self.query_one("#group", Select).value = group
        if self.known is not None and self.known(device):
            now = Text("Known device, in group ")
            now.append_text(safe(group, 60, style="bold"))
            now.append(": declaring it keeps it there unless you choose another group.")
        else:
            now = Text("New device; its group by [devices] now: ")
            now.append_text(safe(group, 60, style="bold"))
        self.query_one("#group-now", Static).update(now)

    @on(Input.Submitted)
    @on(Button.Pressed, "#ok")
    def _ok(self) -> None:
        group = self.query_one("#group", Select).value
        assert isinstance(group, str)
        device = self.device
        if device is None:
            device = self.query_one("#device-id", Input).value.strip()
            problem = None
            if not device:
                problem = "A device id is needed."
            elif any(ch in device for ch in "*?["):
                problem = "An expected device is an exact id: no * ? or [."
            if problem:
                self.query_one("#group-error", Static).update(problem)
                return
        self.dismiss((device, group))

    @on(Button.Pressed, "#cancel")
    def _cancel(self) -> None:
        self.dismiss(None)


class ConfirmDialog(Dialog):
    """Asks before a destructive edit: ``y``/``Enter`` confirm (dismiss True), ``n``/``Escape``
    cancel (dismiss False). The focus starts on Cancel, so a stray key changes nothing."""

    DEFAULT_CSS = DIALOG_CSS.format(name="ConfirmDialog") + (
        "ConfirmDialog > Vertical { border: thick $warning; }"
        "ConfirmDialog #confirm-body { background: $boost; padding: 0 1; }"
    )

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "confirm", "Yes", id="confirm.yes"),
        Binding("n,escape", "cancel_confirm", "No", id="confirm.no"),
    ]

    def __init__(self, title: str, body: Text, yes: str = "Remove") -> None:
        super().__init__()
        self.title_text = title
        self.body = body
        self.yes = yes

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(self.title_text, classes="title", markup=False)
            yield Static(self.body, id="confirm-body")
            with Horizontal(classes="buttons"):
                yield Button("Cancel", id="cancel")
                yield Button(self.yes, variant="warning", id="ok")

    def on_mount(self) -> None:
        self.query_one("#cancel", Button).focus()

    @on(Button.Pressed, "#ok")
    def action_confirm(self) -> None:
        self.dismiss(True)

    @on(Button.Pressed, "#cancel")
    def action_cancel_confirm(self) -> None:
        self.dismiss(False)


def _left(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds >= 86400:
        return f"{seconds // 86400}d{seconds % 86400 // 3600:02d}h"
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s"


class SilencesDialog(Dialog):
    """The silences in force, ending soonest first; ``u``/``Delete``/``Enter`` lifts the
    highlighted one (it ends now: alerts that change from now on are not marked silenced).

    ``load`` reads the silences (blocking, run in a thread worker); ``lift(id)`` lifts one
    (blocking, returns when the engine has done it). Device data is shown literally.
    """

    DEFAULT_CSS = DIALOG_CSS.format(name="SilencesDialog") + (
        "SilencesDialog > Vertical { width: 100; max-width: 100%; }"
        "SilencesDialog #silences { height: auto; max-height: 16; }"
    )

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("u,delete", "lift", "Unsilence", id="silences.lift"),
        Binding("escape", "cancel", "Close", id="silences.close"),
    ]

    def __init__(
        self, load: Callable[[], list[Silence]], lift: Callable[[int], bool], now: Callable[[], int]
    ) -> None:
        super().__init__()
        self.load = load
        self.lift = lift
        self.now = now
        self.silences: list[Silence] = []

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static("Silences in force", classes="title", markup=False)
            table = RowTable(id="silences", zebra_stripes=True)
            for key, label in (
                ("rule", "Rule"),
                ("device", "Device"),
                ("value", "Value"),
                ("left", "Ends in"),
                ("until", "Until (UTC)"),
            ):
                table.add_column(label, key=key)
            yield table
            yield Static("", id="silences-empty", classes="hint", markup=False)
            yield Static(
                "u, Delete or Enter lifts the highlighted silence; Escape closes.",
                classes="hint",
                markup=False,
            )
            with Horizontal(classes="buttons"):
                yield Button("Unsilence", variant="warning", id="lift")
                yield Button("Close", id="cancel")

    def on_mount(self) -> None:
        self.reload()

    def reload(self) -> None:
        """Read the silences in force again (in a thread worker)."""
        self.run_worker(
            self.load, thread=True, exit_on_error=False, name="silences", group="silences"
        )

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.name not in ("silences", "unsilence"):
            return
        event.stop()
        if event.state == WorkerState.ERROR:
            self.notify(
                plain(f"Could not read the silences: {event.worker.error}", 300),
                severity="error",
                markup=False,
            )
        if event.state != WorkerState.SUCCESS:
            return
        if event.worker.name == "unsilence":
            if event.worker.result:
                self.notify("Silence lifted", markup=False)
            self.reload()
            return
        self.silences = list(event.worker.result)
        table = self.query_one("#silences", RowTable)
        row = table.cursor_row
        table.clear()
        now = self.now()
        for s in self.silences:
            rule = BY_ID.get(s.rule)
            table.add_row(
                Text(rule.name if rule else f"rule {s.rule}"),
                safe(s.device, 80),
                safe(s.value, 80) if s.value is not None else Text("every value", style="dim"),
                Text(_left((s.until - now) / 1_000_000)),
                Text(time.strftime("%Y-%m-%d %H:%M", time.gmtime(s.until // 1_000_000))),
                key=str(s.id),
            )
        if self.silences:
            table.move_cursor(row=min(row, len(self.silences) - 1), animate=False)
            table.focus()
        self.query_one("#silences-empty", Static).update(
            "" if self.silences else "No silence is in force."
        )
        self.query_one("#lift", Button).disabled = not self.silences

    @on(RowTable.RowSelected, "#silences")
    @on(Button.Pressed, "#lift")
    def action_lift(self) -> None:
        table = self.query_one("#silences", RowTable)
        if not self.silences or table.row_count == 0:
            return
        chosen = self.silences[min(table.cursor_row, len(self.silences) - 1)]
        self.run_worker(
            lambda: self.lift(chosen.id),
            thread=True,
            exit_on_error=False,
            name="unsilence",
            group="silences",
        )

    @on(Button.Pressed, "#cancel")
    def _close(self) -> None:
        self.dismiss(None)


class ErrorDialog(Dialog):
    """An error that needs the operator's attention (never a crash)."""

    DEFAULT_CSS = DIALOG_CSS.format(name="ErrorDialog") + (
        "ErrorDialog > Vertical { border: thick $error; }"
    )

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,enter", "cancel", "Close", id="error.close"),
    ]

    def __init__(self, title: str, message: str) -> None:
        super().__init__()
        self.title_text = title
        self.message = message

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(safe(self.title_text, 200, style="bold"), classes="title")
            with VerticalScroll():
                yield Static(safe(self.message, 4000))
            with Horizontal(classes="buttons"):
                yield Button("Close", variant="error", id="ok")

    @on(Button.Pressed, "#ok")
    def _ok(self) -> None:
        self.dismiss(None)


HELP = """\
iotwatch console

Tabs           1 Dashboard · 2 Alerts · 3 Devices · 4 Allow-lists · 5 Rules · 6 Boards
Everywhere     F1 this help · Ctrl+P command palette · p pause/resume live refresh
               i refresh interval · Ctrl+T next theme · Ctrl+E export · / filter · q quit
Alerts         Enter detail · a acknowledge (again: un-acknowledge) · r resolve by hand (again:
               reopen) · n note · s silence · u unsilence · S silences in force
               v allow the offending value (adds it to the group's allow-list, after a yes)
Devices        g move to another group · e declare an expected device
Allow-lists    a add · e edit · d remove (after a yes) · t rule on/off · n new group · [ ] list
Allow-lists, Rules, Boards: their keys are in the footer; the palette (Ctrl+P) lists the actions
of the tab on screen.

Filters take words that must all match: d:device g:group r:rule v:value, or plain text that may
match any of them; * ? [ make a glob. On the dashboard, ! keeps only counters out of range.
/ puts the cursor in the filter (Tab passes it by); Escape or Enter gives the keys back to the
table. Escape also leaves an editor's input. Home/End: the first/last row.

Counters show the current window of every (device, enabled range rule): ▲ above max (red),
▼ below min (yellow; a window still running can catch up), the time left in the window, and the
last windows as bars (red: out of range). Alert ● open marks an open alert of that rule.

Alert flags: A acknowledged · S silenced · N has notes · ± amended. An alert resolved by hand
keeps its evaluated state; the table shows it as ✔ by hand (resolved by hand).

Everything a device or a file sent is shown literally: control characters appear as ␛ ␀ ␡ \\x9b.
"""


class HelpDialog(Dialog):
    """F1: keys and what the screens show."""

    DEFAULT_CSS = DIALOG_CSS.format(name="HelpDialog") + ("HelpDialog > Vertical { width: 104; }")

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,f1,q", "cancel", "Close", id="help.close"),
    ]

    def compose(self) -> ComposeResult:
        with Vertical():
            with VerticalScroll():
                yield Static(HELP, markup=False)
            with Horizontal(classes="buttons"):
                yield Button("Close", id="ok")

    @on(Button.Pressed, "#ok")
    def _ok(self) -> None:
        self.dismiss(None)

"""Small dialogs: a note, a silence, a device's group, an expected device, an error, the help.

Each returns its answer with ``dismiss`` (None when cancelled) and never renders device data as
markup.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, RadioButton, RadioSet, Select, Static

from tui.safe import plain, safe

DIALOG_CSS = """
{name} {{ align: center middle; }}
{name} > Vertical {{
    width: 76; max-width: 100%; height: auto; max-height: 90%; overflow-y: auto;
    border: thick $primary; background: $surface; padding: 1 2;
}}
{name} > Vertical > VerticalScroll {{ height: auto; max-height: 100%; }}
{name} > Vertical.scrolled {{ overflow-y: hidden; }}
{name} .title {{ text-style: bold; margin-bottom: 1; }}
{name} .hint {{ color: $text-muted; }}
{name} .error {{ color: $error; height: auto; }}
{name} Horizontal.buttons {{
    height: auto; margin-top: 1; align-horizontal: right; dock: bottom;
}}
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
    """Move a device to another group, or declare an expected device (``device`` None)."""

    DEFAULT_CSS = DIALOG_CSS.format(name="GroupDialog")

    def __init__(self, groups: list[str], device: str | None = None, current: str = "") -> None:
        super().__init__()
        self.groups = groups
        self.device = device
        self.current = current

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
            current = self.current if self.current in self.groups else self.groups[0]
            yield Select(
                [(plain(g, 60), g) for g in self.groups],
                value=current,
                allow_blank=False,
                id="group",
            )
            yield Static("", classes="error", id="group-error", markup=False)
            with Horizontal(classes="buttons"):
                yield Button("Cancel", id="cancel")
                yield Button("Apply", variant="primary", id="ok")

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
        with Vertical(classes="scrolled"):  # the message scrolls, not the box
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
Alerts         Enter detail · a acknowledge · r resolve by hand · n note · s silence
               v allow the offending value (adds it to the group's allow-list, after a yes)
Devices        g move to another group · e declare an expected device
Allow-lists, Rules, Boards: their keys are in the footer; every action is in the palette too.

Filters take words that must all match: d:device g:group r:rule v:value, or plain text that may
match any of them; * ? [ make a glob. On the dashboard, ! keeps only counters out of range.

Counters show the current window of every (device, enabled range rule): ▲ above max (red),
▼ below min (yellow; a window still running can catch up), the time left in the window, and the
last windows as bars (red: out of range). Alert ● open marks an open alert of that rule.
Seen ◌ marks a silent device: nothing from it for longer than its shortest window.

Alert flags: A acknowledged · S silenced · N has notes. Resolving by hand keeps the evaluated
state; the table shows ✔ closed.

Everything a device or a file sent is shown literally: control characters appear as ␛ ␀ ␡ \\x9b.
"""


LABEL = 15  # the width of the help's left column ("Everywhere     ")


def help_text(text: str) -> Group:
    """``text`` (the help, laid out for 104 columns) for any width: a line with a label in its
    first ``LABEL`` columns, and the indented lines after it, become a row of a two-column grid
    whose right column wraps under itself; other lines are paragraphs that wrap as prose."""
    parts: list[Any] = []
    grid: Table | None = None
    prose: list[str] = []

    def end_prose() -> None:
        if prose:
            parts.append(Text(" ".join(prose)))
            prose.clear()

    for line in text.splitlines():
        label, rest = line[:LABEL], line[LABEL:]
        if len(line) > LABEL and rest[:1] != " " and (not label.strip() or label.endswith("  ")):
            end_prose()
            if grid is None:
                grid = Table.grid(padding=(0, 1))
                grid.add_column(width=LABEL - 1, no_wrap=True)
                grid.add_column(ratio=1)
                parts.append(grid)
            if label.strip():
                grid.add_row(Text(label.strip()), Text(rest))
            else:  # a continuation: a line of its own under the previous one
                grid.add_row(Text(""), Text(rest))
            continue
        grid = None
        if line.strip():
            prose.append(line.strip())
        else:
            end_prose()
            parts.append(Text(""))
    end_prose()
    return Group(*parts)


class HelpDialog(Dialog):
    """F1: keys and what the screens show."""

    DEFAULT_CSS = DIALOG_CSS.format(name="HelpDialog") + (
        "HelpDialog > Vertical { width: 104; padding: 1 1 1 2; }"
    )

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,f1,q", "cancel", "Close", id="help.close"),
    ]

    def compose(self) -> ComposeResult:
        with Vertical(classes="scrolled"):  # the text scrolls, not the box
            with VerticalScroll():
                yield Static(help_text(HELP))
            with Horizontal(classes="buttons"):
                yield Button("Close", id="ok")

    @on(Button.Pressed, "#ok")
    def _ok(self) -> None:
        self.dismiss(None)

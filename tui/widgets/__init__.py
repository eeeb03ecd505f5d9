"""Widgets shared by the editor panes: the list editor, a one-line prompt and the way an edit of the
configuration reaches the engine and the file.

:func:`apply_edit` is the one path of every edit: it computes the new configuration from the one
in force (``bridge.config``) with a pure function of ``engine.config_edit``, hands it to the engine
(``bridge.apply_config``, awaited in the caller's worker, never blocking the UI), and writes the
TOML file when the configuration has one (``engine.config_edit.write_config``; the session stores
it in the database in any case). Edits of one bridge are serialized, so file writes land in the
order the edits were made.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label

from engine.config import DEFAULT_GROUP, Config, ConfigError
from engine.config_edit import write_config
from tui.bridge import Bridge
from tui.safe import safe
from tui.widgets.kv_editor import EntryValidator, ListEditor

__all__ = [
    "EntryValidator",
    "ListEditor",
    "Outcome",
    "TextPrompt",
    "apply_edit",
    "error_text",
]

_LOCKS: weakref.WeakKeyDictionary[Bridge, asyncio.Lock] = weakref.WeakKeyDictionary()


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of an edit: the configuration now in force (None when the edit was refused
    or failed), why it was refused, and where it was saved."""

    config: Config | None
    error: ConfigError | None = None
    failure: str | None = None  # the engine failed to take it
    saved: str | None = None  # the file written
    save_error: str | None = None  # applied, but the file could not be written

    @property
    def ok(self) -> bool:
        return self.config is not None


def error_text(error: ConfigError) -> str:
    """``KEY: REASON`` of a configuration error (the file is the console's own)."""
    return f"{error.key}: {error.reason}"


async def apply_edit(bridge: Bridge, edit: Callable[[Config], Config]) -> Outcome:
    """Apply ``edit(bridge.config)`` to the running engine and persist it; run in a worker."""
    lock = _LOCKS.get(bridge)
    if lock is None:
        lock = _LOCKS[bridge] = asyncio.Lock()
    async with lock:
        previous = bridge.config
        try:
            new = edit(previous)
        except ConfigError as exc:
            return Outcome(None, error=exc)
        try:
            await asyncio.wrap_future(bridge.apply_config(new))
        except Exception as exc:  # the engine failed to take it: report, never crash
            if bridge.config is new:
                bridge.config = previous  # what the session still uses
            return Outcome(None, failure=f"{type(exc).__name__}: {exc}")
        if new.path is None:
            return Outcome(new)
        try:
            saved = await asyncio.to_thread(write_config, new)
        except (OSError, ValueError, ConfigError) as exc:
            return Outcome(new, save_error=str(exc))
        return Outcome(new, saved=saved)


class TextPrompt(ModalScreen[str | None]):
    """Asks for one line of text (a file name, a group name); dismisses with it, or None.

    ``check(text)`` returns why the text cannot be used (shown under the input), or None.
    """

    DEFAULT_CSS = """
    TextPrompt {
        align: center middle;
    }
    TextPrompt > Vertical {
        width: 72;
        max-width: 100%;
        height: auto;
        border: thick $primary;
        background: $surface;
        padding: 1 2;
    }
    TextPrompt #prompt-title {
        text-style: bold;
        margin-bottom: 1;
    }
    TextPrompt #prompt-reason {
        color: $text-error;
        height: auto;
    }
    TextPrompt #prompt-buttons {
        height: auto;
        align-horizontal: right;
        margin-top: 1;
    }
    TextPrompt Button {
        margin-left: 1;
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel", id="prompt.cancel")
    ]

    def __init__(
        self,
        title: str,
        *,
        value: str = "",
        placeholder: str = "",
        check: Callable[[str], str | None] | None = None,
        ok: str = "OK",
    ) -> None:
        super().__init__()
        self.title_text = title
        self.value = value
        self.placeholder = placeholder
        self.check = check
        self.ok = ok

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(safe(self.title_text), id="prompt-title")
            yield Input(self.value, placeholder=self.placeholder, id="prompt-input")
            yield Label("", id="prompt-reason", markup=False)
            with Horizontal(id="prompt-buttons"):
                yield Button(self.ok, id="prompt-ok", variant="primary")
                yield Button("Cancel", id="prompt-cancel")

    def on_mount(self) -> None:
        self.query_one("#prompt-input", Input).focus()

    def _reason(self, text: str) -> str | None:
        if not text.strip():
            return "" if not text else "must not be blank"
        return self.check(text) if self.check is not None else None

    @on(Input.Changed, "#prompt-input")
    def _changed(self, event: Input.Changed) -> None:
        reason = self._reason(event.value)
        self.query_one("#prompt-reason", Label).update(safe(reason or "", 400))

    @on(Input.Submitted, "#prompt-input")
    @on(Button.Pressed, "#prompt-ok")
    def _ok(self) -> None:
        text = self.query_one("#prompt-input", Input).value
        reason = self._reason(text)
        if reason is not None:
            self.query_one("#prompt-reason", Label).update(safe(reason or "required", 400))
            self.app.bell()
            return
        self.dismiss(text)

    @on(Button.Pressed, "#prompt-cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)


def group_options(config: Config, current: str) -> list[tuple[Text, str]]:
    """(label, key) of every group for a selector: ``default`` always, and ``current`` even
    before a table defines it."""
    groups = dict(sorted((k, g.name) for k, g in config.groups.items()))
    if DEFAULT_GROUP not in groups:
        groups = {DEFAULT_GROUP: DEFAULT_GROUP, **groups}
    if current not in groups:
        groups[current] = current
    return [(safe(name, 60), key) for key, name in groups.items()]


def group_name(config: Config, key: str) -> str:
    """The group's name as written, or its key when no table defines it."""
    found = config.groups.get(key)
    return found.name if found is not None else key

"""An editable list of string entries, after Posting's key-value editor: a table of the entries
above an input row, with the reason an entry is refused shown inline next to the input.

Keys: ``a`` add (focuses the input), ``e``/``enter`` edit the highlighted entry, ``d``/``delete``
remove it (the owner asks first), ``escape`` cancels an edit or leaves the input (back to the
table, also when the input is empty), ``Home``/``End`` the first/last entry. The editor does not change its own entries: it posts
:class:`ListEditor.Submitted` and :class:`ListEditor.RemoveRequested`, and its owner applies the
change and then calls :meth:`ListEditor.set_values` and :meth:`ListEditor.accepted` (or
:meth:`ListEditor.refused` with a reason).

Entries are shown literally (``tui.safe.safe``): no markup is interpreted, control characters
are made visible.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.message import Message
from textual.validation import ValidationResult, Validator
from textual.widget import Widget
from textual.widgets import Button, DataTable, Input, Label

from tui.safe import safe

Check = Callable[[str, Sequence[str]], str | None]
"""``check(value, others)``: why ``value`` cannot join ``others`` (the other entries), or None."""


class RowTable(DataTable[Text]):
    """A ``DataTable`` of whole rows where ``Home``/``End`` go to the first/last row (Textual's own
    bindings scroll sideways, which a row cursor does not need)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("home", "scroll_top", "First row", show=False),
        Binding("end", "scroll_bottom", "Last row", show=False),
    ]

    def __init__(self, **kwargs: object) -> None:
        kwargs.setdefault("cursor_type", "row")
        super().__init__(**kwargs)  # type: ignore[arg-type]


class EntryValidator(Validator):
    """A Textual validator over a :data:`Check`; an empty input passes (submitting it does
    nothing)."""

    def __init__(self, check: Check, others: Callable[[], Sequence[str]]) -> None:
        super().__init__()
        self.check = check
        self.others = others

    def validate(self, value: str) -> ValidationResult:
        if value == "":
            return self.success()
        reason = self.check(value, self.others())
        return self.success() if reason is None else self.failure(reason)


class ListEditor(Widget):
    """A table of entries and an input row to add or edit one, with inline validation."""

    DEFAULT_CSS = """
    ListEditor {
        height: 1fr;
        layout: vertical;
    }
    ListEditor > DataTable {
        height: 1fr;
        background: $surface;
    }
    ListEditor > #entry-row {
        height: auto;
        margin-top: 1;
    }
    ListEditor #entry {
        width: 2fr;
    }
    ListEditor #submit {
        min-width: 10;
        width: auto;
    }
    ListEditor #reason {
        width: 3fr;
        height: auto;
        padding: 1 1 0 1;
        color: $text-error;
    }
    ListEditor #mode {
        height: 1;
        color: $text-muted;
        padding: 0 1;
    }
    ListEditor.-editing #mode {
        color: $text-warning;
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("a", "add", "Add", id="list_editor.add"),
        Binding("e", "edit", "Edit", key_display="e/⏎", id="list_editor.edit"),
        Binding("d,delete", "remove", "Remove", key_display="d", id="list_editor.remove"),
        Binding("escape", "cancel", "Cancel", id="list_editor.cancel"),
    ]

    class Submitted(Message):
        """The input holds a valid entry: add it (``index`` None) or replace entry ``index``."""

        def __init__(self, editor: ListEditor, value: str, index: int | None) -> None:
            super().__init__()
            self.editor = editor
            self.value = value
            self.index = index

        @property
        def control(self) -> ListEditor:
            return self.editor

    class RemoveRequested(Message):
        """Remove entry ``index`` (whose text is ``value``)."""

        def __init__(self, editor: ListEditor, index: int, value: str) -> None:
            super().__init__()
            self.editor = editor
            self.index = index
            self.value = value

        @property
        def control(self) -> ListEditor:
            return self.editor

    def __init__(
        self,
        check: Check,
        *,
        describe: Callable[[str], str] | None = None,
        placeholder: str = "new entry",
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.check = check
        self.describe = describe
        self.placeholder = placeholder
        self._values: tuple[str, ...] = ()
        self.editing: int | None = None  # index of the entry in the input, None: adding

    # -- composition ------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield RowTable(id="entries", zebra_stripes=True)
        yield Label(self._mode_text(), id="mode")
        with Horizontal(id="entry-row"):
            yield Input(
                placeholder=self.placeholder,
                id="entry",
                validators=[EntryValidator(self.check, self._others)],
                validate_on=["changed", "submitted"],
            )
            button = Button("Add", id="submit", variant="primary")
            button.can_focus = False
            yield button
            yield Label("", id="reason", markup=False)

    def on_mount(self) -> None:
        table = self.table
        table.add_column("#", key="n")
        table.add_column("Entry", key="entry")
        if self.describe is not None:
            table.add_column("Matches", key="matches")
        self._fill()

    @property
    def table(self) -> DataTable[Text]:
        return self.query_one("#entries", DataTable)

    @property
    def input(self) -> Input:
        return self.query_one("#entry", Input)

    @property
    def reason(self) -> str:
        """The reason shown next to the input (empty when there is none)."""
        return str(self.query_one("#reason", Label).content)

    @property
    def values(self) -> tuple[str, ...]:
        return self._values

    # -- owner API --------------------------------------------------------------------------------

    def set_values(self, values: Sequence[str], highlight: int | None = None) -> None:
        """Show ``values``; keep the cursor on the same row, or move it to ``highlight``."""
        self._values = tuple(values)
        if self.editing is not None and self.editing >= len(self._values):
            self._end_edit()
        if self.is_mounted:
            self._fill(highlight)

    def accepted(self) -> None:
        """The owner applied the submitted entry: clear the input and leave edit mode (back to
        the table after an edit; the input stays focused for the next entry after an add)."""
        was_editing = self.editing is not None
        self._end_edit()
        self.input.value = ""
        self._show_reason("")
        if was_editing and self.input.has_focus:
            self.table.focus()

    def refused(self, reason: str) -> None:
        """The owner refused the submitted entry: show ``reason`` next to the input."""
        self._show_reason(reason)

    def begin_add(self, value: str = "") -> None:
        """Put ``value`` in the input (adding, not editing) and focus it."""
        self._end_edit()
        self.input.value = value
        self.input.focus()

    def begin_edit(self, index: int) -> None:
        """Put entry ``index`` in the input to be edited."""
        if not 0 <= index < len(self._values):
            return
        self.editing = index
        self.add_class("-editing")
        self.query_one("#mode", Label).update(self._mode_text())
        self.query_one("#submit", Button).label = "Update"
        self.input.value = self._values[index]
        self.input.focus()
        self.input.cursor_position = len(self.input.value)

    # -- internals --------------------------------------------------------------------------------

    def _others(self) -> Sequence[str]:
        return [v for i, v in enumerate(self._values) if i != self.editing]

    def _mode_text(self) -> Text:
        if self.editing is None:
            return Text("new entry (enter adds it)")
        return Text.assemble(
            f"editing entry {self.editing + 1}: ",
            safe(self._values[self.editing], 200),
            " (enter saves, escape cancels)",
        )

    def _end_edit(self) -> None:
        self.editing = None
        self.remove_class("-editing")
        if self.is_mounted:
            self.query_one("#mode", Label).update(self._mode_text())
            self.query_one("#submit", Button).label = "Add"

    def _fill(self, highlight: int | None = None) -> None:
        table = self.table
        row = table.cursor_row if highlight is None else highlight
        table.clear()
        for i, value in enumerate(self._values):
            cells: list[Text] = [Text(str(i + 1), style="dim"), safe(value, 300)]
            if self.describe is not None:
                cells.append(Text(self.describe(value), style="dim"))
            table.add_row(*cells, key=str(i))
        if self._values:
            table.move_cursor(row=max(0, min(row, len(self._values) - 1)), animate=False)
        self.refresh_bindings()

    def _show_reason(self, reason: str) -> None:
        self.query_one("#reason", Label).update(safe(reason, 400))

    def _selected(self) -> int | None:
        table = self.table
        if not self._values or table.row_count == 0:
            return None
        return max(0, min(table.cursor_row, len(self._values) - 1))

    @on(Input.Changed, "#entry")
    def _changed(self, event: Input.Changed) -> None:
        event.stop()
        result = event.validation_result
        if not event.value or result is None or result.is_valid:
            self._show_reason("")
        else:
            self._show_reason(result.failure_descriptions[0])

    @on(Input.Submitted, "#entry")
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self._submit()

    @on(Button.Pressed, "#submit")
    def _pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self._submit()

    def _submit(self) -> None:
        value = self.input.value
        if not value:
            return
        reason = self.check(value, self._others())
        if reason is not None:
            self._show_reason(reason)
            self.app.bell()
            return
        self.post_message(self.Submitted(self, value, self.editing))

    @on(DataTable.RowSelected, "#entries")
    def _row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.begin_edit(event.cursor_row)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("edit", "remove"):
            return True if self._values else None
        if action == "cancel":  # an empty input is left with escape too
            return self.editing is not None or bool(
                self.is_mounted and (self.input.value or self.input.has_focus)
            )
        return True

    def action_add(self) -> None:
        self.begin_add()

    def action_edit(self) -> None:
        index = self._selected()
        if index is not None:
            self.begin_edit(index)

    def action_remove(self) -> None:
        index = self._selected()
        if index is not None:
            self.post_message(self.RemoveRequested(self, index, self._values[index]))

    def action_cancel(self) -> None:
        self._end_edit()
        self.input.value = ""
        self._show_reason("")
        self.table.focus()

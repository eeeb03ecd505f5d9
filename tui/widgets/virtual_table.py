"""A table that renders only the rows on screen (Textual's Line API).

``DataTable`` keeps a renderable per cell and measures, sorts and renumbers all of them: with
thousands of rows that changed every second (the dashboard's counters, 2,000 devices, 5,000
alerts) a refresh cost seconds of the UI thread. Here a refresh is ``set_rows(rows)``: an ordered
list of ``(key, data)`` pairs, filtered and sorted on a worker thread, handed over whole. Cells
are built by the table's ``cells(data)`` function only for the rows being painted, so the cost
of a refresh follows the height of the terminal, not the number of rows.

The cursor follows its row's key across refreshes (a row that moves keeps the cursor; a row
that goes away leaves it at the same position). ``Enter`` or a click on the cursor row posts
``RowSelected``; every cursor move posts ``RowHighlighted``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar, NamedTuple

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding, BindingType
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

PADDING = 1  # blank cells each side of a column, as DataTable draws them


class Column(NamedTuple):
    key: str
    label: str
    width: int


class Rows:
    """Rows in display order: keys and their data (``data`` is what ``cells`` renders).

    Built on a worker thread; the index from key to position is built there too."""

    __slots__ = ("data", "index", "keys")

    def __init__(self, pairs: Sequence[tuple[str, Any]] = ()) -> None:
        self.keys: list[str] = [k for k, _ in pairs]
        self.data: list[Any] = [d for _, d in pairs]
        self.index: dict[str, int] = {k: i for i, k in enumerate(self.keys)}

    def __len__(self) -> int:
        return len(self.keys)


Cells = Callable[[Any], Sequence[Text]]


class RowMessage(Message):
    """Something happened to row ``key`` (at ``index``) of ``table``."""

    def __init__(self, table: VirtualTable, key: str, index: int) -> None:
        super().__init__()
        self.table, self.key, self.index = table, key, index

    @property
    def control(self) -> VirtualTable:
        return self.table


class VirtualTable(ScrollView, can_focus=True):
    """Rows keyed by strings, cells built only when a row is painted (see the module)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up", "cursor_up", "Up", show=False),
        Binding("down", "cursor_down", "Down", show=False),
        Binding("pageup", "page_up", "Page up", show=False),
        Binding("pagedown", "page_down", "Page down", show=False),
        Binding("home", "first", "First", show=False),
        Binding("end", "last", "Last", show=False),
        Binding("enter", "select_cursor", "Select", show=False),
    ]

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "virtual-table--header",
        "virtual-table--cursor",
        "virtual-table--even-row",
    }

    # The look of DataTable, so both kinds of table sit side by side.
    DEFAULT_CSS = """
    VirtualTable {
        background: $surface;
        color: $foreground;
        height: auto;
        max-height: 100%;
        &:focus {
            background-tint: $foreground 5%;
            & > .virtual-table--cursor {
                background: $block-cursor-background;
                color: $block-cursor-foreground;
                text-style: $block-cursor-text-style;
            }
            & > .virtual-table--header { background-tint: $foreground 5%; }
        }
        &:dark > .virtual-table--even-row { background: $surface-darken-1 40%; }
        & > .virtual-table--header { text-style: bold; background: $panel; color: $foreground; }
        &:ansi > .virtual-table--header { background: ansi_bright_blue; color: ansi_default; }
        & > .virtual-table--even-row { background: $surface-lighten-1 50%; }
        & > .virtual-table--cursor {
            background: $block-cursor-blurred-background;
            color: $block-cursor-blurred-foreground;
            text-style: $block-cursor-blurred-text-style;
        }
    }
    """

    cursor_type: ClassVar[str] = "row"  # what DataTable-minded callers ask

    class RowHighlighted(RowMessage):
        """The cursor moved to row ``key`` (at ``index``)."""

    class RowSelected(RowMessage):
        """``Enter`` (or a click) on row ``key`` (at ``index``)."""

    def __init__(
        self,
        columns: Sequence[tuple[str, str, int]],
        cells: Cells,
        *,
        zebra_stripes: bool = True,
        show_cursor: bool = True,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.columns = [Column(*c) for c in columns]
        self.cells = cells
        self.zebra_stripes = zebra_stripes
        self.show_cursor = show_cursor  # False: a display-only table (no cursor is drawn)
        self.rows = Rows()
        self.cursor_row = 0
        self._cursor_key: str | None = None
        self._generation = 0  # bumped by set_rows: cached lines of older rows are stale
        self._lines: dict[tuple[Any, ...], Strip] = {}
        self._width = sum(c.width + 2 * PADDING for c in self.columns)
        self.virtual_size = Size(self._width, 1)

    # -- data ---------------------------------------------------------------------------------

    @property
    def row_count(self) -> int:
        return len(self.rows)

    @property
    def cursor_key(self) -> str | None:
        """The key of the row under the cursor, if there are rows."""
        return self.rows.keys[self.cursor_row] if self.rows.keys else None

    def set_rows(self, rows: Rows) -> None:
        """Show ``rows`` instead of the current ones; the cursor stays on its row's key."""
        old_key = self._cursor_key
        self.rows = rows
        self._generation += 1
        self._lines.clear()
        if len(rows) + 1 != self.virtual_size.height:
            self.virtual_size = Size(self._width, len(rows) + 1)
        index = rows.index.get(old_key) if old_key is not None else None
        if index is None:
            index = min(self.cursor_row, max(0, len(rows) - 1))
        self._set_cursor(index, scroll=False)
        if self.scroll_y > self.max_scroll_y:  # fewer rows than before: no blank screen
            self.scroll_to(y=self.max_scroll_y, animate=False, force=True)
        self.refresh()

    def get_row(self, key: str) -> tuple[Text, ...]:
        """The cells of row ``key`` (``KeyError`` when it is not shown)."""
        return tuple(self.cells(self.rows.data[self.rows.index[key]]))

    def get_row_at(self, index: int) -> tuple[Text, ...]:
        """The cells of the row at ``index``."""
        return tuple(self.cells(self.rows.data[index]))

    # -- cursor -------------------------------------------------------------------------------

    def move_cursor(self, *, row: int, animate: bool = False, scroll: bool = True) -> None:
        """Put the cursor on the row at ``row`` (clamped)."""
        del animate  # the table never animates: a repaint is the whole cost
        self._set_cursor(row, scroll=scroll)

    def _set_cursor(self, index: int, *, scroll: bool = True) -> None:
        index = max(0, min(index, len(self.rows) - 1)) if self.rows.keys else 0
        old = self.cursor_row
        old_key = self._cursor_key
        self._cursor_key = self.rows.keys[index] if self.rows.keys else None
        self.cursor_row = index
        if scroll:
            self.scroll_to_cursor()
        if index != old or self._cursor_key != old_key:
            self._refresh_row(old)
            self._refresh_row(index)
            if self._cursor_key is not None:
                self.post_message(self.RowHighlighted(self, self._cursor_key, index))

    def _refresh_row(self, index: int) -> None:
        y = index + 1 - round(self.scroll_y)
        if 1 <= y < self.size.height:
            self.refresh_line(index + 1)

    def scroll_to_cursor(self) -> None:
        """Scroll just enough that the cursor row is on screen below the header."""
        visible = max(1, self.scrollable_content_region.height - 1)
        top = round(self.scroll_y)
        if self.cursor_row < top:
            self.scroll_to(y=self.cursor_row, animate=False, force=True)
        elif self.cursor_row >= top + visible:
            self.scroll_to(y=self.cursor_row - visible + 1, animate=False, force=True)

    def _page(self) -> int:
        return max(1, self.scrollable_content_region.height - 2)

    def action_cursor_up(self) -> None:
        self._set_cursor(self.cursor_row - 1)

    def action_cursor_down(self) -> None:
        self._set_cursor(self.cursor_row + 1)

    def action_page_up(self) -> None:
        self._set_cursor(self.cursor_row - self._page())

    def action_page_down(self) -> None:
        self._set_cursor(self.cursor_row + self._page())

    def action_first(self) -> None:
        self._set_cursor(0)

    def action_last(self) -> None:
        self._set_cursor(len(self.rows) - 1)

    def action_select_cursor(self) -> None:
        if self._cursor_key is not None:
            self.post_message(self.RowSelected(self, self._cursor_key, self.cursor_row))

    async def _on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is None or offset.y < 1:
            return  # the header
        index = round(self.scroll_y) + offset.y - 1
        if not 0 <= index < len(self.rows):
            return
        if index == self.cursor_row:
            self.action_select_cursor()
        else:
            self._set_cursor(index)

    def _on_focus(self, event: events.Focus) -> None:
        self._lines.clear()  # the cursor's colours follow the focus

    def _on_blur(self, event: events.Blur) -> None:
        self._lines.clear()

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._lines.clear()  # a new theme

    # -- painting -----------------------------------------------------------------------------

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        width = self.size.width
        base = self.rich_style
        if y == 0:
            line = self._line(-1, base)
        else:
            index = scroll_y + y - 1
            if index >= len(self.rows):
                return Strip.blank(width, base)
            line = self._line(index, base)
        return line.crop_extend(scroll_x, scroll_x + width, base)

    def _line(self, index: int, base: Style) -> Strip:
        """Row ``index`` (-1: the header), uncropped, cached until the rows change."""
        cursor = self.show_cursor and index == self.cursor_row and index >= 0
        width = max(self._width, self.size.width)  # stripes and cursor span the widget
        key = (index, cursor, self.has_focus, base, width, self._generation)
        line = self._lines.get(key)
        if line is not None:
            return line
        if index < 0:
            style = base + self.get_component_rich_style("virtual-table--header")
            texts: Sequence[Text] = [Text(c.label) for c in self.columns]
        else:
            style = base
            if self.zebra_stripes and index % 2:
                style += self.get_component_rich_style("virtual-table--even-row")
            texts = self.cells(self.rows.data[index])
        segments: list[Segment] = []
        pad = Segment(" " * PADDING, style)
        console = self.app.console
        for column, text in zip(self.columns, texts, strict=False):
            fitted = text.copy()
            fitted.no_wrap = True
            fitted.end = ""
            fitted.truncate(column.width, overflow="ellipsis", pad=True)
            # Text.render leaves out the text's own style (Console applies it): add it here.
            own = fitted.style
            if own:
                own = console.get_style(own, default=Style.null()) if isinstance(own, str) else own
                cell_style = style + own
            else:
                cell_style = style
            segments.append(pad)
            segments.extend(Segment.apply_style(fitted.render(console), cell_style))
            segments.append(pad)
        if cursor:  # over the cells' own colours, as DataTable's cursor is
            cursor_style = self.get_component_rich_style("virtual-table--cursor")
            segments = list(Segment.apply_style(segments, post_style=cursor_style))
            style += cursor_style
        line = Strip(segments).adjust_cell_length(width, style)
        if len(self._lines) > 4 * max(8, self.size.height):
            self._lines.clear()
        self._lines[key] = line.simplify()
        return self._lines[key]

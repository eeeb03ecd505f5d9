"""A table that renders only the rows on screen (Textual's Line API).

``DataTable`` keeps a renderable per cell and measures, sorts and renumbers all of them: with
thousands of rows that changed every second (the dashboard's counters, 2,000 devices, 5,000
alerts) a refresh cost seconds of the UI thread. Here a refresh is ``set_rows(rows)``: an ordered
list of ``(key, data)`` pairs, filtered and sorted on a worker thread, handed over whole. Cells
are built by the table's ``cells(data)`` function only for the rows being painted, so the cost
of a refresh follows the height of the terminal, not the number of rows.

Columns are sized from the table's width and their content: each column wants its header and
the widest cell of the rows on screen (measured when rows are set, and again when a wider cell
is painted; while the same rows stay on screen a width grows at once and shrinks only every
``STICKY`` refreshes), within its ``max_width``. When the wants do not fit, columns give up width in
proportion to what they have above their ``min_width``; only when every column is at its
minimum does the table scroll sideways. A cell wider than its column ends in ``…`` — or, for a
``front`` column (paths), starts with it, so the file name stays visible.

The cursor follows its row's key across refreshes (a row that moves keeps the cursor; a row
that goes away leaves it at the same position). ``Enter`` or a click on the cursor row posts
``RowSelected``; every cursor move posts ``RowHighlighted``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar, NamedTuple

from rich.cells import cell_len
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding, BindingType
from textual.geometry import Region, Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

PADDING = 1  # blank cells each side of a column, as DataTable draws them
STICKY = 30  # refreshes (set_rows) between which measured widths only grow


class Column(NamedTuple):
    """A column: ``width`` is its width before anything is measured; it is sized between
    ``min_width`` (default: ``width``) and ``max_width`` (default: unbounded) from its content.
    ``front``: a cell too wide is cut at the front (a path keeps its end, a time its clock).
    ``keep``: the column gives up width only after the others are at their minimum (device
    ids, values and counts). ``optional``: the column is left out (width 0) when the ``keep``
    columns would otherwise be cut (a group, beside the device id that names it)."""

    key: str
    label: str
    width: int
    min_width: int | None = None
    max_width: int | None = None
    front: bool = False
    keep: bool = False
    optional: bool = False

    @property
    def narrowest(self) -> int:
        return self.width if self.min_width is None else min(self.min_width, self.width)


def _shrink(widths: list[int], lows: list[int], which: list[int], over: int) -> int:
    """Take up to ``over`` cells from the columns ``which``, in proportion to what each has
    above its minimum; what is still over."""
    spare = {i: widths[i] - lows[i] for i in which}
    total = sum(spare.values())
    if total <= 0:
        return over
    take = min(over, total)
    for i in which:
        cut = take * spare[i] // total
        widths[i] -= cut
        over -= cut
    for i in sorted(which, key=lambda i: -spare[i]):  # what rounding down left
        if over <= 0 or take * spare[i] // total == spare[i]:
            continue
        if widths[i] > lows[i]:
            widths[i] -= 1
            over -= 1
    return over


def fit_widths(columns: Sequence[Column], wanted: Sequence[int], room: int) -> list[int]:
    """Widths for ``columns`` (each between its minimum and maximum, ``wanted`` if possible)
    whose sum, with the padding, is at most ``room`` if their minimums allow it; 0 for an
    ``optional`` column left out.

    Columns too wide together give up width in proportion to what they have above their
    minimum — the ``keep`` columns only when the others have nothing left to give, and before
    a ``keep`` column is cut the ``optional`` ones go (the last first)."""
    lows = [c.narrowest for c in columns]
    wants = []
    for c, low, want in zip(columns, lows, wanted, strict=True):
        if c.max_width is not None:
            want = min(want, c.max_width)
        wants.append(max(low, want))
    shown = list(range(len(columns)))
    optional = [i for i, c in enumerate(columns) if c.optional]
    while True:
        widths = [wants[i] if i in shown else 0 for i in range(len(columns))]
        over = sum(widths) + 2 * PADDING * len(shown) - room
        if over > 0:
            over = _shrink(widths, lows, [i for i in shown if not columns[i].keep], over)
        if over > 0:
            _shrink(widths, lows, [i for i in shown if columns[i].keep], over)
        cut = any(widths[i] < wants[i] for i in shown if columns[i].keep)
        if not (cut and optional):
            return widths
        shown.remove(optional.pop())


def front_cut(text: Text, width: int) -> Text:
    """``text`` cut to ``width`` cells at the front (``…`` first), when it is wider."""
    if text.cell_len <= width:
        return text
    plain, room = text.plain, width - 1
    start = len(plain)
    while start > 0 and room - cell_len(plain[start - 1]) >= 0:
        start -= 1
        room -= cell_len(plain[start])
    cut = Text("…", no_wrap=True, end="", style=text.style)
    cut.append_text(text[start:])
    return cut


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
        columns: Sequence[tuple[Any, ...]],
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
        # Content widths: the header and the widest cell measured since the rows were set.
        self._labels = [cell_len(c.label) for c in self.columns]
        self._measured: list[int] | None = None  # None: nothing measured, the base widths
        self.widths = [c.width for c in self.columns]
        self._width = sum(w + 2 * PADDING for w in self.widths)
        self._relayout_pending = False
        self._built: dict[int, Sequence[Text]] = {}  # cells measured, not painted yet
        self._room = 0  # the width the columns were fitted to
        self._refreshes = 0  # set_rows calls, for the STICKY resets
        self._measured_keys: list[str] = []  # the rows on screen when last measured
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
        self._measure_visible()
        self.refresh()

    # -- column widths ------------------------------------------------------------------------

    def _measure_visible(self) -> None:
        """Measure the rows on screen (their cells are about to be built anyway) and size the
        columns from them."""
        top = max(0, round(self.scroll_y))
        visible = self.size.height - 1
        height = self.styles.height
        if height is None or height.is_auto:  # it grows with these rows: up to a screenful
            visible = max(visible, self.app.size.height - 1)
        bottom = min(len(self.rows), top + max(0, visible))
        # While the same rows are on screen, widths only grow (reset every STICKY refreshes):
        # a count that gains and loses a digit every second does not make the columns jump.
        self._refreshes += 1
        keys = self.rows.keys[top:bottom]
        same = keys == self._measured_keys and self._refreshes % STICKY
        measured = self._measured if same and self._measured is not None else list(self._labels)
        self._measured_keys = keys
        built = self._built = {}
        for index in range(top, bottom):
            texts = built[index] = self.cells(self.rows.data[index])
            for i, text in enumerate(texts):
                if i < len(measured):
                    width = text.cell_len
                    if width > measured[i]:
                        measured[i] = width
        self._measured = measured
        self._layout()

    def _layout(self) -> None:
        """Fit the columns to the table's width; repaint when a width changed."""
        self._relayout_pending = False
        wanted = self._measured or [c.width for c in self.columns]
        room = self.scrollable_content_region.width  # without the scroll bar
        self._room = room
        widths = fit_widths(self.columns, wanted, room if room > 0 else self._width)
        if widths == self.widths:
            return
        self.widths = widths
        self._width = sum(w + 2 * PADDING for w in widths if w)
        self._lines.clear()
        self.virtual_size = Size(self._width, len(self.rows) + 1)
        self.refresh()

    def _on_resize(self, event: events.Resize) -> None:
        self._layout()

    def _painted(self, texts: Sequence[Text]) -> None:
        """A row was painted: if one of its cells is wider than measured, lay out again after
        this frame (a row scrolled into view may hold the widest value)."""
        measured = self._measured
        if measured is None:
            return
        for i, text in enumerate(texts):
            if i < len(measured) and text.cell_len > measured[i]:
                measured[i] = text.cell_len
                if not self._relayout_pending and self.widths[i] < text.cell_len:
                    self._relayout_pending = True
                    self.call_after_refresh(self._layout)

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

    def render_lines(self, crop: Region) -> list[Strip]:
        if self.scrollable_content_region.width != self._room and not self._relayout_pending:
            self._relayout_pending = True  # a scroll bar came or went: fit the columns again
            self.call_after_refresh(self._layout)
        return super().render_lines(crop)

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
            texts = self._built.pop(index, None)
            if texts is None:  # not measured with the rows: measure it now
                texts = self.cells(self.rows.data[index])
                self._painted(texts)
        segments: list[Segment] = []
        pad = Segment(" " * PADDING, style)
        console = self.app.console
        for column, room, text in zip(self.columns, self.widths, texts, strict=False):
            if not room:  # an optional column left out
                continue
            fitted = front_cut(text, room) if column.front and index >= 0 else text
            fitted = fitted.copy()
            fitted.no_wrap = True
            fitted.end = ""
            fitted.truncate(room, overflow="ellipsis", pad=True)
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

"""The virtual table behind the counters, devices and alerts: cells are built only for the rows
on screen, the cursor follows its row's key, and keys, clicks and scrolling behave as in a
DataTable."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import App, ComposeResult

from tui.safe import safe
from tui.widgets.virtual_table import Rows, VirtualTable

COLUMNS = (("name", "Name", 12), ("n", "N", 5))
SIZE = (40, 12)  # the table gets 12 lines: a header and 11 rows


class TableApp(App[None]):
    def __init__(self) -> None:
        super().__init__()
        self.built: list[Any] = []  # the data of every row whose cells were built
        self.selected: list[tuple[str, int]] = []
        self.highlighted: list[str] = []

    def cells(self, data: Any) -> tuple[Text, ...]:
        self.built.append(data)
        name, n = data
        return safe(name, 64), Text(str(n))

    def compose(self) -> ComposeResult:
        yield VirtualTable(COLUMNS, self.cells, id="t")

    def on_virtual_table_row_selected(self, event: VirtualTable.RowSelected) -> None:
        self.selected.append((event.key, event.index))

    def on_virtual_table_row_highlighted(self, event: VirtualTable.RowHighlighted) -> None:
        self.highlighted.append(event.key)


def rows(names: list[str]) -> Rows:
    return Rows([(n, (n, i)) for i, n in enumerate(names)])


def names(n: int, prefix: str = "dev") -> list[str]:
    return [f"{prefix}-{i:05d}" for i in range(n)]


def screen_lines(app: App[Any]) -> list[str]:
    """The table's lines as painted now (its own Line API, the header first)."""
    table = app.query_one(VirtualTable)
    return [table.render_line(y).text for y in range(table.size.height)]


async def test_only_the_rows_on_screen_are_built() -> None:
    app = TableApp()
    async with app.run_test(size=SIZE) as pilot:
        table = app.query_one(VirtualTable)
        table.set_rows(rows(names(10_000)))
        await pilot.pause()
        assert table.row_count == 10_000
        assert 0 < len(app.built) <= 11
        # A new set of rows (the next refresh) costs one screenful again, not 10,000 rows.
        app.built.clear()
        table.set_rows(rows(names(10_000, "new")))
        await pilot.pause()
        assert 0 < len(app.built) <= 11
        assert {d[0] for d in app.built} <= {f"new-{i:05d}" for i in range(11)}
        # Moving the cursor repaints the two rows involved from the cache or anew, nothing else.
        app.built.clear()
        table.focus()
        await pilot.press("down")
        assert len(app.built) <= 4


async def test_the_cursor_follows_its_row_when_rows_move() -> None:
    app = TableApp()
    async with app.run_test(size=SIZE) as pilot:
        table = app.query_one(VirtualTable)
        table.set_rows(rows(["a", "b", "c", "d"]))
        table.focus()
        await pilot.press("down", "down")
        assert table.cursor_key == "c"
        table.set_rows(rows(["c", "x", "a", "b", "d"]))  # "c" moved to the top
        await pilot.pause()
        assert (table.cursor_row, table.cursor_key) == (0, "c")
        table.set_rows(rows(["x", "y", "z"]))  # "c" went away: the cursor keeps its place
        assert (table.cursor_row, table.cursor_key) == (0, "x")
        table.move_cursor(row=2)
        table.set_rows(rows(["x"]))  # fewer rows than the cursor's place: the last row
        assert (table.cursor_row, table.cursor_key) == (0, "x")
        table.set_rows(rows([]))
        assert table.cursor_key is None and table.row_count == 0
        await pilot.press("down", "enter")  # nothing to move to or select
        assert app.selected == []


async def test_keys_move_the_cursor_and_scroll_it_into_view() -> None:
    app = TableApp()
    async with app.run_test(size=SIZE) as pilot:
        table = app.query_one(VirtualTable)
        table.set_rows(rows(names(100)))
        table.focus()
        await pilot.pause()
        for _ in range(15):
            await pilot.press("down")
        assert table.cursor_row == 15
        # Rows 0..10 fit under the header; the cursor row is now the last one on screen.
        assert table.scroll_y == 15 - 11 + 1
        assert "dev-00015" in screen_lines(app)[-1]
        await pilot.press("end")
        assert table.cursor_row == 99 and "dev-00099" in screen_lines(app)[-1]
        await pilot.press("pageup")
        assert table.cursor_row == 99 - 10
        await pilot.press("home")
        assert table.cursor_row == 0 and table.scroll_y == 0
        assert screen_lines(app)[0].split()[:2] == ["Name", "N"]  # the header stays on top
        assert app.highlighted[-1] == "dev-00000"


async def test_enter_and_a_click_on_the_cursor_row_select_it() -> None:
    app = TableApp()
    async with app.run_test(size=SIZE) as pilot:
        table = app.query_one(VirtualTable)
        table.set_rows(rows(["a", "b", "c"]))
        table.focus()
        await pilot.press("enter")
        await pilot.pause()
        assert app.selected == [("a", 0)]
        await pilot.click(VirtualTable, offset=(2, 3))  # line 3: the header, a, b, c
        await pilot.pause()
        assert table.cursor_key == "c" and app.selected == [("a", 0)]
        await pilot.click(VirtualTable, offset=(2, 3))
        await pilot.pause()
        assert app.selected == [("a", 0), ("c", 2)]
        await pilot.click(VirtualTable, offset=(2, 0))  # the header selects nothing
        await pilot.pause()
        assert table.cursor_key == "c" and len(app.selected) == 2


async def test_fewer_rows_while_scrolled_down_do_not_leave_a_blank_table() -> None:
    app = TableApp()
    async with app.run_test(size=SIZE) as pilot:
        table = app.query_one(VirtualTable)
        table.set_rows(rows(names(500)))
        table.focus()
        await pilot.press("end")
        assert table.scroll_y > 0
        table.set_rows(rows(names(3, "few")))  # a filter typed while at the bottom
        await pilot.pause()
        assert table.scroll_y == 0
        lines = screen_lines(app)
        assert [ln.split()[0] for ln in lines[1:4]] == ["few-00000", "few-00001", "few-00002"]


async def test_cells_are_shown_literally_and_cut_with_an_ellipsis() -> None:
    app = TableApp()
    async with app.run_test(size=SIZE) as pilot:
        table = app.query_one(VirtualTable)
        table.set_rows(rows(["[/x]", "[$accent]\x1b[31m", "a-very-long-device-name"]))
        await pilot.pause()
        lines = screen_lines(app)
        assert lines[1].split()[0] == "[/x]"
        assert "\x1b" not in "".join(lines) and "[$accent]" in lines[2]
        assert lines[3].split()[0] == "a-very-long…"
        assert table.get_row("[/x]")[0].plain == "[/x]"
        assert table.get_row_at(2)[0].plain == "a-very-long-device-name"

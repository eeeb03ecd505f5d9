"""The virtual table behind the counters, devices and alerts: cells are built only for the rows
on screen, the cursor follows its row's key, and keys, clicks and scrolling behave as in a
DataTable."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import App, ComposeResult

from tui.safe import safe
from tui.widgets.virtual_table import Column, Rows, VirtualTable, fit_widths, front_cut

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
        long = "a-very-long-device-name-" * 3  # wider than the 40-column table
        table.set_rows(rows(["[/x]", "[$accent]\x1b[31m", "a-very-long-device-name", long]))
        await pilot.pause()
        lines = screen_lines(app)
        assert lines[1].split()[0] == "[/x]"
        assert "\x1b" not in "".join(lines) and "[$accent]" in lines[2]
        assert lines[3].split()[0] == "a-very-long-device-name"  # whole: the width allows it
        name = lines[4].split()[0]  # what the N column (5) and the padding (4) leave of 40
        assert name == long[:30] + "…"
        assert table.get_row("[/x]")[0].plain == "[/x]"
        assert table.get_row_at(2)[0].plain == "a-very-long-device-name"


def col(key: str, width: int, low: int, high: int | None = None, **kw: Any) -> Column:
    return Column(key, key, width, low, high, **kw)


def test_columns_get_what_they_want_when_it_fits() -> None:
    columns = [col("device", 20, 8), col("rule", 24, 10, 30), col("n", 5, 5)]
    assert fit_widths(columns, [40, 50, 3], 200) == [40, 30, 5]  # max 30; the n minimum 5
    assert fit_widths(columns, [6, 12, 3], 200) == [8, 12, 5]  # content narrower: narrower


def test_columns_too_wide_together_shrink_in_proportion_keep_columns_last() -> None:
    columns = [col("device", 20, 8, keep=True), col("rule", 24, 10), col("group", 10, 4)]
    # 30 + 24 + 10 = 64 wanted, 6 of padding, 50 of room: 20 cells to give up.
    widths = fit_widths(columns, [30, 24, 10], 50)
    assert sum(widths) + 6 == 50
    assert widths[0] == 30  # the kept column gives nothing while the others can
    assert widths[1:] == [10, 4]  # both at their minimum: 14 + 6 = 20 given up
    widths = fit_widths(columns, [30, 24, 10], 40)  # 10 more: only the kept column has any
    assert widths == [20, 10, 4]
    assert fit_widths(columns, [30, 24, 10], 10) == [8, 10, 4]  # minimums: scrolls sideways
    widths = fit_widths([col("a", 20, 4), col("b", 20, 4)], [30, 10], 30)
    assert sum(widths) + 4 == 30 and widths[0] > widths[1]  # in proportion to what each has


def test_an_optional_column_goes_before_a_kept_one_is_cut() -> None:
    columns = [col("device", 20, 8, keep=True), col("group", 10, 5, optional=True)]
    assert fit_widths(columns, [20, 10], 40) == [20, 10]  # room for both
    assert fit_widths(columns, [20, 10], 30) == [20, 6]  # the group gives up what it can
    assert fit_widths(columns, [20, 10], 26) == [20, 0]  # the device would be cut: no group
    assert fit_widths(columns, [20, 10], 16) == [14, 0]  # too narrow even alone: cut


def test_a_front_column_keeps_the_end_of_its_value() -> None:
    cut = front_cut(Text("/dev/serial/by-id/usb-board-1", style="bold"), 20)
    assert (cut.plain, cut.style) == ("…l/by-id/usb-board-1", "bold")
    assert front_cut(Text("short"), 20).plain == "short"
    assert front_cut(Text("/data/数数数.log"), 8).plain == "…数.log"  # wide characters count 2


async def test_a_narrow_table_cuts_a_front_column_at_the_front() -> None:
    class PathApp(App[None]):
        def compose(self) -> ComposeResult:
            yield VirtualTable(
                [("path", "Path", 10, 8, None, True), ("n", "N", 3)],
                lambda d: (Text(d[0]), Text(str(d[1]))),
                id="t",
            )

    app = PathApp()
    async with app.run_test(size=(30, 6)) as pilot:
        table = app.query_one(VirtualTable)
        table.set_rows(Rows([("a", ("/dev/serial/by-id/usb-board-1", 1))]))
        await pilot.pause()
        # 30 columns less the N column (3) and the padding (4): 23 cells.
        assert table.render_line(1).text.split()[0] == "…rial/by-id/usb-board-1"
        assert table.render_line(0).text.split()[0] == "Path"  # a header is never cut in front


async def test_widths_grow_at_once_and_shrink_only_when_other_rows_show() -> None:
    app = TableApp()
    async with app.run_test(size=SIZE) as pilot:
        table = app.query_one(VirtualTable)
        await pilot.pause()  # laid out: the rows on screen are known when rows are set
        table.set_rows(Rows([("a", ("a", 123456)), ("b", ("b", 1))]))
        await pilot.pause()
        assert table.widths[1] == 6  # the widest count
        table.set_rows(Rows([("a", ("a", 12)), ("b", ("b", 1))]))  # the same rows, narrower
        await pilot.pause()
        assert table.widths[1] == 6  # no jump back and forth with every refresh
        table.set_rows(Rows([("a", ("a", 1234567)), ("b", ("b", 1))]))
        await pilot.pause()
        assert table.widths[1] == 7  # wider: at once
        table.set_rows(Rows([("c", ("c", 12))]))  # other rows on screen: measured afresh
        await pilot.pause()
        assert table.widths[1] == 5  # the N column's minimum (its width)

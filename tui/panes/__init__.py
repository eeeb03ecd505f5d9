"""The console's panes: each is a ``Widget`` built as ``Pane(bridge)`` and mounted in a tab.

A pane that wants live data follows the refresh protocol that :class:`tui.app.IotwatchApp`
drives while the pane's tab is visible and no dialog is open (hidden tabs do no work):

- ``needs_snapshot`` (class attribute): whether the worker takes a ``Snapshot`` first;
- ``gather_args()`` on the UI thread: what the worker needs (filters, versions);
- ``gather(snapshot, args)`` on a worker thread: blocking reads (``bridge.query``), no widgets;
- ``show(data)`` on the UI thread, inside ``app.batch_update()``: update widgets by key.

Polls never overlap: the app re-arms its timer only after ``show`` has run. This module also
holds the small formatting helpers the panes share.
"""

from __future__ import annotations

import contextlib
import fnmatch
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from rich.text import Text
from textual.widget import Widget
from textual.widgets import DataTable
from textual.widgets.data_table import RowDoesNotExist

from tui.bridge import Bridge

US = 1_000_000
SPARK = "▁▂▃▄▅▆▇█"
# Rebuilding a table that loses most of its rows (a new filter) is cheaper than removing them one
# by one (each removal renumbers every row); up to this many removals rows go by key.
REBUILD_ABOVE = 300


class LivePane(Widget):
    """A pane refreshed by the app while it is visible (see the module docstring)."""

    needs_snapshot: ClassVar[bool] = False

    def __init__(self, bridge: Bridge, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.bridge = bridge

    def gather_args(self) -> Any:
        """What ``gather`` needs from the UI (runs on the UI thread)."""
        return None

    def gather(self, snapshot: Any, args: Any) -> Any:  # pragma: no cover - overridden
        """Read what ``show`` displays (runs on a worker thread)."""
        return None

    def show(self, data: Any) -> None:  # pragma: no cover - overridden
        """Display ``data`` (UI thread, batched)."""


# -- formatting -------------------------------------------------------------------------------


def fmt_time(us: int | None, *, date: bool = True) -> str:
    """A UTC time for a table cell: ``MM-DD HH:MM:SS`` (or ``HH:MM:SS``); ``-`` when unknown."""
    if us is None:
        return "-"
    return time.strftime("%m-%d %H:%M:%S" if date else "%H:%M:%S", time.gmtime(us // US))


def fmt_full_time(us: int | None) -> str:
    """RFC 3339 UTC to the second."""
    if us is None:
        return "-"
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(us // US))


def fmt_span(seconds: int) -> str:
    """A short duration: ``42s``, ``3m05s``, ``2h10m``, ``3d04h``."""
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    if seconds < 86400:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d{seconds % 86400 // 3600:02d}h"


def short_rule(name: str) -> str:
    """A rule type's name without its ``NotInAllowedRange`` / ``NotAllowed`` suffix."""
    for suffix in ("NotInAllowedRange", "NotAllowed"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def sparkline(values: Sequence[int], low: int, high: int, width: int = 12) -> Text:
    """Bars for ``values``, out-of-range ones (outside ``[low, high]``) in red, others green."""
    text = Text(no_wrap=True, end="")
    shown = list(values)[-width:]
    top = max([high, *shown, 1])
    for v in shown:
        level = min(len(SPARK) - 1, (v * (len(SPARK) - 1) + top - 1) // top) if v > 0 else 0
        bad = v > high or v < low
        text.append(SPARK[level], style="bold red" if bad else "green")
    if len(shown) < width:
        text.append(" " * (width - len(shown)))
    return text


def cell(value: object, style: str = "") -> Text:
    """A table cell of our own text (numbers, fixed words): still a ``Text``, never markup."""
    return Text(str(value), style=style, no_wrap=True, end="")


# -- tables updated by key ----------------------------------------------------------------------


@dataclass
class TablePlan:
    """What to do to a table to make it show ``rows``: worked out on a worker thread (the UI
    thread only applies it)."""

    rows: dict[str, tuple[Any, ...]]
    removed: list[str] = field(default_factory=list)
    added: list[str] = field(default_factory=list)
    changed: list[tuple[str, str, Any]] = field(default_factory=list)  # key, column, cell
    rebuild: bool = False

    def __bool__(self) -> bool:
        return bool(self.rebuild or self.removed or self.added or self.changed)


def plan_table(
    rows: Mapping[str, tuple[Any, ...]],
    shown: Mapping[str, tuple[Any, ...]],
    columns: Sequence[str],
) -> TablePlan:
    """Compare ``rows`` (key → cells) with what the table ``shown``: rows to add and remove,
    cells to update. Only reads ``shown``, so it may run on a worker thread while the table is
    idle (polls never overlap)."""
    plan = TablePlan(dict(rows))
    removed = [k for k in shown if k not in rows]
    if len(removed) > REBUILD_ABOVE:
        plan.rebuild = True
        plan.added = list(rows)
        return plan
    plan.removed = removed
    for key, cells in rows.items():
        old = shown.get(key)
        if old is None:
            plan.added.append(key)
        elif old != cells:
            plan.changed += [
                (key, col, b) for col, a, b in zip(columns, old, cells, strict=True) if a != b
            ]
    return plan


def apply_plan(
    table: DataTable[Any],
    plan: TablePlan,
    shown: dict[str, tuple[Any, ...]],
    *,
    sort_key: Any = None,
    reverse: bool = False,
) -> bool:
    """Apply ``plan`` to ``table`` by key (``shown`` follows). When rows were added, the table is
    sorted with ``sort_key`` (on a row's cells) and the cursor stays on the row it was on.
    Returns whether anything changed."""
    if not plan:
        return False
    cursor_key = current_key(table)
    if plan.rebuild:  # most rows went away (a new filter): one clear beats thousands of removals
        table.clear()
        shown.clear()
    for key in plan.removed:
        with contextlib.suppress(RowDoesNotExist):
            table.remove_row(key)
        shown.pop(key, None)
    for key in plan.added:
        cells = plan.rows[key]
        table.add_row(*cells, key=key)
        shown[key] = cells
    for key, column, value in plan.changed:
        table.update_cell(key, column, value)
    for key, _, _ in plan.changed:
        shown[key] = plan.rows[key]
    if plan.added and sort_key is not None:
        table.sort(key=sort_key, reverse=reverse)
    if plan.added and cursor_key is not None and cursor_key in shown:
        restore_cursor(table, cursor_key)
    return True


def sync_table(
    table: DataTable[Any],
    rows: Mapping[str, tuple[Any, ...]],
    shown: dict[str, tuple[Any, ...]],
    columns: Sequence[str],
    *,
    sort_key: Any = None,
    reverse: bool = False,
) -> bool:
    """``plan_table`` and ``apply_plan`` in one go (for small tables)."""
    return apply_plan(
        table, plan_table(rows, shown, columns), shown, sort_key=sort_key, reverse=reverse
    )


def current_key(table: DataTable[Any]) -> str | None:
    """The key of the row under the cursor, if any."""
    if table.row_count == 0:
        return None
    try:
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key
    except Exception:
        return None
    return None if key.value is None else str(key.value)


def restore_cursor(table: DataTable[Any], key: str) -> None:
    """Put the cursor back on row ``key`` without scrolling it into the middle."""
    try:
        index = table.get_row_index(key)
    except RowDoesNotExist:
        return
    if index != table.cursor_row:
        table.move_cursor(row=index, animate=False, scroll=False)


# -- text filters -------------------------------------------------------------------------------


class TextFilter:
    """Whitespace-separated terms, all of which must match: ``d:`` device, ``g:`` group, ``r:``
    rule, ``v:`` value, or a bare term that may match any of them. A term with ``*``, ``?`` or
    ``[`` is a glob on the whole field; any other is a case-insensitive substring."""

    FIELDS: ClassVar[dict[str, str]] = {"d": "device", "g": "group", "r": "rule", "v": "value"}

    def __init__(self, text: str = "") -> None:
        self.text = text
        self.terms: list[tuple[str | None, str, bool]] = []
        for word in text.split():
            name: str | None = None
            field, sep, rest = word.partition(":")
            if sep and field.lower() in self.FIELDS and rest:
                name, word = self.FIELDS[field.lower()], rest
            glob = any(ch in word for ch in "*?[")
            self.terms.append((name, word if glob else word.lower(), glob))

    def __bool__(self) -> bool:
        return bool(self.terms)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TextFilter) and other.text.split() == self.text.split()

    def __hash__(self) -> int:
        return hash(tuple(self.text.split()))

    def matches(self, **fields: str | None) -> bool:
        """Whether every term matches one of ``fields`` (name → text)."""
        for name, word, glob in self.terms:
            values = [fields.get(name)] if name else list(fields.values())
            hit = False
            for v in values:
                if v is None:
                    continue
                hit = fnmatch.fnmatchcase(v, word) if glob else word in v.lower()
                if hit:
                    break
            if not hit:
                return False
        return True

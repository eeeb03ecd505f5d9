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

import fnmatch
import time
from collections.abc import Sequence
from typing import Any, ClassVar

from rich.text import Text
from textual.widget import Widget

from tui.bridge import Bridge

US = 1_000_000
SPARK = "▁▂▃▄▅▆▇█"


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

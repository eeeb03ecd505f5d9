"""The footer: Textual's, without its leak and without composing the same keys again.

Textual's ``Footer`` composes its keys again whenever the focus moves, even when the keys it
shows stay the same, and binds every ``FooterKey`` to its own ``compact`` reactive — a binding
that is only dropped when ``compact`` changes. So each focus change built a dozen new widgets
and left the old ones alive: over 700 dead keys after a minute of an operator tabbing around,
hundreds of megabytes after an hour, and a layout of the whole screen per focus change.
``LeanFooter`` composes only when what it shows changed, and then runs ``compact``'s watchers
once (``mutate_reactive``), which drops those of the keys it replaced.

Help (F1) and Quit are pinned to the right, beside the command palette's key, so a narrow
terminal cuts the pane's keys and never those two; below ``COMPACT_BELOW`` columns the footer
goes compact (less space between keys).
"""

from __future__ import annotations

from typing import Any, ClassVar

from textual import events
from textual.app import ComposeResult
from textual.containers import HorizontalGroup
from textual.widgets import Footer
from textual.widgets._footer import FooterKey

PINNED = frozenset({"help", "quit", "app.help", "app.quit"})  # actions kept at any width
COMPACT_BELOW = 100  # columns


class LeanFooter(Footer):
    """``Footer`` that composes only when its keys change and lets go of the old ones."""

    DEFAULT_CSS: ClassVar[str] = """
    LeanFooter #pinned { dock: right; width: auto; height: 1; padding-left: 1; }
    LeanFooter #pinned FooterKey.-command-palette { dock: none; }
    """

    _shown: Any = None

    def compose(self) -> ComposeResult:
        pinned: list[FooterKey] = []
        for widget in super().compose():
            if isinstance(widget, FooterKey) and (
                widget.action in PINNED or widget.has_class("-command-palette")
            ):
                pinned.append(widget)  # yielded last, in a group docked right
            else:
                yield widget
        if pinned:
            with HorizontalGroup(id="pinned"):
                yield from pinned

    def _on_resize(self, event: events.Resize) -> None:
        self.compact = event.size.width < COMPACT_BELOW

    def _keys(self) -> Any:
        """What the footer would show: its bindings and settings (None when unknown)."""
        try:
            active = self.screen.active_bindings
        except Exception:  # not on a screen yet
            return None
        keys = tuple(
            (
                b.key,
                b.description,
                b.action,
                enabled,
                tooltip,
                b.group.description if b.group is not None else None,
            )
            for _node, b, enabled, tooltip in active.values()
            if b.show
        )
        return keys, self.compact, self.show_command_palette

    async def recompose(self) -> None:
        keys = self._keys()
        if keys is not None and keys == self._shown and self.children:
            return
        await super().recompose()
        self._shown = keys if self.children else None
        self.mutate_reactive(Footer.compact)

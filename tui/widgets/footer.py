"""The footer: Textual's, without its leak and without composing the same keys again.

Textual's ``Footer`` composes its keys again whenever the focus moves, even when the keys it
shows stay the same, and binds every ``FooterKey`` to its own ``compact`` reactive — a binding
that is only dropped when ``compact`` changes. So each focus change built a dozen new widgets
and left the old ones alive: over 700 dead keys after a minute of an operator tabbing around,
hundreds of megabytes after an hour, and a layout of the whole screen per focus change.
``LeanFooter`` composes only when what it shows changed, and then runs ``compact``'s watchers
once (``mutate_reactive``), which drops those of the keys it replaced.
"""

from __future__ import annotations

from typing import Any

from textual.widgets import Footer


class LeanFooter(Footer):
    """``Footer`` that composes only when its keys change and lets go of the old ones."""

    _shown: Any = None

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

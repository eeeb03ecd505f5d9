"""The text filter of a pane, with the keys of a search box in k9s or lazygit.

``/`` (the pane's ``focus_filter`` action, which calls :meth:`FilterInput.summon`) or a click
puts the cursor in it; ``Tab`` passes it by, so tabbing through a pane never lands in a box that
then takes ``1``–``6`` and ``q`` as text. ``Escape`` and ``Enter`` leave it for the pane's table;
the filter stays applied.
"""

from __future__ import annotations

from typing import ClassVar

from textual import events
from textual.binding import Binding, BindingType
from textual.widgets import Input


class FilterInput(Input):
    """An ``Input`` outside the Tab order, left with ``Escape`` or ``Enter``."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "leave", "Leave filter", show=False, id="filter.leave"),
    ]

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._summoned = False

    def allow_focus(self) -> bool:
        # Not in the Tab order: focused when asked for (``/``), when clicked (a button is down
        # and the pointer is over it: the screen focuses what is clicked), or while it has the
        # focus already. A pointer merely resting over it lets Tab pass.
        if not self.can_focus:
            return False
        if self._summoned or self.has_focus:
            return True
        pressed = getattr(self.screen, "_mouse_down_offset", None) is not None
        return pressed and self.is_mouse_over

    def summon(self) -> None:
        """Put the cursor in the filter (the ``/`` key)."""
        self._summoned = True
        self.focus()

    def _on_blur(self, event: events.Blur) -> None:
        self._summoned = False
        super()._on_blur(event)

    async def action_submit(self) -> None:
        await super().action_submit()
        self.action_leave()

    def action_leave(self) -> None:
        """Give the keys back to the first table of the pane the filter belongs to."""
        for node in self.ancestors:
            if not hasattr(node, "query"):
                break
            tables = [
                t
                for t in node.query("VirtualTable, DataTable")
                if t.focusable and t.display and t is not self
            ]
            if tables:
                tables[0].focus()
                return
        self.screen.set_focus(None)

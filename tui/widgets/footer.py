"""The footer: Textual's, without its leak.

Textual's ``Footer`` binds every ``FooterKey`` it composes to its own ``compact`` reactive, and a
binding is only dropped when ``compact`` changes. The footer composes its keys again on every
focus change, so each change left a dozen dead keys (with their styles and caches) attached to
the footer: over 700 after a minute of an operator tabbing around, hundreds of megabytes after an
hour. ``mutate_reactive`` runs ``compact``'s watchers once, which drops those of closed keys.
"""

from __future__ import annotations

from textual.widgets import Footer


class LeanFooter(Footer):
    """``Footer`` that lets go of the keys it replaced."""

    async def recompose(self) -> None:
        await super().recompose()
        self.mutate_reactive(Footer.compact)

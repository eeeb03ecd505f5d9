"""Two fixes to Textual's rendering caches that kept memory alive in a long-running console.

Both are worth reporting upstream; until then the console applies them when it is imported
(:func:`apply`, idempotent). Each replaces one method with one that returns the same values.

- ``Strip.crop_extend`` and ``Strip.divide`` cache their result on the strip, and when the
  result is the strip itself (a crop to the strip's own width, a single cut at its end — the
  common case for every line of a full-width widget) the strip refers to itself through its
  cache. Such a strip, and every strip its caches hold, can then only be freed by the cyclic
  garbage collector, never when its last reference goes: every line the console renders became
  cyclic garbage, which made full collections long and, once frozen (see engine.collector),
  was never freed. The fixed methods return the strip itself without caching it.
- ``StylesCache.get_inner_outer`` is an ``lru_cache`` on a method, so its key holds the
  ``StylesCache`` itself: up to 1,024 caches of widgets long removed (footer keys,
  notifications, dialogs) stayed alive with every line they had rendered. The fixed method
  caches on the two colours only.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import lru_cache

from rich.style import Style as RichStyle
from textual._styles_cache import StylesCache
from textual.color import Color
from textual.strip import Strip
from textual.style import Style

# Textual's own methods (the fixed ones call the first two; tests compare against all three).
_crop_extend = Strip.crop_extend
_divide = Strip.divide
_get_inner_outer_textual = StylesCache.get_inner_outer


def _crop_extend_no_self(self: Strip, start: int, end: int, style: RichStyle | None) -> Strip:
    """``Strip.crop_extend`` that does not cache the strip on itself."""
    if start <= 0 and end == self.cell_length:  # extend and crop would both return ``self``
        return self
    return _crop_extend(self, start, end, style)


def _divide_no_self(self: Strip, cuts: Iterable[int]) -> Sequence[Strip]:
    """``Strip.divide`` that does not cache the strip on itself."""
    cuts = list(cuts)  # may be an iterator: read it once
    length = self.cell_length
    if [cut for cut in cuts if cut <= length] == [length]:  # one piece: the strip itself
        return [self]
    return _divide(self, cuts)


@lru_cache(1024)
def _inner_outer(base_background: Color, background: Color) -> tuple[Style, Style]:
    return Style(background=base_background + background), Style(background=base_background)


def _get_inner_outer(
    self: StylesCache, base_background: Color, background: Color
) -> tuple[Style, Style]:
    """``StylesCache.get_inner_outer``, cached on the colours only (not on ``self``)."""
    return _inner_outer(base_background, background)


def apply() -> None:
    """Install the fixed methods (once)."""
    Strip.crop_extend = _crop_extend_no_self  # type: ignore[method-assign]
    Strip.divide = _divide_no_self  # type: ignore[method-assign]
    StylesCache.get_inner_outer = _get_inner_outer  # type: ignore[assignment,method-assign]

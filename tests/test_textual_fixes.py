"""Textual's rendering caches no longer keep memory alive (tui.textual_fixes).

Each test fails on Textual's own methods: a strip that caches itself is cyclic garbage (freed
only by a full collection, or never once frozen), and ``StylesCache.get_inner_outer`` kept its
instance in an ``lru_cache`` key.
"""

from __future__ import annotations

import gc
import weakref
from collections.abc import Callable, Iterator

import pytest
from rich.segment import Segment
from rich.style import Style as RichStyle
from textual._styles_cache import StylesCache
from textual.color import Color
from textual.strip import Strip

import tui.app  # noqa: F401 - the console applies the fixes when it is imported
from tui import textual_fixes


@pytest.fixture
def no_collector() -> Iterator[None]:
    """Only reference counting frees objects inside the test."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _strip() -> Strip:
    return Strip([Segment("abc", RichStyle(bold=True)), Segment("defg")])


def _cyclic_strips(work: Callable[[Strip], object], n: int = 50) -> int:
    """How many strips ``work`` leaves as cyclic garbage over ``n`` fresh strips."""
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        for _ in range(n):
            work(_strip())
        gc.collect()
        return sum(1 for o in gc.garbage if type(o) is Strip)
    finally:
        gc.set_debug(0)
        gc.garbage.clear()


@pytest.mark.usefixtures("no_collector")
@pytest.mark.parametrize(
    "work",
    [
        lambda s: s.crop_extend(0, s.cell_length, None),  # a full-width line, not scrolled
        lambda s: s.crop_extend(-2, s.cell_length, RichStyle(italic=True)),
        lambda s: s.divide([s.cell_length]),  # the compositor's one-piece cut
        lambda s: s.divide(iter([s.cell_length, s.cell_length + 5])),
        lambda s: s.crop_extend(0, 4, None).divide([2, 4]),
    ],
    ids=["crop_extend-own-width", "crop_extend-before-start", "divide-one", "divide-iter", "mixed"],
)
def test_rendered_strips_are_freed_without_the_cyclic_collector(
    work: Callable[[Strip], object],
) -> None:
    assert _cyclic_strips(work) == 0


@pytest.mark.parametrize(
    ("start", "end"),
    [(0, 7), (-1, 7), (0, 5), (2, 7), (2, 10), (0, 12), (3, 3), (8, 12)],
)
def test_crop_extend_returns_what_textual_returns(start: int, end: int) -> None:
    pad = RichStyle(underline=True)
    fixed = _strip().crop_extend(start, end, pad)
    original = textual_fixes._crop_extend(_strip(), start, end, pad)
    assert list(fixed) == list(original)
    assert fixed.cell_length == original.cell_length


@pytest.mark.parametrize("cuts", [[7], [3, 7], [2, 5, 7], [7, 9], [9], [], [0, 7]])
def test_divide_returns_what_textual_returns(cuts: list[int]) -> None:
    fixed = _strip().divide(iter(cuts))
    original = textual_fixes._divide(_strip(), list(cuts))
    assert [list(s) for s in fixed] == [list(s) for s in original]
    assert [s.cell_length for s in fixed] == [s.cell_length for s in original]


def test_a_styles_cache_is_freed_with_its_widget() -> None:
    cache = StylesCache()
    gone = weakref.ref(cache)
    inner, outer = cache.get_inner_outer(Color(10, 20, 30), Color(200, 0, 0, 0.5))
    del cache
    gc.collect()
    assert gone() is None
    assert (inner, outer) == textual_fixes._get_inner_outer_textual(
        StylesCache(), Color(10, 20, 30), Color(200, 0, 0, 0.5)
    )

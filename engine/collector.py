"""How the cyclic garbage collector runs in iotwatch's long-lived processes.

A full collection walks every object the process holds — in a console at 10,000 events/s over
2,000 devices about 200,000 of them (the engine's windows and episodes, Textual's widgets and
caches) — with the GIL held, so the screen and the engine stop meanwhile. CPython's defaults (a
young collection every 700 allocations, a full one once ten middle ones have run and a quarter
of the old objects are new) ran one every two seconds there, 210 ms at the median and up to
330 ms (measured over five minutes in bench/console.py).

``settle()`` (live sessions, once started) collects, freezes what is alive — modules, the
console, the engine's restored state — into the permanent generation that no collection walks
again, spaces collections out (a young one every 10,000 allocations, a middle one every ten of
those, a full one every ten middle ones, about every 25 s), and after each full collection
freezes what survived it: the next one walks only what came since. Measured the same way: full
collections 86 ms at the median, no frame over 100 ms. The price: a cycle whose objects were
alive at a full collection and die later is never freed (Textual's widgets are cycles; the engine
builds none per event), a slow leak that grows with how many widgets come and go — one reason
the footer no longer composes its keys again on every focus change (tui/widgets/footer.py).
``few_collections()`` does the same for the duration of a replay and undoes it.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

LIVE = (10_000, 10, 10)
REPLAY = (200_000, 20, 100)  # a replay allocates faster, keeps nothing and has no frames


def settle(thresholds: tuple[int, int, int] = LIVE) -> None:
    """Collect, freeze what is alive, use ``thresholds`` from now on, and freeze what survives
    each full collection (process-wide)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*thresholds)
    if _freeze_survivors not in gc.callbacks:
        gc.callbacks.append(_freeze_survivors)


def _freeze_survivors(phase: str, info: dict[str, int]) -> None:
    if phase == "stop" and info.get("generation") == 2:
        gc.freeze()


@contextlib.contextmanager
def few_collections(thresholds: tuple[int, int, int] = REPLAY) -> Iterator[None]:
    """Freeze what is alive and collect rarely inside the block; restore both after it."""
    old = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(*thresholds)
    try:
        yield
    finally:
        gc.set_threshold(*old)
        gc.unfreeze()

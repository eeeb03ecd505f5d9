"""How the cyclic garbage collector runs in iotwatch's long-lived processes.

CPython's defaults (a young collection every 700 container allocations, a full one once ten
middle ones have run and a quarter of the old objects are new) suit programs whose objects die
at once or live for ever. A live session decodes 10,000 events/s whose records, event tuples and
row batches live a few hundred milliseconds: with the defaults they outlive the middle
generation's collections (several per second), reach the oldest one, and full collections — a
walk over every object, 110–200 ms with the GIL held — come every two seconds, each one a
frozen frame in the console and a stalled engine (measured in bench/console.py).

``settle()`` (live sessions, once started) collects, moves everything alive — modules, the
console, the engine's restored state — to the permanent generation that no collection walks
again, and spaces collections out: a young one every 10,000 allocations (about 3 ms), a middle
one every ten of those (about 25 ms; short-lived objects are freed by reference counting before
it comes), a full one after a hundred middle ones at the earliest. ``few_collections()`` does
the same for the duration of a replay and undoes it. Cycles are still collected, only less
often; nothing iotwatch builds per event is cyclic.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

LIVE = (10_000, 10, 100)  # bench/console.py: pauses of 3 and 25 ms, no full one in minutes
REPLAY = (200_000, 20, 100)  # a replay allocates faster, keeps nothing and has no frames


def settle(thresholds: tuple[int, int, int] = LIVE) -> None:
    """Collect, freeze what is alive, and use ``thresholds`` from now on (process-wide)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*thresholds)


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

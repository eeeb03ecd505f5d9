"""How the cyclic garbage collector runs in iotwatch's long-lived processes.

CPython's defaults (a young collection every 700 container allocations, a full one whenever a
quarter of the old objects are new) suit programs whose objects die at once or live for ever.
A live session decodes 10,000 events/s whose records, event tuples and row batches live a few
hundred milliseconds, and a console snapshots thousands of counters every second: with the
defaults these survive two young collections, reach the oldest generation, and full collections
(a walk over every object, 100–150 ms with the GIL held) come every two seconds — each one a
frozen frame and a stalled engine.

``settle()`` (live sessions, after start-up) collects once, moves everything alive — modules,
the engine's restored state, the console — to the permanent generation that no collection
walks again, and makes young collections rare enough that short-lived objects are freed by
reference counting before one runs. ``few_collections()`` does the same for the duration of a
replay and undoes it. Cycles are still collected, only less often; nothing iotwatch builds per
event is cyclic.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

LIVE = (50_000, 20, 100)  # measured in bench/console.py: no full collection in minutes
REPLAY = (200_000, 20, 100)  # a replay allocates faster and keeps nothing


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

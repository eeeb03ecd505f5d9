"""How the cyclic garbage collector runs in iotwatch's long-lived processes.

A full collection walks every object the process holds — in a console at 10,000 events/s over
2,000 devices well over 100,000 of them (the engine's windows and episodes, Textual's widgets
and render caches) — with the GIL held, so the screen and the engine stop meanwhile. CPython's
defaults (a young collection every 700 allocations, a full one once ten middle ones have run
and a quarter of the old objects are new) ran one every two seconds there, 210 ms at the median
and up to 330 ms (measured over five minutes in bench/console.py).

``settle()`` (live sessions: once the session has started; the console: once it has shown its
first data) collects, freezes what is alive — modules, the restored state, the console's
widgets and style sheet — into the permanent generation that no collection walks again, and
spaces collections out: a young one every 10,000 allocations, a middle one every ten of those,
a full one every ten middle ones at most (CPython still waits until a quarter of the old objects
are new).

It freezes once and only once: a cycle whose objects are frozen is never freed, even after its
last outside reference goes. An earlier version also froze whatever survived each full
collection, so that the next one walked only what came since; but Textual builds cycles all the
time (every widget, the style sheet's virtual nodes for component classes, a cleared LRUCache's
ring, and until tui.textual_fixes every rendered line), and whatever of them was alive at a full
collection was never freed once dropped: the console grew by about 9 MB a minute at 10,000
events/s (issue 13). Full collections now walk everything built after ``settle()``, so they are
as long as that heap is large — what tui.textual_fixes and the console's tables keep small.
``few_collections()`` freezes and collects rarely for the duration of a replay, and undoes both.

``steady_malloc()`` is about the memory beneath, glibc's malloc, in two ways. glibc gives each
thread that allocates an arena of its own, and memory freed in one is kept for it: the console's
threads — the UI loop, the engine's loop, its SQLite writer and file reads, the refresh workers
— left free memory kept in their arenas growing from 8 to 16 MB over six minutes at 10,000
events/s (mallinfo2, bench/console.py); with two arenas it stayed at about 7 MB. And it serves
a large block (128 KiB and more) with a mapping of its own, returned when freed — until one is
freed: then it raises that threshold to the freed block's size, so the next large blocks (read
buffers, batches) come from the heap, and the holes they leave between smaller blocks stay:
the engine alone kept 1.1 → 7.4 MB of free heap over nine minutes, most of its memory slope
(+0.93 MB/min); with the threshold fixed at 256 KiB it stayed at 1.1 MB (+0.50 MB/min).
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
from collections.abc import Iterator

LIVE = (10_000, 10, 10)
REPLAY = (200_000, 20, 100)  # a replay allocates faster, keeps nothing and has no frames
MALLOC_ARENAS = 2
MMAP_THRESHOLD = 256 * 1024  # bytes: larger blocks are mapped apart and returned when freed
_M_ARENA_MAX = -8  # glibc's mallopt() parameter numbers
_M_MMAP_THRESHOLD = -3


def settle(thresholds: tuple[int, int, int] = LIVE) -> None:
    """Collect, freeze what is alive and use ``thresholds`` from now on (process-wide). Call it
    once what the process keeps has been built; what is alive then should not be dropped again
    (a frozen cycle is never freed)."""
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


def steady_malloc(arenas: int = MALLOC_ARENAS, mmap_threshold: int = MMAP_THRESHOLD) -> bool:
    """Let glibc's malloc use at most ``arenas`` arenas and map every block of
    ``mmap_threshold`` bytes or more apart, a threshold that no longer moves (process-wide;
    call it before the threads start). False where there is no glibc ``mallopt`` or it
    refused either."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    limited = bool(mallopt(_M_ARENA_MAX, arenas))
    return bool(mallopt(_M_MMAP_THRESHOLD, mmap_threshold)) and limited

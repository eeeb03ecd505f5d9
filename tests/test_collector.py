"""The collector settings of long-lived processes (engine.collector)."""

from __future__ import annotations

import gc
import json
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from engine import collector


def test_settle_freezes_what_is_alive_and_makes_collections_rare() -> None:
    # In a child: settle() changes the whole process, and this one runs every other test.
    code = (
        "import gc, json; from engine import collector; keep = [[i] for i in range(1000)];"
        "before = gc.get_freeze_count(); collector.settle();"
        "print(json.dumps([before, gc.get_freeze_count(), gc.get_threshold()]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    before, after, thresholds = json.loads(out)
    assert before == 0 and after >= 1000
    assert tuple(thresholds) == collector.LIVE


def test_cycles_alive_at_a_full_collection_are_freed_once_dropped() -> None:
    """The leak of issue 13: settle() used to freeze what survived each full collection, and a
    frozen cycle is never freed. Here 3,000 cycles live through full collections, then go."""
    code = "\n".join(
        (
            "import gc, json, weakref",
            "from engine import collector",
            "collector.settle()",
            "frozen = gc.get_freeze_count()",
            "class Node: pass",
            "nodes = [Node() for _ in range(3000)]",
            "for n in nodes: n.me = n",  # each one a cycle
            "refs = [weakref.ref(n) for n in nodes]",
            "gc.collect(); gc.collect(2)",  # full collections while they are alive
            "after = gc.get_freeze_count()",
            "del nodes, n",
            "gc.collect()",
            "print(json.dumps([frozen, after, sum(r() is not None for r in refs)]))",
        )
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    frozen, after, alive = json.loads(out)
    assert after <= frozen  # nothing more is frozen after settle() (what dies leaves it)
    assert alive == 0


def test_a_settled_console_keeps_no_cycles_it_dropped(tmp_path: Path) -> None:
    """The console settled as run_console settles it, then focus changes (a new footer, new
    virtual style nodes: cycles) and refreshes with a full collection after each: only the
    footer keys shown when it settled can stay (frozen then), however many cycles."""
    out = subprocess.run(
        [sys.executable, "-m", "tests.console_gc_child", str(tmp_path), "12"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[1],
    ).stdout
    result = json.loads(out.strip().splitlines()[-1])
    assert result["frozen_after"] <= result["frozen_at_settle"]  # what dies leaves it
    assert result["dead_footer_keys"] <= result["keys_at_settle"]


def test_few_collections_is_undone_after_the_block() -> None:
    old = gc.get_threshold()
    frozen = gc.get_freeze_count()
    with collector.few_collections():
        assert gc.get_threshold() == collector.REPLAY
        assert gc.get_freeze_count() > frozen
    assert gc.get_threshold() == old
    assert gc.get_freeze_count() == 0


_LARGE_BLOCK_MAPPED = """
import ctypes, sys
from engine import collector
if sys.argv[1] == "steady":
    collector.steady_malloc()
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in (
        "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split())]
libc.mallinfo2.restype = MallInfo2
libc.free(libc.malloc(4 << 20))  # glibc's own threshold moves up to 4 MiB here
before = libc.mallinfo2().hblks
block = libc.malloc(1 << 20)
print(libc.mallinfo2().hblks - before)  # 1: the 1 MiB block got a mapping of its own
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
@pytest.mark.parametrize(("mode", "mapped"), [("default", "0"), ("steady", "1")])
def test_a_large_block_stays_mapped_apart_after_a_larger_one_was_freed(
    mode: str, mapped: str
) -> None:
    """steady_malloc: a freed large block no longer moves the threshold, so the next large block
    is mapped apart (returned whole when freed) instead of cut from the heap, where it left holes.
    The default case shows what the fix is about."""
    out = subprocess.run(
        [sys.executable, "-c", _LARGE_BLOCK_MAPPED, mode],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    assert out.strip() == mapped


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_glibc_takes_the_arena_limit_and_the_fixed_mmap_threshold() -> None:
    code = "from engine import collector; print(collector.steady_malloc())"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert out.strip() == "True"

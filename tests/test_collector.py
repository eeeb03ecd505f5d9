"""The collector settings of long-lived processes (engine.collector)."""

from __future__ import annotations

import gc
import json
import subprocess
import sys

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


def test_what_survives_a_full_collection_is_frozen_and_cycles_are_still_freed() -> None:
    code = (
        "import gc, json; from engine import collector; collector.settle();"
        "frozen = gc.get_freeze_count();"
        "keep = [[i] for i in range(5000)];"  # lives on
        "junk = [[] for _ in range(3000)]; [a.append(a) for a in junk]; del junk;"  # cycles
        "found = gc.collect(1); young = gc.get_freeze_count(); gc.collect(2);"
        "print(json.dumps([frozen, young, gc.get_freeze_count(), found]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    frozen, after_young, after_full, found = json.loads(out)
    assert after_young == frozen  # only a full collection freezes
    assert after_full >= frozen + 5000  # the survivors of the full one
    assert found >= 3000  # cycles are still collected


def test_few_collections_is_undone_after_the_block() -> None:
    old = gc.get_threshold()
    frozen = gc.get_freeze_count()
    with collector.few_collections():
        assert gc.get_threshold() == collector.REPLAY
        assert gc.get_freeze_count() > frozen
    assert gc.get_threshold() == old
    assert gc.get_freeze_count() == 0

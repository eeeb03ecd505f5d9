"""Child process of tests/test_collector.py: the console settled as ``run_console`` settles it,
then refreshes and focus changes with a full collection after each; prints what stayed.

Run as ``python -m tests.console_gc_child FOLDER CYCLES``: the collector's settings are
process-wide, so this must not run inside the test process.
"""

from __future__ import annotations

import asyncio
import gc
import json
import sys
from pathlib import Path

from textual.widgets._footer import FooterKey

from engine import collector
from tests.test_app import SIZE, append, console, d2c, make_config, now_us, process, wait_for
from tui.bridge import Bridge


def dead_footer_keys() -> int:
    """Footer keys no longer on screen, frozen ones included (they are not otherwise listed)."""
    gc.unfreeze()
    try:
        return sum(1 for o in gc.get_objects() if isinstance(o, FooterKey) and not o.is_attached)
    finally:
        gc.freeze()


async def main(folder: Path, cycles: int) -> dict[str, int]:
    bridge = Bridge(make_config(folder), str(folder / "iotwatch.db"))
    bridge.start()
    settled: dict[str, int] = {}

    def settle() -> None:
        collector.settle()
        settled["frozen"] = gc.get_freeze_count()
        settled["keys"] = len(app.query(FooterKey))

    try:
        app = console(bridge, on_first_data=settle)
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: "frozen" in settled, what="the first data")
            for i in range(cycles):
                at = now_us()
                append(folder / "hub.jsonl", [d2c("sensor-1", at)])
                append(folder / "agent.jsonl", [process("sensor-2", at, f"/tmp/x{i}")])
                # Focus moves between the filter (its own footer keys) and the tables: the footer
                # composes new keys and the style sheet builds new virtual nodes, both cycles.
                await pilot.press("slash" if i % 2 == 0 else "tab")
                done = app.refreshes
                await wait_for(pilot, lambda d=done: app.refreshes >= d + 1, what="a refresh")
                gc.collect()  # a full collection, as the thresholds run one now and then
            gc.collect()
            return {
                "frozen_at_settle": settled["frozen"],
                "keys_at_settle": settled["keys"],
                "frozen_after": gc.get_freeze_count(),
                "dead_footer_keys": dead_footer_keys(),
            }
    finally:
        bridge.stop()


if __name__ == "__main__":
    result = asyncio.run(main(Path(sys.argv[1]), int(sys.argv[2])))
    print(json.dumps(result))

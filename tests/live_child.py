"""A live session in a child process whose wall clock is read from a file (for tests that kill it).

Usage: ``python tests/live_child.py CONFIG DB CLOCK_FILE``; stops cleanly on SIGTERM.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

from engine.config import load_config
from engine.session import Session
from engine.store import Store


async def main(config: str, db: str, clock_file: str) -> int:
    path = Path(clock_file)

    def clock() -> int:
        return int(path.read_text())

    store = await Store.open(db)
    session = Session(
        load_config(config),
        store,
        clock=clock,
        poll_interval=0.02,
        commit_interval=0.05,
        tick_interval=0.02,
    )
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, session.stop)
    try:
        await session.run()
    finally:
        await store.close()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(*sys.argv[1:4])))

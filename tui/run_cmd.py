"""``iotwatch run --headless``: the live engine without the console; alert changes as JSON lines."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Callable

from engine import collector, jsonline
from engine.alert import Alert
from engine.config import Config
from engine.session import Session, SessionFailed, wall_clock
from engine.store import Store
from engine.timestamps import parse_time

DEFAULT_DB = "iotwatch.db"


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    rp = sub.add_parser("run", help="the live engine; --headless writes alert changes to stdout")
    rp.add_argument("--headless", action="store_true", help="no console: JSON lines on stdout")
    rp.add_argument("--config", metavar="F", help="iotwatch.toml (default: ./iotwatch.toml)")
    rp.add_argument(
        "--groups",
        metavar="AZURE.json",
        action="append",
        default=[],
        help="Azure deviceSecurityGroups JSON; replaces same-named groups (repeatable)",
    )
    rp.add_argument(
        "--db", metavar="F", help="the database (default: [database] path, else iotwatch.db)"
    )
    rp.add_argument(
        "--clock",
        metavar="T",
        help="evaluate as if the wall clock stood still at T (RFC 3339); for replays of past "
        "data through the live engine and for tests",
    )


def clock_from(text: str | None) -> Callable[[], int]:
    if text is None:
        return wall_clock
    frozen = parse_time(text)
    return lambda: frozen


def alert_line(change: str, alert: Alert) -> bytes:
    record = alert.to_record()
    record["event"] = change
    record["id"] = alert.id
    if alert.into is not None:
        record["into"] = alert.into
    return jsonline.dumps(record)


async def run_headless(config: Config, db: str, clock: Callable[[], int]) -> int:
    store = await Store.open(db)
    session = Session(config, store, clock=clock)
    out = sys.stdout.buffer

    def emit(changes: list[tuple[str, Alert]]) -> None:
        for change, alert in changes:
            out.write(alert_line(change, alert))
        out.flush()

    session.listeners.append(emit)
    logging.basicConfig(level=logging.WARNING, format="iotwatch: %(message)s", stream=sys.stderr)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # SIGHUP: the terminal closed
        loop.add_signal_handler(sig, session.stop)
    try:
        await session.run(started=collector.settle)
    except SessionFailed as exc:  # one line, exit status 1: never a silent stop
        print(f"iotwatch: {exc}", file=sys.stderr)
        return 1
    finally:
        await store.close()
    return 0


def run(args: argparse.Namespace, config: Config) -> int:
    db = args.db or config.db_path or DEFAULT_DB
    if not args.headless:
        from tui.app import run_console  # the console needs Textual; headless runs never load it

        return run_console(config, db)
    collector.steady_malloc()  # before the store's and the sources' threads start
    return asyncio.run(run_headless(config, db, clock_from(args.clock)))

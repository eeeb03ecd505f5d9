"""The live session in-process: files followed as they grow, the wall clock, configuration
changes (SPEC §4 live parts, §6 run)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path

import orjson

from engine.alert import Alert
from engine.config import load_config
from engine.session import Session
from engine.store import Store
from engine.timestamps import parse_time
from tests.conftest import hub_event

T = "2026-11-28T10:0"

CONFIG = """
[engine]
lateness = "PT10S"
quiet = "PT1M"

[[sources]]
type = "hub-events"
path = "logs/*.jsonl"

[devices]
"silent" = "default"

[groups.default.rules.MqttD2CMessagesNotInAllowedRange]
min = 1
max = 3
window = "PT1M"
"""


class Clock:
    """A wall clock the test moves by hand."""

    def __init__(self, start: str) -> None:
        self.now = parse_time(start)

    def __call__(self) -> int:
        return self.now


async def until(condition: Callable[[], bool | Awaitable[bool]], timeout: float = 10) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        result = condition()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("timed out")


def append(path: Path, *records: dict) -> None:
    with path.open("ab") as f:
        f.write(b"".join(orjson.dumps(r) + b"\n" for r in records))


async def start(tmp: Path, clock: Clock) -> tuple[Session, Store, list[tuple[str, Alert]]]:
    (tmp / "logs").mkdir(exist_ok=True)
    store = await Store.open(tmp / "s.db")
    session = Session(
        load_config(tmp / "iotwatch.toml"),
        store,
        clock=clock,
        poll_interval=0.02,
        commit_interval=0.02,
        tick_interval=0.02,
    )
    session.config_poll = 0.05
    heard: list[tuple[str, Alert]] = []
    session.listeners.append(heard.extend)
    await session.start()
    return session, store, heard


def alerts_in_db(tmp: Path) -> list[tuple]:
    with sqlite3.connect(tmp / "s.db") as conn:
        return conn.execute("SELECT device, start_us, counts, state FROM alerts").fetchall()


async def test_live_session_notifies_after_the_commit_that_holds_the_alert(tmp_path: Path) -> None:
    (tmp_path / "iotwatch.toml").write_text(CONFIG)
    clock = Clock(T + "0:00Z")
    session, store, heard = await start(tmp_path, clock)
    try:
        append(tmp_path / "logs" / "a.jsonl", *[hub_event(T + "0:10Z", "busy")] * 4)
        await until(lambda: bool(heard))
        change, alert = heard[0]
        assert (change, alert.device, alert.counts) == ("opened", "busy", [4])
        assert ("busy", parse_time(T + "0:00Z"), "[4]", "open") in alerts_in_db(tmp_path)
        with sqlite3.connect(tmp_path / "s.db") as conn:
            ((offset,),) = conn.execute("SELECT offset FROM streams").fetchall()
        assert offset == (tmp_path / "logs" / "a.jsonl").stat().st_size
    finally:
        await session.close()
        await store.close()


async def test_silent_declared_device_is_noticed_by_the_wall_clock(tmp_path: Path) -> None:
    (tmp_path / "iotwatch.toml").write_text(CONFIG)
    clock = Clock(T + "0:05Z")
    session, store, heard = await start(tmp_path, clock)
    try:
        append(tmp_path / "logs" / "a.jsonl", hub_event(T + "0:01Z", "busy"))
        await until(lambda: session.evaluator is not None and session.evaluator.events == 1)
        clock.now = parse_time(T + "2:30Z")  # no new data: only time passes
        await until(lambda: any(a.device == "silent" for _, a in heard))
        silent = [a for _, a in heard if a.device == "silent"][-1]
        assert (silent.start, silent.counts) == (parse_time(T + "1:00Z"), [0])
    finally:
        await session.close()
        await store.close()


async def test_changed_config_file_applies_and_an_invalid_one_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "iotwatch.toml"
    config.write_text(CONFIG)
    clock = Clock(T + "0:00Z")
    session, store, _heard = await start(tmp_path, clock)
    try:
        config.write_text(CONFIG.replace("max = 3", "max = -3"))
        await until(lambda: session.config_error is not None)
        assert "max" in session.config_error  # type: ignore[operator]
        assert (
            session.config.group("default").range_rules["MqttD2CMessagesNotInAllowedRange"].max == 3
        )
        config.write_text(CONFIG.replace("max = 3", "max = 30") + "\n")
        await until(
            lambda: (
                session.config_error is None
                and session.config.group("default")
                .range_rules["MqttD2CMessagesNotInAllowedRange"]
                .max
                == 30
            )
        )
    finally:
        await session.close()
        await store.close()

"""Checkpoints: a restart loads the evaluator's saved state and evaluates only what was committed
after it — and ends in exactly the state a full rebuild from every stored event reaches,
amendments and rule changes included. A checkpoint of another version, or a damaged one, is
never trusted: the restart rebuilds from the events instead.

The live sessions run in-process with an injected wall clock on the timeline of
tests/test_live_equals_replay.py (agents that deliver hourly aggregates hours late); a crash is
a session whose tasks stop without their final commit.
"""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import tempfile
from pathlib import Path
from typing import Any

import msgpack
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import checkpoint
from engine.config import load_config
from engine.restore import Restored, restore
from engine.session import Session
from engine.store import SCHEMA_VERSION, Store
from tests.test_live_equals_replay import (
    CLOSE,
    CONFIG,
    HOUR,
    T0,
    Clock,
    _until,
    committed_bytes,
    prepare,
    timeline,
    write_step,
)

STEPS = timeline()
# Halfway, the operator tightens a rule in the console: from the next window on.
CHANGED = CONFIG.replace('max = 30\nwindow = "PT1H"', 'max = 25\nwindow = "PT1H"')
CHANGE_AT = T0 + 3 * HOUR


async def live_until(root: Path, stop: int, crash: bool = True) -> None:
    """A live session over the timeline's steps before ``stop``, checkpointing often, with a
    rule change halfway; then a crash (no final commit), or a clean stop."""
    clock = Clock(T0)
    db = root / "live.db"
    store = await Store.open(db)
    session = Session(
        load_config(root / "iotwatch.toml"),
        store,
        clock=clock,
        poll_interval=0.005,
        commit_interval=0.005,
        tick_interval=0.005,
    )
    session.checkpoint_every = 0.05
    await session.start()
    written = committed_bytes(db) if committed_bytes(db) > 0 else 0
    try:
        for wall, records in STEPS:
            if wall >= stop:
                break
            written += write_step(root, records)
            clock.now = wall
            await _until(
                lambda total=written: (
                    committed_bytes(db) == total
                    and session.evaluator is not None
                    and session.evaluator.wall == clock.now
                )
            )
            if wall == CHANGE_AT:
                (root / "iotwatch.toml").write_text(CHANGED)
                config = load_config(root / "iotwatch.toml")
                await session.apply_config(config)
    finally:
        if crash:
            for task in session._tasks:
                task.cancel()
            await asyncio.gather(*session._tasks, return_exceptions=True)
        else:
            await session.close()
        await store.close()


async def restored(db: Path, now: int) -> tuple[Restored, list[tuple[Any, ...]]]:
    """Restore from ``db`` as a restart at ``now`` would; the alerts and counters it holds.
    Alerts the store does not hold yet have no id to keep: theirs are left out."""
    with sqlite3.connect(db) as conn:
        (stored,) = conn.execute("SELECT coalesce(max(id), 0) FROM alerts").fetchone()

    def aid(alert: Any) -> int | None:
        return alert.id if alert.id <= stored else None

    store = await Store.open(db)
    try:
        result = await restore(store, load_config(db.parent / "iotwatch.toml"))
    finally:
        await store.close()
    ev = result.evaluator
    ev.advance(now)
    alerts = sorted(
        ((aid(a), tuple(sorted(a.to_record().items(), key=str))) for a in ev.book.alerts.values()),
        key=repr,
    )
    tracks = []
    for dev in sorted(ev.devices.values(), key=lambda d: d.name):
        for rule_id, track in sorted(dev.tracks.items()):
            chain = []
            while track is not None:
                lo = track.next - 12
                chain.append(
                    (
                        track.min,
                        track.max,
                        track.first,
                        track.start,
                        track.next,
                        track.stop,
                        sorted(track.pending.items()),
                        [track.count_at(i) for i in range(max(lo, track.base), track.next)],
                        [aid(a) for a in track.alerts],
                    )
                )
                track = track.previous
            tracks.append((dev.name, dev.first, rule_id, chain))
    return result, [alerts, tracks, sorted(ev.t_first for _ in [0] if ev.t_first)]


def without_checkpoints(db: Path) -> Path:
    copy = db.parent / "rebuild" / db.name
    copy.parent.mkdir(exist_ok=True)
    shutil.copy(db.parent / "iotwatch.toml", copy.parent / "iotwatch.toml")
    with sqlite3.connect(db) as conn:
        conn.execute(f"VACUUM INTO '{copy}'")
    with sqlite3.connect(copy) as conn:
        conn.execute("DELETE FROM checkpoints")
    return copy


def checkpoints(db: Path) -> list[tuple[int, int]]:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT last_event, config FROM checkpoints").fetchall()


@settings(
    max_examples=6,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.integers(min_value=10, max_value=len(STEPS) - 1))
def test_restart_from_a_checkpoint_equals_a_full_rebuild(tmp_path: Path, kill: int) -> None:
    root = Path(tempfile.mkdtemp(prefix=f"k{kill}-", dir=tmp_path))
    prepare(root)
    asyncio.run(live_until(root, STEPS[kill][0]))
    db = root / "live.db"
    assert checkpoints(db), "the session wrote a checkpoint"
    now = STEPS[kill][0] + 60_000_000
    fast, state = asyncio.run(restored(db, now))
    full, rebuilt = asyncio.run(restored(without_checkpoints(db), now))
    assert fast.checkpoint and not full.checkpoint
    assert fast.events < full.events  # only what came after the checkpoint
    assert state == rebuilt


def test_a_restart_evaluates_only_what_came_after_the_checkpoint(tmp_path: Path) -> None:
    prepare(tmp_path)
    asyncio.run(live_until(tmp_path, CLOSE, crash=False))  # a clean stop checkpoints last
    db = tmp_path / "live.db"
    ((last_event, _config),) = checkpoints(db)
    with sqlite3.connect(db) as conn:
        (events,) = conn.execute("SELECT count(*) FROM events").fetchone()
    assert last_event == events > 0
    fast, state = asyncio.run(restored(db, CLOSE))
    assert fast.checkpoint and fast.events == 0
    full, rebuilt = asyncio.run(restored(without_checkpoints(db), CLOSE))
    assert full.events == events and state == rebuilt
    # The rule change halfway is part of both: a's windows from the change on have max 25.
    with sqlite3.connect(db) as conn:
        logged = conn.execute("SELECT last_event, at_us FROM config_log ORDER BY id").fetchall()
    assert [at for _, at in logged] == [T0, CHANGE_AT] and logged[0][0] == 0 < logged[1][0]


def _tamper(db: Path, change: Any) -> None:
    with sqlite3.connect(db) as conn:
        (blob,) = conn.execute("SELECT state FROM checkpoints").fetchone()
        conn.execute("UPDATE checkpoints SET state = ?", (change(blob),))


def _with(key: str, value: Any) -> Any:
    def change(blob: bytes) -> bytes:
        state = msgpack.unpackb(blob, raw=False, strict_map_key=False)
        state[key] = value
        return msgpack.packb(state, use_bin_type=True)

    return change


def test_a_checkpoint_of_another_version_or_damaged_is_not_trusted(tmp_path: Path) -> None:
    prepare(tmp_path)
    asyncio.run(live_until(tmp_path, T0 + 4 * HOUR))
    db = tmp_path / "live.db"
    _, reference = asyncio.run(restored(without_checkpoints(db), T0 + 4 * HOUR))
    for name, change in (
        ("contract", _with("contract", checkpoint.CONTRACT + 1)),
        ("schema", _with("schema", SCHEMA_VERSION - 1)),
        ("format", _with("format", 0)),
        ("truncated", lambda blob: blob[: len(blob) // 2]),
        ("inconsistent", _with("devices", [["a", 1, None, None, [[8, [[1, 2]]]], [], []]])),
    ):
        copy = tmp_path / name
        copy.mkdir()
        shutil.copy(tmp_path / "iotwatch.toml", copy / "iotwatch.toml")
        with sqlite3.connect(db) as conn:
            conn.execute(f"VACUUM INTO '{copy / 'live.db'}'")
        _tamper(copy / "live.db", change)
        result, state = asyncio.run(restored(copy / "live.db", T0 + 4 * HOUR))
        assert not result.checkpoint and result.why_not, name
        assert state == reference, name


def test_dump_and_load_give_back_the_same_state() -> None:
    """Every part of the state survives a round trip: tracks and their rule versions, alerts,
    allow-list episodes, stream clocks, connections and messages awaiting their protocol."""
    from engine import catalogue as c
    from engine.alert import AlertBook
    from engine.config import parse_config
    from engine.evaluator import Evaluator
    from engine.event import new_event
    from engine.watermark import StreamClock

    def event(t: int, rule: int, value: str | None = None, device: str = "a") -> Any:
        allow = c.PROCESS if rule == 0 else 0
        return new_event((t, device, "e", rule, rule == c.D2C["mqtt"], allow, value, 2, False, 0))

    config = parse_config(
        {
            "groups": {
                "default": {
                    "rules": {
                        "MqttD2CMessagesNotInAllowedRange": {"min": 1, "max": 2, "window": "PT1M"},
                        "ProcessNotAllowed": {"allow": ["ok"]},
                    }
                }
            }
        },
        "x.toml",
    )
    ev = Evaluator(config, incremental=True)
    ev.watermark.wall_lateness = {"IoT Hub": 60 * 10**6, "Agent": 60 * 10**6}
    clock = ev.add_stream("s", "hub-log")
    clock.holding = False
    t = T0
    ev.advance(t)
    ev.process(clock, [event(t + 10**6, c.D2C["mqtt"]), event(t + 2 * 10**6, 0, "/bin/bad")])
    ev.process(
        clock, [event(t + 3 * 10**6, c.D2C_UNKNOWN), event(t + 4 * 10**6, c.CONNECT, "amqp")]
    )
    ev.reconfigure(config.replace(groups={}), now=t + 30 * 10**6)  # a rule version retired
    ev.advance(t + 5 * 60 * 10**6)
    blob = checkpoint.dump(ev, {7: clock}, SCHEMA_VERSION)
    fresh = {7: StreamClock("s", ("IoT Hub",))}
    back = checkpoint.load(
        blob, config.replace(groups={}), fresh, {"a": 1}, SCHEMA_VERSION, AlertBook(live=True)
    )
    assert checkpoint.dump(back, fresh, SCHEMA_VERSION) == blob
    assert back.devices["a"].unknown and back.devices["a"].connects == [(t + 4 * 10**6, "amqp")]

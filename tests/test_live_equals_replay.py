"""SPEC §4 "Amendment", its last sentence: a live session whose events did not expire ends with
non-withdrawn alerts equal, window for window, to the alerts of ``iotwatch replay`` over its
stored events — here with agents that deliver hourly aggregates hours after the wall clock
judged their windows, in-process and across a SIGKILL and restart in the middle.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from engine.config import load_config
from engine.export import _ALERT_COLUMNS, alert_from_row
from engine.session import Session
from engine.store import Store
from engine.timestamps import US, format_time, parse_time
from tests.conftest import agent_event, hub_event, run_replay, security_message

ROOT = Path(__file__).resolve().parent.parent
T0 = parse_time("2026-11-28T08:00:00Z")
HOUR = 3600 * US
MINUTE = 60 * US
END = T0 + 6 * HOUR  # 14:00: the last event of both inputs
CLOSE = END + MINUTE  # the wall clock at the end: judges what a replay judges

CONFIG = """
[engine]
lateness = "PT1M"
horizon = "P1D"
quiet = "PT10M"

[[sources]]
type = "hub-events"
path = "hub/*.jsonl"

[[sources]]
type = "security-messages"
path = "agent/*.jsonl"

[devices]
"silent" = "default"

[groups.default.rules.ActiveConnectionsNotInAllowedRange]
min = 1
max = 30
window = "PT1H"

[groups.default.rules.MqttD2CMessagesNotInAllowedRange]
min = 1
max = 100
window = "PT15M"

[groups.default.rules.FailedLocalLoginsNotInAllowedRange]
max = 2
window = "PT1H"

[groups.default.rules.ProcessNotAllowed]
allow = ["ok"]

[groups.default.rules.LocalUserNotAllowed]
allow = ["root"]
"""

Step = tuple[int, list[tuple[str, dict[str, Any]]]]  # wall clock, (file, record) written then


def aggregate(device: str, hour: int, hits: int) -> dict[str, Any]:
    """An agent's hourly aggregate of outbound connections, timed at the hour's start."""
    item = {"Direction": "Out", "RemoteAddress": "10.0.0.1", "ExtraDetails": {"HitCount": hits}}
    t = format_time(T0 + (hour - 8) * HOUR)
    return security_message(device, agent_event("ConnectionCreate", t, item, category="Aggregated"))


def login(device: str, t: int, user: str = "root", result: str = "Success") -> dict[str, Any]:
    payload = {"UserName": user, "Result": result}
    return security_message(device, agent_event("Login", format_time(t), payload))


def timeline() -> list[Step]:
    """Six hours, 08:00-14:00, in five-minute steps of the wall clock.

    a, b, c send telemetry every step; a and b log in every seven minutes (high-priority
    events, sent at once). b's hourly connection aggregate comes right after its hour; a's come
    in a five-hour batch at 13:05 (Azure's default twin), with an aggregated /bin/bad process;
    c's trickle in hours late, each filling a window the wall clock had judged empty.
    """
    late: dict[int, list[dict[str, Any]]] = {
        13 * 60 + 5: [aggregate("a", h, 40) for h in range(8, 13)]
        + [
            security_message(
                "a",
                agent_event(
                    "ProcessCreate",
                    format_time(T0 + 2 * HOUR),
                    {"Executable": "/bin/bad", "ExtraDetails": {"HitCount": 3}},
                    category="Aggregated",
                ),
            )
        ],
        12 * 60 + 5: [aggregate("c", h, 10) for h in (9, 10, 11)],
        13 * 60 + 30: [aggregate("c", 12, 10)],
        14 * 60: [aggregate("a", 13, 40), aggregate("c", 13, 10)],
    }
    steps: list[Step] = []
    for m in range(0, 6 * 60 + 1, 5):
        wall = T0 + m * MINUTE
        minute = 8 * 60 + m
        records: list[tuple[str, dict[str, Any]]] = [
            ("hub", hub_event(format_time(wall), device)) for device in ("a", "b", "c")
        ]
        for k in range(m - 4, m + 1):
            if k >= 0 and k % 7 == 3:
                t = T0 + k * MINUTE
                records += [("agent", login("a", t)), ("agent", login("b", t))]
        if minute % 60 == 0 and m > 0:
            records.append(("agent", aggregate("b", minute // 60 - 1, 10)))
        if m == 90:
            records.append(("agent", login("b", wall - 30 * US, user="eve")))
        if m == 145:
            records += [("agent", login("b", wall - k * US, "root", "Fail")) for k in (1, 2, 3)]
        records += [("agent", msg) for msg in late.get(minute, [])]
        if m == 6 * 60:
            records.append(("agent", login("a", wall)))
        steps.append((wall, records))
    return steps


def write_step(root: Path, records: list[tuple[str, dict[str, Any]]]) -> int:
    """Append a step's records; returns the bytes written."""
    n = 0
    for name, record in records:
        data = orjson.dumps(record) + b"\n"
        with (root / name / f"{name}.jsonl").open("ab") as f:
            f.write(data)
        n += len(data)
    return n


def prepare(root: Path) -> None:
    (root / "iotwatch.toml").write_text(CONFIG)
    for name in ("hub", "agent"):
        (root / name).mkdir()
        (root / name / f"{name}.jsonl").touch()


def committed_bytes(db: Path) -> int:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            return conn.execute("SELECT coalesce(sum(offset), 0) FROM streams").fetchone()[0]
    except sqlite3.Error:
        return -1


Brief = tuple[Any, ...]


def brief(record: dict[str, Any]) -> Brief:
    measure = tuple(record["counts"]) if "counts" in record else record["occurrences"]
    return (
        record["rule"],
        record["device"],
        record.get("value"),
        record["start"],
        record["end"],
        measure,
        record["state"],
    )


def live_alerts(db: Path) -> tuple[list[Brief], dict[str, int]]:
    """The stored alerts that are not withdrawn, and how many alerts are in each state."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute(f"SELECT {_ALERT_COLUMNS} FROM alerts").fetchall()
    records = [alert_from_row(r).to_record() for r in rows]
    states: dict[str, int] = {}
    for r in records:
        states[r["state"]] = states.get(r["state"], 0) + 1
    return sorted(brief(r) for r in records if r["state"] != "withdrawn"), states


def replayed(root: Path) -> list[Brief]:
    config = load_config(root / "iotwatch.toml")
    records, summary = run_replay(
        config, [root / "hub" / "hub.jsonl", root / "agent" / "agent.jsonl"]
    )
    assert summary.expired == 0
    return sorted(brief(r) for r in records)


def amendments(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT count(*) FROM amendments").fetchone()[0]


class Clock:
    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


async def _until(condition: Any, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.01)


async def test_live_session_with_late_aggregates_ends_with_the_replay_alerts(
    tmp_path: Path,
) -> None:
    prepare(tmp_path)
    clock = Clock(T0)
    db = tmp_path / "live.db"
    store = await Store.open(db)
    session = Session(
        load_config(tmp_path / "iotwatch.toml"),
        store,
        clock=clock,
        poll_interval=0.01,
        commit_interval=0.01,
        tick_interval=0.01,
    )
    heard: list[tuple[str, Any]] = []
    session.listeners.append(heard.extend)
    await session.start()
    written = 0
    a_alert: int | None = None
    try:
        for wall, records in timeline():
            written += write_step(tmp_path, records)
            clock.now = wall
            await _until(
                lambda total=written: (
                    committed_bytes(db) == total
                    and session.evaluator is not None
                    and session.evaluator.wall == clock.now
                )
            )
            await session.commit()
            if wall == T0 + 5 * HOUR:  # 13:00: a's windows 09-12 were judged empty
                a_alert = _alert_id(db, "a")
        clock.now = CLOSE
        await _until(lambda: session.evaluator is not None and session.evaluator.wall == CLOSE)
    finally:
        await session.close()
        await store.close()
    live, states = live_alerts(db)
    assert live == await asyncio.to_thread(replayed, tmp_path)
    # The batch turned a's below-min alert into an above-max one: the same alert, amended.
    assert a_alert is not None and _alert_id(db, "a") == a_alert
    with sqlite3.connect(db) as conn:
        (amended,) = conn.execute("SELECT amended FROM alerts WHERE id = ?", (a_alert,)).fetchone()
    assert amended == 1
    assert states.get("withdrawn", 0) >= 1  # c's below-min alerts, filled hours later
    assert amendments(db) > 5
    # The headless stream's vocabulary: every change is one of these, withdrawals included.
    kinds = {kind for kind, _ in heard}
    assert kinds == {"opened", "updated", "resolved", "withdrawn"}
    withdrawn = {a.id for kind, a in heard if kind == "withdrawn"}
    assert withdrawn == {
        i for (i,) in sqlite3.connect(db).execute("SELECT id FROM alerts WHERE state = 'withdrawn'")
    }


def _alert_id(db: Path, device: str) -> int | None:
    with sqlite3.connect(db) as conn:
        row = conn.execute(
            "SELECT a.id FROM alerts a JOIN rule_types r ON r.id = a.rule"
            " WHERE a.device = ? AND r.name = 'ActiveConnectionsNotInAllowedRange'"
            " AND a.state != 'withdrawn' ORDER BY a.start_us LIMIT 1",
            (device,),
        ).fetchone()
    return row[0] if row else None


def _child(root: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "tests" / "live_child.py"),
            "iotwatch.toml",
            "live.db",
            "clock",
        ],
        cwd=root,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=(root / "child.err").open("ab"),
    )


def _wait(condition: Any, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.02)


def _steps_in(steps: list[Step], lo: int, hi: int) -> Iterator[Step]:
    return (s for s in steps if lo <= s[0] < hi)


def test_live_equals_replay_after_sigkill_and_restart_in_the_middle(tmp_path: Path) -> None:
    prepare(tmp_path)
    db = tmp_path / "live.db"
    clock_file = tmp_path / "clock"
    steps = timeline()
    written = 0

    def set_clock(now: int) -> None:  # atomically: the child reads it at any moment
        (tmp_path / "clock.new").write_text(str(now))
        os.replace(tmp_path / "clock.new", clock_file)

    def drive(lo: int, hi: int) -> None:
        nonlocal written
        for wall, records in _steps_in(steps, lo, hi):
            written += write_step(tmp_path, records)
            set_clock(wall)
            _wait(lambda total=written: committed_bytes(db) == total)
            time.sleep(0.06)  # a few ticks of the wall clock

    set_clock(T0)
    first = _child(tmp_path)
    try:
        drive(T0, T0 + 5 * HOUR + 10 * MINUTE)  # through a's batch at 13:05
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    second = _child(tmp_path)
    try:
        drive(T0 + 5 * HOUR + 10 * MINUTE, CLOSE)
        set_clock(CLOSE)
        time.sleep(0.5)
    finally:
        second.send_signal(signal.SIGTERM)
        status = second.wait(30)
    assert status == 0, (tmp_path / "child.err").read_text()
    live, _states = live_alerts(db)
    assert live == replayed(tmp_path)

"""Cross-check: range alerts recomputed with plain SQL over the stored events equal the engine's.

A seeded dataset (a few hundred devices, three streams, thousands of events, some late, declared
devices of which some are silent) is replayed into a database. Then, from the ``events`` table
alone: expired flags are recomputed per (stream, device) with a window function, windows counted
with ``GROUP BY device, time_us / size``, ``T_last`` taken per data source, and a little Python
forms runs of out-of-range windows per SPEC §4 (contract version 2).
"""

from __future__ import annotations

import random
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.conftest import config_from, run_replay, write_lines

US = 1_000_000
LATENESS_S = 60
HORIZON_S = 60
START = int(datetime(2026, 11, 28, 10, 0, 3, tzinfo=UTC).timestamp()) * US
SPAN_S = 2 * 3600
DEVICES = [f"dev-{i:03}" for i in range(300)]
DECLARED = [*DEVICES[:8], "silent-0", "silent-1", "silent-2"]

AGENT_RULES = ("ActiveConnectionsNotInAllowedRange", "FailedLocalLoginsNotInAllowedRange")
# name -> (min, max, window seconds)
RANGE_RULES: dict[str, tuple[int, int, int]] = {
    "MqttD2CMessagesNotInAllowedRange": (1, 6, 300),
    "AmqpD2CMessagesNotInAllowedRange": (0, 4, 900),
    "DirectMethodInvokesNotInAllowedRange": (1, 3, 600),
    "UnauthorizedOperationsNotInAllowedRange": (0, 1, 120),
    "ActiveConnectionsNotInAllowedRange": (1, 5, 180),
    "FailedLocalLoginsNotInAllowedRange": (0, 2, 60),
}


def config_text() -> str:
    text = f'[engine]\nlateness = "PT{LATENESS_S}S"\nhorizon = "PT{HORIZON_S}S"\nquiet = "PT10M"\n'
    text += "\n[devices]\n"
    text += "".join(f'"{d}" = "default"\n' for d in DECLARED)
    for name, (lo, hi, size) in RANGE_RULES.items():
        text += f'\n[groups.default.rules.{name}]\nmin = {lo}\nmax = {hi}\nwindow = "PT{size}S"\n'
    return text


def iso(us: int) -> str:
    return datetime.fromtimestamp(us / US, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def event_times(rng: random.Random, n: int) -> list[int]:
    """``n`` times in stream order: a clock moving forward, 20 % of events a little behind it
    (within the horizon), 4 % far behind it (expired when the device was seen near the clock)."""
    clock = START
    out = []
    step = SPAN_S * US // n
    for _ in range(n):
        clock += rng.randint(0, 2 * step)
        r = rng.random()
        if r < 0.04:
            t = clock - rng.randint(HORIZON_S + 1, 900) * US
        elif r < 0.24:
            t = clock - rng.randint(0, HORIZON_S) * US
        else:
            t = clock
        out.append(t)
    return out


def pick_device(rng: random.Random, pool: list[str]) -> str:
    """Skewed: a few busy devices, a long tail of quiet ones."""
    return pool[min(int(rng.expovariate(1 / 25)), len(pool) - 1)]


def make_inputs(tmp: Path) -> list[Path]:
    rng = random.Random(20261128)
    paths = []
    for name, pool in (("hub-1", DEVICES[:180]), ("hub-2", DEVICES[120:])):
        pool = pool[:]
        rng.shuffle(pool)
        records = []
        for t in event_times(rng, 2500):
            op = rng.choice(["d2c", "d2c", "d2c", "method", "purge"])
            rec: dict[str, Any] = {"time": iso(t), "deviceId": pick_device(rng, pool), "op": op}
            if op == "d2c":
                rec["protocol"] = rng.choice(["mqtt", "MqttWs", "Amqp", "amqpws"])
            if rng.random() < 0.1:
                rec["status"] = rng.choice([401, 401002, 403])
            if rng.random() < 0.3:
                rec["count"] = rng.randint(0, 5)
            records.append(rec)
        paths.append(write_lines(tmp / f"{name}.jsonl", records))
    pool = DEVICES[:]
    rng.shuffle(pool)
    messages = []
    times = event_times(rng, 2000)
    i = 0
    while i < len(times):
        k = rng.randint(1, 3)
        events = []
        for t in times[i : i + k]:
            if rng.random() < 0.6:
                item: dict[str, Any] = {
                    "Direction": rng.choice(["In", "Out"]),
                    "RemoteAddress": "10.0.0.1",
                }
                name = "ConnectionCreate"
            else:
                item = {"Result": rng.choice(["Fail", "Fail", "Success"]), "UserName": "u"}
                name = "Login"
            if rng.random() < 0.3:
                item["ExtraDetails"] = {"HitCount": rng.choice([2, 3, "4"])}
            events.append({"Name": name, "TimestampUTC": iso(t), "Payload": [item]})
        messages.append({"deviceId": pick_device(rng, pool), "body": {"Events": events}})
        i += k
    paths.append(write_lines(tmp / "agent.jsonl", messages))
    return paths


def episodes(
    counts: list[int], first: int, size: int, t_last: int, lo: int, hi: int
) -> list[tuple[int, int, str]]:
    """Runs of out-of-range windows as (first window, end window, state); ``counts[i]`` is the
    count of window ``first + i``, the last one being the window that contains ``t_last``."""
    out = []
    run_start = None
    for i, n in enumerate([*counts, None]):
        w = first + i
        complete = (w + 1) * size <= t_last
        is_out = n is not None and (n > hi or (complete and n < lo and w != first))
        if is_out:
            run_start = w if run_start is None else run_start
            continue
        if run_start is not None:
            state = "resolved" if n is not None and complete else "open"
            out.append((run_start, w, state))
            run_start = None
    return out


def recompute(conn: sqlite3.Connection) -> set[tuple[str, str, int, int, tuple[int, ...], str]]:
    """Range alerts (rule, device, start_us, end_us, counts, state) from the events table."""
    (t_first,) = conn.execute("SELECT MIN(time_us) FROM events WHERE expired = 0").fetchone()
    t_last = dict(
        conn.execute(
            "SELECT s.format, MAX(e.time_us) FROM events e JOIN streams s ON s.id = e.stream"
            " WHERE e.expired = 0 GROUP BY s.format"
        ).fetchall()
    )
    first: dict[str, int] = dict(
        conn.execute(
            "SELECT d.name, MIN(e.time_us) FROM events e JOIN devices d ON d.id = e.device"
            " WHERE e.expired = 0 GROUP BY d.name"
        ).fetchall()
    )
    for name in DECLARED:
        first[name] = t_first
    alerts = set()
    for rule, (lo, hi, size_s) in RANGE_RULES.items():
        size = size_s * US
        last = t_last["security-messages" if rule in AGENT_RULES else "hub-events"]
        (rule_id,) = conn.execute("SELECT id FROM rule_types WHERE name = ?", (rule,)).fetchone()
        where = "e.unauthorized = 1" if rule.startswith("Unauthorized") else "e.rule = ?"
        args = () if rule.startswith("Unauthorized") else (rule_id,)
        counts: dict[tuple[str, int], int] = {
            (dev, w): n
            for dev, w, n in conn.execute(
                f"SELECT d.name, e.time_us / {size} AS w, SUM(e.weight) FROM events e"
                f" JOIN devices d ON d.id = e.device WHERE e.expired = 0 AND {where}"
                " GROUP BY d.name, w",
                args,
            )
        }
        for dev, known in first.items():
            f = known // size
            n = [counts.get((dev, w), 0) for w in range(f, last // size + 1)]
            for w0, w1, state in episodes(n, f, size, last, lo, hi):
                run = tuple(n[w0 - f : w1 - f])
                alerts.add((rule, dev, w0 * size, w1 * size, run, state))
    return alerts


def test_range_alerts_equal_plain_sql_recomputation(tmp: Path) -> None:
    cfg = config_from(tmp, config_text())
    db = tmp / "cross.db"
    records, summary = run_replay(cfg, make_inputs(tmp), db=str(db))
    conn = sqlite3.connect(db)
    try:
        # Expired: earlier than the device's latest time so far in its stream minus the horizon.
        mismatched = conn.execute(
            "SELECT count(*) FROM (SELECT expired, time_us < COALESCE(MAX(time_us) OVER ("
            " PARTITION BY stream, device ORDER BY id"
            " ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING),"
            f" time_us) - {HORIZON_S * US} AS mine FROM events) WHERE expired != mine"
        ).fetchone()[0]
        assert mismatched == 0
        (n_events, n_expired) = conn.execute("SELECT count(*), SUM(expired) FROM events").fetchone()
        assert (summary.events, summary.expired) == (n_events, n_expired)
        assert n_events > 6000 and 20 < n_expired < n_events // 10

        expected = recompute(conn)
        rule_names = dict(conn.execute("SELECT id, name FROM rule_types"))
        stored = {
            (rule_names[r], dev, s, e, tuple(_json_list(c)), st)
            for r, dev, s, e, c, st in conn.execute(
                "SELECT rule, device, start_us, end_us, counts, state FROM alerts"
                " WHERE counts IS NOT NULL"
            )
        }
        returned = {
            (a["rule"], a["device"], _us(a["start"]), _us(a["end"]), tuple(a["counts"]), a["state"])
            for a in records
        }
        assert len(returned) == len(records)
        assert len(expected) > 500
        assert {a[5] for a in expected} == {"open", "resolved"}
        assert any(a[1].startswith("silent") for a in expected)
        assert sorted(expected - returned)[:5] == [] and sorted(returned - expected)[:5] == []
        assert stored == returned

        # The devices table agrees on when each device became known.
        t_first = conn.execute("SELECT MIN(time_us) FROM events WHERE expired = 0").fetchone()[0]
        for name, first_us in conn.execute("SELECT name, first_us FROM devices"):
            if name in DECLARED:
                assert first_us == t_first, name

        assert conn.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal"
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        conn.close()


def _json_list(text: str) -> list[int]:
    return [int(x) for x in text.strip("[]").split(",") if x.strip()]


def _us(stamp: str) -> int:
    dt = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    return int(dt.timestamp()) * US + dt.microsecond


def test_per_device_counts_group_by_window(tmp: Path) -> None:
    """A tiny hand check of the SQL window arithmetic itself: 10:04:59.999999 and 10:05:00 fall in
    different PT5M windows, and expired rows are excluded."""
    cfg = config_from(tmp, config_text())
    path = write_lines(
        tmp / "h.jsonl",
        [
            {
                "time": "2026-11-28T10:04:59.999999Z",
                "deviceId": "x",
                "op": "d2c",
                "protocol": "mqtt",
            },
            {
                "time": "2026-11-28T10:05:00Z",
                "deviceId": "x",
                "op": "d2c",
                "protocol": "mqtt",
                "count": 2,
            },
            {"time": "2026-11-28T10:01:00Z", "deviceId": "x", "op": "d2c", "protocol": "mqtt"},
        ],
    )
    db = tmp / "tiny.db"
    run_replay(cfg, [path], db=str(db))
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            f"SELECT (time_us / {300 * US}) * 300 % 3600, SUM(weight) FROM events"
            " WHERE expired = 0 GROUP BY time_us / 300000000 ORDER BY 1"
        ).fetchall()
    assert rows == [(0, 1), (300, 2)]

"""``iotwatch export``: round trips through plain sqlite3, filters, snapshot consistency while a
writer process keeps committing, the alert formats and their escaping, and the errors."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import fnmatch
import io
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

import engine.export as ex
from engine import catalogue as c
from engine.export import (
    ALERT_FIELDS,
    ExportCancelled,
    ExportError,
    ExportFilter,
    alert_from_row,
    duration_sql,
    export,
    export_async,
    rfc3339_sql,
)
from engine.simulators.board import capture
from engine.store import SCHEMA_VERSION
from engine.timestamps import format_duration, format_time, parse_time
from tests.conftest import (
    agent_event,
    config_from,
    hub_event,
    run_replay,
    security_message,
    write_lines,
)

ROOT = Path(__file__).resolve().parent.parent
US = 1_000_000
T0 = parse_time("2026-11-28T10:00:00Z")
ODD = 'odd,"dev"\nü-1'  # a device id with a comma, quotes, a newline and non-ASCII
EVIL = '/tmp/ev,il "x"\nprocé'  # a process with the same
TABLES = (
    "rule_types",
    "streams",
    "devices",
    "events",
    "quarantine",
    "console",
    "hub_records",
    "groups",
    "rules",
    "allowlist",
    "device_map",
    "alerts",
    "alert_notes",
    "amendments",
    "silences",
)
CONFIG = """
[engine]
lateness = "PT1M"
horizon = "PT30M"
quiet = "PT10M"

[devices]
"quiet-dev" = "default"
"lab-*" = "Lab"

[groups.default.rules.MqttD2CMessagesNotInAllowedRange]
min = 1
max = 3
window = "PT15M"

[groups.default.rules.UnauthorizedOperationsNotInAllowedRange]
min = 0
max = 0
window = "PT5M"

[groups.default.rules.ActiveConnectionsNotInAllowedRange]
min = 0
max = 2
window = "PT5M"

[groups.default.rules.ProcessNotAllowed]
allow = ["ok"]

[groups.lab.rules.MqttD2CMessagesNotInAllowedRange]
min = 0
max = 1
window = "PT5M"
severity = "High"

[groups.lab.rules.ProcessNotAllowed]
allow = ["sh"]
"""


def iso(us: int) -> str:
    return format_time(us)


@dataclass
class Dataset:
    db: Path
    records: list[dict[str, Any]]  # the replay's alerts (SPEC §5)


def make_inputs(tmp: Path) -> list[str]:
    rng = random.Random(20261128)
    hub: list[Any] = []
    for i in range(700):
        t = T0 + i * 10 * US + rng.randint(0, 5 * US)
        dev = rng.choice(["a", "b", "lab-1", "lab-2", ODD])
        rec = hub_event(iso(t), dev, count=rng.choice([1, 1, 2]))
        if rng.random() < 0.05:
            rec["status"] = 401
        hub.append(rec)
        if i == 400:
            hub.append("{not json")  # quarantined, in the middle of the stream
    # Expired: device a's time in this stream is two hours further, beyond the horizon.
    hub.append(hub_event(iso(T0 + 60 * US), "a"))
    lines = [orjson.dumps(r) if isinstance(r, dict) else r.encode() for r in hub]
    (tmp / "hub.jsonl").write_bytes(b"\n".join(lines) + b"\n")

    messages = []
    for minute, dev, exe in [
        (6, "a", EVIL),
        (12, "a", EVIL),
        (40, "a", EVIL),
        (50, "a", "/usr/bin/ok"),
        (20, "lab-1", "/usr/bin/python3"),
        (70, ODD, EVIL),
    ]:
        ev = agent_event("ProcessCreate", iso(T0 + minute * 60 * US), {"Executable": exe})
        messages.append(security_message(dev, ev))
    for k in range(8):
        conn = agent_event(
            "ConnectionCreate",
            iso(T0 + (30 + k) * 60 * US),
            {"Direction": "Out", "RemoteAddress": "10.0.0.1"},
            {"Direction": "In", "RemoteAddress": "10.0.0.2"},
        )
        messages.append(security_message(ODD, conn))
    write_lines(tmp / "agent.jsonl", messages)

    # Resource logs: hub-wide records (no device by design), a connect and a telemetry record
    # without protocol (pseudo rule ids, which no export view counts toward a rule).
    def log(minute: int, category: str, operation: str, **props: Any) -> dict[str, Any]:
        return {
            "time": iso(T0 + minute * 60 * US),
            "category": category,
            "operationName": operation,
            "resultType": "",
            "properties": orjson.dumps(props).decode(),
        }

    write_lines(
        tmp / "hub-log.json",
        [
            log(5, "Routes", "endpointUnhealthy", deviceId=None, endpointName="sb-1"),
            log(6, "Connections", "deviceConnect", deviceId="a", protocol="Mqtt"),
            log(7, "DeviceTelemetry", "ingress", deviceId="a"),
            log(45, "JobsOperations", "jobCompleted", jobId="j-1"),
            log(95, "TwinQueries", "query", query="SELECT * FROM devices"),
        ],
    )

    board = tmp / "board.bin"
    board.write_bytes(capture(3, T0 + 30 * 60 * US, 600, "bench-1", "rtc", faults=True))
    stamp = (T0 + 41 * 60 * US) / US  # the host time of the capture's console lines
    os.utime(board, (stamp, stamp))
    return [
        str(tmp / "hub.jsonl"),
        str(tmp / "hub-log.json"),
        str(tmp / "agent.jsonl"),
        f"serial-capture:{board}",
    ]


def add_operator_actions(db: Path) -> None:
    """Acknowledgements, notes and silences, as the console would store them."""
    with contextlib.closing(sqlite3.connect(db)) as conn, conn:
        ids = [r[0] for r in conn.execute("SELECT id FROM alerts ORDER BY state = 'open' DESC, id")]
        conn.execute("UPDATE alerts SET acknowledged_us = ? WHERE id = ?", (T0 + 3600 * US, ids[0]))
        conn.execute("UPDATE alerts SET silenced = 1 WHERE id = ?", (ids[1],))
        conn.execute(
            "UPDATE alerts SET closed_by_hand_us = ? WHERE id = ?", (T0 + 3700 * US, ids[2])
        )
        # What a live session logs when late events amend alerts (a replay amends nothing).
        conn.executemany(
            "INSERT INTO amendments (alert, at_us, window_us, count_before, count_after)"
            " VALUES (?, ?, ?, ?, ?)",
            [(i, T0 + 3600 * US, T0, 0, 4) for i in (ids[0], ids[3])],
        )
        conn.executemany(
            "INSERT INTO alert_notes (alert, at_us, text) VALUES (?, ?, ?)",
            [(i, T0 + 3600 * US, f'note "{i}", ü\nline 2') for i in ids[:4]],
        )
        conn.executemany(
            "INSERT INTO silences (rule, device, value, from_us, until_us) VALUES (?,?,?,?,?)",
            [
                (c.PROCESS, "a", EVIL, T0, T0 + 30 * 60 * US),
                (c.PROCESS, "lab-1", None, T0 + 90 * 60 * US, T0 + 100 * 60 * US),
                (c.PROCESS, "gone-device", None, T0, T0 + 10 * US),
            ],
        )


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    tmp = tmp_path_factory.mktemp("export")
    config = config_from(tmp, CONFIG)
    db = tmp / "source.db"
    records, summary = run_replay(config, make_inputs(tmp), db=str(db))
    assert summary.expired >= 1 and sum(summary.quarantined.values()) >= 2 and summary.console
    add_operator_actions(db)
    return Dataset(db, records)


def copy_db(src: Path, dst: Path) -> None:
    """Copy a database with what its WAL holds (a file copy would miss that)."""
    with (
        contextlib.closing(sqlite3.connect(src)) as a,
        contextlib.closing(sqlite3.connect(dst)) as b,
    ):
        a.backup(b)


def counts(db: Path) -> dict[str, int]:
    with sqlite3.connect(db) as conn:
        return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES}


def open_plain(path: Path) -> sqlite3.Connection:
    """The export as any SQLite client sees it: read-only, no iotwatch code involved."""
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True)


# -- the SQLite export -----------------------------------------------------------------------------


def test_round_trip_without_filters_copies_every_row(data: Dataset, tmp_path: Path) -> None:
    out = tmp_path / "all.sqlite"
    result = export(data.db, out)
    source = counts(data.db)
    assert counts(out) == source
    assert all(source[t] for t in TABLES), source  # the dataset exercises every table
    assert result.rows["events"] == source["events"]
    conn = open_plain(out)
    assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    meta = dict(conn.execute("SELECT key, value FROM meta"))
    assert meta["schema_version"] == meta["source_schema_version"] == str(SCHEMA_VERSION)
    assert meta["export_format_version"] == str(ex.EXPORT_FORMAT_VERSION)
    assert meta["filter_since"] == meta["filter_until"] == ""
    assert orjson.loads(meta["filter_devices"]) == [] == orjson.loads(meta["filter_groups"])
    parse_time(meta["exported_at"])
    # Rows are copied whole, ids included.
    src = sqlite3.connect(data.db)
    for table in (
        "events",
        "alerts",
        "devices",
        "quarantine",
        "console",
        "hub_records",
        "silences",
        "amendments",
    ):
        assert (
            conn.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall()
            == src.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall()
        )
    for view in ex.VIEWS:
        conn.execute(f"SELECT * FROM {view}").fetchall()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["all.sqlite"]  # no temp files left


def test_sqlite3_command_line_client_opens_the_export(data: Dataset, tmp_path: Path) -> None:
    client = shutil.which("sqlite3")
    if client is None:
        pytest.skip("no sqlite3 command-line client")
    out = tmp_path / "x.sqlite"
    export(data.db, out)
    run = subprocess.run(
        [client, str(out), "PRAGMA integrity_check; SELECT count(*) FROM alerts_readable;"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["ok", str(counts(data.db)["alerts"])]


def source_rows(db: Path) -> dict[str, list[tuple[Any, ...]]]:
    conn = sqlite3.connect(db)
    return {
        "devices": conn.execute("SELECT id, name, grp FROM devices").fetchall(),
        "events": conn.execute(
            "SELECT e.id, e.time_us, d.name, d.grp FROM events e JOIN devices d ON d.id = e.device"
        ).fetchall(),
        "alerts": conn.execute(
            "SELECT id, rule, device, grp, start_us, end_us FROM alerts"
        ).fetchall(),
        "silences": conn.execute("SELECT id, device, from_us, until_us FROM silences").fetchall(),
        "console": conn.execute("SELECT id, stream, time_us FROM console").fetchall(),
        "quarantine": conn.execute("SELECT id, stream FROM quarantine").fetchall(),
        "hub_records": conn.execute("SELECT id, time_us FROM hub_records").fetchall(),
        "streams": conn.execute("SELECT id, kind FROM streams").fetchall(),
        "event_streams": conn.execute(
            "SELECT DISTINCT e.stream, d.name, d.grp FROM events e JOIN devices d ON d.id = e.device"
        ).fetchall(),
        "groups": [r[0] for r in conn.execute("SELECT key FROM groups")],
    }


def quarantine_clocks(db: Path) -> dict[int, int | None]:
    """Each quarantined record's time as documented: the latest event time at its position or
    before in its stream, else the stream's earliest event time."""
    conn = sqlite3.connect(db)
    events = conn.execute("SELECT stream, pos, time_us FROM events").fetchall()
    out: dict[int, int | None] = {}
    for qid, stream, pos in conn.execute("SELECT id, stream, pos FROM quarantine"):
        before = [t for s, p, t in events if s == stream and p <= pos]
        anywhere = [t for s, _, t in events if s == stream]
        out[qid] = max(before) if before else min(anywhere, default=None)
    return out


def selected(flt: ExportFilter, name: str, grp: str | None) -> bool:
    """The documented device rule, written out independently of engine.export."""
    if flt.devices and not any(name == p or fnmatch.fnmatchcase(name, p) for p in flt.devices):
        return False
    return not flt.groups or (grp is not None and grp in {g.lower() for g in flt.groups})


def in_range(flt: ExportFilter, t: int) -> bool:
    return (flt.since is None or t >= flt.since) and (flt.until is None or t < flt.until)


FILTERS = {
    "time": ExportFilter(since=T0 + 30 * 60 * US, until=T0 + 90 * 60 * US),
    "since-only": ExportFilter(since=T0 + 100 * 60 * US),
    "device-glob": ExportFilter(devices=("lab-*",)),
    "group-any-case": ExportFilter(groups=("LAB",)),
    "odd-and-board": ExportFilter(
        since=T0 + 20 * 60 * US, devices=(ODD, "bench-?"), until=T0 + 60 * 60 * US
    ),
    "glob-chars-exact": ExportFilter(devices=("lab-[12]", "a")),
    "nothing": ExportFilter(devices=("no-such-device",)),
    "far-future": ExportFilter(since=parse_time("2030-01-01T00:00:00Z")),
}


def check_filtered(db: Path, out: Path, flt: ExportFilter) -> dict[str, set[int]]:
    """Assert that the export ``out`` of ``db`` holds exactly the rows docs/export.md promises for
    ``flt``, worked out here from the source rows; the ids kept, per table."""
    src = source_rows(db)
    conn = open_plain(out)
    assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    kept = ("devices", "events", "alerts", "silences", "console", "quarantine", "hub_records")
    got = {t: {r[0] for r in conn.execute(f"SELECT id FROM {t}")} for t in kept}

    dev_groups = {n: g for _, n, g in src["devices"]}
    want_devices = {i for i, n, g in src["devices"] if selected(flt, n, g)}
    assert got["devices"] == want_devices
    want_events = {i for i, t, n, g in src["events"] if selected(flt, n, g) and in_range(flt, t)}
    assert got["events"] == want_events
    allow_ids = {r.id for r in c.ALLOWLIST_RULES}

    def overlaps(rule: int, start: int, end: int) -> bool:
        lo = flt.since if flt.since is not None else -(2**63)
        hi = flt.until if flt.until is not None else 2**63
        return start < hi and (end > lo or (rule in allow_ids and end >= lo))

    want_alerts = {
        i
        for i, rule, dev, grp, s, e in src["alerts"]
        if overlaps(rule, s, e) and selected(flt, dev, dev_groups.get(dev, grp))
    }
    assert got["alerts"] == want_alerts
    notes = {r[0] for r in conn.execute("SELECT alert FROM alert_notes")}
    assert notes <= want_alerts
    amended = {r[0] for r in conn.execute("SELECT alert FROM amendments")}
    assert amended <= want_alerts
    want_silences = {
        i
        for i, dev, f, u in src["silences"]
        if (flt.since is None or u > flt.since)
        and (flt.until is None or f < flt.until)
        and selected(flt, dev, dev_groups.get(dev))
    }
    assert got["silences"] == want_silences

    # Console lines and quarantine: with a device filter, only those of the board streams that
    # carry events of a selected device.
    kinds = dict(src["streams"])
    boards = {
        stream
        for stream, name, grp in src["event_streams"]
        if kinds[stream] in ("serial", "capture") and selected(flt, name, grp)
    }
    want_console = {
        i
        for i, stream, t in src["console"]
        if in_range(flt, t) and (not flt.by_device or stream in boards)
    }
    assert got["console"] == want_console
    clocks = quarantine_clocks(db)
    want_quarantine = {
        i
        for i, stream in src["quarantine"]
        if (not flt.by_device or stream in boards)
        and (not flt.by_time or (clocks[i] is not None and in_range(flt, clocks[i])))
    }
    assert got["quarantine"] == want_quarantine
    # Hub-wide records belong to no device: kept by time, never under a device or group filter.
    want_hub = {i for i, t in src["hub_records"] if in_range(flt, t) and not flt.by_device}
    assert got["hub_records"] == want_hub
    # Every stream a row refers to is there, and no other.
    referenced = {
        s
        for t in ("events", "console", "quarantine", "hub_records")
        for (s,) in conn.execute(f"SELECT DISTINCT stream FROM {t}")
    }
    streams = {r[0] for r in conn.execute("SELECT id FROM streams")}
    assert streams == (referenced if flt.any else set(kinds))
    # Configuration: the group filter keeps only its groups.
    groups = {r[0] for r in conn.execute("SELECT key FROM groups")}
    assert groups == {g for g in src["groups"] if not flt.groups or g in flt.groups}
    assert {r[0] for r in conn.execute("SELECT DISTINCT grp FROM rules")} <= groups
    meta = dict(conn.execute("SELECT key, value FROM meta"))
    assert orjson.loads(meta["filter_devices"]) == list(flt.devices)
    assert orjson.loads(meta["filter_groups"]) == list(flt.groups)
    assert meta["filter_since"] == (iso(flt.since) if flt.since is not None else "")
    assert meta["filter_until"] == (iso(flt.until) if flt.until is not None else "")
    return got


@pytest.mark.parametrize("name", list(FILTERS))
def test_round_trip_with_filters(data: Dataset, tmp_path: Path, name: str) -> None:
    flt = FILTERS[name]
    out = tmp_path / f"{name}.sqlite"
    export(data.db, out, flt=flt)
    got = check_filtered(data.db, out, flt)
    if name in ("nothing", "far-future"):
        assert not got["events"] and not got["alerts"] and not got["quarantine"]
    else:
        assert got["events"] and got["alerts"]
    if name in ("time", "odd-and-board"):
        assert got["quarantine"] and got["console"]
    if name in ("device-glob", "group-any-case"):
        assert not got["quarantine"] and not got["console"]


def test_group_and_device_filters_agree(data: Dataset, tmp_path: Path) -> None:
    """``lab-*`` devices are exactly the group ``lab`` (mapped by that glob)."""
    export(data.db, tmp_path / "g.sqlite", flt=ExportFilter(groups=("Lab",)))
    export(data.db, tmp_path / "d.sqlite", flt=ExportFilter(devices=("lab-*",)))
    for table in ("devices", "events", "alerts"):
        rows = [
            open_plain(tmp_path / f).execute(f"SELECT * FROM {table}").fetchall()
            for f in ("g.sqlite", "d.sqlite")
        ]
        assert rows[0] == rows[1] and rows[0]


@pytest.mark.parametrize("scans", [ex.QUARANTINE_SCANS, 0], ids=["scans", "sort"])
def test_quarantine_follows_the_time_range_by_stream_position(
    data: Dataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scans: int
) -> None:
    """The malformed hub line sits between the events of minutes ~66 and ~67; the hub stream's
    last record is an expired event of minute 1, which must not drag the line into 0-60. Both ways
    of placing quarantined records in time agree."""
    monkeypatch.setattr(ex, "QUARANTINE_SCANS", scans)
    clocks = quarantine_clocks(data.db)
    flt = FILTERS["time"]
    export(data.db, tmp_path / "t.sqlite", flt=flt)
    kept = {r[0] for r in open_plain(tmp_path / "t.sqlite").execute("SELECT id FROM quarantine")}
    assert kept == {i for i, t in clocks.items() if t is not None and in_range(flt, t)}
    assert kept
    src = sqlite3.connect(data.db)
    ((pos,),) = src.execute(
        "SELECT q.pos FROM quarantine q JOIN streams s ON s.id = q.stream WHERE s.kind = 'file'"
    ).fetchall()
    for since, until, expected in [(60, 70, 1), (0, 60, 0), (70, 200, 0), (None, 70, 1)]:
        flt = ExportFilter(
            since=None if since is None else T0 + since * 60 * US, until=T0 + until * 60 * US
        )
        out = tmp_path / f"q{since}-{until}.sqlite"
        export(data.db, out, flt=flt)
        hub_bad = open_plain(out).execute(
            "SELECT count(*) FROM quarantine q JOIN streams s ON s.id = q.stream "
            "WHERE s.kind = 'file' AND q.pos = ?",
            (pos,),
        )
        assert hub_bad.fetchone()[0] == expected, (since, until)


def test_views_answer_the_common_questions(data: Dataset, tmp_path: Path) -> None:
    out = tmp_path / "v.sqlite"
    export(data.db, out)
    conn = open_plain(out)
    # window_counts: every window of a range alert, as the engine counted it (zero windows have
    # no row).
    windows = {
        (d, r, s): n
        for d, r, s, n in conn.execute(
            "SELECT device, rule, window_start, count FROM window_counts"
        )
    }
    checked = 0
    for rec in data.records:
        if "counts" not in rec:
            continue
        step = {"PT5M": 300, "PT15M": 900}[rec["window"]] * US
        start = parse_time(rec["start"])
        for k, n in enumerate(rec["counts"]):
            key = (rec["device"], rec["rule"], iso(start + k * step))
            assert windows.get(key, 0) == n, (key, rec)
            checked += 1
    assert checked > 20
    assert any(r.startswith("Unauthorized") for _, r, _ in windows)
    (expired,) = conn.execute("SELECT count(*) FROM events WHERE expired = 1").fetchone()
    assert expired >= 1
    # alerts_by_device_rule: one row per (device, group, rule), counting the alerts.
    by = conn.execute(
        "SELECT device, rule, alerts, open, silenced, acknowledged FROM alerts_by_device_rule"
    ).fetchall()
    assert sum(r[2] for r in by) == len(data.records)
    assert sum(r[4] for r in by) == 1 and sum(r[5] for r in by) == 1
    assert ("a", "ProcessNotAllowed") in {(d, r) for d, r, *_ in by}
    # alerts_readable: the SPEC §5 spellings.
    rows = conn.execute(
        'SELECT rule, device, start, "end", window, counts, value, occurrences, state '
        "FROM alerts_readable"
    ).fetchall()
    mine = sorted(
        (
            r["rule"],
            r["device"],
            r["start"],
            r["end"],
            r.get("window"),
            orjson.dumps(r["counts"]).decode() if "counts" in r else None,
            r.get("value"),
            r.get("occurrences"),
            r["state"],
        )
        for r in data.records
    )
    assert sorted(rows) == mine
    # events_readable: names and times spelled out.
    (t, device, rule) = conn.execute(
        "SELECT time, device, rule FROM events_readable WHERE time_us = (SELECT min(time_us) FROM events)"
    ).fetchone()
    assert parse_time(t) == conn.execute("SELECT min(time_us) FROM events").fetchone()[0]
    assert device and rule
    summary = dict(
        (r[0], r[1:]) for r in conn.execute("SELECT device, events, alerts FROM device_summary")
    )
    assert summary["quiet-dev"][0] == 0 and summary["quiet-dev"][1] >= 1
    assert conn.execute("SELECT count(*) FROM notes_readable").fetchone()[0] == 4
    assert conn.execute("SELECT count(*) FROM console_readable").fetchone()[0] > 0


def test_sql_time_and_duration_spellings_match_python() -> None:
    conn = sqlite3.connect(":memory:")
    for v in (60, 300, 900, 3600, 3660, 86400, 90061, 604800, 59):
        assert conn.execute(f"SELECT {duration_sql(str(v))}").fetchone()[0] == format_duration(v)
    for us in (0, 1, 999_999, T0, T0 + 123_456, -1, -1_500_000):
        assert conn.execute(f"SELECT {rfc3339_sql(str(us))}").fetchone()[0] == format_time(us)
    assert conn.execute(f"SELECT {rfc3339_sql('NULL')}").fetchone()[0] is None


def test_an_export_is_itself_an_iotwatch_database(data: Dataset, tmp_path: Path) -> None:
    first = tmp_path / "first.sqlite"
    export(data.db, first)
    second = tmp_path / "second.sqlite"
    export(first, second, flt=ExportFilter(devices=("a",)))
    assert counts(second)["events"] == counts(first)["events"] - sum(
        1 for _, _, n, _ in source_rows(data.db)["events"] if n != "a"
    )


def test_progress_and_cancel(
    data: Dataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ex, "CHUNK_IDS", 100)
    seen: list[tuple[str, int, int]] = []
    export(data.db, tmp_path / "p.sqlite", progress=lambda *a: seen.append(a))
    events = [(d, t) for s, d, t in seen if s == "events"]
    assert len(events) > 5 and events[-1][0] == events[-1][1]
    assert [d for d, _ in events] == sorted(d for d, _ in events)

    cancel = threading.Event()

    def stop_midway(stage: str, done: int, total: int) -> None:
        if stage == "events" and done > total // 2:
            cancel.set()

    with pytest.raises(ExportCancelled):
        export(data.db, tmp_path / "c.sqlite", progress=stop_midway, cancel=cancel)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.sqlite"]


def test_export_async_runs_in_a_thread(data: Dataset, tmp_path: Path) -> None:
    threads: set[int] = set()

    async def main() -> ex.ExportResult:
        return await export_async(
            data.db,
            tmp_path / "a.sqlite",
            flt=ExportFilter(groups=("lab",)),
            progress=lambda *a: threads.add(threading.get_ident()),
        )

    result = asyncio.run(main())
    assert result.rows["devices"] == 2
    assert threads and threading.get_ident() not in threads


# -- consistency while a writer keeps committing ---------------------------------------------------

# A writer process like a live session's: batches of N events in one transaction each, with the
# stream's committed offset in the same transaction, on the store's pragmas (store schema v1).
WRITER = textwrap.dedent(
    """
    import json, sqlite3, sys, time
    from pathlib import Path

    db, n, stop = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
    conn = sqlite3.connect(db, isolation_level=None)
    for pragma in ("journal_mode = WAL", "synchronous = NORMAL", "busy_timeout = 5000"):
        conn.execute("PRAGMA " + pragma)
    stream = conn.execute(
        "INSERT INTO streams (kind, format, name) VALUES ('file', 'hub-events', 'writer')"
    ).lastrowid
    (device,) = conn.execute("SELECT id FROM devices WHERE name = 'a'").fetchone()
    insert = (
        "INSERT INTO events (stream, pos, time_us, device, name, rule, unauthorized, allow, "
        "value, weight, expired, host_timed) VALUES (?, ?, ?, ?, 'w', 7, 0, NULL, NULL, 1, 0, 0)"
    )
    times, k, deadline = [], 0, time.monotonic() + 60
    while not stop.exists() and time.monotonic() < deadline:
        k += 1
        t = time.perf_counter()
        conn.execute("BEGIN")
        conn.executemany(insert, [(stream, k, 1_795_860_000_000_000 + k, device)] * n)
        conn.execute("UPDATE streams SET offset = ?, events = ? WHERE id = ?", (k, k * n, stream))
        conn.execute("COMMIT")
        times.append(time.perf_counter() - t)
        time.sleep(0.002)
    print(json.dumps({"batches": k, "max": max(times)}))
    """
)


def test_export_while_a_writer_commits_is_a_snapshot(data: Dataset, tmp_path: Path) -> None:
    db = tmp_path / "live.db"
    copy_db(data.db, db)
    base = counts(db)["events"]
    n = 997  # rows per batch (prime, so that a partial batch cannot pass by accident)
    stop = tmp_path / "stop"
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(db), str(n), str(stop)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while counts(db)["events"] < base + 50 * n:  # enough rows that an export takes a while
            assert writer.poll() is None, writer.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        seen = []
        for i in range(6):
            out = tmp_path / f"snap{i}.sqlite"
            flt = ExportFilter() if i % 2 == 0 else ExportFilter(devices=("a", "lab-*", "b"))
            export(db, out, flt=flt)
            conn = open_plain(out)
            batches, rows = conn.execute(
                "SELECT count(DISTINCT pos), count(*) FROM events WHERE name = 'w'"
            ).fetchone()
            assert rows == batches * n, (batches, rows)  # whole batches only
            # The stream's committed offset was written in the same transaction as its events.
            (offset,) = conn.execute("SELECT offset FROM streams WHERE name = 'writer'").fetchone()
            assert offset == batches
            if i % 2 == 0:
                (total,) = conn.execute("SELECT count(*) FROM events").fetchone()
                assert total == base + rows
            seen.append(batches)
    finally:
        stop.touch()
        try:
            stdout, stderr = writer.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            writer.kill()
            raise
    assert writer.returncode == 0, stderr
    stats = orjson.loads(stdout)
    assert min(seen) >= 50 and len(set(seen)) >= 3, seen  # it kept committing meanwhile
    assert stats["max"] < 1.0, stats  # and was never held up


# -- alert formats ---------------------------------------------------------------------------------


def export_bytes(db: Path, fmt: str, flt: ExportFilter | None = None) -> bytes:
    buf = io.BytesIO()
    export(db, buf, fmt=fmt, flt=flt)
    return buf.getvalue()


def test_jsonl_is_exactly_the_replay_records(data: Dataset) -> None:
    raw = export_bytes(data.db, "jsonl")
    records = [orjson.loads(x) for x in raw.splitlines()]
    assert records == data.records
    odd = [r for r in records if r["device"] == ODD]
    assert odd and any(r.get("value") == EVIL for r in odd)
    # One line per alert: the newline is escaped, non-ASCII is plain UTF-8.
    assert '"device":"odd,\\"dev\\"\\nü-1"'.encode() in raw


def test_alert_from_row_rebuilds_the_record(data: Dataset) -> None:
    conn = sqlite3.connect(data.db)
    rows = conn.execute(f"SELECT {ex._ALERT_COLUMNS} FROM alerts").fetchall()
    rebuilt = sorted((alert_from_row(r) for r in rows), key=lambda a: a.key)
    assert [a.to_record() for a in rebuilt] == data.records


def test_an_amended_alert_exports_as_amended(data: Dataset, tmp_path: Path) -> None:
    db = tmp_path / "amended.db"
    shutil.copy(data.db, db)
    with contextlib.closing(sqlite3.connect(db)) as conn, conn:
        (aid,) = conn.execute("SELECT min(id) FROM alerts").fetchone()
        conn.execute("UPDATE alerts SET amended = 1 WHERE id = ?", (aid,))
        row = conn.execute(f"SELECT {ex._ALERT_COLUMNS} FROM alerts WHERE id = ?", (aid,))
        record = alert_from_row(row.fetchone()).to_record()
    assert record["amended"] is True
    lines = [orjson.loads(x) for x in export_bytes(db, "jsonl").splitlines()]
    assert sum(1 for x in lines if x.get("amended")) == 1


def test_csv_fields_and_escaping(data: Dataset) -> None:
    raw = export_bytes(data.db, "csv")
    assert raw.startswith(b"rule,type,name,") and raw.endswith(b"\r\n")
    assert not raw.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8"), newline="")))
    assert tuple(rows[0]) == ALERT_FIELDS
    assert len(rows) - 1 == len(data.records)
    for row, rec in zip(rows[1:], data.records, strict=True):
        cells = dict(zip(ALERT_FIELDS, row, strict=True))
        for key in ALERT_FIELDS:
            want = rec.get(key)
            if key == "counts" and want is not None:
                assert orjson.loads(cells[key]) == want
            else:
                assert cells[key] == ("" if want is None else str(want)), key
    assert any(r[5] == ODD for r in rows[1:])
    assert any(r[14] == EVIL for r in rows[1:])
    assert b'"odd,""dev""\n\xc3\xbc-1"' in raw  # RFC 4180: quoted, quotes doubled, raw newline


def test_securityalert_shape(data: Dataset) -> None:
    lines = [orjson.loads(x) for x in export_bytes(data.db, "securityalert").splitlines()]
    assert len(lines) == len(data.records)
    required = {
        "TimeGenerated",
        "AlertName",
        "AlertSeverity",
        "AlertType",
        "CompromisedEntity",
        "Description",
        "RemediationSteps",
        "StartTime",
        "EndTime",
        "ExtendedProperties",
        "DisplayName",
        "Status",
        "SystemAlertId",
        "ProductName",
    }
    statuses = set()
    for line, rec in zip(lines, data.records, strict=True):
        assert required <= line.keys()
        assert line["AlertType"] == rec["type"] and line["AlertName"] == rec["name"]
        assert line["AlertSeverity"] == rec["severity"]
        assert line["CompromisedEntity"] == rec["device"]
        assert (line["StartTime"], line["EndTime"]) == (rec["start"], rec["end"])
        assert line["Description"] == rec["description"]
        assert orjson.loads(line["RemediationSteps"]) == [rec["remediation"]]
        props = orjson.loads(line["ExtendedProperties"])  # a JSON string, as in Log Analytics
        assert all(isinstance(v, str) for v in props.values())
        assert props["DeviceId"] == rec["device"]
        if "counts" in rec:
            assert orjson.loads(props["Counts"]) == rec["counts"]
            assert props["TimeWindow"] == rec["window"]
        else:
            assert props["Value"] == rec["value"]
            assert props["Occurrences"] == str(rec["occurrences"])
        statuses.add(line["Status"])
    assert {"New", "Resolved", "Dismissed", "InProgress"} <= statuses
    assert len({x["SystemAlertId"] for x in lines}) == len(lines)
    again = [orjson.loads(x) for x in export_bytes(data.db, "securityalert").splitlines()]
    assert [x["SystemAlertId"] for x in again] == [x["SystemAlertId"] for x in lines]


def test_alert_formats_apply_the_filters(data: Dataset) -> None:
    flt = FILTERS["odd-and-board"]
    got = [orjson.loads(x) for x in export_bytes(data.db, "jsonl", flt).splitlines()]
    assert {r["device"] for r in got} == {ODD, "bench-1"}
    want = [
        r
        for r in data.records
        if r["device"] in (ODD, "bench-1")
        and parse_time(r["start"]) < flt.until  # type: ignore[operator]
        and parse_time(r["end"]) >= flt.since  # type: ignore[operator]
    ]
    assert got == want
    rows = list(csv.reader(io.StringIO(export_bytes(data.db, "csv", flt).decode(), newline="")))
    assert [r[5] for r in rows[1:]] == [r["device"] for r in want]


# -- the command line ------------------------------------------------------------------------------


def iotwatch(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tui.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd or ROOT,
        timeout=60,
    )


def assert_one_line_error(run: subprocess.CompletedProcess[str], *words: str) -> None:
    assert run.returncode == 2, run
    assert run.stdout == ""
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("iotwatch"), run.stderr
    assert "Traceback" not in run.stderr
    for word in words:
        assert word in lines[0], lines[0]


def test_cli_export_with_filters_and_formats(data: Dataset, tmp_path: Path) -> None:
    out = tmp_path / "cli.sqlite"
    run = iotwatch(
        "export",
        "--db",
        str(data.db),
        "--out",
        str(out),
        "--since",
        "2026-11-28T10:30:00Z",
        "--until",
        "2026-11-28T11:30:00+00:00",
        "--device",
        "lab-*",
        "--group",
        "LAB",
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout == "" and "exported" in run.stderr
    api = tmp_path / "api.sqlite"
    export(data.db, api, flt=ExportFilter(T0 + 1800 * US, T0 + 5400 * US, ("lab-*",), ("lab",)))
    for table in ("events", "alerts", "devices"):
        assert (
            open_plain(out).execute(f"SELECT * FROM {table}").fetchall()
            == open_plain(api).execute(f"SELECT * FROM {table}").fetchall()
        )
    lines = iotwatch("export", "--db", str(data.db), "--out", "-", "--format", "jsonl")
    assert lines.returncode == 0, lines.stderr
    assert [orjson.loads(x) for x in lines.stdout.splitlines()] == data.records


def test_cli_finds_the_database_in_the_configuration(data: Dataset, tmp_path: Path) -> None:
    (tmp_path / "iotwatch.toml").write_text('[database]\npath = "here.db"\n')
    copy_db(data.db, tmp_path / "here.db")
    run = iotwatch("export", "--out", "x.sqlite", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert counts(tmp_path / "x.sqlite") == counts(data.db)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    run = iotwatch("export", "--out", "x.sqlite", "--config", "../iotwatch.toml", cwd=elsewhere)
    assert run.returncode == 0, run.stderr
    assert_one_line_error(iotwatch("export", "--out", "x.sqlite", cwd=elsewhere), "iotwatch.db")


def test_cli_errors_exit_2_with_one_line(data: Dataset, tmp_path: Path) -> None:
    db = str(data.db)
    assert_one_line_error(
        iotwatch("export", "--db", str(tmp_path / "nope.db"), "--out", str(tmp_path / "o")),
        "nope.db",
        "no such database",
    )
    foreign = tmp_path / "foreign.db"
    with sqlite3.connect(foreign) as conn:
        conn.execute("CREATE TABLE t (x)")
    assert_one_line_error(
        iotwatch("export", "--db", str(foreign), "--out", str(tmp_path / "o")),
        "not an iotwatch database",
    )
    text = tmp_path / "notes.txt"
    text.write_text("hello, not a database\n" * 100)
    assert_one_line_error(
        iotwatch("export", "--db", str(text), "--out", str(tmp_path / "o")),
        "not an iotwatch database",
    )
    exists = tmp_path / "exists.sqlite"
    exists.write_bytes(b"keep me")
    assert_one_line_error(
        iotwatch("export", "--db", db, "--out", str(exists)), "already exists", "--force"
    )
    assert exists.read_bytes() == b"keep me"
    forced = iotwatch("export", "--db", db, "--out", str(exists), "--force")
    assert forced.returncode == 0, forced.stderr
    assert counts(exists)["events"] == counts(data.db)["events"]
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert_one_line_error(
        iotwatch("export", "--db", db, "--out", str(blocker / "x.sqlite")), "x.sqlite"
    )
    assert_one_line_error(iotwatch("export", "--db", db, "--out", "-"), "SQLite")
    assert_one_line_error(
        iotwatch("export", "--db", db, "--out", str(tmp_path / "o"), "--since", "noon"), "--since"
    )
    assert_one_line_error(
        iotwatch(
            "export",
            "--db",
            db,
            "--out",
            str(tmp_path / "o"),
            "--since",
            "2026-11-28T11:00:00Z",
            "--until",
            "2026-11-28T10:00:00Z",
        ),
        "--since",
    )
    assert_one_line_error(
        iotwatch("export", "--db", db, "--out", str(tmp_path / "o"), "--format", "xml"), "xml"
    )
    assert_one_line_error(iotwatch("export", "--db", db, "--out", db, "--force"), "source")
    assert not (tmp_path / "o").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "a-file",
        "exists.sqlite",
        "foreign.db",
        "notes.txt",
    ]


def test_cli_unwritable_output_folder(data: Dataset, tmp_path: Path) -> None:
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        # root writes into any folder; sysfs refuses new files even to root.
        if not Path("/sys/kernel").is_dir():
            pytest.skip("running as root without sysfs")
        target = Path("/sys/iotwatch-export-test.sqlite")
    else:
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o500)
        target = locked / "x.sqlite"
    try:
        assert_one_line_error(
            iotwatch("export", "--db", str(data.db), "--out", str(target)), "cannot write"
        )
    finally:
        if target.parent != Path("/sys"):
            target.parent.chmod(0o700)
    assert not target.exists()


def test_odd_file_names_and_stdout(data: Dataset, tmp_path: Path) -> None:
    folder = tmp_path / "a b?c#d%e ü"
    folder.mkdir()
    src = folder / "src ?.db"
    copy_db(data.db, src)
    out = folder / "out #1.sqlite"
    export(src, out, flt=ExportFilter(devices=("a",)))
    assert counts(out)["devices"] == 1
    run = iotwatch("export", "--db", str(src), "--out", "-", "--format", "csv")
    assert run.returncode == 0, run.stderr
    assert run.stdout.count("\n") >= len(data.records) + 1
    assert run.stderr.strip().endswith("s") and "to stdout" in run.stderr


def test_api_errors(data: Dataset, tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="earlier"):
        ExportFilter(since=T0, until=T0)
    with pytest.raises(ExportError, match="format"):
        export(data.db, tmp_path / "x", fmt="parquet")
    newer = tmp_path / "newer.db"
    copy_db(data.db, newer)
    with sqlite3.connect(newer) as conn:
        conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(ExportError, match="newer"):
        export(newer, tmp_path / "x.sqlite")


SAMPLE = ROOT / "sample_data"


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    """The lab-bench session of sample_data/, replayed into a database."""
    if not (SAMPLE / "iotwatch.toml").exists() or not (SAMPLE / "session").is_dir():
        pytest.skip("no sample_data/ session")
    from engine.config import load_config

    db = tmp_path_factory.mktemp("sample") / "session.db"
    inputs = sorted(p for p in (SAMPLE / "session").iterdir() if p.is_file())
    records, _ = run_replay(load_config(SAMPLE / "iotwatch.toml"), inputs, db=str(db))
    return Dataset(db, records)


def test_round_trip_of_sample_data(sample: Dataset, tmp_path: Path) -> None:
    out = tmp_path / "session.sqlite"
    export(sample.db, out)
    source = counts(sample.db)
    assert counts(out) == source
    assert source["events"] > 1000 and source["alerts"] == len(sample.records)
    assert source["console"] and source["quarantine"]
    assert open_plain(out).execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    assert [orjson.loads(x) for x in export_bytes(sample.db, "jsonl").splitlines()] == (
        sample.records
    )


@pytest.mark.parametrize(
    "flt",
    [
        ExportFilter(
            since=parse_time("2026-11-28T09:30:00Z"), until=parse_time("2026-11-28T10:00:00Z")
        ),
        ExportFilter(groups=("LAB",)),
        ExportFilter(
            devices=("sensor-0*", "bench-board-1"), since=parse_time("2026-11-28T10:00:00Z")
        ),
    ],
    ids=["half-hour", "group", "devices-since"],
)
def test_round_trip_of_sample_data_with_filters(
    sample: Dataset, tmp_path: Path, flt: ExportFilter
) -> None:
    out = tmp_path / "part.sqlite"
    export(sample.db, out, flt=flt)
    got = check_filtered(sample.db, out, flt)
    assert got["events"] and got["alerts"]
    assert len(got["events"]) < counts(sample.db)["events"]


def test_pseudo_rule_events_count_toward_no_rule(data: Dataset, tmp_path: Path) -> None:
    """A connect and a telemetry record without protocol are stored with their pseudo rule ids
    (catalogue.CONNECT, D2C_UNKNOWN) and shown with no rule name; in window_counts the message
    counts under its connection's protocol (MQTT), as the engine counts it, and the connect in
    no window."""
    out = tmp_path / "p.sqlite"
    export(data.db, out)
    conn = open_plain(out)
    pseudo = conn.execute(
        "SELECT e.rule, r.event, r.rule, r.value FROM events e JOIN events_readable r ON r.id = e.id"
        " JOIN streams s ON s.id = e.stream WHERE e.rule >= 100 AND s.kind = 'file'"
        " ORDER BY e.rule"
    ).fetchall()
    assert pseudo == [
        (c.CONNECT, "Connections/deviceConnect", None, "mqtt"),
        (c.D2C_UNKNOWN, "DeviceTelemetry/ingress", None, None),
    ]
    counted = conn.execute(
        "SELECT sum(events) FROM window_counts WHERE device = 'a' AND rule = ?",
        ("MqttD2CMessagesNotInAllowedRange",),
    ).fetchone()[0]
    stored = conn.execute(
        "SELECT count(*) FROM events e JOIN devices d ON d.id = e.device"
        " WHERE d.name = 'a' AND e.rule = ? AND e.expired = 0",
        (c.D2C["mqtt"],),
    ).fetchone()[0]
    assert counted == stored + 1 and stored > 0
    assert conn.execute("SELECT count(*) FROM window_counts WHERE rule IS NULL").fetchone() == (0,)
    assert {r[0] for r in conn.execute("SELECT rule FROM event_counts")} >= {None}
    hub = conn.execute("SELECT category, operation, result FROM hub_records_readable").fetchall()
    assert hub == [
        ("Routes", "endpointUnhealthy", None),
        ("JobsOperations", "jobCompleted", None),
        ("TwinQueries", "query", None),
    ]

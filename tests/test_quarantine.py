"""SPEC §7: every kind of bad record is quarantined with its reason, stream, position and raw
bytes (first 64 KiB), counted, and skipped without changing any other count or alert.

Each case replays a clean set of inputs (hub-events, security messages, hub-log) and the same set
with one bad record inserted into one of the files, and compares the two.
"""

from __future__ import annotations

import os
import sqlite3
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgpack
import orjson
import pytest

from engine.config import Config
from engine.replay import Summary
from tests.conftest import agent_event, config_from, hub_event, run_replay, security_message

MAX_RAW = 64 * 1024
D = "2026-11-28T"
CONFIG = """
[engine]
lateness = "PT1M"
quiet = "PT10M"

[devices]
"quiet-dev" = "default"

[groups.default.rules.MqttD2CMessagesNotInAllowedRange]
min = 1
max = 2
window = "PT15M"

[groups.default.rules.DirectMethodInvokesNotInAllowedRange]
max = 1
window = "PT15M"

[groups.default.rules.ActiveConnectionsNotInAllowedRange]
max = 1
window = "PT15M"

[groups.default.rules.ProcessNotAllowed]
allow = ["ok"]
"""


def line(obj: Any) -> bytes:
    return orjson.dumps(obj)


def proc(device: str, hms: str, exe: str, **item: Any) -> dict[str, Any]:
    ev = agent_event("ProcessCreate", D + hms + "Z", {"Executable": exe, **item})
    return security_message(device, ev)


def log(hms: str, device: str, category: str, operation: str) -> dict[str, Any]:
    return {
        "time": D + hms + "Z",
        "operationName": operation,
        "category": category,
        "level": "Information",
        "resultType": "Success",
        "properties": {"deviceId": device},
    }


CLEAN: dict[str, list[bytes]] = {
    "hub-events": [
        line(r)
        for r in (
            hub_event(D + "10:05:00Z", "a"),
            hub_event(D + "10:20:00Z", "a", count=3),
            hub_event(D + "10:50:00Z", "a"),
            hub_event(D + "10:10:00Z", "a", count=50),  # late
            hub_event(D + "11:20:00Z", "b", protocol="Mqtt", count=5),
        )
    ],
    "security-messages": [
        line(r)
        for r in (
            proc("a", "10:06:00", "/bin/bad"),
            proc("a", "10:15:00", "/bin/bad", ExtraDetails={"HitCount": "4"}),
            proc("a", "10:40:00", "/usr/bin/ok"),
            security_message(
                "c",
                agent_event(
                    "ConnectionCreate",
                    D + "10:41:00Z",
                    {"Direction": "Out", "RemoteAddress": "10.0.0.1"},
                    {"Direction": "In", "RemoteAddress": "10.0.0.2"},
                ),
            ),
            proc("a", "10:00:00", "/bin/late"),  # late: still an allow-list alert
        )
    ],
    "hub-log": [
        line(r)
        for r in (
            log("10:01:00", "m", "DirectMethods", "send"),
            log("10:02:00", "m", "DirectMethods", "send"),
            log("10:03:00", "n", "Connections", "deviceConnect"),
        )
    ],
}
KINDS = tuple(CLEAN)


@dataclass(frozen=True)
class Case:
    """One bad record: which file it goes in, where, its bytes and a word its reason holds."""

    kind: str
    bad: bytes
    reason: str | None  # a lower-case word the quarantine reason must contain (None: any)
    index: int = 2  # insert before this line; -1: append as a last line without newline


GOOD_D2C = {"time": D + "10:07:00Z", "deviceId": "a", "op": "d2c", "protocol": "mqtt"}


def without(obj: dict[str, Any], key: str, **changes: Any) -> dict[str, Any]:
    return {k: v for k, v in {**obj, **changes}.items() if k != key}


def bad_event(**changes: Any) -> dict[str, Any]:
    ev = agent_event("ProcessCreate", D + "10:16:00Z", {"Executable": "/bin/evil"})
    ev.update(changes)
    return {k: v for k, v in ev.items() if v is not None}


CASES: dict[str, Case] = {
    "bad-json": Case(
        "hub-events", b'{"time": "2026-11-28T10:07:00Z", "deviceId": "a", oops}', "json"
    ),
    "not-json": Case("security-messages", b"this is not json", "json"),
    "invalid-utf8": Case(
        "hub-events",
        b'{"time": "2026-11-28T10:07:00Z", "deviceId": "\xff\xfe", "op": "d2c", '
        b'"protocol": "mqtt"}',
        "utf-8",
    ),
    "line-over-1-mib": Case(
        "hub-events",
        line({**GOOD_D2C, "pad": "x" * (1024 * 1024)}),
        "1 mib",
    ),
    "missing-device-hub": Case("hub-events", line(without(GOOD_D2C, "deviceId")), "device"),
    "missing-device-message": Case(
        "security-messages",
        line({"AgentVersion": "1", "Events": [bad_event()]}),
        "device",
    ),
    "missing-device-log": Case(
        "hub-log",
        line({**log("10:04:00", "x", "DirectMethods", "send"), "properties": {}}),
        "device",
    ),
    "missing-time-hub": Case("hub-events", line(without(GOOD_D2C, "time")), "time"),
    "missing-time-event": Case(
        "security-messages",
        line(security_message("a", bad_event(TimestampUTC=None, TimestampLocal=None))),
        "time",
    ),
    "bad-time-hub": Case("hub-events", line({**GOOD_D2C, "time": "yesterday"}), "time"),
    "bad-time-event": Case(
        "security-messages",
        line(security_message("a", bad_event(TimestampUTC="28/11/2026 10:16"))),
        "time",
    ),
    "bad-time-log": Case(
        "hub-log",
        line({**log("10:04:00", "x", "DirectMethods", "send"), "time": "2026-13-45T99:00:00Z"}),
        "time",
    ),
    "count-letters": Case("hub-events", line({**GOOD_D2C, "count": "abc"}), "count"),
    "hitcount-x": Case(
        "security-messages",
        line(proc("a", "10:16:00", "/bin/evil", ExtraDetails={"HitCount": "x"})),
        "hitcount",
    ),
    "properties-not-object": Case(
        "hub-log",
        line({**log("10:04:00", "x", "DirectMethods", "send"), "properties": 42}),
        "type",
    ),
    "payload-not-list": Case(
        "security-messages",
        line(security_message("a", bad_event(Payload={"Executable": "/bin/evil"}))),
        "payload",
    ),
    "unknown-op": Case("hub-events", line({**GOOD_D2C, "op": "reboot"}), "op"),
    "missing-protocol": Case("hub-events", line(without(GOOD_D2C, "protocol")), "protocol"),
    "truncated-last-line": Case("hub-events", b'{"time": "2026-11-28T11:2', None, index=-1),
    "unknown-format": Case("hub-events", b'{"hello": "world"}', "format", index=0),
}


def write_set(tmp: Path, bad: Case | None) -> tuple[list[Path], int]:
    """Write the three inputs (one with ``bad`` in it); return the paths and the bad position."""
    paths, pos = [], -1
    for kind in KINDS:
        lines = list(CLEAN[kind])
        data = b"".join(x + b"\n" for x in lines)
        if bad is not None and bad.kind == kind:
            if bad.index < 0:
                pos = len(data)
                data += bad.bad
            else:
                pos = sum(len(x) + 1 for x in lines[: bad.index])
                lines.insert(bad.index, bad.bad)
                data = b"".join(x + b"\n" for x in lines)
        path = tmp / f"{kind}.jsonl"
        path.write_bytes(data)
        paths.append(path)
    return paths, pos


def stored(db: Path) -> dict[str, Any]:
    """What the database holds, apart from positions: events, quarantine rows, stream counts."""
    with sqlite3.connect(db) as conn:
        events = Counter(
            conn.execute(
                "SELECT s.name, e.time_us, d.name, e.name, e.rule, e.unauthorized, e.allow, e.value,"
                " e.weight, e.expired FROM events e JOIN devices d ON d.id = e.device"
                " JOIN streams s ON s.id = e.stream"
            ).fetchall()
        )
        quarantine = conn.execute(
            "SELECT s.name, q.pos, q.reason, q.raw FROM quarantine q"
            " JOIN streams s ON s.id = q.stream ORDER BY q.id"
        ).fetchall()
        streams = {
            name: (events_n, late, quarantined)
            for name, events_n, late, quarantined in conn.execute(
                "SELECT name, events, expired, quarantined FROM streams"
            )
        }
        alerts = conn.execute("SELECT count(*) FROM alerts").fetchone()[0]
    return {"events": events, "quarantine": quarantine, "streams": streams, "alerts": alerts}


def replay(
    config: Config, paths: list[Path] | list[str], db: Path
) -> tuple[list[dict], Summary, dict]:
    alerts, summary = run_replay(config, paths, db=str(db))
    return alerts, summary, stored(db)


def assert_only_quarantine_differs(
    clean: tuple[list[dict], Summary, dict], bad: tuple[list[dict], Summary, dict], n: int = 1
) -> None:
    """``bad`` equals ``clean`` but for ``n`` quarantined records."""
    c_alerts, c_sum, c_db = clean
    b_alerts, b_sum, b_db = bad
    assert b_alerts == c_alerts
    assert (b_sum.events, b_sum.expired, b_sum.alerts) == (
        c_sum.events,
        c_sum.expired,
        c_sum.alerts,
    )
    assert sum(c_sum.quarantined.values()) == 0
    assert sum(b_sum.quarantined.values()) == n
    assert b_sum.records == c_sum.records + n  # a bad record is a record read
    assert b_db["events"] == c_db["events"]
    assert b_db["alerts"] == c_db["alerts"]
    assert c_db["quarantine"] == []
    assert len(b_db["quarantine"]) == n


@pytest.mark.parametrize("name", list(CASES))
def test_bad_record_is_quarantined_and_changes_nothing_else(tmp: Path, name: str) -> None:
    case = CASES[name]
    config = config_from(tmp, CONFIG)
    (tmp / "clean").mkdir()
    (tmp / "bad").mkdir()
    clean_paths, _ = write_set(tmp / "clean", None)
    bad_paths, pos = write_set(tmp / "bad", case)
    clean = replay(config, clean_paths, tmp / "clean.db")
    bad = replay(config, bad_paths, tmp / "bad.db")
    # Streams are named by path: compare them by file name.
    for result in (clean, bad):
        result[2]["events"] = Counter(
            {(Path(k[0]).name, *k[1:]): v for k, v in result[2]["events"].items()}
        )
    assert_only_quarantine_differs(clean, bad)
    ((stream, q_pos, reason, raw),) = bad[2]["quarantine"]
    assert stream == str(tmp / "bad" / f"{case.kind}.jsonl")
    assert q_pos == pos
    assert reason
    if case.reason is not None:
        assert case.reason in reason.lower(), reason
    assert bytes(raw) == case.bad[:MAX_RAW]
    assert len(raw) <= MAX_RAW
    (summary_reason,) = bad[1].quarantined
    assert bad[1].quarantined[summary_reason] == 1
    # The stream that held the bad record counts it; the others count nothing.
    for path, (_, _, quarantined) in bad[2]["streams"].items():
        assert quarantined == (1 if Path(path).name == f"{case.kind}.jsonl" else 0), path


def test_bad_record_in_records_batch_keeps_the_others(tmp: Path) -> None:
    """An Event Hubs ``{"records": [...]}`` line with one bad record: the good ones count."""
    config = config_from(tmp, CONFIG)
    good = [
        log("10:01:00", "m", "DirectMethods", "send"),
        log("10:02:00", "m", "DirectMethods", "send"),
    ]
    broken = {**log("10:01:30", "m", "DirectMethods", "send"), "properties": {}}
    clean_path = tmp / "clean.json"
    clean_path.write_bytes(line({"records": good}) + b"\n")
    bad_path = tmp / "bad.json"
    bad_line = line({"records": [good[0], broken, good[1]]})
    bad_path.write_bytes(bad_line + b"\n")
    clean = run_replay(config, [clean_path])
    db = tmp / "batch.db"
    bad = run_replay(config, [bad_path], db=str(db))
    assert bad[0] == clean[0] and bad[0]
    assert (bad[1].events, sum(bad[1].quarantined.values())) == (2, 1)
    with sqlite3.connect(db) as conn:
        ((pos, reason, raw),) = conn.execute("SELECT pos, reason, raw FROM quarantine").fetchall()
    assert pos == 0 and "device" in reason.lower() and bytes(raw) == bad_line


def test_bad_event_in_message_keeps_the_others(tmp: Path) -> None:
    """A message with one broken event: its other events are kept and counted."""
    config = config_from(tmp, CONFIG)
    ok_event = agent_event("ProcessCreate", D + "10:06:00Z", {"Executable": "/bin/bad"})
    broken = agent_event(
        "ProcessCreate",
        D + "10:07:00Z",
        {"Executable": "/bin/x", "ExtraDetails": {"HitCount": "x"}},
    )
    clean_path = tmp / "clean.jsonl"
    clean_path.write_bytes(line(security_message("a", ok_event)) + b"\n")
    bad_path = tmp / "bad.jsonl"
    bad_path.write_bytes(line(security_message("a", broken, ok_event)) + b"\n")
    clean = run_replay(config, [clean_path])
    bad = run_replay(config, [bad_path])
    assert bad[0] == clean[0] and bad[0]
    assert (bad[1].events, sum(bad[1].quarantined.values())) == (1, 1)


# --- serial captures --------------------------------------------------------------------------


def frame_message(hms: str, *events: dict[str, Any]) -> dict[str, Any]:
    return {
        "AgentVersion": "6.4.1.0",
        "AgentId": "x",
        "MessageSchemaVersion": "1.0",
        "DeviceId": "board",
        "Events": list(events),
    }


def write_capture(path: Path, parts: list[bytes]) -> None:
    """Write a capture and set its mtime (the host time that stands in for a missing board time)
    to a fixed moment after the test day, so that board times are kept."""
    path.write_bytes(b"".join(parts))
    stamp = datetime(2026, 11, 28, 12, 0, tzinfo=UTC).timestamp()
    os.utime(path, (stamp, stamp))


@pytest.mark.parametrize(
    "payload",
    [b"\xc1", b"\x92\x01", msgpack.packb([1, 2, 3])],
    ids=["never-used-byte", "truncated-array", "not-a-map"],
)
def test_serial_frame_with_good_crc_but_bad_msgpack_is_quarantined(
    tmp: Path, payload: bytes
) -> None:
    serial = pytest.importorskip("engine.formats.serial")
    config = config_from(tmp, CONFIG)
    ev1 = agent_event("ProcessCreate", D + "10:05:00Z", {"Executable": "/bin/bad"})
    ev2 = agent_event(
        "ConnectionCreate",
        D + "10:06:00Z",
        {"Direction": "Out", "RemoteAddress": "10.0.0.1"},
        {"Direction": "Out", "RemoteAddress": "10.0.0.2"},
    )
    head = [b"booting\r\n", serial.encode_frame(frame_message("10:05", ev1)), b"tick\r\n"]
    tail = [serial.encode_frame(frame_message("10:06", ev2)), b"tock\r\n"]
    bad_frame = serial.encode_payload(payload)
    write_capture(tmp / "clean.bin", head + tail)
    write_capture(tmp / "bad.bin", [*head, bad_frame, *tail])
    pos = len(b"".join(head)) + 1  # the chunk starts after the frame's leading 0x00
    clean = replay(config, [f"serial-capture:{tmp / 'clean.bin'}"], tmp / "clean.db")
    bad = replay(config, [f"serial-capture:{tmp / 'bad.bin'}"], tmp / "bad.db")
    for result in (clean, bad):
        result[2]["events"] = Counter({k[1:]: v for k, v in result[2]["events"].items()})
    assert clean[0], "the clean capture raises alerts"
    assert_only_quarantine_differs(clean, bad)
    assert bad[1].console == clean[1].console
    ((stream, q_pos, reason, raw),) = bad[2]["quarantine"]
    assert stream == str(tmp / "bad.bin")
    assert q_pos == pos
    assert "msgpack" in reason.lower() or "messagepack" in reason.lower(), reason
    # The raw bytes of the frame as it was on the wire (between its 0x00 delimiters).
    assert bytes(raw) == bad_frame[1:-1]

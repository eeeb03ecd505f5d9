"""Poison records (SPEC §7): a record that would make a decoder raise — a value nested deeper than
Python's recursion allows, at any key — is quarantined with its reason and the stream goes on with
the next record, in replay and live, for every format (serial frames included).

Each replay case inserts one poison record into the clean inputs of ``test_quarantine`` and checks
that only the quarantine differs.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import msgpack
import orjson
import pytest

from engine.formats.serial import encode_frame, encode_payload
from tests.conftest import agent_event, config_from, hub_event, security_message
from tests.test_quarantine import (
    CONFIG,
    GOOD_D2C,
    Case,
    D,
    assert_only_quarantine_differs,
    bad_event,
    frame_message,
    log,
    replay,
    write_capture,
    write_set,
)

DEPTH = 990  # orjson reads up to 1024 levels; Python's repr gives up near 1000
MARK = "\x00DEEP"


def deep_json(depth: int = DEPTH) -> bytes:
    return b"[" * depth + b"]" * depth


def poison_line(record: dict[str, Any], depth: int = DEPTH) -> bytes:
    """``record`` as a JSON line, with the value ``MARK`` replaced by a ``depth``-deep array."""
    text = orjson.dumps(record)
    marker = orjson.dumps(MARK)
    assert text.count(marker) == 1
    return text.replace(marker, deep_json(depth))


def connection(device: str, address: Any, hms: str = "10:16:00") -> dict[str, Any]:
    item = {"Direction": "Out", "RemoteAddress": address}
    return security_message(device, agent_event("ConnectionCreate", D + hms + "Z", item))


def login(device: str, user: Any) -> dict[str, Any]:
    item = {"Result": "Success", "UserName": user}
    return security_message(device, agent_event("Login", D + "10:16:00Z", item))


def assert_poison_is_quarantined(tmp: Path, kind: str, bad: bytes, reason: str) -> None:
    config = config_from(tmp, CONFIG)
    (tmp / "clean").mkdir()
    (tmp / "bad").mkdir()
    clean_paths, _ = write_set(tmp / "clean", None)
    bad_paths, pos = write_set(tmp / "bad", Case(kind, bad, None))
    clean = replay(config, clean_paths, tmp / "clean.db")
    result = replay(config, bad_paths, tmp / "bad.db")
    for r in (clean, result):
        r[2]["events"] = {(Path(k[0]).name, *k[1:]): v for k, v in r[2]["events"].items()}
    assert_only_quarantine_differs(clean, result)
    ((_, q_pos, q_reason, raw),) = result[2]["quarantine"]
    assert (q_pos, bytes(raw)) == (pos, bad)
    assert reason in q_reason, q_reason


def test_deeply_nested_remote_address_is_quarantined_not_fatal(tmp: Path) -> None:
    bad = poison_line(connection("a", MARK))
    assert_poison_is_quarantined(tmp, "security-messages", bad, "RemoteAddress")


POISON: dict[str, tuple[str, dict[str, Any], str]] = {
    "hub-events-time": ("hub-events", {**GOOD_D2C, "time": MARK}, "time"),
    "hub-events-count": ("hub-events", {**GOOD_D2C, "count": MARK}, "count"),
    "hub-events-protocol": ("hub-events", {**GOOD_D2C, "protocol": MARK}, "protocol"),
    "hub-events-op": ("hub-events", {**GOOD_D2C, "op": MARK}, "op"),
    "hub-events-device": ("hub-events", {**GOOD_D2C, "deviceId": MARK}, "deviceId"),
    "hub-events-module": ("hub-events", {**GOOD_D2C, "moduleId": MARK}, "moduleId"),
    "user-name": ("security-messages", login("a", MARK), "UserName"),
    "event-time": (
        "security-messages",
        security_message("a", bad_event(TimestampUTC=MARK)),
        "TimestampUTC",
    ),
    "hit-count": (
        "security-messages",
        security_message(
            "a",
            bad_event(Payload=[{"Executable": "/bin/x", "ExtraDetails": {"HitCount": MARK}}]),
        ),
        "HitCount",
    ),
    "executable": (
        "security-messages",
        security_message("a", bad_event(Payload=[{"Executable": MARK}])),
        "Executable",
    ),
    "events": ("security-messages", {"deviceId": "a", "body": {"Events": MARK}}, "event"),
    "envelope-device": (
        "security-messages",
        {"deviceId": MARK, "body": {"Events": [bad_event()]}},
        "device",
    ),
    "hub-log-time": (
        "hub-log",
        {**log("10:04:00", "x", "DirectMethods", "send"), "time": MARK},
        "time",
    ),
    "hub-log-device": (
        "hub-log",
        {**log("10:04:00", "x", "DirectMethods", "send"), "properties": {"deviceId": MARK}},
        "deviceId",
    ),
    "hub-log-category": (
        "hub-log",
        {**log("10:04:00", "x", "DirectMethods", "send"), "category": MARK},
        "category",
    ),
}


@pytest.mark.parametrize("name", list(POISON))
def test_deeply_nested_value_at_any_key_is_quarantined_not_fatal(tmp: Path, name: str) -> None:
    kind, record, reason = POISON[name]
    assert_poison_is_quarantined(tmp, kind, poison_line(record), reason)


@pytest.mark.parametrize(
    "kind,record",
    [
        ("hub-events", hub_event(D + "10:07:00Z", "z", status=MARK)),
        ("hub-log", {**log("10:04:00", "z", "DirectMethods", "send"), "resultType": MARK}),
        (
            "hub-log",
            {
                **log("10:04:00", "z", "DirectMethods", "send"),
                "properties": {"deviceId": "z", "statusCode": MARK},
            },
        ),
        (
            "hub-log",
            {
                **log("10:04:00", "z", "DeviceTelemetry", "ingress"),
                "properties": {"deviceId": "z", "protocol": MARK},
            },
        ),
    ],
    ids=["hub-events-status", "hub-log-result", "hub-log-status", "hub-log-protocol"],
)
def test_deeply_nested_optional_value_is_ignored_not_fatal(
    tmp: Path, kind: str, record: dict[str, Any]
) -> None:
    """An optional field that holds no status or protocol is ignored, as any other odd value."""
    config = config_from(tmp, CONFIG)
    path = tmp / "in.jsonl"
    good = {**record, "time": D + "10:08:00Z"}
    path.write_bytes(poison_line(record) + b"\n" + orjson.dumps(good) + b"\n")
    _, summary, db = replay(config, [f"{kind}:{path}"], tmp / "r.db")
    assert (summary.records, summary.events, sum(summary.quarantined.values())) == (2, 2, 0)
    assert {k[2] for k in db["events"]} == {"z"}


def test_json_nested_beyond_the_parser_limit_is_bad_json(tmp: Path) -> None:
    bad = poison_line(connection("a", MARK), depth=5000)
    assert_poison_is_quarantined(tmp, "security-messages", bad, "bad JSON")


def test_poison_records_end_replay_with_exit_0_and_a_summary(tmp: Path) -> None:
    """The command line: every poison record of every format quarantined, the good records after
    it counted, status 0, no traceback."""
    hub = tmp / "hub.jsonl"
    hub.write_bytes(
        b"".join(
            poison_line(rec) + b"\n" for kind, rec, _ in POISON.values() if kind == "hub-events"
        )
        + orjson.dumps(GOOD_D2C)
        + b"\n"
    )
    agent = tmp / "agent.jsonl"
    agent.write_bytes(
        poison_line(connection("a", MARK))
        + b"\n"
        + b"".join(
            poison_line(rec) + b"\n"
            for kind, rec, _ in POISON.values()
            if kind == "security-messages"
        )
        + orjson.dumps(connection("a", "10.0.0.1"))
        + b"\n"
    )
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "tui.cli",
            "replay",
            "--db",
            str(tmp / "r.db"),
            str(hub),
            str(agent),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert "Traceback" not in run.stderr
    n_hub = sum(1 for kind, _, _ in POISON.values() if kind == "hub-events")
    n_agent = 1 + sum(1 for kind, _, _ in POISON.values() if kind == "security-messages")
    first = run.stderr.splitlines()[0]
    assert first.startswith(f"records {n_hub + n_agent + 2}, events 2, "), first
    assert f"quarantined {n_hub + n_agent}," in first
    with sqlite3.connect(tmp / "r.db") as conn:
        assert conn.execute("SELECT count(*) FROM quarantine").fetchone()[0] == n_hub + n_agent


# --- serial frames ----------------------------------------------------------------------------


def poison_frame(message: dict[str, Any], depth: int = DEPTH) -> bytes:
    """A frame (valid COBS and CRC) whose MessagePack holds a ``depth``-deep array at ``MARK``."""
    packed = msgpack.packb(message, use_bin_type=True)
    marker = msgpack.packb(MARK, use_bin_type=True)
    assert packed.count(marker) == 1
    return encode_payload(packed.replace(marker, b"\x91" * depth + b"\xc0"))


@pytest.mark.parametrize("depth", [DEPTH, 5000], ids=["deep", "beyond-msgpack"])
@pytest.mark.parametrize("key", ["RemoteAddress", "TimestampUTC", "DeviceId", "Events"])
def test_deeply_nested_value_in_a_serial_frame_is_quarantined_not_fatal(
    tmp: Path, key: str, depth: int
) -> None:
    config = config_from(tmp, CONFIG)
    ok = agent_event("ProcessCreate", D + "10:05:00Z", {"Executable": "/bin/bad"})
    conn = agent_event(
        "ConnectionCreate", D + "10:06:00Z", {"Direction": "Out", "RemoteAddress": "10.0.0.1"}
    )
    if key == "RemoteAddress":
        conn["Payload"][0]["RemoteAddress"] = MARK
        message = frame_message("10:06", conn)
    elif key == "TimestampUTC":
        conn["TimestampUTC"] = MARK
        message = frame_message("10:06", conn)
    else:
        message = {**frame_message("10:06", conn), key: MARK}
    head = [b"booting\r\n", encode_frame(frame_message("10:05", ok)), b"tick\r\n"]
    tail = [encode_frame(frame_message("10:07", ok)), b"tock\r\n"]
    bad = poison_frame(message, depth)
    write_capture(tmp / "clean.bin", head + tail)
    write_capture(tmp / "bad.bin", [*head, bad, *tail])
    clean = replay(config, [f"serial-capture:{tmp / 'clean.bin'}"], tmp / "clean.db")
    result = replay(config, [f"serial-capture:{tmp / 'bad.bin'}"], tmp / "bad.db")
    for r in (clean, result):
        r[2]["events"] = {k[1:]: v for k, v in r[2]["events"].items()}
    if key in ("TimestampUTC", "DeviceId") and depth == DEPTH:
        # A board time that is no string makes the event host-timed, a DeviceId that is no
        # string leaves the frame to the capture's own device (SPEC §2): nothing quarantined.
        assert result[1].events == clean[1].events + 1
        assert sum(result[1].quarantined.values()) == 0
        return
    assert_only_quarantine_differs(clean, result)


# --- live -------------------------------------------------------------------------------------


async def test_poison_record_does_not_stop_a_live_source(tmp_path: Path) -> None:
    from tests.test_session import CONFIG as LIVE_CONFIG
    from tests.test_session import Clock, start, until

    (tmp_path / "iotwatch.toml").write_text(LIVE_CONFIG)
    session, store, _heard = await start(tmp_path, Clock("2026-11-28T10:00:00Z"))
    path = tmp_path / "logs" / "a.jsonl"
    try:
        good = orjson.dumps(hub_event("2026-11-28T10:00:01Z", "d1")) + b"\n"
        path.write_bytes(good)
        await until(lambda: session.evaluator is not None and session.evaluator.events == 1)
        with path.open("ab") as f:
            f.write(poison_line({**GOOD_D2C, "count": MARK}) + b"\n")
            f.write(poison_line({**GOOD_D2C, "time": MARK}) + b"\n")
            f.write(good * 3)
        await until(lambda: session.evaluator.events == 4)  # type: ignore[union-attr]
        await session.commit()
        with sqlite3.connect(tmp_path / "s.db") as conn:
            assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == 4
            assert conn.execute("SELECT count(*) FROM quarantine").fetchone()[0] == 2
            ((offset,),) = conn.execute("SELECT offset FROM streams").fetchall()
        assert offset == path.stat().st_size
        assert session.status[0].state != "error"
    finally:
        await session.close()
        await store.close()


def test_an_event_that_makes_evaluation_fail_is_quarantined_and_the_stream_goes_on() -> None:
    """Should a bug make the evaluator fail on one event, that event is quarantined with the
    kind of failure and every other event of the batch is evaluated (SPEC §7)."""
    from engine.config import parse_config
    from engine.evaluator import Evaluator
    from engine.event import new_event

    config = parse_config(
        {"groups": {"default": {"rules": {"MqttD2CMessagesNotInAllowedRange": {"max": 1}}}}},
        "x.toml",
    )
    for incremental in (False, True):
        ev = Evaluator(config, incremental=incremental)
        clock = ev.add_stream("s", "hub-events")
        good = [
            new_event((1_795_860_000_000_000 + i, "d", "d2c", 8, False, 0, "mqtt", 1, False, i))
            for i in range(3)
        ]
        poison = new_event((1_795_860_000_000_009, "d", "d2c", 8, False, 0, "mqtt", "x", False, 7))
        rows: list = []
        ev.process(clock, [good[0], poison, *good[1:]], rows, 1)
        (bad,) = ev.take_poisoned()
        assert (bad.pos, bad.reason) == (7, "not evaluable (TypeError)")
        assert len(rows) == 3 and ev.events == 3 and clock.events == 3
        assert [a.counts for a in ev.finish()] == [[3]]

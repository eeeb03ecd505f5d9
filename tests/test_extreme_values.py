"""Extreme values have defined results (docs/formats.md, "Extreme values"): weights beyond
0..2^31−1 and event times outside 2000-01-01 .. host clock + 1 day are quarantined with their
reason; timestamps are strict RFC 3339. Never a traceback, an SQLite overflow, nor one outlier
that expires the rest of its stream.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import timestamps
from engine.formats.common import MAX_WEIGHT
from engine.formats.serial import encode_frame
from engine.timestamps import (
    AHEAD_LIMIT,
    EARLIEST_EVENT,
    US,
    TimeOutOfRange,
    _parse_slow,
    format_time,
    parse_event_time,
    parse_time,
)
from tests.conftest import agent_event, config_from, hub_event, security_message
from tests.test_poison import assert_poison_is_quarantined
from tests.test_quarantine import CONFIG, GOOD_D2C, D, frame_message, proc, replay, write_capture


def raw_line(record: dict[str, Any], key: str, literal: bytes) -> bytes:
    """``record`` as JSON with the value of ``key`` written as ``literal`` (a number orjson
    cannot write: 2^64−1, hundreds of digits)."""
    text = orjson.dumps({**record, key: "\x00X"})
    return text.replace(b'"\\u0000X"', literal)


HUGE = {
    "2^64-1": b"18446744073709551615",
    "2^63": b"9223372036854775808",
    "2^31": b"2147483648",
    "1e300": b"1e300",
    "300-digits": b"1" * 300,
    "string-300-digits": b'"' + b"9" * 300 + b'"',
    "string-5000-digits": b'"' + b"9" * 5000 + b'"',
    "string-2^64": b'"18446744073709551616"',
}


@pytest.mark.parametrize("literal", list(HUGE.values()), ids=list(HUGE))
def test_huge_count_is_quarantined_as_weight_out_of_range(tmp: Path, literal: bytes) -> None:
    bad = raw_line(GOOD_D2C, "count", literal)
    assert_poison_is_quarantined(tmp, "hub-events", bad, "weight out of range: count")


@pytest.mark.parametrize("literal", list(HUGE.values()), ids=list(HUGE))
def test_huge_hit_count_is_quarantined_as_weight_out_of_range(tmp: Path, literal: bytes) -> None:
    record = proc("a", "10:16:00", "/bin/evil", ExtraDetails={"HitCount": "\x00X"})
    bad = orjson.dumps(record).replace(b'"\\u0000X"', literal)
    assert_poison_is_quarantined(tmp, "security-messages", bad, "weight out of range")


def test_weight_at_the_bound_is_counted(tmp: Path) -> None:
    config = config_from(tmp, CONFIG)
    path = tmp / "h.jsonl"
    path.write_bytes(
        orjson.dumps({**GOOD_D2C, "count": MAX_WEIGHT})
        + b"\n"
        + orjson.dumps({**GOOD_D2C, "count": str(MAX_WEIGHT)})
        + b"\n"
        + orjson.dumps({**GOOD_D2C, "count": float(MAX_WEIGHT)})
        + b"\n"
    )
    alerts, summary, db = replay(config, [path], tmp / "r.db")
    assert sum(summary.quarantined.values()) == 0
    assert [k[8] for k in db["events"]] == [MAX_WEIGHT]  # the weight column
    assert sum(db["events"].values()) == 3
    # Three of them in one window: the count passes 2^31 and still fits the store.
    (alert,) = alerts
    assert alert["counts"] == [3 * MAX_WEIGHT]
    with sqlite3.connect(tmp / "r.db") as conn:
        (counts,) = conn.execute("SELECT counts FROM alerts").fetchone()
    assert orjson.loads(counts) == [3 * MAX_WEIGHT]


def test_huge_counts_end_replay_with_db_in_exit_0(tmp: Path) -> None:
    """The command line with ``--db``: every huge count quarantined, nothing overflows SQLite."""
    path = tmp / "h.jsonl"
    path.write_bytes(
        b"".join(raw_line(GOOD_D2C, "count", v) + b"\n" for v in HUGE.values())
        + orjson.dumps(GOOD_D2C)
        + b"\n"
    )
    run = subprocess.run(
        [sys.executable, "-m", "tui.cli", "replay", "--db", str(tmp / "r.db"), str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert "Traceback" not in run.stderr
    assert run.stderr.splitlines()[0].startswith(f"records {len(HUGE) + 1}, events 1, ")
    summary = run.stderr.splitlines()[1].split(None, 2)
    assert summary == ["quarantined", str(len(HUGE)), "weight out of range: count"]


# --- event times ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "stamp",
    [
        "0001-01-01T00:30:00+01:00",
        "0001-01-01T00:00:00-01:00",
        "1999-12-31T23:59:59Z",
        "1970-01-01T00:00:00Z",
        "2030-01-01T00:00:00Z",
        "2100-01-01T00:00:00Z",
        "9999-12-31T23:59:59Z",
        "9999-12-31T23:59:59-23:59",
    ],
)
def test_implausible_event_time_is_quarantined_as_time_out_of_range(tmp: Path, stamp: str) -> None:
    (tmp / "hub").mkdir()
    (tmp / "agent").mkdir()
    hub = orjson.dumps({**GOOD_D2C, "time": stamp})
    assert_poison_is_quarantined(tmp / "hub", "hub-events", hub, "time out of range: time")
    agent = orjson.dumps(proc("a", "10:16:00", "/bin/x"))
    agent = agent.replace(b"2026-11-28T10:16:00Z", stamp.encode())
    assert_poison_is_quarantined(
        tmp / "agent", "security-messages", agent, "time out of range: TimestampUTC"
    )


@pytest.mark.parametrize("year", ["2030", "2100", "9999"])
def test_one_far_future_record_expires_nothing_else(tmp: Path, year: str) -> None:
    """One record dated years ahead, early in a stream, neither expires the stream's other events
    nor stretches the replay's windows over the years between (the replay ends at once)."""
    config = config_from(tmp, CONFIG)
    events = [hub_event(f"{D}10:{m:02d}:00Z", "a") for m in range(0, 60, 2)]
    clean = tmp / "clean.jsonl"
    clean.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in events))
    bad = tmp / "bad.jsonl"
    outlier = hub_event(f"{year}-01-01T00:00:00Z", "a")
    bad.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in [events[0], outlier, *events[1:]]))
    started = time.monotonic()
    c_alerts, c_summary, _ = replay(config, [clean], tmp / "c.db")
    b_alerts, b_summary, _ = replay(config, [bad], tmp / "b.db")
    assert time.monotonic() - started < 30
    assert b_alerts == c_alerts
    assert (b_summary.events, b_summary.expired) == (c_summary.events, c_summary.expired) == (30, 0)
    assert b_summary.quarantined == {"time out of range: time": 1}


def test_event_time_bound_is_a_day_ahead_of_the_host_clock() -> None:
    now = time.time_ns() // 1000
    assert parse_event_time(format_time(now // US * US)) == now // US * US
    soon = (now + AHEAD_LIMIT - 60 * US) // US * US
    assert parse_event_time(format_time(soon)) == soon
    with pytest.raises(TimeOutOfRange):
        parse_event_time(format_time((now + AHEAD_LIMIT + 60 * US) // US * US))
    assert parse_event_time("2000-01-01T00:00:00Z") == EARLIEST_EVENT
    with pytest.raises(TimeOutOfRange):
        parse_event_time("1999-12-31T23:59:59.999999Z")


def test_event_time_bound_follows_the_host_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """The bound moves with the clock: a time refused now is accepted once the clock got there."""
    now = time.time_ns()
    later = (now // 1000 + 2 * AHEAD_LIMIT) // US * US
    with pytest.raises(TimeOutOfRange):
        parse_event_time(format_time(later))
    monkeypatch.setattr(timestamps.time, "time_ns", lambda: now + 2 * AHEAD_LIMIT * 1000)
    assert parse_event_time(format_time(later)) == later


# --- RFC 3339 ---------------------------------------------------------------------------------

REFUSED = [
    "2026-11-28T10:00:00+25:00",
    "2026-11-28T10:00:00+99:99",
    "2026-11-28T10:00:00+01:60",
    "2026-11-28T10:00:00-24:00",
    "２０２６-11-28T10:00:00Z",
    "2026-11-28T1０:00:00Z",
    "2026-11-28T10:00:00.1٣Z",
    "2026-W48-5T10:00:00Z",
    "2026-W48-5 10:00:00Z",
    "2026-332T10:00:00Z",
    "20261128T100000Z",
    "2026-11-28T100000Z",
    "2026-11-28X10:00:00Z",
    "2026-11-28T10:00:00,5Z",
    "2026-11-28T10:00:00.Z",
    "2026-11-28T10:00:00 Z",
    "2026-11-28T10:00:00+0100",
    "2026-11-28T10:00:00+01",
    "2026-11-28T10:00:00+01:00:30",
    "2026-11-28T10:00:00.5+01:00.5",
    "2026-11-28T24:00:00Z",
    "2026-02-30T10:00:00Z",
    "0000-01-01T00:00:00Z",
    " 2026-11-28T10:00:00Z",
    "2026-11-28T10:00:00Z ",
    "2026-11-28T10:00Z",
    "2026-11-28",
    "",
]


@pytest.mark.parametrize("text", REFUSED)
def test_timestamps_that_are_not_rfc3339_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_time(text)


def test_non_rfc3339_times_are_quarantined_as_bad_time(tmp: Path) -> None:
    config = config_from(tmp, CONFIG)
    path = tmp / "h.jsonl"
    path.write_bytes(b"".join(orjson.dumps({**GOOD_D2C, "time": t}) + b"\n" for t in REFUSED))
    _, summary, _ = replay(config, [path], tmp / "r.db")
    assert summary.events == 0
    assert summary.quarantined == {"bad time: time": len(REFUSED) - 1, "missing time": 1}


ACCEPTED = {
    "2026-11-28T10:00:00Z": 0,
    "2026-11-28t10:00:00z": 0,
    "2026-11-28 10:00:00Z": 0,
    "2026-11-28T10:00:00": 0,
    "2026-11-28T10:00:00.5Z": 500_000,
    "2026-11-28T10:00:00.1234567Z": 123_456,
    "2026-11-28 10:00:00.1234567Z": 123_456,
    "2026-11-28T10:00:00.123456789Z": 123_456,
    "2026-11-28T10:00:00.250": 250_000,
    "2026-11-28T10:00:00.250z": 250_000,
    "2026-11-28T11:00:00+01:00": 0,
    "2026-11-28T09:30:00-00:30": 0,
    "2026-11-28T10:00:00-00:00": 0,
    "2026-11-29T09:59:00+23:59": 0,
    "2026-11-28T11:00:00.5+01:00": 500_000,
}


@pytest.mark.parametrize("text,frac", list(ACCEPTED.items()))
def test_rfc3339_spellings_stay_accepted(text: str, frac: int) -> None:
    assert parse_time(text) == parse_time("2026-11-28T10:00:00Z") + frac


def test_leap_second_reads_as_the_next_minute() -> None:
    assert parse_time("2016-12-31T23:59:60Z") == parse_time("2017-01-01T00:00:00Z")


@settings(max_examples=300, deadline=None)
@given(
    st.datetimes(),
    st.sampled_from(["T", "t", " "]),
    st.one_of(st.none(), st.text("0123456789", min_size=1, max_size=9)),
    st.one_of(
        st.sampled_from(["", "Z", "z", "+00:00", "-00:00"]),
        st.tuples(st.sampled_from("+-"), st.integers(0, 23), st.integers(0, 59)).map(
            lambda z: f"{z[0]}{z[1]:02d}:{z[2]:02d}"
        ),
    ),
)
def test_fast_and_strict_paths_agree(dt: Any, sep: str, frac: str | None, zone: str) -> None:
    """``parse_time`` takes a fast path for common spellings; it must give what the strict grammar
    gives, for every RFC 3339 time (year 1 with an offset included, without OverflowError)."""
    text = (
        f"{dt.year:04d}-{dt.month:02d}-{dt.day:02d}{sep}"
        f"{dt.hour:02d}:{dt.minute:02d}:{dt.second:02d}"
    )
    text += ("." + frac if frac else "") + zone
    assert parse_time(text) == _parse_slow(text)


# --- serial boards keep SPEC §2's rule --------------------------------------------------------


def test_serial_extreme_times_are_host_timed_and_huge_hit_counts_quarantined(tmp: Path) -> None:
    config = config_from(tmp, CONFIG)
    host = "2026-11-28T12:00:00Z"
    frames = []
    for stamp in ("9999-12-31T23:59:59Z", "0001-01-01T00:30:00+01:00", "2026-11-28T12:06:00Z"):
        ev = agent_event("ProcessCreate", stamp, {"Executable": "/bin/x"})
        frames.append(encode_frame(frame_message("", ev)))
    ev = agent_event(
        "ProcessCreate",
        D + "10:00:00Z",
        {"Executable": "/bin/x", "ExtraDetails": {"HitCount": 2**64 - 1}},
    )
    frames.append(encode_frame(frame_message("", ev)))
    write_capture(tmp / "b.bin", frames)
    _, summary, db = replay(config, [f"serial-capture:{tmp / 'b.bin'}"], tmp / "r.db")
    assert summary.events == 3
    assert summary.quarantined == {"weight out of range: ExtraDetails.HitCount": 1}
    assert {k[1] for k in db["events"]} == {parse_time(host)}


# --- live -------------------------------------------------------------------------------------


async def test_huge_count_and_far_future_time_do_not_stop_live_commits(tmp_path: Path) -> None:
    from tests.test_session import CONFIG as LIVE_CONFIG
    from tests.test_session import Clock, start, until

    (tmp_path / "iotwatch.toml").write_text(LIVE_CONFIG)
    session, store, _heard = await start(tmp_path, Clock("2026-11-28T10:00:00Z"))
    path = tmp_path / "logs" / "a.jsonl"
    good = orjson.dumps(hub_event("2026-11-28T10:00:01Z", "d1")) + b"\n"
    try:
        path.write_bytes(
            good
            + raw_line(GOOD_D2C, "count", b"18446744073709551615")
            + b"\n"
            + orjson.dumps({**GOOD_D2C, "time": "2100-01-01T00:00:00Z"})
            + b"\n"
        )
        await until(lambda: session.evaluator is not None and session.evaluator.events == 1)
        await session.commit()
        with path.open("ab") as f:
            f.write(good * 2)
        await until(lambda: session.evaluator.events == 3)  # type: ignore[union-attr]
        await session.commit()
        with sqlite3.connect(tmp_path / "s.db") as conn:
            assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == 3
            reasons = [r for (r,) in conn.execute("SELECT reason FROM quarantine ORDER BY id")]
            ((offset,),) = conn.execute("SELECT offset FROM streams").fetchall()
        assert reasons == ["weight out of range: count", "time out of range: time"]
        assert offset == path.stat().st_size
    finally:
        await session.close()
        await store.close()


def test_security_message_with_a_huge_hit_count_keeps_its_other_events(tmp: Path) -> None:
    config = config_from(tmp, CONFIG)
    ok = agent_event("ProcessCreate", D + "10:06:00Z", {"Executable": "/bin/bad"})
    huge = agent_event(
        "ProcessCreate",
        D + "10:07:00Z",
        {"Executable": "/bin/x", "ExtraDetails": {"HitCount": 1e300}},
    )
    path = tmp / "a.jsonl"
    path.write_bytes(orjson.dumps(security_message("a", huge, ok)) + b"\n")
    _, summary, _ = replay(config, [path], tmp / "r.db")
    assert summary.events == 1
    assert summary.quarantined == {"weight out of range: ExtraDetails.HitCount": 1}


def test_rtos_hit_count_beyond_the_bound_is_quarantined_alone() -> None:
    """An Azure RTOS ``hit_count`` is a uint32: above 2^31−1 its event is quarantined, the
    message's other events are kept."""
    from engine.formats import rtos_security
    from engine.formats.rtos import security_message_generated as g
    from tests import test_rtos_security as r

    exec_ = g.ProcessEventType.EXEC
    buf = r.message(
        r.event(g.Payload.Process, r.process("/bin/sh", exec_, 2**32 - 1)),
        r.event(g.Payload.Process, r.process("/bin/sh", exec_, MAX_WEIGHT)),
        r.event(g.Payload.Heartbeat, r.heartbeat),
    )
    events, bad = rtos_security.decode_message(buf, "board", 7)
    assert [(e.name, e.weight) for e in events] == [("ProcessExec", MAX_WEIGHT), ("Heartbeat", 1)]
    assert [b.reason for b in bad] == ["weight out of range: hit_count"]

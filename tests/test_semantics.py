"""SPEC §2 and §4: one test per evaluation rule and input mapping, on small hand-built inputs.

Every expectation is worked out by hand from SPEC; comments give the reasoning. All times are on
2026-11-28 (UTC). 15-minute windows start at :00, :15, :30, :45.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import orjson

from engine.alert import AlertBook
from engine.catalogue import D2C_UNKNOWN
from engine.evaluator import Evaluator
from engine.jsonstream import JsonStream
from engine.timestamps import US, parse_time
from tests.conftest import (
    agent_event,
    config_from,
    hub_event,
    run_replay,
    security_message,
    write_lines,
)

D = "2026-11-28T"
MQTT_D2C = "MqttD2CMessagesNotInAllowedRange"
AMQP_D2C = "AmqpD2CMessagesNotInAllowedRange"
HTTP_D2C = "HttpD2CMessagesNotInAllowedRange"
METHODS = "DirectMethodInvokesNotInAllowedRange"
TWIN = "TwinUpdatesNotInAllowedRange"
UPLOADS = "FileUploadsNotInAllowedRange"
UNAUTH = "UnauthorizedOperationsNotInAllowedRange"
PROCESS = "ProcessNotAllowed"

Brief = tuple[Any, ...]


def t(hms: str) -> str:
    """``"10:05"`` or ``"10:05:30"`` → an RFC 3339 time on the test day."""
    return D + (hms if hms.count(":") == 2 else hms + ":00") + "Z"


def hhmm(stamp: str) -> str:
    """``2026-11-28T10:15:00Z`` → ``10:15`` (``10:15:01`` when seconds are set)."""
    assert stamp.startswith(D) and stamp.endswith("Z"), stamp
    clock = stamp[len(D) : -1]
    return clock[:5] if clock[5:] in (":00", "") else clock


def brief(alerts: list[dict[str, Any]]) -> list[Brief]:
    """(rule, device, value, start, end, counts|occurrences, state) of each alert, in order."""
    return [
        (
            a["rule"],
            a["device"],
            a.get("value"),
            hhmm(a["start"]),
            hhmm(a["end"]),
            a["counts"] if "counts" in a else a["occurrences"],
            a["state"],
        )
        for a in alerts
    ]


def rule(name: str, lo: int = 0, hi: int = 0, window: str = "PT15M", group: str = "default") -> str:
    """A range rule table."""
    return f'[groups.{group}.rules.{name}]\nmin = {lo}\nmax = {hi}\nwindow = "{window}"\n'


def allow(name: str, values: list[str], group: str = "default") -> str:
    """An allow-list rule table."""
    return f"[groups.{group}.rules.{name}]\nallow = {json.dumps(values)}\n"


def conf(
    tmp: Path,
    *tables: str,
    lateness: str = "PT1M",
    horizon: str = "P1D",
    quiet: str = "PT10M",
    devices: str = "",
) -> Any:
    """A configuration with ``[engine]``, an optional ``[devices]`` body and rule tables."""
    text = f'[engine]\nlateness = "{lateness}"\nhorizon = "{horizon}"\nquiet = "{quiet}"\n'
    if devices:
        text += "\n[devices]\n" + devices + "\n"
    return config_from(tmp, text + "\n" + "\n".join(tables))


def d2c(hms: str, device: str, count: int | None = None, **extra: Any) -> dict[str, Any]:
    """A hub-events MQTT device-to-cloud record."""
    if count is not None:
        extra["count"] = count
    return hub_event(t(hms), device, **extra)


def proc(device: str, hms: str, exe: str, **item: Any) -> dict[str, Any]:
    """A security message holding one ProcessCreate event."""
    return security_message(
        device, agent_event("ProcessCreate", t(hms), {"Executable": exe, **item})
    )


def hub_log(
    hms: str,
    device: str | None,
    category: str,
    operation: str,
    *,
    result_type: str = "Success",
    props_as_string: bool = False,
    **props: Any,
) -> dict[str, Any]:
    """An IoT Hub resource-log record (storage-account export shape)."""
    properties: dict[str, Any] = {"sdkVersion": "azure-iot-device/1.0", **props}
    if device is not None:
        properties["deviceId"] = device
    return {
        "time": hms if "T" in hms else t(hms),
        "resourceId": "/SUBSCRIPTIONS/0000/RESOURCEGROUPS/LAB/PROVIDERS/MICROSOFT.DEVICES/IOTHUBS/HUB",
        "operationName": operation,
        "category": category,
        "level": "Information",
        "resultType": result_type,
        "resultDescription": "",
        "durationMs": "1",
        "properties": json.dumps(properties) if props_as_string else properties,
        "location": "westeurope",
    }


def db_rows(db: Path, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql, args).fetchall()


# --- §4 Expired events (contract v2: every device keeps its own clock) -----------------------------
# Version 1 judged lateness per stream with ``lateness``; these tests were changed on purpose to
# version 2's per-device ``horizon``.


def test_expired_event_is_stored_not_counted(tmp: Path) -> None:
    """horizon PT1M; a's time in the stream reaches 10:10, so 10:09:00 counts and 10:08:59 is
    expired."""
    cfg = conf(tmp, rule(MQTT_D2C, 0, 2), horizon="PT1M")
    hub = write_lines(
        tmp / "hub.jsonl",
        [
            d2c("10:05", "a"),
            d2c("10:10", "a"),
            d2c("10:09:00", "a"),  # == a's latest − horizon: counted
            d2c("10:08:59", "a", count=10),  # < a's latest − horizon: expired, stored
        ],
    )
    db = tmp / "expired.db"
    alerts, summary = run_replay(cfg, [hub], db=str(db))
    # Window 10:00 holds 1 + 1 + 1 = 3 > max 2; it contains T_last (10:10): incomplete → open.
    assert brief(alerts) == [(MQTT_D2C, "a", None, "10:00", "10:15", [3], "open")]
    assert (summary.events, summary.expired) == (4, 1)
    rows = db_rows(
        db, "SELECT time_us % 3600000000 / 1000000, weight, expired FROM events ORDER BY id"
    )
    assert rows == [(300, 1, 0), (600, 1, 0), (540, 1, 0), (539, 10, 1)]


def test_expiry_is_per_device_two_devices_one_skewed_both_counted(tmp: Path) -> None:
    """Two identical devices in one feed, b's clock three minutes behind a's: with horizon PT1M
    nothing of b is expired (b is compared with b only), so both alert alike."""
    cfg = conf(tmp, rule(MQTT_D2C, 0, 1), horizon="PT1M")
    records = []
    for minute in range(0, 30, 2):
        records.append(d2c(f"10:{minute + 3:02d}", "a"))
        records.append(d2c(f"10:{minute:02d}", "b"))
    hub = write_lines(tmp / "hub.jsonl", records)
    alerts, summary = run_replay(cfg, [hub])
    assert summary.expired == 0
    by_device = {a["device"]: a["counts"] for a in alerts}
    assert by_device == {"a": [6, 8], "b": [8, 7]}


def test_expiry_is_per_stream_and_device(tmp: Path) -> None:
    """Streams do not expire each other's events; within one stream, one device's own past
    does."""
    cfg = conf(tmp, rule(MQTT_D2C, 0, 0), horizon="PT1M")
    ahead = write_lines(tmp / "ahead.jsonl", [d2c("10:20", "a")])
    behind = write_lines(tmp / "behind.jsonl", [d2c("10:05", "a")])
    for order in ([ahead, behind], [behind, ahead]):
        alerts, summary = run_replay(cfg, order)
        # Neither is expired: windows 10:00 and 10:15 each hold 1 > max 0 → one run, 10:15 is
        # incomplete (T_last 10:20) → open.
        assert brief(alerts) == [(MQTT_D2C, "a", None, "10:00", "10:30", [1, 1], "open")]
        assert summary.expired == 0
    # The same two records in one stream: 10:05 < 10:20 − 1 min is expired.
    one = write_lines(tmp / "one.jsonl", [d2c("10:20", "a"), d2c("10:05", "a")])
    alerts, summary = run_replay(cfg, [one])
    assert brief(alerts) == [(MQTT_D2C, "a", None, "10:15", "10:30", [1], "open")]
    assert summary.expired == 1


def test_expiry_takes_a_message_events_in_order(tmp: Path) -> None:
    """Within one security message the events are the stream's order: 10:00 after 10:30 is
    expired."""
    active = "ActiveConnectionsNotInAllowedRange"
    cfg = conf(tmp, rule(active), horizon="PT1M")
    item = {"Direction": "Out", "RemoteAddress": "10.0.0.1"}
    sec = write_lines(
        tmp / "sec.jsonl",
        [
            security_message(
                "a",
                agent_event("ConnectionCreate", t("10:30"), item),
                agent_event("ConnectionCreate", t("10:00"), item, item),
                agent_event("ConnectionCreate", t("10:29"), item),  # within the horizon
            )
        ],
    )
    alerts, summary = run_replay(cfg, [sec])
    assert summary.expired == 2  # both payload items of the 10:00 event
    assert brief(alerts) == [(active, "a", None, "10:15", "10:45", [1, 1], "open")]


def test_late_event_within_the_horizon_is_counted(tmp: Path) -> None:
    """An agent's hourly aggregate sent five hours later (SPEC §4 "Why"): with the default
    horizon P1D it counts into its own window, however late it arrives."""
    active = "ActiveConnectionsNotInAllowedRange"
    cfg = conf(tmp, rule(active, 0, 30, "PT1H"))
    item = {"Direction": "Out", "RemoteAddress": "10.0.0.1", "ExtraDetails": {"HitCount": 40}}
    login = {"UserName": "root", "Result": "Success"}
    sec = write_lines(
        tmp / "sec.jsonl",
        [security_message("a", agent_event("Login", t(f"{h:02d}:30"), login)) for h in (9, 14)]
        + [
            security_message(
                "a", agent_event("ConnectionCreate", t(f"{h:02d}:00"), item, category="Aggregated")
            )
            for h in range(9, 14)
        ],
    )
    alerts, summary = run_replay(cfg, [sec])
    assert summary.expired == 0
    # The 14:00 window holds T_last(Agent) (14:30): incomplete, so the alert is still open.
    assert brief(alerts) == [(active, "a", None, "09:00", "14:00", [40] * 5, "open")]


# --- §4 Windows ------------------------------------------------------------------------------------


def test_windows_are_epoch_aligned_tumbling(tmp: Path) -> None:
    """PT7M (420 s) windows: 10:00 is 60 s past an epoch multiple of 420 s, so the windows around
    it are [09:59, 10:06) and [10:06, 10:13) — not aligned to the day, the hour or the data."""
    cfg = conf(tmp, rule(MQTT_D2C, 0, 0, "PT7M"))
    hub = write_lines(
        tmp / "hub.jsonl",
        [
            d2c("10:00:30", "a"),
            d2c("10:05:59", "a"),
            d2c("10:06:00", "a", count=2),  # a window includes its start
            d2c("10:06:30", "a", count=3),
        ],
    )
    alerts, _ = run_replay(cfg, [hub])
    assert brief(alerts) == [(MQTT_D2C, "a", None, "09:59", "10:13", [2, 5], "open")]


def test_partial_first_window_has_no_below_min(tmp: Path) -> None:
    """min 2: the first (partial) window of a with 1 event is not below min; a later one is."""
    cfg = conf(tmp, rule(MQTT_D2C, 2, 10))
    hub = write_lines(
        tmp / "hub.jsonl",
        [
            d2c("10:14", "a"),  # first window 10:00: 1 < min, partial → in range
            d2c("10:20", "a", count=2),  # 10:15: 2 → in range
            d2c("10:31", "a"),  # 10:30: 1 < min, complete → out
            d2c("10:46", "a", count=2),  # 10:45: contains T_last → incomplete
        ],
    )
    alerts, _ = run_replay(cfg, [hub])
    assert brief(alerts) == [(MQTT_D2C, "a", None, "10:30", "10:45", [1], "open")]


# --- §4 Known devices ------------------------------------------------------------------------------


def test_declared_silent_device_alerts_from_its_second_window(tmp: Path) -> None:
    """A declared device with no events is known from T_first (10:05): its window 10:00 is
    partial, 10:15 and 10:30 are complete and empty, 10:45 holds T_last (10:50)."""
    cfg = conf(tmp, rule(MQTT_D2C, 1, 5), devices='"silent" = "default"')
    hub = write_lines(
        tmp / "hub.jsonl",
        [
            d2c("10:05", "a"),
            d2c("10:20", "a"),
            d2c("10:35", "a"),
            d2c("10:50", "a"),
        ],
    )
    alerts, _ = run_replay(cfg, [hub])
    assert brief(alerts) == [(MQTT_D2C, "silent", None, "10:15", "10:45", [0, 0], "open")]


def test_undeclared_device_unknown_before_first_event(tmp: Path) -> None:
    """b's first event is at 10:35: nothing is said about b before its window 10:30."""
    cfg = conf(tmp, rule(MQTT_D2C, 1, 5))
    hub = write_lines(
        tmp / "hub.jsonl",
        [
            d2c("10:05", "a"),
            d2c("10:20", "a"),
            d2c("10:35", "a"),
            d2c("10:35", "b"),  # b's first window 10:30 is partial (count 1 anyway)
            d2c("10:50", "a"),
            d2c("11:05", "a"),  # T_last: 11:00 window incomplete; b's 10:45 is complete and empty
        ],
    )
    alerts, _ = run_replay(cfg, [hub])
    assert brief(alerts) == [(MQTT_D2C, "b", None, "10:45", "11:00", [0], "open")]


def test_declared_device_known_from_t_first_before_its_own_events(tmp: Path) -> None:
    """Declared d sends its first event at 10:50, but is known from T_first (a's 10:05): its
    windows 10:15 and 10:30 are complete and empty."""
    cfg = conf(tmp, rule(MQTT_D2C, 1, 5), devices='"d" = "default"')
    hub = write_lines(
        tmp / "hub.jsonl",
        [
            d2c("10:05", "a"),
            d2c("10:20", "a"),
            d2c("10:35", "a"),
            d2c("10:50", "a"),
            d2c("10:50", "d"),
            d2c("11:05", "a"),
            d2c("11:05", "d"),
        ],
    )
    alerts, _ = run_replay(cfg, [hub])
    assert brief(alerts) == [(MQTT_D2C, "d", None, "10:15", "10:45", [0, 0], "resolved")]


def test_t_first_ignores_expired_events(tmp: Path) -> None:
    """T_first is the earliest non-expired time: an expired 10:00 does not make a declared device
    known from 10:00. Known from 10:30, the silent device's first window 10:30 is partial."""
    cfg = conf(tmp, rule(MQTT_D2C, 1, 5), devices='"silent" = "default"', horizon="PT1M")
    hub = write_lines(
        tmp / "hub.jsonl",
        [d2c("10:30", "a"), d2c("10:00", "a"), d2c("10:50", "a"), d2c("11:05", "a")],
    )
    alerts, summary = run_replay(cfg, [hub])
    assert summary.expired == 1
    assert brief(alerts) == [(MQTT_D2C, "silent", None, "10:45", "11:00", [0], "open")]


def test_device_seen_only_in_expired_events_is_not_known(tmp: Path) -> None:
    """Live, b's only event is older than the wall clock minus the horizon: expired, so b is
    never known and has no empty windows. (In a replay a device's first event in a stream is
    never expired: it has no earlier time of its own to be compared with.)"""
    cfg = conf(tmp, rule(MQTT_D2C, 1, 5), horizon="PT10M")
    ev = Evaluator(cfg, incremental=True)
    ev.watermark.wall_lateness = {"IoT Hub": 60 * US}  # a hub source is configured
    clock = ev.add_stream("hub", "hub-events")
    clock.holding = False
    ev.advance(parse_time(t("10:31")))
    for hms, device in (("10:30", "a"), ("10:00", "b")):
        stream = JsonStream("hub-events")
        stream.feed(orjson.dumps(d2c(hms, device)) + b"\n")
        assert ev.process(clock, stream.take()[0]) == (device == "b")
    ev.advance(parse_time(t("11:20")))
    assert ev.devices["b"].first is None and ev.expired == 1
    assert {a.device for a in ev.book.alerts.values()} == {"a"}


# --- §4 Watermark / completeness ------------------------------------------------------------------


def test_incomplete_last_window_only_above_max(tmp: Path) -> None:
    """min 2 max 3: in the window holding T_last, 1 (below min) is fine, 4 (above max) is not."""
    cfg = conf(tmp, rule(MQTT_D2C, 2, 3))
    hub = write_lines(
        tmp / "hub.jsonl",
        [
            d2c("10:05", "a"),
            d2c("10:20", "a", 2),
            d2c("10:35", "a", 2),
            d2c("10:50", "a", 1),
            d2c("10:05", "b"),
            d2c("10:20", "b", 2),
            d2c("10:35", "b", 2),
            d2c("10:52", "b", 4),
        ],
    )
    alerts, _ = run_replay(cfg, [hub])
    assert brief(alerts) == [(MQTT_D2C, "b", None, "10:45", "11:00", [4], "open")]


ACTIVE = "ActiveConnectionsNotInAllowedRange"


def out_conn(device: str, hms: str) -> dict[str, Any]:
    """A security message holding one outbound ConnectionCreate."""
    item = {"Direction": "Out", "RemoteAddress": "10.0.0.1"}
    return security_message(device, agent_event("ConnectionCreate", t(hms), item))


def test_completeness_is_per_data_source_hub_input_ending_early(tmp: Path) -> None:
    """The hub input ends at 10:20, the agent input goes on to 12:00. IoT Hub windows are
    complete only up to T_last(IoT Hub) = 10:20, so the declared silent device has no below-min
    hub alert after it; its Agent windows are complete up to T_last(Agent) = 12:00."""
    cfg = conf(tmp, rule(MQTT_D2C, 1, 9), rule(ACTIVE, 1, 9), devices='"silent" = "default"')
    hub = write_lines(tmp / "hub.jsonl", [d2c("10:05", "a"), d2c("10:20", "a")])
    sec = write_lines(
        tmp / "sec.jsonl", [out_conn("a", f"{10 + m // 60}:{m % 60:02d}") for m in range(5, 121, 5)]
    )
    alerts, _ = run_replay(cfg, [hub, sec])
    assert brief(alerts) == [(ACTIVE, "silent", None, "10:15", "12:00", [0] * 7, "open")]


def test_a_data_source_with_no_stream_judges_nothing(tmp: Path) -> None:
    """Only hub input: no Agent window is ever complete, so no below-min Agent alert, and an
    allow-list alert (Agent) is never resolved by the end of the input."""
    cfg = conf(
        tmp,
        rule(MQTT_D2C, 0, 9),
        rule(ACTIVE, 1, 9),
        allow(PROCESS, ["ok"]),
        devices='"silent" = "default"',
    )
    hub = write_lines(tmp / "hub.jsonl", [d2c(f"{h}:05", "a") for h in (10, 11, 12)])
    alerts, _ = run_replay(cfg, [hub])
    assert alerts == []
    # The same with an agent input that only ever reports one violation at 10:00.
    sec = write_lines(tmp / "sec.jsonl", [proc("a", "10:00", "/bin/bad")])
    alerts, _ = run_replay(cfg, [hub, sec])
    # T_last(Agent) = 10:00: windows of the Agent data source end later; 10:00 + quiet > 10:00.
    assert brief(alerts) == [(PROCESS, "a", "/bin/bad", "10:00", "10:00", 1, "open")]


def test_each_source_waits_its_own_lateness(tmp: Path) -> None:
    """Live: a hub source with the default lateness PT1M and an agent source with PT6H. The wall
    clock completes IoT Hub windows a minute after their end and Agent windows six hours after."""
    text = (
        '[engine]\nlateness = "PT1M"\n\n[devices]\n"silent" = "default"\n\n'
        '[[sources]]\ntype = "hub-events"\npath = "hub/*"\n\n'
        '[[sources]]\ntype = "security-messages"\npath = "agent/*"\nlateness = "PT6H"\n\n'
        + rule(MQTT_D2C, 1, 9)
        + rule(ACTIVE, 1, 9)
    )
    cfg = config_from(tmp, text)
    ev = Evaluator(cfg, incremental=True)
    ev.configure_sources(cfg)
    hub = ev.add_stream("hub", "hub-events", None)
    agent = ev.add_stream("agent", "security-messages", 6 * 3600)
    hub.holding = agent.holding = False
    stream = JsonStream("hub-events")
    stream.feed(orjson.dumps(d2c("10:00", "a")) + b"\n")
    ev.process(hub, stream.take()[0])

    def silent() -> dict[str, list[int]]:
        return {a.rule.name: a.counts for a in ev.book.alerts.values() if a.device == "silent"}

    ev.advance(parse_time(t("11:01")))
    assert silent() == {MQTT_D2C: [0] * 3}  # 10:15, 10:30, 10:45 (10:00 is its first window)
    ev.advance(parse_time(t("16:29")))
    assert ACTIVE not in silent()  # 10:15 ended at 10:30: not six hours ago yet
    ev.advance(parse_time(t("16:31")))
    assert silent()[ACTIVE] == [0]
    # A backlog (holding) agent stream holds Agent windows by its own time minus PT6H.
    agent.holding = True
    agent.latest = parse_time(t("16:45"))
    ev.advance(parse_time(t("23:00")))
    assert silent()[ACTIVE] == [0, 0]  # only up to 10:45 = 16:45 − 6 h


def test_window_ending_exactly_at_t_last_is_complete(tmp: Path) -> None:
    """a's empty window [10:15, 10:30) is complete when T_last is 10:30:00, not at 10:29:59.999999."""
    cfg = conf(tmp, rule(MQTT_D2C, 1, 5))
    exact = write_lines(
        tmp / "exact.jsonl",
        [
            d2c("10:05", "a"),
            d2c("10:05", "b"),
            d2c("10:20", "b"),
            d2c("10:30:00", "b"),
        ],
    )
    alerts, _ = run_replay(cfg, [exact])
    assert brief(alerts) == [(MQTT_D2C, "a", None, "10:15", "10:30", [0], "open")]
    before = write_lines(
        tmp / "before.jsonl",
        [
            d2c("10:05", "a"),
            d2c("10:05", "b"),
            d2c("10:20", "b"),
            d2c("10:29:59.999999", "b"),
        ],
    )
    alerts, _ = run_replay(cfg, [before])
    assert alerts == []


def test_min_and_max_are_inclusive(tmp: Path) -> None:
    """[min, max] = [2, 3]: complete windows holding exactly 2 or 3 are in range."""
    cfg = conf(tmp, rule(MQTT_D2C, 2, 3))
    hub = write_lines(
        tmp / "hub.jsonl",
        [
            d2c("10:05", "a"),
            d2c("10:20", "a", 2),
            d2c("10:35", "a", 3),
            d2c("10:50", "a", 2),
            d2c("11:05", "a", 1),
            d2c("11:20", "a", 4),
            d2c("11:35", "a", 2),
        ],
    )
    alerts, _ = run_replay(cfg, [hub])
    # 10:15 (2), 10:30 (3), 10:45 (2) in range; 11:00 (1) and 11:15 (4) out; 11:30 incomplete.
    assert brief(alerts) == [(MQTT_D2C, "a", None, "11:00", "11:30", [1, 4], "open")]


# --- §4 Range episodes -----------------------------------------------------------------------------


def test_episode_resolved_when_next_window_complete_and_in_range(tmp: Path) -> None:
    cfg = conf(tmp, rule(MQTT_D2C, 0, 1))
    hub = write_lines(
        tmp / "hub.jsonl",
        [
            d2c("10:05", "a"),
            d2c("10:20", "a", 3),
            d2c("10:35", "a"),
            d2c("10:50", "a"),
        ],
    )
    alerts, _ = run_replay(cfg, [hub])
    # 10:15 holds 3 > 1; 10:30 holds 1, complete (T_last 10:50) → resolved.
    assert brief(alerts) == [(MQTT_D2C, "a", None, "10:15", "10:30", [3], "resolved")]


def test_episode_open_when_next_window_incomplete(tmp: Path) -> None:
    cfg = conf(tmp, rule(MQTT_D2C, 0, 1))
    hub = write_lines(
        tmp / "hub.jsonl", [d2c("10:05", "a"), d2c("10:20", "a", 3), d2c("10:35", "a")]
    )
    alerts, _ = run_replay(cfg, [hub])
    # 10:30 holds 1 but contains T_last (10:35): incomplete → the run stays open.
    assert brief(alerts) == [(MQTT_D2C, "a", None, "10:15", "10:30", [3], "open")]


def test_consecutive_out_of_range_windows_form_one_episode(tmp: Path) -> None:
    """min 1 max 1: above max, below min and above max again in a row are one alert."""
    cfg = conf(tmp, rule(MQTT_D2C, 1, 1))
    hub = write_lines(
        tmp / "hub.jsonl",
        [
            d2c("10:05", "a"),  # 10:00: 1 (first window)
            d2c("10:20", "a", 2),  # 10:15: 2 > max
            # 10:30: 0 < min
            d2c("10:50", "a", 3),  # 10:45: 3 > max
            d2c("11:05", "a"),  # 11:00: 1, complete → resolves the run
            d2c("11:20", "a", 2),  # 11:15: 2 > max
            d2c("11:35", "a"),  # 11:30: holds T_last → incomplete → the second run is open
        ],
    )
    alerts, _ = run_replay(cfg, [hub])
    assert brief(alerts) == [
        (MQTT_D2C, "a", None, "10:15", "11:00", [2, 0, 3], "resolved"),
        (MQTT_D2C, "a", None, "11:15", "11:30", [2], "open"),
    ]


# --- §4 Allow-list episodes ------------------------------------------------------------------------


def test_allowlist_quiet_gap_splits_episodes(tmp: Path) -> None:
    """quiet PT10M: a gap of 10 min 1 s starts a new alert."""
    cfg = conf(tmp, allow(PROCESS, ["ok"]))
    sec = write_lines(
        tmp / "sec.jsonl",
        [
            proc("a", "10:00", "/bin/bad"),
            proc("a", "10:05", "/bin/bad"),
            proc("a", "10:15:01", "/bin/bad"),
        ],
    )
    alerts, _ = run_replay(cfg, [sec])
    # First: 10:05 + 10 min = 10:15 ≤ T_last 10:15:01 → resolved. Second: open.
    assert brief(alerts) == [
        (PROCESS, "a", "/bin/bad", "10:00", "10:05", 2, "resolved"),
        (PROCESS, "a", "/bin/bad", "10:15:01", "10:15:01", 1, "open"),
    ]


def test_allowlist_gap_equal_to_quiet_joins(tmp: Path) -> None:
    cfg = conf(tmp, allow(PROCESS, ["ok"]))
    sec = write_lines(
        tmp / "sec.jsonl",
        [
            proc("a", "10:00", "/bin/bad"),
            proc("a", "10:10", "/bin/bad"),
        ],
    )
    alerts, _ = run_replay(cfg, [sec])
    # 10 min apart = quiet → one alert; 10:10 + 10 min > T_last 10:10 → open.
    assert brief(alerts) == [(PROCESS, "a", "/bin/bad", "10:00", "10:10", 2, "open")]


def test_allowlist_resolved_when_end_plus_quiet_le_t_last(tmp: Path) -> None:
    """The violation at 10:00 is resolved once T_last reaches 10:10:00 (an allowed process sets
    T_last), and still open at 10:09:59."""
    cfg = conf(tmp, allow(PROCESS, ["ok"]))
    for last, state in (("10:10:00", "resolved"), ("10:09:59", "open"), ("10:30", "resolved")):
        sec = write_lines(
            tmp / "sec.jsonl",
            [
                proc("a", "10:00", "/bin/bad"),
                proc("b", last, "/usr/bin/ok"),
            ],
        )
        alerts, _ = run_replay(cfg, [sec])
        assert brief(alerts) == [(PROCESS, "a", "/bin/bad", "10:00", "10:00", 1, state)], last


def test_expired_event_still_raises_its_allowlist_alert(tmp: Path) -> None:
    """An expired violation (10:00 after a reached 10:30, horizon PT1M) is not counted into
    windows but still raises its allow-list alert; it does not move T_last (10:30)."""
    cfg = conf(tmp, allow(PROCESS, ["ok"]), horizon="PT1M")
    sec = write_lines(
        tmp / "sec.jsonl",
        [
            proc("a", "10:30", "/usr/bin/ok"),
            proc("a", "10:00", "/bin/bad"),
            proc("a", "10:22", "/bin/bad"),  # expired as well (10:22 < 10:29)
        ],
    )
    alerts, summary = run_replay(cfg, [sec])
    # 10:00 and 10:22 are 22 min apart > quiet 10 min → two alerts. 10:00 + 10 = 10:10 ≤ 10:30 →
    # resolved; 10:22 + 10 = 10:32 > 10:30 → open.
    assert brief(alerts) == [
        (PROCESS, "a", "/bin/bad", "10:00", "10:00", 1, "resolved"),
        (PROCESS, "a", "/bin/bad", "10:22", "10:22", 1, "open"),
    ]
    assert summary.expired == 2


def test_early_fire_above_max_in_incomplete_window(tmp: Path) -> None:
    """Live, the alert exists as soon as the count crosses max, before the window ends (fed
    straight to the incremental evaluator, one event at a time). A replay reports final
    episodes only, so it needs no early alert."""
    cfg = conf(tmp, rule(MQTT_D2C, 0, 2))
    changes: list[tuple[str, list[int]]] = []
    book = AlertBook(listener=lambda change, alert: changes.append((change, list(alert.counts))))
    ev = Evaluator(cfg, book, incremental=True)
    clock = ev.add_stream("hub")
    seen: list[int] = []
    for hms in ("10:01", "10:02", "10:03", "10:04"):
        stream = JsonStream("hub-events")
        stream.feed(orjson.dumps(d2c(hms, "a")) + b"\n")
        events, bad = stream.take()
        assert not bad
        ev.process(clock, events)
        seen.append(len(book.alerts))
    # No alert at 2 events, one at the 3rd (3 > 2), the 4th updates it.
    assert seen == [0, 0, 1, 1]
    assert changes[0] == ("opened", [3])
    (alert,) = book.alerts.values()
    assert alert.counts == [4] and alert.state == "open"
    records = [a.to_record() for a in ev.finish()]
    assert brief(records) == [(MQTT_D2C, "a", None, "10:00", "10:15", [4], "open")]


# --- §1 Weights and rule matching ---------------------------------------------------------------


def test_hitcount_weights_int_and_string(tmp: Path) -> None:
    cfg = conf(tmp, rule("FailedLocalLoginsNotInAllowedRange", 0, 1), allow(PROCESS, ["ok"]))
    fail = "FailedLocalLoginsNotInAllowedRange"
    sec = write_lines(
        tmp / "sec.jsonl",
        [
            security_message(
                "a",
                agent_event(
                    "Login",
                    t("10:01"),
                    {"UserName": "x", "Result": "Fail", "ExtraDetails": {"HitCount": 3}},
                    {"UserName": "y", "Result": "Fail", "ExtraDetails": {"HitCount": "4"}},
                    {"UserName": "z", "Result": "Fail"},
                    category="Aggregated",
                ),
            ),
            proc("a", "10:02", "/bin/bad", ExtraDetails={"HitCount": 2}),
            proc("a", "10:03", "/bin/bad", ExtraDetails={"HitCount": "5"}),
        ],
    )
    alerts, _ = run_replay(cfg, [sec])
    assert brief(alerts) == [
        (fail, "a", None, "10:00", "10:15", [3 + 4 + 1], "open"),
        (PROCESS, "a", "/bin/bad", "10:02", "10:03", 2 + 5, "open"),
    ]


def test_hub_count_weight(tmp: Path) -> None:
    amqp_c2d = "AmqpC2DMessagesNotInAllowedRange"
    cfg = conf(tmp, rule(amqp_c2d, 0, 7))
    hub = write_lines(
        tmp / "hub.jsonl",
        [
            hub_event(t("10:01"), "a", op="c2d", protocol="amqp", count=7),
            hub_event(t("10:02"), "a", op="c2d", protocol="amqp"),  # no count → 1
            hub_event(t("10:01"), "b", op="c2d", protocol="amqp", count=7),  # exactly max
        ],
    )
    alerts, _ = run_replay(cfg, [hub])
    assert brief(alerts) == [(amqp_c2d, "a", None, "10:00", "10:15", [8], "open")]


def test_unauthorized_401_and_401xxx_count_in_addition(tmp: Path) -> None:
    cfg = conf(tmp, rule(UNAUTH), rule(MQTT_D2C), rule(METHODS))
    hub = write_lines(
        tmp / "hub.jsonl",
        [
            d2c("10:05", "u1", status=401),
            hub_event(t("10:05"), "u2", op="method", protocol=None, status=401003),
            d2c("10:05", "u3", status=403),  # not unauthorized
            d2c("10:05", "u4", count=3, status=200),
            d2c("10:05", "u4", count=2, status=401),  # the weight counts for both rules
        ],
    )
    log = write_lines(
        tmp / "log.jsonl",
        [
            hub_log("10:05", "h1", "DirectMethods", "send", result_type="401"),
            hub_log(
                "10:05", "h2", "Connections", "deviceConnect", result_type="", statusCode="401001"
            ),  # counts only as unauthorized
            hub_log("10:05", "h3", "C2DCommands", "send", result_type="200", statusCode=200),
        ],
    )
    alerts, _ = run_replay(cfg, [hub, log])
    w = ("10:00", "10:15")
    assert brief(alerts) == [
        (METHODS, "h1", None, *w, [1], "open"),
        (METHODS, "u2", None, *w, [1], "open"),
        (MQTT_D2C, "u1", None, *w, [1], "open"),
        (MQTT_D2C, "u3", None, *w, [1], "open"),
        (MQTT_D2C, "u4", None, *w, [5], "open"),
        (UNAUTH, "h1", None, *w, [1], "open"),
        (UNAUTH, "h2", None, *w, [1], "open"),
        (UNAUTH, "u1", None, *w, [1], "open"),
        (UNAUTH, "u2", None, *w, [1], "open"),
        (UNAUTH, "u4", None, *w, [2], "open"),
    ]


def test_protocol_names_fold_case_and_websocket_variants(tmp: Path) -> None:
    cfg = conf(tmp, rule(AMQP_D2C), rule(MQTT_D2C), rule(HTTP_D2C))
    protocols = ["Amqp", "AmqpWs", "AMQP", "Mqtt", "MqttWs", "mqtt", "MQTTWS", "Http", "Https"]
    hub = write_lines(tmp / "hub.jsonl", [d2c("10:05", "a", protocol=p) for p in protocols])
    alerts, _ = run_replay(cfg, [hub])
    w = ("10:00", "10:15")
    assert brief(alerts) == [
        (AMQP_D2C, "a", None, *w, [3], "open"),
        (HTTP_D2C, "a", None, *w, [2], "open"),
        (MQTT_D2C, "a", None, *w, [4], "open"),
    ]


# --- §3 Groups ---------------------------------------------------------------------------------------


def test_rules_absent_from_group_are_disabled(tmp: Path) -> None:
    disabled = f"[groups.default.rules.{HTTP_D2C}]\nenabled = false\nmax = 0\n"
    cfg = conf(
        tmp, rule(MQTT_D2C), disabled, rule(AMQP_D2C, group="lab"), devices='"lab-*" = "lab"'
    )
    hub = write_lines(
        tmp / "hub.jsonl",
        [d2c("10:05", dev, protocol=p) for dev in ("lab-1", "x") for p in ("mqtt", "amqp", "http")],
    )
    alerts, _ = run_replay(cfg, [hub])
    assert [(a["rule"], a["device"], a["group"]) for a in alerts] == [
        (AMQP_D2C, "lab-1", "lab"),
        (MQTT_D2C, "x", "default"),
    ]


def test_device_group_mapping_exact_then_glob_then_default(tmp: Path) -> None:
    devices = '"lab-*" = "lab"\n"lab-1*" = "other"\n"*-2" = "Other"\n"lab-special" = "SPECIAL"'
    cfg = conf(
        tmp,
        *(rule(MQTT_D2C, group=g) for g in ("default", "lab", "other", "special")),
        devices=devices,
    )
    hub = write_lines(
        tmp / "hub.jsonl",
        [d2c("10:05", dev) for dev in ("lab-1x", "lab-special", "zzz", "dev-2", "lab-2")],
    )
    alerts, _ = run_replay(cfg, [hub])
    assert {a["device"]: a["group"] for a in alerts} == {
        "lab-1x": "lab",  # both patterns match: the first in file order wins
        "lab-special": "special",  # an exact id wins over patterns; names fold case
        "zzz": "default",  # no entry
        "dev-2": "other",
        "lab-2": "lab",
    }


# --- §6 Output order ---------------------------------------------------------------------------------


def test_output_sorted_by_start_rule_device_value(tmp: Path) -> None:
    cfg = conf(tmp, rule(MQTT_D2C), rule(AMQP_D2C), allow(PROCESS, ["ok"]), quiet="PT1M")
    hub = write_lines(
        tmp / "hub.jsonl",
        [
            d2c("10:01", "b"),
            d2c("10:02", "a", protocol="amqp"),
            d2c("10:03", "a"),
        ],
    )
    early = write_lines(tmp / "early.jsonl", [d2c("09:50", "z")])
    sec = write_lines(
        tmp / "sec.jsonl",
        [
            proc("b", "10:00", "/a"),
            proc("a", "10:00", "/b"),
            proc("a", "10:00", "/a"),
            proc("a", "10:00:00.5", "/0"),
        ],
    )
    alerts, _ = run_replay(cfg, [sec, hub, early])
    got = [(a["start"], a["rule"], a["device"], a.get("value")) for a in alerts]
    assert got[-1][0].startswith(D + "10:00:00.5")
    assert got[:-1] == [
        (t("09:45"), MQTT_D2C, "z", None),
        (t("10:00"), AMQP_D2C, "a", None),
        (t("10:00"), MQTT_D2C, "a", None),
        (t("10:00"), MQTT_D2C, "b", None),
        (t("10:00"), PROCESS, "a", "/a"),
        (t("10:00"), PROCESS, "a", "/b"),
        (t("10:00"), PROCESS, "b", "/a"),
    ]
    assert got[-1][1:] == (PROCESS, "a", "/0")


# --- §1 Allow-list matching ----------------------------------------------------------------------


def conn(device: str, hms: str, direction: str, address: str) -> dict[str, Any]:
    return security_message(
        device,
        agent_event(
            "ConnectionCreate",
            t(hms),
            {
                "Direction": direction,
                "RemoteAddress": address,
                "RemotePort": "443",
                "LocalAddress": "10.0.0.9",
                "LocalPort": "50000",
                "Protocol": "tcp",
            },
        ),
    )


def login(device: str, hms: str, result: str, **user: str) -> dict[str, Any]:
    return security_message(device, agent_event("Login", t(hms), {"Result": result, **user}))


def test_allowlist_matching_cidr_mapped_ipv6_basename(tmp: Path) -> None:
    cfg = conf(
        tmp,
        allow("ConnectionToIpNotAllowed", ["10.0.0.0/8", "2001:db8::/32", "192.168.1.5"]),
        allow("ConnectionFromIpNotAllowed", ["172.16.0.0/12"]),
        allow(PROCESS, ["ok", "/usr/sbin/sshd"]),
        allow("LocalUserNotAllowed", ["root"]),
        quiet="PT1H",
    )
    sec = write_lines(
        tmp / "sec.jsonl",
        [
            conn("a", "10:01", "Out", "10.1.2.3"),  # in 10.0.0.0/8
            conn("a", "10:02", "Out", "::ffff:10.9.9.9"),  # mapped → IPv4 10.9.9.9
            conn("a", "10:03", "Out", "2001:db8:1::1"),
            conn("a", "10:04", "Out", "192.168.1.5"),  # a bare address is a /32
            conn("a", "10:05", "Out", "192.168.1.6"),  # ✗
            conn("a", "10:06", "Out", "::ffff:11.0.0.1"),  # ✗, value as written
            conn("a", "10:07", "In", "10.1.2.3"),  # ✗ for ConnectionFromIp (its own list)
            conn("a", "10:08", "In", "172.16.5.5"),
            proc("a", "10:09", "/usr/bin/ok"),  # base name
            proc("a", "10:10", "C:\\tools\\ok"),  # base name after a backslash
            proc("a", "10:11", "/bin/sshd"),  # ✗: a full-path entry must equal the whole path
            proc("a", "10:12", "/usr/sbin/sshd"),
            proc("a", "10:13", "OK"),  # ✗: case-sensitive
            login("a", "10:14", "Success", UserName="root"),
            login("a", "10:15", "Success", UserName="Root"),  # ✗
            login("a", "10:16", "Success", UserId="svc"),  # ✗ (UserId when no UserName)
            login("a", "10:17", "Fail", UserName="mallory"),  # failed logins are not checked
        ],
    )
    alerts, _ = run_replay(cfg, [sec])
    assert [(a["rule"], a["value"], hhmm(a["start"]), a["occurrences"]) for a in alerts] == [
        ("ConnectionToIpNotAllowed", "192.168.1.6", "10:05", 1),
        ("ConnectionToIpNotAllowed", "::ffff:11.0.0.1", "10:06", 1),
        ("ConnectionFromIpNotAllowed", "10.1.2.3", "10:07", 1),
        (PROCESS, "/bin/sshd", "10:11", 1),
        (PROCESS, "OK", "10:13", 1),
        ("LocalUserNotAllowed", "Root", "10:15", 1),
        ("LocalUserNotAllowed", "svc", "10:16", 1),
    ]
    assert {a["source"] for a in alerts} == {"Agent"}


def test_unparsable_address_is_a_violation_with_raw_value(tmp: Path) -> None:
    cfg = conf(tmp, allow("ConnectionToIpNotAllowed", ["0.0.0.0/0", "::/0"]), quiet="PT1H")
    sec = write_lines(
        tmp / "sec.jsonl",
        [
            conn("a", "10:01", "Out", "10.0.0.1"),
            conn("a", "10:02", "Out", "not-an-ip"),
            conn("a", "10:03", "Out", "999.1.1.1"),
            conn("a", "10:04", "Out", "2001:db8::1"),
        ],
    )
    alerts, _ = run_replay(cfg, [sec])
    assert brief(alerts) == [
        ("ConnectionToIpNotAllowed", "a", "not-an-ip", "10:02", "10:02", 1, "open"),
        ("ConnectionToIpNotAllowed", "a", "999.1.1.1", "10:03", "10:03", 1, "open"),
    ]


# --- §2 hub-log mapping -------------------------------------------------------------------------


def test_hub_log_direct_methods_send(tmp: Path) -> None:
    cfg = conf(tmp, rule(METHODS, 0, 1))
    log = write_lines(
        tmp / "log.jsonl",
        [
            hub_log("10:01", "a", "DirectMethods", "send", methodName="reboot"),
            hub_log("10:02", "a", "DirectMethods", "send", methodName="reboot"),
            hub_log("10:03", "b", "DirectMethods", "send"),
            hub_log("10:04", "b", "DirectMethods", "receive"),  # not a "send": stored, not counted
        ],
    )
    db = tmp / "m.db"
    alerts, _ = run_replay(cfg, [log], db=str(db))
    assert brief(alerts) == [(METHODS, "a", None, "10:00", "10:15", [2], "open")]
    # The "receive" record is stored, counting toward no rule.
    assert db_rows(db, "SELECT name, rule FROM events WHERE rule IS NULL") == [
        ("DirectMethods/receive", None)
    ]


def test_hub_log_twin_update_d2c_and_c2d(tmp: Path) -> None:
    cfg = conf(tmp, rule(TWIN))
    log = write_lines(
        tmp / "log.jsonl",
        [
            hub_log("10:01", "a", "D2CTwinOperations", "update"),
            hub_log("10:02", "a", "C2DTwinOperations", "update"),
            hub_log("10:03", "a", "D2CTwinOperations", "read"),  # not an update
            hub_log("10:04", "b", "C2DTwinOperations", "read"),
        ],
    )
    alerts, _ = run_replay(cfg, [log])
    assert brief(alerts) == [(TWIN, "a", None, "10:00", "10:15", [2], "open")]


def test_hub_log_file_upload_ingress(tmp: Path) -> None:
    cfg = conf(tmp, rule(UPLOADS))
    log = write_lines(
        tmp / "log.jsonl",
        [
            hub_log("10:01", "a", "FileUploadOperations", "ingress", blobUri="https://x/b"),
            hub_log("10:02", "b", "FileUploadOperations", "notify"),  # not an ingress
        ],
    )
    alerts, _ = run_replay(cfg, [log])
    assert brief(alerts) == [(UPLOADS, "a", None, "10:00", "10:15", [1], "open")]


def test_hub_log_device_telemetry_ingress_with_protocol(tmp: Path) -> None:
    cfg = conf(tmp, rule(MQTT_D2C), rule(AMQP_D2C), rule(HTTP_D2C))
    log = write_lines(
        tmp / "log.jsonl",
        [
            hub_log("10:01", "a", "DeviceTelemetry", "ingress", protocol="MqttWs"),
            hub_log("10:02", "a", "DeviceTelemetry", "ingress", protocol="Https"),
            hub_log("10:03", "a", "DeviceTelemetry", "ingress", protocol="Https"),
            # No protocol, and no connect to take one from: stored as a message of unknown
            # protocol (the pseudo rule id D2C_UNKNOWN), counted by no rule.
            hub_log("10:04", "b", "DeviceTelemetry", "ingress"),
        ],
    )
    db = tmp / "t.db"
    alerts, _ = run_replay(cfg, [log], db=str(db))
    assert brief(alerts) == [
        (HTTP_D2C, "a", None, "10:00", "10:15", [2], "open"),
        (MQTT_D2C, "a", None, "10:00", "10:15", [1], "open"),
    ]
    stored = db_rows(
        db,
        "SELECT d.name, e.rule FROM events e JOIN devices d ON d.id = e.device WHERE d.name = 'b'",
    )
    assert stored == [("b", D2C_UNKNOWN)]


def test_hub_log_connections_register_device(tmp: Path) -> None:
    """c appears only in a Connections record at 10:05: known from then, so its windows 10:15 and
    10:30 are below min 1; d's method calls keep time going to T_last 10:50."""
    cfg = conf(tmp, rule(METHODS, 1, 5))
    log = write_lines(
        tmp / "log.jsonl",
        [
            hub_log("10:05", "c", "Connections", "deviceConnect", protocol="Mqtt"),
            *(
                hub_log(h, "d", "DirectMethods", "send")
                for h in ("10:05", "10:20", "10:35", "10:50")
            ),
        ],
    )
    alerts, _ = run_replay(cfg, [log])
    assert brief(alerts) == [(METHODS, "c", None, "10:15", "10:45", [0, 0], "open")]


def test_hub_log_properties_as_json_string(tmp: Path) -> None:
    cfg = conf(tmp, rule(METHODS))
    log = write_lines(
        tmp / "log.jsonl",
        [
            hub_log("10:01", "a", "DirectMethods", "send", props_as_string=True),
            hub_log("10:02", "a", "DirectMethods", "send"),
        ],
    )
    alerts, _ = run_replay(cfg, [log])
    assert brief(alerts) == [(METHODS, "a", None, "10:00", "10:15", [2], "open")]


def test_hub_log_records_batch_lines(tmp: Path) -> None:
    """Event Hubs export: each line is ``{"records": [...]}`` (properties as strings, as Event
    Hubs delivers them)."""
    cfg = conf(tmp, rule(METHODS))
    log = write_lines(
        tmp / "log.jsonl",
        [
            {
                "records": [
                    hub_log("10:01", "a", "DirectMethods", "send", props_as_string=True),
                    hub_log("10:02", "b", "DirectMethods", "send", props_as_string=True),
                ]
            },
            {"records": [hub_log("10:03", "a", "DirectMethods", "send", props_as_string=True)]},
        ],
    )
    alerts, summary = run_replay(cfg, [log])
    assert brief(alerts) == [
        (METHODS, "a", None, "10:00", "10:15", [2], "open"),
        (METHODS, "b", None, "10:00", "10:15", [1], "open"),
    ]
    assert summary.events == 3


def test_hub_log_file_holding_one_records_document(tmp: Path) -> None:
    """A file holding one pretty-printed ``{"records": [...]}`` document."""
    cfg = conf(tmp, rule(METHODS))
    doc = {
        "records": [
            hub_log("10:01", "a", "DirectMethods", "send"),
            hub_log("10:02", "a", "DirectMethods", "send"),
        ]
    }
    path = tmp / "batch.json"
    path.write_text(json.dumps(doc, indent=2) + "\n")
    alerts, _ = run_replay(cfg, [path])
    assert brief(alerts) == [(METHODS, "a", None, "10:00", "10:15", [2], "open")]


def test_hub_log_seven_digit_fractions(tmp: Path) -> None:
    """IoT Hub writes seven fraction digits; 10:14:59.1234567 is in window 10:00 and
    10:15:00.0000001 in window 10:15."""
    cfg = conf(tmp, rule(METHODS))
    log = write_lines(
        tmp / "log.jsonl",
        [
            hub_log(D + "10:14:58.0000000Z", "a", "DirectMethods", "send"),
            hub_log(D + "10:14:59.1234567Z", "a", "DirectMethods", "send"),
            hub_log(D + "10:15:00.0000001Z", "a", "DirectMethods", "send"),
        ],
    )
    db = tmp / "f.db"
    alerts, summary = run_replay(cfg, [log], db=str(db))
    assert brief(alerts) == [(METHODS, "a", None, "10:00", "10:30", [2, 1], "open")]
    assert sum(summary.quarantined.values()) == 0
    seconds = [r[0] for r in db_rows(db, "SELECT time_us / 1000000 % 3600 FROM events ORDER BY id")]
    assert seconds == [14 * 60 + 58, 14 * 60 + 59, 15 * 60]


# --- §2 security messages -------------------------------------------------------------------------


def message(*events: dict[str, Any]) -> dict[str, Any]:
    return {
        "AgentVersion": "1.0",
        "AgentId": "x",
        "MessageSchemaVersion": "1.0",
        "Events": list(events),
    }


def bad_proc(stamp: str, category: str = "Triggered") -> dict[str, Any]:
    return agent_event("ProcessCreate", stamp, {"Executable": "/bin/bad"}, category=category)


def test_security_message_envelopes(tmp: Path) -> None:
    """``{deviceId, body}``, ``az iot hub monitor-events`` output, and a bare message with
    ``DeviceId``."""
    cfg = conf(tmp, allow(PROCESS, ["ok"]), quiet="PT1H")
    sec = write_lines(
        tmp / "sec.jsonl",
        [
            {"deviceId": "env-body", "body": message(bad_proc(t("10:01")))},
            {
                "event": {
                    "origin": "env-az",
                    "module": "",
                    "interface": "",
                    "component": "",
                    "payload": message(bad_proc(t("10:02"))),
                }
            },
            {"DeviceId": "env-bare", **message(bad_proc(t("10:03")))},
        ],
    )
    alerts, summary = run_replay(cfg, [sec])
    assert [(a["device"], hhmm(a["start"])) for a in alerts] == [
        ("env-body", "10:01"),
        ("env-az", "10:02"),
        ("env-bare", "10:03"),
    ]
    assert sum(summary.quarantined.values()) == 0


def test_security_message_timestamp_spellings_and_categories(tmp: Path) -> None:
    cfg = conf(tmp, allow(PROCESS, ["ok"]), quiet="PT1H")
    stamps = [
        ("2026-11-28T10:01:00Z", "Triggered", "10:01"),
        ("2026-11-28 10:02:00Z", "Periodic", "10:02"),
        ("2026-11-28 10:03:00.250Z", "Aggregated", "10:03:00.25"),
        ("2026-11-28T10:04:00.1234567Z", "Triggered", "10:04:00.12345"),
        ("2026-11-28T10:05:00", "Triggered", "10:05"),  # no zone: UTC
    ]
    sec = write_lines(
        tmp / "sec.jsonl",
        [
            security_message(f"d{i}", bad_proc(stamp, category))
            for i, (stamp, category, _) in enumerate(stamps)
        ],
    )
    alerts, summary = run_replay(cfg, [sec])
    assert sum(summary.quarantined.values()) == 0
    got = {a["device"]: a["start"] for a in alerts}
    for i, (_, _, clock) in enumerate(stamps):
        assert got[f"d{i}"].startswith(D + clock), (got[f"d{i}"], clock)


def test_security_message_with_only_events(tmp: Path) -> None:
    """A message needs only ``Events``; an event only ``Name``, ``Payload`` and ``TimestampUTC``."""
    cfg = conf(tmp, allow(PROCESS, ["ok"]), quiet="PT1H")
    ev = {
        "Name": "ProcessCreate",
        "TimestampUTC": t("10:01"),
        "Payload": [{"Executable": "/bin/bad"}],
    }
    sec = write_lines(
        tmp / "sec.jsonl",
        [
            {"deviceId": "m1", "body": {"Events": [ev]}},
            {"DeviceId": "m2", "Events": [ev]},
            {"event": {"origin": "m3", "payload": {"Events": [ev]}}},
        ],
    )
    alerts, summary = run_replay(cfg, [sec])
    assert sorted(a["device"] for a in alerts) == ["m1", "m2", "m3"]
    assert sum(summary.quarantined.values()) == 0


def test_security_message_unused_names_are_stored_not_counted(tmp: Path) -> None:
    """A ``SystemInformation`` event counts toward nothing but makes its device known."""
    active = "ActiveConnectionsNotInAllowedRange"
    cfg = conf(tmp, rule(active, 1, 5))
    sec = write_lines(
        tmp / "sec.jsonl",
        [
            security_message(
                "s",
                agent_event("SystemInformation", t("10:05"), {"OSName": "x"}, category="Periodic"),
            ),
            *(conn("c", h, "Out", "10.0.0.1") for h in ("10:05", "10:20", "10:35", "10:50")),
        ],
    )
    db = tmp / "s.db"
    alerts, _ = run_replay(cfg, [sec], db=str(db))
    assert brief(alerts) == [(active, "s", None, "10:15", "10:45", [0, 0], "open")]
    assert db_rows(
        db,
        "SELECT d.name, e.name, e.rule FROM events e JOIN devices d"
        " ON d.id = e.device WHERE d.name = 's'",
    ) == [("s", "SystemInformation", None)]


# --- §2 formats and times -----------------------------------------------------------------------


def test_forced_format_prefix(tmp: Path) -> None:
    """``FORMAT:PATH`` decodes the file as FORMAT, whatever its records look like."""
    cfg = conf(tmp, rule(MQTT_D2C))
    hub = write_lines(tmp / "hub.jsonl", [d2c("10:05", "a"), d2c("10:06", "a")])
    sniffed, _ = run_replay(cfg, [hub])
    forced, _ = run_replay(cfg, [f"hub-events:{hub}"])
    assert sniffed == forced
    assert brief(forced) == [(MQTT_D2C, "a", None, "10:00", "10:15", [2], "open")]
    # Forced as security messages, hub-events records lack Events: all quarantined.
    wrong, summary = run_replay(cfg, [f"security-messages:{hub}"])
    assert wrong == []
    assert (summary.events, sum(summary.quarantined.values())) == (0, 2)


def test_format_sniffed_from_first_parsable_record(tmp: Path) -> None:
    cfg = conf(tmp, rule(METHODS))
    path = tmp / "log.jsonl"
    path.write_bytes(
        b"garbage\n\n" + orjson.dumps(hub_log("10:01", "a", "DirectMethods", "send")) + b"\n"
    )
    alerts, summary = run_replay(cfg, [path])
    assert brief(alerts) == [(METHODS, "a", None, "10:00", "10:15", [1], "open")]
    assert sum(summary.quarantined.values()) == 1


def test_time_zone_offsets_are_converted_and_no_zone_is_utc(tmp: Path) -> None:
    """12:05+02:00 is 10:05Z and 05:20-05:00 is 10:20Z; a time without zone is UTC."""
    cfg = conf(tmp, rule(MQTT_D2C))
    hub = write_lines(
        tmp / "hub.jsonl",
        [
            hub_event(D + "12:05:00+02:00", "a"),
            hub_event(D + "05:20:00-05:00", "a", count=2),
            hub_event(D + "10:35:00", "a", count=3),
        ],
    )
    alerts, summary = run_replay(cfg, [hub])
    assert summary.expired == 0
    assert brief(alerts) == [(MQTT_D2C, "a", None, "10:00", "10:45", [1, 2, 3], "open")]


# --- §2 hub-events ops -------------------------------------------------------------------------


def test_hub_events_all_seven_ops(tmp: Path) -> None:
    """Each op with a distinct weight, so that no two ops can be mistaken for each other."""
    ops = [
        ("d2c", "mqtt", MQTT_D2C),
        ("c2d", "amqp", "AmqpC2DMessagesNotInAllowedRange"),
        ("c2d-reject", "http", "HttpC2DRejectedMessagesNotInAllowedRange"),
        ("method", None, METHODS),
        ("upload", None, UPLOADS),
        ("purge", None, "QueuePurgesNotInAllowedRange"),
        ("twin-update", None, TWIN),
    ]
    cfg = conf(tmp, *(rule(name) for _, _, name in ops))
    hub = write_lines(
        tmp / "hub.jsonl",
        [
            hub_event(t("10:05"), "a", op=op, protocol=p, count=i + 1, moduleId=None, status=200)
            for i, (op, p, _) in enumerate(ops)
        ],
    )
    alerts, _ = run_replay(cfg, [hub])
    expected = sorted(
        (name, "a", None, "10:00", "10:15", [i + 1], "open") for i, (_, _, name) in enumerate(ops)
    )
    assert brief(alerts) == expected
    assert {a["source"] for a in alerts} == {"IoT Hub"}


def test_a_host_timed_event_does_not_move_its_device_clock(tmp: Path) -> None:
    """A clock-less board's first frame has no time: it is timed by the host (the capture's
    mtime, 10:30). That is not the device's clock, so the board's own times that follow
    (10:00-10:29) are not expired against it (issue: 612 of 613 events were dropped)."""
    import os

    from engine.formats.serial import encode_frame

    cfg = conf(tmp, rule("ActiveConnectionsNotInAllowedRange", 0, 1000, "PT1H"), horizon="PT1M")
    item = {"Direction": "Out", "RemoteAddress": "10.0.0.1"}

    def frame(stamp: str | None) -> bytes:
        event: dict[str, Any] = {"Name": "ConnectionCreate", "Payload": [item]}
        if stamp is not None:
            event["TimestampUTC"] = stamp
        return encode_frame({"DeviceId": "board", "Events": [event]})

    data = frame(None) + b"".join(frame(t(f"10:{m:02d}")) for m in range(30))
    path = tmp / "board.capture"
    path.write_bytes(data)
    stamp = parse_time(t("10:30")) / 1_000_000
    os.utime(path, (stamp, stamp))
    db = tmp / "board.db"
    _, summary = run_replay(cfg, [f"serial-capture:{path}"], db=str(db))
    assert (summary.events, summary.expired) == (31, 0)
    assert db_rows(db, "SELECT count(*) FROM events WHERE host_timed = 1") == [(1,)]


def test_a_capture_whose_console_lines_make_hub_events_feeds_the_iot_hub_data_source(
    tmp: Path,
) -> None:
    """Console patterns turn a board's lines into IoT Hub events, so its capture is a stream of
    the IoT Hub data source too: T_last(IoT Hub) is its last line (10:05:10), and the empty
    windows before it — the board's own and the declared silent device's — are complete."""
    conf(tmp, rule(MQTT_D2C, 1, 9, "PT1M"), devices='"silent" = "default"')
    cfg_path = tmp / "iotwatch.toml"
    cfg_path.write_text(
        cfg_path.read_text()
        + '\n[[sources]]\ntype = "serial"\nport = "/dev/null"\n'
        + '[[sources.patterns]]\nmatch = "^(?P<time>\\\\S+) sent"\nop = "d2c"\nprotocol = "mqtt"\n'
    )
    from engine.config import load_config

    cfg = load_config(cfg_path)
    capture = tmp / "board.txt"
    capture.write_text(
        "".join(f"{t(f'10:0{m}:10')} sent\n" for m in (0, 5)) + "booting\n", encoding="utf-8"
    )
    alerts, summary = run_replay(cfg, [f"serial-capture:{capture}"])
    assert summary.events == 2
    assert brief(alerts) == [
        (MQTT_D2C, device, None, "10:01", "10:05", [0, 0, 0, 0], "open")
        for device in ("board", "silent")
    ]

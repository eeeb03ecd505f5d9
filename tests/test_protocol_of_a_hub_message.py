"""SPEC §2 "Protocol of a hub message": a D2C or C2D record without a protocol takes the protocol
of the device's latest connection record at or before its time, from any hub stream; with none
it counts for no per-protocol rule. Order-independent as SPEC §4 requires: the same alerts
whichever stream is read first, and a live session converges to them as connections arrive.

Events are built directly (the decoders mark such records with the pseudo rule ids of
``engine.catalogue``); windows are one minute, max 1 per protocol.
"""

from __future__ import annotations

import random
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from engine import catalogue as c
from engine.config import Config, parse_config
from engine.evaluator import Evaluator
from engine.event import Event, new_event
from engine.timestamps import US, parse_time

T0 = parse_time("2026-11-28T10:00:00Z")
MIN = 60 * US
CONFIG: Config = parse_config(
    {
        "engine": {"lateness": "PT1M", "horizon": "P1D"},
        "groups": {
            "default": {
                "rules": {
                    f"{p.capitalize()}D2CMessagesNotInAllowedRange": {"max": 1, "window": "PT1M"}
                    for p in c.PROTOCOLS
                }
                | {"MqttC2DMessagesNotInAllowedRange": {"max": 0, "window": "PT1M"}}
            }
        },
    },
    "protocol.toml",
)


def message(t: int, kind: int = c.D2C_UNKNOWN, device: str = "a", weight: int = 1) -> Event:
    return new_event((t, device, "DeviceTelemetry", kind, False, 0, None, weight, False, 0))


def connect(t: int, protocol: str, device: str = "a") -> Event:
    return new_event((t, device, "deviceConnect", c.CONNECT, False, 0, protocol, 1, False, 0))


def replay(streams: list[list[Event]]) -> list[tuple]:
    ev = Evaluator(CONFIG)
    clocks = [ev.add_stream(f"s{i}", "hub-log") for i in range(len(streams))]
    for clock, events in zip(clocks, streams, strict=True):
        ev.process(clock, events)
        ev.finish_stream(clock)
    return brief(ev.finish())


def brief(alerts: list) -> list[tuple]:
    return sorted(
        (a.rule.name[:4], a.device, (a.start - T0) // MIN, list(a.counts)) for a in alerts
    )


def test_a_message_takes_the_protocol_of_the_latest_connection_before_it() -> None:
    logs = [message(T0 + 5 * US), message(T0 + 30 * US), message(T0 + MIN + 5 * US)]
    logs += [message(T0 + MIN + 10 * US)]
    connections = [connect(T0, "mqtt"), connect(T0 + MIN, "amqp")]
    # 10:00 holds two MQTT messages (> max 1); 10:01 two AMQP ones.
    expected = [("Amqp", "a", 1, [2]), ("Mqtt", "a", 0, [2])]
    assert replay([logs, connections]) == expected
    assert replay([connections, logs]) == expected  # whichever stream is read first


def test_a_message_with_no_connection_before_it_counts_for_no_protocol() -> None:
    logs = [message(T0 + 5 * US), message(T0 + 6 * US), message(T0 + 7 * US)]
    assert replay([logs, [connect(T0 + 10 * US, "mqtt")]]) == []
    assert replay([logs]) == []


def test_cloud_to_device_messages_too() -> None:
    logs = [message(T0 + 5 * US, c.C2D_UNKNOWN)]
    assert replay([logs, [connect(T0, "MQTT".lower())]]) == [("Mqtt", "a", 0, [1])]


def test_live_a_late_connection_amends_and_a_moved_count_withdraws_an_early_alert() -> None:
    ev = Evaluator(CONFIG, incremental=True)
    ev.watermark.wall_lateness = {"IoT Hub": MIN}
    logs, conns = ev.add_stream("log", "hub-log"), ev.add_stream("conn", "hub-log")
    logs.holding = conns.holding = False
    ev.advance(T0 + 10 * US)
    ev.process(conns, [connect(T0, "mqtt")])
    ev.process(logs, [message(T0 + 20 * US), message(T0 + 25 * US)])
    (alert,) = ev.book.alerts.values()
    assert (alert.rule.name, alert.counts) == ("MqttD2CMessagesNotInAllowedRange", [2])
    # A connection over AMQP at 10:00:15 arrives: both messages were AMQP after all.
    ev.process(conns, [connect(T0 + 15 * US, "amqp")])
    assert alert.state == "withdrawn"
    (now,) = ev.book.alerts.values()
    assert (now.rule.name, now.counts) == ("AmqpD2CMessagesNotInAllowedRange", [2])
    ev.advance(T0 + 3 * MIN)
    assert now.state == "resolved"


@st.composite
def hub_streams(draw: st.DrawFn) -> list[list[Event]]:
    """Two or three hub streams of messages without a protocol and connections, each stream's
    times moving forward by whole seconds over three minutes."""
    streams = []
    for _ in range(draw(st.integers(2, 3))):
        t = T0
        events = []
        for _ in range(draw(st.integers(1, 12))):
            t += draw(st.integers(0, 40)) * US
            device = draw(st.sampled_from(["a", "b"]))
            if draw(st.booleans()):
                events.append(connect(t, draw(st.sampled_from(c.PROTOCOLS)), device))
            else:
                kind = draw(st.sampled_from([c.D2C_UNKNOWN, c.C2D_UNKNOWN]))
                events.append(message(t, kind, device, draw(st.integers(1, 2))))
        streams.append(events)
    return streams


@settings(max_examples=150, deadline=None)
@given(hub_streams(), st.randoms(use_true_random=False))
def test_order_independent_and_live_converges(
    streams: list[list[Event]], rnd: random.Random
) -> None:
    reference = replay(streams)
    assert replay(streams[::-1]) == reference
    # Live: streams interleaved in random batches, the wall clock judging early.
    ev = Evaluator(CONFIG, incremental=True)
    ev.watermark.wall_lateness = {"IoT Hub": 0}
    clocks = [ev.add_stream(f"s{i}", "hub-log") for i in range(len(streams))]
    for clock in clocks:
        clock.holding = False
    t_last = max(e.time for s in streams for e in s)
    cursors = [0] * len(streams)
    live = [i for i, s in enumerate(streams) if s]
    wall = T0
    while live:
        i = rnd.choice(live)
        batch = streams[i][cursors[i] : cursors[i] + rnd.randint(1, 3)]
        cursors[i] += len(batch)
        ev.process(clocks[i], batch)
        if cursors[i] == len(streams[i]):
            live.remove(i)
        wall = min(t_last, wall + rnd.randint(0, 30) * US)
        ev.advance(wall)
    ev.wall = None
    assert brief(ev.finish()) == reference


def test_model_of_the_rule(tmp_path: Path) -> None:
    """A direct statement of the rule over one random dataset, counted by hand."""
    rnd = random.Random(7)
    conns = sorted((T0 + rnd.randint(0, 179) * US, rnd.choice(c.PROTOCOLS)) for _ in range(6))
    msgs = sorted(T0 + rnd.randint(0, 179) * US for _ in range(40))
    counts: dict[tuple[str, int], int] = {}
    for t in msgs:
        before = [p for ct, p in conns if ct <= t]
        if before:
            key = (before[-1], (t - T0) // MIN)
            counts[key] = counts.get(key, 0) + 1
    expected = sorted((p.capitalize()[:4], "a", w, [n]) for (p, w), n in counts.items() if n > 1)
    got = replay([[message(t) for t in msgs], [connect(t, p) for t, p in conns]])
    # Runs of consecutive windows join into one alert: compare window by window.
    flat = sorted(
        (rule, dev, start + k, [n]) for rule, dev, start, ns in got for k, n in enumerate(ns)
    )
    assert flat == expected


def test_the_console_evidence_shows_the_messages_an_alert_counted(tmp_path: Path) -> None:
    """The alert detail lists the stored events behind an MQTT D2C alert: its MQTT messages and
    the messages without a protocol that counted as MQTT (their connection's)."""
    from tests.conftest import config_from, run_replay, write_lines
    from tui.bridge import Bridge
    from tui.panes.alerts import load_alerts
    from tui.screens.detail import evidence

    def log(t: str, category: str, operation: str, **props: object) -> dict[str, object]:
        return {
            "time": t,
            "category": category,
            "operationName": operation,
            "resultType": "Success",
            "properties": {"deviceId": "a", **props},
        }

    cfg = config_from(
        tmp_path,
        '[groups.default.rules.MqttD2CMessagesNotInAllowedRange]\nmax = 1\nwindow = "PT1M"\n',
    )
    d = "2026-11-28T10:00:"
    hub = write_lines(
        tmp_path / "hub.json",
        [
            log(d + "01Z", "Connections", "deviceConnect", protocol="Mqtt"),
            log(d + "05Z", "DeviceTelemetry", "ingress"),
            log(d + "06Z", "DeviceTelemetry", "ingress", protocol="Mqtt"),
            log(d + "07Z", "DeviceTelemetry", "ingress"),
        ],
    )
    db = tmp_path / "e.db"
    records, _ = run_replay(cfg, [f"hub-log:{hub}"], db=str(db))
    assert [r["counts"] for r in records] == [[3]]
    bridge = Bridge(cfg, str(db))
    (alert,) = load_alerts(bridge)
    rows, total = evidence(bridge, alert)
    assert total == 3 and [r[0] % 60_000_000 // 1_000_000 for r in rows] == [5, 6, 7]

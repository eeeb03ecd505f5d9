"""SPEC §8: the worked example, end to end through replay, with both horizons, and live."""

from __future__ import annotations

from pathlib import Path

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

CONFIG = """
[engine]
lateness = "PT1M"
horizon = "PT30M"
quiet = "PT10M"

[devices]
"quiet-dev" = "default"

[groups.default.rules.MqttD2CMessagesNotInAllowedRange]
min = 1
max = 2
window = "PT15M"

[groups.default.rules.ProcessNotAllowed]
allow = ["ok"]
"""

D = "2026-11-28T"


def write_inputs(tmp: Path) -> tuple[Path, Path]:
    hub = write_lines(
        tmp / "hub.jsonl",
        [
            hub_event(D + "10:05:00Z", "a"),
            hub_event(D + "10:20:00Z", "a", count=3),
            hub_event(D + "10:50:00Z", "a"),
            hub_event(D + "10:10:00Z", "a", count=50),
            hub_event(D + "11:20:00Z", "b", protocol="Mqtt", count=5),
        ],
    )
    sec = write_lines(
        tmp / "agent.jsonl",
        [
            security_message(
                "a", agent_event("ProcessCreate", D + "10:06:00Z", {"Executable": "/bin/bad"})
            ),
            security_message(
                "a",
                agent_event(
                    "ProcessCreate",
                    D + "10:15:00Z",
                    {"Executable": "/bin/bad", "ExtraDetails": {"HitCount": "4"}},
                    category="Aggregated",
                ),
            ),
            security_message(
                "a", agent_event("ProcessCreate", D + "10:40:00Z", {"Executable": "/usr/bin/ok"})
            ),
        ],
    )
    return hub, sec


def brief(alerts: list[dict]) -> list[tuple]:
    return [
        (
            a["rule"],
            a["device"],
            a.get("value"),
            a["start"][11:16],
            a["end"][11:16],
            a.get("counts", a.get("occurrences")),
            a["state"],
        )
        for a in alerts
    ]


EXPECTED = [
    ("ProcessNotAllowed", "a", "/bin/bad", "10:06", "10:15", 5, "resolved"),
    ("MqttD2CMessagesNotInAllowedRange", "a", None, "10:15", "10:45", [3, 0], "resolved"),
    ("MqttD2CMessagesNotInAllowedRange", "quiet-dev", None, "10:15", "11:15", [0, 0, 0, 0], "open"),
    ("MqttD2CMessagesNotInAllowedRange", "a", None, "11:00", "11:15", [0], "open"),
    ("MqttD2CMessagesNotInAllowedRange", "b", None, "11:15", "11:30", [5], "open"),
]


# With horizon P1D the 10:10 event (40 minutes behind a's latest) is counted.
EXPECTED_P1D = [
    ("MqttD2CMessagesNotInAllowedRange", "a", None, "10:00", "10:45", [51, 3, 0], "resolved"),
    *EXPECTED[:1],
    *EXPECTED[2:],
]
CONFIG_P1D = CONFIG.replace('horizon = "PT30M"', 'horizon = "P1D"')


def test_worked_example_alerts(tmp: Path) -> None:
    config = config_from(tmp, CONFIG)
    alerts, summary = run_replay(config, write_inputs(tmp))
    assert brief(alerts) == EXPECTED
    assert summary.expired == 1
    assert summary.events == 8


def test_worked_example_with_horizon_p1d_counts_the_late_event(tmp: Path) -> None:
    config = config_from(tmp, CONFIG_P1D)
    alerts, summary = run_replay(config, write_inputs(tmp))
    assert brief(alerts) == EXPECTED_P1D
    assert summary.expired == 0


def _decoded(path: Path) -> list:
    stream = JsonStream()
    stream.feed(path.read_bytes())
    stream.finish()
    return stream.take()[0]


def test_worked_example_live_amends_the_judged_window_keeping_the_alert_id(tmp: Path) -> None:
    """SPEC §8, last paragraph: a live session that judged a's 10:00 window before the 10:10
    event arrived amends the alert that opened at 10:15 into the P1D record, same id."""
    config = config_from(tmp, CONFIG_P1D)
    hub_path, sec_path = write_inputs(tmp)
    hub, sec = _decoded(hub_path), _decoded(sec_path)
    ev = Evaluator(config, incremental=True)
    ev.configure_sources(config)
    ev.watermark.wall_lateness = {"IoT Hub": 60 * US, "Agent": 60 * US}
    hub_clock = ev.add_stream("hub", "hub-events")
    sec_clock = ev.add_stream("agent", "security-messages")
    hub_clock.holding = sec_clock.holding = False  # live sources that have caught up
    ev.advance(parse_time(D + "10:05:30Z"))
    ev.process(sec_clock, sec[:2])
    ev.process(hub_clock, hub[:1])
    ev.advance(parse_time(D + "10:21:00Z"))
    ev.process(hub_clock, hub[1:2])
    ev.process(sec_clock, sec[2:])
    ev.advance(parse_time(D + "10:51:00Z"))
    ev.process(hub_clock, hub[2:3])
    ev.advance(parse_time(D + "11:01:30Z"))
    before = {a.id: a.to_record() for a in ev.book.alerts.values() if a.device == "a"}
    opened = next(i for i, r in before.items() if r["rule"].startswith("Mqtt"))
    assert before[opened]["start"].endswith("10:15:00Z")
    assert before[opened]["counts"] == [3, 0] and before[opened]["state"] == "resolved"
    ev.process(hub_clock, hub[3:4])  # 10:10, count 50: its window was judged at 10:16
    after = ev.book.alerts[opened].to_record()
    assert after["start"].endswith("10:00:00Z") and after["counts"] == [51, 3, 0]
    assert after["state"] == "resolved" and after["amended"] is True
    ev.process(hub_clock, hub[4:])
    records = sorted((a.to_record() for a in ev.finish()), key=lambda r: r["start"])
    for record in records:
        record.pop("amended", None)
    replayed, _ = run_replay(config, [hub_path, sec_path])
    assert brief(records) == brief(sorted(replayed, key=lambda r: r["start"]))


def test_worked_example_independent_of_input_order(tmp: Path) -> None:
    config = config_from(tmp, CONFIG)
    hub, sec = write_inputs(tmp)
    first, _ = run_replay(config, [hub, sec])
    second, _ = run_replay(config, [sec, hub])
    assert first == second


def test_alert_record_shape(tmp: Path) -> None:
    config = config_from(tmp, CONFIG)
    alerts, _ = run_replay(config, write_inputs(tmp))
    rng = next(a for a in alerts if a["device"] == "b")
    assert list(rng) == [
        "rule",
        "type",
        "name",
        "severity",
        "source",
        "device",
        "group",
        "start",
        "end",
        "state",
        "window",
        "min",
        "max",
        "counts",
        "description",
        "remediation",
    ]
    assert rng["type"] == "IoT_CA_MqttD2CMessagesNotInAllowedRange"
    assert rng["name"] == (
        "Custom alert - The number of device to cloud messages in MQTT "
        "protocol is outside the allowed range"
    )
    assert (rng["severity"], rng["source"], rng["group"], rng["window"]) == (
        "Low",
        "IoT Hub",
        "default",
        "PT15M",
    )
    assert rng["start"] == "2026-11-28T11:15:00Z"
    proc = alerts[0]
    assert proc["source"] == "Agent" and proc["value"] == "/bin/bad" and proc["occurrences"] == 5
    assert "window" not in proc and "counts" not in proc
    assert proc["description"] and proc["remediation"]

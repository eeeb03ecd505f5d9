"""SPEC §8: the worked example, end to end through replay."""

from __future__ import annotations

from pathlib import Path

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


def test_worked_example_alerts(tmp: Path) -> None:
    config = config_from(tmp, CONFIG)
    alerts, summary = run_replay(config, write_inputs(tmp))
    assert brief(alerts) == EXPECTED
    assert summary.late == 1
    assert summary.events == 8


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

"""Every real-format sample in ``tests/realdata`` (see its README for the sources) yields what
docs/formats.md promises: records, events by name, hub records, quarantine by reason.

Microsoft's documentation examples hold placeholders ("UTC timestamp") and typos; exactly those
records are quarantined, with the reason that names the fault.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest

from engine import catalogue as c
from engine.azure_groups import load_azure_groups
from engine.config import Config, ConfigError
from tests.conftest import hub_event, run_replay

REAL = Path(__file__).resolve().parent / "realdata"


def replay_file(tmp_path: Path, name: str, prefix: str = "") -> dict[str, Any]:
    """Replay one sample into a database; what it yielded."""
    db = tmp_path / "r.db"
    _, summary = run_replay(Config.default(), [prefix + str(REAL / name)], db=str(db))
    with sqlite3.connect(db) as conn:
        events = Counter(name for (name,) in conn.execute("SELECT name FROM events"))
        pseudo = conn.execute(
            "SELECT name, rule, value FROM events WHERE rule >= 100 ORDER BY id"
        ).fetchall()
        hub = conn.execute(
            "SELECT category, operation, result FROM hub_records ORDER BY id"
        ).fetchall()
        parts = conn.execute("SELECT reason, part FROM quarantine ORDER BY id").fetchall()
        console = conn.execute("SELECT count(*) FROM console").fetchone()[0]
        fmt = conn.execute("SELECT format FROM streams").fetchone()[0]
    return {
        "summary": summary,
        "first": summary.lines()[0],
        "quarantined": dict(summary.quarantined),
        "events": dict(events),
        "pseudo": pseudo,
        "hub": hub,
        "parts": parts,
        "console": console,
        "format": fmt,
    }


# -- hub-log ---------------------------------------------------------------------------------------


def test_monitoring_reference_examples(tmp_path: Path) -> None:
    """The 16 examples of "Azure IoT Hub monitoring data reference": two are hub-wide records
    (Configurations, Routes: no device by design), one is a valid device record (DeviceStreams);
    the others hold the page's placeholders and typos."""
    got = replay_file(tmp_path, "hub-log/monitor-reference-examples-verbatim.json")
    assert got["first"] == "records 16, events 1, expired 0, quarantined 13, alerts 0"
    assert got["summary"].lines()[1] == "  hub records        2"
    assert got["summary"].hub_records == 2
    assert got["hub"] == [
        ("Configurations", "ReadManyConfigurations", None),
        ("Routes", "endpointUnhealthy", "403004"),
    ]
    assert got["events"] == {"DeviceStreams/invoke": 1}
    # "UTC timestamp" placeholders; unquoted <messageSize> values and a doubled colon.
    assert got["quarantined"] == {"bad time: time": 9, "bad JSON in properties": 4}
    # Each document is a one-element ``records`` batch: the element is part 0, and the reason
    # names no index, so that one fault is one reason however many records have it.
    assert {part for _, part in got["parts"]} == {0}
    assert "missing device" not in got["quarantined"]


@pytest.mark.parametrize(
    "name",
    ["learn-az220-connections-formatted.json", "learn-az220-connections-jsonlines.json"],
)
def test_storage_export_connections(tmp_path: Path, name: str) -> None:
    got = replay_file(tmp_path, f"hub-log/{name}")
    assert got["first"] == "records 2, events 2, expired 0, quarantined 0, alerts 0"
    assert got["events"] == {"Connections/deviceConnect": 1, "Connections/deviceDisconnect": 1}
    # The connect names the device's protocol (SPEC §2): a CONNECT pseudo event.
    assert got["pseudo"] == [("Connections/deviceConnect", c.CONNECT, "mqtt")]
    assert got["hub"] == []


def test_properties_as_an_object(tmp_path: Path) -> None:
    got = replay_file(tmp_path, "hub-log/tutorial-metrics-diags-properties-object.json")
    assert got["first"] == "records 2, events 2, expired 0, quarantined 0, alerts 0"
    assert got["events"] == {"Connections/deviceConnect": 1, "Connections/deviceDisconnect": 1}
    assert got["pseudo"] == [("Connections/deviceConnect", c.CONNECT, "mqtt")]


# -- security messages -----------------------------------------------------------------------------


def test_schema_samples_valid(tmp_path: Path) -> None:
    got = replay_file(tmp_path, "security-messages/samples-valid-envelope.jsonl")
    assert got["first"] == "records 13, events 35, expired 0, quarantined 0, alerts 0"
    assert got["format"] == "security-messages"
    # One event per payload item (an empty payload: one event), as the samples hold them.
    assert got["events"] == {
        "ConnectedHardware": 2,
        "ConnectionCreate": 2,
        "Diagnostic": 1,
        "FirewallConfiguration": 3,
        "ListeningPorts": 4,
        "LocalUsers": 3,
        "Login": 1,
        "OSBaseline": 14,
        "ProcessCreate": 3,
        "ProcessTerminate": 1,
        "SystemInformation": 1,
    }


def test_schema_samples_invalid(tmp_path: Path) -> None:
    """iotwatch is liberal (SPEC §2): of the schema's invalid samples, those that still hold a
    message with events are read; the others are quarantined for what they lack."""
    got = replay_file(tmp_path, "security-messages/samples-invalid-envelope.jsonl")
    assert got["first"] == "records 6, events 2, expired 0, quarantined 3, alerts 0"
    assert got["events"] == {"ConnectionCreate": 1, "ProcessCreate": 1}
    assert got["quarantined"] == {
        "bad JSON in message body": 1,  # "body": ""
        "message is not an object": 1,  # "body": []
        "missing Events": 1,  # "body": {}
    }


def test_schema_samples_container_is_no_input(tmp_path: Path) -> None:
    """The schema's test file is one document {"valid": [...], "invalid": [...]}: no format's
    record (its messages are read through the envelope files above)."""
    got = replay_file(tmp_path, "security-messages/azure-iot-security-tests-samples.json")
    assert got["first"] == "records 1, events 0, expired 0, quarantined 1, alerts 0"
    assert got["quarantined"] == {"unknown format": 1}


def test_send_security_messages_page_example_as_printed(tmp_path: Path) -> None:
    """The page prints its example without the outer braces: no line of it is a JSON record."""
    got = replay_file(tmp_path, "security-messages/send-security-messages-doc-example-verbatim.txt")
    assert got["events"] == {}
    assert got["console"] == 0  # it is JSON-like text (lines open with { and [), not console
    assert sum(got["quarantined"].values()) == got["summary"].records == 25
    assert all(reason.startswith("bad JSON: ") for reason in got["quarantined"])


# -- serial: console captures ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "mxchip-az3166-getting-started-console.txt",
        "mxchip-az3166-getting-started-console.capture.bin",
    ],
)
@pytest.mark.parametrize("prefix", ["", "serial-capture:"])
def test_board_console_text_is_a_capture(tmp_path: Path, name: str, prefix: str) -> None:
    """The getting-started firmware's UART output: console text only, no frames, nothing
    quarantined, whether forced or sniffed from its first lines (LF or CRLF). Its ten lines the
    built-in console patterns know (connected, telemetry sent, properties, ...) are records."""
    got = replay_file(tmp_path, f"serial/{name}", prefix)
    assert got["first"] == "records 10, events 10, expired 0, quarantined 0, alerts 0"
    assert got["format"] == "serial"
    assert got["console"] == got["summary"].console == 47


# -- az iot hub monitor-events output --------------------------------------------------------------

MONITOR_OUTPUT = """\
Starting event monitor, filtering on device: board-1, use ctrl-c to stop...
{
    "event": {
        "origin": "board-1",
        "module": "",
        "interface": "",
        "component": "",
        "payload": {"Events": [{"Name": "ProcessCreate", "TimestampUTC": "2026-11-28T10:00:00Z",
            "Payload": [{"Executable": "/bin/sh"}]}]}
    }
}
{
    "event": {
        "origin": "board-1",
        "payload": {"Events": [{"Name": "Heartbeat", "TimestampUTC": "2026-11-28T10:01:00Z",
            "Payload": []}]}
    }
}
Successfully parsed 2 message(s).
Stopping event monitor...
"""


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_monitor_events_status_lines_are_skipped(tmp_path: Path, newline: str) -> None:
    path = tmp_path / "monitor.json"
    path.write_bytes(MONITOR_OUTPUT.replace("\n", newline).encode())
    _, summary = run_replay(Config.default(), [path])
    assert summary.lines()[0] == "records 2, events 2, expired 0, quarantined 0, alerts 0"


@pytest.mark.parametrize(
    "line",
    [
        "Starting event monitor, use ctrl-c to stop...",
        "Starting event monitor, filtering on device: a b, c, use ctrl-c to stop...",
        "Starting Digital Twin event monitor, use ctrl-c to stop...",
        "Successfully parsed 10 message(s).",
        "Stopping event monitor...",
    ],
)
def test_every_status_line_spelling(tmp_path: Path, line: str) -> None:
    """A monitor that printed no message at all is an empty JSON file, not console text."""
    path = tmp_path / "monitor.json"
    path.write_text(line + "\n")
    got = run_replay(Config.default(), [path])[1]
    assert got.lines()[0] == "records 0, events 0, expired 0, quarantined 0, alerts 0"
    assert got.console == 0


def test_other_text_beside_json_is_still_quarantined(tmp_path: Path) -> None:
    path = tmp_path / "monitor.json"
    path.write_text(MONITOR_OUTPUT + "Starting event monitor for real\n")
    got = run_replay(Config.default(), [path])[1]
    assert dict(got.quarantined) == {"bad JSON: unexpected character, expected a JSON value": 1}


# -- Azure deviceSecurityGroups REST bodies ------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "rules"),
    [
        ("GetDeviceSecurityGroups_response-body", []),
        ("ListDeviceSecurityGroups_response-body", []),
        ("PutDeviceSecurityGroups_request-body", ["ActiveConnectionsNotInAllowedRange"]),
        ("PutDeviceSecurityGroups_response-body", ["ActiveConnectionsNotInAllowedRange"]),
    ],
)
def test_rest_api_bodies_are_groups(name: str, rules: list[str]) -> None:
    (group,) = load_azure_groups(REAL / "rest-api" / f"{name}.json")
    assert group.name == "samplesecuritygroup"
    assert sorted(group.range_rules) == rules and not group.allow_rules


@pytest.mark.parametrize("name", ["Get", "List", "Put"])
def test_rest_api_examples_are_request_response_pairs_not_groups(name: str) -> None:
    """An API example wraps the bodies in ``parameters``/``responses``: refused, with the key."""
    path = REAL / "rest-api" / f"{name}DeviceSecurityGroups_example.json"
    with pytest.raises(ConfigError, match="needs a name"):
        load_azure_groups(path)


def test_a_stray_text_line_before_json_does_not_make_console_text(tmp_path: Path) -> None:
    path = tmp_path / "feed.json"
    path.write_bytes(b"hello\n" + orjson.dumps(hub_event("2026-11-28T10:00:00Z", "d")) + b"\n")
    got = run_replay(Config.default(), [path])[1]
    assert got.lines()[0] == "records 2, events 1, expired 0, quarantined 1, alerts 0"
    assert got.console == 0

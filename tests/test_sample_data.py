"""The sample bench session replays to the alerts it ships with, and exercises every rule type;
the routed-message sample replays to its events and alerts, and its generator reproduces it."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import sqlite3
import subprocess
import sys
from pathlib import Path

import orjson

from engine import catalogue as c
from engine.catalogue import RULE_TYPES
from engine.config import load_config
from engine.export import export
from tests.conftest import run_replay

SAMPLE = Path(__file__).resolve().parent.parent / "sample_data"


def test_sample_session_replays_to_the_expected_alerts() -> None:
    config = load_config(SAMPLE / "iotwatch.toml")
    inputs = sorted((SAMPLE / "session").iterdir())
    alerts, summary = run_replay(config, inputs)
    expected = [
        orjson.loads(line) for line in (SAMPLE / "expected-alerts.jsonl").read_bytes().splitlines()
    ]
    assert alerts == expected
    assert {a["rule"] for a in alerts} == {r.name for r in RULE_TYPES}
    first = (SAMPLE / "expected-summary.txt").read_text().splitlines()[0]
    assert first == (
        f"records {summary.records}, events {summary.events}, expired {summary.expired}, "
        f"quarantined {sum(summary.quarantined.values())}, alerts {len(alerts)}"
    )


# -- routed/: IoT Hub message routing to storage, with security messages --------------------------

ROUTED = SAMPLE / "routed" / "bench-hub-messages.avro"


def test_routed_sample_replays_to_its_events_and_alerts(tmp_path: Path) -> None:
    config = load_config(SAMPLE / "iotwatch.toml")
    db = tmp_path / "routed.db"
    alerts, summary = run_replay(config, [ROUTED], db=str(db))
    line = (
        f"records {summary.records}, events {summary.events}, expired {summary.expired}, "
        f"quarantined {sum(summary.quarantined.values())}, alerts {len(alerts)}"
    )
    assert line == "records 14, events 21, expired 0, quarantined 0, alerts 2"
    assert line in (SAMPLE / "README.md").read_text()  # what the README says it yields
    with contextlib.closing(sqlite3.connect(db)) as conn:
        assert conn.execute("SELECT format FROM streams").fetchall() == [("hub-messages",)]
        got = conn.execute(
            "SELECT d.name, e.name, e.rule, e.value, count(*), sum(e.weight) FROM events e"
            " JOIN devices d ON d.id = e.device GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 4"
        ).fetchall()
    assert got == [
        # 10 telemetry messages and the security message, of unknown protocol (routing carries
        # none and the file has no deviceConnect record).
        ("bench-board-2", "Heartbeat", None, None, 1, 1),
        ("bench-board-2", "NetworkActivity", c.ACTIVE_CONNECTIONS, "198.51.100.17", 1, 1),
        ("bench-board-2", "NetworkActivity", c.ACTIVE_CONNECTIONS, "2001:db8:100::1", 1, 1),
        ("bench-board-2", "NetworkActivity", c.ACTIVE_CONNECTIONS, "203.0.113.66", 1, 1),
        ("bench-board-2", "SystemInformation", None, "Azure RTOS / ThreadX 6.2.0 / AZ3166", 1, 1),
        ("bench-board-2", "Telemetry", c.D2C_UNKNOWN, None, 11, 11),
        ("bench-board-2", "deviceConnectionStateEvents/deviceConnected", None, None, 1, 1),
        ("bench-board-2", "twinChangeEvents/updateTwin", c.TWIN_UPDATES, None, 1, 1),
        ("lab-01", "Login", None, "operator", 1, 1),
        ("lab-01", "ProcessCreate", None, "/usr/bin/curl", 1, 1),
        ("lab-01", "Telemetry", c.D2C_UNKNOWN, None, 1, 1),
    ]
    assert [
        (a["rule"], a["device"], a["value"], a["start"], a["severity"], a["state"]) for a in alerts
    ] == [
        # From the FlatBuffers message: the board talks to the miner's pool.
        (
            "ConnectionToIpNotAllowed",
            "bench-board-2",
            "203.0.113.66",
            "2026-11-28T10:44:52Z",
            "Low",
            "open",
        ),
        # From the JSON message: curl is not on the lab's process allow-list.
        ("ProcessNotAllowed", "lab-01", "/usr/bin/curl", "2026-11-28T10:46:10Z", "High", "open"),
    ]


def test_routed_sample_exports_as_security_alerts_of_the_sample_hub(tmp_path: Path) -> None:
    """README: the securityalert export's ResourceId is the sample configuration's hub."""
    config = load_config(SAMPLE / "iotwatch.toml")
    assert config.hub == (
        "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/bench-lab"
        "/providers/Microsoft.Devices/IotHubs/bench-hub"
    )
    db = tmp_path / "routed.db"
    run_replay(config, [ROUTED], db=str(db))
    out = io.BytesIO()
    export(db, out, fmt="securityalert", hub=config.hub)
    rows = [orjson.loads(line) for line in out.getvalue().splitlines()]
    assert [(r["AlertType"], r["CompromisedEntity"], r["ResourceId"]) for r in rows] == [
        ("IoT_CA_ConnectionToIpNotAllowed", "bench-board-2", config.hub),
        ("IoT_CA_ProcessNotAllowed", "lab-01", config.hub),
    ]


def test_generate_reproduces_the_routed_sample() -> None:
    spec = importlib.util.spec_from_file_location("sample_generate", SAMPLE / "generate.py")
    assert spec is not None and spec.loader is not None
    generate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generate)
    assert generate.routed_messages() == ROUTED.read_bytes()


def test_generate_reproduces_every_committed_sample_file() -> None:
    """Inputs, expected alerts and summary, configuration: a simulator changed without
    regenerating the samples would leave them describing a session nobody can reproduce."""
    run = subprocess.run(
        [sys.executable, str(SAMPLE / "generate.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr

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

import pytest

from engine import catalogue as c
from engine.config import Config
from tests.conftest import run_replay

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

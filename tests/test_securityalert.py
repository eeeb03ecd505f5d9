"""``export --format securityalert``: the columns of Log Analytics' ``SecurityAlert`` table, in the
order and with the types Microsoft documents, a row's values, and ``ResourceId`` from
``[engine] hub``.

The column list is the Azure Monitor Logs table reference, "SecurityAlert"
(learn.microsoft.com/azure/azure-monitor/reference/tables/securityalert; MicrosoftDocs/
azure-reference-other ``azure-monitor-ref/tables/includes/securityalert-include.md``), written out
here as the page lists it.
"""

from __future__ import annotations

import io
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from engine.config import ConfigError, load_config
from engine.export import SECURITY_ALERT_COLUMNS, export
from engine.timestamps import parse_time
from tests.conftest import (
    agent_event,
    config_from,
    hub_event,
    run_replay,
    security_message,
    write_lines,
)

ROOT = Path(__file__).resolve().parent.parent
HUB = (
    "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/bench"
    "/providers/Microsoft.Devices/IotHubs/bench-hub"
)

# The table reference's columns, in its order, with its types.
DOCUMENTED = [
    ("AlertLink", "string"),
    ("AlertName", "string"),
    ("AlertSeverity", "string"),
    ("AlertType", "string"),
    ("_BilledSize", "real"),
    ("CompromisedEntity", "string"),
    ("ConfidenceLevel", "string"),
    ("ConfidenceScore", "real"),
    ("Description", "string"),
    ("DisplayName", "string"),
    ("EndTime", "datetime"),
    ("Entities", "string"),
    ("ExtendedLinks", "string"),
    ("ExtendedProperties", "string"),
    ("_IsBillable", "string"),
    ("IsIncident", "bool"),
    ("ProcessingEndTime", "datetime"),
    ("ProductComponentName", "string"),
    ("ProductName", "string"),
    ("ProviderName", "string"),
    ("RemediationSteps", "string"),
    ("ResourceId", "string"),
    ("SourceComputerId", "string"),
    ("StartTime", "datetime"),
    ("Status", "string"),
    ("SubTechniques", "string"),
    ("SystemAlertId", "string"),
    ("Tactics", "string"),
    ("Techniques", "string"),
    ("TimeGenerated", "datetime"),
    ("Type", "string"),
    ("VendorName", "string"),
    ("VendorOriginalId", "string"),
    ("WorkspaceResourceGroup", "string"),
    ("WorkspaceSubscriptionId", "string"),
]
# The workspace computes the two standard columns that start with "_" at ingestion; a record
# cannot carry them, so the export writes every other column.
WRITTEN = [(name, kind) for name, kind in DOCUMENTED if not name.startswith("_")]

CONFIG = """
[groups.default.rules.MqttD2CMessagesNotInAllowedRange]
min = 0
max = 3
window = "PT15M"
severity = "Medium"

[groups.default.rules.ProcessNotAllowed]
allow = ["/usr/bin/sensord"]
"""


@dataclass
class Session:
    db: Path
    records: list[dict[str, Any]]


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Session:
    """sensor-1 sends five MQTT messages in one quarter of an hour (max 3) and starts a process
    that is not allowed: one range alert and one allow-list alert."""
    tmp = tmp_path_factory.mktemp("securityalert")
    hub = write_lines(
        tmp / "hub.jsonl",
        [hub_event(f"2026-11-28T10:0{i}:00Z", "sensor-1") for i in range(5)]
        + [hub_event(t, "sensor-1") for t in ("2026-11-28T10:20:00Z", "2026-11-28T10:40:00Z")],
    )
    proc = agent_event("ProcessCreate", "2026-11-28T10:03:30Z", {"Executable": "/tmp/x"})
    agent = write_lines(tmp / "agent.jsonl", [security_message("sensor-1", proc)])
    db = tmp / "s.db"
    records, _ = run_replay(config_from(tmp, CONFIG), [hub, agent], db=str(db))
    assert [r["rule"] for r in records] == [
        "MqttD2CMessagesNotInAllowedRange",
        "ProcessNotAllowed",
    ]
    return Session(db, records)


def rows(db: Path, hub: str | None = None) -> tuple[list[dict[str, Any]], str]:
    """The securityalert rows of ``db`` and the export time."""
    buf = io.BytesIO()
    result = export(db, buf, fmt="securityalert", hub=hub)
    return [orjson.loads(line) for line in buf.getvalue().splitlines()], result.exported_at


def test_the_columns_are_the_documented_ones_in_order_and_type(session: Session) -> None:
    assert list(SECURITY_ALERT_COLUMNS.items()) == WRITTEN
    lines, _ = rows(session.db, HUB)
    assert len(lines) == 2
    # orjson keeps the order of the keys as written: the file's "header" is this order.
    raw = io.BytesIO()
    export(session.db, raw, fmt="securityalert")
    for line in raw.getvalue().splitlines():
        assert list(orjson.loads(line)) == [name for name, _ in WRITTEN]
    for line in lines:
        for name, kind in WRITTEN:
            value = line[name]
            if kind == "string":
                assert isinstance(value, str), name
            elif kind == "datetime":
                assert isinstance(value, str) and parse_time(value) > 0, name
            elif kind == "bool":
                assert isinstance(value, bool), name
            else:  # real: iotwatch has no confidence score, so it is null
                assert value is None, name


def test_a_range_alert_row(session: Session) -> None:
    lines, exported_at = rows(session.db, HUB)
    row = lines[0]
    assert orjson.loads(row.pop("ExtendedProperties")) == {
        "DeviceId": "sensor-1",
        "DeviceGroup": "default",
        "RuleType": "MqttD2CMessagesNotInAllowedRange",
        "DataSource": "IoT Hub",
        "State": "resolved",
        "TimeWindow": "PT15M",
        "MinThreshold": "0",
        "MaxThreshold": "3",
        "Counts": "[5]",
        "TotalCount": "5",
        "Silenced": "false",
        "AlertId": row["VendorOriginalId"],
    }
    assert row.pop("ProcessingEndTime") == exported_at
    assert row == {
        "AlertLink": "",
        "AlertName": "Custom alert - The number of device to cloud messages in MQTT protocol is "
        "outside the allowed range",
        "AlertSeverity": "Medium",
        "AlertType": "IoT_CA_MqttD2CMessagesNotInAllowedRange",
        "CompromisedEntity": "sensor-1",
        "ConfidenceLevel": "",
        "ConfidenceScore": None,
        "Description": row["Description"],
        "DisplayName": row["AlertName"],
        "EndTime": "2026-11-28T10:15:00Z",
        "Entities": '[{"$id":"1","Type":"iotdevice","DeviceId":"sensor-1"}]',
        "ExtendedLinks": "",
        "IsIncident": False,
        "ProductComponentName": "Custom alerts",
        "ProductName": "iotwatch",
        "ProviderName": "iotwatch",
        "RemediationSteps": row["RemediationSteps"],
        "ResourceId": HUB,
        "SourceComputerId": "",
        "StartTime": "2026-11-28T10:00:00Z",
        "Status": "Resolved",
        "SubTechniques": "",
        # From (rule, device, value, start): the same in every export of this alert.
        "SystemAlertId": "d29de44f-add1-5b65-928a-9ce3ea3b4f78",
        "Tactics": "",
        "Techniques": "",
        "TimeGenerated": "2026-11-28T10:00:00Z",
        "Type": "SecurityAlert",
        "VendorName": "iotwatch",
        "VendorOriginalId": row["VendorOriginalId"],
        "WorkspaceResourceGroup": "",
        "WorkspaceSubscriptionId": "",
    }
    assert row["Description"] == session.records[0]["description"]
    assert orjson.loads(row["RemediationSteps"]) == [session.records[0]["remediation"]]
    assert int(row["VendorOriginalId"]) > 0


def test_resource_id_is_empty_without_a_hub(session: Session) -> None:
    lines, _ = rows(session.db)
    assert [line["ResourceId"] for line in lines] == ["", ""]


# -- [engine] hub ----------------------------------------------------------------------------------


def iotwatch(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tui.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=60,
    )


def test_the_cli_takes_resource_id_from_the_configuration(session: Session, tmp_path: Path) -> None:
    (tmp_path / "iotwatch.toml").write_text(f'[engine]\nhub = "{HUB}"\n')
    run = iotwatch(
        "export", "--db", str(session.db), "--out", "-", "--format", "securityalert", cwd=tmp_path
    )
    assert run.returncode == 0, run.stderr
    assert [orjson.loads(x)["ResourceId"] for x in run.stdout.splitlines()] == [HUB, HUB]
    other = tmp_path / "other"
    other.mkdir()
    run = iotwatch(
        "export",
        "--db",
        str(session.db),
        "--config",
        "../iotwatch.toml",
        "--out",
        "-",
        "--format",
        "securityalert",
        cwd=other,
    )
    assert run.returncode == 0, run.stderr
    assert {orjson.loads(x)["ResourceId"] for x in run.stdout.splitlines()} == {HUB}
    run = iotwatch(
        "export", "--db", str(session.db), "--out", "-", "--format", "securityalert", cwd=other
    )
    assert run.returncode == 0, run.stderr
    assert {orjson.loads(x)["ResourceId"] for x in run.stdout.splitlines()} == {""}


@pytest.mark.parametrize(
    "hub",
    [
        HUB,
        # Azure compares the fixed segments without case; a resource group may hold Unicode
        # letters, parentheses and periods.
        HUB.upper(),
        "/subscriptions/0a1b2c3d-4e5f-6789-ABCD-ef0123456789/resourceGroups/Labor_(Bänke).1"
        "/providers/Microsoft.Devices/IotHubs/" + "h" * 50,
    ],
)
def test_a_hub_resource_id_is_read_as_written(tmp_path: Path, hub: str) -> None:
    path = tmp_path / "iotwatch.toml"
    path.write_text(f'[engine]\nhub = "{hub}"\n', encoding="utf-8")
    assert load_config(path).hub == hub
    path.write_text("[engine]\n", encoding="utf-8")
    assert load_config(path).hub is None


BAD_HUBS = [
    ("42", "must be an IoT hub's resource id (a string), not an integer"),
    (
        '""',
        "'' is not an IoT hub's resource id (expected /subscriptions/{id}/resourceGroups/"
        "{group}/providers/Microsoft.Devices/IotHubs/{name})",
    ),
    (
        '"bench-hub"',
        "'bench-hub' is not an IoT hub's resource id (expected /subscriptions/{id}/"
        "resourceGroups/{group}/providers/Microsoft.Devices/IotHubs/{name})",
    ),
    (f'"{HUB}/"', "is not an IoT hub's resource id"),
    (f'"{HUB.replace("Microsoft.Devices", "Microsoft.EventHub")}"', "is not an IoT hub's"),
    (
        f'"{HUB.replace("00000000-0000-0000-0000-000000000000", "my-subscription")}"',
        "subscription id 'my-subscription' is not a GUID",
    ),
    (
        f'"{HUB.replace("/bench/", "/bench./")}"',
        "resource group 'bench.' must be 1 to 90 letters, digits, '_', '-', '.', '(' or ')', "
        "not ending in '.'",
    ),
    (f'"{HUB.replace("/bench/", "/" + "g" * 91 + "/")}"', "resource group 'ggg"),
    (f'"{HUB.replace("/bench/", "/be nch/")}"', "resource group 'be nch' must be"),
    (
        f'"{HUB.replace("bench-hub", "hub-")}"',
        "IoT hub name 'hub-' must be 3 to 50 letters, digits or '-', not ending in '-'",
    ),
    (f'"{HUB.replace("bench-hub", "hb")}"', "IoT hub name 'hb' must be"),
    (f'"{HUB.replace("bench-hub", "h" * 51)}"', "IoT hub name 'hhh"),
    (f'"{HUB.replace("bench-hub", "bench_hub")}"', "IoT hub name 'bench_hub' must be"),
    ('"/subscriptions/x/\\u202e"', "'/subscriptions/x/\\u202e' is not an IoT hub's"),
]


@pytest.mark.parametrize(("value", "reason"), BAD_HUBS)
def test_a_bad_hub_is_refused_with_file_key_and_reason(
    tmp_path: Path, value: str, reason: str
) -> None:
    path = tmp_path / "iotwatch.toml"
    path.write_text(f"[engine]\nhub = {value}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    err = info.value
    assert (err.file, err.key) == (str(path), "engine.hub")
    assert reason in err.reason
    assert str(err) == f"{path}: engine.hub: {err.reason}" and "\n" not in str(err)


def test_the_cli_refuses_a_bad_hub_with_exit_2_and_one_line(
    session: Session, tmp_path: Path
) -> None:
    (tmp_path / "iotwatch.toml").write_text('[engine]\nhub = "bench-hub"\n')
    run = iotwatch(
        "export", "--db", str(session.db), "--out", "-", "--format", "securityalert", cwd=tmp_path
    )
    assert run.returncode == 2 and run.stdout == ""
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in run.stderr
    assert "iotwatch.toml: engine.hub: 'bench-hub' is not an IoT hub's resource id" in lines[0]
    run = iotwatch(
        "replay", "--config", "iotwatch.toml", str(ROOT / "tests" / "__init__.py"), cwd=tmp_path
    )
    assert run.returncode == 2 and "engine.hub" in run.stderr

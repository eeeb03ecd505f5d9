"""The command line: exit statuses, one-line errors, replay output and the groups round trip."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import orjson

from engine.store import SCHEMA_VERSION
from tests.conftest import hub_event, write_lines

CONFIG = """
[groups.default.rules.MqttD2CMessagesNotInAllowedRange]
min = 0
max = 1
window = "PT5M"
"""


def iotwatch(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tui.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
    )


def test_replay_writes_alert_lines_and_summary(tmp_path: Path) -> None:
    (tmp_path / "c.toml").write_text(CONFIG)
    inp = write_lines(
        tmp_path / "h.jsonl",
        [hub_event("2026-11-28T10:00:01Z", "d1"), hub_event("2026-11-28T10:00:02Z", "d1")],
    )
    run = iotwatch("replay", "--config", str(tmp_path / "c.toml"), str(inp))
    assert run.returncode == 0, run.stderr
    lines = [orjson.loads(x) for x in run.stdout.splitlines()]
    assert [(a["device"], a["counts"], a["state"]) for a in lines] == [("d1", [2], "open")]
    assert run.stderr.splitlines()[0].startswith("records 2, events 2, expired 0, quarantined 0")


def test_bad_config_exits_2_with_one_line(tmp_path: Path) -> None:
    (tmp_path / "c.toml").write_text(CONFIG.replace("max = 1", "max = -1"))
    inp = write_lines(tmp_path / "h.jsonl", [hub_event("2026-11-28T10:00:01Z", "d1")])
    run = iotwatch("replay", "--config", str(tmp_path / "c.toml"), str(inp))
    assert run.returncode == 2
    assert run.stdout == ""
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "c.toml" in lines[0]
    assert "groups.default.rules.MqttD2CMessagesNotInAllowedRange.max" in lines[0]
    assert "Traceback" not in run.stderr


def test_usage_error_exits_2(tmp_path: Path) -> None:
    run = iotwatch("replay")
    assert run.returncode == 2
    assert len(run.stderr.strip().splitlines()) == 1


def test_missing_input_exits_2(tmp_path: Path) -> None:
    run = iotwatch("replay", str(tmp_path / "nope.jsonl"))
    assert run.returncode == 2
    assert "nope.jsonl" in run.stderr and "Traceback" not in run.stderr


def test_replay_db_refuses_foreign_database(tmp_path: Path) -> None:
    foreign = tmp_path / "other.db"
    with sqlite3.connect(foreign) as conn:
        conn.execute("CREATE TABLE t (x)")
    inp = write_lines(tmp_path / "h.jsonl", [hub_event("2026-11-28T10:00:01Z", "d1")])
    run = iotwatch("replay", "--db", str(foreign), str(inp))
    assert run.returncode == 2
    assert "not an iotwatch database" in run.stderr


def test_replay_db_refuses_database_with_events(tmp_path: Path) -> None:
    inp = write_lines(tmp_path / "h.jsonl", [hub_event("2026-11-28T10:00:01Z", "d1")])
    db = tmp_path / "s.db"
    assert iotwatch("replay", "--db", str(db), str(inp)).returncode == 0
    again = iotwatch("replay", "--db", str(db), str(inp))
    assert again.returncode == 2
    assert "already holds events" in again.stderr


def test_replay_db_stores_wal_database_with_schema_version(tmp_path: Path) -> None:
    inp = write_lines(tmp_path / "h.jsonl", [hub_event("2026-11-28T10:00:01Z", "d1")])
    db = tmp_path / "s.db"
    assert iotwatch("replay", "--db", str(db), str(inp)).returncode == 0
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == (
            str(SCHEMA_VERSION),
        )
        assert conn.execute("SELECT count(*) FROM events").fetchone() == (1,)
        assert conn.execute("SELECT count(*) FROM rule_types").fetchone() == (20,)
        assert conn.execute("SELECT offset, state FROM streams").fetchone() == (
            inp.stat().st_size,
            "done",
        )


def test_groups_export_then_import_round_trip(tmp_path: Path) -> None:
    (tmp_path / "c.toml").write_text(
        CONFIG + '\n[groups.Lab.rules.ProcessNotAllowed]\nallow = ["/usr/bin/ok", "sh"]\n'
    )
    exported = iotwatch("groups", "export", "--config", str(tmp_path / "c.toml"))
    assert exported.returncode == 0, exported.stderr
    azure = tmp_path / "azure.json"
    azure.write_text(exported.stdout)
    imported = iotwatch("groups", "import", str(azure))
    assert imported.returncode == 0, imported.stderr
    (tmp_path / "back.toml").write_text(imported.stdout)
    again = iotwatch("groups", "export", "--config", str(tmp_path / "back.toml"))
    assert orjson.loads(again.stdout) == orjson.loads(exported.stdout)

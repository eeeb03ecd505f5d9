"""The command line: exit statuses, one-line errors, replay output and the groups round trip."""

from __future__ import annotations

import argparse
import sqlite3
import subprocess
import sys
from importlib import metadata
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


# -- the command line's own conventions (--version, help, error lines) ----------------------------


def _parsers() -> list[tuple[str, argparse.ArgumentParser]]:
    """Every parser of the command line, named by its prog."""
    from tui.cli import build_parser

    found: list[tuple[str, argparse.ArgumentParser]] = []
    todo = [build_parser()]
    while todo:
        parser = todo.pop()
        found.append((parser.prog, parser))
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                todo.extend(action.choices.values())
    return found


def test_version_prints_the_package_version() -> None:
    run = iotwatch("--version")
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == f"iotwatch {metadata.version('iotwatch')}"


def test_every_option_and_argument_has_help() -> None:
    parsers = _parsers()
    assert {"iotwatch replay", "iotwatch groups export", "iotwatch simulate fleet"} <= {
        prog for prog, _ in parsers
    }
    missing = [
        f"{prog} {action.option_strings or action.dest}"
        for prog, parser in parsers
        for action in parser._actions
        if not isinstance(action, argparse._SubParsersAction) and not action.help
    ]
    assert missing == []


def test_help_says_bare_iotwatch_opens_the_console_on_iotwatch_toml() -> None:
    run = iotwatch("--help")
    assert run.returncode == 0
    text = " ".join(run.stdout.split())
    assert "Without a command, iotwatch opens the console on ./iotwatch.toml" in text
    assert "--version" in text


def test_bare_iotwatch_without_a_config_says_what_to_do(tmp_path: Path) -> None:
    run = iotwatch(cwd=tmp_path)
    assert run.returncode == 2
    assert run.stderr.startswith("iotwatch: no iotwatch.toml here; try 'iotwatch demo'")


def test_every_error_line_starts_with_iotwatch(tmp_path: Path) -> None:
    # A file named iotwatch.toml used to lose the prefix (its message already began "iotwatch").
    (tmp_path / "iotwatch.toml").write_text(CONFIG.replace("max = 1", "max = -1"))
    cases = [
        ("replay",),  # a subcommand's usage error
        ("simulate", "fleet"),
        ("export",),
        ("nope",),
        ("replay", "--config", "missing.toml", "x.jsonl"),
        ("replay", "x.jsonl"),  # the invalid ./iotwatch.toml
        ("replay", "--config", "iotwatch.toml", "x.jsonl"),
        ("run", "--clock", "yesterday"),
        ("simulate", "fleet", str(tmp_path), "--devices", "0"),
    ]
    for args in cases:
        run = iotwatch(*args, cwd=tmp_path)
        lines = run.stderr.splitlines()
        assert run.returncode == 2, (args, run.stderr)
        assert len(lines) == 1 and lines[0].startswith("iotwatch: "), (args, run.stderr)
    run = iotwatch("replay", cwd=tmp_path)
    assert run.stderr.startswith("iotwatch: replay: the following arguments are required")


def test_unknown_format_prefix_says_unknown_format(tmp_path: Path) -> None:
    inp = write_lines(tmp_path / "h.jsonl", [hub_event("2026-11-28T10:00:01Z", "d1")])
    run = iotwatch("replay", f"hub-logs:{inp}", cwd=tmp_path)
    assert run.returncode == 2
    assert run.stderr.startswith(f"iotwatch: hub-logs:{inp}: unknown format 'hub-logs'")
    assert "(did you mean 'hub-log'?)" in run.stderr
    # A known prefix reads the file; a file whose own name holds a colon is still a file.
    assert iotwatch("replay", f"hub-events:{inp}", cwd=tmp_path).returncode == 0
    odd = write_lines(tmp_path / "site:h.jsonl", [hub_event("2026-11-28T10:00:01Z", "d1")])
    assert iotwatch("replay", odd.name, cwd=tmp_path).returncode == 0

"""Hostile configuration and start-up cases (SPEC §3, §6, §7): deeply nested or oversized TOML and
Azure JSON, group names holding control characters, absurd baud rates — each refused with exit 2
and one line ``FILE: KEY: REASON``. Files iotwatch creates are private (0600); an export never
replaces a database's WAL or shared-memory file."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from engine.config import ConfigError, load_config
from engine.config_edit import add_group, write_config
from engine.jsonline import UNSAFE
from tests.conftest import hub_event, write_lines

MQTT = "MqttD2CMessagesNotInAllowedRange"


def iotwatch(*args: str, cwd: Path | None = None, umask: int | None = None):  # type: ignore[no-untyped-def]
    return subprocess.run(
        [sys.executable, "-m", "tui.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
        preexec_fn=None if umask is None else (lambda: os.umask(umask)),
    )


def assert_one_line_exit_2(run: subprocess.CompletedProcess[str], *parts: str) -> str:
    assert run.returncode == 2, run.stderr
    assert "Traceback" not in run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    for part in parts:
        assert part in lines[0], lines[0]
    return lines[0]


# --- nesting and huge numbers -----------------------------------------------------------------

DEEP_TOML = {
    "array": f"[groups.default.rules.ProcessNotAllowed]\nallow = {'[' * 5000}{']' * 5000}\n",
    "inline-table": "x = " + "{a = " * 5000 + "1" + "}" * 5000 + "\n",
    "shallower": f"[groups.default.rules.ProcessNotAllowed]\nallow = {'[' * 600}{']' * 600}\n",
}


@pytest.mark.parametrize("text", DEEP_TOML.values(), ids=list(DEEP_TOML))
def test_deeply_nested_toml_exits_2_with_one_line(tmp_path: Path, text: str) -> None:
    config = tmp_path / "deep.toml"
    config.write_text(text)
    run = iotwatch("replay", "--config", str(config), os.devnull)
    assert_one_line_exit_2(run, f"{config}: (file): invalid TOML: nested too deeply")
    run = iotwatch("run", "--headless", "--config", str(config), cwd=tmp_path)
    assert_one_line_exit_2(run, f"{config}: (file): invalid TOML: nested too deeply")


def test_deeply_nested_azure_json_exits_2_with_one_line(tmp_path: Path) -> None:
    groups = tmp_path / "deep.json"
    deep = "[" * 5000 + "]" * 5000
    groups.write_text(f'{{"name": "g", "properties": {{"timeWindowRules": {deep}}}}}')
    for args in (
        ("groups", "import", str(groups)),
        ("replay", "--groups", str(groups), os.devnull),
    ):
        run = iotwatch(*args)
        assert_one_line_exit_2(run, f"{groups}: (file): invalid JSON: nested too deeply")


def test_numbers_of_thousands_of_digits_exit_2_with_one_line(tmp_path: Path) -> None:
    digits = "9" * 5000
    config = tmp_path / "big.toml"
    config.write_text(f"[groups.default.rules.{MQTT}]\nmax = {digits}\n")
    run = iotwatch("replay", "--config", str(config), os.devnull)
    assert_one_line_exit_2(run, f"{config}: (file): invalid TOML: a number with too many digits")
    config.write_text(f"[groups.default.rules.{MQTT}]\nmax = {'9' * 4000}\n")
    run = iotwatch("replay", "--config", str(config), os.devnull)
    line = assert_one_line_exit_2(run, f"{MQTT}.max: must be at most 2147483647")
    assert len(line) < 300
    groups = tmp_path / "big.json"
    rule = (
        f'{{"ruleType": "{MQTT}", "isEnabled": true, "minThreshold": 0, '
        f'"maxThreshold": {digits}, "timeWindowSize": "PT5M"}}'
    )
    groups.write_text(f'[{{"name": "g", "properties": {{"timeWindowRules": [{rule}]}}}}]')
    run = iotwatch("groups", "import", str(groups))
    assert_one_line_exit_2(run, f"{groups}: (file): invalid JSON: a number with too many digits")


# --- group names ------------------------------------------------------------------------------

BAD_NAMES = {
    "nul": "lab\x00",
    "newline": "lab\nx",
    "esc": "lab\x1b[2J",
    "csi": "lab\x9b",
    "del": "lab\x7f",
    "rlo": "lab\u202eevil",
    "zero-width": "l\u200bab",
    "bom": "\ufefflab",
}


def toml_key(name: str) -> str:
    return '"' + "".join(f"\\u{ord(c):04x}" if not c.isalnum() else c for c in name) + '"'


@pytest.mark.parametrize("name", BAD_NAMES.values(), ids=list(BAD_NAMES))
def test_group_name_with_control_characters_is_refused(tmp_path: Path, name: str) -> None:
    reason = "a group name must not contain control, bidirectional or zero-width characters"
    config = tmp_path / "iotwatch.toml"
    config.write_text(f"[groups.{toml_key(name)}.rules.{MQTT}]\nmax = 1\n")
    run = iotwatch("replay", "--config", str(config), os.devnull)
    line = assert_one_line_exit_2(run, str(config), reason)
    hidden = [c for c in name if ord(c) < 0x20 or ord(c) in UNSAFE]
    assert hidden and not any(c in line for c in hidden)  # the key is shown escaped
    config.write_text(f'[devices]\n"d1" = {toml_key(name)}\n')
    with pytest.raises(ConfigError, match=reason):
        load_config(config)
    groups = tmp_path / "g.json"
    groups.write_text(
        '{"name": ' + toml_key(name) + ', "properties": {"timeWindowRules": []}}',
        encoding="utf-8",
    )
    run = iotwatch("groups", "import", str(groups))
    assert_one_line_exit_2(run, f"{groups}: name: {reason}")
    with pytest.raises(ConfigError, match=reason):  # the console's editors refuse it too
        add_group(_empty(tmp_path), name)


def _empty(tmp_path: Path):  # type: ignore[no-untyped-def]
    path = tmp_path / "empty.toml"
    path.write_text("")
    return load_config(path)


# --- baudrate ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value,shown",
    [
        ("0", "0"),
        ("49", "49"),
        ("-9600", "-9600"),
        ("10000001", "10000001"),
        ("99999999999999999999", "99999999999999999999"),
        ("999999999999999999999", "a number of more than 20 digits"),
        ("true", "a boolean"),
        ('"9600"', "a string"),
        ("9600.0", "a float"),
    ],
)
def test_baudrate_must_be_a_sane_integer(tmp_path: Path, value: str, shown: str) -> None:
    config = tmp_path / "baud.toml"
    config.write_text(f'[[sources]]\ntype = "serial"\nport = "loop://"\nbaudrate = {value}\n')
    run = iotwatch("replay", "--config", str(config), os.devnull)
    assert_one_line_exit_2(
        run, f"{config}: sources[0].baudrate: must be an integer from 50 to 10000000, not {shown}"
    )


@pytest.mark.parametrize("value", [50, 9600, 115200, 921600, 10_000_000])
def test_sane_baudrates_are_accepted(tmp_path: Path, value: int) -> None:
    config = tmp_path / "baud.toml"
    config.write_text(f'[[sources]]\ntype = "serial"\nport = "loop://"\nbaudrate = {value}\n')
    assert load_config(config).sources[0].baudrate == value


# --- private files ----------------------------------------------------------------------------


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize(
    "umask,expected",
    [(0o022, 0o600), (0o002, 0o600), (0o077, 0o600)],
    ids=["umask-022", "umask-002", "umask-077"],
)
def test_files_iotwatch_creates_are_private(tmp_path: Path, umask: int, expected: int) -> None:
    inp = write_lines(tmp_path / "h.jsonl", [hub_event("2026-11-28T10:00:01Z", "d1")])
    run = iotwatch("replay", "--db", "r.db", str(inp), cwd=tmp_path, umask=umask)
    assert run.returncode == 0, run.stderr
    assert mode(tmp_path / "r.db") == expected
    with sqlite3.connect(tmp_path / "r.db") as conn:  # a reader makes the WAL's side files appear
        conn.execute("SELECT count(*) FROM events").fetchone()
        for side in ("r.db-wal", "r.db-shm"):
            if (tmp_path / side).exists():
                assert mode(tmp_path / side) == expected, side
    for fmt, out in (("sqlite", "e.db"), ("jsonl", "e.jsonl"), ("csv", "e.csv")):
        run = iotwatch(
            "export", "--db", "r.db", "--out", out, "--format", fmt, cwd=tmp_path, umask=umask
        )
        assert run.returncode == 0, run.stderr
        assert mode(tmp_path / out) == expected, out


def test_live_database_and_its_side_files_are_private(tmp_path: Path) -> None:
    import signal
    import time

    (tmp_path / "logs").mkdir()
    write_lines(tmp_path / "logs" / "h.jsonl", [hub_event("2026-11-28T10:00:01Z", "d1")])
    (tmp_path / "iotwatch.toml").write_text('[[sources]]\ntype = "hub-events"\npath = "logs/*"\n')
    proc = subprocess.Popen(
        [sys.executable, "-m", "tui.cli", "run", "--headless", "--db", "live.db"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        preexec_fn=lambda: os.umask(0o022),
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # until the event is committed
            if (tmp_path / "live.db-wal").exists():
                modes = {n: mode(tmp_path / n) for n in ("live.db", "live.db-wal", "live.db-shm")}
                with contextlib.suppress(sqlite3.Error), sqlite3.connect(tmp_path / "live.db") as c:
                    if c.execute("SELECT count(*) FROM events").fetchone()[0]:
                        break
            time.sleep(0.05)
        assert modes == {"live.db": 0o600, "live.db-wal": 0o600, "live.db-shm": 0o600}
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, proc.stderr.read() if proc.stderr else ""


def test_an_existing_database_keeps_its_mode(tmp_path: Path) -> None:
    inp = write_lines(tmp_path / "h.jsonl", [hub_event("2026-11-28T10:00:01Z", "d1")])
    db = tmp_path / "shared.db"
    db.touch()
    db.chmod(0o640)
    run = iotwatch("replay", "--db", str(db), str(inp))
    assert run.returncode == 0, run.stderr
    assert mode(db) == 0o640


def test_configuration_written_by_the_console_is_private(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        new = tmp_path / "new.toml"
        write_config(add_group(_empty(tmp_path), "lab"), new)
        assert mode(new) == 0o600
        kept = tmp_path / "kept.toml"
        kept.write_text("")
        kept.chmod(0o644)
        write_config(add_group(load_config(kept), "lab"), kept)
        assert mode(kept) == 0o644  # an existing file keeps its mode
    finally:
        os.umask(old)


# --- exports never replace a database's files -------------------------------------------------


def test_export_never_overwrites_a_database_wal_or_shm_even_with_force(tmp_path: Path) -> None:
    inp = write_lines(tmp_path / "h.jsonl", [hub_event("2026-11-28T10:00:01Z", "d1")])
    assert iotwatch("replay", "--db", "live.db", str(inp), cwd=tmp_path).returncode == 0
    assert iotwatch("replay", "--db", "other.db", str(inp), cwd=tmp_path).returncode == 0
    # Another database's side files (the source's own are SQLite's to manage while it reads).
    for name in ("other.db-wal", "other.db-shm", "other.db-journal"):
        (tmp_path / name).write_bytes(b"precious")
    for target in (
        "live.db-wal",
        "live.db-shm",
        "other.db-wal",
        "other.db-shm",
        "./other.db-journal",
    ):
        for fmt in ("sqlite", "jsonl"):
            run = iotwatch(
                "export",
                "--db",
                "live.db",
                "--out",
                target,
                "--format",
                fmt,
                "--force",
                cwd=tmp_path,
            )
            assert_one_line_exit_2(run, "file of the database")
    for name in ("other.db-wal", "other.db-shm", "other.db-journal"):
        assert (tmp_path / name).read_bytes() == b"precious"
    run = iotwatch("export", "--db", "live.db", "--out", "live.db", "--force", cwd=tmp_path)
    assert_one_line_exit_2(run, "live.db", "source database")
    # A name that merely ends like a side file, with no database beside it, is fine.
    run = iotwatch(
        "export", "--db", "live.db", "--out", "alerts-wal", "--format", "jsonl", cwd=tmp_path
    )
    assert run.returncode == 0, run.stderr

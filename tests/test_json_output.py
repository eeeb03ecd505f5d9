"""JSON output escapes what could drive a terminal (SPEC §7): device strings holding C1 controls,
DEL, bidirectional controls or zero-width characters reach the alert lines of ``replay``,
``run --headless`` and the JSON-lines exports only as ``\\uXXXX``."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import orjson
import pytest

from engine import jsonline
from engine.export import export
from tests.conftest import hub_event, write_lines

HOSTILE = (
    "csi\x9b2J",
    "osc\x9d0;title\x9c",
    "del\x7f",
    "nel\x85",
    "rlo\u202eevil",
    "alm\u061c",
    "lrm\u200e rlm\u200f",
    "embed\u202a\u202b\u202c\u202d",
    "iso\u2066\u2067\u2068\u2069",
    "zw\u200b\u200c\u200d\u2060",
    "bom\ufeff",
    "sep\u2028\u2029",
)
CONFIG = """
[[sources]]
type = "hub-events"
path = "logs/*.jsonl"

[groups.default.rules.MqttD2CMessagesNotInAllowedRange]
max = 0
window = "PT1M"
"""
T = "2026-11-28T10:00:01Z"


def assert_escaped(out: bytes) -> None:
    """No unsafe character in ``out`` as it is, and every hostile device id in it as escapes."""
    for code in jsonline.UNSAFE:
        assert chr(code).encode() not in out, f"U+{code:04X} unescaped"
    assert all(b < 0x20 or b == 0x0A for b in out if b < 0x20) and b"\x7f" not in out
    assert b"\\u009b" in out and b"\\u202e" in out and b"\\u200b" in out
    devices = {orjson.loads(line)["device"] for line in out.splitlines()}
    assert devices == set(HOSTILE)


def test_jsonline_escapes_every_unsafe_character_and_reads_back() -> None:
    text = "".join(chr(c) for c in jsonline.UNSAFE) + "é ✓ 漢 \U0001f600 \x01\t"
    line = jsonline.dumps({"k\u202e": text, "n": [1, None]})
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    for code in jsonline.UNSAFE:
        assert f"\\u{code:04x}".encode() in line
    assert orjson.loads(line) == {"k\u202e": text, "n": [1, None]}
    assert "é ✓ 漢 \U0001f600".encode() in line  # other characters stay as they are
    plain = {"device": "sensor-1", "counts": [1, 2]}
    assert jsonline.dumps(plain) == orjson.dumps(plain) + b"\n"


@pytest.mark.parametrize("code", jsonline.UNSAFE)
def test_each_unsafe_character_is_escaped(code: int) -> None:
    assert jsonline.dumps(chr(code)) == f'"\\u{code:04x}"\n'.encode()


def hostile_input(folder: Path) -> Path:
    (folder / "logs").mkdir(exist_ok=True)
    return write_lines(folder / "logs" / "h.jsonl", [hub_event(T, d) for d in HOSTILE])


def test_replay_output_escapes_c1_del_bidi_and_zero_width(tmp_path: Path) -> None:
    (tmp_path / "c.toml").write_text(CONFIG)
    inp = hostile_input(tmp_path)
    run = subprocess.run(
        [sys.executable, "-m", "tui.cli", "replay", "--config", str(tmp_path / "c.toml"), str(inp)],
        capture_output=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert_escaped(run.stdout)


def test_headless_output_escapes_c1_del_bidi_and_zero_width(tmp_path: Path) -> None:
    (tmp_path / "iotwatch.toml").write_text(CONFIG)
    hostile_input(tmp_path)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tui.cli",
            "run",
            "--headless",
            "--db",
            "live.db",
            "--clock",
            "2026-11-28T10:05:00Z",
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    lines: list[bytes] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 60
        while len(lines) < len(HOSTILE) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, proc.stderr.read() if proc.stderr else b""
        reader.join(5)
    out = b"".join(lines)
    opened = b"".join(x for x in lines if orjson.loads(x)["event"] == "opened")
    assert len(opened.splitlines()) == len(HOSTILE), out
    assert_escaped(opened)
    for code in jsonline.UNSAFE:
        assert chr(code).encode() not in out


@pytest.mark.parametrize("fmt", ["jsonl", "securityalert"])
def test_json_lines_export_escapes_c1_del_bidi_and_zero_width(tmp_path: Path, fmt: str) -> None:
    (tmp_path / "c.toml").write_text(CONFIG)
    inp = hostile_input(tmp_path)
    db = tmp_path / "r.db"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "tui.cli",
            "replay",
            "--config",
            str(tmp_path / "c.toml"),
            "--db",
            str(db),
            str(inp),
        ],
        capture_output=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    export(db, tmp_path / "out.jsonl", fmt=fmt)
    out = (tmp_path / "out.jsonl").read_bytes()
    for code in jsonline.UNSAFE:
        assert chr(code).encode() not in out, f"U+{code:04X} unescaped"
    assert b"\\u009b" in out and b"\\u202e" in out
    assert len(out.splitlines()) == len(HOSTILE)
    if fmt == "jsonl":
        assert {orjson.loads(x)["device"] for x in out.splitlines()} == set(HOSTILE)

"""SIGTERM, SIGHUP and SIGINT stop the console as ``q`` does: the real ``iotwatch demo`` and
``iotwatch run`` on a pseudo-terminal, each signal sent once the screen shows data. The process
exits with status 0, leaves the alternate screen, removes the demo's folder, and the engine has
committed what it read."""

from __future__ import annotations

import signal
import sqlite3
import sys
from pathlib import Path

import pytest

from tests.test_app import append, d2c, now_us
from tests.test_demo import run_in_pty

LEAVE_ALTERNATE_SCREEN = b"\x1b[?1049l"
SIGNALS = [signal.SIGTERM, signal.SIGHUP, signal.SIGINT]


def cli(*args: str) -> list[str]:
    """The ``iotwatch`` command line, run by this interpreter."""
    call = f"import sys; from tui.cli import main; sys.exit(main({list(args)!r}))"
    return [sys.executable, "-c", call]


@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: signal.Signals(s).name)
def test_a_signal_stops_the_demo_cleanly(tmp_path: Path, sig: signal.Signals) -> None:
    work, temp = tmp_path / "work", tmp_path / "temp"
    work.mkdir()
    temp.mkdir()
    run = run_in_pty(
        cli("demo"),
        cwd=work,
        ready=lambda text: "Counters" in text and "bench-board-1" in text,  # a counter row
        timeout=20,
        size=(80, 24),
        env={"TMPDIR": str(temp)},
        stop_signal=sig,
    )
    assert run.returncode == 0, run.text[-2000:]
    assert LEAVE_ALTERNATE_SCREEN in run.raw[run.raw.rindex(b"\x1b[?1049h") :]
    assert "Traceback" not in run.text
    assert list(temp.iterdir()) == []  # the demo's folder is gone
    assert list(work.iterdir()) == []


RUN_CONFIG = """
[engine]
lateness = "PT1M"

[database]
path = "iotwatch.db"

[[sources]]
type = "hub-events"
path = "hub.jsonl"

[groups.default.rules.MqttD2CMessagesNotInAllowedRange]
max = 100
window = "PT1M"
"""


@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: signal.Signals(s).name)
def test_a_signal_stops_run_with_the_events_committed(tmp_path: Path, sig: signal.Signals) -> None:
    (tmp_path / "iotwatch.toml").write_text(RUN_CONFIG)
    at = now_us() - 5_000_000
    devices = [f"signal-device-{i}" for i in range(40)]
    append(tmp_path / "hub.jsonl", [d2c(d, at + i) for i, d in enumerate(devices)])
    run = run_in_pty(
        cli("run"),
        cwd=tmp_path,
        ready=lambda text: "signal-device-0" in text,
        timeout=20,
        size=(80, 24),
        stop_signal=sig,
    )
    assert run.returncode == 0, run.text[-2000:]
    assert LEAVE_ALTERNATE_SCREEN in run.raw[run.raw.rindex(b"\x1b[?1049h") :]
    assert "Traceback" not in run.text
    conn = sqlite3.connect(tmp_path / "iotwatch.db")
    try:
        (events,) = conn.execute("SELECT count(*) FROM events").fetchone()
        (known,) = conn.execute("SELECT count(*) FROM devices").fetchone()
    finally:
        conn.close()
    assert (events, known) == (len(devices), len(devices))

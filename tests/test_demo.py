"""``iotwatch demo`` under a pseudo-terminal: the dashboard shows counters and an alert within 15
seconds, the quit key leaves cleanly, and nothing is left outside the temporary folder."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

ESCAPES = re.compile(
    rb"\x1b\[[0-?]*[ -/]*[@-~]"  # CSI
    rb"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)"  # OSC
    rb"|\x1bP[^\x1b]*\x1b\\"  # DCS
    rb"|\x1b[@-_]"  # other two-byte escapes
)


def strip_escapes(raw: bytes) -> str:
    return ESCAPES.sub(b"", raw).decode("utf-8", "replace")


@dataclass
class PtyRun:
    raw: bytes  # every byte the program wrote to its terminal
    text: str  # the same without escape sequences
    seconds_to_ready: float
    returncode: int


def run_in_pty(
    argv: Sequence[str],
    *,
    cwd: Path,
    ready: Callable[[str], bool],
    timeout: float = 15.0,
    size: tuple[int, int] = (120, 40),
    quit_key: bytes = b"q",
    env: dict[str, str] | None = None,
    stop_signal: int | None = None,
) -> PtyRun:
    """Run ``argv`` on a new pseudo-terminal until ``ready(text so far)``, then press
    ``quit_key`` (or send it ``stop_signal``) and wait for it to exit. Fails if either takes
    too long."""
    master, slave = pty.openpty()
    cols, rows = size
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    full_env = {
        k: v for k, v in os.environ.items() if not k.startswith(("TEXTUAL", "PYTEST", "COLUMNS"))
    }
    full_env.update({"TERM": "xterm-256color", "COLORTERM": "truecolor", "NO_COLOR": ""})
    full_env.pop("NO_COLOR")
    full_env.update(env or {})
    proc = subprocess.Popen(
        list(argv),
        stdin=slave,
        stdout=slave,
        stderr=slave,
        cwd=cwd,
        env=full_env,
        start_new_session=True,
        close_fds=True,
    )
    os.close(slave)
    raw = bytearray()
    start = time.monotonic()
    ready_at: float | None = None

    def pump(wait: float) -> None:
        readable, _, _ = select.select([master], [], [], wait)
        if readable:
            try:
                data = os.read(master, 65536)
            except OSError:  # the program closed its terminal
                data = b""
            raw.extend(data)

    try:
        while ready_at is None:
            if time.monotonic() - start > timeout:
                raise AssertionError(
                    f"not ready after {timeout} s; the screen said:\n{strip_escapes(bytes(raw))[-3000:]}"
                )
            if proc.poll() is not None:
                raise AssertionError(
                    f"exited with {proc.returncode}:\n{strip_escapes(bytes(raw))[-3000:]}"
                )
            pump(0.2)
            if ready(strip_escapes(bytes(raw))):
                ready_at = time.monotonic() - start
        if stop_signal is None:
            os.write(master, quit_key)
        else:
            proc.send_signal(stop_signal)
        deadline = time.monotonic() + 20
        while proc.poll() is None and time.monotonic() < deadline:
            pump(0.1)
        assert proc.poll() is not None, "did not quit"
        while True:  # what is left in the terminal's buffer
            readable, _, _ = select.select([master], [], [], 0)
            if not readable:
                break
            try:
                data = os.read(master, 65536)
            except OSError:
                break
            if not data:
                break
            raw.extend(data)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    return PtyRun(bytes(raw), strip_escapes(bytes(raw)), ready_at, proc.returncode)


def test_demo_shows_counters_and_an_alert_within_15_seconds(tmp_path: Path) -> None:
    work, temp = tmp_path / "work", tmp_path / "temp"
    work.mkdir()
    temp.mkdir()

    def ready(text: str) -> bool:
        # A counter row (a range rule of the demo's groups, with its range) and an open alert.
        return "Counters" in text and "MqttD2CMessages" in text and "● open" in text

    run = run_in_pty(
        [sys.executable, "-c", "import sys; from tui.cli import main; sys.exit(main(['demo']))"],
        cwd=work,
        ready=ready,
        timeout=15,
        env={"TMPDIR": str(temp)},
    )
    assert run.returncode == 0, run.text[-2000:]
    assert run.seconds_to_ready < 15
    assert "Newest alerts" in run.text and "bench-board-1" in run.text
    assert "Traceback" not in run.text
    # Nothing written where it was started, and the temporary folder is gone again.
    assert list(work.iterdir()) == []
    assert list(temp.iterdir()) == []

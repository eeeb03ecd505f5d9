"""Restart benchmark: how long ``iotwatch run --headless`` takes to its first alert after a restart,
against the number of events the store holds — with and without a checkpoint.

For each size N it writes N hub-events records (D devices over a day, one declared device that
never sends), loads them with ``iotwatch replay --db``, then starts ``iotwatch run --headless``
on that database three times, each with a wall clock (``--clock``) one window later than the
last, so that every start has an alert to announce (the silent device's next empty window):

- **rebuild**: the first start finds no checkpoint and evaluates every stored event again;
- **checkpoint**: it stopped cleanly, so the next start loads the checkpoint it wrote and
  evaluates nothing again; the third start does the same once more (best of the two).

Reported per size: the time from process start to the first alert line on stdout, and the
restart's peak RSS. The target is < 2 s to the first alert at 8M stored events, flat in N. A
benchmark, not a test; exits non-zero only when something broke.

Usage: ``python bench/restart.py [--sizes 500000,2000000,8000000] [--devices 5000] [--out DIR]``.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import psutil

US = 1_000_000
START_S = 1_795_824_000  # 2026-11-28T00:00:00Z
SPAN_S = 86_400
CONFIG = """
[engine]
lateness = "PT1M"

[database]
path = "restart.db"

[[sources]]
type = "hub-events"
path = "live/*.jsonl"

[devices]
"silent-1" = "default"

[groups.default.rules.MqttD2CMessagesNotInAllowedRange]
min = 1
max = 100000
window = "PT15M"

[groups.default.rules.DirectMethodInvokesNotInAllowedRange]
max = 100000
window = "PT15M"
"""


def iotwatch() -> list[str]:
    script = shutil.which("iotwatch", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-m", "tui.cli"]


def generate(path: Path, n: int, devices: int, seed: int = 1) -> None:
    """``n`` hub-events records in time order over a day."""
    rng = random.Random(seed)
    names = [f"dev-{i:05d}" for i in range(devices)]
    step = SPAN_S * US / n
    with path.open("wb") as f:
        lines = []
        for i in range(n):
            t = START_S * US + int(i * step)
            s, us = divmod(t, US)
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(s)) + f".{us // 1000:03d}Z"
            op = '"op":"d2c","protocol":"mqtt"' if rng.random() < 0.9 else '"op":"method"'
            lines.append(f'{{"time":"{stamp}","deviceId":"{rng.choice(names)}",{op}}}\n')
            if len(lines) >= 100_000:
                f.write("".join(lines).encode())
                lines.clear()
        f.write("".join(lines).encode())


def clock(k: int) -> str:
    """The k-th start's wall clock: one 15-minute window after the last event, then one more
    per start."""
    s = START_S + SPAN_S + (k + 1) * 900 + 61
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(s))


def start(folder: Path, k: int) -> tuple[float, float, str]:
    """Start ``run --headless``; seconds to its first alert line and its peak RSS (MB)."""
    cmd = [*iotwatch(), "run", "--headless", "--config", "iotwatch.toml", "--clock", clock(k)]
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd, cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL
    )
    ps = psutil.Process(proc.pid)
    peak = 0.0
    assert proc.stdout is not None
    os.set_blocking(proc.stdout.fileno(), False)
    first = ""
    while proc.poll() is None:
        try:
            peak = max(peak, ps.memory_info().rss / 1e6)
        except psutil.Error:
            break
        chunk = proc.stdout.readline()
        if chunk:
            first = chunk.decode()
            break
        time.sleep(0.005)
    took = time.perf_counter() - t0
    proc.send_signal(signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=600)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    if proc.returncode != 0 or not first:
        raise RuntimeError(f"run exited {proc.returncode}: {err.decode()[-1000:]}")
    return took, peak, first


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--sizes",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[500_000, 2_000_000, 8_000_000],
        help="stored events (500000,2000000,8000000)",
    )
    p.add_argument("--devices", type=int, default=5_000, help="devices (5000)")
    p.add_argument("--out", type=Path, help="keep the folders here")
    args = p.parse_args(argv)
    base = args.out or Path(tempfile.mkdtemp(prefix="iotwatch-restart-"))
    rows = []
    try:
        for n in args.sizes:
            folder = base / f"n{n}"
            shutil.rmtree(folder, ignore_errors=True)
            (folder / "live").mkdir(parents=True)
            (folder / "iotwatch.toml").write_text(CONFIG)
            data = folder / "hub.jsonl"
            t0 = time.perf_counter()
            generate(data, n, args.devices)
            gen = time.perf_counter() - t0
            t0 = time.perf_counter()
            subprocess.run(
                [
                    *iotwatch(),
                    "replay",
                    "--config",
                    "iotwatch.toml",
                    "--db",
                    "restart.db",
                    "hub.jsonl",
                ],
                cwd=folder,
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            load = time.perf_counter() - t0
            data.unlink()  # the live session must read nothing new
            rebuild, rss_rebuild, _ = start(folder, 0)
            again = [start(folder, k) for k in (1, 2)]
            fast, rss_fast = min(a[0] for a in again), max(a[1] for a in again)
            db_mb = sum(f.stat().st_size for f in folder.glob("restart.db*")) / 1e6
            rows.append((n, rebuild, rss_rebuild, fast, rss_fast, db_mb))
            print(
                f"{n:>10,} events: generated {gen:.0f} s, replay --db {load:.0f} s, "
                f"{db_mb:,.0f} MB; first alert after a restart: rebuild {rebuild:.2f} s "
                f"({rss_rebuild:.0f} MB), from the checkpoint {fast:.2f} s ({rss_fast:.0f} MB)",
                flush=True,
            )
    finally:
        if args.out is None:
            shutil.rmtree(base, ignore_errors=True)
    print()
    print("stored events   rebuild s   checkpoint s   checkpoint RSS MB")
    for n, rebuild, _, fast, rss, _db in rows:
        print(f"{n:>13,}   {rebuild:9.2f}   {fast:12.2f}   {rss:17.0f}")
    worst = max(r[3] for r in rows)
    print(
        f"\ntarget: < 2 s to the first alert at every size from a checkpoint: "
        f"{'met' if worst < 2 else 'NOT met'} (worst {worst:.2f} s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

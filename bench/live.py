"""Live benchmark: ``iotwatch run --headless`` following files that grow at increasing rates.

Starts ``iotwatch run --headless --config T/iotwatch.toml --db T/live.db`` on two file sources
(hub-events and security-messages JSON lines in a temporary folder T), then appends events with
current timestamps in small batches, one rate step after another. For each step it reports the
events/s committed to the database (from ``streams.offset``/``streams.events``, polled
read-only), the commit latency of every appended batch, and the alert latency: probes (a
ProcessCreate of a forbidden, unique executable) appended at known times, timed until their
``"event": "opened"`` line appears on the headless stdout. ``--soak`` runs one steady rate for a
long time and samples the process's RSS. A benchmark, not a test: it exits non-zero only when
something broke (a crash, events or probe alerts missing at the end).

Usage: ``python bench/live.py [--quick] [--rates 2000,5000,...] [--step S] [--repeat K]``,
``python bench/live.py --soak [SECONDS] [--soak-rate N]``.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import orjson
import psutil

RATES = (2_000, 5_000, 10_000, 20_000, 40_000)
QUICK_STEPS = ((2_000, 6.0), (5_000, 12.0), (20_000, 8.0))
TARGET_RATE = 20_000  # events/s sustained
ALERT_RATE = 5_000  # the step whose alert latency is held against the target
TARGET_P99_MS = 200.0
MIN_PROBES = 100
BOUNDED_BACKLOG_S = 2.0  # a step is sustained when nothing appended is older than this, uncommitted
FLAT_MB_PER_MIN = 1.0  # the soak's RSS counts as flat below this slope after its first minute
DB_POLL_S = 0.005
PROBE_PREFIX = "/opt/bench/probe-"
HUB = "hub-events.jsonl"
SEC = "security.jsonl"
_ALLOWED_EXES = ("/usr/bin/python3", "/bin/sh", "/usr/sbin/sshd", "/usr/sbin/cron")
_HUB_OPS = (
    (b'"op":"d2c","protocol":"mqtt"', 0.55),
    (b'"op":"d2c","protocol":"amqp"', 0.10),
    (b'"op":"d2c","protocol":"http"', 0.10),
    (b'"op":"c2d","protocol":"mqtt"', 0.10),
    (b'"op":"twin-update"', 0.08),
    (b'"op":"method","status":200', 0.07),
)
_RANGE_RULES = (
    ("MqttD2CMessagesNotInAllowedRange", "PT5M"),
    ("AmqpD2CMessagesNotInAllowedRange", "PT5M"),
    ("HttpD2CMessagesNotInAllowedRange", "PT5M"),
    ("MqttC2DMessagesNotInAllowedRange", "PT15M"),
    ("TwinUpdatesNotInAllowedRange", "PT15M"),
    ("DirectMethodInvokesNotInAllowedRange", "PT15M"),
    ("UnauthorizedOperationsNotInAllowedRange", "PT15M"),
    ("ActiveConnectionsNotInAllowedRange", "PT15M"),
)


# --------------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------------


def write_config(folder: Path, all_rules: str | None = None, horizon: str = "P1D") -> Path:
    """Two file sources, eight range rules that never fire (with ``all_rules``: all sixteen, at
    that window) and two allow-lists."""
    lines = ["[engine]", 'lateness = "PT1M"', f'horizon = "{horizon}"', 'quiet = "PT1H"', ""]
    for kind, name in (("hub-events", HUB), ("security-messages", SEC)):
        lines += ["[[sources]]", f'type = "{kind}"', f'path = "{name}"', ""]
    rules = _RANGE_RULES
    if all_rules is not None:
        from engine.catalogue import RANGE_RULES

        rules = tuple((r.name, all_rules) for r in RANGE_RULES)
    for rule, window in rules:
        lines += [f"[groups.default.rules.{rule}]", "max = 1000000000", f'window = "{window}"', ""]
    exes = ", ".join(f'"{e}"' for e in _ALLOWED_EXES)
    lines += ["[groups.default.rules.ProcessNotAllowed]", f"allow = [{exes}]", ""]
    lines += ["[groups.default.rules.ConnectionToIpNotAllowed]", 'allow = ["10.0.0.0/8"]', ""]
    path = folder / "iotwatch.toml"
    path.write_text("\n".join(lines))
    return path


def _pick(rng: random.Random, table: Sequence[tuple[bytes, float]]) -> bytes:
    return rng.choices([v for v, _ in table], weights=[w for _, w in table])[0]


def _stamp(t: float) -> bytes:
    ms = int(t * 1000) % 1000
    return (time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{ms:03d}Z").encode()


@dataclass
class Batch:
    """One write to one file: where it ends, when it was written and when it was committed."""

    end: int
    events: int
    t: float
    step: int
    committed: float | None = None


@dataclass
class Probe:
    """One forbidden executable: when it was appended and when its alert opened."""

    value: str
    t: float
    step: int
    opened: float | None = None


class Feed:
    """Appends hub-events and security-messages lines with current times; logs every write."""

    def __init__(self, folder: Path, devices: int, security_share: float, seed: int) -> None:
        rng = random.Random(seed)
        self.rng = rng
        self.pool = max(8192, 4 * devices)  # lines made once, cycled with current times
        self.share = security_share
        self.paths = {HUB: folder / HUB, SEC: folder / SEC}
        self.fds = {
            name: os.open(p, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            for name, p in self.paths.items()
        }
        self.offsets = dict.fromkeys(self.paths, 0)
        self.logs: dict[str, deque[Batch]] = {name: deque() for name in self.paths}
        self.batches: list[Batch] = []
        self.probes: dict[str, Probe] = {}
        self.appended = 0  # events
        self._carry = 0.0
        names = [f"dev-{i:05d}" for i in range(devices)]
        self._hub = [
            b'"deviceId":"%s",%s}' % (rng.choice(names).encode(), _pick(rng, _HUB_OPS))
            for _ in range(self.pool)
        ]
        self._sec: list[tuple[bytes, bytes]] = []
        for _ in range(self.pool):
            if rng.random() < 0.6:
                item = {
                    "Executable": rng.choice(_ALLOWED_EXES),
                    "ProcessId": str(rng.randint(300, 65000)),
                    "UserId": "0",
                    "RemoteAddress": f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}",
                    "RemotePort": "8883",
                    "Protocol": "tcp",
                    "Direction": "Out",
                }
                name = "ConnectionCreate"
            else:
                exe = rng.choice(_ALLOWED_EXES)
                item = {"Executable": exe, "ProcessId": "42", "UserId": "0", "CommandLine": exe}
                name = "ProcessCreate"
            head, tail = self._message(rng.choice(names), name, item).split(b"@TS@")
            self._sec.append((head, tail))

    @staticmethod
    def _message(device: str, name: str, item: dict[str, str]) -> bytes:
        event = {
            "EventType": "Security",
            "Category": "Triggered",
            "Name": name,
            "IsEmpty": False,
            "PayloadSchemaVersion": "1.0",
            "Id": "00000000-0000-4000-8000-000000000000",
            "TimestampUTC": "@TS@",
            "Payload": [item],
        }
        body = {"AgentVersion": "0.0.5", "MessageSchemaVersion": "1.0", "Events": [event]}
        return orjson.dumps({"deviceId": device, "body": body})

    def write(self, events: int, probe: bool, step: int) -> None:
        """Append ``events`` events (hub-events and security messages) and maybe one probe."""
        now = time.time()
        stamp = _stamp(now)
        self._carry += events * self.share
        n_sec = int(self._carry)
        self._carry -= n_sec
        n_hub = events - n_sec
        start = self.rng.randrange(self.pool)
        if n_hub:
            prefix = b'{"time":"' + stamp + b'",'
            rests = [self._hub[(start + i) % self.pool] for i in range(n_hub)]
            self._append(HUB, prefix + (b"\n" + prefix).join(rests) + b"\n", n_hub, step)
        if n_sec or probe:
            lines = [
                h + stamp + t for h, t in (self._sec[(start + i) % self.pool] for i in range(n_sec))
            ]
            value = ""
            if probe:
                value = f"{PROBE_PREFIX}{len(self.probes):06d}"
                item = {
                    "Executable": value,
                    "ProcessId": "666",
                    "UserId": "0",
                    "CommandLine": value,
                }
                head, tail = self._message(
                    f"probe-{len(self.probes) % 16:02d}", "ProcessCreate", item
                ).split(b"@TS@")
                lines.append(head + stamp + tail)
            t = self._append(SEC, b"\n".join(lines) + b"\n", len(lines), step)
            if probe:
                self.probes[value] = Probe(value, t, step)

    def warm_up(self) -> None:
        """One line per file, so both are found before the steps start."""
        self.write(2, True, -1)

    def _append(self, name: str, data: bytes, events: int, step: int) -> float:
        fd = self.fds[name]
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        t = time.monotonic()
        self.offsets[name] += len(data)
        self.appended += events
        batch = Batch(self.offsets[name], events, t, step)
        self.batches.append(batch)
        self.logs[name].append(batch)
        return t

    def close(self) -> None:
        for fd in self.fds.values():
            os.close(fd)


# --------------------------------------------------------------------------------------------------
# Observers: the database (read-only), stdout, the process
# --------------------------------------------------------------------------------------------------


class DbWatcher(threading.Thread):
    """Polls ``streams`` every few ms: marks batches committed, records committed events."""

    def __init__(self, db: Path, feed: Feed) -> None:
        super().__init__(name="db watcher", daemon=True)
        self.db, self.feed = db, feed
        self.series: list[tuple[float, int]] = []  # (monotonic, committed events)
        self.halt = threading.Event()
        self.error: str | None = None

    def committed(self) -> int:
        return self.series[-1][1] if self.series else 0

    def run(self) -> None:
        conn: sqlite3.Connection | None = None
        while not self.halt.wait(DB_POLL_S):
            try:
                if conn is None:
                    if not self.db.exists():
                        continue
                    conn = sqlite3.connect(self.db.as_uri() + "?mode=ro", uri=True)
                rows = conn.execute(
                    "SELECT name, offset, events FROM streams WHERE kind = 'file'"
                ).fetchall()
            except sqlite3.Error as exc:  # not created yet, or busy for a moment
                self.error = str(exc)
                continue
            now = time.monotonic()
            total = 0
            for name, offset, events in rows:
                total += events
                log = self.feed.logs.get(os.path.basename(name))
                while log and log[0].end <= offset:
                    log.popleft().committed = now
            if not self.series or self.series[-1][1] != total:
                self.series.append((now, total))
        if conn is not None:
            conn.close()


class StdoutReader(threading.Thread):
    """Reads the headless JSON lines as they come; times the probes' ``opened`` lines."""

    def __init__(self, stream: IO[bytes], feed: Feed) -> None:
        super().__init__(name="stdout reader", daemon=True)
        self.stream, self.feed = stream, feed
        self.kinds: dict[str, int] = {}
        self.opened: dict[str, float] = {}
        self.lines = 0

    def run(self) -> None:
        for line in self.stream:
            t = time.monotonic()
            self.lines += 1
            try:
                rec = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            kind = rec.get("event", "?")
            self.kinds[kind] = self.kinds.get(kind, 0) + 1
            value = rec.get("value")
            if kind == "opened" and isinstance(value, str) and value.startswith(PROBE_PREFIX):
                self.opened.setdefault(value, t)


class Sampler(threading.Thread):
    """RSS (MB) and CPU of the iotwatch process every ``period`` seconds."""

    def __init__(self, pid: int, period: float) -> None:
        super().__init__(name="rss sampler", daemon=True)
        self.proc = psutil.Process(pid)
        self.period = period
        self.samples: list[tuple[float, float]] = []
        self.halt = threading.Event()

    def rss(self) -> float:
        return float(self.proc.memory_info().rss) / 1e6

    def cpu(self) -> float:
        t = self.proc.cpu_times()
        return float(t.user + t.system)

    def run(self) -> None:
        while True:
            try:
                self.samples.append((time.monotonic(), self.rss()))
            except psutil.Error:
                return
            if self.halt.wait(self.period):
                return


# --------------------------------------------------------------------------------------------------
# One run of iotwatch
# --------------------------------------------------------------------------------------------------


def iotwatch_command() -> list[str]:
    """The ``iotwatch`` console script of this interpreter's environment."""
    here = str(Path(sys.executable).parent)
    script = shutil.which("iotwatch", path=here) or shutil.which("iotwatch")
    return [script] if script else [sys.executable, "-m", "tui.cli"]


@dataclass
class StepResult:
    """The figures of one rate step."""

    rate: int
    seconds: float
    appended_eps: float
    committed_eps: float
    backlog_s: float  # age of the oldest uncommitted batch at the end of the step
    commit_ms: list[float] = field(default_factory=list)
    alert_ms: list[float] = field(default_factory=list)
    probes: int = 0
    cpu_pct: float = 0.0
    rss_mb: float = 0.0

    @property
    def sustained(self) -> bool:
        return self.backlog_s <= BOUNDED_BACKLOG_S and self.committed_eps >= 0.9 * self.rate


class Live:
    """A temporary folder, an iotwatch subprocess, the feed and the observers."""

    def __init__(self, folder: Path, args: argparse.Namespace, sample_period: float) -> None:
        self.folder = folder
        self.db = folder / "live.db"
        self.config = write_config(folder, args.all_rules, args.horizon)
        self.feed = Feed(folder, args.devices, args.security_share, args.seed)
        self.interval = args.interval / 1000
        self.probe_rate = args.probes
        self.feed.warm_up()
        self.err = (folder / "iotwatch.stderr").open("wb")
        cmd = [*iotwatch_command(), "run", "--headless", "--config", str(self.config)]
        self.proc = subprocess.Popen(
            [*cmd, "--db", str(self.db)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self.err,
            cwd=folder,
        )
        assert self.proc.stdout is not None
        self.watcher = DbWatcher(self.db, self.feed)
        self.reader = StdoutReader(self.proc.stdout, self.feed)
        self.sampler = Sampler(self.proc.pid, sample_period)
        for t in (self.watcher, self.reader, self.sampler):
            t.start()
        try:
            self.ready_s = self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, timeout: float = 60.0) -> float:
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"iotwatch exited {self.proc.returncode}: {self.stderr()}")
            if all(b.committed is not None for b in self.feed.batches) and self.reader.opened:
                return time.monotonic() - t0
            time.sleep(0.05)
        raise RuntimeError(f"iotwatch did not commit the warm-up lines in {timeout:.0f} s")

    def stderr(self) -> str:
        self.err.flush()
        return (self.folder / "iotwatch.stderr").read_text(errors="replace").strip()[-2000:]

    def step(self, index: int, rate: int, seconds: float, probes: float | None = None) -> float:
        """Append at ``rate`` events/s for ``seconds``; returns the step's start (monotonic)."""
        probe_rate = self.probe_rate if probes is None else probes
        rng = self.feed.rng
        t0 = time.monotonic()
        sent = 0
        next_probe = t0 + rng.expovariate(probe_rate) if probe_rate > 0 else float("inf")
        tick = t0
        while True:
            now = time.monotonic()
            if now >= t0 + seconds:
                break
            due = int(rate * (now - t0)) - sent
            probe = now >= next_probe
            if probe:
                next_probe = max(next_probe + rng.expovariate(probe_rate), now)
            if due > 0 or probe:
                self.feed.write(due, probe, index)
                sent += max(due, 0)
            tick += self.interval
            pause = tick - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            else:
                tick = time.monotonic()
        return t0

    def result(self, index: int, rate: int, t0: float, t1: float, cpu: float) -> StepResult:
        """The figures of step ``index`` that ran from ``t0`` to ``t1`` (monotonic)."""
        batches = [b for b in self.feed.batches if b.step == index]
        appended = sum(b.events for b in batches)
        committed = _at(self.watcher.series, t1) - _at(self.watcher.series, t0)
        waiting = [t1 - b.t for b in self.feed.batches if b.t <= t1 and (b.committed or 1e18) > t1]
        probes = [p for p in self.feed.probes.values() if p.step == index]
        for p in probes:
            p.opened = self.reader.opened.get(p.value)
        rss = [r for t, r in self.sampler.samples if t0 <= t <= t1]
        return StepResult(
            rate,
            t1 - t0,
            appended / (t1 - t0),
            committed / (t1 - t0),
            max(waiting, default=0.0),
            [(b.committed - b.t) * 1000 for b in batches if b.committed is not None],
            [(p.opened - p.t) * 1000 for p in probes if p.opened is not None],
            len(probes),
            cpu / (t1 - t0) * 100,
            max(rss, default=0.0),
        )

    def drain(self, timeout: float) -> float | None:
        """Wait until every appended batch is committed and every probe alert seen."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if self.proc.poll() is not None:
                return None
            done = all(b.committed is not None for b in self.feed.batches)
            if done and len(self.reader.opened) >= len(self.feed.probes):
                return time.monotonic() - t0
            time.sleep(0.05)
        return None

    def stop(self) -> tuple[int, list[str]]:
        """SIGTERM iotwatch, wait; return its exit status and what broke."""
        broken: list[str] = []
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                broken.append("iotwatch did not stop within 60 s of SIGTERM")
        self.reader.join(10)
        self.watcher.halt.set()
        self.sampler.halt.set()
        self.watcher.join(5)
        self.sampler.join(5)
        self.feed.close()
        self.err.close()
        rc = self.proc.returncode
        if rc != 0:
            broken.append(f"iotwatch exited {rc}: {self.stderr()}")
        try:
            conn = sqlite3.connect(self.db.as_uri() + "?mode=ro", uri=True)
            (stored,) = conn.execute("SELECT count(*) FROM events").fetchone()
            conn.close()
        except sqlite3.Error as exc:
            broken.append(f"reading the database: {exc}")
        else:
            if stored != self.feed.appended:
                broken.append(f"{self.feed.appended} events appended, {stored} stored")
        missing = [v for v in self.feed.probes if v not in self.reader.opened]
        if missing:
            broken.append(f"{len(missing)} probe alerts never opened (first: {missing[0]})")
        return rc, broken


def _at(series: list[tuple[float, int]], t: float) -> int:
    """The committed count at time ``t``."""
    value = 0
    for ts, n in series:
        if ts > t:
            break
        value = n
    return value


def _pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)  # nearest rank
    return ordered[min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))]


def _ms(values: list[float]) -> str:
    if not values:
        return f"{'-':>7} {'-':>7} {'-':>7}"
    return f"{_pct(values, 50):7.0f} {_pct(values, 99):7.0f} {max(values):7.0f}"


# --------------------------------------------------------------------------------------------------
# Step run and soak
# --------------------------------------------------------------------------------------------------


def run_steps(args: argparse.Namespace, folder: Path) -> tuple[list[StepResult], list[str]]:
    """One iotwatch, every rate step in turn; the steps' figures and what broke."""
    steps: Sequence[tuple[int, float]] = (
        QUICK_STEPS if args.quick else [(r, args.step) for r in args.rates]
    )
    live = Live(folder, args, 1.0)
    print(f"  iotwatch ready in {live.ready_s:.1f} s (pid {live.proc.pid})")
    spans: list[tuple[int, float, float, float]] = []  # rate, start, end, cpu seconds
    broken: list[str] = []
    try:
        for i, (rate, seconds) in enumerate(steps):
            cpu0 = live.sampler.cpu()
            t0 = live.step(i, rate, seconds)
            t1 = time.monotonic()
            spans.append((rate, t0, t1, live.sampler.cpu() - cpu0))
            time.sleep(0.3)  # what the step's last batches need to commit; judged again below
            print(f"  step {rate:>6,} ev/s: {_row(live.result(i, *spans[-1]))}", flush=True)
        drained = live.drain(args.drain)
        if drained is None:
            broken.append(f"backlog not committed within {args.drain:.0f} s after the last step")
        else:
            print(f"  drained {drained:.1f} s after the last step")
    finally:
        rc, more = live.stop()
    # Latencies of batches and probes committed after their step ended count too.
    results = [live.result(i, *span) for i, span in enumerate(spans)]
    broken += more
    print(
        f"  stdout: {live.reader.lines} lines {dict(sorted(live.reader.kinds.items()))}; exit {rc}"
    )
    return results, broken


def _row(r: StepResult) -> str:
    return (
        f"appended {r.appended_eps:>8,.0f}/s committed {r.committed_eps:>8,.0f}/s "
        f"backlog {r.backlog_s:5.2f} s  commit p50/p99/max {_ms(r.commit_ms)} ms  "
        f"alert ({len(r.alert_ms)}/{r.probes}) {_ms(r.alert_ms)} ms  cpu {r.cpu_pct:3.0f} %  "
        f"rss {r.rss_mb:4.0f} MB"
    )


def report_steps(runs: list[list[StepResult]]) -> None:
    """Best of K per rate and figure, and the targets."""
    k = len(runs)
    print()
    print(f"live steps (best of {k} run{'s' if k > 1 else ''} per figure; latencies in ms)")
    head = (
        f"{'rate':>8} {'appended/s':>11} {'committed/s':>12} {'backlog s':>10}  "
        f"{'commit p50':>10} {'p99':>7} {'max':>7}  {'alert n':>7} {'p50':>7} {'p99':>7} "
        f"{'max':>7}  {'cpu %':>5} {'rss MB':>6}  sustained"
    )
    print(head)
    best: list[StepResult] = []
    for i in range(len(runs[0])):
        rs = [run[i] for run in runs]
        by_commit = min(rs, key=lambda r: _pct(r.commit_ms, 99) if r.commit_ms else 1e18)
        by_alert = min(rs, key=lambda r: _pct(r.alert_ms, 99) if r.alert_ms else 1e18)
        top = max(rs, key=lambda r: (r.sustained, r.committed_eps))
        best.append(top)
        print(
            f"{top.rate:>8,} {top.appended_eps:>11,.0f} {top.committed_eps:>12,.0f} "
            f"{min(r.backlog_s for r in rs):>10.2f}  {_pct(by_commit.commit_ms, 50):>10.0f} "
            f"{_pct(by_commit.commit_ms, 99):>7.0f} {max(by_commit.commit_ms or [0]):>7.0f}  "
            f"{len(by_alert.alert_ms):>7} {_pct(by_alert.alert_ms, 50):>7.0f} "
            f"{_pct(by_alert.alert_ms, 99):>7.0f} {max(by_alert.alert_ms or [0]):>7.0f}  "
            f"{top.cpu_pct:>5.0f} {top.rss_mb:>6.0f}  {'yes' if any(r.sustained for r in rs) else 'NO'}"
        )
    sustained = [r for r in best if any(x.sustained for x in runs_at(runs, r.rate))]
    top_rate = max((r.rate for r in sustained), default=0)
    peak = max(r.committed_eps for run in runs for r in run)
    print()
    ok = top_rate >= TARGET_RATE
    print(
        f"sustained events/s     {top_rate:>10,}   highest step with a bounded backlog "
        f"(<= {BOUNDED_BACKLOG_S:.0f} s) (target >= {TARGET_RATE:,}: {'met' if ok else 'NOT met'})"
    )
    print(f"peak committed events/s{peak:>10,.0f}   (any step)")
    at = [r for run in runs for r in run if r.rate == ALERT_RATE and r.alert_ms]
    if at:
        r = min(at, key=lambda x: _pct(x.alert_ms, 99))
        p99 = _pct(r.alert_ms, 99)
        verdict = "met" if p99 < TARGET_P99_MS else "NOT met"
        few = (
            f"; only {len(r.alert_ms)} samples, want >= {MIN_PROBES}"
            if len(r.alert_ms) < MIN_PROBES
            else ""
        )
        print(
            f"alert latency @ {ALERT_RATE:,}/s  p50 {_pct(r.alert_ms, 50):.0f} ms, p99 {p99:.0f} ms "
            f"over {len(r.alert_ms)} probes (target p99 < {TARGET_P99_MS:.0f} ms: {verdict}{few})"
        )
        print(
            f"commit latency @ {ALERT_RATE:,}/s p50 {_pct(r.commit_ms, 50):.0f} ms, "
            f"p99 {_pct(r.commit_ms, 99):.0f} ms over {len(r.commit_ms)} batches"
        )


def runs_at(runs: list[list[StepResult]], rate: int) -> list[StepResult]:
    return [r for run in runs for r in run if r.rate == rate]


def _slope(samples: list[tuple[float, float]]) -> float:
    """Least-squares slope of (s, MB) in MB/min."""
    if len(samples) < 3:
        return float("nan")
    xs = [t for t, _ in samples]
    ys = [y for _, y in samples]
    return statistics.linear_regression(xs, ys).slope * 60


def run_soak(args: argparse.Namespace, folder: Path) -> list[str]:
    """One steady rate for ``args.soak`` seconds; RSS, throughput and latencies per minute."""
    live = Live(folder, args, args.rss_every)
    print(
        f"  iotwatch ready in {live.ready_s:.1f} s (pid {live.proc.pid}); soak at "
        f"{args.soak_rate:,} events/s for {args.soak:.0f} s, RSS every {args.rss_every:g} s"
    )
    broken: list[str] = []
    minute = 60.0
    chunks = max(1, round(args.soak / minute))
    span = args.soak / chunks
    t_start = time.monotonic()
    spans: list[tuple[int, float, float, float]] = []
    try:
        for i in range(chunks):
            cpu0 = live.sampler.cpu()
            t0 = live.step(i, args.soak_rate, span, args.soak_probes)
            t1 = time.monotonic()
            spans.append((args.soak_rate, t0, t1, live.sampler.cpu() - cpu0))
            res = live.result(i, *spans[-1])
            print(f"  {(t1 - t_start) / 60:5.1f} min: {_row(res)}", flush=True)
        drained = live.drain(args.drain)
        if drained is None:
            broken.append(f"backlog not committed within {args.drain:.0f} s after the soak")
    finally:
        rc, more = live.stop()
    broken += more
    results = [live.result(i, *span) for i, span in enumerate(spans)]
    samples = [(t - t_start, r) for t, r in live.sampler.samples if t >= t_start]
    if not samples:
        return [*broken, "no RSS samples"]
    rss = [r for _, r in samples]
    after = [(t, r) for t, r in samples if t >= minute]
    slope_all, slope_after = _slope(samples), _slope(after)
    commit = [x for r in results for x in r.commit_ms]
    alerts = [x for r in results for x in r.alert_ms]
    db_mb = sum(p.stat().st_size for p in folder.glob("live.db*")) / 1e6
    flat = abs(slope_after) <= FLAT_MB_PER_MIN
    print()
    eps = [r.committed_eps for r in results]
    verdict = "met" if flat else "NOT met"
    print(f"soak: {args.soak:.0f} s at {args.soak_rate:,} events/s; exit {rc}")
    print(f"  events appended     {live.feed.appended:,}; database {db_mb:,.0f} MB")
    print(
        f"  committed events/s  {statistics.fmean(eps):,.0f} (mean of minutes; min {min(eps):,.0f})"
    )
    print(
        f"  RSS first/last/max  {rss[0]:.0f} / {rss[-1]:.0f} / {max(rss):.0f} MB "
        f"({len(rss)} samples)"
    )
    print(
        f"  RSS slope           {slope_all:+.2f} MB/min over the run, {slope_after:+.2f} MB/min "
        f"after the first minute (target: flat, within ±{FLAT_MB_PER_MIN:g} MB/min: {verdict})"
    )
    print(
        f"  commit latency      p50 {_pct(commit, 50):.0f} ms, p99 {_pct(commit, 99):.0f} ms, "
        f"max {max(commit, default=0):.0f} ms over {len(commit):,} batches"
    )
    print(
        f"  alert latency       p50 {_pct(alerts, 50):.0f} ms, p99 {_pct(alerts, 99):.0f} ms "
        f"over {len(alerts)} probes"
    )
    print(f"  cpu                 {statistics.fmean(r.cpu_pct for r in results):.0f} % of one core")
    return broken


# --------------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the options, run the steps (or the soak), report."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="a ~1-minute smoke run: 2k, 5k, 20k ev/s")
    p.add_argument(
        "--rates",
        type=lambda s: [int(x) for x in s.split(",")],
        default=list(RATES),
        help="events/s of the steps (2000,5000,10000,20000,40000)",
    )
    p.add_argument("--step", type=float, default=15.0, help="seconds per step (15)")
    p.add_argument("--repeat", type=int, default=1, metavar="K", help="best of K runs (1)")
    p.add_argument("--interval", type=float, default=20.0, help="ms between appends (20)")
    p.add_argument("--probes", type=float, default=10.0, help="alert probes per second (10)")
    p.add_argument("--devices", type=int, default=2_000, help="devices (2000)")
    p.add_argument(
        "--security-share", type=float, default=0.2, help="share of security-message events (0.2)"
    )
    p.add_argument("--seed", type=int, default=1, help="generator seed (1)")
    p.add_argument(
        "--soak",
        type=float,
        nargs="?",
        const=600.0,
        metavar="SECONDS",
        help="instead of the steps: one steady rate for SECONDS (600), RSS sampled",
    )
    p.add_argument("--soak-rate", type=int, default=5_000, help="events/s of the soak (5000)")
    p.add_argument(
        "--soak-probes", type=float, default=0.5, help="alert probes/s in the soak (0.5)"
    )
    p.add_argument("--rss-every", type=float, default=5.0, help="soak: seconds between RSS samples")
    p.add_argument("--drain", type=float, default=120.0, help="seconds allowed to drain (120)")
    p.add_argument(
        "--all-rules",
        metavar="WINDOW",
        nargs="?",
        const="PT15M",
        help="enable all 16 range rules at WINDOW (PT15M) instead of eight: every device then"
        " has 16 tracks, the state a live session keeps for amendments",
    )
    p.add_argument("--horizon", default="P1D", help="[engine] horizon (P1D)")
    p.add_argument("--out", type=Path, help="keep the folder (inputs, database, stderr) here")
    args = p.parse_args(argv)
    if args.repeat < 1 or args.devices < 1 or not 0 <= args.security_share <= 1:
        p.error("--repeat and --devices must be positive, --security-share in [0, 1]")

    broken: list[str] = []
    try:
        if args.soak is not None:
            with _folder(args.out, "soak") as folder:
                broken += run_soak(args, folder)
        else:
            runs: list[list[StepResult]] = []
            for k in range(args.repeat):
                print(f"run {k + 1}/{args.repeat}")
                with _folder(args.out, f"run{k + 1}") as folder:
                    results, more = run_steps(args, folder)
                broken += more
                runs.append(results)
            report_steps(runs)
    except RuntimeError as exc:  # iotwatch did not start
        broken.append(str(exc))
    for line in broken:
        print(f"BROKEN: {line}", file=sys.stderr)
    return 1 if broken else 0


class _folder:
    """A fresh temporary folder (removed afterwards), or ``out/NAME`` (kept, emptied first)."""

    def __init__(self, out: Path | None, name: str) -> None:
        self.keep = out is not None
        if out is None:
            self.path = Path(tempfile.mkdtemp(prefix="iotwatch-live-"))
        else:
            self.path = out / name
            shutil.rmtree(self.path, ignore_errors=True)
            self.path.mkdir(parents=True)

    def __enter__(self) -> Path:
        return self.path

    def __exit__(self, *exc: object) -> None:
        if not self.keep:
            shutil.rmtree(self.path, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

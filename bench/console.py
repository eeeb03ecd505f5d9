"""Console benchmark: key → repaint latency, frame times and CPU of the Textual console under load.

A writer subprocess appends hub-events and security-messages lines with current timestamps to two
files in a temporary folder T at ``--rate`` events/s (10,000) over ``--devices`` devices (2,000),
while the real console (``tui.app.IotwatchApp`` on a started ``tui.bridge.Bridge``, the engine on
its own thread, exactly as ``iotwatch run`` wires them) runs headless in this process through
``App.run_test(size=(160, 50))``. A keyboard thread presses keys at human intervals — tab switches
``1``..``3``, ``tab`` focus moves, ``down``/``up`` in tables, ``/`` and filter typing — and the
benchmark times each press to the end of the first frame that paints its effect; it also times
every frame, the UI loop's stalls (a heartbeat task), each pane's ``gather``/``show``, the CPU of
the UI thread, the console's workers and the engine's threads, and the events/s the engine
committed to the database. A benchmark, not a test: it exits non-zero only when something broke.

Usage: ``python bench/console.py [--quick] [--seconds S] [--rate N] [--devices N] [--repeat K]``.
"""

from __future__ import annotations

import argparse
import array
import asyncio
import contextlib
import cProfile
import gc
import inspect
import io
import itertools
import logging
import os
import pstats
import random
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import orjson
import psutil

SIZE = (160, 50)
TARGET_KEY_MS = 100.0  # key press -> the repaint that shows it (p95)
TARGET_FRAME_MS = 250.0  # no frame (and no stall of the UI loop) longer than this
KEY_TIMEOUT_S = 5.0  # a press whose effect is not painted by then counts as lost
WRITE_INTERVAL_S = 0.02
HEARTBEAT_S = 0.01
DB_POLL_S = 0.25
RSS_EVERY_S = 5.0
SLOPE_AFTER_S = 120.0  # the RSS slope is taken after the first two minutes of the window
TARGET_SLOPE = 1.0  # MB/min either way
PENDING_S = 30.0  # a press still pending after this long is settled as it stands
HUB = "hub-events.jsonl"
SEC = "security.jsonl"
HOT_SHARE, HOT_WEIGHT = 0.01, 6.0  # devices above MqttD2C's max every window
QUIET_SHARE, QUIET_WEIGHT = 0.01, 0.05  # devices below TwinUpdates' min now and then
ALLOWED_EXES = ("/usr/bin/python3", "/bin/sh", "/usr/sbin/sshd", "/usr/sbin/cron")
FORBIDDEN_EXES = tuple(f"/tmp/.cache/miner-{i:02d}" for i in range(40))
HUB_OPS = (
    (b'"op":"d2c","protocol":"mqtt"', 0.55),
    (b'"op":"d2c","protocol":"amqp"', 0.10),
    (b'"op":"d2c","protocol":"http"', 0.10),
    (b'"op":"c2d","protocol":"mqtt"', 0.10),
    (b'"op":"twin-update"', 0.08),
    (b'"op":"method","status":200', 0.07),
)
# (rule, min, max) per group; every window PT1M.
RANGE_RULES = {
    "default": (
        ("MqttD2CMessagesNotInAllowedRange", 0, 400),
        ("AmqpD2CMessagesNotInAllowedRange", 0, 200),
        ("TwinUpdatesNotInAllowedRange", 1, 200),
        ("MqttC2DMessagesNotInAllowedRange", 0, 200),
    ),
    "lab": (
        ("MqttD2CMessagesNotInAllowedRange", 0, 300),
        ("AmqpD2CMessagesNotInAllowedRange", 0, 200),
        ("TwinUpdatesNotInAllowedRange", 1, 200),
        ("MqttC2DMessagesNotInAllowedRange", 0, 200),
    ),
}
LAB_PATTERN = "dev-019*"
DASH_WORDS = ("dev-01", "r:twin", "dev-1")  # what the operator types into the counter filter
OTHER_WORDS = ("dev-0", "lab", "dev-11")

# --------------------------------------------------------------------------------------------------
# Inputs: the configuration and the writer subprocess
# --------------------------------------------------------------------------------------------------


def write_config(folder: Path, horizon: str | None = None) -> Path:
    """Two file sources; four PT1M range rules and two allow-lists in two groups."""
    lines = ["[engine]", 'lateness = "PT10S"', 'quiet = "PT5M"', ""]
    if horizon is not None:
        lines.insert(3, f'horizon = "{horizon}"')
    for kind, name in (("hub-events", HUB), ("security-messages", SEC)):
        lines += ["[[sources]]", f'type = "{kind}"', f'path = "{name}"', ""]
    exes = ", ".join(f'"{e}"' for e in ALLOWED_EXES)
    for group, rules in RANGE_RULES.items():
        for rule, low, high in rules:
            lines += [f"[groups.{group}.rules.{rule}]", f"min = {low}", f"max = {high}"]
            lines += ['window = "PT1M"', ""]
        lines += [f"[groups.{group}.rules.ProcessNotAllowed]", f"allow = [{exes}]", ""]
        lines += [f"[groups.{group}.rules.ConnectionToIpNotAllowed]", 'allow = ["10.0.0.0/8"]', ""]
    lines += ["[devices]", f'"{LAB_PATTERN}" = "lab"', ""]
    path = folder / "iotwatch.toml"
    path.write_text("\n".join(lines))
    return path


def _stamp(t: float) -> bytes:
    ms = int(t * 1000) % 1000
    return (time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{ms:03d}Z").encode()


def _message(device: str, name: str, item: dict[str, str]) -> tuple[bytes, bytes]:
    """A security message of one event, split where its timestamp goes."""
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
    head, tail = orjson.dumps({"deviceId": device, "body": body}).split(b"@TS@")
    return head, tail


class Feed:
    """Lines made once (devices weighted: a few hot, a few quiet), stamped with the current time
    and appended in batches: 80 % hub events, 20 % security messages, and now and then a
    forbidden process (an allow-list alert)."""

    def __init__(self, folder: Path, devices: int, seed: int) -> None:
        rng = self.rng = random.Random(seed)
        names = [f"dev-{i:05d}" for i in range(devices)]
        weights = [1.0] * devices
        for i in rng.sample(range(devices), max(1, int(devices * HOT_SHARE))):
            weights[i] = HOT_WEIGHT
        for i in rng.sample(range(devices), max(1, int(devices * QUIET_SHARE))):
            weights[i] = QUIET_WEIGHT if weights[i] == 1.0 else weights[i]
        self.names = names
        self.pool = max(16384, 8 * devices)
        picks = rng.choices(names, weights=weights, k=2 * self.pool)
        ops = [o for o, _ in HUB_OPS]
        op_w = [w for _, w in HUB_OPS]
        self.hub = [
            b'"deviceId":"%s",%s}' % (picks[i].encode(), rng.choices(ops, op_w)[0])
            for i in range(self.pool)
        ]
        self.sec: list[tuple[bytes, bytes]] = []
        for i in range(self.pool):
            exe = rng.choice(ALLOWED_EXES)
            if rng.random() < 0.6:
                a, b, c = rng.randrange(256), rng.randrange(256), rng.randrange(1, 255)
                item = {
                    "Executable": exe,
                    "ProcessId": str(rng.randint(300, 65000)),
                    "UserId": "0",
                    "RemoteAddress": f"10.{a}.{b}.{c}",
                    "RemotePort": "8883",
                    "Protocol": "tcp",
                    "Direction": "Out",
                }
                self.sec.append(_message(picks[self.pool + i], "ConnectionCreate", item))
            else:
                item = {"Executable": exe, "ProcessId": "42", "UserId": "0", "CommandLine": exe}
                self.sec.append(_message(picks[self.pool + i], "ProcessCreate", item))
        self.fds = {
            name: os.open(folder / name, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            for name in (HUB, SEC)
        }
        self.appended = 0
        self._carry = 0.0

    def write(self, events: int, violation: bool) -> None:
        stamp = _stamp(time.time())
        self._carry += events * 0.2
        n_sec = int(self._carry)
        self._carry -= n_sec
        n_hub = events - n_sec
        start = self.rng.randrange(self.pool)
        if n_hub:
            prefix = b'{"time":"' + stamp + b'",'
            rests = [self.hub[(start + i) % self.pool] for i in range(n_hub)]
            self._append(HUB, prefix + (b"\n" + prefix).join(rests) + b"\n")
        lines = [
            h + stamp + t for h, t in (self.sec[(start + i) % self.pool] for i in range(n_sec))
        ]
        if violation:
            exe = self.rng.choice(FORBIDDEN_EXES)
            item = {"Executable": exe, "ProcessId": "666", "UserId": "0", "CommandLine": exe}
            head, tail = _message(self.rng.choice(self.names), "ProcessCreate", item)
            lines.append(head + stamp + tail)
        if lines:
            self._append(SEC, b"\n".join(lines) + b"\n")
        self.appended += n_hub + len(lines)

    def _append(self, name: str, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self.fds[name], view) :]


def writer_main(argv: Sequence[str]) -> int:
    """``console.py _writer DIR RATE DEVICES SEED VIOLATIONS_PER_S``: append until stdin closes;
    print ``monotonic appended`` every 0.25 s."""
    folder, rate, devices, seed, per_s = Path(argv[0]), int(argv[1]), int(argv[2]), argv[3], argv[4]
    feed = Feed(folder, devices, int(seed))
    violations = float(per_s)
    stop = threading.Event()

    def wait_eof() -> None:
        sys.stdin.buffer.read()
        stop.set()

    threading.Thread(target=wait_eof, daemon=True).start()
    print(f"{time.monotonic():.4f} 0", flush=True)
    t0 = time.monotonic()
    due_violation = t0 + random.expovariate(violations) if violations > 0 else float("inf")
    next_report = t0
    while not stop.is_set():
        now = time.monotonic()
        owed = int(rate * (now - t0)) - feed.appended  # makes up for its own jitter
        violation = now >= due_violation
        if violation:
            due_violation = now + random.expovariate(violations)
        if owed > 0 or violation:
            feed.write(max(0, owed), violation)
        if now >= next_report:
            print(f"{now:.4f} {feed.appended}", flush=True)
            next_report = now + 0.25
        stop.wait(max(0.0, WRITE_INTERVAL_S - (time.monotonic() - now)))
    print(f"{time.monotonic():.4f} {feed.appended}", flush=True)
    return 0


class Writer:
    """The writer subprocess and a thread reading its progress lines."""

    def __init__(self, folder: Path, args: argparse.Namespace, seed: int) -> None:
        cmd = [sys.executable, str(Path(__file__).resolve()), "_writer", str(folder)]
        cmd += [str(args.rate), str(args.devices), str(seed), str(args.violations)]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.ps = psutil.Process(self.proc.pid)
        self.series: list[tuple[float, int]] = []
        self.thread = threading.Thread(target=self._read, name="bench-writer-reader", daemon=True)
        self.thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            t, n = line.split()
            self.series.append((float(t), int(n)))

    def cpu(self) -> float:
        try:
            c = self.ps.cpu_times()
            return float(c.user + c.system)
        except psutil.Error:
            return 0.0

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(OSError):
                assert self.proc.stdin is not None
                self.proc.stdin.close()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.thread.join(5)


class DbWatcher(threading.Thread):
    """Committed events (``sum(streams.events)``) read-only, every ``DB_POLL_S``."""

    def __init__(self, db: Path) -> None:
        super().__init__(name="bench-db-watcher", daemon=True)
        self.db = db
        self.series: list[tuple[float, int]] = []
        self.halt = threading.Event()

    def run(self) -> None:
        conn: sqlite3.Connection | None = None
        while not self.halt.wait(DB_POLL_S):
            try:
                if conn is None:
                    conn = sqlite3.connect(self.db.as_uri() + "?mode=ro", uri=True)
                (n,) = conn.execute(
                    "SELECT coalesce(sum(events), 0) FROM streams WHERE kind = 'file'"
                ).fetchone()
            except sqlite3.Error:
                continue
            self.series.append((time.monotonic(), int(n)))
        if conn is not None:
            conn.close()


def rate(series: list[tuple[float, int]], t0: float, t1: float) -> float:
    """Growth per second of ``series`` between its first and last samples inside ``[t0, t1]``
    (a stale sample at either end would bias the rate)."""
    inside = [(t, n) for t, n in series if t0 <= t <= t1]
    if len(inside) < 2 or inside[-1][0] <= inside[0][0]:
        return 0.0
    return (inside[-1][1] - inside[0][1]) / (inside[-1][0] - inside[0][0])


def at(series: list[tuple[float, int]], t: float) -> float:
    """``series`` (time, count) linearly interpolated at ``t``."""
    if not series:
        return 0.0
    if t <= series[0][0]:
        return float(series[0][1])
    for (t0, n0), (t1, n1) in itertools.pairwise(series):
        if t0 <= t <= t1:
            return n0 + (n1 - n0) * ((t - t0) / (t1 - t0) if t1 > t0 else 1.0)
    return float(series[-1][1])


# --------------------------------------------------------------------------------------------------
# Instrumentation of the running console
# --------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Press:
    """One key press and when its effect was painted (and, for keys that make the visible pane
    read again, when the new data was painted). The predicates are dropped once the press is
    settled, so a long run keeps only the figures of each press."""

    key: str
    kind: str
    t: float
    ready: Callable[[], bool] | None
    widgets: Callable[[], list[Any]] | None
    content: Callable[[Any, float, Any], bool] | None = None
    pane: Any = None
    painted: float | None = None
    content_at: float | None = None
    content_wait: float | None = None  # a matching show() ended: waiting for its frame
    target: str = ""  # a tab switch's tab
    chain: Any = None  # typed into this input: a later key painted first paints this one too
    bounced: bool = False  # the tab did not stay: the console switched back by itself
    refreshes: bool = False  # the key makes the visible pane read again (content is timed)

    @property
    def latency_ms(self) -> float | None:
        return None if self.painted is None else (self.painted - self.t) * 1000

    @property
    def content_ms(self) -> float | None:
        return None if self.content_at is None else (self.content_at - self.t) * 1000

    def settle(self) -> None:
        """Nothing more can happen to this press: let go of its predicates and widgets."""
        self.ready = self.widgets = self.content = None
        self.pane = self.chain = None


@dataclass(slots=True)
class Span:
    """Something that ran on a thread: what, when, wall and thread CPU seconds."""

    what: str
    t0: float
    t1: float
    cpu: float
    info: str = ""

    @property
    def ms(self) -> float:
        return (self.t1 - self.t0) * 1000


class SpanLog:
    """Spans kept as arrays of numbers and indices into a table of names: a long run records
    tens of thousands of frames and collections, and the benchmark's own records must not be
    what makes the process's memory grow. One writer at a time per log (the UI thread, the one
    running refresh worker, or the collector's callback), so no lock: a lock taken in a
    collector callback could be held already by the thread the collection interrupted. Read
    back as ``Span`` objects after the run."""

    def __init__(self) -> None:
        self.t0 = array.array("d")
        self.t1 = array.array("d")
        self.cpu = array.array("d")
        self.what = array.array("I")
        self.info = array.array("I")
        self.names: dict[str, int] = {"": 0}

    def _name(self, text: str) -> int:
        index = self.names.get(text)
        if index is None:
            index = self.names.setdefault(text, len(self.names))
        return index

    def append(self, span: Span) -> None:
        self.add(span.what, span.t0, span.t1, span.cpu, span.info)

    def add(self, what: str, t0: float, t1: float, cpu: float, info: str = "") -> None:
        self.t0.append(t0)
        self.t1.append(t1)
        self.cpu.append(cpu)
        self.what.append(self._name(what))
        self.info.append(self._name(info))

    def __len__(self) -> int:
        return len(self.t0)

    def __iter__(self) -> Iterator[Span]:
        text = {i: name for name, i in self.names.items()}
        for i in range(len(self.t0)):
            yield Span(text[self.what[i]], self.t0[i], self.t1[i], self.cpu[i], text[self.info[i]])

    def nbytes(self) -> int:
        """Bytes held by the arrays (the names are few)."""
        return sum(
            a.buffer_info()[1] * a.itemsize
            for a in (self.t0, self.t1, self.cpu, self.what, self.info)
        )


_GEN = {0: "gen 0", 1: "gen 1", 2: "gen 2"}


class Histogram:
    """Counts of values (ms) in 1 ms bins up to ``top``: the heartbeat's lateness a hundred
    times a second, kept in constant memory."""

    def __init__(self, top: int = 10_000) -> None:
        self.counts = array.array("Q", bytes(8 * (top + 1)))

    def add(self, ms: float) -> None:
        self.counts[min(len(self.counts) - 1, max(0, int(ms)))] += 1

    def pct(self, q: float) -> float:
        """The ``q`` quantile (0..1) by nearest rank, to the bin (1 ms); 0 for no values."""
        n = sum(self.counts)
        if not n:
            return 0.0
        rank = min(n, max(1, round(q * n + 0.5)))
        seen = 0
        for ms, count in enumerate(self.counts):
            seen += count
            if seen >= rank:
                return float(ms)
        return float(len(self.counts) - 1)


class Instrument:
    """Hooks into Textual and the panes. Everything it wraps keeps its behaviour; only timings are
    taken. Textual's frame: ``Screen._on_timer_update`` (layout, compositor render, then
    ``App._display``, which a headless app skips: the wrapper renders the update to the escape
    sequences a terminal would receive, so a frame costs what it would cost on a terminal)."""

    def __init__(self) -> None:
        self.app: Any = None
        self.lock = threading.Lock()
        self.frames = SpanLog()
        self.write_ms = array.array("d")
        self.stray_frames = 0  # displays outside the update timer (resize, screen switches)
        self.shows = SpanLog()
        self.gathers = SpanLog()
        self.refreshed = SpanLog()
        self.snapshots = array.array("d")  # engine-side Session.snapshot() ms
        self.stalls: list[tuple[float, float]] = []  # (start, gap) of the UI loop
        self.gaps = Histogram()  # the heartbeat's lateness, ms
        self.presses: list[Press] = []
        self.pending: list[Press] = []
        self.painted = threading.Condition()  # notified when a frame painted pending presses
        self.polls: dict[int, tuple[float, Any]] = {}  # id(pane) -> (time, filter text)
        self.poll_count: dict[str, int] = {}  # refreshes started, by pane
        self.bytes_out = 0
        self._in_frame = False
        self._displayed = False
        self._patched: list[tuple[Any, str, Any]] = []
        self.last_beat = time.perf_counter()
        self.warmup_shows = SpanLog()
        self.worker_profile: cProfile.Profile | None = None
        self.gcs = SpanLog()  # the collector's pauses (any thread; they hold the GIL)
        self._gc_start = (0.0, 0.0)

    def _gc_callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._gc_start = (time.perf_counter(), time.thread_time())
            return
        t0, c0 = self._gc_start
        gen = info.get("generation", -1)
        self.gcs.add(_GEN.get(gen, "gen ?"), t0, time.perf_counter(), time.thread_time() - c0)

    def wait_painted(self, p: Press, timeout: float) -> None:
        """Block (the keyboard's thread) until ``p`` was painted or ``timeout`` passed."""
        with self.painted:
            self.painted.wait_for(lambda: p.painted is not None, timeout)

    def footprint(self) -> int:
        """Bytes the benchmark's own records hold (arrays exactly, presses approximately)."""
        logs = (self.frames, self.shows, self.gathers, self.refreshed, self.gcs)
        arrays = (self.write_ms, self.snapshots, self.gaps.counts)
        return (
            sum(x.nbytes() for x in logs)
            + sum(a.buffer_info()[1] * a.itemsize for a in arrays)
            + len(self.presses) * (sys.getsizeof(self.presses[0]) + 5 * 24 if self.presses else 0)
            + len(self.stalls) * 120
        )

    # -- Textual ---------------------------------------------------------------------------------

    def patch_textual(self) -> None:
        """Wrap ``Screen._on_timer_update`` (before any screen exists: its update timer binds
        the method when created)."""
        from textual.screen import Screen

        inst = self
        original = Screen._on_timer_update

        def on_timer_update(screen: Any) -> None:
            app = inst.app
            try:
                current = app is not None and screen is app.screen
            except Exception:
                current = False
            if not current:
                return original(screen)
            t0, c0 = time.perf_counter(), time.thread_time()
            dirty = set(screen._dirty_widgets)
            layout = bool(screen._layout_required or screen._scroll_required)
            full = bool(screen._repaint_required) or screen in dirty
            inst._in_frame, inst._displayed = True, False
            try:
                original(screen)
            finally:
                inst._in_frame = False
            if inst._displayed:
                t1 = time.perf_counter()
                what = "frame (layout)" if layout else "frame (repaint)"
                span = Span(what, t0, t1, time.thread_time() - c0, _describe(dirty, full))
                inst.frames.append(span)
                inst._frame_done(span, dirty, layout, full)

        Screen._on_timer_update = on_timer_update  # type: ignore[method-assign]
        self._patched.append((Screen, "_on_timer_update", original))
        gc.callbacks.append(self._gc_callback)

    def unpatch(self) -> None:
        for owner, name, original in reversed(self._patched):
            setattr(owner, name, original)
        self._patched.clear()
        with contextlib.suppress(ValueError):
            gc.callbacks.remove(self._gc_callback)

    def wrap_display(self, app: Any) -> None:
        inst = self
        original = app._display

        def display(screen: Any, renderable: Any) -> None:
            t0 = time.perf_counter()
            if renderable is not None and not app._batch_count and app.is_headless:
                render = getattr(renderable, "render_segments", None)
                if render is not None:  # what the terminal driver would be handed
                    inst.bytes_out += len(render(app.console))
            original(screen, renderable)
            if renderable is not None and not app._batch_count:
                inst.write_ms.append((time.perf_counter() - t0) * 1000)
                if inst._in_frame:
                    inst._displayed = True
                else:
                    inst.stray_frames += 1

        app._display = display

    def _frame_done(self, span: Span, dirty: set[Any], layout: bool, full: bool) -> None:
        """A frame was written: which pending presses did it paint?"""
        with self.lock:
            pending = list(self.pending)
        if not pending:
            return
        finished = []
        painted = False
        for p in pending:
            if span.t0 - p.t > PENDING_S:  # long past anything that could still count
                finished.append(p)
                continue
            try:
                if (
                    p.painted is None
                    and p.ready is not None
                    and p.widgets is not None
                    and p.ready()
                    and (layout or full or any(w in dirty for w in p.widgets() if w is not None))
                ):
                    p.painted = span.t1
                    painted = True
                    for q in pending:  # typed before, overtaken before any frame showed it
                        chained = q.chain is not None and q.chain is p.chain
                        if chained and q.t < p.t and q.painted is None:
                            q.painted = span.t1
                if (
                    p.content_wait is not None
                    and p.content_at is None
                    and span.t0 >= p.content_wait
                ):
                    # The first frame after the show: it paints the pane, or the pane had nothing
                    # to repaint (its data was already on screen).
                    paints = layout or full or _paints(p.pane, dirty)
                    p.content_at = span.t1 if paints else p.content_wait
            except Exception:  # a predicate must never break the console
                continue
            if p.painted is not None and (not p.refreshes or p.content_at is not None):
                finished.append(p)
        if painted:
            with self.painted:
                self.painted.notify_all()
        if finished:
            with self.lock:
                self.pending = [p for p in self.pending if p not in finished]
            for p in finished:
                p.settle()

    # -- the panes -------------------------------------------------------------------------------

    def wrap_panes(self, app: Any) -> None:
        for name, pane in app._panes.items():
            if hasattr(pane, "gather") and hasattr(pane, "show"):
                self._wrap_pane(name, pane)

    def _wrap_pane(self, name: str, pane: Any) -> None:
        inst = self
        gather_args, gather, show = pane.gather_args, pane.gather, pane.show

        def timed_gather_args() -> Any:
            inst.polls[id(pane)] = (time.perf_counter(), filter_text(pane))
            inst.poll_count[name] = inst.poll_count.get(name, 0) + 1
            return gather_args()

        def timed_gather(snapshot: Any, args: Any) -> Any:
            t0, c0 = time.perf_counter(), time.thread_time()
            profile = inst.worker_profile  # gathers never overlap: one profiler is enough
            try:
                if profile is not None:
                    return profile.runcall(gather, snapshot, args)
                return gather(snapshot, args)
            finally:
                span = Span(name, t0, time.perf_counter(), time.thread_time() - c0)
                inst.gathers.append(span)

        def timed_show(data: Any) -> Any:
            t0, c0 = time.perf_counter(), time.thread_time()
            try:
                return show(data)
            finally:
                t1 = time.perf_counter()
                span = Span(name, t0, t1, time.thread_time() - c0)
                inst.shows.append(span)
                inst._shown(pane, t1)

        pane.gather_args, pane.gather, pane.show = timed_gather_args, timed_gather, timed_show

    def _shown(self, pane: Any, t1: float) -> None:
        """``pane`` showed data gathered from a poll: the presses waiting for it have their data
        on the widgets (painted by the next frame, if anything changed)."""
        poll_t, text = self.polls.get(id(pane), (0.0, None))
        with self.lock:
            pending = list(self.pending)
        for p in pending:
            if p.content is None or p.content_wait is not None or p.pane is not pane:
                continue
            if t1 - p.t > KEY_TIMEOUT_S:  # too late to count (a tab that did not stay)
                continue
            try:
                if p.content(pane, poll_t, text):
                    p.content_wait = t1
            except Exception:
                continue

    def snapshot_timer(self, session: Any) -> None:
        """Time ``Session.snapshot`` (runs on the engine's loop)."""
        original = session.snapshot
        inst = self

        def snapshot() -> Any:
            t0 = time.perf_counter()
            try:
                return original()
            finally:
                inst.snapshots.append((time.perf_counter() - t0) * 1000)

        session.snapshot = snapshot

    # -- the UI loop ----------------------------------------------------------------------------

    async def heartbeat(self) -> None:
        """Wake every ``HEARTBEAT_S`` on the UI loop; anything later is a stall."""
        last = time.perf_counter()
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            now = time.perf_counter()
            gap = now - last - HEARTBEAT_S
            self.last_beat = now
            self.gaps.add(gap * 1000)
            if gap > 0.02:
                self.stalls.append((last, gap))
            last = now

    def clear(self) -> None:
        """Forget what happened during the warm-up."""
        self.warmup_shows = self.shows
        self.frames, self.write_ms, self.shows, self.gathers = (
            SpanLog(),
            array.array("d"),
            SpanLog(),
            SpanLog(),
        )
        self.refreshed, self.snapshots, self.stalls, self.gaps = (
            SpanLog(),
            array.array("d"),
            [],
            Histogram(),
        )
        self.stray_frames = 0
        self.bytes_out = 0
        self.poll_count = {}
        self.gcs = SpanLog()


def _describe(dirty: set[Any], full: bool) -> str:
    """The widgets a frame repainted, by type and id."""
    if full:
        return "the whole screen"
    names = sorted(f"{type(w).__name__}{'#' + w.id if w.id else ''}" for w in dirty)
    return ", ".join(names) if names else "-"


def _paints(pane: Any, dirty: set[Any]) -> bool:
    """Whether a widget in ``dirty`` is ``pane`` or inside it."""
    return any(w is pane or pane in w.ancestors for w in dirty)


def _polled_since(_pane: Any, t: float, _text: Any, since: float) -> bool:
    """A poll of the pane started at ``t``, after ``since``."""
    return t >= since


def filter_text(pane: Any) -> str | None:
    """The text filter a pane's next gather will apply (``TextFilter.text``), normalized."""
    flt = getattr(pane, "filter", None)
    text = getattr(flt, "text", None)
    if text is not None and not isinstance(text, str):  # AlertFilter.text is a TextFilter
        text = getattr(text, "text", None)
    return None if text is None else " ".join(str(text).split())


class StallSampler(threading.Thread):
    """While the UI loop's heartbeat is more than ``late`` seconds overdue, samples the main
    thread's stack every 5 ms: where the UI thread is while the screen cannot change (a sampling
    profile of the stalls; a thread waiting for the GIL shows where it waits)."""

    def __init__(self, inst: Instrument, late: float = 0.05) -> None:
        super().__init__(name="bench-stall-sampler", daemon=True)
        self.inst, self.late = inst, late
        self.main = threading.main_thread().ident
        self.halt = threading.Event()
        self.samples = 0
        self.inclusive: dict[str, int] = {}
        self.innermost: dict[str, int] = {}

    def run(self) -> None:
        while not self.halt.wait(0.005):
            if time.perf_counter() - self.inst.last_beat - HEARTBEAT_S < self.late:
                continue
            frame = sys._current_frames().get(self.main)  # a sampling profiler
            if frame is None:
                continue
            self.samples += 1
            seen = set()
            first = True
            while frame is not None:
                code = frame.f_code
                where = f"{_short(code.co_filename)}:{code.co_name}"
                if first:
                    self.innermost[where] = self.innermost.get(where, 0) + 1
                    first = False
                if where not in seen:
                    seen.add(where)
                    self.inclusive[where] = self.inclusive.get(where, 0) + 1
                frame = frame.f_back

    def top(self, table: dict[str, int], n: int, skip: tuple[str, ...] = ()) -> list[str]:
        rows = sorted(table.items(), key=lambda kv: -kv[1])
        out = []
        for where, count in rows:
            if any(s in where for s in skip):
                continue
            out.append(f"{100 * count / max(1, self.samples):5.1f} %  {where}")
            if len(out) >= n:
                break
        return out


def _short(path: str) -> str:
    """A source path without the machine's folders: ``textual/widget.py``, ``tui/app.py``."""
    path = path.replace(os.sep, "/")
    for anchor in ("site-packages/", "/lib/python3"):
        if anchor in path:
            tail = path.split(anchor, 1)[1]
            return tail.split("/", 1)[1] if anchor.startswith("/lib") and "/" in tail else tail
    for top in ("/tui/", "/engine/", "/bench/"):
        if top in path:
            return top[1:] + path.rsplit(top, 1)[1]
    return path.rsplit("/", 1)[-1]


# --------------------------------------------------------------------------------------------------
# The keyboard
# --------------------------------------------------------------------------------------------------

KEY_NAMES = {"-": "minus", ":": "colon", "!": "exclamation_mark", "/": "slash"}


class Keyboard(threading.Thread):
    """Presses keys at human intervals from its own thread (as a terminal's input arrives,
    whatever the UI loop is doing): waits for a press to be painted (or ``KEY_TIMEOUT_S``),
    thinks 0.25-1.25 s, presses the next; types filter words at 80-250 ms a character."""

    def __init__(self, app: Any, inst: Instrument, widgets: dict[str, Any], seed: int) -> None:
        super().__init__(name="bench-keyboard", daemon=True)
        self.app, self.inst, self.w = app, inst, widgets
        self.rng = random.Random(seed)
        self.halt = threading.Event()
        self.error: BaseException | None = None

    # -- state (read from this thread: plain attribute reads) -----------------------------------

    def active(self) -> str:
        return str(self.w["tabs"].active)

    def pane(self) -> Any:
        return self.w["panes"][self.active()]

    def focused(self) -> Any:
        try:
            return self.app.focused
        except Exception:
            return None

    def in_pane(self, widget: Any) -> bool:
        return widget is not None and self.pane() in widget.ancestors

    def run(self) -> None:
        try:
            self._run()
        except BaseException as exc:  # reported by the benchmark
            self.error = exc

    def _run(self) -> None:
        from textual.widgets import DataTable, Input

        from tui.widgets.virtual_table import VirtualTable

        rng = self.rng
        while not self.halt.wait(rng.uniform(0.25, 1.25)):
            last = self.inst.presses[-1] if self.inst.presses else None
            if last is not None and last.target and self.active() != last.target:
                last.bounced = True  # nothing but the console itself changed the tab since
            tabs = [t for t in ("dashboard", "alerts", "devices") if t != self.active()]
            focused = self.focused()
            table = (
                focused
                if isinstance(focused, (DataTable, VirtualTable)) and self.in_pane(focused)
                else None
            )
            r = rng.random()
            if isinstance(focused, Input):
                self.focus_next()
            elif r < 0.35:
                self.switch(rng.choice(tabs))
            elif r < 0.7:
                if table is not None and table.cursor_type == "row" and table.row_count > 1:
                    self.cursor(table)
                else:
                    self.focus_next()
            elif table is not None:
                self.filter()
            else:
                self.focus_next()

    # -- actions ---------------------------------------------------------------------------------

    def press(
        self,
        key: str,
        kind: str,
        ready: Callable[[], bool],
        widgets: Callable[[], list[Any]],
        *,
        content: Callable[[Any, float, Any], bool] | None = None,
        pane: Any = None,
        wait: bool = True,
        chain: Any = None,
    ) -> Press:
        from textual import events

        char = key if len(key) == 1 else None
        name = KEY_NAMES.get(key, key)
        p = Press(name, sys.intern(kind), time.perf_counter(), ready, widgets, content, pane)
        p.chain, p.refreshes = chain, content is not None
        with self.inst.lock:
            self.inst.presses.append(p)
            self.inst.pending.append(p)
        event = events.Key(name, char)
        event.set_sender(self.app)
        p.t = time.perf_counter()
        self.app._driver.send_message(event)
        if wait:
            self.inst.wait_painted(p, KEY_TIMEOUT_S)
        return p

    def switch(self, tab: str) -> None:
        key = {"dashboard": "1", "alerts": "2", "devices": "3"}[tab]
        tabs, pane = self.w["tabs"], self.w["panes"][tab]
        p = self.press(
            key,
            f"tab {key} ({tab})",
            lambda: tabs.active == tab,
            lambda: [tabs, pane],
            content=partial(_polled_since, since=time.perf_counter()),
            pane=pane,
            wait=False,
        )
        p.target = tab
        self.inst.wait_painted(p, KEY_TIMEOUT_S)

    def cursor(self, table: Any) -> None:
        before = table.cursor_row
        key = "down" if before < table.row_count - 1 else "up"
        self.press(key, "cursor", lambda: table.cursor_row != before, lambda: [table])

    def focus_next(self) -> None:
        before = self.focused()
        self.press(
            "tab",
            "focus (tab)",
            lambda: self.focused() is not before and self.focused() is not None,
            lambda: [self.focused(), before],
        )

    def filter(self) -> None:
        """``/``, a word typed, erased again, ``tab`` out of the input."""
        tab = self.active()
        pane = self.w["panes"][tab]
        box = self.w["filters"][tab]
        words = DASH_WORDS if tab == "dashboard" else OTHER_WORDS
        word = self.rng.choice(words)
        p = self.press("/", "filter /", lambda: box.has_focus, lambda: [box])
        if p.painted is None or self.halt.is_set():
            return
        start = box.value
        typed: list[Press] = []
        steps = [start + word[: i + 1] for i in range(len(word))]
        steps += [start + word[:i] for i in range(len(word) - 1, -1, -1)]
        for i, value in enumerate(steps):
            forward = i < len(word)
            key = word[i] if forward else "backspace"

            def ready(v: str = value, fwd: bool = forward) -> bool:
                now = box.value
                return now.startswith(v) if fwd else (v.startswith(now) and len(now) <= len(v))

            def content(
                _p: Any,
                t: float,
                text: Any,
                v: str = value,
                fwd: bool = forward,
                since: float = 0.0,
            ) -> bool:
                text, v = text or "", " ".join(v.split())
                grown = text.startswith(v) if fwd else v.startswith(text) and len(text) <= len(v)
                return grown and t >= since

            content = partial(content, since=time.perf_counter())
            typed.append(
                self.press(
                    key,
                    "filter char" if forward else "filter backspace",
                    ready,
                    lambda: [box],
                    content=content,
                    pane=pane,
                    wait=False,
                    chain=box,
                )
            )
            if self.halt.wait(self.rng.uniform(0.08, 0.25)):
                break
        for p in typed:
            self.inst.wait_painted(p, KEY_TIMEOUT_S)
        if self.halt.is_set():
            return
        time.sleep(self.rng.uniform(0.25, 1.0))
        self.press("tab", "focus (tab)", lambda: not box.has_focus, lambda: [box])


# --------------------------------------------------------------------------------------------------
# One run
# --------------------------------------------------------------------------------------------------


def bench_app_class() -> type:
    """``IotwatchApp`` with its panes' refresh methods and ``show_gathered`` timed (nothing
    else)."""
    from tui.app import IotwatchApp

    class BenchApp(IotwatchApp):
        inst: Instrument

        def compose(self) -> Any:
            yield from super().compose()
            self.inst.wrap_panes(self)

        def show_gathered(self, pane: Any, data: Any) -> None:
            t0, c0 = time.perf_counter(), time.thread_time()
            try:
                super().show_gathered(pane, data)
            finally:
                self.inst.refreshed.append(
                    Span("refreshed", t0, time.perf_counter(), time.thread_time() - c0)
                )

    return BenchApp


def thread_cpu() -> dict[int, tuple[str, float]]:
    """Native thread id -> (name, CPU seconds) for every live thread of this process."""
    names = {t.native_id: t.name for t in threading.enumerate()}
    out = {}
    for t in psutil.Process().threads():
        out[t.id] = (names.get(t.id, "?"), float(t.user_time + t.system_time))
    return out


def classify(name: str) -> str:
    if name == "MainThread":
        return "console UI loop"
    if name.startswith("ui-worker"):
        return "console workers"
    if name == "iotwatch-engine":
        return "engine loop"
    if "_connection_worker_thread" in name:
        return "engine SQLite writer"
    if name.startswith("asyncio_"):
        return "engine file reads"
    if name.startswith("bench-"):
        return "benchmark"
    return "other"


def _mallinfo() -> Callable[[], tuple[float, float, float]] | None:
    """glibc's ``mallinfo2`` as (MB in use, MB free but kept in its arenas, MB it took from the
    system: heaps and mapped chunks), or None elsewhere:
    what the process holds outside Python's own small-object allocator tells fragmentation
    from growth."""
    try:
        import ctypes

        class MallInfo2(ctypes.Structure):
            _fields_ = [
                (name, ctypes.c_size_t)
                for name in (
                    "arena", "ordblks", "smblks", "hblks", "hblkhd",
                    "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost",
                )
            ]  # fmt: skip

        libc = ctypes.CDLL(None)
        call = libc.mallinfo2
        call.restype = MallInfo2
    except (OSError, AttributeError):
        return None

    def take() -> tuple[float, float, float]:
        info = call()
        return (
            (info.uordblks + info.hblkhd) / 1e6,
            info.fordblks / 1e6,
            (info.arena + info.hblkhd) / 1e6,
        )

    return take


MALLINFO = _mallinfo()


@dataclass(slots=True)
class MemorySample:
    """The process's memory at ``t`` seconds into the window."""

    t: float
    rss: float  # MB
    frozen: int  # objects in the collector's permanent generation (gc.freeze)
    malloc_used: float | None = None  # MB (glibc)
    malloc_free: float | None = None  # MB free in malloc's arenas, not returned (glibc)
    blocks: int = 0  # blocks CPython's allocator holds (sys.getallocatedblocks)
    anon: float | None = None  # MB of RSS that is anonymous memory, not file pages (Linux)
    malloc_system: float | None = None  # MB glibc took from the system (heaps, mapped chunks)
    arenas: float = 0.0  # MB of CPython's small-object arenas (mapped apart from malloc)
    allocated: float = 0.0  # MB of blocks in use in those arenas

    @classmethod
    def take(cls, proc: psutil.Process, t: float) -> MemorySample:
        used, free, system = MALLINFO() if MALLINFO is not None else (None, None, None)
        rss = proc.memory_info().rss / 1e6
        py = pymalloc_stats()
        return cls(
            t,
            rss,
            gc.get_freeze_count(),
            used,
            free,
            sys.getallocatedblocks(),
            _anon(),
            system,
            py.get("arenas", 0) * ARENA_MB,
            py.get("allocated", 0) / 1e6,
        )

    @property
    def other(self) -> float | None:
        """MB of anonymous RSS outside CPython's arenas and malloc's system memory (thread
        stacks, other mappings); None where either is unknown."""
        if self.anon is None or self.malloc_system is None:
            return None
        return self.anon - self.arenas - self.malloc_system


def _anon() -> float | None:
    """``RssAnon`` of this process in MB: the heap, without mapped files and shared memory."""
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"RssAnon:"):
                    return int(line.split()[1]) * 1024 / 1e6
    except OSError:
        pass
    return None


ARENA_MB = (1 << 20) / 1e6  # CPython 3.10+ maps its small-object arenas 1 MiB at a time


def pymalloc_stats() -> dict[str, int]:
    """CPython's small-object allocator from ``sys._debugmallocstats`` (which writes to the C
    stderr, so it is caught there): arenas in use and the bytes of their blocks, used and free."""
    keys = {
        "# arenas allocated current": "arenas",
        "# bytes in allocated blocks": "allocated",
        "# bytes in available blocks": "available",
    }
    out: dict[str, int] = {}
    with tempfile.TemporaryFile() as f:
        sys.stderr.flush()
        saved = os.dup(2)
        try:
            os.dup2(f.fileno(), 2)
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        f.seek(0)
        for line in f.read().decode("ascii", "replace").splitlines():
            name, _, value = line.partition("=")
            if name.strip() in keys:
                out[keys[name.strip()]] = int(value.strip().replace(",", ""))
    return out


def cache_sizes(app: Any) -> Counter[str]:
    """Entries in the caches that can keep rendered lines alive: the ``functools`` caches of
    Textual's, Rich's and iotwatch's modules and classes (``lru:NAME``), and the caches, dicts
    and lists each widget, screen, compositor and style sheet holds, summed by class and
    attribute (``attr:CLASS.NAME``)."""
    from textual.cache import FIFOCache, LRUCache

    counts: Counter[str] = Counter()
    for modname, module in list(sys.modules.items()):
        if not modname.startswith(("textual", "rich", "tui", "engine")):
            continue
        for name, obj in list(vars(module).items()):
            members = [(name, obj)]
            if isinstance(obj, type) and obj.__module__ == modname:
                members = [(f"{name}.{k}", v) for k, v in vars(obj).items()]
            for label, member in members:
                function = getattr(member, "__func__", member)
                info = getattr(function, "cache_info", None)
                if callable(info):
                    counts[f"lru:{modname}.{label}"] = info().currsize
    holders: list[Any] = [app, app.stylesheet, *app.screen_stack]
    holders += [s._compositor for s in app.screen_stack]
    for screen in app.screen_stack:
        holders += list(screen.walk_children(with_self=False))
    for holder in holders:
        for attr, value in getattr(holder, "__dict__", {}).items():
            if isinstance(value, (LRUCache, FIFOCache, dict, list, set)):
                counts[f"attr:{type(holder).__name__}.{attr}"] += len(value)
    return counts


def census(app: Any = None) -> Counter[str]:
    """Objects the collector tracks and has not frozen, by type (a pause of a second or so);
    widgets and screens also count under ``node:NAME``; with ``app``, cache sizes too."""
    from textual.dom import DOMNode

    counts: Counter[str] = Counter()
    for o in gc.get_objects():
        kind = type(o)
        counts[kind.__qualname__] += 1
        if isinstance(o, DOMNode):
            counts["node:" + kind.__qualname__] += 1
    if app is not None:
        counts.update(cache_sizes(app))
    for key, value in pymalloc_stats().items():
        counts["pymalloc:" + key] = value
    return counts


def slope_per_min(points: Sequence[tuple[float, float]]) -> float | None:
    """Least-squares slope of (seconds, MB) points, in MB per minute; None for fewer than 3."""
    if len(points) < 3:
        return None
    n = len(points)
    mt = sum(t for t, _ in points) / n
    mv = sum(v for _, v in points) / n
    var = sum((t - mt) ** 2 for t, _ in points)
    if var <= 0:
        return None
    return 60 * sum((t - mt) * (v - mv) for t, v in points) / var


def rss_slope(memory: Sequence[MemorySample]) -> float | None:
    """RSS slope after the first ``SLOPE_AFTER_S`` of the window (MB/min)."""
    return slope_per_min([(m.t, m.rss) for m in memory if m.t >= SLOPE_AFTER_S])


def memory_marks(memory: Sequence[MemorySample]) -> list[MemorySample]:
    """The samples nearest 0, 1, 2, 5, 10, 20, 30, 45, 60… minutes into the window, and the last."""
    if not memory:
        return []
    end = memory[-1].t
    minutes = [0, 1, 2, 5, 10, 20, 30, 45, *range(60, int(end // 60) + 1, 30)]
    marks: list[MemorySample] = []
    for x in minutes:
        if 60 * x <= end:
            nearest = min(memory, key=lambda m, at=60 * x: abs(m.t - at))
            if not any(m is nearest for m in marks):
                marks.append(nearest)
    if marks[-1] is not memory[-1]:
        marks.append(memory[-1])
    return marks


@dataclass
class RunResult:
    """Everything one run measured."""

    seconds: float
    presses: list[Press]
    frames: list[Span]
    write_ms: Sequence[float]
    stray_frames: int
    shows: list[Span]
    gathers: list[Span]
    refreshed: list[Span]
    snapshots: Sequence[float]
    stalls: list[tuple[float, float]]
    gaps: Histogram
    cpu: dict[str, float]  # class -> CPU seconds in the window
    process_cpu: float
    writer_cpu: float
    system_busy: float  # cores busy (all processes) on average
    appended_eps: float
    committed_eps: float
    backlog: int  # events appended but not committed at the end
    counters: int
    alerts: int
    warmup_show: Span | None  # the longest Dashboard.show of the warm-up (the first full one)
    warmup_s: float
    warmup_stall_ms: float
    bytes_out: int
    gcs: list[Span] = field(default_factory=list)
    memory: list[MemorySample] = field(default_factory=list)  # every RSS_EVERY_S in the window
    footprint: int = 0  # bytes of the benchmark's own records at the end of the window
    polls: dict[str, int] = field(default_factory=dict)
    stall_samples: int = 0
    stall_inclusive: list[str] = field(default_factory=list)
    stall_innermost: list[str] = field(default_factory=list)
    profile: str = ""
    worker_profile: str = ""
    baseline_eps: float = 0.0
    baseline_engine_cpu: float = 0.0
    broken: list[str] = field(default_factory=list)


def where(exc: BaseException) -> str:
    """An exception and the innermost frame of the console (``tui/``) it went through."""
    import traceback

    frames = [f for f in traceback.extract_tb(exc.__traceback__) if "/tui/" in f.filename]
    at_ = (
        f" at {_short(frames[-1].filename)}:{frames[-1].lineno} {frames[-1].name}" if frames else ""
    )
    return f"{type(exc).__name__}: {exc}{at_}"


def engine_alone(
    args: argparse.Namespace, writer: Writer, watcher: DbWatcher
) -> tuple[float, float]:
    """Before the console starts: the engine's committed events/s and CPU (% of a core) on its
    own, over ``--baseline`` seconds after 3 s to settle (new devices, the first commits)."""
    if args.baseline <= 0:
        return 0.0, 0.0
    time.sleep(3.0)
    cpu0, m0 = thread_cpu(), time.monotonic()
    time.sleep(args.baseline)
    cpu1, m1 = thread_cpu(), time.monotonic()
    engine = sum(
        sec - cpu0.get(tid, (name, 0.0))[1]
        for tid, (name, sec) in cpu1.items()
        if classify(name).startswith("engine")
    )
    return rate(watcher.series, m0, m1), 100 * engine / (m1 - m0)


def engine_only(args: argparse.Namespace, watcher: DbWatcher) -> None:
    """``--engine-only``: the same feed and engine for ``--seconds`` with no console; prints the
    memory table and the committed rate, the share of the console's figures that is the
    engine's."""
    me = psutil.Process()
    memory: list[MemorySample] = []
    t0, m0 = time.perf_counter(), time.monotonic()
    while (t := time.perf_counter() - t0) < args.seconds:
        memory.append(MemorySample.take(me, t))
        time.sleep(min(RSS_EVERY_S, max(0.0, args.seconds - t)))
    memory.append(MemorySample.take(me, time.perf_counter() - t0))
    committed = rate(watcher.series, m0, time.monotonic())
    print(f"  engine only, no console: {args.seconds:g} s, committed {committed:,.0f} events/s")
    print_memory(memory, None)


def run_once(args: argparse.Namespace, folder: Path, k: int) -> RunResult | None:
    from engine import collector
    from engine.config import load_config
    from tui.bridge import Bridge

    for name in (HUB, SEC):
        (folder / name).touch()
    config = load_config(write_config(folder, args.horizon))
    db = folder / "iotwatch.db"
    logging.getLogger("iotwatch").propagate = False  # as run_console: warnings are notifications
    if not args.default_malloc:  # as run_console, before the engine's threads start
        if hasattr(collector, "steady_malloc"):
            collector.steady_malloc()
        elif hasattr(collector, "few_malloc_arenas"):  # older commits
            collector.few_malloc_arenas()
    writer = Writer(folder, args, args.seed + k)
    watcher = DbWatcher(db)
    bridge = Bridge(config, str(db))
    try:
        bridge.start()
        if bridge.session is None:
            raise RuntimeError(f"the engine did not start: {bridge.error!r}")
        if not args.default_gc:
            collector.settle()  # the engine alone, as `run --headless` runs it once started
        watcher.start()
        baseline = engine_alone(args, writer, watcher)
        if args.engine_only:
            engine_only(args, watcher)
            return None
        inst = Instrument()
        inst.snapshot_timer(bridge.session)
        inst.patch_textual()
        try:
            result = asyncio.run(_drive(args, bridge, inst, writer, watcher, k))
        finally:
            inst.unpatch()
        result.baseline_eps, result.baseline_engine_cpu = baseline
        return result
    finally:
        watcher.halt.set()
        writer.stop()
        stopper = threading.Thread(target=bridge.stop, name="bench-stopper", daemon=True)
        stopper.start()
        stopper.join(30)
        watcher.join(5)


async def _drive(
    args: argparse.Namespace,
    bridge: Any,
    inst: Instrument,
    writer: Writer,
    watcher: DbWatcher,
    k: int,
) -> RunResult:
    from textual.widgets import Input, TabbedContent

    from tui.panes.dashboard import Counters

    loop = asyncio.get_running_loop()
    # Textual's thread workers run in the loop's default executor: named, so their CPU is known.
    loop.set_default_executor(ThreadPoolExecutor(thread_name_prefix="ui-worker"))
    from engine import collector

    # As run_console: the collector is settled again once the first data is on screen (older
    # commits settle it only once the engine has started, above).
    app_class = bench_app_class()
    kwargs: dict[str, Any] = {}
    if not args.default_gc and "on_first_data" in inspect.signature(app_class).parameters:
        kwargs["on_first_data"] = collector.settle
    app = app_class(bridge, interval=args.interval, **kwargs)
    app.inst = inst
    inst.app = app
    inst.wrap_display(app)
    expected = args.devices * len(RANGE_RULES["default"])  # a few never get an event of a rule
    broken: list[str] = []
    session = app.run_test(size=SIZE, notifications=True)
    await session.__aenter__()
    try:
        beat = asyncio.create_task(inst.heartbeat())
        # Warm-up: the engine takes up every device, the dashboard shows every counter.
        t_start = time.perf_counter()
        counters = app.query_one(Counters)
        while time.perf_counter() - t_start < args.warmup + 60:
            await asyncio.sleep(0.2)
            if (
                time.perf_counter() - t_start >= args.warmup
                and counters.row_count >= 0.95 * expected
            ):
                break
        counters_n = counters.row_count
        warmup_s = time.perf_counter() - t_start
        warmup_stall = max((g for _, g in inst.stalls), default=0.0) * 1000
        inst.clear()
        warmup_show = max(
            (x for x in inst.warmup_shows if x.what == "dashboard"),
            key=lambda x: x.ms,
            default=None,
        )
        widgets = {
            "tabs": app.query_one("#tabs", TabbedContent),
            "panes": dict(app._panes),
            "filters": {
                "dashboard": app.query_one("#counter-filter", Input),
                "alerts": app.query_one("#alert-text", Input),
                "devices": app.query_one("#device-filter", Input),
            },
        }
        cpu0, proc0, w0 = thread_cpu(), psutil.Process().cpu_times(), writer.cpu()
        sys0 = psutil.cpu_times()
        t0 = time.perf_counter()
        m0 = time.monotonic()
        profiler = cProfile.Profile() if args.profile else None
        if profiler is not None:
            inst.worker_profile = cProfile.Profile()
            profiler.enable()
        sampler = StallSampler(inst)
        sampler.start()
        keyboard = Keyboard(app, inst, widgets, args.seed * 1000 + k)
        keyboard.start()
        memory: list[MemorySample] = []

        async def sample_memory() -> None:
            me = psutil.Process()
            while True:
                memory.append(MemorySample.take(me, time.perf_counter() - t0))
                await asyncio.sleep(RSS_EVERY_S)

        memory_task = asyncio.create_task(sample_memory())
        if (args.census or args.tracemalloc) and args.seconds > SLOPE_AFTER_S:
            await asyncio.sleep(SLOPE_AFTER_S)
            census_at = census(app) if args.census else None
            if args.tracemalloc:
                tracemalloc.start(args.tracemalloc)
            await asyncio.sleep(args.seconds - SLOPE_AFTER_S)
            if census_at is not None:
                print_census(census_at, census(app), args.seconds - SLOPE_AFTER_S)
            if args.tracemalloc:
                print_traced(tracemalloc.take_snapshot(), args.seconds - SLOPE_AFTER_S)
                tracemalloc.stop()
        else:
            await asyncio.sleep(args.seconds)
        memory_task.cancel()
        memory.append(MemorySample.take(psutil.Process(), time.perf_counter() - t0))
        footprint = inst.footprint()
        keyboard.halt.set()
        t1 = time.perf_counter()
        m1 = time.monotonic()
        cpu1, proc1, w1 = thread_cpu(), psutil.Process().cpu_times(), writer.cpu()
        sys1 = psutil.cpu_times()
        sampler.halt.set()
        if profiler is not None:
            profiler.disable()
        worker_profile, inst.worker_profile = inst.worker_profile, None
        # Let the last presses be painted (they count; nothing after them does).
        deadline = time.perf_counter() + KEY_TIMEOUT_S
        while time.perf_counter() < deadline and any(
            p.painted is None for p in inst.presses if p.t < t1
        ):
            await asyncio.sleep(0.05)
        await asyncio.to_thread(keyboard.join, KEY_TIMEOUT_S + 2)
        if keyboard.error is not None:
            broken.append(f"the keyboard failed: {keyboard.error!r}")
        if app._exception is not None:
            broken.append(f"the console crashed during the run: {where(app._exception)}")
        beat.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await beat
    except BaseException:
        with contextlib.suppress(Exception):
            await session.__aexit__(*sys.exc_info())
        raise
    try:
        await session.__aexit__(None, None, None)
    except Exception as exc:  # the measurements stand; the crash is reported
        if not any("during the run" in b for b in broken):
            broken.append(f"the console crashed while closing: {where(exc)}")

    cpu: dict[str, float] = {}
    for tid, (name, sec) in cpu1.items():
        before = cpu0.get(tid, (name, 0.0))[1]
        label = classify(name if name != "?" else cpu0.get(tid, ("?", 0))[0])
        cpu[label] = cpu.get(label, 0.0) + max(0.0, sec - before)
    process_cpu = (proc1.user + proc1.system) - (proc0.user + proc0.system)
    busy = sum(
        getattr(sys1, f) - getattr(sys0, f) for f in sys1._fields if f not in ("idle", "iowait")
    )
    total = sum(getattr(sys1, f) - getattr(sys0, f) for f in sys1._fields)
    cores = psutil.cpu_count() or 1
    appended = rate(writer.series, m0, m1)
    committed = rate(watcher.series, m0, m1)
    looks = [x for x in watcher.series if x[0] <= m1]
    t_db, n_db = looks[-1] if looks else (m1, 0)
    backlog = int(at(writer.series, t_db) - n_db)  # appended, not yet committed, at the end
    alerts = 0
    with contextlib.suppress(Exception):
        alerts = int(bridge.query("SELECT count(*) FROM alerts")[0][0])
    profile = _profile_text(profiler, args.top)
    worker_text = _profile_text(worker_profile, args.top)
    return RunResult(
        seconds=t1 - t0,
        presses=[p for p in inst.presses if p.t < t1],
        frames=[s for s in inst.frames if s.t0 < t1],
        write_ms=inst.write_ms,
        stray_frames=inst.stray_frames,
        shows=[s for s in inst.shows if s.t0 < t1],
        gathers=[s for s in inst.gathers if s.t0 < t1],
        refreshed=[s for s in inst.refreshed if s.t0 < t1],
        snapshots=inst.snapshots,
        stalls=[s for s in inst.stalls if s[0] < t1],
        gaps=inst.gaps,
        cpu=cpu,
        process_cpu=process_cpu,
        writer_cpu=w1 - w0,
        system_busy=cores * busy / total if total else 0.0,
        appended_eps=appended,
        committed_eps=committed,
        backlog=backlog,
        counters=counters_n,
        alerts=alerts,
        warmup_show=warmup_show,
        warmup_s=warmup_s,
        warmup_stall_ms=warmup_stall,
        bytes_out=inst.bytes_out,
        gcs=[g for g in inst.gcs if g.t0 < t1],
        memory=memory,
        footprint=footprint,
        polls=dict(inst.poll_count),
        stall_samples=sampler.samples,
        stall_inclusive=sampler.top(sampler.inclusive, 14, skip=_LOOP_FRAMES),
        stall_innermost=sampler.top(sampler.innermost, 8),
        profile=profile,
        worker_profile=worker_text,
        broken=broken,
    )


_LOOP_FRAMES = (
    "asyncio/",
    "threading.py",
    "bench/console.py",
    "textual/message_pump.py",
    "textual/app.py:run_test",
    "textual/app.py:_process_messages",
    "textual/app.py:_ready",
    "textual/_context",
    "textual/_callback.py",
)


def _profile_text(profiler: cProfile.Profile | None, top: int) -> str:
    if profiler is None:
        return ""
    buf = io.StringIO()
    try:
        stats = pstats.Stats(profiler, stream=buf)
    except TypeError:  # nothing was profiled
        return ""
    stats.sort_stats("cumulative").print_stats(top)
    stats.sort_stats("tottime").print_stats(top)
    text = buf.getvalue().replace(str(Path(__file__).resolve().parents[1]) + os.sep, "")
    text = re.sub(r"\S*/(?:site-packages|lib/python3\.\d+)/", "", text)
    return re.sub(r"\S*/((?:tui|engine)/\S+\.py)", r"\1", text)


# --------------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------------


def pct(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) by nearest rank; 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered) + 0.5) - 1))]


def dist(values: Sequence[float]) -> str:
    if not values:
        return "      -"
    return (
        f"{len(values):5d} {pct(values, 0.5):8.1f} {pct(values, 0.95):8.1f} "
        f"{pct(values, 0.99):8.1f} {max(values):8.1f}"
    )


def met(ok: bool) -> str:
    return "met" if ok else "NOT met"


@dataclass
class Figures:
    """The headline figures of one run (for best/median over runs)."""

    key_p50: float
    key_p95: float
    key_max: float
    key_lost: int
    frame_p99: float
    frame_max: float
    frames_over: int
    stall_max: float
    stalls_over: int
    ui_cpu: float
    console_cpu: float
    engine_cpu: float
    committed_eps: float
    rss_slope: float  # MB/min after the first two minutes (nan: the window was too short)


def figures(r: RunResult) -> Figures:
    keys = [p.latency_ms for p in r.presses if p.latency_ms is not None]
    frames = [f.ms for f in r.frames]
    stalls = [g * 1000 for _, g in r.stalls]
    s = r.seconds
    engine = sum(v for c, v in r.cpu.items() if c.startswith("engine"))
    ui = r.cpu.get("console UI loop", 0.0)
    return Figures(
        key_p50=pct(keys, 0.5),
        key_p95=pct(keys, 0.95),
        key_max=max(keys, default=0.0),
        key_lost=sum(1 for p in r.presses if p.latency_ms is None),
        frame_p99=pct(frames, 0.99),
        frame_max=max(frames, default=0.0),
        frames_over=sum(1 for f in frames if f > TARGET_FRAME_MS),
        stall_max=max(stalls, default=0.0),
        stalls_over=sum(1 for g in stalls if g > TARGET_FRAME_MS),
        ui_cpu=100 * ui / s,
        console_cpu=100 * (ui + r.cpu.get("console workers", 0.0)) / s,
        engine_cpu=100 * engine / s,
        committed_eps=r.committed_eps,
        rss_slope=_nan(rss_slope(r.memory)),
    )


def _nan(value: float | None) -> float:
    return float("nan") if value is None else value


def attribute(r: RunResult, start: float, gap: float) -> str:
    """What the UI loop was doing during a stall: the span of its own that covered most of it."""
    end = start + gap + HEARTBEAT_S
    best, best_overlap = "", 0.0
    for label, spans in (
        ("show", r.shows),
        ("frame", r.frames),
        ("gc", r.gcs),
    ):
        for s in spans:
            overlap = min(end, s.t1) - max(start, s.t0)
            if overlap > best_overlap:
                name = {"show": f"{s.what}.show", "gc": f"GC {s.what}"}.get(label, s.what)
                best, best_overlap = name, overlap
    if best_overlap >= 0.5 * gap:
        return best
    return "other (handlers, GIL waits)"


def report(r: RunResult, args: argparse.Namespace) -> None:
    f = figures(r)
    s = r.seconds
    print(
        f"  measured {s:.1f} s after a {r.warmup_s:.1f} s warm-up with {r.counters:,} counters on "
        f"the dashboard; {r.alerts:,} alerts in the database at the end"
    )
    if r.baseline_eps:
        print(
            f"  engine alone (before the console started): {r.baseline_eps:,.0f} events/s "
            f"committed, engine CPU {r.baseline_engine_cpu:.0f} % of a core"
        )
    if r.warmup_show is not None:
        d = r.warmup_show
        print(
            f"  warm-up: longest Dashboard.show {d.ms:.0f} ms (cpu {d.cpu * 1000:.0f} ms), "
            f"longest UI-loop stall {r.warmup_stall_ms:.0f} ms"
        )
    print()
    print("  key -> repaint (ms)              n      p50      p95      p99      max")
    keys = [p.latency_ms for p in r.presses if p.latency_ms is not None]
    print(f"    all keys                 {dist(keys)}")
    for kind in sorted({p.kind for p in r.presses}):
        vals = [p.latency_ms for p in r.presses if p.kind == kind and p.latency_ms is not None]
        print(f"    {kind:<24} {dist(vals)}")
    over = sum(1 for v in keys if v > TARGET_KEY_MS)
    lost = [f"{p.kind} {p.key!r}" for p in r.presses if p.latency_ms is None]
    print(
        f"    not painted within {KEY_TIMEOUT_S:.0f} s: {f.key_lost}"
        + (f" ({', '.join(lost)})" if lost else "")
        + f"; over {TARGET_KEY_MS:.0f} ms: {over} of {len(keys)}"
    )
    switches = [p for p in r.presses if p.target]
    bounced = [p for p in switches if p.bounced]
    if bounced:
        print(
            f"    tab switches that did not stay (the console went back to the previous tab by "
            f"itself): {len(bounced)} of {len(switches)}"
        )
    print("  key -> new data painted (ms)     n      p50      p95      p99      max")
    for kind in sorted({p.kind for p in r.presses if p.refreshes}):
        vals = [
            p.content_ms
            for p in r.presses
            if p.kind == kind and p.content_ms is not None and not p.bounced
        ]
        print(f"    {kind:<24} {dist(vals)}")
    print()
    frames = [x.ms for x in r.frames]
    print("  frames (ms)                      n      p50      p95      p99      max")
    print(f"    every frame                {dist(frames)}")
    for kind in ("frame (repaint)", "frame (layout)"):
        print(f"    {kind:<26} {dist([x.ms for x in r.frames if x.what == kind])}")
    print(f"    of which write (escape seq.){dist(r.write_ms)}")
    print(
        f"    {len(frames) / s:.1f} frames/s, {r.bytes_out / s / 1e3:,.0f} kB/s to the terminal, "
        f"{sum(1 for x in frames if x > TARGET_FRAME_MS)} frames > {TARGET_FRAME_MS:.0f} ms"
        + (f", {r.stray_frames} outside the update timer" if r.stray_frames else "")
    )
    slow = sorted(r.frames, key=lambda x: -x.ms)[:5]
    if slow and slow[0].ms > TARGET_KEY_MS:
        print("    slowest frames: ms (cpu ms) kind: dirty widgets")
        for x in slow:
            print(f"      {x.ms:6.0f} ({x.cpu * 1000:4.0f}) {x.what}: {x.info[:110]}")
    stalls = [g * 1000 for _, g in r.stalls]
    print(
        f"  UI loop stalls (heartbeat every {HEARTBEAT_S * 1000:.0f} ms): max {max(stalls, default=0):.0f} ms, "
        f"p99 {r.gaps.pct(0.99):.0f} ms, {sum(1 for g in stalls if g > 100)} > 100 ms, "
        f"{f.stalls_over} > {TARGET_FRAME_MS:.0f} ms"
    )
    print("  garbage collector pauses (ms; any thread, the GIL held)")
    for gen in ("gen 0", "gen 1", "gen 2"):
        vals = [g.ms for g in r.gcs if g.what == gen]
        print(f"    {gen:<24} {dist(vals)}   total {sum(vals):.0f} ms")
    causes: dict[str, list[float]] = {}
    for start, gap in r.stalls:
        if gap * 1000 > 100:
            causes.setdefault(attribute(r, start, gap), []).append(gap * 1000)
    for cause, vals in sorted(causes.items(), key=lambda kv: -sum(kv[1])):
        print(f"    > 100 ms during {cause:<26} {len(vals):4d} stalls, max {max(vals):.0f} ms")
    if r.stall_samples:
        print(
            f"  where the UI thread was while the loop was > 50 ms late ({r.stall_samples} samples "
            "every 5 ms; inclusive):"
        )
        for line in r.stall_inclusive:
            print(f"    {line}")
        print("    innermost frame:")
        for line in r.stall_innermost:
            print(f"    {line}")
    print()
    polls = sum(r.polls.values())
    keys_refreshing = sum(1 for p in r.presses if p.refreshes)
    print(
        f"  refreshes started: {polls} ({polls / s:.1f}/s; the {args.interval:g} s interval asks "
        f"for {s / args.interval:.0f}, plus up to {keys_refreshing} for keys that change what is "
        "shown): " + ", ".join(f"{k} {v}" for k, v in sorted(r.polls.items()))
    )
    print("  UI thread work (ms)              n      p50      p95      p99      max   cpu/wall")
    for what in ("dashboard", "alerts", "devices"):
        spans = [x for x in r.shows if x.what == what]
        if spans:
            print(f"    {what + '.show':<24} {dist([x.ms for x in spans])}   {_ratio(spans)}")
    if r.refreshed:
        print(
            f"    {'show_gathered (all)':<24} {dist([x.ms for x in r.refreshed])}   {_ratio(r.refreshed)}"
        )
    print(f"    {'frame':<24} {dist(frames)}   {_ratio(r.frames)}")
    print("  worker / engine work (ms)")
    for what in ("dashboard", "alerts", "devices"):
        spans = [x for x in r.gathers if x.what == what]
        if spans:
            print(f"    {what + '.gather':<24} {dist([x.ms for x in spans])}   {_ratio(spans)}")
    if r.snapshots:
        print(f"    {'Session.snapshot':<24} {dist(r.snapshots)}   (engine loop)")
    print()
    print(f"  CPU (% of one core over the {s:.0f} s)")
    order = (
        "console UI loop",
        "console workers",
        "engine loop",
        "engine SQLite writer",
        "engine file reads",
        "benchmark",
        "other",
    )
    for label in order:
        if label in r.cpu:
            print(f"    {label:<24} {100 * r.cpu[label] / s:6.1f}")
    attributed = sum(r.cpu.values())
    print(f"    {'threads that ended':<24} {100 * max(0.0, r.process_cpu - attributed) / s:6.1f}")
    print(
        f"    console (UI + workers) {f.console_cpu:6.1f}   engine {f.engine_cpu:6.1f}   "
        f"this process {100 * r.process_cpu / s:6.1f}   writer {100 * r.writer_cpu / s:5.1f}"
    )
    cores = psutil.cpu_count() or 1
    others = 100 * (r.system_busy - (r.process_cpu + r.writer_cpu) / s)
    print(
        f"    machine: {cores} cores, {100 * r.system_busy:.0f} % busy on average "
        f"(other processes {max(0.0, others):.0f} %)"
    )
    print()
    if r.memory:
        print_memory(r.memory, r.footprint)
    print(
        f"  ingest: appended {r.appended_eps:,.0f} events/s, committed {r.committed_eps:,.0f} "
        f"events/s ({100 * r.committed_eps / args.rate:.0f} % of {args.rate:,}); "
        f"backlog at the end {r.backlog:,} events ({r.backlog / max(1, args.rate):.1f} s)"
    )
    for title, text in (
        ("the UI thread", r.profile),
        ("the refresh workers' gather()", r.worker_profile),
    ):
        if text:
            print()
            print(f"  profile of {title} (cProfile; the figures above are inflated by it):")
            for line in text.splitlines():
                if line.strip():
                    print(f"  {line}")


def print_census(before: Counter[str], after: Counter[str], seconds: float) -> None:
    """The types whose live, unfrozen objects grew most between two censuses."""
    growth = Counter({k: after[k] - before[k] for k in after.keys() | before.keys()})

    def objects(counts: Counter[str]) -> int:
        return sum(n for k, n in counts.items() if ":" not in k)

    print(
        f"  objects the collector tracks, not frozen: {objects(before):,} after "
        f"{SLOPE_AFTER_S / 60:g} min, {objects(after):,} {seconds / 60:.1f} min later; "
        "most grown:"
    )
    for name, n in [(k, n) for k, n in growth.most_common() if ":" not in k][:15]:
        if n > 0:
            print(f"    {name:<40} {before[name]:>10,} -> {after[name]:>10,}  (+{n:,})")
    print(
        "  CPython's allocator: "
        + ", ".join(
            f"{k[9:]} {before[k]:,} -> {after[k]:,}"
            for k in sorted(after)
            if k.startswith("pymalloc:")
        )
    )
    caches = [(k, n) for k, n in growth.most_common() if k.startswith(("lru:", "attr:")) and n]
    print("  caches whose entries changed (functools caches, widgets' attributes):")
    for name, n in caches[:20]:
        print(f"    {name[:60]:<60} {before[name]:>8,} -> {after[name]:>8,}  ({n:+,})")
    nodes = [(k, n) for k, n in growth.most_common() if k.startswith("node:") and n]
    print("  widgets and screens alive, by type, where the count changed:")
    for name, n in nodes[:15]:
        print(f"    {name[5:]:<40} {before[name]:>10,} -> {after[name]:>10,}  ({n:+,})")


def print_traced(snapshot: tracemalloc.Snapshot, seconds: float, top: int = 25) -> None:
    """What was allocated after the first two minutes and is still alive, by where it was
    allocated (``--tracemalloc N``: N frames each); the benchmark's own lines left out."""
    snapshot = snapshot.filter_traces(
        (
            tracemalloc.Filter(False, tracemalloc.__file__),
            tracemalloc.Filter(False, __file__),
        )
    )
    stats = snapshot.statistics("traceback")
    total = sum(st.size for st in stats)
    print(
        f"  allocated in the last {seconds / 60:.1f} min and still alive: {total / 1e6:.1f} MB "
        f"in {sum(st.count for st in stats):,} blocks; where:"
    )
    for st in stats[:top]:
        frames = " <- ".join(
            f"{_short(f.filename)}:{f.lineno}" for f in st.traceback[: len(st.traceback)]
        )
        print(f"    {st.size / 1e3:>9,.0f} kB {st.count:>8,}  {frames}")


def print_memory(memory: Sequence[MemorySample], footprint: int | None) -> None:
    """RSS, frozen objects and malloc's arenas at marks through the window; the RSS slope;
    ``footprint``: bytes of the benchmark's own records (None: no console ran)."""
    marks = memory_marks(memory)
    print(
        f"  memory of this process ({'console and engine' if footprint else 'the engine'}), "
        f"sampled every {RSS_EVERY_S:.0f} s through the window:"
    )
    print("    minute           " + "".join(f"{m.t / 60:>8.1f}" for m in marks))
    print("    RSS MB           " + "".join(f"{m.rss:>8.1f}" for m in marks))
    if all(m.anon is not None for m in marks):
        print("    RSS anon MB      " + "".join(f"{m.anon or 0:>8.1f}" for m in marks))
    print("    frozen objects k " + "".join(f"{m.frozen / 1000:>8.1f}" for m in marks))
    print("    python blocks k  " + "".join(f"{m.blocks / 1000:>8.1f}" for m in marks))
    if any(m.arenas for m in marks):
        print("    pymalloc arenas MB" + "".join(f"{m.arenas:>8.1f}" for m in marks)[1:])
        print("    pymalloc in use MB" + "".join(f"{m.allocated:>8.1f}" for m in marks)[1:])
    if all(m.malloc_used is not None for m in marks):
        print("    malloc in use MB " + "".join(f"{m.malloc_used or 0:>8.1f}" for m in marks))
        print("    malloc kept MB   " + "".join(f"{m.malloc_free or 0:>8.1f}" for m in marks))
        print("    malloc system MB " + "".join(f"{m.malloc_system or 0:>8.1f}" for m in marks))
    if all(m.other is not None for m in marks):
        print("    other anon MB    " + "".join(f"{m.other or 0:>8.1f}" for m in marks))
    slope = rss_slope(memory)
    late = sum(1 for m in memory if m.t >= SLOPE_AFTER_S)
    if slope is None:
        print(
            f"    RSS slope: the window is too short (it is taken after {SLOPE_AFTER_S / 60:g} minutes)"
        )
    else:
        span = (memory[-1].t - SLOPE_AFTER_S) / 60
        print(
            f"    RSS slope after the first {SLOPE_AFTER_S / 60:g} minutes: {slope:+.2f} MB/min "
            f"(least squares over {late} samples, {span:.1f} minutes; target within "
            f"±{TARGET_SLOPE:g}: {met(abs(slope) <= TARGET_SLOPE)}"
            + ("; under 10 minutes: indicative only)" if span < 8 else ")")
        )
    if footprint:
        print(
            f"    the benchmark's own records (frames, presses, pauses) hold about "
            f"{footprint / 1e6:.1f} MB of that at the end"
        )


def _ratio(spans: Sequence[Span]) -> str:
    wall = sum(x.t1 - x.t0 for x in spans)
    cpu = sum(x.cpu for x in spans)
    return f"{cpu / wall:5.2f}" if wall > 0 else "    -"


def summary(runs: list[RunResult], args: argparse.Namespace) -> None:
    figs = [figures(r) for r in runs]
    k = len(figs)

    def row(label: str, attr: str, fmt: str, best: Callable[[list[float]], float]) -> None:
        vals = [getattr(x, attr) for x in figs]
        per = "  ".join(format(v, fmt) for v in vals)
        med = statistics.median(vals)
        med_fmt = "g" if fmt == "d" and med != int(med) else fmt
        print(
            f"  {label:<28} best {format(best(vals), fmt):>9}  median "
            f"{format(int(med) if med_fmt == 'd' else med, med_fmt):>9}   runs: {per}"
        )

    print()
    print(f"summary over {k} run{'s' if k > 1 else ''} (best and median of {k})")
    row("key->repaint p50 ms", "key_p50", ".1f", min)
    row("key->repaint p95 ms", "key_p95", ".1f", min)
    row("key->repaint max ms", "key_max", ".1f", min)
    row("presses not painted", "key_lost", "d", min)
    row("frame p99 ms", "frame_p99", ".1f", min)
    row("frame max ms", "frame_max", ".1f", min)
    row("frames > 250 ms", "frames_over", "d", min)
    row("UI-loop stall max ms", "stall_max", ".1f", min)
    row("UI-loop stalls > 250 ms", "stalls_over", "d", min)
    row("UI thread CPU %", "ui_cpu", ".1f", min)
    row("console CPU % (UI+workers)", "console_cpu", ".1f", min)
    row("engine CPU %", "engine_cpu", ".1f", min)
    row("committed events/s", "committed_eps", ",.0f", max)
    row("RSS slope MB/min (after 2 min)", "rss_slope", "+.2f", lambda v: min(v, key=abs))
    med = {a: statistics.median(getattr(x, a) for x in figs) for a in Figures.__dataclass_fields__}
    print()
    print(
        f"target key -> repaint p95 < {TARGET_KEY_MS:.0f} ms: {met(med['key_p95'] < TARGET_KEY_MS)} "
        f"(median p95 {med['key_p95']:.0f} ms, max {med['key_max']:.0f} ms)"
    )
    print(
        f"target no frame > {TARGET_FRAME_MS:.0f} ms: frames {met(med['frames_over'] == 0)} "
        f"(median max {med['frame_max']:.0f} ms); UI loop {met(med['stalls_over'] == 0)} "
        f"(median longest stall {med['stall_max']:.0f} ms)"
    )
    if med["rss_slope"] == med["rss_slope"]:  # not nan
        print(
            f"target RSS slope within ±{TARGET_SLOPE:g} MB/min after the first "
            f"{SLOPE_AFTER_S / 60:g} minutes: {met(abs(med['rss_slope']) <= TARGET_SLOPE)} "
            f"(median {med['rss_slope']:+.2f} MB/min"
            + ("; a window under 10 minutes is indicative only)" if args.seconds < 600 else ")")
        )
    print(
        f"engine kept up with {args.rate:,} events/s: "
        f"{'yes' if med['committed_eps'] >= 0.95 * args.rate else 'NO'} "
        f"(median {med['committed_eps']:,.0f} committed/s)"
    )


def terminal_stdin() -> None:
    """Make standard input a terminal (a pseudo-terminal of ``SIZE``) when it is not one. Rich
    measures every cell against ``Console.size``, which tries the standard streams in turn until
    one is a terminal: without any, each call costs three failed ioctls (3 µs instead of 1 µs),
    which a console in a terminal never pays. Nothing reads this input."""
    if os.isatty(0) or sys.platform == "win32":
        return
    import fcntl
    import struct
    import termios

    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", SIZE[1], SIZE[0], 0, 0))
    os.dup2(slave, 0)
    os.close(slave)
    _KEEP.append(master)  # the pty lives as long as the benchmark


_KEEP: list[int] = []


def code_origin() -> str:
    """Where ``tui`` and ``engine`` are imported from: this work tree (and its changes) or another
    folder (``PYTHONPATH``, e.g. a ``git archive`` of a commit)."""
    import tui

    root = Path(__file__).resolve().parents[1]
    if Path(tui.__file__).resolve().parents[1] != root:
        return "tui/ and engine/ from another folder (PYTHONPATH), not this work tree"
    try:
        out = subprocess.run(
            ["git", "status", "--porcelain", "--", "tui", "engine"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.split("\n")
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "tui/ and engine/ of this work tree"
    changed = [line[3:] for line in out if line.strip()]
    return f"tui/ and engine/ of this work tree at {head or '?'}" + (
        f", with changes to {', '.join(changed)}" if changed else ", unchanged"
    )


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["_writer"]:
        return writer_main(args_list[1:])
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, help="measured seconds per run (60; --quick 15)")
    p.add_argument("--rate", type=int, default=10_000, help="events/s appended (10000)")
    p.add_argument("--devices", type=int, default=2_000, help="devices (2000)")
    p.add_argument("--quick", action="store_true", help="15 s measured, 5 s warm-up")
    p.add_argument(
        "--default-gc",
        action="store_true",
        help="keep CPython's collector settings instead of engine.collector.settle()",
    )
    p.add_argument(
        "--default-malloc",
        action="store_true",
        help="keep glibc's malloc settings instead of engine.collector.steady_malloc()",
    )
    p.add_argument("--warmup", type=float, help="seconds before measuring, at least (10; quick 5)")
    p.add_argument(
        "--baseline",
        type=float,
        help="seconds of the engine alone before the console (10; quick 5)",
    )
    p.add_argument("--repeat", type=int, default=1, metavar="K", help="K runs; best/median (1)")
    p.add_argument("--interval", type=float, default=1.0, help="the console's refresh, s (1.0)")
    p.add_argument("--violations", type=float, default=0.5, help="forbidden processes/s (0.5)")
    p.add_argument("--seed", type=int, default=1, help="seed of inputs and keys (1)")
    p.add_argument("--profile", action="store_true", help="cProfile the UI thread; print top")
    p.add_argument("--top", type=int, default=25, help="functions in the profile (25)")
    p.add_argument("--out", type=Path, help="keep the folders (inputs, database) under DIR")
    p.add_argument(
        "--census",
        action="store_true",
        help="count live objects by type after two minutes and at the end (pauses the console "
        "about a second each): what the memory slope is made of",
    )
    p.add_argument(
        "--horizon",
        help="[engine] horizon (P1D): the engine keeps judged counts this long, so its state "
        "grows until a horizon has passed; a short one shows the console's own slope sooner",
    )
    p.add_argument(
        "--tracemalloc",
        type=int,
        metavar="N",
        help="trace allocations (N frames) after the first two minutes; print where what is "
        "still alive at the end was allocated (slows the process down)",
    )
    p.add_argument(
        "--engine-only",
        action="store_true",
        help="the same feed and engine without the console: the engine's share of the memory",
    )
    args = p.parse_args(args_list)
    if args.seconds is None:
        args.seconds = 15.0 if args.quick else 60.0
    if args.warmup is None:
        args.warmup = 5.0 if args.quick else 10.0
    if args.baseline is None:
        args.baseline = 5.0 if args.quick else 10.0
    if args.rate < 1 or args.devices < 1 or args.repeat < 1 or args.seconds <= 0:
        p.error("--rate, --devices, --repeat and --seconds must be positive")

    load = os.getloadavg()
    print(
        f"console benchmark: {args.rate:,} events/s over {args.devices:,} devices, "
        f"{args.seconds:g} s measured per run, {args.repeat} run(s), {SIZE[0]}x{SIZE[1]}, "
        f"refresh {args.interval:g} s, garbage collector "
        + ("with CPython's defaults" if args.default_gc else "settled (engine.collector)")
        + (", glibc's malloc defaults" if args.default_malloc else ", steady malloc")
        + f", horizon {args.horizon or 'P1D'}"
    )
    print(
        f"machine: {psutil.cpu_count()} cores, load average {load[0]:.2f} {load[1]:.2f} "
        f"{load[2]:.2f} before the first run"
    )
    print(f"code: {code_origin()}")
    terminal_stdin()
    runs: list[RunResult] = []
    broken: list[str] = []
    for k in range(args.repeat):
        if args.out is not None:
            folder = args.out / f"run-{k + 1}"
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
        else:
            folder = Path(tempfile.mkdtemp(prefix="iotwatch-console-"))
        try:
            print()
            print(f"run {k + 1}/{args.repeat}")
            r = run_once(args, folder, k)
            if r is None:  # --engine-only printed its own figures
                continue
            runs.append(r)
            report(r, args)
            broken += r.broken
        except Exception as exc:
            import traceback

            traceback.print_exc()
            broken.append(f"run {k + 1} crashed: {exc!r}")
        finally:
            if args.out is None:
                shutil.rmtree(folder, ignore_errors=True)
    if runs:
        summary(runs, args)
    for line in broken:
        print(f"BROKEN: {line}", file=sys.stderr)
    return 1 if broken or not (runs or args.engine_only) else 0


if __name__ == "__main__":
    sys.exit(main())

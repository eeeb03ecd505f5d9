"""Store faults (issue 13): a database locked past the busy timeout, a full disk, a fatal write
error, SIGKILL in each phase of a commit, damaged databases at start, a replay's writer process
that fails. Every fault is real — a second process holding the lock, a small filesystem that
fills, a file made immutable, a process killed — and after each the invariant is checked:
events and quarantine account for every record before the committed offset, nothing twice.

Fault settings (busy timeout, backoff) are shortened through constructor parameters in-process
and through ``tests/fault_driver.py`` for processes of their own, so each test takes seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from engine.config import load_config
from engine.session import Session, SessionFailed
from engine.store import Batch, Store, StoreFault, write_parts
from engine.timestamps import format_time, parse_time

REPO = Path(__file__).resolve().parents[1]
T0 = parse_time("2026-11-28T10:00:00Z")
CLOCK = "2026-11-28T12:00:00Z"  # a frozen wall clock after every event of the inputs

CONFIG = """
[engine]
lateness = "PT1M"

[[sources]]
type = "hub-events"
path = "logs/*.jsonl"

[groups.default.rules.MqttD2CMessagesNotInAllowedRange]
max = 1000
window = "PT5M"
"""

FAST = ("--busy-timeout", "0.2", "--retry", "0.1")


# -- inputs and the invariant ---------------------------------------------------------------------


def hub_lines(start: int, count: int, bad_every: int = 0) -> bytes:
    """``count`` hub-events lines numbered from ``start``, an hour of events; every
    ``bad_every``-th line is not JSON (it goes to the quarantine)."""
    out = []
    for i in range(start, start + count):
        if bad_every and i % bad_every == bad_every - 1:
            out.append(b"{not json %d\n" % i)
            continue
        t = T0 + (i % 3600) * 1_000_000
        rec = {"time": format_time(t), "deviceId": f"dev-{i % 40}", "op": "d2c", "protocol": "mqtt"}
        out.append(orjson.dumps(rec) + b"\n")
    return b"".join(out)


def append(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("ab") as f:
        f.write(data)


def line_starts(path: Path) -> list[int]:
    """The positions of the complete lines of ``path``: its records."""
    data = path.read_bytes()
    starts, pos = [], 0
    while (end := data.find(b"\n", pos)) >= 0:
        starts.append(pos)
        pos = end + 1
    return starts


def read(db: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def committed(db: Path) -> int:
    """Records committed (events + quarantine), 0 while the database is not there yet."""
    try:
        return read(db, "SELECT (SELECT count(*) FROM events) + (SELECT count(*) FROM quarantine)")[
            0
        ][0]
    except sqlite3.Error:
        return 0


def check_accounted(db: Path, root: Path) -> int:
    """SPEC §7's invariant: for every file stream, the events and the quarantine hold each
    record before the committed offset exactly once, and nothing at or after it. Returns the
    number of records accounted for."""
    total = 0
    for sid, name, offset in read(db, "SELECT id, name, offset FROM streams WHERE kind = 'file'"):
        path = Path(name) if Path(name).is_absolute() else root / name
        events = Counter(p for (p,) in read(db, "SELECT pos FROM events WHERE stream = ?", (sid,)))
        bad = Counter(p for (p,) in read(db, "SELECT pos FROM quarantine WHERE stream = ?", (sid,)))
        twice = [p for p, n in (events + bad).items() if n > 1]
        assert not twice, f"{name}: records stored twice at {twice[:5]}"
        records = [p for p in line_starts(path) if p < offset]
        held = sorted(events.keys() | bad.keys())
        assert held == records, (
            f"{name}: committed offset {offset} covers {len(records)} records; events and "
            f"quarantine hold {len(held)} (missing {sorted(set(records) - set(held))[:5]}, "
            f"beyond {sorted(set(held) - set(records))[:5]})"
        )
        total += len(records)
    return total


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


# -- processes ------------------------------------------------------------------------------------


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO)}


def iotwatch(
    root: Path, *args: str, driver: tuple[str, ...] | None = None, stderr: Path | None = None
) -> subprocess.Popen[bytes]:
    """``iotwatch ARGS`` in ``root``; through the fault driver with ``driver`` options."""
    cmd = [sys.executable, "-m", "tui.cli", *args]
    if driver is not None:
        cmd = [sys.executable, "-m", "tests.fault_driver", *driver, "--", *args]
    return subprocess.Popen(
        cmd,
        cwd=root,
        env=env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=stderr.open("wb") if stderr is not None else subprocess.PIPE,
    )


def finish(proc: subprocess.Popen[bytes], timeout: float = 60) -> tuple[int, str]:
    """Wait for ``proc`` (never forever); its exit status and standard error."""
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise AssertionError(f"still running after {timeout} s: it hangs") from None
    return proc.returncode, (err or b"").decode(errors="replace")


def one_line(err: str, *words: str) -> str:
    """The single line ``err`` must be: no traceback, ``iotwatch: ``, naming ``words``."""
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("iotwatch: "), err
    for word in words:
        assert word in lines[0], err
    return lines[0]


LOCKER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
conn.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
sys.stdin.read()
conn.execute("ROLLBACK")
"""


class Locker:
    """A second process holding the database's write lock (``BEGIN IMMEDIATE``, as a
    ``sqlite3`` shell or a backup tool would) until ``release()``."""

    def __init__(self, db: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", LOCKER, str(db)], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline() == b"locked\n"

    def release(self) -> None:
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            self.proc.stdin.close()
        self.proc.wait(30)


@contextlib.contextmanager
def locked(db: Path) -> Iterator[Locker]:
    locker = Locker(db)
    try:
        yield locker
    finally:
        locker.release()


def setup(root: Path, lines: int, bad_every: int = 0) -> Path:
    """A configuration and a log of ``lines`` records in ``root``; the log's path."""
    (root / "iotwatch.toml").write_text(CONFIG)
    log = root / "logs" / "hub.jsonl"
    append(log, hub_lines(0, lines, bad_every))
    return log


def _event_row(stream: int, pos: int, weight: int) -> tuple[Any, ...]:
    return (stream, 1, 0, T0, "d2c", 0, 0, 0, None, weight, 0, pos)


def _iotwatch_db(path: Path, events: int = 0) -> None:
    """An iotwatch database at ``path`` holding ``events`` events, wholly in the main file."""

    async def make() -> None:
        store = await Store.open(path)
        try:
            if events:
                sid = await store.add_stream("file", "hub-events", "x.jsonl", "x")
                await store.write(
                    Batch(
                        devices=[(1, "dev", "default", 0, T0, T0)],
                        events=[_event_row(sid, p * 80, 1) for p in range(events)],
                    )
                )
        finally:
            await store.close()

    asyncio.run(make())
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    for extra in ("-wal", "-shm"):
        Path(f"{path}{extra}").unlink(missing_ok=True)


# -- a small filesystem that fills ----------------------------------------------------------------


SIZE_MB = 16


class Volume:
    """Where a database can run out of room: a small tmpfs the test mounts (as root), else SQLite's
    own size limit (``PRAGMA max_page_count``) on the store's connection. ``how`` says which."""

    def __init__(self, root: Path) -> None:
        self.dir = root / "vol"
        self.dir.mkdir()
        self.filler = self.dir / "filler"
        self.how = "max_page_count"
        if os.geteuid() == 0 and shutil.which("mount"):
            done = subprocess.run(
                ["mount", "-t", "tmpfs", "-o", f"size={SIZE_MB}m", "tmpfs", str(self.dir)],
                capture_output=True,
            )
            if done.returncode == 0:
                self.how = "tmpfs"

    def fill(self) -> None:
        """tmpfs: take every free block."""
        assert self.how == "tmpfs"
        with self.filler.open("wb", buffering=0) as f:
            for size in (1 << 16, 1 << 10):  # then the last partial blocks
                with contextlib.suppress(OSError):
                    while True:
                        f.write(b"\0" * size)

    def free(self) -> None:
        self.filler.unlink(missing_ok=True)

    def close(self) -> None:
        if self.how == "tmpfs":
            subprocess.run(["umount", "-l", str(self.dir)], check=False)


@contextlib.contextmanager
def volume(root: Path) -> Iterator[Volume]:
    vol = Volume(root)
    print(f"full disk made with {vol.how}")  # which of the two this run used
    try:
        yield vol
    finally:
        vol.close()


# -- 1. a database locked past the busy timeout (issue 13, seen 1) --------------------------------


def test_a_lock_held_past_the_busy_timeout_pauses_reading_and_loses_nothing(
    tmp_path: Path,
) -> None:
    log = setup(tmp_path, 5_000)
    db = tmp_path / "live.db"
    err = tmp_path / "stderr.txt"
    proc = iotwatch(
        tmp_path, "run", "--headless", "--db", "live.db", "--clock", CLOCK, driver=FAST, stderr=err
    )
    try:
        wait_for(lambda: committed(db) == 5_000, 60, "the first records")
        with locked(db):
            append(log, hub_lines(5_000, 20_000))
            wait_for(lambda: "database is locked" in err.read_text(), 30, "the locked line")
            time.sleep(1.0)  # several retries, each past the busy timeout
            assert committed(db) == 5_000
            check_accounted(db, tmp_path)  # no offset moved past what is stored
        wait_for(lambda: committed(db) == 25_000, 60, "the records read meanwhile")
        wait_for(lambda: "writable again" in err.read_text(), 10, "the recovery line")
    finally:
        proc.send_signal(signal.SIGTERM)
        status, _ = finish(proc)
    assert status == 0, err.read_text()
    assert check_accounted(db, tmp_path) == 25_000
    lines = err.read_text().splitlines()
    assert len(lines) == 2, lines  # one when it began, one when it ended
    assert "reading paused" in lines[0] and "reading resumed" in lines[1]


async def open_session(root: Path, db: Path, **kw: Any) -> tuple[Session, Store]:
    store = await Store.open(db, busy_timeout=0.05)
    session = Session(
        load_config(root / "iotwatch.toml"),
        store,
        clock=lambda: parse_time(CLOCK),
        poll_interval=0.02,
        commit_interval=0.02,
        tick_interval=0.02,
        retry_first=0.05,
        retry_max=0.1,
        **kw,
    )
    session.config_poll = 0.05
    await session.start()
    return session, store


@contextlib.asynccontextmanager
async def running(root: Path, db: Path, **kw: Any) -> AsyncIterator[tuple[Session, Store]]:
    session, store = await open_session(root, db, **kw)
    try:
        yield session, store
    finally:
        await session.close()
        await store.close()


async def test_a_busy_database_pauses_the_sources_and_the_console_sees_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    log = setup(tmp_path, 1_000)
    db = tmp_path / "s.db"
    caplog.set_level(logging.WARNING, logger="iotwatch")
    async with running(tmp_path, db, commit_rows=500) as (session, _store):
        await until(lambda: committed(db) == 1_000, 20, "the first records")
        with locked(db):
            append(log, hub_lines(1_000, 30_000))
            said = lambda: any("is locked" in r.getMessage() for r in caplog.records)  # noqa: E731
            await until(said, 20, "the locked line")
            await until(lambda: session.status[0].events > 1_000, 20, "a read")
            await asyncio.sleep(0.3)
            read_so_far = session.status[0].events
            append(log, hub_lines(31_000, 10_000))
            await asyncio.sleep(0.5)
            # Reading has stopped: nothing more is read, nothing read is dropped.
            assert session.status[0].events == read_so_far
            snap = session.snapshot()
            assert snap.store is not None and snap.store.pending == read_so_far - 1_000
            assert snap.store is not None and snap.store.kind == "busy"
            assert snap.store.attempts > 1
            assert [s.state for s in snap.sources] == ["paused"]
            assert "database is locked" in (snap.sources[0].error or "")
            assert committed(db) == 1_000
        await until(lambda: committed(db) == 41_000, 30, "everything after the lock")
        assert session.store_status is None
        assert session.snapshot().sources[0].state in ("caught-up", "following")
    assert check_accounted(db, tmp_path) == 41_000
    messages = [r.getMessage() for r in caplog.records]
    assert any("reading paused" in m for m in messages)
    assert any("reading resumed" in m for m in messages)


# -- 2. a full disk (issue 13, seen 2) ------------------------------------------------------------


async def test_a_full_disk_pauses_reading_and_resumes_by_itself(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    log = setup(tmp_path, 1_000)
    caplog.set_level(logging.WARNING, logger="iotwatch")
    with volume(tmp_path) as vol:
        db = vol.dir / "s.db"
        async with running(tmp_path, db) as (session, store):
            await until(lambda: committed(db) == 1_000, 20, "the first records")
            if vol.how == "tmpfs":
                vol.fill()
            else:
                ((pages,),) = await store.conn.execute_fetchall("PRAGMA page_count")
                await store.conn.execute(f"PRAGMA max_page_count = {pages + 2}")
            append(log, hub_lines(1_000, 40_000))
            said = lambda: any("disk is full" in r.getMessage() for r in caplog.records)  # noqa: E731
            await until(said, 30, f"the full line ({vol.how})")
            assert session.store_status is not None and session.store_status.kind == "full"
            await asyncio.sleep(0.3)
            assert session.snapshot().sources[0].state == "paused"
            check_accounted(db, tmp_path)
            if vol.how == "tmpfs":
                vol.free()
            else:
                await store.conn.execute("PRAGMA max_page_count = 1073741823")
            await until(lambda: committed(db) == 41_000, 30, "everything after the space returns")
            assert session.store_status is None
        assert check_accounted(db, tmp_path) == 41_000
    messages = [r.getMessage() for r in caplog.records]
    assert any("database or disk is full; reading paused" in m for m in messages), messages
    assert any("writable again" in m for m in messages), messages


def test_stopping_while_the_disk_is_full_exits_1_with_one_line_and_loses_nothing(
    tmp_path: Path,
) -> None:
    log = setup(tmp_path, 1_000)
    err = tmp_path / "stderr.txt"
    with volume(tmp_path) as vol:
        db = vol.dir / "live.db"
        driver = (*FAST, *(("--max-pages", "60") if vol.how != "tmpfs" else ()))
        args = ("run", "--headless", "--db", str(db), "--clock", CLOCK)
        proc = iotwatch(tmp_path, *args, driver=driver, stderr=err)
        try:
            wait_for(lambda: committed(db) == 1_000, 60, "the first records")
            if vol.how == "tmpfs":
                vol.fill()
            append(log, hub_lines(1_000, 40_000))
            wait_for(lambda: "disk is full" in err.read_text(), 30, f"the full line ({vol.how})")
        finally:
            proc.send_signal(signal.SIGTERM)
            status, _ = finish(proc)
        text = err.read_text()
        assert status == 1, text
        assert "Traceback" not in text
        *_, last = text.strip().splitlines()
        assert last.startswith("iotwatch: ") and "not committed" in last, text
        held = check_accounted(db, tmp_path)
        assert held < 41_000
        vol.free()
        again = iotwatch(tmp_path, *args)  # room again, no page limit
        try:
            wait_for(lambda: committed(db) == 41_000, 60, "the rest after a restart")
        finally:
            again.send_signal(signal.SIGTERM)
            status, text = finish(again)
        assert status == 0, text
        assert check_accounted(db, tmp_path) == 41_000


# -- 3. a fatal store error -----------------------------------------------------------------------


def chattr(flag: str, *paths: Path) -> bool:
    if os.geteuid() != 0 or not shutil.which("chattr"):
        return False
    done = subprocess.run(["chattr", flag, *map(str, paths)], capture_output=True)
    return done.returncode == 0


def test_a_fatal_store_error_stops_the_session_with_exit_1_and_one_line(tmp_path: Path) -> None:
    log = setup(tmp_path, 2_000)
    db = tmp_path / "live.db"
    wal = tmp_path / "live.db-wal"
    args = ("run", "--headless", "--db", "live.db", "--clock", CLOCK)
    proc = iotwatch(tmp_path, *args, driver=FAST)
    try:
        wait_for(lambda: committed(db) == 2_000, 60, "the first records")
        if not chattr("+i", wal, db):
            pytest.skip("needs root and chattr to make the database unwritable under a session")
        append(log, hub_lines(2_000, 5_000))
        status, err = finish(proc, 30)  # it stops on its own
    finally:
        chattr("-i", wal, db)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert status == 1
    one_line(err, "live.db", "disk I/O error")
    check_accounted(db, tmp_path)
    again = iotwatch(tmp_path, *args)
    try:
        wait_for(lambda: committed(db) == 7_000, 60, "the rest after a restart")
    finally:
        again.send_signal(signal.SIGTERM)
        status, err = finish(again)
    assert status == 0, err
    assert check_accounted(db, tmp_path) == 7_000


# -- 4. rows SQLite cannot store ------------------------------------------------------------------


async def test_a_row_sqlite_cannot_store_is_set_apart_and_the_rest_of_its_batch_written(
    tmp_path: Path,
) -> None:
    store = await Store.open(tmp_path / "s.db")
    try:
        sid = await store.add_stream("file", "hub-events", "x.jsonl", "x")
        batch = Batch(
            events=[_event_row(sid, p, 2**64 if p == 300 else 1) for p in range(0, 1000, 100)],
            console=[(sid, 5, T0, "ok"), (sid, 6, T0, "lone \udc80 surrogate")],
            devices=[(1, "dev", "default", 0, T0, 2**70)],
            streams=[(1000, 10, 10, 0, 0, T0, "hub-events", "open", sid)],
        )
        rejected = await store.write(batch)
        assert sorted((r.table, r.action) for r in rejected) == [
            ("console", "stored"),
            ("devices", "stored"),
            ("events", "quarantined"),
        ]
        assert "int too large" in next(r.reason for r in rejected if r.table == "events")
        assert await store.count("events") == 9
        rows = await store.conn.execute_fetchall("SELECT stream, pos, reason FROM quarantine")
        assert [(s, p) for s, p, _ in rows] == [(sid, 300)]
        assert rows[0][2].startswith("not storable: ")
        streams = await store.conn.execute_fetchall("SELECT offset, quarantined FROM streams")
        assert list(streams) == [(1000, 1)]  # the set-apart event is counted where it went
        lines = await store.conn.execute_fetchall("SELECT line FROM console ORDER BY pos")
        assert [ln for (ln,) in lines] == ["ok", "lone \\udc80 surrogate"]
        devices = await store.conn.execute_fetchall("SELECT last_us FROM devices")
        assert list(devices) == [(2**63 - 1,)]
    finally:
        await store.close()


def test_the_bulk_writer_sets_apart_a_row_sqlite_cannot_store(tmp_path: Path) -> None:
    _iotwatch_db(tmp_path / "r.db")
    conn = sqlite3.connect(tmp_path / "r.db", isolation_level=None)
    try:
        rows = [_event_row(1, p, 2**63 if p == 2 else 1) for p in range(5)]
        rejected = write_parts(conn, [(1, rows)])
        assert [(r.table, r.pos, r.action) for r in rejected] == [("events", 2, "quarantined")]
        assert conn.execute("SELECT count(*) FROM events").fetchone() == (4,)
        assert conn.execute("SELECT pos FROM quarantine").fetchall() == [(2,)]
    finally:
        conn.close()


async def test_a_count_beyond_64_bits_does_not_wedge_the_live_session(tmp_path: Path) -> None:
    log = setup(tmp_path, 500)
    db = tmp_path / "s.db"
    async with running(tmp_path, db) as (session, _store):
        await until(lambda: committed(db) == 500, 20, "the first records")
        rec = {"time": format_time(T0), "deviceId": "dev-1", "op": "d2c", "count": 2**64 - 1}
        append(log, orjson.dumps(rec) + b"\n" + hub_lines(500, 500))
        await until(lambda: committed(db) == 1_001, 20, "the records after the huge count")
        assert session.failure is None
        append(log, hub_lines(1_000, 500))
        await until(lambda: committed(db) == 1_501, 20, "the session going on")
    assert check_accounted(db, tmp_path) == 1_501


# -- 5. SIGKILL in each phase of a commit ---------------------------------------------------------


CHUNK = 5_000


@pytest.mark.parametrize(
    ("phase", "kill_at"),
    [
        pytest.param(phase, kill_at, id=phase)
        for phase, kill_at in [
            ("before-begin", "begin:5"),  # open's check and the configuration come first
            ("during-executemany", f"insert:{2 * CHUNK + CHUNK // 2}"),
            ("after-commit-before-notification", "notify:3"),
        ]
    ],
)
def test_sigkill_in_each_phase_of_a_commit_loses_nothing(
    tmp_path: Path, phase: str, kill_at: str
) -> None:
    """The log grows a chunk at a time, each committed before the next, so the kill lands in a
    commit of the third chunk; a restart then reads on from the committed offset."""
    (tmp_path / "iotwatch.toml").write_text(CONFIG)
    log = tmp_path / "logs" / "hub.jsonl"
    chunks = [hub_lines(k * CHUNK, CHUNK, bad_every=97) for k in range(6)]
    db = tmp_path / "live.db"
    args = ("run", "--headless", "--db", "live.db", "--clock", CLOCK)
    proc = iotwatch(tmp_path, *args, driver=("--kill-at", kill_at))
    written = 0
    for chunk in chunks:
        append(log, chunk)
        written += CHUNK
        wait_for(
            lambda goal=written: committed(db) >= goal or proc.poll() is not None, 60, "a chunk"
        )
        if proc.poll() is not None:
            break
    status, err = finish(proc)
    assert status == -signal.SIGKILL, err
    held = check_accounted(db, tmp_path)
    assert 0 < held < 6 * CHUNK, f"the kill ({phase}) should land mid-ingest"
    again = iotwatch(tmp_path, *args)
    try:
        for chunk in chunks[written // CHUNK :]:
            append(log, chunk)
        wait_for(lambda: committed(db) == 6 * CHUNK, 60, "the rest after a restart")
    finally:
        again.send_signal(signal.SIGTERM)
        status, err = finish(again)
    assert status == 0, err
    assert check_accounted(db, tmp_path) == 6 * CHUNK
    assert read(db, "SELECT count(*) FROM quarantine") == [(6 * CHUNK // 97,)]


# -- 6. start-up faults (issue 13, seen 5) --------------------------------------------------------


def _damage(path: Path) -> None:
    """Overwrite the second half of the file's pages (where the events are) with garbage."""
    data = bytearray(path.read_bytes())
    page = int.from_bytes(data[16:18], "big") or 65536
    pages = len(data) // page
    for n in range(pages // 2, pages):
        data[n * page : (n + 1) * page] = bytes((n * 7 + i) % 251 for i in range(page))
    path.write_bytes(bytes(data))


def make_fault(kind: str, root: Path) -> Path:
    """A database file with the start-up fault ``kind``."""
    db = root / "bad.db"
    if kind == "damaged":
        _iotwatch_db(db, events=20_000)
        _damage(db)
    elif kind == "schema-version":
        _iotwatch_db(db)
        conn = sqlite3.connect(db)
        conn.execute("UPDATE meta SET value = 'one' WHERE key = 'schema_version'")
        conn.commit()
        conn.close()
    elif kind == "read-only":
        _iotwatch_db(db)
        if not chattr("+i", db):  # immutable even for root; else plain permissions
            if os.geteuid() == 0:
                pytest.skip("root without chattr: a read-only file is still writable")
            db.chmod(0o444)
    elif kind == "directory":
        db.mkdir()
    elif kind == "not-sqlite":
        db.write_text("these are not the pages you are looking for\n" * 200)
    return db


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        pytest.param(kind, reason, id=kind)
        for kind, reason in [
            ("damaged", "the database is damaged"),
            ("schema-version", "schema version 'one' is not a number"),
            ("read-only", "cannot write"),
            ("directory", "is a directory"),
            ("not-sqlite", "not a SQLite database"),
        ]
    ],
)
def test_a_database_fault_at_start_exits_2_with_one_line(
    tmp_path: Path, kind: str, reason: str
) -> None:
    db = make_fault(kind, tmp_path)
    try:
        (tmp_path / "iotwatch.toml").write_text(CONFIG + f'\n[database]\npath = "{db.name}"\n')
        append(tmp_path / "logs" / "hub.jsonl", hub_lines(0, 10))
        commands = {
            "run": ("run", "--headless", "--db", db.name),
            "replay": ("replay", "--db", db.name, "logs/hub.jsonl"),
            "export": ("export", "--db", db.name, "--out", "out.db"),
            "console": (),
        }
        procs = {name: iotwatch(tmp_path, *args) for name, args in commands.items()}
        try:
            results = {name: finish(proc) for name, proc in procs.items()}
        finally:  # one that hangs fails the test; the others must not outlive it
            for proc in procs.values():
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
    finally:
        if kind == "read-only":
            chattr("-i", db)
            db.chmod(0o644)
    for name, (status, err) in results.items():
        if name == "export" and kind == "read-only":  # reading a read-only database is fine
            assert status == 0, err
            continue
        assert status == 2, (name, err)
        line = one_line(err, db.name)
        if name != "export":  # export words its own reasons (docs/export.md)
            assert reason in line, (name, line)


# -- 7. replay --db: the writer process --------------------------------------------------------


def replay_input(root: Path) -> Path:
    """Enough records for three of replay's batches."""
    path = root / "in.jsonl"
    path.write_bytes(hub_lines(0, 50_000))
    return path


def test_replay_db_on_a_locked_database_exits_2_with_one_line(tmp_path: Path) -> None:
    replay_input(tmp_path)
    _iotwatch_db(tmp_path / "r.db")
    with locked(tmp_path / "r.db"):
        proc = iotwatch(tmp_path, "replay", "--db", "r.db", "in.jsonl", driver=FAST)
        status, err = finish(proc)
    assert status == 2
    one_line(err, "r.db", "database is locked")


def test_replay_db_whose_writer_meets_a_lock_exits_1_with_one_line(tmp_path: Path) -> None:
    replay_input(tmp_path)
    proc = iotwatch(tmp_path, "replay", "--db", "r.db", "in.jsonl", driver=(*FAST, "--lock-writer"))
    status, err = finish(proc)
    assert status == 1
    one_line(err, "r.db", "database is locked")


def test_replay_db_on_a_full_disk_exits_1_with_one_line(tmp_path: Path) -> None:
    replay_input(tmp_path)
    with volume(tmp_path) as vol:
        driver = FAST
        if vol.how == "tmpfs":
            (vol.dir / "ballast").write_bytes(b"\0" * ((SIZE_MB - 1) << 20))  # leaves 1 MB
        else:
            driver = (*FAST, "--max-pages", "200")
        db = vol.dir / "r.db"
        status, err = finish(
            iotwatch(tmp_path, "replay", "--db", str(db), "in.jsonl", driver=driver)
        )
    assert status == 1
    one_line(err, "r.db", "database or disk is full")


def test_replay_db_whose_writer_dies_exits_1_with_one_line(tmp_path: Path) -> None:
    replay_input(tmp_path)
    driver = ("--kill-writer-at", "2")
    status, err = finish(iotwatch(tmp_path, "replay", "--db", "r.db", "in.jsonl", driver=driver))
    assert status == 1
    one_line(err, "r.db", "writer process was killed (SIGKILL)")


def test_a_dead_writer_process_raises_a_store_fault_not_a_hang(tmp_path: Path) -> None:
    from engine.bulkwriter import BulkWriter

    _iotwatch_db(tmp_path / "r.db")
    writer = BulkWriter(str(tmp_path / "r.db"))
    writer.proc.kill()
    writer.proc.wait()
    batch = Batch(events=[_event_row(1, p, 1) for p in range(50_000)])
    with pytest.raises(StoreFault, match="killed"):
        for _ in range(100):  # the pipe takes some before it breaks
            writer.put(batch)
        writer.close()
    with pytest.raises(StoreFault, match="killed"):
        writer.close()
    writer.abort()


# -- 8. background tasks never die silently -------------------------------------------------------


async def test_a_failing_source_is_reported_and_the_session_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from engine import avrostream
    from engine.jsonstream import JsonStream

    class Broken(JsonStream):
        def feed(self, data: bytes) -> None:
            if self.format == "security-messages":
                raise RuntimeError("the decoder broke")
            super().feed(data)

    monkeypatch.setattr(avrostream, "JsonStream", Broken)  # what file_decoder makes
    (tmp_path / "iotwatch.toml").write_text(
        CONFIG + '\n[[sources]]\ntype = "security-messages"\npath = "agent/*.jsonl"\n'
    )
    append(tmp_path / "agent" / "a.jsonl", b'{"deviceId": "d", "body": {}}\n')
    append(tmp_path / "logs" / "hub.jsonl", hub_lines(0, 100))
    db = tmp_path / "s.db"
    caplog.set_level(logging.WARNING, logger="iotwatch")
    async with running(tmp_path, db) as (session, _store):
        await until(lambda: session.status[1].state == "error", 20, "the failure")
        append(tmp_path / "logs" / "hub.jsonl", hub_lines(100, 100))
        await until(lambda: committed(db) == 200, 20, "the other source going on")
        assert "the decoder broke" in (session.status[1].error or "")
        assert session.failure is None
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("agent/*.jsonl failed: RuntimeError: the decoder broke" in m for m in errors), errors


async def test_a_failing_ticker_stops_the_session_with_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from engine.evaluator import Evaluator

    setup(tmp_path, 10)
    session, store = await open_session(tmp_path, tmp_path / "s.db")

    def broken(self: Evaluator, now: int) -> None:
        raise RuntimeError("the clock broke")

    monkeypatch.setattr(Evaluator, "advance", broken)
    try:
        with pytest.raises(
            SessionFailed, match="the commit ticker failed: RuntimeError: the clock"
        ):
            await asyncio.wait_for(session.run(), 20)
    finally:
        await store.close()


async def test_a_failing_configuration_read_is_reported_and_watching_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from engine import session as session_module

    setup(tmp_path, 10)
    real = session_module.load_config
    calls = []

    def flaky(path: Any) -> Any:
        calls.append(path)
        if len(calls) == 1:
            raise OSError("the disk hiccuped")
        return real(path)

    monkeypatch.setattr(session_module, "load_config", flaky)
    async with running(tmp_path, tmp_path / "s.db") as (session, _store):
        config = tmp_path / "iotwatch.toml"
        config.write_text(CONFIG.replace("max = 1000", "max = 999"))
        await until(lambda: session.config_error is not None, 10, "the reported failure")
        assert "the disk hiccuped" in (session.config_error or "")
        config.write_text(CONFIG.replace("max = 1000", "max = 998") + "\n")
        rules = lambda: session.config.group("default").range_rules  # noqa: E731
        await until(
            lambda: rules()["MqttD2CMessagesNotInAllowedRange"].max == 998, 10, "the next change"
        )
        assert session.config_error is None


# -- 9. the console -------------------------------------------------------------------------------


async def test_the_console_shows_a_busy_database_and_exits_1_when_the_store_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sources strip says ``paused`` and a notification says why while another process
    holds the lock; a fatal store error ends the console with status 1 and the reason."""
    from engine import session as session_module
    from engine import store as store_module
    from tui.app import IotwatchApp
    from tui.bridge import Bridge
    from tui.widgets.virtual_table import VirtualTable

    monkeypatch.setattr(store_module, "BUSY_TIMEOUT", 0.05)
    monkeypatch.setattr(session_module, "RETRY_FIRST", 0.05)
    monkeypatch.setattr(session_module, "RETRY_MAX", 0.1)
    log = setup(tmp_path, 100)
    db = tmp_path / "console.db"
    bridge = Bridge(load_config(tmp_path / "iotwatch.toml"), str(db))
    bridge.start()
    app = IotwatchApp(bridge, interval=0.1)
    fatal = False
    try:
        async with app.run_test(size=(120, 36), notifications=True) as pilot:

            async def settle(condition: Callable[[], bool], what: str) -> None:
                deadline = time.monotonic() + 20
                while not condition():
                    assert time.monotonic() < deadline, f"timed out waiting for {what}"
                    await pilot.pause(0.05)

            def told(words: str) -> bool:
                return any(words in str(n.message) for n in app._notifications)

            def strip_state() -> str:
                return str(app.query_one("#sources", VirtualTable).get_row_at(0)[2])

            await settle(lambda: committed(db) == 100, "the first records")
            with locked(db):
                append(log, hub_lines(100, 1_000))
                await settle(lambda: told("database is locked"), "the notification")
                await settle(lambda: "paused" in strip_state(), "the sources strip")
            await settle(lambda: told("writable again"), "the recovery notification")
            await settle(lambda: committed(db) == 1_100, "the rest")
            fatal = chattr("+i", Path(f"{db}-wal"), db)
            if fatal:
                append(log, hub_lines(1_100, 1_000))
                await settle(lambda: app.return_code == 1, "the console to exit")
    finally:
        if fatal:
            chattr("-i", Path(f"{db}-wal"), db)
        bridge.stop()
    if fatal:
        assert bridge.failure is not None and "disk I/O error" in bridge.failure

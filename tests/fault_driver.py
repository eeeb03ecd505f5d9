"""Run ``iotwatch`` in a process of its own with fault-injection settings (for tests/test_faults.py).

    python -m tests.fault_driver [--busy-timeout S] [--retry S] [--max-pages N]
        [--kill-at PHASE:N] [--kill-writer-at N] -- IOTWATCH-ARGS...

``--busy-timeout`` and ``--retry`` shorten SQLite's busy timeout and the session's backoff, so a
fault test takes seconds. ``--max-pages`` caps every connection the store opens (SQLite's own
size limit: the fall-back for a full disk where the test cannot mount a small filesystem).
``--kill-at PHASE:N`` sends this process SIGKILL the N-th time a commit reaches PHASE:

- ``begin``: before ``BEGIN IMMEDIATE`` runs;
- ``insert``: in the middle of the ``executemany`` of events (the transaction is open);
- ``notify``: after ``COMMIT``, before the listeners hear of the batch.

``--kill-writer-at N`` kills ``replay --db``'s writer process before the N-th batch is sent;
``--lock-writer`` has a second process take the database's write lock (and keep it) just before
the writer process starts.
Nothing of the store is mocked: the hooks only watch SQLite's statement trace and the
session's notification, and kill for real.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from typing import Any

# Holds the write lock until its standard input closes: when this process ends.
LOCKER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
conn.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
sys.stdin.read()
"""


def _kill() -> None:
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="fault_driver")
    parser.add_argument("--busy-timeout", type=float)
    parser.add_argument("--retry", type=float)
    parser.add_argument("--max-pages", type=int)
    parser.add_argument("--kill-at")
    parser.add_argument("--kill-writer-at", type=int)
    parser.add_argument("--lock-writer", action="store_true")
    parser.add_argument("rest", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    rest = args.rest[1:] if args.rest[:1] == ["--"] else args.rest

    from engine import bulkwriter, session, store
    from tui import cli

    if args.busy_timeout is not None:
        store.BUSY_TIMEOUT = args.busy_timeout
    if args.retry is not None:
        session.RETRY_FIRST = session.RETRY_MAX = args.retry

    open_store = store.Store.open.__func__  # type: ignore[attr-defined]
    phase, count = [*args.kill_at.split(":"), "1"][:2] if args.kill_at else (None, "0")
    wanted = int(count)
    seen = {"begin": 0, "insert": 0, "notify": 0}

    def trace(statement: str) -> None:
        statement = statement.lstrip()
        if phase == "begin" and statement.startswith("BEGIN IMMEDIATE"):
            seen["begin"] += 1
            if seen["begin"] >= wanted:
                _kill()
        elif phase == "insert" and statement.startswith("INSERT INTO events"):
            seen["insert"] += 1
            if seen["insert"] >= wanted:
                _kill()

    async def opened(cls: Any, path: Any, **kw: Any) -> Any:
        s = await open_store(cls, path, **kw)
        if args.max_pages is not None:
            await s.conn.execute(f"PRAGMA max_page_count = {args.max_pages}")
        if phase in ("begin", "insert"):
            await s.conn.set_trace_callback(trace)
        return s

    store.Store.open = classmethod(opened)  # type: ignore[method-assign, assignment]

    if phase == "notify":
        notify = session.Session._notify

        def notify_then_die(self: Any) -> None:
            seen["notify"] += 1
            if seen["notify"] >= wanted:
                _kill()
            notify(self)

        session.Session._notify = notify_then_die  # type: ignore[method-assign]

    if args.max_pages is not None:
        writer_init = bulkwriter.BulkWriter.__init__

        def limited(self: Any, path: str, **kw: Any) -> None:
            kw.setdefault("extra", (f"PRAGMA max_page_count = {args.max_pages}",))
            writer_init(self, path, **kw)

        bulkwriter.BulkWriter.__init__ = limited  # type: ignore[method-assign]

    if args.lock_writer:
        writer_start = bulkwriter.BulkWriter.__init__

        def locked_first(self: Any, path: str, **kw: Any) -> None:
            locker = subprocess.Popen(
                [sys.executable, "-c", LOCKER, path], stdin=subprocess.PIPE, stdout=subprocess.PIPE
            )
            assert locker.stdout is not None and locker.stdout.readline() == b"locked\n"
            writer_start(self, path, **kw)

        bulkwriter.BulkWriter.__init__ = locked_first  # type: ignore[method-assign]

    if args.kill_writer_at is not None:
        put = bulkwriter.BulkWriter.put
        sent = [0]

        def put_or_kill(self: Any, batch: Any) -> None:
            sent[0] += 1
            if sent[0] == args.kill_writer_at:
                self.proc.send_signal(signal.SIGKILL)
                self.proc.wait()
            put(self, batch)

        bulkwriter.BulkWriter.put = put_or_kill  # type: ignore[method-assign]

    return cli.main(rest)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

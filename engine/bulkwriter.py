"""A writer process for bulk loads: replay decodes and evaluates in one process while this one
inserts into SQLite on the other core.

Batches travel as MessagePack over the child's standard input; the child owns the database
until it exits. Threads in one process would fight over the GIL for every bound row.

A child that fails (a locked or full database, any error) or dies says why in one line on its
standard error; the parent turns that into a StoreFault at its next call, never a hang.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
from typing import IO

import msgpack

try:
    import fcntl
except ImportError:  # not on Windows: the pipe keeps its default size
    fcntl = None  # type: ignore[assignment]

from engine import store
from engine.store import (
    EVENT_INDEX,
    Batch,
    StoreFault,
    batch_parts,
    classify,
    describe,
    pragmas,
)

log = logging.getLogger("iotwatch.store")


class BulkWriter:
    """The parent's end: ``put`` batches, then ``close`` (which builds the events index). Both
    raise StoreFault when the writer process failed or died."""

    def __init__(
        self, path: str, *, busy_timeout: float | None = None, extra: tuple[str, ...] = ()
    ) -> None:
        """``extra``: more statements for the child's connection after the usual pragmas
        (a page limit, for instance)."""
        self.path = path
        seconds = store.BUSY_TIMEOUT if busy_timeout is None else busy_timeout
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "engine.bulkwriter", path, str(seconds), *extra],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self._packer = msgpack.Packer(use_bin_type=True)
        self._indexed = False
        self._failure: StoreFault | None = None
        if self.proc.stdin is not None and fcntl is not None and hasattr(fcntl, "F_SETPIPE_SZ"):
            with contextlib.suppress(OSError):  # a larger pipe: fewer wake-ups per batch
                fcntl.fcntl(self.proc.stdin.fileno(), fcntl.F_SETPIPE_SZ, 1 << 20)

    def put(self, batch: Batch) -> None:
        """Send ``batch``; blocks while the child is a pipe's worth behind."""
        self._send(["batch", batch_parts(batch)])

    def build_index(self) -> None:
        """Build the events index now (after the last events; later batches may follow)."""
        self._send(["index", None])
        self._indexed = True

    def close(self) -> None:
        """Finish: build the index if not yet built and wait for the child. Raises StoreFault
        if it failed."""
        if not self._indexed:
            self._send(["index", None])
        out, err = self._finish()
        if self.proc.returncode != 0:
            raise self._ended(err)
        set_apart = int(out.strip() or 0)
        if set_apart:
            log.warning(
                "%s: %d rows held values SQLite cannot store: events went to the quarantine, "
                "other rows were stored with those values clamped",
                self.path,
                set_apart,
            )

    def abort(self) -> None:
        if self.proc.returncode is None:  # not yet waited for
            self.proc.kill()
            self._finish()

    def _finish(self) -> tuple[bytes, bytes]:
        """Close the child's input and wait for it to end; its output and error text."""
        stdin, self.proc.stdin = self.proc.stdin, None
        if stdin is not None:
            with contextlib.suppress(OSError):  # the child is gone with data still buffered
                stdin.close()
        out, err = self.proc.communicate()
        return out or b"", err or b""

    def _send(self, message: list[object]) -> None:
        if self._failure is not None:
            raise self._failure
        stdin: IO[bytes] | None = self.proc.stdin
        if stdin is None:
            raise StoreFault(self.path, "fatal", "the writer process has been closed")
        try:
            stdin.write(self._packer.pack(message))
        except OSError:  # BrokenPipeError: the child is gone
            _, err = self._finish()
            raise self._ended(err) from None

    def _ended(self, err: bytes) -> StoreFault:
        """Why the child ended early, from its exit status and its last line."""
        status = self.proc.returncode
        lines = err.decode(errors="replace").strip().splitlines()
        said = [ln for ln in lines if "\t" in ln]
        if said:
            kind, _, reason = said[-1].partition("\t")
            fault = StoreFault(self.path, kind, reason)
        elif status is not None and status < 0:
            try:
                name = signal.Signals(-status).name
            except ValueError:
                name = f"signal {-status}"
            fault = StoreFault(self.path, "fatal", f"the writer process was killed ({name})")
        else:
            reason = lines[-1] if lines else f"exit status {status}"
            fault = StoreFault(self.path, "fatal", f"the writer process failed: {reason}")
        self._failure = fault
        return fault


def _serve(path: str, busy_timeout: float, extra: list[str]) -> int:
    """Write what the parent sends; the number of rows set apart (see store.Rejected)."""
    import gc
    import queue
    import sqlite3
    import threading

    from engine.store import write_parts

    conn = sqlite3.connect(path, isolation_level=None)
    for pragma in (*pragmas(busy_timeout), *extra):
        conn.execute(pragma)
    set_apart = 0
    # A reader thread drains the pipe while this one inserts, so the parent never waits for a
    # transaction to finish before it can hand over the next batch.
    # Pipe reads come in pipe-buffer pieces (64 KiB); room for ~64 MiB of them lets the parent
    # run ahead of a slow transaction instead of stalling on a full pipe.
    chunks: queue.Queue[bytes | None] = queue.Queue(maxsize=1024)

    def read() -> None:
        stdin = sys.stdin.buffer
        while chunk := stdin.read1(1 << 20):
            chunks.put(chunk)
        chunks.put(None)

    threading.Thread(target=read, daemon=True).start()
    # Rows are tuples of scalars: nothing this process builds can form a cycle, and the
    # collector walking a batch's million fresh containers cost more than unpacking them.
    # Tuples, because lists are larger and slower to build; executemany takes either.
    gc.disable()
    unpacker = msgpack.Unpacker(raw=False, use_list=False, max_buffer_size=1 << 30)
    while (chunk := chunks.get()) is not None:
        unpacker.feed(chunk)
        for kind, payload in unpacker:
            if kind == "batch":
                set_apart += len(write_parts(conn, payload))
            elif kind == "index":
                conn.execute(EVENT_INDEX)
    conn.close()
    return set_apart


if __name__ == "__main__":
    try:
        print(_serve(sys.argv[1], float(sys.argv[2]), sys.argv[3:]))
    except Exception as exc:  # one line for the parent: "kind<TAB>reason"
        print(f"{classify(exc)}\t{describe(exc)}", file=sys.stderr, flush=True)
        # Not sys.exit: the reader thread may be blocked on stdin, and closing stdin under it
        # at interpreter shutdown aborts the process.
        os._exit(1)

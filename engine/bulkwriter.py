"""A writer process for bulk loads: replay decodes and evaluates in one process while this one
inserts into SQLite on the other core.

Batches travel as MessagePack over the child's standard input; the child owns the database
until it exits. Threads in one process would fight over the GIL for every bound row.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
from typing import IO

import msgpack

try:
    import fcntl
except ImportError:  # not on Windows: the pipe keeps its default size
    fcntl = None  # type: ignore[assignment]

from engine.store import EVENT_INDEX, PRAGMAS, Batch, StoreError, batch_parts


class BulkWriter:
    """The parent's end: ``put`` batches, then ``close`` (which builds the events index)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "engine.bulkwriter", path],
            stdin=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self._packer = msgpack.Packer(use_bin_type=True)
        self._indexed = False
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
        """Finish: build the index if not yet built, wait for the child, raise StoreError if it
        failed."""
        try:
            if not self._indexed:
                self._send(["index", None])
            assert self.proc.stdin is not None
            self.proc.stdin.close()
        except StoreError:
            pass
        err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
        if self.proc.wait() != 0:
            raise StoreError(
                f"{self.path}: {err.strip().splitlines()[-1] if err.strip() else 'writer failed'}"
            )

    def abort(self) -> None:
        self.proc.kill()
        self.proc.wait()

    def _send(self, message: list[object]) -> None:
        stdin: IO[bytes] | None = self.proc.stdin
        assert stdin is not None
        try:
            stdin.write(self._packer.pack(message))
        except BrokenPipeError:
            self.close()
            raise StoreError(f"{self.path}: the writer process ended early") from None


def _serve(path: str) -> None:
    import queue
    import sqlite3
    import threading

    from engine.store import write_parts

    conn = sqlite3.connect(path, isolation_level=None)
    for pragma in PRAGMAS:
        conn.execute(pragma)
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
    unpacker = msgpack.Unpacker(raw=False, max_buffer_size=1 << 30)
    while (chunk := chunks.get()) is not None:
        unpacker.feed(chunk)
        for kind, payload in unpacker:
            if kind == "batch":
                write_parts(conn, payload)
            elif kind == "index":
                conn.execute(EVENT_INDEX)
    conn.close()


if __name__ == "__main__":
    try:
        _serve(sys.argv[1])
    except Exception as exc:  # one line for the parent, which reports it
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        sys.exit(1)

"""A simulated board on a serial endpoint: a pseudo-terminal or a local TCP port, in real time.

``BoardServer`` drives a ``BoardSimulator`` by the wall clock (``speed`` times faster) in a thread
and writes its bytes to an endpoint that ``SerialSource`` (pyserial) can open:

- ``PtyEndpoint``: a pseudo-terminal; readers open its slave path (``address``), or a stable
  symlink to it (``link``, like ``/dev/serial/by-id/...``). Unplugging closes the master, so
  reads on the slave fail (EIO / hang-up); plugging back creates a new pty and re-points the link.
- ``TcpEndpoint``: a TCP server on 127.0.0.1; every connected client gets every byte
  (``socket://127.0.0.1:PORT``). Unplugging closes the clients and the listener (connections are
  refused); plugging back listens on the same port.

Like a UART, the board never waits for its reader: each endpoint buffers up to ``buffer`` bytes
per reader and drops what does not fit (``bytes_dropped``). While unplugged the board keeps
running and its output is lost, as with a USB-serial adapter pulled from a powered board.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
import tty
from pathlib import Path
from typing import Literal, Protocol

from engine.simulators.board import BoardSimulator

DEFAULT_BUFFER = 256 * 1024


class Endpoint(Protocol):
    """Where a simulated board's bytes go."""

    bytes_written: int
    bytes_dropped: int

    @property
    def address(self) -> str: ...

    def open(self) -> None: ...

    def write(self, data: bytes) -> None: ...

    def service(self) -> None: ...

    def close(self) -> None: ...


class PtyEndpoint:
    """A pseudo-terminal whose slave a reader opens; optionally reached through a symlink."""

    def __init__(
        self, link: str | os.PathLike[str] | None = None, buffer: int = DEFAULT_BUFFER
    ) -> None:
        self.link = Path(link) if link is not None else None
        self.buffer = buffer
        self.path: str | None = None  # the slave's path while open
        self.bytes_written = 0
        self.bytes_dropped = 0
        self._master: int | None = None
        self._slave: int | None = None
        self._pending = bytearray()

    @property
    def address(self) -> str:
        """What a reader opens: the link if there is one, else the slave path."""
        if self.link is not None:
            return str(self.link)
        if self.path is None:
            raise RuntimeError("pty endpoint is not open")
        return self.path

    def open(self) -> None:
        master, slave = os.openpty()
        # Raw from the first byte: no echo, no CR/LF mapping, no line buffer, no ^C signals.
        tty.setraw(slave)
        os.set_blocking(master, False)
        self._master, self._slave = master, slave  # holding the slave keeps the tty configured
        self.path = os.ttyname(slave)
        if self.link is not None:
            tmp = self.link.with_name(self.link.name + ".tmp")
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            tmp.symlink_to(self.path)
            tmp.replace(self.link)

    def write(self, data: bytes) -> None:
        if self._master is None:
            self.bytes_dropped += len(data)
            return
        room = self.buffer - len(self._pending)
        if len(data) > room:
            self.bytes_dropped += len(data) - max(room, 0)
            data = data[: max(room, 0)]
        self._pending += data
        self.service()

    def service(self) -> None:
        if self._master is None or not self._pending:
            return
        try:
            n = os.write(self._master, self._pending)
        except BlockingIOError:
            return
        except OSError:  # EIO and the like: nobody can read; the bytes are lost
            self.bytes_dropped += len(self._pending)
            self._pending.clear()
            return
        self.bytes_written += n
        del self._pending[:n]

    def close(self) -> None:
        """Unplug: the slave's readers get EIO; the link disappears."""
        for fd in (self._master, self._slave):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._master = self._slave = None
        self.bytes_dropped += len(self._pending)
        self._pending.clear()
        self.path = None
        if self.link is not None:
            with contextlib.suppress(FileNotFoundError):
                self.link.unlink()


class TcpEndpoint:
    """A TCP server that sends every byte to every connected client."""

    def __init__(
        self, port: int = 0, host: str = "127.0.0.1", buffer: int = DEFAULT_BUFFER
    ) -> None:
        self.host = host
        self.port = port  # 0: any free port, fixed at the first open
        self.buffer = buffer
        self.bytes_written = 0
        self.bytes_dropped = 0
        self._listener: socket.socket | None = None
        self._clients: dict[socket.socket, bytearray] = {}

    @property
    def address(self) -> str:
        return f"socket://{self.host}:{self.port}"

    @property
    def clients(self) -> int:
        return len(self._clients)

    def open(self) -> None:
        listener = socket.create_server((self.host, self.port))  # SO_REUSEADDR on POSIX
        listener.setblocking(False)
        self._listener = listener
        self.port = listener.getsockname()[1]

    def write(self, data: bytes) -> None:
        if not self._clients:
            self.bytes_dropped += len(data)
            return
        for pending in self._clients.values():
            room = self.buffer - len(pending)
            if len(data) > room:
                self.bytes_dropped += len(data) - max(room, 0)
                pending += data[: max(room, 0)]
            else:
                pending += data
        self.service()

    def service(self) -> None:
        """Accept new clients, notice closed ones, send what waits."""
        if self._listener is not None:
            while True:
                try:
                    conn, _ = self._listener.accept()
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    break
                conn.setblocking(False)
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self._clients[conn] = bytearray()
        for conn, pending in list(self._clients.items()):
            try:
                if conn.recv(4096) == b"":  # what a client writes to the board is ignored
                    self._drop(conn)
                    continue
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:
                self._drop(conn)
                continue
            if not pending:
                continue
            try:
                n = conn.send(pending)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                self._drop(conn)
                continue
            self.bytes_written += n
            del pending[:n]

    def _drop(self, conn: socket.socket) -> None:
        pending = self._clients.pop(conn, bytearray())
        self.bytes_dropped += len(pending)
        with contextlib.suppress(OSError):
            conn.close()

    def close(self) -> None:
        """Unplug: clients are disconnected and new connections refused."""
        for conn in list(self._clients):
            self._drop(conn)
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.close()
            self._listener = None


class BoardServer:
    """Runs a ``BoardSimulator`` in real time in a thread, writing to ``endpoint``.

    The board's time is ``board.start_us`` plus ``speed`` times the wall time since ``start()``.
    """

    def __init__(
        self,
        board: BoardSimulator,
        endpoint: PtyEndpoint | TcpEndpoint,
        *,
        speed: float = 1.0,
        interval: float = 0.05,
    ) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.board = board
        self.endpoint = endpoint
        self.speed = speed
        self.interval = interval
        self.paused = False
        self._lock = threading.Lock()
        self._halt = threading.Event()
        self._thread: threading.Thread | None = None
        self._t0 = 0.0

    @property
    def address(self) -> str:
        """What a ``SerialSource`` opens: a device path or a ``socket://`` URL."""
        return self.endpoint.address

    def start(self) -> None:
        """Open the endpoint and start the board (its boot banner is written at once)."""
        self.endpoint.open()
        self._t0 = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="board simulator", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the board and close the endpoint."""
        self._halt.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        with self._lock:
            self.endpoint.close()

    def pause(self) -> None:
        """Unplug the board (it keeps running; what it writes meanwhile is lost)."""
        with self._lock:
            if not self.paused:
                self.paused = True
                self.endpoint.close()

    def resume(self) -> None:
        """Plug the board back in: same TCP port, or a new pty behind the same link."""
        with self._lock:
            if self.paused:
                self.endpoint.open()
                self.paused = False

    def board_time(self) -> int:
        """The board's clock now, in µs since the epoch."""
        return self.board.start_us + int((time.monotonic() - self._t0) * self.speed * 1_000_000)

    def _run(self) -> None:
        while True:
            data = self.board.next_chunk(self.board_time())
            with self._lock:
                if self.paused:
                    self.endpoint.bytes_dropped += len(data)
                else:
                    if data:
                        self.endpoint.write(data)
                    self.endpoint.service()
            if self._halt.wait(self.interval):
                return


def board_server(
    device: str | None = None,
    seed: int = 0,
    *,
    tcp_port: int | None = None,
    link: str | os.PathLike[str] | None = None,
    clock: Literal["rtc", "none"] = "rtc",
    speed: float = 1.0,
    start_us: int | None = None,
) -> BoardServer:
    """A board server on a pty (``tcp_port`` None) or on TCP port ``tcp_port`` (0: any free one),
    booting at ``start_us`` (default: now). Call ``start()``."""
    if start_us is None:
        start_us = time.time_ns() // 1000
    board = BoardSimulator(device, seed, start_us, clock)
    endpoint: PtyEndpoint | TcpEndpoint = (
        PtyEndpoint(link) if tcp_port is None else TcpEndpoint(tcp_port)
    )
    return BoardServer(board, endpoint, speed=speed)

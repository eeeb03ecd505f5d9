"""A live serial board: a port read in a thread, its bytes handed to asyncio with their receive time.

``SerialSource`` opens a device path (``/dev/ttyACM0``, a pty slave, a ``/dev/serial/by-id`` link)
or a pyserial URL (``socket://host:port``, ``rfc2217://``, ``loop://``). pyserial blocks, so a
dedicated thread reads and the asyncio side iterates ``chunks()``.

Backpressure: at most ``max_chunks`` chunks (each at most ``read_size`` bytes) wait for the
consumer. When they are all taken, the reader thread stops reading until the consumer catches up;
the bytes then wait in the operating system: the tty's input buffer for a UART or USB CDC port
(the USB host stops polling the device, so the board's own TX buffer fills), the kernel buffers of
a pty (the writer blocks), the TCP window of a socket (the sender blocks). Nothing is dropped here.

Idle flush: an empty chunk ``(b"", now)`` arrives after ``idle`` seconds without bytes (and again
every ``idle`` seconds while it stays idle) and on every state change. The consumer flushes its
``FrameSplitter`` on it (``CaptureStream.finish()``), so console text without a following 0x00
shows up, and the half chunk that a lost connection left is not glued to the bytes after replug.

Faults: a port that cannot be opened or fails while read (unplugged board: ``SerialException``
or ``OSError``; closed socket: pyserial's "socket disconnected") moves the source to
``reconnecting``; it retries with exponential backoff (``backoff_initial`` doubling to
``backoff_max``) until the port is back, then follows it again. Nothing is raised to the consumer.
``unplugged`` says whether a device path is gone from the file system (a USB board pulled out);
``retry_now()`` cuts the wait short (the session calls it when the path comes back).
pyserial empties the input when it opens a port, so bytes that waited for the port before it
was (re)opened are not delivered; what the board writes once ``following`` is.

Several boards: :func:`glob_ports` lists the ports a glob such as ``/dev/serial/by-id/usb-*``
finds; :func:`board_device` names the device of each (a configured mapping, else its by-id name).
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import glob
import os
import re
import select
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import serial
import serial.tools.list_ports

OPENING = "opening"
FOLLOWING = "following"
RECONNECTING = "reconnecting"
CLOSED = "closed"

BY_ID_DIR = "/dev/serial/by-id"

Chunk = tuple[bytes, int]  # (bytes, host receive time in µs since the epoch)


def wall_clock() -> int:
    """The host clock in µs since the epoch."""
    return time.time_ns() // 1000


def _is_url(port: str) -> bool:
    return "://" in port


class SerialSource:
    """One serial port followed in a reader thread; iterate ``chunks()`` from asyncio.

    Observable from any thread: ``state`` (``opening``, ``following``, ``reconnecting``,
    ``closed``), ``error`` (the last failure, kept while reconnecting), ``next_retry`` (µs since
    the epoch of the next open attempt while reconnecting), ``bytes_read``, ``reconnects``
    (successful reopens after a loss). ``on_state(source)`` is called from the reader thread on
    every state change. One consumer only.
    """

    def __init__(
        self,
        port: str,
        baudrate: int = 115200,
        *,
        read_timeout: float = 0.1,
        idle: float = 1.0,
        backoff_initial: float = 0.1,
        backoff_max: float = 5.0,
        max_chunks: int = 64,
        read_size: int = 64 * 1024,
        clock: Callable[[], int] = wall_clock,
        on_state: Callable[[SerialSource], None] | None = None,
    ) -> None:
        self.port = port
        self.baudrate = baudrate
        self.read_timeout = read_timeout
        self.idle = idle
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.read_size = read_size
        self.clock = clock
        self.on_state = on_state
        self.state = OPENING
        self.error: str | None = None
        self.next_retry: int | None = None
        self.bytes_read = 0
        self.reconnects = 0
        self._halt = threading.Event()
        self._poke = threading.Event()  # wakes a retry wait: stop() or retry_now()
        self._slots = threading.BoundedSemaphore(max_chunks)
        self._queue: asyncio.Queue[Chunk | None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    # -- control ----------------------------------------------------------------------------

    def start(self) -> None:
        """Start the reader thread; its chunks go to the running event loop. Idempotent."""
        if self._thread is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._queue = asyncio.Queue()
        self._thread = threading.Thread(target=self._run, name=f"serial {self.port}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Ask the reader thread to end (within about ``read_timeout``); callable from any thread.

        ``chunks()`` ends once it has yielded what was already read.
        """
        self._halt.set()
        self._poke.set()
        self._post(None)

    def retry_now(self) -> None:
        """While reconnecting, try to open the port at once (and from the shortest pause on);
        callable from any thread."""
        self._poke.set()

    @property
    def unplugged(self) -> bool:
        """Whether the port is a device path that does not exist (now): a board unplugged."""
        return (
            self.state == RECONNECTING and not _is_url(self.port) and not os.path.exists(self.port)
        )

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the reader thread to end (after ``stop()``); True when it has."""
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    async def aclose(self) -> None:
        """Stop and wait for the reader thread, without blocking the event loop."""
        self.stop()
        await asyncio.to_thread(self.join, 5.0)

    def info(self) -> dict[str, Any]:
        """A snapshot for status displays."""
        return {
            "port": self.port,
            "state": self.state,
            "error": self.error,
            "next_retry": self.next_retry,
            "bytes": self.bytes_read,
            "reconnects": self.reconnects,
            "unplugged": self.unplugged,
        }

    # -- the asyncio side -------------------------------------------------------------------

    async def chunks(self, stop: asyncio.Event | None = None) -> AsyncIterator[Chunk]:
        """Yield ``(data, received_us)`` as bytes arrive, ``(b"", now)`` when idle or on a state
        change, until ``stop`` is set or ``stop()`` is called. Leaving the loop stops the source.
        """
        self.start()
        queue = self._queue
        assert queue is not None
        watcher: asyncio.Task[Any] | None = None
        if stop is not None:
            watcher = asyncio.ensure_future(stop.wait())
            watcher.add_done_callback(lambda _: self.stop())
        try:
            while True:
                try:
                    item = queue.get_nowait()
                except asyncio.QueueEmpty:
                    try:
                        item = await asyncio.wait_for(queue.get(), self.idle)
                    except TimeoutError:
                        item = (b"", self.clock())
                if item is None:
                    return
                if item[0]:
                    self._slots.release()
                yield item
        finally:
            if watcher is not None:
                watcher.cancel()
            self.stop()

    def _post(self, item: Chunk | None) -> bool:
        """Hand ``item`` to the event loop; False once the loop is gone."""
        loop, queue = self._loop, self._queue
        if loop is None or queue is None:
            return False
        try:
            loop.call_soon_threadsafe(queue.put_nowait, item)
        except RuntimeError:  # the loop is closed: nobody is listening any more
            self._halt.set()
            return False
        return True

    # -- the reader thread ------------------------------------------------------------------

    def _set_state(self, state: str, error: str | None = None, retry: int | None = None) -> None:
        self.state, self.error, self.next_retry = state, error, retry
        if self.on_state is not None:
            with contextlib.suppress(Exception):  # a display callback never stops the reader
                self.on_state(self)
        self._post((b"", self.clock()))

    def _run(self) -> None:
        delay = self.backoff_initial
        was_open = False
        try:
            while not self._halt.is_set():
                try:
                    port = self._open()
                except Exception as exc:  # SerialException, OSError, ValueError: all retried
                    delay = self._wait_retry(exc, delay)
                    continue
                if was_open:
                    self.reconnects += 1
                was_open = True
                self._set_state(FOLLOWING)
                opened = time.monotonic()
                start_bytes = self.bytes_read
                failure: Exception | None = None
                try:
                    self._follow(port)
                except Exception as exc:  # the port went away; anything else is retried too
                    failure = exc
                finally:
                    # Closed before the backoff: a re-enumerated USB device whose old node is
                    # still held open would come back under another name (ttyACM1).
                    with contextlib.suppress(Exception):
                        port.close()
                if failure is not None:
                    healthy = self.bytes_read > start_bytes or (
                        time.monotonic() - opened >= self.backoff_max
                    )
                    if healthy:
                        delay = self.backoff_initial
                    delay = self._wait_retry(failure, delay)
        finally:
            self._set_state(CLOSED, self.error)
            self._post(None)

    def _open(self) -> Any:
        kwargs: dict[str, Any] = {"baudrate": self.baudrate, "timeout": self.read_timeout}
        if not _is_url(self.port) and os.name == "posix":
            kwargs["exclusive"] = True  # two readers of one tty would each get half the bytes
        return serial.serial_for_url(self.port, **kwargs)

    def _wait_retry(self, exc: BaseException, delay: float) -> float:
        """Report the failure, wait ``delay`` (or until stopped); return the next delay."""
        text = str(exc) or type(exc).__name__
        self._set_state(RECONNECTING, text, self.clock() + int(delay * 1_000_000))
        if self._poke.wait(delay):
            self._poke.clear()
            if not self._halt.is_set():
                return self.backoff_initial  # the port is said to be back: retry promptly
        return min(delay * 2, self.backoff_max)

    def _follow(self, port: Any) -> None:
        try:
            fd = port.fileno()
        except (AttributeError, OSError):  # io.UnsupportedOperation: loop://, rfc2217://
            fd = None
        if fd is None or not hasattr(select, "poll"):  # no poll on Windows
            self._follow_blocking(port)
            return
        # Wait with poll (fds above 1023 are fine), then read what is there without waiting.
        port.timeout = 0
        poller = select.poll()
        poller.register(fd, select.POLLIN | select.POLLERR | select.POLLHUP)
        wait_ms = int(self.read_timeout * 1000)
        empty = 0
        while not self._halt.is_set():
            if not poller.poll(wait_ms):
                continue
            data = port.read(self.read_size)  # raises once the device or socket is gone
            if data:
                empty = 0
                self._deliver(data)
            else:
                # Ready but nothing to read, again and again: a port in an error state that
                # pyserial does not report; spinning on it would burn a core.
                empty += 1
                if empty >= 100:
                    raise serial.SerialException("port is ready but gives no data")

    def _follow_blocking(self, port: Any) -> None:
        while not self._halt.is_set():
            data = port.read(max(1, min(port.in_waiting, self.read_size)))
            if data:
                waiting = port.in_waiting
                if waiting:
                    data += port.read(min(waiting, self.read_size))
                self._deliver(data)

    def _deliver(self, data: bytes) -> None:
        received = self.clock()
        while not self._slots.acquire(timeout=self.read_timeout):
            if self._halt.is_set():
                return
        self.bytes_read += len(data)
        if not self._post((data, received)):
            self._slots.release()


# -- port listing -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PortInfo:
    """A serial port of this machine, with the stable ``/dev/serial/by-id`` names that point to it."""

    device: str
    description: str
    hwid: str
    by_id: tuple[str, ...] = ()
    manufacturer: str | None = None
    product: str | None = None
    serial_number: str | None = None
    vid: int | None = None
    pid: int | None = None


def by_id_names(directory: str | os.PathLike[str] = BY_ID_DIR) -> dict[str, list[str]]:
    """Device path → the symlinks in ``directory`` that resolve to it (sorted)."""
    names: dict[str, list[str]] = {}
    root = Path(directory)
    if not root.is_dir():
        return names
    for link in sorted(root.iterdir()):
        try:
            target = os.path.realpath(link)
        except OSError:
            continue
        names.setdefault(target, []).append(str(link))
    return names


def list_ports(by_id_dir: str | os.PathLike[str] = BY_ID_DIR) -> list[PortInfo]:
    """The serial ports pyserial finds, sorted by device."""
    links = by_id_names(by_id_dir)
    ports = []
    for p in serial.tools.list_ports.comports():
        real = os.path.realpath(p.device)
        ports.append(
            PortInfo(
                device=p.device,
                description=p.description or "",
                hwid=p.hwid or "",
                by_id=tuple(links.get(real, ())),
                manufacturer=p.manufacturer,
                product=p.product,
                serial_number=p.serial_number,
                vid=p.vid,
                pid=p.pid,
            )
        )
    ports.sort(key=lambda port: port.device)
    return ports


# -- several boards ----------------------------------------------------------------------------


def glob_ports(pattern: str) -> list[str]:
    """The device paths (or links) that ``pattern`` finds, sorted."""
    return sorted(glob.glob(pattern))


_BY_ID = re.compile(r"^(?:usb|pci|platform)-(?P<name>.+?)(?:-if\d+(?:-port\d+)?)?$")


def board_device(port: str, boards: Sequence[tuple[str, str]] = ()) -> str:
    """The device of the board at ``port``: the first entry of ``boards`` (port glob → device)
    that matches its file name or its path, else its ``/dev/serial/by-id`` name without the bus
    and the interface (``usb-STMicroelectronics_STLINK-V3_004A0028-if02`` →
    ``STMicroelectronics_STLINK-V3_004A0028``), else its file name (``ttyACM0``)."""
    name = os.path.basename(port)
    for key, device in boards:
        if key in (name, port):
            return device
    for key, device in boards:
        if fnmatch.fnmatchcase(name, key) or fnmatch.fnmatchcase(port, key):
            return device
    m = _BY_ID.match(name)
    return m.group("name") if m else name

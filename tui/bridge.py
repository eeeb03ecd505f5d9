"""The console's handle on the engine.

The session runs on its own event loop in its own thread, so evaluation never competes with
rendering; the console talks to it only through this bridge. Calls return concurrent futures
(``asyncio.wrap_future`` them in a worker); notifications arrive on the session's thread, so the
console's callbacks must hand them over with ``App.call_from_thread`` or ``post_message``.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import sqlite3
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from engine import operator
from engine.alert import Alert
from engine.config import Config
from engine.event import ConsoleLine
from engine.session import HISTORY, Clock, Session, Snapshot, wall_clock
from engine.store import Store

T = TypeVar("T")
EARLY_LINES = 5000  # console lines kept per board while no console listens


class Bridge:
    """Starts a session for ``config`` on ``db`` in a thread and relays calls to it."""

    def __init__(self, config: Config, db: str, *, clock: Clock = wall_clock) -> None:
        self.config = config
        self.db = db
        self.clock = clock
        self.session: Session | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.on_alerts: Callable[[list[tuple[str, dict[str, Any]]]], None] | None = None
        # Console lines of a board (``ConsoleLine``: text, receive time, pattern mark); see
        # ``on_console``. Until a listener is set they wait here, the last EARLY_LINES a board.
        self._on_console: Callable[[str, list[ConsoleLine]], None] | None = None
        self._early: dict[str, collections.deque[ConsoleLine]] = {}
        self._console_lock = threading.Lock()
        # The session stopped on its own (a fatal store error): its one-line reason, handed
        # to ``on_failure`` on the session's thread.
        self.on_failure: Callable[[str], None] | None = None
        self.failure: str | None = None
        self.error: BaseException | None = None
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._reader: sqlite3.Connection | None = None
        self._reader_lock = threading.Lock()

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self, timeout: float = 30.0) -> None:
        """Start the session thread and wait until the session has restored its state."""
        self._thread = threading.Thread(target=self._main, name="iotwatch-engine", daemon=True)
        self._thread.start()
        self._ready.wait(timeout)
        if self.error is not None:
            raise self.error

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the session (it commits what it has) and wait for its thread."""
        if self.loop is not None and self.session is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self.session.stop)
        if self._thread is not None:
            self._thread.join(timeout)
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    def _main(self) -> None:
        try:
            asyncio.run(self._run())
        except BaseException as exc:  # reported to the console, never raised in a thread
            self.error = exc
            self._ready.set()

    async def _run(self) -> None:
        self.loop = asyncio.get_running_loop()
        store = await Store.open(self.db)
        session = Session(self.config, store, clock=self.clock, history=HISTORY)
        session.listeners.append(self._alerts)
        session.add_console_listener(self._console)
        self.session = session
        try:
            await session.start()
            self._ready.set()
            await session._stop.wait()
        finally:
            await session.close()
            await store.close()
        if session.failure is not None:
            self.failure = session.failure
            if self.on_failure is not None:
                self.on_failure(session.failure)

    def _alerts(self, changes: list[tuple[str, Alert]]) -> None:
        if self.on_alerts is not None:
            # Records, not live objects: the engine goes on changing its alerts.
            self.on_alerts(
                [(change, {**alert.to_record(), "id": alert.id}) for change, alert in changes]
            )

    @property
    def on_console(self) -> Callable[[str, list[ConsoleLine]], None] | None:
        """Hears every console line, on the session's thread: ``on_console(port, lines)``.

        Lines printed while no listener is set are kept (the last ``EARLY_LINES`` of each board)
        and handed to the next listener first, in order: a console that starts listening after
        the engine started misses nothing (the boards pane tells them from the history it reads
        by their position and time)."""
        return self._on_console

    @on_console.setter
    def on_console(self, listener: Callable[[str, list[ConsoleLine]], None] | None) -> None:
        with self._console_lock:
            self._on_console = listener
            if listener is not None:
                early, self._early = self._early, {}
                for port, lines in early.items():
                    listener(port, list(lines))

    def _console(self, port: str, lines: list[ConsoleLine]) -> None:
        with self._console_lock:
            listener = self._on_console
            if listener is None:
                waiting = self._early.get(port)
                if waiting is None:
                    waiting = self._early[port] = collections.deque(maxlen=EARLY_LINES)
                waiting.extend(lines)
            else:
                listener(port, lines)

    # -- calls ----------------------------------------------------------------------------------

    def call(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Run ``coro`` on the session's loop."""
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def snapshot(self) -> concurrent.futures.Future[Snapshot]:
        async def take() -> Snapshot:
            assert self.session is not None
            return self.session.snapshot()

        return self.call(take())

    def apply_config(self, config: Config) -> concurrent.futures.Future[None]:
        """Use ``config`` from now on; it must already be valid (see engine.config)."""
        assert self.session is not None
        self.config = config
        return self.call(self.session.apply_config(config))

    def acknowledge(self, alert_id: int) -> concurrent.futures.Future[None]:
        assert self.session is not None
        return self.call(operator.acknowledge(self.session.store, alert_id, self.clock()))

    def resolve_by_hand(self, alert_id: int) -> concurrent.futures.Future[None]:
        assert self.session is not None
        return self.call(operator.resolve_by_hand(self.session.store, alert_id, self.clock()))

    def unacknowledge(self, alert_id: int) -> concurrent.futures.Future[None]:
        assert self.session is not None
        return self.call(operator.unacknowledge(self.session.store, alert_id))

    def reopen(self, alert_id: int) -> concurrent.futures.Future[None]:
        """Undo a resolution by hand."""
        assert self.session is not None
        return self.call(operator.reopen(self.session.store, alert_id))

    def add_note(self, alert_id: int, text: str) -> concurrent.futures.Future[int]:
        assert self.session is not None
        return self.call(operator.add_note(self.session.store, alert_id, self.clock(), text))

    def silence(
        self, rule: int, device: str, value: str | None, until: int
    ) -> concurrent.futures.Future[operator.Silence]:
        assert self.session is not None
        return self.call(self.session.silence(rule, device, value, until))

    def unsilence(self, silence_id: int) -> concurrent.futures.Future[bool]:
        """Lift a silence now (False when it was no longer in force)."""
        assert self.session is not None
        return self.call(self.session.unsilence(silence_id))

    def silences(self) -> list[operator.Silence]:
        """The silences in force now, ending soonest first (blocking: from a thread worker)."""
        rows = self.query(
            "SELECT id, rule, device, value, from_us, until_us FROM silences"
            " WHERE until_us > ? ORDER BY until_us, id",
            (self.clock(),),
        )
        return [operator.Silence(*row) for row in rows]

    # -- reads ----------------------------------------------------------------------------------

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """A read-only query on the database (blocking: call it from a thread worker). WAL lets
        it read while the session writes."""
        with self._reader_lock:
            if self._reader is None:
                self._reader = sqlite3.connect(
                    f"file:{self.db}?mode=ro", uri=True, check_same_thread=False
                )
            return self._reader.execute(sql, params).fetchall()

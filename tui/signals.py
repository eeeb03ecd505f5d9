"""SIGTERM, SIGHUP and SIGINT stop the console the way ``q`` does.

By default these signals kill the process: the engine does not commit what it holds, the terminal
stays in the alternate screen, and the demo's temporary folder stays behind. Inside
:func:`stopping` they are handled in three phases instead:

- before the console runs (the engine or the demo starting): :class:`SignalStop` is raised, so
  the ``with`` and ``finally`` blocks on the way out clean up;
- while the console runs: the app is asked to exit (status 0) from its own event loop, so
  Textual leaves the alternate screen and the caller stops the engine as after ``q``;
- while closing (the engine committing, files being removed): ignored, so the clean-up is not
  cut short; it is bounded by the engine's stop timeout.

Handlers can only be installed on the main thread; elsewhere :func:`stopping` installs nothing.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Any

STOP_SIGNALS: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)


class SignalStop(BaseException):
    """A stop signal arrived before the console ran; ``signum`` is which.

    A ``BaseException`` so that no ``except Exception`` on the way out swallows it."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class Stopper:
    """What a stop signal does now: raise, ask ``app`` to exit, or nothing (``closing``)."""

    def __init__(self) -> None:
        self.app: Any = None  # the running Textual app, once there is one
        self.closing = False
        self.received: list[int] = []

    def handle(self, signum: int, frame: FrameType | None) -> None:
        """The signal handler (runs on the main thread, between two bytecodes)."""
        del frame
        self.received.append(signum)
        if self.closing:
            return
        if self.app is None:
            raise SignalStop(signum)
        request_exit(self.app)


def request_exit(app: Any) -> None:
    """Ask ``app`` to exit with status 0, safely from a signal handler.

    The handler may have interrupted the event loop anywhere, so the exit is not called there
    but queued on the loop (``call_soon_threadsafe`` only appends and wakes the loop). An app
    whose loop has not started yet gets the request directly: it exits as soon as it runs."""
    loop = getattr(app, "_loop", None)
    if loop is not None and not loop.is_closed():
        loop.call_soon_threadsafe(app.exit)
    else:
        app.exit()


@contextlib.contextmanager
def stopping() -> Iterator[Stopper]:
    """Handle :data:`STOP_SIGNALS` with a :class:`Stopper` inside the block; the previous
    handlers are restored after it (so blocks nest: the inner one wins while it lasts)."""
    stopper = Stopper()
    if threading.current_thread() is not threading.main_thread():
        yield stopper
        return
    previous = {sig: signal.signal(sig, stopper.handle) for sig in STOP_SIGNALS}
    try:
        yield stopper
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

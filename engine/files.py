"""Files iotwatch creates are private to their owner.

The database holds every device's events and the configuration names hosts and users: nobody
else on the machine needs to read them. A file is created with mode 0600, less when the umask
takes more away (a umask of 077 or 027 gives 0600; one of 277 gives 0400). SQLite gives a
database's ``-wal``, ``-shm`` and ``-journal`` files the mode of the database file, so creating
that file first is enough. A file that exists already keeps its mode.
"""

from __future__ import annotations

import contextlib
import os

PRIVATE = 0o600
_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)


def create_private(path: str | os.PathLike[str]) -> None:
    """Create ``path`` as an empty file with mode 0600 (minus the umask); FileExistsError if it
    exists, OSError if it cannot be made."""
    os.close(os.open(path, _FLAGS, PRIVATE))


def precreate_database(path: str) -> None:
    """Create the empty, private file of a new SQLite database at ``path`` before SQLite opens it
    (SQLite would create it, and its side files, with mode 0644). Nothing happens when the file
    exists, for an in-memory database, or when the file cannot be made (SQLite then reports
    why)."""
    if path in ("", ":memory:") or path.startswith("file:"):
        return
    with contextlib.suppress(OSError):
        create_private(path)

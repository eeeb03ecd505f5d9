"""Follow every file a glob matches as it grows, rotates, is truncated or vanishes.

A ``FileTail`` is synchronous and polled: each ``poll(budget)`` re-evaluates the glob (at most every
``rescan_interval`` seconds), checks every followed file with one ``fstat``, and reads up to
``budget`` bytes in total, fairly: the least recently served streams go first, each takes at most
an equal share of the budget per round (at least 4 KiB, at most ``chunk_size`` per read). It
returns at most one ``Chunk`` per stream. Bytes are delivered as they are, partial last lines
included; the decoder keeps a partial line until its newline. Nothing in ``poll`` raises for what
it finds on disk: unreadable paths, files vanishing between the glob and ``open``, directories,
FIFOs and binary garbage end up as a ``state``/``error`` in ``streams()``.

**Identity.** A stream is one file content: ``"<dev>:<inode>:<length>:<digest>"``, the digest being
BLAKE2b (8 bytes, hex) of the file's first ``length`` bytes, ``length = min(size, fingerprint_size)``
when the stream is first issued. The string never changes after that: a file identified by its
first 40 bytes is still the same stream at 300 bytes as long as those 40 bytes are unchanged (the
tailer also remembers up to ``fingerprint_size`` bytes it has seen since, and checks them whenever
the file changes). A file is not issued while it is shorter than ``fingerprint_size`` and holds no
newline (``state="pending"``, empty ``identity``): an empty or one-partial-line fingerprint would
match any later content of a reused inode. Resume entries match a file by inode and fingerprint
(the device number may differ after a reboot or remount; an exact device is preferred).

**Lifecycle.**

- new file matching the glob → new stream read from 0; a resumed identity starts at its offset.
- renamed within the glob → same stream, same identity, ``path`` updated: never read twice.
- renamed out of the glob or deleted (logrotate ``create``) → ``state="draining"``: still read
  through the open descriptor until it has been at EOF for ``drain_polls`` polls and
  ``drain_seconds`` without growth (counted from the last growth or from when it left the glob,
  whichever is later), then released. The file created at the old path is a new stream from 0.
  A file that left the glob while closed (``max_open``) or while pending is looked for by inode
  in its directory, and drained from there.
- truncated (``copytruncate``: size below the offset, or the remembered first bytes changed) →
  the stream is released and the file is issued again from 0 under the identity of its new
  content (``restarted=True``, ``previous`` = the old identity). The new identity is needed
  because a restart recognises a file by its first bytes only. It equals the old one only when
  the new content starts with the same bytes; the old identity is then not reported as released.
- on the first poll, a resumed stream whose file was renamed out of the glob while iotwatch was
  stopped (found by inode beside the glob's matches) is drained from its offset, then released.
- a released stream whose file (still linked) comes back into the glob continues under its old
  identity at its old offset.

**Descriptors.** At most ``max_open``: to open another file, the least recently served caught-up
file still in the glob is closed (it is reopened by path, its identity verified, when it
changes). A file that left the glob may also close one that is not caught up: it can only be read
through a descriptor, the other can be reopened later.

**For the session.** Feed ``chunk.data`` to the decoder of ``chunk.stream.identity``; create that
decoder at ``chunk.offset`` when there is none, and a new one at ``chunk.offset`` (0) when
``chunk.restarted``. Commit ``decoder.resume_offset`` per identity and pass that map back as
``resume`` on restart. Call ``released()`` after feeding a poll's chunks: a released stream's
last bytes come in the same or an earlier poll. Chunks may carry no data: a stream's first
appearance, a restart, or a change of ``caught_up``. Use ``FileTail.caught_up`` to decide whether
to poll again at once: a poll without chunks does not mean that everything was read.

Limits: a rotated copy (``copytruncate``) that still matches the glob is a new file and is read
from 0. A file whose first bytes are replaced by the same bytes is not seen as truncated. A file
deleted while pending or closed, or moved to another directory while closed, cannot be drained.
"""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import logging
import os
import stat
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Self

log = logging.getLogger("iotwatch.tail")

FOLLOWING = "following"
CAUGHT_UP = "caught-up"
DRAINING = "draining"
ERROR = "error"
PENDING = "pending"
RELEASED = "released"

DEFAULT_BUDGET = 4 * 1024 * 1024
_MIN_SHARE = 4096
_OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)  # never block on a FIFO

Key = tuple[int, int]  # (st_dev, st_ino)


@dataclass(slots=True)
class FileStream:
    """One followed file content (see the module docstring for ``identity``).

    ``state`` is following, caught-up, draining, error, pending (not issued yet: empty
    ``identity``) or released. ``path`` is where the file was last seen, ``offset`` the next byte
    to read, ``size`` the size at the last check, ``previous`` the identity this stream replaced
    after a truncation.
    """

    identity: str
    path: str
    offset: int = 0
    size: int = 0
    state: str = FOLLOWING
    error: str | None = None
    previous: str | None = None


@dataclass(slots=True)
class Chunk:
    """Bytes of one stream from one poll: ``data`` starts at file position ``offset``.

    ``restarted``: the file was truncated, this stream starts at 0 and needs a fresh decoder.
    ``caught_up``: nothing more to read from it right now (EOF, or an error state).
    """

    stream: FileStream
    offset: int
    data: bytes
    restarted: bool = False
    caught_up: bool = False


@dataclass(slots=True)
class _Memo:
    """A stream known by identity but not followed: from ``resume`` or released."""

    identity: str
    dev: int
    ino: int
    length: int
    digest: str
    offset: int


@dataclass(slots=True)
class _Pending:
    """A file seen but not issued: no newline yet, or no free descriptor (``waiting``)."""

    path: str
    size: int
    since: float  # last growth, or when it left the glob
    beside: bool = False  # outside the glob: followed only to be drained
    waiting: bool = False
    quiet: int = 0  # scans without growth


class _Track:
    """A followed stream with its descriptor and bookkeeping."""

    __slots__ = (
        "dirty",
        "fd",
        "grown_at",
        "key",
        "linked",
        "new",
        "nlink",
        "out",
        "out_offset",
        "prefix",
        "quiet",
        "reported",
        "restarted",
        "seen",
        "stream",
    )

    def __init__(
        self, stream: FileStream, key: Key, fd: int, prefix: bytes, st: os.stat_result, now: float
    ) -> None:
        self.stream = stream
        self.key = key
        self.fd: int | None = fd
        self.prefix = prefix  # the first bytes as last verified
        self.seen = (st.st_size, st.st_mtime_ns)
        self.nlink = st.st_nlink
        self.linked = True  # some path matching the glob leads to it
        self.quiet = 0  # polls without growth
        self.grown_at = now
        self.out: list[bytes] = []
        self.out_offset = 0
        self.new = True
        self.restarted = False
        self.reported: bool | None = None  # caught_up as last reported
        self.dirty = False  # changed while closed, not reopened yet for want of a descriptor

    @property
    def caught_up(self) -> bool:
        s = self.stream
        return (s.offset >= s.size and not self.dirty) or s.error is not None


def fingerprint(data: bytes) -> str:
    """The digest part of an identity."""
    return hashlib.blake2b(data, digest_size=8).hexdigest()


def make_identity(dev: int, ino: int, prefix: bytes) -> str:
    """The identity of a file content that starts with ``prefix``."""
    return f"{dev}:{ino}:{len(prefix)}:{fingerprint(prefix)}"


def _memo(identity: str, offset: int) -> _Memo | None:
    parts = identity.split(":")
    if len(parts) != 4:
        return None
    try:
        dev, ino, length = int(parts[0]), int(parts[1]), int(parts[2])
    except ValueError:
        return None
    if length <= 0 or offset < 0:
        return None
    return _Memo(identity, dev, ino, length, parts[3], offset)


def _stat(path: str) -> os.stat_result | None:
    try:
        return os.stat(path)
    except OSError:
        return None


def _fixed_dir(pattern: str) -> str:
    """The directory part of ``pattern`` before its first wildcard."""
    fixed: list[str] = []
    for part in pattern.split(os.sep)[:-1]:
        if glob.has_magic(part):
            break
        fixed.append(part)
    return os.sep.join(fixed) or (os.sep if pattern.startswith(os.sep) else os.curdir)


def _inodes_in(directories: set[str], inodes: set[int]) -> dict[int, str]:
    """Paths of regular files in ``directories`` (not below) with one of ``inodes``."""
    found: dict[int, str] = {}
    for directory in sorted(directories):
        try:
            with os.scandir(directory) as entries:
                for entry in entries:
                    # inode() comes with the directory entry: no stat for the others
                    if entry.inode() in inodes and entry.is_file(follow_symlinks=False):
                        found.setdefault(entry.inode(), entry.path)
        except OSError:
            continue
    return found


def _dirs(paths: list[str]) -> set[str]:
    return {os.path.dirname(p) or os.curdir for p in paths}


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


class FileTail:
    """Follows the files matching ``pattern`` (``glob.glob(pattern, recursive=True)``).

    ``resume`` maps identities to committed offsets. Thread-safe: ``poll`` may run in a worker
    thread while another thread calls ``streams()``.
    """

    def __init__(
        self,
        pattern: str,
        resume: Mapping[str, int] | None = None,
        *,
        chunk_size: int = 256 * 1024,
        fingerprint_size: int = 256,
        max_open: int = 256,
        rescan_interval: float = 0.5,
        drain_polls: int = 2,
        drain_seconds: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if chunk_size < 1 or fingerprint_size < 1 or max_open < 1 or drain_polls < 0:
            raise ValueError("chunk_size, fingerprint_size, max_open must be > 0, drain_polls >= 0")
        self.pattern = pattern
        self.chunk_size = chunk_size
        self.fingerprint_size = fingerprint_size
        self.max_open = max_open
        self.rescan_interval = rescan_interval
        self.drain_polls = drain_polls
        self.drain_seconds = drain_seconds
        self._clock = clock
        # Insertion order is service order: a stream served by a poll moves to the end.
        self._tracks: dict[Key, _Track] = {}
        self._memos: dict[int, list[_Memo]] = {}  # by inode
        for identity, offset in (resume or {}).items():
            memo = _memo(identity, offset)
            if memo is not None:
                self._memos.setdefault(memo.ino, []).append(memo)
        self._pending: dict[Key, _Pending] = {}
        self._problems: dict[str, str] = {}  # path -> reason, for paths that are no stream
        self._previous: dict[Key, str] = {}  # identity a truncated file had, until reissued
        self._released: list[FileStream] = []
        self._open = 0
        self._next_scan = float("-inf")
        self._first_scan = True
        self._closed = False
        self._lock = threading.Lock()

    # -- public ---------------------------------------------------------------------------------

    def poll(self, budget: int = DEFAULT_BUDGET) -> list[Chunk]:
        """Discover files, check the followed ones and read up to ``budget`` bytes in total."""
        with self._lock:
            if self._closed:
                return []
            now = self._clock()
            scanned = False
            if now >= self._next_scan:
                self._next_scan = now + self.rescan_interval
                try:
                    self._scan(now)
                    scanned = True
                except Exception as exc:  # a tailer bug must not stop the source
                    log.exception("scanning %s failed", self.pattern)
                    self._problems[self.pattern] = f"scan failed: {_reason(exc)}"
            for track in list(self._tracks.values()):
                try:
                    self._check(track, now, scanned)
                except Exception as exc:  # a tailer bug must not stop the source
                    log.exception("checking %s failed", track.stream.path)
                    track.stream.error = _reason(exc)
            self._read(budget)
            return self._report(now)

    def streams(self) -> list[FileStream]:
        """Copies of the current streams, pending files and failing paths, by path."""
        with self._lock:
            out = [dataclasses.replace(t.stream) for t in self._tracks.values()]
            out += [
                FileStream(
                    "",
                    p.path,
                    0,
                    p.size,
                    PENDING,
                    "waiting for a descriptor" if p.waiting else None,
                )
                for p in self._pending.values()
            ]
            out += [
                FileStream("", path, state=ERROR, error=reason)
                for path, reason in self._problems.items()
            ]
        out.sort(key=lambda s: (s.path, s.identity))
        return out

    def released(self) -> list[FileStream]:
        """The streams let go since the last call (drained after leaving the glob, or truncated)."""
        with self._lock:
            out, self._released = self._released, []
        return out

    @property
    def caught_up(self) -> bool:
        """As of the last poll: every stream read to its end, and no file waiting for a descriptor."""
        with self._lock:
            return not any(p.waiting for p in self._pending.values()) and all(
                t.caught_up for t in self._tracks.values()
            )

    @property
    def open_files(self) -> int:
        """File descriptors held now."""
        return self._open

    def close(self) -> None:
        """Close every descriptor; later polls return nothing."""
        with self._lock:
            self._closed = True
            for track in self._tracks.values():
                self._close_fd(track)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- discovery ------------------------------------------------------------------------------

    def _scan(self, now: float) -> None:
        seen: set[Key] = set()
        problems: dict[str, str] = {}
        pending: dict[Key, _Pending] = {}
        paths = sorted(glob.glob(self.pattern, recursive=True))
        for path in paths:
            try:
                st = os.stat(path)
            except FileNotFoundError:  # gone since the glob, or a dangling symlink
                continue
            except OSError as exc:
                problems[path] = _reason(exc)
                continue
            if stat.S_ISDIR(st.st_mode):
                continue
            if not stat.S_ISREG(st.st_mode):
                problems[path] = "not a regular file"
                continue
            key = (st.st_dev, st.st_ino)
            if key in seen:  # another link to a file already seen
                continue
            seen.add(key)
            track = self._tracks.get(key)
            if track is not None:
                track.stream.path = path
                track.linked = True
                continue
            try:
                outcome = self._discover(path, key, now)
            except FileNotFoundError:
                continue
            except OSError as exc:
                problems[path] = _reason(exc)
                continue
            if outcome != "issued":
                pending[key] = _Pending(path, st.st_size, now, waiting=outcome == "waiting")
        for key, track in self._tracks.items():
            if key not in seen and track.linked:
                track.linked = False
                track.quiet, track.grown_at = 0, now  # the drain period starts now
                self._follow_rename(track)
        if self._first_scan:
            self._first_scan = False
            self._resume_beside(paths, now)
        gone = {k: p for k, p in self._pending.items() if k not in seen and k not in self._tracks}
        if gone:
            self._pending_beside(gone, pending, now)
        self._problems = problems
        self._pending = pending
        for key in [k for k in self._previous if k not in pending and k not in self._tracks]:
            del self._previous[key]

    def _follow_rename(self, track: _Track) -> None:
        """Show where a file that left the glob went, where the system can tell (Linux /proc)."""
        if track.fd is None:
            return
        try:
            target = os.readlink(f"/proc/self/fd/{track.fd}")
        except OSError:
            return
        if target.startswith("/") and not target.endswith(" (deleted)"):
            track.stream.path = target

    def _discover(
        self, path: str, key: Key, now: float, beside: bool = False, known_only: bool = False
    ) -> str:
        """Open a file not followed yet: "issued", "pending" (no newline yet), "waiting" (no
        descriptor) or "skipped".

        ``beside``: the file is outside the glob: issue it only to drain it; ``known_only``: and
        only if it continues a remembered stream.
        """
        if not self._reserve(urgent=beside):
            return "waiting"
        fd = os.open(path, _OPEN_FLAGS)
        self._open += 1
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or (st.st_dev, st.st_ino) != key:
                return "skipped"  # replaced since the stat: the next scan sees what is there now
            prefix = os.pread(fd, self._head_size(key[1]), 0)
            if not self._issuable(prefix):
                return "pending"
            memo = self._match(key, prefix)
            if known_only and (memo is None or st.st_size <= memo.offset):
                return "skipped"
            track = self._issue(path, key, fd, prefix, st, now, memo)
            fd = -1
            track.linked = not beside
            return "issued"
        finally:
            if fd >= 0:
                os.close(fd)
                self._open -= 1

    def _pending_beside(
        self, gone: dict[Key, _Pending], pending: dict[Key, _Pending], now: float
    ) -> None:
        """Drain from 0 the files seen while pending that left the glob, found by inode in their
        directory, until they have been quiet for the drain period."""
        found = _inodes_in(_dirs([p.path for p in gone.values()]), {k[1] for k in gone})
        for ino, path in found.items():
            st = _stat(path)
            if st is None or st.st_ino != ino or (st.st_dev, ino) not in gone:
                continue
            key = (st.st_dev, ino)
            try:
                outcome = self._discover(path, key, now, beside=True)
            except OSError:
                continue
            if outcome in ("issued", "skipped"):
                continue
            before = gone[key]
            entry = _Pending(path, st.st_size, now, True, outcome == "waiting")
            if before.beside and before.size == st.st_size:
                entry.since, entry.quiet = before.since, before.quiet + 1
            quiet = entry.quiet >= self.drain_polls and now - entry.since >= self.drain_seconds
            if entry.waiting or not quiet:
                pending[key] = entry

    def _resume_beside(self, paths: list[str], now: float) -> None:
        """Drain remembered streams whose files were renamed out of the glob while we were away.

        Looks in the directories of the glob's matches and of its fixed leading part: where
        logrotate puts rotated files (unless ``olddir`` moves them).
        """
        if not self._memos:
            return
        directories = _dirs(paths)
        directories.add(_fixed_dir(self.pattern))
        matched = set(paths)
        for ino, path in _inodes_in(directories, set(self._memos)).items():
            st = _stat(path)
            memos = self._memos.get(ino)
            if path in matched or st is None or st.st_ino != ino or not memos:
                continue
            key = (st.st_dev, ino)
            if key not in self._tracks and min(m.offset for m in memos) < st.st_size:
                try:
                    self._discover(path, key, now, beside=True, known_only=True)
                except OSError:
                    continue

    def _head_size(self, ino: int) -> int:
        """How much of a file to read to identify it: remembered identities may be longer (an
        earlier run with a larger ``fingerprint_size``)."""
        return max([self.fingerprint_size, *(m.length for m in self._memos.get(ino, ()))])

    def _issuable(self, prefix: bytes) -> bool:
        return len(prefix) >= self.fingerprint_size or b"\n" in prefix

    def _issue(
        self,
        path: str,
        key: Key,
        fd: int,
        prefix: bytes,
        st: os.stat_result,
        now: float,
        memo: _Memo | None,
    ) -> _Track:
        previous = self._previous.pop(key, None)
        if memo is not None and st.st_size >= memo.offset:
            identity, offset = memo.identity, memo.offset
        else:
            if memo is not None:  # shorter than its committed offset: truncated meanwhile
                previous = memo.identity
            identity = make_identity(key[0], key[1], prefix[: self.fingerprint_size])
            offset = 0
        track = _Track(FileStream(identity, path, offset, st.st_size), key, fd, prefix, st, now)
        track.stream.previous = previous
        track.restarted = previous is not None
        self._tracks[key] = track
        return track

    def _match(self, key: Key, prefix: bytes) -> _Memo | None:
        """The remembered stream this file content continues, if any; consumes it."""
        memos = self._memos.get(key[1])
        if not memos:
            return None
        best: _Memo | None = None
        for memo in memos:
            if memo.length <= len(prefix) and fingerprint(prefix[: memo.length]) == memo.digest:
                rank = (memo.dev == key[0], memo.length)
                if best is None or rank > (best.dev == key[0], best.length):
                    best = memo
        # Memos of this very inode that do not match describe content that no longer exists.
        rest = [m for m in memos if m is not best and m.dev != key[0]]
        if rest:
            self._memos[key[1]] = rest
        else:
            del self._memos[key[1]]
        return best

    # -- checking -------------------------------------------------------------------------------

    def _check(self, track: _Track, now: float, scanned: bool) -> None:
        s = track.stream
        if track.fd is None and not self._reopen(track, now, scanned):
            return
        assert track.fd is not None
        try:
            st = os.fstat(track.fd)
            track.nlink = st.st_nlink
            if st.st_nlink == 0 and track.linked:  # deleted: it can only be drained
                track.linked = False
                track.quiet, track.grown_at = 0, now
            seen = (st.st_size, st.st_mtime_ns)
            if seen == track.seen:
                track.quiet += 1
            else:
                if st.st_size < s.offset or not self._same_content(track):
                    self._truncated(track, now)
                    return
                if st.st_size != s.size:
                    track.quiet, track.grown_at = 0, now
                track.seen = seen
                s.size = st.st_size
            s.error = None
        except OSError as exc:
            s.error = _reason(exc)

    def _same_content(self, track: _Track) -> bool:
        assert track.fd is not None
        head = os.pread(track.fd, max(self.fingerprint_size, len(track.prefix)), 0)
        if head[: len(track.prefix)] != track.prefix:
            return False
        if len(head) > len(track.prefix):
            track.prefix = head
        return True

    def _reopen(self, track: _Track, now: float, scanned: bool) -> bool:
        """Reopen a file closed to save descriptors when it has something to read or moved away;
        True if it is open now."""
        s = track.stream
        st = _stat(s.path)
        if st is None or (st.st_dev, st.st_ino) != track.key:
            if track.linked and not scanned:
                return False  # the next scan tells whether it moved within the glob
            # Not in the glob any more: renamed beside it (rotated) or deleted.
            path = _inodes_in(_dirs([s.path]), {track.key[1]}).get(track.key[1])
            st = _stat(path) if path is not None else None
            if path is None or st is None or (st.st_dev, st.st_ino) != track.key:
                self._release(track)
                return False
            s.path, track.linked = path, False
        if track.linked and track.caught_up and (st.st_size, st.st_mtime_ns) == track.seen:
            return False
        if not self._reserve(urgent=not track.linked):
            track.dirty, track.quiet, track.grown_at = True, 0, now
            return False
        try:
            fd = os.open(s.path, _OPEN_FLAGS)
        except OSError as exc:
            s.error = _reason(exc)
            return False
        self._open += 1
        track.fd, track.dirty = fd, False
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) != track.key:
            self._close_fd(track)
            return False
        return True

    def _truncated(self, track: _Track, now: float) -> None:
        """Release the old content's stream and issue the file again from 0."""
        old = track.stream
        fd = track.fd
        assert fd is not None
        st = os.fstat(fd)
        prefix = os.pread(fd, self._head_size(track.key[1]), 0)
        track.fd = None
        del self._tracks[track.key]
        old.state = RELEASED
        self._previous[track.key] = old.identity
        if self._issuable(prefix):
            new = self._issue(old.path, track.key, fd, prefix, st, now, None)
            new.linked = track.linked
            if new.stream.identity == old.identity:
                return
        else:
            os.close(fd)
            self._open -= 1
            self._pending[track.key] = _Pending(old.path, st.st_size, now, not track.linked)
        self._released.append(old)

    # -- reading --------------------------------------------------------------------------------

    def _read(self, budget: int) -> None:
        ready = [t for t in self._tracks.values() if t.fd is not None and not t.caught_up]
        if not ready or budget <= 0:
            return
        share = min(self.chunk_size, max(budget // len(ready), _MIN_SHARE))
        remaining = budget
        served: list[_Track] = []
        while ready and remaining > 0:
            again: list[_Track] = []
            for track in ready:
                if remaining <= 0:
                    break
                s = track.stream
                assert track.fd is not None
                try:
                    data = os.pread(track.fd, min(share, remaining, s.size - s.offset), s.offset)
                except OSError as exc:
                    s.error = _reason(exc)
                    continue
                if not data:  # shrank since the check: the next check sees the truncation
                    continue
                if not track.out:
                    track.out_offset = s.offset
                    served.append(track)
                track.out.append(data)
                s.offset += len(data)
                remaining -= len(data)
                if s.offset < s.size:
                    again.append(track)
            ready = again
        for track in served:
            self._tracks[track.key] = self._tracks.pop(track.key)

    def _report(self, now: float) -> list[Chunk]:
        chunks: list[Chunk] = []
        for track in list(self._tracks.values()):
            s = track.stream
            caught_up = track.caught_up
            if s.error is not None:
                s.state = ERROR
            elif not track.linked:
                s.state = DRAINING
            else:
                s.state = CAUGHT_UP if caught_up else FOLLOWING
            if track.out or track.new or track.restarted or caught_up != track.reported:
                offset = track.out_offset if track.out else s.offset
                chunks.append(Chunk(s, offset, b"".join(track.out), track.restarted, caught_up))
                track.out = []
                track.new = track.restarted = False
                track.reported = caught_up
            if (
                not track.linked
                and caught_up
                and track.quiet >= self.drain_polls
                and now - track.grown_at >= self.drain_seconds
            ):
                self._release(track)
        return chunks

    # -- descriptors ----------------------------------------------------------------------------

    def _reserve(self, urgent: bool = False) -> bool:
        """Make room for one more descriptor: close the least recently served caught-up file in
        the glob, or when ``urgent`` (for a file outside the glob) any file in the glob."""
        if self._open < self.max_open:
            return True
        victim: _Track | None = None
        for track in self._tracks.values():
            if track.fd is None or not track.linked:
                continue
            if track.caught_up:
                victim = track
                break
            if urgent and victim is None:
                victim = track
        if victim is None:
            return False
        self._close_fd(victim)
        return True

    def _close_fd(self, track: _Track) -> None:
        if track.fd is not None:
            try:
                os.close(track.fd)
            finally:
                track.fd = None
                self._open -= 1

    def _release(self, track: _Track) -> None:
        s = track.stream
        # Still linked somewhere outside the glob: remember it in case it comes back.
        if track.fd is not None and track.nlink > 0:
            memo = _memo(s.identity, s.offset)
            if memo is not None:
                self._memos.setdefault(track.key[1], []).append(memo)
        self._close_fd(track)
        del self._tracks[track.key]
        s.state = RELEASED
        self._released.append(s)

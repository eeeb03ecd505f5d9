"""The SQLite store (aiosqlite, WAL): schema, migrations and batched writes.

Every write is a batch in one transaction — events together with the offsets of the streams they
came from, so a restart resumes exactly where the committed data ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import sqlite3
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, NamedTuple

import aiosqlite
import orjson

from engine import catalogue as c
from engine.alert import Alert
from engine.config import Config
from engine.event import MAX_RAW
from engine.files import precreate_database
from engine.timestamps import US

SCHEMA_VERSION = 4
_MIGRATIONS = ("schema.sql", "schema_v2.sql", "schema_v3.sql", "schema_v4.sql")
log = logging.getLogger("iotwatch.store")
BUSY_TIMEOUT = 5.0  # seconds a write waits for another process's write lock before it fails


def _migrations() -> list[str]:
    """SQL to go from version i to i + 1, in order."""
    files = resources.files("engine")
    return [files.joinpath(name).read_text() for name in _MIGRATIONS]


def schema_statements() -> list[str]:
    """Every statement that builds the current schema from nothing (tables, views, indexes),
    in order: what a new database of this version holds, for copies such as exports."""
    return _statements("\n".join(_migrations()))


class StoreError(Exception):
    """The database cannot be used (not an iotwatch database, newer schema, not writable): a
    start-up fault. The message is one line and names the file."""


class StoreFault(Exception):
    """A write failed as a whole. ``kind`` is ``busy`` (another process held the write lock past
    the busy timeout) or ``full`` (no room on the volume or under the page limit): both are
    transient and worth retrying; anything else is ``fatal``. The message is one line and names
    the file."""

    def __init__(self, path: str, kind: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.kind = kind
        self.reason = reason

    @property
    def transient(self) -> bool:
        return self.kind != "fatal"


# Errors that one row's values cause (an integer beyond SQLite's 64 bits, a string that is not
# UTF-8, a constraint): the rest of its batch can still be written.
ROW_ERRORS: tuple[type[BaseException], ...] = (
    OverflowError,
    UnicodeError,
    TypeError,  # includes orjson.JSONEncodeError
    ValueError,
    sqlite3.InterfaceError,
    sqlite3.ProgrammingError,
    sqlite3.IntegrityError,
    sqlite3.DataError,
)
_BUSY = {5, 6}  # SQLITE_BUSY, SQLITE_LOCKED
_FULL = {13}  # SQLITE_FULL
_IOERR_SHMSIZE = 10 | (19 << 8)  # the shared-memory file could not grow: the volume is full


def classify(exc: BaseException) -> str:
    """``busy``, ``full`` or ``fatal`` for an exception a write raised."""
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(exc, sqlite3.Error) and code is not None:
        if code & 0xFF in _BUSY:
            return "busy"
        if code & 0xFF in _FULL or code == _IOERR_SHMSIZE:
            return "full"
    return "fatal"


def describe(exc: BaseException) -> str:
    """A one-line reason for ``exc``, the way an operator reads it."""
    kind = classify(exc)
    if kind == "busy":
        return "database is locked: another process held a write transaction past the busy timeout"
    if kind == "full":
        return "database or disk is full"
    text = " ".join(str(exc).split()) or type(exc).__name__
    if not isinstance(exc, sqlite3.Error):
        text = f"{type(exc).__name__}: {text}"
    return text


def fault(path: str, exc: BaseException) -> StoreFault:
    """The StoreFault for ``exc`` raised by a write on ``path``."""
    return StoreFault(path, classify(exc), describe(exc))


class Rejected(NamedTuple):
    """A row a write set apart because its values cannot be stored: ``table`` it was meant for,
    its stream and position when it has them, the reason, and what was done (``quarantined``: an
    event kept in the quarantine instead; ``stored``: kept with out-of-range values clamped and
    strings escaped; ``dropped``: not even that could be stored)."""

    table: str
    stream: int | None
    pos: int | None
    reason: str
    action: str


@dataclass(slots=True)
class Batch:
    """Everything one transaction writes. A batch that failed on a busy or full database is
    kept and ``absorb``s what comes after it, so every field must be merged there."""

    events: list[tuple[Any, ...]] = field(default_factory=list)
    bad: list[tuple[Any, ...]] = field(default_factory=list)  # (stream, pos, reason, raw, part)
    console: list[tuple[Any, ...]] = field(default_factory=list)  # (stream, pos, time_us, line)
    # (stream, pos, time_us, category, operation, result, raw): hub-wide resource-log records
    hub: list[tuple[Any, ...]] = field(default_factory=list)
    devices: list[tuple[Any, ...]] = field(
        default_factory=list
    )  # (id, name, grp, declared, first, last)
    alerts: list[Alert] = field(default_factory=list)
    # (alert, at_us, window_us, count_before, count_after)
    amendments: list[tuple[Any, ...]] = field(default_factory=list)
    # (offset, records, events, expired, quarantined, latest_us, format, state, id)
    streams: list[tuple[Any, ...]] = field(default_factory=list)
    silenced: list[int] = field(default_factory=list)  # alert ids a silence covers
    # Configurations applied between events: (how many of ``events`` came before it, wall
    # clock µs, TOML text).
    configs: list[tuple[int, int, str]] = field(default_factory=list)
    # The evaluator's state after every event of the batch: (wall clock µs, state).
    checkpoint: tuple[int, bytes] | None = None

    def __len__(self) -> int:
        return len(self.events) + len(self.bad) + len(self.console) + len(self.hub)

    def counts(self) -> bool:
        """Whether there is anything to write besides stream rows."""
        return bool(len(self) or self.devices or self.alerts or self.amendments or self.configs)

    def absorb(self, later: Batch) -> None:
        """Add what ``later`` holds after what this batch holds: rows in order, the newest row
        of each device and alert. Streams and silenced ids are left to the next commit, which
        computes them afresh."""
        self.configs.extend((n + len(self.events), at, text) for n, at, text in later.configs)
        self.checkpoint = later.checkpoint  # the state after every event, later's included
        self.events.extend(later.events)
        self.bad.extend(later.bad)
        self.console.extend(later.console)
        self.hub.extend(later.hub)
        if later.devices:
            devices = {row[0]: row for row in self.devices}
            devices.update((row[0], row) for row in later.devices)
            self.devices = list(devices.values())
        if later.alerts:
            alerts = {a.id: a for a in self.alerts}
            alerts.update((a.id, a) for a in later.alerts)
            self.alerts = list(alerts.values())
        self.amendments.extend(later.amendments)


def alert_row(a: Alert) -> tuple[Any, ...]:
    if a.is_range:
        return (
            a.id,
            a.rule.id,
            a.device,
            a.group,
            None,
            a.start,
            a.end,
            a.state,
            a.severity,
            a.size // US,
            a.min,
            a.max,
            _json_list(a.counts),
            None,
            int(a.amended),
            a.into,
        )
    return (
        a.id,
        a.rule.id,
        a.device,
        a.group,
        a.value,
        a.start,
        a.end,
        a.state,
        a.severity,
        None,
        None,
        None,
        None,
        a.occurrences,
        int(a.amended),
        a.into,
    )


_UPSERT_ALERT = """
INSERT INTO alerts (id, rule, device, grp, value, start_us, end_us, state, severity, window_s,
                    min, max, counts, occurrences, amended, merged_into)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (id) DO UPDATE SET
    start_us = excluded.start_us, end_us = excluded.end_us, state = excluded.state,
    counts = excluded.counts, occurrences = excluded.occurrences,
    amended = max(alerts.amended, excluded.amended), merged_into = excluded.merged_into
"""
# An event's row (EventRow): ``(stream, device id, expired)`` and the Event's fields but its
# device name, in this order. Rule and allow-list ids of 0 (none) are stored as NULL.
EventRow = tuple[int, int, bool, int, str, int, bool, int, "str | None", int, bool, int]
_INSERT_EVENT = """
INSERT INTO events (stream, device, expired, time_us, name, rule, unauthorized, allow, value, weight,
                    host_timed, pos)
VALUES (?1, ?2, ?3, ?4, ?5, nullif(?6, 0), ?7, nullif(?8, 0), ?9, ?10, ?11, ?12)
"""
_UPSERT_DEVICE = """
INSERT INTO devices (id, name, grp, declared, first_us, last_us) VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (id) DO UPDATE SET grp = excluded.grp, declared = excluded.declared,
    first_us = excluded.first_us, last_us = excluded.last_us
"""
_UPDATE_STREAM = """
UPDATE streams SET offset = ?, records = ?, events = ?, expired = ?, quarantined = ?, latest_us = ?,
    format = ?, state = ? WHERE id = ?
"""


_INSERT_BAD = "INSERT INTO quarantine (stream, pos, reason, raw, part) VALUES (?, ?, ?, ?, ?)"
_INSERT_CONSOLE = "INSERT INTO console (stream, pos, time_us, line) VALUES (?, ?, ?, ?)"
_INSERT_HUB = """
INSERT INTO hub_records (stream, pos, time_us, category, operation, result, raw)
VALUES (?, ?, ?, ?, ?, ?, ?)
"""
_INSERT_AMENDMENT = """
INSERT INTO amendments (alert, at_us, window_us, count_before, count_after) VALUES (?, ?, ?, ?, ?)
"""
# Positioned by what was inserted before them in the same transaction: the events before a
# configuration change, every event of the batch before its checkpoint.
_INSERT_CONFIG = """
INSERT INTO config_log (last_event, at_us, config)
VALUES ((SELECT coalesce(max(id), 0) FROM events), ?, ?)
"""
_INSERT_CHECKPOINT = """
INSERT INTO checkpoints (last_event, config, at_us, state)
VALUES ((SELECT coalesce(max(id), 0) FROM events), (SELECT coalesce(max(id), 0) FROM config_log),
        ?, ?)
"""
_DROP_CHECKPOINTS = "DELETE FROM checkpoints WHERE id < (SELECT max(id) FROM checkpoints) AND ?"
STREAM_QUARANTINED = 4  # index of ``quarantined`` in a stream row; its id is the last item

# The statements of a batch, in the order they run; ``batch_parts`` refers to them by index so
# a batch can cross a process boundary as plain data.
BATCH_SQL = (
    _UPSERT_DEVICE,
    _INSERT_EVENT,
    _INSERT_BAD,
    _INSERT_CONSOLE,
    _INSERT_HUB,
    _UPSERT_ALERT,
    _INSERT_AMENDMENT,
    _UPDATE_STREAM,
    "UPDATE alerts SET silenced = 1 WHERE id = ?",
    _INSERT_CONFIG,
    _INSERT_CHECKPOINT,
    _DROP_CHECKPOINTS,
)
_EVENTS, _BAD, _CONSOLE, _HUB, _STREAMS, _CONFIG, _CHECKPOINT, _DROP = map(
    BATCH_SQL.index,
    (
        _INSERT_EVENT,
        _INSERT_BAD,
        _INSERT_CONSOLE,
        _INSERT_HUB,
        _UPDATE_STREAM,
        _INSERT_CONFIG,
        _INSERT_CHECKPOINT,
        _DROP_CHECKPOINTS,
    ),
)
_ALERTS, _AMENDMENTS, _SILENCED = 5, 6, 8
assert BATCH_SQL[_ALERTS] == _UPSERT_ALERT and BATCH_SQL[_AMENDMENTS] == _INSERT_AMENDMENT
# The table each statement writes (for Rejected): the word after INTO, UPDATE or FROM.
_TABLES = tuple(
    re.search(r"(?:INTO|UPDATE|FROM)\s+(\w+)", sql).group(1)  # type: ignore[union-attr]
    for sql in BATCH_SQL
)


def batch_parts(batch: Batch) -> list[tuple[int, list[tuple[Any, ...]]]]:
    """The non-empty (statement index, rows) pairs of ``batch``, in the order they run: a
    configuration change between the events it came between, the checkpoint last."""
    parts: list[tuple[int, list[tuple[Any, ...]]]] = [(0, batch.devices)]
    done = 0
    for n, at, text in batch.configs:
        parts += [(_EVENTS, batch.events[done:n]), (_CONFIG, [(at, text)])]
        done = n
    parts.append((_EVENTS, batch.events[done:] if done else batch.events))
    parts += [
        (_BAD, batch.bad),
        (_CONSOLE, batch.console),
        (_HUB, batch.hub),
        (_ALERTS, [alert_row(a) for a in batch.alerts]),
        (_AMENDMENTS, batch.amendments),
        (_STREAMS, batch.streams),
        (_SILENCED, [(i,) for i in batch.silenced]),
    ]
    if batch.checkpoint is not None:
        parts += [(_CHECKPOINT, [batch.checkpoint]), (_DROP, [(1,)])]
    return [(i, rows) for i, rows in parts if rows]


def write_parts(conn: sqlite3.Connection, parts: list[tuple[int, list[Any]]]) -> list[Rejected]:
    """Write batch parts in one transaction on a plain sqlite3 connection. When a row's values
    cannot be stored, the batch is written again with that row set apart (see ``Rejected``):
    one bad row never holds back the rest. Other errors propagate; nothing is written then."""
    try:
        with _immediate(conn):
            for index, rows in parts:
                conn.executemany(BATCH_SQL[index], rows)
        return []
    except ROW_ERRORS:
        pass
    rejected: list[Rejected] = []
    with _immediate(conn):
        _write_isolating(conn, parts, rejected)
    return rejected


@contextlib.contextmanager
def _immediate(conn: sqlite3.Connection) -> Iterator[None]:
    """BEGIN IMMEDIATE (the write lock is taken, or the busy timeout spent, before any work) …
    COMMIT, or ROLLBACK on any error."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        _rollback(conn)
        raise


def _rollback(conn: sqlite3.Connection) -> None:
    # SQLite rolls back by itself on some errors (a full disk): a second ROLLBACK would fail
    # and hide the error that matters.
    if conn.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")


def _write_isolating(
    conn: sqlite3.Connection, parts: list[tuple[int, list[Any]]], rejected: list[Rejected]
) -> None:
    """Write ``parts`` row-safely inside an open transaction, appending to ``rejected``."""
    quarantined: dict[int, int] = {}  # per stream: events set apart into the quarantine
    for index, rows in parts:
        if index == _STREAMS and quarantined:
            rows = [_count_quarantined(row, quarantined) for row in rows]
        table = _TABLES[index]
        for row, exc in _insert(conn, BATCH_SQL[index], rows):
            reason = describe(exc)
            if index == _EVENTS:  # the event's record is accounted for in the quarantine
                stream, pos = row[0], _clamp(row[-1])
                entry = (stream, pos, f"not storable: {reason}", _raw(row), None)
                ok = not _insert(conn, _INSERT_BAD, [_safe(entry)])
                if ok:
                    quarantined[stream] = quarantined.get(stream, 0) + 1
                action = "quarantined" if ok else "dropped"
                rejected.append(Rejected(table, stream, pos, reason, action))
                continue
            ok = not _insert(conn, BATCH_SQL[index], [_safe(row)])
            stream, pos = (row[0], row[1]) if index in (_BAD, _CONSOLE, _HUB) else (None, None)
            rejected.append(Rejected(table, stream, pos, reason, "stored" if ok else "dropped"))


def _insert(conn: sqlite3.Connection, sql: str, rows: list[Any]) -> list[tuple[Any, BaseException]]:
    """Insert ``rows``; those that fail for their values are bisected out and returned with
    their error, the others are written."""
    if not rows:
        return []
    conn.execute("SAVEPOINT part")
    try:
        conn.executemany(sql, rows)
    except ROW_ERRORS as exc:
        conn.execute("ROLLBACK TO part")
        conn.execute("RELEASE part")
        if len(rows) == 1:
            return [(rows[0], exc)]
        mid = len(rows) // 2
        return _insert(conn, sql, rows[:mid]) + _insert(conn, sql, rows[mid:])
    conn.execute("RELEASE part")
    return []


def _count_quarantined(row: tuple[Any, ...], quarantined: dict[int, int]) -> tuple[Any, ...]:
    extra = quarantined.get(row[-1])
    if not extra:
        return row
    out = list(row)
    out[STREAM_QUARANTINED] += extra
    return tuple(out)


_INT_MIN, _INT_MAX = -(2**63), 2**63 - 1


def _clamp(value: Any) -> Any:
    if isinstance(value, int) and not _INT_MIN <= value <= _INT_MAX:
        return max(_INT_MIN, min(_INT_MAX, value))
    return value


def _safe(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """``row`` with what SQLite cannot bind made storable: integers clamped to 64 bits,
    strings that are not UTF-8 escaped, other objects as their repr."""
    out: list[Any] = []
    for value in row:
        if value is None or isinstance(value, (float, bytes)):
            out.append(value)
        elif isinstance(value, int):
            out.append(_clamp(value))
        elif isinstance(value, str):
            out.append(value.encode("utf-8", "backslashreplace").decode("utf-8"))
        else:
            out.append(repr(value))
    return tuple(out)


def _raw(row: tuple[Any, ...]) -> bytes:
    """What the quarantine keeps of an event row that could not be stored: its fields."""
    return repr(row[3:]).encode("utf-8", "backslashreplace")[:MAX_RAW]


def _json_list(values: list[int]) -> str:
    try:
        return orjson.dumps(values).decode()
    except TypeError:  # an integer beyond 64 bits: kept exact as JSON text
        return json.dumps(values)


EVENT_INDEX = "CREATE INDEX IF NOT EXISTS events_device_time ON events (device, time_us)"


def pragmas(busy_timeout: float | None = None) -> tuple[str, ...]:
    """The settings of every writing connection; ``busy_timeout`` in seconds (default
    ``BUSY_TIMEOUT``)."""
    seconds = BUSY_TIMEOUT if busy_timeout is None else busy_timeout
    return (
        "PRAGMA journal_mode = WAL",
        "PRAGMA synchronous = NORMAL",
        f"PRAGMA busy_timeout = {round(seconds * 1000)}",
    )


def start_fault(path: str, exc: BaseException) -> StoreError:
    """The StoreError for ``exc`` raised while opening or preparing ``path``."""
    if isinstance(exc, StoreError):
        return exc
    if isinstance(exc, StoreFault):
        return StoreError(str(exc))
    name = getattr(exc, "sqlite_errorname", "")
    reason = describe(exc)
    if name.startswith("SQLITE_NOTADB"):
        reason = "not a SQLite database"
    elif name.startswith("SQLITE_CORRUPT"):
        reason = f"the database is damaged ({reason})"
    elif name.startswith("SQLITE_READONLY") or name == "SQLITE_IOERR_WRITE":
        reason = f"cannot write: {reason}"
    return StoreError(f"{path}: {reason}")


class Store:
    """An open iotwatch database."""

    def __init__(
        self, conn: aiosqlite.Connection, path: str, busy_timeout: float | None = None
    ) -> None:
        self.conn = conn
        self.path = path
        self.busy_timeout = BUSY_TIMEOUT if busy_timeout is None else busy_timeout
        # One transaction at a time on the connection: batches, configuration, operator actions.
        self.lock = asyncio.Lock()

    @classmethod
    async def open(
        cls, path: str | Path, *, create: bool = True, busy_timeout: float | None = None
    ) -> Store:
        """Open (and create or migrate) the database at ``path`` in WAL mode and make sure it
        can be written. Any fault (missing, a directory, not SQLite, damaged, not iotwatch's,
        read-only, locked) raises StoreError with one line naming the file; nothing is left
        running."""
        path = str(path)
        if not create and not Path(path).exists():
            raise StoreError(f"{path}: no such database")
        if os.path.isdir(path):
            raise StoreError(f"{path}: is a directory")
        precreate_database(path)  # mode 0600: see engine.files
        try:
            conn = await aiosqlite.connect(path, isolation_level=None)
        except sqlite3.Error as exc:
            raise start_fault(path, exc) from None
        store = cls(conn, path, busy_timeout)
        try:
            await store._prepare()
        except BaseException as exc:
            # The connection's thread keeps a process alive: it must end whatever went wrong.
            with contextlib.suppress(Exception):
                await conn.close()
            if isinstance(exc, Exception):
                raise start_fault(path, exc) from None
            raise
        return store

    async def _prepare(self) -> None:
        conn = self.conn
        for pragma in pragmas(self.busy_timeout):
            await conn.execute(pragma)
        version = await self.schema_version()
        if version is None:
            async with conn.execute("SELECT count(*) FROM sqlite_master") as cur:
                (tables,) = await cur.fetchone()  # type: ignore[misc]
            if tables:
                raise StoreError(f"{self.path}: not an iotwatch database")
            version = 0
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path}: schema version {version} is newer than this iotwatch ({SCHEMA_VERSION})"
            )
        migrations = _migrations()
        if version == SCHEMA_VERSION:
            # A read-only or immutable file opens and reads; say so now, not at the first batch.
            await conn.execute("BEGIN IMMEDIATE")
            try:
                await conn.execute("UPDATE meta SET value = value WHERE key = 'schema_version'")
                await conn.execute("COMMIT")
            except BaseException:
                await self._rollback()
                raise
        if version < SCHEMA_VERSION:
            await conn.execute("BEGIN IMMEDIATE")
            try:
                for sql in migrations[version:]:
                    for statement in _statements(sql):
                        await conn.execute(statement)
                # Every migration writes the rule types afresh: their texts can change between
                # versions (schema 4 took Defender's exact display names).
                await conn.executemany(
                    "INSERT INTO rule_types VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE"
                    " SET name = excluded.name, kind = excluded.kind, source = excluded.source,"
                    " alert_type = excluded.alert_type, display_name = excluded.display_name",
                    [
                        (r.id, r.name, r.kind, r.source, r.alert_type, r.display_name)
                        for r in c.RULE_TYPES
                    ],
                )
                await conn.execute(
                    "INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)",
                    (str(SCHEMA_VERSION),),
                )
                await conn.execute("COMMIT")
            except BaseException:
                await self._rollback()
                raise

    async def schema_version(self) -> int | None:
        """The schema version, or None when the file has no iotwatch meta table."""
        try:
            async with self.conn.execute(
                "SELECT value FROM meta WHERE key = 'schema_version'"
            ) as cur:
                row = await cur.fetchone()
        except sqlite3.OperationalError as exc:
            if "no such table" not in str(exc):
                raise
            return None
        if not row:
            return None
        try:
            return int(row[0])
        except (TypeError, ValueError):
            raise StoreError(
                f"{self.path}: schema version {str(row[0])[:40]!r} is not a number"
            ) from None

    async def _rollback(self) -> None:
        # As _rollback above, on the shared connection.
        if self.conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                await self.conn.execute("ROLLBACK")

    async def close(self) -> None:
        """Close the connection (and end its thread) whatever state the database is in."""
        try:
            await self.conn.close()
        except sqlite3.Error as exc:  # committed data is safe in the WAL; say why and go on
            log.warning("%s: closing: %s", self.path, describe(exc))

    # -- writes -----------------------------------------------------------------------------------

    async def add_stream(
        self, kind: str, fmt: str | None, name: str, identity: str | None = None
    ) -> int:
        """A new stream's row; its id. Raises StoreFault."""
        try:
            # Under the lock: inside a batch's open transaction the row would be rolled back
            # with a failed batch while its id lives on, and the stream's offsets with it.
            async with (
                self.lock,
                self.conn.execute(
                    "INSERT INTO streams (kind, format, name, identity) VALUES (?, ?, ?, ?)",
                    (kind, fmt, name, identity),
                ) as cur,
            ):
                return int(cur.lastrowid or 0)
        except sqlite3.Error as exc:
            raise fault(self.path, exc) from None

    async def write(self, batch: Batch) -> list[Rejected]:
        """Write ``batch`` in one transaction: all of it or nothing. Rows whose values cannot be
        stored are set apart (an event goes to the quarantine with the reason) and returned;
        the rest is written. Raises StoreFault when nothing could be written."""
        rejected: list[Rejected] = []

        async def work() -> None:
            try:
                await self._write(batch)
            except ROW_ERRORS:
                # Rare: bisect on a connection of its own, in a thread, off the event loop.
                parts = batch_parts(batch)
                rejected.extend(await asyncio.to_thread(self._write_apart, parts))

        try:
            await self._transaction(work())
        except (sqlite3.Error, *ROW_ERRORS) as exc:
            raise fault(self.path, exc) from None
        return rejected

    def _write_apart(self, parts: list[tuple[int, list[Any]]]) -> list[Rejected]:
        conn = sqlite3.connect(self.path, isolation_level=None)
        try:
            for pragma in pragmas(self.busy_timeout):
                conn.execute(pragma)
            return write_parts(conn, parts)
        finally:
            conn.close()

    async def _transaction(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` under the lock, shielded: a caller that is cancelled mid-way (a session
        stopping) must not leave a transaction open on the shared connection; the work
        finishes (or rolls back) on its own and keeps the lock until then."""

        async def locked() -> None:
            async with self.lock:
                await work

        await asyncio.shield(locked())

    async def _write(self, batch: Batch) -> None:
        conn = self.conn
        await conn.execute("BEGIN IMMEDIATE")
        try:
            for index, rows in batch_parts(batch):
                await conn.executemany(BATCH_SQL[index], rows)
            await conn.execute("COMMIT")
        except BaseException:
            await self._rollback()
            raise

    async def save_config(self, config: Config) -> None:
        """Store the groups, rules, allow-lists and device mapping in force. Raises
        StoreFault."""
        try:
            await self._transaction(self._save_config(config))
        except sqlite3.Error as exc:
            raise fault(self.path, exc) from None

    async def _save_config(self, config: Config) -> None:
        conn = self.conn
        await conn.execute("BEGIN IMMEDIATE")
        try:
            for table in ("groups", "rules", "allowlist", "device_map"):
                await conn.execute(f"DELETE FROM {table}")
            rules, allow = [], []
            for key, group in config.groups.items():
                await conn.execute("INSERT INTO groups VALUES (?, ?)", (key, group.name))
                for name, r in group.range_rules.items():
                    rules.append(
                        (
                            key,
                            c.BY_NAME[name].id,
                            int(r.enabled),
                            r.min,
                            r.max,
                            r.window,
                            r.severity,
                        )
                    )
                for name, a in group.allow_rules.items():
                    rules.append(
                        (key, c.BY_NAME[name].id, int(a.enabled), None, None, None, a.severity)
                    )
                    allow += [(key, c.BY_NAME[name].id, v) for v in a.values]
            await conn.executemany("INSERT INTO rules VALUES (?, ?, ?, ?, ?, ?, ?)", rules)
            await conn.executemany("INSERT OR IGNORE INTO allowlist VALUES (?, ?, ?)", allow)
            devices = config.devices
            mapping = [(name, 1, grp) for name, grp in devices.exact.items()]
            mapping += [(pattern, 0, grp) for pattern, grp in devices.patterns]
            await conn.executemany(
                "INSERT INTO device_map (ord, pattern, exact, grp) VALUES (?, ?, ?, ?)",
                [(i, *row) for i, row in enumerate(mapping)],
            )
            await conn.execute("COMMIT")
        except BaseException:
            await self._rollback()
            raise

    async def drop_event_index(self) -> None:
        """Before a bulk load: building the index once afterwards is about twice as fast as
        keeping it up to date row by row."""
        await self.conn.execute("DROP INDEX IF EXISTS events_device_time")

    async def create_event_index(self) -> None:
        await self.conn.execute(EVENT_INDEX)

    async def count(self, table: str) -> int:
        async with self.conn.execute(f"SELECT count(*) FROM {table}") as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0


def _statements(sql: str) -> list[str]:
    """Split a schema script into statements (it has no semicolons inside literals)."""
    lines = [ln.split("--", 1)[0] for ln in sql.splitlines()]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]

"""The SQLite store (aiosqlite, WAL): schema, migrations and batched writes.

Every write is a batch in one transaction — events together with the offsets of the streams they
came from, so a restart resumes exactly where the committed data ends.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Coroutine
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import aiosqlite
import orjson

from engine import catalogue as c
from engine.alert import Alert
from engine.config import Config
from engine.files import precreate_database
from engine.timestamps import US

SCHEMA_VERSION = 2
_MIGRATIONS = ("schema.sql", "schema_v2.sql")


def _migrations() -> list[str]:
    """SQL to go from version i to i + 1, in order."""
    files = resources.files("engine")
    return [files.joinpath(name).read_text() for name in _MIGRATIONS]


def schema_statements() -> list[str]:
    """Every statement that builds the current schema from nothing (tables, views, indexes),
    in order: what a new database of this version holds, for copies such as exports."""
    return _statements("\n".join(_migrations()))


class StoreError(Exception):
    """The database cannot be used (not an iotwatch database, newer schema, not writable)."""


@dataclass(slots=True)
class Batch:
    """Everything one transaction writes."""

    events: list[tuple[Any, ...]] = field(default_factory=list)
    bad: list[tuple[Any, ...]] = field(default_factory=list)  # (stream, pos, reason, raw)
    console: list[tuple[Any, ...]] = field(default_factory=list)  # (stream, pos, time_us, line)
    devices: list[tuple[Any, ...]] = field(
        default_factory=list
    )  # (id, name, grp, declared, first, last)
    alerts: list[Alert] = field(default_factory=list)
    # (alert, at_us, window_us, count_before, count_after)
    amendments: list[tuple[Any, ...]] = field(default_factory=list)
    # (offset, records, events, expired, quarantined, latest_us, format, state, id)
    streams: list[tuple[Any, ...]] = field(default_factory=list)
    silenced: list[int] = field(default_factory=list)  # alert ids a silence covers

    def __len__(self) -> int:
        return len(self.events) + len(self.bad) + len(self.console)


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
            orjson.dumps(a.counts).decode(),
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
# Rows are ``(stream, device id, expired) + Event``: the event's device name (?5) is not stored.
_INSERT_EVENT = """
INSERT INTO events (stream, device, expired, time_us, name, rule, unauthorized, allow, value, weight,
                    host_timed, pos)
VALUES (?1, ?2, ?3, ?4, ?6, nullif(?7, 0), ?8, nullif(?9, 0), ?10, ?11, ?12, ?13)
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


_INSERT_BAD = "INSERT INTO quarantine (stream, pos, reason, raw) VALUES (?, ?, ?, ?)"
_INSERT_CONSOLE = "INSERT INTO console (stream, pos, time_us, line) VALUES (?, ?, ?, ?)"
_INSERT_AMENDMENT = """
INSERT INTO amendments (alert, at_us, window_us, count_before, count_after) VALUES (?, ?, ?, ?, ?)
"""

# The statements of a batch, in the order they run; ``batch_parts`` refers to them by index so
# a batch can cross a process boundary as plain data.
BATCH_SQL = (
    _UPSERT_DEVICE,
    _INSERT_EVENT,
    _INSERT_BAD,
    _INSERT_CONSOLE,
    _UPSERT_ALERT,
    _INSERT_AMENDMENT,
    _UPDATE_STREAM,
    "UPDATE alerts SET silenced = 1 WHERE id = ?",
)


def batch_parts(batch: Batch) -> list[tuple[int, list[tuple[Any, ...]]]]:
    """The non-empty (statement index, rows) pairs of ``batch``."""
    parts = [
        batch.devices,
        batch.events,
        batch.bad,
        batch.console,
        [alert_row(a) for a in batch.alerts],
        batch.amendments,
        batch.streams,
        [(i,) for i in batch.silenced],
    ]
    return [(i, rows) for i, rows in enumerate(parts) if rows]


def write_parts(conn: sqlite3.Connection, parts: list[tuple[int, list[Any]]]) -> None:
    """Write batch parts in one transaction on a plain sqlite3 connection."""
    conn.execute("BEGIN")
    try:
        for index, rows in parts:
            conn.executemany(BATCH_SQL[index], rows)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


EVENT_INDEX = "CREATE INDEX IF NOT EXISTS events_device_time ON events (device, time_us)"
PRAGMAS = (
    "PRAGMA journal_mode = WAL",
    "PRAGMA synchronous = NORMAL",
    "PRAGMA busy_timeout = 5000",
)


class Store:
    """An open iotwatch database."""

    def __init__(self, conn: aiosqlite.Connection, path: str) -> None:
        self.conn = conn
        self.path = path
        # One transaction at a time on the connection: batches, configuration, operator actions.
        self.lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: str | Path, *, create: bool = True) -> Store:
        """Open (and create or migrate) the database at ``path`` in WAL mode."""
        path = str(path)
        if not create and not Path(path).exists():
            raise StoreError(f"{path}: no such database")
        precreate_database(path)  # mode 0600: see engine.files
        try:
            conn = await aiosqlite.connect(path, isolation_level=None)
        except sqlite3.Error as exc:
            raise StoreError(f"{path}: {exc}") from None
        store = cls(conn, path)
        try:
            await store._prepare()
        except (sqlite3.Error, StoreError) as exc:
            await conn.close()
            if isinstance(exc, StoreError):
                raise
            raise StoreError(f"{path}: {exc}") from None
        return store

    async def _prepare(self) -> None:
        conn = self.conn
        for pragma in PRAGMAS:
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
        if version < SCHEMA_VERSION:
            await conn.execute("BEGIN IMMEDIATE")
            try:
                for sql in migrations[version:]:
                    for statement in _statements(sql):
                        await conn.execute(statement)
                if version == 0:
                    await conn.executemany(
                        "INSERT INTO rule_types VALUES (?, ?, ?, ?, ?, ?)",
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
                await conn.execute("ROLLBACK")
                raise

    async def schema_version(self) -> int | None:
        """The schema version, or None when the file has no iotwatch meta table."""
        try:
            async with self.conn.execute(
                "SELECT value FROM meta WHERE key = 'schema_version'"
            ) as cur:
                row = await cur.fetchone()
        except sqlite3.OperationalError:
            return None
        return int(row[0]) if row else None

    async def close(self) -> None:
        await self.conn.close()

    # -- writes -----------------------------------------------------------------------------------

    async def add_stream(
        self, kind: str, fmt: str | None, name: str, identity: str | None = None
    ) -> int:
        async with self.conn.execute(
            "INSERT INTO streams (kind, format, name, identity) VALUES (?, ?, ?, ?)",
            (kind, fmt, name, identity),
        ) as cur:
            return int(cur.lastrowid or 0)

    async def write(self, batch: Batch) -> None:
        """Write ``batch`` in one transaction."""
        await self._transaction(self._write(batch))

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
        await conn.execute("BEGIN")
        try:
            for index, rows in batch_parts(batch):
                await conn.executemany(BATCH_SQL[index], rows)
            await conn.execute("COMMIT")
        except BaseException:
            await conn.execute("ROLLBACK")
            raise

    async def save_config(self, config: Config) -> None:
        """Store the groups, rules, allow-lists and device mapping in force."""
        await self._transaction(self._save_config(config))

    async def _save_config(self, config: Config) -> None:
        conn = self.conn
        await conn.execute("BEGIN")
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
            await conn.execute("ROLLBACK")
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

"""Restart: rebuild the evaluator's state from the store.

The stored events are evaluated again in the order they were committed, expired where they were
recorded expired, which rebuilds windows, every device's clock, known devices and episodes
exactly. The rebuilt alerts take over the ids of the stored alerts they overlap (withdrawn ones
stay withdrawn records), with their amended flags, so operator notes and acknowledgements stay
attached.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from engine.alert import AlertBook
from engine.config import Config
from engine.evaluator import Evaluator
from engine.event import Event, new_event
from engine.store import Store
from engine.watermark import StreamClock

FETCH = 50_000


@dataclass(slots=True)
class StreamRow:
    """A stream as the store knows it."""

    id: int
    kind: str
    format: str | None
    name: str
    identity: str | None
    offset: int
    records: int
    quarantined: int
    clock: StreamClock


@dataclass(slots=True)
class Restored:
    """What a restart starts from."""

    evaluator: Evaluator
    streams: list[StreamRow] = field(default_factory=list)
    events: int = 0
    orphans: int = 0  # stored alerts no rebuilt alert overlaps (kept as they are)


async def restore(store: Store, config: Config) -> Restored:
    """Rebuild an evaluator for ``config`` from everything ``store`` holds."""
    conn = store.conn
    async with conn.execute("SELECT id, name FROM devices") as cur:
        device_ids = {name: id for id, name in await cur.fetchall()}
    async with conn.execute("SELECT coalesce(max(id), 0) FROM alerts") as cur:
        row = await cur.fetchone()
    last_alert = int(row[0]) if row else 0
    book = AlertBook(first_id=last_alert + 1, live=True)
    evaluator = Evaluator(config, book, device_ids, incremental=True)
    evaluator.configure_sources(config)
    restored = Restored(evaluator)
    clocks: dict[int, StreamClock] = {}
    async with conn.execute(
        "SELECT id, kind, format, name, identity, offset, records, quarantined FROM streams"
        " ORDER BY id"
    ) as cur:
        for sid, kind, fmt, name, identity, offset, records, quarantined in await cur.fetchall():
            clock = evaluator.add_stream(name, fmt)
            clocks[sid] = clock
            restored.streams.append(
                StreamRow(sid, kind, fmt, name, identity, offset, records, quarantined, clock)
            )
    names = {v: k for k, v in device_ids.items()}
    async with conn.execute(
        "SELECT stream, pos, time_us, device, name, rule, unauthorized, allow, value, weight,"
        " expired, host_timed FROM events ORDER BY id"
    ) as cur:
        while rows := await cur.fetchmany(FETCH):
            run: list[Event] = []
            expired: list[bool] = []
            run_stream = rows[0][0]
            for sid, pos, t, dev, name, rule, unauth, allow, value, weight, gone, host in rows:
                if sid != run_stream:
                    evaluator.process(clocks[run_stream], run, expired_flags=expired)
                    run, expired, run_stream = [], [], sid
                run.append(
                    new_event(
                        (
                            t,
                            names[dev],
                            name,
                            rule or 0,
                            bool(unauth),
                            allow or 0,
                            value,
                            weight,
                            bool(host),
                            pos,
                        )
                    )
                )
                expired.append(bool(gone))
            evaluator.process(clocks[run_stream], run, expired_flags=expired)
            restored.events += len(rows)
    for row in restored.streams:
        row.clock.holding = False
    evaluator.new_devices = []
    restored.orphans = await _reconcile(store, book)
    return restored


async def _reconcile(store: Store, book: AlertBook) -> int:
    """Give rebuilt alerts the ids (and amended flags) of the stored alerts they overlap; the
    stored alerts left over stay claimable by alerts the wall clock raises later. Withdrawn
    records are never claimed. Returns how many are left over."""
    stored: dict[tuple[int, str, str | None], list[tuple[int, int, int]]] = defaultdict(list)
    amended: set[int] = set()
    async with store.conn.execute(
        "SELECT id, rule, device, value, start_us, end_us, amended FROM alerts"
        " WHERE state != 'withdrawn'"
    ) as cur:
        for aid, rule, device, value, start, end, was_amended in await cur.fetchall():
            stored[(rule, device, value)].append((aid, start, end))
            if was_amended:
                amended.add(aid)
    book.unclaimed = dict(stored)
    rebuilt = sorted(book.alerts.values(), key=lambda a: (a.start, a.id))
    book.alerts = {}
    for alert in rebuilt:
        if not book.claim(alert):
            alert.id = book.next_id
            book.next_id += 1
        alert.amended = alert.id in amended  # the rebuild's own judging is not an amendment
        book.alerts[alert.id] = alert
    book.dirty = dict(book.alerts)  # what the rebuild withdrew was never shown
    book.amendments = []
    return sum(len(v) for v in book.unclaimed.values())

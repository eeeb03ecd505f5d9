"""Restart: rebuild the evaluator's state from the store.

The newest checkpoint (the evaluator's state saved with the events it reflects, see
``engine.checkpoint``) is loaded, and the events committed after it are evaluated again in
the order they were committed, expired where they were recorded expired, with each
configuration change applied between the events it came between (``config_log``). Without a
usable checkpoint every stored event is evaluated again, from the configuration in force at the
first one. Either way the state is the one the session had: windows, every device's clock,
known devices and episodes.

Alerts the checkpoint holds keep their ids. Alerts raised again from the events after it take
over the ids (and amended flags) of the stored alerts they overlap (withdrawn ones stay
withdrawn records), so operator notes and acknowledgements stay attached.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from engine.alert import WITHDRAWN, Alert, AlertBook
from engine.checkpoint import CheckpointError
from engine.checkpoint import load as load_checkpoint
from engine.config import Config, ConfigError
from engine.config_log import parse_logged
from engine.evaluator import Evaluator
from engine.event import Event, new_event
from engine.store import SCHEMA_VERSION, Store
from engine.watermark import StreamClock

log = logging.getLogger("iotwatch.restore")
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
    events: int = 0  # events evaluated again
    orphans: int = 0  # stored alerts no rebuilt alert overlaps (kept as they are)
    checkpoint: bool = False  # started from a checkpoint
    why_not: str | None = None  # why a checkpoint there was could not be used
    config: Config | None = None  # the configuration in force at the last stored event
    logged: bool = False  # the store holds a configuration log


@dataclass(slots=True)
class _Logged:
    id: int
    last_event: int
    at: int
    text: str


async def restore(store: Store, config: Config) -> Restored:
    """Rebuild an incremental evaluator from everything ``store`` holds; ``config`` is the
    configuration of this start (its sources, and the rules when the store logged none)."""
    conn = store.conn
    device_ids = {name: i for i, name in await _rows(store, "SELECT id, name FROM devices")}
    ((last_alert,),) = await _rows(store, "SELECT coalesce(max(id), 0) FROM alerts")
    streams = await _rows(
        store,
        "SELECT id, kind, format, name, identity, offset, records, quarantined FROM streams"
        " ORDER BY id",
    )
    logs = [_Logged(*r) for r in await _rows(store, "SELECT * FROM config_log ORDER BY id")]
    saved = await _rows(
        store, "SELECT last_event, config, state FROM checkpoints ORDER BY id DESC LIMIT 1"
    )

    evaluator: Evaluator | None = None
    why_not = None
    start_after = 0
    from_checkpoint = False
    if saved:
        last_event, config_id, state = saved[0]
        in_force = next((x for x in logs if x.id == config_id), None)
        clocks = _clocks(streams)
        book = AlertBook(first_id=last_alert + 1, live=True)
        try:
            base = parse_logged(in_force.text) if in_force is not None else config
            evaluator = load_checkpoint(state, base, clocks, device_ids, SCHEMA_VERSION, book)
        except (CheckpointError, ConfigError, ValueError) as exc:
            why_not = str(exc)
            log.warning("the saved state was not used (%s); rebuilding from the events", exc)
            evaluator = None
        else:
            start_after, from_checkpoint = last_event, True
            pending = [x for x in logs if x.id > config_id]
            in_force_config = base
    if evaluator is None:
        clocks = _clocks(streams)
        book = AlertBook(first_id=last_alert + 1, live=True)
        first = logs[0] if logs and logs[0].last_event == 0 else None
        in_force_config = parse_logged(first.text) if first is not None else config
        evaluator = Evaluator(in_force_config, book, device_ids, incremental=True)
        pending = logs[1:] if first is not None else logs
    evaluator.watermark.streams = list(clocks.values())
    evaluator.configure_sources(config)
    known = _held(evaluator)
    first_new = book.next_id = max(book.next_id, last_alert + 1)
    restored = Restored(evaluator, checkpoint=from_checkpoint)
    restored.why_not = why_not
    restored.logged = bool(logs)
    for sid, kind, fmt, name, identity, offset, records, quarantined in streams:
        restored.streams.append(
            StreamRow(sid, kind, fmt, name, identity, offset, records, quarantined, clocks[sid])
        )

    names = {v: k for k, v in device_ids.items()}
    async with conn.execute(
        "SELECT id, stream, pos, time_us, device, name, rule, unauthorized, allow, value, weight,"
        " expired, host_timed FROM events WHERE id > ? ORDER BY id",
        (start_after,),
    ) as cur:
        while rows := await cur.fetchmany(FETCH):
            run: list[Event] = []
            expired: list[bool] = []
            run_stream = rows[0][1]
            for eid, sid, pos, t, dev, name, rule, unauth, allow, value, weight, gone, host in rows:
                if sid != run_stream or (pending and pending[0].last_event < eid):
                    evaluator.process(clocks[run_stream], run, expired_flags=expired)
                    run, expired, run_stream = [], [], sid
                    while pending and pending[0].last_event < eid:
                        in_force_config = _apply(evaluator, pending.pop(0))
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
    while pending:
        in_force_config = _apply(evaluator, pending.pop(0))
    if evaluator.poisoned:  # stored events this iotwatch cannot evaluate: skipped, said
        log.error("%d stored events could not be evaluated again", len(evaluator.take_poisoned()))
    restored.config = in_force_config
    for row in restored.streams:
        row.clock.holding = False
    evaluator.new_devices = []
    restored.orphans = await _reconcile(store, book, known, first_new)
    return restored


async def _rows(store: Store, sql: str) -> list[Any]:
    async with store.conn.execute(sql) as cur:
        return list(await cur.fetchall())


def _clocks(streams: list[Any]) -> dict[int, StreamClock]:
    from engine.watermark import feeds_of

    return {sid: StreamClock(name, feeds_of(fmt)) for sid, _k, fmt, name, *_ in streams}


def _apply(evaluator: Evaluator, logged: _Logged) -> Config:
    """A configuration change, applied between the events it came between, at its moment."""
    config = parse_logged(logged.text)
    evaluator.reconfigure(config, now=logged.at)
    return config


def _held(evaluator: Evaluator) -> set[int]:
    """The ids of every alert the evaluator holds (loaded from a checkpoint)."""
    return {a.id for a in _alerts(evaluator)}


def _alerts(evaluator: Evaluator) -> list[Alert]:
    out = list(evaluator.book.alerts.values())
    for dev in evaluator.devices.values():
        for track in dev.tracks.values():
            while track is not None:
                out += track.alerts
                track = track.previous
    for episodes in evaluator.allow.values():
        out += episodes.alerts
    return out


async def _reconcile(store: Store, book: AlertBook, known: set[int], first_new: int) -> int:
    """Give the alerts raised again after the checkpoint (ids from ``first_new`` on) the ids
    and amended flags of the stored alerts they overlap; stored alerts left over stay
    claimable by alerts the wall clock raises later. Withdrawn records and the alerts the
    checkpoint holds (``known``) are never claimed. Returns how many are left over."""
    stored: dict[tuple[int, str, str | None], list[tuple[int, int, int]]] = defaultdict(list)
    amended: set[int] = set()
    async with store.conn.execute(
        "SELECT id, rule, device, value, start_us, end_us, amended FROM alerts"
        " WHERE state != 'withdrawn'"
    ) as cur:
        for aid, rule, device, value, start, end, was_amended in await cur.fetchall():
            if aid in known:
                continue
            stored[(rule, device, value)].append((aid, start, end))
            if was_amended:
                amended.add(aid)
    book.unclaimed = dict(stored)
    changed = book.dirty
    rebuilt = sorted(
        (a for a in book.alerts.values() if a.id >= first_new), key=lambda a: (a.start, a.id)
    )
    for alert in rebuilt:
        del book.alerts[alert.id]
    for alert in rebuilt:
        if not book.claim(alert):
            alert.id = book.next_id
            book.next_id += 1
        alert.amended = alert.id in amended  # the rebuild's own judging is not an amendment
        book.alerts[alert.id] = alert
    # To write: what changed since the checkpoint (everything, after a full rebuild); an alert
    # raised and withdrawn again after it was never shown.
    book.dirty = {
        a.id: a
        for a in [*changed.values(), *rebuilt]
        if not (a.state == WITHDRAWN and a.id >= first_new and a.id not in book.alerts)
    }
    book.amendments = []
    return sum(len(v) for v in book.unclaimed.values())

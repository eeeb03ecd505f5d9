"""Checkpoints: a live evaluator's whole state, saved with the events it reflects.

A session writes a checkpoint in the same transaction as a batch of events, so the checkpoint is
exactly the state after the last event it names. A restart loads the newest one and evaluates
only the events committed after it, which makes restarting independent of how many events the
store holds. A checkpoint is self-describing and checked before it is trusted: another format,
contract or store schema version, or anything that does not read back whole, means a full
rebuild from the events instead.

The state is plain data in MessagePack: devices and their per-rule tracks (window counts still
open to amendment as int64 bytes, pending counts, the chain of rule versions), every alert a
track or an allow-list episode still holds, each stream's clocks, and the evaluator's counters.
"""

from __future__ import annotations

from array import array
from collections.abc import Mapping
from typing import Any

import msgpack

from engine import catalogue as c
from engine.alert import Alert, AlertBook
from engine.config import Config
from engine.episode import AllowEpisodes, RangeTrack
from engine.evaluator import Device, Evaluator
from engine.watermark import StreamClock

FORMAT = 1  # of this module's layout
CONTRACT = 2  # SPEC contract version whose semantics the state follows


class CheckpointError(Exception):
    """A checkpoint that cannot be used: the caller rebuilds from the events instead."""


def dump(evaluator: Evaluator, clocks: Mapping[int, StreamClock], schema: int) -> bytes:
    """The state of ``evaluator`` and of the streams ``clocks`` (by store stream id)."""
    alerts: dict[int, Alert] = {}

    def ref(alert: Alert) -> int:
        alerts[alert.id] = alert
        return alert.id

    devices = []
    for dev in evaluator.devices.values():
        tracks = []
        for rule_id, newest in dev.tracks.items():
            chain = []
            track: RangeTrack | None = newest
            while track is not None:
                chain.append(
                    (
                        track.rule.id,
                        track.group,
                        track.severity,
                        track.min,
                        track.max,
                        track.size,
                        track.first,
                        track.start,
                        track.next,
                        track.stop,
                        track.cur,
                        list(track.pending.items()),
                        track.base,
                        track.judged.tobytes(),
                        [ref(a) for a in track.alerts],
                    )
                )
                track = track.previous
            tracks.append((rule_id, chain))
        devices.append((dev.name, dev.id, dev.first, dev.last, tracks, dev.connects, dev.unknown))
    allow = [
        (key[0], key[1], key[2], e.group, e.severity, [ref(a) for a in e.alerts])
        for key, e in evaluator.allow.items()
    ]
    for alert in evaluator.book.alerts.values():
        ref(alert)
    book = evaluator.book
    state = {
        "format": FORMAT,
        "contract": CONTRACT,
        "schema": schema,
        "t_first": evaluator.t_first,
        "events": evaluator.events,
        "expired": evaluator.expired,
        "next_device_id": evaluator._next_device_id,
        "swept": [(s, size, upto) for (s, size), upto in evaluator._swept.items()],
        "wall": evaluator.wall,
        "next_alert": book.next_id,
        "live": sorted(book.alerts),
        "unclaimed": [(k[0], k[1], k[2], v) for k, v in book.unclaimed.items() if v],
        "alerts": [_alert(a) for a in alerts.values()],
        "devices": devices,
        "allow": allow,
        "streams": [
            (sid, clock.latest, list(clock.devices.items()), clock.events, clock.expired)
            for sid, clock in clocks.items()
        ],
    }
    return msgpack.packb(state, use_bin_type=True)


def load(
    blob: bytes,
    config: Config,
    clocks: Mapping[int, StreamClock],
    device_ids: dict[str, int],
    schema: int,
    book: AlertBook,
) -> Evaluator:
    """An incremental evaluator for ``config`` in the state ``blob`` holds; the stream clocks
    ``clocks`` (by store stream id) take their saved times. Raises CheckpointError."""
    try:
        state = msgpack.unpackb(blob, raw=False, strict_map_key=False)
    except Exception as exc:
        raise CheckpointError(f"unreadable ({type(exc).__name__})") from None
    if not isinstance(state, dict):
        raise CheckpointError("not a checkpoint")
    for key, want in (("format", FORMAT), ("contract", CONTRACT), ("schema", schema)):
        if state.get(key) != want:
            raise CheckpointError(f"{key} {state.get(key)!r}, this iotwatch needs {want}")
    try:
        return _build(state, config, clocks, device_ids, book)
    except CheckpointError:
        raise
    except Exception as exc:  # anything that does not read back whole is not trusted
        raise CheckpointError(f"inconsistent ({type(exc).__name__}: {exc})") from None


def _alert(a: Alert) -> tuple[Any, ...]:
    return (
        a.id,
        a.rule.id,
        a.device,
        a.group,
        a.severity,
        a.state,
        a.value,
        a.start,
        a.end,
        a.first,
        a.size,
        a.counts,
        a.min,
        a.max,
        a.occurrences,
        a.amended,
        a.into,
    )


def _build(
    state: dict[str, Any],
    config: Config,
    clocks: Mapping[int, StreamClock],
    device_ids: dict[str, int],
    book: AlertBook,
) -> Evaluator:
    alerts: dict[int, Alert] = {}
    for row in state["alerts"]:
        (aid, rule_id, device, group, severity, st, value, start, end, first, size) = row[:11]
        counts, lo, hi, occurrences, amended, into = row[11:]
        alert = Alert(aid, c.BY_ID[rule_id], device, group, severity)
        alert.state, alert.value, alert.start, alert.end = st, value, start, end
        alert.first, alert.size, alert.counts = first, size, list(counts)
        alert.min, alert.max, alert.occurrences = lo, hi, occurrences
        alert.amended, alert.into = bool(amended), into
        alerts[aid] = alert
    book.next_id = max(book.next_id, state["next_alert"])
    book.alerts = {aid: alerts[aid] for aid in state["live"]}
    book.unclaimed = {
        (r, d, v): [tuple(e) for e in entries] for r, d, v, entries in state["unclaimed"]
    }
    ev = Evaluator(config, book, device_ids, incremental=True)
    ev.configure_sources(config)
    ev.t_first, ev.events, ev.expired = state["t_first"], state["events"], state["expired"]
    ev._next_device_id = max(ev._next_device_id, state["next_device_id"])
    ev._swept = {(s, size): upto for s, size, upto in state["swept"]}
    ev.wall = state["wall"]
    for name, did, first, last, tracks, connects, unknown in state["devices"]:
        dev = Device(did, name, ev._plan(name), name in config.devices.declared)
        dev.first, dev.last = first, last
        dev.connects = [(int(t), str(p)) for t, p in connects]
        dev.unknown = [list(m) for m in unknown]
        for rule_id, chain in tracks:
            newer: RangeTrack | None = None
            for saved in chain:
                track = _track(book, saved, name, alerts)
                ev._tracks_by_size.setdefault((track.source, track.size), []).append(track)
                if newer is None:
                    dev.tracks[rule_id] = track
                else:
                    newer.previous = track
                newer = track
        ev.devices[name] = dev
    for rule_id, device, value, group, severity, ids in state["allow"]:
        episodes = AllowEpisodes(book, c.BY_ID[rule_id], device, value, group, severity, ev.quiet)
        episodes.alerts = [alerts[i] for i in ids]
        episodes.starts = [a.start for a in episodes.alerts]
        ev.allow[(rule_id, device, value)] = episodes
    for sid, latest, seen, events, expired in state["streams"]:
        clock = clocks.get(sid)
        if clock is None:
            raise CheckpointError(f"stream {sid} is not in the store")
        clock.latest, clock.devices = latest, dict(seen)
        clock.events, clock.expired = events, expired
    ev.new_devices = []
    return ev


def _track(book: AlertBook, saved: list[Any], device: str, alerts: dict[int, Alert]) -> RangeTrack:
    (rule_id, group, severity, lo, hi, size, first, start, nxt, stop, cur) = saved[:11]
    pending, base, judged, ids = saved[11:]
    track = RangeTrack(book, c.BY_ID[rule_id], device, group, severity, lo, hi, size, first, start)
    track.start, track.next, track.stop, track.cur = start, nxt, stop, cur
    track.pending = {int(i): int(n) for i, n in pending}
    track.base = base
    track.judged = array("q")
    track.judged.frombytes(judged)
    if track.base + len(track.judged) != track.next:
        raise CheckpointError(f"track {device}/{rule_id}: judged counts do not end at next")
    track.alerts = [alerts[i] for i in ids]
    return track

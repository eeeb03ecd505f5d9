"""SPEC §4: results do not depend on how input is chunked, how separate streams interleave, or
how the devices of one stream interleave; a live (incremental) evaluation converges to the replay.

Hypothesis builds small datasets — a few hub-events and security-message streams with times
wandering around a few small windows (some out of order within ``horizon``, some beyond), random
weights, a declared device, range and allow-list rules — and checks that

(a) feeding a stream to ``JsonStream`` in arbitrary byte chunks decodes the same events;
(b) replaying the inputs in any order gives identical alerts, and so does any permutation of a
    stream's records across devices that keeps each device's own order;
(c) feeding the decoded streams to ``Evaluator`` in any interleaving that keeps each stream's own
    order gives the same ``finish()`` alerts as a replay — in replay mode, and in the live
    (incremental) mode that judges windows as they complete and amends them;
(d) with a wall clock judging windows early (live amendments), the non-withdrawn alerts at the
    end are the replay's, window for window;
(e) the alerts equal a direct model of SPEC §4 written from the contract alone.
"""

from __future__ import annotations

import itertools
import random
import tempfile
import tomllib
from pathlib import Path
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.catalogue import BY_NAME
from engine.config import Config, parse_config
from engine.evaluator import Evaluator
from engine.event import Event
from engine.jsonstream import JsonStream
from engine.timestamps import US, format_time, parse_time
from tests.conftest import run_replay

T0 = parse_time("2026-11-28T10:00:00Z")
CONFIG_TEXT = """
[engine]
lateness = "PT1M"
horizon = "PT1M"
quiet = "PT2M"

[devices]
"d0" = "default"
"g-*" = "lab"

[groups.default.rules.MqttD2CMessagesNotInAllowedRange]
min = 1
max = 3
window = "PT2M"

[groups.default.rules.AmqpD2CMessagesNotInAllowedRange]
max = 2
window = "PT1M"

[groups.default.rules.AmqpC2DMessagesNotInAllowedRange]
min = 1
max = 2
window = "PT3M"

[groups.default.rules.DirectMethodInvokesNotInAllowedRange]
max = 1
window = "PT5M"

[groups.default.rules.UnauthorizedOperationsNotInAllowedRange]
max = 1
window = "PT2M"

[groups.default.rules.ActiveConnectionsNotInAllowedRange]
min = 1
max = 3
window = "PT3M"

[groups.default.rules.FailedLocalLoginsNotInAllowedRange]
max = 2
window = "PT1M"

[groups.default.rules.ProcessNotAllowed]
allow = ["ok"]

[groups.default.rules.ConnectionToIpNotAllowed]
allow = ["10.0.0.0/8"]

[groups.default.rules.LocalUserNotAllowed]
allow = ["root"]

[groups.lab.rules.MqttD2CMessagesNotInAllowedRange]
max = 1
window = "PT1M"

[groups.lab.rules.ConnectionFromIpNotAllowed]
allow = []
"""
CONFIG: Config = parse_config(tomllib.loads(CONFIG_TEXT), "property.toml")
DEVICES = ("a", "b", "g-1", "d0")
HUB_OPS = (
    ("d2c", "mqtt"),
    ("d2c", "Amqp"),
    ("d2c", "MqttWs"),
    ("c2d", "amqp"),
    ("method", None),
    ("c2d-reject", "http"),
    ("purge", None),
)

# A stream's clock moves forward in multiples of 15 s (so window edges are hit often); each event
# lies at the clock or behind it: within the horizon (PT1M, the edge included) or beyond it.
advance = st.integers(0, 4).map(lambda n: n * 15 * US)
behind = st.sampled_from([0] * 8 + [15, 30, 45, 60] + [75, 90, 120]).map(lambda s: -s * US)
weights = st.one_of(st.none(), st.integers(0, 4), st.integers(0, 4).map(str))


@st.composite
def hub_stream(draw: st.DrawFn) -> list[tuple[int, dict[str, Any]]]:
    """(time, record) pairs of one hub-events stream, in stream order."""
    clock = T0 + draw(st.integers(0, 8)) * 30 * US
    out = []
    for _ in range(draw(st.integers(1, 18))):
        clock += draw(advance)
        t = clock + draw(behind)
        op, protocol = draw(st.sampled_from(HUB_OPS))
        rec: dict[str, Any] = {
            "time": format_time(t),
            "deviceId": draw(st.sampled_from(DEVICES)),
            "op": op,
        }
        if protocol is not None:
            rec["protocol"] = protocol
        if draw(st.booleans()):
            rec["status"] = draw(st.sampled_from([200, 401, 401003, 404]))
        count = draw(weights)
        if isinstance(count, int):
            rec["count"] = count
        out.append((t, rec))
    return out


def _item(draw: st.DrawFn, name: str) -> dict[str, Any]:
    if name == "ProcessCreate":
        item: dict[str, Any] = {
            "Executable": draw(st.sampled_from(["ok", "/usr/bin/ok", "/bin/bad", "/opt/x"]))
        }
    elif name == "ConnectionCreate":
        item = {
            "Direction": draw(st.sampled_from(["Out", "In"])),
            "RemoteAddress": draw(st.sampled_from(["10.0.0.1", "8.8.8.8", "bogus"])),
        }
    elif name == "Login":
        item = {
            "Result": draw(st.sampled_from(["Fail", "Success"])),
            "UserName": draw(st.sampled_from(["root", "eve"])),
        }
    else:
        item = {"OSName": "RTOS"}
    hits = draw(weights)
    if hits is not None:
        item["ExtraDetails"] = {"HitCount": hits}
    return item


@st.composite
def agent_stream(draw: st.DrawFn) -> list[tuple[int, dict[str, Any]]]:
    """(time of the first event, message) pairs of one security-messages stream."""
    clock = T0 + draw(st.integers(0, 8)) * 30 * US
    out = []
    for _ in range(draw(st.integers(1, 10))):
        events = []
        first = None
        for _ in range(draw(st.integers(1, 3))):
            clock += draw(advance)
            t = clock + draw(behind)
            first = t if first is None else first
            name = draw(
                st.sampled_from(["ProcessCreate", "ConnectionCreate", "Login", "SystemInformation"])
            )
            items = [_item(draw, name) for _ in range(draw(st.integers(1, 2)))]
            events.append(
                {
                    "Name": name,
                    "Category": "Triggered",
                    "EventType": "Security",
                    "IsEmpty": False,
                    "TimestampUTC": format_time(t),
                    "Payload": items,
                }
            )
        device = draw(st.sampled_from(DEVICES))
        out.append((first or clock, {"deviceId": device, "body": {"Events": events}}))
    return out


@st.composite
def datasets(draw: st.DrawFn) -> list[bytes]:
    """The bytes of 2..4 streams: hub-events and security messages."""
    streams = [draw(hub_stream())]
    streams += [draw(agent_stream())]
    streams += draw(st.lists(st.one_of(hub_stream(), agent_stream()), max_size=2))
    return [b"".join(orjson.dumps(rec) + b"\n" for _, rec in s) for s in streams]


def decode(data: bytes, cuts: list[int] | None = None) -> tuple[list[Event], list[Any], int]:
    """Decode ``data`` whole, or cut at ``cuts``; returns events, bad records, record count."""
    stream = JsonStream()
    bounds = [0, *sorted(set(cuts or [])), len(data)]
    for lo, hi in itertools.pairwise(bounds):
        stream.feed(data[lo:hi])
    stream.finish()
    events, bad = stream.take()
    return events, bad, stream.records


def write(dir: Path, streams: list[bytes]) -> list[Path]:
    paths = []
    for i, data in enumerate(streams):
        path = dir / f"s{i}.jsonl"
        path.write_bytes(data)
        paths.append(path)
    return paths


# --- (a) chunking ----------------------------------------------------------------------------------


@st.composite
def cut_stream(draw: st.DrawFn) -> tuple[bytes, list[int]]:
    streams = draw(datasets())
    data = draw(st.sampled_from(streams))
    if draw(st.booleans()):
        data = data.replace(b"\n", b"\r\n")
    if draw(st.booleans()):  # a junk line and a last line without its newline
        lines = data.split(b"\n")
        lines.insert(draw(st.integers(0, len(lines))), b'{"broken": ')
        data = b"\n".join(lines).rstrip(b"\n")
    cuts = draw(st.lists(st.integers(0, len(data)), max_size=12))
    return data, cuts


@settings(max_examples=150, deadline=None)
@given(cut_stream())
def test_chunking_does_not_change_decoded_events(case: tuple[bytes, list[int]]) -> None:
    data, cuts = case
    whole = decode(data)
    assert decode(data, cuts) == whole
    assert decode(data, list(range(1, len(data)))) == whole  # byte by byte


# --- (b) input order -------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(datasets(), st.randoms(use_true_random=False))
def test_input_order_does_not_change_alerts(streams: list[bytes], rnd: random.Random) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        paths = write(Path(tmp), streams)
        reference, ref_summary = run_replay(CONFIG, paths)
        shuffled = paths[:]
        rnd.shuffle(shuffled)
        alerts, summary = run_replay(CONFIG, shuffled)
        assert alerts == reference
        assert (summary.events, summary.expired) == (ref_summary.events, ref_summary.expired)
        reverse, _ = run_replay(CONFIG, paths[::-1])
        assert reverse == reference


def shuffle_devices(data: bytes, rnd: random.Random) -> bytes:
    """The stream's lines in another order that keeps each device's own lines in order."""
    lines = data.splitlines(keepends=True)
    by_device: dict[str, list[bytes]] = {}
    order: list[str] = []
    for line in lines:
        rec = orjson.loads(line)
        device = rec.get("deviceId", "")
        by_device.setdefault(device, []).append(line)
        order.append(device)
    rnd.shuffle(order)
    cursors = dict.fromkeys(by_device, 0)
    out = []
    for device in order:
        out.append(by_device[device][cursors[device]])
        cursors[device] += 1
    return b"".join(out)


@settings(max_examples=60, deadline=None)
@given(datasets(), st.randoms(use_true_random=False))
def test_device_interleaving_within_a_stream_does_not_change_alerts(
    streams: list[bytes], rnd: random.Random
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        reference, ref_summary = run_replay(CONFIG, write(Path(tmp), streams))
    shuffled = [shuffle_devices(data, rnd) for data in streams]
    with tempfile.TemporaryDirectory() as tmp:
        alerts, summary = run_replay(CONFIG, write(Path(tmp), shuffled))
    assert alerts == reference
    assert (summary.events, summary.expired) == (ref_summary.events, ref_summary.expired)


# --- (c) interleaving straight into the evaluator --------------------------------------------------

FORMATS = ("hub-events", "security-messages")


def stream_format(data: bytes) -> str:
    return FORMATS[1] if b'"body"' in data[:200] else FORMATS[0]


def interleave(
    streams: list[bytes], rnd: random.Random, release_at_end: bool, incremental: bool = False
) -> list[dict]:
    """Feed the streams' events in random batches, each stream in its own order."""
    ev = Evaluator(CONFIG, incremental=incremental)
    decoded = [decode(data)[0] for data in streams]
    clocks = [ev.add_stream(f"s{i}", stream_format(data)) for i, data in enumerate(streams)]
    cursors = [0] * len(streams)
    live = [i for i, events in enumerate(decoded) if events]
    for i, events in enumerate(decoded):
        if not events and not release_at_end:
            ev.finish_stream(clocks[i])
    while live:
        i = rnd.choice(live)
        n = rnd.randint(1, 3)
        batch = decoded[i][cursors[i] : cursors[i] + n]
        cursors[i] += len(batch)
        ev.process(clocks[i], batch)
        if cursors[i] == len(decoded[i]):
            live.remove(i)
            if not release_at_end:
                ev.finish_stream(clocks[i])
    records = [a.to_record() for a in ev.finish()]
    for record in records:
        record.pop("amended", None)  # a replay has nothing to amend
    return records


@settings(max_examples=100, deadline=None)
@given(datasets(), st.randoms(use_true_random=False), st.booleans(), st.booleans())
def test_interleaving_does_not_change_alerts(
    streams: list[bytes], rnd: random.Random, release_at_end: bool, incremental: bool
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        reference, _ = run_replay(CONFIG, write(Path(tmp), streams))
    assert interleave(streams, rnd, release_at_end, incremental) == reference
    assert interleave(streams, rnd, not release_at_end, incremental) == reference


# --- (d) live amendments converge to the replay ---------------------------------------------------

LIVE_CONFIG: Config = parse_config(
    tomllib.loads(CONFIG_TEXT.replace('horizon = "PT1M"', 'horizon = "PT10M"')), "live.toml"
)


def live_run(streams: list[bytes], rnd: random.Random) -> tuple[list[dict], int]:
    """Feed the streams as a live session would: sources that have caught up, a wall clock that
    judges windows before all their events arrived. The wall clock stays where no event expires
    by it and no data source is judged past its ``T_last``, as a session that ends with its
    sources caught up."""
    ev = Evaluator(LIVE_CONFIG, incremental=True)
    ev.watermark.wall_lateness = {"IoT Hub": LATENESS, "Agent": LATENESS}
    decoded = [decode(data)[0] for data in streams]
    clocks = [ev.add_stream(f"s{i}", stream_format(data)) for i, data in enumerate(streams)]
    for clock in clocks:
        clock.holding = False
    every = [e.time for events in decoded for e in events]
    lasts = [
        max(
            (
                e.time
                for d, events in zip(streams, decoded, strict=True)
                for e in events
                if stream_format(d) == fmt
            ),
            default=None,
        )
        for fmt in FORMATS
    ]
    if not every or None in lasts:
        return [], 0
    top = min(min(every) + 10 * 60 * US, *(t for t in lasts if t is not None))
    walls = sorted(rnd.randint(min(every), top) for _ in range(rnd.randint(1, 6)))
    cursors = [0] * len(streams)
    live = [i for i, events in enumerate(decoded) if events]
    while live:
        if walls and rnd.random() < 0.3:
            ev.advance(walls.pop(0))
        i = rnd.choice(live)
        batch = decoded[i][cursors[i] : cursors[i] + rnd.randint(1, 3)]
        cursors[i] += len(batch)
        ev.process(clocks[i], batch)
        if cursors[i] == len(decoded[i]):
            live.remove(i)
    for wall in walls:
        ev.advance(wall)
    ev.wall = None  # the end of input decides, as in the replay
    records = [a.to_record() for a in ev.finish()]
    for record in records:
        record.pop("amended", None)
    return records, sum(1 for _ in ev.book.amendments)


@settings(max_examples=100, deadline=None)
@given(datasets(), st.randoms(use_true_random=False))
def test_live_amendments_converge_to_the_replay(streams: list[bytes], rnd: random.Random) -> None:
    live, _ = live_run(streams, rnd)
    if not live:
        return
    with tempfile.TemporaryDirectory() as tmp:
        reference, _ = run_replay(LIVE_CONFIG, write(Path(tmp), streams))
    assert live == reference


# --- (e) a direct model of SPEC §4 ---------------------------------------------------------------

# group -> range rules (name -> (min, max, window seconds)) and allow rules (name -> allowed?)
MODEL_RANGE = {
    "default": {
        "MqttD2CMessagesNotInAllowedRange": (1, 3, 120),
        "AmqpD2CMessagesNotInAllowedRange": (0, 2, 60),
        "AmqpC2DMessagesNotInAllowedRange": (1, 2, 180),
        "DirectMethodInvokesNotInAllowedRange": (0, 1, 300),
        "UnauthorizedOperationsNotInAllowedRange": (0, 1, 120),
        "ActiveConnectionsNotInAllowedRange": (1, 3, 180),
        "FailedLocalLoginsNotInAllowedRange": (0, 2, 60),
    },
    "lab": {"MqttD2CMessagesNotInAllowedRange": (0, 1, 60)},
}
MODEL_ALLOW = {
    "default": {
        "ProcessNotAllowed": lambda v: v.rsplit("/", 1)[-1] == "ok",
        "ConnectionToIpNotAllowed": lambda v: v.startswith("10."),
        "LocalUserNotAllowed": lambda v: v == "root",
    },
    "lab": {"ConnectionFromIpNotAllowed": lambda v: False},
}
LATENESS, HORIZON, QUIET = 60 * US, 60 * US, 120 * US
Alert = tuple[Any, ...]


def model_runs(
    counts: list[int], first: int, size: int, t_last: int | None, lo: int, hi: int
) -> list[tuple[int, list[int], str]]:
    """Maximal runs of out-of-range windows as (first window, counts, state); ``counts[i]`` is
    window ``first + i``; a window is complete when it ends at or before ``t_last`` of its data
    source (none is, without one)."""
    runs: list[tuple[int, list[int], str]] = []
    start: int | None = None
    for i, n in enumerate([*counts, None]):
        w = first + i
        complete = t_last is not None and (w + 1) * size <= t_last
        if n is not None and (n > hi or (complete and n < lo and w != first)):
            start = w if start is None else start
            continue
        if start is not None:
            state = "resolved" if n is not None and complete else "open"
            runs.append((start, counts[start - first : i], state))
            start = None
    return runs


def model(streams: list[list[Event]], sources: list[str]) -> set[Alert]:
    """The alerts SPEC §4 defines for ``streams`` (``sources[i]``: the data source stream ``i``
    feeds), computed directly from the decoded events."""
    from engine.catalogue import BY_ID, UNAUTHORIZED

    counted: list[Event] = []
    expired: list[Event] = []
    t_last: dict[str, int] = {}
    for events, source in zip(streams, sources, strict=True):
        latest: dict[str, int] = {}  # each device's own clock in this stream
        for ev in events:
            mine = latest.get(ev.device)
            if mine is not None and ev.time < mine - HORIZON:
                expired.append(ev)
                continue
            latest[ev.device] = ev.time if mine is None else max(mine, ev.time)
            counted.append(ev)
            t_last[source] = max(t_last.get(source, ev.time), ev.time)
    alerts: set[Alert] = set()
    if not counted:
        return alerts
    t_first = min(ev.time for ev in counted)
    known = {"d0": t_first}
    for ev in counted:
        known[ev.device] = min(known.get(ev.device, ev.time), ev.time)
    for device, first_us in known.items():
        group = "lab" if device.startswith("g-") else "default"
        for name, (lo, hi, size_s) in MODEL_RANGE[group].items():
            size = size_s * US
            source = BY_NAME[name].source
            counts: dict[int, int] = {}
            for ev in counted:
                if ev.device == device and (
                    (ev.rule and BY_ID[ev.rule].name == name)
                    or (ev.unauthorized and name == BY_ID[UNAUTHORIZED].name)
                ):
                    counts[ev.time // size] = counts.get(ev.time // size, 0) + ev.weight
            f = first_us // size
            last = t_last.get(source)
            end = max([f - 1, *counts] + ([last // size] if last is not None else []))
            series = [counts.get(w, 0) for w in range(f, end + 1)]
            for w0, run, state in model_runs(series, f, size, last, lo, hi):
                alerts.add(
                    (name, device, None, w0 * size, (w0 + len(run)) * size, tuple(run), state)
                )
    on_time = counted
    late = expired
    violations: dict[tuple[str, str, str], list[tuple[int, int]]] = {}
    for ev in on_time + late:
        group = "lab" if ev.device.startswith("g-") else "default"
        if not ev.allow:
            continue
        name = BY_ID[ev.allow].name
        allowed = MODEL_ALLOW[group].get(name)
        if allowed is None or allowed(ev.value or ""):
            continue
        violations.setdefault((name, ev.device, ev.value or ""), []).append((ev.time, ev.weight))
    for (name, device, value), seen in violations.items():
        seen.sort()
        episodes: list[list[tuple[int, int]]] = []
        for v in seen:
            if episodes and v[0] - episodes[-1][-1][0] <= QUIET:
                episodes[-1].append(v)
            else:
                episodes.append([v])
        for ep in episodes:
            start, end = ep[0][0], ep[-1][0]
            agent = t_last.get("Agent")
            state = "resolved" if agent is not None and end + QUIET <= agent else "open"
            alerts.add((name, device, value, start, end, sum(w for _, w in ep), state))
    return alerts


def as_model(record: dict[str, Any]) -> Alert:
    """An alert record in the model's shape."""
    measure = tuple(record["counts"]) if "counts" in record else record["occurrences"]
    return (
        record["rule"],
        record["device"],
        record.get("value"),
        parse_time(record["start"]),
        parse_time(record["end"]),
        measure,
        record["state"],
    )


@settings(max_examples=100, deadline=None)
@given(datasets())
def test_alerts_equal_a_direct_model_of_the_rules(streams: list[bytes]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        records, _ = run_replay(CONFIG, write(Path(tmp), streams))
    got = [as_model(r) for r in records]
    assert len(set(got)) == len(got)
    sources = ["IoT Hub" if stream_format(d) == "hub-events" else "Agent" for d in streams]
    expected = model([decode(data)[0] for data in streams], sources)
    assert sorted(set(got) - expected, key=repr) == []
    assert sorted(expected - set(got), key=repr) == []

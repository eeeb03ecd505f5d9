"""Replay benchmark: ``iotwatch replay`` against orjson + sqlite3, DuckDB and fastavro.

Generates a deterministic fleet of inputs in the SPEC §2 formats (hub-events, hub-log,
security-messages, and a hub-messages Avro container), then runs in interleaved rounds, each
command a subprocess: ``iotwatch replay`` with and without ``--db``; baselines that decode the same
lines with orjson and ``executemany`` one row per event (12 or 4 columns) into a fresh WAL-mode
SQLite file; DuckDB counting one rule's per-device windows in one hub-events file (checked against
iotwatch's counts); replay per input format and fastavro reading the Avro file alone. Prints wall
and CPU time, events/s, ratios and peak RSS. It is a benchmark, not a test: it exits non-zero only
when something broke (a crash, a count that differs from what was generated or from DuckDB's).

Usage: ``python bench/replay.py [--events N] [--devices N] [--out DIR] [--repeat K] [--profile]``.
"""

from __future__ import annotations

import argparse
import asyncio
import calendar
import cProfile
import io
import os
import pstats
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from random import Random
from typing import Any

import orjson

GENERATOR_VERSION = 3
US = 1_000_000
START_S = calendar.timegm((2026, 11, 28, 8, 0, 0, 0, 0, 0))
SPAN_S = 2 * 3600
JITTER_S = 20  # records of a stream are out of order by up to 2 x 20 s (< lateness PT1M)
LATE_P = 0.001  # fraction of records shifted back 2-20 minutes: late, within the horizon
BASELINE_BATCH = 50_000
HUB_EVENTS_FILES = 3
HUB_LOG_FILES = 2  # one per hour, as storage-account exports are cut
SECURITY_FILES = 2
DECLARED_SILENT = ("spare-00001", "spare-00002", "spare-00003")
SUMMARY = re.compile(r"records (\d+), events (\d+), expired (\d+), quarantined (\d+), alerts (\d+)")

# --------------------------------------------------------------------------------------------------
# Generator
# --------------------------------------------------------------------------------------------------


@dataclass
class InputFile:
    """One generated input: its SPEC §2 format, file name and size in bytes."""

    format: str
    name: str
    size: int = 0
    records: int = 0
    events: int = 0


@dataclass
class Manifest:
    """What the generator wrote; saved as ``manifest.json`` so ``--out`` can be reused."""

    version: int
    seed: int
    events_requested: int
    devices_requested: int
    events: int = 0
    devices: int = 0
    records: int = 0
    bad: int = 0
    shifted_late: int = 0
    files: list[InputFile] = field(default_factory=list)
    # Inputs measured on their own, not part of the mixed replay: one hub-events file of
    # ``events`` clean lines (what DuckDB counts too) and a hub-messages Avro file.
    solo: list[InputFile] = field(default_factory=list)

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)

    @classmethod
    def load(cls, path: Path) -> Manifest:
        data = orjson.loads(path.read_bytes())
        files = [InputFile(**f) for f in data.pop("files")]
        solo = [InputFile(**f) for f in data.pop("solo", [])]
        return cls(**data, files=files, solo=solo)

    def solo_file(self, fmt: str) -> InputFile:
        return next(f for f in self.solo if f.format == fmt)


@dataclass
class Fleet:
    """The generated devices: names, activity weights and behaviour profiles."""

    names: list[str]
    weights: list[float]
    profile: list[str]  # normal | hot | quiet | attacker
    agent_ids: list[str]


def _uuid(rng: Random) -> str:
    h = f"{rng.getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def make_fleet(rng: Random, n: int) -> Fleet:
    """``n`` devices: 2 % hot (8x traffic), 8 % quiet, 0.5 % attackers, the rest normal."""
    prefixes = ("sensor", "sensor", "sensor", "sensor", "gw", "cam", "cam", "plc", "plc")
    names, weights, profile, agents = [], [], [], []
    for i in range(n):
        names.append(f"{prefixes[rng.randrange(len(prefixes))]}-{i:05d}")
        r = rng.random()
        if r < 0.02:
            profile.append("hot")
            weights.append(8.0)
        elif r < 0.10:
            profile.append("quiet")
            weights.append(0.15)
        elif r < 0.105:
            profile.append("attacker")
            weights.append(1.5)
        else:
            profile.append("normal")
            weights.append(1.0)
        agents.append(_uuid(rng))
    return Fleet(names, weights, profile, agents)


def _stamp(t_us: int) -> tuple[str, int]:
    """``YYYY-MM-DDThh:mm:ss`` and the microseconds of ``t_us``."""
    s, us = divmod(t_us, US)
    g = time.gmtime(s)
    return (
        f"{g.tm_year:04d}-{g.tm_mon:02d}-{g.tm_mday:02d}T"
        f"{g.tm_hour:02d}:{g.tm_min:02d}:{g.tm_sec:02d}",
        us,
    )


class Clock:
    """Event times of one stream: evenly advancing, jittered, with a few late records."""

    def __init__(self, rng: Random, start_s: int, span_s: int) -> None:
        self.rng = rng
        self.start = start_s * US
        self.span = span_s * US
        self.late = 0

    def at(self, fraction: float) -> int:
        """The time of a record ``fraction`` of the way through the stream."""
        rng = self.rng
        t = self.start + int(self.span * fraction) + rng.randint(-JITTER_S * US, JITTER_S * US)
        if rng.random() < LATE_P:
            self.late += 1
            t -= rng.randint(120, 1200) * US
        return t


class Writer:
    """Buffered line writer that counts records."""

    def __init__(self, path: Path) -> None:
        self.file = path.open("wb")
        self.buf: list[bytes] = []
        self.records = 0

    def line(self, data: bytes) -> None:
        self.buf.append(data)
        self.records += 1
        if len(self.buf) >= 4096:
            self.flush()

    def flush(self) -> None:
        self.file.write(b"\n".join(self.buf) + b"\n" if self.buf else b"")
        self.buf = []

    def close(self) -> None:
        self.flush()
        self.file.close()


def _pick(rng: Random, table: Sequence[tuple[Any, float]]) -> Any:
    r = rng.random()
    for value, p in table:
        r -= p
        if r < 0:
            return value
    return table[-1][0]


_HUB_OPS = (
    ("d2c", 0.55),
    ("c2d", 0.13),
    ("c2d-reject", 0.02),
    ("method", 0.12),
    ("twin-update", 0.13),
    ("upload", 0.04),
    ("purge", 0.01),
)
_PROTOCOLS = (
    ("mqtt", 0.45),
    ("Mqtt", 0.08),
    ("MqttWs", 0.07),
    ("amqp", 0.15),
    ("AmqpWs", 0.10),
    ("http", 0.10),
    ("Https", 0.05),
)
_MODULES = ("edgeAgent", "edgeHub", "telemetry", "opcpublisher")


def hub_event(rng: Random, t_us: int, device: str, profile: str) -> bytes:
    """One hub-events line (SPEC §2)."""
    op = _pick(rng, _HUB_OPS)
    base, us = _stamp(t_us)
    rec: dict[str, Any] = {"time": f"{base}.{us // 1000:03d}Z", "deviceId": device}
    r = rng.random()
    if r < 0.8:  # moduleId: mostly null, sometimes a module, sometimes absent
        rec["moduleId"] = _MODULES[rng.randrange(4)] if r < 0.1 else None
    rec["op"] = op
    if op in ("d2c", "c2d", "c2d-reject"):
        rec["protocol"] = _pick(rng, _PROTOCOLS)
    unauthorized = 0.25 if profile == "attacker" else 0.002
    if rng.random() < unauthorized:
        rec["status"] = 401 if rng.random() < 0.5 else 401003
    elif rng.random() < 0.8:
        rec["status"] = 200 if op != "method" else rng.choice((200, 200, 200, 404, 504))
    if op == "d2c" and rng.random() < 0.1:
        rec["count"] = rng.randint(2, 20)
    elif rng.random() < 0.05:
        rec["count"] = 1
    return orjson.dumps(rec)


_RESOURCE = (
    "/SUBSCRIPTIONS/00000000-0000-0000-0000-000000000000/RESOURCEGROUPS/IOT-BENCH/PROVIDERS/"
    "MICROSOFT.DEVICES/IOTHUBS/BENCH-HUB"
)
_HUB_LOG_OPS = (
    (("DeviceTelemetry", "ingress"), 0.40),
    (("Connections", "deviceConnect"), 0.09),
    (("Connections", "deviceDisconnect"), 0.09),
    (("DirectMethods", "send"), 0.10),
    (("D2CTwinOperations", "update"), 0.07),
    (("D2CTwinOperations", "read"), 0.04),
    (("C2DTwinOperations", "update"), 0.05),
    (("C2DTwinOperations", "read"), 0.03),
    (("FileUploadOperations", "ingress"), 0.03),
    (("FileUploadOperations", "initializeUpload"), 0.02),
    (("C2DCommands", "send"), 0.05),
    (("C2DCommands", "abandon"), 0.03),
)
_LOG_PROTOCOLS = (("Mqtt", 0.5), ("MqttWs", 0.1), ("Amqp", 0.2), ("AmqpWs", 0.1), ("Http", 0.1))
_AUTH = '{"scope":"device","type":"sas","issuer":"iothub","acceptingIpFilterRule":null}'


def hub_log(rng: Random, t_us: int, device: str, profile: str) -> bytes:
    """One hub-log line: a storage-account resource-log record with 7-digit fractions."""
    category, operation = _pick(rng, _HUB_LOG_OPS)
    base, us = _stamp(t_us)
    props: dict[str, Any] = {"deviceId": device}
    if category in ("DeviceTelemetry", "Connections"):
        props["protocol"] = _pick(rng, _LOG_PROTOCOLS)
        props["authType"] = _AUTH
    if category == "DeviceTelemetry":
        props["messageSize"] = str(rng.randint(60, 4000))
    elif category == "Connections":
        props["maskedIpAddress"] = f"10.{rng.randrange(256)}.XXX.XXX"
        props["statusCode"] = None
    elif category == "DirectMethods":
        props["methodName"] = rng.choice(("reboot", "getConfig", "setInterval", "ping"))
        props["requestSize"] = rng.randint(0, 512)
        props["responseSize"] = rng.randint(0, 512)
    elif category == "FileUploadOperations":
        props["protocol"] = "HTTP"
        props["blobUri"] = f"https://benchstore.blob.core.windows.net/uploads/{device}/log.gz"
    props["sdkVersion"] = "azure-iot-device/2.13.0 (python 3.11)"
    level, result, description = "Information", "Success", ""
    if rng.random() < (0.2 if profile == "attacker" else 0.003):
        level, result, description = "Error", "401003", "IotHubUnauthorized"
        if category == "Connections":
            props["statusCode"] = "401003"
    rec: dict[str, Any] = {
        "time": f"{base}.{us:06d}{rng.randrange(10)}Z",
        "resourceId": _RESOURCE,
        "operationName": operation,
        "category": category,
        "level": level,
        "resultType": result,
        "resultDescription": description,
        "durationMs": str(rng.randint(0, 40)),
        "callerIpAddress": f"203.0.113.{rng.randrange(256)}",
        "correlationId": f"{rng.getrandbits(64):016x}",
        "location": "westeurope",
        # Storage-account exports mostly hold properties as a JSON-encoded string.
        "properties": orjson.dumps(props).decode() if rng.random() < 0.7 else props,
    }
    return orjson.dumps(rec)


_ALLOWED_EXES = (
    "/usr/bin/python3",
    "/bin/bash",
    "/bin/sh",
    "/usr/sbin/sshd",
    "/usr/bin/iotedge",
    "/usr/sbin/cron",
    "/usr/bin/azure-iot-agent",
    "/usr/lib/systemd/systemd-journald",
)
_BAD_EXES = ("/tmp/xmrig", "/usr/bin/nc", "/dev/shm/.x", "/tmp/kworkerds", "/usr/bin/socat")
_ALLOWED_USERS = ("root", "admin", "iotuser", "azureiot")
_BAD_USERS = ("guest", "pi", "test", "oracle", "ubuntu")
_BAD_IPS = (
    "185.220.101.4",
    "45.33.32.156",
    "89.248.165.12",
    "2a01:4f8:c0c:1234::1",
    "198.51.100.77",
    "141.98.10.60",
)
_EVENT_NAMES = (
    ("ConnectionCreate", 0.35),
    ("ProcessCreate", 0.22),
    ("ProcessTerminate", 0.10),
    ("Login", 0.10),
    ("ListeningPorts", 0.07),
    ("LocalUsers", 0.05),
    ("SystemInformation", 0.04),
    ("Diagnostic", 0.04),
    ("FirewallConfiguration", 0.03),
)
_ATTACKER_NAMES = (
    ("Login", 0.40),
    ("ConnectionCreate", 0.30),
    ("ProcessCreate", 0.20),
    ("ProcessTerminate", 0.10),
)
_PERIODIC = frozenset(
    ("ListeningPorts", "LocalUsers", "SystemInformation", "FirewallConfiguration")
)


def _ip(rng: Random, allowed: bool, inbound: bool) -> str:
    if not allowed:
        return _BAD_IPS[rng.randrange(len(_BAD_IPS))] if rng.random() < 0.97 else "unknown"
    r = rng.random()
    if r < 0.8:
        return f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
    if r < 0.9:
        return f"::ffff:10.0.{rng.randrange(256)}.{rng.randrange(1, 255)}"
    if inbound:
        return f"fd00::{rng.randrange(65536):x}"
    return f"20.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"


def _item(rng: Random, name: str, attacker: bool) -> dict[str, Any]:
    """One payload item of a security event."""
    pid = str(rng.randint(300, 65000))
    if name == "ConnectionCreate":
        inbound = rng.random() < 0.2
        allowed = rng.random() >= (0.2 if attacker else 0.01)
        exe = _ALLOWED_EXES[rng.randrange(len(_ALLOWED_EXES))]
        return {
            "Executable": exe,
            "ProcessId": pid,
            "CommandLine": exe,
            "UserId": "0",
            "RemoteAddress": _ip(rng, allowed, inbound),
            "RemotePort": str(rng.choice((443, 8883, 5671, 22, 80))),
            "LocalAddress": "10.0.0.4",
            "LocalPort": str(rng.randint(1024, 65535)),
            "Protocol": "tcp",
            "Direction": "In" if inbound else "Out",
        }
    if name == "ProcessCreate" or name == "ProcessTerminate":
        bad = rng.random() < (0.25 if attacker else 0.005)
        exe = (_BAD_EXES if bad else _ALLOWED_EXES)[rng.randrange(5)]
        item: dict[str, Any] = {"Executable": exe, "ProcessId": pid, "UserId": "0"}
        if name == "ProcessCreate":
            item["ParentProcessId"] = str(rng.randint(1, 3000))
            item["UserName"] = "root"
            item["CommandLine"] = f"{exe} --config /etc/app/{rng.randrange(20)}.conf"
        else:
            item["ExitCode"] = "0"
        return item
    if name == "Login":
        fail = rng.random() < (0.8 if attacker else 0.05)
        bad_user = rng.random() < (0.3 if attacker else 0.02)
        user = (_BAD_USERS if bad_user else _ALLOWED_USERS)[rng.randrange(4)]
        return {
            "ProcessId": pid,
            "UserName": user,
            "UserId": str(rng.randint(0, 1001)),
            "Executable": "/usr/sbin/sshd",
            "Operation": "Login",
            "RemoteAddress": _ip(rng, True, True),
            "Result": "Fail" if fail else "Success",
        }
    if name == "ListeningPorts":
        return {
            "Protocol": "tcp",
            "LocalAddress": "0.0.0.0",
            "LocalPort": str(rng.choice((22, 80, 443, 1883, 8883))),
            "RemoteAddress": "0.0.0.0",
            "RemotePort": "*",
        }
    if name == "LocalUsers":
        return {"UserName": _ALLOWED_USERS[rng.randrange(4)], "UserId": pid, "GroupNames": "users"}
    if name == "SystemInformation":
        return {
            "OSName": "Linux",
            "OSVersion": "Ubuntu 22.04.3 LTS",
            "OsArchitecture": "x64",
            "TotalPhysicalMemoryInKB": "2040972",
            "FreePhysicalMemoryInKB": str(rng.randint(100000, 1500000)),
        }
    if name == "FirewallConfiguration":
        return {"Chain": "INPUT", "Action": "Allow", "Enabled": "True", "Priority": pid}
    return {"Severity": "Information", "Message": "agent heartbeat", "ProcessId": pid}


def security_message(
    rng: Random, t_us: int, device: str, agent_id: str, profile: str, budget: int
) -> tuple[bytes, int]:
    """One enveloped security message with at most ``budget`` payload items; returns the line
    and its number of events (payload items)."""
    attacker = profile == "attacker"
    n_events = rng.randint(2, 5)
    offsets = sorted(rng.randint(0, 15 * US) for _ in range(n_events))
    events = []
    items_total = 0
    for k in range(n_events):
        if items_total >= budget:
            break
        name = _pick(rng, _ATTACKER_NAMES if attacker else _EVENT_NAMES)
        periodic = name in _PERIODIC
        n = rng.randint(2, 5) if periodic else _pick(rng, ((1, 0.6), (2, 0.3), (3, 0.1)))
        n = min(n, budget - items_total)
        payload = [_item(rng, name, attacker) for _ in range(n)]
        category = "Periodic" if periodic else "Triggered"
        if not periodic and name != "Login" and rng.random() < 0.2:
            category = "Aggregated"
            for item in payload:
                hits = rng.randint(1, 6)
                item["ExtraDetails"] = {"HitCount": str(hits) if rng.random() < 0.5 else hits}
        items_total += n
        base, us = _stamp(t_us - 15 * US + offsets[k])
        r = rng.random()
        if r < 0.5:
            utc = f"{base}Z"
        elif r < 0.8:
            utc = f"{base[:10]} {base[11:]}Z"
        else:
            utc = f"{base}.{us:06d}Z"
        events.append(
            {
                "EventType": "Security" if name != "Diagnostic" else "Operational",
                "Category": category,
                "Name": name,
                "IsEmpty": False,
                "PayloadSchemaVersion": "1.0",
                "Id": _uuid(rng),
                "TimestampLocal": utc,
                "TimestampUTC": utc,
                "Payload": payload,
            }
        )
    body = {
        "AgentVersion": "0.0.5",
        "AgentId": agent_id,
        "MessageSchemaVersion": "1.0",
        "Events": events,
    }
    return orjson.dumps({"deviceId": device, "body": body}), items_total


_BAD_LINES = (
    b'{"time": "2026-11-28T09:00:00.000Z", "deviceId": "sensor-00001", "op": "d2c", "prot',
    b'{"time": "2026-11-28T09:00:00.000Z", "op": "d2c", "protocol": "mqtt"}',
    b'{"time": "2026-11-28T09:00:00.000Z", "deviceId": "sensor-\xff\xfe", "op": "d2c"}',
)


SOLO_HUB_EVENTS = "solo-hub-events.jsonl"
HUB_MESSAGES = "hub-messages.avro"
# The Defender agent's interface id (engine.formats.hub_messages.SECURITY_INTERFACE; the data is
# written before any engine module is imported, so that another commit's engine can be measured).
_SECURITY_INTERFACE = "urn:azureiot:Security:SecurityAgent:1"


def solo_hub_events(path: Path, fleet: Fleet, n: int, seed: int) -> InputFile:
    """``n`` clean hub-events lines over the whole fleet and the two hours: the input replay
    and DuckDB both count (no bad line, which DuckDB would read otherwise than iotwatch)."""
    rng = Random(f"{seed}:{path.name}")
    clock = Clock(rng, START_S, SPAN_S)
    ids, cum = _devices_of(fleet, range(len(fleet.names)))
    picks = rng.choices(ids, cum_weights=cum, k=n)
    w = Writer(path)
    for i, d in enumerate(picks):
        w.line(hub_event(rng, clock.at(i / n), fleet.names[d], fleet.profile[d]))
    w.close()
    return InputFile("hub-events", path.name, path.stat().st_size, w.records, n)


def _routed(rng: Random, t_us: int, device: str) -> tuple[dict[str, Any], int]:
    """One routed message (SPEC §2 hub-messages) and its number of events: telemetry (80 %),
    twin change notifications (10 %), connection-state notifications (5 %), JSON security
    messages of one event (5 %: the telemetry event and the agent's)."""
    base, us = _stamp(t_us)
    when = f"{base}.{us:06d}0Z"  # routing writes seven fractional digits
    system = {
        "connectionDeviceId": device,
        "connectionAuthMethod": _AUTH,
        "connectionDeviceGenerationId": "637051167384630591",
        "contentType": "application/json",
        "contentEncoding": "utf-8",
        "enqueuedTime": when,
    }
    r = rng.random()
    if r < 0.80:
        body = orjson.dumps(
            {"temperature": round(rng.uniform(15, 30), 2), "seq": rng.randrange(1 << 20)}
        )
        return {
            "EnqueuedTimeUtc": when,
            "Properties": {},
            "SystemProperties": system,
            "Body": body,
        }, 1
    if r < 0.95:
        twin = r < 0.90
        del system["connectionAuthMethod"]
        system["iothub-message-source"] = (
            "twinChangeEvents" if twin else "deviceConnectionStateEvents"
        )
        props = {
            "hubName": "bench-hub",
            "deviceId": device,
            "opType": "updateTwin" if twin else "deviceConnected",
            "iothub-message-schema": (
                "twinChangeNotification" if twin else "deviceConnectionStateNotification"
            ),
            "operationTimestamp": when,
        }
        body = b'{"version": 7}' if twin else b'{"sequenceNumber":"000000000000000001D87"}'
        return {
            "EnqueuedTimeUtc": when,
            "Properties": props,
            "SystemProperties": system,
            "Body": body,
        }, 1
    event = {
        "EventType": "Security",
        "Category": "Triggered",
        "Name": "ProcessCreate",
        "IsEmpty": False,
        "PayloadSchemaVersion": "1.0",
        "Id": _uuid(rng),
        "TimestampLocal": f"{base}Z",
        "TimestampUTC": f"{base}Z",
        "Payload": [_item(rng, "ProcessCreate", False)],
    }
    body = orjson.dumps({"AgentVersion": "1.0", "MessageSchemaVersion": "1.0", "Events": [event]})
    props = {"iothub-interface-id": _SECURITY_INTERFACE}
    return {
        "EnqueuedTimeUtc": when,
        "Properties": props,
        "SystemProperties": system,
        "Body": body,
    }, 2


def hub_messages_avro(path: Path, fleet: Fleet, n: int, seed: int) -> InputFile:
    """``n`` routed messages in one Avro container (deflate, as routing to storage writes)."""
    import fastavro

    rng = Random(f"{seed}:{path.name}")
    clock = Clock(rng, START_S, SPAN_S)
    ids, cum = _devices_of(fleet, range(len(fleet.names)))
    picks = rng.choices(ids, cum_weights=cum, k=n)
    events = 0

    def records() -> Iterator[dict[str, Any]]:
        nonlocal events
        for i, d in enumerate(picks):
            rec, k = _routed(rng, clock.at(i / n), fleet.names[d])
            events += k
            yield rec

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from engine.formats.hub_messages import ROUTING_SCHEMA

    with path.open("wb") as f:
        fastavro.writer(f, fastavro.parse_schema(ROUTING_SCHEMA), records(), codec="deflate")
    return InputFile("hub-messages", path.name, path.stat().st_size, n, events)


def _split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def _devices_of(fleet: Fleet, members: Sequence[int]) -> tuple[list[int], list[float]]:
    cum, acc = [], 0.0
    for i in members:
        acc += fleet.weights[i]
        cum.append(acc)
    return list(members), cum


def generate(out: Path, events: int, devices: int, seed: int) -> Manifest:
    """Write the inputs, the configuration and ``manifest.json`` into ``out``."""
    rng = Random(seed)
    fleet = make_fleet(rng, devices)
    manifest = Manifest(GENERATOR_VERSION, seed, events, devices)
    n_hub = round(events * 0.60)
    n_log = round(events * 0.15)
    n_sec = events - n_hub - n_log
    seen: set[int] = set()
    clocks: list[Clock] = []
    bad_index = 0

    def bad_line(w: Writer) -> None:
        nonlocal bad_index
        w.line(_BAD_LINES[bad_index % len(_BAD_LINES)])
        bad_index += 1
        manifest.bad += 1

    def one_file(
        fmt: str,
        name: str,
        n: int,
        members: Sequence[int],
        start_s: int,
        span_s: int,
        make: Callable[[Random, int, str, str], bytes],
    ) -> None:
        frng = Random(f"{seed}:{name}")
        clock = Clock(frng, start_s, span_s)
        clocks.append(clock)
        ids, cum = _devices_of(fleet, members)
        picks = frng.choices(ids, cum_weights=cum, k=n)
        seen.update(picks)
        w = Writer(out / name)
        names, profiles = fleet.names, fleet.profile
        for i, d in enumerate(picks):
            if i == n // 2:
                bad_line(w)
            w.line(make(frng, clock.at(i / n), names[d], profiles[d]))
        w.close()
        manifest.files.append(InputFile(fmt, name, (out / name).stat().st_size, w.records, n))

    everyone = range(devices)
    for k, n in enumerate(_split(n_hub, HUB_EVENTS_FILES)):
        members = range(k, devices, HUB_EVENTS_FILES)
        one_file("hub-events", f"hub-events-{k}.jsonl", n, members, START_S, SPAN_S, hub_event)
    hours = SPAN_S // HUB_LOG_FILES
    for k, n in enumerate(_split(n_log, HUB_LOG_FILES)):
        name = f"hub-log-h{8 + k:02d}.json"
        one_file("hub-log", name, n, everyone, START_S + k * hours, hours, hub_log)
    for k, budget in enumerate(_split(n_sec, SECURITY_FILES)):
        name = f"security-{k}.jsonl"
        frng = Random(f"{seed}:{name}")
        clock = Clock(frng, START_S, SPAN_S)
        clocks.append(clock)
        ids, cum = _devices_of(fleet, range(k, devices, SECURITY_FILES))
        w = Writer(out / name)
        done = 0
        while done < budget:
            if w.records == 200:
                bad_line(w)
            d = frng.choices(ids, cum_weights=cum)[0]
            seen.add(d)
            line, n = security_message(
                frng,
                clock.at(done / budget),
                fleet.names[d],
                fleet.agent_ids[d],
                fleet.profile[d],
                budget - done,
            )
            w.line(line)
            done += n
        w.close()
        manifest.files.append(
            InputFile("security-messages", name, (out / name).stat().st_size, w.records, done)
        )
    manifest.events = sum(f.events for f in manifest.files)
    manifest.records = sum(f.records for f in manifest.files)
    manifest.solo = [
        solo_hub_events(out / SOLO_HUB_EVENTS, fleet, events, seed),
        hub_messages_avro(out / HUB_MESSAGES, fleet, max(1, events // 4), seed),
    ]
    manifest.devices = len(seen)
    manifest.shifted_late = sum(c.late for c in clocks)
    write_config(out / "iotwatch.toml", fleet)
    (out / "manifest.json").write_bytes(orjson.dumps(asdict(manifest), option=orjson.OPT_INDENT_2))
    return manifest


# Range rules: (ruleType, window, min, max). Thresholds are tuned so that hot, quiet and attacker
# devices raise some alerts at the default size (1M events, 5k devices, 2 hours).
RANGE_RULES: tuple[tuple[str, str, int, int], ...] = (
    ("MqttD2CMessagesNotInAllowedRange", "PT15M", 1, 40),
    ("AmqpD2CMessagesNotInAllowedRange", "PT15M", 0, 25),
    ("HttpD2CMessagesNotInAllowedRange", "PT5M", 0, 12),
    ("MqttC2DMessagesNotInAllowedRange", "PT15M", 0, 12),
    ("AmqpC2DMessagesNotInAllowedRange", "PT15M", 0, 8),
    ("HttpC2DMessagesNotInAllowedRange", "PT15M", 0, 6),
    ("MqttC2DRejectedMessagesNotInAllowedRange", "PT15M", 0, 2),
    ("AmqpC2DRejectedMessagesNotInAllowedRange", "PT15M", 0, 2),
    ("DirectMethodInvokesNotInAllowedRange", "PT5M", 0, 6),
    ("FileUploadsNotInAllowedRange", "PT15M", 0, 4),
    ("QueuePurgesNotInAllowedRange", "PT15M", 0, 2),
    ("TwinUpdatesNotInAllowedRange", "PT15M", 0, 12),
    ("UnauthorizedOperationsNotInAllowedRange", "PT5M", 0, 3),
    ("ActiveConnectionsNotInAllowedRange", "PT15M", 0, 25),
    ("FailedLocalLoginsNotInAllowedRange", "PT5M", 0, 3),
)
ALLOW_RULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("ConnectionToIpNotAllowed", ("10.0.0.0/8", "20.0.0.0/8", "192.168.0.0/16")),
    ("ConnectionFromIpNotAllowed", ("10.0.0.0/8", "fd00::/8")),
    ("LocalUserNotAllowed", _ALLOWED_USERS),
    (
        "ProcessNotAllowed",
        (
            "python3",
            "bash",
            "sh",
            "sshd",
            "iotedge",
            "cron",
            "/usr/bin/azure-iot-agent",
            "systemd-journald",
        ),
    ),
)


def write_config(path: Path, fleet: Fleet) -> None:
    """The benchmark's ``iotwatch.toml``: most range rules, all four allow-lists, two groups."""
    lines = [
        "# Generated by bench/replay.py: the replay benchmark's configuration.",
        "[engine]",
        'lateness = "PT1M"',
        'quiet = "PT1H"',
        "",
    ]
    for fmt, glob in (
        ("hub-events", "hub-events-*.jsonl"),
        ("hub-log", "hub-log-*.json"),
        ("security-messages", "security-*.jsonl"),
    ):
        lines += ["[[sources]]", f'type = "{fmt}"', f'path = "{glob}"', ""]
    # Cameras stream more: their group allows twice the device-to-cloud traffic.
    for group in ("default", "cameras"):
        for rule, window, lo, hi in RANGE_RULES:
            scale = 2 if group == "cameras" and "D2C" in rule else 1
            lines += [
                f"[groups.{group}.rules.{rule}]",
                f"min = {lo}",
                f"max = {hi * scale}",
                f'window = "{window}"',
                "",
            ]
        for rule, allow in ALLOW_RULES:
            values = ", ".join(f'"{v}"' for v in allow)
            lines += [f"[groups.{group}.rules.{rule}]", f"allow = [{values}]", ""]
    lines.append("[devices]")
    lines += [f'"{name}" = "default"' for name in DECLARED_SILENT]
    lines.append('"cam-*" = "cameras"')
    path.write_text("\n".join(lines) + "\n")


def load_or_generate(out: Path, events: int, devices: int, seed: int) -> tuple[Manifest, float]:
    """Reuse ``out`` when its manifest matches the parameters and files; else generate."""
    mpath = out / "manifest.json"
    if mpath.exists():
        m: Manifest | None
        try:
            m = Manifest.load(mpath)
        except (ValueError, TypeError, KeyError):
            m = None
        if (
            m is not None
            and (m.version, m.seed, m.events_requested, m.devices_requested)
            == (GENERATOR_VERSION, seed, events, devices)
            and all(
                (out / f.name).exists() and (out / f.name).stat().st_size == f.size
                for f in (*m.files, *m.solo)
            )
            and (out / "iotwatch.toml").exists()
        ):
            return m, 0.0
    t0 = time.perf_counter()
    m = generate(out, events, devices, seed)
    return m, time.perf_counter() - t0


# --------------------------------------------------------------------------------------------------
# Baseline worker (a fresh subprocess: ``replay.py _baseline DB FORMAT:PATH...``)
# --------------------------------------------------------------------------------------------------


def _rows(fmt: str, path: str, stream: int) -> Iterator[tuple[Any, ...]]:
    """One row per event, as cheaply as orjson allows, as wide as iotwatch's events row:
    (stream, pos, time, device, name, rule, unauthorized, allow, value, weight, expired,
    host_timed). What only evaluation knows (rule, expiry, ...) is a constant here."""
    loads = orjson.loads
    with open(path, "rb") as f:
        for pos, line in enumerate(f):
            try:
                obj = loads(line)
                if fmt == "hub-events":
                    yield (
                        stream,
                        pos,
                        obj["time"],
                        obj["deviceId"],
                        obj["op"],
                        None,
                        0,
                        None,
                        obj.get("protocol"),
                        obj.get("count", 1),
                        0,
                        0,
                    )
                elif fmt == "hub-log":
                    props = obj["properties"]
                    if isinstance(props, str):
                        props = loads(props)
                    yield (
                        stream,
                        pos,
                        obj["time"],
                        props["deviceId"],
                        obj["operationName"],
                        None,
                        0,
                        None,
                        None,
                        1,
                        0,
                        0,
                    )
                else:
                    device = obj["deviceId"]
                    for ev in obj["body"]["Events"]:
                        stamp, name = ev["TimestampUTC"], ev["Name"]
                        for item in ev["Payload"]:
                            value = (
                                item.get("RemoteAddress")
                                or item.get("Executable")
                                or item.get("UserName")
                            )
                            yield (stream, pos, stamp, device, name, None, 0, None, value, 1, 0, 0)
            except (orjson.JSONDecodeError, KeyError, TypeError):
                continue


def baseline_main(argv: Sequence[str], narrow: bool = False) -> int:
    """Decode the inputs with orjson and insert one row per event into a WAL SQLite file: twelve
    columns as iotwatch's events row, or (``narrow``) four: time, device, op, protocol/value."""
    db, inputs = argv[0], argv[1:]
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    if narrow:
        conn.execute("CREATE TABLE events (time TEXT, device TEXT, name TEXT, value)")
        insert = "INSERT INTO events (time, device, name, value) VALUES (?, ?, ?, ?)"
    else:
        conn.execute(
            "CREATE TABLE events (id INTEGER PRIMARY KEY, stream INTEGER, pos INTEGER, time TEXT,"
            " device TEXT, name TEXT, rule INTEGER, unauthorized INTEGER, allow INTEGER, value,"
            " weight INTEGER, expired INTEGER, host_timed INTEGER)"
        )
        insert = (
            "INSERT INTO events (stream, pos, time, device, name, rule, unauthorized, allow,"
            " value, weight, expired, host_timed) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        )
    total = 0
    batch: list[tuple[Any, ...]] = []

    def flush() -> None:
        conn.execute("BEGIN")
        conn.executemany(insert, batch)
        conn.execute("COMMIT")
        batch.clear()

    for stream, spec in enumerate(inputs, 1):
        fmt, _, path = spec.partition(":")
        for row in _rows(fmt, path, stream):
            batch.append((row[2], row[3], row[4], row[8]) if narrow else row)
            if len(batch) >= BASELINE_BATCH:
                total += len(batch)
                flush()
    total += len(batch)
    flush()
    conn.close()
    print(f"events {total}")
    return 0


# The rule DuckDB counts, and which hub-events ``protocol`` spellings it folds to MQTT (as
# engine.formats.common.fold_protocol does, trimmed and case-folded).
DUCK_RULE = "MqttD2CMessagesNotInAllowedRange"
_MQTT_SPELLINGS = ("mqtt", "mqttws", "mqtt_websocket_only", "mqtt_ws")


def duck_query(path: str, window_us: int) -> str:
    """DuckDB's per-device per-window count of MQTT device-to-cloud messages in a hub-events
    file: the weight (``count``, else 1) summed by device and window index."""
    spellings = ", ".join(f"'{p}'" for p in _MQTT_SPELLINGS)
    return (
        f"SELECT deviceId, epoch_us(CAST(time AS TIMESTAMPTZ)) // {window_us} AS w,"
        f" sum(coalesce(count, 1)) AS n"
        f" FROM read_json('{path}', format = 'newline_delimited',"
        f" columns = {{time: 'VARCHAR', deviceId: 'VARCHAR', op: 'VARCHAR',"
        f" protocol: 'VARCHAR', count: 'BIGINT'}})"
        f" WHERE op = 'd2c' AND lower(trim(protocol)) IN ({spellings})"
        f" GROUP BY ALL"
    )


def duck_main(argv: Sequence[str]) -> int:
    """``_duckdb PATH WINDOW_US OUT``: run :func:`duck_query`, write its rows to OUT (JSON)."""
    import duckdb

    path, window_us, out = argv[0], int(argv[1]), argv[2]
    rows = duckdb.sql(duck_query(path, window_us)).fetchall()
    Path(out).write_bytes(orjson.dumps(rows))
    print(f"groups {len(rows)}")
    return 0


def fastavro_main(argv: Sequence[str]) -> int:
    """``_fastavro PATH``: read every record of an Avro container with fastavro, nothing else."""
    import fastavro

    n = 0
    with open(argv[0], "rb") as f:
        for _ in fastavro.reader(f):
            n += 1
    print(f"records {n}")
    return 0


def iotwatch_counts(db: Path, rule: str, window_us: int) -> dict[tuple[str, int], int]:
    """What iotwatch counted toward ``rule`` per (device, window index), from a replay's
    database: the weights of its events that were not expired."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from engine.catalogue import BY_NAME

    conn = sqlite3.connect(db)
    try:
        rows = conn.execute(
            "SELECT d.name, e.time_us / ?, sum(e.weight) FROM events e"
            " JOIN devices d ON d.id = e.device WHERE e.rule = ? AND e.expired = 0 GROUP BY 1, 2",
            (window_us, BY_NAME[rule].id),
        ).fetchall()
    finally:
        conn.close()
    return {(name, w): n for name, w, n in rows}


def rule_window_us(rule: str) -> int:
    """The window of ``rule`` in the generated configuration (the default group's)."""
    for name, window, _, _ in RANGE_RULES:
        if name == rule:
            return {"PT5M": 300, "PT15M": 900}[window] * US
    raise KeyError(rule)


# --------------------------------------------------------------------------------------------------
# Measurement
# --------------------------------------------------------------------------------------------------


@dataclass
class Run:
    """One measured subprocess."""

    wall: float
    rss_mb: float
    rc: int
    stdout: str
    stderr: str
    cpu: float  # user + system seconds of the process and of the children it waited for


def measure(cmd: Sequence[str], stdout_path: Path, cwd: Path) -> Run:
    """Run ``cmd``, timing it and reading its own peak RSS from ``wait4``."""
    err_path = stdout_path.with_suffix(".stderr")
    with stdout_path.open("wb") as out, err_path.open("wb") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL, cwd=cwd)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    text = stdout_path.read_text(errors="replace") if stdout_path.stat().st_size < 1 << 20 else ""
    # ru_maxrss is in KiB on Linux (bytes on macOS).
    rss = usage.ru_maxrss / (1 << 20 if sys.platform == "darwin" else 1 << 10)
    cpu = usage.ru_utime + usage.ru_stime
    return Run(wall, rss, proc.returncode, text, err_path.read_text(errors="replace"), cpu)


def _fresh(db: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)


def iotwatch_command() -> list[str]:
    """The ``iotwatch`` console script of this interpreter's environment."""
    script = shutil.which("iotwatch", path=str(Path(sys.executable).parent)) or shutil.which(
        "iotwatch"
    )
    return [script] if script else [sys.executable, "-m", "tui.cli"]


def _count_lines(path: Path) -> int:
    with path.open("rb") as f:
        return sum(1 for _ in f)


def profile_replay(out: Path, manifest: Manifest, top: int, keep: bool) -> None:
    """Run the replay in-process under cProfile (main thread only) and print the top functions."""
    from engine.config import load_config
    from engine.replay import InputSpec, replay

    db = out / "profile.db"
    _fresh(db)
    config = load_config(out / "iotwatch.toml")
    specs = [InputSpec.parse(str(out / f.name)) for f in manifest.files]
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.enable()
    alerts, summary = asyncio.run(replay(config, specs, db=str(db)))
    prof.disable()
    wall = time.perf_counter() - t0
    if keep:
        prof.dump_stats(out / "replay.prof")
    _fresh(db)
    print()
    print(
        f"profile: replay in-process under cProfile: {wall:.1f} s "
        f"({manifest.events / wall:,.0f} events/s under the profiler), {len(alerts)} alerts, "
        f"{summary.events} events"
    )
    print("  (the SQLite writes run in the writer process and are not in this profile)")
    buf = io.StringIO()
    stats = pstats.Stats(prof, stream=buf)
    stats.sort_stats("tottime").print_stats(top)
    text = buf.getvalue()
    start = text.find("   ncalls")
    print(text[start:] if start >= 0 else text)
    if keep:
        print("profile data: replay.prof in the --out folder (pstats or snakeviz)")


def main(argv: Sequence[str] | None = None) -> int:
    """Generate, measure replay and baseline, report; optionally profile."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["_baseline"]:
        return baseline_main(args_list[1:])
    if args_list[:1] == ["_baseline4"]:
        return baseline_main(args_list[1:], narrow=True)
    if args_list[:1] == ["_duckdb"]:
        return duck_main(args_list[1:])
    if args_list[:1] == ["_fastavro"]:
        return fastavro_main(args_list[1:])
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--events", type=int, default=1_000_000, help="events to generate (1000000)")
    p.add_argument("--devices", type=int, default=5_000, help="devices (5000)")
    p.add_argument("--seed", type=int, default=1, help="generator seed (1)")
    p.add_argument(
        "--out",
        type=Path,
        help="folder for inputs and databases; reused when it "
        "already holds the same generated data (default: a temporary folder)",
    )
    p.add_argument("--repeat", type=int, default=1, metavar="K", help="best of K runs (1)")
    p.add_argument(
        "--profile",
        action="store_true",
        help="also run the replay in-process under cProfile; print the top functions",
    )
    p.add_argument("--top", type=int, default=30, help="functions in the profile (30)")
    args = p.parse_args(args_list)
    if args.events < 1 or args.devices < 1 or args.repeat < 1:
        p.error("--events, --devices and --repeat must be positive")

    temp = args.out is None
    out = Path(tempfile.mkdtemp(prefix="iotwatch-bench-")) if temp else args.out
    out.mkdir(parents=True, exist_ok=True)
    try:
        return _bench(args, out)
    finally:
        if temp:
            shutil.rmtree(out, ignore_errors=True)


@dataclass
class Step:
    """One measured command of a round; ``db``: the database it writes (made fresh first)."""

    key: str
    cmd: list[str]
    out: Path
    db: Path | None = None


def _median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def _bench(args: argparse.Namespace, out: Path) -> int:
    manifest, gen_s = load_or_generate(out, args.events, args.devices, args.seed)
    mb = manifest.size / 1e6
    print(
        f"inputs: {manifest.events:,} events ({manifest.records:,} records, {manifest.bad} bad, "
        f"{manifest.shifted_late} shifted late) over {manifest.devices:,} devices, "
        f"{len(manifest.files)} files, {mb:,.1f} MB"
        + (f", generated in {gen_s:.1f} s" if gen_s else ", reused")
    )
    for f in (*manifest.files, *manifest.solo):
        solo = "  (measured alone)" if f in manifest.solo else ""
        print(f"  {f.format:<18} {f.name:<22} {f.size / 1e6:8.1f} MB {f.events:>10,} events{solo}")
    names = [str(out / f.name) for f in manifest.files]
    config = str(out / "iotwatch.toml")
    replay_cmd = [*iotwatch_command(), "replay", "--config", config]
    me = [sys.executable, str(Path(__file__).resolve())]
    specs = [f"{f.format}:{out / f.name}" for f in manifest.files]
    solo = manifest.solo_file("hub-events")
    avro = manifest.solo_file("hub-messages")
    window = rule_window_us(DUCK_RULE)

    def of(fmt: str) -> list[str]:
        return [str(out / f.name) for f in manifest.files if f.format == fmt]

    steps = [
        Step(
            "db",
            [*replay_cmd, "--db", str(out / "replay.db"), *names],
            out / "alerts.jsonl",
            out / "replay.db",
        ),
        Step("nodb", [*replay_cmd, *names], out / "alerts-nodb.jsonl"),
        Step(
            "base12",
            [*me, "_baseline", str(out / "baseline.db"), *specs],
            out / "baseline.out",
            out / "baseline.db",
        ),
        Step(
            "base4",
            [*me, "_baseline4", str(out / "baseline.db"), *specs],
            out / "baseline4.out",
            out / "baseline.db",
        ),
        Step(
            "solo-db",
            [*replay_cmd, "--db", str(out / "solo.db"), str(out / solo.name)],
            out / "solo-alerts.jsonl",
            out / "solo.db",
        ),
        Step("solo-nodb", [*replay_cmd, str(out / solo.name)], out / "solo-alerts-nodb.jsonl"),
        Step(
            "duck",
            [*me, "_duckdb", str(out / solo.name), str(window), str(out / "duck.json")],
            out / "duck.out",
        ),
        Step("hub-log", [*replay_cmd, *of("hub-log")], out / "fmt-hub-log.jsonl"),
        Step("security", [*replay_cmd, *of("security-messages")], out / "fmt-security.jsonl"),
        Step("avro", [*replay_cmd, str(out / avro.name)], out / "fmt-avro.jsonl"),
        Step("fastavro", [*me, "_fastavro", str(out / avro.name)], out / "fastavro.out"),
    ]
    runs: dict[str, list[Run]] = {st.key: [] for st in steps}
    load0 = os.getloadavg()[0]
    broken: list[str] = []
    for k in range(args.repeat):
        # Interleaved: each round runs every command once, starting one further along, so
        # that a change of the machine's load during the run spreads over all of them.
        shift = k % len(steps)
        for st in steps[shift:] + steps[:shift]:
            if st.db is not None:
                _fresh(st.db)
            r = measure(st.cmd, st.out, out)
            runs[st.key].append(r)
            if r.rc != 0:
                broken.append(f"{st.key} exited {r.rc}: {r.stderr.strip()[-2000:]}")
        print(
            f"round {k + 1}/{args.repeat}: "
            + ", ".join(f"{key} {rs[-1].wall:.2f} s" for key, rs in runs.items())
        )
        if broken:
            break
    if broken:
        for line in broken:
            print(f"BROKEN: {line}", file=sys.stderr)
        return 1

    def best(key: str) -> Run:
        return min(runs[key], key=lambda x: x.wall)

    def cpu(key: str) -> float:
        """The least CPU time of ``key``'s runs."""
        return min(x.cpu for x in runs[key])

    def ratios(num: str, den: str) -> list[float]:
        """Per round: wall of ``num`` / wall of ``den`` (measured next to each other)."""
        return [a.wall / b.wall for a, b in zip(runs[num], runs[den], strict=True)]

    ev = manifest.events
    print()
    print(
        f"machine: {os.cpu_count()} cores, load average {load0:.2f} at the start and "
        f"{os.getloadavg()[0]:.2f} at the end; "
        f"best of {args.repeat} interleaved rounds, ratios also as the median of the rounds"
    )
    print()
    print(f"{'':52}{'wall s':>9}{'events/s':>12}{'CPU s':>8}{'peak RSS MB':>13}")

    def line(label: str, key: str, n: int) -> None:
        r = best(key)
        cpu = min(x.cpu for x in runs[key])
        print(f"{label:<52}{r.wall:>9.2f}{n / r.wall:>12,.0f}{cpu:>8.2f}{r.rss_mb:>13,.0f}")

    line("replay --db (mixed inputs)", "db", ev)
    line("replay without --db (mixed inputs)", "nodb", ev)
    line("baseline: orjson + executemany, 12 columns", "base12", ev)
    line("baseline: orjson + executemany, 4 columns", "base4", ev)
    line(f"replay --db ({solo.name})", "solo-db", solo.events)
    line(f"replay without --db ({solo.name})", "solo-nodb", solo.events)
    line(f"DuckDB read_json + GROUP BY ({solo.name})", "duck", solo.events)
    print()
    r_db = best("base4").wall / best("db").wall
    r_db_med = _median([1 / x for x in ratios("db", "base4")])
    r_12 = best("base12").wall / best("db").wall
    r_duck = best("solo-nodb").wall / best("duck").wall
    r_duck_med = _median(ratios("solo-nodb", "duck"))
    r_duck_db = best("solo-db").wall / best("duck").wall
    peak = max(x.rss_mb for key in ("db", "nodb", "solo-db", "solo-nodb") for x in runs[key])
    print(
        f"replay --db / 4-column baseline (events/s)   {r_db:6.3f}  median {r_db_med:.3f}"
        f"   target >= 0.6: {'met' if r_db >= 0.6 else 'NOT met'}"
    )
    print(f"replay --db / 12-column baseline (events/s)  {r_12:6.3f}")
    print(
        f"the same in CPU time (all processes)         {cpu('base4') / cpu('db'):6.3f}"
        f" (4 columns), {cpu('base12') / cpu('db'):.3f} (12 columns)"
    )
    print(
        f"replay without --db / DuckDB (wall)          {r_duck:6.2f}x median {r_duck_med:.2f}x"
        f"   target <= 3: {'met' if r_duck <= 3 else 'NOT met'}"
    )
    print(f"replay --db / DuckDB (wall)                  {r_duck_db:6.2f}x")
    print(
        f"replay without --db / DuckDB (CPU time)      {cpu('solo-nodb') / cpu('duck'):6.2f}x"
        f" (DuckDB on {os.cpu_count()} threads)"
    )
    print(
        f"replay peak RSS                              {peak:6.0f} MB"
        f"   target < 300 MB at 4M events ({ev:,} here)"
    )
    print()
    print("per input format, replay without --db (events/s):")
    fmt_rows = (
        ("hub-events", "solo-nodb", solo.events),
        ("hub-log", "hub-log", sum(f.events for f in manifest.files if f.format == "hub-log")),
        (
            "security-messages",
            "security",
            sum(f.events for f in manifest.files if f.format == "security-messages"),
        ),
    )
    for fmt, key, n in fmt_rows:
        print(f"  {fmt:<50}{best(key).wall:>9.2f}{n / best(key).wall:>12,.0f}")
    m_avro = SUMMARY.search(best("avro").stderr)
    avro_events = int(m_avro.group(2)) if m_avro else 0
    avro_records = int(m_avro.group(1)) if m_avro else 0
    print(
        f"  {'hub-messages (Avro, deflate)':<50}{best('avro').wall:>9.2f}"
        f"{avro_events / best('avro').wall:>12,.0f}"
        f"   ({avro.records:,} messages, {avro_events:,} events,"
        f" {avro.records / best('avro').wall:,.0f} messages/s)"
    )
    print(
        f"  {'fastavro reading the same file alone':<50}{best('fastavro').wall:>9.2f}"
        f"{avro.records / best('fastavro').wall:>12,.0f}   messages/s; replay takes"
        f" {best('avro').wall / best('fastavro').wall:.2f}x its time"
    )

    # Checks: the replay read what was generated, alike with and without --db, and DuckDB
    # counted what iotwatch counted.
    r = best("db")
    m = SUMMARY.search(r.stderr)
    alerts = _count_lines(out / "alerts.jsonl")
    if m is None:
        broken.append("the replay printed no summary line")
    else:
        _, events, _, quarantined, n_alerts = (int(x) for x in m.groups())
        if events != manifest.events:
            broken.append(f"replay counted {events} events, {manifest.events} were generated")
        if quarantined != manifest.bad:
            broken.append(f"replay quarantined {quarantined} records, {manifest.bad} were bad")
        if n_alerts != alerts:
            broken.append(f"summary says {n_alerts} alerts, stdout has {alerts} lines")
    if (out / "alerts-nodb.jsonl").read_bytes() != (out / "alerts.jsonl").read_bytes():
        broken.append("the replay raised other alerts without --db than with it")
    if (out / "solo-alerts-nodb.jsonl").read_bytes() != (out / "solo-alerts.jsonl").read_bytes():
        broken.append(f"the replay of {solo.name} raised other alerts without --db than with it")
    base_events = re.search(r"events (\d+)", best("base12").stdout)
    if base_events is None or int(base_events.group(1)) != manifest.events:
        broken.append(f"baseline stored {best('base12').stdout.strip()!r}, expected {ev}")
    if avro_records != avro.records or f"records {avro.records}" not in best("fastavro").stdout:
        broken.append(
            f"{avro.name}: replay read {avro_records} records, fastavro "
            f"{best('fastavro').stdout.strip()!r}, {avro.records} were written"
        )
    mine = iotwatch_counts(out / "solo.db", DUCK_RULE, window)
    duck = {(d, w): n for d, w, n in orjson.loads((out / "duck.json").read_bytes())}
    if mine == duck:
        print(
            f"counts agree: {len(duck):,} (device, window) counts of {DUCK_RULE}, "
            f"{sum(duck.values()):,} messages, alike in iotwatch and DuckDB"
        )
    else:
        differ = sorted(set(mine.items()) ^ set(duck.items()))[:5]
        broken.append(
            f"{DUCK_RULE}: iotwatch has {len(mine)} counts, DuckDB {len(duck)}; e.g. {differ}"
        )
    print()
    print("replay summary (stderr, mixed inputs, --db):")
    for text in r.stderr.strip().splitlines():
        print(f"  {text}")
    for db in ("replay.db", "solo.db", "baseline.db"):
        _fresh(out / db)
    if args.profile:
        try:
            profile_replay(out, manifest, args.top, keep=args.out is not None)
        except Exception:
            traceback.print_exc()
            broken.append("the profiled in-process replay crashed")
    for text in broken:
        print(f"BROKEN: {text}", file=sys.stderr)
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())

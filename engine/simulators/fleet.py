"""A simulated fleet: IoT Hub resource logs, hub events and security messages of N devices, live.

``FleetSimulator.tick(now_us)`` returns the lines each file gained up to ``now_us``; it does no
I/O. Time is cut into steps of one second from ``start_us``; a step's records are drawn from a
generator seeded by (seed, step), so the output depends on the seed and the time reached only,
not on how often ``tick`` is called. Within a file, lines are in time order.

Normal traffic (``rate`` records per second over the fleet): telemetry (``d2c``), cloud-to-device
messages and a few rejections, queue-free hub operations in the resource log (direct methods,
twin updates, file uploads, connects), and security-agent messages with the processes, users and
addresses of ``ALLOWED``. From ``anomaly_after`` seconds on, the chosen anomalies run, each on its
own device (``anomaly_devices``):

- ``flood``: the device sends D2C messages by the hundred per second (and gets throttled);
- ``silent``: the device stops sending anything;
- ``intruder``: brute-forced logins, a login by an unknown user, a miner process, connections to
  and from unknown public addresses (203.0.113.0/24), repeated every minute;
- ``unauthorized``: the device keeps failing to authenticate (401s in the resource log and
  hub events);
- ``purge``: its cloud-to-device queue is purged again and again.

``FleetRunner`` appends the lines to ``DIR/hub-log.json``, ``DIR/hub-events.jsonl`` and
``DIR/security-messages.jsonl`` in real time.
"""

from __future__ import annotations

import bisect
import itertools
import os
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import orjson

from engine.simulators.board import GATEWAY, HUB_ADDRESS, MINER

US = 1_000_000
STEP_US = US

HUB_LOG = "hub-log.json"
HUB_EVENTS = "hub-events.jsonl"
SECURITY_MESSAGES = "security-messages.jsonl"
FILES = (HUB_LOG, HUB_EVENTS, SECURITY_MESSAGES)
FORMATS = {HUB_LOG: "hub-log", HUB_EVENTS: "hub-events", SECURITY_MESSAGES: "security-messages"}

ANOMALIES = ("flood", "silent", "intruder", "unauthorized", "purge")

# What normal traffic uses: a configuration that allows these raises no allow-list alert on it.
ALLOWED: dict[str, tuple[str, ...]] = {
    "ProcessNotAllowed": ("sensor-app", "ota-agent", "dropbear", "busybox"),
    "LocalUserNotAllowed": ("operator", "svc-telemetry"),
    "ConnectionToIpNotAllowed": ("10.0.0.0/8", "198.51.100.0/24"),
    "ConnectionFromIpNotAllowed": ("10.0.0.0/8",),
}

RESOURCE_ID = (
    "/SUBSCRIPTIONS/00000000-0000-0000-0000-000000000000/RESOURCEGROUPS/LAB"
    "/PROVIDERS/MICROSOFT.DEVICES/IOTHUBS/BENCH-HUB"
)
POOL = "203.0.113.66"
INTRUDER_USER = "support"

_PROTOCOLS = {  # folded protocol -> how devices and the hub write it
    "mqtt": ("Mqtt", "MqttWs", "mqtt"),
    "amqp": ("Amqp", "AmqpWs", "amqp"),
    "http": ("Http", "Https", "http"),
}
# Normal record kinds and their shares of ``rate``.
_KINDS = (
    ("d2c", 0.50),
    ("c2d", 0.08),
    ("c2d-reject", 0.01),
    ("method", 0.03),
    ("twin", 0.05),
    ("upload", 0.01),
    ("connection", 0.02),
    ("security", 0.30),
)
_KIND_NAMES = tuple(k for k, _ in _KINDS)
_KIND_CUM = tuple(itertools.accumulate(w for _, w in _KINDS))
_PROCESSES = (
    ("/bin/sensor-app", "/bin/sensor-app --interval 5"),
    ("/usr/bin/ota-agent", "/usr/bin/ota-agent --check"),
    ("/bin/busybox", "/bin/busybox ntpd -q"),
)
_METHODS = ("reboot", "getDiagnostics", "setInterval", "ping")


def _stamp(us: int, sep: str = "T", digits: int = 3) -> str:
    """RFC 3339 UTC with ``digits`` (0, 3 or 7) fraction digits."""
    seconds, frac = divmod(us, US)
    text = time.strftime(f"%Y-%m-%d{sep}%H:%M:%S", time.gmtime(seconds))
    if digits == 7:
        return f"{text}.{frac:06d}0Z"
    if digits == 3:
        return f"{text}.{frac // 1000:03d}Z"
    return text + "Z"


class _Device:
    __slots__ = (
        "address",
        "agent_id",
        "envelope",
        "millis",
        "name",
        "protocol",
        "sep",
        "spelling",
    )

    def __init__(self, name: str, index: int, rng: random.Random) -> None:
        self.name = name
        self.protocol = rng.choices(("mqtt", "amqp", "http"), (0.6, 0.25, 0.15))[0]
        self.spelling = rng.choice(_PROTOCOLS[self.protocol])
        self.address = f"10.0.{index // 200}.{index % 200 + 20}"
        self.sep = rng.choice("T ")  # how its agent writes timestamps
        self.millis = rng.random() < 0.5
        self.envelope = "event" if rng.random() < 0.2 else "body"
        self.agent_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))


class FleetSimulator:
    """N devices' traffic, deterministic given the seed; ``tick`` returns new lines per file."""

    def __init__(
        self,
        devices: int = 10,
        seed: int = 0,
        start_us: int = 0,
        *,
        rate: float = 20.0,
        anomalies: Iterable[str] = (),
        anomaly_after: float = 30.0,
        prefix: str = "sensor",
    ) -> None:
        anomalies = tuple(dict.fromkeys(anomalies))
        unknown = [a for a in anomalies if a not in ANOMALIES]
        if unknown:
            raise ValueError(f"unknown anomaly {unknown[0]!r} (known: {', '.join(ANOMALIES)})")
        if devices < 1:
            raise ValueError("a fleet needs at least one device")
        if rate < 0:
            raise ValueError("rate must not be negative")
        self.seed = seed
        self.start_us = start_us
        self.rate = rate
        self.anomalies = anomalies
        self.anomaly_start = start_us + int(anomaly_after * US)
        rng = random.Random(seed)
        width = max(2, len(str(devices)))
        self.devices = [_Device(f"{prefix}-{i + 1:0{width}d}", i, rng) for i in range(devices)]
        # Each anomaly gets its own device while there are enough of them.
        order = rng.sample(range(devices), devices)
        self.anomaly_devices: dict[str, str] = {
            name: self.devices[order[i % devices]].name for i, name in enumerate(anomalies)
        }
        self._by_name = {d.name: d for d in self.devices}
        self._step = 0  # the next step to generate

    @property
    def time_reached(self) -> int:
        """Every record before this time (µs) has been returned."""
        return self.start_us + self._step * STEP_US

    def tick(self, now_us: int) -> dict[str, bytes]:
        """The lines each file gained in the steps that ended at or before ``now_us``."""
        out: dict[str, list[tuple[int, bytes]]] = {name: [] for name in FILES}
        while self.start_us + (self._step + 1) * STEP_US <= now_us:
            self._generate(self._step, out)
            self._step += 1
        result = {}
        for name, lines in out.items():
            lines.sort(key=lambda item: item[0])
            result[name] = b"".join(line for _, line in lines)
        return result

    # -- one step ---------------------------------------------------------------------------

    def _generate(self, step: int, out: dict[str, list[tuple[int, bytes]]]) -> None:
        rng = random.Random(self.seed * 1_000_003 + step)
        t0 = self.start_us + step * STEP_US
        anomalous = t0 >= self.anomaly_start
        silent = self.anomaly_devices.get("silent") if anomalous else None
        active = [d for d in self.devices if d.name != silent]
        expected = self.rate * STEP_US / US
        n = int(expected) + (rng.random() < expected % 1)
        for _ in range(n if active else 0):
            device = active[rng.randrange(len(active))]
            kind = _KIND_NAMES[bisect.bisect(_KIND_CUM, rng.random() * _KIND_CUM[-1])]
            t = t0 + rng.randrange(STEP_US)
            self._normal(kind, device, t, rng, out)
        if anomalous:
            second = (t0 - self.anomaly_start) // US  # seconds into the anomalies
            for name, device_name in self.anomaly_devices.items():
                device = self._by_name[device_name]
                if name == "flood":
                    self._flood(device, t0, rng, out)
                elif name == "intruder":
                    self._intruder(device, t0, second, rng, out)
                elif name == "unauthorized":
                    self._unauthorized(device, t0, rng, out)
                elif name == "purge" and second % 10 == 0:
                    for _ in range(3):
                        t = t0 + rng.randrange(STEP_US)
                        self._hub_event(out, t, device, "purge", None, 200)

    def _normal(
        self,
        kind: str,
        device: _Device,
        t: int,
        rng: random.Random,
        out: dict[str, list[tuple[int, bytes]]],
    ) -> None:
        if kind == "d2c":
            count = 1 if rng.random() < 0.8 else rng.randint(2, 5)
            self._hub_event(out, t, device, "d2c", device.spelling, 200, count)
        elif kind == "c2d":
            self._hub_event(out, t, device, "c2d", device.spelling, 200)
        elif kind == "c2d-reject":
            self._hub_event(out, t, device, "c2d-reject", device.spelling, 200)
        elif kind == "method":
            props = {
                "deviceId": device.name,
                "methodName": rng.choice(_METHODS),
                "requestSize": rng.randint(0, 200),
                "responseSize": rng.randint(0, 200),
            }
            self._hub_log(out, t, "DirectMethods", "send", props)
        elif kind == "twin":
            category = rng.choice(("D2CTwinOperations", "C2DTwinOperations"))
            props = {"deviceId": device.name, "protocol": device.spelling, "sdkVersion": "1.12"}
            self._hub_log(out, t, category, "update", props)
        elif kind == "upload":
            props = {
                "deviceId": device.name,
                "protocol": "HTTP",
                "blobUri": f"https://benchstore.blob.core.windows.net/uploads/{device.name}/log.bin",
            }
            self._hub_log(out, t, "FileUploadOperations", "ingress", props)
        elif kind == "connection":
            operation = rng.choice(("deviceConnect", "deviceDisconnect"))
            props = {
                "deviceId": device.name,
                "protocol": device.spelling,
                "maskedIpAddress": device.address.rsplit(".", 1)[0] + ".XXX",
                "statusCode": None,
            }
            self._hub_log(out, t, "Connections", operation, props)
        else:
            self._security(out, t, device, self._agent_events(device, t, rng))

    def _agent_events(self, device: _Device, t: int, rng: random.Random) -> list[dict[str, Any]]:
        events = []
        step_start = t - (t - self.start_us) % STEP_US
        for _ in range(rng.randint(1, 3)):
            et = step_start + rng.randrange(t - step_start + 1)  # the agent batches: not after t
            r = rng.random()
            if r < 0.45:
                port = str(rng.randint(49152, 65535))
                item = _connection("Out", device.address, port, HUB_ADDRESS, "8883")
                hits = rng.randint(1, 6)
                events.append(self._event(device, "ConnectionCreate", et, [item], rng, hits))
            elif r < 0.55:
                port = str(rng.randint(49152, 65535))
                item = _connection("Out", device.address, port, GATEWAY, "53", "udp")
                events.append(self._event(device, "ConnectionCreate", et, [item], rng))
            elif r < 0.62:
                peer = f"10.0.0.{rng.randint(2, 19)}"
                item = _connection("In", device.address, "80", peer, str(rng.randint(1024, 65535)))
                events.append(self._event(device, "ConnectionCreate", et, [item], rng))
            elif r < 0.75:
                exe, command = rng.choice(_PROCESSES)
                item = _process(exe, command, rng)
                events.append(self._event(device, "ProcessCreate", et, [item], rng))
            elif r < 0.83:
                user = rng.choice(ALLOWED["LocalUserNotAllowed"])
                item = _login(user, "Success", f"10.0.0.{rng.randint(2, 19)}", rng)
                events.append(self._event(device, "Login", et, [item], rng))
            elif r < 0.86:
                item = _login("operator", "Fail", f"10.0.0.{rng.randint(2, 19)}", rng)
                events.append(self._event(device, "Login", et, [item], rng))
            else:
                events.append(self._event(device, "Heartbeat", et, [], rng, kind="Operational"))
        events.sort(key=lambda e: e["TimestampUTC"])
        return events

    # -- anomalies --------------------------------------------------------------------------

    def _flood(
        self, device: _Device, t0: int, rng: random.Random, out: dict[str, list[tuple[int, bytes]]]
    ) -> None:
        for _ in range(10):
            t = t0 + rng.randrange(STEP_US)
            self._hub_event(out, t, device, "d2c", device.spelling, 200, rng.randint(20, 60))
        if rng.random() < 0.3:
            props = {"deviceId": device.name, "protocol": device.spelling, "messageSize": 512}
            t = t0 + rng.randrange(STEP_US)
            self._hub_log(
                out,
                t,
                "DeviceTelemetry",
                "ingress",
                props,
                result_type="429001",
                level="Error",
                description="ThrottlingException",
            )

    def _intruder(
        self,
        device: _Device,
        t0: int,
        second: int,
        rng: random.Random,
        out: dict[str, list[tuple[int, bytes]]],
    ) -> None:
        if second % 60 == 0:
            attacker = f"203.0.113.{rng.randint(1, 254)}"
            t = t0 + rng.randrange(0, 200_000)
            events = []
            for _ in range(rng.randint(3, 6)):
                t += rng.randint(20_000, 60_000)
                item = _login("root", "Fail", attacker, rng)
                events.append(self._event(device, "Login", t, [item], rng))
            item = _login("root", "Fail", attacker, rng)
            events.append(
                self._event(device, "Login", t + 50_000, [item], rng, rng.randint(10, 30))
            )
            item = _login(INTRUDER_USER, "Success", attacker, rng)
            events.append(self._event(device, "Login", t + 100_000, [item], rng))
            item = _process(MINER, f"{MINER} -o stratum+tcp://{POOL}:3333", rng)
            events.append(self._event(device, "ProcessCreate", t + 150_000, [item], rng))
            item = _connection("In", device.address, "22", attacker, str(rng.randint(1024, 65535)))
            events.append(self._event(device, "ConnectionCreate", t + 20_000, [item], rng))
            events.sort(key=lambda e: e["TimestampUTC"])
            self._security(out, t + 200_000, device, events)
        if rng.random() < 0.3:  # the miner keeps talking to its pool
            t = t0 + rng.randrange(STEP_US)
            port = str(rng.randint(49152, 65535))
            item = _connection("Out", device.address, port, POOL, "3333")
            events = [self._event(device, "ConnectionCreate", t, [item], rng, rng.randint(1, 4))]
            self._security(out, t, device, events)

    def _unauthorized(
        self, device: _Device, t0: int, rng: random.Random, out: dict[str, list[tuple[int, bytes]]]
    ) -> None:
        for _ in range(2):
            t = t0 + rng.randrange(STEP_US)
            props = {
                "deviceId": device.name,
                "protocol": device.spelling,
                "maskedIpAddress": "203.0.113.XXX",
                "statusCode": "401003",
                "errorMessage": "Unauthorized: the SAS token has expired",
            }
            self._hub_log(
                out,
                t,
                "Connections",
                "deviceConnect",
                props,
                result_type="401003",
                level="Error",
                description="IotHubUnauthorized",
            )
        if rng.random() < 0.3:
            t = t0 + rng.randrange(STEP_US)
            self._hub_event(out, t, device, "twin-update", None, 401)

    # -- records ----------------------------------------------------------------------------

    def _hub_event(
        self,
        out: dict[str, list[tuple[int, bytes]]],
        t: int,
        device: _Device,
        op: str,
        protocol: str | None,
        status: int,
        count: int = 1,
    ) -> None:
        record: dict[str, Any] = {
            "time": _stamp(t),
            "deviceId": device.name,
            "moduleId": None,
            "op": op,
        }
        if protocol is not None:
            record["protocol"] = protocol
        record["status"] = status
        if count != 1:
            record["count"] = count
        out[HUB_EVENTS].append((t, orjson.dumps(record) + b"\n"))

    def _hub_log(
        self,
        out: dict[str, list[tuple[int, bytes]]],
        t: int,
        category: str,
        operation: str,
        props: dict[str, Any],
        *,
        result_type: str = "",
        level: str = "Information",
        description: str = "",
    ) -> None:
        record = {
            "time": _stamp(t, digits=7),
            "resourceId": RESOURCE_ID,
            "operationName": operation,
            "category": category,
            "level": level,
            "resultType": result_type,
            "resultDescription": description,
            "durationMs": "0",
            "location": "westeurope",
            "properties": orjson.dumps(props).decode(),
        }
        out[HUB_LOG].append((t, orjson.dumps(record) + b"\n"))

    def _security(
        self,
        out: dict[str, list[tuple[int, bytes]]],
        t: int,
        device: _Device,
        events: list[dict[str, Any]],
    ) -> None:
        message = {
            "AgentVersion": "4.2.1",
            "AgentId": device.agent_id,
            "MessageSchemaVersion": "1.0",
            "Events": events,
        }
        if device.envelope == "event":
            record: dict[str, Any] = {
                "event": {
                    "origin": device.name,
                    "module": "",
                    "interface": "",
                    "component": "",
                    "payload": message,
                }
            }
        else:
            record = {"deviceId": device.name, "body": message}
        out[SECURITY_MESSAGES].append((t, orjson.dumps(record) + b"\n"))

    def _event(
        self,
        device: _Device,
        name: str,
        t: int,
        payload: list[dict[str, Any]],
        rng: random.Random,
        hits: int | None = None,
        kind: str = "Security",
    ) -> dict[str, Any]:
        category = "Periodic" if not payload else "Triggered"
        if hits is not None:
            category = "Aggregated"
            for item in payload:
                item["ExtraDetails"] = {"HitCount": hits if rng.random() < 0.5 else str(hits)}
        utc = _stamp(t, device.sep, 3 if device.millis else 0)
        return {
            "EventType": kind,
            "Category": category,
            "Name": name,
            "IsEmpty": not payload,
            "PayloadSchemaVersion": "1.0",
            "Id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "TimestampLocal": utc[:-1] + "+00:00",
            "TimestampUTC": utc,
            "Payload": payload,
        }


def _connection(
    direction: str,
    local: str,
    local_port: str,
    remote: str,
    remote_port: str,
    protocol: str = "tcp",
) -> dict[str, Any]:
    return {
        "Protocol": protocol,
        "Direction": direction,
        "LocalAddress": local,
        "LocalPort": local_port,
        "RemoteAddress": remote,
        "RemotePort": remote_port,
    }


def _process(exe: str, command: str, rng: random.Random) -> dict[str, Any]:
    return {
        "Executable": exe,
        "ProcessId": rng.randint(100, 4000),
        "ParentProcessId": 1,
        "UserName": "root",
        "UserId": "0",
        "CommandLine": command,
    }


def _login(user: str, result: str, remote: str, rng: random.Random) -> dict[str, Any]:
    return {
        "ProcessId": rng.randint(100, 4000),
        "UserName": user,
        "UserId": "0" if user == "root" else "1000",
        "Operation": "Login",
        "Result": result,
        "Executable": "/usr/sbin/dropbear",
        "RemoteAddress": remote,
    }


def wall_clock() -> int:
    """The host clock in µs since the epoch."""
    return time.time_ns() // 1000


class FleetRunner:
    """Appends a fleet's lines to its three files in real time (in a thread, or ``run``).

    With ``partial``, each tick's bytes of a file are cut at a random point and the rest is held
    until the next tick, so that tailers see lines split across writes; ``close`` writes what is
    held, so finished files hold whole lines.
    """

    def __init__(
        self,
        fleet: FleetSimulator,
        directory: str | os.PathLike[str],
        *,
        partial: bool = False,
        interval: float = 0.25,
        clock: Callable[[], int] = wall_clock,
    ) -> None:
        self.fleet = fleet
        self.directory = Path(directory)
        self.partial = partial
        self.interval = interval
        self.clock = clock
        self.paths = {name: self.directory / name for name in FILES}
        self.bytes_written = 0
        self.lines_written = 0
        self._held = {name: b"" for name in FILES}
        self._rng = random.Random(fleet.seed ^ 0xF1EE7)
        self._files: dict[str, Any] = {}
        self._halt = threading.Event()
        self._thread: threading.Thread | None = None

    def open(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        for name, path in self.paths.items():
            if name not in self._files:
                self._files[name] = path.open("ab")

    def write(self, now_us: int | None = None) -> int:
        """Append what the fleet produced up to ``now_us`` (default: the clock); bytes written."""
        self.open()
        chunks = self.fleet.tick(self.clock() if now_us is None else now_us)
        written = 0
        for name, data in chunks.items():
            self.lines_written += data.count(b"\n")
            data = self._held[name] + data
            if self.partial and len(data) > 1:
                cut = self._rng.randrange(1, len(data))
                data, self._held[name] = data[:cut], data[cut:]
            else:
                self._held[name] = b""
            if data:
                f = self._files[name]
                f.write(data)
                f.flush()
                written += len(data)
        self.bytes_written += written
        return written

    def run(self, stop: threading.Event, seconds: float | None = None) -> None:
        """Write every ``interval`` until ``stop`` is set or ``seconds`` have passed; then close."""
        deadline = None if seconds is None else time.monotonic() + seconds
        try:
            while True:
                self.write()
                wait = self.interval
                if deadline is not None:
                    wait = min(wait, deadline - time.monotonic())
                    if wait <= 0:
                        break
                if stop.wait(wait):
                    break
        finally:
            self.close()

    def start(self) -> None:
        """Run in a thread until ``stop()``."""
        self.open()
        self._thread = threading.Thread(
            target=self.run, args=(self._halt,), name="fleet simulator", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._halt.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self.close()

    def close(self) -> None:
        """Write what is held back and close the files."""
        for name, f in list(self._files.items()):
            if self._held[name]:
                f.write(self._held[name])
                self.bytes_written += len(self._held[name])
                self._held[name] = b""
            f.close()
        self._files = {}

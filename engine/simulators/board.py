"""A simulated Azure RTOS board: the bytes it writes to its UART, console text and frames.

The board boots (printing what the Azure RTOS getting-started firmware prints: Wi-Fi, DHCP, DNS,
SNTP, the hub connection, the twin it fetches and the properties it reports), then every
``TICK_US`` prints a telemetry line and, every other tick, sends the security events of the last
ticks as one framed security message. Its console also shows, in the firmware's own words,
direct methods (``Receive direct method: setLedState``), desired-property updates and the
reported properties it sends back, MQTT reconnections, and now and then a telemetry burst (a
firmware bug resending its ring buffer) — what iotwatch's built-in console patterns count. Event
times follow the board's clock: real time with ``clock="rtc"``, uptime since 1970 (or nothing)
with ``clock="none"``. The output is a function of the seed and of the time reached only: it does
not depend on how often ``next_chunk`` is called. No I/O happens here.

The console's extra chatter draws from a random generator of its own, so the security events
(and the frames) of a seed stay what they were before the board learnt to talk.

Addresses come from documentation ranges: the LAN is 10.0.0.0/24, the IoT hub is
``HUB_ADDRESS`` (198.51.100.0/24), unknown public peers are in 203.0.113.0/24.
"""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import msgpack

from engine.formats.serial import encode_frame, encode_payload

US = 1_000_000
TICK_US = 5 * US
MESSAGE_TICKS = 2  # a security message every 10 s
HEARTBEAT_TICKS = 12  # every minute
SYSINFO_TICKS = 60  # every 5 minutes

AGENT_VERSION = "6.4.1.0"
HUB_HOST = "bench-hub.azure-devices.net"
HUB_ADDRESS = "198.51.100.17"
GATEWAY = "10.0.0.1"
MINER = "/tmp/.x/miner"

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_WARNINGS = (
    "WARNING: Wi-Fi RSSI low ({rssi} dBm)",
    "WARNING: telemetry queue {pct}% full",
    "WARNING: MQTT keep-alive timeout; reconnecting",
)
_RECONNECT = 2  # index in _WARNINGS
# Ticks (of 5 s) to the first direct method and between them: within the first minute and a
# half, then every 3 to 7 minutes; to the first telemetry burst and between them: within the
# first 3 minutes (a demo shows its alert soon), then every 10 to 15 minutes.
METHOD_TICKS = ((6, 18), (36, 84))
BURST_TICKS = ((18, 36), (120, 180))
BURST = (30, 45)  # telemetry messages resent in a burst
MODEL_ID = "dtmi:azurertos:devkit:gsg;2"


def _utc(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


class BoardSimulator:
    """One board, deterministic given its seed; ``next_chunk`` returns what it wrote so far."""

    def __init__(
        self,
        device: str | None,
        seed: int,
        start_us: int,
        clock: Literal["rtc", "none"] = "rtc",
    ) -> None:
        if clock not in ("rtc", "none"):
            raise ValueError(f"clock must be 'rtc' or 'none', not {clock!r}")
        self.device = device
        self.start_us = start_us
        self.clock = clock
        self.frames_sent = 0
        self._rng = random.Random(seed)
        rng = self._rng
        self.agent_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        self.address = f"10.0.0.{rng.randint(20, 220)}"
        self._sep = rng.choice("T ")  # how this firmware writes its timestamps
        self._millis = rng.random() < 0.5
        self._uptime0 = rng.randint(800_000, 4_000_000)  # µs from power-on to start_us
        self._incident = rng.randint(24, 72)  # tick of the first incident: minute 2 to 6
        self._temperature = rng.uniform(20.0, 26.0)
        self._humidity = rng.uniform(35.0, 55.0)
        self._booted = False
        self._tick = 0
        self._reconnecting = False
        self._pending: list[dict[str, Any]] = []  # events for the next security message
        self._chatter = random.Random(f"{seed}:console")  # the console's own choices
        self._next_method = self._chatter.randint(*METHOD_TICKS[0])
        self._next_burst = self._chatter.randint(*BURST_TICKS[0])
        self._led = False
        self._interval = TICK_US // US
        self._rid = 1  # request id of the next reported-property update
        self._legacy = 0  # length of the tick's first line as this board used to print it
        self._version = 1  # desired-properties version

    def next_chunk(self, now_us: int) -> bytes:
        """The bytes the board wrote after the previous call, up to and including ``now_us``."""
        out = bytearray()
        if not self._booted:
            if now_us < self.start_us:
                return b""
            self._boot(out)
        while self.start_us + (self._tick + 1) * TICK_US <= now_us:
            self._tick += 1
            self._step(self.start_us + self._tick * TICK_US, out)
        return bytes(out)

    # --- console -------------------------------------------------------------------------

    def _boot(self, out: bytearray) -> None:
        self._booted = True
        t = _utc(self.start_us)
        lines = [
            "",
            "Azure RTOS ThreadX 6.4.1 (Cortex-M4/GNU) booting",
            "Starting Azure thread",
            "",
            "",
            "Initializing WiFi",
            f"\tMAC address: {self._mac()}",
            "SUCCESS: WiFi initialized",
            "",
            "Connecting WiFi",
            "\tConnecting to SSID 'bench-lab'",
            "\tAttempt 1...",
            "SUCCESS: WiFi connected",
            "",
            "Initializing NetX Duo 6.4.1 IP stack",
            "Initializing DHCP",
            f"\tIP address: {self.address}",
            "\tMask: 255.255.255.0",
            f"\tGateway: {GATEWAY}",
            "SUCCESS: DHCP initialized",
            "",
            "Initializing DNS client",
            f"\tDNS address: {GATEWAY}",
            "SUCCESS: DNS client initialized",
            "",
            "Initializing SNTP time sync",
            "\tSNTP server 0.pool.ntp.org",
        ]
        if self.clock == "rtc":
            stamp = t.strftime("%b %d, %Y %H:%M:%S.%f")[:-3]
            lines += [f"\tSNTP time update: {stamp} UTC", "SUCCESS: SNTP initialized"]
        else:
            lines += ["ERROR: SNTP time sync failed (0x0A); event times are uptime"]
        lines += ["", "Initializing Azure IoT Hub client", f"\tHub hostname: {HUB_HOST}"]
        if self.device is not None:
            lines.append(f"\tDevice id: {self.device}")
        lines += [f"\tModel id: {MODEL_ID}", "SUCCESS: Connected to IoT Hub", ""]
        # The twin it fetches, then the properties it reports (printed with their MQTT topic).
        info = (
            '{"deviceInformation":{"__t":"c","manufacturer":"Azure RTOS","model":"bench-sim",'
            '"swVersion":"1.4.2","osName":"Azure RTOS","processorArchitecture":"Arm Cortex M4",'
            '"totalStorage":1024,"totalMemory":256}}'
        )
        lines.append(
            'Receive properties: {"desired":{"$version":1},"reported":'
            f'{{"ledState":false,"telemetryInterval":{{"ac":200,"av":1,"value":{self._interval}}},'
            '"$version":3}}'
        )
        lines.append(self._reported(info))
        lines.append(self._reported('{"ledState":false}'))
        lines.append(self._reported(self._interval_json()))
        lines += ["", "Starting Defender for IoT security module", "", "Starting Main loop"]
        out += "".join(line + "\r\n" for line in lines).encode()
        self._pending.append(self._system_information(self.start_us))

    def _mac(self) -> str:
        return ":".join(f"{b:02X}" for b in [0x02, 0x1A, *self._chatter.randbytes(4)])

    def _reported(self, body: str) -> str:
        """The line the firmware prints as it reports properties (a twin update)."""
        rid, self._rid = self._rid, self._rid + 2
        return f"Sending property: $iothub/twin/PATCH/properties/reported/?$rid={rid}{body}"

    def _interval_json(self) -> str:
        return f'{{"telemetryInterval":{{"ac":200,"av":{self._version},"value":{self._interval}}}}}'

    def _chatter_lines(self) -> list[str]:
        """What else the console says this tick: a direct method and the twin update it makes,
        or a telemetry burst (from the console's own random generator)."""
        rng = self._chatter
        lines: list[str] = []
        if self._tick >= self._next_method:
            self._next_method = self._tick + rng.randint(*METHOD_TICKS[1])
            self._led = not self._led
            state = "true" if self._led else "false"
            lines += [
                "Receive direct method: setLedState",
                f"\tPayload: {state}",
                f"LED is turned {'ON' if self._led else 'OFF'}",
                f'Device twin property sent: {{"ledState":{state}}}',
            ]
        if self._tick >= self._next_burst:
            self._next_burst = self._tick + rng.randint(*BURST_TICKS[1])
            lines.append("WARNING: telemetry ring buffer replayed after a watchdog reset")
            for _ in range(rng.randint(*BURST)):
                lines.append(self._telemetry(rng.uniform(-0.05, 0.05)))
        return lines

    def _telemetry(self, jitter: float = 0.0) -> str:
        return (
            f'Telemetry message sent: {{"temperature":{self._temperature + jitter:.2f},'
            f'"humidity":{self._humidity:.2f}}}.'
        )

    def _console_line(self) -> str | None:
        """The tick's console text. Its draws from the board's generator are those it always
        made (the events and frames of a seed depend on them); its words are the firmware's."""
        rng = self._rng
        if self._reconnecting:
            self._reconnecting = False
            self._legacy = 29  # len("SUCCESS: Connected to IoT Hub")
            return "SUCCESS: Connected to IoT Hub"
        if rng.random() < 0.015:
            i = rng.randrange(len(_WARNINGS))
            self._reconnecting = i == _RECONNECT
            line = _WARNINGS[i].format(rssi=rng.randint(-90, -80), pct=rng.randint(75, 95))
            self._legacy = len(line)
            return f"{line}\r\nDisconnected from IoT Hub" if self._reconnecting else line
        if rng.random() < 0.01:
            self._legacy = len(f"Received writable property: telemetryInterval = {TICK_US // US}")
            # The operator changes the telemetry interval: a desired-property update, and the
            # board's answer (both twin updates).
            self._version += 1
            self._interval = 10 if self._interval == TICK_US // US else TICK_US // US
            return "\r\n".join(
                [
                    f'Receive properties: {{"telemetryInterval":{self._interval},'
                    f'"$version":{self._version}}}',
                    f"\tUpdating telemetryInterval to {self._interval}",
                    self._reported(self._interval_json()),
                ]
            )
        self._temperature += rng.uniform(-0.2, 0.2)
        self._humidity += rng.uniform(-0.5, 0.5)
        line = self._telemetry()
        self._legacy = len(line)
        return line

    # --- one tick ------------------------------------------------------------------------

    def _step(self, t: int, out: bytearray) -> None:
        rng = self._rng
        self._happen(t - TICK_US, t)
        line = self._console_line()
        chatter = self._chatter_lines()
        if chatter:
            line = "\r\n".join([*([line] if line is not None else []), *chatter])
        frame = b""
        if self._tick % MESSAGE_TICKS == 0:
            if self._tick % HEARTBEAT_TICKS == 0:
                self._pending.append(self._event("Heartbeat", "Periodic", t, [], "Operational"))
            if self._tick % SYSINFO_TICKS == 0:
                self._pending.append(self._system_information(t))
            if self._pending:
                self._pending.sort(key=lambda e: e["_t"])
                frame = encode_frame(self.message(self._pending))
                self._pending = []
                self.frames_sent += 1
        text = (line + "\r\n").encode() if line is not None else b""
        if frame and text and rng.random() < 0.2:
            # The security module's frame lands in the middle of a printf. (Drawn over the
            # length of the one line this board printed before it learnt to talk, so that the
            # generator, and every event after, stays the same.)
            k = rng.randrange(1, self._legacy)
            out += text[:k] + frame + text[k:]
        else:
            out += text + frame

    def _happen(self, t0: int, t1: int) -> None:
        """Draw the security events that happen in ``(t0, t1]``."""
        rng = self._rng

        def at() -> int:
            return t1 - rng.randrange(0, (t1 - t0) // 1000) * 1000

        if rng.random() < 0.5:
            hits = rng.randint(1, 6)
            self._connection(at(), "Out", HUB_ADDRESS, "8883", hits=hits)
        if rng.random() < 0.1:
            self._connection(at(), "Out", GATEWAY, "53", protocol="udp")
        if rng.random() < 0.03:
            self._connection(at(), "In", f"10.0.0.{rng.randint(2, 19)}", "54123", local="80")
        if rng.random() < 0.05:
            self._process(at(), "/bin/sensor-app", "/bin/sensor-app --interval 5")
        if rng.random() < 0.01:
            self._process(at(), "/usr/bin/ota-agent", "/usr/bin/ota-agent --check")
        if rng.random() < 0.015:
            self._login(at(), "operator", "Success", f"10.0.0.{rng.randint(2, 19)}")
        if rng.random() < 0.01:
            self._login(at(), "operator", "Fail", f"10.0.0.{rng.randint(2, 19)}")
        if rng.random() < 0.004:
            self._connection(at(), "In", self._stranger(), str(rng.randint(1024, 65535)))
        if rng.random() < 0.004:
            self._connection(at(), "Out", self._stranger(), "443")
        if rng.random() < 0.002:
            self._process(at(), MINER, f"{MINER} -o stratum+tcp://203.0.113.66:3333")
        if self._tick == self._incident:
            self._intrusion(t0, t1)
            self._incident = self._tick + rng.randint(120, 360)

    def _intrusion(self, t0: int, t1: int) -> None:
        """A brute-forced login, a miner started, and its pool connection."""
        rng = self._rng
        attacker = self._stranger()
        t = t0 + 1000
        for _ in range(rng.randint(3, 6)):
            t += rng.randint(50, 400) * 1000
            self._login(t, "root", "Fail", attacker)
        self._login(t + 200_000, "root", "Fail", attacker, hits=rng.randint(5, 20))
        self._login(t + 400_000, "support", "Success", attacker)
        self._process(t + 600_000, MINER, f"{MINER} -o stratum+tcp://203.0.113.66:3333")
        self._connection(min(t + 800_000, t1), "Out", "203.0.113.66", "3333", hits=12)

    def _stranger(self) -> str:
        return f"203.0.113.{self._rng.randint(1, 254)}"

    # --- events --------------------------------------------------------------------------

    def _connection(
        self,
        t: int,
        direction: str,
        remote: str,
        remote_port: str,
        protocol: str = "tcp",
        local: str | None = None,
        hits: int | None = None,
    ) -> None:
        rng = self._rng
        item: dict[str, Any] = {
            "Protocol": protocol,
            "Direction": direction,
            "LocalAddress": self.address,
            "LocalPort": local or str(rng.randint(49152, 65535)),
            "RemoteAddress": remote,
            "RemotePort": remote_port,
        }
        self._add("ConnectionCreate", t, item, hits)

    def _process(self, t: int, exe: str, command: str) -> None:
        item = {
            "Executable": exe,
            "ProcessId": self._rng.randint(100, 4000),
            "ParentProcessId": 1,
            "UserName": "root",
            "UserId": "0",
            "CommandLine": command,
        }
        self._add("ProcessCreate", t, item, None)

    def _login(self, t: int, user: str, result: str, remote: str, hits: int | None = None) -> None:
        item = {
            "ProcessId": self._rng.randint(100, 4000),
            "UserName": user,
            "UserId": "0" if user == "root" else "1000",
            "Operation": "Login",
            "Result": result,
            "Executable": "/usr/sbin/dropbear",
            "RemoteAddress": remote,
        }
        self._add("Login", t, item, hits)

    def _add(self, name: str, t: int, item: dict[str, Any], hits: int | None) -> None:
        category = "Triggered"
        if hits is not None:
            category = "Aggregated"
            # Boards write the count as an int or as a string, depending on the firmware.
            item["ExtraDetails"] = {"HitCount": hits if self._rng.random() < 0.5 else str(hits)}
        self._pending.append(self._event(name, category, t, [item]))

    def _system_information(self, t: int) -> dict[str, Any]:
        item = {
            "OSName": "Azure RTOS",
            "OSVersion": "ThreadX 6.4.1",
            "OsArchitecture": "ARM Cortex-M4",
            "HostName": self.device or f"board-{self.address.rsplit('.', 1)[1]}",
            "FirmwareVersion": "1.4.2",
            "TotalPhysicalMemoryInKB": 256,
            "FreePhysicalMemoryInKB": self._rng.randint(40, 90),
            "IpAddress": self.address,
        }
        return self._event("SystemInformation", "Periodic", t, [item])

    def _event(
        self,
        name: str,
        category: str,
        t: int,
        payload: list[dict[str, Any]],
        event_type: str = "Security",
        rng: random.Random | None = None,
    ) -> dict[str, Any]:
        rng = rng or self._rng
        event: dict[str, Any] = {
            "_t": t,  # sort key, dropped when sent
            "EventType": event_type,
            "Category": category,
            "Name": name,
            "IsEmpty": not payload,
            "PayloadSchemaVersion": "1.0",
            "Id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        }
        stamps = self._stamps(t, rng)
        if stamps is not None:
            event["TimestampLocal"], event["TimestampUTC"] = stamps
        event["Payload"] = payload
        return event

    def _stamps(self, t: int, rng: random.Random) -> tuple[str, str] | None:
        """(TimestampLocal, TimestampUTC) as the board's clock writes them, or None: not written."""
        if self.clock == "none":
            if rng.random() < 0.2:
                return None
            t = t - self.start_us + self._uptime0  # uptime, counted from 1970
        d = _utc(t)
        text = d.strftime(f"%Y-%m-%d{self._sep}%H:%M:%S")
        if self._millis and self.clock == "rtc":
            text += f".{d.microsecond // 1000:03d}"
        return text + "+00:00", text + "Z"

    def message(self, events: list[dict[str, Any]]) -> dict[str, Any]:
        """A security message carrying ``events``, as this board sends it."""
        message: dict[str, Any] = {
            "AgentVersion": AGENT_VERSION,
            "AgentId": self.agent_id,
            "MessageSchemaVersion": "1.0",
        }
        if self.device is not None:
            message["DeviceId"] = self.device
        message["Events"] = [{k: v for k, v in e.items() if k != "_t"} for e in events]
        return message


def _code_positions(encoded: bytes) -> set[int]:
    """Indexes of the COBS code bytes of an encoded frame (without its 0x00 delimiters)."""
    codes = set()
    i = 0
    while i < len(encoded):
        codes.add(i)
        i += encoded[i]
    return codes


def capture(
    seed: int,
    start_us: int,
    seconds: int,
    device: str | None,
    clock: Literal["rtc", "none"] = "rtc",
    faults: bool = False,
) -> bytes:
    """A raw capture of ``seconds`` of a board's output.

    With ``faults``, four faults are added to the same stream, each in its own chunk so that the
    splitter's counters are exact: a frame with one flipped byte (CRC fails: 1 ``crc_errors``), a
    valid-CRC frame holding truncated MessagePack (1 ``Bad``), line noise that cannot be
    COBS-decoded, and half a frame at the end (cut inside a COBS block, so it cannot decode).
    All of the board's own frames survive.
    """
    sim = BoardSimulator(device, seed, start_us, clock)
    end = start_us + seconds * US
    if not faults:
        return sim.next_chunk(end)
    rng = random.Random(seed ^ 0x5EED)
    heartbeat = sim.message([sim._event("Heartbeat", "Periodic", start_us, [], "Operational", rng)])
    frame = encode_frame(heartbeat)
    out = bytearray(sim.next_chunk(start_us + seconds * US // 4))
    flipped = bytearray(frame)
    codes = _code_positions(frame[1:-1])
    i = max(j for j in range(1, len(frame) - 1) if j - 1 not in codes)
    flipped[i] = flipped[i] ^ 0x40 or 0x41
    out += flipped
    out += sim.next_chunk(start_us + seconds * US // 2)
    packed = msgpack.packb(heartbeat, use_bin_type=True)
    out += encode_payload(packed[: len(packed) // 2])
    out += sim.next_chunk(start_us + seconds * US * 3 // 4)
    noise = bytes([0xFF] + [rng.choice((*range(0x80, 0xFF), 0x03, 0x1B)) for _ in range(40)])
    out += b"\x00" + noise + b"\x00"
    out += sim.next_chunk(end)
    encoded = frame[1:-1]
    codes = _code_positions(encoded)
    mid = len(encoded) // 2
    while mid in codes:
        mid += 1
    out += b"\x00" + encoded[:mid]
    return bytes(out)

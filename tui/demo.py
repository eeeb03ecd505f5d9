"""``iotwatch demo``: the console on a simulated fleet and a simulated serial board, no set-up.

Everything lives in one temporary folder (the fleet's three log files and the database), removed
on exit. The fleet (30 devices, every anomaly) starts ten minutes in the past, so its backlog fills
the counters' history at once and alerts are open within seconds; the board is served on a local
TCP port (``socket://127.0.0.1:PORT``) and read like a serial port. Range rules use one-minute
windows, so the counters visibly move.

Devices are put in one group per protocol they speak (``mqtt``, ``amqp``, ``http``) so that each
group can expect D2C traffic of its own protocol — a silent device then falls below ``min``; the
board is in group ``bench``: the agent rules, and the hub rules its console tells about (it
prints the getting-started firmware's lines, which the built-in console patterns count: a
telemetry line a D2C message, a direct method, a twin update; its telemetry bursts go over
``max``). The allow-lists are the values the simulators' normal traffic uses
(``engine.simulators.fleet.ALLOWED``, which covers the board's too).
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from pathlib import Path
from typing import Any

from engine.config import AllowRule, Config, DeviceMap, Group, RangeRule, SourceConfig
from engine.simulators.fleet import ALLOWED, ANOMALIES, FILES, FORMATS, FleetRunner, FleetSimulator
from engine.simulators.pty import BoardServer, board_server

BOARD = "bench-board-1"
DEVICES = 30
SEED = 7
BACKFILL_S = 600
WINDOW = 60  # seconds: PT1M windows, so things move

# (rule, min, max) per minute, for every group; the protocol's own D2C rule is added per group.
COMMON: tuple[tuple[str, int, int], ...] = (
    ("DirectMethodInvokesNotInAllowedRange", 0, 10),
    ("FileUploadsNotInAllowedRange", 0, 5),
    ("QueuePurgesNotInAllowedRange", 0, 0),
    ("TwinUpdatesNotInAllowedRange", 0, 10),
    ("UnauthorizedOperationsNotInAllowedRange", 0, 0),
    ("ActiveConnectionsNotInAllowedRange", 0, 250),
    ("FailedLocalLoginsNotInAllowedRange", 0, 5),
)
PROTOCOL_RULES = {"mqtt": "Mqtt", "amqp": "Amqp", "http": "Http"}
SEVERITY = {
    "UnauthorizedOperationsNotInAllowedRange": "Medium",
    "FailedLocalLoginsNotInAllowedRange": "High",
    "ProcessNotAllowed": "High",
}


def demo_groups() -> dict[str, Group]:
    """One group per protocol, with every rule the fleet's anomalies trip."""
    groups: dict[str, Group] = {}
    for proto, prefix in PROTOCOL_RULES.items():
        rules: dict[str, RangeRule] = {}
        for name, low, high in COMMON:
            rules[name] = RangeRule(name, True, low, high, WINDOW, SEVERITY.get(name, "Low"))
        d2c = f"{prefix}D2CMessagesNotInAllowedRange"
        rules[d2c] = RangeRule(d2c, True, 3, 200, WINDOW, "Medium")
        for kind in ("C2D", "C2DRejected"):
            name = f"{prefix}{kind}MessagesNotInAllowedRange"
            rules[name] = RangeRule(name, True, 0, 20 if kind == "C2D" else 4, WINDOW)
        allow = {
            name: AllowRule(name, True, values, SEVERITY.get(name, "Low"))
            for name, values in ALLOWED.items()
        }
        groups[proto] = Group(proto, rules, allow)
    # The serial board: security messages (agent rules), and what its console says it sent
    # and received (a telemetry line every 5 s: 12 a minute; a burst resends 30 to 45).
    kept = (
        "ActiveConnectionsNotInAllowedRange",
        "FailedLocalLoginsNotInAllowedRange",
        "DirectMethodInvokesNotInAllowedRange",
        "TwinUpdatesNotInAllowedRange",
    )
    bench = {
        name: RangeRule(name, True, low, high, WINDOW, SEVERITY.get(name, "Low"))
        for name, low, high in COMMON
        if name in kept
    }
    d2c = "MqttD2CMessagesNotInAllowedRange"
    bench[d2c] = RangeRule(d2c, True, 3, 30, WINDOW, "Medium")
    allow = {
        name: AllowRule(name, True, values, SEVERITY.get(name, "Low"))
        for name, values in ALLOWED.items()
    }
    groups["bench"] = Group("bench", bench, allow)
    return groups


def demo_config(fleet: FleetSimulator, directory: Path, board_address: str) -> Config:
    """The demo's configuration, built in code (no file: nothing to watch or rewrite)."""
    sources = [
        SourceConfig(FORMATS[name], str(directory / name), None, format=FORMATS[name])
        for name in FILES
    ]
    sources.append(SourceConfig("serial", None, board_address, device=BOARD))
    exact = {d.name: d.protocol for d in fleet.devices}
    exact[BOARD] = "bench"
    return Config(
        path=None,
        lateness=60,
        quiet=600,
        db_path=str(directory / "iotwatch.db"),
        sources=tuple(sources),
        groups=demo_groups(),
        devices=DeviceMap(exact),
    )


class Demo:
    """The simulators and the configuration of ``iotwatch demo`` in ``directory``."""

    def __init__(self, directory: Path, *, devices: int = DEVICES, seed: int = SEED) -> None:
        self.directory = directory
        now = time.time_ns() // 1000
        self.fleet = FleetSimulator(
            devices,
            seed,
            now - BACKFILL_S * 1_000_000,
            anomalies=ANOMALIES,
            anomaly_after=30.0,
        )
        self.runner = FleetRunner(self.fleet, directory)
        self.board: BoardServer = board_server(BOARD, seed, tcp_port=0)
        self.config: Config | None = None

    def start(self) -> Config:
        """Start both simulators (the fleet writes its backlog first) and build the config."""
        self.runner.open()
        self.runner.write()  # the ten minutes of backlog, before the engine looks
        self.runner.start()
        self.board.start()
        self.config = demo_config(self.fleet, self.directory, self.board.address)
        return self.config

    def stop(self) -> None:
        for stop in (self.board.stop, self.runner.stop):
            # Stopping goes on whatever one simulator says.
            with contextlib.suppress(Exception):
                stop()

    def __enter__(self) -> Demo:
        try:
            self.start()
        except BaseException:  # a stop signal or a failure half-way: no simulator left running
            self.stop()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def run_demo() -> int:
    """Run the demo console until the operator quits; the exit status."""
    from tui import signals
    from tui.app import run_console

    # A stop signal while the simulators start unwinds (removing the folder); once the console
    # has returned, one while the folder is removed is ignored (tui.signals).
    with signals.stopping() as on_signal:
        try:
            with (
                tempfile.TemporaryDirectory(prefix="iotwatch-demo-") as tmp,
                Demo(Path(tmp)) as demo,
            ):
                assert demo.config is not None and demo.config.db_path is not None
                try:
                    return run_console(demo.config, demo.config.db_path, title="iotwatch demo")
                finally:
                    on_signal.closing = True
        except signals.SignalStop:
            return 0

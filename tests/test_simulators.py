"""Simulators: the fleet's files, the board on a pty or TCP port, and their commands."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import random
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from engine import catalogue as c
from engine.capture import CaptureStream
from engine.event import Event
from engine.jsonstream import JsonStream
from engine.serial_source import FOLLOWING, RECONNECTING, SerialSource
from engine.simulators.board import MINER
from engine.simulators.fleet import (
    ALLOWED,
    ANOMALIES,
    FILES,
    FORMATS,
    INTRUDER_USER,
    POOL,
    FleetRunner,
    FleetSimulator,
)
from engine.simulators.pty import PtyEndpoint, board_server
from tui import simulate_cmd

US = 1_000_000
START = 1_795_860_000 * US  # 2026-11-28T10:00:00Z
CLI = (
    "import argparse, sys; from tui import simulate_cmd; "
    "p = argparse.ArgumentParser(prog='iotwatch'); s = p.add_subparsers(dest='command'); "
    "simulate_cmd.add_parsers(s); sys.exit(simulate_cmd.run(p.parse_args(sys.argv[1:])))"
)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="iotwatch")
    simulate_cmd.add_parsers(p.add_subparsers(dest="command"))
    return p


def decode(name: str, data: bytes) -> list[Event]:
    stream = JsonStream()
    stream.feed(data)
    stream.finish()
    events, bad = stream.take()
    assert bad == [], (name, bad[:3])
    assert stream.format == FORMATS[name]
    return events


# -- fleet --------------------------------------------------------------------------------------


def test_fleet_is_deterministic_and_independent_of_tick_times() -> None:
    end = START + 90 * US
    one = FleetSimulator(8, 7, START, rate=40, anomalies=ANOMALIES, anomaly_after=20).tick(end)
    many = FleetSimulator(8, 7, START, rate=40, anomalies=ANOMALIES, anomaly_after=20)
    parts: dict[str, bytes] = dict.fromkeys(FILES, b"")
    rng = random.Random(1)
    now = START
    while now < end:
        now = min(end, now + rng.randrange(1, 3 * US))
        for name, data in many.tick(now).items():
            parts[name] += data
    assert parts == one
    assert all(one[name] for name in FILES)
    other = FleetSimulator(8, 8, START, rate=40, anomalies=ANOMALIES, anomaly_after=20)
    assert other.tick(end) != one


def test_fleet_files_decode_and_every_anomaly_shows() -> None:
    after = 30
    fleet = FleetSimulator(10, 3, START, rate=60, anomalies=ANOMALIES, anomaly_after=after)
    out = fleet.tick(START + 150 * US)
    events = {name: decode(name, out[name]) for name in FILES}
    every = [e for evs in events.values() for e in evs]
    anomaly_start = START + after * US
    who = fleet.anomaly_devices
    assert sorted(who) == sorted(ANOMALIES)
    assert len(set(who.values())) == len(ANOMALIES)  # one device each
    assert {e.device for e in every} == {d.name for d in fleet.devices}

    # Lines are in time order within each file.
    for name in (FILES[0], FILES[1]):
        times = [e.time for e in events[name]]
        assert times == sorted(times)

    d2c = Counter()
    for e in every:
        if e.rule in c.D2C.values() and e.time >= anomaly_start:
            d2c[e.device] += e.weight
    normal = [n for d, n in d2c.items() if d != who["flood"]]
    assert d2c[who["flood"]] > 10 * max(normal)

    silent = [e for e in every if e.device == who["silent"]]
    assert silent and max(e.time for e in silent) < anomaly_start

    unauthorized = Counter(e.device for e in every if e.unauthorized)
    assert set(unauthorized) == {who["unauthorized"]}
    assert unauthorized[who["unauthorized"]] >= 2 * (150 - after)

    purges = Counter(e.device for e in every if e.rule == c.QUEUE_PURGES)
    assert set(purges) == {who["purge"]}
    assert all(e.time >= anomaly_start for e in every if e.rule == c.QUEUE_PURGES)

    def allowed(e: Event) -> bool:
        value = e.value or ""
        if e.allow == c.PROCESS:
            return value.rsplit("/", 1)[-1] in ALLOWED["ProcessNotAllowed"]
        if e.allow == c.LOCAL_USER:
            return value in ALLOWED["LocalUserNotAllowed"]
        key = (
            "ConnectionToIpNotAllowed"
            if e.allow == c.CONNECTION_TO_IP
            else "ConnectionFromIpNotAllowed"
        )
        address = ipaddress.ip_address(value)
        return any(address in ipaddress.ip_network(n) for n in ALLOWED[key])

    violations = [e for e in every if e.allow and not allowed(e)]
    assert {e.device for e in violations} == {who["intruder"]}
    assert all(e.time >= anomaly_start for e in violations)
    values = {e.value for e in violations}
    assert {MINER, INTRUDER_USER, POOL} <= values
    assert any(e.allow == c.CONNECTION_FROM_IP for e in violations)
    failed = sum(
        e.weight for e in every if e.rule == c.FAILED_LOGINS and e.device == who["intruder"]
    )
    assert failed >= 10


def test_fleet_without_anomalies_is_quiet() -> None:
    fleet = FleetSimulator(5, 1, START, rate=30)
    out = fleet.tick(START + 60 * US)
    every = [e for name in FILES for e in decode(name, out[name])]
    assert fleet.anomaly_devices == {}
    assert not any(e.unauthorized or e.rule == c.QUEUE_PURGES for e in every)
    assert not any(e.value in (MINER, INTRUDER_USER, POOL) for e in every)
    assert sum(out[name].count(b"\n") for name in FILES) == 30 * 60  # rate x seconds records


def test_fleet_rejects_unknown_anomaly() -> None:
    with pytest.raises(ValueError, match="unknown anomaly"):
        FleetSimulator(3, 0, START, anomalies=["meteor"])


def test_fleet_runner_partial_writes_split_lines_and_end_whole(tmp_path: Path) -> None:
    runner = FleetRunner(FleetSimulator(4, 5, START, rate=50), tmp_path / "out", partial=True)
    reference = FleetSimulator(4, 5, START, rate=50)
    expected: dict[str, bytes] = dict.fromkeys(FILES, b"")
    cut_lines = 0
    for second in range(1, 21):
        now = START + second * US
        runner.write(now)
        for name, data in reference.tick(now).items():
            expected[name] += data
        cut_lines += sum(not p.read_bytes().endswith(b"\n") for p in runner.paths.values())
    runner.close()
    assert cut_lines > 10  # tailers see lines split across writes
    for name, path in runner.paths.items():
        assert path.read_bytes() == expected[name]
        decode(name, path.read_bytes())


def test_simulate_fleet_command_appends_live(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = parser().parse_args(
        [
            *("simulate", "fleet", str(tmp_path), "--devices", "4", "--rate", "50"),
            *("--seconds", "1.3", "--anomalies", "flood,purge", "--anomaly-after", "0"),
        ]
    )
    assert simulate_cmd.run(args) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"fleet {tmp_path}"
    assert [line.split()[:2] for line in lines[1:]] == [["anomaly", "flood"], ["anomaly", "purge"]]
    for name in FILES:
        data = (tmp_path / name).read_bytes()
        assert data.endswith(b"\n")
        decode(name, data)


def test_simulate_fleet_rejects_bad_anomaly_list(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        parser().parse_args(["simulate", "fleet", str(tmp_path), "--anomalies", "flood,meteor"])


# -- board --------------------------------------------------------------------------------------


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


async def follow(source: SerialSource, stream: CaptureStream) -> None:
    async for data, received in source.chunks():
        stream.host_time = received
        if data:
            stream.feed(data)
        else:
            stream.finish()


@pytest.mark.parametrize("kind", ["pty", "tcp"])
async def test_board_server_unplugged_and_back(kind: str, tmp_path: Path) -> None:
    start = time.time_ns() // 1000
    server = board_server(
        "bench-1",
        4,
        tcp_port=0 if kind == "tcp" else None,
        link=tmp_path / "usb-Sim_Board-if00" if kind == "pty" else None,
        speed=200,  # a frame every 50 ms
        start_us=start,
    )
    server.start()
    source = SerialSource(server.address, backoff_initial=0.02, backoff_max=0.1, read_timeout=0.05)
    stream = CaptureStream(start)
    task = asyncio.create_task(follow(source, stream))
    try:
        await until(lambda: stream.splitter.frames >= 3)
        server.pause()
        await until(lambda: source.state == RECONNECTING)
        await asyncio.sleep(0.1)
        before = stream.splitter.frames
        server.resume()
        await until(lambda: source.state == FOLLOWING and source.reconnects == 1)
        await until(lambda: stream.splitter.frames >= before + 3)
        assert stream.bad == []
        assert {e.device for e in stream.events} == {"bench-1"}
        assert server.endpoint.bytes_written > 0
    finally:
        source.stop()
        await task
        server.stop()
    if kind == "pty":
        assert not (tmp_path / "usb-Sim_Board-if00").exists()


def test_pty_endpoint_drops_instead_of_blocking_without_reader() -> None:
    endpoint = PtyEndpoint(buffer=4096)
    endpoint.open()
    try:
        started = time.monotonic()
        for _ in range(100):
            endpoint.write(b"x" * 1024)
        assert time.monotonic() - started < 1
        assert endpoint.bytes_dropped > 0
        assert endpoint.bytes_written + endpoint.bytes_dropped + 4096 >= 100 * 1024
    finally:
        endpoint.close()


def test_board_server_tcp_refuses_while_unplugged() -> None:
    server = board_server(None, 0, tcp_port=0, speed=50)
    server.start()
    port = int(server.address.rsplit(":", 1)[1])
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        server.pause()
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=1)
        server.resume()
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    finally:
        server.stop()


def test_simulate_board_tcp_subprocess_serves_valid_frames() -> None:
    proc = subprocess.Popen(
        [
            *(sys.executable, "-c", CLI, "simulate", "board", "--tcp", "0"),
            *("--speed", "200", "--device", "sim-1", "--seconds", "20"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        address = proc.stdout.readline().strip()
        assert address.startswith("socket://127.0.0.1:")
        host, port = address.removeprefix("socket://").rsplit(":", 1)
        stream = CaptureStream(time.time_ns() // 1000)
        with socket.create_connection((host, int(port)), timeout=5) as conn:
            conn.settimeout(0.1)
            deadline = time.monotonic() + 5
            while stream.splitter.frames < 3 and time.monotonic() < deadline:
                with contextlib.suppress(TimeoutError):
                    stream.feed(conn.recv(65536))
        assert stream.splitter.frames >= 3
        assert stream.splitter.crc_errors == 0
        assert stream.bad == []
        assert stream.events and {e.device for e in stream.events} == {"sim-1"}
        assert stream.console  # telemetry lines between frames
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=3) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_simulate_board_pty_prints_its_path_first() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", CLI, "simulate", "board", "--pty", "--seconds", "0.3"],
        stdout=subprocess.PIPE,
        text=True,
    )
    out, _ = proc.communicate(timeout=10)
    assert proc.returncode == 0
    kind, path = out.splitlines()[0].split(" ", 1)
    assert kind == "pty" and path.startswith("/dev/")


def test_ports_command_lists_or_says_none(capsys: pytest.CaptureFixture[str]) -> None:
    assert simulate_cmd.run(parser().parse_args(["ports"])) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == ["no serial ports found"] or all(
        line.startswith("/") and line.count("\t") == 2 for line in out
    )
